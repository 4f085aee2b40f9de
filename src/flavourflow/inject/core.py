"""Scores of an exported network written back per input ROOT file: a friend tree and an HDF5.

For one original ntuple (TTree or RNTuple ``events``) and the dump stage's h5 of that same file,
the network (lwtnn ``network.json``, run by the numpy evaluator with ATLAS' NaN -> default
replacement) scores every dumped jet, and the scores are written

* as a friend ``<model>_scores`` with one entry per event of ``events``, in the same order:
  ``eventNumber`` and jagged per-jet fields ``jet_<model>_<label>`` and ``jet_<model>_D_b``
  with one value per original jet, NaN for jets the dump's selection dropped. By default it
  has the original's format: a TTree for a TTree (counter branch ``jet_<model>_n``; attach it
  with ``events->AddFriend("<model>_scores", file)``), an RNTuple for an RNTuple (ROOT has no
  TTree friends for RNTuples; join the two on ``eventNumber`` or entry number, e.g. with
  ``RNTupleProcessor::CreateJoin``, or read both side by side with uproot).
* as HDF5 ``jets``: one row per original jet in the same order, with ``eventNumber``,
  ``jetIndex``, the class probabilities and ``D_b``.

The inputs are computed from the dump rows exactly as preprocess and evaluate compute them
(:mod:`flavourflow.core.inputs`: dump fields or ``log_<field>``, the first ``max_tracks``
tracks when network.json records it), described by ``network.json`` alone.

Alignment is by event number and jet index, never by position alone: each dump row's
(eventNumber, jetIndex) is looked up among the block's events, the jet's pT is compared with
the ntuple's, and every dump row must be used exactly once, else the stage refuses. Both files
are streamed in blocks of ``step_size`` events (the dump rows of a block are the next rows of
the h5, because the dump keeps the file's order), so memory does not grow with the file.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import awkward as ak
import h5py
import numpy as np
import uproot

from flavourflow import __version__
from flavourflow.core import progress, roc
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.inputs import JET_NODE, TRACK_NODE, VALID_FIELD, lwtnn_inputs, node_variables
from flavourflow.core.outputs import atomic_path
from flavourflow.export.evaluator import LightweightGraph

log = logging.getLogger(__name__)

TREE = "events"
#: Branches of the original ntuple that the alignment reads.
EVENT_BRANCH, JET_PT_BRANCH = "eventNumber", "jet_pt"
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


def _open_events(path: Path) -> Any:
    """The original ``events`` tree (TTree or RNTuple), with the branches we read checked."""
    try:
        tree = uproot.open(path)[TREE]
    except Exception as err:
        raise FlavourflowError(
            f"cannot open tree '{TREE}' ({type(err).__name__}: {err})", path=path
        ) from None
    for branch in (EVENT_BRANCH, JET_PT_BRANCH):
        if branch not in tree:
            raise FlavourflowError("missing branch", path=path, field=branch)
    return tree


def _is_rntuple(tree: Any) -> bool:
    return "RNTuple" in type(tree).__name__


def _events(tree: Any, path: Path, step_size: int) -> Iterator[Any]:
    """Blocks of (eventNumber, jet_pt) from the original ntuple, in file order."""
    blocks = tree.iterate([EVENT_BRANCH, JET_PT_BRANCH], step_size=step_size, library="ak")
    while True:
        try:
            block = next(blocks)
        except StopIteration:
            return
        except Exception as err:  # a truncated file fails only when read
            raise FlavourflowError(
                f"cannot read events ({type(err).__name__}: {err})", path=path, field=TREE
            ) from None
        yield block


class _FriendWriter:
    """Appends blocks of events to the friend TTree or RNTuple ``<model>_scores``."""

    def __init__(self, file: Any, model: str, columns: list[str], rntuple: bool, title: str):
        self.file, self.model, self.columns, self.rntuple = file, model, columns, rntuple
        self.title = title
        self.tree: Any = None

    def extend(self, event_numbers: np.ndarray, counts: np.ndarray, scores: np.ndarray) -> None:
        fields = {f"{self.model}_{c}": scores[:, i] for i, c in enumerate(self.columns)}
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


def _block_stop(event_numbers: Any, n_rows: int, cursor: int, limit: int,
                block_ev: np.ndarray) -> int:
    """End of the run of dump rows, from ``cursor``, whose event is in this block."""
    stop = min(cursor + limit, n_rows)
    if stop == cursor:
        return cursor
    ev = event_numbers[cursor:stop]
    inside = np.isin(ev, block_ev)
    return cursor + (len(ev) if inside.all() else int(np.argmin(inside)))


def _align(rows: np.ndarray, block_ev: np.ndarray, counts: np.ndarray, pt: np.ndarray,
           dump: Path, ntuple: Path) -> np.ndarray:
    """Flat (event-major) index in the block of the ntuple jet each dump row belongs to."""
    order = np.argsort(block_ev, kind="stable")
    pos = order[np.searchsorted(block_ev[order], rows["eventNumber"])]
    offsets = np.concatenate([[0], np.cumsum(counts)])
    jet_index = rows["jetIndex"].astype(np.int64)
    if np.any((jet_index < 0) | (jet_index >= counts[pos])):
        bad = int(np.flatnonzero((jet_index < 0) | (jet_index >= counts[pos]))[0])
        raise FlavourflowError(
            f"jet {jet_index[bad]} of event {rows['eventNumber'][bad]} is not in {ntuple}: "
            "the dump was not made from this file",
            path=dump, field="jetIndex",
        )
    flat = offsets[pos] + jet_index
    if np.unique(flat).size != flat.size:
        raise FlavourflowError("a jet appears twice", path=dump, field="jetIndex")
    if not np.allclose(rows["pt"], pt[flat], rtol=PT_RTOL, atol=0.0, equal_nan=True):
        raise FlavourflowError(
            f"jet pT differs from {ntuple}: the dump was not made from this file",
            path=dump, field="pt",
        )
    return flat


def _score(graph: LightweightGraph, read: _Inputs, start: int, stop: int,
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
) -> dict[str, Any]:
    """Score ``dump`` with ``network`` and write the friend tree and the h5; return a summary.

    ``output`` picks the network output (default: the first); D_b is written when its labels
    include pu, pc and pb. ``friend_format``: ``auto`` (the original's), ``ttree`` or
    ``rntuple``. Outputs appear only on success.
    """
    began = time.perf_counter()
    if not _NAME.match(model):
        raise FlavourflowError(f"model name '{model}' cannot name ROOT branches")
    if step_size < 1 or friend_format not in FORMATS:
        raise FlavourflowError(
            f"need step_size >= 1 and friend_format in {FORMATS}; got {step_size}, "
            f"{friend_format!r}"
        )
    graph = LightweightGraph.from_file(network)
    network_json = json.loads(Path(network).read_text())
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
    events_tree = _open_events(ntuple)
    rntuple = _is_rntuple(events_tree) if friend_format == "auto" else friend_format == "rntuple"
    title = f"flavourflow {__version__}: {model} scores for {TREE} of {ntuple.name}"
    n_events = n_jets = n_scored = 0
    with h5py.File(dump, "r") as src:
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
                for events in progress.track(
                        _events(events_tree, ntuple, step_size), events_tree.num_entries,
                        f"inject {model} -> {Path(ntuple).name}", "events", size=len):
                    block_ev = np.asarray(events[EVENT_BRANCH], dtype=np.int64)
                    if np.unique(block_ev).size != block_ev.size:
                        raise FlavourflowError(
                            "repeated event numbers: jets cannot be aligned by event number",
                            path=ntuple, field=EVENT_BRANCH,
                        )
                    counts = ak.to_numpy(ak.num(events[JET_PT_BRANCH], axis=1)).astype(np.int64)
                    pt = ak.to_numpy(ak.flatten(events[JET_PT_BRANCH])).astype(np.float32)
                    total = int(counts.sum())
                    stop = _block_stop(event_numbers, n_rows, cursor, total, block_ev)
                    scores = np.full((total, len(columns)), np.nan, dtype=np.float32)
                    if stop > cursor:
                        rows = jets.fields(list(KEY_FIELDS))[cursor:stop]
                        flat = _align(rows, block_ev, counts, pt, dump, ntuple)
                        probs = _score(graph, read_inputs, cursor, stop, output)
                        scores[flat, : len(labels)] = probs
                        if with_db:
                            p = {label: probs[:, i] for i, label in enumerate(labels)}
                            scores[flat, -1] = roc.b_discriminant(p["pb"], p["pc"], p["pu"], f_c)
                    friend.extend(block_ev, counts, scores)
                    rows_out = np.zeros(total, dtype=row_dtype)
                    rows_out["eventNumber"] = np.repeat(block_ev, counts)
                    rows_out["jetIndex"] = np.arange(total) - np.repeat(
                        np.cumsum(counts) - counts, counts
                    )
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
                    raise FlavourflowError("no events", path=ntuple, field=TREE)
                attrs = {
                    "flavourflow_version": __version__, "model": model, "output": output,
                    "labels": list(labels), "f_c": f_c, "network": str(network),
                    "ntuple": str(ntuple), "dump": str(dump), "tree": tree_name(model),
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
