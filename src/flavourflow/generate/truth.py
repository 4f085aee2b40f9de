"""Truth of reconstructed tracks for auxiliary training tasks: the ATLAS track-origin label
(FlavorTagDiscriminants' ``ftagTruthOriginLabel`` classes) and a production-vertex key.

Origin of a track, from its particle's decay ancestry in the Pythia record (a b or c hadron or
a tau anywhere up the chain of decays) and, without such an ancestor, from where it was
produced:

====  ===============  ==============================================================
code  name             meaning
====  ===============  ==============================================================
0     pileup           a pile-up track (``pileup_tracks``)
1     fake             a fake track (random impact parameters)
2     primary          produced at the primary vertex (within 1 um), no b/c/tau ancestor
3     fromB            a b-hadron ancestor and no c hadron between it and the track
4     fromBC           a c hadron from a b-hadron decay
5     fromC            a c-hadron ancestor, no b hadron
6     fromTau          a tau ancestor, no b or c hadron
7     otherSecondary   displaced without heavy flavour or tau: K0S, Lambda and other
                       strange-hadron decays, hadronic interactions in the material
====  ===============  ==============================================================

Production vertex: tracks produced at the same point share a key; the primary vertex (prompt
tracks, within 1 um of it) is key 0, fakes and pile-up have -1. Within a jet the keys become
``ftagTruthVertexIndex`` (see :func:`vertex_indices`).
"""

from __future__ import annotations

import numpy as np

from flavourflow.generate.jets import _daughter_ranges, heavy_flavour
from flavourflow.generate.pythia import Particles

ORIGINS = ("pileup", "fake", "primary", "fromB", "fromBC", "fromC", "fromTau",
           "otherSecondary")
PILEUP, FAKE, PRIMARY, FROM_B, FROM_BC, FROM_C, FROM_TAU, OTHER_SECONDARY = range(8)
#: Production points closer than this to the true primary vertex count as prompt (mm): a
#: pi0 Dalitz decay (c tau = 25 nm) is prompt, a tau (87 um) or a K0S is not.
PROMPT_DISTANCE = 1e-3
_B, _C, _TAU = 1, 2, 4
#: Longest chain of decays followed (Pythia's are < 10 deep).
_MAX_DEPTH = 64


def ancestry(particles: Particles) -> np.ndarray:
    """Per particle, bit flags (b hadron 1, c hadron 2, tau 4) of itself and its ancestors in
    the decay chain, propagated from every flagged particle to its daughter range."""
    n = len(particles.id)
    pdg = particles.id
    is_b = heavy_flavour(pdg, 5)
    own = (is_b * _B | (heavy_flavour(pdg, 4) & ~is_b) * _C
           | (np.abs(pdg) == 15) * _TAU).astype(np.uint8)
    lo, hi, extra = _daughter_ranges(particles, np.arange(n), particles.event)
    has = hi >= lo
    flags = own.copy()
    for _ in range(_MAX_DEPTH):
        new = own.copy()
        for bit in (_B, _C, _TAU):
            src = has & ((flags & bit) != 0)
            diff = (np.bincount(lo[src], minlength=n + 1)
                    - np.bincount(hi[src] + 1, minlength=n + 1))
            covered = np.cumsum(diff[:n]) > 0
            covered[extra[src & (extra >= 0)]] = True
            new |= (covered * bit).astype(np.uint8)
        if np.array_equal(new, flags):
            break
        flags = new
    return flags


def origins(particles: Particles) -> tuple[np.ndarray, np.ndarray]:
    """(origin code int8, prompt bool) of every particle of the record (see the module doc;
    pile-up and fake are decided later, for tracks)."""
    flags = ancestry(particles)
    pv = particles.pv[particles.event]
    displacement = np.sqrt((particles.x - pv[:, 0]) ** 2 + (particles.y - pv[:, 1]) ** 2
                           + (particles.z - pv[:, 2]) ** 2)
    prompt = displacement < PROMPT_DISTANCE
    b, c, tau = (flags & _B) != 0, (flags & _C) != 0, (flags & _TAU) != 0
    origin = np.select([b & c, b, c, tau, ~prompt],
                       [FROM_BC, FROM_B, FROM_C, FROM_TAU, OTHER_SECONDARY], PRIMARY)
    return origin.astype(np.int8), prompt


def vertex_keys(event: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray,
                prompt: np.ndarray, none: np.ndarray) -> np.ndarray:
    """A key per track: 0 for prompt ones, -1 where ``none`` (fakes), else one positive key
    per distinct (event, production point)."""
    keys = np.zeros(len(event), dtype=np.int64)
    displaced = ~prompt & ~none
    if displaced.any():
        points = np.stack([event[displaced].astype(np.float64), x[displaced], y[displaced],
                           z[displaced]], axis=1)
        _, inverse = np.unique(points, axis=0, return_inverse=True)
        keys[displaced] = inverse.reshape(-1) + 1
    keys[none] = -1
    return keys


def vertex_indices(track_jet: np.ndarray, pt: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``ftagTruthVertexIndex`` of each track: 0 for the primary vertex, -1 for none, and
    1, 2, ... for the displaced vertices of its jet, numbered in the order in which their
    first track appears when the jet's tracks are sorted by decreasing pT."""
    out = np.where(keys > 0, 0, keys).astype(np.int32)
    displaced = np.flatnonzero(keys > 0)
    if not len(displaced):
        return out
    order = displaced[np.lexsort((-pt[displaced], track_jet[displaced]))]
    jet, key = track_jet[order], keys[order]
    pairs = np.stack([jet, key], axis=1)
    _, first, inverse = np.unique(pairs, axis=0, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    # rank of each (jet, vertex) among its jet's vertices, by first appearance
    first_pos = first[inverse]  # position (in `order`) of the vertex's first track
    uniq_first = np.sort(first)
    jet_of_first = jet[uniq_first]
    jet_start = np.searchsorted(jet_of_first, jet_of_first, side="left")
    rank = np.empty(len(uniq_first), dtype=np.int64)
    rank[:] = np.arange(len(uniq_first)) - jet_start
    out[order] = (rank[np.searchsorted(uniq_first, first_pos)] + 1).astype(np.int32)
    return out
