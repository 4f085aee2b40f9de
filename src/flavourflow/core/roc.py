"""Efficiencies, rejections and ROC curves of a discriminant (shared by inspect and evaluate)."""

from __future__ import annotations

import math
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


#: Fewer background jets than this passing a cut: the rejection is quoted as a lower limit.
MIN_PASSING = 10
#: Confidence level of those lower limits (one-sided, Clopper-Pearson).
LIMIT_CL = 0.95


def _binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space (k is small here)."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
             + i * math.log(p) + (n - i) * math.log1p(-p) for i in range(min(k, n) + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def efficiency_upper_limit(n_pass: int, n: int, cl: float = LIMIT_CL) -> float:
    """One-sided Clopper-Pearson upper limit on an efficiency from ``n_pass`` of ``n`` (the p
    with P(X <= n_pass | n, p) = 1 - cl), by bisection."""
    if n_pass >= n:
        return 1.0
    lo, hi = n_pass / n, 1.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if _binomial_cdf(n_pass, n, mid) > 1.0 - cl:
            lo = mid
        else:
            hi = mid
    return hi


def rejection_stats(background: np.ndarray, cut: float | None) -> dict:
    """The rejection of ``background`` (keep > ``cut``) as metrics report it:
    ``rejection`` and its binomial ``rejection_err`` when at least :data:`MIN_PASSING` jets
    pass, else ``rejection_lower_limit`` (95 % CL, Clopper-Pearson) with the other two None;
    ``n_pass`` of ``n_jets``. All None but ``n_jets`` when there is no cut (unreachable
    working point) or no background jet."""
    n = len(background)
    out = {"rejection": None, "rejection_err": None, "rejection_lower_limit": None,
           "n_pass": None, "n_jets": n}
    if cut is None or n == 0:
        return out
    n_pass = int(np.count_nonzero(background > cut))
    out["n_pass"] = n_pass
    if n_pass < MIN_PASSING:
        out["rejection_lower_limit"] = 1.0 / efficiency_upper_limit(n_pass, n)
        return out
    eff = n_pass / n
    out["rejection"] = 1.0 / eff
    out["rejection_err"] = float(np.sqrt(eff * (1.0 - eff) / n) / eff**2)
    return out


def rejection(background: np.ndarray, cut: float | None) -> tuple[float | None, float | None]:
    """1/efficiency of ``background`` above ``cut`` and its binomial uncertainty;
    (None, None) when fewer than :data:`MIN_PASSING` background jets pass (the rejection is
    then only bounded below, see :func:`rejection_stats`) or when there is no cut (the
    working point is out of reach)."""
    stats = rejection_stats(background, cut)
    return stats["rejection"], stats["rejection_err"]


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
    light and c rejections of one discriminant given per flavour (``{"bottom": ...,
    "charm": ..., "light": ...}``); keyed ``"70"`` etc. Each rejection carries its
    uncertainty, or is a lower limit (:func:`rejection_stats`); the README documents the keys."""
    b, c, light = by_flavour["bottom"], by_flavour["charm"], by_flavour["light"]
    out: dict = {"auc_b_vs_light": auc(b, light) if len(light) and len(b) else None,
                 "auc_b_vs_charm": auc(b, c) if len(c) and len(b) else None,
                 "working_points": {}}
    for wp in working_points:
        cut = cut_for_efficiency(b, wp) if len(b) else None
        point: dict = {"b_efficiency": wp, "cut": cut,
                       "b_efficiency_achieved": None if cut is None else
                       float(np.count_nonzero(b > cut) / len(b)), "n_bottom": len(b)}
        for name, background in (("light", light), ("c", c)):
            stats = rejection_stats(background, cut)
            point[f"{name}_rejection"] = stats["rejection"]
            point[f"{name}_rejection_err"] = stats["rejection_err"]
            point[f"{name}_rejection_lower_limit"] = stats["rejection_lower_limit"]
            point[f"{name}_n_pass"] = stats["n_pass"]
            point[f"n_{'charm' if name == 'c' else name}"] = stats["n_jets"]
        out["working_points"][f"{round(wp * 100)}"] = point
    return out


def roc_curve(signal: np.ndarray, background: np.ndarray,
              efficiencies: Sequence[float] | np.ndarray) -> np.ndarray:
    """Background rejection at each signal efficiency (NaN where fewer than
    :data:`MIN_PASSING` background jets pass, or the efficiency is out of reach)."""
    return rejection_band(signal, background, efficiencies)[0]


def rejection_band(signal: np.ndarray, background: np.ndarray,
                   efficiencies: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rejection, its binomial uncertainty) at each signal efficiency; NaN where
    :func:`rejection` gives None."""
    values = np.full(len(efficiencies), np.nan)
    errors = np.full(len(efficiencies), np.nan)
    if len(signal) == 0 or len(background) == 0:
        return values, errors
    for i, eff in enumerate(efficiencies):
        rej, err = rejection(background, cut_for_efficiency(signal, eff))
        if rej is not None:
            values[i], errors[i] = rej, err
    return values, errors
