"""Which HDF5 filter for the dumps: write and read speed and size of h5py's built-in filters
(with and without the byte shuffle) on realistic dumps, measured side by side in one run.

    .venv/bin/python benchmarks/bench_compression.py [--copies 50] [--events 10000]

Two dumps (40 track slots per jet): (1) real ATLAS PHYSLITE, the Run 3 test file tiled
``--copies`` times (benchmarks/physlite_input.py; few tracks survive PHYSLITE's thinning, so
most slots are padding); (2) the generated schema (tests/factories.py, 0-15 tracks per jet).
Each is written block by block as the dump stage writes it (TDDWriter, 5000 jets per append)
with each filter, then read back whole (`jets` and `tracks`) and column-wise (5 jet fields, as
preprocessing reads them). Files live in one temporary folder, reads come from the page cache
(decompression cost, not disk speed). Best of ``--repeat``. Prints MB/s of the uncompressed
data and the compression ratio. ``lzf (ours)``: the same LZF filter, the chunks encoded by
flavourflow (flavourflow.dump.lzf; `tracks`: padding as back-references, `jets`: copies of
the bytes one row back), what the dump writes by default.
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
sys.path.insert(0, str(ROOT / "benchmarks"))

from factories import write_ntuple  # noqa: E402
from physlite_input import write_tiled  # noqa: E402

from flavourflow.dump import core  # noqa: E402
from flavourflow.dump.blocks import Selection  # noqa: E402
from flavourflow.dump.h5 import TDDWriter  # noqa: E402

#: (filter, byte shuffle, flavourflow's padding encoder for lzf `tracks`) candidates: h5py's
#: built-in filters only (no hdf5plugin needed by readers of the dumps).
FILTERS = (("none", False, False), ("lzf", True, False), ("lzf", False, False),
           ("lzf", False, True), ("gzip-1", True, False), ("gzip-1", False, False),
           ("gzip-4", True, False), ("gzip-4", False, False), ("gzip-6", False, False))
APPEND_JETS = 5000
JET_COLUMNS = ["pt", "eta", "ip2d_llr", "sv_sig", "HadronConeExclTruthLabelID"]


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        return f["jets"][...], f["tracks"][...]


def measure(jets: np.ndarray, tracks: np.ndarray, path: Path, compression: str,
            shuffle: bool, encoder: bool) -> dict:
    t0 = time.perf_counter()
    writer = TDDWriter(path, compression, shuffle=shuffle, padding_encoder=encoder)
    for start in range(0, len(jets), APPEND_JETS):
        writer.append(jets[start:start + APPEND_JETS], tracks[start:start + APPEND_JETS])
    writer.close()
    t_write = time.perf_counter() - t0
    t0 = time.perf_counter()
    with h5py.File(path, "r") as f:
        f["jets"][...]
        f["tracks"][...]
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    with h5py.File(path, "r") as f:
        f["jets"].fields(JET_COLUMNS)[...]
    t_columns = time.perf_counter() - t0
    return {"write": t_write, "read": t_read, "columns": t_columns,
            "size": path.stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=50, help="Run 3 file copies (100 each)")
    parser.add_argument("--events", type=int, default=10000, help="generated-schema events")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inputs = {}
        physlite, _ = write_tiled(work / "physlite.root", args.copies)
        core.run(physlite, work / "physlite.h5", Selection(20_000.0, 2.5), 40, 5000, "none",
                 fmt="physlite")
        inputs["PHYSLITE (Run 3, tiled)"] = load(work / "physlite.h5")
        generated = write_ntuple(work / "generated.root", args.events, seed=1)
        core.run(generated, work / "generated.h5", Selection(20_000.0, 2.5), 40, 5000, "none")
        inputs["generated schema"] = load(work / "generated.h5")
        for label, (jets, tracks) in inputs.items():
            raw = jets.nbytes + tracks.nbytes
            valid = tracks["valid"].mean() * tracks.shape[1]
            print(f"\n{label}: {len(jets)} jets, {valid:.1f} of {tracks.shape[1]} track slots "
                  f"used per jet, {raw / 1e6:.0f} MB uncompressed")
            print(f"{'filter':16s} {'write MB/s':>10s} {'read MB/s':>10s} "
                  f"{'5 jet cols ms':>13s} {'size MB':>8s} {'ratio':>6s}")
            best: dict[str, dict] = {}
            for _ in range(args.repeat):  # interleaved: load changes hit every filter alike
                for compression, shuffle, encoder in FILTERS:
                    label = compression + (" +shuffle" if shuffle else "") + (
                        " (ours)" if encoder else "")
                    m = measure(jets, tracks, work / "out.h5", compression, shuffle, encoder)
                    old = best.setdefault(label, m)
                    for key in ("write", "read", "columns"):
                        old[key] = min(old[key], m[key])
            for label, m in best.items():
                print(f"{label:16s} {raw / m['write'] / 1e6:10.0f} "
                      f"{raw / m['read'] / 1e6:10.0f} {m['columns'] * 1e3:13.1f} "
                      f"{m['size'] / 1e6:8.1f} {raw / m['size']:6.1f}")


if __name__ == "__main__":
    main()
