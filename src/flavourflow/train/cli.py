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
    p.add_argument("--architecture", default="tutorial")
    p.add_argument("--options", type=json.loads, default={},
                   help="JSON object of architecture options")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    from flavourflow.train import core

    settings = core.Settings(
        architecture=args.architecture, epochs=args.epochs, batch_size=args.batch_size,
        learning_rate=args.learning_rate, seed=args.seed, options=args.options,
    )
    core.run(args.preprocessed, args.model, args.history, args.info, settings)
    return 0
