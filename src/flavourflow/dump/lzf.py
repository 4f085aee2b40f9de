"""LZF chunks of padded track arrays, encoded without the general-purpose compressor.

Most of a TDD `tracks` chunk is padding: after each jet's tracks, rows that are all the same
bytes (floats NaN, ints -1, ``valid`` False). h5py's LZF filter compresses it well, but spends
most of the dump's time hashing it. :func:`encode_chunks` writes the LZF streams directly,
vectorised over whole chunks: a jet's tracks become literal runs (real track values barely
compress with LZF: by 12 % on our samples), its padding a few back-references. The result is
an ordinary LZF stream, so the chunks are stored under the dataset's LZF filter and every
HDF5 reader with LZF (h5py, and so ftag, puma, UPP) reads them unchanged.
:class:`flavourflow.dump.h5.ChunkAppender` writes them with ``write_direct_chunk``.

The LZF format (liblzf): a control byte ``c < 32`` is followed by ``c + 1`` literal bytes;
otherwise ``c >> 5`` is the length - 2 of a copy (7: the next byte adds to it) and the low five
bits with the following byte give its distance - 1, back in the output written so far (a copy
may overlap what it writes: it then repeats it).
"""

from __future__ import annotations

import numpy as np

from flavourflow.dump import kernels

MAX_DISTANCE = 8192
MAX_COPY = 264
MAX_LITERALS = 32


def supported(row_bytes: int) -> bool:
    """Rows this encoder handles: one back-reference copies a whole row."""
    return 3 <= row_bytes <= MAX_COPY


def _copy_size(length: np.ndarray) -> np.ndarray:
    return np.where(length - 2 < 7, 2, 3)


def _put_copies(out: np.ndarray, control: np.ndarray, at: np.ndarray, length: np.ndarray,
                distance: np.ndarray) -> None:
    code, off = length - 2, distance - 1
    long = code >= 7
    for where, values in ((at, (np.minimum(code, 7) << 5) | (off >> 8)),
                          (at[long] + 1, code[long] - 7),
                          (at + np.where(long, 2, 1), off & 0xFF)):
        control[where] = True
        out[where] = values


def encode_chunks(tracks: np.ndarray, lengths: np.ndarray, jets_per_chunk: int,
                  ) -> list[bytes | memoryview | None]:
    """The LZF streams of the chunks of ``tracks`` [n_jets, width] (a whole number of chunks of
    ``jets_per_chunk`` jets), where row i of jet j is a track for i < ``lengths[j]`` and
    padding (the same bytes in every padded row) after it. None for a chunk whose stream would
    not be smaller than its raw bytes (store it unfiltered then)."""
    n_jets, width = tracks.shape
    row = tracks.dtype.itemsize
    if not supported(row) or n_jets % jets_per_chunk:
        raise ValueError(f"cannot encode {n_jets} jets of rows of {row} bytes in chunks of "
                         f"{jets_per_chunk} jets")
    if kernels.available():
        return kernels.lzf_encode(tracks, lengths, jets_per_chunk)
    return encode_chunks_numpy(tracks, lengths, jets_per_chunk)


def encode_chunks_numpy(tracks: np.ndarray, lengths: np.ndarray, jets_per_chunk: int,
                        ) -> list[bytes | None]:
    """The numpy reference of :func:`encode_chunks` (and of its compiled kernel)."""
    n_jets, width = tracks.shape
    row = tracks.dtype.itemsize
    raw = np.ascontiguousarray(tracks).view(np.uint8).reshape(n_jets, width, row)
    jet = np.arange(n_jets)
    tracked = np.asarray(lengths, dtype=np.int64)
    padded = width - tracked
    # A jet's first padding row copies the last row of the latest padded jet before it in the
    # chunk, if there is one near enough; otherwise it is written out, as tracks are. Its
    # other padding rows copy the row before, up to `group` rows at a time.
    latest = np.maximum.accumulate(np.where(padded > 0, jet, -1))
    before = np.concatenate([[-1], latest[:-1]])
    distance = (jet * width + tracked - (before + 1) * width + 1) * row
    far = ((padded > 0) & (before >= jet - jet % jets_per_chunk)
           & (distance <= MAX_DISTANCE))
    literal_rows = tracked + ((padded > 0) & ~far)
    literal_bytes = literal_rows * row
    pieces = -(-literal_bytes // MAX_LITERALS)
    group = MAX_COPY // row
    near = np.maximum(padded - 1, 0)
    copies = -(-near // group)
    last_copy = (near - group * (copies - 1)) * row
    full_size = int(_copy_size(np.array(group * row)))
    far_size = int(_copy_size(np.array(row)))
    size = (literal_bytes + pieces + far * far_size
            + np.maximum(copies - 1, 0) * full_size
            + np.where(copies > 0, _copy_size(last_copy), 0))
    end = np.cumsum(size)
    start = end - size
    out = np.empty(int(end[-1]) if n_jets else 0, dtype=np.uint8)
    control = np.zeros(len(out), dtype=bool)

    # Literal runs: a control byte before every 32 bytes.
    owner = np.repeat(jet, pieces)
    piece = np.arange(len(owner)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    at = start[owner] + (MAX_LITERALS + 1) * piece
    control[at] = True
    out[at] = np.minimum(MAX_LITERALS, literal_bytes[owner] - MAX_LITERALS * piece) - 1
    # Back-references after them: the far copy, then the near ones.
    after = start + literal_bytes + pieces
    _put_copies(out, control, after[far], np.full(int(far.sum()), row), distance[far])
    owner = np.repeat(jet, copies)
    k = np.arange(len(owner)) - np.repeat(np.cumsum(copies) - copies, copies)
    last = k == copies[owner] - 1
    _put_copies(out, control,
                after[owner] + far[owner] * far_size + k * full_size,
                np.where(last, last_copy[owner], group * row), np.full(len(owner), row))
    out[~control] = raw[np.arange(width) < literal_rows[:, None]].reshape(-1)

    bounds = np.concatenate([[0], end[jets_per_chunk - 1::jets_per_chunk]])
    raw_size = jets_per_chunk * width * row
    return [out[a:b].tobytes() if b - a < raw_size else None
            for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
