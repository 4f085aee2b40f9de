"""Figure saving shared by the plotting stages: every figure as PDF and PNG, atomically."""

from __future__ import annotations

from pathlib import Path

from flavourflow.core.outputs import atomic_path


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
