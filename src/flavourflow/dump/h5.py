"""Appending writer for the TDD layout: 1-D compound `jets`, 2-D compound `tracks`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from flavourflow import __version__
from flavourflow.dump import lzf
from flavourflow.dump.blocks import filled

#: Elements per HDF5 chunk of `jets` (rows) and of `tracks` (whole jets: 409 of 40 tracks,
#: 0.9 MB raw, within h5py's 1 MiB chunk cache). Every chunk written is a call that gives the
#: GIL to the reading thread and takes it back: 16384 makes 4x fewer than 4096 did, files
#: 0.2 % smaller, reads as fast or faster (batches of 100 to 10 000 jets, PHYSLITE dump).
CHUNK_ELEMENTS = 4096
TRACK_CHUNK_ELEMENTS = 16384
#: h5py's built-in filters: lzf, gzip (level 4) or gzip-<level>, or none.
COMPRESSIONS = ("lzf", "gzip", *(f"gzip-{level}" for level in range(1, 10)), "none")
#: Chosen by benchmarks/bench_compression.py: lzf writes fastest of the filters that
#: compress, and the byte shuffle, which helps homogeneous arrays, makes these compound rows
#: (4-, 1- and 8-byte fields mixed) both slower and larger. With lzf, flavourflow encodes the
#: chunks itself (:mod:`flavourflow.dump.lzf`; `tracks`: padding as back-references, `jets`:
#: repeats one row back): 5-8 times h5py's write speed, the same reads, files within 1 % of
#: h5py's size.
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


def _concatenate(parts: list[np.ndarray]) -> np.ndarray:
    """``np.concatenate`` of arrays of one structured dtype, copied as raw rows (twenty times
    faster than numpy's field-by-field copy of records)."""
    dtype = parts[0].dtype
    raw = np.dtype((np.void, dtype.itemsize))
    return np.concatenate([p.view(raw) for p in parts]).view(dtype)


class ChunkAppender:
    """Appends rows to a chunked dataset whole chunks at a time, so that each chunk is
    compressed once (an append that ends inside a chunk would have it read back,
    decompressed and compressed again by the next). Rows short of a chunk wait for the next
    append or for :meth:`close`.

    With ``encode`` (rows of a whole number of chunks -> each chunk's stream, None to store it
    raw), the chunks are written as they are with ``write_direct_chunk``, and :meth:`close`
    completes the last one with copies of ``fill`` (a row; the last row if not given) beyond
    the dataset's extent, never read. Without it, the dataset's own filter compresses them."""

    def __init__(self, dataset: h5py.Dataset,
                 encode: Callable[[np.ndarray], list[bytes | memoryview | None]] | None = None,
                 fill: np.ndarray | None = None) -> None:
        self.dataset = dataset
        self.rows = dataset.chunks[0]
        self.encode = encode
        self.fill = fill
        self.pending = np.empty((0, *dataset.shape[1:]), dtype=dataset.dtype)
        self.written = 0  # rows in complete chunks on disk

    def append(self, block: np.ndarray) -> None:
        self.dataset.resize(self.written + len(self.pending) + len(block), axis=0)
        if len(self.pending):  # complete the waiting chunk first (copies one chunk at most)
            need = self.rows - len(self.pending)
            head, block = _concatenate([self.pending, block[:need]]), block[need:]
            if len(head) < self.rows:
                self.pending = head
                return
            self._write(head)
        whole = len(block) - len(block) % self.rows
        if whole:
            self._write(block[:whole])
        self.pending = _concatenate([block[whole:]])

    def close(self) -> None:
        if not len(self.pending):
            return
        if self.encode is None:
            self._write(self.pending)
        else:
            fill = self.pending[-1] if self.fill is None else self.fill
            self._write(_concatenate([self.pending, np.broadcast_to(
                fill, (self.rows - len(self.pending), *fill.shape))]))
        self.pending = self.pending[:0]

    def _write(self, rows: np.ndarray) -> None:
        if self.encode is None:
            self.dataset[self.written:self.written + len(rows)] = rows
            self.written += len(rows)
            return
        tail = (0,) * (rows.ndim - 1)
        for k, data in enumerate(self.encode(rows)):
            offset = (self.written, *tail)
            if data is None:  # incompressible: stored with the filter marked as skipped
                chunk = np.ascontiguousarray(rows[k * self.rows:(k + 1) * self.rows])
                self.dataset.id.write_direct_chunk(offset, chunk.tobytes(), filter_mask=1)
            else:
                self.dataset.id.write_direct_chunk(offset, data)
            self.written += self.rows


class TDDWriter:
    """Create `jets` (and optionally `tracks`) as resizable, chunked, compressed datasets and
    append blocks to them."""

    def __init__(self, path: Path, compression: str = DEFAULT_COMPRESSION,
                 shuffle: bool = DEFAULT_SHUFFLE, padding_encoder: bool = True) -> None:
        self.filters = filter_options(compression, shuffle)
        self.compression = compression
        #: lzf without shuffle: chunks encoded by flavourflow.dump.lzf
        self.padding_encoder = padding_encoder and compression == "lzf" and not shuffle
        self.file = h5py.File(path, "w")
        self.n = 0
        self.writers: dict[str, ChunkAppender] = {}

    def _writer(self, name: str, block: np.ndarray) -> ChunkAppender:
        if name not in self.writers:
            ds = self._create(name, block)
            row = block.dtype.itemsize
            per_chunk = ds.chunks[0]
            if self.padding_encoder and name == "tracks" and lzf.supported(row):
                self.writers[name] = ChunkAppender(
                    ds, lambda rows: lzf.encode_tracks(rows, per_chunk),
                    fill=filled(block.shape[1:], block.dtype))
            elif self.padding_encoder and block.ndim == 1 and lzf.rows_supported(row):
                self.writers[name] = ChunkAppender(
                    ds, lambda rows: lzf.encode_rows(rows, per_chunk))
            else:
                self.writers[name] = ChunkAppender(ds)
        return self.writers[name]

    def _create(self, name: str, block: np.ndarray) -> h5py.Dataset:
        return self.file.create_dataset(
            name,
            shape=(0, *block.shape[1:]),
            maxshape=(None, *block.shape[1:]),
            dtype=block.dtype,
            chunks=(max(1, (CHUNK_ELEMENTS if block.ndim == 1 else TRACK_CHUNK_ELEMENTS)
                        // int(np.prod(block.shape[1:]))), *block.shape[1:]),
            **self.filters,
        )

    def append(self, jets: np.ndarray, tracks: np.ndarray | None = None) -> None:
        """Append a block of jets (and their tracks, same number of rows)."""
        blocks = {"jets": jets} if tracks is None else {"jets": jets, "tracks": tracks}
        for name, block in blocks.items():
            self._writer(name, block).append(block)
        self.n += len(jets)

    def attrs(self, **attrs: Any) -> None:
        """Provenance attributes on the file root; non-scalars are stored as JSON text."""
        self.file.attrs["flavourflow_version"] = __version__
        self.file.attrs["compression"] = self.compression
        for key, value in attrs.items():
            is_scalar = isinstance(value, (str, int, float))
            self.file.attrs[key] = value if is_scalar else json.dumps(value)

    def close(self) -> None:
        """Flush the pending rows, then close the file even if a flush fails (an unclosed
        file would raise again when h5py deallocates it, as a traceback at exit)."""
        try:
            for writer in self.writers.values():
                writer.close()
        finally:
            self.file.close()
