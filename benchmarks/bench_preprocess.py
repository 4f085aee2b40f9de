"""Benchmark of the preprocess stage against UPP (umami-preprocessing 0.3.3) on the same job.

    .venv/bin/python benchmarks/bench_preprocess.py --input results/merge/ttbar.h5 \
        --upp /tmp/upp-venv/bin/preprocess [--methods none countup pdf] [--repeats 3] \
        [--scale 1 20] [--workdir /tmp]

UPP goes in a virtual environment of its own (it pins its own numpy, h5py, pandas):
``python -m venv /tmp/upp-venv && /tmp/upp-venv/bin/pip install umami-preprocessing==0.3.3``.

For each ``--scale K`` the dump is replicated K times (event numbers shifted; K = 1: the file
itself) into ``--workdir``, and both tools run on that file, as separate processes, in
alternating rounds (ours first in even rounds, UPP first in odd ones), so that a change of
machine load hits both alike. The job is the same on both sides:

* input rows: every b, c and light jet of the file (taus and other labels left out);
* variables: the same jet and track inputs, all tracks of the dump;
* split: train/val/test 70/10/20 by event number (ours: seeded hash; UPP: eventNumber % 10);
* output rows per class: both write each flavour's own number of jets (resampling changes
  their kinematics, not their count); the rows each wrote per class are printed side by side;
* normalisation statistics from the training split; all three splits written; no plots.

Each UPP method is paired with the nearest flavourflow method (printed with what differs):
``none`` -> ``none``; ``countup`` and ``pdf`` -> ``pdf`` to the b-jets' (pT, |eta|) density,
uncapped (``max_upsampling`` 1e6, as UPP caps nothing), each flavour keeping its total.

Reported per tool, as min / median / max over the rounds: wall seconds, CPU seconds (user +
system, from ``wait4``), jets/s of the whole command, jets/s after start-up (input jets /
(median wall - median start-up wall)), peak RSS and peak anonymous RSS (sampled from /proc
every 20 ms: RSS less the file-backed pages of outputs being written, which the kernel
writes back and reclaims; what must fit in RAM); and the ratio ours / UPP of jets/s per
round. Start-up is measured apart (``--startup-only``: that alone): each tool on the first
``--startup-jets`` jets of the input (imports, config, file opening, a few blocks),
alternating, ``--repeats`` times.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import yaml

JET_VARIABLES = ["pt", "eta", "ip2d_llr", "sv_sig", "sv_mass", "n_tracks"]
TRACK_VARIABLES = ["IP3D_signed_d0_significance", "IP3D_signed_z0_significance", "ptfrac",
                   "dr", "d0Uncertainty", "z0SinThetaUncertainty"]
LABEL = "HadronConeExclTruthLabelID"
#: Truth label -> (flavourflow class name, UPP class name).
FLAVOURS = {5: ("bottom", "bjets"), 4: ("charm", "cjets"), 0: ("light", "ujets")}
BLOCK = 100_000
PT_BINS = [20e3, 30e3, 40e3, 60e3, 80e3, 100e3, 150e3, 250e3, 500e3, 1000e3]
ETA_BINS = [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
#: flavourflow's method nearest to each of UPP's, and what differs.
PAIRS = {
    "none": ("none", "none: identical jobs (every labelled jet once)"),
    "countup": ("pdf", "UPP countup: per block, each bin gets target-pdf x block jets, the "
                "first jets of the bin then random repeats; ours pdf: each jet written floor(r) "
                "or floor(r)+1 times (hash of event, jet), r = N_f p_b(bin) / n_f(bin), uncapped"),
    "pdf": ("pdf", "UPP pdf: per block, jets drawn with replacement with probability "
            "p_b(bin) / p_f(bin); ours pdf: floor(r) or floor(r)+1 copies, r as for countup"),
}
COMMON_DIFFERENCES = (
    "both: b, c, light jets; same inputs; 70/10/20 by event number (ours seeded hash, UPP "
    "eventNumber % 10); ours resamples train and val from the train histograms in (pT, |eta|) "
    "bins, UPP every split in (pT, eta) bins mirrored about 0 (it bins a stored field); ours "
    "writes normalised float32 .npy once (inputs, labels, weights, track mask), UPP writes "
    "LZ4 HDF5 twice (per-flavour components, then merged) with the raw inputs plus its norm "
    "dict; ours shuffles uniformly over the split, UPP within its merge blocks"
)


@dataclass
class Runs:
    """One tool's measurements over the rounds."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    anon: list[float] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)


def _rss_anon_mb(pid: int) -> float:
    """The process's anonymous resident memory (MB), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def timed(command: list[str], log: Path) -> tuple[float, float, float, float]:
    """(wall s, CPU s, peak RSS MB, peak anonymous RSS MB) of ``command`` as a child."""
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
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"{command[0]} failed ({code}); see {log}:\n"
                         + log.read_text()[-3000:])
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, anon


def ours_command(source: Path, out: Path, method: str) -> list[str]:
    resampling = {"method": method, "target": "bottom", "pt_bins": PT_BINS,
                  "abs_eta_bins": ETA_BINS, "max_upsampling": 1e6}
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
    link.unlink(missing_ok=True)
    link.symlink_to(source.resolve())
    resampling: dict = {"method": "none"}
    if method != "none":
        def bins(edges: list[float]) -> list[list[float]]:
            return [[float(a), float(b), 1] for a, b in zip(edges[:-1], edges[1:],
                                                             strict=True)]
        eta = [-e for e in ETA_BINS[:0:-1]] + ETA_BINS  # UPP bins a stored field: eta
        # sampling_fraction 1: every flavour keeps its own number of jets, as ours does
        resampling = {"method": method, "target": "bjets", "sampling_fraction": 1.0,
                      "variables": {"pt": {"bins": bins(PT_BINS)},
                                    "eta": {"bins": bins(eta)}}}
    config = {
        "global_cuts": {"train": [["eventNumber", "%10<=", 6]],
                        "val": [["eventNumber", "%10==", 7]],
                        "test": [["eventNumber", "%10>=", 8]]},
        "components": [{
            "region": {"name": "all", "cuts": [["pt", ">", 0]]},
            "sample": {"name": "sample", "pattern": source.name},
            "flavours": [upp for _, upp in FLAVOURS.values()],
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


def upp_command(upp: str, config: Path) -> list[str]:
    return [upp, "--config", str(config), "--split", "all", "--no-plot"]


def _chunks(ds: h5py.Dataset) -> tuple[int, ...]:
    """The dump's chunk shape (that of a virtual dataset's first source file)."""
    if ds.chunks is not None:
        return ds.chunks
    if ds.is_virtual:
        first = ds.virtual_sources()[0]
        with h5py.File(Path(ds.file.filename).parent / first.file_name) as f:
            return f[first.dset_name].chunks
    raise SystemExit(f"{ds.file.filename}: {ds.name} is neither chunked nor virtual")


def replicate(source: Path, target: Path, times: int, head: int | None = None) -> None:
    """``source`` concatenated ``times`` times, event numbers shifted (streamed; the dump's
    chunks, LZF); ``head``: only the first ``head`` jets, once."""
    with h5py.File(source) as src, h5py.File(target, "w") as out:
        n = len(src["jets"]) if head is None else min(head, len(src["jets"]))
        shift = int(src["jets"].fields(["eventNumber"])[:]["eventNumber"].max()) + 1
        for name in ("jets", "tracks"):
            ds = src[name]
            out.create_dataset(name, shape=(n * times, *ds.shape[1:]), dtype=ds.dtype,
                               chunks=_chunks(ds), maxshape=(None, *ds.shape[1:]),
                               compression="lzf")
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
    return int(np.isin(labels, list(FLAVOURS)).sum())


def ours_rows(out: Path) -> dict[str, int]:
    """Rows ours wrote per class, all splits."""
    names = [ours for ours, _ in FLAVOURS.values()]
    classes = json.loads((out / "variables.json").read_text())["classes"]
    index = {c["name"]: i for i, c in enumerate(classes)}
    total = np.zeros(len(classes), dtype=np.int64)
    for path in out.glob("*_labels.npy"):
        total += np.bincount(np.load(path, mmap_mode="r"), minlength=len(classes))
    return {name: int(total[index[name]]) for name in names}


def upp_rows(work: Path, upp: str) -> dict[str, int]:
    """Rows UPP wrote per class, all splits (its merged outputs, LZ4: read by the Python of
    UPP's environment, which has the filter)."""
    script = (
        "import sys, json, h5py, hdf5plugin, numpy as np\n"
        "labels = [h5py.File(p)['jets'].fields([sys.argv[1]])[:][sys.argv[1]] "
        "for p in sys.argv[2:]]\n"
        "print(json.dumps(np.unique(np.concatenate(labels), return_counts=True)[1].tolist() "
        "and dict(zip(*(a.tolist() for a in np.unique(np.concatenate(labels), "
        "return_counts=True))))))\n")
    files = sorted(str(p) for p in (work / "out").glob("pp_output_*.h5"))
    result = subprocess.run([str(Path(upp).parent / "python"), "-c", script, LABEL, *files],
                            capture_output=True, text=True, check=True)
    counts = {int(k): v for k, v in json.loads(result.stdout).items()}
    return {name: counts.get(label, 0) for label, (name, _) in FLAVOURS.items()}


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    """min / median / max."""
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values),
                                              max(values)))


def startup(args: argparse.Namespace, tmp: Path) -> tuple[dict[str, list[float]],
                                                          dict[str, list[float]]]:
    """Wall and CPU seconds of each tool on the first ``--startup-jets`` jets, alternating."""
    small = tmp / "startup.h5"
    replicate(args.input, small, 1, head=args.startup_jets)
    config = upp_config(small, tmp / "upp_startup", "none")
    walls: dict[str, list[float]] = {"ours": [], "upp": []}
    cpus: dict[str, list[float]] = {"ours": [], "upp": []}
    for r in range(args.repeats):
        for tool in ("ours", "upp") if r % 2 == 0 else ("upp", "ours"):
            out = tmp / f"startup_{tool}"
            command = (ours_command(small, out, "none") if tool == "ours"
                       else upp_command(args.upp, config))
            wall, cpu, _, _ = timed(command, tmp / f"startup_{tool}.log")
            walls[tool].append(wall)
            cpus[tool].append(cpu)
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(tmp / "upp_startup" / "out", ignore_errors=True)
    small.unlink()
    return walls, cpus


def compare(args: argparse.Namespace, source: Path, method: str, tmp: Path,
            start: dict[str, float]) -> None:
    """Both tools on ``source`` with UPP's ``method`` and ours nearest, in rounds."""
    n_jets = labelled_jets(source)
    ours_method, differs = PAIRS[method]
    config = upp_config(source, tmp / "upp", method)
    runs = {"ours": Runs(), "upp": Runs()}
    for r in range(args.repeats):
        for tool in ("ours", "upp") if r % 2 == 0 else ("upp", "ours"):
            out = tmp / "ours_out"
            command = (ours_command(source, out, ours_method) if tool == "ours"
                       else upp_command(args.upp, config))
            wall, cpu, rss, anon = timed(command, tmp / f"{tool}_{method}_{r}.log")
            run = runs[tool]
            run.wall.append(wall)
            run.cpu.append(cpu)
            run.rss.append(rss)
            run.anon.append(anon)
            run.rows = ours_rows(out) if tool == "ours" else upp_rows(tmp / "upp", args.upp)
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(tmp / "upp" / "out", ignore_errors=True)
            print(f"    round {r} {tool:4s}: {wall:7.2f} s wall, {cpu:7.2f} s CPU, peak RSS "
                  f"{rss:5.0f} MB (anonymous {anon:5.0f} MB)", flush=True)
    print(f"\n  {n_jets} labelled jets x {args.tracks} tracks ({source.name}); UPP {method} "
          f"vs ours {ours_method}; {args.repeats} rounds, min / median / max:")
    print(f"  differs: {differs}")
    rate = {}
    for tool, run in runs.items():
        rate[tool] = [n_jets / w for w in run.wall]
        net = statistics.median(run.wall) - start[tool]  # (medians: noise can invert them)
        after = f"{n_jets / net:.0f}" if net > 0 else "n/a"
        print(f"  {tool:4s}: wall {spread(run.wall, '{:.1f}')} s, CPU {spread(run.cpu, '{:.1f}')}"
              f" s, {spread(rate[tool])} jets/s ({after} after the median start-up), peak RSS "
              f"{spread(run.rss)} MB, anonymous {spread(run.anon)} MB")
    for name in runs["ours"].rows:
        a, b = runs["ours"].rows[name], runs["upp"].rows[name]
        print(f"  rows written, {name:6s}: ours {a:9d}  UPP {b:9d}  ({a / max(b, 1) - 1:+.2%})")
    ratios = [o / u for o, u in zip(rate["ours"], rate["upp"], strict=True)]
    cpu_ratios = [u / o for o, u in zip(runs["ours"].cpu, runs["upp"].cpu, strict=True)]
    print(f"  ours / UPP jets/s per round: {spread(ratios, '{:.2f}')}; UPP / ours CPU "
          f"seconds: {spread(cpu_ratios, '{:.2f}')}\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True, help="merged dump h5")
    parser.add_argument("--upp", default="/tmp/upp-venv/bin/preprocess",
                        help="UPP's `preprocess` executable")
    parser.add_argument("--methods", nargs="+", choices=list(PAIRS), default=list(PAIRS),
                        help="UPP's resampling methods (ours: the nearest)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=int, nargs="+", default=[1],
                        help="run both tools on the input replicated K times, for each K")
    parser.add_argument("--startup-jets", type=int, default=2000)
    parser.add_argument("--startup-only", action="store_true",
                        help="measure the start-up only")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the replicated inputs and outputs go (default: $TMPDIR)")
    args = parser.parse_args()
    with h5py.File(args.input) as f:
        args.tracks = f["tracks"].shape[1]

    with tempfile.TemporaryDirectory(prefix="bench_pp_", dir=args.workdir) as tmp:
        tmp = Path(tmp)
        walls, cpus = startup(args, tmp)
        start = {tool: statistics.median(w) for tool, w in walls.items()}
        print(f"start-up ({args.startup_jets} jets, {args.repeats} runs, min / median / max): "
              f"ours {spread(walls['ours'], '{:.2f}')} s wall, {spread(cpus['ours'], '{:.2f}')} s "
              f"CPU; UPP {spread(walls['upp'], '{:.2f}')} s wall, "
              f"{spread(cpus['upp'], '{:.2f}')} s CPU")
        if args.startup_only:
            return
        print(f"common to every comparison: {COMMON_DIFFERENCES}\n", flush=True)
        for k in args.scale:
            source = args.input
            if k != 1:
                source = tmp / f"replicated{k}.h5"
                replicate(args.input, source, k)
            for method in args.methods:
                compare(args, source, method, tmp, start)
            if k != 1:
                source.unlink()


if __name__ == "__main__":
    main()
