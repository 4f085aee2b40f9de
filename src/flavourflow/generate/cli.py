"""`flavourflow generate`: one shard of Pythia 8 events -> jets, labels, tracks -> ROOT."""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from flavourflow.core import progress
from flavourflow.core.flavours import GeV
from flavourflow.core.outputs import atomic_path
from flavourflow.generate import jets as jetlib
from flavourflow.generate import tracks as tracklib
from flavourflow.generate import truth
from flavourflow.generate.pythia import (
    MAX_EVENTS_PER_SHARD,
    PROCESSES,
    ChargeTable,
    Particles,
    ShardConfig,
    derive_seed,
    make_pythia,
    next_batch,
    to_particles,
)
from flavourflow.generate.writer import Block, ShardWriter, make_block

log = logging.getLogger(__name__)

#: Event numbers are shard * EVENT_NUMBER_STRIDE + i, unique within a sample.
EVENT_NUMBER_STRIDE = MAX_EVENTS_PER_SHARD
#: Events per Pythia batch (bounds memory: a ttbar record is ~2000 entries) and per basket.
BATCH_EVENTS = 250
BASKET_EVENTS = 1000
#: Track-to-jet association cone.
TRACK_DR_MAX = 0.4


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("generate", help="Pythia 8 -> jets, truth labels, tracks (ROOT)")
    p.add_argument("--process", default="ttbar",
                   help=f"hard process, one of {sorted(PROCESSES)}")
    p.add_argument("--events", type=int, required=True, help="events in this shard")
    p.add_argument("--seed", type=int, required=True, help="sample seed")
    p.add_argument("--shard", type=int, default=0, help="shard number within the sample")
    p.add_argument("--output", type=Path, required=True, help="ROOT file to write")
    p.add_argument("--ecm", type=float, default=13_000.0,
                   help="centre-of-mass energy in GeV (the one argument not in MeV)")
    p.add_argument("--jet-pt-min", type=float, default=15 * GeV, help="jet pT cut, MeV")
    p.add_argument("--jet-eta-max", type=float, default=2.8, help="jet |eta| cut")
    p.add_argument("--pileup-tracks", type=float, default=0.0,
                   help="mean number of pile-up tracks per event (Poisson), before selection")


def main(args: argparse.Namespace) -> int:
    config = ShardConfig(process=args.process, events=args.events, seed=args.seed,
                         shard=args.shard, ecm_gev=args.ecm, jet_pt_min=args.jet_pt_min,
                         jet_eta_max=args.jet_eta_max, pileup_tracks=args.pileup_tracks)
    run_shard(config, args.output)
    return 0


def process_batch(particles: Particles, config: ShardConfig, charges: ChargeTable,
                  rng: np.random.Generator, first_event: int,
                  timer: Callable[[str], None] | None = None) -> Block:
    """Jets, labels and tracks of one batch of events (the batch's first event is number
    ``first_event`` of the shard), as a writer Block; ``timer(step)`` is called after the
    clustering and after the rest."""

    def lap(name: str) -> None:
        if timer is not None:
            timer(name)

    pt_min = config.jet_pt_min / GeV
    jets = jetlib.cluster(particles, min(pt_min, jetlib.MATCH_JET_PT_MIN))
    lap("clustering")
    labels = jetlib.label_jets(particles, jets)
    tracks = tracklib.reconstruct(particles, charges, rng)
    if config.pileup_tracks > 0:
        tracks = tracklib.concatenate(
            tracks, tracklib.pileup(particles.n_events, config.pileup_tracks, rng))
    track_jet = jetlib.nearest_jet(tracks.eta, tracks.phi, tracks.event, jets, TRACK_DR_MAX)
    keep = jetlib.select(jets, pt_min, config.jet_eta_max)
    stored = np.cumsum(keep) - 1  # index among the stored jets
    in_stored = track_jet >= 0
    in_stored[in_stored] = keep[track_jet[in_stored]]
    tracks = tracks.take(in_stored)
    track_jet = stored[track_jet[in_stored]]
    n = particles.n_events
    block = make_block(
        event_number=config.shard * EVENT_NUMBER_STRIDE + first_event + np.arange(n),
        weight=particles.weight,
        jet_event=jets.event[keep],
        n_events=n,
        jets={"pt": jets.pt[keep], "eta": jets.eta[keep], "phi": jets.phi[keep],
              "m": jets.m[keep], "HadronConeExclTruthLabelID": labels.label[keep],
              "truthHadron_pt": labels.hadron_pt[keep],
              "truthHadron_Lxy": labels.hadron_lxy[keep]},
        track_jet=track_jet,
        tracks={"pt": tracks.pt, "eta": tracks.eta, "phi": tracks.phi,
                "charge": tracks.charge, "d0": tracks.d0,
                "z0SinTheta": tracks.z0_sin_theta, "d0_sigma": tracks.d0_sigma,
                "z0SinTheta_sigma": tracks.z0_sin_theta_sigma,
                "truthOriginLabel": tracks.origin,
                "truthVertexIndex": truth.vertex_indices(track_jet, tracks.pt, tracks.vertex)},
    )
    lap("features")
    return block


def run_shard(config: ShardConfig, output: str | Path) -> dict[str, float]:
    """Generate ``config.events`` events and write them to ``output`` atomically; return the
    wall time spent per step (s)."""
    config.validate()
    times: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        times[name] = times.get(name, 0.0) + now - clock[0]
        clock[0] = now

    pythia = make_pythia(config)
    charges = ChargeTable(pythia.particleData)
    rng = np.random.default_rng(derive_seed(config.seed, config.shard, "tracks"))
    lap("init")
    with atomic_path(output) as tmp, ShardWriter(tmp) as writer, progress.bar(
            config.events, f"generate {config.process} shard {config.shard}", "events") as bar:
        pending: list[Block] = []
        done = n_jets = 0
        while done < config.events:
            n = min(BATCH_EVENTS, config.events - done)
            batch = next_batch(pythia, n)
            lap("pythia")
            particles = to_particles(batch)
            del batch  # the numpy views keep the buffers they need alive
            lap("readout")
            pending.append(process_batch(particles, config, charges, rng, done, lap))
            done += n
            n_jets += int(pending[-1].n_jets.sum())
            bar.set_postfix_str(f"{n_jets} jets", refresh=False)
            bar.update(n)
            if sum(len(b) for b in pending) >= BASKET_EVENTS or done == config.events:
                writer.write(Block.concatenate(pending))
                pending = []
                lap("writing")
        log.info("generate: %d %s events -> %s", done, config.process, output)
    return times
