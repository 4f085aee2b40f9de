"""Rejection-vs-efficiency plots (inspect, evaluate, compare): light- and c-jet rejection vs
b-jet efficiency with binomial uncertainty bands and a ratio panel to a reference tagger.
Apart from the ROC arithmetic (:mod:`flavourflow.core.roc`, which inject uses too) and from
figure saving (:mod:`flavourflow.core.plots`, which preprocess uses too), so that each stage
depends on the code it runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from flavourflow.core import roc
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.flavours import BOTTOM, CHARM, LIGHT
from flavourflow.core.plots import save
from flavourflow.core.style import figure, headroom, label

#: b-jet efficiencies at which rejection curves are drawn.
ROC_EFFICIENCIES = np.linspace(0.5, 0.99, 50)
#: Line styles of successive taggers (colours follow the style's cycle).
STYLES = ("-", "--", "-.", ":")


def best_baseline(performances: Mapping[str, dict], baselines: list[str]) -> str | None:
    """The baseline with the highest b-vs-light AUC (the default reference of ratios)."""
    aucs = {name: performances[name]["auc_b_vs_light"] for name in baselines
            if name in performances and performances[name]["auc_b_vs_light"] is not None}
    return max(aucs, key=aucs.__getitem__) if aucs else None


def rejection_curves(taggers: Mapping[str, Mapping[str, np.ndarray]], stem: Path,
                     title: str, reference: str | None = None, text: str = "",
                     warn: Callable[[str], None] | None = None):
    """Light- and c-jet rejection vs b-jet efficiency of several taggers, side by side, each
    with its binomial uncertainty band; below each, the ratio to ``reference`` (a key of
    ``taggers``; no ratio panel when None). Returns the figure.

    ``taggers`` maps a label to the tagger's discriminant per flavour name (bottom, charm,
    light). A curve stops where fewer than :data:`roc.MIN_PASSING` background jets pass: a
    rejection is not drawn where it is only a lower limit. ``warn`` hears of a tagger or
    flavour that gives no curve.
    """
    if reference is not None and reference not in taggers:
        raise ValueError(f"reference tagger '{reference}' is not among {list(taggers)}")
    if not any(len(by_flavour[BOTTOM.name]) for by_flavour in taggers.values()):
        raise FlavourflowError("no b jets: no b-jet efficiency to draw against")
    fig, axes = figure(2, 2, figsize=(13, 6.5), sharex=True, squeeze=False,
                       gridspec_kw={"height_ratios": [3, 1], "hspace": 0.06, "wspace": 0.25})
    bands: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    for name, by_flavour in taggers.items():
        for bkg in (LIGHT, CHARM):
            bands[name, bkg.name] = roc.rejection_band(
                by_flavour[BOTTOM.name], by_flavour[bkg.name], ROC_EFFICIENCIES)
    for col, bkg in enumerate((LIGHT, CHARM)):
        top, bottom = axes[0, col], axes[1, col]
        for k, name in enumerate(taggers):
            values, errors = bands[name, bkg.name]
            if not np.isfinite(values).any():
                if warn:
                    warn(f"{name}: no {bkg.name}-jet rejection to draw (no {bkg.name} or "
                         f"b jets, or fewer than {roc.MIN_PASSING} pass every cut)")
                top.plot([], [], STYLES[k % len(STYLES)], color=f"C{k}", label=name)
                continue
            line, = top.plot(ROC_EFFICIENCIES, values, STYLES[k % len(STYLES)], color=f"C{k}",
                             label=name)
            top.fill_between(ROC_EFFICIENCIES, values - errors, values + errors,
                             color=line.get_color(), alpha=0.25, linewidth=0)
            if reference is not None:
                ref, ref_err = bands[reference, bkg.name]
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = values / ref
                    rel = errors / values if name == reference else np.hypot(
                        errors / values, ref_err / ref)
                bottom.plot(ROC_EFFICIENCIES, ratio, STYLES[k % len(STYLES)],
                            color=line.get_color())
                bottom.fill_between(ROC_EFFICIENCIES, ratio * (1 - rel), ratio * (1 + rel),
                                    color=line.get_color(), alpha=0.25, linewidth=0)
        top.set_yscale("log")
        top.set_ylabel(f"{bkg.name}-jet rejection")
        if any(np.isfinite(v).any() for v in (bands[n, bkg.name][0] for n in taggers)):
            headroom(top, 1.45)
        top.legend(loc="upper right", fontsize=10)
        label(top, text, right=title if col == 1 else "")
        bottom.set_xlabel("b-jet efficiency")
        bottom.set_ylabel(f"ratio to {reference}" if reference else "", fontsize=10)
        bottom.axhline(1.0, color="grey", linewidth=0.8)
        if reference is None:
            bottom.set_visible(False)
    save(fig, stem)
    return fig
