"""Deterministic train/val/test split by event number.

Each event number is hashed (splitmix64, seeded) to a uniform number in [0, 1); the split
is decided by that number alone, so it does not depend on file order, sharding or chunking,
and all jets of one event land in the same split.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from flavourflow.core.errors import FlavourflowError

SPLITS = ("train", "val", "test")


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def uniform_from_event(event_number: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per event number, fixed by (event number, seed)."""
    x = np.asarray(event_number).astype(np.uint64)
    with np.errstate(over="ignore"):
        mixed = _splitmix64(x ^ _splitmix64(np.array([seed], dtype=np.uint64)))
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def assign(event_number: np.ndarray, fractions: Mapping[str, float], seed: int) -> np.ndarray:
    """Index into ``SPLITS`` (0 train, 1 val, 2 test) for each event number."""
    edges = np.cumsum([fractions[name] for name in SPLITS])
    if not np.isclose(edges[-1], 1.0):
        raise FlavourflowError(f"fractions must add up to 1, got {dict(fractions)}",
                               field="split")
    u = uniform_from_event(event_number, seed)
    return np.searchsorted(edges[:-1], u, side="right").astype(np.int8)


def mask(event_number: np.ndarray, split: str, fractions: Mapping[str, float], seed: int):
    """Boolean mask selecting the jets of ``split``."""
    return assign(event_number, fractions, seed) == SPLITS.index(split)
