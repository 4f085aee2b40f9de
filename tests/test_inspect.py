"""The inspect stage: histograms of every input, baseline ROCs and a summary, from a dump."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from flavourflow.core.flavours import LABEL_FIELD
from flavourflow.inspect import core


def test_plots_and_summary(dumped: Path, tmp_path: Path) -> None:
    out = tmp_path / "inspect"
    names = ["pt", "eta", "ip2d_llr", "n_tracks"]
    summary = core.run(dumped, out, n_bins=20, working_points=[0.5, 0.7], title="t",
                       block_size=97, correlated=names)
    for stem in ("jet_inputs", "track_inputs", "ip_significance", "correlations",
                 "baselines_roc"):
        assert (out / f"{stem}.pdf").read_bytes()[:4] == b"%PDF"
        assert (out / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "summary.json").read_text()) == summary

    with h5py.File(dumped) as f:
        labels = f["jets"][LABEL_FIELD]
    assert summary["n_jets"]["bottom"] == np.count_nonzero(labels == 5)
    assert abs(sum(summary["fractions"].values()) - 1) < 1e-12
    # the synthetic baselines separate (None: not one light jet passes the cut)
    for tagger in ("ip2d_llr", "sv_sig"):
        point = summary["baselines"][tagger]["working_points"]["50"]
        assert point["light_rejection"] is None or point["light_rejection"] > 2
        assert point["c_rejection"] > 1
        assert 0.5 < summary["baselines"][tagger]["auc_b_vs_light"] <= 1
    assert summary["working_points"] == [0.5, 0.7]
    assert set(summary["baselines"]["ip2d_llr"]["working_points"]) == {"50", "70"}

    # the correlation matrix of the model inputs, per flavour, accumulated over blocks of 97
    # jets, is numpy's on the jets where every input is finite
    with h5py.File(dumped) as f:
        jets = f["jets"][...]
    for flavour, label in (("light", 0), ("charm", 4), ("bottom", 5)):
        rows = np.stack([jets[n][jets[LABEL_FIELD] == label].astype(float) for n in names])
        rows = rows[:, np.isfinite(rows).all(axis=0)]
        entry = summary["correlations"][flavour]
        assert entry["variables"] == names and entry["n_jets"] == rows.shape[1]
        np.testing.assert_allclose(entry["matrix"], np.corrcoef(rows), atol=1e-9)
    correlations = core.Correlations(names)
    correlations.fill(jets)
    fig = correlations.plot(stem=tmp_path / "corr", title="t")
    heat_maps = [ax for ax in fig.axes if ax.images]
    assert len(heat_maps) == 3  # one per flavour
    assert [t.get_text() for t in heat_maps[0].get_xticklabels()] == names
    assert heat_maps[2].get_title(loc="left").startswith("bottom jets")


def test_histograms_accumulate_over_blocks() -> None:
    hists = core.FlavourHistograms(["x"], n_bins=10)
    rng = np.random.default_rng(0)
    values, labels = rng.normal(size=1000), rng.choice([0, 4, 5], 1000)
    hists.fill({"x": values[:500]}, labels[:500])
    hists.fill({"x": values[500:]}, labels[500:])
    total = sum(h.sum() for h in hists.counts["x"].values())
    assert total == 1000  # every value lands in a bin (under/overflow clipped into the ends)
