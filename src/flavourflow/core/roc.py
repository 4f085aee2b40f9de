"""Efficiencies, rejections and ROC curves of a discriminant (shared by inspect and evaluate)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from flavourflow.core.flavours import CLASSES


def by_flavour(values: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """``values`` split by truth label into the classes (``{"light": ..., "charm": ...,
    "bottom": ...}``), as :func:`performance` and the rejection plots take them."""
    return {f.name: values[labels == f.label] for f in CLASSES}


def b_discriminant(p_b: np.ndarray, p_c: np.ndarray, p_u: np.ndarray, f_c: float) -> np.ndarray:
    """D_b = ln(p_b / (f_c p_c + (1 - f_c) p_u)), the DL1 b-tagging discriminant."""
    with np.errstate(divide="ignore"):
        return np.log(p_b) - np.log(f_c * p_c + (1.0 - f_c) * p_u)


def cut_for_efficiency(signal: np.ndarray, efficiency: float) -> float | None:
    """The cut (keep > cut) that keeps the fraction ``efficiency`` of ``signal``; None when no
    cut does, because many signal jets share one value (e.g. 0 for jets without a vertex)."""
    cut = float(np.quantile(signal, 1.0 - efficiency, method="inverted_cdf"))
    achieved = np.count_nonzero(signal > cut) / len(signal)
    return cut if abs(achieved - efficiency) <= max(0.005, 2.0 / len(signal)) else None


def rejection(background: np.ndarray, cut: float | None) -> tuple[float | None, float | None]:
    """1/efficiency of ``background`` above ``cut`` and its binomial uncertainty;
    (None, None) when no background jet passes (the rejection is then only bounded below)
    or when there is no cut (the working point is out of reach)."""
    if cut is None:
        return None, None
    n = len(background)
    n_pass = int(np.count_nonzero(background > cut))
    if n == 0 or n_pass == 0:
        return None, None
    eff = n_pass / n
    return 1.0 / eff, float(np.sqrt(eff * (1.0 - eff) / n) / eff**2)


def auc(signal: np.ndarray, background: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a signal jet scores above a background
    jet (ties count one half), from the rank-sum statistic."""
    values = np.concatenate([signal, background])
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    # average the ranks of tied values
    sorted_values = values[order]
    _, first, counts = np.unique(sorted_values, return_index=True, return_counts=True)
    mean_rank = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(mean_rank, counts)
    n_s, n_b = len(signal), len(background)
    return float((ranks[:n_s].sum() - n_s * (n_s + 1) / 2.0) / (n_s * n_b))


def performance(by_flavour: dict[str, np.ndarray], working_points: Sequence[float]) -> dict:
    """AUCs (b vs light, b vs c) and, at each b-efficiency working point, the cut and the
    light and c rejections with their uncertainties, of one discriminant given per flavour
    (``{"bottom": ..., "charm": ..., "light": ...}``); keyed ``"70"`` etc."""
    b, c, light = by_flavour["bottom"], by_flavour["charm"], by_flavour["light"]
    out: dict = {"auc_b_vs_light": auc(b, light) if len(light) else None,
                 "auc_b_vs_charm": auc(b, c) if len(c) else None, "working_points": {}}
    for wp in working_points:
        cut = cut_for_efficiency(b, wp)
        light_rej, light_err = rejection(light, cut)
        c_rej, c_err = rejection(c, cut)
        out["working_points"][f"{round(wp * 100)}"] = {
            "b_efficiency": wp, "cut": cut,
            "light_rejection": light_rej, "light_rejection_err": light_err,
            "c_rejection": c_rej, "c_rejection_err": c_err,
        }
    return out


def roc_curve(signal: np.ndarray, background: np.ndarray,
              efficiencies: Sequence[float] | np.ndarray) -> np.ndarray:
    """Background rejection at each signal efficiency (NaN where no background passes)."""
    out = np.full(len(efficiencies), np.nan)
    for i, eff in enumerate(efficiencies):
        rej, _ = rejection(background, cut_for_efficiency(signal, eff))
        if rej is not None:
            out[i] = rej
    return out
