"""A simple inclusive secondary-vertex finder on reconstructed tracks (the SV1 idea).

Works on the padded TDD `tracks` block of a jet collection, so every input format gets the
same vertexing. Straight-line tracks in the transverse plane (fine for |d0| << radius of
curvature):

1. Candidates: the ``MAX_CANDIDATES`` tracks with the largest lifetime-signed d0 significance
   above ``MIN_SIGNIFICANCE``.
2. Two-track vertices: the crossing point of each candidate pair in the transverse plane,
   kept if both tracks leave it forwards, it lies in the jet's hemisphere inside the pixel
   volume, the two tracks' z at that point agree within their uncertainties, and the pair is
   not a K0S or Lambda decay (V0 veto on the invariant mass).
3. The inclusive vertex: the tracks of all kept pairs; its position is the mean of the pair
   vertices, Lxy signed by the jet direction, with an uncertainty from the d0 resolutions and
   the opening angles of the pairs.

Per jet: ``sv_ntrk``, ``sv_n2trk``, ``sv_mass`` (MeV), ``sv_efrac``, ``sv_Lxy`` (mm) and
``sv_sig`` = Lxy / sigma(Lxy), the flight-length significance used as the SV baseline
discriminant (0 without a vertex; mass, efrac and Lxy are NaN then).
"""

from __future__ import annotations

import numpy as np

PION_MASS, PROTON_MASS = 139.57, 938.27  # MeV
K0S_MASS, LAMBDA_MASS = 497.61, 1115.68  # MeV
K0S_WINDOW, LAMBDA_WINDOW = 25.0, 10.0  # MeV
MIN_SIGNIFICANCE = 2.0
MAX_CANDIDATES = 8
MAX_RADIUS = 100.0  # mm
MAX_Z_PULL = 4.0
MIN_SIN_OPENING = 1e-3

_PAIRS = np.array([(i, j) for i in range(MAX_CANDIDATES) for j in range(i + 1, MAX_CANDIDATES)])


def _four_momenta(pt, eta, phi, mass):
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return px, py, pz, np.sqrt(px**2 + py**2 + pz**2 + mass**2)


def _pair_mass(a: tuple, b: tuple) -> np.ndarray:
    s = [x + y for x, y in zip(a, b, strict=True)]
    return np.sqrt(np.clip(s[3] ** 2 - s[0] ** 2 - s[1] ** 2 - s[2] ** 2, 0.0, None))


def _candidates(tracks: np.ndarray, some: np.ndarray, slot: np.ndarray,
                ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The candidates of the jets ``some``, as [len(some), MAX_CANDIDATES] arrays + mask;
    ``slot`` [n_jets, max_tracks] is each track's place among its jet's candidates (1, 2, ...;
    0 for others). Taken field by field: a jet's candidates are its first tracks above
    MIN_SIGNIFICANCE, because the tracks are stored by descending |significance|."""
    slot = slot[some]
    rows, cols = np.nonzero((slot > 0) & (slot <= MAX_CANDIDATES))
    place = slot[rows, cols] - 1
    mask = np.zeros((len(some), MAX_CANDIDATES), dtype=bool)
    mask[rows, place] = True
    columns = {}
    for name in ("pt", "eta", "phi", "d0", "z0SinTheta", "d0Uncertainty",
                 "z0SinThetaUncertainty", "charge"):
        column = np.zeros((len(some), MAX_CANDIDATES))
        column[rows, place] = np.nan_to_num(tracks[name][some[rows], cols].astype(np.float64))
        columns[name] = column
    return columns, mask


def find(tracks: np.ndarray, jet_phi: np.ndarray) -> dict[str, np.ndarray]:
    """Vertex variables for each jet of the padded ``tracks`` block [n_jets, max_tracks].

    Only jets with two or more candidate tracks can have a vertex: the others get the
    no-vertex values without the pair arithmetic (most jets, and most of the time)."""
    with np.errstate(invalid="ignore"):
        candidate = tracks["valid"] & (tracks["IP3D_signed_d0_significance"]
                                       > MIN_SIGNIFICANCE)
    slot = np.cumsum(candidate, axis=1, dtype=np.int32) * candidate
    some = np.flatnonzero(slot.max(axis=1, initial=0) >= 2)
    out = {"sv_sig": np.zeros(len(tracks), np.float32),
           **{name: np.full(len(tracks), np.nan, np.float32)
              for name in ("sv_Lxy", "sv_mass", "sv_efrac")},
           "sv_ntrk": np.zeros(len(tracks), np.int32), "sv_n2trk": np.zeros(len(tracks), np.int32)}
    if len(some):
        for name, values in _find(tracks, some, slot, jet_phi[some]).items():
            out[name][some] = values
    return out


def _find(tracks: np.ndarray, some: np.ndarray, slot: np.ndarray,
          jet_phi: np.ndarray) -> dict[str, np.ndarray]:
    trk, mask = _candidates(tracks, some, slot)
    n = len(some)
    # Only the pairs of two candidates, as flat arrays: (jet, first, second).
    jet, pair = np.nonzero(mask[:, _PAIRS[:, 0]] & mask[:, _PAIRS[:, 1]])
    i, j = _PAIRS[pair, 0], _PAIRS[pair, 1]

    def pick(name: str) -> tuple[np.ndarray, np.ndarray]:
        return trk[name][jet, i], trk[name][jet, j]

    (phi_i, phi_j), (d0_i, d0_j) = pick("phi"), pick("d0")
    ux_i, uy_i, ux_j, uy_j = np.cos(phi_i), np.sin(phi_i), np.cos(phi_j), np.sin(phi_j)
    # point of closest approach to the beam line: d0 * (sin phi, -cos phi)
    px_i, py_i, px_j, py_j = d0_i * uy_i, -d0_i * ux_i, d0_j * uy_j, -d0_j * ux_j
    sin_open = ux_i * uy_j - uy_i * ux_j
    safe = np.where(np.abs(sin_open) > MIN_SIN_OPENING, sin_open, 1.0)
    t_i = ((px_j - px_i) * uy_j - (py_j - py_i) * ux_j) / safe
    vx, vy = px_i + t_i * ux_i, py_i + t_i * uy_i
    t_j = vx * ux_j + vy * uy_j - (px_j * ux_j + py_j * uy_j)

    (eta_i, eta_j), (z0st_i, z0st_j) = pick("eta"), pick("z0SinTheta")
    (sz_i, sz_j) = pick("z0SinThetaUncertainty")
    sin_i, sin_j = 1.0 / np.cosh(eta_i), 1.0 / np.cosh(eta_j)
    z_i = z0st_i / sin_i + t_i * np.sinh(eta_i)  # cot(theta) = sinh(eta)
    z_j = z0st_j / sin_j + t_j * np.sinh(eta_j)
    with np.errstate(invalid="ignore", divide="ignore"):
        z_pull = np.abs(z_i - z_j) / np.hypot(sz_i / sin_i, sz_j / sin_j)

    pt_i, pt_j = pick("pt")
    mass_pp = _pair_mass(_four_momenta(pt_i, eta_i, phi_i, PION_MASS),
                         _four_momenta(pt_j, eta_j, phi_j, PION_MASS))
    proton_first = pt_i >= pt_j  # the proton takes most of a Lambda's momentum
    m_i = np.where(proton_first, PROTON_MASS, PION_MASS)
    m_j = np.where(proton_first, PION_MASS, PROTON_MASS)
    mass_ppi = _pair_mass(_four_momenta(pt_i, eta_i, phi_i, m_i),
                          _four_momenta(pt_j, eta_j, phi_j, m_j))
    charges = pick("charge")
    opposite = charges[0] * charges[1] < 0
    v0 = opposite & ((np.abs(mass_pp - K0S_MASS) < K0S_WINDOW)
                     | (np.abs(mass_ppi - LAMBDA_MASS) < LAMBDA_WINDOW))

    jx, jy = np.cos(jet_phi), np.sin(jet_phi)
    forward = (vx * jx[jet] + vy * jy[jet]) > 0
    good = ((np.abs(sin_open) > MIN_SIN_OPENING) & (t_i > 0) & (t_j > 0) & forward
            & (np.hypot(vx, vy) < MAX_RADIUS) & (z_pull < MAX_Z_PULL) & ~v0)
    (sd_i, sd_j) = pick("d0Uncertainty")
    pair_sigma = (np.hypot(sd_i, sd_j) / np.abs(safe))[good]
    jet, i, j = jet[good], i[good], j[good]

    n2trk = np.bincount(jet, minlength=n)
    has_sv = n2trk > 0
    in_vertex = np.zeros(mask.shape, dtype=bool)
    in_vertex[jet, i] = True
    in_vertex[jet, j] = True
    ntrk = in_vertex.sum(axis=1)

    with np.errstate(invalid="ignore", divide="ignore"):
        mean_x = np.bincount(jet, weights=vx[good], minlength=n) / n2trk
        mean_y = np.bincount(jet, weights=vy[good], minlength=n) / n2trk
        sigma = np.sqrt(np.bincount(jet, weights=pair_sigma**2, minlength=n)) / n2trk
        lxy = np.hypot(mean_x, mean_y) * np.sign(mean_x * jx + mean_y * jy)
        lxy_sig = lxy / sigma

        px, py, pz, e = _four_momenta(trk["pt"], trk["eta"], trk["phi"], PION_MASS)
        total = [np.where(in_vertex, x, 0.0).sum(axis=1) for x in (px, py, pz, e)]
        mass = np.sqrt(np.clip(total[3] ** 2 - total[0] ** 2 - total[1] ** 2 - total[2] ** 2,
                               0.0, None))
        rows, cols = np.nonzero(tracks["valid"][some])
        _, _, _, e_valid = (_four_momenta(*(tracks[name][some[rows], cols].astype(np.float64)
                                            for name in ("pt", "eta", "phi")), PION_MASS))
        efrac = total[3] / np.bincount(rows, weights=e_valid, minlength=n)

    nan = np.nan
    return {
        "sv_sig": np.where(has_sv, lxy_sig, 0.0).astype(np.float32),
        "sv_Lxy": np.where(has_sv, lxy, nan).astype(np.float32),
        "sv_mass": np.where(has_sv, mass, nan).astype(np.float32),
        "sv_efrac": np.where(has_sv, efrac, nan).astype(np.float32),
        "sv_ntrk": ntrk.astype(np.int32),
        "sv_n2trk": n2trk.astype(np.int32),
    }
