"""`flavourflow preprocess`: argument parsing for the preprocess stage."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flavourflow.core.defaults import default


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("preprocess", help="split, resample, normalise, write memmaps")
    p.add_argument("--input", type=Path, required=True, help="merged dump of the sample")
    p.add_argument("--outdir", type=Path, required=True)
    p.add_argument("--model", required=True, help="model name (labels the network output)")
    p.add_argument("--variables", nargs="*", default=[], help="jet input variables, in order")
    p.add_argument("--track-variables", nargs="*", default=[],
                   help="track input variables, in order (none: no track inputs)")
    p.add_argument("--max-tracks", type=int, default=None,
                   help="tracks per jet kept (default: all the dump has)")
    p.add_argument("--log-variables", nargs="*", default=[],
                   help="inputs fed as their natural log (named log_<variable>)")
    p.add_argument("--log1p-variables", nargs="*", default=[],
                   help="inputs fed as log(1 + x) (named log1p_<variable>)")
    p.add_argument("--resampling", type=json.loads, default={},
                   help='JSON, e.g. {"method": "pdf", "target": "bottom"}')
    p.add_argument("--fractions", type=json.loads, default={"train": 0.7, "val": 0.15,
                   "test": 0.15}, help='JSON, e.g. {"train": 0.7, "val": 0.15, "test": 0.15}')
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--shuffle-seed", type=int, default=0)
    p.add_argument("--block-size", type=int, default=default("preprocess.block_size"),
                   help="jets per read block and per shuffle bucket (bounds memory)")
    p.add_argument("--no-plots", action="store_true", help="skip the kinematics plots")
    p.add_argument("--truth", action="store_true",
                   help="also write the per-track truth of the auxiliary tasks")


def main(args: argparse.Namespace) -> int:
    from flavourflow.preprocess import core
    from flavourflow.preprocess.resampling import settings_from

    settings = core.Settings(
        variables=args.variables, fractions=args.fractions, split_seed=args.split_seed,
        shuffle_seed=args.shuffle_seed, block_size=args.block_size, model_name=args.model,
        track_variables=args.track_variables, max_tracks=args.max_tracks,
        log_variables=args.log_variables, log1p_variables=args.log1p_variables,
        resampling=settings_from(args.resampling),
        plots=not args.no_plots, truth=args.truth,
    )
    core.run(args.input, args.outdir, settings)
    return 0
