"""Figure saving shared by the plotting stages: every figure as PDF and PNG, atomically."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from flavourflow.core import roc
from flavourflow.core.flavours import CHARM, LIGHT
from flavourflow.core.outputs import atomic_path

#: b-jet efficiencies at which rejection curves are drawn.
ROC_EFFICIENCIES = np.linspace(0.5, 0.99, 50)


def figure(*args, **kwargs):
    """A matplotlib figure on the non-interactive Agg backend (works without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save(fig, stem: Path) -> list[Path]:
    """Write ``fig`` to ``stem``.pdf and ``stem``.png; close it; return the paths."""
    import matplotlib.pyplot as plt

    paths = []
    for suffix in (".pdf", ".png"):
        target = stem.with_suffix(suffix)
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format=suffix[1:], dpi=120, bbox_inches="tight")
        paths.append(target)
    plt.close(fig)
    return paths


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
