"""Read flavourflow's generated ntuple (`events`: an RNTuple as the generate stage writes it,
or a TTree) into TDD jet and track blocks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from flavourflow.core.errors import FlavourflowError
from flavourflow.core.flavours import LABEL_FIELD
from flavourflow.dump import blocks
from flavourflow.dump.blocks import JET_DTYPE, TRACK_DTYPE, Selection

__all__ = ["BRANCHES", "JET_DTYPE", "TRACK_DTYPE", "Reader", "Selection", "convert", "iterate",
           "open_tree"]

TREE = "events"
#: uproot's page cache for this schema (see blocks.READ_CACHE): the generate stage writes
#: clusters of 1000 events, which 8 MB holds with room; more did not read faster (measured
#: on 20 000 events: 0.31 s with 4 or 8 MB, 0.32-0.36 s with 32 MB, which takes 14 MB more).
READ_CACHE = "8 MB"
EVENT_BRANCHES = ("eventNumber", "mcEventWeight")
JET_BRANCHES = (
    "jet_pt", "jet_eta", "jet_phi", "jet_m", "jet_HadronConeExclTruthLabelID",
    "jet_truthHadron_pt", "jet_truthHadron_Lxy",
)
#: In the order of :data:`flavourflow.dump.blocks.TRACK_INPUTS`.
TRACK_BRANCHES = (
    "jet_trk_pt", "jet_trk_eta", "jet_trk_phi", "jet_trk_charge", "jet_trk_d0",
    "jet_trk_z0SinTheta", "jet_trk_d0_sigma", "jet_trk_z0SinTheta_sigma",
)
BRANCHES = EVENT_BRANCHES + JET_BRANCHES + TRACK_BRANCHES
#: Per-track truth (generate >= the track-origin labels), read when present, in the order of
#: :data:`flavourflow.dump.blocks.TRUTH_TRACK_DTYPE`; files without them dump without them.
TRUTH_BRANCHES = ("jet_trk_truthOriginLabel", "jet_trk_truthVertexIndex")
#: List depth of each branch: event-level 0, per jet 1, per track 2.
DEPTH = {**dict.fromkeys(EVENT_BRANCHES, 0), **dict.fromkeys(JET_BRANCHES, 1),
         **dict.fromkeys(TRACK_BRANCHES + TRUTH_BRANCHES, 2)}


def open_tree(path: Path):
    """Open the `events` tree (TTree or RNTuple) and check every branch we read exists and is
    numeric. uproot reads lazily, so any failure while doing so means a broken file."""
    try:
        return _open_checked(path)
    except FlavourflowError:
        raise
    except Exception as err:
        raise FlavourflowError(f"not a readable ROOT file ({type(err).__name__}: {err})",
                               path=path) from None


def _open_checked(path: Path):
    file = uproot.open(path, array_cache=READ_CACHE)
    if TREE not in file:
        raise FlavourflowError("no such tree in file", path=path, field=TREE)
    tree = file[TREE]
    for name in BRANCHES + tuple(b for b in TRUTH_BRANCHES if b in tree):
        if name not in tree:
            raise FlavourflowError("missing branch", path=path, field=name)
        typename = tree[name].typename
        if not any(t in typename for t in ("float", "double", "int", "bool", "char", "short")):
            raise FlavourflowError(f"branch has non-numeric type {typename}", path=path,
                                   field=name)
    if tree.num_entries == 0:
        raise FlavourflowError("tree has zero events", path=path, field=TREE)
    return tree


def convert(events: ak.Array, selection: Selection, max_tracks: int,
            path: Path | str | None = None):
    """One block of events (of ``path``) -> (jets, tracks) structured arrays of the selected
    jets (see :func:`flavourflow.dump.blocks.build`). Works on the flat contents of the jagged
    branches: the selection is a mask on jets, and the tracks of the selected jets are found
    in the unselected track columns from their offsets."""
    present = set(ak.fields(events))
    events = blocks.Columns(events)
    n_jets = blocks.counts(events["jet_pt"])
    pt = _flat(events, "jet_pt")
    eta = _flat(events, "jet_eta")
    keep = selection.keep(pt, eta)
    event_of_jet = np.repeat(np.arange(len(n_jets)), n_jets)
    event = event_of_jet[keep]

    def jets_of(name: str) -> np.ndarray:
        return _flat(events, name)[keep]

    jets = {
        "pt": pt[keep], "eta": eta[keep], "phi": jets_of("jet_phi"), "mass": jets_of("jet_m"),
        "eventNumber": _flat(events, "eventNumber")[event],
        "mcEventWeight": _flat(events, "mcEventWeight")[event],
        "jetIndex": (np.arange(len(pt)) - blocks.flat_index(n_jets)[event_of_jet])[keep],
        LABEL_FIELD: jets_of("jet_HadronConeExclTruthLabelID"),
        "HadronConeExclTruthLabelPt": jets_of("jet_truthHadron_pt"),
        "HadronConeExclTruthLabelLxy": jets_of("jet_truthHadron_Lxy"),
    }
    counts_all = blocks.counts(events[TRACK_BRANCHES[0]], 2)
    n_tracks = int(counts_all.sum())
    tracks = {}
    for branch, name in zip(TRACK_BRANCHES, blocks.TRACK_INPUTS, strict=True):
        tracks[name] = _flat(events, branch)
        if len(tracks[name]) != n_tracks:
            raise FlavourflowError(f"{len(tracks[name])} values, {TRACK_BRANCHES[0]} has "
                                   f"{n_tracks} tracks", path=path, field=branch)
    truth = {}
    for branch, name in zip(TRUTH_BRANCHES, blocks.TRUTH_TRACK_DTYPE.names, strict=True):
        if branch in present:
            truth[name] = _flat(events, branch)
            if len(truth[name]) != n_tracks:
                raise FlavourflowError(f"{len(truth[name])} values, {TRACK_BRANCHES[0]} has "
                                       f"{n_tracks} tracks", path=path, field=branch)
    if truth and len(truth) != len(TRUTH_BRANCHES):
        raise FlavourflowError(f"has {sorted(truth)} without the other truth branch",
                               path=path, field=TRUTH_BRANCHES[0])
    # the unselected columns, each selected jet's tracks found from its offset
    return blocks.build(jets, counts_all[keep], tracks, max_tracks,
                        starts=blocks.flat_index(counts_all)[keep], truth=truth or None)


def _flat(events: blocks.Columns, name: str) -> np.ndarray:
    """All values of a (jagged) branch, in order, as numpy."""
    return blocks.flat(events[name])


def iterate(path: Path, step_size: int, tree=None) -> Iterator[ak.Array]:
    """Stream blocks of ``step_size`` events of ``tree`` (opened from ``path`` if not given)
    with every branch we need; the first block's branch types are checked (a scalar where a
    vector is expected, a string, ...)."""
    if tree is None:
        tree = open_tree(path)
    names = [*BRANCHES, *(b for b in TRUTH_BRANCHES if b in tree)]
    blocks_ = tree.iterate(names, step_size=step_size, library="ak")
    first = True
    while True:
        try:
            block = next(blocks_)
        except StopIteration:
            return
        except Exception as err:  # a truncated or corrupt file fails only when read
            raise FlavourflowError(f"cannot read events: {type(err).__name__}: {err}",
                                   path=path, field=TREE) from None
        if first:
            for name in names:
                blocks.check_type(block[name], path, name, DEPTH[name], "any")
            first = False
        yield block


class Reader:
    """The reader interface of the dump stage (see :mod:`flavourflow.dump.core`)."""

    pt_branch = "jet_pt"

    @property
    def extra_fields(self) -> dict[str, np.dtype]:
        return {}

    def __init__(self, path: Path) -> None:
        self.path = path
        # opened and checked here, before any output is opened, and read from as it is
        # (opening an RNTuple parses its page lists: a tenth of the dump's time, done once)
        self.tree = open_tree(path)

    def blocks(self, step_size: int) -> Iterator[ak.Array]:
        return iterate(self.path, step_size, self.tree)

    def convert(self, events: ak.Array, selection: Selection,
                max_tracks: int) -> tuple[np.ndarray, np.ndarray]:
        return convert(events, selection, max_tracks, self.path)

    def provenance(self) -> dict[str, object]:
        return {"schema": "flavourflow"}
