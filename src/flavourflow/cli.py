"""`flavourflow <stage> ...`: one subcommand per workflow stage.

Each stage's module is imported only when its subcommand runs, so that e.g. `flavourflow dump`
works where TensorFlow or Pythia are not installed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys

from flavourflow import __version__
from flavourflow.core.errors import FlavourflowError

#: Subcommand -> module holding ``add_parser(subparsers)`` and ``main(args)``.
STAGES = {
    "generate": "flavourflow.generate.cli",
    "fetch": "flavourflow.fetch.cli",
    "dump": "flavourflow.dump.cli",
    "merge": "flavourflow.merge.cli",
    "inspect": "flavourflow.inspect.cli",
    "preprocess": "flavourflow.preprocess.cli",
    "train": "flavourflow.train.cli",
    "export": "flavourflow.export.cli",
    "evaluate": "flavourflow.evaluate.cli",
    "compare": "flavourflow.compare.cli",
    "inject": "flavourflow.inject.cli",
}


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _stage_from_argv(argv: list[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the chosen stage, and turn a FlavourflowError into one line + exit 1."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="flavourflow", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"flavourflow {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    chosen = _stage_from_argv(argv)
    for name, module_name in STAGES.items():
        if name == chosen:
            importlib.import_module(module_name).add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=f"run the {name} stage", add_help=False)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    module = importlib.import_module(STAGES[args.stage])
    if os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() == "FALSE":  # see core.h5files
        logging.getLogger("flavourflow").info("HDF5 file locking off (HDF5_USE_FILE_LOCKING)")
    # SIGTERM (Snakemake or a batch system stopping the job) ends like Ctrl-C: the stage's
    # clean-up runs and no hidden temporary is left (flavourflow.core.outputs)
    signal.signal(signal.SIGTERM, _terminate)
    from flavourflow.core import progress

    try:
        with progress.console():
            return int(module.main(args) or 0)
    except FlavourflowError as err:
        print(f"flavourflow {args.stage}: error: {err}", file=sys.stderr)
        return 1
