"""Concatenate TDD-layout files block by block (bounded memory), keeping provenance."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from flavourflow.core.errors import FlavourflowError
from flavourflow.core.outputs import atomic_path
from flavourflow.dump.h5 import TDDWriter

log = logging.getLogger(__name__)

DATASETS = ("jets", "tracks")


def _check_compatible(sources: Sequence[Path]) -> None:
    reference: dict[str, tuple] = {}
    for path in sources:
        with h5py.File(path, "r") as f:
            for name in DATASETS:
                if name not in f:
                    raise FlavourflowError("missing dataset", path=path, field=name)
                layout = (f[name].dtype, f[name].shape[1:])
                if reference.setdefault(name, layout) != layout:
                    raise FlavourflowError(
                        f"layout {layout} differs from the first file's {reference[name]}",
                        path=path, field=name,
                    )


def parse_window(text: str) -> tuple[float, float]:
    """``"LOW:HIGH"`` (MeV, HIGH may be ``inf``) -> (low, high)."""
    low, _, high = text.partition(":")
    return float(low), float(high)


def run(sources: Sequence[Path], output: Path, block_size: int = 100_000,
        compression: str = "lzf",
        pt_windows: Sequence[tuple[float, float]] | None = None) -> int:
    """Concatenate ``sources`` in the given order into ``output``; return the jet count.

    With ``pt_windows`` (one (low, high) per source), only the jets of each source with
    low <= pT < high are kept: a hybrid sample, e.g. ttbar below 250 GeV and Z' above.
    """
    if pt_windows is not None and len(pt_windows) != len(sources):
        raise FlavourflowError(f"{len(pt_windows)} pT windows for {len(sources)} inputs",
                               field="pt_windows")
    _check_compatible(sources)
    provenance = []
    with atomic_path(output) as tmp:
        writer = TDDWriter(tmp, compression)
        try:
            for k, path in enumerate(sources):
                low, high = pt_windows[k] if pt_windows is not None else (-np.inf, np.inf)
                with h5py.File(path, "r") as f:
                    n = len(f["jets"])
                    kept = 0
                    for start in range(0, n, block_size):
                        stop = min(start + block_size, n)
                        jets, tracks = f["jets"][start:stop], f["tracks"][start:stop]
                        if pt_windows is not None:
                            keep = (jets["pt"] >= low) & (jets["pt"] < high)
                            jets, tracks = jets[keep], tracks[keep]
                        writer.append(jets, tracks)
                        kept += len(jets)
                    attrs = dict(f.attrs)
                provenance.append({"file": str(path), "n_jets": kept,
                                   "pt_window": None if pt_windows is None else
                                   [low, high if np.isfinite(high) else None],
                                   # a merged input (hybrid) carries its own provenance
                                   "source_files": json.loads(attrs.get("source_files")
                                                              or attrs.get("merged_from", "[]"))})
            writer.attrs(
                merged_from=provenance,
                selection=json.loads(attrs.get("selection", "{}")),
                schema=str(attrs.get("schema", "")),
            )
        finally:
            writer.close()
    log.info("merged %d files, %d jets -> %s", len(sources), writer.n, output)
    return writer.n
