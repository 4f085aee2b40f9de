"""Scores of an exported network written back per input ROOT file: a friend tree and an HDF5.

For one original file (any format the dump reads: the generated ntuple, PHYSLITE TTree or
RNTuple, a mapped flat or jagged ntuple; read through :mod:`flavourflow.inject.source`) and
the dump stage's h5 of that same file, the network (lwtnn ``network.json``, run by the numpy
evaluator with ATLAS' NaN -> default replacement; or, for networks lwtnn cannot express, ONNX
``model.onnx`` run by onnxruntime, same replacement) scores every dumped jet, and the scores are
written

* as a friend ``<model>_scores`` with one entry per entry of the original's tree
  (``events``, ``CollectionTree``, ``EventData`` or the mapping's tree), in the same order:
  ``eventNumber`` and per-jet fields ``jet_<model>_<label>`` and ``jet_<model>_D_b`` with
  one value per original jet (jagged; a scalar per entry for a flat one-jet-per-entry
  ntuple), NaN for jets the dump's selection dropped. By default it has the original's
  format: a TTree for a TTree (counter branch ``jet_<model>_n``; attach it with
  ``tree->AddFriend("<model>_scores", file)``), an RNTuple for an RNTuple (ROOT has no
  TTree friends for RNTuples; join the two on ``eventNumber`` or entry number, e.g. with
  ``RNTupleProcessor::CreateJoin``, or read both side by side with uproot).
* as HDF5 ``jets``: one row per original jet in the same order, with ``eventNumber``,
  ``jetIndex``, the class probabilities and ``D_b``.

The inputs are computed from the dump rows exactly as preprocess and evaluate compute them
(:mod:`flavourflow.core.inputs`: dump fields or ``log_<field>``, the first ``max_tracks``
tracks when network.json records it), described by ``network.json`` alone.

Alignment is by event number and jet index, never by position alone: each dump row's
(eventNumber, jetIndex) is looked up among the block's jets (numbered as the dump numbers
them), the jet's pT is compared with the original's, and every dump row must be used exactly
once, else the stage refuses. Both files
are streamed in blocks of ``step_size`` events (the dump rows of a block are the next rows of
the h5, because the dump keeps the file's order), so memory does not grow with the file.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any

import awkward as ak
import h5py
import numpy as np
import uproot

from flavourflow import __version__
from flavourflow.core import progress, roc
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.h5files import open_h5
from flavourflow.core.inputs import JET_NODE, TRACK_NODE, VALID_FIELD, lwtnn_inputs, node_variables
from flavourflow.core.outputs import atomic_path
from flavourflow.export import deployed
from flavourflow.inject.source import Block, open_source

log = logging.getLogger(__name__)

#: Fields of the dump's `jets` rows used to align them with the ntuple.
KEY_FIELDS = ("eventNumber", "jetIndex", "pt")
#: The dump stores the ntuple's float32 jet pT; a different value means another file.
PT_RTOL = 1e-6
#: Jets per network evaluation: bounds the evaluator's memory whatever the block size.
SCORE_BATCH = 4096
FORMATS = ("auto", "ttree", "rntuple")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def tree_name(model: str) -> str:
    """Name of the friend TTree for ``model``."""
    return f"{model}_scores"


class _Inputs:
    """Reads the network's inputs for a range of dump rows: only the fields it needs, turned
    into raw-unit values by :mod:`flavourflow.core.inputs` (as preprocess and evaluate do)."""

    def __init__(self, network: dict[str, Any], dump: h5py.File, path: Path):
        self.network, self.dump, self.path = network, dump, path
        self.jet_fields = self._fields(JET_NODE, network.get("inputs") or [])
        self.track_fields = self._fields(TRACK_NODE, network.get("input_sequences") or [])
        if self.track_fields:
            self.track_fields.append(VALID_FIELD)

    def _fields(self, dataset: str, specs: list[dict]) -> list[str]:
        if not specs:
            return []
        if dataset not in self.dump:
            raise FlavourflowError(f"no `{dataset}` dataset for the network inputs",
                                   path=self.path)
        names = self.dump[dataset].dtype.names or ()
        fields = [v.field for spec in specs for v in node_variables(spec, names, self.path)]
        return list(dict.fromkeys(fields))

    def __call__(self, start: int, stop: int) -> tuple[dict, dict]:
        jets = self.dump[JET_NODE].fields(self.jet_fields)[start:stop] if self.jet_fields \
            else np.zeros(stop - start, dtype=[("_", "f4")])
        tracks = None
        if self.track_fields:
            tracks = self.dump[TRACK_NODE].fields(self.track_fields)[start:stop]
        return lwtnn_inputs(jets, tracks, self.network, self.path)


class _FriendWriter:
    """Appends blocks of events to the friend TTree or RNTuple ``<model>_scores``."""

    def __init__(self, file: Any, model: str, columns: list[str], rntuple: bool, title: str):
        self.file, self.model, self.columns, self.rntuple = file, model, columns, rntuple
        self.title = title
        self.tree: Any = None

    def extend(self, event_numbers: np.ndarray, counts: np.ndarray, scores: np.ndarray,
               flat: bool = False) -> None:
        """One block: per entry its event number and, per jet, the scores; ``flat``: one jet
        per entry (a flat ntuple), so the scores are scalars per entry."""
        fields = {f"{self.model}_{c}": scores[:, i] for i, c in enumerate(self.columns)}
        if flat:
            data = {"eventNumber": event_numbers} | {f"jet_{k}": v for k, v in fields.items()}
            if self.tree is None:
                if self.rntuple:
                    self.tree = self.file.mkrntuple(tree_name(self.model),
                                                    ak.Array(data).layout.form)
                else:
                    self.tree = self.file.mktree(
                        tree_name(self.model),
                        {k: np.asarray(v).dtype for k, v in data.items()}, title=self.title)
            self.tree.extend(ak.Array(data) if self.rntuple else data)
            return
        if self.rntuple:
            data = ak.zip(
                {"eventNumber": event_numbers}
                | {f"jet_{k}": ak.unflatten(v, counts) for k, v in fields.items()},
                depth_limit=1,
            )
            if self.tree is None:
                self.tree = self.file.mkrntuple(tree_name(self.model), data.layout.form)
            self.tree.extend(data)
            return
        if self.tree is None:
            record = ", ".join(f"{k}: float32" for k in fields)
            self.tree = self.file.mktree(
                tree_name(self.model),
                {"eventNumber": np.int64, "jet": "var * {" + record + "}"},
                title=self.title,
                counter_name=lambda counted: f"{counted}_{self.model}_n",
            )
        self.tree.extend(
            {"eventNumber": event_numbers, "jet": ak.unflatten(ak.zip(fields), counts)}
        )


class _Keys:
    """The jets of one block of the original, looked up by (event number, jet index)."""

    def __init__(self, block: Block, ntuple: Path, field: str):
        jet_event = np.repeat(block.events, block.counts)
        self.events = np.unique(block.events)
        self.last_event = int(block.events[-1]) if len(block.events) else None
        self.width = int(block.jet_index.max()) + 1 if len(block.jet_index) else 1
        if len(block.jet_index) and block.jet_index.min() < 0:
            raise FlavourflowError("negative jet index", path=ntuple, field=field)
        codes = np.searchsorted(self.events, jet_event) * self.width + block.jet_index
        self.order = np.argsort(codes, kind="stable")
        self.codes = codes[self.order]
        same = np.flatnonzero(self.codes[1:] == self.codes[:-1])
        if len(same):
            dup = int(self.order[same[0]])
            raise FlavourflowError(
                f"event {int(jet_event[dup])} has jet {int(block.jet_index[dup])} twice "
                "(repeated event numbers?): jets cannot be aligned by event and jet",
                path=ntuple, field=field)

    def find(self, events: np.ndarray, jet_index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found, flat position in the block) of each (event, jet index)."""
        if not len(self.codes):
            return np.zeros(len(events), dtype=bool), np.zeros(len(events), dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.events, events), len(self.events) - 1)
        codes = pos * self.width + np.clip(jet_index, 0, self.width - 1)
        at = np.minimum(np.searchsorted(self.codes, codes), len(self.codes) - 1)
        found = ((self.events[pos] == events) & (jet_index >= 0) & (jet_index < self.width)
                 & (self.codes[at] == codes))
        return found, self.order[at]


def _block_rows(keys: _Keys, rows: np.ndarray, flat: bool, dump: Path,
                ntuple: Path) -> tuple[int, np.ndarray]:
    """How many of ``rows`` (the next dump rows) belong to this block, and their flat
    positions in it. The dump keeps the file's order, so they are the rows up to the first
    one whose (event, jet) is not in the block; that row's event must then not be in the
    block (or, flat layout, be its last event, whose jets may go on in the next block)."""
    found, where = keys.find(rows["eventNumber"].astype(np.int64),
                             rows["jetIndex"].astype(np.int64))
    n = len(rows) if found.all() else int(np.argmin(found))
    if n < len(rows):
        event, jet = int(rows["eventNumber"][n]), int(rows["jetIndex"][n])
        if np.isin(event, keys.events) and not (flat and event == keys.last_event):
            raise FlavourflowError(
                f"jet {jet} of event {event} is not in {ntuple}: the dump was not made from "
                "this file", path=dump, field="jetIndex")
    return n, where[:n]


def _score(graph: Any, read: _Inputs, start: int, stop: int,
           output: str) -> np.ndarray:
    """Network outputs for dump rows [start, stop), NaN inputs replaced by their defaults."""
    parts = []
    for first in range(start, stop, SCORE_BATCH):
        last = min(first + SCORE_BATCH, stop)
        scalars, sequences = read(first, last)
        parts.append(graph.compute(scalars, sequences, output, replace_nan=True))
    return np.concatenate(parts)


def run(
    ntuple: Path,
    dump: Path,
    network: Path,
    tree_out: Path,
    h5_out: Path,
    model: str,
    f_c: float,
    step_size: int = 10_000,
    output: str | None = None,
    friend_format: str = "auto",
    input_format: str = "flavourflow",
    mapping_file: Path | None = None,
) -> dict[str, Any]:
    """Score ``dump`` with ``network`` and write the friend tree and the h5; return a summary.

    ``output`` picks the network output (default: the first); D_b is written when its labels
    include pu, pc and pb. ``friend_format``: ``auto`` (the original's), ``ttree`` or
    ``rntuple``. ``input_format`` and ``mapping_file``: how the dump read ``ntuple``
    (:func:`flavourflow.dump.core.open_reader`). Outputs appear only on success.
    """
    began = time.perf_counter()
    if not _NAME.match(model):
        raise FlavourflowError(f"model name '{model}' cannot name ROOT branches")
    if step_size < 1 or friend_format not in FORMATS:
        raise FlavourflowError(
            f"need step_size >= 1 and friend_format in {FORMATS}; got {step_size}, "
            f"{friend_format!r}"
        )
    graph = deployed.load(network)
    network_json = graph.spec
    output = output or graph.output_names[0]
    if output not in graph.output_names:
        raise FlavourflowError(f"no output '{output}' (outputs: {graph.output_names})",
                               path=network)
    labels = graph.labels(output)
    for label in labels:
        if not _NAME.match(label):
            raise FlavourflowError(f"output label '{label}' cannot name a branch", path=network)
    with_db = {"pu", "pc", "pb"} <= set(labels)
    columns = labels + (["D_b"] if with_db else [])
    row_dtype = np.dtype(
        [("eventNumber", "i8"), ("jetIndex", "i4"), *((c, "f4") for c in columns)]
    )
    ntuple = Path(ntuple)
    for out_path in (tree_out, h5_out):
        if Path(out_path).resolve() in (ntuple.resolve(), Path(dump).resolve()):
            raise FlavourflowError("output would overwrite an input", path=out_path)
    source = open_source(ntuple, input_format, mapping_file)
    rntuple = ("RNTuple" in type(source.obj).__name__ if friend_format == "auto"
               else friend_format == "rntuple")
    title = f"flavourflow {__version__}: {model} scores for {source.store} of {ntuple.name}"
    n_events = n_jets = n_scored = 0
    with open_h5(dump) as src:
        if "jets" not in src:
            raise FlavourflowError("no `jets` dataset", path=dump)
        jets = src["jets"]
        for name in KEY_FIELDS:
            if name not in (jets.dtype.names or ()):
                raise FlavourflowError("missing jet field", path=dump, field=name)
        read_inputs = _Inputs(network_json, src, dump)
        event_numbers = jets.fields("eventNumber")
        n_rows = jets.shape[0]
        cursor = 0
        with atomic_path(tree_out) as tmp_root, atomic_path(h5_out) as tmp_h5:
            with uproot.recreate(tmp_root) as root, h5py.File(tmp_h5, "w") as out:
                friend = _FriendWriter(root, model, columns, rntuple, title)
                table = out.create_dataset("jets", shape=(0,), maxshape=(None,), dtype=row_dtype,
                                           chunks=(8192,), compression="lzf", shuffle=True)
                for block in progress.track(
                        source.blocks(step_size), source.num_entries,
                        f"inject {model} -> {ntuple.name}", "events",
                        size=lambda b: len(b.events)):
                    keys = _Keys(block, ntuple, source.event_branch or source.store)
                    block_ev, counts = block.events, block.counts
                    total = len(block.pt)
                    rows = jets.fields(list(KEY_FIELDS))[cursor:min(cursor + total, n_rows)]
                    n, flat = _block_rows(keys, rows, block.flat, dump, ntuple)
                    stop = cursor + n
                    scores = np.full((total, len(columns)), np.nan, dtype=np.float32)
                    if n:
                        rows = rows[:n]
                        if not np.allclose(rows["pt"], block.pt[flat], rtol=PT_RTOL, atol=0.0,
                                           equal_nan=True):
                            raise FlavourflowError(
                                f"jet pT differs from {ntuple}: the dump was not made from "
                                "this file", path=dump, field="pt")
                        probs = _score(graph, read_inputs, cursor, stop, output)
                        scores[flat, : len(labels)] = probs
                        if with_db:
                            p = {label: probs[:, i] for i, label in enumerate(labels)}
                            scores[flat, -1] = roc.b_discriminant(p["pb"], p["pc"], p["pu"], f_c)
                    friend.extend(block_ev, counts, scores, block.flat)
                    rows_out = np.zeros(total, dtype=row_dtype)
                    rows_out["eventNumber"] = np.repeat(block_ev, counts)
                    rows_out["jetIndex"] = block.jet_index
                    for i, c in enumerate(columns):
                        rows_out[c] = scores[:, i]
                    table.resize(n_jets + total, axis=0)
                    table[n_jets:] = rows_out
                    n_events += len(block_ev)
                    n_jets += total
                    n_scored += stop - cursor
                    cursor = stop
                if cursor != n_rows:
                    raise FlavourflowError(
                        f"{n_rows - cursor} of {n_rows} dumped jets (from row {cursor}, event "
                        f"{int(event_numbers[cursor : cursor + 1][0])}) do not follow the "
                        f"events of {ntuple} in order: the dump was not made from this file",
                        path=dump, field="eventNumber",
                    )
                if friend.tree is None:
                    raise FlavourflowError("no events", path=ntuple, field=source.store)
                attrs = {
                    "flavourflow_version": __version__, "model": model, "output": output,
                    "labels": list(labels), "f_c": f_c, "network": str(network),
                    "ntuple": str(ntuple), "dump": str(dump), "tree": tree_name(model),
                    "input_format": input_format, "original_tree": source.store,
                    "friend_format": "RNTuple" if rntuple else "TTree",
                    "n_events": n_events, "n_scored": n_scored,
                }
                for key, value in attrs.items():
                    out.attrs[key] = value
    summary = {
        "ntuple": str(ntuple), "tree": tree_name(model),
        "friend_format": "RNTuple" if rntuple else "TTree", "n_events": n_events,
        "n_jets": n_jets, "n_scored": n_scored, "seconds": time.perf_counter() - began,
    }
    log.info("inject: %d events, %d jets, %d scored by %s in %.2f s", n_events, n_jets,
             n_scored, model, summary["seconds"])
    return summary
