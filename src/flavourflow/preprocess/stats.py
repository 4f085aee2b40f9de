"""Streaming mean and variance (Chan et al. pairwise merge of per-chunk moments, float64)."""

from __future__ import annotations

import numpy as np

from flavourflow.preprocess import kernels


class RunningMoments:
    """Per-column count, mean and M2 over finite values, merged chunk by chunk."""

    def __init__(self, n_columns: int) -> None:
        self.count = np.zeros(n_columns)
        self.mean = np.zeros(n_columns)
        self.m2 = np.zeros(n_columns)

    def update(self, block: np.ndarray) -> None:
        """Add the finite values of ``block`` [rows, columns]."""
        block = np.asarray(block, dtype=np.float64)
        if block.shape[1] >= 2:  # summed as numpy sums them, without its temporaries
            self._merge(*kernels.moments(block[:, None, :],
                                         np.ones((len(block), 1), dtype=np.bool_)))
            return
        finite = np.isfinite(block)
        n = finite.sum(axis=0).astype(np.float64)
        safe = np.where(finite, block, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, safe.sum(axis=0) / n, 0.0)
        m2 = np.where(finite, (safe - mean) ** 2, 0.0).sum(axis=0)
        self._merge(n, mean, m2)

    def update_steps(self, values: np.ndarray, valid: np.ndarray) -> None:
        """Add the finite values of the valid steps: ``update(values[valid])`` (values
        [rows, steps, columns], valid [rows, steps]) without the copy."""
        if values.shape[2] >= 2:
            self._merge(*kernels.moments(values, valid))
        else:  # one column: numpy sums it pairwise, which the kernel does not
            self.update(values[valid])

    def _merge(self, n: np.ndarray, mean: np.ndarray, m2: np.ndarray) -> None:
        """Merge a chunk's count, mean and M2 (Chan et al.)."""
        total = self.count + n
        delta = mean - self.mean
        with np.errstate(invalid="ignore", divide="ignore"):
            self.mean = np.where(total > 0, self.mean + delta * n / total, 0.0)
            self.m2 = np.where(total > 0, self.m2 + m2 + delta**2 * self.count * n / total, 0.0)
        self.count = total

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation of the values seen so far."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(self.m2 / self.count)
