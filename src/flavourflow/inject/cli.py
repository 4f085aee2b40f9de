"""`flavourflow inject`: an exported network's scores -> friend tree + HDF5 for one ROOT file."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from flavourflow.core.defaults import default

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    """Register the ``inject`` subcommand on the top-level CLI's subparsers."""
    parser = subparsers.add_parser(
        "inject",
        help="write a network's scores next to an original ntuple (friend tree + h5)",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--ntuple", type=Path, required=True, help="original ROOT file")
    parser.add_argument("--input-format", default="flavourflow",
                        choices=("flavourflow", "physlite", "mapping"),
                        help="how the dump read the original (as `flavourflow dump --format`)")
    parser.add_argument("--mapping", type=Path, default=None,
                        help="the dump's YAML field mapping (with --input-format mapping)")
    parser.add_argument("--dump", type=Path, required=True, help="its dump-stage h5")
    parser.add_argument("--network", type=Path, required=True,
                        help="exported network.json, or model.onnx (networks lwtnn cannot "
                        "express)")
    parser.add_argument("--model", required=True, help="model name (names tree and branches)")
    parser.add_argument("--tree-out", type=Path, required=True, help="output friend-tree file")
    parser.add_argument("--h5-out", type=Path, required=True, help="output h5 file")
    parser.add_argument("--fc", type=float, default=0.018, help="f_c of the D_b discriminant")
    parser.add_argument("--step-size", type=int, default=default("inject.step_size"),
                        help="events per read block")
    parser.add_argument("--output", default=None, help="network output (default: the first)")
    parser.add_argument(
        "--format",
        default="auto",
        choices=("auto", "ttree", "rntuple"),
        help="friend format; auto: the original's (TTree or RNTuple)",
    )


def main(args: argparse.Namespace) -> int:
    """Run the inject stage; FlavourflowError propagates to the top-level CLI."""
    from flavourflow.inject.core import run

    run(
        ntuple=args.ntuple,
        dump=args.dump,
        network=args.network,
        tree_out=args.tree_out,
        h5_out=args.h5_out,
        model=args.model,
        f_c=args.fc,
        step_size=args.step_size,
        output=args.output,
        friend_format=args.format,
        input_format=args.input_format,
        mapping_file=args.mapping,
    )
    return 0
