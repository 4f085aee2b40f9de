"""The export stage end to end: model.keras + variables.json + test memmaps -> outputs
(network.json, model.onnx, closure.json, inputs.json), Keras vs numpy-lwtnn vs onnxruntime."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.format import open_memmap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
keras = pytest.importorskip("keras")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import flavourflow  # noqa: E402
from flavourflow.core.errors import FlavourflowError  # noqa: E402
from flavourflow.export import cli, closure  # noqa: E402
from flavourflow.export.evaluator import LightweightGraph  # noqa: E402
from flavourflow.export.layers import MaskedSum  # noqa: E402
from flavourflow.export.onnx import read_metadata  # noqa: E402

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
    kwargs = {"tolerance": 1e-5, "max_jets": 20000, "onnx_out": out / "model.onnx",
              "min_jets": 1, **kwargs}
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
    print(f"jet model: max |diff| per pair = {summary['max_abs_diff']}")
    assert summary["passed"] and summary["n_jets"] == 300 and summary["n_edge_jets"] == 0
    assert summary["max_abs_diff_overall"] <= 1e-6
    assert set(summary["max_abs_diff"]) == {"keras_vs_lwtnn", "keras_vs_onnx", "lwtnn_vs_onnx"}
    for pair, result in summary["comparisons"].items():
        assert result["max_abs_diff"] == summary["max_abs_diff"][pair] <= 1e-6
        assert set(result["by_output"]["tutorial"]) == {"pu", "pc", "pb"}
        assert result["n_nonfinite"] == {"tutorial": 0}
    assert summary["edge_jets"] == {}  # no sequence input
    assert summary["versions"]["keras"] == keras.__version__
    if shutil.which(closure.LWTNN_TEST) is None:  # skipped, and recorded as such
        reason = f"{closure.LWTNN_TEST} not found on PATH"
        assert summary["lwtnn_cpp"] == {"ran": False, "reason": reason}
    else:
        assert summary["lwtnn_cpp"]["passed"] is True
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

    # model.onnx: lwtnn names, normalisation + labels + version as metadata, Keras' outputs
    proto = onnx.load(str(tmp_path / "model.onnx"))
    onnx.checker.check_model(proto)
    meta = read_metadata(tmp_path / "model.onnx")
    assert meta == {p.key: p.value for p in proto.metadata_props}
    config = json.loads(meta["flavourflow_config"])
    assert config["inputs"] == json.loads((tmp_path / "network.json").read_text())["inputs"]
    assert config["inputs"][0]["variables"][0] == jet_variables()[0]  # offset, scale, default
    assert json.loads(meta["output_labels"]) == {"tutorial": ["pu", "pc", "pb"]}
    assert meta["flavourflow_version"] == flavourflow.__version__
    assert "(x + offset) * scale" in meta["normalisation"]
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["jet"]
    x = np.load(jet_model_dir / "test_jet.npy")[:300]
    got = session.run(["tutorial"], {"jet": x})[0]
    want = keras.saving.load_model(jet_model_dir / "model.keras").predict(x, verbose=0)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert ref["onnx"]["tutorial"]["pb"] == pytest.approx(got[0, 2], abs=1e-7)


def test_failed_closure_leaves_no_network(jet_model_dir: Path, tmp_path: Path):
    """An absurd offset: raw inputs ~1e15 cannot carry the normalised value in float64."""
    variables = json.loads((jet_model_dir / "variables.json").read_text())
    variables["inputs"][0]["variables"][2]["offset"] = 1.0e15
    (jet_model_dir / "bad_variables.json").write_text(json.dumps(variables))
    (tmp_path / "network.json").write_text("{}")  # stale output of an earlier run
    (tmp_path / "model.onnx").write_bytes(b"stale")
    with pytest.raises(FlavourflowError, match="closure failed"):
        run(jet_model_dir, tmp_path, variables="bad_variables.json")
    assert not (tmp_path / "network.json").exists()
    assert not (tmp_path / "model.onnx").exists()
    assert not (tmp_path / "inputs.json").exists()
    assert not (tmp_path / "closure.json").exists()  # a declared output: nothing on failure
    record = json.loads((tmp_path / "closure.failed.json").read_text())
    assert record["passed"] is False and record["max_abs_diff_overall"] > 1e-5
    # Keras and ONNX both take normalised inputs: only the pairs with lwtnn see the offset
    assert record["max_abs_diff"]["keras_vs_onnx"] <= 1e-6
    assert record["max_abs_diff"]["keras_vs_lwtnn"] > 1e-5
    assert record["max_abs_diff"]["lwtnn_vs_onnx"] > 1e-5
    print(f"perturbed offset: max |Keras - lwtnn| = {record['max_abs_diff_overall']:.2e}")


def test_too_few_test_jets_fail_the_closure(jet_model_dir: Path, tmp_path: Path):
    with pytest.raises(FlavourflowError, match="500 test jets, fewer than the 501"):
        run(jet_model_dir, tmp_path, min_jets=501)
    assert not any(tmp_path.iterdir())
    assert run(jet_model_dir, tmp_path, min_jets=500)["n_test_jets"] == 500


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


N_STEPS = 24


@pytest.fixture(scope="module")
def deep_sets_dir(tmp_path_factory) -> Path:
    """A DIPS-like model (TimeDistributed(Dense) + MaskedSum on [values, valid]), saved."""
    work = tmp_path_factory.mktemp("deep_sets")
    keras.utils.set_random_seed(4)
    jet = keras.Input((len(JET_VARS),), name="jet")
    tracks = keras.Input((N_STEPS, len(TRACK_VARS)), name="tracks")
    valid = keras.Input((N_STEPS,), dtype="bool", name="tracks_valid")
    h = layers.TimeDistributed(layers.Dense(12, activation="relu"))(tracks)
    h = layers.TimeDistributed(layers.Dense(6, activation="tanh"))(h)
    x = layers.Concatenate()([MaskedSum()([h, valid]), jet])
    x = layers.Dense(10, activation="elu")(x)
    model = keras.Model([jet, tracks, valid], layers.Dense(3, activation="softmax")(x))
    model.save(work / "model.keras")
    track_vars = [{"name": n, "offset": 0.1, "scale": 2.0} for n in TRACK_VARS]
    variables = {
        "inputs": [{"name": "jet", "variables": jet_variables()}],
        "input_sequences": [{"name": "tracks", "variables": track_vars}],
        "outputs": [{"name": "deepsets", "labels": ["pu", "pc", "pb"]}],
    }
    (work / "variables.json").write_text(json.dumps(variables))
    return work


def deep_sets_data(model_dir: Path, work: Path, mask: np.ndarray, seed: int = 0) -> Path:
    """Test memmaps for the deep-sets model (NaN padding) next to links to it."""
    rng = np.random.default_rng(seed)
    work.mkdir(parents=True, exist_ok=True)
    for name in ("model.keras", "variables.json"):
        (work / name).symlink_to(model_dir / name)
    n_jets = len(mask)
    values = rng.normal(0, 1, (n_jets, N_STEPS, len(TRACK_VARS))).astype("float32")
    values[~mask] = np.nan  # padding must not leak: MaskedSum and ONNX Where skip it
    write_memmap(work / "test_jet.npy", rng.normal(0, 1, (n_jets, 4)).astype("float32"))
    write_memmap(work / "test_tracks.npy", values)
    write_memmap(work / "test_tracks_valid.npy", mask)
    return work


def sorted_mask(rng, n_jets: int, fraction: float) -> np.ndarray:
    """Valid tracks first, as the dump orders them."""
    return np.ascontiguousarray(np.sort(rng.random((n_jets, N_STEPS)) < fraction, axis=1)[:, ::-1])


def test_deep_sets_model_with_sequence_memmaps(deep_sets_dir: Path, tmp_path: Path):
    mask = sorted_mask(np.random.default_rng(1), 300, 0.3)
    mask[0], mask[1] = False, True  # a jet without tracks, and one with the maximum
    work = deep_sets_data(deep_sets_dir, tmp_path / "data", mask)
    out = tmp_path / "out"
    summary = run(work, out, chunk_size=100)
    print(f"deep sets: max |diff| per pair = {summary['max_abs_diff']}")
    assert summary["passed"] and summary["n_jets"] == 300 and summary["n_edge_jets"] == 0
    assert all(v <= 1e-5 for v in summary["max_abs_diff"].values())
    assert summary["edge_jets"]["tracks"] == {
        "max_steps": N_STEPS,
        "zero_steps": {"origin": "closure set", "n_jets": 1},
        "max_steps_filled": {"origin": "closure set", "n_jets": 1},
    }
    assert set(json.loads((out / "inputs.json").read_text())) == {"jet"}  # no sequences
    ref = summary["reference_jet"]
    assert "20 ramp steps" in ref["sequences"]
    for other in ("keras", "onnx"):
        np.testing.assert_allclose(
            list(ref[other]["deepsets"].values()),
            list(ref["lwtnn_numpy"]["deepsets"].values()),
            atol=1e-6,
        )
    # the ONNX model: names from the lwtnn nodes, the mask as <sequence>_valid, static T
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    assert list(inputs) == ["jet", "tracks", "tracks_valid"]
    assert inputs["tracks"].shape[1:] == [N_STEPS, len(TRACK_VARS)]
    assert inputs["tracks_valid"].type == "tensor(bool)"
    values = np.load(work / "test_tracks.npy")[:2]
    got = session.run(
        ["deepsets"],
        {"jet": np.load(work / "test_jet.npy")[:2], "tracks": values, "tracks_valid": mask[:2]},
    )[0]
    assert np.isnan(values[0]).all() and np.isfinite(got).all()  # NaN padding ignored


def test_edge_jets_appended_from_the_rest_of_the_test_set(deep_sets_dir: Path, tmp_path: Path):
    mask = sorted_mask(np.random.default_rng(2), 200, 0.4)
    mask[:, 0], mask[:, -1] = True, False  # nobody with 0 or all tracks ...
    mask[150], mask[170] = False, True  # ... but jets 150 and 170, beyond max_jets
    work = deep_sets_data(deep_sets_dir, tmp_path / "data", mask)
    summary = run(work, tmp_path / "out", max_jets=100, chunk_size=64)
    assert summary["passed"]
    assert (summary["n_jets"], summary["n_test_jets"], summary["n_edge_jets"]) == (102, 100, 2)
    record = summary["edge_jets"]["tracks"]
    assert record["zero_steps"] == {"origin": "test set (appended)", "test_index": 150}
    assert record["max_steps_filled"] == {"origin": "test set (appended)", "test_index": 170}


def test_edge_jets_synthesised_when_the_test_set_lacks_them(deep_sets_dir: Path, tmp_path: Path):
    mask = sorted_mask(np.random.default_rng(3), 120, 0.4)
    mask[:, 0], mask[:, -1] = True, False
    work = deep_sets_data(deep_sets_dir, tmp_path / "data", mask)
    out = tmp_path / "out"
    summary = run(work, out, chunk_size=50)
    print(f"synthetic edge jets: max |diff| per pair = {summary['max_abs_diff']}")
    assert summary["passed"] and summary["n_jets"] == 122 and summary["n_edge_jets"] == 2
    record = summary["edge_jets"]["tracks"]
    assert record["zero_steps"]["origin"] == "synthetic (appended)"
    assert record["max_steps_filled"]["origin"] == "synthetic (appended)"
    richest = int(np.argmax(mask.sum(axis=1)))
    assert f"test jet {richest} ({mask[richest].sum()} steps)" in record["max_steps_filled"][
        "built_from"
    ]
    # the synthetic jets themselves: as closure.py builds them
    data = closure._TestData(work, LightweightGraph.from_file(out / "network.json"))
    edge, _ = closure._edge_jets(data, data.n_jets, 50)
    values, valid = edge[1]["tracks"]
    assert not valid[0].any() and np.isnan(values[0]).all()  # padded like the real padding
    assert valid[1].all() and np.isfinite(values[1]).all()
    np.testing.assert_array_equal(values[1][: mask[richest].sum()], data.take([richest])[1][
        "tracks"][0][0][: mask[richest].sum()])


STAND_IN = """#!{python}
# Stand-in for lwtnn's C++ lwtnn-test-lightweight-graph (not installable here): same
# arguments, same printout (std::cout, 6 significant digits), computed by the numpy evaluator.
import json, sys
import numpy as np
from flavourflow.export.evaluator import LightweightGraph, lwtnn_test_sequences
graph = LightweightGraph.from_file(sys.argv[1])
inputs = json.load(open(sys.argv[2]))
raw = {{n.name: np.array([[inputs[n.name][v] for v in n.variables]]) for n in graph.inputs}}
for name in graph.output_names:
    print(name + ":")
    values = graph.compute(raw, lwtnn_test_sequences(graph), name)[0]
    for label, value in sorted(zip(graph.labels(name), values)):
        print(label, "%g" % (value + {shift}))
"""


def stand_in(directory: Path, shift: float) -> Path:
    directory.mkdir()
    exe = directory / closure.LWTNN_TEST
    exe.write_text(STAND_IN.format(python=sys.executable, shift=shift))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return directory


def test_lwtnn_cpp_check_runs_when_on_path(
    deep_sets_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    mask = sorted_mask(np.random.default_rng(5), 60, 0.5)
    mask[0], mask[1] = False, True
    work = deep_sets_data(deep_sets_dir, tmp_path / "data", mask)
    bin_dir = stand_in(tmp_path / "bin", 0.0)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    summary = run(work, tmp_path / "out")
    cpp = summary["lwtnn_cpp"]
    assert cpp["ran"] and cpp["passed"] and cpp["returncode"] == 0
    assert set(cpp["outputs"]["deepsets"]) == {"pu", "pc", "pb"}
    ref = summary["reference_jet"]["lwtnn_numpy"]["deepsets"]
    assert cpp["outputs"]["deepsets"]["pb"] == float(f"{ref['pb']:g}")
    assert 0 < cpp["max_abs_diff"]["vs_lwtnn_numpy"] <= 5e-6
    assert cpp["max_abs_diff"]["vs_keras"] <= 1e-5
    assert not list((tmp_path / "out").glob(".lwtnn-test-*"))  # its scratch files are gone


def test_lwtnn_cpp_mismatch_fails_the_closure(jet_model_dir: Path, tmp_path: Path):
    bin_dir = stand_in(tmp_path / "bin", 1e-3)
    out = tmp_path / "out"
    with pytest.raises(FlavourflowError, match="lwtnn C\\+\\+ FAILED"):
        run(jet_model_dir, out, max_jets=100, lwtnn_test=str(bin_dir / closure.LWTNN_TEST))
    record = json.loads((out / "closure.failed.json").read_text())
    assert record["lwtnn_cpp"]["passed"] is False
    assert record["lwtnn_cpp"]["max_abs_diff"]["vs_lwtnn_numpy"] == pytest.approx(1e-3, rel=1e-3)
    assert record["max_abs_diff_overall"] <= 1e-5  # the Python-side pairs agree
    assert not (out / "network.json").exists() and not (out / "model.onnx").exists()


def test_parse_lwtnn_test_output():
    text = "DL1:\npb 0.25\npc 1e-07\npu -nan\nextra:\nx 3\n"
    parsed = closure.parse_lwtnn_test_output(text)
    assert parsed["DL1"]["pb"] == 0.25 and parsed["DL1"]["pc"] == 1e-7
    assert np.isnan(parsed["DL1"]["pu"]) and parsed["extra"] == {"x": 3.0}
    with pytest.raises(ValueError, match="unexpected line"):
        closure.parse_lwtnn_test_output("pb 0.25\n")


def test_cli(jet_model_dir: Path, tmp_path: Path):
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers(dest="stage")
    cli.add_parser(subparsers)
    args = parser.parse_args(
        ["export", "--model", str(jet_model_dir / "model.keras")]
        + ["--variables", str(jet_model_dir / "variables.json"), "--test-dir", str(jet_model_dir)]
        + ["--network", str(tmp_path / "n.json"), "--closure", str(tmp_path / "c.json")]
        + ["--inputs-json", str(tmp_path / "i.json"), "--max-jets", "50"]
        + ["--onnx", str(tmp_path / "m.onnx"), "--onnx-opset", "15"]
    )
    assert args.tolerance == 1e-5
    assert args.min_jets == 10_000  # the schema's export.min_jets, as the workflow's
    args.min_jets = 1
    assert cli.main(args) == 0
    assert json.loads((tmp_path / "c.json").read_text())["n_jets"] == 50
    assert (tmp_path / "n.json").is_file() and (tmp_path / "i.json").is_file()
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert {o.domain: o.version for o in proto.opset_import}[""] == 15


def test_export_then_check_as_the_workflow_runs_them(deep_sets_dir: Path, tmp_path: Path):
    """`export` (conversion only) twice gives the same network.json bytes (model.onnx's node
    names carry tf2onnx's per-process counters), as the one-step run does; `export --check`
    judges the files written and keeps them when it fails."""
    work = deep_sets_data(deep_sets_dir, tmp_path / "data", sorted_mask(
        np.random.default_rng(3), 400, 0.3))
    common = ["--model", str(deep_sets_dir / "model.keras"), "--variables",
              str(deep_sets_dir / "variables.json"), "--test-dir", str(work), "--min-jets", "1"]

    def main(*extra: str) -> int:
        parser = argparse.ArgumentParser()
        cli.add_parser(parser.add_subparsers(dest="stage"))
        return cli.main(parser.parse_args(["export", *common, *extra]))

    outputs = []
    for attempt in ("a", "b"):
        out = tmp_path / attempt
        out.mkdir()
        assert main("--network", str(out / "network.json"), "--onnx", str(out / "m.onnx")) == 0
        assert not (out / "closure.json").exists()
        outputs.append([(out / name).read_bytes() for name in ("network.json", "m.onnx")])
    assert outputs[0][0] == outputs[1][0]
    one_step = tmp_path / "one"
    one_step.mkdir()
    closure.run(deep_sets_dir / "model.keras", deep_sets_dir / "variables.json", work,
                one_step / "network.json", one_step / "c.json", one_step / "i.json", 1e-5, 500,
                onnx_out=one_step / "m.onnx", min_jets=1)
    assert (one_step / "network.json").read_bytes() == outputs[0][0]

    out = tmp_path / "a"
    check = ["--check", "--network", str(out / "network.json"), "--onnx", str(out / "m.onnx"),
             "--closure", str(out / "closure.json"), "--inputs-json", str(out / "inputs.json")]
    assert main(*check) == 0
    summary = json.loads((out / "closure.json").read_text())
    assert summary["passed"] and summary["max_abs_diff"]["keras_vs_onnx"] < 1e-5
    with pytest.raises(FlavourflowError, match="closure failed"):
        main(*check, "--tolerance", "1e-14")
    assert (out / "network.json").read_bytes() == outputs[0][0]  # a failed check keeps it
    assert not (out / "closure.json").exists() and (out / "closure.failed.json").is_file()
