"""The export stage: Keras model -> lwtnn network.json and ONNX model.onnx, checked on test jets.

Flow: load ``model.keras`` and ``variables.json``; convert to lwtnn (:mod:`.lwtnn`) and to ONNX
(:mod:`.onnx`, tf2onnx); then, chunk by chunk over the test memmaps, evaluate Keras (on the
normalised inputs), the *written* lwtnn JSON text with the independent numpy evaluator
(:mod:`.evaluator`, on raw-unit inputs) and the ONNX model with onnxruntime (normalised
inputs), and compare all three pairwise. Only when every pair agrees to ``tolerance`` on every
output are ``network.json``, ``model.onnx`` and ``inputs.json`` written (atomically), so a
failed closure leaves none of them behind. ``closure.json`` is written in both cases (with
``passed``), because it is the record one needs to debug a failure; Snakemake deletes the
outputs of a failed job anyway, and nothing downstream can run without network.json.

Sequence models: the closure set must contain a jet with no valid step and one with every step
valid (the two ends where masking and summing go wrong). If the first ``max_jets`` test jets
lack one, it is taken from the rest of the test set, or, if the whole set lacks it, built from
real jets (a real jet with its steps masked out; the jet with most tracks completed with real
tracks of other jets). ``closure.json["edge_jets"]`` records which.

``inputs.json`` is one test jet in the input-file format of lwtnn's
``lwtnn-test-lightweight-graph <nn config> [inputs file]`` (lwtnn/lwtnn
src/lwtnn-test-lightweight-graph.cxx, ``get_inputs``): a JSON object
``{scalar input node name: {variable name: raw value}}``, read with boost ``read_json``.
That program reads *every* top-level key as an input node (an object under a key would make
it throw), so nothing else can go in this file: the Keras outputs for the jet are in
``closure.json["reference_jet"]``, including ``reg_test_expected`` in the format of lwtnn's
``tests/reg-test.py --graph``. The program cannot read sequences: it always feeds 20 generated
"ramp" steps per sequence input, so for sequence models the reference outputs are computed
with those same steps. When the program is on ``PATH`` the closure runs it on the two files
and compares its printout (6 significant digits) with the numpy evaluator and with Keras;
otherwise ``closure.json["lwtnn_cpp"]`` records that it was skipped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flavourflow.core import progress
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.outputs import atomic_path, write_json
from flavourflow.export.evaluator import (
    LWTNN_TEST_SEQUENCE_STEPS,
    InputNode,
    LightweightGraph,
    lwtnn_test_sequences,
)

log = logging.getLogger(__name__)

#: Jets per chunk: bounds memory to a few MB per input whatever the test-set size.
CHUNK_SIZE = 4096
DEFAULT_OPSET = 17
#: lwtnn's C++ pattern test, run when it is on PATH.
LWTNN_TEST = "lwtnn-test-lightweight-graph"
#: It prints with std::cout's default 6 significant digits: half a unit of the 6th digit.
LWTNN_TEST_PRINT_PRECISION = 5e-6

PathLike = str | os.PathLike[str]
Batch = tuple[dict[str, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]]]


def _read_variables(path: PathLike) -> dict[str, Any]:
    try:
        variables = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise FlavourflowError(f"cannot read variables: {err}", path=path) from None
    if not isinstance(variables, dict) or "inputs" not in variables or "outputs" not in variables:
        raise FlavourflowError("needs 'inputs' and 'outputs'", path=path)
    return variables


def _load_model(path: PathLike) -> Any:
    import keras

    import flavourflow.export.layers  # noqa: F401  (registers MaskedSum for deserialisation)

    if not Path(path).is_file():
        raise FlavourflowError("no such model file", path=path)
    try:
        return keras.saving.load_model(path)
    except (ValueError, TypeError, OSError) as err:
        raise FlavourflowError(f"cannot load Keras model: {err}", path=path) from None


def _open(path: Path, ndim: int, width: int | None, what: str) -> np.ndarray:
    if not path.is_file():
        raise FlavourflowError(f"missing test file for {what}", path=path)
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as err:
        raise FlavourflowError(f"cannot open as a .npy memmap: {err}", path=path) from None
    if array.ndim != ndim or (width is not None and array.shape[-1] != width):
        want = "[N, T]" if width is None else f"{ndim}-D with last axis {width}"
        raise FlavourflowError(f"shape {array.shape}, want {want} for {what}", path=path)
    return array


def _raw(x_norm: np.ndarray, spec: InputNode) -> np.ndarray:
    """Invert x_norm = (x + offset) * scale in float64 (a zero scale makes x irrelevant)."""
    x = np.asarray(x_norm, dtype=np.float64)
    safe = np.where(spec.scale == 0.0, 1.0, spec.scale)
    return np.where(spec.scale == 0.0, 0.0, x / safe) - spec.offset


def _keras_predict(model: Any, flat_inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Keras outputs (float64, model.outputs order) for inputs in model.inputs order."""
    import keras

    from flavourflow.export.onnx import pack_inputs

    result = model.predict_on_batch(pack_inputs(model, flat_inputs))
    return [np.asarray(r, dtype=np.float64) for r in keras.tree.flatten(result)]


def _versions() -> dict[str, str]:
    import keras
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    from flavourflow import __version__

    return {
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
        "flavourflow": __version__,
    }


class _TestData:
    """The preprocessed test memmaps one model needs, opened lazily and read in chunks."""

    def __init__(self, test_dir: Path, graph: LightweightGraph):
        self.scalars = {
            spec.name: (
                _open(
                    test_dir / f"test_{spec.name}.npy",
                    2,
                    len(spec.variables),
                    f"input '{spec.name}'",
                ),
                spec,
            )
            for spec in graph.inputs
        }
        self.sequences = {}
        for spec in graph.input_sequences:
            values = _open(
                test_dir / f"test_{spec.name}.npy",
                3,
                len(spec.variables),
                f"sequence '{spec.name}'",
            )
            valid = _open(
                test_dir / f"test_{spec.name}_valid.npy",
                2,
                None,
                f"sequence '{spec.name}' validity",
            )
            if valid.shape != values.shape[:2]:
                raise FlavourflowError(
                    f"validity shape {valid.shape} does not match values {values.shape}",
                    path=test_dir / f"test_{spec.name}_valid.npy",
                )
            self.sequences[spec.name] = (values, valid, spec)
        counts = {a.shape[0] for a, _ in self.scalars.values()}
        counts |= {v.shape[0] for v, _, _ in self.sequences.values()}
        if len(counts) != 1:
            raise FlavourflowError(f"test files in {test_dir} have different jet counts {counts}")
        self.n_jets = counts.pop()

    def take(self, index: slice | np.ndarray) -> Batch:
        """Normalised (scalars, sequences) for a slice or an index array of jets."""
        norm_s = {name: np.asarray(a[index]) for name, (a, _) in self.scalars.items()}
        norm_q = {
            name: (np.asarray(values[index]), np.asarray(valid[index], dtype=bool))
            for name, (values, valid, _) in self.sequences.items()
        }
        return norm_s, norm_q

    def raw(self, batch: Batch) -> Batch:
        """The raw-unit inputs (float64) the lwtnn network is fed for a normalised batch."""
        norm_s, norm_q = batch
        raw_s = {name: _raw(x, self.scalars[name][1]) for name, x in norm_s.items()}
        raw_q = {
            name: (_raw(values, self.sequences[name][2]), valid)
            for name, (values, valid) in norm_q.items()
        }
        return raw_s, raw_q

    def valid_counts(self, name: str, chunk_size: int) -> np.ndarray:
        """Valid steps per jet of sequence ``name``, for the whole test set (read in chunks)."""
        valid = self.sequences[name][1]
        return np.concatenate(
            [
                np.asarray(valid[i : i + chunk_size], dtype=bool).sum(axis=1)
                for i in range(0, self.n_jets, chunk_size)
            ]
            or [np.zeros(0, dtype=np.int64)]
        )


def _concat(batches: Sequence[Batch]) -> Batch:
    first_s, first_q = batches[0]
    norm_s = {name: np.concatenate([b[0][name] for b in batches]) for name in first_s}
    norm_q = {
        name: (
            np.concatenate([b[1][name][0] for b in batches]),
            np.concatenate([b[1][name][1] for b in batches]),
        )
        for name in first_q
    }
    return norm_s, norm_q


def _synthetic_empty(data: _TestData, name: str, counts: np.ndarray, chunk_size: int) -> Batch:
    """Jet 0 with every step of sequence ``name`` masked out, padded as the data pads."""
    norm_s, norm_q = data.take(np.array([0]))
    values, valid = norm_q[name]
    pad = np.zeros(values.shape[-1], dtype=values.dtype)
    partial = np.flatnonzero(counts < valid.shape[1])
    if partial.size:  # copy the padding of a real padded step (NaN or 0 or whatever it is)
        j = int(partial[0])
        row_valid = np.asarray(data.sequences[name][1][j], dtype=bool)
        pad = np.asarray(data.sequences[name][0][j][int(np.flatnonzero(~row_valid)[0])])
    values = np.broadcast_to(pad, values.shape).copy()
    norm_q[name] = (values, np.zeros_like(valid))
    return norm_s, norm_q


def _synthetic_full(data: _TestData, name: str, counts: np.ndarray, chunk_size: int) -> Batch:
    """The jet with most valid steps of ``name``, its empty steps filled with real steps of
    other jets (cycled if the whole test set holds fewer)."""
    base = int(np.argmax(counts))
    norm_s, norm_q = data.take(np.array([base]))
    values, valid = norm_q[name]
    holes = np.flatnonzero(~valid[0])
    donors: list[np.ndarray] = []
    all_values, all_valid = data.sequences[name][0], data.sequences[name][1]
    for start in range(0, data.n_jets, chunk_size):
        chunk_valid = np.array(all_valid[start : start + chunk_size], dtype=bool)
        if base in range(start, start + len(chunk_valid)):
            chunk_valid[base - start] = False
        if chunk_valid.any():
            donors.append(np.asarray(all_values[start : start + chunk_size])[chunk_valid])
        if sum(len(d) for d in donors) >= len(holes):
            break
    pool = np.concatenate(donors) if donors else np.zeros((1, values.shape[-1]), values.dtype)
    values = values.copy()
    values[0, holes] = pool[np.arange(len(holes)) % len(pool)]
    norm_q[name] = (values, np.ones_like(valid))
    return norm_s, norm_q


def _edge_jets(data: _TestData, n_jets: int, chunk_size: int) -> tuple[Batch | None, dict]:
    """Jets to add so that every sequence has a jet with 0 and one with T valid steps."""
    batches: list[Batch] = []
    record: dict[str, Any] = {}
    for name, (_, valid, _) in data.sequences.items():
        steps = int(valid.shape[1])
        counts = data.valid_counts(name, chunk_size)
        entry: dict[str, Any] = {"max_steps": steps}
        for what, target, build in (
            ("zero_steps", 0, _synthetic_empty),
            ("max_steps_filled", steps, _synthetic_full),
        ):
            in_set = int(np.count_nonzero(counts[:n_jets] == target))
            if in_set:
                entry[what] = {"origin": "closure set", "n_jets": in_set}
                continue
            later = np.flatnonzero(counts[n_jets:] == target)
            if later.size:
                index = n_jets + int(later[0])
                batches.append(data.take(np.array([index])))
                entry[what] = {"origin": "test set (appended)", "test_index": index}
            else:
                batches.append(build(data, name, counts, chunk_size))
                how = (
                    "test jet 0 with every step masked out"
                    if target == 0
                    else f"test jet {int(np.argmax(counts))} ({int(counts.max())} steps) "
                    "completed with valid steps of other test jets"
                )
                entry[what] = {"origin": "synthetic (appended)", "built_from": how}
        record[name] = entry
    return (_concat(batches) if batches else None), record


def _keras_feed(roles, norm_s, norm_q) -> list[np.ndarray]:
    feed = []
    for role in roles:
        if role.kind == "input":
            feed.append(norm_s[role.name])
        elif role.kind == "sequence":
            feed.append(norm_q[role.name][0])
        else:
            feed.append(norm_q[role.name][1])
    return feed


def _onnx_feed(roles, norm_s, norm_q) -> dict[str, np.ndarray]:
    from flavourflow.export.onnx import onnx_input_name

    return {
        onnx_input_name(role): x
        for role, x in zip(roles, _keras_feed(roles, norm_s, norm_q), strict=True)
    }


def _reference_jet(
    model: Any,
    graph: LightweightGraph,
    roles,
    inputs_json: dict[str, dict[str, float]],
    keras_first: list[np.ndarray] | None,
    onnx_first: list[np.ndarray] | None,
    scorer: Any,
) -> dict[str, Any]:
    """Keras, numpy-lwtnn and ONNX outputs for the jet in inputs.json, as lwtnn's test reads
    it (for sequence models: with the sequences lwtnn's test generates)."""
    raw_s = {
        spec.name: np.array([[inputs_json[spec.name][v] for v in spec.variables]])
        for spec in graph.inputs
    }
    sequences = lwtnn_test_sequences(graph)
    reference: dict[str, Any] = {"test_jet_index": 0}
    keras_out, onnx_out = keras_first, onnx_first
    if graph.input_sequences:
        reference["sequences"] = (
            f"lwtnn-test-lightweight-graph generates {LWTNN_TEST_SEQUENCE_STEPS} ramp steps per "
            "sequence input; the outputs below use those steps with this jet's scalar inputs"
        )
        keras_out, onnx_out = _on_ramp(model, graph, roles, raw_s, sequences, scorer)
    numpy_out = {
        name: dict(
            zip(graph.labels(name), graph.compute(raw_s, sequences, name)[0].tolist(), strict=True)
        )
        for name in graph.output_names
    }
    reference["lwtnn_numpy"] = numpy_out

    def labelled(outs: list[np.ndarray] | None) -> dict | None:
        if outs is None:
            return None
        return {
            name: dict(zip(graph.labels(name), out[0].tolist(), strict=True))
            for name, out in zip(graph.output_names, outs, strict=True)
        }

    reference["keras"] = labelled(keras_out)
    reference["onnx"] = labelled(onnx_out)
    if keras_out is None:
        reference["keras_note"] = "Keras sequence length is below the generated steps"
    expected = numpy_out if keras_out is None else reference["keras"]
    reference["reg_test_expected"] = {
        f"{name}:": {label: [value] for label, value in values.items()}
        for name, values in expected.items()
    }
    return reference


def _on_ramp(model, graph, roles, raw_s, sequences, scorer):
    """Keras (and ONNX) on one jet with lwtnn-test's generated sequences, padded to the
    model's T; (None, None) when the model's T is shorter than the generated sequences."""
    norm_s = {
        spec.name: ((raw_s[spec.name] + spec.offset) * spec.scale).astype(np.float32)
        for spec in graph.inputs
    }
    norm_q = {}
    for tensor, role in zip(model.inputs, roles, strict=True):
        if role.kind != "sequence":
            continue
        spec = next(s for s in graph.input_sequences if s.name == role.name)
        raw, valid = sequences[role.name]
        steps = tensor.shape[1] if tensor.shape[1] is not None else raw.shape[1]
        if steps < raw.shape[1]:
            return None, None
        values = np.zeros((1, steps, raw.shape[2]), dtype=np.float32)
        values[:, : raw.shape[1]] = (raw + spec.offset) * spec.scale
        mask = np.zeros((1, steps), dtype=bool)
        mask[:, : raw.shape[1]] = valid
        norm_q[role.name] = (values, mask)
    keras_out = _keras_predict(model, _keras_feed(roles, norm_s, norm_q))
    onnx_out = None
    if scorer is not None:
        onnx_out = scorer.run(_onnx_feed(roles, norm_s, norm_q), graph.output_names)
    return keras_out, onnx_out


class _Comparison:
    """Running max |a - b| per output label, and counts of non-finite differences."""

    def __init__(self, graph: LightweightGraph):
        self.labels = {name: graph.labels(name) for name in graph.output_names}
        self.worst = {name: np.zeros(len(labels)) for name, labels in self.labels.items()}
        self.nonfinite = dict.fromkeys(self.labels, 0)

    def update(self, name: str, a: np.ndarray, b: np.ndarray) -> None:
        diff = np.abs(a - b)
        finite = np.isfinite(diff)
        self.nonfinite[name] += int(np.count_nonzero(~finite))
        diff = np.where(finite, diff, 0.0)
        if len(diff):
            self.worst[name] = np.maximum(self.worst[name], diff.max(axis=0))

    def summary(self) -> dict[str, Any]:
        return {
            "max_abs_diff": max(float(w.max()) for w in self.worst.values()),
            "by_output": {
                name: dict(zip(self.labels[name], self.worst[name].tolist(), strict=True))
                for name in self.labels
            },
            "n_nonfinite": dict(self.nonfinite),
        }


def parse_lwtnn_test_output(text: str) -> dict[str, dict[str, float]]:
    """``{output: {label: value}}`` from lwtnn-test-lightweight-graph's printout
    (``name:`` lines, then ``label value`` lines)."""
    out: dict[str, dict[str, float]] = {}
    current: dict[str, float] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.endswith(":") and " " not in line:
            current = out.setdefault(line[:-1], {})
            continue
        parts = line.split()
        if current is None or len(parts) != 2:
            raise ValueError(f"unexpected line in {LWTNN_TEST} output: {line!r}")
        value = parts[1].lower().replace("-nan", "nan")
        current[parts[0]] = float(value)
    return out


def _lwtnn_cpp(
    network_text: str,
    inputs_json: Mapping[str, Any],
    reference: Mapping[str, Any],
    tolerance: float,
    workdir: Path,
    executable: str | None,
) -> dict[str, Any]:
    """Run lwtnn's C++ pattern test on the files to be written, if it is installed."""
    exe = shutil.which(LWTNN_TEST) if executable is None else executable
    if not exe:
        return {"ran": False, "reason": f"{LWTNN_TEST} not found on PATH"}
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir, prefix=".lwtnn-test-") as tmp:
        network, inputs = Path(tmp) / "network.json", Path(tmp) / "inputs.json"
        network.write_text(network_text)
        inputs.write_text(json.dumps(inputs_json, allow_nan=False))
        command = [exe, str(network), str(inputs)]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=600)
        except (OSError, subprocess.TimeoutExpired) as err:
            return {"ran": True, "passed": False, "executable": exe, "error": repr(err)}
    record: dict[str, Any] = {"ran": True, "executable": exe, "returncode": proc.returncode}
    try:
        if proc.returncode != 0:
            raise ValueError(f"exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
        printed = parse_lwtnn_test_output(proc.stdout)
    except ValueError as err:
        return {**record, "passed": False, "error": str(err)}
    record["outputs"] = printed
    worst = {"vs_lwtnn_numpy": 0.0, "vs_keras": 0.0}
    passed = True
    for key, expected, allowed in (
        ("vs_lwtnn_numpy", reference["lwtnn_numpy"], 0.0),
        ("vs_keras", reference.get("keras"), tolerance),
    ):
        if expected is None:
            worst[key] = None
            continue
        for name, values in expected.items():
            for label, value in values.items():
                got = printed.get(name, {}).get(label, math.nan)
                diff = abs(got - value)
                limit = allowed + LWTNN_TEST_PRINT_PRECISION * abs(value) + 1e-300
                if not diff <= limit:
                    passed = False
                worst[key] = max(worst[key], diff) if math.isfinite(diff) else math.inf
    record["max_abs_diff"] = {k: (v if v is None or math.isfinite(v) else "inf")
                              for k, v in worst.items()}
    record["allowed"] = (
        f"|C++ - numpy| <= {LWTNN_TEST_PRINT_PRECISION:g} |value| (6 printed digits); "
        f"|C++ - Keras| <= tolerance + that"
    )
    record["passed"] = passed
    return record


def _batch_size(batch: Batch) -> int:
    """Jets in a (scalars, sequences) batch."""
    norm_s, norm_q = batch
    return len(next(iter(norm_s.values()))) if norm_s else len(next(iter(norm_q.values()))[0])


def _batches(data: _TestData, n_jets: int, chunk_size: int, edge: Batch | None) -> Iterator:
    for start in range(0, n_jets, chunk_size):
        yield data.take(slice(start, min(start + chunk_size, n_jets)))
    if edge is not None:
        yield edge


def run(
    model_path: PathLike,
    variables_path: PathLike,
    test_dir: PathLike,
    network_out: PathLike,
    closure_out: PathLike,
    inputs_out: PathLike,
    tolerance: float,
    max_jets: int,
    *,
    min_jets: int | None = None,
    onnx_out: PathLike | None = None,
    onnx_opset: int = DEFAULT_OPSET,
    chunk_size: int = CHUNK_SIZE,
    lwtnn_test: str | None = None,
    check_only: bool = False,
) -> dict[str, Any]:
    """Convert, run the closure on up to ``max_jets`` test jets (plus edge jets), write outputs.

    With ``check_only`` the network and ONNX files are not written but read (what
    :func:`export` wrote): the closure then judges the files that get deployed, and a failed
    closure leaves them in place (the workflow's gate is the closure file).

    With ``onnx_out`` the ONNX export joins the closure (Keras vs lwtnn vs onnxruntime);
    without it only Keras vs lwtnn is compared. ``lwtnn_test`` overrides the path of lwtnn's
    C++ pattern test (default: looked up on PATH; skipped, and recorded, if absent).
    Returns the closure summary (also written to ``closure_out``). Raises FlavourflowError,
    leaving no network/ONNX/inputs file, if the test split has fewer than ``min_jets`` jets or
    any pair differs by more than ``tolerance``; the summary of a failed closure is kept in
    ``<closure_out stem>.failed.json`` (Snakemake removes a failed job's declared outputs).
    """
    from flavourflow.export.lwtnn import convert
    from flavourflow.export.onnx import OnnxScorer, keras_to_onnx, save

    if min_jets is None:  # the workflow's: one definition, in the config schema
        from flavourflow.core.defaults import default

        min_jets = default("export.min_jets")
    if not tolerance > 0 or max_jets < 1 or chunk_size < 1:
        raise FlavourflowError(
            f"need tolerance > 0, max_jets >= 1, chunk_size >= 1; got {tolerance}, {max_jets}, "
            f"{chunk_size}"
        )
    failed_out = Path(closure_out).with_suffix(".failed.json")
    outputs = [inputs_out, closure_out, failed_out]
    if not check_only:
        outputs += [network_out] + ([onnx_out] if onnx_out else [])
    for stale in outputs:
        Path(stale).unlink(missing_ok=True)  # a failed run must not leave an old one behind

    variables = _read_variables(variables_path)
    model = _load_model(model_path)
    network, roles = convert(model, variables)
    network_text = Path(network_out).read_text() if check_only else _network_text(network)
    graph = LightweightGraph(json.loads(network_text))  # evaluate exactly what gets written

    data = _TestData(Path(test_dir), graph)
    n_jets = min(data.n_jets, max_jets)
    if n_jets == 0 or data.n_jets < min_jets:
        raise FlavourflowError(f"{data.n_jets} test jets, fewer than the {min_jets} the closure "
                               "needs (export.min_jets)", path=test_dir)
    edge, edge_record = _edge_jets(data, n_jets, chunk_size)

    proto = scorer = None
    if onnx_out is not None:
        proto = _onnx_proto(onnx_out) if check_only else keras_to_onnx(
            model, roles, network, onnx_opset, _steps(data))
        scorer = OnnxScorer(proto.SerializeToString())

    names = graph.output_names
    pairs = [("keras", "lwtnn")] + ([("keras", "onnx"), ("lwtnn", "onnx")] if scorer else [])
    comparisons = {pair: _Comparison(graph) for pair in pairs}
    keras_first = onnx_first = None
    first_raw: dict[str, np.ndarray] = {}
    n_compared = 0
    n_edge = 0 if edge is None else _batch_size(edge)
    for batch in progress.track(_batches(data, n_jets, chunk_size, edge), n_jets + n_edge,
                                f"export closure {Path(model_path).parent.name}", "jets",
                                size=_batch_size):
        norm_s, norm_q = batch
        raw_s, raw_q = data.raw(batch)
        outs = {
            "keras": _keras_predict(model, _keras_feed(roles, norm_s, norm_q)),
            "lwtnn": [graph.compute(raw_s, raw_q, output=name) for name in names],
        }
        if scorer is not None:
            outs["onnx"] = scorer.run(_onnx_feed(roles, norm_s, norm_q), names)
        if n_compared == 0:
            keras_first = [k[:1] for k in outs["keras"]]
            onnx_first = [o[:1] for o in outs["onnx"]] if scorer is not None else None
            first_raw = {name: x[0] for name, x in raw_s.items()}
        for (a, b), comparison in comparisons.items():
            for j, name in enumerate(names):
                comparison.update(name, outs[a][j], outs[b][j])
        n_compared += len(next(iter(outs["keras"])))

    results = {f"{a}_vs_{b}": c.summary() for (a, b), c in comparisons.items()}
    overall = max(r["max_abs_diff"] for r in results.values())
    nonfinite = sum(sum(r["n_nonfinite"].values()) for r in results.values())
    passed = overall <= tolerance and nonfinite == 0

    inputs_json = {
        spec.name: dict(zip(spec.variables, (float(v) for v in first_raw[spec.name]), strict=True))
        for spec in graph.inputs
    }
    # inputs.json is read back exactly as the C++ will read it
    inputs_json = json.loads(json.dumps(inputs_json, allow_nan=False))
    reference = _reference_jet(model, graph, roles, inputs_json, keras_first, onnx_first, scorer)
    cpp = _lwtnn_cpp(
        network_text, inputs_json, reference, tolerance, Path(closure_out).parent, lwtnn_test
    )
    passed = passed and cpp.get("passed", True)
    summary: dict[str, Any] = {
        "passed": bool(passed),
        "tolerance": float(tolerance),
        "n_jets": int(n_compared),
        "n_test_jets": int(n_jets),
        "n_edge_jets": int(n_compared - n_jets),
        "max_abs_diff_overall": overall,
        "max_abs_diff": {pair: r["max_abs_diff"] for pair, r in results.items()},
        "comparisons": results,
        "edge_jets": edge_record,
        "onnx": _onnx_record(proto, onnx_out, onnx_opset, roles),
        "lwtnn_cpp": cpp,
        "reference_jet": reference,
        "inputs_json_format": "lwtnn-test-lightweight-graph NETWORK INPUTS: "
        "{input node: {variable: raw value}}",
        "model": str(model_path),
        "variables": str(variables_path),
        "test_dir": str(test_dir),
        "versions": _versions(),
    }
    if not passed:
        write_json(failed_out, summary)
        raise FlavourflowError(
            f"closure failed: max |diff| = {overall:.3g} (tolerance {tolerance:g}; per pair "
            f"{summary['max_abs_diff']}, non-finite {nonfinite}, lwtnn C++ "
            f"{'passed' if cpp.get('passed', True) else 'FAILED'}); see {failed_out}"
        )
    if not check_only:
        with atomic_path(network_out) as tmp:
            tmp.write_text(network_text)
        if proto is not None:
            save(proto, onnx_out)
    write_json(inputs_out, inputs_json)
    write_json(closure_out, summary)
    log.info("closure passed on %d jets: max |diff| = %.3g", n_compared, overall)
    return summary


def _network_text(network: Mapping[str, Any]) -> str:
    return json.dumps(network, indent=2, allow_nan=False) + "\n"


def _steps(data: _TestData) -> dict[str, int]:
    """Each sequence input's fixed length, as the test memmaps have it."""
    return {name: values.shape[1] for name, (values, _, _) in data.sequences.items()}


def _onnx_proto(path: PathLike) -> Any:
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as err:  # onnx raises protobuf's DecodeError, OSError, ValueError...
        raise FlavourflowError(f"not a readable ONNX model ({err})", path=path) from None


def export(model_path: PathLike, variables_path: PathLike, test_dir: PathLike,
           network_out: PathLike, onnx_out: PathLike | None = None,
           onnx_opset: int = DEFAULT_OPSET) -> None:
    """Keras -> lwtnn ``network_out`` (and ONNX ``onnx_out``), with no closure: the workflow's
    export rule, whose outputs depend on the model alone (the closure rule then checks them
    with settings of its own). The same model gives the same bytes."""
    from flavourflow.export.lwtnn import convert
    from flavourflow.export.onnx import keras_to_onnx, save

    variables = _read_variables(variables_path)
    model = _load_model(model_path)
    network, roles = convert(model, variables)
    network_text = _network_text(network)
    if onnx_out is not None:
        data = _TestData(Path(test_dir), LightweightGraph(json.loads(network_text)))
        save(keras_to_onnx(model, roles, network, onnx_opset, _steps(data)), onnx_out)
    with atomic_path(network_out) as tmp:
        tmp.write_text(network_text)


def _onnx_record(proto: Any, path: PathLike | None, opset: int, roles) -> dict[str, Any]:
    if proto is None:
        return {"exported": False}
    from flavourflow.export.onnx import onnx_input_name

    return {
        "exported": True,
        "file": str(path),
        "opset": int(opset),
        "route": "tf2onnx.convert.from_function (static sequence length, SelectV2 -> Where)",
        "inputs": [
            {"name": onnx_input_name(r), "kind": r.kind, "node": r.name} for r in roles
        ],
        "outputs": [o.name for o in proto.graph.output],
        "metadata_keys": [p.key for p in proto.metadata_props],
    }


def summarise(summary: Mapping[str, Any]) -> str:
    """One line for the log/CLI."""
    pairs = ", ".join(f"{pair} {value:.3g}" for pair, value in summary["max_abs_diff"].items())
    cpp = summary.get("lwtnn_cpp", {})
    return (
        f"closure {'passed' if summary['passed'] else 'FAILED'} on {summary['n_jets']} jets: "
        f"max |diff| {pairs} (tolerance {summary['tolerance']:g}); lwtnn C++ "
        f"{'compared' if cpp.get('ran') else 'not run'}"
    )
