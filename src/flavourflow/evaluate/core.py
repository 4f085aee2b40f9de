"""The evaluate stage: the deployed network on the test split of a sample.

Scores come from the exported `network.json` through our numpy lwtnn evaluator, i.e. from
what Athena would run, not from Keras; for networks lwtnn cannot express (attention), from the
exported `model.onnx` through onnxruntime. The export stage has already proven each agrees
with Keras.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from flavourflow.core import inputs, progress, roc
from flavourflow.core import split as splitting
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.flavours import BASELINES, BOTTOM, CLASSES, LABEL_FIELD
from flavourflow.core.h5files import open_h5
from flavourflow.core.outputs import atomic_path, write_json
from flavourflow.core.plots import figure, save
from flavourflow.core.rejections import rejection_curves
from flavourflow.export import deployed

log = logging.getLogger(__name__)

#: Jets per read when the network has track inputs (bounds memory: ~2 kB of tracks per jet).
TRACK_BLOCK = 20_000
#: Jet fields copied from the dump into scores.h5 (with their types), next to the scores; the
#: baselines are evaluated next to the network.
COPIED_FIELDS = {"pt": "f4", "eta": "f4", "eventNumber": "i8", "jetIndex": "i4",
                 LABEL_FIELD: "i4", **dict.fromkeys(BASELINES, "f4")}


#: Per-track truth fields the auxiliary-task metrics compare with (generated samples only).
TRUTH_FIELDS = ("ftagTruthOriginLabel", "ftagTruthVertexIndex")
#: A pair of tracks is called "same vertex" above this probability.
VERTEX_THRESHOLD = 0.5


class AuxMetrics:
    """Running counts of the auxiliary tasks on the test jets: the track-origin confusion
    matrix (truth x predicted, valid tracks) and the track-pair vertexing counts (pairs of
    distinct valid tracks; truth "same" = same truth vertex index >= 0)."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
        self.pairs = dict.fromkeys(("true", "predicted", "both", "true_displaced",
                                    "both_displaced", "predicted_displaced",
                                    "both_predicted_displaced"), 0)

    def origin(self, probs: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> None:
        keep = valid & (truth >= 0)
        predicted = probs.argmax(axis=-1)
        n = len(self.labels)
        self.confusion += np.bincount(truth[keep].astype(np.int64) * n + predicted[keep],
                                      minlength=n * n).reshape(n, n)

    def vertex(self, probs: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> None:
        steps = valid.shape[1]
        pairs = valid[:, :, None] & valid[:, None, :] & ~np.eye(steps, dtype=bool)
        same = (truth[:, :, None] == truth[:, None, :]) & (truth[:, :, None] >= 0) & pairs
        predicted = (probs[..., 0] > VERTEX_THRESHOLD) & pairs
        displaced = (truth[:, :, None] > 0) & (truth[:, None, :] > 0)
        away = (truth[:, :, None] != 0) & (truth[:, None, :] != 0) & pairs
        for key, mask in (("true", same), ("predicted", predicted), ("both", same & predicted),
                          ("true_displaced", same & displaced),
                          ("both_displaced", same & displaced & predicted),
                          ("predicted_displaced", predicted & away),
                          ("both_predicted_displaced", predicted & away & same & displaced)):
            self.pairs[key] += int(np.count_nonzero(mask)) // 2  # each pair counted once

    def summary(self) -> dict:
        out: dict = {}
        if self.confusion.any():
            truth_n = self.confusion.sum(axis=1)
            pred_n = self.confusion.sum(axis=0)
            diag = np.diag(self.confusion)
            out["track_origin"] = {
                "labels": self.labels,
                "confusion": self.confusion.tolist(),
                "confusion_axes": "rows: truth origin, columns: predicted (argmax)",
                "efficiency": {lab: (float(d / t) if t else None) for lab, d, t in
                               zip(self.labels, diag, truth_n, strict=True)},
                "purity": {lab: (float(d / p) if p else None) for lab, d, p in
                           zip(self.labels, diag, pred_n, strict=True)},
                "truth_fraction": {lab: float(t / truth_n.sum()) for lab, t in
                                   zip(self.labels, truth_n, strict=True)},
                "accuracy": float(diag.sum() / self.confusion.sum()),
                "n_tracks": int(self.confusion.sum()),
            }
        p = self.pairs
        if p["true"] or p["predicted"]:
            def ratio(a: int, b: int) -> float | None:
                return float(a / b) if b else None
            out["track_vertex"] = {
                "threshold": VERTEX_THRESHOLD,
                "pair_efficiency": ratio(p["both"], p["true"]),
                "pair_purity": ratio(p["both"], p["predicted"]),
                "displaced_pair_efficiency": ratio(p["both_displaced"], p["true_displaced"]),
                "displaced_pair_purity": ratio(p["both_predicted_displaced"],
                                               p["predicted_displaced"]),
                "definitions": "pairs of distinct valid tracks; truth same = same truth vertex "
                               "index >= 0; displaced: both tracks from one displaced truth "
                               "vertex (index > 0); displaced purity: among predicted pairs "
                               "of tracks neither from the primary vertex",
                "counts": dict(p),
            }
        return out


#: Evaluation-time jet selection keys (MeV), as a study's `selection` names them.
SELECTION_KEYS = ("pt_min", "pt_max", "abs_eta_min", "abs_eta_max")


def selected(jets: np.ndarray, selection: dict[str, float]) -> np.ndarray:
    """Mask of the jets passing an evaluation-time selection (pt_min <= pT < pt_max,
    abs_eta_min <= |eta| < abs_eta_max; absent keys do not cut)."""
    unknown = set(selection) - set(SELECTION_KEYS)
    if unknown:
        raise FlavourflowError(f"unknown selection keys {sorted(unknown)}; known: "
                               f"{list(SELECTION_KEYS)}", field="selection")
    pt, abs_eta = jets["pt"], np.abs(jets["eta"])
    keep = np.ones(len(jets), dtype=bool)
    keep &= pt >= selection.get("pt_min", -np.inf)
    keep &= pt < selection.get("pt_max", np.inf)
    keep &= abs_eta >= selection.get("abs_eta_min", -np.inf)
    keep &= abs_eta < selection.get("abs_eta_max", np.inf)
    return keep


def score(network: Path, variables: dict, sample: Path, scores_out: Path, f_c: float,
          block_size: int = 100_000, selection: dict[str, float] | None = None,
          aux: AuxMetrics | None = None) -> int:
    """Write per-jet scores of the test split of ``sample`` to ``scores_out``; return count.

    ``aux``: filled with the auxiliary tasks' metrics when the network has auxiliary outputs
    (``track_origin``, ``track_vertex``) and the sample the per-track truth.

    ``selection`` (see :func:`selected`) keeps only some test jets: a study's cut applied
    when evaluating, so that asking for it retrains nothing.

    The network's inputs are computed from the dump as variables.json describes them
    (:mod:`flavourflow.core.inputs`: jet variables, ``log_`` transforms, the first
    ``max_tracks`` tracks of sequence inputs with their ``valid`` flags), in raw units.
    """
    graph = deployed.load(network)
    labels = variables["outputs"][0]["labels"]
    fields = list(COPIED_FIELDS)
    dtype = np.dtype([*COPIED_FIELDS.items(), *((p, "f4") for p in labels), ("D_b", "f4")])
    fractions, seed = variables["split"]["fractions"], variables["split"]["seed"]
    sequences = variables.get("input_sequences") or []
    if sequences:  # a block of `tracks` rows is ~50x a block of jets: read fewer at a time
        block_size = min(block_size, TRACK_BLOCK)
    n = 0
    with open_h5(sample) as src, atomic_path(scores_out) as tmp, \
            h5py.File(tmp, "w") as out:
        jets = src["jets"]
        jet_fields = set(fields)
        for spec in variables.get("inputs") or []:
            jet_fields |= {v.field for v in inputs.node_variables(spec, jets.dtype.names, sample)}
        for name in fields:
            if name not in jets.dtype.names:
                raise FlavourflowError("missing jet variable", path=sample, field=name)
        tracks, track_fields = None, []
        if sequences:
            if inputs.TRACK_NODE not in src:
                raise FlavourflowError("missing dataset", path=sample, field=inputs.TRACK_NODE)
            tracks = src[inputs.TRACK_NODE]
            for spec in sequences:
                track_fields += [v.field for v in
                                 inputs.node_variables(spec, tracks.dtype.names, sample)]
            track_fields = list(dict.fromkeys([*track_fields, inputs.VALID_FIELD]))
            if aux is not None and not set(TRUTH_FIELDS) <= set(tracks.dtype.names):
                aux = None  # no truth in this sample (PHYSLITE, mapped): no aux metrics
            if aux is not None:
                track_fields += list(TRUTH_FIELDS)
        ds = out.create_dataset("jets", shape=(0,), maxshape=(None,), dtype=dtype,
                                chunks=(4096,), compression="lzf")
        starts = range(0, len(jets), block_size)
        for start in progress.track(starts, len(jets), f"evaluate {Path(sample).name}", "jets",
                                    size=lambda start: min(block_size, len(jets) - start)):
            block = jets.fields(sorted(jet_fields))[start : start + block_size]
            test = splitting.mask(block["eventNumber"], "test", fractions, seed)
            if selection:
                test &= selected(block, selection)
            block = block[test]
            trk = None
            if tracks is not None:
                trk = tracks.fields(track_fields)[start : start + block_size][test]
            x, seqs = inputs.lwtnn_inputs(block, trk, variables, sample)
            if aux is not None and sequences:
                probs = _with_aux(graph, x, seqs, trk, aux)
            else:
                probs = graph.compute(x, seqs, replace_nan=True)
            rows = np.zeros(len(block), dtype=dtype)
            for f in fields:
                rows[f] = block[f]
            for i, p in enumerate(labels):
                rows[p] = probs[:, i]
            rows["D_b"] = roc.b_discriminant(rows["pb"], rows["pc"], rows["pu"], f_c)
            ds.resize(n + len(rows), axis=0)
            ds[n:] = rows
            n += len(rows)
        out.attrs["f_c"] = f_c
        out.attrs["selection"] = json.dumps(selection or {}, sort_keys=True)
        out.attrs["network"] = str(network)
    if n == 0:
        raise FlavourflowError("no test jets", path=sample, field="eventNumber")
    return n


def _with_aux(graph, x: dict, seqs: dict, trk: np.ndarray, aux: AuxMetrics) -> np.ndarray:
    """The flavour probabilities, the auxiliary outputs counted into ``aux``."""
    names = [n for n in graph.output_names[1:] if n in ("track_origin", "track_vertex")]
    if not names:
        return graph.compute(x, seqs, replace_nan=True)
    flavour, *outs = graph.compute_many(x, seqs, [graph.output_names[0], *names],
                                        replace_nan=True)
    _, valid = next(iter(seqs.values()))
    steps = valid.shape[1]
    for name, out in zip(names, outs, strict=True):
        if name == "track_origin":
            aux.origin(out, trk["ftagTruthOriginLabel"][:, :steps], valid)
        else:
            aux.vertex(out, trk["ftagTruthVertexIndex"][:, :steps], valid)
    return flavour


def metrics(scores: Path, working_points: Sequence[float]) -> dict:
    """Rejections at the working points and AUCs, for the network and the baselines."""
    with open_h5(scores) as f:
        jets = f["jets"][...]  # a few columns per test jet; not the dataset
    out: dict = {"n_jets": {fl.name: int(np.count_nonzero(jets[LABEL_FIELD] == fl.label))
                            for fl in CLASSES}, "taggers": {}}
    for tagger in ("D_b", *BASELINES):
        flav = roc.by_flavour(jets[tagger], jets[LABEL_FIELD])
        if len(flav[BOTTOM.name]) == 0:
            raise FlavourflowError("no b jets in the test split", path=scores, field=LABEL_FIELD)
        entry = roc.performance(flav, working_points)
        out["taggers"]["network" if tagger == "D_b" else tagger] = entry
    return out


def plot_roc(scores: Path, stem: Path, title: str) -> None:
    """Light and c rejection vs b efficiency, network against baselines."""
    with open_h5(scores) as f:
        jets = f["jets"][...]
    labels = jets[LABEL_FIELD]
    rejection_curves({"network" if tagger == "D_b" else tagger: roc.by_flavour(jets[tagger], labels)
                      for tagger in ("D_b", *BASELINES)}, stem, title)


def plot_discriminant(scores: Path, stem: Path, title: str) -> None:
    """D_b per flavour, normalised."""
    with open_h5(scores) as f:
        jets = f["jets"][...]
    fig, ax = figure(figsize=(6, 4.5))
    finite = jets["D_b"][np.isfinite(jets["D_b"])]
    bins = np.linspace(*np.percentile(finite, [0.1, 99.9]), 50)
    for flav in CLASSES:
        values = jets["D_b"][jets[LABEL_FIELD] == flav.label]
        ax.hist(values, bins=bins, density=True, histtype="step", color=flav.colour,
                label=f"{flav.name} ({len(values)})")
    ax.set_xlabel("$D_b$")
    ax.set_ylabel("normalised")
    ax.set_yscale("log")
    ax.legend()
    ax.set_title(title)
    save(fig, stem)


def graph_labels(network: Path, output: str) -> list[str]:
    """Labels of an output of the deployed network (none if it has no such output)."""
    graph = deployed.load(network)
    return graph.labels(output) if output in graph.output_names else []


def plot_history(history: Path, stem: Path, title: str) -> None:
    """Training and validation loss and accuracy per epoch."""
    with open(history, newline="") as stream:
        rows = list(csv.DictReader(stream))
    if not rows:
        raise FlavourflowError("no epochs recorded", path=history, field="epoch")
    epochs = [int(r["epoch"]) for r in rows]
    fig, axes = figure(1, 2, figsize=(11, 4.5))
    for ax, key in zip(axes, ("loss", "sparse_categorical_accuracy"), strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + key in rows[0]:
                ax.plot(epochs, [float(r[prefix + key]) for r in rows], style,
                        label=(prefix or "train_") + key)
        ax.set_xlabel("epoch")
        if ax.lines:
            ax.legend()
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    save(fig, stem)


def run(network: Path, variables_path: Path, sample: Path, history: Path, outdir: Path,
        f_c: float, working_points: Sequence[float], title: str,
        selection: dict[str, float] | None = None) -> dict:
    """Score, measure and plot; outputs under ``outdir``."""
    variables = json.loads(variables_path.read_text())
    scores = outdir / "scores.h5"
    graph_outputs = []
    if deployed.is_onnx(network):
        graph_outputs = deployed.load(network).output_names[1:]
    aux = AuxMetrics(graph_labels(network, "track_origin")) if graph_outputs else None
    n = score(network, variables, sample, scores, f_c, selection=selection, aux=aux)
    result = metrics(scores, working_points)
    if aux is not None and aux.summary():
        result["aux_tasks"] = aux.summary()
    result["f_c"] = f_c
    result["selection"] = selection or {}
    plot_roc(scores, outdir / "roc", title)
    plot_discriminant(scores, outdir / "discriminant", title)
    plot_history(history, outdir / "training", title)
    write_json(outdir / "metrics.json", result)
    log.info("evaluated %d test jets of %s", n, sample)
    return result
