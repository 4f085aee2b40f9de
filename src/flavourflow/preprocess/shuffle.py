"""Shuffled memmap output in one streaming pass with bounded memory (a two-stage "external
shuffle", Rao 1961 / Sandelius 1962).

The output of a split (N rows, known beforehand) is cut into K buckets of at most
``bucket_rows`` contiguous rows. Stage 1, while streaming the input: each block's rows are
dealt to the buckets at random in proportion to the room left in each (a multivariate
hypergeometric draw, so every assignment of rows to slots is equally likely) and appended
to them as contiguous slices: writes go to K sequential streams, never to random rows.
Stage 2, in place: each bucket is read, permuted in memory and written back. The result is a
uniformly random permutation of all N rows (not just a shuffle within blocks), memory is one
block plus one bucket whatever N is, and training can then read contiguous batches.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap

#: Rows written at a time in stage 2 (bounds the permuted copy).
WRITE_ROWS = 8192


class RowFile:
    """A `.npy` file (header by numpy, so ``np.load(mmap_mode="r")`` reads it) written and read
    by contiguous row slices with ``pwrite``/``preadv`` instead of a memory map: the file's
    pages stay in the kernel's page cache, never in this process's resident memory, so peak
    RSS is the buffers of one block whatever the size of the output."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: type) -> None:
        header = open_memmap(path, mode="w+", dtype=dtype, shape=shape)  # sized, sparse
        self.offset = header.offset
        del header
        self.shape, self.dtype = shape, np.dtype(dtype)
        self.row_bytes = self.dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
        self.fd = os.open(path, os.O_RDWR)

    def __len__(self) -> int:
        return self.shape[0]

    def _span(self, rows: slice) -> tuple[int, int]:
        start, stop, step = rows.indices(self.shape[0])
        if step != 1:
            raise ValueError("only contiguous row slices")
        return start, max(start, stop)

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop = self._span(rows)
        out = np.empty((stop - start, *self.shape[1:]), dtype=self.dtype)
        view, position = memoryview(out.reshape(-1).view(np.uint8)), 0
        while position < len(view):
            got = os.preadv(self.fd, [view[position:]],
                            self.offset + start * self.row_bytes + position)
            if got <= 0:
                raise OSError(f"short read at row {start}")
            position += got
        return out

    def __setitem__(self, rows: slice, values: np.ndarray) -> None:
        start, stop = self._span(rows)
        data = np.ascontiguousarray(values, dtype=self.dtype)
        if data.shape != (stop - start, *self.shape[1:]):
            raise ValueError(f"{data.shape} rows for slots {start}:{stop}")
        view, position = memoryview(data.reshape(-1).view(np.uint8)), 0
        while position < len(view):
            position += os.pwrite(self.fd, view[position:],
                                  self.offset + start * self.row_bytes + position)

    def close(self) -> None:
        os.close(self.fd)


class BucketShuffler:
    """Where the rows of one split go; ``deal`` in stage 1, ``buckets`` in stage 2."""

    def __init__(self, n_rows: int, bucket_rows: int, rng: np.random.Generator) -> None:
        n_buckets = max(1, -(-n_rows // max(1, bucket_rows)))
        self.capacity = np.full(n_buckets, n_rows // n_buckets, dtype=np.int64)
        self.capacity[: n_rows % n_buckets] += 1
        self.start = np.concatenate([[0], np.cumsum(self.capacity)[:-1]])
        self.filled = np.zeros(n_buckets, dtype=np.int64)
        self.rng = rng

    @property
    def n_buckets(self) -> int:
        return len(self.capacity)

    def deal(self, n: int) -> Iterator[tuple[np.ndarray, slice]]:
        """For the next ``n`` input rows: ``(row indices, output slice)`` per bucket that
        receives some; the slices of one call are disjoint and fill the buckets in order."""
        room = self.capacity - self.filled
        if n > room.sum():
            raise ValueError(f"{n} rows dealt, only {room.sum()} slots left")
        if self.n_buckets == 1:
            counts = np.array([n])
        else:
            counts = self.rng.multivariate_hypergeometric(room, n)
        order = self.rng.permutation(n)
        first = 0
        for k in np.flatnonzero(counts):
            begin = int(self.start[k] + self.filled[k])
            yield order[first : first + counts[k]], slice(begin, begin + int(counts[k]))
            first += int(counts[k])
        self.filled += counts

    def complete(self) -> bool:
        return bool(np.all(self.filled == self.capacity))

    def buckets(self) -> Iterator[slice]:
        for begin, size in zip(self.start, self.capacity, strict=True):
            yield slice(int(begin), int(begin + size))


def permute_buckets(arrays: Mapping[str, np.ndarray], shuffler: BucketShuffler,
                    transform: Callable[[dict], dict] | None = None) -> None:
    """Stage 2: permute every bucket of ``arrays`` (same rows in each) in place;
    ``transform(blocks)`` may rewrite a bucket's rows (a dict like ``arrays``) on the way."""
    for rows in shuffler.buckets():
        perm = shuffler.rng.permutation(rows.stop - rows.start)
        blocks = {name: np.asarray(array[rows]) for name, array in arrays.items()}
        if transform is not None:
            blocks = transform(blocks)
        for name, array in arrays.items():
            for first in range(0, len(perm), WRITE_ROWS):  # the permuted copy, in pieces
                part = perm[first : first + WRITE_ROWS]
                array[rows.start + first : rows.start + first + len(part)] = blocks[name][part]
