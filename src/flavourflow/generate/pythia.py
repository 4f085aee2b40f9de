"""Pythia 8 setup and batched event readout into flat numpy arrays.

Readout uses ``Pythia.nextBatch`` (pythia8mc >= 8.312): the event record is copied into an
Awkward Array on the C++ side, so no Python code runs per particle. We then only take views
of its flat columns (particles of all events concatenated, plus per-event offsets).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from flavourflow.core.errors import FlavourflowError
from flavourflow.core.flavours import GeV

#: Hard processes; each maps to the Pythia settings that switch it on.
PROCESSES: dict[str, tuple[str, ...]] = {
    "ttbar": ("Top:gg2ttbar = on", "Top:qqbar2ttbar = on"),
    # Z' -> d, u, s, c, b quark pairs (Pythia's default Z' couplings) with a forced very
    # broad line shape (m0 = width = 4 TeV, 0.5-7 TeV), so that jets cover a wide pT range
    # (a stand-in for ATLAS's flat-pT Z' sample): leading-jet pT median ~0.5 TeV, 99th
    # percentile ~1.4 TeV. The spectrum still falls with pT, as no event weights are used.
    "zprime": (
        "NewGaugeBoson:ffbar2gmZZprime = on",
        "Zprime:gmZmode = 3",
        "32:m0 = 4000.",
        "32:mWidth = 4000.",
        "32:doForceWidth = on",
        "32:mMin = 500.",
        "32:mMax = 7000.",
        "32:onMode = off",
        "32:onIfAny = 1 2 3 4 5",
    ),
}

#: Settings common to every process: quiet, realistic beam spot (mm), MPI and hadronisation
#: on (Pythia's defaults, spelled out so that nobody switches them off by accident).
COMMON_SETTINGS: tuple[str, ...] = (
    "Print:quiet = on",
    "Next:numberCount = 0",
    "PartonLevel:MPI = on",
    "HadronLevel:all = on",
    "Beams:allowVertexSpread = on",
    "Beams:sigmaVertexX = 0.012",
    "Beams:sigmaVertexY = 0.012",
    "Beams:sigmaVertexZ = 40.",
    "Random:setSeed = on",
)

#: Largest seed Pythia accepts (``Random:seed`` max).
_MAX_SEED = 900_000_000
#: At most this many events per shard (event numbers are shard * this + i).
MAX_EVENTS_PER_SHARD = 1_000_000_000
#: Sanity bound on the collision energy: a larger value is almost surely MeV given as GeV.
_MAX_ECM_GEV = 200_000.0
#: Failed events are retried, up to this many attempts per requested event in a batch.
MAX_TRIES_PER_EVENT = 10.0


@dataclass(frozen=True)
class ShardConfig:
    """Everything that fixes the content of one shard. Momenta in MeV; the collision energy
    in GeV (``ecm_gev``, as the workflow config and Pythia give it)."""

    process: str = "ttbar"
    events: int = 1000
    seed: int = 1
    shard: int = 0
    ecm_gev: float = 13_000.0
    jet_pt_min: float = 15 * GeV
    jet_eta_max: float = 2.8
    pileup_tracks: float = 0.0

    def validate(self) -> None:
        """Raise FlavourflowError for a setting that cannot make a sensible shard."""
        if self.process not in PROCESSES:
            raise FlavourflowError(f"unknown process {self.process!r}; known: "
                                   f"{sorted(PROCESSES)}", field="process")
        if not 0 < self.events < MAX_EVENTS_PER_SHARD:
            raise FlavourflowError(f"must be in [1, {MAX_EVENTS_PER_SHARD}), got "
                                   f"{self.events}", field="events")
        if self.seed < 0:
            raise FlavourflowError(f"must be >= 0, got {self.seed}", field="seed")
        if not 0 <= self.shard < 9_000_000:
            raise FlavourflowError(f"must be in [0, 9e6), got {self.shard}", field="shard")
        if not 0 < self.ecm_gev <= _MAX_ECM_GEV:
            raise FlavourflowError(f"must be in (0, {_MAX_ECM_GEV:g}] GeV, got "
                                   f"{self.ecm_gev:g} (MeV given?)", field="ecm")
        if self.jet_pt_min < 0:
            raise FlavourflowError(f"must be >= 0 MeV, got {self.jet_pt_min}",
                                   field="jet_pt_min")
        if self.jet_eta_max <= 0:
            raise FlavourflowError(f"must be > 0, got {self.jet_eta_max}", field="jet_eta_max")
        if self.pileup_tracks < 0:
            raise FlavourflowError(f"must be >= 0, got {self.pileup_tracks}",
                                   field="pileup_tracks")


def derive_seed(seed: int, shard: int, stream: str = "pythia") -> int:
    """A seed in [1, 9e8] fixed by (seed, shard, stream): hashing decorrelates neighbouring
    shards and keeps Pythia's and numpy's random streams independent."""
    digest = hashlib.sha256(f"flavourflow:{stream}:{seed}:{shard}".encode()).digest()
    return 1 + int.from_bytes(digest[:8], "little") % _MAX_SEED


def make_pythia(config: ShardConfig) -> Any:
    """An initialised, silent ``pythia8mc.Pythia`` for ``config``."""
    import pythia8mc

    pythia = pythia8mc.Pythia("", False)  # no banner
    settings = (
        *COMMON_SETTINGS,
        f"Beams:eCM = {config.ecm_gev:.10g}",
        f"Random:seed = {derive_seed(config.seed, config.shard)}",
        *PROCESSES[config.process],
    )
    for line in settings:
        if not pythia.readString(line):
            raise FlavourflowError(f"Pythia rejected setting {line!r}", field="process")
    if not pythia.init():
        raise FlavourflowError("Pythia initialisation failed", field="process")
    return pythia


@dataclass
class Particles:
    """The full event records of a batch of events as flat columns (GeV, mm, Pythia units).

    Particle ``k`` of event ``i`` is at flat position ``offsets[i] + k``; mother/daughter
    indices are per event, as in Pythia. ``pv`` is the true primary vertex per event
    (entry 0 of the record, which carries the beam-spot offset)."""

    offsets: np.ndarray
    id: np.ndarray
    status: np.ndarray
    daughter1: np.ndarray
    daughter2: np.ndarray
    px: np.ndarray
    py: np.ndarray
    pz: np.ndarray
    e: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    pv: np.ndarray
    weight: np.ndarray

    @property
    def n_events(self) -> int:
        return len(self.offsets) - 1

    @cached_property
    def event(self) -> np.ndarray:
        """Event index of every flat particle."""
        return np.repeat(np.arange(self.n_events), np.diff(self.offsets))


def _numpy(node: Any, length: int) -> np.ndarray:
    """The numpy buffer of an Awkward NumpyArray node (a view, no copy)."""
    return np.asarray(node.data)[:length]


def next_batch(pythia: Any, n_events: int) -> Any:
    """Generate ``n_events`` as one Awkward Array; Pythia retries failed events (at most
    ``MAX_TRIES_PER_EVENT`` times as many attempts) instead of looping for ever."""
    try:
        return pythia.nextBatch(n_events, MAX_TRIES_PER_EVENT)
    except Exception as err:  # pybind11 maps Pythia's C++ exceptions to several types
        raise FlavourflowError(f"Pythia failed to generate {n_events} events ({err})",
                               field="process") from err


def to_particles(batch: Any) -> Particles:
    """Flat numpy views of the columns of a ``nextBatch`` array that the stage needs."""
    layout = batch.layout.content("prt")
    offsets = np.asarray(layout.offsets).astype(np.int64)
    content = layout.content
    if offsets[0] != 0:
        content = content[int(offsets[0]):int(offsets[-1])]
        offsets = offsets - offsets[0]
    n = int(offsets[-1])

    def col(*path: str) -> np.ndarray:
        node = content
        for name in path:
            node = node.content(name)
        return _numpy(node, n)

    # vProd is option-typed (missing when Pythia set no vertex, i.e. the origin)
    vertex = content.content("vProd")
    index = np.asarray(vertex.index)[:n] if vertex.is_option else np.arange(n)
    record = vertex.content if vertex.is_option else vertex
    has_vertex = index >= 0
    x, y, z = (np.where(has_vertex, np.asarray(record.content(c).data)[index], 0.0)
               for c in ("px", "py", "pz"))
    first = offsets[:-1]
    weights = batch.layout.content("info").content("weights")
    w_offsets = np.asarray(weights.offsets)
    w_values = np.append(np.asarray(weights.content.data), 1.0)
    nominal = np.where(np.diff(w_offsets) > 0, w_offsets[:-1], len(w_values) - 1)
    return Particles(
        offsets=offsets,
        id=col("id"), status=col("status"),
        daughter1=col("daughter1"), daughter2=col("daughter2"),
        px=col("p", "px"), py=col("p", "py"), pz=col("p", "pz"), e=col("p", "e"),
        x=x, y=y, z=z,
        pv=np.stack([x[first], y[first], z[first]], axis=1),
        weight=w_values[nominal],
    )


class ChargeTable:
    """Electric charge (units of e) by PDG id, looked up in Pythia's particle data once per
    new id and then applied to whole arrays."""

    def __init__(self, particle_data: Any):
        self._pdt = particle_data
        self._ids = np.zeros(0, dtype=np.int64)
        self._charges = np.zeros(0, dtype=np.float64)

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        unique = np.unique(ids)
        new = np.setdiff1d(unique, self._ids, assume_unique=True)
        if len(new):
            charges = np.array([self._pdt.charge(int(i)) for i in new], dtype=np.float64)
            ids_all = np.concatenate([self._ids, new])
            order = np.argsort(ids_all)
            self._ids = ids_all[order]
            self._charges = np.concatenate([self._charges, charges])[order]
        return self._charges[np.searchsorted(self._ids, ids)]
