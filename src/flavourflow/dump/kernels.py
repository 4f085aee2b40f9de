"""The dump's compiled kernels (``_kernels.c``, built by ``pip install``), called through ctypes.

Each kernel gives the same bytes as its numpy reference (tests/test_kernels.py) and runs
without the GIL, so the read-ahead thread reads while it converts. Without a compiler the
build of the library is skipped and the dump uses the numpy references instead, as it does
when ``FLAVOURFLOW_KERNELS=numpy`` is set; the dump's provenance says which ran.
"""

from __future__ import annotations

import ctypes
import importlib.machinery
import logging
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
_P = ctypes.c_void_p
_I = ctypes.c_int64


def _candidates() -> list[Path]:
    """The built libraries, this interpreter's first: they hold plain C functions, so one
    built for another Python (a job's conda environment) serves as well."""
    own = [_HERE / f"_kernels{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES]
    others = sorted(p for p in _HERE.glob("_kernels*") if p.suffix in (".so", ".pyd"))
    return [p for p in dict.fromkeys(own + others) if p.exists()]


#: Each kernel's argument types (all return an int status).
_SIGNATURES = {
    "ff_build_tracks": [_I, _P, _P, _P, _P, _P, _P, _P, _I, _I, _P, _P, _P, _P, _P, _P, _P, _P,
                        _P, _P],
    "ff_ghost_tracks": [_I, _P, _P, _P, _P, _P, _I, _P, _P, _P, _P, ctypes.c_int32, _P, _P,
                        _P, _P, _P, _P, _P, _P, ctypes.c_int32, _P, _P, _P, _P],
    "ff_interleave": [_I, _I, _P, _P, _P, _I, _P],
    "ff_valid_prefix": [_P, _I, _I, _I, _I, _P],
    "ff_lzf_encode": [_P, _I, _I, _I, _P, _I, _P, _P],
    "ff_lzf_rows": [_P, _I, _I, _I, _P, _P],
}


def _load() -> ctypes.CDLL | None:
    """The first usable library; None (the numpy references run) if there is none, if
    FLAVOURFLOW_KERNELS=numpy, or if the source changed since it was built."""
    if os.environ.get("FLAVOURFLOW_KERNELS", "").lower() == "numpy":
        return None
    source = _HERE / "_kernels.c"
    for path in _candidates():
        if source.exists() and source.stat().st_mtime > path.stat().st_mtime:
            log.warning("%s is older than %s: the numpy references run (rebuild with "
                        "`pip install -e .`)", path.name, source.name)
            return None
        try:
            lib = ctypes.CDLL(str(path))
            for name, argtypes in _SIGNATURES.items():
                function = getattr(lib, name)
                function.argtypes, function.restype = argtypes, ctypes.c_int
        except (OSError, AttributeError) as err:  # another platform's, or an older build
            log.warning("cannot use %s (%s)", path.name, err)
            continue
        return lib
    return None


_LIB = _load()
#: Which implementation the dump runs: "c" or "numpy".
IMPLEMENTATION = "c" if _LIB is not None else "numpy"


def available() -> bool:
    """Whether the compiled kernels run (else the numpy references do)."""
    return _LIB is not None


def _ptr(array: np.ndarray) -> int:
    return array.ctypes.data


def _contiguous(array: np.ndarray, dtype: type) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=dtype)


def _columns(arrays: list[np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """float32 arrays as they are, others as float64; and their kinds (1: float32)."""
    columns = [_contiguous(x, np.float32 if np.asarray(x).dtype == np.float32 else np.float64)
               for x in arrays]
    return columns, np.array([c.dtype == np.float32 for c in columns], dtype=np.int32)


def _pointers(arrays: list[np.ndarray]) -> ctypes.Array:
    return (ctypes.c_void_p * len(arrays))(*map(_ptr, arrays))


def build_tracks(counts: np.ndarray, starts: np.ndarray, jet_pt: np.ndarray,
                 jet_eta: np.ndarray, jet_phi: np.ndarray, inputs: list[np.ndarray],
                 max_tracks: int, dtype: np.dtype, padding_row: np.ndarray,
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The padded tracks [n_jets, max_tracks] of ``dtype`` and the per-jet IP / SV baselines
    (see :func:`flavourflow.dump.blocks.build`); ``inputs`` in TRACK_INPUTS order, jet j's
    tracks at ``starts[j]`` in them. float32 inputs are read as they are, others as float64."""
    n = len(counts)
    counts = _contiguous(counts, np.int64)
    starts = _contiguous(starts, np.int64)
    jets = [_contiguous(x, np.float32) for x in (jet_pt, jet_eta, jet_phi)]
    columns, kinds = _columns(inputs)
    if n and (starts.min() < 0 or int((starts + counts).max()) > min(map(len, columns))):
        raise ValueError("track ranges beyond the inputs")
    offsets = np.array([dtype.fields[name][1] for name in dtype.names], dtype=np.int64)
    out = np.empty((n, max_tracks), dtype=dtype)
    results = {name: np.empty(n, np.float32)
               for name in ("ip2d_llr", "sv_sig", "sv_Lxy", "sv_mass", "sv_efrac")}
    results.update(sv_ntrk=np.empty(n, np.int32), sv_n2trk=np.empty(n, np.int32))
    padding = _contiguous(padding_row.view(np.uint8).reshape(-1), np.uint8)
    status = _LIB.ff_build_tracks(n, _ptr(counts), _ptr(starts), *map(_ptr, jets),
                                  _pointers(columns),
                                  _ptr(kinds), max_tracks, dtype.itemsize, _ptr(offsets),
                                  _ptr(padding), _ptr(out), *map(_ptr, results.values()))
    if status:
        raise MemoryError("ff_build_tracks: out of memory")
    return out, results


def ghost_tracks(links, event_of_jet: np.ndarray, keep: np.ndarray, cuts: dict[str, float],
                 ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, int]]:
    """:func:`flavourflow.dump.physlite._ghost_tracks_numpy`, compiled (``links``: a
    :class:`flavourflow.dump.physlite.GhostLinks`)."""
    n_jets = len(links.n_links)
    n_links, key, index, event_of_jet, n_tracks, track_first = (
        _contiguous(x, np.int64) for x in (links.n_links, links.key, links.index, event_of_jet,
                                           links.n_tracks, links.track_first))
    keep = _contiguous(keep, np.uint8)
    has_vz = "vz" in links.columns
    columns, kinds = _columns([links.columns[name] for name in
                               ("d0", "z0", "theta", "phi", "qOverP", "vz")[:5 + has_vz]])
    n_all = min(map(len, columns))
    vertex = [_contiguous(x, np.float64) for x in links.vertex]
    cov_values, cov_kinds = _columns([c[0] for c in links.covariance])
    cov_first, cov_len = ([_contiguous(c[k], np.int64) for c in links.covariance]
                          for k in (1, 2))
    if (len(event_of_jet) != n_jets or len(keep) != n_jets or len(key) != len(index)
            or int(n_links.sum()) != len(key) or len(n_tracks) != len(track_first)
            or any(len(v) != len(n_tracks) for v in vertex)
            or (n_jets and (event_of_jet.min() < 0 or event_of_jet.max() >= len(n_tracks)))
            or (len(n_tracks) and int((track_first + n_tracks).max()) > n_all)
            or any(len(f) < n_all or len(n) < n_all or (len(f) and int((f + n).max()) > len(v))
                   for v, f, n in zip(cov_values, cov_first, cov_len, strict=True))):
        raise ValueError("ghost links, jets, tracks and covariances do not fit together")
    cut_values = np.array([cuts[name] for name in ("pt_min", "abs_eta_max", "abs_d0_max",
                                                   "abs_z0SinTheta_max")], dtype=np.float64)
    # Every array handed to C is held by a name until the call returns: a temporary's buffer
    # would be freed before the kernel (which runs without the GIL) reads it, and reused by
    # the reading thread's next allocation.
    cov_element = np.array([c[3] for c in links.covariance], dtype=np.int64)
    out = np.empty((8, len(key)), np.float64)
    out_rows = list(out)
    counts = np.zeros(int(keep.sum()), np.int64)
    stats = np.zeros(3, np.int64)
    _LIB.ff_ghost_tracks(
        n_jets, _ptr(n_links), _ptr(keep), _ptr(event_of_jet), _ptr(key), _ptr(index),
        links.wanted_key, _ptr(n_tracks), _ptr(track_first), _pointers(columns), _ptr(kinds),
        int(has_vz), *map(_ptr, vertex), _pointers(cov_values), _ptr(cov_kinds),
        _pointers(cov_first), _pointers(cov_len),
        _ptr(cov_element), int(links.compressed), _ptr(cut_values), _pointers(out_rows),
        _ptr(counts),
        _ptr(stats))
    names = ("pt", "eta", "phi", "charge", "d0", "z0SinTheta", "d0Uncertainty",
             "z0SinThetaUncertainty")
    n = int(stats[2])  # the tracks written
    return (counts, {name: out[k, :n] for k, name in enumerate(names)},
            dict(zip(("ghost_links", "ghost_links_valid", "tracks_selected"), map(int, stats),
                     strict=True)))


def interleave(out: np.ndarray, columns: dict[str, np.ndarray]) -> None:
    """``out[name] = values`` for each column, in one call: numpy copies each field of the same
    dtype without the GIL, so a reader's twenty-odd fields took the GIL back twenty-odd
    times per block from the thread reading the next one (each time a wait of up to 5 ms)."""
    if not out.flags.c_contiguous or out.ndim != 1:
        raise ValueError("interleave needs a 1-D contiguous array of records")
    cols = [_contiguous(values, out.dtype[name]) for name, values in columns.items()]
    if any(c.shape != out.shape for c in cols):
        raise ValueError(f"columns of {[len(c) for c in cols]} values for {len(out)} records")
    sizes = np.array([c.itemsize for c in cols], dtype=np.int64)
    offsets = np.array([out.dtype.fields[name][1] for name in columns], dtype=np.int64)
    _LIB.ff_interleave(len(out), len(cols), _pointers(cols), _ptr(sizes), _ptr(out),
                       out.dtype.itemsize, _ptr(offsets))


def valid_prefix(tracks: np.ndarray) -> np.ndarray:
    """Per jet, the number of rows before its padding (see ``h5._valid_prefix``)."""
    tracks = np.ascontiguousarray(tracks)
    n, width = tracks.shape
    lengths = np.empty(n, dtype=np.int64)
    if _LIB.ff_valid_prefix(_ptr(tracks), n, width, tracks.dtype.itemsize,
                            tracks.dtype.fields["valid"][1], _ptr(lengths)):
        raise ValueError("a track row after a padding row: rows must be tracks, then padding")
    return lengths


def lzf_encode(tracks: np.ndarray, lengths: np.ndarray, jets_per_chunk: int,
               ) -> list[memoryview | None]:
    """:func:`flavourflow.dump.lzf.encode_chunks`, compiled."""
    tracks = np.ascontiguousarray(tracks)
    n, width = tracks.shape
    row = tracks.dtype.itemsize
    lengths = _contiguous(lengths, np.int64)
    chunk_bytes = jets_per_chunk * width * row
    # bound: literal runs of every row (+1 control byte per 32) and a copy per row
    out = np.empty(n * (width * row + width * row // 32 + 1 + 3 * (width + 1)), np.uint8)
    ends = np.empty(n // jets_per_chunk, dtype=np.int64)
    _LIB.ff_lzf_encode(_ptr(tracks), n, width, row, _ptr(lengths), jets_per_chunk, _ptr(out),
                       _ptr(ends))
    return _streams(out, ends, chunk_bytes)


def rows_supported(row_bytes: int) -> bool:
    """Rows :func:`lzf_rows` handles: a copy one row back must be within LZF's reach."""
    return 3 <= row_bytes <= 8192


def lzf_rows(rows: np.ndarray, rows_per_chunk: int) -> list[memoryview | None]:
    """LZF streams of the chunks of a 1-D array (a whole number of chunks of
    ``rows_per_chunk`` rows) whose repeats are looked for one row back only (see
    ``ff_lzf_rows``); None for a chunk that would not shrink."""
    rows = np.ascontiguousarray(rows)
    row = rows.dtype.itemsize
    if len(rows) % rows_per_chunk or not rows_supported(row):
        raise ValueError(f"cannot encode {len(rows)} rows of {row} bytes in chunks of "
                         f"{rows_per_chunk}")
    n_chunks = len(rows) // rows_per_chunk
    out = np.empty(rows.nbytes + rows.nbytes // 32 + n_chunks + 1, np.uint8)
    ends = np.empty(n_chunks, dtype=np.int64)
    _LIB.ff_lzf_rows(_ptr(rows), len(rows), row, rows_per_chunk, _ptr(out), _ptr(ends))
    return _streams(out, ends, rows_per_chunk * row)


def _streams(out: np.ndarray, ends: np.ndarray, chunk_bytes: int) -> list[memoryview | None]:
    """The chunks' streams, one after the other in ``out`` up to ``ends``; None for a chunk
    whose stream would not be smaller than its ``chunk_bytes`` raw bytes."""
    starts = np.concatenate([[0], ends[:-1]])
    return [memoryview(out[a:b]) if b - a < chunk_bytes else None
            for a, b in zip(starts, ends, strict=True)]
