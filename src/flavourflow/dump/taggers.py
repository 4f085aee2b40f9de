"""Baseline taggers computed from reconstructed tracks only, never from truth.

* ``ip2d_llr``: an impact-parameter log-likelihood ratio (the role IP2D / ``rnnip_log_ratio``
  play). Per track, log f_b(S)/f_u(S) of the lifetime-signed transverse impact-parameter
  significance S, summed over the jet's tracks. The templates are analytic: the resolution
  model (Gaussian core, a wider Gaussian tail, and a symmetric exponential far tail for
  secondaries and fakes, which keeps the per-track ratio growing only linearly in S) and an
  exponential lifetime tail for heavy-flavour tracks. Nothing is fitted to the sample, so
  nothing is tuned on its test split.
* ``sv_sig``: a secondary-vertex-like significance (the role ``jf_sig`` plays): tracks with
  S > ``SV_MIN_SIGNIFICANCE`` form a vertex candidate if there are at least two; its
  significance is the quadrature sum of their S, 0 without a candidate. Mass, track count and
  energy fraction of the candidate are kept as extra jet variables.
"""

from __future__ import annotations

import math

import awkward as ak
import numpy as np

PION_MASS = 139.57  # MeV

#: Resolution model of the light-jet template: core and tail widths (units of sigma), tail share.
CORE_WIDTH, TAIL_WIDTH, TAIL_FRACTION = 1.0, 3.0, 0.03
#: Secondaries and fakes in the light template: share and scale (sigma) of a Laplace far tail.
FAR_FRACTION, FAR_SCALE = 0.01, 5.0
#: Heavy-flavour template: share of lifetime tracks and mean of their exponential S tail.
LIFETIME_FRACTION, LIFETIME_MEAN = 0.5, 5.0
#: Signed significance above which a track counts as displaced for the vertex candidate.
SV_MIN_SIGNIFICANCE = 2.0
#: Significances are clipped to this range before the templates are evaluated.
S_RANGE = (-30.0, 60.0)

_erfc = np.vectorize(math.erfc, otypes=[np.float64])


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
    emg = 0.5 * lam * np.exp(0.5 * lam * (lam - 2.0 * s)) * _erfc((lam - s) / math.sqrt(2.0))
    return LIFETIME_FRACTION * emg + (1.0 - LIFETIME_FRACTION) * light_pdf(s)


def ip2d_llr(signed_d0_significance: ak.Array) -> np.ndarray:
    """Sum over each jet's tracks of log f_b(S)/f_u(S); 0 for a jet without tracks."""
    flat = np.clip(ak.to_numpy(ak.flatten(signed_d0_significance)).astype(np.float64), *S_RANGE)
    per_track = np.log(heavy_pdf(flat)) - np.log(light_pdf(flat))
    counts = ak.to_numpy(ak.num(signed_d0_significance))
    return ak.to_numpy(ak.sum(ak.unflatten(per_track, counts), axis=1)).astype(np.float32)


def secondary_vertex(
    signed_d0_significance: ak.Array, pt: ak.Array, eta: ak.Array, phi: ak.Array
) -> dict[str, np.ndarray]:
    """Vertex-candidate variables per jet: sv_sig, sv_mass (MeV), sv_ntrk, sv_efrac.

    sv_mass and sv_efrac are NaN for jets without a candidate (TDD convention for missing).
    """
    displaced = signed_d0_significance > SV_MIN_SIGNIFICANCE
    n_disp = ak.to_numpy(ak.sum(displaced, axis=1))
    has_sv = n_disp >= 2
    sig = np.sqrt(ak.to_numpy(ak.sum(signed_d0_significance[displaced] ** 2, axis=1)))

    px, py = pt * np.cos(phi), pt * np.sin(phi)
    pz = pt * np.sinh(eta)
    energy = np.sqrt(px**2 + py**2 + pz**2 + PION_MASS**2)
    sums = {k: ak.to_numpy(ak.sum(v[displaced], axis=1)) for k, v in
            {"px": px, "py": py, "pz": pz, "e": energy}.items()}
    mass2 = sums["e"] ** 2 - sums["px"] ** 2 - sums["py"] ** 2 - sums["pz"] ** 2
    e_all = ak.to_numpy(ak.sum(energy, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        mass = np.sqrt(np.clip(mass2, 0.0, None))
        efrac = sums["e"] / e_all
    nan = np.float32(np.nan)
    return {
        "sv_sig": np.where(has_sv, sig, 0.0).astype(np.float32),
        "sv_mass": np.where(has_sv, mass, nan).astype(np.float32),
        "sv_ntrk": np.where(has_sv, n_disp, 0).astype(np.int32),
        "sv_efrac": np.where(has_sv, efrac, nan).astype(np.float32),
    }
