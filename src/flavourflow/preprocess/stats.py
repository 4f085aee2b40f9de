"""Streaming mean and variance (Chan et al. pairwise merge of per-chunk moments, float64)."""

from __future__ import annotations

import numpy as np


class RunningMoments:
    """Per-column count, mean and M2 over finite values, merged chunk by chunk."""

    def __init__(self, n_columns: int) -> None:
        self.count = np.zeros(n_columns)
        self.mean = np.zeros(n_columns)
        self.m2 = np.zeros(n_columns)

    def update(self, block: np.ndarray) -> None:
        """Add the finite values of ``block`` [rows, columns]."""
        block = np.asarray(block, dtype=np.float64)
        finite = np.isfinite(block)
        n = finite.sum(axis=0).astype(np.float64)
        safe = np.where(finite, block, 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(n > 0, safe.sum(axis=0) / n, 0.0)
        m2 = np.where(finite, (safe - mean) ** 2, 0.0).sum(axis=0)
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
