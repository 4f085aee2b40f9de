"""The numpy lwtnn evaluator on small graphs whose outputs are worked out by hand."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from flavourflow.core.errors import FlavourflowError
from flavourflow.export.evaluator import LightweightGraph, lwtnn_test_sequences


def var(name, offset=0.0, scale=1.0, default=None):
    out = {"name": name, "offset": offset, "scale": scale}
    if default is not None:
        out["default"] = default
    return out


def one_layer_graph(layer, n_in, labels=None):
    """input (n_in variables, identity normalisation) -> one feed_forward layer -> output."""
    inputs = [{"name": "jet", "variables": [var(f"v{i}") for i in range(n_in)]}]
    nodes = [
        {"type": "input", "sources": [0], "size": n_in},
        {"type": "feed_forward", "sources": [0], "layer_index": 0},
    ]
    labels = labels or [f"o{i}" for i in range(n_in)]
    return LightweightGraph(
        {
            "inputs": inputs,
            "input_sequences": [],
            "layers": [layer],
            "nodes": nodes,
            "outputs": {"out": {"node_index": 1, "labels": labels}},
        }
    )


def activate(activation, x):
    x = np.asarray(x, dtype=np.float64)
    layer = {"architecture": "dense", "weights": [], "bias": [], "activation": activation}
    return one_layer_graph(layer, x.size).compute({"jet": x[None]})[0]


def test_linear_rectified_tanh_abs():
    x = [-2.0, -0.0, 0.5, math.nan]
    np.testing.assert_array_equal(activate("linear", x), x)
    np.testing.assert_array_equal(activate("rectified", x), [0.0, 0.0, 0.5, math.nan])
    np.testing.assert_array_equal(activate("rectified_legacy", x), [0.0, 0.0, 0.5, math.nan])
    np.testing.assert_allclose(activate("tanh", x[:3]), np.tanh(x[:3]), rtol=0, atol=0)
    np.testing.assert_array_equal(activate("abs", x[:3]), [2.0, 0.0, 0.5])


def test_clipped_sigmoid_edges():
    x = [-31.0, -30.0, 0.0, 30.0, 30.000001, math.nan]
    got = activate("sigmoid", x)
    # below -30: exactly 0; at +-30 the formula is still used; above 30: exactly 1
    assert got[0] == 0.0
    assert got[1] == 1.0 / (1.0 + math.exp(30.0)) and got[1] > 0.0
    assert got[2] == 0.5
    assert got[3] == 1.0 / (1.0 + math.exp(-30.0)) and got[3] < 1.0
    assert got[4] == 1.0
    assert math.isnan(got[5])
    np.testing.assert_array_equal(activate("sigmoid_legacy", x[:5]), got[:5])


def test_hard_sigmoid_is_lwtnn_slope():
    got = activate("hard_sigmoid", [-3.0, -2.5, -1.0, 0.0, 1.0, 2.5, 3.0])
    np.testing.assert_allclose(got, [0.0, 0.0, 0.3, 0.5, 0.7, 1.0, 1.0], rtol=0, atol=1e-15)


def test_softmax_over_the_vector_and_stable():
    got = activate("softmax", [1.0, 2.0, 3.0])
    e = np.exp([1.0 - 3.0, 2.0 - 3.0, 0.0])
    np.testing.assert_allclose(got, e / e.sum(), rtol=1e-15)
    np.testing.assert_array_equal(activate("softmax", [1000.0, 1000.0]), [0.5, 0.5])


def test_elu_leakyrelu_swish_alpha():
    x = [-2.0, 0.0, 3.0]
    np.testing.assert_allclose(
        activate("elu", x), [math.exp(-2.0) - 1.0, 0.0, 3.0], rtol=1e-15
    )  # plain string: alpha 1
    np.testing.assert_allclose(
        activate({"function": "elu", "alpha": 0.5}, x), [0.5 * (math.exp(-2.0) - 1.0), 0, 3]
    )
    np.testing.assert_allclose(
        activate({"function": "leakyrelu", "alpha": 0.1}, x), [-0.2, 0.0, 3.0], rtol=1e-15
    )
    swish = activate({"function": "swish", "alpha": 1.0}, [-40.0, -1.0, 2.0, 40.0])
    assert swish[0] == 0.0 and swish[3] == 40.0  # clipped sigmoid inside swish
    np.testing.assert_allclose(swish[1:3], [-1 / (1 + math.e), 2 / (1 + math.exp(-2))])
    beta = activate({"function": "swish", "alpha": 2.0}, [1.0])
    np.testing.assert_allclose(beta, [1 / (1 + math.exp(-2.0))])


def test_string_leakyrelu_and_swish_are_nan_like_lwtnn():
    leaky = activate("leakyrelu", [-1.0, 2.0])
    assert math.isnan(leaky[0]) and leaky[1] == 2.0
    assert np.all(np.isnan(activate("swish", [-1.0, 2.0])))


def test_unknown_activation_refused():
    with pytest.raises(FlavourflowError, match="activation function relu not recognized"):
        activate("relu", [1.0])


def test_dense_row_major_weights():
    # W = [[1, 2, 3], [4, 5, 6]] (n_out=2, n_in=3), b = [0.5, -1]
    layer = {
        "architecture": "dense",
        "weights": [1, 2, 3, 4, 5, 6],
        "bias": [0.5, -1.0],
        "activation": "linear",
    }
    g = one_layer_graph(layer, 3, labels=["a", "b"])
    got = g.compute({"jet": np.array([[1.0, 0.0, -1.0], [2.0, 1.0, 0.0]])})
    np.testing.assert_array_equal(got, [[1 - 3 + 0.5, 4 - 6 - 1], [4 + 0.5, 13 - 1]])


def test_dense_bad_weight_count_refused():
    layer = {"architecture": "dense", "weights": [1, 2, 3, 4], "bias": [], "activation": "linear"}
    with pytest.raises(FlavourflowError, match="do not divide"):
        one_layer_graph(layer, 3)


def test_normalization_adds_bias_first():
    layer = {"architecture": "normalization", "weights": [2.0, -1.0], "bias": [1.0, 3.0]}
    got = one_layer_graph(layer, 2).compute({"jet": np.array([[0.5, -1.0]])})
    np.testing.assert_array_equal(got, [[3.0, -2.0]])


def test_maxout():
    layer = {
        "architecture": "maxout",
        "activation": "linear",
        "sublayers": [
            {"weights": [1, 0, 0, 1], "bias": [0, 0]},
            {"weights": [0, 1, 1, 0], "bias": [1, -5]},
        ],
    }
    got = one_layer_graph(layer, 2).compute({"jet": np.array([[2.0, 3.0]])})
    np.testing.assert_array_equal(got, [[max(2, 4), max(3, -3)]])


def test_highway():
    layer = {
        "architecture": "highway",
        "activation": "rectified",
        "components": {
            "t": {"weights": [1, 0, 0, -1], "bias": [0, 0]},
            "carry": {"weights": [0, 0, 0, 0], "bias": [0.0, 100.0]},
        },
    }
    x = np.array([[2.0, 3.0]])
    got = one_layer_graph(layer, 2).compute({"jet": x})
    # carry: sigmoid(0) = 0.5 and clipped sigmoid(100) = 1; t = relu([2, -3]) = [2, 0]
    np.testing.assert_array_equal(got, [[0.5 * 2 + 0.5 * 2, 1.0 * 0.0 + 0.0 * 3.0]])


def test_input_normalisation_concatenate_add_and_outputs():
    cfg = {
        "inputs": [
            {"name": "a", "variables": [var("x", offset=1.0, scale=2.0), var("y", -3.0, 0.5)]},
            {"name": "b", "variables": [var("z", offset=0.0, scale=10.0)]},
        ],
        "input_sequences": [],
        "layers": [],
        "nodes": [
            {"type": "input", "sources": [1], "size": 1},
            {"type": "concatenate", "sources": [2, 0]},
            {"type": "input", "sources": [0], "size": 2},
            {"type": "add", "sources": [2, 2]},
        ],
        "outputs": {
            "cat": {"node_index": 1, "labels": ["x", "y", "z"]},
            "twice": {"node_index": 3, "labels": ["only_first"]},
        },
    }
    g = LightweightGraph(cfg)
    inputs = {"a": np.array([[1.0, 5.0]]), "b": np.array([[0.25]])}
    np.testing.assert_array_equal(g.compute(inputs, output="cat"), [[4.0, 1.0, 2.5]])
    # fewer labels than the node size: the rest is dropped, as in lwtnn
    np.testing.assert_array_equal(g.compute(inputs, output="twice"), [[8.0]])
    assert g.labels("cat") == ["x", "y", "z"] and g.output_names == ["cat", "twice"]
    with pytest.raises(ValueError, match="several outputs"):
        g.compute(inputs)
    g_default = LightweightGraph(cfg, default_output="twice")
    np.testing.assert_array_equal(g_default.compute(inputs), [[8.0]])
    # only the inputs the output depends on are needed
    np.testing.assert_array_equal(g.compute({"a": inputs["a"]}, output="twice"), [[8.0]])
    with pytest.raises(KeyError, match="Can't find node b"):
        g.compute({"a": inputs["a"]}, output="cat")


def test_too_many_labels_refused():
    layer = {"architecture": "dense", "weights": [], "bias": [], "activation": "linear"}
    with pytest.raises(FlavourflowError, match="3 labels"):
        one_layer_graph(layer, 2, labels=["a", "b", "c"])


def test_nan_replacement_with_defaults():
    cfg = {
        "inputs": [
            {"name": "jet", "variables": [var("a", default=-1.0), var("b"), var("c", default=7)]}
        ],
        "input_sequences": [],
        "layers": [],
        "nodes": [{"type": "input", "sources": [0], "size": 3}],
        "outputs": {"out": {"node_index": 0, "labels": ["a", "b", "c"]}},
    }
    g = LightweightGraph(cfg)
    x = np.array([[math.nan, math.nan, math.inf], [2.0, 3.0, -math.inf]])
    got = g.compute({"jet": x}, replace_nan=True)
    np.testing.assert_array_equal(got, [[-1.0, math.nan, 7.0], [2.0, 3.0, 7.0]])
    assert np.isnan(g.compute({"jet": x})[0, 0])  # without replacement NaN propagates
    assert np.isnan(x[0, 0])  # the caller's array is untouched


def deep_sets_cfg():
    """tracks (2 vars, offset 1, scale 2) -> time_distributed dense -> sum -> concat jet."""
    return {
        "inputs": [{"name": "jet", "variables": [var("pt")]}],
        "input_sequences": [
            {"name": "tracks", "variables": [var("d0", 1.0, 2.0), var("z0", 1.0, 2.0)]}
        ],
        "layers": [
            {
                "architecture": "dense",
                "weights": [1, 1, 1, -1, 0, 0],
                "bias": [0, 0, 1],
                "activation": "rectified",
            }
        ],
        "nodes": [
            {"type": "input_sequence", "sources": [0], "size": 2},
            {"type": "time_distributed", "sources": [0], "layer_index": 0},
            {"type": "sum", "sources": [1]},
            {"type": "input", "sources": [0], "size": 1},
            {"type": "concatenate", "sources": [2, 3]},
        ],
        "outputs": {"out": {"node_index": 4, "labels": ["s0", "s1", "s2", "pt"]}},
    }


def test_sum_and_time_distributed_on_valid_steps_only():
    g = LightweightGraph(deep_sets_cfg())
    values = np.full((3, 3, 2), np.nan)  # padding is NaN and must never be used
    valid = np.zeros((3, 3), dtype=bool)
    # jet 0: no tracks; jet 1: one track (raw 0.5, -0.5 -> norm 3, 1); jet 2: two of three
    values[1, 2] = [0.5, -0.5]
    valid[1, 2] = True
    values[2, 0] = [-1.0, -1.0]  # norm (0, 0) -> relu([0, 0, 1]) = [0, 0, 1]
    values[2, 1] = [0.0, 1.0]  # norm (2, 4) -> relu([6, -2, 1]) = [6, 0, 1]
    valid[2, :2] = True
    pt = np.array([[10.0], [20.0], [30.0]])
    got = g.compute({"jet": pt}, {"tracks": (values, valid)})
    np.testing.assert_array_equal(
        got, [[0, 0, 0, 10.0], [4.0, 2.0, 1.0, 20.0], [6.0, 0.0, 2.0, 30.0]]
    )


def test_sequence_shape_mismatch_refused():
    g = LightweightGraph(deep_sets_cfg())
    with pytest.raises(ValueError, match="sequence 'tracks'"):
        g.compute({"jet": np.zeros((1, 1))}, {"tracks": (np.zeros((1, 3, 2)), np.ones((1, 2)))})
    with pytest.raises(ValueError, match="jets"):
        g.compute({"jet": np.zeros((2, 1))}, {"tracks": (np.zeros((1, 3, 2)), np.ones((1, 3)))})


def test_recurrent_sequence_node_not_implemented():
    cfg = deep_sets_cfg()
    cfg["layers"].append({"architecture": "lstm", "activation": "tanh", "components": {}})
    cfg["nodes"].append({"type": "sequence", "sources": [0], "layer_index": 1})
    cfg["outputs"]["rnn"] = {"node_index": 5, "labels": ["h"]}
    g = LightweightGraph(cfg)  # builds: the lstm is only refused when evaluated
    seq = {"tracks": (np.zeros((1, 2, 2)), np.ones((1, 2), dtype=bool))}
    with pytest.raises(NotImplementedError, match="lstm"):
        g.compute({"jet": np.zeros((1, 1))}, seq, output="rnn")
    assert g.compute({"jet": np.zeros((1, 1))}, seq, output="out").shape == (1, 4)


def test_graph_structure_errors():
    cfg = deep_sets_cfg()
    cfg["nodes"][0]["size"] = 3
    with pytest.raises(FlavourflowError, match="size 3 but 2 input variables"):
        LightweightGraph(cfg)
    cfg = deep_sets_cfg()
    cfg["nodes"][1]["sources"] = [4]  # a cycle through the concatenate
    with pytest.raises(FlavourflowError, match="cycle"):
        LightweightGraph(cfg)
    cfg = deep_sets_cfg()
    cfg["nodes"][2]["sources"] = [3]  # sum of a rank-1 node
    with pytest.raises(FlavourflowError, match="not a sequence node"):
        LightweightGraph(cfg)
    cfg = deep_sets_cfg()
    del cfg["input_sequences"]
    with pytest.raises(FlavourflowError, match="input_sequences"):
        LightweightGraph(cfg)


def test_lwtnn_test_ramp_sequences():
    g = LightweightGraph(deep_sets_cfg())
    values, valid = lwtnn_test_sequences(g, n_steps=3)["tracks"]
    # x ramp over 2 variables: [-1, 1]; y ramp over 3 steps: [-1, 0, 1]; raw = x*y/2 - 1
    expected = np.array([[-0.5, -1.5], [-1.0, -1.0], [-1.5, -0.5]])
    np.testing.assert_array_equal(values[0], expected)
    assert valid.all() and valid.shape == (1, 3)


def test_from_file(tmp_path):
    path = tmp_path / "net.json"
    path.write_text(json.dumps(deep_sets_cfg()))
    g = LightweightGraph.from_file(path)
    assert g.labels() == ["s0", "s1", "s2", "pt"]
    with pytest.raises(FlavourflowError, match="cannot read"):
        LightweightGraph.from_file(tmp_path / "missing.json")


def test_imports_without_tensorflow():
    code = (
        "import sys\n"
        "for m in ('tensorflow', 'keras'): sys.modules[m] = None\n"
        "import flavourflow.export.evaluator, flavourflow.export.closure\n"
        "import flavourflow.export.lwtnn, flavourflow.export.cli\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
