"""Anti-kt R=0.4 clustering of the stable visible particles and HadronConeExclTruthLabelID.

Everything works on flat per-batch columns (see ``pythia.Particles``) with per-event
offsets, so the cost per event is a few numpy passes rather than Python loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flavourflow.core.flavours import BOTTOM, CHARM, LIGHT, TAU
from flavourflow.generate.pythia import Particles

JET_R = 0.4
#: Truth labelling (ATLAS HadronConeExclTruthLabelID): hadron pT threshold and cone.
LABEL_PT_MIN = 5.0  # GeV
LABEL_DR_MAX = 0.3
#: Hadrons and tracks are matched to the nearest of all jets above this pT (GeV), as in
#: ATLAS where labelling and association run on the whole jet container before any
#: analysis cut; the stored jets are a subset.
MATCH_JET_PT_MIN = 10.0
_NEUTRINOS = (12, 14, 16)


@dataclass
class Jets:
    """Jets of a batch, flat, sorted by decreasing pT within each event (GeV)."""

    offsets: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    m: np.ndarray

    @property
    def event(self) -> np.ndarray:
        """Event index of every jet."""
        return np.repeat(np.arange(len(self.offsets) - 1), np.diff(self.offsets))


def _segment_offsets(mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per-event offsets of the entries of a flat array that pass ``mask``."""
    cum = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
    return cum[offsets]


def pt_eta_phi(px: np.ndarray, py: np.ndarray,
               pz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pT, eta, phi) of momenta; eta from asinh(pz/pT), finite for pT > 0."""
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(pz / pt)
    return pt, eta, np.arctan2(py, px)


def cluster(particles: Particles, pt_min: float) -> Jets:
    """Anti-kt R=0.4 jets with pT > ``pt_min`` (GeV) from every stable particle except
    neutrinos, all events of the batch in one fastjet call (its multi-event interface)."""
    import awkward as ak
    import fastjet

    visible = (particles.status > 0) & ~np.isin(np.abs(particles.id), _NEUTRINOS)
    offsets = _segment_offsets(visible, particles.offsets)
    columns = [ak.contents.NumpyArray(np.ascontiguousarray(c[visible]))
               for c in (particles.px, particles.py, particles.pz, particles.e)]
    inputs = ak.Array(ak.contents.ListOffsetArray(
        ak.index.Index64(offsets),
        ak.contents.RecordArray(columns, ["px", "py", "pz", "E"]),
    ))
    fastjet._swig.ClusterSequence.set_fastjet_banner_stream(None)  # no banner on stdout
    jetdef = fastjet.JetDefinition(fastjet.antikt_algorithm, JET_R)
    out = fastjet.ClusterSequence(inputs, jetdef).inclusive_jets(min_pt=pt_min)
    jet_offsets = np.asarray(out.layout.offsets, dtype=np.int64)
    record = out.layout.content
    px, py, pz, e = (np.asarray(record.content(c).data) for c in ("px", "py", "pz", "E"))
    pt, eta, phi = pt_eta_phi(px, py, pz)
    m = np.sqrt(np.maximum(e * e - px * px - py * py - pz * pz, 0.0))
    event = np.repeat(np.arange(len(jet_offsets) - 1), np.diff(jet_offsets))
    order = np.lexsort((-pt, event))
    return Jets(jet_offsets, pt[order], eta[order], phi[order], m[order])


def delta_phi(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a - b wrapped into [-pi, pi)."""
    return (a - b + np.pi) % (2.0 * np.pi) - np.pi


def nearest_jet(eta: np.ndarray, phi: np.ndarray, event: np.ndarray, jets: Jets,
                dr_max: float) -> np.ndarray:
    """Flat index of the jet of the same event nearest in (eta, phi) to each object, or -1
    where the nearest jet is not within ``dr_max``: an object goes to one jet only."""
    counts = np.diff(jets.offsets)[event]
    n_pairs = int(counts.sum())
    result = np.full(len(eta), -1, dtype=np.int64)
    if n_pairs == 0:
        return result
    obj = np.repeat(np.arange(len(eta)), counts)
    first_pair = np.cumsum(counts) - counts
    jet = np.repeat(jets.offsets[event] - first_pair, counts) + np.arange(n_pairs)
    dr2 = (jets.eta[jet] - eta[obj]) ** 2 + delta_phi(jets.phi[jet], phi[obj]) ** 2
    has_jets = counts > 0
    best = np.minimum.reduceat(dr2, first_pair[has_jets])
    is_best = dr2 == np.repeat(best, counts[has_jets])
    best_obj, first = np.unique(obj[is_best], return_index=True)
    best_jet = jet[is_best][first]
    close = best <= dr_max * dr_max
    result[best_obj[close]] = best_jet[close]
    return result


def _digits(pdg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = np.abs(pdg)
    return (a // 1000) % 10, (a // 100) % 10, (a // 10) % 10


def heavy_flavour(pdg: np.ndarray, quark: int) -> np.ndarray:
    """True for open-flavour hadrons containing quark ``quark`` (5 or 4) among their PDG
    quark digits; quarkonia (q qbar of the same flavour) and diquarks are excluded."""
    n1, n2, n3 = _digits(pdg)
    hadron = (n2 > 0) & (n3 > 0) & (np.abs(pdg) < 1_000_000)
    onium = (n1 == 0) & (n2 == n3)
    return hadron & ~onium & ((n1 == quark) | (n2 == quark) | (n3 == quark))


def _daughter_ranges(particles: Particles, idx: np.ndarray, event: np.ndarray):
    """Flat [lo, hi] daughter ranges of particles ``idx`` plus a lone second daughter (or -1)
    for Pythia's 'two separate daughters' case (0 < daughter2 < daughter1)."""
    base = particles.offsets[event]
    d1, d2 = particles.daughter1[idx], particles.daughter2[idx]
    has = d1 > 0
    lo = np.where(has, d1 + base, 0)
    hi = np.where(has, np.where(d2 >= d1, d2, d1) + base, -1)
    extra = np.where((d2 > 0) & (d2 < d1), d2 + base, -1)
    return lo, hi, extra


def _range_sum(cum: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Sums of the summed quantity over flat index ranges [lo, hi] (empty when hi < lo)."""
    return np.where(hi >= lo, cum[np.maximum(hi, lo - 1) + 1] - cum[lo], 0)


def _last_of_kind(particles: Particles, flag: np.ndarray, event: np.ndarray):
    """Indices of flagged particles none of whose daughters is flagged (the last,
    weakly decaying member of a decay chain), with their daughter ranges."""
    idx = np.flatnonzero(flag)
    ev = event[idx]
    lo, hi, extra = _daughter_ranges(particles, idx, ev)
    cum = np.concatenate([[0], np.cumsum(flag, dtype=np.int64)])
    n_flagged = _range_sum(cum, lo, hi) + np.where(extra >= 0, flag[np.maximum(extra, 0)], 0)
    last = n_flagged == 0
    return idx[last], ev[last], lo[last], hi[last]


@dataclass
class TruthObjects:
    """Labelling objects of one kind: flat particle index, event, pT (GeV), eta, phi, Lxy."""

    index: np.ndarray
    event: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    lxy: np.ndarray


def weak_hadrons(particles: Particles, quark: int, event: np.ndarray) -> TruthObjects:
    """Weakly decaying b (``quark`` 5) or c (4) hadrons with pT > 5 GeV; Lxy (mm) is the
    transverse distance from the true PV to the decay vertex (first daughter's origin)."""
    flag = heavy_flavour(particles.id, quark)
    if quark == CHARM.label:
        flag &= ~heavy_flavour(particles.id, BOTTOM.label)  # B_c counts as a b hadron
    idx, ev, lo, _ = _last_of_kind(particles, flag, event)
    pt, eta, phi = pt_eta_phi(particles.px[idx], particles.py[idx], particles.pz[idx])
    pv = particles.pv[ev]
    decay = np.maximum(lo, 0)
    lxy = np.where(lo > 0, np.hypot(particles.x[decay] - pv[:, 0],
                                    particles.y[decay] - pv[:, 1]), np.nan)
    keep = pt > LABEL_PT_MIN
    return TruthObjects(idx[keep], ev[keep], pt[keep], eta[keep], phi[keep], lxy[keep])


def taus(particles: Particles, event: np.ndarray) -> TruthObjects:
    """Last-copy tau leptons with visible pT > 5 GeV (tau momentum minus the neutrinos
    among its direct daughters); the visible direction is used for matching."""
    flag = np.abs(particles.id) == TAU.label
    idx, ev, lo, hi = _last_of_kind(particles, flag, event)
    nu = np.isin(np.abs(particles.id), _NEUTRINOS)
    vis = []
    for comp in (particles.px, particles.py, particles.pz):
        cum = np.concatenate([[0.0], np.cumsum(np.where(nu, comp, 0.0))])
        vis.append(comp[idx] - _range_sum(cum, lo, hi))
    pt, eta, phi = pt_eta_phi(*vis)
    keep = pt > LABEL_PT_MIN
    nan = np.full(int(keep.sum()), np.nan)
    return TruthObjects(idx[keep], ev[keep], pt[keep], eta[keep], phi[keep], nan)


@dataclass
class Labels:
    """Per jet (flat, aligned with ``Jets``): truth label, labelling hadron pT (GeV) and
    Lxy (mm), NaN for jets without a b or c hadron."""

    label: np.ndarray
    hadron_pt: np.ndarray
    hadron_lxy: np.ndarray


def label_jets(particles: Particles, jets: Jets) -> Labels:
    """HadronConeExclTruthLabelID: 5 if a weakly decaying b hadron (pT > 5 GeV) has this jet
    as its nearest jet and lies within dR < 0.3, else 4 for c hadrons, else 15 for taus,
    else 0. The hardest matched hadron of the winning flavour is kept for pT and Lxy."""
    n = len(jets.pt)
    labels = Labels(np.full(n, LIGHT.label, dtype=np.int32), np.full(n, np.nan),
                    np.full(n, np.nan))
    event = particles.event
    # Lowest priority first: later flavours overwrite.
    for flavour, objects in ((TAU, taus(particles, event)),
                             (CHARM, weak_hadrons(particles, CHARM.label, event)),
                             (BOTTOM, weak_hadrons(particles, BOTTOM.label, event))):
        jet = nearest_jet(objects.eta, objects.phi, objects.event, jets, LABEL_DR_MAX)
        matched = jet >= 0
        jet, pt, lxy = jet[matched], objects.pt[matched], objects.lxy[matched]
        order = np.lexsort((-pt, jet))  # per jet, hardest first
        uniq, first = np.unique(jet[order], return_index=True)
        labels.label[uniq] = flavour.label
        hard = order[first]
        if flavour is TAU:
            continue
        labels.hadron_pt[uniq] = pt[hard]
        labels.hadron_lxy[uniq] = lxy[hard]
    return labels


def select(jets: Jets, pt_min: float, eta_max: float) -> np.ndarray:
    """Mask of the jets kept in the output: pT > ``pt_min`` (GeV) and |eta| < ``eta_max``."""
    return (jets.pt > pt_min) & (np.abs(jets.eta) < eta_max)

