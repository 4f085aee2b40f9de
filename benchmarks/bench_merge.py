"""Merge as a copy (concatenation) or as an HDF5 virtual dataset: time to merge, size, and
how fast the merged sample reads back, measured side by side in one run.

    .venv/bin/python benchmarks/bench_merge.py [--files 8] [--events 5000] [--repeat 3]

``--files`` dumps of the generated schema (tests/factories.py, ``--events`` events each, 40
track slots, the default filter) are merged both ways, then read back as the later stages
read: sequentially in blocks of 100 000 jets (preprocess, inspect), 5 jet fields only, and
200 random batches of 1000 jets (a shuffling loader). Reads come from the page cache. Best of
``--repeat``, interleaved.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from factories import write_ntuple  # noqa: E402

from flavourflow.dump import core as dump  # noqa: E402
from flavourflow.dump.blocks import Selection  # noqa: E402
from flavourflow.merge import core as merge  # noqa: E402

BLOCK = 100_000
COLUMNS = ["pt", "eta", "ip2d_llr", "sv_sig", "HadronConeExclTruthLabelID"]


def read_all(path: Path) -> float:
    t0 = time.perf_counter()
    with h5py.File(path, "r") as f:
        for start in range(0, len(f["jets"]), BLOCK):
            f["jets"][start:start + BLOCK]
            f["tracks"][start:start + BLOCK]
    return time.perf_counter() - t0


def read_columns(path: Path) -> float:
    t0 = time.perf_counter()
    with h5py.File(path, "r") as f:
        f["jets"].fields(COLUMNS)[...]
    return time.perf_counter() - t0


def read_random(path: Path, rng: np.random.Generator) -> float:
    t0 = time.perf_counter()
    with h5py.File(path, "r") as f:
        n = len(f["jets"])
        for start in rng.integers(0, n - 1000, 200):
            f["jets"][start:start + 1000]
            f["tracks"][start:start + 1000]
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "dump").mkdir()
        parts = []
        for k in range(args.files):
            root = write_ntuple(work / f"part{k}.root", args.events, seed=k,
                                first_event=k * args.events)
            parts.append(work / "dump" / f"part{k}.h5")
            dump.run(root, parts[-1], Selection(20_000.0, 2.5), 40, 2000)
        n_jets = sum(h5py.File(p, "r")["jets"].shape[0] for p in parts)
        parts_mb = sum(p.stat().st_size for p in parts) / 1e6
        best: dict[str, dict[str, float]] = {}
        for _ in range(args.repeat):
            for layout in merge.LAYOUTS:
                out = work / "merge" / f"{layout}.h5"
                t0 = time.perf_counter()
                merge.run(parts, out, layout=layout)
                m = {"merge": time.perf_counter() - t0, "all": read_all(out),
                     "columns": read_columns(out),
                     "random": read_random(out, np.random.default_rng(1)),
                     "size": out.stat().st_size / 1e6}
                old = best.setdefault(layout, m)
                for key, value in m.items():
                    old[key] = min(old[key], value)
        print(f"{args.files} dumps, {n_jets} jets, {parts_mb:.1f} MB on disk")
        print(f"{'layout':8s} {'merge s':>8s} {'extra MB':>9s} {'read all s':>10s} "
              f"{'5 cols s':>9s} {'200x1000 random s':>18s}")
        for layout, m in best.items():
            print(f"{layout:8s} {m['merge']:8.3f} {m['size']:9.1f} {m['all']:10.3f} "
                  f"{m['columns']:9.3f} {m['random']:18.3f}")


if __name__ == "__main__":
    main()
