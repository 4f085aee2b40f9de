"""`flavourflow evaluate`: argument parsing for the evaluate stage."""

from __future__ import annotations

import argparse
from pathlib import Path

from flavourflow.core.defaults import default
from flavourflow.core.flavours import WORKING_POINTS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("evaluate", help="ROC, rejections and plots of an exported network")
    p.add_argument("--network", type=Path, required=True,
                   help="lwtnn network.json, or model.onnx (networks lwtnn cannot express)")
    p.add_argument("--variables", type=Path, required=True, help="variables.json")
    p.add_argument("--sample", type=Path, required=True, help="merged dump h5 to evaluate on")
    p.add_argument("--history", type=Path, required=True, help="history.csv of the training")
    p.add_argument("--outdir", type=Path, required=True)
    p.add_argument("--fc", type=float, default=0.018, help="charm fraction f_c in D_b")
    p.add_argument("--working-points", type=float, nargs="+", default=list(WORKING_POINTS))
    p.add_argument("--title", default="", help="what is shown (the model), above the plots")
    p.add_argument("--label", nargs="*", default=[],
                   help="lines under the experiment label: √s, sample, jet selection")
    p.add_argument("--model", help="the model's name in messages (default: the network's folder)")
    p.add_argument("--reference", default=default("evaluate.reference"),
                   help="tagger of the ratio panels (default: the best baseline)")
    p.add_argument("--selection", default="{}",
                   help="JSON {pt_min, pt_max, abs_eta_min, abs_eta_max} (MeV): test jets kept")


def main(args: argparse.Namespace) -> int:
    import json

    from flavourflow.core.errors import FlavourflowError
    from flavourflow.evaluate import core

    try:
        selection = json.loads(args.selection)
    except json.JSONDecodeError as err:
        raise FlavourflowError(f"--selection is not JSON ({err})", field="selection") from None
    if not isinstance(selection, dict) or not all(
            isinstance(v, int | float) for v in selection.values()):
        raise FlavourflowError("--selection wants {key: number}", field="selection")
    core.run(args.network, args.variables, args.sample, args.history, args.outdir, args.fc,
             args.working_points, args.title, selection, reference=args.reference,
             text="\n".join(args.label), model=args.model)
    return 0
