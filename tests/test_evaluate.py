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
        assert network["working_points"][wp]["light_rejection"] == \
            baseline["working_points"][wp]["light_rejection"]
    for stem in ("roc", "discriminant", "training"):
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
    (tmp_path / "history.csv").write_text("epoch,loss,val_loss\n0,1.0,1.1\n")
    out = tmp_path / "eval"
    core.run(tmp_path / "network.json", tmp_path / "variables.json", dumped,
             tmp_path / "history.csv", out, f_c=0.1, working_points=[0.7], title="t")

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
