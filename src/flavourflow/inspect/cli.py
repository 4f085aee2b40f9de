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
    p.add_argument("--label", nargs="*", default=[],
                   help="lines under the experiment label: √s, sample, jet selection")
    p.add_argument("--correlated", nargs="+", default=["pt", "eta"],
                   help="jet inputs whose correlation matrix per flavour is drawn")


def main(args: argparse.Namespace) -> int:
    from flavourflow.inspect import core

    core.run(args.input, args.outdir, args.bins, args.working_points, args.title,
             correlated=args.correlated, text="\n".join(args.label))
    return 0
