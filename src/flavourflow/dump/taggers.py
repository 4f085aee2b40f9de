"""Baseline taggers computed from reconstructed tracks only, never from truth.

* ``ip2d_llr``: an impact-parameter log-likelihood ratio (the role IP2D / ``rnnip_log_ratio``
  play). Per track, log f_b(S)/f_u(S) of the lifetime-signed transverse impact-parameter
  significance S, summed over the jet's tracks. The templates are analytic: the resolution
  model (Gaussian core, a wider Gaussian tail, and a symmetric exponential far tail for
  secondaries and fakes, which keeps the per-track ratio growing only linearly in S) and an
  exponential lifetime tail for heavy-flavour tracks. Nothing is fitted to the sample, so
  nothing is tuned on its test split.

The secondary-vertex baseline (``sv_sig``, the role ``jf_sig`` plays) comes from the vertex
finder in :mod:`flavourflow.dump.vertexing`.
"""

from __future__ import annotations

import math

import numpy as np

#: Resolution model of the light-jet template: core and tail widths (units of sigma), tail share.
CORE_WIDTH, TAIL_WIDTH, TAIL_FRACTION = 1.0, 3.0, 0.03
#: Secondaries and fakes in the light template: share and scale (sigma) of a Laplace far tail.
FAR_FRACTION, FAR_SCALE = 0.01, 5.0
#: Heavy-flavour template: share of lifetime tracks and mean of their exponential S tail.
LIFETIME_FRACTION, LIFETIME_MEAN = 0.5, 5.0
#: Significances are clipped to this range before the templates are evaluated.
S_RANGE = (-30.0, 60.0)

#: Chebyshev fit of erfc (Press et al., Numerical Recipes, "erfcc"): relative error below
#: 1.2e-7 everywhere; vectorised, unlike math.erfc.
_ERFC_COEFFICIENTS = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806,
                      0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277)


def _log_erfc_positive(x: np.ndarray) -> np.ndarray:
    """log(erfc(x)) for x >= 0, without underflow for large x."""
    t = 1.0 / (1.0 + 0.5 * x)
    poly = np.zeros_like(x)
    for c in reversed(_ERFC_COEFFICIENTS):
        poly = poly * t + c
    return np.log(t) - x * x + poly


def _scaled_erfc(log_scale: np.ndarray, x: np.ndarray) -> np.ndarray:
    """exp(log_scale) * erfc(x), evaluated so that neither factor over- or underflows alone."""
    positive = x >= 0
    ax = np.abs(x)
    log_tail = _log_erfc_positive(ax)
    return np.where(positive, np.exp(log_scale + log_tail),
                    np.exp(log_scale) * (2.0 - np.exp(log_tail)))


def _gauss(s: np.ndarray, width: float) -> np.ndarray:
    return np.exp(-0.5 * (s / width) ** 2) / (width * math.sqrt(2.0 * math.pi))


def light_pdf(s: np.ndarray) -> np.ndarray:
    """Template of S for tracks in light jets: Gaussian core, wider tail, far tail."""
    core = 1.0 - TAIL_FRACTION - FAR_FRACTION
    far = np.exp(-np.abs(s) / FAR_SCALE) / (2.0 * FAR_SCALE)
    return (core * _gauss(s, CORE_WIDTH) + TAIL_FRACTION * _gauss(s, TAIL_WIDTH)
            + FAR_FRACTION * far)


def heavy_pdf(s: np.ndarray) -> np.ndarray:
    """Template of S for tracks in b jets: prompt tracks plus an exponential lifetime tail
    convolved with the unit Gaussian resolution (an exponentially modified Gaussian)."""
    lam = 1.0 / LIFETIME_MEAN
    emg = 0.5 * lam * _scaled_erfc(0.5 * lam * (lam - 2.0 * s), (lam - s) / math.sqrt(2.0))
    return LIFETIME_FRACTION * emg + (1.0 - LIFETIME_FRACTION) * light_pdf(s)


def ip2d_llr_flat(significance: np.ndarray, jet_of_track: np.ndarray, n_jets: int) -> np.ndarray:
    """Per jet, the sum over its tracks of log f_b(S)/f_u(S) (0 for a jet without tracks), from
    flat per-track significances; ``jet_of_track`` maps tracks to jets. Tracks without a
    finite significance (no uncertainty known) contribute nothing."""
    s = np.asarray(significance, dtype=np.float64)
    finite = np.isfinite(s)
    clipped = np.clip(s[finite], *S_RANGE)
    per_track = np.log(heavy_pdf(clipped)) - np.log(light_pdf(clipped))
    return np.bincount(jet_of_track[finite], weights=per_track,
                       minlength=n_jets).astype(np.float32)
