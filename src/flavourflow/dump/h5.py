"""Appending writer for the TDD layout: 1-D compound `jets`, 2-D compound `tracks`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from flavourflow import __version__
from flavourflow.dump import lzf
from flavourflow.dump.blocks import filled

#: Elements per HDF5 chunk; a `tracks` chunk always holds whole jets.
CHUNK_ELEMENTS = 4096
#: h5py's built-in filters: lzf, gzip (level 4) or gzip-<level>, or none.
COMPRESSIONS = ("lzf", "gzip", *(f"gzip-{level}" for level in range(1, 10)), "none")
#: Chosen by benchmarks/bench_compression.py: lzf writes fastest of the filters that
#: compress, and the byte shuffle, which helps homogeneous arrays, makes these compound rows
#: (4-, 1- and 8-byte fields mixed) both slower and larger. With lzf, `tracks` chunks are
#: encoded by :mod:`flavourflow.dump.lzf` (padding as back-references): twice h5py's write
#: speed, the same reads, slightly smaller files.
DEFAULT_COMPRESSION = "lzf"
DEFAULT_SHUFFLE = False


def filter_options(compression: str, shuffle: bool = DEFAULT_SHUFFLE) -> dict[str, object]:
    """h5py create_dataset keywords of a compression name."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
    if compression == "none":
        return {"compression": None, "shuffle": False}
    name, _, level = compression.partition("-")
    return {"compression": name, "compression_opts": int(level) if level else None,
            "shuffle": shuffle}


def _valid_prefix(tracks: np.ndarray) -> np.ndarray:
    """Per jet, the number of rows before its padding (`valid` rows come first)."""
    valid = tracks["valid"]
    if valid.shape[1] > 1 and (valid[:, 1:] & ~valid[:, :-1]).any():
        raise ValueError("a track row after a padding row: rows must be tracks, then padding")
    return valid.sum(axis=1)


class TDDWriter:
    """Create `jets` (and optionally `tracks`) as resizable, chunked, compressed datasets and
    append blocks to them."""

    def __init__(self, path: Path, compression: str = DEFAULT_COMPRESSION,
                 shuffle: bool = DEFAULT_SHUFFLE, padding_encoder: bool = True) -> None:
        self.filters = filter_options(compression, shuffle)
        self.compression = compression
        #: lzf without shuffle: `tracks` chunks encoded by flavourflow.dump.lzf
        self.padding_encoder = padding_encoder and compression == "lzf" and not shuffle
        self.file = h5py.File(path, "w")
        self.n = 0
        self.track_writer: lzf.ChunkWriter | None = None

    def _dataset(self, name: str, block: np.ndarray) -> h5py.Dataset:
        if name in self.file:
            return self.file[name]
        return self.file.create_dataset(
            name,
            shape=(0, *block.shape[1:]),
            maxshape=(None, *block.shape[1:]),
            dtype=block.dtype,
            chunks=(max(1, CHUNK_ELEMENTS // int(np.prod(block.shape[1:]))), *block.shape[1:]),
            **self.filters,
        )

    def append(self, jets: np.ndarray, tracks: np.ndarray | None = None) -> None:
        """Append a block of jets (and their tracks, same number of rows)."""
        blocks = {"jets": jets} if tracks is None else {"jets": jets, "tracks": tracks}
        for name, block in blocks.items():
            ds = self._dataset(name, block)
            if name == "tracks" and self.padding_encoder and lzf.supported(
                    block.dtype.itemsize):
                if self.track_writer is None:
                    self.track_writer = lzf.ChunkWriter(ds, filled(1, block.dtype))
                self.track_writer.append(block, _valid_prefix(block))
                continue
            ds.resize(self.n + len(block), axis=0)
            ds[self.n :] = block
        self.n += len(jets)

    def attrs(self, **attrs: Any) -> None:
        """Provenance attributes on the file root; non-scalars are stored as JSON text."""
        self.file.attrs["flavourflow_version"] = __version__
        self.file.attrs["compression"] = self.compression
        for key, value in attrs.items():
            is_scalar = isinstance(value, (str, int, float))
            self.file.attrs[key] = value if is_scalar else json.dumps(value)

    def close(self) -> None:
        if self.track_writer is not None:
            self.track_writer.close()
        self.file.close()
