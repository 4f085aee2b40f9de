"""The evaluate stage with a network written by hand in lwtnn JSON (no TensorFlow needed):
a network whose D_b is a monotonic function of ip2d_llr must reproduce that baseline's ROC."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from flavourflow.core import split
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
