"""A simple inclusive secondary-vertex finder on reconstructed tracks (the SV1 idea).

Works on a jet's padded TDD `tracks` rows, as :func:`flavourflow.dump.blocks.build`
writes them, so every input format gets the same vertexing. Straight-line tracks in the
transverse plane (fine for |d0| << radius of curvature):

1. Candidates: the first ``MAX_CANDIDATES`` tracks (they are stored by descending |signed d0
   significance|) with a lifetime-signed d0 significance above ``MIN_SIGNIFICANCE``.
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

import math

import numpy as np

from flavourflow.dump.kernels import kernel

PION_MASS, PROTON_MASS = 139.57, 938.27  # MeV
K0S_MASS, LAMBDA_MASS = 497.61, 1115.68  # MeV
K0S_WINDOW, LAMBDA_WINDOW = 25.0, 10.0  # MeV
MIN_SIGNIFICANCE = 2.0
MAX_CANDIDATES = 8
MAX_RADIUS = 100.0  # mm
MAX_Z_PULL = 4.0
MIN_SIN_OPENING = 1e-3
#: The per-jet results, in the order :func:`find_vertex` returns them.
OUTPUTS = ("sv_sig", "sv_Lxy", "sv_mass", "sv_efrac", "sv_ntrk", "sv_n2trk")
#: Candidate columns in the scratch array of :func:`find_vertex`.
_PT, _ETA, _PHI, _D0, _Z0, _SD0, _SZ0, _Q, _UX, _UY, _SIN, _SINH = range(12)


@kernel
def four_momentum(pt: float, cos_phi: float, sin_phi: float, sinh_eta: float,
                  mass: float) -> tuple[float, float, float, float]:
    """(px, py, pz, E) of a track of ``mass``."""
    px, py, pz = pt * cos_phi, pt * sin_phi, pt * sinh_eta
    return px, py, pz, math.sqrt(px * px + py * py + pz * pz + mass * mass)


@kernel
def _mass(px: float, py: float, pz: float, e: float) -> float:
    return math.sqrt(max(e * e - px * px - py * py - pz * pz, 0.0))


@kernel
def _finite(x: float) -> float:
    """numpy's nan_to_num: NaN -> 0, +-inf -> the largest float64."""
    if math.isnan(x):
        return 0.0
    if math.isinf(x):
        return 1.7976931348623157e308 if x > 0 else -1.7976931348623157e308
    return x


@kernel
def _vertex_sum(p4: np.ndarray, in_vertex: np.ndarray, n: int, a: int) -> float:
    """Component ``a`` of the vertex's pion four-momentum: the sum of MAX_CANDIDATES slots
    (0 where not in the vertex) in the order of numpy's pairwise sum of 8 values."""
    v = np.zeros(MAX_CANDIDATES)
    for k in range(n):
        if in_vertex[k]:
            v[k] = p4[0, k, a]
    return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]))


@kernel
def new_scratch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The work arrays :func:`find_vertex` fills for each jet, allocated once per block."""
    return (np.zeros((12, MAX_CANDIDATES)), np.zeros((2, MAX_CANDIDATES, 4)),
            np.zeros(MAX_CANDIDATES, np.bool_))


@kernel
def find_vertex(rows: np.ndarray, n_valid: int, jet_phi: float,
                scratch: tuple[np.ndarray, np.ndarray, np.ndarray],
                ) -> tuple[float, float, float, float, int, int]:
    """The vertex of one jet: its ``n_valid`` track rows (TDD track records, by descending
    |significance|), ``jet_phi``, and work arrays from :func:`new_scratch`; returns
    :data:`OUTPUTS`."""
    c, p4, in_vertex = scratch
    n = 0
    for r in range(n_valid):
        if n == MAX_CANDIDATES:
            break
        row = rows[r]
        if not row["IP3D_signed_d0_significance"] > MIN_SIGNIFICANCE:
            continue
        c[_PT, n] = _finite(np.float64(row["pt"]))
        c[_ETA, n] = _finite(np.float64(row["eta"]))
        c[_PHI, n] = _finite(np.float64(row["phi"]))
        c[_D0, n] = _finite(np.float64(row["d0"]))
        c[_Z0, n] = _finite(np.float64(row["z0SinTheta"]))
        c[_SD0, n] = _finite(np.float64(row["d0Uncertainty"]))
        c[_SZ0, n] = _finite(np.float64(row["z0SinThetaUncertainty"]))
        c[_Q, n] = np.float64(row["charge"])
        n += 1
    if n < 2:
        return 0.0, np.nan, np.nan, np.nan, 0, 0
    for k in range(n):  # per candidate, once: what each pair would compute
        c[_UX, k] = math.cos(c[_PHI, k])
        c[_UY, k] = math.sin(c[_PHI, k])
        c[_SIN, k] = 1.0 / math.cosh(c[_ETA, k])
        c[_SINH, k] = math.sinh(c[_ETA, k])
        for h, mass in enumerate((PION_MASS, PROTON_MASS)):
            p4[h, k, 0], p4[h, k, 1], p4[h, k, 2], p4[h, k, 3] = four_momentum(
                c[_PT, k], c[_UX, k], c[_UY, k], c[_SINH, k], mass)
        in_vertex[k] = False
    jx, jy = math.cos(jet_phi), math.sin(jet_phi)
    n2trk = 0
    sum_x = sum_y = sum_s2 = 0.0
    for i in range(n):
        for j in range(i + 1, n):
            ux_i, uy_i, ux_j, uy_j = c[_UX, i], c[_UY, i], c[_UX, j], c[_UY, j]
            # point of closest approach to the beam line: d0 * (sin phi, -cos phi)
            px_i, py_i = c[_D0, i] * uy_i, -c[_D0, i] * ux_i
            px_j, py_j = c[_D0, j] * uy_j, -c[_D0, j] * ux_j
            sin_open = ux_i * uy_j - uy_i * ux_j
            safe = sin_open if abs(sin_open) > MIN_SIN_OPENING else 1.0
            t_i = ((px_j - px_i) * uy_j - (py_j - py_i) * ux_j) / safe
            vx, vy = px_i + t_i * ux_i, py_i + t_i * uy_i
            t_j = vx * ux_j + vy * uy_j - (px_j * ux_j + py_j * uy_j)
            forward = (vx * jx + vy * jy) > 0
            # the cheap cuts first: the z pull and the V0 masses only for pairs they pass
            if not (abs(sin_open) > MIN_SIN_OPENING and t_i > 0 and t_j > 0 and forward
                    and math.hypot(vx, vy) < MAX_RADIUS):
                continue
            z_i = c[_Z0, i] / c[_SIN, i] + t_i * c[_SINH, i]  # cot(theta) = sinh(eta)
            z_j = c[_Z0, j] / c[_SIN, j] + t_j * c[_SINH, j]
            z_pull = abs(z_i - z_j) / math.hypot(c[_SZ0, i] / c[_SIN, i],
                                                 c[_SZ0, j] / c[_SIN, j])
            if not z_pull < MAX_Z_PULL:
                continue
            if c[_Q, i] * c[_Q, j] < 0:  # V0 veto; the proton takes most of a Lambda's p
                a, b = (1, 0) if c[_PT, i] >= c[_PT, j] else (0, 1)
                mass_pp = _mass(p4[0, i, 0] + p4[0, j, 0], p4[0, i, 1] + p4[0, j, 1],
                                p4[0, i, 2] + p4[0, j, 2], p4[0, i, 3] + p4[0, j, 3])
                mass_ppi = _mass(p4[a, i, 0] + p4[b, j, 0], p4[a, i, 1] + p4[b, j, 1],
                                 p4[a, i, 2] + p4[b, j, 2], p4[a, i, 3] + p4[b, j, 3])
                if (abs(mass_pp - K0S_MASS) < K0S_WINDOW
                        or abs(mass_ppi - LAMBDA_MASS) < LAMBDA_WINDOW):
                    continue
            pair_sigma = math.hypot(c[_SD0, i], c[_SD0, j]) / abs(safe)
            n2trk += 1
            sum_x += vx
            sum_y += vy
            sum_s2 += pair_sigma * pair_sigma
            in_vertex[i] = in_vertex[j] = True
    ntrk = 0
    for k in range(n):
        ntrk += in_vertex[k]
    if n2trk == 0:
        return 0.0, np.nan, np.nan, np.nan, ntrk, 0
    mean_x, mean_y = sum_x / n2trk, sum_y / n2trk
    sigma = math.sqrt(sum_s2) / n2trk
    along = mean_x * jx + mean_y * jy
    lxy = math.hypot(mean_x, mean_y) * (1.0 if along > 0 else -1.0 if along < 0 else along)
    px, py, pz, e = (_vertex_sum(p4, in_vertex, n, 0), _vertex_sum(p4, in_vertex, n, 1),
                     _vertex_sum(p4, in_vertex, n, 2), _vertex_sum(p4, in_vertex, n, 3))
    e_valid = 0.0
    for r in range(n_valid):
        row = rows[r]
        phi = np.float64(row["phi"])
        e_valid += four_momentum(np.float64(row["pt"]), math.cos(phi), math.sin(phi),
                                 math.sinh(np.float64(row["eta"])), PION_MASS)[3]
    return lxy / sigma, lxy, _mass(px, py, pz, e), e / e_valid, ntrk, n2trk


@kernel
def _find_all(tracks: np.ndarray, jet_phi: np.ndarray, out: np.ndarray) -> None:
    scratch = new_scratch()
    for j in range(tracks.shape[0]):
        n_valid = 0
        while n_valid < tracks.shape[1] and tracks[j, n_valid]["valid"]:
            n_valid += 1
        (out[0, j], out[1, j], out[2, j], out[3, j], out[4, j],
         out[5, j]) = find_vertex(tracks[j], n_valid, jet_phi[j], scratch)


def find(tracks: np.ndarray, jet_phi: np.ndarray) -> dict[str, np.ndarray]:
    """Vertex variables (:data:`OUTPUTS`) for each jet of a padded ``tracks`` block
    [n_jets, max_tracks] (TDD track records, valid rows first)."""
    jet_phi = np.asarray(jet_phi, dtype=np.float64)
    if tracks.ndim != 2 or len(jet_phi) != len(tracks):
        raise ValueError(f"tracks {tracks.shape} for {len(jet_phi)} jet directions")
    out = np.empty((6, len(tracks)))
    _find_all(np.ascontiguousarray(tracks), jet_phi, out)
    return {name: out[k].astype(np.int32 if name in ("sv_ntrk", "sv_n2trk") else np.float32)
            for k, name in enumerate(OUTPUTS)}
