"""The train stage: build the configured network, fit it on the memmaps, record everything
needed to reproduce it next to the model.

After every epoch the model (with its optimizer state), the history so far and the early
stopping state are checkpointed under ``<model dir>/checkpoint/``; a rerun with the same
settings and the same preprocessed data resumes from the last complete checkpoint and, on CPU
with a fixed seed, ends with the weights an uninterrupted run ends with (the batch order and
the learning rate are functions of (seed, epoch); dropout's RNG state is saved with the model).
The checkpoint is removed once the outputs are written.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import os
import platform
import shutil
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flavourflow import __version__
from flavourflow.core import progress
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.outputs import atomic_path, write_json
from flavourflow.train import data, models

log = logging.getLogger(__name__)

SCHEDULES = ("constant", "cosine", "exponential")
CHECKPOINT_DIR = "checkpoint"


@dataclass(frozen=True)
class Settings:
    """What the train stage needs from the model's config entry."""

    architecture: str
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    options: Mapping[str, Any] = field(default_factory=dict)
    #: {"type": constant|cosine|exponential, "warmup_epochs", "final_fraction", "decay"}
    lr_schedule: Mapping[str, Any] = field(default_factory=dict)
    #: {"patience": epochs without val_loss improvement, "min_delta"}; empty: off
    early_stopping: Mapping[str, Any] = field(default_factory=dict)
    mixed_precision: bool = False
    #: auxiliary task -> loss weight (transformer: track_origin, track_vertex); 0 or absent:
    #: off. The flavour loss has weight 1.
    aux_tasks: Mapping[str, float] = field(default_factory=dict)

    @property
    def aux(self) -> tuple[str, ...]:
        """The auxiliary tasks that are on, in the model's output order."""
        return tuple(t for t in models.AUX_TASKS if self.aux_tasks.get(t, 0) > 0)

    def as_dict(self) -> dict:
        out = asdict(self)
        for key in ("options", "lr_schedule", "early_stopping", "aux_tasks"):
            out[key] = dict(getattr(self, key))
        return out


def learning_rate(settings: Settings, epoch: int) -> float:
    """The learning rate of ``epoch`` (0-based): optional linear warm-up, then constant,
    cosine decay to ``final_fraction`` of the initial rate at the last epoch, or
    exponential decay by ``decay`` per epoch."""
    cfg = dict(settings.lr_schedule)
    kind = cfg.get("type", "constant")
    if kind not in SCHEDULES:
        raise FlavourflowError(f"unknown schedule {kind!r}; one of {SCHEDULES}",
                               field="lr_schedule.type")
    base = settings.learning_rate
    warmup = int(cfg.get("warmup_epochs", 0))
    if epoch < warmup:
        return base * (epoch + 1) / (warmup + 1)
    step, span = epoch - warmup, max(1, settings.epochs - warmup - 1)
    if kind == "cosine":
        final = float(cfg.get("final_fraction", 0.01))
        return base * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(step, span)
                                                                 / span)))
    if kind == "exponential":
        return base * float(cfg.get("decay", 0.9)) ** step
    return base


def precision_policy(mixed_precision: bool, device: str) -> str:
    """The Keras dtype policy to train with: mixed_float16 when asked for and a GPU is there
    (float16 matrix products on its tensor cores), float32 otherwise."""
    return "mixed_float16" if mixed_precision and device.startswith("GPU") else "float32"


def _device() -> str:
    """The device TensorFlow trains on. Each visible GPU's memory grows as needed instead of
    being taken whole, so jobs sharing a GPU (or a GPU node) do not starve each other."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    return f"GPU ({', '.join(g.name for g in gpus)})" if gpus else "CPU"


def _input_names(variables: dict) -> tuple[list[str], models.Shapes]:
    """Memmap stems in the model's input order, and the input shapes, from variables.json."""
    jets = variables.get("inputs") or []
    seqs = variables.get("input_sequences") or []
    if len(jets) > 1 or len(seqs) > 1:
        raise FlavourflowError("at most one jet and one track input node are supported",
                               field="inputs")
    names: list[str] = []
    n_jet = n_steps = n_track = 0
    jet_name, track_name = "jets", "tracks"
    if jets:
        jet_name, n_jet = jets[0]["name"], len(jets[0]["variables"])
        names.append(jet_name)
    if seqs:
        track_name, n_track = seqs[0]["name"], len(seqs[0]["variables"])
        n_steps = int(seqs[0]["max_tracks"])
        names += [track_name, f"{track_name}_valid"]
    return names, models.Shapes(n_jet, n_steps, n_track, jet_name, track_name)


def _fingerprint(settings: Settings, variables_text: str, shapes: dict) -> str:
    payload = json.dumps({"settings": settings.as_dict(), "variables": variables_text,
                          "shapes": shapes, "version": __version__}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class _Checkpoints:
    """Per-epoch checkpoints: ``epoch_<k>.keras`` then ``state.json`` (written last, naming
    it), each atomically, so an interruption at any point leaves the previous one usable."""

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.dir = directory
        self.fingerprint = fingerprint

    def load(self) -> dict | None:
        path = self.dir / "state.json"
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text())
        except ValueError:
            return None
        if state.get("fingerprint") != self.fingerprint:
            log.info("checkpoint in %s is of other settings or data: starting afresh", self.dir)
            return None
        if not (self.dir / state["model"]).is_file():
            return None
        return state

    def save(self, model: Any, state: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        state = {**state, "rng_states": [v.numpy().tolist() for v in _rng_states(model)]}
        name = f"epoch_{state['epochs_done']}.keras"
        with atomic_path(self.dir / name) as tmp:
            model.save(tmp)
        if state.get("best_improved"):
            tmp = self.dir / f"partial-{os.getpid()}.weights.h5"  # Keras wants this suffix
            model.save_weights(tmp)
            os.replace(tmp, self.dir / "best.weights.h5")
        write_json(self.dir / "state.json", {**state, "model": name,
                                             "fingerprint": self.fingerprint})
        for old in self.dir.glob("epoch_*.keras"):
            if old.name != name:
                old.unlink()

    def clear(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def run(preprocessed: Path, model_out: Path, history_out: Path, info_out: Path,
        settings: Settings, *, threads: int | None = None,
        config: dict | None = None) -> dict:
    """Train on ``preprocessed`` (a preprocess output folder); write model, history, info.

    ``threads`` caps TensorFlow's CPU threads (the job's share of a node); ``config`` is the
    resolved configuration recorded in training.json next to the model.
    """
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)

    import flavourflow.export.layers  # noqa: F401  (registers MaskedSum for loading)
    import flavourflow.train.layers  # noqa: F401  (registers PerTrack for resuming)

    variables_text = (preprocessed / "variables.json").read_text()
    variables = json.loads(variables_text)
    classes = variables["outputs"][0]["labels"]
    names, shapes = _input_names(variables)
    unknown = set(settings.aux_tasks) - set(models.AUX_TASKS)
    if unknown:
        raise FlavourflowError(f"unknown auxiliary tasks {sorted(unknown)}; known: "
                               f"{sorted(models.AUX_TASKS)}", field="aux_tasks")
    if settings.aux and not variables.get("truth"):
        raise FlavourflowError("auxiliary tasks need the per-track truth: preprocess without "
                               "it (--truth)", path=preprocessed / "variables.json",
                               field="truth")
    n_inputs = len(names)
    if settings.aux:
        names = [*names, *data.TRUTH_STEMS]
    train = data.open_split(preprocessed, "train", names)
    val = data.open_split(preprocessed, "val", names)
    for member, want in zip(train.inputs[:n_inputs], _widths(shapes), strict=True):
        if member.row_shape != want:
            raise FlavourflowError(f"memmap rows are {member.row_shape}, variables.json says "
                                   f"{want}", path=member.path, field="shape")

    device = _device()
    precision = precision_policy(settings.mixed_precision, device)
    keras.mixed_precision.set_global_policy(precision)
    if settings.mixed_precision and precision == "float32":
        log.warning("mixed precision asked for but no GPU: training in float32")
        precision = "float32 (mixed precision needs a GPU)"
    keras.utils.set_random_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()

    n_train = len(train)
    checkpoints = _Checkpoints(
        model_out.parent / CHECKPOINT_DIR,
        _fingerprint(settings, variables_text,
                     {"train": n_train, "val": len(val)}),
    )
    state = checkpoints.load()
    if state is None:
        model = models.build(settings.architecture, settings.options, shapes, len(classes),
                             fast=True, aux=settings.aux)
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=settings.learning_rate),
            **_losses(settings),
        )
        state = {"epochs_done": 0, "history": [], "epoch_seconds": [], "train_seconds": [],
                 "best": None, "best_epoch": None, "wait": 0, "stopped_early": False}
    else:
        model = keras.saving.load_model(checkpoints.dir / state["model"])
        for variable, value in zip(_rng_states(model), state["rng_states"], strict=True):
            variable.assign(value)  # .keras files do not keep dropout's RNG state
        log.info("resuming from the checkpoint after epoch %d", state["epochs_done"])

    def batches(split: data.Split, seed: int | None, epoch: int = 0):
        dataset = data.make_dataset(split, settings.batch_size, seed, epoch)
        return data.with_aux_targets(dataset, settings.aux, n_inputs) if settings.aux \
            else dataset

    val_batches = batches(val, None)
    patience = int(settings.early_stopping.get("patience", 0))
    min_delta = float(settings.early_stopping.get("min_delta", 0.0))

    class Recorder(keras.callbacks.Callback):
        """Learning rate, timing, history, early stopping and the checkpoint, per epoch."""

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.model.optimizer.learning_rate.assign(learning_rate(settings, epoch))
            self.start = self.last_batch = time.perf_counter()

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.last_batch = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            now = time.perf_counter()
            row = {"epoch": epoch, "learning_rate": learning_rate(settings, epoch),
                   **{k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}}
            state["history"].append(row)
            state["epoch_seconds"].append(now - self.start)
            state["train_seconds"].append(self.last_batch - self.start)
            state["epochs_done"] = epoch + 1
            monitored = row.get("val_loss", row.get("loss"))
            improved = state["best"] is None or monitored < state["best"] - min_delta
            if improved:
                state["best"], state["best_epoch"], state["wait"] = monitored, epoch, 0
            else:
                state["wait"] += 1
            if patience and state["wait"] >= patience:
                state["stopped_early"] = True
                self.model.stop_training = True
            checkpoints.save(self.model, {**state, "best_improved": improved and patience > 0})

    steps = math.ceil(n_train / settings.batch_size)
    name = model_out.parent.name

    class Progress(keras.callbacks.Callback):
        """The batches of the running epoch (a live bar on a terminal; in a log, a line every
        interval, so a long epoch is not silent), then one line per epoch with the epochs
        done, the time per epoch, the time left and the losses. It replaces Keras's own
        progress bar, whose redraws make a log unreadable."""

        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.batches = progress.bar(steps, f"train {name} epoch {epoch + 1}", "batches",
                                        leave=False)

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.batches.update(1)

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            self.batches.close()
            losses = {k: float(v) for k, v in (logs or {}).items() if k.endswith("loss")}
            epochs.set_postfix_str(", ".join(f"{k}={v:.4g}" for k, v in losses.items()),
                                   refresh=False)
            epochs.update(1)

    # One fit per epoch, each on that epoch's batches (their order from (seed, epoch)).
    with progress.bar(settings.epochs, f"train {name}", "epochs",
                      initial=state["epochs_done"], every=0) as epochs:
        while state["epochs_done"] < settings.epochs and not state["stopped_early"]:
            epoch = state["epochs_done"]
            log.debug("epoch %d of %d", epoch + 1, settings.epochs)
            model.fit(batches(train, settings.seed, epoch),
                      validation_data=val_batches, epochs=epoch + 1, initial_epoch=epoch,
                      callbacks=[Recorder(), Progress()], verbose=0, shuffle=False)
            if state["epochs_done"] == epoch:
                raise FlavourflowError(f"epoch {epoch} ended before its last batch",
                                       path=preprocessed)
    if patience and (checkpoints.dir / "best.weights.h5").is_file():
        model.load_weights(checkpoints.dir / "best.weights.h5")  # the best epoch's weights

    # What export loads: standard layers (TimeDistributed, not PerTrack) in float32 (not
    # mixed precision), with the trained weights.
    keras.mixed_precision.set_global_policy("float32")
    final = models.build(settings.architecture, settings.options, shapes, len(classes),
                         aux=settings.aux)
    final.set_weights(model.get_weights())
    with atomic_path(model_out) as tmp:
        final.save(tmp)
    rows = state["history"]
    with atomic_path(history_out) as tmp, open(tmp, "w", newline="") as stream:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        writer = csv.DictWriter(stream, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)

    info = {
        "settings": settings.as_dict(),
        "config": config or {},
        "threads": threads,
        "seed": settings.seed,
        "n_jets": {"train": n_train, "val": len(val)},
        "inputs": {name: [v["name"] for v in node["variables"]]
                   for node in [*(variables.get("inputs") or []),
                                *(variables.get("input_sequences") or [])]
                   for name in [node["name"]]},
        "device": device,
        "precision": precision,
        "epochs_run": state["epochs_done"],
        "stopped_early": state["stopped_early"],
        "best_epoch": state["best_epoch"],
        "epoch_seconds": state["epoch_seconds"],
        "train_seconds": state["train_seconds"],
        "jets_per_second": [n_train / t if t > 0 else None for t in state["train_seconds"]],
        "learning_rates": [r["learning_rate"] for r in rows],
        "versions": {"flavourflow": __version__, "keras": keras.__version__,
                     "tensorflow": tf.__version__, "numpy": np.__version__,
                     "python": platform.python_version(),
                     "cuda": tf.sysconfig.get_build_info().get("cuda_version")},
        "classes": classes,
    }
    write_json(info_out, info)
    checkpoints.clear()
    return info


def _losses(settings: Settings) -> dict:
    """compile() arguments: the flavour loss alone, or with the auxiliary tasks' losses and
    their weights (one entry per model output, in its order)."""
    if not settings.aux:
        return {"loss": "sparse_categorical_crossentropy",
                "weighted_metrics": ["sparse_categorical_accuracy"]}
    losses = {"probabilities": "sparse_categorical_crossentropy",
              "track_origin": "sparse_categorical_crossentropy",
              "track_vertex": "binary_crossentropy"}
    outputs = ["probabilities", *settings.aux]  # the model's output order
    return {"loss": [losses[k] for k in outputs],
            "loss_weights": [float(settings.aux_tasks.get(k, 1.0)) for k in outputs],
            "weighted_metrics": [["sparse_categorical_accuracy"]] + [[] for _ in settings.aux]}


def _rng_states(model: Any) -> list:
    """The state variables of the model's random generators (dropout), in a fixed order."""
    return [v for v in model.variables if v.path.endswith("seed_generator_state")]


def _widths(shapes: models.Shapes) -> list[tuple[int, ...]]:
    out = [(shapes.n_jet,)] if shapes.n_jet else []
    if shapes.n_track:
        out += [(shapes.n_steps, shapes.n_track), (shapes.n_steps,)]
    return out
