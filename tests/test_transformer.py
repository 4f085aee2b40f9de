"""The transformer on real generated events: trained with its auxiliary track tasks, exported
to ONNX alone (lwtnn refuses attention in one line), the Keras vs onnxruntime closure, and
evaluation through onnxruntime with the auxiliary metrics (~40 s on 2 cores)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

pytest.importorskip("pythia8mc")
pytest.importorskip("onnxruntime")

from flavourflow.cli import main as flavourflow  # noqa: E402
from flavourflow.core.errors import FlavourflowError  # noqa: E402
from flavourflow.dump import core as dump  # noqa: E402
from flavourflow.dump.blocks import Selection  # noqa: E402
from flavourflow.evaluate import core as evaluate  # noqa: E402
from flavourflow.export import deployed, onnxonly  # noqa: E402
from flavourflow.export.onnx import read_metadata  # noqa: E402
from flavourflow.generate import cli as generate  # noqa: E402
from flavourflow.generate.pythia import ShardConfig  # noqa: E402
from flavourflow.preprocess import core as preprocess  # noqa: E402
from flavourflow.train import core as train  # noqa: E402
from flavourflow.train import models  # noqa: E402

TRACKS = ["IP3D_signed_d0_significance", "IP3D_signed_z0_significance", "ptfrac", "dr"]
SPLIT = {"train": 0.5, "val": 0.2, "test": 0.3}
OPTIONS = {"embed_dim": 16, "heads": 2, "layers": 1, "ff_dim": 16, "hidden": [16]}
AUX = {"track_origin": 0.5, "track_vertex": 0.5}
MAX_TRACKS = 12


def _preprocess(sample: Path, out: Path, truth: bool) -> Path:
    preprocess.run(sample, out, preprocess.Settings(
        variables=["pt", "eta"], fractions=SPLIT, split_seed=1, shuffle_seed=2,
        block_size=1000, model_name="tf", track_variables=TRACKS, max_tracks=MAX_TRACKS,
        log_variables=["pt", "ptfrac"], plots=False, truth=truth))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("transformer")
    root = work / "shard_0.root"
    generate.run_shard(ShardConfig(process="ttbar", events=200, seed=4, shard=0,
                                   jet_pt_min=20_000.0, jet_eta_max=2.5), root)
    sample = work / "dump.h5"
    dump.run(root, sample, Selection(20_000.0, 2.5), max_tracks=40, step_size=100)
    pre = _preprocess(sample, work / "pre", truth=True)
    out = work / "train"
    train.run(pre, out / "model.keras", out / "history.csv", out / "training.json",
              train.Settings(architecture="transformer", epochs=2, batch_size=64,
                             learning_rate=0.003, seed=1, options=OPTIONS, aux_tasks=AUX,
                             mixed_precision=True))
    return {"root": root, "sample": sample, "pre": pre, "train": out}


def test_trains_with_the_auxiliary_losses(trained: dict[str, Path]) -> None:
    with open(trained["train"] / "history.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 2
    for key in ("probabilities_loss", "track_origin_loss", "track_vertex_loss", "val_loss"):
        assert np.isfinite(float(rows[-1][key])), key
    # the total is the flavour loss plus the weighted auxiliary losses
    total = float(rows[-1]["probabilities_loss"]) + sum(
        w * float(rows[-1][f"{task}_loss"]) for task, w in AUX.items())
    assert float(rows[-1]["loss"]) == pytest.approx(total, rel=1e-3)
    info = json.loads((trained["train"] / "training.json").read_text())
    assert info["precision"] == "float32 (mixed precision needs a GPU)"  # no GPU here
    assert info["settings"]["aux_tasks"] == AUX


def test_precision_policy() -> None:
    assert train.precision_policy(True, "GPU (/physical_device:GPU:0)") == "mixed_float16"
    assert train.precision_policy(True, "CPU") == "float32"
    assert train.precision_policy(False, "GPU (/physical_device:GPU:0)") == "float32"


def test_onnx_export_closure_and_scoring(trained: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    model, pre = trained["train"] / "model.keras", trained["pre"]
    common = ["export", "--model", str(model), "--variables", str(pre / "variables.json"),
              "--test-dir", str(pre)]
    # lwtnn refuses, in one line naming the layer and the way out; nothing is written
    assert flavourflow([*common, "--network", str(tmp_path / "network.json"),
                        "--onnx", str(tmp_path / "x.onnx")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "lwtnn cannot express attention" in err[0]
    assert "encoder_0_attention" in err[0] and "ONNX alone" in err[0]
    assert not (tmp_path / "network.json").exists() and not (tmp_path / "x.onnx").exists()

    onnx_path = tmp_path / "model.onnx"
    record = {"architecture": "transformer", "options": OPTIONS}
    assert flavourflow([*common, "--onnx", str(onnx_path), "--record", json.dumps(record)]) == 0
    meta = read_metadata(onnx_path)
    config = json.loads(meta["flavourflow_config"])
    assert [i["name"] for i in config["onnx_inputs"]] == ["jets", "tracks", "tracks_valid"]
    assert [v["name"] for v in config["input_sequences"][0]["variables"]] == [
        "IP3D_signed_d0_significance", "IP3D_signed_z0_significance", "log_ptfrac", "dr"]
    assert config["input_sequences"][0]["max_tracks"] == MAX_TRACKS
    assert {"offset", "scale", "default"} <= set(config["inputs"][0]["variables"][0])
    assert [o["name"] for o in config["outputs"]] == ["tf", "track_origin", "track_vertex"]
    assert json.loads(meta["flavourflow_model_config"]) == record
    assert meta["flavourflow_version"]

    closure = tmp_path / "closure.json"
    assert flavourflow([*common, "--check", "--onnx", str(onnx_path), "--closure", str(closure),
                        "--min-jets", "50"]) == 0
    summary = json.loads(closure.read_text())
    assert summary["passed"] and summary["max_abs_diff_overall"] <= 1e-5
    assert set(summary["comparisons"]["keras_vs_onnx"]["by_output"]) == {
        "tf", "track_origin", "track_vertex"}
    edges = summary["edge_jets"]["tracks"]
    assert "zero_steps" in edges and "max_steps_filled" in edges
    assert summary["lwtnn"]["exported"] is False

    # a closure against another model's ONNX fails and writes the failure record
    other = tmp_path / "other.onnx"
    onnxonly.convert(model, pre / "variables.json", pre, other)
    import keras

    keras_model = keras.saving.load_model(model)
    bias = keras_model.get_layer("probabilities").bias
    bias.assign(np.asarray(bias) + np.array([0.5, 0.0, 0.0], dtype=np.float32))
    keras_model.save(tmp_path / "changed.keras")
    with pytest.raises(FlavourflowError, match="closure failed"):
        onnxonly.closure(tmp_path / "changed.keras", pre / "variables.json", pre, other,
                         tmp_path / "bad.json", 1e-5, 1000, 50)
    assert not (tmp_path / "bad.json").exists() and (tmp_path / "bad.failed.json").exists()

    # evaluate scores through onnxruntime from the dump, as Keras does on the memmaps
    outdir = tmp_path / "evaluate"
    outdir.mkdir()
    result = evaluate.run(onnx_path, pre / "variables.json", trained["sample"],
                          trained["train"] / "history.csv", outdir, 0.018, [0.7], "t")
    with h5py.File(outdir / "scores.h5") as f:
        scores = f["jets"][:]
    scores = scores[scores["HadronConeExclTruthLabelID"] != 15]  # preprocess drops taus
    expected = keras_model_scores(model, pre)
    assert len(scores) == len(expected)
    np.testing.assert_allclose(np.sort(scores["pb"]), np.sort(expected), atol=1e-5)
    aux = result["aux_tasks"]
    origin = aux["track_origin"]
    with h5py.File(trained["sample"]) as f:
        n_valid = int(f["tracks"]["valid"][:, :MAX_TRACKS].sum())
    assert 0 < origin["n_tracks"] < n_valid  # the test jets' tracks only
    assert np.array(origin["confusion"]).shape == (8, 8)
    assert origin["truth_fraction"]["primary"] > 0.5
    vertex = aux["track_vertex"]
    assert 0 <= vertex["pair_efficiency"] <= 1 and vertex["counts"]["true"] > 0
    assert deployed.load(onnx_path).output_names == ["tf", "track_origin", "track_vertex"]


def keras_model_scores(model_path: Path, pre: Path) -> np.ndarray:
    """pb of the Keras model on the test memmaps."""
    import keras

    model = keras.saving.load_model(model_path)
    inputs = [np.load(pre / f"test_{name}.npy") for name in ("jets", "tracks", "tracks_valid")]
    return model.predict(inputs, verbose=0)[0][:, 2]


def test_aux_tasks_need_the_truth_and_a_transformer(trained: dict[str, Path],
                                                   tmp_path: Path) -> None:
    pre = _preprocess(trained["sample"], tmp_path / "pre", truth=False)
    assert np.load(pre / "train_tracks_origin.npy").shape[1] == 0
    settings = train.Settings(architecture="transformer", epochs=1, batch_size=64,
                              learning_rate=0.003, seed=1, options=OPTIONS, aux_tasks=AUX)
    with pytest.raises(FlavourflowError, match="per-track truth"):
        train.run(pre, tmp_path / "m.keras", tmp_path / "h.csv", tmp_path / "i.json", settings)
    assert not (tmp_path / "m.keras").exists()
    with pytest.raises(FlavourflowError, match="no auxiliary tasks"):
        models.build("dips", {}, models.Shapes(2, 10, 4), 3, aux=("track_origin",))
