"""Benchmark of the preprocess stage against UPP (umami-preprocessing), side by side.

    .venv/bin/python benchmarks/bench_preprocess.py --input results/merge/ttbar.h5 \
        --upp /tmp/upp-venv/bin/preprocess [--repeats 3] [--scale 4]

UPP goes in a virtual environment of its own (it pins its own numpy, h5py, pandas):
``python -m venv /tmp/upp-venv && /tmp/upp-venv/bin/pip install umami-preprocessing``.

Both tools run as separate processes on the same dump h5, alternately (ours, UPP, ours, ...)
so that a change of machine load hits both alike, on the same job: every labelled jet (b, c,
light) of the file, split into train/val/test by event number (ours: seeded hash, 70/10/20;
UPP: eventNumber % 10, 7/1/2), the same jet and track inputs (all tracks of the dump),
normalisation statistics from the training split, all three splits written (ours: shuffled
`.npy` memmaps, normalised; UPP: h5 files, plus its norm dict), no plots. ``--method`` picks
the resampling: ``none`` for both, or ``pdf`` (ours: each flavour to the b-jets' (pT, |eta|)
density; UPP: its pdf method with the b-jets as target, in (pT, eta) bins as it needs a
stored field; the two differ in detail, so this one compares like with nearly like).
jets/s = labelled jets in the file / wall-clock seconds of the whole command (interpreter
start included); peak RSS from ``wait4`` of each process, and its peak anonymous RSS
(sampled from /proc: RSS less the file-backed pages of the memmaps being written, which the
kernel writes back and reclaims; what must fit in RAM).

``--scale K [K ...]`` then runs ours once more on the file replicated K times (event numbers
shifted) to show that its peak memory does not grow with the number of jets.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import yaml

JET_VARIABLES = ["pt", "eta", "ip2d_llr", "sv_sig", "sv_mass", "n_tracks"]
TRACK_VARIABLES = ["IP3D_signed_d0_significance", "IP3D_signed_z0_significance", "ptfrac",
                   "dr", "d0Uncertainty", "z0SinThetaUncertainty"]
LABEL = "HadronConeExclTruthLabelID"
BLOCK = 100_000
PT_BINS = [20e3, 30e3, 40e3, 60e3, 80e3, 100e3, 150e3, 250e3, 500e3, 1000e3]
ETA_BINS = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]


def _rss_anon_mb(pid: int) -> float:
    """The process's anonymous resident memory (MB): RSS less file-backed pages, such as
    those of memmaps being written, which the kernel writes back and reclaims at will."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def timed(command: list[str], log: Path) -> tuple[float, float, float]:
    """(wall seconds, peak RSS in MB, peak anonymous RSS in MB, sampled every 20 ms) of
    ``command`` run as a child process."""
    with open(log, "w") as stream:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT)
        anon = 0.0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            anon = max(anon, _rss_anon_mb(proc.pid))
            time.sleep(0.02)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{command[0]} failed ({proc.returncode}); see {log}:\n"
                         + log.read_text()[-3000:])
    return wall, usage.ru_maxrss / 1024, anon


def ours_command(source: Path, out: Path, method: str) -> list[str]:
    resampling = {"method": method, "target": "bottom", "pt_bins": PT_BINS,
                  "abs_eta_bins": ETA_BINS}
    return [sys.executable, "-m", "flavourflow", "preprocess", "--input", str(source),
            "--outdir", str(out), "--model", "bench", "--variables", *JET_VARIABLES,
            "--track-variables", *TRACK_VARIABLES, "--resampling", json.dumps(resampling),
            "--fractions", json.dumps({"train": 0.7, "val": 0.1, "test": 0.2}),
            "--split-seed", "1", "--shuffle-seed", "2", "--block-size", str(BLOCK),
            "--no-plots"]


def upp_config(source: Path, work: Path, method: str) -> Path:
    """A UPP config doing the same job on ``source`` (linked into its ntuple directory)."""
    ntuples = work / "ntuples"
    ntuples.mkdir(parents=True, exist_ok=True)
    link = ntuples / source.name
    if not link.exists():
        link.symlink_to(source.resolve())
    resampling: dict = {"method": "none"}
    if method == "pdf":
        def bins(edges: list[float]) -> list[list[float]]:
            return [[float(a), float(b), 1] for a, b in zip(edges[:-1], edges[1:],
                                                             strict=True)]
        eta = [-e for e in ETA_BINS[:0:-1]] + ETA_BINS  # UPP needs a field: eta, mirrored
        resampling = {"method": "pdf", "target": "bjets", "sampling_fraction": "auto",
                      "variables": {"pt": {"bins": bins(PT_BINS)},
                                    "eta": {"bins": bins(eta)}}}
    config = {
        "global_cuts": {"train": [["eventNumber", "%10<=", 6]],
                        "val": [["eventNumber", "%10==", 7]],
                        "test": [["eventNumber", "%10>=", 8]]},
        "components": [{
            "region": {"name": "all", "cuts": [["pt", ">", 0]]},
            "sample": {"name": "sample", "pattern": source.name},
            "flavours": ["bjets", "cjets", "ujets"],
            "num_global_objects": -1,
        }],
        "resampling": resampling,
        "global": {"batch_size": BLOCK, "num_global_objects_estimate": 10_000_000,
                   "num_global_objects_estimate_available": -1, "base_dir": str(work),
                   "out_dir": "out", "ntuple_dir": "ntuples"},
        "variables": {"jets": {"inputs": JET_VARIABLES, "labels": [LABEL, "eventNumber"]},
                      "tracks": {"inputs": TRACK_VARIABLES}},
    }
    path = work / "upp.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def replicate(source: Path, target: Path, times: int) -> None:
    """``source`` concatenated ``times`` times, event numbers shifted (streamed, chunked)."""
    with h5py.File(source) as src, h5py.File(target, "w") as out:
        n = len(src["jets"])
        shift = int(src["jets"]["eventNumber"].max()) + 1
        for name in ("jets", "tracks"):
            ds = src[name]
            out.create_dataset(name, shape=(n * times, *ds.shape[1:]), dtype=ds.dtype,
                               chunks=ds.chunks, compression="lzf")
        for k in range(times):
            for start in range(0, n, BLOCK):
                stop = min(start + BLOCK, n)
                jets = src["jets"][start:stop]
                jets["eventNumber"] += k * shift
                out["jets"][k * n + start : k * n + stop] = jets
                out["tracks"][k * n + start : k * n + stop] = src["tracks"][start:stop]


def labelled_jets(source: Path) -> int:
    with h5py.File(source) as f:
        labels = f["jets"].fields([LABEL])[:][LABEL]
    return int(np.isin(labels, [0, 4, 5]).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True, help="merged dump h5")
    parser.add_argument("--upp", default="/tmp/upp-venv/bin/preprocess",
                        help="UPP's `preprocess` executable")
    parser.add_argument("--method", choices=["none", "pdf"], default="none")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=int, nargs="*", default=[],
                        help="also run ours on the file replicated K times, for each K")
    args = parser.parse_args()

    n_jets = labelled_jets(args.input)
    with tempfile.TemporaryDirectory(prefix="bench_pp_") as tmp:
        tmp = Path(tmp)
        config = upp_config(args.input, tmp / "upp", args.method)
        times: dict[str, list[float]] = {"ours": [], "upp": []}
        rss: dict[str, list[float]] = {"ours": [], "upp": []}
        anon: dict[str, list[float]] = {"ours": [], "upp": []}
        for r in range(args.repeats):
            for tool in ("ours", "upp"):
                if tool == "ours":
                    command = ours_command(args.input, tmp / f"ours{r}", args.method)
                else:
                    command = [args.upp, "--config", str(config), "--split", "all",
                               "--no-plot"]
                wall, peak, peak_anon = timed(command, tmp / f"{tool}{r}.log")
                times[tool].append(wall)
                rss[tool].append(peak)
                anon[tool].append(peak_anon)
                print(f"  run {r} {tool:4s}: {wall:6.2f} s, peak RSS {peak:6.0f} MB "
                      f"(anonymous {peak_anon:6.0f} MB)", flush=True)
        print(f"\n{n_jets} labelled jets ({args.input}), jet inputs {len(JET_VARIABLES)}, "
              f"track inputs {len(TRACK_VARIABLES)}, resampling {args.method}, "
              f"median of {args.repeats}:")
        rate = {}
        for tool in ("ours", "upp"):
            wall = statistics.median(times[tool])
            rate[tool] = n_jets / wall
            print(f"  {tool:4s}: {wall:6.2f} s  {rate[tool]:9.0f} jets/s  "
                  f"peak RSS {max(rss[tool]):6.0f} MB (anonymous {max(anon[tool]):6.0f} MB)")
        print(f"  jets/s ours / UPP = {rate['ours'] / rate['upp']:.2f}")

        for k in args.scale:
            big = tmp / f"replicated{k}.h5"
            replicate(args.input, big, k)
            wall, peak, peak_anon = timed(ours_command(big, tmp / f"ours_x{k}", args.method),
                                          tmp / f"x{k}.log")
            print(f"  ours on {k:2d}x the jets ({n_jets * k:8d}): {wall:6.2f} s "
                  f"{n_jets * k / wall:9.0f} jets/s  peak RSS {peak:6.0f} MB "
                  f"(anonymous {peak_anon:6.0f} MB)")
            big.unlink()
            for path in (tmp / f"ours_x{k}").glob("*.npy"):
                path.unlink()

if __name__ == "__main__":
    main()
