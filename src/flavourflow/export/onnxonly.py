"""Export of networks lwtnn cannot express (the transformer: attention): ONNX alone, with the
closure gate Keras vs onnxruntime.

The ONNX model is the one :mod:`.onnx` writes for lwtnn-exportable models (normalised float32
inputs named ``jets``, ``tracks``, ``tracks_valid``; one output per Keras output) and carries
in its ``metadata_props`` everything a C++ caller needs: input names and order, each variable's
offset, scale and default, the maximum number of tracks, the output names and labels, the
flavourflow version and the model's config entry. The flavour output is named after the model
(as lwtnn's is); auxiliary outputs are ``track_origin`` [N, T, 8] (labels: the truth-origin
classes) and ``track_vertex`` [N, T, T, 1] (label ``same_vertex``).

The closure compares Keras and onnxruntime on up to ``max_jets`` test jets plus, when the test
jets lack them, a jet with no valid track and one with every track valid (as the lwtnn
closure does), every output element; it fails above ``tolerance``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from flavourflow.core import progress
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.outputs import write_json
from flavourflow.export.closure import (
    CHUNK_SIZE,
    DEFAULT_OPSET,
    PathLike,
    _batch_size,
    _batches,
    _edge_jets,
    _keras_feed,
    _keras_predict,
    _load_model,
    _onnx_feed,
    _onnx_proto,
    _read_variables,
    _steps,
    _TestData,
    _versions,
)
from flavourflow.export.evaluator import InputNode
from flavourflow.export.lwtnn import InputRole, _Converter

log = logging.getLogger(__name__)

#: Labels of the auxiliary outputs (the origin classes: flavourflow.generate.truth.ORIGINS).
AUX_LABELS = {
    "track_origin": ["pileup", "fake", "primary", "fromB", "fromBC", "fromC", "fromTau",
                     "otherSecondary"],
    "track_vertex": ["same_vertex"],
}


def attention_layers(model: Any) -> list[str]:
    """Names of the model's attention layers (what lwtnn cannot express)."""
    return [layer.name for layer in model.layers
            if type(layer).__name__ in ("MultiHeadAttention", "Attention")]


def describe(model: Any, variables: dict) -> tuple[dict[str, Any], list[InputRole]]:
    """(graph, roles): the inputs (with normalisation) and outputs (with labels) of ``model``
    as the lwtnn converter describes them, without layers; roles in ``model.inputs`` order."""
    scalars = {s["name"]: s for s in variables.get("inputs") or []}
    seqs = {s["name"]: s for s in variables.get("input_sequences") or []}
    graph: dict[str, Any] = {"inputs": [], "input_sequences": [], "outputs": {}}
    roles = []
    for tensor in model.inputs:
        name = tensor.name
        if name in scalars:
            graph["inputs"].append(_Converter._input_spec(scalars[name], tensor, name))
            roles.append(InputRole("input", name))
        elif name in seqs:
            graph["input_sequences"].append(_Converter._input_spec(seqs[name], tensor, name))
            roles.append(InputRole("sequence", name))
        elif name.endswith("_valid") and name[: -len("_valid")] in seqs:
            roles.append(InputRole("valid", name[: -len("_valid")]))
        else:
            raise FlavourflowError(f"Keras input '{name}' is not described in variables.json",
                                   field="inputs")
    first = variables["outputs"][0]
    names = [str(first["name"])]
    labels = [list(first["labels"])]
    for tensor in model.outputs[1:]:
        layer = tensor._keras_history[0].name
        if layer not in AUX_LABELS:
            raise FlavourflowError(f"model output of layer '{layer}' has no labels here")
        names.append(layer)
        labels.append(AUX_LABELS[layer])
    graph["outputs"] = {n: {"labels": lab} for n, lab in zip(names, labels, strict=True)}
    return graph, roles


def _specs(graph: dict[str, Any]) -> SimpleNamespace:
    """The input nodes of ``graph`` as the test-data reader wants them."""
    return SimpleNamespace(
        inputs=[InputNode.from_config(c, f"inputs[{i}]") for i, c in enumerate(graph["inputs"])],
        input_sequences=[InputNode.from_config(c, f"input_sequences[{i}]")
                         for i, c in enumerate(graph["input_sequences"])])


def convert(model_path: PathLike, variables_path: PathLike, test_dir: PathLike,
            onnx_out: PathLike, opset: int = DEFAULT_OPSET,
            record: dict | None = None) -> None:
    """Keras -> ONNX ``onnx_out`` with its metadata, no closure (the workflow's export rule
    for ONNX-only models). ``record``: the model's config entry, stored in the metadata."""
    from flavourflow.export.onnx import keras_to_onnx, save

    variables = _read_variables(variables_path)
    model = _load_model(model_path)
    graph, roles = describe(model, variables)
    data = _TestData(Path(test_dir), _specs(graph))
    save(keras_to_onnx(model, roles, graph, opset, _steps(data), record=record), onnx_out)


def closure(model_path: PathLike, variables_path: PathLike, test_dir: PathLike,
            onnx_path: PathLike, closure_out: PathLike, tolerance: float, max_jets: int,
            min_jets: int, chunk_size: int = CHUNK_SIZE) -> dict[str, Any]:
    """Keras vs onnxruntime (the ONNX file as written) on up to ``max_jets`` test jets plus
    edge jets; write ``closure_out``. Raises (after writing ``<stem>.failed.json``) when an
    output element differs by more than ``tolerance``, is not finite, or there are fewer than
    ``min_jets`` test jets."""
    from flavourflow.export.onnx import OnnxScorer

    if not tolerance > 0 or max_jets < 1:
        raise FlavourflowError(f"need tolerance > 0 and max_jets >= 1; got {tolerance}, "
                               f"{max_jets}")
    failed_out = Path(closure_out).with_suffix(".failed.json")
    for stale in (closure_out, failed_out):
        Path(stale).unlink(missing_ok=True)
    variables = _read_variables(variables_path)
    model = _load_model(model_path)
    graph, roles = describe(model, variables)
    data = _TestData(Path(test_dir), _specs(graph))
    n_jets = min(data.n_jets, max_jets)
    if n_jets == 0 or data.n_jets < min_jets:
        raise FlavourflowError(f"{data.n_jets} test jets, fewer than the {min_jets} the closure "
                               "needs (export.min_jets)", path=test_dir)
    edge, edge_record = _edge_jets(data, n_jets, chunk_size)
    proto = _onnx_proto(onnx_path)
    scorer = OnnxScorer(proto.SerializeToString())
    names = list(graph["outputs"])
    if sorted(scorer.output_names) != sorted(names):
        raise FlavourflowError(f"ONNX outputs {scorer.output_names}, the model has {names}",
                               path=onnx_path)
    worst = dict.fromkeys(names, 0.0)
    nonfinite = dict.fromkeys(names, 0)
    n_compared = 0
    n_edge = 0 if edge is None else _batch_size(edge)
    for batch in progress.track(_batches(data, n_jets, chunk_size, edge), n_jets + n_edge,
                                f"export closure {Path(model_path).parent.name}", "jets",
                                size=_batch_size):
        norm_s, norm_q = batch
        keras_out = _keras_predict(model, _keras_feed(roles, norm_s, norm_q))
        onnx_out = scorer.run(_onnx_feed(roles, norm_s, norm_q), names)
        for name, a, b in zip(names, keras_out, onnx_out, strict=True):
            diff = np.abs(a - b)
            finite = np.isfinite(diff)
            nonfinite[name] += int(np.count_nonzero(~finite))
            if diff.size:
                worst[name] = max(worst[name], float(np.where(finite, diff, 0.0).max()))
        n_compared += _batch_size(batch)
    overall = max(worst.values())
    passed = overall <= tolerance and not any(nonfinite.values())
    summary: dict[str, Any] = {
        "passed": bool(passed),
        "tolerance": float(tolerance),
        "n_jets": int(n_compared),
        "n_test_jets": int(n_jets),
        "n_edge_jets": int(n_compared - n_jets),
        "max_abs_diff_overall": overall,
        "max_abs_diff": {"keras_vs_onnx": overall},
        "comparisons": {"keras_vs_onnx": {"max_abs_diff": overall, "by_output": worst,
                                          "n_nonfinite": nonfinite}},
        "edge_jets": edge_record,
        "lwtnn": {"exported": False, "reason": "lwtnn cannot express attention layers "
                  f"({', '.join(attention_layers(model)) or 'none found'})"},
        "onnx": {"exported": True, "file": str(onnx_path),
                 "inputs": [o.name for o in proto.graph.input],
                 "outputs": [o.name for o in proto.graph.output],
                 "metadata_keys": [p.key for p in proto.metadata_props]},
        "model": str(model_path),
        "variables": str(variables_path),
        "test_dir": str(test_dir),
        "versions": _versions(),
    }
    if not passed:
        write_json(failed_out, summary)
        raise FlavourflowError(f"closure failed: max |Keras - ONNX| = {overall:.3g} (tolerance "
                               f"{tolerance:g}, non-finite {sum(nonfinite.values())}); see "
                               f"{failed_out}")
    write_json(closure_out, summary)
    log.info("closure passed on %d jets: max |Keras - ONNX| = %.3g", n_compared, overall)
    return summary


class OnnxGraph:
    """A deployed ONNX model as evaluate and inject use a network: the input nodes, the
    outputs and their labels from its metadata, and ``compute`` on raw-unit inputs (ATLAS
    NanReplacer, normalisation, padded tracks zeroed, as the training inputs were)."""

    def __init__(self, path: PathLike, threads: int | None = None) -> None:
        from flavourflow.export.onnx import OnnxScorer, read_metadata

        try:
            meta = read_metadata(path)
            config = json.loads(meta["flavourflow_config"])
        except Exception as err:  # onnx's DecodeError, KeyError, ValueError...
            raise FlavourflowError(f"not a flavourflow ONNX export ({type(err).__name__}: "
                                   f"{err})", path=path) from None
        self.path = Path(path)
        self.spec = {"inputs": config["inputs"], "input_sequences": config["input_sequences"]}
        self.inputs = _specs(self.spec).inputs
        self.input_sequences = _specs(self.spec).input_sequences
        self._outputs = {o["name"]: list(o["labels"]) for o in config["outputs"]}
        self._feeds = [(r["name"], r["kind"], r["node"]) for r in config["onnx_inputs"]]
        self.scorer = OnnxScorer(path, threads)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def labels(self, output: str | None = None) -> list[str]:
        return list(self._outputs[output or self.output_names[0]])

    def compute(self, inputs: dict, sequences: dict | None = None, output: str | None = None,
                replace_nan: bool = False) -> np.ndarray:
        """Output ``output`` (default: the flavour one) for raw-unit inputs, as
        ``LightweightGraph.compute`` takes them; float64."""
        return self.compute_many(inputs, sequences, [output or self.output_names[0]],
                                 replace_nan)[0]

    def compute_many(self, inputs: dict, sequences: dict | None, outputs: list[str],
                     replace_nan: bool = False) -> list[np.ndarray]:
        """Several outputs of one run (see :meth:`compute`)."""
        sequences = sequences or {}
        nodes = {s.name: s for s in [*self.inputs, *self.input_sequences]}
        feeds = {}
        for name, kind, node in self._feeds:
            spec = nodes[node]
            if kind == "valid":
                feeds[name] = np.asarray(sequences[node][1], dtype=bool)
                continue
            x = np.asarray(inputs[node] if kind == "input" else sequences[node][0],
                           dtype=np.float64)
            if replace_nan:
                x = np.where(~np.isfinite(x) & ~np.isnan(spec.default), spec.default, x)
            x = (x + spec.offset) * spec.scale
            if kind == "sequence":
                x = np.where(np.asarray(sequences[node][1], dtype=bool)[..., None], x, 0.0)
            feeds[name] = x.astype(np.float32)
        return self.scorer.run(feeds, outputs)
