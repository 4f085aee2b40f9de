"""The preprocess stage, in two streaming passes over the merged dump.

Pass 1 counts jets per split and accumulates the moments of every input on the training
split only. Pass 2 replaces NaN by each variable's default, normalises with the lwtnn
convention ``x_norm = (x + offset) * scale`` and writes the memmaps, each block shuffled.
Memory is bounded by the block size whatever the number of jets.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from numpy.lib.format import open_memmap

from flavourflow.core import split as splitting
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.flavours import CLASSES, LABEL_FIELD, class_index
from flavourflow.core.outputs import atomic_path, write_json
from flavourflow.preprocess.stats import RunningMoments

log = logging.getLogger(__name__)

#: Name of the scalar jet input node (and of the `<split>_jets.npy` memmaps).
JET_NODE = "jets"


@dataclass(frozen=True)
class Settings:
    """What the preprocess stage needs from the config."""

    variables: Sequence[str]
    fractions: Mapping[str, float]
    split_seed: int
    shuffle_seed: int
    block_size: int
    model_name: str


def read_blocks(path: Path, fields: Sequence[str], block_size: int) -> Iterator[np.ndarray]:
    """Yield consecutive blocks of the `jets` dataset holding only ``fields``."""
    with h5py.File(path, "r") as f:
        if "jets" not in f:
            raise FlavourflowError("missing dataset", path=path, field="jets")
        jets = f["jets"]
        for name in fields:
            if name not in jets.dtype.names:
                raise FlavourflowError("missing jet variable", path=path, field=name)
        for start in range(0, len(jets), block_size):
            yield jets.fields(list(fields))[start : start + block_size]


def _as_matrix(block: np.ndarray, names: Sequence[str]) -> np.ndarray:
    return np.stack([block[n].astype(np.float64) for n in names], axis=1)


def run(source: Path, outdir: Path, settings: Settings) -> dict:
    """Write ``<split>_{jets,labels,weights}.npy`` and ``variables.json`` under ``outdir``."""
    names = list(settings.variables)
    fields = [*names, "eventNumber", LABEL_FIELD]

    counts = dict.fromkeys(splitting.SPLITS, 0)
    moments = RunningMoments(len(names))
    for block in read_blocks(source, fields, settings.block_size):
        cls = class_index(block[LABEL_FIELD])
        which = splitting.assign(block["eventNumber"], settings.fractions, settings.split_seed)
        for i, name in enumerate(splitting.SPLITS):
            counts[name] += int(np.count_nonzero((which == i) & (cls >= 0)))
        moments.update(_as_matrix(block[(which == 0) & (cls >= 0)], names))

    for name, n in counts.items():
        if n == 0:
            raise FlavourflowError(f"the {name} split is empty", path=source, field="eventNumber")
    std = moments.std
    for i, name in enumerate(names):
        if not np.isfinite(std[i]) or std[i] == 0.0:
            raise FlavourflowError(
                f"variance on the training split is {std[i] ** 2} (needs to be finite and > 0)",
                path=source, field=name,
            )
    offset, scale, default = -moments.mean, 1.0 / std, moments.mean

    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(settings.shuffle_seed)
    filled = dict.fromkeys(splitting.SPLITS, 0)
    with _memmaps(outdir, counts, len(names)) as arrays:
        for block in read_blocks(source, fields, settings.block_size):
            cls = class_index(block[LABEL_FIELD])
            which = splitting.assign(block["eventNumber"], settings.fractions,
                                     settings.split_seed)
            for i, split in enumerate(splitting.SPLITS):
                rows = np.flatnonzero((which == i) & (cls >= 0))
                rows = rows[rng.permutation(len(rows))]
                x = _as_matrix(block[rows], names)
                x = np.where(np.isfinite(x), x, default)
                start, stop = filled[split], filled[split] + len(rows)
                arrays[f"{split}_jets"][start:stop] = (x + offset) * scale
                arrays[f"{split}_labels"][start:stop] = cls[rows]
                arrays[f"{split}_weights"][start:stop] = 1.0
                filled[split] = stop

    variables = {
        "inputs": [{
            "name": JET_NODE,
            "variables": [
                {"name": n, "offset": float(offset[i]), "scale": float(scale[i]),
                 "default": float(default[i])}
                for i, n in enumerate(names)
            ],
        }],
        "input_sequences": [],
        "outputs": [{"name": settings.model_name, "labels": [c.prob for c in CLASSES]}],
        "classes": [{"name": c.name, "label": c.label} for c in CLASSES],
        "split": {"fractions": dict(settings.fractions), "seed": settings.split_seed},
        "n_jets": counts,
        "source": str(source),
    }
    write_json(outdir / "variables.json", variables)
    log.info("preprocessed %s jets per split from %s", counts, source)
    return variables


@contextlib.contextmanager
def _memmaps(outdir: Path, counts: Mapping[str, int], n_vars: int) -> Iterator[dict]:
    """Open every memmap as a temporary file; all move into place only if the block succeeds."""
    specs = {}
    for split, n in counts.items():
        specs[f"{split}_jets"] = ((n, n_vars), np.float32)
        specs[f"{split}_labels"] = ((n,), np.int8)
        specs[f"{split}_weights"] = ((n,), np.float32)
    with contextlib.ExitStack() as stack:
        arrays = {}
        for key, (shape, dtype) in specs.items():
            tmp = stack.enter_context(atomic_path(outdir / f"{key}.npy"))
            arrays[key] = open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        yield arrays
        for array in arrays.values():
            array.flush()
