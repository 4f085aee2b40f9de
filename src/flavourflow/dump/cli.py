"""`flavourflow dump`: argument parsing for the dump stage."""

from __future__ import annotations

import argparse
from pathlib import Path

FORMATS = ("flavourflow", "physlite", "mapping")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from flavourflow.dump.h5 import COMPRESSIONS, DEFAULT_COMPRESSION

    p = subparsers.add_parser("dump", help="ROOT file -> TDD-layout HDF5")
    p.add_argument("--input", type=Path, required=True, help="ROOT file")
    p.add_argument("--output", type=Path, required=True, help="HDF5 file to write")
    p.add_argument("--format", default="flavourflow", choices=FORMATS,
                   help="input schema: flavourflow's generated ntuple, ATLAS PHYSLITE (TTree "
                   "CollectionTree or RNTuple EventData) or a ntuple described by --mapping")
    p.add_argument("--mapping", type=Path, help="YAML field mapping (with --format mapping)")
    p.add_argument("--pt-min", type=float, default=20_000.0, help="jet pT cut in MeV")
    p.add_argument("--abs-eta-max", type=float, default=2.5, help="jet |eta| cut")
    p.add_argument("--max-tracks", type=int, default=40, help="tracks kept per jet")
    p.add_argument("--step-size", type=int, default=2000, help="events per read block")
    p.add_argument("--compression", default=DEFAULT_COMPRESSION, choices=COMPRESSIONS)


def main(args: argparse.Namespace) -> int:
    from flavourflow.dump import core
    from flavourflow.dump.blocks import Selection

    selection = Selection(pt_min=args.pt_min, abs_eta_max=args.abs_eta_max)
    core.run(args.input, args.output, selection, args.max_tracks, args.step_size,
             args.compression, fmt=args.format, mapping_file=args.mapping)
    return 0
