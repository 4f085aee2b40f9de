"""Rejection-vs-efficiency plots (inspect, evaluate, compare): apart from the ROC arithmetic
(:mod:`flavourflow.core.roc`, which inject uses too) and from figure saving
(:mod:`flavourflow.core.plots`, which preprocess uses too), so that each stage depends on
the code it runs."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from flavourflow.core import roc
from flavourflow.core.flavours import CHARM, LIGHT
from flavourflow.core.plots import figure, save

#: b-jet efficiencies at which rejection curves are drawn.
ROC_EFFICIENCIES = np.linspace(0.5, 0.99, 50)


def rejection_curves(taggers: Mapping[str, Mapping[str, np.ndarray]], stem: Path,
                     title: str) -> None:
    """Light- and c-jet rejection vs b-jet efficiency of several taggers, side by side.

    ``taggers`` maps a label to the tagger's discriminant per flavour name (bottom, charm,
    light); efficiencies a tagger cannot reach are left out of its curve.
    """
    fig, axes = figure(1, 2, figsize=(11, 4.5))
    styles = ("-", "--", ":", "-.")
    for k, (label, by_flavour) in enumerate(taggers.items()):
        for ax, bkg in zip(axes, (LIGHT, CHARM), strict=True):
            curve = roc.roc_curve(by_flavour["bottom"], by_flavour[bkg.name], ROC_EFFICIENCIES)
            ax.plot(ROC_EFFICIENCIES, curve, styles[k % len(styles)], label=label)
    for ax, bkg in zip(axes, (LIGHT, CHARM), strict=True):
        ax.set_yscale("log")
        ax.set_xlabel("b-jet efficiency")
        ax.set_ylabel(f"{bkg.name}-jet rejection")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    save(fig, stem)
