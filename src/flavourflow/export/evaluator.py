"""A numpy evaluator of lwtnn LightweightGraph JSON, vectorised over a batch of jets.

It reproduces what ``lwt::LightweightGraph::compute`` does for one jet (reference:
shared/reference/lwtnn-format.md, sections 0, 1 and 3), for a whole batch at once and in
float64, so that the export closure can compare the C++-equivalent output with Keras on
thousands of jets in a fraction of a second. It deliberately reads only the JSON (never Keras)
so that it checks the converter instead of sharing its mistakes. Importing it needs only numpy.

Sequence inputs are given as ``(values [N, T, n_vars], valid [N, T])``: the result equals the
per-jet lwtnn evaluation on the valid steps only (padded steps are never computed).
Recurrent/convolutional ``sequence`` nodes (lstm, gru, simplernn, conv1d, embedding) are not
implemented.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flavourflow.core.errors import FlavourflowError

Array = np.ndarray

#: Layer architectures that only a recurrent ``sequence`` node can use.
SEQUENCE_ARCHITECTURES = ("lstm", "gru", "simplernn", "conv1d", "embedding")
NODE_TYPES = (
    "input",
    "input_sequence",
    "feed_forward",
    "sequence",
    "time_distributed",
    "concatenate",
    "add",
    "sum",
)
#: Node types whose value is a sequence (``sequence`` is both; it is not implemented here).
SEQUENCE_NODES = ("input_sequence", "time_distributed")

#: Number of steps ``lwtnn-test-lightweight-graph`` generates for every sequence input.
LWTNN_TEST_SEQUENCE_STEPS = 20


# --------------------------------------------------------------------------------------------
# activations (section 0.4): element-wise on a [M, n] array, softmax over each row


def _sigmoid(x: Array) -> Array:
    """lwtnn's clipped sigmoid: 0 below -30, 1 above 30, NaN passes through."""
    inner = np.clip(x, -30.0, 30.0)  # avoids overflow warnings; the ends are replaced below
    out = 1.0 / (1.0 + np.exp(-inner))
    out = np.where(x < -30.0, 0.0, out)
    return np.where(x > 30.0, 1.0, out)


def _hard_sigmoid(x: Array) -> Array:
    out = 0.2 * x + 0.5
    return np.where(out < 0.0, 0.0, np.where(out > 1.0, 1.0, out))


def _rectified(x: Array) -> Array:
    return np.where(x < 0.0, 0.0, x)


def _softmax(x: Array) -> Array:
    e = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return e / np.sum(e, axis=-1, keepdims=True)


def _elu(alpha: float) -> Callable[[Array], Array]:
    def elu(x: Array) -> Array:
        return np.where(x >= 0.0, x, alpha * (np.exp(np.minimum(x, 0.0)) - 1.0))

    return elu


def _leakyrelu(alpha: float) -> Callable[[Array], Array]:
    def leakyrelu(x: Array) -> Array:
        return np.where(x > 0.0, x, alpha * x)

    return leakyrelu


def _swish(alpha: float) -> Callable[[Array], Array]:
    def swish(x: Array) -> Array:
        return x * _sigmoid(alpha * x)

    return swish


_SIMPLE_ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "linear": lambda x: x,
    "sigmoid": _sigmoid,
    "sigmoid_legacy": _sigmoid,
    "hard_sigmoid": _hard_sigmoid,
    "hard_sigmoid_legacy": _hard_sigmoid,
    "tanh": np.tanh,
    "tanh_legacy": np.tanh,
    "rectified": _rectified,
    "rectified_legacy": _rectified,
    "softmax": _softmax,
    "abs": np.abs,
}
_ALPHA_ACTIVATIONS: dict[str, Callable[[float], Callable[[Array], Array]]] = {
    "elu": _elu,
    "leakyrelu": _leakyrelu,
    "swish": _swish,
}


def activation_function(spec: Any, where: str = "layer") -> Callable[[Array], Array]:
    """The numpy function for an lwtnn activation given as a string or ``{function, alpha}``.

    As in lwtnn, the plain string ``"elu"`` means alpha = 1 while plain ``"leakyrelu"`` and
    ``"swish"`` get alpha = NaN (so they produce NaN, as the C++ does).
    """
    if isinstance(spec, Mapping):
        if "function" not in spec or "alpha" not in spec:
            raise FlavourflowError(f"{where}: activation object needs 'function' and 'alpha'")
        name, alpha = str(spec["function"]), float(spec["alpha"])
    else:
        name = str(spec)
        alpha = 1.0 if name == "elu" else math.nan
    if name in _SIMPLE_ACTIVATIONS:
        return _SIMPLE_ACTIVATIONS[name]
    if name in _ALPHA_ACTIVATIONS:
        return _ALPHA_ACTIVATIONS[name](alpha)
    raise FlavourflowError(f"{where}: activation function {name} not recognized by lwtnn")


# --------------------------------------------------------------------------------------------
# layers (section 1): each maps [M, n_in] -> [M, n_out]


def _floats(values: Any, where: str) -> Array:
    try:
        return np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise FlavourflowError(f"{where}: expected a list of numbers ({err})") from None


def _matrix(weights: Array, n_in: int, where: str) -> Array:
    """Row-major (n_out, n_in) matrix from a flat list (section 0.3)."""
    if n_in == 0 or weights.size % n_in:
        raise FlavourflowError(f"{where}: {weights.size} weights do not divide by n_in = {n_in}")
    return weights.reshape(weights.size // n_in, n_in)


class _Layer:
    """One built lwtnn layer: ``n_out`` and a batched ``__call__``."""

    n_out: int

    def __call__(self, x: Array) -> Array:  # pragma: no cover - interface
        raise NotImplementedError


class _Dense(_Layer):
    def __init__(self, cfg: Mapping[str, Any], n_in: int, where: str):
        for key in ("weights", "bias"):
            if key not in cfg:
                raise FlavourflowError(f"{where}: dense layer without '{key}'")
        weights = _floats(cfg["weights"], where)
        self.matrix = _matrix(weights, n_in, where) if weights.size else None
        size = n_in if self.matrix is None else self.matrix.shape[0]
        self.bias = _floats(cfg["bias"], where)
        if self.bias.size and self.bias.size != size:
            raise FlavourflowError(f"{where}: bias of length {self.bias.size}, layer size {size}")
        if "activation" not in cfg:
            raise FlavourflowError(f"{where}: dense layer without activation")
        self.activation = activation_function(cfg["activation"], where)
        self.n_out = size

    def __call__(self, x: Array) -> Array:
        if self.matrix is not None:
            x = x @ self.matrix.T
        if self.bias.size:
            x = x + self.bias
        return self.activation(x)


class _Normalization(_Layer):
    def __init__(self, cfg: Mapping[str, Any], n_in: int, where: str):
        self.weights = _floats(cfg.get("weights", []), where)
        self.bias = _floats(cfg.get("bias", []), where)
        if not self.weights.size or self.weights.size != self.bias.size:
            raise FlavourflowError(f"{where}: normalization needs equal non-empty weights, bias")
        if self.weights.size != n_in:
            # lwtnn does not check this (undefined behaviour); we refuse it.
            raise FlavourflowError(
                f"{where}: normalization of size {self.weights.size}, n_in {n_in}"
            )
        self.n_out = n_in

    def __call__(self, x: Array) -> Array:
        return self.weights * (x + self.bias)


class _Maxout(_Layer):
    def __init__(self, cfg: Mapping[str, Any], n_in: int, where: str):
        subs = cfg.get("sublayers") or []
        if not subs:
            raise FlavourflowError(f"{where}: maxout without sublayers")
        self.subs = []
        for k, sub in enumerate(subs):
            w = _matrix(_floats(sub["weights"], where), n_in, f"{where} sublayer {k}")
            b = _floats(sub["bias"], where)
            if b.size != w.shape[0]:
                raise FlavourflowError(f"{where}: sublayer {k} bias does not match its weights")
            self.subs.append((w, b))
        sizes = {w.shape[0] for w, _ in self.subs}
        if len(sizes) != 1:
            raise FlavourflowError(f"{where}: maxout sublayers of different sizes {sorted(sizes)}")
        self.n_out = sizes.pop()

    def __call__(self, x: Array) -> Array:
        return np.max(np.stack([x @ w.T + b for w, b in self.subs]), axis=0)


class _Highway(_Layer):
    def __init__(self, cfg: Mapping[str, Any], n_in: int, where: str):
        comps = cfg.get("components") or {}
        if "t" not in comps or "carry" not in comps:
            raise FlavourflowError(f"{where}: highway needs components 't' and 'carry'")
        self.parts = {}
        for key in ("t", "carry"):
            w = _matrix(_floats(comps[key]["weights"], where), n_in, f"{where} {key}")
            b = _floats(comps[key]["bias"], where)
            if w.shape != (n_in, n_in) or b.size != n_in:
                raise FlavourflowError(f"{where}: highway component {key} must be {n_in}x{n_in}")
            self.parts[key] = (w, b)
        if "activation" not in cfg:
            raise FlavourflowError(f"{where}: highway layer without activation")
        self.activation = activation_function(cfg["activation"], where)
        self.n_out = n_in

    def __call__(self, x: Array) -> Array:
        wt, bt = self.parts["t"]
        wc, bc = self.parts["carry"]
        carry = _sigmoid(x @ wc.T + bc)
        transform = self.activation(x @ wt.T + bt)
        return carry * transform + (1.0 - carry) * x


_LAYERS: dict[str, type[_Layer]] = {
    "dense": _Dense,
    "normalization": _Normalization,
    "maxout": _Maxout,
    "highway": _Highway,
}


# --------------------------------------------------------------------------------------------
# the graph


@dataclass(frozen=True)
class InputNode:
    """One scalar or sequence input node: variable names, offsets, scales, defaults."""

    name: str
    variables: tuple[str, ...]
    offset: Array
    scale: Array
    default: Array  # NaN where a variable has no default

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], where: str) -> InputNode:
        try:
            variables = cfg["variables"]
            names = tuple(str(v["name"]) for v in variables)
            offset = np.array([float(v["offset"]) for v in variables], dtype=np.float64)
            scale = np.array([float(v["scale"]) for v in variables], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as err:
            raise FlavourflowError(f"{where}: bad input node ({err!r})") from None
        default = np.array(
            [math.nan if v.get("default") is None else float(v["default"]) for v in variables],
            dtype=np.float64,
        )
        return cls(str(cfg["name"]), names, offset, scale, default)


@dataclass
class _Sequence:
    """A batch of sequences, compact: ``steps`` [M, n] holds only the M valid steps, jet by jet
    and in step order (``valid[valid]`` order), ``valid`` [N, T] says where they were. Padded
    steps are never stored nor computed, so memory and time follow the real track count."""

    steps: Array
    valid: Array

    def sum(self) -> Array:
        """Per-jet sum over the valid steps, [N, n], added in step order (zeros if none)."""
        counts = self.valid.sum(axis=1)
        out = np.zeros((self.valid.shape[0], self.steps.shape[1]), dtype=np.float64)
        filled = counts > 0
        if filled.any():
            starts = (np.cumsum(counts) - counts)[filled]
            out[filled] = np.add.reduceat(self.steps, starts, axis=0)
        return out


class LightweightGraph:
    """lwtnn's ``LightweightGraph`` in numpy, evaluated on a batch of jets at once."""

    def __init__(self, config: Mapping[str, Any], default_output: str | None = None):
        for key in ("inputs", "input_sequences", "layers", "nodes", "outputs"):
            if key not in config:
                raise FlavourflowError(f"lwtnn graph: missing top-level key '{key}'")
        self.inputs = [
            InputNode.from_config(c, f"inputs[{i}]") for i, c in enumerate(config["inputs"])
        ]
        self.input_sequences = [
            InputNode.from_config(c, f"input_sequences[{i}]")
            for i, c in enumerate(config["input_sequences"])
        ]
        self._layer_cfgs = list(config["layers"])
        self._nodes = [dict(n) for n in config["nodes"]]
        self._outputs = {
            str(name): (int(out["node_index"]), [str(lab) for lab in out["labels"]])
            for name, out in dict(config["outputs"]).items()
        }
        if not self._outputs:
            raise FlavourflowError("lwtnn graph: no outputs")
        if default_output is not None and default_output not in self._outputs:
            raise FlavourflowError(f"lwtnn graph: no output called '{default_output}'")
        self.default_output = default_output
        self._sizes: dict[int, int] = {}
        self._layers: dict[int, tuple[int, _Layer]] = {}  # layer index -> (n_in, built layer)
        self._check_nodes()
        for name, (index, labels) in self._outputs.items():
            self._build(index)
            if index in self._sizes and len(labels) > self._sizes[index]:
                # lwtnn reads past the end of the output vector here (undefined behaviour)
                raise FlavourflowError(
                    f"lwtnn graph: output '{name}' has {len(labels)} labels but node {index} "
                    f"has size {self._sizes[index]}"
                )

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], default_output: str | None = None):
        """Read a LightweightGraph JSON file."""
        try:
            config = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise FlavourflowError(f"cannot read lwtnn graph: {err}", path=path) from None
        try:
            return cls(config, default_output)
        except FlavourflowError as err:  # a malformed graph: say which file
            raise FlavourflowError(str(err), path=path) from None

    # ---- structure ---------------------------------------------------------------------------

    @property
    def output_names(self) -> list[str]:
        """Names of the outputs, in file order."""
        return list(self._outputs)

    def labels(self, output: str | None = None) -> list[str]:
        """Labels of ``output`` (the default one if None), i.e. the columns ``compute`` returns."""
        return list(self._outputs[self._output_name(output)][1])

    def _output_name(self, output: str | None) -> str:
        if output is None:
            output = self.default_output
        if output is None:
            if len(self._outputs) > 1:
                raise ValueError(f"several outputs {self.output_names}: name one")
            output = self.output_names[0]
        if output not in self._outputs:
            raise KeyError(f"no output called {output!r}; outputs: {self.output_names}")
        return output

    def _check_nodes(self) -> None:
        for i, node in enumerate(self._nodes):
            where = f"nodes[{i}]"
            kind = node.get("type")
            if kind not in NODE_TYPES:
                raise FlavourflowError(f"{where}: unknown node type {kind!r}")
            sources = node.get("sources")
            if not isinstance(sources, list) or not sources:
                raise FlavourflowError(f"{where}: node needs a non-empty 'sources' list")
            if kind == "input":
                self._check_index(sources[0], len(self.inputs), f"{where} source")
            elif kind == "input_sequence":
                self._check_index(sources[0], len(self.input_sequences), f"{where} source")
            else:
                for s in sources:
                    self._check_index(s, len(self._nodes), f"{where} source")
            if kind in ("feed_forward", "sequence", "time_distributed"):
                self._check_index(node.get("layer_index"), len(self._layer_cfgs), where)
            if kind in ("feed_forward", "time_distributed", "sum") and len(sources) != 1:
                raise FlavourflowError(f"{where}: {kind} node needs exactly one source")

    @staticmethod
    def _check_index(value: Any, length: int, where: str) -> None:
        if not isinstance(value, int) or not 0 <= value < length:
            raise FlavourflowError(f"{where}: index {value!r} out of range [0, {length})")

    def _order(self, root: int) -> list[int]:
        """Nodes ``root`` depends on, dependencies first; raises on a cycle."""
        order: list[int] = []
        state: dict[int, int] = {}  # 1 = on the current path, 2 = done
        stack: list[tuple[int, bool]] = [(root, False)]
        while stack:
            index, done = stack.pop()
            if done:
                state[index] = 2
                order.append(index)
                continue
            if state.get(index) == 2:
                continue
            if state.get(index) == 1:
                raise FlavourflowError(f"lwtnn graph: cycle through node {index}")
            state[index] = 1
            stack.append((index, True))
            node = self._nodes[index]
            if node["type"] not in ("input", "input_sequence"):
                for s in reversed(node["sources"]):
                    if state.get(s) == 1:
                        raise FlavourflowError(f"lwtnn graph: cycle through node {s}")
                    if state.get(s) != 2:
                        stack.append((s, False))
        return order

    def _is_sequence(self, index: int) -> bool:
        return self._nodes[index]["type"] in SEQUENCE_NODES

    def _build(self, root: int) -> None:
        """Check node ranks and sizes and build the layers ``root`` needs (like lwtnn's build)."""
        for index in self._order(root):
            if index in self._sizes:
                continue
            node = self._nodes[index]
            kind, sources = node["type"], node["sources"]
            where = f"nodes[{index}] ({kind})"
            if kind in ("input", "input_sequence"):
                group = self.inputs if kind == "input" else self.input_sequences
                n_vars = len(group[sources[0]].variables)
                if kind == "input_sequence" and n_vars == 0:
                    raise FlavourflowError(f"{where}: a sequence input needs variables")
                if int(node.get("size", -1)) != n_vars:
                    raise FlavourflowError(
                        f"{where}: size {node.get('size')} but {n_vars} input variables"
                    )
                self._sizes[index] = n_vars
                continue
            if kind == "sequence":
                # Not evaluated here; its size is not needed unless something evaluates it.
                continue
            if any(s not in self._sizes for s in sources):
                continue  # depends on an unimplemented node: refused at compute time
            want_sequence = kind in ("time_distributed", "sum")
            for s in sources:
                if self._is_sequence(s) != want_sequence:
                    rank = "sequence" if want_sequence else "rank-1"
                    raise FlavourflowError(f"{where}: source node {s} is not a {rank} node")
            if kind in ("feed_forward", "time_distributed"):
                layer = self._layer(node["layer_index"], self._sizes[sources[0]], where)
                self._sizes[index] = layer.n_out
            elif kind == "concatenate":
                self._sizes[index] = sum(self._sizes[s] for s in sources)
            elif kind == "add":
                sizes = {self._sizes[s] for s in sources}
                if len(sizes) != 1:
                    raise FlavourflowError(f"{where}: adding nodes of sizes {sorted(sizes)}")
                self._sizes[index] = sizes.pop()
            elif kind == "sum":
                self._sizes[index] = self._sizes[sources[0]]

    def _layer(self, layer_index: int, n_in: int, where: str) -> _Layer:
        if layer_index in self._layers:
            built_n_in, layer = self._layers[layer_index]
            if built_n_in != n_in:
                raise FlavourflowError(
                    f"{where}: layer {layer_index} shared by inputs of size {built_n_in} and {n_in}"
                )
            return layer
        cfg = self._layer_cfgs[layer_index]
        arch = cfg.get("architecture")
        lwhere = f"layers[{layer_index}] ({arch})"
        if arch in SEQUENCE_ARCHITECTURES:
            raise FlavourflowError(f"{where}: a {arch} layer needs a 'sequence' node")
        if arch not in _LAYERS:
            raise FlavourflowError(f"{lwhere}: architecture {arch!r} not recognized")
        layer = _LAYERS[arch](cfg, n_in, lwhere)
        self._layers[layer_index] = (n_in, layer)
        return layer

    # ---- evaluation --------------------------------------------------------------------------

    def compute(
        self,
        inputs: Mapping[str, Array],
        sequences: Mapping[str, tuple[Array, Array]] | None = None,
        output: str | None = None,
        replace_nan: bool = False,
    ) -> Array:
        """Outputs [N, n_labels] (float64, in label order) for a batch of N jets.

        ``inputs[node]`` is [N, n_vars] in RAW units, columns in the node's variable order.
        ``sequences[node]`` is ``(values [N, T, n_vars], valid [N, T] bool)``; only valid steps
        are used. ``replace_nan`` applies ATLAS' ``NanReplacer(defaults, rep::all)`` to the
        scalar inputs: NaN/±inf become the variable's ``default`` where it has one.
        As in lwtnn, only the inputs the requested output depends on are needed.
        """
        name = self._output_name(output)
        root, labels = self._outputs[name]
        sequences = sequences or {}
        values: dict[int, Array | _Sequence] = {}
        batch: list[int] = []
        for index in self._order(root):
            values[index] = self._evaluate(index, values, inputs, sequences, replace_nan, batch)
        result = values[root]
        if isinstance(result, _Sequence):
            raise ValueError(f"output {name!r} is a sequence node; lwtnn's compute needs rank 1")
        if len(labels) > result.shape[1]:
            raise FlavourflowError(f"output '{name}': {len(labels)} labels, size {result.shape[1]}")
        return result[:, : len(labels)]

    def _check_batch(self, n: int, batch: list[int], what: str) -> None:
        if not batch:
            batch.append(n)
        elif batch[0] != n:
            raise ValueError(f"{what}: {n} jets, but other inputs have {batch[0]}")

    def _evaluate(
        self,
        index: int,
        values: dict[int, Array | _Sequence],
        inputs: Mapping[str, Array],
        sequences: Mapping[str, tuple[Array, Array]],
        replace_nan: bool,
        batch: list[int],
    ) -> Array | _Sequence:
        node = self._nodes[index]
        kind, sources = node["type"], node["sources"]
        if kind == "input":
            spec = self.inputs[sources[0]]
            if spec.name not in inputs:
                raise KeyError(f"Can't find node {spec.name}")
            x = np.array(inputs[spec.name], dtype=np.float64)  # a copy: replaced in place
            if x.ndim != 2 or x.shape[1] != len(spec.variables):
                raise ValueError(
                    f"input {spec.name!r}: shape {x.shape}, want [N, {len(spec.variables)}]"
                )
            self._check_batch(x.shape[0], batch, f"input {spec.name!r}")
            if replace_nan:
                has_default = ~np.isnan(spec.default)
                bad = ~np.isfinite(x) & has_default
                x = np.where(bad, spec.default, x)
            return (x + spec.offset) * spec.scale
        if kind == "input_sequence":
            spec = self.input_sequences[sources[0]]
            if spec.name not in sequences:
                raise KeyError(f"Can't find node {spec.name}")
            raw, valid = sequences[spec.name]
            raw = np.asarray(raw, dtype=np.float64)
            valid = np.asarray(valid, dtype=bool)
            if raw.ndim != 3 or raw.shape[2] != len(spec.variables) or valid.shape != raw.shape[:2]:
                raise ValueError(
                    f"sequence {spec.name!r}: values {raw.shape}, valid {valid.shape}; want "
                    f"[N, T, {len(spec.variables)}] and [N, T]"
                )
            self._check_batch(raw.shape[0], batch, f"sequence {spec.name!r}")
            return _Sequence((raw[valid] + spec.offset) * spec.scale, valid)
        if kind == "sequence":
            arch = self._layer_cfgs[node["layer_index"]].get("architecture")
            raise NotImplementedError(
                f"nodes[{index}]: lwtnn 'sequence' nodes ({arch} layers) are not implemented in "
                "the numpy evaluator; only feed-forward, time-distributed and sum are"
            )
        if kind == "feed_forward":
            _, layer = self._layers[node["layer_index"]]
            return layer(values[sources[0]])
        if kind == "time_distributed":
            _, layer = self._layers[node["layer_index"]]
            seq = values[sources[0]]
            assert isinstance(seq, _Sequence)
            return _Sequence(layer(seq.steps), seq.valid)
        if kind == "concatenate":
            return np.concatenate([values[s] for s in sources], axis=1)
        if kind == "add":
            total = values[sources[0]]
            for s in sources[1:]:
                total = total + values[s]
            return total
        if kind == "sum":
            seq = values[sources[0]]
            assert isinstance(seq, _Sequence)
            return seq.sum()
        raise AssertionError(kind)  # pragma: no cover - rejected in _check_nodes


# --------------------------------------------------------------------------------------------
# the inputs `lwtnn-test-lightweight-graph` generates


def lwtnn_test_sequences(
    graph: LightweightGraph, n_steps: int = LWTNN_TEST_SEQUENCE_STEPS
) -> dict[str, tuple[Array, Array]]:
    """The sequences ``lwtnn-test-lightweight-graph`` feeds (it cannot read them from a file).

    lwtnn's test_utilities ``get_values_vec``: variable ``i`` of ``n_x`` at step ``j`` of
    ``n_y`` is ``x_i * y_j / scale - offset`` with ``x``, ``y`` ramps from -1 to 1 (0 when the
    ramp has one point). Returned for one jet: ``(values [1, n_steps, n_vars], valid)``.
    """

    def ramp(n: int) -> Array:
        return np.zeros(1) if n == 1 else -1.0 + np.arange(n) * (2.0 / (n - 1))

    out = {}
    for spec in graph.input_sequences:
        x = ramp(len(spec.variables))
        y = ramp(n_steps)
        values = (y[:, None] * x[None, :]) / spec.scale - spec.offset
        out[spec.name] = (values[None], np.ones((1, n_steps), dtype=bool))
    return out
