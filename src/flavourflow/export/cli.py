"""`flavourflow export`: Keras model -> lwtnn network.json and ONNX model.onnx, with a closure
check of Keras vs numpy-lwtnn vs onnxruntime; without --network (networks lwtnn cannot
express: attention), ONNX alone with a closure of Keras vs onnxruntime."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from flavourflow.core.defaults import default

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    """Register the ``export`` subcommand on the top-level CLI's subparsers."""
    parser = subparsers.add_parser(
        "export",
        help="convert a trained model to lwtnn JSON and check it against Keras",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--model", type=Path, required=True, help="trained model.keras")
    parser.add_argument("--variables", type=Path, required=True, help="preprocess variables.json")
    parser.add_argument(
        "--test-dir", type=Path, required=True, help="directory with the test_<input>.npy memmaps"
    )
    parser.add_argument("--network", type=Path, default=None,
                        help="output lwtnn network.json (without it: ONNX alone, --onnx)")
    parser.add_argument("--onnx", type=Path, default=None, help="output model.onnx (tf2onnx)")
    parser.add_argument("--onnx-opset", type=int, default=17, help="ONNX opset of model.onnx")
    parser.add_argument("--closure", type=Path, default=None,
                        help="output closure.json (without it: convert only, no closure)")
    parser.add_argument("--record", type=json.loads, default=None,
                        help="JSON: the model's config entry, stored in the ONNX metadata")
    parser.add_argument(
        "--inputs-json",
        type=Path,
        default=None,
        help="output: one test jet for `lwtnn-test-lightweight-graph NETWORK INPUTS`",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="closure only: read --network and --onnx (written by a run without --closure) "
        "instead of writing them",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-5,
        help="max allowed |difference| per output, for each pair of Keras, lwtnn, ONNX",
    )
    parser.add_argument(
        "--max-jets",
        type=int,
        default=default("export.max_jets"),
        help="test jets in the closure (plus, for sequence inputs, jets with 0 and T steps)",
    )
    parser.add_argument(
        "--min-jets",
        type=int,
        default=default("export.min_jets"),
        help="fail when the test split has fewer jets than this",
    )


def main(args: argparse.Namespace) -> int:
    """Run the export stage; FlavourflowError propagates to the top-level CLI."""
    from flavourflow.core.errors import FlavourflowError
    from flavourflow.export.closure import export, run, summarise

    if args.network is None:
        return _onnx_only(args)
    if args.closure is None:
        if args.check:
            raise FlavourflowError("--check needs --closure and --inputs-json", field="closure")
        export(args.model, args.variables, args.test_dir, args.network, args.onnx,
               args.onnx_opset)
        log.info("exported %s%s", args.network, f" and {args.onnx}" if args.onnx else "")
        return 0
    if args.inputs_json is None:
        raise FlavourflowError("--closure needs --inputs-json", field="inputs-json")
    summary = run(
        model_path=args.model,
        variables_path=args.variables,
        test_dir=args.test_dir,
        network_out=args.network,
        closure_out=args.closure,
        inputs_out=args.inputs_json,
        tolerance=args.tolerance,
        max_jets=args.max_jets,
        min_jets=args.min_jets,
        onnx_out=args.onnx,
        onnx_opset=args.onnx_opset,
        check_only=args.check,
    )
    log.info("%s", summarise(summary))
    return 0


def _onnx_only(args: argparse.Namespace) -> int:
    """ONNX alone: convert (no --closure), or check the written file (--check --closure)."""
    from flavourflow.core.errors import FlavourflowError
    from flavourflow.export import onnxonly

    if args.onnx is None:
        raise FlavourflowError("needs --network or --onnx", field="onnx")
    if args.closure is None:
        onnxonly.convert(args.model, args.variables, args.test_dir, args.onnx,
                         args.onnx_opset, args.record)
        log.info("exported %s", args.onnx)
        return 0
    if not args.check:
        raise FlavourflowError("without --network the closure checks a written ONNX file: "
                               "--check", field="check")
    summary = onnxonly.closure(args.model, args.variables, args.test_dir, args.onnx,
                               args.closure, args.tolerance, args.max_jets, args.min_jets)
    log.info("closure passed on %d jets: max |Keras - ONNX| %.3g (tolerance %g)",
             summary["n_jets"], summary["max_abs_diff_overall"], args.tolerance)
    return 0
