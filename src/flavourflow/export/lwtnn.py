"""Keras 3 -> lwtnn LightweightGraph JSON (reference: shared/reference/lwtnn-format.md, s. 3).

lwtnn's own converters read only Keras 1/2 files, so this module walks the Keras 3 graph in
Python: from each ``model.outputs`` tensor back through ``tensor._keras_history`` to the layer
call (``Node``) that made it, for Functional and Sequential models alike (a built Sequential
model exposes the same graph), including models nested as layers. Every layer call becomes
zero or more lwtnn nodes; anything lwtnn cannot reproduce exactly is refused with a
``FlavourflowError`` naming the layer and the reason.

Input matching (the ``variables.json`` contract): the i-th ``inputs`` entry belongs to the
i-th 2-D Keras input in ``model.inputs`` order, the i-th ``input_sequences`` entry to the
i-th 3-D input, ``outputs[j]`` to ``model.outputs[j]``. A Keras input used only as the
``valid`` operand of :class:`~flavourflow.export.layers.MaskedSum` is a *validity mask*, not
a variable input: it is skipped in that matching (lwtnn has no masks; its caller feeds only
the valid steps) and is tied to the sequence input whose steps it masks.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flavourflow.core.errors import FlavourflowError

#: Layers that are the identity at inference time (lwtnn's converter drops them too).
IDENTITY_LAYERS = (
    "Dropout",
    "SpatialDropout1D",
    "GaussianNoise",
    "GaussianDropout",
    "AlphaDropout",
    "ActivityRegularization",
    "Identity",
)
#: Keras activations with no lwtnn counterpart, and why.
_REFUSED_ACTIVATIONS = {
    "hard_sigmoid": "Keras 3 hard_sigmoid is clip(x/6 + 0.5) but lwtnn's is clip(0.2x + 0.5)",
    "hard_silu": "lwtnn has no hard_silu",
}
RECURRENT_LAYERS = ("LSTM", "GRU", "SimpleRNN", "Bidirectional", "RNN", "ConvLSTM1D")


def _refuse(layer: Any, reason: str) -> FlavourflowError:
    return FlavourflowError(
        f"layer '{getattr(layer, 'name', layer)}' ({type(layer).__name__}): {reason}"
    )


def _floats(array: Any) -> list[float]:
    """Flat list of Python floats (float64 of the stored float32 values, C order)."""
    return [float(v) for v in np.asarray(array, dtype=np.float64).ravel()]


def _numpy(variable: Any) -> np.ndarray:
    """A Keras variable or tensor as a float64 array (exactly the stored float32 values)."""
    if hasattr(variable, "numpy"):
        return np.asarray(variable.numpy(), dtype=np.float64)
    from keras import ops

    return np.asarray(ops.convert_to_numpy(variable), dtype=np.float64)


# --------------------------------------------------------------------------------------------
# activations


def _default_arg(function: Any, name: str) -> float:
    return float(inspect.signature(function).parameters[name].default)


def lwtnn_activation(activation: Any, layer: Any) -> str | dict[str, Any]:
    """The lwtnn activation (section 0.4) for a Keras activation function or name."""
    import keras

    name = activation if isinstance(activation, str) or activation is None else None
    if name is None:
        name = keras.activations.serialize(activation)
    if name is None:
        name = "linear"
    if not isinstance(name, str):
        raise _refuse(layer, f"custom activation {name!r} has no lwtnn counterpart")
    if name in ("linear", "sigmoid", "tanh", "softmax"):
        return name
    if name == "relu":
        return "rectified"
    if name == "elu":
        return {"function": "elu", "alpha": _default_arg(keras.activations.elu, "alpha")}
    if name == "leaky_relu":
        slope = _default_arg(keras.activations.leaky_relu, "negative_slope")
        return {"function": "leakyrelu", "alpha": slope}
    if name in ("silu", "swish"):
        # Keras silu is x * sigmoid(x): lwtnn swish with alpha 1 (object form, else alpha NaN)
        return {"function": "swish", "alpha": 1.0}
    reason = _REFUSED_ACTIVATIONS.get(name, "it has no lwtnn counterpart")
    raise _refuse(layer, f"activation '{name}' is not supported: {reason}")


# --------------------------------------------------------------------------------------------
# per-vector layers: Keras layer -> list of lwtnn layer dicts (empty list: identity)


def _dense(layer: Any, width: int) -> list[dict[str, Any]]:
    if getattr(layer, "quantization_mode", None):
        raise _refuse(layer, f"quantized ({layer.quantization_mode}) Dense is not supported")
    kernel = _numpy(layer.kernel)  # (n_in, n_out); includes LoRA if enabled
    if kernel.shape[0] != width:
        raise _refuse(layer, f"kernel expects {kernel.shape[0]} inputs, gets {width}")
    bias = _numpy(layer.bias) if layer.use_bias else np.zeros(kernel.shape[1])
    return [
        {
            "architecture": "dense",
            "weights": _floats(kernel.T),  # row-major (n_out, n_in)
            "bias": _floats(bias),
            "activation": lwtnn_activation(layer.activation, layer),
        }
    ]


def _batch_norm(layer: Any, width: int, rank: int) -> list[dict[str, Any]]:
    """Fold inference-mode batch normalisation into an lwtnn ``normalization`` layer.

    Keras computes y = gamma * (x - mu) / sqrt(var + eps) + beta. We fold, in float64,
    w = gamma / sqrt(var + eps) and b = beta / w - mu so that lwtnn's w * (x + b) is the same.
    Why this rather than the diagonal ``dense`` encoding: both are exact up to float64
    rounding (the folded b carries a relative error of ~1e-16, i.e. an absolute error of
    ~1e-16 * (|beta| + |w mu|) on y, the same order as the dense bias beta - w mu), the
    upstream converter and ATLAS readers expect ``normalization``, and it costs n instead of n^2
    weights and operations per jet (per track, for time-distributed ones) in Athena. Its one
    gap is gamma = 0 (b infinite), which we refuse instead of writing inf. The upstream
    converter folded in float32; here the fold is float64, so no extra rounding is added.
    """
    axis = layer.axis if isinstance(layer.axis, int) else None
    if axis is None and len(layer.axis) == 1:
        axis = int(layer.axis[0])
    if axis not in (-1, rank - 1):
        raise _refuse(layer, f"axis={layer.axis!r}: only the last (feature) axis is supported")
    if getattr(layer, "renorm", False):
        raise _refuse(layer, "renorm=True is not supported")
    mean = _numpy(layer.moving_mean)
    var = _numpy(layer.moving_variance)
    gamma = _numpy(layer.gamma) if layer.scale else np.ones_like(mean)
    beta = _numpy(layer.beta) if layer.center else np.zeros_like(mean)
    if mean.size != width:
        raise _refuse(layer, f"has {mean.size} channels, gets {width}")
    stats = np.concatenate([mean, var, gamma, beta])
    if not np.all(np.isfinite(stats)):
        raise _refuse(layer, "non-finite weights or moving statistics")
    if np.any(gamma == 0.0):
        raise _refuse(
            layer,
            f"gamma == 0 in channel(s) {np.flatnonzero(gamma == 0.0).tolist()}: the "
            "folded lwtnn normalization bias would be infinite",
        )
    std = np.sqrt(var + float(layer.epsilon))
    if not np.all(std > 0.0):
        raise _refuse(layer, "moving_variance + epsilon is not positive")
    w = gamma / std
    b = beta / w - mean
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
        raise _refuse(layer, "folded normalization weights are not finite")
    return [{"architecture": "normalization", "weights": _floats(w), "bias": _floats(b)}]


def _activation_only(activation: str | dict[str, Any]) -> list[dict[str, Any]]:
    return [{"architecture": "dense", "weights": [], "bias": [], "activation": activation}]


def per_vector_layers(layer: Any, width: int, rank: int) -> list[dict[str, Any]]:
    """lwtnn layers computing ``layer`` on each feature vector (one jet, or one step)."""
    import keras

    cls = type(layer).__name__
    if cls in IDENTITY_LAYERS:
        return []
    if isinstance(layer, keras.layers.Dense):
        return _dense(layer, width)
    if isinstance(layer, keras.layers.BatchNormalization):
        return _batch_norm(layer, width, rank)
    if isinstance(layer, keras.layers.Activation):
        return _activation_only(lwtnn_activation(layer.activation, layer))
    if isinstance(layer, keras.layers.Softmax):
        axis = layer.axis if isinstance(layer.axis, int) else tuple(layer.axis)
        if axis not in (-1, rank - 1, (-1,), (rank - 1,)):
            raise _refuse(layer, f"softmax over axis={layer.axis!r}: only the last axis works")
        return _activation_only("softmax")
    if isinstance(layer, keras.layers.LeakyReLU):
        return _activation_only({"function": "leakyrelu", "alpha": float(layer.negative_slope)})
    if isinstance(layer, keras.layers.ReLU):
        if layer.max_value is not None:
            raise _refuse(layer, f"max_value={layer.max_value} (clipped ReLU) has no lwtnn form")
        if float(layer.threshold) != 0.0:
            raise _refuse(layer, f"threshold={layer.threshold} has no lwtnn form")
        slope = float(layer.negative_slope)
        if slope == 0.0:
            return _activation_only("rectified")
        return _activation_only({"function": "leakyrelu", "alpha": slope})
    if isinstance(layer, keras.layers.ELU):
        return _activation_only({"function": "elu", "alpha": float(layer.alpha)})
    if cls == "Flatten" and rank == 2:
        return []
    raise _unsupported(layer)


def _unsupported(layer: Any) -> FlavourflowError:
    """The most specific refusal for a layer with no lwtnn mapping here."""
    cls = type(layer).__name__
    if cls == "GRU" and getattr(layer, "reset_after", False):
        return _refuse(
            layer,
            "GRU with reset_after=True (the Keras 3 default) has a second recurrent bias "
            "that lwtnn cannot represent; train with reset_after=False",
        )
    if cls == "Conv1D":
        kernel = int(layer.kernel_size[0])
        dilation = int(layer.dilation_rate[0])
        pad = (kernel - 1) * dilation
        if layer.padding == "same" and pad % 2:
            return _refuse(
                layer,
                f"padding='same' with odd total padding (kernel-1)*dilation = {pad}: "
                "lwtnn puts the extra zero in front, Keras behind",
            )
        return _refuse(layer, "Conv1D export is not supported (the numpy closure cannot check it)")
    if cls in RECURRENT_LAYERS:
        return _refuse(
            layer,
            "recurrent layers are not supported by this exporter (the numpy closure "
            "evaluator cannot check lwtnn 'sequence' nodes)",
        )
    return _refuse(layer, "no lwtnn equivalent for this layer class")


# --------------------------------------------------------------------------------------------
# the graph walk


@dataclass(frozen=True)
class _Ref:
    """What a Keras tensor became: an lwtnn node, its rank, width and source sequence input."""

    node: int
    sequence: bool
    width: int
    seq_input: int | None = None  # the input_sequences index a sequence derives from


@dataclass(frozen=True)
class _Mask:
    """A Keras input used as a MaskedSum validity mask."""

    keras_index: int


@dataclass(frozen=True)
class InputRole:
    """What one Keras input (in ``model.inputs`` order) is fed in the closure.

    ``kind`` is ``"input"`` (a scalar node), ``"sequence"`` or ``"valid"`` (the validity mask
    of the sequence node ``name``); ``name`` is the lwtnn node name from variables.json.
    """

    kind: str
    name: str


def _history(tensor: Any) -> tuple[Any, int, int]:
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        raise FlavourflowError(f"tensor {tensor!r} is not part of a Keras functional graph")
    return history.operation, history.node_index, history.tensor_index


def _call_node(tensor: Any) -> Any:
    operation, node_index, _ = _history(tensor)
    return operation._inbound_nodes[node_index]


def _topological(outputs: Iterable[Any], bound: set[int]) -> list[Any]:
    """Keras Nodes the ``outputs`` depend on, producers first, stopping at ``bound`` tensors."""
    order: list[Any] = []
    seen: set[int] = set()
    stack: list[tuple[Any, bool]] = [
        (_call_node(t), False) for t in reversed(list(outputs)) if id(t) not in bound
    ]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for t in reversed(node.input_tensors):
            if id(t) not in bound:
                parent = _call_node(t)
                if id(parent) not in seen:
                    stack.append((parent, False))
    return order


def _model_io(model: Any, what: str) -> list[Any]:
    try:
        tensors = list(getattr(model, what))
    except (AttributeError, ValueError) as err:
        raise FlavourflowError(
            f"model '{model.name}' has no defined {what} (build it with keras.Input): {err}"
        ) from None
    return tensors


class _Converter:
    """Builds the lwtnn layers/nodes lists while walking one model."""

    def __init__(self, model: Any, variables: Mapping[str, Any]):
        import keras

        from flavourflow.export.layers import MaskedSum

        self.keras = keras
        self.masked_sum = MaskedSum
        self.model = model
        self.variables = variables
        self.layers: list[dict[str, Any]] = []
        self.nodes: list[dict[str, Any]] = []
        # (id(Keras layer), input width) -> lwtnn layer indices
        self.layer_cache: dict[tuple[int, int], list[int]] = {}
        self.mask_of: dict[int, int] = {}  # Keras mask input index -> input_sequences index
        self.roles: list[InputRole] = []

    # ---- entry point ---------------------------------------------------------------------

    def convert(self) -> dict[str, Any]:
        inputs = _model_io(self.model, "inputs")
        outputs = _model_io(self.model, "outputs")
        var_inputs = list(self.variables.get("inputs") or [])
        var_seqs = list(self.variables.get("input_sequences") or [])
        var_outputs = list(self.variables.get("outputs") or [])
        masks = self._mask_inputs(inputs, outputs)

        env: dict[int, _Ref | _Mask] = {}
        scalars = [i for i, t in enumerate(inputs) if i not in masks and len(t.shape) == 2]
        seqs = [i for i, t in enumerate(inputs) if i not in masks and len(t.shape) == 3]
        for i, t in enumerate(inputs):
            if i not in masks and len(t.shape) not in (2, 3):
                raise FlavourflowError(
                    f"Keras input '{_history(t)[0].name}' has shape {t.shape}: only [N, n_vars] "
                    "and [N, T, n_vars] inputs map to lwtnn nodes"
                )
        self._check_count("inputs", "2-D", len(scalars), len(var_inputs))
        self._check_count("input_sequences", "3-D", len(seqs), len(var_seqs))
        self._check_names("inputs", [inputs[i] for i in scalars], var_inputs)
        self._check_names("input_sequences", [inputs[i] for i in seqs], var_seqs)

        json_inputs, json_seqs = [], []
        for kind, keras_indices, specs, out in (
            ("input", scalars, var_inputs, json_inputs),
            ("input_sequence", seqs, var_seqs, json_seqs),
        ):
            for k, (keras_index, spec) in enumerate(zip(keras_indices, specs, strict=True)):
                tensor = inputs[keras_index]
                node_spec = self._input_spec(spec, tensor, f"variables.json {kind}s[{k}]")
                out.append(node_spec)
                self.nodes.append(
                    {"type": kind, "sources": [k], "size": len(node_spec["variables"])}
                )
                env[id(tensor)] = _Ref(
                    len(self.nodes) - 1,
                    kind == "input_sequence",
                    len(node_spec["variables"]),
                    k if kind == "input_sequence" else None,
                )
        for i in masks:
            env[id(inputs[i])] = _Mask(i)

        refs = self._walk(outputs, env)

        if len(var_outputs) != len(outputs):
            raise FlavourflowError(
                f"variables.json lists {len(var_outputs)} outputs, the model has {len(outputs)}",
                field="outputs",
            )
        json_outputs: dict[str, Any] = {}
        for j, (ref, spec) in enumerate(zip(refs, var_outputs, strict=True)):
            name = str(spec.get("name", ""))
            labels = [str(label) for label in spec.get("labels") or []]
            where = f"output '{name}' (variables.json outputs[{j}])"
            if not name or name in json_outputs:
                raise FlavourflowError(f"{where}: output names must be unique and non-empty")
            if isinstance(ref, _Mask) or ref.sequence:
                raise FlavourflowError(f"{where}: Keras output {j} is not a [N, n] tensor")
            if len(labels) != ref.width or len(set(labels)) != len(labels):
                raise FlavourflowError(
                    f"{where}: {len(labels)} labels {labels} for a Keras output of size "
                    f"{ref.width}; one distinct label per output value is needed"
                )
            json_outputs[name] = {"node_index": ref.node, "labels": labels}

        self.roles = self._roles(inputs, scalars, seqs, masks, var_inputs, var_seqs)
        return {
            "inputs": json_inputs,
            "input_sequences": json_seqs,
            "layers": self.layers,
            "nodes": self.nodes,
            "outputs": json_outputs,
        }

    # ---- inputs --------------------------------------------------------------------------

    @staticmethod
    def _check_count(key: str, rank: str, n_keras: int, n_json: int) -> None:
        if n_keras != n_json:
            raise FlavourflowError(
                f"the model has {n_keras} {rank} inputs but variables.json lists {n_json}",
                field=key,
            )

    @staticmethod
    def _check_names(key: str, tensors: Sequence[Any], specs: Sequence[Any]) -> None:
        """Positional matching is the contract; refuse only an obvious permutation of names."""
        keras_names = [_history(t)[0].name for t in tensors]
        json_names = [str(s.get("name")) for s in specs]
        if sorted(keras_names) == sorted(json_names) and keras_names != json_names:
            raise FlavourflowError(
                f"Keras inputs {keras_names} carry the variables.json names {json_names} in "
                "another order: the i-th entry must describe the i-th Keras input",
                field=key,
            )

    @staticmethod
    def _input_spec(spec: Mapping[str, Any], tensor: Any, where: str) -> dict[str, Any]:
        name = spec.get("name")
        if not name:
            raise FlavourflowError(f"{where}: node without a name")
        width = tensor.shape[-1]
        variables = []
        for v, var in enumerate(spec.get("variables") or []):
            try:
                entry = {
                    "name": str(var["name"]),
                    "offset": float(var["offset"]),
                    "scale": float(var["scale"]),
                }
                if var.get("default") is not None:
                    entry["default"] = float(var["default"])
            except (KeyError, TypeError, ValueError) as err:
                raise FlavourflowError(f"{where} variable {v}: bad entry ({err!r})") from None
            if not all(math.isfinite(x) for x in entry.values() if isinstance(x, float)):
                raise FlavourflowError(f"{where} variable '{entry['name']}': non-finite number")
            variables.append(entry)
        if len(variables) != width:
            raise FlavourflowError(
                f"input node '{name}' ({where}) has {len(variables)} variables but the Keras "
                f"input '{_history(tensor)[0].name}' has width {width}"
            )
        names = [v["name"] for v in variables]
        if len(set(names)) != len(names):
            raise FlavourflowError(f"input node '{name}' ({where}) repeats a variable name")
        node = {"name": str(name), "variables": variables}
        if spec.get("max_tracks") is not None:
            # steps the network was trained on; lwtnn ignores the key, readers of
            # network.json (evaluate, inject) feed only that many steps, as training did
            node["max_tracks"] = int(spec["max_tracks"])
        return node

    def _mask_inputs(self, inputs: Sequence[Any], outputs: Sequence[Any]) -> set[int]:
        """Indices of the Keras inputs used (only) as MaskedSum validity masks."""
        by_id = {id(t): i for i, t in enumerate(inputs)}
        masks: set[int] = set()
        for node in self._all_nodes(outputs, set(by_id)):
            if isinstance(node.operation, self.masked_sum):
                mask = node.input_tensors[1] if len(node.input_tensors) == 2 else None
                if mask is None or id(mask) not in by_id:
                    raise _refuse(
                        node.operation,
                        "the validity mask must be a model input (a [N, T] bool "
                        "Keras Input), called as MaskedSum()([values, valid])",
                    )
                masks.add(by_id[id(mask)])
        return masks

    def _all_nodes(self, outputs: Sequence[Any], bound: set[int]) -> list[Any]:
        """Every Keras Node reachable from ``outputs``, looking inside nested models."""
        found = []
        for node in _topological(outputs, bound):
            found.append(node)
            if isinstance(node.operation, self.keras.Model):
                inner = node.operation
                found.extend(self._all_nodes(inner.outputs, {id(t) for t in inner.inputs}))
        return found

    def _roles(self, inputs, scalars, seqs, masks, var_inputs, var_seqs) -> list[InputRole]:
        roles: dict[int, InputRole] = {}
        for keras_index, spec in zip(scalars, var_inputs, strict=True):
            roles[keras_index] = InputRole("input", str(spec["name"]))
        for keras_index, spec in zip(seqs, var_seqs, strict=True):
            roles[keras_index] = InputRole("sequence", str(spec["name"]))
        for keras_index in masks:
            if keras_index not in self.mask_of:
                raise FlavourflowError(
                    f"Keras input '{_history(inputs[keras_index])[0].name}' is a MaskedSum mask "
                    "of no sequence input"
                )
            roles[keras_index] = InputRole(
                "valid", str(var_seqs[self.mask_of[keras_index]]["name"])
            )
        return [roles[i] for i in range(len(inputs))]

    # ---- nodes ---------------------------------------------------------------------------

    def _walk(self, outputs: Sequence[Any], env: dict[int, _Ref | _Mask]) -> list[_Ref | _Mask]:
        for node in _topological(outputs, set(env)):
            results = self._convert_node(node, env)
            for tensor, ref in zip(node.outputs, results, strict=True):
                env[id(tensor)] = ref
        return [env[id(t)] for t in outputs]

    def _source(self, tensor: Any, env: dict[int, _Ref | _Mask], layer: Any) -> _Ref:
        ref = env[id(tensor)]
        if isinstance(ref, _Mask):
            raise _refuse(layer, "uses a MaskedSum validity-mask input as a value")
        return ref

    def _add_node(self, node: dict[str, Any], ref_like: _Ref, width: int) -> _Ref:
        self.nodes.append(node)
        return _Ref(len(self.nodes) - 1, ref_like.sequence, width, ref_like.seq_input)

    def _chain(self, layer: Any, specs: list[dict[str, Any]], ref: _Ref) -> _Ref:
        """Append ``specs`` (once per Keras layer: shared layers share lwtnn layers) and one
        feed_forward (or, on a sequence, time_distributed) node per spec, fed by ``ref``."""
        key = (id(layer), ref.width)  # an activation layer may be shared by several widths
        if key not in self.layer_cache:
            first = len(self.layers)
            self.layers.extend(specs)
            self.layer_cache[key] = list(range(first, len(self.layers)))
        kind = "time_distributed" if ref.sequence else "feed_forward"
        for layer_index in self.layer_cache[key]:
            spec = self.layers[layer_index]
            width = ref.width
            if spec["architecture"] == "dense" and spec["weights"]:
                width = len(spec["bias"])
            ref = self._add_node(
                {"type": kind, "sources": [ref.node], "layer_index": layer_index}, ref, width
            )
        return ref

    def _convert_node(self, node: Any, env: dict[int, _Ref | _Mask]) -> list[_Ref | _Mask]:
        keras = self.keras
        layer = node.operation
        if getattr(node, "is_input", False):
            raise FlavourflowError(f"input '{layer.name}' is not one of the model's inputs")
        if isinstance(layer, keras.Model):
            return self._nested(node, env)
        if isinstance(layer, self.masked_sum):
            return [self._masked_sum(node, env)]
        if not isinstance(layer, keras.layers.Layer):
            raise FlavourflowError(
                f"operation '{getattr(layer, 'name', layer)}' ({type(layer).__name__}): raw "
                "keras.ops calls have no lwtnn equivalent; use layers"
            )
        sources = [self._source(t, env, layer) for t in node.input_tensors]
        if isinstance(layer, keras.layers.Concatenate):
            return [self._merge(layer, sources, "concatenate")]
        if isinstance(layer, keras.layers.Add):
            return [self._merge(layer, sources, "add")]
        if len(sources) != 1:
            raise _refuse(layer, f"called on {len(sources)} tensors; expected one")
        (ref,) = sources
        if isinstance(layer, keras.layers.TimeDistributed):
            if not ref.sequence:
                raise _refuse(layer, "TimeDistributed needs a [N, T, n] input")
            try:
                specs = per_vector_layers(layer.layer, ref.width, rank=2)
            except FlavourflowError as err:
                raise _refuse(layer, f"wraps an unsupported layer: {err}") from None
            return [self._chain(layer, specs, ref)]
        if ref.sequence and isinstance(layer, keras.layers.Dense):
            raise _refuse(
                layer,
                "Dense applied directly to a 3-D tensor: wrap it in TimeDistributed so "
                "that it becomes an lwtnn time_distributed node",
            )
        specs = per_vector_layers(layer, ref.width, rank=3 if ref.sequence else 2)
        return [self._chain(layer, specs, ref)]

    def _merge(self, layer: Any, sources: list[_Ref], kind: str) -> _Ref:
        if any(s.sequence for s in sources):
            raise _refuse(layer, f"lwtnn can only {kind} rank-1 (per-jet) tensors, not sequences")
        if kind == "concatenate" and layer.axis not in (-1, 1):
            raise _refuse(layer, f"axis={layer.axis}: only the feature axis (-1) is supported")
        widths = [s.width for s in sources]
        if kind == "add" and len(set(widths)) != 1:
            raise _refuse(layer, f"adding tensors of widths {widths}")
        width = sum(widths) if kind == "concatenate" else widths[0]
        self.nodes.append({"type": kind, "sources": [s.node for s in sources]})
        return _Ref(len(self.nodes) - 1, False, width)

    def _masked_sum(self, node: Any, env: dict[int, _Ref | _Mask]) -> _Ref:
        layer = node.operation
        values, mask = (env[id(t)] for t in node.input_tensors)
        if isinstance(values, _Mask) or not values.sequence:
            raise _refuse(layer, "the values operand must be a [N, T, n] sequence")
        assert isinstance(mask, _Mask)  # ensured by _mask_inputs
        seq = values.seq_input
        owner = self.mask_of.setdefault(mask.keras_index, seq)
        if owner != seq or sum(1 for s in self.mask_of.values() if s == seq) != 1:
            raise _refuse(
                layer, "each sequence input must be masked by one and the same validity input"
            )
        self.nodes.append({"type": "sum", "sources": [values.node]})
        return _Ref(len(self.nodes) - 1, False, values.width)

    def _nested(self, node: Any, env: dict[int, _Ref | _Mask]) -> list[_Ref | _Mask]:
        inner = node.operation
        inner_inputs = _model_io(inner, "inputs")
        if len(inner_inputs) != len(node.input_tensors):
            raise _refuse(inner, "nested model called with a different number of inputs")
        if isinstance(getattr(inner, "_inputs_struct", None), dict):
            raise _refuse(inner, "nested models with dict inputs are not supported")
        local = {
            id(t_in): env[id(t_out)]
            for t_in, t_out in zip(inner_inputs, node.input_tensors, strict=True)
        }
        return self._walk(_model_io(inner, "outputs"), local)


def keras_to_lwtnn(model: Any, variables: Mapping[str, Any]) -> dict[str, Any]:
    """The lwtnn LightweightGraph JSON (a dict) for a built Keras 3 model.

    ``variables`` is the preprocess stage's variables.json (``inputs``, ``input_sequences``,
    ``outputs``). Raises FlavourflowError naming the layer for anything lwtnn cannot reproduce.
    Write the result with ``allow_nan=False`` (``core.outputs.write_json`` does).
    """
    return _Converter(model, variables).convert()


def convert(model: Any, variables: Mapping[str, Any]) -> tuple[dict[str, Any], list[InputRole]]:
    """Like :func:`keras_to_lwtnn`, plus the role of each Keras input (model.inputs order)."""
    attention = [layer for layer in model.layers
                 if type(layer).__name__ in ("MultiHeadAttention", "Attention")]
    if attention:
        raise FlavourflowError(
            f"lwtnn cannot express attention (layer '{attention[0].name}', "
            f"{type(attention[0]).__name__}) of model '{model.name}': export it to ONNX alone")
    converter = _Converter(model, variables)
    graph = converter.convert()
    return graph, converter.roles
