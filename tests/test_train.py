"""The train stage on memmaps from the preprocess stage: outputs, records, determinism."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from flavourflow.preprocess import core as preprocess
from flavourflow.train import core as train


@pytest.fixture
def preprocessed(dumped: Path, tmp_path: Path) -> Path:
    out = tmp_path / "pre"
    preprocess.run(dumped, out, preprocess.Settings(
        variables=["ip2d_llr", "sv_sig"], fractions={"train": 0.6, "val": 0.2, "test": 0.2},
        split_seed=1, shuffle_seed=2, block_size=1000, model_name="tutorial"))
    return out


def _train(preprocessed: Path, out: Path, seed: int) -> dict:
    settings = train.Settings(architecture="tutorial", epochs=2, batch_size=64,
                              learning_rate=0.01, seed=seed)
    return train.run(preprocessed, out / "model.keras", out / "history.csv",
                     out / "training.json", settings)


def test_outputs_and_same_seed_same_weights(preprocessed: Path, tmp_path: Path) -> None:
    import keras

    info = _train(preprocessed, tmp_path / "a", seed=3)
    _train(preprocessed, tmp_path / "b", seed=3)
    _train(preprocessed, tmp_path / "c", seed=4)

    recorded = json.loads((tmp_path / "a/training.json").read_text())
    assert recorded == info
    assert recorded["device"] in {"CPU"} or recorded["device"].startswith("GPU")
    assert set(recorded["versions"]) >= {"flavourflow", "keras", "tensorflow"}
    assert recorded["settings"]["seed"] == 3 and len(recorded["epoch_seconds"]) == 2
    with open(tmp_path / "a/history.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [r["epoch"] for r in rows] == ["0", "1"] and float(rows[1]["val_loss"]) > 0

    weights = {k: keras.saving.load_model(tmp_path / k / "model.keras").get_weights()
               for k in "abc"}
    assert all(np.array_equal(x, y) for x, y in zip(weights["a"], weights["b"], strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(weights["a"], weights["c"], strict=True))
