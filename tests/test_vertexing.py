"""The secondary-vertex finder on tracks built by hand from known decay vertices."""

from __future__ import annotations

import numpy as np
import pytest

from flavourflow.dump import vertexing
from flavourflow.dump.ntuple import TRACK_DTYPE

SIGMA_D0, SIGMA_Z0 = 0.01, 0.05  # mm


def tracks_from(vertex: tuple[float, float, float], directions: list[tuple[float, float, float]],
                charges: list[int], jet_phi: float, max_tracks: int = 10) -> np.ndarray:
    """One jet's padded tracks, produced exactly at ``vertex`` with (pt MeV, eta, phi) each."""
    x, y, z = vertex
    rows = np.zeros((1, max_tracks), dtype=TRACK_DTYPE)
    for k, ((pt, eta, phi), q) in enumerate(zip(directions, charges, strict=True)):
        d0 = x * np.sin(phi) - y * np.cos(phi)
        theta = 2 * np.arctan(np.exp(-eta))
        z0 = z - (x * np.cos(phi) + y * np.sin(phi)) / np.tan(theta)
        rows[0, k] = (pt, eta, phi, 0, 0, 0, 0, q, d0, z0 * np.sin(theta), SIGMA_D0,
                      SIGMA_Z0 * np.sin(theta),
                      abs(d0) / SIGMA_D0 * np.sign(d0 * np.sin(phi - jet_phi)), 0, True)
    return rows


def test_three_track_b_like_vertex_is_found_where_it_is() -> None:
    jet_phi, lxy = 0.3, 5.0
    vertex = (lxy * np.cos(jet_phi), lxy * np.sin(jet_phi), 7.0)
    directions = [(8000.0, 0.5, 0.1), (5000.0, 0.6, 0.55), (3000.0, 0.3, 0.8)]
    tracks = tracks_from(vertex, directions, [1, -1, 1], jet_phi)
    sv = vertexing.find(tracks, np.array([jet_phi]))
    assert sv["sv_n2trk"][0] == 3 and sv["sv_ntrk"][0] == 3
    assert sv["sv_Lxy"][0] == pytest.approx(lxy, rel=1e-4)
    assert sv["sv_sig"][0] > 50
    p = [vertexing.four_momentum(pt, np.cos(phi), np.sin(phi), np.sinh(eta),
                                 vertexing.PION_MASS) for pt, eta, phi in directions]
    e, px, py, pz = (sum(v[i] for v in p) for i in (3, 0, 1, 2))
    assert sv["sv_mass"][0] == pytest.approx(np.sqrt(e**2 - px**2 - py**2 - pz**2), rel=1e-5)
    assert sv["sv_efrac"][0] == pytest.approx(1.0, rel=1e-6)


def test_k0s_decay_is_vetoed_and_backward_vertex_rejected() -> None:
    jet_phi = 0.0
    # two opposite-charge pions whose pair mass is the K0S mass
    pt, eta = 1000.0, 0.0
    # pick the opening angle so that m(pi pi) = m(K0S): m^2 = 2 m^2 + 2 (E^2 - p^2 cos(dphi))
    energy = np.hypot(pt, vertexing.PION_MASS)
    cos_open = (2 * energy**2 + 2 * vertexing.PION_MASS**2 - vertexing.K0S_MASS**2) / (
        2 * pt**2)
    half = np.arccos(cos_open) / 2
    k0s = tracks_from((20.0, 0.0, 0.0), [(pt, eta, half), (pt, eta, -half)], [1, -1], jet_phi)
    assert vertexing.find(k0s, np.array([jet_phi]))["sv_n2trk"][0] == 0
    same_charge = tracks_from((20.0, 0.0, 0.0), [(pt, eta, half), (pt, eta, -half)], [1, 1],
                              jet_phi)
    assert vertexing.find(same_charge, np.array([jet_phi]))["sv_n2trk"][0] == 1
    behind = tracks_from((-5.0, 0.0, 0.0), [(pt, eta, 0.2), (pt, eta, -0.3)], [1, 1], jet_phi)
    sv = vertexing.find(behind, np.array([jet_phi]))
    assert sv["sv_n2trk"][0] == 0 and sv["sv_sig"][0] == 0 and np.isnan(sv["sv_mass"][0])


def test_prompt_tracks_make_no_vertex() -> None:
    tracks = tracks_from((0.0, 0.0, 0.0), [(5000.0, 0.1, 0.2), (4000.0, 0.2, -0.1)], [1, -1],
                         0.0)
    sv = vertexing.find(tracks, np.array([0.0]))
    assert sv["sv_ntrk"][0] == 0 and sv["sv_sig"][0] == 0.0
