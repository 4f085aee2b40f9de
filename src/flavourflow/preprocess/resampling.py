"""Kinematic resampling in (pT, |eta|) bins so that the flavours share one kinematic
distribution, and the plots of pT and eta per flavour before and after.

Methods (histograms from the training split, applied to the training and validation splits;
the test split keeps its natural kinematics):

* ``none``: every jet once, weight 1.
* ``count``: downsampling; in each bin every flavour keeps as many jets as the rarest
  flavour has there (umami's "count"): the flavours end up with equal numbers per bin.
* ``pdf``: each flavour is resampled to the target flavour's (pT, |eta|) density, keeping its
  own total: a jet in bin i is written ``r = N_f p_target(i) / n_f(i)`` times on average,
  ``r`` capped at ``max_upsampling`` (downsampling where r < 1).
* ``weights``: nothing dropped or copied; each jet gets the loss weight ``r`` above (capped at
  ``max_weight``), then all weights are scaled to average 1 over the training split.

How many copies a jet gets (``floor(r)``, plus one with probability ``r - floor(r)``) is drawn
from a hash of (eventNumber, jetIndex, seed), not from a stream of random numbers, so it does
not depend on block size or file order and the counting pass and the writing pass agree.
Jets outside the bin range count in the first or last bin.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flavourflow.core import split as splitting
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.flavours import CLASSES, GeV

METHODS = ("none", "count", "pdf", "weights")
#: Default bin edges: pT in MeV, |eta|.
PT_BINS = (20e3, 30e3, 40e3, 60e3, 80e3, 100e3, 150e3, 250e3, 500e3, 1000e3)
ABS_ETA_BINS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)
#: Fine bins of the before/after plots.
PLOT_BINS = 40


@dataclass(frozen=True)
class Resampling:
    """The ``resampling`` entry of a model's config."""

    method: str = "none"
    target: str = "bottom"
    pt_bins: Sequence[float] = PT_BINS
    abs_eta_bins: Sequence[float] = ABS_ETA_BINS
    max_upsampling: float = 4.0
    max_weight: float = 20.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise FlavourflowError(f"unknown method {self.method!r}; one of {METHODS}",
                                   field="resampling.method")
        if self.target not in [c.name for c in CLASSES]:
            raise FlavourflowError(f"unknown flavour {self.target!r}",
                                   field="resampling.target")
        for name in ("pt_bins", "abs_eta_bins"):
            edges = np.asarray(getattr(self, name), dtype=np.float64)
            if edges.ndim != 1 or len(edges) < 2 or np.any(np.diff(edges) <= 0):
                raise FlavourflowError("needs at least 2 increasing edges",
                                       field=f"resampling.{name}")

    def as_dict(self) -> dict:
        return {"method": self.method, "target": self.target,
                "pt_bins": [float(x) for x in self.pt_bins],
                "abs_eta_bins": [float(x) for x in self.abs_eta_bins],
                "max_upsampling": self.max_upsampling, "max_weight": self.max_weight}


def _bin(values: np.ndarray, edges: Sequence[float]) -> np.ndarray:
    inner = np.asarray(edges, dtype=np.float64)[1:-1]
    return np.searchsorted(inner, np.asarray(values, dtype=np.float64), side="right")


def jet_uniform(event_number: np.ndarray, jet_index: np.ndarray, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per jet, fixed by (event number, jet index, seed)."""
    key = (np.asarray(event_number).astype(np.uint64) << np.uint64(8)) ^ \
        np.asarray(jet_index).astype(np.uint64)
    return splitting.uniform_from_event(key, seed)


@dataclass
class Kinematics:
    """Per-flavour histograms of the training split: coarse (pT, |eta|) bins for the
    resampling, fine pT and |eta| bins for the plots (optionally weighted)."""

    config: Resampling
    coarse: np.ndarray = field(init=False)
    pt: np.ndarray = field(init=False)
    eta: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n_cls = len(CLASSES)
        self.coarse = np.zeros((n_cls, len(self.config.pt_bins) - 1,
                                len(self.config.abs_eta_bins) - 1))
        self.pt = np.zeros((n_cls, PLOT_BINS))
        self.eta = np.zeros((n_cls, PLOT_BINS))

    @property
    def pt_edges(self) -> np.ndarray:
        lo, hi = self.config.pt_bins[0], self.config.pt_bins[-1]
        return np.geomspace(lo, hi, PLOT_BINS + 1)

    @property
    def eta_edges(self) -> np.ndarray:
        return np.linspace(0.0, self.config.abs_eta_bins[-1], PLOT_BINS + 1)

    def fill(self, cls: np.ndarray, pt: np.ndarray, eta: np.ndarray,
             weight: np.ndarray | None = None) -> None:
        """Add jets (class index, pT, eta) with optional weights or multiplicities."""
        w = np.ones(len(cls)) if weight is None else np.asarray(weight, dtype=np.float64)
        abs_eta = np.abs(eta)
        i, j = _bin(pt, self.config.pt_bins), _bin(abs_eta, self.config.abs_eta_bins)
        fine_pt = np.clip(_bin(pt, self.pt_edges), 0, PLOT_BINS - 1)
        fine_eta = np.clip(_bin(abs_eta, self.eta_edges), 0, PLOT_BINS - 1)
        for c in range(len(CLASSES)):
            sel = cls == c
            np.add.at(self.coarse[c], (i[sel], j[sel]), w[sel])
            np.add.at(self.pt[c], fine_pt[sel], w[sel])
            np.add.at(self.eta[c], fine_eta[sel], w[sel])


@dataclass(frozen=True)
class Sampler:
    """Expected copies (``count``/``pdf``) or weights (``weights``) per (flavour, pT, |eta|)
    bin, computed from the training split's histograms."""

    config: Resampling
    ratio: np.ndarray  # [n_classes, n_pt, n_eta]
    weight_scale: float
    seed: int

    @classmethod
    def from_histograms(cls, config: Resampling, kin: Kinematics, seed: int) -> Sampler:
        counts = kin.coarse
        totals = counts.sum(axis=(1, 2))
        for c, flav in enumerate(CLASSES):
            if config.method != "none" and totals[c] == 0:
                raise FlavourflowError(f"no {flav.name} jets in the training split to resample",
                                       field="resampling")
        with np.errstate(invalid="ignore", divide="ignore"):
            if config.method == "count":
                smallest = counts.min(axis=0)
                ratio = np.where(counts > 0, smallest / counts, 0.0)
            elif config.method in ("pdf", "weights"):
                t = [c.name for c in CLASSES].index(config.target)
                density = counts[t] / totals[t]
                ratio = np.where(counts > 0, totals[:, None, None] * density / counts, 0.0)
                cap = config.max_upsampling if config.method == "pdf" else config.max_weight
                ratio = np.minimum(ratio, cap)
            else:
                ratio = np.ones_like(counts)
        scale = 1.0
        if config.method == "weights":
            total_weight = float((ratio * counts).sum())
            if total_weight <= 0:
                raise FlavourflowError("all weights are 0", field="resampling")
            scale = float(counts.sum()) / total_weight
        return cls(config, ratio, scale, seed)

    def _ratio(self, cls: np.ndarray, pt: np.ndarray, eta: np.ndarray) -> np.ndarray:
        i = _bin(pt, self.config.pt_bins)
        j = _bin(np.abs(eta), self.config.abs_eta_bins)
        return self.ratio[cls, i, j]

    def copies(self, cls: np.ndarray, pt: np.ndarray, eta: np.ndarray, event: np.ndarray,
               jet_index: np.ndarray) -> np.ndarray:
        """How many times each jet is written (int64)."""
        if self.config.method in ("none", "weights"):
            return np.ones(len(cls), dtype=np.int64)
        r = self._ratio(cls, pt, eta)
        whole = np.floor(r)
        u = jet_uniform(event, jet_index, self.seed)
        return (whole + (u < r - whole)).astype(np.int64)

    def weights(self, cls: np.ndarray, pt: np.ndarray, eta: np.ndarray) -> np.ndarray:
        """Loss weight of each jet (float32)."""
        if self.config.method != "weights":
            return np.ones(len(cls), dtype=np.float32)
        return (self._ratio(cls, pt, eta) * self.weight_scale).astype(np.float32)


def plot(before: Kinematics, after: Kinematics, stem: Path, title: str) -> None:
    """pT and |eta| per flavour (normalised) on the training split, before and after."""
    from flavourflow.core.plots import figure, save

    fig, axes = figure(2, 2, figsize=(11, 8))
    for row, (kin, when) in enumerate(((before, "before"), (after, "after"))):
        for col, (hists, edges, label) in enumerate((
                (kin.pt, kin.pt_edges / GeV, "jet $p_T$ [GeV]"),
                (kin.eta, kin.eta_edges, r"jet $|\eta|$"))):
            ax = axes[row][col]
            for c, flav in enumerate(CLASSES):
                total = hists[c].sum()
                if total > 0:
                    ax.stairs(hists[c] / total, edges, color=flav.colour,
                              label=f"{flav.name} ({total:.0f})")
            ax.set_xlabel(label)
            ax.set_ylabel("fraction of jets")
            if col == 0:
                ax.set_xscale("log")
                ax.set_yscale("log")
            ax.set_title(f"{when} resampling ({kin.config.method})")
            ax.legend(fontsize=8)
    fig.suptitle(title)
    save(fig, stem)


def settings_from(entry: Mapping | None) -> Resampling:
    """A Resampling from the config entry (None or {} means ``none``)."""
    entry = dict(entry or {})
    for key in ("pt_bins", "abs_eta_bins"):
        if key in entry:
            entry[key] = tuple(float(x) for x in entry[key])
    return Resampling(**entry)
