"""Baseline taggers computed from reconstructed tracks only, never from truth.

* ``ip2d_llr``: an impact-parameter log-likelihood ratio (the role IP2D / ``rnnip_log_ratio``
  play). Per track, log f_b(S)/f_u(S) of the lifetime-signed transverse impact-parameter
  significance S, summed over the jet's tracks. The templates are analytic: the resolution
  model (Gaussian core, a wider Gaussian tail, and a symmetric exponential far tail for
  secondaries and fakes, which keeps the per-track ratio growing only linearly in S) and an
  exponential lifetime tail for heavy-flavour tracks. Nothing is fitted to the sample, so
  nothing is tuned on its test split.

The functions are numba-compiled scalars: :func:`flavourflow.dump.blocks.build` calls
:func:`track_llr` for each track as it builds a jet. The secondary-vertex baseline
(``sv_sig``, the role ``jf_sig`` plays) comes from the vertex finder in
:mod:`flavourflow.dump.vertexing`.
"""

from __future__ import annotations

import math

from flavourflow.dump.kernels import kernel

#: Resolution model of the light-jet template: core and tail widths (units of sigma), tail share.
CORE_WIDTH, TAIL_WIDTH, TAIL_FRACTION = 1.0, 3.0, 0.03
#: Secondaries and fakes in the light template: share and scale (sigma) of a Laplace far tail.
FAR_FRACTION, FAR_SCALE = 0.01, 5.0
#: Heavy-flavour template: share of lifetime tracks and mean of their exponential S tail.
LIFETIME_FRACTION, LIFETIME_MEAN = 0.5, 5.0
#: Significances are clipped to this range before the templates are evaluated.
S_MIN, S_MAX = -30.0, 60.0

#: Chebyshev fit of erfc (Press et al., Numerical Recipes, "erfcc"): relative error below
#: 1.2e-7 everywhere.
_ERFC_COEFFICIENTS = (-1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806,
                      0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277)
_SQRT_2PI = math.sqrt(2.0 * math.pi)
_SQRT_2 = math.sqrt(2.0)


@kernel
def _log_erfc_positive(x: float) -> float:
    """log(erfc(x)) for x >= 0, without underflow for large x."""
    t = 1.0 / (1.0 + 0.5 * x)
    poly = 0.0
    for k in range(len(_ERFC_COEFFICIENTS) - 1, -1, -1):
        poly = poly * t + _ERFC_COEFFICIENTS[k]
    return math.log(t) - x * x + poly


@kernel
def _scaled_erfc(log_scale: float, x: float) -> float:
    """exp(log_scale) * erfc(x), evaluated so that neither factor over- or underflows alone."""
    log_tail = _log_erfc_positive(abs(x))
    if x >= 0:
        return math.exp(log_scale + log_tail)
    return math.exp(log_scale) * (2.0 - math.exp(log_tail))


@kernel
def _gauss(s: float, width: float) -> float:
    u = s / width
    return math.exp(-0.5 * (u * u)) / (width * _SQRT_2PI)


@kernel
def light_pdf(s: float) -> float:
    """Template of S for tracks in light jets: Gaussian core, wider tail, far tail."""
    core = 1.0 - TAIL_FRACTION - FAR_FRACTION
    far = math.exp(-abs(s) / FAR_SCALE) / (2.0 * FAR_SCALE)
    return (core * _gauss(s, CORE_WIDTH) + TAIL_FRACTION * _gauss(s, TAIL_WIDTH)
            + FAR_FRACTION * far)


@kernel
def heavy_pdf(s: float) -> float:
    """Template of S for tracks in b jets: prompt tracks plus an exponential lifetime tail
    convolved with the unit Gaussian resolution (an exponentially modified Gaussian)."""
    lam = 1.0 / LIFETIME_MEAN
    emg = 0.5 * lam * _scaled_erfc(0.5 * lam * (lam - 2.0 * s), (lam - s) / _SQRT_2)
    return LIFETIME_FRACTION * emg + (1.0 - LIFETIME_FRACTION) * light_pdf(s)


@kernel
def track_llr(s: float) -> float:
    """One track's log f_b(S)/f_u(S), S clipped to [S_MIN, S_MAX]; 0 for a track without a
    finite significance (no uncertainty known): it contributes nothing to its jet's sum."""
    if not math.isfinite(s):
        return 0.0
    s = min(max(s, S_MIN), S_MAX)
    return math.log(heavy_pdf(s)) - math.log(light_pdf(s))
