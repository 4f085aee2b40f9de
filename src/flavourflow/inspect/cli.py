"""`flavourflow inspect`: argument parsing for the inspect stage."""

from __future__ import annotations

import argparse
from pathlib import Path

from flavourflow.core.defaults import default
from flavourflow.core.flavours import WORKING_POINTS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("inspect", help="input histograms and baseline ROCs of a sample")
    p.add_argument("--input", type=Path, required=True, help="merged dump h5")
    p.add_argument("--outdir", type=Path, required=True)
    p.add_argument("--bins", type=int, default=default("inspect.bins"))
    p.add_argument("--working-points", type=float, nargs="+", default=list(WORKING_POINTS))
    p.add_argument("--title", default="")


def main(args: argparse.Namespace) -> int:
    from flavourflow.inspect import core

    core.run(args.input, args.outdir, args.bins, args.working_points, args.title)
    return 0
