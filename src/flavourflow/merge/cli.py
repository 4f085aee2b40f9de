"""`flavourflow merge`: argument parsing for the merge stage."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from flavourflow.dump.h5 import COMPRESSIONS, DEFAULT_COMPRESSION

    p = subparsers.add_parser("merge", help="merge the per-file dumps of a sample")
    p.add_argument("--inputs", type=Path, nargs="+", required=True)
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--compression", default=DEFAULT_COMPRESSION, choices=COMPRESSIONS,
                   help="HDF5 filter of a concatenated copy")
    p.add_argument("--layout", default="virtual", choices=("virtual", "concat"),
                   help="virtual datasets over the parts (default) or a concatenated copy")
    p.add_argument("--pt-windows", nargs="+", metavar="LOW:HIGH",
                   help="keep only jets with LOW <= pT < HIGH (MeV) from each input, in order:"
                   " a hybrid sample")


def main(args: argparse.Namespace) -> int:
    from flavourflow.merge import core

    windows = None if args.pt_windows is None else [core.parse_window(w)
                                                      for w in args.pt_windows]
    core.run(args.inputs, args.output, compression=args.compression, pt_windows=windows,
             layout=args.layout)
    return 0
