"""Benchmark of training from the preprocess memmaps against in-memory numpy arrays.

    .venv/bin/python benchmarks/bench_train.py --preprocessed results/preprocess/dips \
        --architecture dips [--epochs 4] [--batch-size 256] [--repeats 2] [--rounds 6]
        [--max-jets N] [--aux]

Architectures: tutorial, dl1, dips, transformer (options as in config/config.yaml and
config/transformer.yaml); ``--aux`` trains the transformer with its auxiliary track tasks
(a folder preprocessed with the truth, e.g. results/preprocess/transformer_aux), the targets
built by :func:`flavourflow.train.data.with_aux_targets` from either source. ``--max-jets``
uses the first N training jets only (the split is shuffled: a uniform subset), so that the
slow architectures measure in minutes.

The same model (``models.build`` with the same options and seed), batch size, optimizer and
loss, on the same training split; only the data source differs. ``memmap``: the stage's input
pipeline (:func:`flavourflow.train.data.make_dataset`, contiguous batches read by tf.data from
the `.npy` files, batch order per epoch); ``numpy``: the arrays loaded whole into memory and
given to ``model.fit`` (Keras' array adapter, shuffled per epoch). jets/s of an epoch =
training jets / time from the epoch's start to its last batch (validation excluded).

Two measurements, because this kind of machine drifts by tens of percent within minutes:
- side by side: one process, one model, epochs alternating between the two sources
  (``--rounds`` of each, the first left out: tracing); the ratio is the median of the
  per-round ratios;
- separate processes (memmap, numpy, memmap, ...; ``--repeats`` of each) for each source's
  own peak RSS and jets/s per epoch (the first epoch left out of the median).
``--stage`` also times the train stage itself (``train.core.run``: the pipeline plus per-epoch
checkpoints, learning-rate schedule and records).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OPTIONS = {
    "tutorial": {},
    "dl1": {"hidden": [64, 64, 32], "activation": "relu", "batch_norm": True, "dropout": 0.1},
    "dips": {"track_hidden": [64, 64, 32], "hidden": [64, 32], "activation": "relu",
             "batch_norm": True, "dropout": 0.1},
    "transformer": {"embed_dim": 32, "heads": 4, "layers": 2, "ff_dim": 64, "pool_heads": 2,
                    "sum_pooling": True,
                    "hidden": [64, 32]},
}
AUX = {"track_origin": 0.5, "track_vertex": 0.5}


def _first(split, n: int):
    """``split`` cut to its first ``n`` rows (the rest counted as trailing bytes)."""
    import dataclasses

    from flavourflow.train import data

    def cut(m):
        if m.rows <= n:
            return m
        return dataclasses.replace(m, rows=n, trailing_bytes=m.trailing_bytes
                                   + (m.rows - n) * m.row_bytes)

    return data.Split(tuple(cut(m) for m in split.inputs), cut(split.labels),
                      cut(split.weights))


def worker(args: argparse.Namespace) -> None:
    """One measurement in this process; prints a JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    import flavourflow.export.layers  # noqa: F401
    from flavourflow.train import core, data, models

    pre = args.preprocessed
    variables = json.loads((pre / "variables.json").read_text())
    names, shapes = core._input_names(variables)
    aux = tuple(AUX) if args.aux else ()
    n_inputs = len(names)
    if aux:
        names = [*names, *data.TRUTH_STEMS]
    if args.mode == "stage":
        with tempfile.TemporaryDirectory() as tmp:
            info = core.run(pre, Path(tmp) / "m.keras", Path(tmp) / "h.csv",
                            Path(tmp) / "t.json", core.Settings(
                                architecture=args.architecture, epochs=args.epochs,
                                batch_size=args.batch_size, learning_rate=1e-3, seed=1,
                                options=OPTIONS[args.architecture],
                                aux_tasks=AUX if aux else {}))
        print(json.dumps({"jets_per_second": info["jets_per_second"]}))
        return
    train = _first(data.open_split(pre, "train", names), args.max_jets)
    keras.utils.set_random_seed(1)
    model = models.build(args.architecture, OPTIONS[args.architecture], shapes, 3, fast=True,
                         aux=aux)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  **core._losses(core.Settings(args.architecture, 1, 1, 1e-3, 1,
                                               aux_tasks=AUX if aux else {})))
    seconds: list[float] = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
            self.start = self.last = time.perf_counter()

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            self.last = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            seconds.append(self.last - self.start)

    arrays: tuple = ()
    n = len(train)
    if args.mode != "memmap":
        x = [np.load(pre / f"train_{n}.npy")[: args.max_jets] for n in names]  # in memory
        arrays = (x if len(x) > 1 else x[0],
                  np.load(pre / "train_labels.npy")[: args.max_jets].astype(np.int32),
                  np.load(pre / "train_weights.npy")[: args.max_jets])

    def in_memory(epoch: int):
        """The in-memory arrays, shuffled per epoch, with the auxiliary targets."""
        import tensorflow as tf

        dataset = tf.data.Dataset.from_tensor_slices((tuple(arrays[0]), arrays[1], arrays[2]))
        dataset = dataset.shuffle(n, seed=epoch).batch(args.batch_size)
        return data.with_aux_targets(dataset, aux, n_inputs)

    def fit(source: str, first: int, epochs: int) -> None:
        if source == "memmap":  # as the stage does: one fit per epoch, on its batches
            for epoch in range(first, epochs):
                dataset = data.make_dataset(train, args.batch_size, 1, epoch)
                if aux:
                    dataset = data.with_aux_targets(dataset, aux, n_inputs)
                model.fit(dataset, epochs=epoch + 1, initial_epoch=epoch, shuffle=False,
                          callbacks=[Timer()], verbose=0)
        elif aux:
            for epoch in range(first, epochs):
                model.fit(in_memory(epoch), epochs=epoch + 1, initial_epoch=epoch,
                          callbacks=[Timer()], verbose=0)
        else:
            model.fit(arrays[0], arrays[1], sample_weight=arrays[2],
                      batch_size=args.batch_size, epochs=epochs, initial_epoch=first,
                      shuffle=True, callbacks=[Timer()], verbose=0)

    if args.mode == "alternate":
        for r in range(args.rounds):
            for source in ("memmap", "numpy"):
                fit(source, r, r + 1)
        rates = [n / s for s in seconds]
        print(json.dumps({"memmap": rates[0::2], "numpy": rates[1::2]}))
        return
    fit(args.mode, 0, args.epochs)
    print(json.dumps({"jets_per_second": [n / s for s in seconds]}))


def measure(args: argparse.Namespace, mode: str) -> tuple[dict, float]:
    """(what the worker printed, peak RSS MB) of one worker process."""
    command = [sys.executable, __file__, "--worker", mode, "--preprocessed",
               str(args.preprocessed), "--architecture", args.architecture, "--epochs",
               str(args.epochs), "--batch-size", str(args.batch_size), "--rounds",
               str(args.rounds), "--max-jets", str(args.max_jets),
               *(["--aux"] if args.aux else [])]
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        out.seek(0)
        text = out.read()
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{mode} worker failed:\n{text}")
    return json.loads(text.strip().splitlines()[-1]), usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preprocessed", type=Path, required=True,
                        help="a preprocess output folder (results/preprocess/<model>)")
    parser.add_argument("--architecture", choices=sorted(OPTIONS), required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--stage", action="store_true", help="also time train.core.run")
    parser.add_argument("--max-jets", type=int, default=10**12,
                        help="train on the first N training jets only")
    parser.add_argument("--aux", action="store_true",
                        help="transformer: with the auxiliary track tasks")
    parser.add_argument("--worker", choices=["memmap", "numpy", "stage", "alternate"],
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.mode = args.worker
        worker(args)
        return

    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    print(f"{args.architecture}{' with aux tasks' if args.aux else ''} on "
          f"{args.preprocessed}, batch {args.batch_size}, "
          f"{args.epochs} epochs, device {'GPU' if gpus else 'CPU'}")
    side, _ = measure(args, "alternate")
    pairs = list(zip(side["memmap"], side["numpy"], strict=True))[1:]  # round 0: tracing
    for r, (m, x) in enumerate(pairs, start=1):
        print(f"  side by side, round {r}: memmap {m:8.0f}, numpy {x:8.0f} jets/s, "
              f"ratio {m / x:.2f}", flush=True)
    side_ratio = statistics.median(m / x for m, x in pairs)
    modes = ["memmap", "numpy", *(["stage"] if args.stage else [])]
    rates: dict[str, list[float]] = {m: [] for m in modes}
    peaks: dict[str, float] = dict.fromkeys(modes, 0.0)
    for r in range(args.repeats):
        for mode in modes:
            result, peak = measure(args, mode)
            per_epoch = result["jets_per_second"]
            rates[mode] += per_epoch[1:]  # epoch 0 includes tracing
            peaks[mode] = max(peaks[mode], peak)
            print(f"  run {r} {mode:6s}: jets/s per epoch "
                  f"{', '.join(f'{x:.0f}' for x in per_epoch)}; peak RSS {peak:.0f} MB",
                  flush=True)
    median = {m: statistics.median(v) for m, v in rates.items()}
    for mode in modes:
        print(f"  {mode:6s}: median {median[mode]:8.0f} jets/s (epochs after the first), "
              f"peak RSS {peaks[mode]:6.0f} MB")
    print(f"  separate processes: memmap / numpy = {median['memmap'] / median['numpy']:.2f}")
    print(f"  side by side:       memmap / numpy = {side_ratio:.2f} (goal >= 0.9)")


if __name__ == "__main__":
    main()
