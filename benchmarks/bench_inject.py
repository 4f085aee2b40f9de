"""Benchmark of the inject stage against the bare I/O it cannot avoid, in one run.

    .venv/bin/python benchmarks/bench_inject.py --events 2000 [--repeat 3]

Writes a synthetic ntuple (tests/factories.py, the generated schema) and its dump, then times,
interleaved and best of ``--repeat``: (A) the I/O floor: the ntuple's eventNumber + jet_pt read
with uproot and the network's inputs read from the dump h5; (B) `inject` with a DL1r-sized MLP
(5 jet inputs, 72-57-60-48-36-24-12 hidden); (C) `inject` with a DIPS-sized deep-sets network
(per track 100-100-128, then 100-100-100-30). Prints events/s and jets/s and B/A, C/A.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import uproot

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from factories import write_ntuple  # noqa: E402

from flavourflow.dump import core as dump_core  # noqa: E402
from flavourflow.dump import ntuple as nt  # noqa: E402
from flavourflow.inject import core  # noqa: E402

JET_VARS = ["pt", "eta", "ip2d_llr", "sv_sig", "sv_mass"]
TRACK_VARS = ["IP3D_signed_d0_significance", "IP3D_signed_z0_significance", "ptfrac", "dr"]


def _dense(rng, n_in: int, n_out: int, activation: str) -> dict:
    return {"architecture": "dense", "weights": rng.normal(0, 1 / np.sqrt(n_in), n_in * n_out)
            .tolist(), "bias": np.zeros(n_out).tolist(), "activation": activation}


def _variables(names: list[str]) -> list[dict]:
    return [{"name": n, "offset": 0.0, "scale": 1e-5 if n == "pt" else 0.3, "default": 0.0}
            for n in names]


def mlp_network(rng, hidden: list[int]) -> dict:
    widths = [len(JET_VARS), *hidden]
    layers = [_dense(rng, a, b, "rectified") for a, b in zip(widths, widths[1:], strict=False)]
    layers.append(_dense(rng, widths[-1], 3, "softmax"))
    nodes = [{"type": "input", "sources": [0], "size": len(JET_VARS)}]
    nodes += [{"type": "feed_forward", "sources": [i], "layer_index": i}
              for i in range(len(layers))]
    return {"inputs": [{"name": "jets", "variables": _variables(JET_VARS)}],
            "input_sequences": [], "layers": layers, "nodes": nodes,
            "outputs": {"net": {"node_index": len(nodes) - 1, "labels": ["pu", "pc", "pb"]}}}


def dips_network(rng) -> dict:
    phi = [len(TRACK_VARS), 100, 100, 128]
    f = [128 + len(JET_VARS), 100, 100, 100, 30]
    layers = [_dense(rng, a, b, "rectified") for a, b in zip(phi, phi[1:], strict=False)]
    layers += [_dense(rng, a, b, "rectified") for a, b in zip(f, f[1:], strict=False)]
    layers.append(_dense(rng, 30, 3, "softmax"))
    nodes = [{"type": "input_sequence", "sources": [0], "size": len(TRACK_VARS)}]
    nodes += [{"type": "time_distributed", "sources": [i], "layer_index": i} for i in range(3)]
    nodes += [{"type": "sum", "sources": [3]}, {"type": "input", "sources": [0], "size": 5},
              {"type": "concatenate", "sources": [4, 5]}]
    for k in range(3, len(layers)):
        nodes.append({"type": "feed_forward", "sources": [len(nodes) - 1], "layer_index": k})
    return {"inputs": [{"name": "jets", "variables": _variables(JET_VARS)}],
            "input_sequences": [{"name": "tracks", "variables": _variables(TRACK_VARS)}],
            "layers": layers, "nodes": nodes,
            "outputs": {"net": {"node_index": len(nodes) - 1, "labels": ["pu", "pc", "pb"]}}}


def io_floor(root: Path, dump: Path, step_size: int) -> None:
    tree = uproot.open(root)["events"]
    for _ in tree.iterate(["eventNumber", "jet_pt"], step_size=step_size, library="ak"):
        pass
    with h5py.File(dump) as f:
        f["jets"].fields(["eventNumber", "jetIndex", *JET_VARS])[...]
        f["tracks"].fields([*TRACK_VARS, "valid"])[...]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--step-size", type=int, default=10_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = write_ntuple(work / "sample.root", args.events, seed=1)
        dump = work / "sample.h5"
        n_dumped = dump_core.run(root, dump, nt.Selection(20_000.0, 2.5), max_tracks=40,
                                 step_size=args.step_size)
        nets = {"DL1r-sized MLP": mlp_network(rng, [72, 57, 60, 48, 36, 24, 12]),
                "DIPS-sized deep sets": dips_network(rng)}
        paths = {}
        for i, (name, net) in enumerate(nets.items()):
            paths[name] = work / f"net{i}.json"
            paths[name].write_text(json.dumps(net))
        best = {name: np.inf for name in ["I/O floor", *nets]}
        summary = {}
        for _ in range(args.repeat):
            start = time.perf_counter()
            io_floor(root, dump, args.step_size)
            best["I/O floor"] = min(best["I/O floor"], time.perf_counter() - start)
            for name, path in paths.items():
                start = time.perf_counter()
                summary = core.run(root, dump, path, work / "f.root", work / "f.h5", "net",
                                   0.018, step_size=args.step_size)
                best[name] = min(best[name], time.perf_counter() - start)
        with h5py.File(dump) as f:
            tracks = int(f["tracks"]["valid"].sum())
    print(f"{args.events} events, {summary['n_jets']} jets ({n_dumped} dumped, {tracks} tracks),"
          f" step {args.step_size}, best of {args.repeat}")
    for name, seconds in best.items():
        ratio = "" if name == "I/O floor" else f"  {seconds / best['I/O floor']:5.1f} x I/O"
        print(f"  {name:22s} {seconds:7.3f} s  {args.events / seconds:9.0f} events/s"
              f"  {n_dumped / seconds:9.0f} jets/s{ratio}")


if __name__ == "__main__":
    main()
