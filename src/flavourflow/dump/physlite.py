"""Read ATLAS PHYSLITE into TDD blocks: Run 2 TTree ``CollectionTree`` or Run 3 RNTuple
``EventData`` (detected).

* Jets: ``AnalysisJets`` kinematics (MeV) and ``HadronConeExclTruthLabelID``.
* Tagger outputs (``DL1r``, ``DL1dv01``, ``GN2v01``: ``_pb``, ``_pc``, ``_pu``, whichever the
  file has) of the b-tagging object each jet's ``btaggingLink`` points to, never the object at
  the jet's position: the two orders differ (in the Run 3 test file for a quarter of the jets).
* Tracks: the ``InDetTrackParticles`` the jet's ``GhostTrack`` links point to. A link whose key
  is not the track container's (0 once the track was thinned away) or whose index is out of
  range is skipped. The container keys come from the file's ``EventFormat`` metadata; where it
  cannot be read, any non-zero key is accepted.
* Per track: pT, eta and charge from (theta, q/p); d0 and z0 sin(theta) moved from the beam
  line to the event's primary vertex where the file has the vertex and beam-spot positions;
  their uncertainties from the defining-parameters covariance (full, Run 2, or compressed
  diagonal + correlation coefficients, Run 3), with the theta and z0-theta terms for
  z0 sin(theta). d0 is stored in flavourflow's sign convention (ATLAS d0 negated, see
  :mod:`flavourflow.dump.blocks`). A TDD-like track selection is applied (:data:`TRACK_CUTS`).
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import awkward as ak
import numba
import numpy as np
import uproot

from flavourflow.core.errors import FlavourflowError
from flavourflow.core.flavours import LABEL_FIELD
from flavourflow.dump import blocks
from flavourflow.dump.blocks import Selection
from flavourflow.dump.kernels import kernel

log = logging.getLogger(__name__)

TTREE, RNTUPLE = "CollectionTree", "EventData"
JETS, TRACKS, VERTICES, EVENT = "AnalysisJets", "InDetTrackParticles", "PrimaryVertices", \
    "EventInfo"
BTAGGING_PREFIX = "BTagging_AntiKt4EMPFlow"
TAGGERS = ("DL1r", "DL1dv01", "GN2v01")
TAGGER_OUTPUTS = ("pb", "pc", "pu")
#: Track selection (MeV, mm), as the TDD's default one and flavourflow's generator apply.
TRACK_CUTS = {"pt_min": 500.0, "abs_eta_max": 2.5, "abs_d0_max": 3.5,
              "abs_z0SinTheta_max": 5.0}
#: xAOD vertex type of the hard-scatter primary vertex.
PRIMARY_VERTEX = 1
#: Elements of the 5x5 covariance of (d0, z0, phi, theta, q/p) we need, as (row, column).
_D0D0, _Z0Z0, _THTH, _THZ0 = (0, 0), (1, 1), (3, 3), (3, 1)


@dataclass
class _Quantity:
    """One quantity we read: its branch (as the file names it) and the expected type."""

    branch: str
    depth: int
    kind: str = "float"
    record: tuple[str, ...] = ()


@dataclass
class Stats:
    """Link bookkeeping over the whole file, for the provenance attributes and the log."""

    ghost_links: int = 0
    ghost_links_valid: int = 0
    tracks_selected: int = 0
    btag_links: int = 0
    btag_links_valid: int = 0
    btag_links_reordered: int = 0


@dataclass
class GhostLinks:
    """What the tracks of a block's jets are found from: per jet its GhostTrack links, per
    event its tracks (``columns``: d0 z0 theta phi qOverP [vz], as read) and primary vertex
    offset, per track its covariance elements (see :meth:`Reader._covariance`)."""

    n_links: np.ndarray
    key: np.ndarray
    index: np.ndarray
    wanted_key: int  # -1: any non-zero key
    n_tracks: np.ndarray
    track_first: np.ndarray
    columns: dict[str, np.ndarray]
    vertex: tuple[np.ndarray, np.ndarray, np.ndarray]
    covariance: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]
    compressed: bool


@numba.vectorize(["b1(i8, i8, i8, i8)"], nopython=True, cache=True)
def _link_ok(key: int, index: int, n: int, wanted: int) -> bool:
    """An ElementLink to follow: its container key is ``wanted`` (any non-zero key if -1:
    thinned links are 0) and its index within the ``n`` objects of its event. A ufunc, also
    called element by element in the kernels."""
    return (key == wanted if wanted >= 0 else key != 0) and 0 <= index < n


@kernel
def _at(values: np.ndarray, t: int) -> float:
    return np.float64(values[t])


@kernel
def _cov_element(values: np.ndarray, first: np.ndarray, length: np.ndarray, k: int,
                 t: int) -> float:
    """Element k of track t's covariance vector; NaN where the vector is shorter."""
    return np.float64(values[first[t] + k]) if length[t] > k else np.nan


@kernel
def _ghost_tracks(n_links, keep, event_of_jet, key, index, wanted_key, n_tracks, track_first,
                  d0s, z0s, thetas, phis, qoverps, vzs, has_vz, pv_dx, pv_dy, pv_z,
                  c0, f0, l0, c1, f1, l1, c2, f2, l2, c3, f3, l3, cov_k, compressed, cuts,
                  out, counts, stats):
    """The loop of :func:`ghost_tracks`, link by link; returns the tracks written."""
    link = n_out = 0
    kept_jet = -1
    for j in range(len(n_links)):
        first_link = link
        link += n_links[j]
        if not keep[j]:
            continue
        kept_jet += 1
        stats[0] += n_links[j]
        e = event_of_jet[j]
        for m in range(first_link, link):
            if not _link_ok(key[m], index[m], n_tracks[e], wanted_key):
                continue
            stats[1] += 1
            t = track_first[e] + index[m]
            d0, z0, theta, phi = _at(d0s, t), _at(z0s, t), _at(thetas, t), _at(phis, t)
            qoverp = _at(qoverps, t)
            if has_vz:
                z0 = z0 + _at(vzs, t)
            z0 = z0 - pv_z[e]
            d0 = d0 - (-pv_dx[e] * math.sin(phi) + pv_dy[e] * math.cos(phi))
            var_d0 = _cov_element(c0, f0, l0, cov_k[0], t)
            var_z0 = _cov_element(c1, f1, l1, cov_k[1], t)
            var_th = _cov_element(c2, f2, l2, cov_k[2], t)
            cov_thz0 = _cov_element(c3, f3, l3, cov_k[3], t)
            if compressed:  # a correlation coefficient
                cov_thz0 = cov_thz0 * math.sqrt(var_th * var_z0)
            sin_t, cos_t = math.sin(theta), math.cos(theta)
            pt = sin_t / abs(qoverp)
            zc = z0 * cos_t
            sigma_z0st = math.sqrt(sin_t * sin_t * var_z0 + zc * zc * var_th
                                   + 2.0 * z0 * sin_t * cos_t * cov_thz0)
            eta = -math.log(math.tan(0.5 * theta))
            z0st = z0 * sin_t
            if not (pt > cuts[0] and abs(eta) < cuts[1] and abs(d0) < cuts[2]
                    and abs(z0st) < cuts[3]):
                continue
            out[0, n_out], out[1, n_out], out[2, n_out] = pt, eta, phi
            out[3, n_out] = np.sign(qoverp)
            out[4, n_out] = -d0  # ATLAS perigee sign -> flavourflow's (see blocks)
            out[5, n_out], out[6, n_out] = z0st, math.sqrt(var_d0)
            out[7, n_out] = sigma_z0st
            n_out += 1
            counts[kept_jet] += 1
    stats[2] = n_out
    return n_out


def ghost_tracks(links: GhostLinks, event_of_jet: np.ndarray, keep: np.ndarray,
                 cuts: dict[str, float],
                 ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, int]]:
    """The selected tracks of the kept jets (:data:`~flavourflow.dump.blocks.TRACK_INPUTS`,
    jet after jet), each kept jet's count of them and the link counts. A link is followed if
    its jet is kept, its key is the track container's and its index within the event's
    tracks; a ValueError names the arrays that do not fit together."""
    as_int = [np.ascontiguousarray(x, np.int64) for x in (
        links.n_links, event_of_jet, links.key, links.index, links.n_tracks, links.track_first)]
    n_links, event_of_jet, key, index, n_tracks, track_first = as_int
    keep = np.ascontiguousarray(keep, np.bool_)
    names = ("d0", "z0", "theta", "phi", "qOverP")
    columns = [blocks.float_column(links.columns[name], f"track {name}") for name in names]
    has_vz = "vz" in links.columns
    vz = blocks.float_column(links.columns["vz"] if has_vz else columns[1][:0], "track vz")
    vertex = [np.ascontiguousarray(v, np.float64) for v in links.vertex]
    covariance = [(blocks.float_column(values, "track covariance"),
                   *(np.ascontiguousarray(x, np.int64) for x in (first, length)))
                  for values, first, length, _ in links.covariance]
    n_jets, n_events, n_all = len(n_links), len(n_tracks), min(map(len, columns))
    problems = [
        what for what, bad in (
            ("jets", len(event_of_jet) != n_jets or len(keep) != n_jets),
            ("links", len(key) != len(index) or int(n_links.sum()) != len(key)
             or (n_jets and n_links.min() < 0)),
            ("events", len(track_first) != n_events or any(len(v) != n_events for v in vertex)
             or (n_jets and not 0 <= event_of_jet.min() <= event_of_jet.max() < n_events)),
            ("tracks", n_events and (n_tracks.min() < 0 or track_first.min() < 0
                                     or int((track_first + n_tracks).max()) > n_all)
             or (has_vz and len(vz) < n_all)),
            ("covariance", any(len(f) < n_all or len(n) < n_all
                               or (len(f) and (f.min() < 0 or n.min() < 0
                                               or int((f + n).max()) > len(v)))
                               for v, f, n in covariance)),
        ) if bad]
    if problems:
        raise ValueError(f"ghost links: the {', '.join(problems)} do not fit together")
    out = np.empty((8, len(key)))
    counts = np.zeros(int(keep.sum()), np.int64)
    stats = np.zeros(3, np.int64)
    cut_values = np.array([cuts[name] for name in ("pt_min", "abs_eta_max", "abs_d0_max",
                                                   "abs_z0SinTheta_max")], dtype=np.float64)
    n = _ghost_tracks(n_links, keep, event_of_jet, key, index, links.wanted_key, n_tracks,
                      track_first, *columns, vz, has_vz, *vertex,
                      *(x for element in covariance for x in element),
                      np.array([c[3] for c in links.covariance], np.int64),
                      links.compressed, cut_values, out, counts, stats)
    return (counts, {name: out[k, :n] for k, name in enumerate(blocks.TRACK_INPUTS)},
            dict(zip(("ghost_links", "ghost_links_valid", "tracks_selected"), map(int, stats),
                     strict=True)))


@dataclass
class Reader:
    """A PHYSLITE file opened for streaming: where each quantity lives, and what it has."""

    path: Path
    obj: object
    storage: str
    quantities: dict[str, _Quantity]
    taggers: list[str]
    btagging: str | None
    keys: dict[str, int] | None
    covariance: str
    stats: Stats = field(default_factory=Stats)

    # -- reading -------------------------------------------------------------------------
    @property
    def pt_branch(self) -> str:
        return self.quantities["jet_pt"].branch

    @property
    def extra_fields(self) -> dict[str, np.dtype]:
        return {f"{t}_{p}": np.dtype("f4") for t in self.taggers for p in TAGGER_OUTPUTS}

    def blocks(self, step_size: int) -> Iterator[ak.Array]:
        """Stream blocks of ``step_size`` events; the first block's types are checked."""
        branches = sorted({q.branch for q in self.quantities.values()})

        def check(block: ak.Array) -> None:
            for q in self.quantities.values():
                blocks.check_type(block[q.branch], self.path, q.branch, q.depth, q.kind,
                                  q.record)

        yield from blocks.iterate_checked(self.obj, branches, step_size, self.path,
                                          self.storage, check,
                                          lambda: self._find_unreadable(branches))

    def _find_unreadable(self, branches: list[str]) -> None:
        """Name the branch that cannot be read (an unsupported or broken type)."""
        for name in branches:
            try:
                self.obj.arrays([name], entry_stop=1, library="ak")
            except Exception as err:
                raise FlavourflowError(f"cannot read branch: {type(err).__name__}: {err}",
                                       path=self.path, field=name) from None

    # -- conversion ----------------------------------------------------------------------
    def _get(self, events: blocks.Columns, name: str) -> ak.contents.Content:
        return events[self.quantities[name].branch]

    def _link(self, events: blocks.Columns,
              name: str) -> tuple[ak.contents.Content, ak.contents.Content]:
        """(key, index) of an ElementLink quantity, split branches or one record branch."""
        if f"{name}_key" in self.quantities:
            return self._get(events, f"{name}_key"), self._get(events, f"{name}_index")
        links = self._get(events, name)
        return links["m_persKey"], links["m_persIndex"]

    def _wanted_key(self, container: str | None) -> int:
        """The key of ``container``'s links; -1 where the file's keys are unknown."""
        if self.keys is not None and container in self.keys:
            return self.keys[container]
        return -1

    def convert(self, events: ak.Array, selection: Selection,
                max_tracks: int) -> tuple[np.ndarray, np.ndarray]:
        """One block of events -> (jets, tracks) of the selected jets."""
        events = blocks.Columns(events)
        n_jets = blocks.counts(self._get(events, "jet_pt"))
        pt = blocks.flat(self._get(events, "jet_pt"))
        eta = blocks.flat(self._get(events, "jet_eta"))
        keep = selection.keep(pt, eta)
        event_of_jet = np.repeat(np.arange(len(n_jets)), n_jets)

        def per_jet(name: str) -> np.ndarray:
            return blocks.flat(self._get(events, name))[keep]

        jets = {
            "pt": pt[keep], "eta": eta[keep], "phi": per_jet("jet_phi"),
            "mass": per_jet("jet_m"), LABEL_FIELD: per_jet("jet_label"),
            "jetIndex": (np.arange(len(pt)) - blocks.flat_index(n_jets)[event_of_jet])[keep],
            "eventNumber": blocks.flat(self._get(events, "eventNumber"))
            .astype(np.int64)[event_of_jet[keep]],
        }
        if "mcEventWeights" in self.quantities:
            weights = self._get(events, "mcEventWeights")  # the first, NaN where none
            n_weights = blocks.counts(weights)
            first = np.full(len(n_weights), np.nan, dtype=np.float32)
            first[n_weights > 0] = blocks.flat(weights)[blocks.flat_index(n_weights)
                                                        [n_weights > 0]]
            jets["mcEventWeight"] = first[event_of_jet[keep]]
        jets.update(self._tagger_outputs(events, event_of_jet, keep))
        counts, tracks = self._tracks(events, event_of_jet, keep)
        return blocks.build(jets, counts, tracks, max_tracks,
                            blocks.jet_dtype(self.extra_fields))

    def _tagger_outputs(self, events: blocks.Columns, event_of_jet: np.ndarray,
                        keep: np.ndarray) -> dict[str, np.ndarray]:
        if not self.taggers:
            return {}
        key, index = (blocks.flat(x).astype(np.int64)
                      for x in self._link(events, "btaggingLink"))
        first = f"{self.taggers[0]}_{TAGGER_OUTPUTS[0]}"
        n_btag = blocks.counts(self._get(events, first))
        ok = _link_ok(key, index, n_btag[event_of_jet], self._wanted_key(self.btagging))
        position = np.arange(len(key)) - blocks.flat_index(
            blocks.counts(self._get(events, "jet_pt")))[event_of_jet]
        self.stats.btag_links += len(key)
        self.stats.btag_links_valid += int(ok.sum())
        self.stats.btag_links_reordered += int((ok & (index != position)).sum())
        linked = ok[keep]  # the selected jets with a b-tagging object, and where it is
        where = (blocks.flat_index(n_btag)[event_of_jet] + index)[keep][linked]
        out = {}
        for name in self.extra_fields:
            values = np.full(len(linked), np.nan, dtype=np.float32)
            values[linked] = blocks.flat(self._get(events, name))[where]
            out[name] = values
        return out

    def _tracks(self, events: blocks.Columns, event_of_jet: np.ndarray,
                keep: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Tracks of the selected jets through their GhostTrack links, jet after jet."""
        key, index = self._link(events, "GhostTrack")
        n_tracks = blocks.counts(self._get(events, "trk_d0"))
        names = ["d0", "z0", "theta", "phi", "qOverP"] + (["vz"] if "trk_vz" in self.quantities
                                                         else [])
        links = GhostLinks(
            n_links=blocks.counts(key, 2), key=blocks.flat(key).astype(np.int64),
            index=blocks.flat(index).astype(np.int64),
            wanted_key=self._wanted_key(TRACKS),
            n_tracks=n_tracks, track_first=blocks.flat_index(n_tracks),
            columns={name: blocks.flat(self._get(events, f"trk_{name}")) for name in names},
            vertex=self._primary_vertex(events, len(n_tracks)),
            covariance=self._covariance(events), compressed=self.covariance != "full")
        try:
            counts, tracks, stats = ghost_tracks(links, event_of_jet, keep, TRACK_CUTS)
        except ValueError as err:  # branches of one event that disagree in length
            culprit = ("trk_cov" if self.covariance == "full" else "trk_cov_diag"
                       ) if "covariance" in str(err) else "trk_d0"
            raise FlavourflowError(str(err), path=self.path,
                                   field=self.quantities[culprit].branch) from None
        self.stats.ghost_links += stats["ghost_links"]
        self.stats.ghost_links_valid += stats["ghost_links_valid"]
        self.stats.tracks_selected += stats["tracks_selected"]
        return counts, tracks

    def _primary_vertex(self, events: blocks.Columns,
                        n_events: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per event: the primary vertex's (x, y) offset from the beam spot and its z; zeros
        where the file or the event has none (the tracks then stay w.r.t. the beam line)."""
        zeros = np.zeros(n_events)
        if "pv_z" not in self.quantities:
            return zeros, zeros, zeros
        types = self._get(events, "pv_type")
        n_vertices = blocks.counts(types)
        is_pv = np.flatnonzero(blocks.flat(types) == PRIMARY_VERTEX)
        event_of_vertex = np.repeat(np.arange(len(n_vertices)), n_vertices)
        none = len(event_of_vertex)
        first = np.full(len(n_vertices), none)
        np.minimum.at(first, event_of_vertex[is_pv], is_pv)  # each event's first PV

        def first_pv(name: str) -> np.ndarray:
            values = blocks.flat(self._get(events, name)).astype(np.float64)
            values = np.append(values, np.nan)  # at index `none`
            return values[first]

        z_pv = first_pv("pv_z")
        has_pv = np.isfinite(z_pv)
        z_pv = np.where(has_pv, z_pv, 0.0)
        if "beam_x" not in self.quantities:
            return zeros, zeros, z_pv
        beam_x = blocks.flat(self._get(events, "beam_x")).astype(np.float64)
        beam_y = blocks.flat(self._get(events, "beam_y")).astype(np.float64)
        return (np.where(has_pv, first_pv("pv_x") - beam_x, 0.0),
                np.where(has_pv, first_pv("pv_y") - beam_y, 0.0), z_pv)

    def _covariance(self, events: blocks.Columns) -> list[tuple[np.ndarray, np.ndarray,
                                                                np.ndarray, int]]:
        """Where var(d0), var(z0), var(theta) and cov(theta, z0) (compressed: the theta-z0
        correlation coefficient) of each track are: (values, first, length, k) for element
        k of the vector of ``length[t]`` values from ``first[t]`` of track t."""
        vectors = {}

        def element(name: str, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
            if name not in vectors:
                lengths = blocks.counts(self._get(events, name), 2)
                vectors[name] = (blocks.flat(self._get(events, name)),
                                 blocks.flat_index(lengths), lengths)
            return (*vectors[name], k)

        def lower(rc: tuple[int, int]) -> int:  # packed lower triangle, row by row
            return rc[0] * (rc[0] + 1) // 2 + rc[1]

        if self.covariance == "full":
            return [element("trk_cov", lower(rc)) for rc in (_D0D0, _Z0Z0, _THTH, _THZ0)]
        # correlation coefficients below the diagonal, row by row: (i, j) -> i(i-1)/2 + j
        return [*(element("trk_cov_diag", rc[0]) for rc in (_D0D0, _Z0Z0, _THTH)),
                element("trk_cov_offdiag", _THZ0[0] * (_THZ0[0] - 1) // 2 + _THZ0[1])]

    def provenance(self) -> dict[str, object]:
        s = self.stats
        return {
            "schema": "physlite",
            "storage": f"{'RNTuple' if self.storage == RNTUPLE else 'TTree'} {self.storage}",
            "taggers": self.taggers, "btagging_container": self.btagging or "",
            "track_selection": TRACK_CUTS,
            "link_keys": "EventFormat" if self.keys is not None else "non-zero",
            "d0_sign": "flavourflow: ATLAS perigee d0 negated",
            "links": {"ghost_tracks": s.ghost_links, "ghost_tracks_valid": s.ghost_links_valid,
                      "tracks_selected": s.tracks_selected, "btagging": s.btag_links,
                      "btagging_valid": s.btag_links_valid,
                      "btagging_reordered": s.btag_links_reordered},
        }


# --- opening: what is where --------------------------------------------------------------


def open_file(path: Path) -> Reader:
    """Open a PHYSLITE file and locate every quantity; one-line errors for what is wrong."""
    try:
        file = uproot.open(path, array_cache=blocks.READ_CACHE)
        obj, storage = _event_store(file, path)
        names = set(obj.keys())
        n_entries = obj.num_entries
    except FlavourflowError:
        raise
    except Exception as err:
        raise FlavourflowError(f"not a readable ROOT file ({type(err).__name__}: {err})",
                               path=path) from None
    rntuple = storage == RNTUPLE
    finder = _Finder(path, names, rntuple)
    quantities: dict[str, _Quantity] = {}
    if finder.find(JETS, "pt") is None:  # say what the file is, not which branch is missing
        others = sorted({n.split("Aux")[0] for n in finder.names if "Jets" in n.split("Aux")[0]})
        raise FlavourflowError(
            f"no {JETS} in {storage}: not a PHYSLITE file"
            + (f" (jet containers it has: {', '.join(others)})" if others else ""),
            path=path, field=finder.candidates(JETS, "pt")[0])
    for name, (container, var, kind) in {
        "jet_pt": (JETS, "pt", "float"), "jet_eta": (JETS, "eta", "float"),
        "jet_phi": (JETS, "phi", "float"), "jet_m": (JETS, "m", "float"),
        "jet_label": (JETS, LABEL_FIELD, "int"),
        "trk_d0": (TRACKS, "d0", "float"), "trk_z0": (TRACKS, "z0", "float"),
        "trk_theta": (TRACKS, "theta", "float"), "trk_phi": (TRACKS, "phi", "float"),
        "trk_qOverP": (TRACKS, "qOverP", "float"),
    }.items():
        quantities[name] = _Quantity(finder.require(container, var), 1, kind)
    quantities.update(finder.link("GhostTrack", JETS, "GhostTrack", depth=2, required=True))
    event_number = finder.find(EVENT, "eventNumber") or finder.find(EVENT, "mcEventNumber")
    if event_number is None:
        raise FlavourflowError("missing branch", path=path,
                               field=finder.candidates(EVENT, "eventNumber")[0])
    if "mcEventNumber" in event_number:
        log.warning("%s: no EventInfo eventNumber readable; using mcEventNumber", path)
    quantities["eventNumber"] = _Quantity(event_number, 0, "int")
    optional = {
        "mcEventWeights": (EVENT, "mcEventWeights", 1), "trk_vz": (TRACKS, "vz", 1),
        "pv_x": (VERTICES, "x", 1), "pv_y": (VERTICES, "y", 1), "pv_z": (VERTICES, "z", 1),
        "pv_type": (VERTICES, "vertexType", 1), "beam_x": (EVENT, "beamPosX", 0),
        "beam_y": (EVENT, "beamPosY", 0),
    }
    for name, (container, var, depth) in optional.items():
        branch = finder.find(container, var)
        if branch is not None:
            quantities[name] = _Quantity(branch, depth, "any")
    if not all(k in quantities for k in ("pv_x", "pv_y", "pv_z", "pv_type")):
        for k in ("pv_x", "pv_y", "pv_z", "pv_type", "beam_x", "beam_y"):
            quantities.pop(k, None)
    if not ("beam_x" in quantities and "beam_y" in quantities):
        quantities.pop("beam_x", None)
        quantities.pop("beam_y", None)
    full = finder.find(TRACKS, "definingParametersCovMatrix")
    diag = finder.find(TRACKS, "definingParametersCovMatrixDiag")
    offdiag = finder.find(TRACKS, "definingParametersCovMatrixOffDiag")
    if diag and offdiag:
        covariance = "compressed"
        quantities["trk_cov_diag"] = _Quantity(diag, 2)
        quantities["trk_cov_offdiag"] = _Quantity(offdiag, 2)
    elif full:
        covariance = "full"
        quantities["trk_cov"] = _Quantity(full, 2)
    else:
        raise FlavourflowError("missing branch", path=path, field=finder.candidates(
            TRACKS, "definingParametersCovMatrixDiag")[0])
    btagging, taggers = finder.btagging()
    if btagging is not None:
        for tagger in taggers:
            for p in TAGGER_OUTPUTS:
                quantities[f"{tagger}_{p}"] = _Quantity(
                    finder.require(btagging, f"{tagger}_{p}"), 1)
        quantities.update(finder.link("btaggingLink", JETS, "btaggingLink", depth=1,
                                      required=True))
    if n_entries == 0:
        raise FlavourflowError("zero events", path=path, field=storage)
    keys = read_container_keys(file)
    if keys is None:
        log.warning("%s: EventFormat metadata not readable: links are accepted by any non-zero "
                    "container key (recorded as link_keys = non-zero)", path)
    return Reader(path, obj, storage, quantities, taggers, btagging, keys, covariance)


def _event_store(file, path: Path):
    """The event data: TTree CollectionTree (Run 2) or RNTuple EventData (Run 3)."""
    for name in (RNTUPLE, TTREE):
        if name in file:
            return file[name], name
    raise FlavourflowError(f"no {TTREE} (TTree) or {RNTUPLE} (RNTuple) in file: not PHYSLITE",
                           path=path, field=TTREE)


class _Finder:
    """Branch names of xAOD auxiliary variables, as TTree and RNTuple spell them."""

    def __init__(self, path: Path, names: set[str], rntuple: bool) -> None:
        self.path, self.names, self.rntuple = path, names, rntuple

    def candidates(self, container: str, var: str) -> list[str]:
        if self.rntuple:
            return [f"{container}AuxDyn:{var}", f"{container}Aux:{var}"]
        return [f"{container}AuxDyn.{var}", f"{container}Aux./{container}Aux.{var}"]

    def find(self, container: str, var: str) -> str | None:
        return next((c for c in self.candidates(container, var) if c in self.names), None)

    def require(self, container: str, var: str) -> str:
        branch = self.find(container, var)
        if branch is None:
            raise FlavourflowError("missing branch", path=self.path,
                                   field=self.candidates(container, var)[0])
        return branch

    def link(self, name: str, container: str, var: str, depth: int,
             required: bool) -> dict[str, _Quantity]:
        """An ElementLink variable: split key/index branches where the TTree has them
        (uproot cannot read such a vector<ElementLink> whole), else one record branch."""
        branch = self.require(container, var)
        if not self.rntuple:
            leaf = branch.rsplit("/", 1)[-1]
            key, index = (f"{branch}/{leaf}.m_persKey", f"{branch}/{leaf}.m_persIndex")
            if key in self.names and index in self.names:
                return {f"{name}_key": _Quantity(key, depth, "int"),
                        f"{name}_index": _Quantity(index, depth, "int")}
        return {name: _Quantity(branch, depth, "int", ("m_persKey", "m_persIndex"))}

    def btagging(self) -> tuple[str | None, list[str]]:
        """The b-tagging container (``BTagging_AntiKt4EMPFlow*``) and the taggers in it."""
        sep = ":" if self.rntuple else "."
        found: dict[str, list[str]] = {}
        for name in self.names:
            head, _, var = name.partition(f"AuxDyn{sep}")
            if head.startswith(BTAGGING_PREFIX) and var:
                found.setdefault(head, []).append(var)
        if not found:
            return None, []
        if len(found) > 1:
            raise FlavourflowError(f"several b-tagging containers: {sorted(found)}",
                                   path=self.path, field=f"{JETS}AuxDyn{sep}btaggingLink")
        container, variables = next(iter(found.items()))
        taggers = [t for t in TAGGERS
                   if all(f"{t}_{p}" in variables for p in TAGGER_OUTPUTS)]
        return container, taggers


# --- container keys from the EventFormat metadata ------------------------------------------


def read_container_keys(file) -> dict[str, int] | None:
    """Container name -> the hashed key ElementLinks store (``m_persKey``), from the
    ``xAOD::EventFormat`` object of the ``MetaData`` tree; None where it cannot be read
    (uproot cannot deserialise it, so its four vectors are parsed from the raw basket)."""
    try:
        meta = file["MetaData"]
        branch = next(meta[k] for k in meta.keys() if k.startswith("EventFormat"))
        names, _classes, _parents, hashes = _parse_event_format(bytes(branch.basket(0).data))
    except Exception as err:
        log.debug("EventFormat metadata not readable (%s); any non-zero link key accepted",
                  " ".join(str(err).split()))
        return None
    return dict(zip(names, hashes, strict=True))


def _parse_event_format(data: bytes) -> tuple[list[str], list[str], list[str], list[int]]:
    """xAOD::EventFormat_v1 as stored: four members, each with a (byte count, version)
    header: m_branchNames, m_classNames, m_parentNames (vector<string>) and m_branchHashes
    (vector<uint32>), big-endian."""
    pos = 0

    def header_and_size() -> int:
        nonlocal pos
        pos += 6  # byte count (4, with the 0x40 flag) and class version (2)
        (size,) = struct.unpack_from(">I", data, pos)
        pos += 4
        return size

    def strings() -> list[str]:
        nonlocal pos
        out = []
        for _ in range(header_and_size()):
            length = data[pos]
            pos += 1
            if length == 255:
                (length,) = struct.unpack_from(">I", data, pos)
                pos += 4
            out.append(data[pos:pos + length].decode())
            pos += length
        return out

    names, classes, parents = strings(), strings(), strings()
    size = header_and_size()
    hashes = list(struct.unpack_from(f">{size}I", data, pos))
    if not len(names) == len(classes) == len(hashes):
        raise ValueError("inconsistent EventFormat vectors")
    return names, classes, parents, hashes
