"""The evaluate stage: the deployed network on the test split of a sample.

Scores come from the exported `network.json` through our numpy lwtnn evaluator, i.e. from
what Athena would run, not from Keras; for networks lwtnn cannot express (attention), from the
exported `model.onnx` through onnxruntime. The export stage has already proven each agrees
with Keras.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np

from flavourflow.core import inputs, progress, roc
from flavourflow.core import split as splitting
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.flavours import BASELINES, CLASSES, LABEL_FIELD
from flavourflow.core.h5files import open_h5
from flavourflow.core.outputs import atomic_path, write_json
from flavourflow.core.rejections import best_baseline, rejection_curves
from flavourflow.core.style import Figures
from flavourflow.evaluate import plots
from flavourflow.export import deployed

log = logging.getLogger(__name__)

#: Jets per read when the network has track inputs (bounds memory: ~2 kB of tracks per jet).
TRACK_BLOCK = 20_000
#: Jet fields copied from the dump into scores.h5 (with their types), next to the scores; the
#: baselines are evaluated next to the network.
COPIED_FIELDS = {"pt": "f4", "eta": "f4", "eventNumber": "i8", "jetIndex": "i4",
                 LABEL_FIELD: "i4", **dict.fromkeys(BASELINES, "f4")}


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


def score(network: Path, variables: dict, sample: Path, scores_out: Path, f_c: float,
          block_size: int = 100_000, selection: dict[str, float] | None = None,
          aux: AuxMetrics | None = None) -> int:
    """Write per-jet scores of the test split of ``sample`` to ``scores_out``; return count.

    ``selection`` (see :func:`selected`) keeps only some test jets: a study's cut applied
    when evaluating, so that asking for it retrains nothing.

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


def graph_labels(network: Path, output: str) -> list[str]:
    """Labels of an output of the deployed network (none if it has no such output)."""
    graph = deployed.load(network)
    return graph.labels(output) if output in graph.output_names else []


def read_scores(scores: Path) -> np.ndarray:
    """The test jets' columns of scores.h5 (a few per jet, not the dataset)."""
    with open_h5(scores) as f:
        return f["jets"][...]


def metrics(jets: np.ndarray, working_points: Sequence[float],
            warn: Callable[[str], None] | None = None) -> dict:
    """Rejections at the working points and AUCs, for the network and the baselines. NaN
    scores are left out (``n_nan`` per tagger; ``warn`` hears of them)."""
    out: dict = {"n_jets": {fl.name: int(np.count_nonzero(jets[LABEL_FIELD] == fl.label))
                            for fl in CLASSES}, "taggers": {}}
    for tagger in ("D_b", *BASELINES):
        name = "network" if tagger == "D_b" else tagger
        values = jets[tagger]
        nan = np.isnan(values)
        if nan.any() and warn:
            warn(f"{np.count_nonzero(nan)} jets with a NaN {tagger} left out")
        flav = roc.by_flavour(values[~nan], jets[LABEL_FIELD][~nan])
        out["taggers"][name] = {**roc.performance(flav, working_points),
                                "n_nan": int(np.count_nonzero(nan))}
    return out


#: The figures of one model on one sample (stems under the output folder), in report order.
FIGURES = ("roc", "discriminant", "performance_vs_pt", "performance_vs_eta", "fc_scan",
           "confusion", "training")


def run(network: Path, variables_path: Path, sample: Path, history: Path, outdir: Path,
        f_c: float, working_points: Sequence[float], title: str,
        selection: dict[str, float] | None = None, reference: str | None = None,
        text: str = "", model: str | None = None) -> dict:
    """Score the test jets, then measure and plot (:func:`measure_and_plot`); outputs under
    ``outdir``."""
    variables = json.loads(variables_path.read_text())
    scores = outdir / "scores.h5"
    graph_outputs = []
    if deployed.is_onnx(network):
        graph_outputs = deployed.load(network).output_names[1:]
    aux = AuxMetrics(graph_labels(network, "track_origin")) if graph_outputs else None
    n = score(network, variables, sample, scores, f_c, selection=selection, aux=aux)
    figures = Figures(f"model {model or network.parent.name}, sample {outdir.name}")
    if n == 0:
        figures.warn("all", f"no test jets in {sample}")
    result = measure_and_plot(read_scores(scores), history, outdir, f_c, working_points,
                              title, figures, reference=reference, text=text)
    if aux is not None and aux.summary():
        result["aux_tasks"] = aux.summary()
    result["selection"] = selection or {}
    write_json(outdir / "metrics.json", result)
    log.info("evaluated %d test jets of %s", n, sample)
    return result


def measure_and_plot(jets: np.ndarray, history: Path, outdir: Path, f_c: float,
                     working_points: Sequence[float], title: str, figures: Figures,
                     reference: str | None = None, text: str = "") -> dict:
    """Metrics and every figure of :data:`FIGURES` from the test jets' scores (as scores.h5
    holds them). A figure that bad input (no jets, a flavour without jets, an unreachable
    working point, NaN scores) prevents is a placeholder naming the problem, with a one-line
    warning naming the model, the sample and the figure (``figures``); the others are
    drawn. Returns the metrics, ``problems`` (those lines) included."""
    result = metrics(jets, working_points, lambda m: figures.warn("metrics", m))
    reference = reference or best_baseline(result["taggers"], list(BASELINES))
    result.update(f_c=f_c, reference=reference)
    finite = jets[~np.isnan(jets["D_b"])]
    if len(finite) < len(jets):
        for name in FIGURES[:-1]:
            figures.warn(name, f"{len(jets) - len(finite)} jets with a NaN D_b left out")
    taggers = {"network": roc.by_flavour(finite["D_b"], finite[LABEL_FIELD])}
    for tagger in BASELINES:
        keep = ~np.isnan(jets[tagger])
        taggers[tagger] = roc.by_flavour(jets[tagger][keep], jets[LABEL_FIELD][keep])
    style = {"text": text, "title": title}
    figures.draw("roc", outdir / "roc", rejection_curves, taggers, title=title,
                 reference=reference if reference in taggers else None, text=text)
    figures.draw("discriminant", outdir / "discriminant", plots.discriminant, finite,
                 working_points, **style)
    for variable, stem in (("pt", "performance_vs_pt"), ("abs_eta", "performance_vs_eta")):
        figures.draw(stem, outdir / stem, plots.performance_vs, finite, variable,
                     working_points, **style)
    figures.draw("fc_scan", outdir / "fc_scan", plots.fc_scan, finite, working_points, f_c,
                 **style)
    figures.draw("confusion", outdir / "confusion", plots.confusion, finite, **style)
    figures.draw("training", outdir / "training", plots.history, history, **style)
    result["problems"] = figures.problems
    return result
