"""`flavourflow merge`: argument parsing for the merge stage."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("merge", help="concatenate the per-file dumps of a sample")
    p.add_argument("--inputs", type=Path, nargs="+", required=True)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--compression", default="lzf", choices=("lzf", "gzip", "none"))


def main(args: argparse.Namespace) -> int:
    from flavourflow.merge import core

    core.run(args.inputs, args.output, compression=args.compression)
    return 0
