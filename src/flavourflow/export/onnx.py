"""Keras 3 -> ONNX with tf2onnx, and an onnxruntime scorer for the closure.

Route: ``tf2onnx.convert.from_function`` on a ``tf.function`` that calls the model with an
explicit input signature (tf2onnx 1.17 with TensorFlow 2.21 / Keras 3.15). Two details make
the result exact rather than approximately right:

* Sequence inputs get the model's static length ``T``. With ``T = None`` Keras 3's
  ``TimeDistributed`` traces to a ``tf.vectorized_map`` loop that tf2onnx turns into an ONNX
  ``Loop`` which onnxruntime rejects at run time ("Squeeze ... Dimension of input 0 must be 1
  instead of 0"); with a static ``T`` it is unrolled into plain ops.
* tf2onnx rewrites TensorFlow's ``SelectV2`` (``where``) as ``c * x + (1 - c) * y`` "because
  Mul/Add are faster than Where in onnxruntime", unless it can see a NaN. For
  :class:`~flavourflow.export.layers.MaskedSum` that lets NaN/inf padding of invalid tracks
  leak into the sum (``0 * NaN = NaN``), where Keras ignores it. We map ``SelectV2`` to ONNX
  ``Where``, whose semantics (numpy broadcasting) are those of ``SelectV2``.

The ONNX model takes the *normalised* inputs Keras takes (float32; the validity masks of
sequences as given to Keras), named after the lwtnn input nodes (``<sequence>_valid`` for a
mask), and has one output per lwtnn output, named like it. The normalisation (offsets, scales,
defaults, variable order), the output labels and the flavourflow version are stored as
``metadata_props``, as salt does for its ONNX exports, so that a C++ caller needs nothing else.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flavourflow.core.errors import FlavourflowError
from flavourflow.core.outputs import atomic_path

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
#: TensorFlow accepts these as op (hence ONNX input) names.
_TF_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\-/]*$")
NORMALISATION = (
    "inputs are normalised float32: x_norm = (x + offset) * scale per variable, in the listed "
    "variable order, after replacing NaN/+-inf by the variable's default where it has one "
    "(ATLAS NanReplacer); sequence inputs are [N, T, n_vars] with a [N, T] validity mask "
    "'<name>_valid' (padded steps are ignored whatever they hold)"
)


def onnx_input_name(role: Any) -> str:
    """ONNX name of a Keras input: its lwtnn node name, ``<sequence>_valid`` for a mask."""
    return f"{role.name}_valid" if role.kind == "valid" else role.name


def _inputs_struct(model: Any) -> Any:
    struct = getattr(model, "_inputs_struct", None)
    if struct is None and getattr(model, "_functional", None) is not None:
        struct = getattr(model._functional, "_inputs_struct", None)
    return struct


def pack_inputs(model: Any, flat_inputs: Sequence[Any]) -> Any:
    """Inputs in ``model.inputs`` order, packed as the model's call expects (list/dict/one)."""
    import keras

    struct = _inputs_struct(model)
    if struct is None:
        return list(flat_inputs) if len(flat_inputs) > 1 else flat_inputs[0]
    return keras.tree.pack_sequence_as(struct, list(flat_inputs))


def _signature(model: Any, roles: Sequence[Any], steps: Mapping[str, int]) -> list[Any]:
    import tensorflow as tf

    specs = []
    for tensor, role in zip(model.inputs, roles, strict=True):
        name = onnx_input_name(role)
        if not _TF_NAME.match(name):
            raise FlavourflowError(
                f"input node name '{role.name}' cannot name an ONNX input (TensorFlow op "
                "names allow letters, digits and _.-/)"
            )
        shape = list(tensor.shape)
        shape[0] = None
        if len(shape) >= 2 and shape[1] is None and role.kind in ("sequence", "valid"):
            if role.name not in steps:
                raise FlavourflowError(
                    f"sequence input '{role.name}' has no static length: the ONNX export needs "
                    "one (tf2onnx cannot export Keras 3 TimeDistributed over a dynamic axis)"
                )
            shape[1] = int(steps[role.name])
        specs.append(tf.TensorSpec(shape, tf.as_dtype(tensor.dtype), name=name))
    return specs


def _select_to_where(ctx: Any, node: Any, name: str, args: Any) -> Any:
    """tf2onnx handler: SelectV2 is ONNX Where (the node type is set by tf2onnx from args)."""
    return node


def metadata(graph: Mapping[str, Any], roles: Sequence[Any],
             record: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX model: everything a caller needs besides the graph
    (``record``: the model's config entry, stored when given)."""
    import keras
    import tensorflow as tf
    import tf2onnx

    from flavourflow import __version__

    outputs = {name: list(out["labels"]) for name, out in graph["outputs"].items()}
    config = {
        "inputs": graph["inputs"],
        "input_sequences": graph["input_sequences"],
        "outputs": [{"name": n, "labels": labels} for n, labels in outputs.items()],
        "onnx_inputs": [
            {"name": onnx_input_name(r), "kind": r.kind, "node": r.name} for r in roles
        ],
    }
    extra = {"flavourflow_model_config": json.dumps(record, sort_keys=True)} if record else {}
    return {
        **extra,
        "flavourflow_version": __version__,
        "flavourflow_config": json.dumps(config, allow_nan=False),
        "output_names": json.dumps(list(outputs)),
        "output_labels": json.dumps(outputs),
        "normalisation": NORMALISATION,
        "converter": f"tf2onnx {tf2onnx.__version__} from_function",
        "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
    }


def keras_to_onnx(
    model: Any,
    roles: Sequence[Any],
    graph: Mapping[str, Any],
    opset: int = DEFAULT_OPSET,
    steps: Mapping[str, int] | None = None,
    record: Mapping[str, Any] | None = None,
) -> Any:
    """The ONNX ``ModelProto`` of ``model``.

    ``roles`` and ``graph`` are what :func:`flavourflow.export.lwtnn.convert` returned (the
    lwtnn graph supplies input/output names, normalisation and labels); ``steps`` gives the
    length of sequence inputs whose Keras shape has none.
    """
    import tensorflow as tf
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    names = list(graph["outputs"])
    if len(names) != len(model.outputs):
        raise FlavourflowError(f"{len(names)} lwtnn outputs for {len(model.outputs)} Keras ones")
    signature = _signature(model, roles, steps or {})

    @tf.function(input_signature=signature)
    def forward(*inputs):
        result = model(pack_inputs(model, inputs), training=False)
        return dict(zip(names, tf.nest.flatten(result), strict=True))

    try:
        proto, _ = tf2onnx.convert.from_function(
            forward,
            input_signature=signature,
            opset=int(opset),
            custom_op_handlers={"SelectV2": (_select_to_where, ["Where"])},
        )
    except Exception as err:  # tf2onnx raises bare exceptions of many kinds
        raise FlavourflowError(
            f"tf2onnx cannot convert model '{model.name}': {type(err).__name__}: {err}"
        ) from None
    got = sorted(o.name for o in proto.graph.output)
    if got != sorted(names):
        raise FlavourflowError(f"tf2onnx named the outputs {got}, expected {sorted(names)}")
    del proto.metadata_props[:]
    for key, value in metadata(graph, roles, record).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.doc_string = "flavourflow export: " + ", ".join(names)
    return proto


def save(proto: Any, path: str | os.PathLike[str]) -> None:
    """Check the model with the ONNX checker and write it atomically."""
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as err:
        raise FlavourflowError(f"invalid ONNX model: {err}", path=path) from None
    with atomic_path(path) as tmp:
        tmp.write_bytes(proto.SerializeToString())


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata_props of an ONNX file as a dict."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


class OnnxScorer:
    """An onnxruntime session over a model from :func:`keras_to_onnx` (file or bytes)."""

    def __init__(self, model: str | os.PathLike[str] | bytes, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.log_severity_level = 3
        source = model if isinstance(model, bytes) else str(Path(model))
        self.session = ort.InferenceSession(
            source, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> list[np.ndarray]:
        """Outputs (float64) named ``outputs`` for inputs keyed by ONNX input name."""
        missing = set(self.inputs) - set(feeds)
        if missing:
            raise KeyError(f"ONNX inputs not given: {sorted(missing)}")
        cast = {}
        for name, info in self.inputs.items():
            dtype = bool if info.type == "tensor(bool)" else np.float32
            cast[name] = np.ascontiguousarray(feeds[name], dtype=dtype)
        result = self.session.run(list(outputs), cast)
        return [np.asarray(r, dtype=np.float64) for r in result]
