"""Read flavourflow's generated ntuple (TTree `events`) into TDD jet and track blocks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from flavourflow.core.errors import FlavourflowError
from flavourflow.core.flavours import LABEL_FIELD
from flavourflow.dump import taggers, vertexing

TREE = "events"
EVENT_BRANCHES = ("eventNumber", "mcEventWeight")
JET_BRANCHES = (
    "jet_pt", "jet_eta", "jet_phi", "jet_m", "jet_HadronConeExclTruthLabelID",
    "jet_truthHadron_pt", "jet_truthHadron_Lxy",
)
TRACK_BRANCHES = (
    "jet_trk_pt", "jet_trk_eta", "jet_trk_phi", "jet_trk_charge", "jet_trk_d0",
    "jet_trk_z0SinTheta", "jet_trk_d0_sigma", "jet_trk_z0SinTheta_sigma",
)
BRANCHES = EVENT_BRANCHES + JET_BRANCHES + TRACK_BRANCHES

JET_DTYPE = np.dtype([
    ("pt", "f4"), ("eta", "f4"), ("phi", "f4"), ("mass", "f4"),
    ("eventNumber", "i8"), ("jetIndex", "i4"), ("mcEventWeight", "f4"),
    (LABEL_FIELD, "i4"), ("HadronConeExclTruthLabelPt", "f4"),
    ("HadronConeExclTruthLabelLxy", "f4"), ("n_tracks", "i4"),
    ("ip2d_llr", "f4"), ("sv_sig", "f4"), ("sv_Lxy", "f4"), ("sv_mass", "f4"),
    ("sv_efrac", "f4"), ("sv_ntrk", "i4"), ("sv_n2trk", "i4"),
])
TRACK_DTYPE = np.dtype([
    ("pt", "f4"), ("eta", "f4"), ("phi", "f4"), ("deta", "f4"), ("dphi", "f4"), ("dr", "f4"),
    ("ptfrac", "f4"), ("charge", "i1"), ("d0", "f4"), ("z0SinTheta", "f4"),
    ("d0Uncertainty", "f4"), ("z0SinThetaUncertainty", "f4"),
    ("IP3D_signed_d0_significance", "f4"), ("IP3D_signed_z0_significance", "f4"),
    ("valid", "?"),
])


@dataclass(frozen=True)
class Selection:
    """Jet selection applied while dumping (MeV)."""

    pt_min: float
    abs_eta_max: float


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
    file = uproot.open(path)
    if TREE not in file:
        raise FlavourflowError("no such tree in file", path=path, field=TREE)
    tree = file[TREE]
    for name in BRANCHES:
        if name not in tree:
            raise FlavourflowError("missing branch", path=path, field=name)
        typename = tree[name].typename
        if not any(t in typename for t in ("float", "double", "int", "bool", "char", "short")):
            raise FlavourflowError(f"branch has non-numeric type {typename}", path=path,
                                   field=name)
    if tree.num_entries == 0:
        raise FlavourflowError("tree has zero events", path=path, field=TREE)
    return tree


def _dphi(a: ak.Array, b: ak.Array) -> ak.Array:
    return (a - b + np.pi) % (2.0 * np.pi) - np.pi


def _to_numpy_padded(array: ak.Array, length: int, fill: float) -> np.ndarray:
    return ak.to_numpy(ak.fill_none(ak.pad_none(array, length, axis=1, clip=True), fill))


def convert(events: ak.Array, selection: Selection, max_tracks: int):
    """One block of events -> (jets, tracks) structured arrays of the selected jets.

    Tracks are ordered by descending |signed d0 significance|, as the TDD does, and padded
    to ``max_tracks`` (floats NaN, ints -1, ``valid`` False); the baselines use all tracks.
    """
    keep = ak.flatten(
        (events["jet_pt"] > selection.pt_min) & (abs(events["jet_eta"]) < selection.abs_eta_max)
    )
    keep = ak.to_numpy(keep)

    def jets_of(name: str) -> ak.Array:
        return ak.flatten(events[name])[keep]

    def tracks_of(name: str) -> ak.Array:
        return ak.flatten(events[name], axis=1)[keep]

    jet_pt, jet_eta, jet_phi = jets_of("jet_pt"), jets_of("jet_eta"), jets_of("jet_phi")
    trk = {name[len("jet_trk_"):]: tracks_of(name) for name in TRACK_BRANCHES}

    dphi = _dphi(trk["phi"], jet_phi)
    deta = trk["eta"] - jet_eta
    # Lifetime sign: + when the point of closest approach lies in the jet's hemisphere.
    d0_sign = np.sign(trk["d0"] * np.sin(dphi))
    d0_sign = ak.where(d0_sign == 0, 1.0, d0_sign)
    # z0 of a track from a vertex displaced along the jet has the sign of sinh(eta_jet) -
    # sinh(eta_trk), i.e. of -deta.
    z0_sign = ak.where(trk["z0SinTheta"] * deta <= 0, 1.0, -1.0)
    s_d0 = d0_sign * abs(trk["d0"]) / trk["d0_sigma"]
    s_z0 = z0_sign * abs(trk["z0SinTheta"]) / trk["z0SinTheta_sigma"]

    jets = np.zeros(len(jet_pt), dtype=JET_DTYPE)
    jets["pt"], jets["eta"], jets["phi"] = jet_pt, jet_eta, jet_phi
    jets["mass"] = jets_of("jet_m")
    jets["eventNumber"] = ak.flatten(ak.broadcast_arrays(events["eventNumber"],
                                                         events["jet_pt"])[0])[keep]
    jets["mcEventWeight"] = ak.flatten(ak.broadcast_arrays(events["mcEventWeight"],
                                                           events["jet_pt"])[0])[keep]
    jets["jetIndex"] = ak.flatten(ak.local_index(events["jet_pt"]))[keep]
    jets[LABEL_FIELD] = jets_of("jet_HadronConeExclTruthLabelID")
    jets["HadronConeExclTruthLabelPt"] = jets_of("jet_truthHadron_pt")
    jets["HadronConeExclTruthLabelLxy"] = jets_of("jet_truthHadron_Lxy")
    jets["n_tracks"] = ak.num(trk["pt"])
    jets["ip2d_llr"] = taggers.ip2d_llr(s_d0)

    order = ak.argsort(abs(s_d0), axis=1, ascending=False)
    columns = {
        "pt": trk["pt"], "eta": trk["eta"], "phi": trk["phi"], "deta": deta, "dphi": dphi,
        "dr": np.hypot(deta, dphi), "ptfrac": trk["pt"] / jet_pt, "charge": trk["charge"],
        "d0": trk["d0"], "z0SinTheta": trk["z0SinTheta"], "d0Uncertainty": trk["d0_sigma"],
        "z0SinThetaUncertainty": trk["z0SinTheta_sigma"],
        "IP3D_signed_d0_significance": s_d0, "IP3D_signed_z0_significance": s_z0,
    }
    tracks = np.zeros((len(jet_pt), max_tracks), dtype=TRACK_DTYPE)
    for name, values in columns.items():
        is_int = TRACK_DTYPE[name].kind == "i"
        tracks[name] = _to_numpy_padded(values[order], max_tracks, -1 if is_int else np.nan)
    tracks["valid"] = _to_numpy_padded(ak.ones_like(trk["pt"], dtype=bool)[order], max_tracks,
                                       False)
    for name, values in vertexing.find(tracks, jets["phi"].astype(np.float64)).items():
        jets[name] = values
    return jets, tracks


def iterate(path: Path, step_size: int) -> Iterator[ak.Array]:
    """Stream blocks of ``step_size`` events with every branch we need."""
    tree = open_tree(path)
    blocks = tree.iterate(list(BRANCHES), step_size=step_size, library="ak")
    while True:
        try:
            block = next(blocks)
        except StopIteration:
            return
        except Exception as err:  # a truncated or corrupt file fails only when read
            raise FlavourflowError(f"cannot read events: {type(err).__name__}: {err}",
                                   path=path, field=TREE) from None
        yield block
