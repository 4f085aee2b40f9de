"""The export stage end to end: model.keras + variables.json + test memmaps -> outputs."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.format import open_memmap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")

from flavourflow.core.errors import FlavourflowError  # noqa: E402
from flavourflow.export import cli, closure  # noqa: E402
from flavourflow.export.evaluator import LightweightGraph  # noqa: E402
from flavourflow.export.layers import MaskedSum  # noqa: E402

layers = keras.layers
JET_VARS = ["pt", "eta", "ip2d_llr", "sv_mass"]
TRACK_VARS = ["d0", "z0", "pt_frac"]


def jet_variables():
    # physics-like normalisation: large offsets (MeV) and small scales, as preprocess writes
    offsets = [-6.0e4, 0.0, 1.2, -1500.0]
    scales = [2.0e-5, 0.8, 0.5, 1.0e-3]
    return [
        {"name": n, "offset": o, "scale": s, "default": 0.0}
        for n, o, s in zip(JET_VARS, offsets, scales, strict=True)
    ]


def write_memmap(path: Path, array: np.ndarray) -> None:
    out = open_memmap(path, mode="w+", dtype=array.dtype, shape=array.shape)
    out[...] = array
    out.flush()
    del out


def set_batch_norm_stats(model, rng):
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 2.0, n).astype("float32"),
                    rng.normal(0, 1, n).astype("float32"),
                    rng.normal(0, 1, n).astype("float32"),
                    rng.uniform(0.1, 3.0, n).astype("float32"),
                ]
            )


@pytest.fixture(scope="module")
def jet_model_dir(tmp_path_factory) -> Path:
    """A small DL1-like model, saved, with variables.json and 500 normalised test jets."""
    work = tmp_path_factory.mktemp("jet_model")
    rng = np.random.default_rng(1)
    keras.utils.set_random_seed(1)
    inp = keras.Input((len(JET_VARS),), name="jet")
    x = layers.Dense(16, activation="relu")(inp)
    x = layers.BatchNormalization()(x)
    x = layers.Dropout(0.2)(x)
    x = layers.Dense(8, activation="silu")(x)
    model = keras.Model(inp, layers.Dense(3, activation="softmax")(x))
    set_batch_norm_stats(model, rng)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x_norm = rng.normal(0, 1, (500, len(JET_VARS))).astype("float32")
    model.fit(x_norm, rng.integers(0, 3, 500), epochs=1, batch_size=100, verbose=0)
    model.save(work / "model.keras")
    variables = {
        "inputs": [{"name": "jet", "variables": jet_variables()}],
        "input_sequences": [],
        "outputs": [{"name": "tutorial", "labels": ["pu", "pc", "pb"]}],
        "classes": [
            {"name": "light", "label": 0},
            {"name": "charm", "label": 4},
            {"name": "bottom", "label": 5},
        ],
    }
    (work / "variables.json").write_text(json.dumps(variables))
    write_memmap(work / "test_jet.npy", x_norm)
    return work


def run(work: Path, out: Path, variables: str = "variables.json", **kwargs) -> dict:
    kwargs = {"tolerance": 1e-5, "max_jets": 20000, **kwargs}
    return closure.run(
        work / "model.keras",
        work / variables,
        work,
        out / "network.json",
        out / "closure.json",
        out / "inputs.json",
        **kwargs,
    )


def test_closure_passes_and_writes_outputs(jet_model_dir: Path, tmp_path: Path):
    summary = run(jet_model_dir, tmp_path, max_jets=300, chunk_size=128)
    print(f"jet model: max |Keras - lwtnn| = {summary['max_abs_diff_overall']:.2e}")
    assert summary["passed"] and summary["n_jets"] == 300
    assert summary["max_abs_diff_overall"] <= 1e-6
    assert set(summary["max_abs_diff_by_label"]["tutorial"]) == {"pu", "pc", "pb"}
    assert summary["versions"]["keras"] == keras.__version__
    assert json.loads((tmp_path / "closure.json").read_text()) == summary

    # network.json is a LightweightGraph; inputs.json is {node: {variable: raw value}}
    graph = LightweightGraph.from_file(tmp_path / "network.json")
    inputs = json.loads((tmp_path / "inputs.json").read_text())
    assert list(inputs) == ["jet"] and list(inputs["jet"]) == JET_VARS
    x0 = np.load(jet_model_dir / "test_jet.npy")[0].astype(np.float64)
    for v, spec in enumerate(jet_variables()):
        expected = x0[v] / spec["scale"] - spec["offset"]
        assert inputs["jet"][spec["name"]] == pytest.approx(expected, rel=1e-12)

    # the reference outputs for that jet: Keras, numpy-lwtnn, and reg-test.py's format
    ref = summary["reference_jet"]
    raw = np.array([[inputs["jet"][name] for name in JET_VARS]])
    lwtnn = graph.compute({"jet": raw})[0]
    assert list(ref["lwtnn_numpy"]["tutorial"].values()) == lwtnn.tolist()
    keras_ref = np.array(list(ref["keras"]["tutorial"].values()))
    np.testing.assert_allclose(keras_ref, lwtnn, atol=1e-6)
    assert ref["reg_test_expected"] == {
        "tutorial:": {label: [value] for label, value in ref["keras"]["tutorial"].items()}
    }


def test_failed_closure_leaves_no_network(jet_model_dir: Path, tmp_path: Path):
    """An absurd offset: raw inputs ~1e15 cannot carry the normalised value in float64."""
    variables = json.loads((jet_model_dir / "variables.json").read_text())
    variables["inputs"][0]["variables"][2]["offset"] = 1.0e15
    (jet_model_dir / "bad_variables.json").write_text(json.dumps(variables))
    (tmp_path / "network.json").write_text("{}")  # stale output of an earlier run
    with pytest.raises(FlavourflowError, match="lwtnn closure failed"):
        run(jet_model_dir, tmp_path, variables="bad_variables.json")
    assert not (tmp_path / "network.json").exists()
    assert not (tmp_path / "inputs.json").exists()
    record = json.loads((tmp_path / "closure.json").read_text())
    assert record["passed"] is False and record["max_abs_diff_overall"] > 1e-5
    print(f"perturbed offset: max |Keras - lwtnn| = {record['max_abs_diff_overall']:.2e}")


def test_conversion_error_leaves_nothing(jet_model_dir: Path, tmp_path: Path):
    variables = json.loads((jet_model_dir / "variables.json").read_text())
    variables["outputs"][0]["labels"] = ["pu", "pb"]
    (jet_model_dir / "short_labels.json").write_text(json.dumps(variables))
    with pytest.raises(FlavourflowError, match="output 'tutorial'"):
        run(jet_model_dir, tmp_path, variables="short_labels.json")
    assert not any(tmp_path.iterdir())


def test_missing_test_file(jet_model_dir: Path, tmp_path: Path):
    variables = json.loads((jet_model_dir / "variables.json").read_text())
    variables["inputs"][0]["name"] = "jets_v2"
    (jet_model_dir / "renamed.json").write_text(json.dumps(variables))
    with pytest.raises(FlavourflowError, match="test_jets_v2.npy"):
        run(jet_model_dir, tmp_path, variables="renamed.json")


def test_deep_sets_model_with_sequence_memmaps(tmp_path: Path):
    rng = np.random.default_rng(4)
    keras.utils.set_random_seed(4)
    n_jets, n_steps = 300, 24
    jet = keras.Input((len(JET_VARS),), name="jet")
    tracks = keras.Input((n_steps, len(TRACK_VARS)), name="tracks")
    valid = keras.Input((n_steps,), dtype="bool", name="tracks_valid")
    h = layers.TimeDistributed(layers.Dense(12, activation="relu"))(tracks)
    h = layers.TimeDistributed(layers.Dense(6, activation="tanh"))(h)
    x = layers.Concatenate()([MaskedSum()([h, valid]), jet])
    x = layers.Dense(10, activation="elu")(x)
    model = keras.Model([jet, tracks, valid], layers.Dense(3, activation="softmax")(x))
    model.save(tmp_path / "model.keras")

    track_vars = [{"name": n, "offset": 0.1, "scale": 2.0} for n in TRACK_VARS]
    variables = {
        "inputs": [{"name": "jet", "variables": jet_variables()}],
        "input_sequences": [{"name": "tracks", "variables": track_vars}],
        "outputs": [{"name": "deepsets", "labels": ["pu", "pc", "pb"]}],
    }
    (tmp_path / "variables.json").write_text(json.dumps(variables))
    mask = rng.random((n_jets, n_steps)) < 0.3
    mask[0], mask[1] = False, True  # a jet without tracks, and one with the maximum
    values = rng.normal(0, 1, (n_jets, n_steps, len(TRACK_VARS))).astype("float32")
    values[~mask] = 0.0
    write_memmap(tmp_path / "test_jet.npy", rng.normal(0, 1, (n_jets, 4)).astype("float32"))
    write_memmap(tmp_path / "test_tracks.npy", values)
    write_memmap(tmp_path / "test_tracks_valid.npy", mask)

    out = tmp_path / "out"
    summary = run(tmp_path, out, chunk_size=100)
    print(f"deep sets: max |Keras - lwtnn| = {summary['max_abs_diff_overall']:.2e}")
    assert summary["passed"] and summary["n_jets"] == n_jets
    assert set(json.loads((out / "inputs.json").read_text())) == {"jet"}  # no sequences
    ref = summary["reference_jet"]
    assert "20 ramp steps" in ref["sequences"]
    np.testing.assert_allclose(
        list(ref["keras"]["deepsets"].values()),
        list(ref["lwtnn_numpy"]["deepsets"].values()),
        atol=1e-6,
    )


def test_cli(jet_model_dir: Path, tmp_path: Path):
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers(dest="stage")
    cli.add_parser(subparsers)
    args = parser.parse_args(
        ["export", "--model", str(jet_model_dir / "model.keras")]
        + ["--variables", str(jet_model_dir / "variables.json"), "--test-dir", str(jet_model_dir)]
        + ["--network", str(tmp_path / "n.json"), "--closure", str(tmp_path / "c.json")]
        + ["--inputs-json", str(tmp_path / "i.json"), "--max-jets", "50"]
    )
    assert args.tolerance == 1e-5
    assert cli.main(args) == 0
    assert json.loads((tmp_path / "c.json").read_text())["n_jets"] == 50
    assert (tmp_path / "n.json").is_file() and (tmp_path / "i.json").is_file()
