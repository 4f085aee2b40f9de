"""Concatenate TDD-layout files block by block (bounded memory), keeping provenance."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import h5py

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


def run(sources: Sequence[Path], output: Path, block_size: int = 100_000,
        compression: str = "lzf") -> int:
    """Concatenate ``sources`` in the given order into ``output``; return the jet count."""
    _check_compatible(sources)
    provenance = []
    with atomic_path(output) as tmp:
        writer = TDDWriter(tmp, compression)
        try:
            for path in sources:
                with h5py.File(path, "r") as f:
                    n = len(f["jets"])
                    for start in range(0, n, block_size):
                        stop = min(start + block_size, n)
                        writer.append(f["jets"][start:stop], f["tracks"][start:stop])
                    attrs = dict(f.attrs)
                provenance.append({"file": str(path), "n_jets": n,
                                   "source_files": json.loads(attrs.get("source_files", "[]"))})
            writer.attrs(
                merged_from=provenance,
                selection=json.loads(attrs.get("selection", "{}")),
                schema=str(attrs.get("schema", "")),
            )
        finally:
            writer.close()
    log.info("merged %d files, %d jets -> %s", len(sources), writer.n, output)
    return writer.n
