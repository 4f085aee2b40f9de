"""Benchmark of the generate stage against Pythia alone, on one core.

    .venv/bin/python benchmarks/bench_generate.py --events 2000 [--process ttbar]

Two Pythia instances with the same seed (hence the very same events) run interleaved, batch
by batch, so that a change of machine load hits both alike: (A) ``pythia.next()`` alone;
(B) the stage's own steps, as ``run_shard`` chains them: nextBatch generation, readout to
numpy, clustering, labels + tracks ("features"), ROOT writing. Prints events/s, labelled
jets/s, their ratio and the split of the stage's time. Initialisation and one warm-up batch
(first-call imports) are excluded from both. ``--naive N`` also times a per-particle Python
readout loop over N events, for comparison.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from flavourflow.generate.cli import BASKET_EVENTS, BATCH_EVENTS, process_batch
from flavourflow.generate.pythia import (
    ChargeTable,
    ShardConfig,
    derive_seed,
    make_pythia,
    next_batch,
    to_particles,
)
from flavourflow.generate.writer import Block, ShardWriter

WARMUP_EVENTS = 20


def naive_readout(config: ShardConfig) -> tuple[float, float]:
    """(next() seconds, per-particle Python readout seconds) for ``config.events`` events."""
    pythia = make_pythia(config)
    t_gen = t_read = 0.0
    for _ in range(config.events):
        t0 = time.perf_counter()
        pythia.next()
        t1 = time.perf_counter()
        rows = [(p.id(), p.px(), p.py(), p.pz(), p.e(), p.xProd(), p.yProd(), p.zProd())
                for p in pythia.event if p.isFinal()]
        t_read += time.perf_counter() - t1
        t_gen += t1 - t0
        del rows
    return t_gen, t_read


def run(config: ShardConfig, output: Path) -> tuple[float, dict[str, float], int]:
    """(seconds of next() alone, seconds per stage step, stored jets) over the events."""
    alone = make_pythia(config)
    stage = make_pythia(config)
    charges = ChargeTable(stage.particleData)
    rng = np.random.default_rng(derive_seed(config.seed, config.shard, "tracks"))
    for _ in range(WARMUP_EVENTS):
        alone.next()
    process_batch(to_particles(next_batch(stage, WARMUP_EVENTS)), config, charges, rng, 0)

    t_alone = 0.0
    times: dict[str, float] = {}
    clock = [0.0]

    def lap(name: str) -> None:
        now = time.perf_counter()
        times[name] = times.get(name, 0.0) + now - clock[0]
        clock[0] = now

    n_jets = done = 0
    pending: list[Block] = []
    with ShardWriter(output) as writer:
        while done < config.events:
            n = min(BATCH_EVENTS, config.events - done)
            start = time.perf_counter()
            for _ in range(n):
                alone.next()
            clock[0] = time.perf_counter()
            t_alone += clock[0] - start
            batch = next_batch(stage, n)
            lap("pythia")
            particles = to_particles(batch)
            del batch
            lap("readout")
            block = process_batch(particles, config, charges, rng, done, lap)
            n_jets += len(block.jets["pt"])
            pending.append(block)
            done += n
            if sum(len(b) for b in pending) >= BASKET_EVENTS or done == config.events:
                writer.write(Block.concatenate(pending))
                pending = []
            lap("writing")
        clock[0] = time.perf_counter()
    lap("writing")  # file close
    return t_alone, times, n_jets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--process", default="ttbar")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--naive", type=int, default=0, help="events for the naive readout")
    args = parser.parse_args()
    config = ShardConfig(process=args.process, events=args.events, seed=args.seed, shard=0)
    config.validate()

    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "bench.root"
        t_alone, times, n_jets = run(config, output)
        size_mb = output.stat().st_size / 1e6
    t_stage = sum(times.values())
    rate_alone = config.events / t_alone
    rate_stage = config.events / t_stage
    print(f"{config.process}, {config.events} events, 1 core, interleaved batches of "
          f"{BATCH_EVENTS}")
    print(f"pythia.next() alone : {rate_alone:8.1f} events/s")
    print(f"generate stage      : {rate_stage:8.1f} events/s, {n_jets / t_stage:8.1f} "
          f"labelled jets/s ({n_jets / config.events:.2f} jets/event, {size_mb:.2f} MB)")
    print(f"ratio stage / alone : {rate_stage / rate_alone:8.3f}")
    print("time split of the stage (ms/event, share):")
    for name, seconds in times.items():
        print(f"  {name:<11s} {1e3 * seconds / config.events:7.3f}  {seconds / t_stage:6.1%}")
    print(f"  (pythia.next() alone {1e3 * t_alone / config.events:7.3f} ms/event)")
    if args.naive:
        naive = ShardConfig(process=args.process, events=args.naive, seed=args.seed)
        t_gen, t_read = naive_readout(naive)
        print(f"naive per-particle Python readout of final-state entries: "
              f"{1e3 * t_read / args.naive:.3f} ms/event vs next() "
              f"{1e3 * t_gen / args.naive:.3f} ms/event")


if __name__ == "__main__":
    main()
