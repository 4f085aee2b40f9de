"""The evaluate stage with a network written by hand in lwtnn JSON (no TensorFlow needed):
a network whose D_b is a monotonic function of ip2d_llr must reproduce that baseline's ROC."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from flavourflow.core import split
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.flavours import LABEL_FIELD
from flavourflow.evaluate import core

SPLIT = {"fractions": {"train": 0.5, "val": 0.2, "test": 0.3}, "seed": 9}


def write_network(path: Path, slope: float) -> None:
    """softmax([0, 0, slope * ip2d_llr]) over (pu, pc, pb): D_b = slope * ip2d_llr."""
    graph = {
        "inputs": [{"name": "jets", "variables": [
            {"name": "ip2d_llr", "offset": 0.0, "scale": 1.0, "default": 0.0},
            {"name": "sv_sig", "offset": 0.0, "scale": 1.0}]}],
        "input_sequences": [],
        "layers": [{"architecture": "dense", "weights": [0, 0, 0, 0, slope, 0],
                    "bias": [0, 0, 0], "activation": "softmax"}],
        "nodes": [{"type": "input", "sources": [0], "size": 2},
                  {"type": "feed_forward", "sources": [0], "layer_index": 0}],
        "outputs": {"m": {"node_index": 1, "labels": ["pu", "pc", "pb"]}},
    }
    path.write_text(json.dumps(graph))


def test_network_equal_to_a_baseline_gets_its_rejections(dumped: Path, tmp_path: Path):
    write_network(tmp_path / "network.json", slope=0.5)
    variables = {"inputs": [{"name": "jets", "variables": [{"name": "ip2d_llr"},
                                                           {"name": "sv_sig"}]}],
                 "outputs": [{"name": "m", "labels": ["pu", "pc", "pb"]}], "split": SPLIT}
    (tmp_path / "variables.json").write_text(json.dumps(variables))
    (tmp_path / "history.csv").write_text("epoch,loss,val_loss\n0,1.0,1.1\n1,0.9,1.0\n")
    out = tmp_path / "eval"
    result = core.run(tmp_path / "network.json", tmp_path / "variables.json", dumped,
                      tmp_path / "history.csv", out, f_c=0.1, working_points=[0.7, 0.85],
                      title="t")

    assert json.loads((out / "metrics.json").read_text()) == result
    with h5py.File(dumped) as f:
        jets = f["jets"][...]
    test = jets[split.mask(jets["eventNumber"], "test", SPLIT["fractions"], SPLIT["seed"])]
    with h5py.File(out / "scores.h5") as f:
        scores = f["jets"][...]
    assert np.array_equal(scores["eventNumber"], test["eventNumber"])
    assert np.allclose(scores["D_b"], 0.5 * test["ip2d_llr"], atol=1e-5)
    assert np.allclose(scores["pu"] + scores["pc"] + scores["pb"], 1.0, atol=1e-6)
    assert result["n_jets"]["bottom"] == np.count_nonzero(test[LABEL_FIELD] == 5)

    network, baseline = result["taggers"]["network"], result["taggers"]["ip2d_llr"]
    assert network["auc_b_vs_light"] == baseline["auc_b_vs_light"]
    for wp in ("70", "85"):
        for key in ("cut", "light_rejection", "light_rejection_lower_limit", "c_rejection"):
            if key != "cut":
                assert network["working_points"][wp][key] == baseline["working_points"][wp][key]
    # few light test jets pass at 70 %: a lower limit, not a value
    assert network["working_points"]["70"]["light_rejection_lower_limit"] > 10
    assert result["f_c"] == 0.1 and result["reference"] in ("ip2d_llr", "sv_sig")
    for stem in core.FIGURES:
        assert (out / f"{stem}.pdf").read_bytes()[:4] == b"%PDF"


def test_network_with_track_inputs_and_a_log_variable(dumped: Path, tmp_path: Path) -> None:
    """D_b = sum of d0 significance over the first 3 valid tracks + 0.5 log(pt): the stage
    must read the test jets' tracks, keep max_tracks of them with their valid flags, and
    compute log_pt from the dump's pt."""
    graph = {
        "inputs": [{"name": "jets", "variables": [
            {"name": "log_pt", "offset": 0.0, "scale": 1.0, "default": 0.0}]}],
        "input_sequences": [{"name": "tracks", "variables": [
            {"name": "IP3D_signed_d0_significance", "offset": 0.0, "scale": 1.0}]}],
        "layers": [
            {"architecture": "dense", "weights": [1.0], "bias": [0.0], "activation": "linear"},
            {"architecture": "dense", "weights": [0, 0, 0, 0, 1.0, 0.5], "bias": [0, 0, 0],
             "activation": "softmax"}],
        "nodes": [{"type": "input", "sources": [0], "size": 1},
                  {"type": "input_sequence", "sources": [0], "size": 1},
                  {"type": "time_distributed", "sources": [1], "layer_index": 0},
                  {"type": "sum", "sources": [2]},
                  {"type": "concatenate", "sources": [3, 0]},
                  {"type": "feed_forward", "sources": [4], "layer_index": 1}],
        "outputs": {"m": {"node_index": 5, "labels": ["pu", "pc", "pb"]}},
    }
    (tmp_path / "network.json").write_text(json.dumps(graph))
    variables = {"inputs": graph["inputs"],
                 "input_sequences": [{**graph["input_sequences"][0], "max_tracks": 3}],
                 "outputs": [{"name": "m", "labels": ["pu", "pc", "pb"]}], "split": SPLIT}
    (tmp_path / "variables.json").write_text(json.dumps(variables))
    out = tmp_path / "eval"
    core.score(tmp_path / "network.json", variables, dumped, out / "scores.h5", f_c=0.1)

    with h5py.File(dumped) as f:
        test = split.mask(f["jets"]["eventNumber"], "test", SPLIT["fractions"], SPLIT["seed"])
        jets, tracks = f["jets"][...][test], f["tracks"][...][test][:, :3]
    assert tracks["valid"][:, :3].all(axis=1).any() and (~tracks["valid"]).any()
    sd0 = np.where(tracks["valid"], tracks["IP3D_signed_d0_significance"], 0.0).sum(axis=1)
    expected = sd0 + 0.5 * np.log(jets["pt"].astype(np.float64))
    with h5py.File(out / "scores.h5") as f:
        scores = f["jets"][...]
    np.testing.assert_allclose(scores["D_b"], expected, rtol=1e-5, atol=1e-4)


def test_evaluation_time_selection_keeps_the_jets_it_names() -> None:
    """pt_min <= pT < pt_max and abs_eta_min <= |eta| < abs_eta_max, absent keys not cutting;
    an unknown key is refused, naming the field."""
    from flavourflow.evaluate.core import selected

    jets = np.zeros(6, dtype=[("pt", "f4"), ("eta", "f4")])
    jets["pt"] = [20e3, 30e3, 30e3, 45e3, 100e3, 250e3]
    jets["eta"] = [0.1, -0.5, 2.2, -1.5, 2.5, 0.0]
    assert selected(jets, {}).all()
    assert selected(jets, {"pt_min": 30e3}).tolist() == [False, True, True, True, True, True]
    assert selected(jets, {"pt_min": 30e3, "pt_max": 100e3, "abs_eta_max": 2.0}).tolist() == [
        False, True, False, True, False, False]
    assert selected(jets, {"abs_eta_min": 1.5}).tolist() == [
        False, False, True, True, True, False]
    with pytest.raises(FlavourflowError, match="selection"):
        selected(jets, {"ptmin": 1.0})


# ---- honest numbers and the figures, from constructed scores ------------------------------

def constructed_jets(n_per_flavour: int = 600, seed: int = 3, charm: bool = True) -> np.ndarray:
    """Test jets as scores.h5 holds them: D_b from well-separated p_b / p_c / p_u, pT from
    20 to 400 GeV and |eta| up to 2.5, the baselines with some separation."""
    from flavourflow.core.roc import b_discriminant
    from flavourflow.evaluate.core import COPIED_FIELDS

    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 4, 5] if charm else [0, 5], n_per_flavour)
    n = len(labels)
    dtype = [*COPIED_FIELDS.items(), ("pu", "f4"), ("pc", "f4"), ("pb", "f4"), ("D_b", "f4")]
    jets = np.zeros(n, dtype=dtype)
    jets[LABEL_FIELD] = labels
    jets["eventNumber"], jets["jetIndex"] = np.arange(n), 0
    jets["pt"] = rng.uniform(20e3, 400e3, n)
    jets["eta"] = rng.uniform(-2.5, 2.5, n)
    logits = rng.normal(0.0, 1.0, (n, 3))
    logits[:, 0] += 1.2 * (labels == 0)
    logits[:, 1] += 1.2 * (labels == 4)
    logits[:, 2] += 1.2 * (labels == 5)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    jets["pu"], jets["pc"], jets["pb"] = probs.T
    jets["D_b"] = b_discriminant(jets["pb"], jets["pc"], jets["pu"], 0.018)
    jets["ip2d_llr"] = rng.normal(labels / 5.0, 1.0)
    jets["sv_sig"] = rng.normal(labels / 10.0, 1.0)
    return jets


def test_rejection_below_10_passing_jets_is_a_95cl_lower_limit() -> None:
    """n_pass >= 10: 1/eff with its binomial uncertainty; fewer: only the Clopper-Pearson
    lower limit (for 0 of n passing, 1 / (1 - 0.05^(1/n)) in closed form)."""
    from flavourflow.core import roc

    background = np.arange(1000.0)
    stats = roc.rejection_stats(background, 974.5)  # 25 pass
    assert stats["n_pass"] == 25 and stats["rejection"] == 40.0
    assert stats["rejection_err"] == pytest.approx(np.sqrt(0.025 * 0.975 / 1000) / 0.025**2)
    assert stats["rejection_lower_limit"] is None
    stats = roc.rejection_stats(background, 999.5)  # none passes
    assert stats["rejection"] is None and stats["rejection_err"] is None
    assert stats["rejection_lower_limit"] == pytest.approx(1 / (1 - 0.05 ** (1 / 1000)))
    nine = roc.rejection_stats(background, 990.5)["rejection_lower_limit"]  # 9 pass
    assert 1000 / 9 / 2 < nine < 1000 / 9  # below the naive 111 (a limit, not a value)
    assert roc.rejection(background, 990.5) == (None, None)
    # an unreachable working point (80 % of the b jets share one value): no cut, no numbers
    b = np.r_[np.zeros(800), np.arange(1.0, 201.0)]
    point = roc.performance({"bottom": b, "charm": background, "light": background},
                            [0.5])["working_points"]["50"]
    assert point["cut"] is None and point["light_rejection"] is None
    assert point["light_rejection_lower_limit"] is None and point["n_light"] == 1000


def test_rejection_plot_curves_ratio_and_a_known_value(tmp_path: Path) -> None:
    """b = 0..999 and light = 2, 6, ..., 398: at 70 % b efficiency the cut is 299 (or 300: 1 - 0.7
    is not 0.3 in floating point) and 25 of
    the 100 light jets pass, a rejection of 4; the reference's ratio is 1; one curve per
    tagger, with a band, in each panel."""
    from flavourflow.core.rejections import ROC_EFFICIENCIES, rejection_curves

    b, light = np.arange(1000.0), 4.0 * np.arange(100) + 2.0
    taggers = {"good": {"bottom": b, "charm": light, "light": light},
               "worse": {"bottom": b, "charm": light + 50, "light": light + 50}}
    fig = rejection_curves(taggers, tmp_path / "roc", "t", reference="good", text="√s = 13 TeV")
    top_light, top_c, ratio_light, _ = fig.axes
    assert top_light.get_ylabel() == "light-jet rejection" and top_c.get_ylabel() == \
        "charm-jet rejection"
    assert ratio_light.get_xlabel() == "b-jet efficiency"
    assert ratio_light.get_ylabel() == "ratio to good"
    assert [line.get_label() for line in top_light.get_lines()] == ["good", "worse"]
    assert len(top_light.collections) == 2  # the uncertainty bands
    x, y = top_light.get_lines()[0].get_data()
    at = int(np.argmin(np.abs(ROC_EFFICIENCIES - 0.7)))
    assert x[at] == pytest.approx(0.7) and y[at] == pytest.approx(4.0)
    ratio = ratio_light.get_lines()
    assert np.nanmax(np.abs(ratio[0].get_ydata() - 1.0)) == 0.0  # the reference
    assert np.nanmax(ratio[1].get_ydata()) < 1.0  # the worse tagger
    # the curve stops where fewer than 10 light jets pass (no flat line at n_light)
    assert np.isnan(y[ROC_EFFICIENCIES < 0.6]).all()
    assert (tmp_path / "roc.pdf").read_bytes()[:4] == b"%PDF"
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"


def test_performance_vs_pt_global_cut_and_flat_efficiency(tmp_path: Path) -> None:
    """D_b of b jets grows with pT: with one global cut the b efficiency rises with pT, with a
    cut per bin it is the working point's in every bin; one curve per working point."""
    from flavourflow.evaluate import plots

    jets = constructed_jets(2000)
    b = jets[LABEL_FIELD] == 5
    jets["D_b"][b] += 3.0 * (jets["pt"][b] / 400e3)
    fig = plots.performance_vs(jets, "pt", [0.6, 0.77], stem=tmp_path / "vs_pt", title="m")
    axes = np.array(fig.axes).reshape(3, 2)
    assert [ax.get_ylabel() for ax in axes[:, 0]] == [
        "b-jet efficiency", "light-jet rejection", "c-jet rejection"]
    assert axes[2, 0].get_xlabel() == "jet $p_T$ [GeV]"
    global_eff = [line.get_ydata() for line in axes[0, 0].get_lines()]
    flat_eff = [line.get_ydata() for line in axes[0, 1].get_lines()]
    assert len(global_eff) == len(flat_eff) == 2  # one per working point
    assert global_eff[0][-1] > global_eff[0][0] + 0.2
    for wp, eff in zip([0.6, 0.77], flat_eff, strict=True):
        finite = eff[np.isfinite(eff)]
        assert len(finite) >= 5 and np.abs(finite - wp).max() < 0.03
    # the values are those of the jets in each bin, computed independently
    data = plots.binned_performance(jets, jets["pt"] / 1e3, plots.PT_EDGES / 1e3, 0.6, True)
    first = (jets["pt"] < 30e3) & b
    from flavourflow.core.roc import cut_for_efficiency

    cut = cut_for_efficiency(jets["D_b"][first], 0.6)
    assert data["b_eff"][0] == np.count_nonzero(jets["D_b"][first] > cut) / first.sum()


def test_confusion_matrix_and_fc_scan_from_constructed_scores(tmp_path: Path) -> None:
    from flavourflow.evaluate import plots

    jets = constructed_jets(4)[:12]
    probs = np.zeros((12, 3))
    probs[np.arange(12), [0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 2][:12]] = 1.0  # predicted class
    jets["pu"], jets["pc"], jets["pb"] = probs.T
    jets[LABEL_FIELD] = [0, 0, 0, 0, 4, 4, 4, 4, 5, 5, 5, 5]
    matrix = plots.confusion_matrix(jets)
    np.testing.assert_allclose(matrix, [[0.75, 0.25, 0], [0, 0.5, 0.5], [0, 0, 1]])
    fig = plots.confusion(jets, stem=tmp_path / "confusion", title="m")
    assert fig.axes[0].get_ylabel() == "true flavour"
    assert "0.75" in [t.get_text() for t in fig.axes[0].texts]

    jets = constructed_jets(1500)
    fig = plots.fc_scan(jets, [0.7, 0.77], 0.05, stem=tmp_path / "fc", title="m")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "c-jet rejection" and ax.get_ylabel() == "light-jet rejection"
    stars = [line for line in ax.get_lines() if line.get_marker() == "*" and
             len(line.get_xdata())]
    assert len(stars) == 2
    light, c = plots.rejections_at(*(jets[p].astype(float) for p in ("pb", "pc", "pu")),
                                   jets[LABEL_FIELD], 0.05, 0.7)
    assert stars[0].get_xdata()[0] == pytest.approx(c)
    assert stars[0].get_ydata()[0] == pytest.approx(light)


def test_bad_input_names_model_sample_figure_and_draws_the_rest(tmp_path: Path, caplog) -> None:
    """No charm jets, NaN scores, an unreachable working point, then no jets at all: each
    problem is one warning line naming the model, the sample and the figure; the figure it
    prevents is a placeholder and every other figure is drawn."""
    import logging

    from flavourflow.core.style import Figures
    from flavourflow.evaluate.core import FIGURES, measure_and_plot

    history = tmp_path / "history.csv"
    history.write_text("epoch,loss,val_loss,sparse_categorical_accuracy\n0,1.0,1.1,0.5\n")
    jets = constructed_jets(800, charm=False)
    jets["D_b"][:7] = np.nan
    b = np.flatnonzero(jets[LABEL_FIELD] == 5)
    jets["D_b"][b[:160]] = -50.0  # 20 % of the b jets share one value: 85 % is out of reach
    out = tmp_path / "nocharm"
    with caplog.at_level(logging.WARNING):
        result = measure_and_plot(jets, history, out, 0.018, [0.7, 0.85], "m",
                                  Figures("model m, sample s"))
    lines = result["problems"]
    assert all(line.startswith("model m, sample s, figure ") and "\n" not in line
               for line in lines)
    assert any("figure fc_scan: not drawn (no charm jets" in line for line in lines)
    assert any("figure roc: 7 jets with a NaN D_b left out" in line for line in lines)
    assert any("figure discriminant: working point 85 % is out of reach" in line
               for line in lines)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == lines
    for name in FIGURES:
        assert (out / f"{name}.png").stat().st_size > 0 and (out / f"{name}.pdf").is_file()
    network = result["taggers"]["network"]
    assert network["n_nan"] == 7 and network["working_points"]["70"]["c_rejection"] is None
    assert network["working_points"]["70"]["light_rejection"] > 1
    assert network["working_points"]["85"]["cut"] is None

    empty = measure_and_plot(jets[:0], history, tmp_path / "empty", 0.018, [0.7], "m",
                             Figures("model m, sample s"))
    failed = {line.split(", figure ")[1].split(":")[0] for line in empty["problems"]
              if "not drawn" in line}
    assert failed == set(FIGURES) - {"training"}
    assert all((tmp_path / "empty" / f"{name}.png").is_file() for name in FIGURES)
    assert empty["n_jets"] == {"light": 0, "charm": 0, "bottom": 0}
