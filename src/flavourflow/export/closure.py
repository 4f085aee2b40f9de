"""The export stage: Keras model -> lwtnn network.json, checked against Keras on test jets.

Flow: load ``model.keras`` and ``variables.json``; convert (:mod:`.lwtnn`); evaluate the
*written* JSON text with the independent numpy evaluator (:mod:`.evaluator`) on raw-unit
inputs and Keras on the normalised memmaps, chunk by chunk; compare. Only when every output
agrees to ``tolerance`` are ``network.json`` and ``inputs.json`` written (atomically), so a
failed closure leaves neither behind. ``closure.json`` is written in both cases (with
``passed``), because it is the record one needs to debug a failure; Snakemake deletes the
outputs of a failed job anyway, and nothing downstream can run without network.json.

``inputs.json`` is one test jet in the input-file format of lwtnn's
``lwtnn-test-lightweight-graph <nn config> [inputs file]`` (lwtnn/lwtnn
src/lwtnn-test-lightweight-graph.cxx, ``get_inputs``): a JSON object
``{scalar input node name: {variable name: raw value}}``, read with boost ``read_json``.
That program reads *every* top-level key as an input node (an object under a key would make
it throw), so nothing else can go in this file: the Keras outputs for the jet are in
``closure.json["reference_jet"]``, including ``reg_test_expected`` in the format of lwtnn's
``tests/reg-test.py --graph``. The program cannot read sequences: it always feeds 20 generated
"ramp" steps per sequence input, so for sequence models the reference outputs are computed
with those same steps.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

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

PathLike = str | os.PathLike[str]


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


def _inputs_struct(model: Any) -> Any:
    struct = getattr(model, "_inputs_struct", None)
    if struct is None and getattr(model, "_functional", None) is not None:
        struct = getattr(model._functional, "_inputs_struct", None)
    return struct


def _keras_predict(model: Any, flat_inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Keras outputs (float64, model.outputs order) for inputs in model.inputs order."""
    import keras

    struct = _inputs_struct(model)
    if struct is None:
        feed: Any = list(flat_inputs) if len(flat_inputs) > 1 else flat_inputs[0]
    else:
        feed = keras.tree.pack_sequence_as(struct, list(flat_inputs))
    result = model.predict_on_batch(feed)
    return [np.asarray(r, dtype=np.float64) for r in keras.tree.flatten(result)]


def _versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    from flavourflow import __version__

    return {
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
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

    def chunk(self, start: int, stop: int) -> tuple[dict, dict, dict, dict]:
        """(normalised scalars, normalised sequences, raw scalars, raw sequences) for a slice."""
        norm_s, raw_s, norm_q, raw_q = {}, {}, {}, {}
        for name, (array, spec) in self.scalars.items():
            norm_s[name] = np.asarray(array[start:stop])
            raw_s[name] = _raw(norm_s[name], spec)
        for name, (values, valid, spec) in self.sequences.items():
            norm_q[name] = (np.asarray(values[start:stop]), np.asarray(valid[start:stop], bool))
            raw_q[name] = (_raw(norm_q[name][0], spec), norm_q[name][1])
        return norm_s, norm_q, raw_s, raw_q


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


def _reference_jet(
    model: Any,
    graph: LightweightGraph,
    roles,
    inputs_json: dict[str, dict[str, float]],
    keras_first: list[np.ndarray] | None,
) -> dict[str, Any]:
    """Keras and numpy-lwtnn outputs for the jet in inputs.json, as lwtnn's test reads it."""
    raw_s = {
        spec.name: np.array([[inputs_json[spec.name][v] for v in spec.variables]])
        for spec in graph.inputs
    }
    sequences = lwtnn_test_sequences(graph)
    reference: dict[str, Any] = {"test_jet_index": 0}
    keras_out = keras_first
    if graph.input_sequences:
        reference["sequences"] = (
            f"lwtnn-test-lightweight-graph generates {LWTNN_TEST_SEQUENCE_STEPS} ramp steps per "
            "sequence input; the outputs below use those steps with this jet's scalar inputs"
        )
        keras_out = _keras_on_ramp(model, graph, roles, raw_s, sequences)
    numpy_out = {
        name: dict(
            zip(graph.labels(name), graph.compute(raw_s, sequences, name)[0].tolist(), strict=True)
        )
        for name in graph.output_names
    }
    reference["lwtnn_numpy"] = numpy_out
    if keras_out is None:
        reference["keras"] = None
        reference["keras_note"] = "Keras sequence length is below the generated steps"
        expected = numpy_out
    else:
        reference["keras"] = {
            name: dict(zip(graph.labels(name), out[0].tolist(), strict=True))
            for name, out in zip(graph.output_names, keras_out, strict=True)
        }
        expected = reference["keras"]
    reference["reg_test_expected"] = {
        f"{name}:": {label: [value] for label, value in values.items()}
        for name, values in expected.items()
    }
    return reference


def _keras_on_ramp(model, graph, roles, raw_s, sequences) -> list[np.ndarray] | None:
    """Keras on one jet with lwtnn-test's generated sequences (padded to the model's T)."""
    norm_s = {
        spec.name: ((raw_s[spec.name] + spec.offset) * spec.scale).astype(np.float32)
        for spec in graph.inputs
    }
    norm_q = {}
    by_input = {i: role for i, role in enumerate(roles)}
    for i, tensor in enumerate(model.inputs):
        role = by_input[i]
        if role.kind != "sequence":
            continue
        spec = next(s for s in graph.input_sequences if s.name == role.name)
        raw, valid = sequences[role.name]
        steps = tensor.shape[1] if tensor.shape[1] is not None else raw.shape[1]
        if steps < raw.shape[1]:
            return None
        values = np.zeros((1, steps, raw.shape[2]), dtype=np.float32)
        values[:, : raw.shape[1]] = (raw + spec.offset) * spec.scale
        mask = np.zeros((1, steps), dtype=bool)
        mask[:, : raw.shape[1]] = valid
        norm_q[role.name] = (values, mask)
    return _keras_predict(model, _keras_feed(roles, norm_s, norm_q))


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
    chunk_size: int = CHUNK_SIZE,
) -> dict[str, Any]:
    """Convert, run the closure on up to ``max_jets`` test jets, write the outputs.

    Returns the closure summary (also written to ``closure_out``). Raises FlavourflowError,
    leaving no network/inputs file, if any output differs from Keras by more than ``tolerance``.
    """
    from flavourflow.export.lwtnn import convert

    if not tolerance > 0 or max_jets < 1 or chunk_size < 1:
        raise FlavourflowError(
            f"need tolerance > 0, max_jets >= 1, chunk_size >= 1; got {tolerance}, {max_jets}, "
            f"{chunk_size}"
        )
    for stale in (network_out, inputs_out, closure_out):
        Path(stale).unlink(missing_ok=True)  # a failed run must not leave an old one behind

    variables = _read_variables(variables_path)
    model = _load_model(model_path)
    network, roles = convert(model, variables)
    network_text = json.dumps(network, indent=2, allow_nan=False) + "\n"
    graph = LightweightGraph(json.loads(network_text))  # evaluate exactly what gets written

    data = _TestData(Path(test_dir), graph)
    n_jets = min(data.n_jets, max_jets)
    if n_jets == 0:
        raise FlavourflowError("no test jets", path=test_dir)
    names = graph.output_names
    worst = {name: np.zeros(len(graph.labels(name))) for name in names}
    nonfinite = dict.fromkeys(names, 0)
    keras_first: list[np.ndarray] | None = None
    first_raw: dict[str, np.ndarray] = {}
    for start in range(0, n_jets, chunk_size):
        stop = min(start + chunk_size, n_jets)
        norm_s, norm_q, raw_s, raw_q = data.chunk(start, stop)
        keras_out = _keras_predict(model, _keras_feed(roles, norm_s, norm_q))
        if start == 0:
            keras_first = [k[:1] for k in keras_out]
            first_raw = {name: x[0] for name, x in raw_s.items()}
        for name, k_out in zip(names, keras_out, strict=True):
            l_out = graph.compute(raw_s, raw_q, output=name)
            diff = np.abs(k_out - l_out)
            finite = np.isfinite(diff)
            nonfinite[name] += int(np.count_nonzero(~finite))
            diff = np.where(finite, diff, 0.0)
            worst[name] = np.maximum(worst[name], diff.max(axis=0))
        log.debug("closure: %d / %d jets", stop, n_jets)

    max_abs = {name: float(worst[name].max()) for name in names}
    overall = max(max_abs.values())
    passed = overall <= tolerance and not any(nonfinite.values())

    inputs_json = {
        spec.name: dict(zip(spec.variables, (float(v) for v in first_raw[spec.name]), strict=True))
        for spec in graph.inputs
    }
    # inputs.json is read back exactly as the C++ will read it
    inputs_json = json.loads(json.dumps(inputs_json, allow_nan=False))
    summary: dict[str, Any] = {
        "passed": bool(passed),
        "tolerance": float(tolerance),
        "n_jets": int(n_jets),
        "max_abs_diff": max_abs,
        "max_abs_diff_overall": overall,
        "max_abs_diff_by_label": {
            name: dict(zip(graph.labels(name), worst[name].tolist(), strict=True)) for name in names
        },
        "n_nonfinite": nonfinite,
        "reference_jet": _reference_jet(model, graph, roles, inputs_json, keras_first),
        "inputs_json_format": "lwtnn-test-lightweight-graph NETWORK INPUTS: "
        "{input node: {variable: raw value}}",
        "model": str(model_path),
        "variables": str(variables_path),
        "test_dir": str(test_dir),
        "versions": _versions(),
    }
    if not passed:
        write_json(closure_out, summary)
        raise FlavourflowError(
            f"lwtnn closure failed: max |Keras - lwtnn| = {overall:.3g} > tolerance {tolerance:g}"
            f" (per output {max_abs}, non-finite {nonfinite}); see {closure_out}"
        )
    with atomic_path(network_out) as tmp:
        tmp.write_text(network_text)
    write_json(inputs_out, inputs_json)
    write_json(closure_out, summary)
    log.info("lwtnn closure passed on %d jets: max |diff| = %.3g", n_jets, overall)
    return summary


def summarise(summary: Mapping[str, Any]) -> str:
    """One line for the log/CLI."""
    return (
        f"closure {'passed' if summary['passed'] else 'FAILED'} on {summary['n_jets']} jets: "
        f"max |Keras - lwtnn| = {summary['max_abs_diff_overall']:.3g} "
        f"(tolerance {summary['tolerance']:g})"
    )
