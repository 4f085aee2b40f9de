"""Keras 3 -> lwtnn and -> ONNX conversion, checked against ``model(x)`` with the numpy
evaluator and onnxruntime."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")

from flavourflow.core.errors import FlavourflowError  # noqa: E402
from flavourflow.export.evaluator import LightweightGraph  # noqa: E402
from flavourflow.export.layers import MaskedSum  # noqa: E402
from flavourflow.export.lwtnn import convert, keras_to_lwtnn  # noqa: E402
from flavourflow.export.onnx import OnnxScorer, keras_to_onnx, onnx_input_name  # noqa: E402

layers = keras.layers
TOLERANCE = 1e-5
DENSE_ACTIVATIONS = ["linear", "relu", "sigmoid", "tanh", "elu", "leaky_relu", "silu", "softmax"]


def make_variables(model, rng, n_labels=None, skip=()):
    """A variables.json for ``model``: random offsets/scales, one entry per 2-D/3-D input."""
    spec = {"inputs": [], "input_sequences": [], "outputs": []}
    for tensor in model.inputs:
        name = tensor._keras_history.operation.name
        if name in skip:
            continue
        key = "inputs" if len(tensor.shape) == 2 else "input_sequences"
        spec[key].append(
            {
                "name": f"node_{name}",
                "variables": [
                    {
                        "name": f"{name}_v{i}",
                        "offset": float(rng.normal(0, 3)),
                        "scale": float(rng.uniform(0.2, 3.0)),
                        "default": 0.0,
                    }
                    for i in range(tensor.shape[-1])
                ],
            }
        )
    for j, tensor in enumerate(model.outputs):
        n = n_labels if n_labels is not None else tensor.shape[-1]
        spec["outputs"].append({"name": f"out{j}", "labels": [f"p{j}_{i}" for i in range(n)]})
    return spec


def raw_from_norm(x_norm, node):
    offset = np.array([v["offset"] for v in node["variables"]])
    scale = np.array([v["scale"] for v in node["variables"]])
    return x_norm.astype(np.float64) / scale - offset


def closure(model, variables, feeds, with_onnx=True):
    """max |Keras - lwtnn|, |Keras - ONNX|, |lwtnn - ONNX| over all outputs; ``feeds`` are
    normalised, in model.inputs order."""
    graph_json, roles = convert(model, variables)
    text = json.dumps(graph_json, allow_nan=False)  # no NaN/inf anywhere
    graph = LightweightGraph(json.loads(text))
    keras_out = model(feeds if len(feeds) > 1 else feeds[0], training=False)
    keras_out = [
        keras.ops.convert_to_numpy(k).astype(np.float64) for k in keras.tree.flatten(keras_out)
    ]
    nodes = {n["name"]: n for n in variables["inputs"] + variables["input_sequences"]}
    scalars, sequences, valid = {}, {}, {}
    for role, x in zip(roles, feeds, strict=True):
        if role.kind == "input":
            scalars[role.name] = raw_from_norm(x, nodes[role.name])
        elif role.kind == "sequence":
            sequences[role.name] = raw_from_norm(x, nodes[role.name])
        else:
            valid[role.name] = np.asarray(x, dtype=bool)
    seqs = {name: (sequences[name], valid[name]) for name in sequences}
    lwtnn_out = [graph.compute(scalars, seqs, output=name) for name in graph.output_names]
    outs = {"keras": keras_out, "lwtnn": lwtnn_out}
    if with_onnx:
        scorer = OnnxScorer(keras_to_onnx(model, roles, graph_json).SerializeToString())
        onnx_feeds = {onnx_input_name(r): x for r, x in zip(roles, feeds, strict=True)}
        outs["onnx"] = scorer.run(onnx_feeds, graph.output_names)
    worst = {}
    for a, b in (("keras", "lwtnn"), ("keras", "onnx"), ("lwtnn", "onnx")):
        if a in outs and b in outs:
            diffs = [np.abs(x - y) for x, y in zip(outs[a], outs[b], strict=True)]
            assert all(np.all(np.isfinite(d)) for d in diffs), (a, b)
            worst[f"{a}_vs_{b}"] = max(float(d.max()) for d in diffs)
    print("max |diff|: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
    return max(worst.values())


def set_batch_norm_stats(model, rng):
    """Non-trivial gamma, beta, moving mean and variance for every BatchNormalization."""
    for layer in model._flatten_layers():
        if isinstance(layer, layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            weights = []
            if layer.scale:
                weights.append(rng.choice([-1, 1], n) * rng.uniform(0.3, 2.0, n))
            if layer.center:
                weights.append(rng.normal(0, 1, n))
            weights += [rng.normal(0, 1, n), rng.uniform(0.05, 3.0, n)]
            layer.set_weights([w.astype("float32") for w in weights])


def random_block(x, rng, width):
    x = layers.Dense(
        width,
        activation=str(rng.choice(DENSE_ACTIVATIONS)),
        use_bias=bool(rng.random() < 0.8),
        bias_initializer="random_normal",
    )(x)
    if rng.random() < 0.5:
        x = layers.BatchNormalization(center=bool(rng.random() < 0.8))(x)
    if rng.random() < 0.3:
        x = layers.Dropout(0.3)(x)
    choice = rng.integers(0, 7)
    if choice == 0:
        x = layers.Activation(str(rng.choice(DENSE_ACTIVATIONS)))(x)
    elif choice == 1:
        x = layers.LeakyReLU(negative_slope=float(rng.uniform(0.01, 0.5)))(x)
    elif choice == 2:
        x = layers.ReLU()(x)
    elif choice == 3:
        x = layers.ELU(alpha=float(rng.uniform(0.2, 2.0)))(x)
    elif choice == 4:
        x = layers.Softmax()(x)
    return x


@pytest.mark.parametrize("seed", range(20))
def test_random_functional_models(seed):
    rng = np.random.default_rng(seed)
    keras.utils.set_random_seed(seed)
    inputs = [
        keras.Input((int(rng.integers(1, 7)),), name=f"in{i}")
        for i in range(int(rng.integers(1, 4)))
    ]
    branches = []
    for x in inputs:
        for _ in range(int(rng.integers(0, 3))):
            x = random_block(x, rng, int(rng.integers(2, 13)))
        branches.append(x)
    if len(branches) == 1:
        x = branches[0]
    elif rng.random() < 0.5:
        x = layers.Concatenate()(branches)
    else:
        width = int(rng.integers(2, 9))
        x = layers.Add()([layers.Dense(width)(b) for b in branches])
    for _ in range(int(rng.integers(1, 4))):
        x = random_block(x, rng, int(rng.integers(2, 17)))
    outputs = [layers.Dense(3, activation="softmax")(x)]
    if rng.random() < 0.5:
        outputs.append(layers.Dense(1, activation="sigmoid")(x))
    model = keras.Model(inputs, outputs)
    set_batch_norm_stats(model, rng)
    feeds = [rng.normal(0, 2, (64, t.shape[-1])).astype("float32") for t in inputs]
    assert closure(model, make_variables(model, rng), feeds) <= TOLERANCE


def test_sequential_model_with_all_activation_layers():
    rng = np.random.default_rng(11)
    keras.utils.set_random_seed(11)
    model = keras.Sequential(
        [
            keras.Input((5,)),
            layers.Dense(8, activation="elu"),
            layers.BatchNormalization(),
            layers.LeakyReLU(negative_slope=0.1),
            layers.Dense(8, activation="leaky_relu", use_bias=False),
            layers.GaussianNoise(0.5),
            layers.ReLU(negative_slope=0.05),
            layers.Dense(6, activation="silu"),
            layers.ELU(alpha=0.7),
            layers.Dense(6),
            layers.Activation("tanh"),
            layers.Flatten(),
            layers.Dense(4),
            layers.Softmax(),
        ]
    )
    set_batch_norm_stats(model, rng)
    feeds = [rng.normal(0, 2, (128, 5)).astype("float32")]
    assert closure(model, make_variables(model, rng), feeds) <= TOLERANCE


def test_nested_and_shared_layers():
    rng = np.random.default_rng(3)
    keras.utils.set_random_seed(3)
    inner = keras.Sequential(
        [keras.Input((4,)), layers.Dense(6, activation="relu"), layers.BatchNormalization()]
    )
    shared = layers.Dense(6, activation="tanh", name="shared")
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    x = layers.Add()([inner(a), inner(b), shared(inner(a))])
    model = keras.Model([a, b], layers.Dense(2, activation="sigmoid")(x))
    set_batch_norm_stats(model, rng)
    variables = make_variables(model, rng)
    graph = keras_to_lwtnn(model, variables)
    # the nested model's two layers are written once although called on two inputs
    assert len(graph["layers"]) == 2 + 1 + 1
    feeds = [rng.normal(0, 2, (64, 4)).astype("float32") for _ in range(2)]
    assert closure(model, variables, feeds) <= TOLERANCE


def test_activation_layer_shared_by_different_widths():
    rng = np.random.default_rng(8)
    keras.utils.set_random_seed(8)
    act = layers.Activation("tanh", name="shared_tanh")
    inp = keras.Input((4,), name="jet")
    x = layers.Concatenate()([act(layers.Dense(3)(inp)), act(layers.Dense(5)(inp))])
    model = keras.Model(inp, layers.Dense(2, activation="sigmoid")(x))
    feeds = [rng.normal(0, 2, (32, 4)).astype("float32")]
    assert closure(model, make_variables(model, rng), feeds) <= TOLERANCE


def test_deep_sets_with_empty_and_full_jets():
    rng = np.random.default_rng(5)
    keras.utils.set_random_seed(5)
    n_steps = 7
    jet = keras.Input((3,), name="jet")
    tracks = keras.Input((n_steps, 4), name="tracks")
    valid = keras.Input((n_steps,), dtype="bool", name="tracks_valid")
    h = layers.TimeDistributed(layers.Dense(10, activation="relu"))(tracks)
    h = layers.TimeDistributed(layers.BatchNormalization())(h)
    h = layers.TimeDistributed(layers.Dense(6, activation="silu"))(h)
    h = layers.Activation("tanh")(h)  # element-wise on a sequence: time_distributed
    pooled = MaskedSum()([h, valid])
    x = layers.Concatenate()([pooled, jet])
    x = layers.Dense(12, activation="elu")(x)
    model = keras.Model([jet, tracks, valid], layers.Dense(3, activation="softmax")(x))
    set_batch_norm_stats(model, rng)
    variables = make_variables(model, rng, skip={"tracks_valid"})
    variables["input_sequences"][0]["max_tracks"] = n_steps
    graph, roles = convert(model, variables)
    assert [r.kind for r in roles] == ["input", "sequence", "valid"]
    # kept for the readers of network.json (evaluate, inject); lwtnn ignores unknown keys
    assert graph["input_sequences"][0]["max_tracks"] == n_steps
    assert "max_tracks" not in graph["inputs"][0]
    assert {n["type"] for n in graph["nodes"]} >= {"time_distributed", "sum", "concatenate"}

    n = 200
    mask = rng.random((n, n_steps)) < 0.5
    mask[0] = False  # no tracks
    mask[1] = True  # all tracks
    values = rng.normal(0, 2, (n, n_steps, 4)).astype("float32")
    values[~mask] = np.nan  # padding must not leak (MaskedSum uses where, lwtnn skips it)
    feeds = [rng.normal(0, 2, (n, 3)).astype("float32"), values, mask]
    assert closure(model, variables, feeds) <= TOLERANCE


@pytest.mark.parametrize("seed", range(4))
def test_random_deep_sets_models(seed):
    rng = np.random.default_rng(100 + seed)
    keras.utils.set_random_seed(100 + seed)
    n_steps, n_vars = int(rng.integers(1, 9)), int(rng.integers(1, 5))
    tracks = keras.Input((n_steps, n_vars), name="tracks")
    valid = keras.Input((n_steps,), dtype="bool", name="valid")
    h = tracks
    for _ in range(int(rng.integers(1, 4))):
        width = int(rng.integers(2, 12))
        act = str(rng.choice(DENSE_ACTIVATIONS))
        h = layers.TimeDistributed(layers.Dense(width, activation=act))(h)
        if rng.random() < 0.5:
            h = layers.TimeDistributed(layers.BatchNormalization())(h)
        if rng.random() < 0.3:
            h = layers.TimeDistributed(layers.Dropout(0.5))(h)
    x = MaskedSum()([h, valid])
    inputs = [tracks, valid]
    if rng.random() < 0.5:
        jet = keras.Input((int(rng.integers(1, 5)),), name="jet")
        inputs.insert(int(rng.integers(0, 3)), jet)
        x = layers.Concatenate()([jet, x] if rng.random() < 0.5 else [x, jet])
    x = random_block(x, rng, int(rng.integers(2, 10)))
    model = keras.Model(inputs, layers.Dense(3, activation="softmax")(x))
    set_batch_norm_stats(model, rng)
    n = 100
    mask = rng.random((n, n_steps)) < rng.uniform(0.1, 0.9)
    mask[0], mask[1] = False, True
    feeds = []
    for t in inputs:
        if t is valid:
            feeds.append(mask)
        elif t is tracks:
            values = rng.normal(0, 2, (n, n_steps, n_vars)).astype("float32")
            values[~mask] = np.nan
            feeds.append(values)
        else:
            feeds.append(rng.normal(0, 2, (n, t.shape[-1])).astype("float32"))
    variables = make_variables(model, rng, skip={"valid"})
    assert closure(model, variables, feeds) <= TOLERANCE


def test_batch_norm_folding_precision():
    """Large moving means, tiny and negative gammas: the float64 fold loses no precision.

    Compared with the float64 formula, not with Keras, whose float32 arithmetic is itself off by
    ~1e-2 here (|gamma * mu / std| ~ 2e5).
    """
    model = keras.Sequential([keras.Input((3,), name="x"), layers.BatchNormalization(epsilon=1e-6)])
    gamma, beta = np.array([1e-4, -3.0, 0.5], "float32"), np.array([5.0, -1.0, 0.0], "float32")
    mean, var = np.array([1e3, -2e3, 0.1], "float32"), np.array([4e4, 1e-3, 2.0], "float32")
    model.layers[0].set_weights([gamma, beta, mean, var])
    rng = np.random.default_rng(0)
    x = np.array([1e3, -2e3, 0.1]) + rng.normal(0, 3, (50, 3))
    variables = make_variables(model, rng)
    for v in variables["inputs"][0]["variables"]:
        v["offset"], v["scale"] = 0.0, 1.0
    graph = LightweightGraph(keras_to_lwtnn(model, variables))
    eps = float(np.float32(1e-6))
    exact = gamma.astype(float) * (x - mean) / np.sqrt(var.astype(float) + eps) + beta
    got = graph.compute({"node_x": x})
    np.testing.assert_allclose(got, exact, rtol=0, atol=1e-9)
    assert graph._layer_cfgs[0]["architecture"] == "normalization"


def test_json_shape_and_activation_spelling():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((2,)), layers.Dense(3, activation="silu"), layers.Dense(2, "softmax")]
    )
    rng = np.random.default_rng(0)
    graph = keras_to_lwtnn(model, make_variables(model, rng))
    assert set(graph) == {"inputs", "input_sequences", "layers", "nodes", "outputs"}
    first = graph["layers"][0]
    assert first["activation"] == {"function": "swish", "alpha": 1.0}
    kernel = model.layers[0].kernel.numpy()
    assert first["weights"] == [float(v) for v in kernel.T.ravel()]
    assert all(type(w) is float for w in first["weights"] + first["bias"])
    assert graph["outputs"] == {"out0": {"node_index": 2, "labels": ["p0_0", "p0_1"]}}


# ---------------------------------------------------------------------------------------------
# refusals: the message names the layer


def refused(model, match, variables=None):
    variables = variables or make_variables(model, np.random.default_rng(0))
    with pytest.raises(FlavourflowError, match=match) as info:
        keras_to_lwtnn(model, variables)
    return str(info.value)


def seq_model(*hidden, n_steps=5, n_vars=3):
    x = inp = keras.Input((n_steps, n_vars), name="tracks")
    for layer in hidden:
        x = layer(x)
    return keras.Model(inp, x)


def vec_model(*hidden, width=3):
    x = inp = keras.Input((width,), name="jet")
    for layer in hidden:
        x = layer(x)
    return keras.Model(inp, x)


def test_refuse_gru_reset_after():
    message = refused(seq_model(layers.GRU(4, name="my_gru")), "reset_after=True")
    assert "'my_gru'" in message


def test_refuse_lstm_not_checkable():
    refused(seq_model(layers.LSTM(4, name="my_lstm")), "'my_lstm'.*recurrent")


def test_refuse_keras3_hard_sigmoid():
    refused(vec_model(layers.Dense(2, activation="hard_sigmoid", name="hs")), "'hs'.*x/6")


@pytest.mark.parametrize(
    "activation",
    ["gelu", "selu", "relu6", "softplus", "softsign", "exponential", "hard_silu", "mish"],
)
def test_refuse_activation_without_lwtnn_counterpart(activation):
    model = vec_model(layers.Dense(2, activation=activation, name="d"))
    refused(model, f"'d'.*activation '{activation}'")


def test_refuse_activation_layer_gelu():
    refused(vec_model(layers.Activation("gelu", name="act")), "'act'.*gelu")


def test_refuse_conv1d_same_odd_padding():
    model = seq_model(layers.Conv1D(4, 2, padding="same", name="conv"))
    refused(model, "'conv'.*odd total padding")


def test_refuse_unknown_layer():
    refused(vec_model(layers.LayerNormalization(name="ln")), "'ln' \\(LayerNormalization\\)")


def test_refuse_raw_ops():
    inp = keras.Input((3,), name="jet")
    model = keras.Model(inp, keras.ops.square(inp))
    refused(model, "keras.ops")


def test_refuse_dense_on_sequence():
    refused(seq_model(layers.Dense(4, name="flat_dense")), "'flat_dense'.*TimeDistributed")


def test_refuse_clipped_relu():
    refused(vec_model(layers.ReLU(max_value=6.0, name="r6")), "'r6'.*max_value")
    refused(vec_model(layers.ReLU(threshold=0.5, name="thr")), "'thr'.*threshold")


def test_refuse_batch_norm_gamma_zero():
    model = vec_model(layers.BatchNormalization(name="bn"))
    model.layers[-1].set_weights(
        [np.array([1, 0, 2], "float32")] + [np.zeros(3, "float32")] * 2 + [np.ones(3, "float32")]
    )
    refused(model, "'bn'.*gamma == 0 in channel\\(s\\) \\[1\\]")


def test_refuse_batch_norm_not_last_axis():
    refused(seq_model(layers.BatchNormalization(axis=1, name="bn_t")), "'bn_t'.*axis")


def test_refuse_sequence_merges_and_softmax_over_time():
    a = keras.Input((5, 2), name="a")
    b = keras.Input((5, 2), name="b")
    model = keras.Model([a, b], layers.Concatenate(name="cat")([a, b]))
    refused(model, "'cat'.*sequences")
    refused(seq_model(layers.Softmax(axis=1, name="sm")), "'sm'.*axis")


def test_refuse_masked_sum_mask_not_an_input():
    tracks = keras.Input((5, 2), name="tracks")
    valid = keras.Input((5,), name="valid")
    mask = layers.Activation("linear", name="derived")(valid)
    model = keras.Model([tracks, valid], MaskedSum(name="ms")([tracks, mask]))
    variables = make_variables(model, np.random.default_rng(0), skip={"valid"})
    refused(model, "'ms'.*must be a model input", variables)


def test_refuse_variable_and_label_count_mismatch():
    model = vec_model(layers.Dense(2, activation="softmax"))
    rng = np.random.default_rng(0)
    variables = make_variables(model, rng)
    variables["inputs"][0]["variables"].pop()
    refused(model, "'node_jet'.*2 variables.*width 3", variables)
    refused(model, "'out0'.*3 labels.*size 2", make_variables(model, rng, n_labels=3))
    variables = make_variables(model, rng)
    variables["input_sequences"].append(variables["inputs"][0])
    refused(model, "0 3-D inputs but variables.json lists 1", variables)


def test_refuse_permuted_input_names():
    a, b = keras.Input((2,), name="jet"), keras.Input((2,), name="extra")
    model = keras.Model([a, b], layers.Add()([a, b]))
    variables = make_variables(model, np.random.default_rng(0))
    variables["inputs"][0]["name"], variables["inputs"][1]["name"] = "extra", "jet"
    refused(model, "another order", variables)
