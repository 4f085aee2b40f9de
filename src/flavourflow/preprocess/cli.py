"""`flavourflow preprocess`: argument parsing for the preprocess stage."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("preprocess", help="split, normalise, write memmaps for a model")
    p.add_argument("--input", type=Path, required=True, help="merged dump of the sample")
    p.add_argument("--outdir", type=Path, required=True)
    p.add_argument("--model", required=True, help="model name (labels the network output)")
    p.add_argument("--variables", nargs="+", required=True, help="jet input variables, in order")
    p.add_argument("--fractions", type=json.loads, default={"train": 0.7, "val": 0.15,
                   "test": 0.15}, help='JSON, e.g. {"train": 0.7, "val": 0.15, "test": 0.15}')
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--shuffle-seed", type=int, default=0)
    p.add_argument("--block-size", type=int, default=100_000)


def main(args: argparse.Namespace) -> int:
    from flavourflow.preprocess import core

    settings = core.Settings(
        variables=args.variables, fractions=args.fractions, split_seed=args.split_seed,
        shuffle_seed=args.shuffle_seed, block_size=args.block_size, model_name=args.model,
    )
    core.run(args.input, args.outdir, settings)
    return 0
