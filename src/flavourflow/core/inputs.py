"""Network inputs read from the dump: the one place that turns dump fields into the raw-unit
values an lwtnn network is fed, shared by preprocess (which normalises them), evaluate and
inject (which feed them to the exported network), so that all three see the same numbers.

An input variable is named after a dump field, ``log_<field>`` for the natural log of a
field (values <= 0 become NaN, hence the variable's default) or ``log1p_<field>`` for
log(1 + field) (values <= -1 become NaN): the compression a long-tailed non-negative quantity
such as a flight significance, 0 without a vertex, needs. Because the transform is in the
name, ``network.json`` alone says how to compute every input. Track (sequence) inputs are the
first ``max_tracks`` steps of the dump's `tracks` rows (which the dump sorts by decreasing
|d0 significance|) with the dump's ``valid`` flag; variables of valid steps that are NaN get
the variable's default, as scalar inputs do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from flavourflow.core.errors import FlavourflowError

#: Name of the scalar jet input node, of the sequence input node and of their dump datasets.
JET_NODE = "jets"
TRACK_NODE = "tracks"
VALID_FIELD = "valid"
#: Transform -> the prefix of the variable names that apply it.
PREFIXES = {"log": "log_", "log1p": "log1p_"}


@dataclass(frozen=True)
class Variable:
    """One network input: its name, the dump field it is computed from, and how."""

    name: str
    field: str
    transform: str | None  # None or a key of PREFIXES

    def compute(self, values: np.ndarray) -> np.ndarray:
        """The raw-unit input (float64) from the field's values."""
        x = np.asarray(values, dtype=np.float64)
        if self.transform == "log":
            ok = x > 0
            return np.where(ok, np.log(np.where(ok, x, 1.0)), np.nan)
        if self.transform == "log1p":
            ok = x > -1
            return np.where(ok, np.log1p(np.where(ok, x, 0.0)), np.nan)
        return x


def variable(field: str, transform: str | None = None) -> Variable:
    """The input computed from dump ``field`` with ``transform`` (None, "log", "log1p")."""
    if transform is None:
        return Variable(field, field, None)
    return Variable(f"{PREFIXES[transform]}{field}", field, transform)


def resolve(name: str, fields: Sequence[str], path: object = None) -> Variable:
    """The input called ``name`` among dump ``fields``: the field itself, ``log_<field>`` or
    ``log1p_<field>``."""
    if name in fields:
        return Variable(name, name, None)
    for transform, prefix in PREFIXES.items():
        if name.startswith(prefix) and name[len(prefix) :] in fields:
            return Variable(name, name[len(prefix) :], transform)
    raise FlavourflowError("missing variable (not a field, nor log_ or log1p_ of one)",
                           path=path, field=name)


def jet_matrix(block: np.ndarray, variables: Sequence[Variable]) -> np.ndarray:
    """[n_jets, n_vars] float64 raw inputs from a block of the dump's `jets` rows."""
    if not variables:
        return np.zeros((len(block), 0))
    return np.stack([v.compute(block[v.field]) for v in variables], axis=1)


def track_tensor(block: np.ndarray, variables: Sequence[Variable], max_tracks: int,
                 dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """``(values [n, T, n_vars], valid [n, T] bool)`` from a block of `tracks` rows
    (T = ``max_tracks``; fewer columns in the dump are padded as invalid; padded steps NaN)."""
    block = block[:, :max_tracks]
    n, have = block.shape
    valid = np.zeros((n, max_tracks), dtype=bool)
    valid[:, :have] = block[VALID_FIELD]
    values = np.empty((n, max_tracks, len(variables)), dtype=dtype)
    values[:, have:] = np.nan
    for k, v in enumerate(variables):
        values[:, :have, k] = v.compute(block[v.field])
    values[~valid] = np.nan
    return values, valid


def fill_defaults(values: np.ndarray, valid: np.ndarray | None,
                  defaults: np.ndarray) -> np.ndarray:
    """Non-finite values (of valid steps, for a sequence) replaced by each variable's default;
    padded steps are left as they are."""
    bad = ~np.isfinite(values)
    if valid is not None:
        bad &= valid[..., None]
    return np.where(bad, defaults, values)


def node_variables(spec: Mapping, fields: Sequence[str], path: object = None) -> list[Variable]:
    """The variables of one variables.json / network.json input node, resolved in ``fields``."""
    return [resolve(str(v["name"]), fields, path) for v in spec.get("variables", [])]


def lwtnn_inputs(jets: np.ndarray, tracks: np.ndarray | None, variables: Mapping,
                 path: object = None) -> tuple[dict, dict]:
    """The ``(inputs, sequences)`` arguments of ``LightweightGraph.compute`` for a block of
    dump rows, from a variables.json (or network.json) description of the input nodes.

    Scalar inputs keep their NaN (``compute(replace_nan=True)`` replaces them, as ATLAS does);
    NaN in valid steps of sequences is replaced here by the variable's default.
    """
    inputs = {}
    for spec in variables.get("inputs") or []:
        inputs[spec["name"]] = jet_matrix(jets, node_variables(spec, jets.dtype.names, path))
    sequences = {}
    for spec in variables.get("input_sequences") or []:
        if tracks is None:
            raise FlavourflowError("no track dataset for sequence input", path=path,
                                   field=spec["name"])
        max_tracks = int(spec.get("max_tracks", tracks.shape[1]))
        values, valid = track_tensor(tracks, node_variables(spec, tracks.dtype.names, path),
                                     max_tracks)
        defaults = np.array([float(v.get("default", np.nan)) for v in spec["variables"]])
        sequences[spec["name"]] = (fill_defaults(values, valid, defaults), valid)
    return inputs, sequences
