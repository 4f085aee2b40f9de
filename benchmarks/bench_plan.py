"""How long Snakemake takes to plan flavourflow's DAG for a sample of many files, and a no-op
rerun of a finished checkout: the cost a user pays before the first job starts.

    .venv/bin/python benchmarks/bench_plan.py [--files 1000 3000 10000] [--repeat 3]
    .venv/bin/python benchmarks/bench_plan.py --noop DIR [--repeat 3]

For each size, a `source: files` sample of that many ROOT files (hard links to one small
ntuple written by uproot; planning only looks at paths and modification times) is the
training and evaluation sample of the default models, and `snakemake -n` is timed from
process start to exit (parsing, config validation, the DAG, the rerun checks), with inject
on (3 inject jobs per file: 4 jobs per file in all) and off (1 job per file). ``--noop``
times `snakemake -n` in a finished checkout (with its own workflow), which must plan
nothing. Best and median wall time of ``--repeat`` runs and the best CPU time (user +
system), printed as a table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from factories import write_ntuple  # noqa: E402


def plan(workdir: Path, *args: str, snakefile: Path = ROOT / "workflow/Snakefile",
         ) -> tuple[float, float, str]:
    """Wall and CPU seconds of one `snakemake -n` in ``workdir``, and its job count (CPU
    time: the same figure on a machine busy with other work)."""
    before = os.times()
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "-n", "--quiet",
         "rules", *args],
        cwd=workdir, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system)
    if result.returncode:
        raise SystemExit(f"snakemake -n failed in {workdir}:\n{result.stderr[-3000:]}")
    total = next((line.split()[-1] for line in result.stdout.splitlines()
                  if line.startswith("total")), "0")
    return elapsed, cpu, total


def sample_config(folder: Path, n_files: int, inject: bool) -> Path:
    """A config overlay whose models train and evaluate on ``n_files`` linked ntuples."""
    source = folder / "source.root"
    if not source.exists():
        write_ntuple(source, 50, seed=1)
    files = []
    for i in range(n_files):
        path = folder / "files" / f"ntuple_{i:05d}.root"
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            path.hardlink_to(source)
        files.append(str(path))
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    overlay = {
        "samples": {"many": {"source": "files", "format": "flavourflow", "files": files}},
        "models": {name: {"sample": "many"} for name in config["models"]},
        "evaluate": {"samples": ["many"]},
        "inject": {"enabled": inject},
    }
    path = folder / f"many_{n_files}_{'inject' if inject else 'noinject'}.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return path


def measure(label: str, runs: list[tuple[float, float, str]]) -> None:
    wall, cpu = [r[0] for r in runs], [r[1] for r in runs]
    print(f"| {label} | {runs[0][2]} | {min(wall):.2f} | {statistics.median(wall):.2f} "
          f"| {min(cpu):.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, nargs="+", default=[1000, 3000, 10000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--noop", type=Path, help="a finished checkout: time its no-op plan")
    args = parser.parse_args()
    print("| case | jobs planned | wall, best (s) | wall, median (s) | CPU, best (s) |\n"
          "|---|---|---|---|---|", flush=True)
    if args.noop:
        runs = [plan(args.noop, snakefile=args.noop / "workflow/Snakefile")
                for _ in range(args.repeat)]
        if any(total != "0" for *_, total in runs):
            raise SystemExit(f"{args.noop} is not finished: it plans {runs[0][2]} jobs")
        measure(f"no-op rerun of {args.noop}", runs)
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for n_files in args.files:
            for inject in (False, True):
                config = sample_config(work, n_files, inject)
                runs = [plan(work, "--configfile", str(config)) for _ in range(args.repeat)]
                measure(f"{n_files} files, inject {'on' if inject else 'off'}", runs)


if __name__ == "__main__":
    main()
