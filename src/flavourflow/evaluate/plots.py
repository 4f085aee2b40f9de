"""The evaluate stage's figures of one model on one sample (besides the rejection curves of
:mod:`flavourflow.core.rejections`): the discriminant per flavour with the working-point cuts,
efficiency and rejections vs pT and |η| at each working point, the f_c scan, the confusion
matrix and the training curves. Each takes the test jets' scores (a structured array as
scores.h5 holds them), saves ``stem``.pdf/.png and returns the figure; bad input raises
FlavourflowError (the caller draws a placeholder instead), lesser problems go to ``warn``."""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from flavourflow.core import roc
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.flavours import BOTTOM, CHARM, CLASSES, LABEL_FIELD, LIGHT, GeV
from flavourflow.core.plots import save
from flavourflow.core.style import figure, headroom, label

Warn = Callable[[str], None]

#: Bin edges of the performance-vs-kinematics plots (pT in MeV); trimmed to the jets present.
PT_EDGES = np.array([20, 30, 40, 60, 85, 110, 140, 175, 250, 400, 1000]) * GeV
ABS_ETA_EDGES = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
#: f_c values of the f_c scan (the chosen one is added).
FC_SCAN = np.concatenate([np.geomspace(1e-3, 0.1, 21), np.linspace(0.15, 1.0, 18)])


def _need(jets: np.ndarray, *flavours) -> None:
    if len(jets) == 0:
        raise FlavourflowError("no test jets")
    for flav in flavours:
        if not np.any(jets[LABEL_FIELD] == flav.label):
            raise FlavourflowError(f"no {flav.name} jets among the {len(jets)} test jets")


def _wp(wp: float) -> str:
    return f"{round(wp * 100)} %"


def discriminant(jets: np.ndarray, working_points: Sequence[float], *, stem: Path,
                 text: str = "", title: str = "", warn: Warn | None = None):
    """D_b per flavour (normalised, log scale) with a vertical line at each working point's cut."""
    _need(jets, BOTTOM)
    d_b = jets["D_b"]
    finite = d_b[np.isfinite(d_b)]
    if len(finite) == 0:
        raise FlavourflowError("no finite D_b")
    bins = np.linspace(*np.percentile(finite, [0.1, 99.9]), 50)
    fig, ax = figure(figsize=(8, 6))
    for flav in CLASSES:
        values = d_b[jets[LABEL_FIELD] == flav.label]
        if len(values) == 0:
            if warn:
                warn(f"no {flav.name} jets")
            continue
        counts, _ = np.histogram(np.clip(values, bins[0], bins[-1]), bins)
        ax.stairs(counts / counts.sum() / np.diff(bins), bins, color=flav.colour,
                  label=f"{flav.name} jets ({len(values)})", linewidth=1.5)
    b = d_b[jets[LABEL_FIELD] == BOTTOM.label]
    ax.set_yscale("log")
    headroom(ax, 1.5)
    for wp in working_points:
        cut = roc.cut_for_efficiency(b, wp)
        if cut is None:
            if warn:
                warn(f"working point {_wp(wp)} is out of reach: no cut keeps it")
            continue
        ax.axvline(cut, color="grey", linestyle="--", linewidth=1)
        ax.text(cut, 0.5, f"{_wp(wp)} WP", rotation=90, va="bottom", ha="right",
                fontsize=9, color="grey", transform=ax.get_xaxis_transform())
    ax.set_xlabel("$D_b$")
    ax.set_ylabel("normalised to unit area")
    ax.legend(loc="upper right", fontsize=10)
    label(ax, text, title)
    save(fig, stem)
    return fig


def binned_performance(jets: np.ndarray, variable: np.ndarray, edges: np.ndarray, wp: float,
                       flat: bool) -> dict[str, np.ndarray]:
    """Per bin of ``variable``: b efficiency, light and c rejections (NaN where fewer than
    roc.MIN_PASSING pass, with the lower limit in ``*_limit``) and their uncertainties, at
    the working point ``wp`` as one global cut or (``flat``) as a cut per bin that keeps
    ``wp`` of the bin's b jets."""
    d_b, labels = jets["D_b"], jets[LABEL_FIELD]
    global_cut = roc.cut_for_efficiency(d_b[labels == BOTTOM.label], wp)
    n = len(edges) - 1
    out = {key: np.full(n, np.nan) for key in
           ("b_eff", "b_eff_err", "light", "light_err", "light_limit", "c", "c_err", "c_limit")}
    which = np.digitize(variable, edges) - 1
    for i in range(n):
        in_bin = which == i
        b = d_b[in_bin & (labels == BOTTOM.label)]
        if len(b) < roc.MIN_PASSING:  # no efficiency to speak of
            continue
        cut = roc.cut_for_efficiency(b, wp) if flat else global_cut
        if cut is None:
            continue
        eff = np.count_nonzero(b > cut) / len(b)
        out["b_eff"][i], out["b_eff_err"][i] = eff, np.sqrt(eff * (1 - eff) / len(b))
        for key, flav in (("light", LIGHT), ("c", CHARM)):
            stats = roc.rejection_stats(d_b[in_bin & (labels == flav.label)], cut)
            if stats["rejection"] is not None:
                out[key][i], out[f"{key}_err"][i] = stats["rejection"], stats["rejection_err"]
            elif stats["rejection_lower_limit"] is not None:
                out[f"{key}_limit"][i] = stats["rejection_lower_limit"]
    return out


def performance_vs(jets: np.ndarray, variable: str, working_points: Sequence[float], *,
                   stem: Path, text: str = "", title: str = "", warn: Warn | None = None):
    """b efficiency and light and c rejection vs pT or |η| (``variable``: "pt" or "abs_eta")
    at each working point: left one global cut, right a cut per bin (flat b efficiency).
    Lower limits (fewer than 10 jets pass) are drawn as open triangles."""
    _need(jets, BOTTOM)
    if variable == "pt":
        values, edges, xlabel = jets["pt"] / GeV, PT_EDGES / GeV, "jet $p_T$ [GeV]"
    else:
        values, edges, xlabel = np.abs(jets["eta"]), ABS_ETA_EDGES, "jet $|\\eta|$"
    inside = np.flatnonzero(np.histogram(values, edges)[0])
    if len(inside) == 0:
        raise FlavourflowError(f"no jet in the {variable} bins {edges.tolist()}")
    edges = edges[inside[0]: inside[-1] + 2]
    centres, half = 0.5 * (edges[1:] + edges[:-1]), 0.5 * np.diff(edges)
    fig, axes = figure(3, 2, figsize=(13, 11), sharex=True, squeeze=False,
                       gridspec_kw={"hspace": 0.08, "wspace": 0.25})
    for col, flat in enumerate((False, True)):
        for k, wp in enumerate(working_points):
            data = binned_performance(jets, values, edges, wp, flat)
            if not np.isfinite(data["b_eff"]).any():
                if warn:
                    warn(f"working point {_wp(wp)} is out of reach ("
                         f"{'per bin' if flat else 'global cut'})")
                continue
            for row, key in enumerate(("b_eff", "light", "c")):
                ax = axes[row, col]
                ax.errorbar(centres, data[key], yerr=data[f"{key}_err"], xerr=half, fmt="o",
                            markersize=4, color=f"C{k}", label=f"{_wp(wp)} WP")
                if key != "b_eff" and np.isfinite(data[f"{key}_limit"]).any():
                    ax.plot(centres, data[f"{key}_limit"], "^", markerfacecolor="none",
                            color=f"C{k}")
        axes[0, col].set_ylabel("b-jet efficiency")
        axes[1, col].set_ylabel("light-jet rejection")
        axes[2, col].set_ylabel("c-jet rejection")
        for ax in axes[1:, col]:
            if any(line.get_ydata().size for line in ax.lines):
                ax.set_yscale("log")
        for ax in axes[:, col]:
            if ax.lines:
                headroom(ax, 1.8)
        axes[2, col].set_xlabel(xlabel)
        axes[1, col].legend(loc="upper right", fontsize=9, ncols=2)
        label(axes[0, col], text + ("\n" if text else "") +
              ("flat b efficiency per bin" if flat else "one global cut"),
              title if col == 1 else "")
    for ax in axes[2]:
        if variable == "pt":
            from matplotlib.ticker import NullFormatter, ScalarFormatter

            ax.set_xscale("log")
            ticks = [t for t in (20, 30, 50, 100, 200, 400, 1000) if edges[0] <= t <= edges[-1]]
            ax.set_xticks(ticks)
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(edges[0], edges[-1])
    save(fig, stem)
    return fig


def rejections_at(pb: np.ndarray, pc: np.ndarray, pu: np.ndarray, labels: np.ndarray,
                  f_c: float, wp: float) -> tuple[float, float]:
    """(light, c) rejection of D_b with charm fraction ``f_c`` at b efficiency ``wp``; NaN
    where fewer than roc.MIN_PASSING pass."""
    d_b = roc.b_discriminant(pb, pc, pu, f_c)
    cut = roc.cut_for_efficiency(d_b[labels == BOTTOM.label], wp)
    light, _ = roc.rejection(d_b[labels == LIGHT.label], cut)
    c, _ = roc.rejection(d_b[labels == CHARM.label], cut)
    return (np.nan if light is None else light, np.nan if c is None else c)


def fc_scan(jets: np.ndarray, working_points: Sequence[float], f_c: float, *, stem: Path,
            text: str = "", title: str = "", warn: Warn | None = None):
    """Light vs c rejection at each working point as f_c runs over :data:`FC_SCAN`, the
    chosen ``f_c`` marked (a star)."""
    _need(jets, BOTTOM, LIGHT, CHARM)
    pb, pc, pu = (jets[p].astype(np.float64) for p in ("pb", "pc", "pu"))
    labels = jets[LABEL_FIELD]
    values = np.unique(np.append(FC_SCAN, f_c))
    fig, ax = figure(figsize=(8, 6))
    drawn = 0
    for k, wp in enumerate(working_points):
        points = np.array([rejections_at(pb, pc, pu, labels, fc, wp) for fc in values])
        ok = np.isfinite(points).all(axis=1)
        if not ok.any():
            if warn:
                warn(f"working point {_wp(wp)}: no f_c gives both rejections")
            continue
        ax.plot(points[ok, 1], points[ok, 0], "-", color=f"C{k}", label=f"{_wp(wp)} WP")
        chosen = points[values == f_c][0]
        if np.isfinite(chosen).all():
            ax.plot(chosen[1], chosen[0], "*", color=f"C{k}", markersize=14,
                    markeredgecolor="black")
        drawn += 1
    if drawn == 0:
        raise FlavourflowError("no working point reachable for any f_c")
    ax.plot([], [], "*", color="grey", markeredgecolor="black", markersize=12,
            label=f"chosen $f_c$ = {f_c:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    headroom(ax, 2.2)
    ax.set_xlabel("c-jet rejection")
    ax.set_ylabel("light-jet rejection")
    ax.legend(loc="upper right", fontsize=10)
    label(ax, text + ("\n" if text else "") + f"$f_c$ from {values[0]:g} to {values[-1]:g}",
          title)
    save(fig, stem)
    return fig


def confusion_matrix(jets: np.ndarray) -> np.ndarray:
    """Rows: true class (light, charm, bottom); columns: the class of the highest
    probability; each row normalised to 1 (NaN for a class with no jets)."""
    from flavourflow.core.flavours import class_index

    truth = class_index(jets[LABEL_FIELD])
    probs = np.stack([jets[f.prob] for f in CLASSES], axis=1)
    predicted = np.argmax(probs, axis=1)
    counts = np.zeros((len(CLASSES), len(CLASSES)))
    keep = truth >= 0
    np.add.at(counts, (truth[keep], predicted[keep]), 1)
    with np.errstate(invalid="ignore"):
        return counts / counts.sum(axis=1, keepdims=True)


def confusion(jets: np.ndarray, *, stem: Path, text: str = "", title: str = "",
              warn: Warn | None = None):
    """The normalised confusion matrix (truth vs the most probable class), values printed."""
    _need(jets)
    matrix = confusion_matrix(jets)
    for i, flav in enumerate(CLASSES):
        if np.isnan(matrix[i]).all() and warn:
            warn(f"no {flav.name} jets: its row is empty")
    fig, ax = figure(figsize=(7.5, 6.5))
    image = ax.imshow(np.nan_to_num(matrix), cmap="Blues", vmin=0, vmax=1, origin="lower")
    fig.colorbar(image, ax=ax, label="fraction of the true flavour's jets")
    names = [f.name for f in CLASSES]
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.minorticks_off()
    ax.tick_params(which="both", length=0)
    ax.set_xlabel("predicted flavour (highest probability)")
    ax.set_ylabel("true flavour")
    for i in range(len(names)):
        for j in range(len(names)):
            value = matrix[i, j]
            ax.text(j, i, "-" if np.isnan(value) else f"{value:.2f}", ha="center",
                    va="center", color="white" if value > 0.6 else "black", fontsize=13)
    ax.set_title(title + (f"\n{text.splitlines()[0]}" if text else ""), loc="right",
                 fontsize=10)
    save(fig, stem)
    return fig


def history(path: Path, *, stem: Path, text: str = "", title: str = "",
            warn: Warn | None = None):
    """Training and validation loss and accuracy per epoch."""
    with open(path, newline="") as stream:
        rows = list(csv.DictReader(stream))
    if not rows:
        raise FlavourflowError("no epochs recorded", path=path, field="epoch")
    epochs = [int(r["epoch"]) for r in rows]
    fig, axes = figure(1, 2, figsize=(13, 5.5), squeeze=False)
    for ax, key, name in zip(axes[0], ("loss", "sparse_categorical_accuracy"),
                             ("loss", "accuracy"), strict=True):
        for prefix, style, what in (("", "-o", "training"), ("val_", "--s", "validation")):
            if prefix + key in rows[0]:
                ax.plot(epochs, [float(r[prefix + key]) for r in rows], style,
                        label=f"{what} {name}", markersize=4)
        if not ax.lines and warn:
            warn(f"no {name} in {path.name}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        if ax.lines:
            headroom(ax, 1.5)
            ax.legend(loc="upper right", fontsize=10)
        label(ax, "", title if name == "accuracy" else "")
    save(fig, stem)
    return fig
