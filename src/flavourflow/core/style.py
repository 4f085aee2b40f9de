"""The look of the physics plots (inspect, evaluate, compare): mplhep's ATLAS style, an
experiment-style label (√s, sample, jet selection), and a placeholder figure that names what
could not be drawn. The fonts come with mplhep (mplhep-data): nothing is downloaded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flavourflow.core.errors import FlavourflowError
from flavourflow.core.plots import save

log = logging.getLogger(__name__)

#: The experiment-style label's bold part and its italic supplement.
EXPERIMENT = "flavourflow"
STATUS = "Simulation"


def figure(*args: Any, **kwargs: Any):
    """A figure in mplhep's ATLAS style on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.ATLAS)
    plt.rcParams.update({"legend.frameon": False, "axes.formatter.use_mathtext": True})
    return plt.subplots(*args, **kwargs)


def label(ax, text: str = "", right: str = "") -> None:
    """The experiment label in the top left of ``ax`` (bold "flavourflow", italic
    "Simulation", as ATLAS-style plots put theirs), then ``text`` (√s, sample, selection: one
    item per line) below it, and ``right`` (e.g. the model) above the axes on the right.
    (Plain text: mplhep's ``exp_label`` draws the whole figure to place its parts, a second
    per label.)"""
    ax.text(0.04, 0.955, rf"$\mathbf{{{EXPERIMENT}}}$ $\mathit{{{STATUS}}}$",
            transform=ax.transAxes, va="top", ha="left", fontsize=15)
    if text:
        ax.text(0.04, 0.87, text, transform=ax.transAxes, va="top", ha="left", fontsize=10,
                linespacing=1.3)
    if right:
        ax.set_title(right, loc="right", fontsize=11)


def headroom(ax, factor: float = 1.6, log_scale: bool | None = None) -> None:
    """More room above the data for the label and legend (multiplicative on log axes)."""
    lo, hi = ax.get_ylim()
    log_scale = ax.get_yscale() == "log" if log_scale is None else log_scale
    if log_scale:
        if lo > 0 and hi > lo:
            ax.set_ylim(lo, hi * (hi / lo) ** (factor - 1.0))
    else:
        ax.set_ylim(lo, lo + (hi - lo) * factor)


def placeholder(stem: Path, message: str):
    """A figure saying what could not be drawn (so the report shows the reason)."""
    fig, ax = figure(figsize=(8, 3))
    ax.axis("off")
    ax.text(0.5, 0.5, "not drawn:\n" + message, ha="center", va="center", wrap=True,
            fontsize=11, transform=ax.transAxes)
    save(fig, stem)
    return fig


class Figures:
    """Draws a stage's figures one by one: a figure whose input is bad (no jets, no
    flavour, an unreachable working point, NaN scores) is replaced by a placeholder that
    names the problem, with a one-line warning naming the model, the sample and the figure;
    every other figure is still drawn. ``warn`` records lesser problems of a figure that is
    still drawn (a missing curve)."""

    def __init__(self, context: str) -> None:
        self.context = context
        self.problems: list[str] = []

    def warn(self, name: str, message: str) -> None:
        line = f"{self.context}, figure {name}: {message}"
        self.problems.append(line)
        log.warning("%s", line)

    def draw(self, name: str, stem: Path, function: Callable[..., Any], *args: Any,
             **kwargs: Any):
        """``function(*args, stem=stem, warn=..., **kwargs)``; its figure, or the placeholder."""
        try:
            return function(*args, stem=stem, warn=lambda message: self.warn(name, message),
                            **kwargs)
        except (FlavourflowError, ValueError, IndexError, ZeroDivisionError) as err:
            message = str(err)
            self.warn(name, f"not drawn ({' '.join(message.split())})")
            import matplotlib.pyplot as plt

            plt.close("all")
            return placeholder(stem, message)
