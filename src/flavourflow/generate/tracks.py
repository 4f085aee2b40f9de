"""Track reconstruction stand-in: acceptance, efficiency, momentum smearing and impact
parameters with a pT- and theta-dependent resolution (Gaussian core + wider tail).

Impact parameters (straight-line approximation, fine for |d0| << radius of curvature), with
(x, y, z) the production point minus the reconstructed primary vertex (the true one smeared
by PV_RESOLUTION, the same shift for every track of the event; mm) and (phi, theta) the
track direction at that point:

    d0         = x sin(phi) - y cos(phi)
    z0         = z - (x cos(phi) + y sin(phi)) cot(theta)       (z of the point of closest
    z0SinTheta = z0 sin(theta)                                   transverse approach)

With this d0 sign (opposite to the ATLAS perigee convention d0 = -x sin(phi) + y cos(phi)),
a track from a vertex displaced along the jet has d0 * sin(phi_trk - phi_jet) > 0.

Resolutions (p in GeV):
    sigma_d0         = 0.010 (+) 0.080 / (p sin(theta)^1.5)   mm
    sigma_z0         = 0.050 (+) 0.100 / (p sin(theta)^1.5)   mm
    sigma_z0SinTheta = sigma_z0 sin(theta)
    sigma(pT)/pT     = 0.012 (+) 0.0004 pT                    (smeared in q/pT)
    sigma_phi, theta = 1e-4 (+) 1.5e-3 / p                     rad
A fraction TAIL_FRACTION of tracks has its impact parameters smeared TAIL_SCALE times wider
than the stored sigma (wrong hits, multiple scattering tails): a non-Gaussian tail, and a
fraction FAKE_FRACTION are fakes with random impact parameters.

Hadronic interactions in the material (Pythia has no detector): a charged hadron crossing
one of the material layers (beam pipe, IBL and the next two pixel layers, radii
MATERIAL_RADII) interacts there with probability INTERACTION_PROBABILITY / sin(theta) per
layer (about 2.4 % in all at eta = 0, more forward, as the path in the material grows), makes
2-4 charged secondaries from a point at that radius, spread around the parent direction by
about 0.25 rad / sqrt(p / GeV); the parent keeps its track only when it had left the two
innermost layers. Those secondaries that pass the track selection are displaced, mostly
positively signed, and come in pairs or more from a common vertex: the light-jet background
that clean generator-level tracks lack.
Optional pile-up: soft prompt tracks from other vertices spread along z.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flavourflow.generate import truth
from flavourflow.generate.jets import pt_eta_phi
from flavourflow.generate.pythia import ChargeTable, Particles

PT_MIN = 0.5  # GeV, reconstructed
ETA_MAX = 2.5  # reconstructed
R_PROD_MAX = 100.0  # mm, transverse production radius: inside the pixel layers (truth)
D0_MAX, Z0_SIN_THETA_MAX = 3.5, 5.0  # mm, reconstructed: flavour-tagging track selection
EFFICIENCY = 0.98
D0_A, D0_B = 0.010, 0.080  # mm, mm GeV
Z0_A, Z0_B = 0.050, 0.100  # mm, mm GeV
PT_A, PT_B = 0.012, 0.0004  # 1, 1/GeV
ANGLE_A, ANGLE_B = 1e-4, 1.5e-3  # rad, rad GeV
TAIL_FRACTION = 0.05
TAIL_SCALE = 3.0
#: Share of tracks that are fakes: their impact parameters are unrelated to the particle's
#: origin (uniform within FAKE_IP_RANGE mm).
FAKE_FRACTION = 0.005
FAKE_IP_RANGE = 3.0
#: Resolution (mm; x, y, z) of the reconstructed primary vertex that impact parameters are
#: measured from: one shift per event, common to all its tracks (ATLAS ttbar: ~15 um
#: transverse with the beam-spot constraint, ~40 um along z).
PV_RESOLUTION = np.array([0.015, 0.015, 0.040])
#: Hadronic interactions: radii (mm) of the beam pipe, the IBL and the next two pixel layers
#: (secondaries from further out have too few pixel hits), the interaction probability per
#: layer at normal incidence, the charged-hadron PDG ids that interact, and the secondaries'
#: share of the parent momentum and angular spread.
MATERIAL_RADII = (23.5, 33.25, 50.5, 88.5)
INTERACTION_PROBABILITY = 0.006
INTERACTING = (211, 321, 2212)
SECONDARY_MOMENTUM_SHARE = 0.6
SECONDARY_ANGLE = 0.25  # rad x GeV^(1/2) / sqrt(p): soft secondaries spread more
#: Pile-up stand-in: vertices spread along z like the beam spot (mm), soft tracks (GeV).
PILEUP_SIGMA_Z, PILEUP_MEAN_PT = 40.0, 1.0
_PT_PRESELECT = 0.4  # GeV, truth: migration from below is negligible at 1% resolution
_ETA_PRESELECT = 2.7


class _Columns:
    """A dataclass of equal-length numpy columns: rows taken, tables concatenated."""

    def take(self, index: np.ndarray):
        """The rows at ``index`` (mask or indices), in that order."""
        return type(self)(**{name: value[index] for name, value in vars(self).items()})


def concatenate(a: _Columns, b: _Columns) -> _Columns:
    """The rows of ``a`` then those of ``b`` (tables of one type)."""
    return type(a)(**{k: np.concatenate([v, getattr(b, k)]) for k, v in vars(a).items()})


@dataclass
class Tracks(_Columns):
    """Reconstructed tracks of a batch, flat (GeV, mm); ``event`` is the event index."""

    event: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    charge: np.ndarray
    d0: np.ndarray
    z0_sin_theta: np.ndarray
    d0_sigma: np.ndarray
    z0_sin_theta_sigma: np.ndarray
    #: truth: origin code (:data:`flavourflow.generate.truth.ORIGINS`) and production-vertex
    #: key (0 primary, -1 none, > 0 one per displaced point of the batch)
    origin: np.ndarray
    vertex: np.ndarray


def ip_resolution(p: np.ndarray, sin_theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sigma_d0, sigma_z0SinTheta) in mm for momentum ``p`` (GeV) and sin(theta)."""
    ms = 1.0 / (p * sin_theta**1.5)
    sigma_d0 = np.hypot(D0_A, D0_B * ms)
    sigma_z0 = np.hypot(Z0_A, Z0_B * ms)
    return sigma_d0, sigma_z0 * sin_theta


def impact_parameters(dx: np.ndarray, dy: np.ndarray, dz: np.ndarray, phi: np.ndarray,
                      theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True (d0, z0SinTheta) in mm of straight tracks from (dx, dy, dz) relative to the PV."""
    sin_phi, cos_phi = np.sin(phi), np.cos(phi)
    d0 = dx * sin_phi - dy * cos_phi
    z0 = dz - (dx * cos_phi + dy * sin_phi) / np.tan(theta)
    return d0, z0 * np.sin(theta)


def reconstruct(particles: Particles, charges: ChargeTable, rng: np.random.Generator) -> Tracks:
    """Charged stable particles -> tracks, with every reconstructed quantity smeared.

    Cuts: truth production radius < 100 mm (tracks need pixel hits), 98% efficiency, then
    reconstructed pT > 500 MeV, |eta| < 2.5, |d0| < 3.5 mm and |z0 sin(theta)| < 5 mm (an
    ATLAS-like flavour-tagging track selection, which removes most V0 and interaction
    tracks). Random numbers are drawn for every candidate in a fixed order, so a given
    (seed, shard) always gives the same tracks (the truth labels draw none)."""
    final = np.flatnonzero(particles.status > 0)
    charge = charges(particles.id[final])
    idx = final[charge != 0]
    charge = charge[charge != 0]
    pt, eta, phi = pt_eta_phi(particles.px[idx], particles.py[idx], particles.pz[idx])
    event = particles.event[idx]
    reco_pv = particles.pv + PV_RESOLUTION * rng.standard_normal((particles.n_events, 3))
    pv = reco_pv[event]
    origin, prompt = truth.origins(particles)
    cand = _Candidates(event, particles.x[idx] - pv[:, 0], particles.y[idx] - pv[:, 1],
                       particles.z[idx] - pv[:, 2], pt, eta, phi, charge, particles.id[idx],
                       origin[idx], prompt[idx])
    cand = interact(_preselected(cand), rng)
    cand = _preselected(cand)  # the secondaries
    pt, eta, phi, event, charge = cand.pt, cand.eta, cand.phi, cand.event, cand.charge
    n = len(pt)

    gauss = rng.standard_normal((5, n))
    uniform = rng.random((5, n))
    found = uniform[0] < EFFICIENCY
    tail = np.where(uniform[1] < TAIL_FRACTION, TAIL_SCALE, 1.0)
    fake = uniform[2] < FAKE_FRACTION

    theta = 2.0 * np.arctan(np.exp(-eta))
    p = pt * np.cosh(eta)
    pt_s = pt / np.abs(1.0 + np.hypot(PT_A, PT_B * pt) * gauss[0])
    sigma_angle = np.hypot(ANGLE_A, ANGLE_B / p)
    phi_s = (phi + sigma_angle * gauss[1] + np.pi) % (2.0 * np.pi) - np.pi
    theta_s = np.clip(theta + sigma_angle * gauss[2], 1e-6, np.pi - 1e-6)
    eta_s = -np.log(np.tan(0.5 * theta_s))
    sin_s = np.sin(theta_s)
    sigma_d0, sigma_z0st = ip_resolution(pt_s / sin_s, sin_s)

    d0, z0st = impact_parameters(cand.x, cand.y, cand.z, phi, theta)
    d0_s = np.where(fake, FAKE_IP_RANGE * (2 * uniform[3] - 1), d0 + tail * sigma_d0 * gauss[3])
    z0st_s = np.where(fake, FAKE_IP_RANGE * (2 * uniform[4] - 1),
                      z0st + tail * sigma_z0st * gauss[4])

    origin = np.where(fake, np.int8(truth.FAKE), cand.origin)
    vertex = truth.vertex_keys(event, cand.x, cand.y, cand.z, cand.prompt, fake)
    return _selected(Tracks(event[found], pt_s[found], eta_s[found], phi_s[found],
                            charge[found], d0_s[found], z0st_s[found], sigma_d0[found],
                            sigma_z0st[found], origin[found], vertex[found]))


@dataclass
class _Candidates(_Columns):
    """Charged particles that may leave a track: production point relative to the
    reconstructed primary vertex (mm), true direction and pT (GeV), charge, PDG id."""

    event: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    charge: np.ndarray
    pdg: np.ndarray
    origin: np.ndarray
    prompt: np.ndarray


def _preselected(cand: _Candidates) -> _Candidates:
    """Truth-level preselection: candidates that could pass the track selection."""
    return cand.take((cand.pt > _PT_PRESELECT) & (np.abs(cand.eta) < _ETA_PRESELECT)
                     & (np.hypot(cand.x, cand.y) < R_PROD_MAX))


def interact(cand: _Candidates, rng: np.random.Generator) -> _Candidates:
    """``cand`` after hadronic interactions in the material layers (see the module doc):
    interacting parents lost before the third layer are dropped, secondaries appended (in
    a fixed order, so the same random stream gives the same tracks)."""
    n = len(cand.pt)
    theta = 2.0 * np.arctan(np.exp(-cand.eta))
    sin_t = np.sin(theta)
    r0 = np.hypot(cand.x, cand.y)
    hadron = np.isin(np.abs(cand.pdg), INTERACTING)
    # the first layer (outside its production point) at which each hadron interacts, if any
    layer = np.full(n, -1)
    draws = rng.random((len(MATERIAL_RADII), n))
    probability = np.minimum(INTERACTION_PROBABILITY / np.maximum(sin_t, 1e-3), 0.5)
    for k in reversed(range(len(MATERIAL_RADII))):
        hit = hadron & (r0 < MATERIAL_RADII[k]) & (draws[k] < probability)
        layer = np.where(hit, k, layer)
    parents = np.flatnonzero(layer >= 0)
    radius = np.asarray(MATERIAL_RADII)[layer[parents]]
    # where the parent's straight line crosses that radius
    ux, uy = np.cos(cand.phi[parents]), np.sin(cand.phi[parents])
    px0, py0 = cand.x[parents], cand.y[parents]
    b = px0 * ux + py0 * uy
    t = -b + np.sqrt(np.maximum(b * b - (px0 * px0 + py0 * py0 - radius * radius), 0.0))
    vx, vy = px0 + t * ux, py0 + t * uy
    vz = cand.z[parents] + t / np.tan(theta[parents])
    # 2-4 charged secondaries sharing SECONDARY_MOMENTUM_SHARE of the parent momentum
    n_sec = rng.integers(2, 5, len(parents))
    parent_of = np.repeat(np.arange(len(parents)), n_sec)
    m = len(parent_of)
    share = rng.exponential(1.0, m)
    share /= np.bincount(parent_of, weights=share, minlength=len(parents))[parent_of]
    p_parent = cand.pt[parents] / sin_t[parents]
    p_sec = np.maximum(SECONDARY_MOMENTUM_SHARE * p_parent[parent_of] * share, 1e-3)
    spread = SECONDARY_ANGLE / np.sqrt(p_sec)
    theta_sec = np.clip(theta[parents][parent_of] + spread * rng.standard_normal(m),
                        1e-3, np.pi - 1e-3)
    phi_sec = cand.phi[parents][parent_of] + spread * rng.standard_normal(m) / np.maximum(
        np.sin(theta_sec), 1e-3)
    phi_sec = (phi_sec + np.pi) % (2.0 * np.pi) - np.pi
    charge_sec = rng.choice(np.array([-1.0, 1.0]), m)
    secondaries = _Candidates(
        event=cand.event[parents][parent_of], x=vx[parent_of], y=vy[parent_of],
        z=vz[parent_of], pt=p_sec * np.sin(theta_sec),
        eta=-np.log(np.tan(0.5 * theta_sec)), phi=phi_sec, charge=charge_sec,
        pdg=np.full(m, 211), origin=np.full(m, truth.OTHER_SECONDARY, dtype=np.int8),
        prompt=np.zeros(m, dtype=bool))
    lost = np.zeros(n, dtype=bool)
    lost[parents] = layer[parents] < 2  # no hits left in the IBL and the B-layer
    return concatenate(cand.take(~lost), secondaries)


def _selected(tracks: Tracks) -> Tracks:
    """The reconstructed-level track selection."""
    return tracks.take((tracks.pt > PT_MIN) & (np.abs(tracks.eta) < ETA_MAX)
                       & (np.abs(tracks.d0) < D0_MAX)
                       & (np.abs(tracks.z0_sin_theta) < Z0_SIN_THETA_MAX))


def pileup(n_events: int, mean_tracks: float, rng: np.random.Generator) -> Tracks:
    """Soft tracks from ``mean_tracks`` (Poisson mean per event) pile-up particles: prompt in
    the transverse plane, from a vertex elsewhere along the beam, after the same selection
    (so only those from vertices close to the hard-scatter one survive the z0 cut)."""
    counts = rng.poisson(mean_tracks, n_events)
    n = int(counts.sum())
    event = np.repeat(np.arange(n_events), counts)
    pt = PT_MIN + rng.exponential(PILEUP_MEAN_PT, n)
    eta = rng.uniform(-ETA_MAX, ETA_MAX, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    sin_theta = 1.0 / np.cosh(eta)
    sigma_d0, sigma_z0st = ip_resolution(pt / sin_theta, sin_theta)
    dz = np.sqrt(2.0) * PILEUP_SIGMA_Z * rng.standard_normal(n)  # pile-up minus hard vertex
    d0 = sigma_d0 * rng.standard_normal(n)
    z0st = dz * sin_theta + sigma_z0st * rng.standard_normal(n)
    charge = rng.choice(np.array([-1.0, 1.0]), n)
    return _selected(Tracks(event, pt, eta, phi, charge, d0, z0st, sigma_d0, sigma_z0st,
                            np.full(n, truth.PILEUP, dtype=np.int8),
                            np.full(n, -1, dtype=np.int64)))
