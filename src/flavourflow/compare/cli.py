"""`flavourflow compare`: argument parsing for the compare stage."""

from __future__ import annotations

import argparse
from pathlib import Path

from flavourflow.core.flavours import BASELINES, WORKING_POINTS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="every model and baseline of a sample side by side")
    p.add_argument("--scores", nargs="+", required=True, metavar="MODEL=SCORES_H5",
                   help="each model's evaluate scores.h5 on the sample")
    p.add_argument("--baselines", nargs="*", default=list(BASELINES),
                   help="scores.h5 columns compared next to the models")
    p.add_argument("--outdir", type=Path, required=True)
    p.add_argument("--working-points", type=float, nargs="+", default=list(WORKING_POINTS))
    p.add_argument("--title", default="")


def main(args: argparse.Namespace) -> int:
    from flavourflow.compare import core
    from flavourflow.core.errors import FlavourflowError

    scores = {}
    for item in args.scores:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise FlavourflowError(f"--scores wants MODEL=PATH, got {item!r}", field="scores")
        scores[name] = Path(path)
    core.run(scores, args.baselines, args.outdir, args.working_points, args.title)
    return 0
