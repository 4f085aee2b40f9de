"""The evaluate stage: the deployed (lwtnn) network on the test split of a sample.

Scores come from the exported `network.json` through our numpy lwtnn evaluator, i.e. from
what Athena would run, not from Keras; the export stage has already proven the two agree.
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
from flavourflow.export.evaluator import LightweightGraph

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


def score(network: Path, variables: dict, sample: Path, scores_out: Path, f_c: float,
          block_size: int = 100_000, selection: dict[str, float] | None = None) -> int:
    """Write per-jet scores of the test split of ``sample`` to ``scores_out``; return count.

    ``selection`` (see :func:`selected`) keeps only some test jets: a study's cut applied
    when evaluating, so that asking for it retrains nothing.

    The network's inputs are computed from the dump as variables.json describes them
    (:mod:`flavourflow.core.inputs`: jet variables, ``log_`` transforms, the first
    ``max_tracks`` tracks of sequence inputs with their ``valid`` flags), in raw units.
    """
    graph = LightweightGraph.from_file(network)
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
    n = score(network, variables, sample, scores, f_c, selection=selection)
    figures = Figures(f"model {model or network.parent.name}, sample {outdir.name}")
    if n == 0:
        figures.warn("all", f"no test jets in {sample}")
    result = measure_and_plot(read_scores(scores), history, outdir, f_c, working_points,
                              title, figures, reference=reference, text=text)
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
