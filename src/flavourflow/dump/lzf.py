"""LZF chunks of the dump's datasets, encoded without the general-purpose compressor.

Most of a TDD `tracks` chunk is padding: after each jet's tracks, rows that are all the same
bytes (floats NaN, ints -1, ``valid`` False). h5py's LZF filter compresses it well, but spends
much of the dump's time hashing it. :func:`encode_tracks` writes the LZF streams directly: a
jet's tracks become literal runs (real track values barely compress with LZF: by 12 % on our
samples), its padding a few back-references. :func:`encode_rows` does the same for `jets`,
looking for repeats one row back only (jets of one event share their event fields, absent
fields their NaN / -1 markers). The results are ordinary LZF streams, so the chunks are stored
under the dataset's LZF filter and every HDF5 reader with LZF (h5py, and so ftag, puma, UPP,
the TDD's C++) reads them unchanged. :class:`flavourflow.dump.h5.ChunkAppender` writes them
with ``write_direct_chunk``. They are kept because they pay: side by side with h5py's own LZF
filter, the whole dump of 100 000 PHYSLITE events took 2.9 s instead of 4.6 s (medians of 5
rounds, ``benchmarks/bench_dump.py --copies 1000 --repeat 5 --encoders``), files 0.3 % smaller.

The LZF format (liblzf): a control byte ``c < 32`` is followed by ``c + 1`` literal bytes;
otherwise ``c >> 5`` is the length - 2 of a copy (7: the next byte adds to it) and the low five
bits with the following byte give its distance - 1, back in the output written so far (a copy
may overlap what it writes: it then repeats it).
"""

from __future__ import annotations

import numpy as np

from flavourflow.dump.kernels import kernel

MAX_DISTANCE = 8192
MAX_COPY = 264
MAX_LITERALS = 32


def supported(row_bytes: int) -> bool:
    """Rows :func:`encode_tracks` handles: one back-reference copies a whole row."""
    return 3 <= row_bytes <= MAX_COPY


def rows_supported(row_bytes: int) -> bool:
    """Rows :func:`encode_rows` handles: a copy one row back must be within LZF's reach."""
    return 3 <= row_bytes <= MAX_DISTANCE


@kernel
def _literals(out: np.ndarray, o: int, raw: np.ndarray, start: int, stop: int) -> int:
    """raw[start:stop] as literal runs at out[o:]; returns the new end of out."""
    for done in range(start, stop, MAX_LITERALS):
        length = min(stop - done, MAX_LITERALS)
        out[o] = length - 1
        out[o + 1:o + 1 + length] = raw[done:done + length]
        o += 1 + length
    return o


@kernel
def _copy(out: np.ndarray, o: int, length: int, distance: int) -> int:
    """A back-reference of ``length`` bytes ``distance`` back at out[o:]; the new end."""
    code, dist = length - 2, distance - 1
    if code < 7:
        out[o] = (code << 5) | (dist >> 8)
        o += 1
    else:
        out[o], out[o + 1] = (7 << 5) | (dist >> 8), code - 7
        o += 2
    out[o] = dist & 0xFF
    return o + 1


@kernel
def _valid_prefix(tracks: np.ndarray, lengths: np.ndarray) -> None:
    for j in range(tracks.shape[0]):
        n = 0
        while n < tracks.shape[1] and tracks[j, n]["valid"]:
            n += 1
        for r in range(n + 1, tracks.shape[1]):
            if tracks[j, r]["valid"]:
                raise ValueError("a track row after a padding row: rows must be tracks, "
                                 "then padding")
        lengths[j] = n


def valid_prefix(tracks: np.ndarray) -> np.ndarray:
    """Per jet, the number of rows before its padding (`valid` rows come first)."""
    if tracks.ndim != 2 or tracks.dtype.fields.get("valid", (None,))[0] != np.bool_:
        raise ValueError(f"expected [jets, tracks] rows with a bool `valid`, got "
                         f"{tracks.shape} of {tracks.dtype}")
    lengths = np.empty(len(tracks), np.int64)
    _valid_prefix(np.ascontiguousarray(tracks), lengths)
    return lengths


@kernel
def _encode_tracks(raw: np.ndarray, width: int, row: int, lengths: np.ndarray,
                   jets_per_chunk: int, out: np.ndarray, ends: np.ndarray) -> None:
    o = 0
    group = MAX_COPY // row
    latest = -1  # the latest jet with padding
    for j in range(len(lengths)):
        tracked = lengths[j]
        padded = width - tracked
        # A jet's first padding row copies the last row of the latest padded jet before it
        # in the chunk, if there is one near enough; otherwise it is written out, as tracks
        # are. Its other padding rows copy the row before, up to `group` rows at a time.
        distance = (j * width + tracked - (latest + 1) * width + 1) * row
        far = padded > 0 and latest >= j - j % jets_per_chunk and distance <= MAX_DISTANCE
        literal_rows = tracked + (1 if padded > 0 and not far else 0)
        start = j * width * row
        o = _literals(out, o, raw, start, start + literal_rows * row)
        if far:
            o = _copy(out, o, row, distance)
        near = max(padded - 1, 0)
        while near > 0:
            rows = min(near, group)
            o = _copy(out, o, rows * row, row)
            near -= rows
        if padded > 0:
            latest = j
        if (j + 1) % jets_per_chunk == 0:
            ends[j // jets_per_chunk] = o


def encode_tracks(tracks: np.ndarray, jets_per_chunk: int) -> list[memoryview | None]:
    """The LZF streams of the chunks of ``tracks`` [n_jets, width] (a whole number of chunks of
    ``jets_per_chunk`` jets), each jet's tracks first, then padding (the same bytes in every
    padded row). None for a chunk whose stream would not be smaller than its raw bytes (store
    it unfiltered then)."""
    n_jets, width = tracks.shape
    row = tracks.dtype.itemsize
    if not supported(row) or jets_per_chunk < 1 or n_jets % jets_per_chunk:
        raise ValueError(f"cannot encode {n_jets} jets of rows of {row} bytes in chunks of "
                         f"{jets_per_chunk} jets")
    lengths = valid_prefix(tracks)
    raw = np.ascontiguousarray(tracks).view(np.uint8).reshape(-1)
    # bound: every row literal (+1 control byte per 32), and a copy per row
    out = np.empty(n_jets * (width * row + width * row // MAX_LITERALS + 1 + 3 * (width + 1)),
                   np.uint8)
    ends = np.empty(n_jets // jets_per_chunk, np.int64)
    _encode_tracks(raw, width, row, lengths, jets_per_chunk, out, ends)
    return _streams(out, ends, jets_per_chunk * width * row)


@kernel
def _encode_rows(raw: np.ndarray, row: int, rows_per_chunk: int, out: np.ndarray,
                 ends: np.ndarray) -> None:
    o = 0
    chunk_bytes = rows_per_chunk * row
    for c in range(len(ends)):
        base = c * chunk_bytes
        i = literal_start = 0
        while i < chunk_bytes:
            run = 0
            if i >= row:
                most = min(chunk_bytes - i, MAX_COPY)
                while run < most and raw[base + i + run] == raw[base + i + run - row]:
                    run += 1
            if run < 3:
                i += 1
                continue
            o = _literals(out, o, raw, base + literal_start, base + i)
            o = _copy(out, o, run, row)
            i += run
            literal_start = i
        ends[c] = _literals(out, o, raw, base + literal_start, base + chunk_bytes)
        o = ends[c]


def encode_rows(rows: np.ndarray, rows_per_chunk: int) -> list[memoryview | None]:
    """LZF streams of the chunks of a 1-D array (a whole number of chunks of
    ``rows_per_chunk`` rows) whose repeats are looked for one row back only: runs of the same
    bytes as the row before become copies, everything else literal runs. None for a chunk
    that would not shrink."""
    row = rows.dtype.itemsize
    if (rows.ndim != 1 or rows_per_chunk < 1 or len(rows) % rows_per_chunk
            or not rows_supported(row)):
        raise ValueError(f"cannot encode {rows.shape} rows of {row} bytes in chunks of "
                         f"{rows_per_chunk}")
    raw = np.ascontiguousarray(rows).view(np.uint8).reshape(-1)
    n_chunks = len(rows) // rows_per_chunk
    # bound: a copy (>= 3 bytes) is never longer than the control byte it may add
    out = np.empty(raw.nbytes + raw.nbytes // MAX_LITERALS + n_chunks + 1, np.uint8)
    ends = np.empty(n_chunks, np.int64)
    _encode_rows(raw, row, rows_per_chunk, out, ends)
    return _streams(out, ends, rows_per_chunk * row)


def _streams(out: np.ndarray, ends: np.ndarray, chunk_bytes: int) -> list[memoryview | None]:
    """The chunks' streams, one after the other in ``out`` up to ``ends``; None for a chunk
    whose stream would not be smaller than its ``chunk_bytes`` raw bytes."""
    starts = np.concatenate([[0], ends[:-1]])
    return [memoryview(out[a:b]) if b - a < chunk_bytes else None
            for a, b in zip(starts, ends, strict=True)]
