"""`flavourflow compare`: argument parsing for the compare stage."""

from __future__ import annotations

import argparse
from pathlib import Path

from flavourflow.core.defaults import default
from flavourflow.core.flavours import BASELINES, WORKING_POINTS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help="every model and baseline of a sample side by side")
    p.add_argument("--scores", nargs="+", metavar="MODEL=SCORES_H5",
                   help="each model's evaluate scores.h5 on the sample")
    p.add_argument("--rank", nargs="+", metavar="MODEL=METRICS_JSON",
                   help="rank a scan's variants (their evaluate metrics.json) instead")
    p.add_argument("--grid", default="{}", help="with --rank: JSON {variant: {key: value}}")
    p.add_argument("--rank-by", type=float, default=0.70,
                   help="with --rank: the b efficiency whose light rejection ranks")
    p.add_argument("--table", type=Path, help="with --rank: output Markdown table")
    p.add_argument("--json", type=Path, help="with --rank: output JSON rows")
    p.add_argument("--baselines", nargs="*", default=list(BASELINES),
                   help="scores.h5 columns compared next to the models")
    p.add_argument("--outdir", type=Path)
    p.add_argument("--working-points", type=float, nargs="+", default=list(WORKING_POINTS))
    p.add_argument("--title", default="")
    p.add_argument("--label", nargs="*", default=[],
                   help="lines under the experiment label: √s, sample, jet selection")
    p.add_argument("--reference", default=default("evaluate.reference"),
                   help="tagger of the ratio panel (default: the best baseline)")


def main(args: argparse.Namespace) -> int:
    from flavourflow.compare import core
    from flavourflow.core.errors import FlavourflowError

    def pairs(items: list[str], option: str) -> dict[str, Path]:
        out = {}
        for item in items:
            name, sep, path = item.partition("=")
            if not sep or not name or not path:
                raise FlavourflowError(f"--{option} wants MODEL=PATH, got {item!r}", field=option)
            out[name] = Path(path)
        return out

    if args.rank:
        import json

        from flavourflow.core.outputs import atomic_path, write_json

        if args.table is None or args.json is None:
            raise FlavourflowError("--rank needs --table and --json", field="rank")
        rows = core.rank(pairs(args.rank, "rank"), json.loads(args.grid), args.rank_by)
        write_json(args.json, {"rank_by": args.rank_by, "rows": rows})
        with atomic_path(args.table) as tmp:
            tmp.write_text(core.ranking_table(rows, args.rank_by))
        return 0
    if not args.scores or args.outdir is None:
        raise FlavourflowError("--scores and --outdir are needed (or --rank)", field="scores")
    core.run(pairs(args.scores, "scores"), args.baselines, args.outdir, args.working_points,
             args.title, reference=args.reference, text="\n".join(args.label))
    return 0
