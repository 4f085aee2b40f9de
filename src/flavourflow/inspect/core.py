"""The inspect stage: per-flavour normalised histograms of every jet and track input, and
b-efficiency vs light / c rejection of each baseline, on the whole merged sample.

Baselines: flavourflow's own (``ip2d_llr``, ``sv_sig``) and every tagger whose ``<name>_pb``,
``_pc``, ``_pu`` the dump carries (DL1r, DL1dv01, GN2v01 from PHYSLITE), as its D_b with the
tagger's own f_c (:data:`~flavourflow.core.flavours.TAGGER_FC`).

Histograms are filled block by block (binning fixed from the first block), so memory stays
bounded; the baseline ROCs need only one column per baseline.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from flavourflow.core import plots, progress, roc
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.flavours import (
    ALL_FLAVOURS,
    BASELINES,
    BOTTOM,
    CLASSES,
    DEFAULT_FC,
    LABEL_FIELD,
    LIGHT,
    TAGGER_FC,
)
from flavourflow.core.h5files import open_h5
from flavourflow.core.outputs import write_json
from flavourflow.core.plots import save
from flavourflow.core.rejections import best_baseline, rejection_curves
from flavourflow.core.style import Figures, figure

log = logging.getLogger(__name__)

#: Jet fields that are bookkeeping or truth, not inputs: not histogrammed.
NOT_INPUTS = {"eventNumber", "jetIndex", "mcEventWeight", LABEL_FIELD,
              "HadronConeExclTruthLabelPt", "HadronConeExclTruthLabelLxy"}
#: Lifetime-signed impact-parameter significances, shown on a fixed wide range for validation.
IP_SIGNIFICANCES = ("IP3D_signed_d0_significance", "IP3D_signed_z0_significance")
IP_EDGES = np.linspace(-20.0, 40.0, 121)


def probability_taggers(fields: Sequence[str]) -> list[str]:
    """Taggers whose p_b, p_c and p_u are all among ``fields`` (``GN2v01_pb`` ...)."""
    names = set(fields)
    return sorted(f[:-3] for f in names
                  if f.endswith("_pb") and {f[:-3] + "_pc", f[:-3] + "_pu"} <= names)


def baseline_scores(columns: np.ndarray) -> dict[str, np.ndarray]:
    """Each baseline's discriminant per jet: our own as they are, taggers as their D_b."""
    names = columns.dtype.names
    out = {name: columns[name] for name in BASELINES if name in names}
    for tagger in probability_taggers(names):
        out[tagger] = roc.b_discriminant(columns[f"{tagger}_pb"], columns[f"{tagger}_pc"],
                                         columns[f"{tagger}_pu"],
                                         TAGGER_FC.get(tagger, DEFAULT_FC))
    return out


class FlavourHistograms:
    """Per-flavour histograms of several variables, binned from the first block seen."""

    def __init__(self, names: Sequence[str], n_bins: int,
                 edges: dict[str, np.ndarray] | None = None) -> None:
        self.names, self.n_bins = list(names), n_bins
        self.edges: dict[str, np.ndarray] = {}
        self.counts: dict[str, dict[str, np.ndarray]] = {}
        for name, fixed in (edges or {}).items():
            self._set_edges(name, np.asarray(fixed, dtype=np.float64))

    def _set_edges(self, name: str, edges: np.ndarray) -> None:
        self.edges[name] = edges
        self.counts[name] = {f.name: np.zeros(len(edges) - 1) for f in ALL_FLAVOURS}

    def fill(self, values: dict[str, np.ndarray], labels: np.ndarray) -> None:
        for name in self.names:
            x = values[name].astype(np.float64)
            if name not in self.edges:
                self._set_edges(name, self._binning(x, np.issubdtype(values[name].dtype,
                                                                     np.integer)))
            for flav in ALL_FLAVOURS:
                sel = x[labels == flav.label]
                clipped = np.clip(sel[np.isfinite(sel)], self.edges[name][0],
                                  self.edges[name][-1])
                self.counts[name][flav.name] += np.histogram(clipped, self.edges[name])[0]

    def _binning(self, x: np.ndarray, integer: bool) -> np.ndarray:
        """Bins covering the central 99 % of ``x``; unit bins for small integer ranges."""
        finite = x[np.isfinite(x)]
        lo, hi = np.percentile(finite, [0.5, 99.5]) if len(finite) else (0.0, 1.0)
        if integer and finite.max(initial=0) - finite.min(initial=0) <= 2 * self.n_bins:
            return np.arange(finite.min(initial=0) - 0.5, finite.max(initial=0) + 1.5)
        return np.linspace(lo, hi if hi > lo else lo + 1.0, self.n_bins + 1)

    def plot(self, stem: Path, title: str) -> None:
        n = len(self.names)
        cols = min(4, n)
        rows = math.ceil(n / cols)
        fig, axes = plots.figure(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
        for ax, name in zip(axes.flat, self.names, strict=False):
            for flav in ALL_FLAVOURS:
                h = self.counts[name][flav.name]
                if h.sum() > 0:
                    ax.stairs(h / h.sum(), self.edges[name], color=flav.colour, label=flav.name)
            ax.set_xlabel(name)
            ax.set_yscale("log")
        for ax in list(axes.flat)[n:]:
            ax.set_visible(False)
        axes.flat[0].legend(fontsize="small")
        fig.suptitle(title)
        fig.tight_layout()
        save(fig, stem)


class Correlations:
    """Pearson correlation matrices of some jet variables per flavour, accumulated block by
    block over the jets where all of them are finite."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        k = len(self.names)
        self.n = {f.name: 0 for f in CLASSES}
        self.sums = {f.name: np.zeros(k) for f in CLASSES}
        self.products = {f.name: np.zeros((k, k)) for f in CLASSES}

    def fill(self, jets: np.ndarray) -> None:
        x = np.stack([jets[n].astype(np.float64) for n in self.names], axis=1)
        finite = np.isfinite(x).all(axis=1)
        for flav in CLASSES:
            rows = x[finite & (jets[LABEL_FIELD] == flav.label)]
            self.n[flav.name] += len(rows)
            self.sums[flav.name] += rows.sum(axis=0)
            self.products[flav.name] += rows.T @ rows

    def matrix(self, flavour: str) -> np.ndarray:
        """The correlation matrix of ``flavour`` (NaN for fewer than 2 jets or a constant)."""
        n = self.n[flavour]
        if n < 2:
            return np.full((len(self.names),) * 2, np.nan)
        mean = self.sums[flavour] / n
        cov = self.products[flavour] / n - np.outer(mean, mean)
        sd = np.sqrt(np.clip(np.diag(cov), 0, None))
        with np.errstate(invalid="ignore", divide="ignore"):
            return cov / np.outer(sd, sd)

    def plot(self, *, stem: Path, text: str = "", title: str = "", warn=None):
        """One heat map per flavour, the coefficients printed; returns the figure."""
        k = len(self.names)
        fig, axes = figure(1, len(CLASSES), figsize=(6.5 * len(CLASSES), 6.5), squeeze=False)
        for ax, flav in zip(axes[0], CLASSES, strict=True):
            matrix = self.matrix(flav.name)
            if np.isnan(matrix).all() and warn:
                warn(f"fewer than 2 {flav.name} jets with finite inputs")
            image = ax.imshow(np.nan_to_num(matrix), cmap="RdBu_r", vmin=-1, vmax=1)
            ax.set_xticks(range(k), self.names, rotation=90, fontsize=9)
            ax.set_yticks(range(k), self.names, fontsize=9)
            ax.minorticks_off()
            ax.tick_params(which="both", length=0)
            ax.set_title(f"{flav.name} jets ({self.n[flav.name]})", loc="left", fontsize=12)
            if k <= 12:
                for i in range(k):
                    for j in range(k):
                        value = matrix[i, j]
                        ax.text(j, i, "-" if np.isnan(value) else f"{value:.2f}",
                                ha="center", va="center", fontsize=7,
                                color="white" if abs(value) > 0.6 else "black")
        fig.colorbar(image, ax=list(axes[0]), label="correlation coefficient", shrink=0.8)
        fig.suptitle(f"{title}: correlations of the model inputs" +
                     (f" ({text.splitlines()[0]})" if text else ""), fontsize=12)
        save(fig, stem)
        return fig


def run(sample: Path, outdir: Path, n_bins: int, working_points: Sequence[float],
        title: str, block_size: int = 100_000, correlated: Sequence[str] = ("pt", "eta"),
        text: str = "") -> dict:
    """Histogram every input of ``sample``; correlations of the ``correlated`` jet inputs per
    flavour; baseline ROCs; summary.json."""
    with open_h5(sample) as f:
        for name in ("jets", "tracks"):
            if name not in f:
                raise FlavourflowError("missing dataset", path=sample, field=name)
        jets, tracks = f["jets"], f["tracks"]
        jet_vars = [n for n in jets.dtype.names if n not in NOT_INPUTS]
        # the per-track truth (ftagTruth*: auxiliary-task labels) is not an input
        track_vars = [n for n in tracks.dtype.names
                      if n != "valid" and not n.startswith("ftagTruth")]
        jet_hists = FlavourHistograms(jet_vars, n_bins)
        track_hists = FlavourHistograms(track_vars, n_bins)
        ip_hists = FlavourHistograms(IP_SIGNIFICANCES, len(IP_EDGES) - 1,
                                     edges=dict.fromkeys(IP_SIGNIFICANCES, IP_EDGES))
        missing = [n for n in correlated if n not in jets.dtype.names]
        if missing:
            raise FlavourflowError("missing jets variable (a model input)", path=sample,
                                   field=missing[0])
        correlations = Correlations(correlated)
        n_displaced_light = 0
        starts = range(0, len(jets), block_size)
        for start in progress.track(starts, len(jets), f"inspect {Path(sample).name}", "jets",
                                    size=lambda start: min(block_size, len(jets) - start)):
            j = jets[start : start + block_size]
            t = tracks[start : start + block_size]
            jet_hists.fill({n: j[n] for n in jet_vars}, j[LABEL_FIELD])
            correlations.fill(j)
            valid = t["valid"]
            track_labels = np.broadcast_to(j[LABEL_FIELD][:, None], valid.shape)[valid]
            track_hists.fill({n: t[n][valid] for n in track_vars}, track_labels)
            ip_hists.fill({n: t[n][valid] for n in IP_SIGNIFICANCES}, track_labels)
            sig = np.where(valid, np.abs(t["IP3D_signed_d0_significance"]), 0.0)
            n_displaced_light += int(np.count_nonzero(
                ((sig > 3).sum(axis=1) >= 2) & (j[LABEL_FIELD] == LIGHT.label)))
        tagger_fields = [f"{t}_{p}" for t in probability_taggers(jets.dtype.names)
                         for p in ("pb", "pc", "pu")]
        columns = jets.fields([LABEL_FIELD, *[b for b in BASELINES if b in jets.dtype.names],
                               *tagger_fields])[...]

    labels = columns[LABEL_FIELD]
    counts = {f.name: int(np.count_nonzero(labels == f.label)) for f in ALL_FLAVOURS}
    if counts[BOTTOM.name] == 0 or counts[LIGHT.name] == 0:
        raise FlavourflowError(f"need b and light jets for baseline ROCs, have {counts}",
                               path=sample, field=LABEL_FIELD)
    jet_hists.plot(outdir / "jet_inputs", f"{title}: jet inputs")
    track_hists.plot(outdir / "track_inputs", f"{title}: track inputs (valid tracks)")
    ip_hists.plot(outdir / "ip_significance", f"{title}: impact-parameter significances")

    figures = Figures(f"sample {title or Path(sample).stem}")
    figures.draw("correlations", outdir / "correlations", correlations.plot, text=text,
                 title=title)
    by_tagger = {name: roc.by_flavour(scores, labels)
                 for name, scores in baseline_scores(columns).items()}
    baselines = {name: roc.performance(by_flav, working_points)
                 for name, by_flav in by_tagger.items()}
    reference = best_baseline(baselines, list(baselines))
    figures.draw("baselines_roc", outdir / "baselines_roc", rejection_curves, by_tagger,
                 title="baseline taggers", reference=reference, text=text)

    n_all = sum(counts.values())
    summary = {
        "n_jets": counts,
        "fractions": {k: v / n_all for k, v in counts.items()},
        "baselines": baselines,
        "light_with_2_tracks_abs_sd0_gt_3": n_displaced_light / counts[LIGHT.name],
        "working_points": list(working_points),
        "reference": reference,
        "correlations": {f.name: {"n_jets": correlations.n[f.name], "variables":
                                  correlations.names, "matrix": np.nan_to_num(
                                      correlations.matrix(f.name), nan=0.0).tolist()}
                         for f in CLASSES},
        "problems": figures.problems,
    }
    write_json(outdir / "summary.json", summary)
    log.info("inspected %d jets of %s: %s", n_all, sample, counts)
    return summary
