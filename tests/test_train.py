"""The train stage on memmaps from the preprocess stage: outputs, records, determinism,
resuming after a kill, early stopping, sample weights, and lwtnn conversion of every
architecture."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flavourflow.preprocess import core as preprocess
from flavourflow.train import core as train
from flavourflow.train import data

SPLIT = {"train": 0.6, "val": 0.2, "test": 0.2}
TRACKS = ["IP3D_signed_d0_significance", "IP3D_signed_z0_significance", "ptfrac"]
OPTIONS = {
    "tutorial": {},
    "dl1": {"hidden": [8, 8], "batch_norm": True, "dropout": 0.2, "activation": "silu"},
    "dips": {"track_hidden": [8, 8], "hidden": [8], "batch_norm": True, "dropout": 0.2},
}


def _preprocess(dumped: Path, out: Path, model: str) -> Path:
    jets = {"tutorial": ["ip2d_llr", "sv_sig"], "dips": ["pt", "eta"]}.get(
        model, ["pt", "eta", "ip2d_llr", "sv_sig", "sv_mass", "n_tracks"])
    preprocess.run(dumped, out, preprocess.Settings(
        variables=jets, fractions=SPLIT, split_seed=1, shuffle_seed=2, block_size=1000,
        model_name=model, track_variables=TRACKS if model == "dips" else (), max_tracks=8,
        log_variables=["pt"] if model != "tutorial" else (), plots=False))
    return out


@pytest.fixture
def preprocessed(dumped: Path, tmp_path: Path) -> Path:
    return _preprocess(dumped, tmp_path / "pre", "tutorial")


def _settings(architecture: str = "tutorial", seed: int = 3, **changes) -> train.Settings:
    base = dict(architecture=architecture, epochs=2, batch_size=64, learning_rate=0.01,
                seed=seed, options=OPTIONS[architecture])
    return train.Settings(**{**base, **changes})


def _train(preprocessed: Path, out: Path, settings: train.Settings) -> dict:
    return train.run(preprocessed, out / "model.keras", out / "history.csv",
                     out / "training.json", settings)


def _weights(path: Path) -> list[np.ndarray]:
    import keras

    import flavourflow.export.layers  # noqa: F401

    return keras.saving.load_model(path).get_weights()


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_outputs_and_same_seed_same_weights(preprocessed: Path, tmp_path: Path) -> None:
    info = _train(preprocessed, tmp_path / "a", _settings(seed=3, mixed_precision=True))
    _train(preprocessed, tmp_path / "b", _settings(seed=3))
    _train(preprocessed, tmp_path / "c", _settings(seed=4))

    recorded = json.loads((tmp_path / "a/training.json").read_text())
    assert recorded == info
    assert recorded["device"] in {"CPU"} or recorded["device"].startswith("GPU")
    if recorded["device"] == "CPU":
        assert recorded["precision"].startswith("float32")  # mixed precision needs a GPU
    assert set(recorded["versions"]) >= {"flavourflow", "keras", "tensorflow"}
    assert recorded["settings"]["seed"] == 3 and len(recorded["epoch_seconds"]) == 2
    assert all(r > 0 for r in recorded["jets_per_second"])
    with open(tmp_path / "a/history.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [r["epoch"] for r in rows] == ["0", "1"] and float(rows[1]["val_loss"]) > 0
    assert not (tmp_path / "a/checkpoint").exists()  # removed once the outputs are written

    weights = {k: _weights(tmp_path / k / "model.keras") for k in "abc"}
    assert _same(weights["a"], weights["b"])
    assert not _same(weights["a"], weights["c"])


@pytest.mark.parametrize("architecture", ["dl1", "dips"])
def test_architectures_deterministic_and_convertible(dumped: Path, tmp_path: Path,
                                                     architecture: str) -> None:
    import keras

    from flavourflow.export.evaluator import LightweightGraph
    from flavourflow.export.lwtnn import keras_to_lwtnn

    pre = _preprocess(dumped, tmp_path / "pre", architecture)
    _train(pre, tmp_path / "a", _settings(architecture, lr_schedule={"type": "cosine"}))
    _train(pre, tmp_path / "b", _settings(architecture, lr_schedule={"type": "cosine"}))
    assert _same(_weights(tmp_path / "a/model.keras"), _weights(tmp_path / "b/model.keras"))

    # the saved model converts to lwtnn and the lwtnn graph agrees with Keras on test jets
    variables = json.loads((pre / "variables.json").read_text())
    model = keras.saving.load_model(tmp_path / "a/model.keras")
    graph = LightweightGraph(keras_to_lwtnn(model, variables))
    feed, raw_inputs, raw_sequences = [], {}, {}
    for node in variables["inputs"]:
        x = np.load(pre / f"test_{node['name']}.npy")
        feed.append(x)
        raw_inputs[node["name"]] = _raw(x, node)
    for node in variables["input_sequences"]:
        x = np.load(pre / f"test_{node['name']}.npy")
        valid = np.load(pre / f"test_{node['name']}_valid.npy")
        feed += [x, valid]
        raw_sequences[node["name"]] = (_raw(x, node), valid)
    keras_out = model.predict(feed if len(feed) > 1 else feed[0], verbose=0)
    lwtnn_out = graph.compute(raw_inputs, raw_sequences)
    assert np.abs(keras_out - lwtnn_out).max() < 1e-5
    assert np.ptp(keras_out[:, 2]) > 1e-3  # not a constant network


def _raw(x_norm: np.ndarray, node: dict) -> np.ndarray:
    offset = np.array([v["offset"] for v in node["variables"]])
    scale = np.array([v["scale"] for v in node["variables"]])
    return x_norm.astype(np.float64) / scale - offset


def test_resume_after_kill_ends_with_the_uninterrupted_weights(dumped: Path, tmp_path: Path):
    pre = _preprocess(dumped, tmp_path / "pre", "dips")
    training = {"epochs": 6, "batch_size": 32, "learning_rate": 0.005, "seed": 7,
                "lr_schedule": {"type": "cosine"}, "early_stopping": {"patience": 20}}

    def command(out: str) -> list[str]:
        return [sys.executable, "-m", "flavourflow", "train", "--preprocessed", str(pre),
                "--model", f"{out}/model.keras", "--history", f"{out}/history.csv",
                "--info", f"{out}/training.json", "--architecture", "dips",
                "--options", json.dumps(OPTIONS["dips"]), "--training", json.dumps(training)]

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    _train(pre, tmp_path / "ref", train.Settings(architecture="dips", options=OPTIONS["dips"],
                                                 **training))  # uninterrupted, in process

    run = tmp_path / "run"
    state = run / "checkpoint/state.json"
    proc = subprocess.Popen(command(str(run)), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while proc.poll() is None and not (state.is_file()
                                       and json.loads(state.read_text())["epochs_done"] >= 2):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_after = json.loads(state.read_text())["epochs_done"]
    assert proc.returncode == -signal.SIGKILL and 2 <= killed_after < 6
    assert not (run / "model.keras").exists()

    resumed = subprocess.run(command(str(run)), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from the checkpoint after epoch {killed_after}" in resumed.stderr
    assert _same(_weights(tmp_path / "ref/model.keras"), _weights(run / "model.keras"))
    assert (run / "history.csv").read_text().count("\n") == 7  # header + 6 epochs
    ref = json.loads((tmp_path / "ref/training.json").read_text())
    assert json.loads((run / "training.json").read_text())["learning_rates"] == \
        ref["learning_rates"]


def test_early_stopping_keeps_the_best_epoch(preprocessed: Path, tmp_path: Path) -> None:
    # min_delta so large that no epoch after the first counts as an improvement
    stopped = _train(preprocessed, tmp_path / "es", _settings(
        epochs=6, early_stopping={"patience": 2, "min_delta": 1e9},
        lr_schedule={"type": "exponential", "decay": 0.5}))
    assert stopped["stopped_early"] and stopped["epochs_run"] == 3
    assert stopped["best_epoch"] == 0
    assert stopped["learning_rates"] == pytest.approx([0.01, 0.005, 0.0025])
    one = _train(preprocessed, tmp_path / "one", _settings(epochs=1))
    assert one["epochs_run"] == 1
    assert _same(_weights(tmp_path / "es/model.keras"), _weights(tmp_path / "one/model.keras"))


def test_sample_weights_reach_the_loss(preprocessed: Path, tmp_path: Path) -> None:
    import keras

    from flavourflow.train import models

    weights = np.load(preprocessed / "train_weights.npy", mmap_mode="r+")
    weights[:] = 0.0  # no jet counts: Adam's steps are all 0, the weights stay as built
    weights.flush()
    _train(preprocessed, tmp_path / "zero", _settings(seed=5))
    keras.utils.set_random_seed(5)
    fresh = models.build("tutorial", {}, models.Shapes(2), 3)
    assert _same(_weights(tmp_path / "zero/model.keras"), fresh.get_weights())


def _write_split(directory: Path, n: int) -> data.Split:
    np.save(directory / "train_jets.npy", (np.arange(n)[:, None] * [1, -1]).astype(np.float32))
    np.save(directory / "train_labels.npy", (np.arange(n) % 3).astype(np.int8))
    np.save(directory / "train_weights.npy", np.arange(n, dtype=np.float32) / n)
    return data.open_split(directory, "train", ["jets"])


def _epochs(split: data.Split, batch_size: int, seed: int | None, first: int,
            epochs: int) -> list[list[int]]:
    """First row of each batch, per epoch; checks every batch is a run of whole rows."""
    orders = []
    for epoch in range(first, epochs):
        starts = []
        for x, y, w in data.make_dataset(split, batch_size, seed, epoch):
            x, y, w = x.numpy(), y.numpy(), w.numpy()
            rows = np.arange(x[0, 0], x[0, 0] + len(x))
            assert np.array_equal(x, rows[:, None] * [1, -1])
            assert y.dtype == np.int32 and np.array_equal(y, rows % 3)
            assert np.allclose(w, rows / len(split))
            starts.append(int(x[0, 0]))
        assert len(starts) == split.num_batches(batch_size)
        orders.append(starts)
    return orders


def test_pipeline_reads_contiguous_batches_in_an_epoch_order(tmp_path: Path) -> None:
    n = 6 * (2 * data.WINDOW + 5) + 4  # two windows of batches of 6, five more, one of 4
    split = _write_split(tmp_path, n)
    orders = _epochs(split, 6, 1, 0, 3)
    for order in orders:
        assert sorted(order[:-1]) == list(range(0, n - 4, 6)) and order[-1] == n - 4
    assert orders[0] != orders[1] != orders[2]
    assert _epochs(split, 6, 1, 1, 3) == orders[1:]  # a resumed run sees the same batches
    assert _epochs(split, 6, 2, 0, 1) != orders[:1]  # another seed, another order
    assert _epochs(split, 6, None, 0, 1) == [list(range(0, n, 6))]  # file order
    assert _epochs(split, 7, 1, 0, 1)[0][-1] == n - n % 7
    assert _epochs(split, n, 1, 0, 1) == [[0]]
    assert _epochs(split, 2 * n, 1, 0, 1) == [[0]]


def test_pipeline_refuses_arrays_it_cannot_read(tmp_path: Path) -> None:
    from flavourflow.core.errors import FlavourflowError

    _write_split(tmp_path, 10)
    np.save(tmp_path / "train_weights.npy", np.ones(10, dtype=">f8"))
    with pytest.raises(FlavourflowError, match="train_weights.npy.*expected a C-ordered"):
        data.open_split(tmp_path, "train", ["jets"])
    np.save(tmp_path / "train_weights.npy", np.ones(9, dtype=np.float32))
    with pytest.raises(FlavourflowError, match="different lengths"):
        data.open_split(tmp_path, "train", ["jets"])
    path = tmp_path / "train_labels.npy"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(FlavourflowError, match="train_labels.npy.*shorter than its header"):
        data.open_split(tmp_path, "train", ["jets"])
    path.write_bytes(b"not an array")
    with pytest.raises(FlavourflowError, match="train_labels.npy.*not a .npy array"):
        data.open_split(tmp_path, "train", ["jets"])


def test_learning_rate_schedules() -> None:
    cos = _settings(epochs=5, learning_rate=1.0,
                    lr_schedule={"type": "cosine", "final_fraction": 0.1, "warmup_epochs": 1})
    rates = [train.learning_rate(cos, e) for e in range(5)]
    assert rates[0] == pytest.approx(0.5) and rates[1] == pytest.approx(1.0)
    assert rates[-1] == pytest.approx(0.1) and all(np.diff(rates[1:]) < 0)


def test_an_option_the_architecture_lacks_is_refused() -> None:
    from flavourflow.core.errors import FlavourflowError
    from flavourflow.train import models

    shapes = models.Shapes(n_jet=3)
    with pytest.raises(FlavourflowError, match="dl1 has no option 'track_hidden'"):
        models.build("dl1", {"track_hidden": [8]}, shapes, 3)
    with pytest.raises(FlavourflowError, match="tutorial has no option 'hidden'"):
        models.build("tutorial", {"hidden": [8]}, shapes, 3)
    assert models.build("dl1", {"hidden": [8], "dropout": 0.1}, shapes, 3).count_params() > 0
