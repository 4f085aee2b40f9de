"""Per-stage time and memory of a finished run, from the records Snakemake's `benchmark:`
directive writes for every job (`logs/benchmarks/<stage>/<job>.tsv`).

    .venv/bin/python benchmarks/stage_times.py [CHECKOUT]

Prints a Markdown table: per stage, the number of jobs, their summed and longest wall time,
their summed CPU time and the largest peak RSS of one job. Jobs run in parallel, so the
summed wall time exceeds the run's.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

STAGES = ("generate", "fetch", "dump", "merge", "inspect", "preprocess", "train", "export",
          "evaluate", "compare", "inject")


def read(path: Path) -> dict[str, float]:
    """One job's record: wall seconds (s), CPU seconds (cpu_time), peak RSS in MB (max_rss)."""
    with path.open() as f:
        row = next(csv.DictReader(f, delimiter="\t"))
    return {key: float(row[key]) if row.get(key) not in (None, "", "-") else 0.0
            for key in ("s", "cpu_time", "max_rss")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", nargs="?", type=Path, default=Path("."))
    folder = parser.parse_args().checkout / "logs" / "benchmarks"
    print("| stage | jobs | wall, summed (s) | wall, longest job (s) | CPU, summed (s) "
          "| peak RSS, largest (MB) |\n|---|---|---|---|---|---|")
    for stage in STAGES:
        records = [read(p) for p in sorted((folder / stage).rglob("*.tsv"))]
        if records:
            print(f"| {stage} | {len(records)} | {sum(r['s'] for r in records):.1f} "
                  f"| {max(r['s'] for r in records):.1f} "
                  f"| {sum(r['cpu_time'] for r in records):.1f} "
                  f"| {max(r['max_rss'] for r in records):.0f} |")


if __name__ == "__main__":
    main()
