"""Merge the per-file TDD dumps of a sample, keeping provenance: a copy (concatenation block
by block, bounded memory) or an HDF5 virtual dataset (VDS) that maps the parts' rows in place.

Measured side by side in ``benchmarks/bench_merge.py``: the virtual merge takes no time and
no disk and reads back as fast, so it is the default. Its parts must stay where they are (a
missing part reads as fill values); ``layout="concat"`` makes a self-contained copy. A hybrid
sample (pT windows) filters jets, so it is always a copy.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from flavourflow.core import progress
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.h5files import open_h5
from flavourflow.core.outputs import atomic_path
from flavourflow.dump.h5 import TDDWriter

log = logging.getLogger(__name__)

DATASETS = ("jets", "tracks")


def _check_compatible(sources: Sequence[Path]) -> int:
    """Refuse sources whose datasets differ in layout; return their total number of jets."""
    reference: dict[str, tuple] = {}
    total = 0
    for path in sources:
        with open_h5(path) as f:
            for name in DATASETS:
                if name not in f:
                    raise FlavourflowError("missing dataset", path=path, field=name)
                layout = (f[name].dtype, f[name].shape[1:])
                if reference.setdefault(name, layout) != layout:
                    raise FlavourflowError(
                        f"layout {layout} differs from the first file's {reference[name]}",
                        path=path, field=name,
                    )
            total += len(f["jets"])
    return total


def parse_window(text: str) -> tuple[float, float]:
    """``"LOW:HIGH"`` (MeV, HIGH may be ``inf``) -> (low, high)."""
    low, _, high = text.partition(":")
    return float(low), float(high)


LAYOUTS = ("concat", "virtual")
DEFAULT_LAYOUT = "virtual"


def run(sources: Sequence[Path], output: Path, block_size: int = 100_000,
        compression: str = "lzf",
        pt_windows: Sequence[tuple[float, float]] | None = None,
        layout: str = DEFAULT_LAYOUT) -> int:
    """Merge ``sources`` in the given order into ``output``; return the jet count.

    ``layout`` "concat" copies the rows; "virtual" writes virtual datasets referring to the
    sources by paths relative to ``output`` (they must stay where they are). With
    ``pt_windows`` (one (low, high) per source), only the jets of each source with
    low <= pT < high are kept: a hybrid sample, e.g. ttbar below 250 GeV and Z' above.
    """
    if pt_windows is not None and len(pt_windows) != len(sources):
        raise FlavourflowError(f"{len(pt_windows)} pT windows for {len(sources)} inputs",
                               field="pt_windows")
    if layout not in LAYOUTS:
        raise FlavourflowError(f"unknown merge layout {layout!r}; known: {LAYOUTS}",
                               field="layout")
    n_jets = _check_compatible(sources)
    if layout == "virtual" and pt_windows is None:
        return _virtual(sources, output)
    provenance = []
    with atomic_path(output) as tmp, progress.bar(
            n_jets, f"merge {len(sources)} files -> {Path(output).name}", "jets") as done:
        writer = TDDWriter(tmp, compression)
        try:
            for k, path in enumerate(sources):
                low, high = pt_windows[k] if pt_windows is not None else (-np.inf, np.inf)
                with open_h5(path) as f:
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
                        done.update(stop - start)
                    attrs = dict(f.attrs)
                window = None if pt_windows is None else (low, high)
                provenance.append(_provenance(path, kept, window, attrs))
            writer.attrs(
                merged_from=provenance,
                selection=json.loads(attrs.get("selection", "{}")),
                schema=str(attrs.get("schema", "")),
                merge_layout="concat",
            )
        finally:
            writer.close()
    log.info("merged %d files, %d jets -> %s", len(sources), writer.n, output)
    return writer.n


def _provenance(path: Path, n_jets: int, window: tuple[float, float] | None,
                attrs: dict) -> dict:
    return {"file": str(path), "n_jets": n_jets,
            "pt_window": None if window is None else
            [window[0], window[1] if np.isfinite(window[1]) else None],
            # a merged input (hybrid) carries its own provenance
            "source_files": json.loads(attrs.get("source_files")
                                       or attrs.get("merged_from", "[]"))}


def _virtual(sources: Sequence[Path], output: Path) -> int:
    """Virtual `jets` and `tracks` datasets over the sources' rows, in order."""
    provenance, sizes, attrs = [], [], {}
    for path in sources:
        with open_h5(path) as f:
            sizes.append(len(f["jets"]))
            attrs = dict(f.attrs)
            shapes = {name: (f[name].shape[1:], f[name].dtype) for name in DATASETS}
        provenance.append(_provenance(path, sizes[-1], None, attrs))
    total = int(sum(sizes))
    output = Path(output)
    with atomic_path(output) as tmp, h5py.File(tmp, "w") as out:
        for name, (inner, dtype) in shapes.items():
            layout = h5py.VirtualLayout(shape=(total, *inner), dtype=dtype)
            start = 0
            for path, n in zip(sources, sizes, strict=True):
                # relative to the merged file's folder, where HDF5 looks for it
                relative = os.path.relpath(Path(path).resolve(), output.resolve().parent)
                layout[start:start + n] = h5py.VirtualSource(relative, name,
                                                             shape=(n, *inner))
                start += n
            out.create_virtual_dataset(name, layout)
        out.attrs["flavourflow_version"] = attrs.get("flavourflow_version", "")
        out.attrs["merged_from"] = json.dumps(provenance)
        out.attrs["merge_layout"] = "virtual"
        for key in ("selection", "schema", "compression"):
            if key in attrs:
                out.attrs[key] = attrs[key]
    log.info("merged %d files, %d jets -> %s (virtual)", len(sources), total, output)
    return total
