"""The train stage: build the configured network, fit it on the memmaps, record everything
needed to reproduce it next to the model."""

from __future__ import annotations

import csv
import json
import logging
import os
import platform
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flavourflow import __version__
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.outputs import atomic_path, write_json
from flavourflow.train import data, models

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    """What the train stage needs from the model's config entry."""

    architecture: str
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    options: Mapping[str, Any] = field(default_factory=dict)


def _device() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"GPU ({', '.join(g.name for g in gpus)})" if gpus else "CPU"


def run(preprocessed: Path, model_out: Path, history_out: Path, info_out: Path,
        settings: Settings) -> dict:
    """Train on ``preprocessed`` (a preprocess output folder); write model, history, info."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    variables = json.loads((preprocessed / "variables.json").read_text())
    node = variables["inputs"][0]
    classes = variables["outputs"][0]["labels"]
    keras.utils.set_random_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()

    train = data.open_split(preprocessed, "train", node["name"])
    val = data.open_split(preprocessed, "val", node["name"])
    if train["x"].shape[1] != len(node["variables"]):
        raise FlavourflowError(
            f"memmap has {train['x'].shape[1]} columns, variables.json {len(node['variables'])}",
            path=preprocessed / f"train_{node['name']}.npy", field="shape",
        )
    model = models.build(settings.architecture, settings.options, len(node["variables"]),
                         len(classes), node["name"])
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=settings.learning_rate),
        loss="sparse_categorical_crossentropy",
        weighted_metrics=["sparse_categorical_accuracy"],
    )

    epoch_times: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            epoch_times.append(time.perf_counter() - self.start)

    history = model.fit(
        data.make_loader(train, settings.batch_size, settings.seed),
        validation_data=data.make_loader(val, settings.batch_size, None),
        epochs=settings.epochs, callbacks=[Timer()], verbose=2,
    )

    with atomic_path(model_out) as tmp:
        model.save(tmp)
    with atomic_path(history_out) as tmp, open(tmp, "w", newline="") as stream:
        keys = list(history.history)
        writer = csv.writer(stream)
        writer.writerow(["epoch", *keys])
        for epoch in range(len(epoch_times)):
            writer.writerow([epoch, *(history.history[k][epoch] for k in keys)])

    n_train = len(train["y"])
    info = {
        "settings": {**settings.__dict__, "options": dict(settings.options)},
        "seed": settings.seed,
        "n_jets": {"train": n_train, "val": len(val["y"])},
        "device": _device(),
        "epoch_seconds": epoch_times,
        "jets_per_second": [n_train / t for t in epoch_times],
        "versions": {"flavourflow": __version__, "keras": keras.__version__,
                     "tensorflow": tf.__version__, "python": platform.python_version()},
        "classes": classes,
        "inputs": [v["name"] for v in node["variables"]],
    }
    write_json(info_out, info)
    return info
