"""The preprocess stage's per-element loops, compiled by numba (one pass over the data where
numpy makes several, with float64 temporaries; same arithmetic, so the same bytes).

They take numpy arrays of checked shapes (every index checked), run without the GIL, and
are cached next to the module like the dump's kernels.
"""

from __future__ import annotations

import numba
import numpy as np

kernel = numba.njit(nogil=True, cache=True, boundscheck=True, error_model="numpy")


@kernel
def _normalise_rows(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> None:
    for i in range(x.shape[0]):
        for k in range(x.shape[1]):
            value = np.float64(x[i, k])
            if not np.isfinite(value):
                value = mean[k]
            x[i, k] = np.float32((value - mean[k]) * scale[k])


@kernel
def _normalise_steps(x: np.ndarray, valid: np.ndarray, mean: np.ndarray,
                     scale: np.ndarray) -> None:
    for i in range(x.shape[0]):
        for t in range(x.shape[1]):
            if not valid[i, t]:
                x[i, t, :] = 0.0
                continue
            for k in range(x.shape[2]):
                value = np.float64(x[i, t, k])
                if not np.isfinite(value):
                    value = mean[k]
                x[i, t, k] = np.float32((value - mean[k]) * scale[k])


def normalise(x: np.ndarray, mean: np.ndarray, scale: np.ndarray,
              valid: np.ndarray | None = None) -> np.ndarray:
    """In place (float32 ``x``: [rows, vars], or [rows, steps, vars] with ``valid``
    [rows, steps]): non-finite values (of valid steps) -> the mean, then
    ``(x - mean) * scale`` in float64, rounded to float32; padded steps -> 0."""
    mean = np.ascontiguousarray(mean, dtype=np.float64)
    scale = np.ascontiguousarray(scale, dtype=np.float64)
    if x.dtype != np.float32 or x.shape[-1] != len(mean) or len(scale) != len(mean):
        raise ValueError(f"{x.dtype} {x.shape} inputs for {len(mean)} means")
    if valid is None:
        _normalise_rows(x.reshape(len(x), -1), mean, scale)
    else:
        if valid.shape != x.shape[:2]:
            raise ValueError(f"mask {valid.shape} for steps {x.shape[:2]}")
        _normalise_steps(x, valid, mean, scale)
    return x


@kernel
def _gather_steps(out: np.ndarray, k: int, values: np.ndarray, valid: np.ndarray,
                  rows: np.ndarray) -> None:
    have = values.shape[1]
    for j in range(rows.shape[0]):
        r = rows[j]
        for t in range(have):
            out[j, t, k] = np.float32(np.float64(values[r, t])) if valid[r, t] else np.nan
        for t in range(have, out.shape[1]):
            out[j, t, k] = np.nan


@kernel
def _gather_valid(out: np.ndarray, valid: np.ndarray, rows: np.ndarray) -> None:
    have = valid.shape[1]
    for j in range(rows.shape[0]):
        for t in range(have):
            out[j, t] = valid[rows[j], t]
        for t in range(have, out.shape[1]):
            out[j, t] = False


def gather_steps(columns: list[np.ndarray], valid: np.ndarray, rows: np.ndarray,
                 max_tracks: int) -> tuple[np.ndarray, np.ndarray]:
    """``(values [len(rows), max_tracks, len(columns)] float32, valid [len(rows),
    max_tracks])`` of block rows ``rows`` (repeats allowed): each column [block rows, steps]
    (any numeric dtype, strided views welcome) converted through float64, NaN in padded
    steps and in steps beyond the block's."""
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    n, have = valid.shape
    if have > max_tracks or (len(rows) and (rows.min() < 0 or rows.max() >= n)):
        raise ValueError(f"rows or steps out of a block of {valid.shape}")
    values = np.empty((len(rows), max_tracks, len(columns)), dtype=np.float32)
    out_valid = np.empty((len(rows), max_tracks), dtype=np.bool_)
    for k, column in enumerate(columns):
        if column.shape != valid.shape:
            raise ValueError(f"column {k} has shape {column.shape}, the mask {valid.shape}")
        _gather_steps(values, k, column, valid, rows)
    _gather_valid(out_valid, valid, rows)
    return values, out_valid


@kernel
def _count_inf(values: np.ndarray) -> int:
    count = 0
    for i in range(values.shape[0]):
        for t in range(values.shape[1]):
            if np.isinf(values[i, t]):
                count += 1
    return count


def count_inf(values: np.ndarray) -> int:
    """Infinite values in ``values`` (any shape and strides; integers have none)."""
    if not np.issubdtype(values.dtype, np.floating):
        return 0
    return int(_count_inf(values.reshape(len(values), -1) if values.ndim != 2 else values))


@kernel
def _moments(values: np.ndarray, valid: np.ndarray, mean_of: np.ndarray, count: np.ndarray,
             total: np.ndarray, m2: np.ndarray, second: bool) -> None:
    first = True
    for i in range(values.shape[0]):
        for t in range(values.shape[1]):
            if not valid[i, t]:
                continue
            for k in range(values.shape[2]):
                x = np.float64(values[i, t, k])
                finite = np.isfinite(x)
                if second:
                    term = (x - mean_of[k]) * (x - mean_of[k]) if finite else 0.0
                    m2[k] = term if first else m2[k] + term
                else:
                    safe = x if finite else 0.0
                    total[k] = safe if first else total[k] + safe
                    count[k] = (1.0 if finite else 0.0) + (0.0 if first else count[k])
            first = False


def moments(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                             np.ndarray]:
    """``(count, mean, m2)`` per variable over the finite values of the valid steps of
    ``values`` [rows, steps, vars] (``valid`` [rows, steps]), added row after row in the
    order numpy's ``sum(axis=0)`` of ``values[valid]`` adds them (for 2 variables or more),
    so to the same bits."""
    if values.ndim != 3 or valid.shape != values.shape[:2]:
        raise ValueError(f"values {values.shape} with mask {valid.shape}")
    width = values.shape[2]
    count, total, m2 = np.zeros(width), np.zeros(width), np.zeros(width)
    _moments(values, valid, total, count, total, m2, False)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, 0.0)
    _moments(values, valid, mean, count, total, m2, True)
    return count, mean, m2
