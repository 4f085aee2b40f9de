"""`flavourflow fetch`: argument parsing for the fetch stage."""

from __future__ import annotations

import argparse
from pathlib import Path

from flavourflow.core.defaults import default


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("fetch", help="copy a remote ROOT file (https, root://, rucio) "
                              "to a local path, retried and verified")
    p.add_argument("--url", required=True,
                   help="http(s)://..., root://host//path or rucio://scope/name")
    p.add_argument("--output", type=Path, required=True)
    p.add_argument("--sha256", help="expected sha256 (hex)")
    p.add_argument("--adler32", help="expected adler32 (8 hex digits)")
    p.add_argument("--retries", type=int, default=default("fetch.retries"),
                   help="extra attempts after a transient failure")
    p.add_argument("--backoff", type=float, default=default("fetch.backoff_s"),
                   help="seconds before the first retry, doubled for each next one")


def main(args: argparse.Namespace) -> int:
    from flavourflow.fetch import core

    checksum = {k: v for k, v in (("sha256", args.sha256), ("adler32", args.adler32)) if v}
    core.fetch(args.url, args.output, checksum, retries=args.retries, backoff=args.backoff)
    return 0
