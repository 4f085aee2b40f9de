"""`flavourflow train`: argument parsing for the train stage."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train a network on the preprocess memmaps")
    p.add_argument("--preprocessed", type=Path, required=True, help="preprocess output folder")
    p.add_argument("--model", type=Path, required=True, help="model.keras to write")
    p.add_argument("--history", type=Path, required=True, help="history.csv to write")
    p.add_argument("--info", type=Path, required=True, help="training.json to write")
    p.add_argument("--architecture", default="tutorial", help="tutorial, dl1, dips or transformer")
    p.add_argument("--options", type=json.loads, default={},
                   help="JSON object of architecture options")
    p.add_argument("--training", type=json.loads, default={},
                   help="JSON object: the model's `training` config entry (epochs, batch_size,"
                        " learning_rate, seed, lr_schedule, early_stopping, mixed_precision);"
                        " the options below override it")
    p.add_argument("--aux-tasks", type=json.loads, default={},
                   help='JSON object: auxiliary task -> loss weight, e.g. {"track_origin": 0.5}')
    p.add_argument("--threads", type=int, default=None,
                   help="TensorFlow CPU threads (default: all cores)")
    p.add_argument("--record", type=json.loads, default={},
                   help="JSON object: the resolved config recorded in training.json")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--learning-rate", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)


def main(args: argparse.Namespace) -> int:
    from flavourflow.core.errors import FlavourflowError
    from flavourflow.train import core

    cfg = {"epochs": 10, "batch_size": 512, "learning_rate": 1e-3, "seed": 0,
           **args.training}
    for key in ("epochs", "batch_size", "learning_rate", "seed"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    known = set(core.Settings.__dataclass_fields__) - {"architecture", "options", "aux_tasks"}
    for key in set(cfg) - known:
        raise FlavourflowError(f"unknown training setting; known: {sorted(known)}",
                               field=f"training.{key}")
    settings = core.Settings(architecture=args.architecture, options=args.options,
                             aux_tasks=args.aux_tasks, **cfg)
    core.run(args.preprocessed, args.model, args.history, args.info, settings,
             threads=args.threads, config=args.record)
    return 0
