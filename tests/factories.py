"""Small real input files for tests: ROOT ntuples in flavourflow's schema, written by uproot.

The physics is a caricature (labels drawn at random, heavy-flavour tracks displaced along
the jet), enough to make every stage's behaviour observable in a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import uproot

LABELS = np.array([0, 4, 5, 15])
LABEL_PROBS = np.array([0.55, 0.17, 0.23, 0.05])


def synthetic_events(n_events: int, seed: int = 0, first_event: int = 0) -> dict[str, ak.Array]:
    """Branches of ``n_events`` events in the schema the generate stage writes."""
    rng = np.random.default_rng(seed)
    n_jets = rng.integers(1, 7, n_events)
    total = int(n_jets.sum())
    pt = (15_000 + rng.exponential(40_000, total)).astype(np.float32)
    eta = rng.uniform(-2.8, 2.8, total).astype(np.float32)
    phi = rng.uniform(-np.pi, np.pi, total).astype(np.float32)
    label = rng.choice(LABELS, total, p=LABEL_PROBS).astype(np.int32)
    heavy = (label == 5) | (label == 4)
    n_trk = rng.integers(0, 16, total)
    n_all = int(n_trk.sum())
    jet_of_trk = np.repeat(np.arange(total), n_trk)
    trk_phi = phi[jet_of_trk] + rng.normal(0, 0.1, n_all)
    trk_eta = eta[jet_of_trk] + rng.normal(0, 0.1, n_all)
    sigma = rng.uniform(0.01, 0.05, n_all)
    displaced = heavy[jet_of_trk] & (rng.random(n_all) < 0.5)
    lifetime = rng.exponential(np.where(label[jet_of_trk] == 5, 6.0, 3.0)) * sigma
    sign = np.sign(np.sin(trk_phi - phi[jet_of_trk]))
    d0 = rng.normal(0, sigma) + np.where(displaced, sign * lifetime, 0.0)
    z0_sigma = 2 * sigma
    z0_sign = np.sign(eta[jet_of_trk] - trk_eta)  # lifetime sign of z0 (see dump.ntuple)
    z0 = rng.normal(0, z0_sigma) + np.where(displaced, z0_sign * 2 * lifetime, 0.0)
    tracks = {
        "pt": 500 + rng.exponential(5_000, n_all), "eta": trk_eta,
        "phi": (trk_phi + np.pi) % (2 * np.pi) - np.pi,
        "charge": rng.choice([-1.0, 1.0], n_all), "d0": d0, "z0SinTheta": z0,
        "d0_sigma": sigma, "z0SinTheta_sigma": z0_sigma,
    }

    def per_jet(values: np.ndarray) -> ak.Array:
        return ak.unflatten(values, n_jets)

    def per_track(values: np.ndarray) -> ak.Array:
        return ak.unflatten(ak.unflatten(values.astype(np.float32), n_trk), n_jets)

    truth_pt = np.where(heavy, pt * 0.7, np.nan).astype(np.float32)
    truth_lxy = np.where(heavy, rng.exponential(3.0, total), np.nan).astype(np.float32)
    branches = {
        "eventNumber": np.arange(first_event, first_event + n_events, dtype=np.int64),
        "mcEventWeight": np.ones(n_events, dtype=np.float32),
        "jet_pt": per_jet(pt), "jet_eta": per_jet(eta), "jet_phi": per_jet(phi),
        "jet_m": per_jet((pt * 0.1).astype(np.float32)),
        "jet_HadronConeExclTruthLabelID": per_jet(label),
        "jet_truthHadron_pt": per_jet(truth_pt), "jet_truthHadron_Lxy": per_jet(truth_lxy),
    }
    branches.update({f"jet_trk_{k}": per_track(v) for k, v in tracks.items()})
    return branches


def write_ntuple(path: Path, n_events: int, seed: int = 0, first_event: int = 0,
                 drop: tuple[str, ...] = ()) -> Path:
    """Write a synthetic ntuple (tree ``events``) to ``path``; ``drop`` removes branches."""
    branches = synthetic_events(n_events, seed, first_event)
    with uproot.recreate(path) as f:
        f["events"] = {k: v for k, v in branches.items() if k not in drop}
    return path
