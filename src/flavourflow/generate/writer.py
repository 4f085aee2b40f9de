"""Output layout of a generated shard and its ROOT writing (uproot, TTree ``events``).

uproot 5.7 writes flat and singly jagged TTree branches only (``float[n]`` leaves with a
counter branch); it cannot write ``std::vector<std::vector<float>>``. The per-jet track
lists are therefore stored the way ROOT stores any ragged-of-ragged data without objects:

* ``jet_*`` (jagged per event, counter ``njet``), including ``jet_trk_n``, the number of
  tracks of each jet;
* ``jet_trk_*`` (jagged per event, counter ``njet_trk``): the tracks of the event's jets,
  jet after jet in jet order (within a jet by decreasing pT).

``nest_tracks`` turns what uproot reads back into the doubly jagged [event][jet][track]
view (``ak.unflatten`` by ``jet_trk_n``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from flavourflow.core.flavours import GeV, LABEL_FIELD

TREE = "events"
#: Per-jet fields (branch ``jet_<name>``) and their stored dtypes.
JET_FIELDS: dict[str, str] = {
    "pt": "f4", "eta": "f4", "phi": "f4", "m": "f4", LABEL_FIELD: "i4",
    "truthHadron_pt": "f4", "truthHadron_Lxy": "f4", "trk_n": "i4",
}
#: Per-track fields (branch ``jet_trk_<name>``), all float32.
TRACK_FIELDS: tuple[str, ...] = (
    "pt", "eta", "phi", "charge", "d0", "z0SinTheta", "d0_sigma", "z0SinTheta_sigma",
)
#: ZSTD: on these float columns it compresses better than uproot's default ZLIB(1) while
#: writing faster and decompressing several times faster for the many later reads.
COMPRESSION_LEVEL = 3


@dataclass
class Block:
    """A run of consecutive events in output layout and units (MeV, mm), flat arrays:
    ``n_jets`` per event; ``jets[name]`` per jet; ``tracks[name]`` per track, grouped by jet
    (``jets['trk_n']`` tracks each)."""

    event_number: np.ndarray
    weight: np.ndarray
    n_jets: np.ndarray
    jets: dict[str, np.ndarray]
    tracks: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.event_number)

    @staticmethod
    def concatenate(blocks: list[Block]) -> Block:
        """One block holding ``blocks`` one after the other."""
        def cat(get) -> Any:
            return np.concatenate([get(b) for b in blocks])
        return Block(
            cat(lambda b: b.event_number), cat(lambda b: b.weight), cat(lambda b: b.n_jets),
            {k: cat(lambda b, k=k: b.jets[k]) for k in JET_FIELDS},
            {k: cat(lambda b, k=k: b.tracks[k]) for k in TRACK_FIELDS},
        )

    def branches(self) -> dict[str, Any]:
        """The block as uproot ``extend`` input: records become ``<name>_<field>`` branches
        sharing one counter ``n<name>``."""
        import awkward as ak

        def jagged(counts: np.ndarray, columns: dict[str, np.ndarray]) -> ak.Array:
            offsets = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
            record = ak.contents.RecordArray(
                [ak.contents.NumpyArray(np.ascontiguousarray(v)) for v in columns.values()],
                list(columns), length=int(offsets[-1]),
            )
            return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), record))

        jet_offsets = np.concatenate([[0], np.cumsum(self.n_jets, dtype=np.int64)])
        trk_per_jet = np.concatenate([[0], np.cumsum(self.jets["trk_n"], dtype=np.int64)])
        trk_per_event = np.diff(trk_per_jet[jet_offsets])
        return {
            "eventNumber": self.event_number.astype(np.int64),
            "mcEventWeight": self.weight.astype(np.float32),
            "jet": jagged(self.n_jets, {k: self.jets[k].astype(t)
                                        for k, t in JET_FIELDS.items()}),
            "jet_trk": jagged(trk_per_event, {k: self.tracks[k].astype(np.float32)
                                              for k in TRACK_FIELDS}),
        }


def make_block(event_number: np.ndarray, weight: np.ndarray, jet_event: np.ndarray,
               n_events: int, jets: dict[str, np.ndarray], track_jet: np.ndarray,
               tracks: dict[str, np.ndarray]) -> Block:
    """Group per-jet and per-track arrays (GeV, mm) into a Block (MeV, mm).

    ``jet_event``: event index (0..n_events-1, non-decreasing) of each stored jet;
    ``track_jet``: index into the stored jets of each track (all >= 0)."""
    order = np.lexsort((-tracks["pt"], track_jet))
    n_trk = np.bincount(track_jet, minlength=len(jet_event)).astype(np.int32)
    to_mev = {"pt", "m", "truthHadron_pt"}
    jet_cols = {k: (v * GeV if k in to_mev else v) for k, v in jets.items()}
    jet_cols["trk_n"] = n_trk
    trk_cols = {k: (v[order] * GeV if k == "pt" else v[order]) for k, v in tracks.items()}
    return Block(event_number, weight, np.bincount(jet_event, minlength=n_events), jet_cols,
                 trk_cols)


class ShardWriter:
    """Writes Blocks to ``path`` as one TTree, one basket per ``write`` call."""

    def __init__(self, path: str | os.PathLike[str]):
        import uproot

        self._file = uproot.recreate(path, compression=uproot.ZSTD(COMPRESSION_LEVEL))
        self._tree: Any = None

    def write(self, block: Block) -> None:
        data = block.branches()
        if self._tree is None:
            # explicit mktree: assigning a dict of records would make an RNTuple in uproot 5.7
            types = {k: (v.type.content if hasattr(v, "layout") else v.dtype)
                     for k, v in data.items()}
            self._tree = self._file.mktree(TREE, types, title="flavourflow generate")
        self._tree.extend(data)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def nest_tracks(events: Any) -> Any:
    """Replace the ``jet_trk_*`` fields of an Awkward record array read back from a shard
    (per-event track lists) by [event][jet][track] lists, using ``jet_trk_n``."""
    import awkward as ak

    counts = ak.flatten(events["jet_trk_n"])
    out = events
    for name in TRACK_FIELDS:
        field = f"jet_trk_{name}"
        if field in events.fields:
            out = ak.with_field(out, ak.unflatten(events[field], counts, axis=1), field)
    return out
