"""The inject stage on real files: a synthetic ntuple (uproot), its dump (the dump stage), an
lwtnn network -> friend tree + h5, read back next to the original and checked jet by jet."""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pytest
import uproot
from factories import write_ntuple

from flavourflow import cli
from flavourflow.core import roc
from flavourflow.core.errors import FlavourflowError
from flavourflow.dump import core as dump_core
from flavourflow.dump import ntuple as nt
from flavourflow.export.evaluator import LightweightGraph
from flavourflow.inject import core

PT_MIN, ETA_MAX = 20_000.0, 2.5
# log_pt: computed from the dump's pt (flavourflow.core.inputs); sv_mass is NaN without a vertex
JET_VARS = ["log_pt", "eta", "ip2d_llr", "sv_sig", "sv_mass"]
MAX_TRACKS = 4  # the network was "trained" on the first 4 tracks (dump: 10)
TRACK_VARS = ["IP3D_signed_d0_significance", "ptfrac"]
F_C = 0.018


def dense(rng, n_in, n_out, activation):
    return {
        "architecture": "dense",
        "weights": rng.normal(0, 0.5, n_out * n_in).tolist(),
        "bias": rng.normal(0, 0.1, n_out).tolist(),
        "activation": activation,
    }


def jet_node():
    offsets = [-11.0, 0.0, 0.0, 0.0, -1000.0]
    scales = [1.0, 0.8, 0.3, 0.2, 1e-3]
    return {
        "name": "jets",
        "variables": [
            {"name": n, "offset": o, "scale": s, "default": -1.0}
            for n, o, s in zip(JET_VARS, offsets, scales, strict=True)
        ],
    }


def dl1_network(rng) -> dict:
    return {
        "inputs": [jet_node()],
        "input_sequences": [],
        "layers": [dense(rng, 5, 8, "rectified"), dense(rng, 8, 3, "softmax")],
        "nodes": [
            {"type": "input", "sources": [0], "size": 5},
            {"type": "feed_forward", "sources": [0], "layer_index": 0},
            {"type": "feed_forward", "sources": [1], "layer_index": 1},
        ],
        "outputs": {"DL1": {"node_index": 2, "labels": ["pu", "pc", "pb"]}},
    }


def dips_network(rng) -> dict:
    tracks = {
        "name": "tracks",
        "variables": [{"name": n, "offset": 0.0, "scale": 0.5} for n in TRACK_VARS],
        "max_tracks": MAX_TRACKS,
    }
    return {
        "inputs": [jet_node()],
        "input_sequences": [tracks],
        "layers": [dense(rng, 2, 6, "rectified"), dense(rng, 11, 3, "softmax")],
        "nodes": [
            {"type": "input_sequence", "sources": [0], "size": 2},
            {"type": "time_distributed", "sources": [0], "layer_index": 0},
            {"type": "sum", "sources": [1]},
            {"type": "input", "sources": [0], "size": 5},
            {"type": "concatenate", "sources": [2, 3]},
            {"type": "feed_forward", "sources": [4], "layer_index": 1},
        ],
        "outputs": {"DIPS": {"node_index": 5, "labels": ["pu", "pc", "pb"]}},
    }


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, Path]:
    """A 600-event synthetic ntuple and its dump (other block sizes than inject's)."""
    work = tmp_path_factory.mktemp("inject")
    root = write_ntuple(work / "shard_0.root", 600, seed=3, first_event=1000)
    h5 = work / "shard_0.h5"
    dump_core.run(root, h5, nt.Selection(PT_MIN, ETA_MAX), max_tracks=10, step_size=170)
    return root, h5


def write_network(path: Path, network: dict) -> Path:
    path.write_text(json.dumps(network))
    return path


def expected_scores(network: Path, dump: Path) -> dict[tuple[int, int], np.ndarray]:
    """Scores computed straight from the whole dump, keyed by (eventNumber, jetIndex)."""
    graph = LightweightGraph.from_file(network)
    with h5py.File(dump) as f:
        jets, tracks = f["jets"][...], f["tracks"][...]
    columns = [np.log(jets["pt"].astype(float)), *(jets[v].astype(float) for v in JET_VARS[1:])]
    scalars = {"jets": np.stack(columns, axis=1)}
    sequences = {}
    if graph.input_sequences:
        tracks = tracks[:, :MAX_TRACKS]
        values = np.stack([tracks[v].astype(float) for v in TRACK_VARS], axis=-1)
        sequences["tracks"] = (values, tracks["valid"])
    probs = graph.compute(scalars, sequences, replace_nan=True)
    d_b = roc.b_discriminant(probs[:, 2], probs[:, 1], probs[:, 0], F_C)
    table = np.column_stack([probs, d_b]).astype(np.float32)
    keys = zip(jets["eventNumber"].tolist(), jets["jetIndex"].tolist(), strict=True)
    return dict(zip(keys, table, strict=True))


def check_alignment(root: Path, dump: Path, network: Path, friend_file: Path, h5_file: Path,
                    model: str) -> None:
    original = uproot.open(root)["events"].arrays(["eventNumber", "jet_pt", "jet_eta"])
    friend_tree = uproot.open(friend_file)[f"{model}_scores"]
    friend = friend_tree.arrays()
    assert friend_tree.num_entries == len(original)
    np.testing.assert_array_equal(friend["eventNumber"], original["eventNumber"])
    columns = ["pu", "pc", "pb", "D_b"]
    for c in columns:  # one value per original jet
        assert ak.all(ak.num(friend[f"jet_{model}_{c}"]) == ak.num(original["jet_pt"]))
    selected = ak.flatten((original["jet_pt"] > PT_MIN) & (abs(original["jet_eta"]) < ETA_MAX))
    got = np.column_stack([ak.to_numpy(ak.flatten(friend[f"jet_{model}_{c}"])) for c in columns])
    events = ak.to_numpy(ak.flatten(ak.broadcast_arrays(original["eventNumber"],
                                                        original["jet_pt"])[0]))
    index = ak.to_numpy(ak.flatten(ak.local_index(original["jet_pt"])))
    expected = expected_scores(network, dump)
    assert len(expected) == int(np.count_nonzero(selected)) > 0
    for row, (event, jet, keep) in enumerate(zip(events, index, selected, strict=True)):
        if keep:
            np.testing.assert_array_equal(got[row], expected[(int(event), int(jet))])
        else:  # dropped by the dump's selection
            assert np.isnan(got[row]).all()
    assert np.isfinite(got[np.asarray(selected)]).all()  # NaN inputs got their defaults
    # the h5: the same jets, in the same order, with their keys
    with h5py.File(h5_file) as f:
        rows = f["jets"][...]
        assert f.attrs["model"] == model and int(f.attrs["n_scored"]) == len(expected)
    np.testing.assert_array_equal(rows["eventNumber"], events)
    np.testing.assert_array_equal(rows["jetIndex"], index)
    np.testing.assert_array_equal(np.column_stack([rows[c] for c in columns]), got)


def test_friend_tree_aligned_with_the_original(sample, tmp_path: Path):
    root, dump = sample
    network = write_network(tmp_path / "network.json", dl1_network(np.random.default_rng(0)))
    out = tmp_path / "out"
    summary = core.run(root, dump, network, out / "f.root", out / "f.h5", "DL1", F_C,
                       step_size=97)
    assert summary["n_events"] == 600 and summary["friend_format"] == "RNTuple"
    with h5py.File(dump) as f:
        assert summary["n_scored"] == len(f["jets"]) > 0
        assert np.isnan(f["jets"]["sv_mass"]).any()  # the NaN -> default path is exercised
    assert summary["n_jets"] > summary["n_scored"]  # some jets fail the selection
    assert uproot.open(out / "f.root").classnames() == {"DL1_scores;1": "ROOT::RNTuple"}
    check_alignment(root, dump, network, out / "f.root", out / "f.h5", "DL1")


def test_sequence_network_and_ttree_friend(sample, tmp_path: Path):
    root, dump = sample
    network = write_network(tmp_path / "network.json", dips_network(np.random.default_rng(1)))
    out = tmp_path / "out"
    with h5py.File(dump) as f:
        valid = f["tracks"]["valid"]
        assert (~valid.any(axis=1)).any()  # some jets without tracks
        assert (valid.sum(axis=1) > MAX_TRACKS).any()  # and some with more than the network
    summary = core.run(root, dump, network, out / "f.root", out / "f.h5", "DIPS", F_C,
                       step_size=250, friend_format="ttree")
    assert summary["friend_format"] == "TTree"
    tree = uproot.open(out / "f.root")["DIPS_scores"]
    assert tree.classname == "TTree"
    assert set(tree.keys()) == {"eventNumber", "jet_DIPS_n", "jet_DIPS_pu", "jet_DIPS_pc",
                                "jet_DIPS_pb", "jet_DIPS_D_b"}
    check_alignment(root, dump, network, out / "f.root", out / "f.h5", "DIPS")


def test_dump_of_another_file_is_refused(sample, tmp_path: Path):
    root, dump = sample
    other = write_ntuple(tmp_path / "other.root", 600, seed=4, first_event=1000)
    network = write_network(tmp_path / "network.json", dl1_network(np.random.default_rng(0)))
    out = tmp_path / "out"
    with pytest.raises(FlavourflowError, match="not made from this file"):
        core.run(other, dump, network, out / "f.root", out / "f.h5", "DL1", F_C)
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


def test_dump_out_of_event_order_is_refused(sample, tmp_path: Path):
    root, dump = sample
    shuffled = tmp_path / "shuffled.h5"
    with h5py.File(dump) as src, h5py.File(shuffled, "w") as dst:
        jets = src["jets"][...]
        order = np.argsort(-jets["eventNumber"], kind="stable")  # last events first
        dst["jets"] = jets[order]
        dst["tracks"] = src["tracks"][...][order]
    network = write_network(tmp_path / "network.json", dl1_network(np.random.default_rng(0)))
    # within one block, jets are matched by (eventNumber, jetIndex), whatever their order ...
    out = tmp_path / "one_block"
    core.run(root, shuffled, network, out / "f.root", out / "f.h5", "DL1", F_C, step_size=600)
    check_alignment(root, shuffled, network, out / "f.root", out / "f.h5", "DL1")
    # ... but streaming needs the dump in the file's event order, and says so
    with pytest.raises(FlavourflowError, match="do not follow the events"):
        core.run(root, shuffled, network, tmp_path / "f.root", tmp_path / "f.h5", "DL1", F_C,
                 step_size=100)


def test_missing_variable_is_named(sample, tmp_path: Path):
    root, dump = sample
    network = dl1_network(np.random.default_rng(0))
    network["inputs"][0]["variables"][1]["name"] = "eta_typo"
    path = write_network(tmp_path / "network.json", network)
    with pytest.raises(FlavourflowError, match="field 'eta_typo'"):
        core.run(root, dump, path, tmp_path / "f.root", tmp_path / "f.h5", "DL1", F_C)


def test_cli(sample, tmp_path: Path):
    root, dump = sample
    network = write_network(tmp_path / "network.json", dl1_network(np.random.default_rng(0)))
    args = ["inject", "--ntuple", str(root), "--dump", str(dump), "--network", str(network),
            "--model", "DL1", "--tree-out", str(tmp_path / "f.root"),
            "--h5-out", str(tmp_path / "f.h5"), "--fc", str(F_C), "--step-size", "200"]
    assert cli.main(args) == 0
    check_alignment(root, dump, network, tmp_path / "f.root", tmp_path / "f.h5", "DL1")
    assert cli.main([*args[:-2], "--step-size", "0"]) == 1  # one-line error, exit 1


def test_imports_without_tensorflow():
    """The inject rule runs in the dump environment, which has no TensorFlow."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for m in ('tensorflow', 'keras', 'onnx', 'onnxruntime'): sys.modules[m] = None\n"
        "import flavourflow.inject.core, flavourflow.inject.cli\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# --- every input format the dump reads --------------------------------------------------------


def check_any_format(path: Path, tree: str, event_branch: str, pt_branch: str, dump: Path,
                     network: Path, out: Path, model: str, rntuple: bool,
                     flat: bool = False) -> None:
    """The friend and h5 of ``path`` (read here straight with uproot) against the dump: one
    friend entry per original entry with its event number; each dumped jet's scores at its
    (event, jet index) and NaN for every jet the dump dropped."""
    original = uproot.open(path)[tree]
    assert ("RNTuple" in type(original).__name__) == rntuple
    data = original.arrays([event_branch, pt_branch])
    events = ak.to_numpy(data[event_branch]).astype(np.int64)
    counts = np.ones(len(events), int) if flat else ak.to_numpy(ak.num(data[pt_branch]))
    friend_obj = uproot.open(out / "f.root")[f"{model}_scores"]
    assert ("RNTuple" in type(friend_obj).__name__) == rntuple
    friend = friend_obj.arrays()
    assert len(friend) == len(events)
    np.testing.assert_array_equal(friend["eventNumber"], events)
    got = np.column_stack([ak.to_numpy(ak.flatten(friend[f"jet_{model}_{c}"], axis=None))
                           for c in ("pu", "pc", "pb", "D_b")])
    assert len(got) == counts.sum()
    jet_events = np.repeat(events, counts)
    if flat:  # a jet's index: its place among the consecutive entries of its event
        index = np.arange(len(events)) - np.searchsorted(events, events)
        assert np.all(np.diff(events) >= 0)  # (the test files are in event order)
    else:
        index = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    expected = expected_scores(network, dump)
    position = {(int(e), int(j)): i for i, (e, j) in enumerate(zip(jet_events, index,
                                                                       strict=True))}
    scored = np.zeros(len(got), bool)
    for key, value in expected.items():
        scored[position[key]] = True
        np.testing.assert_array_equal(got[position[key]], value)
    assert np.isnan(got[~scored]).all() and np.isfinite(got[scored]).all()
    assert 0 < scored.sum() == len(expected)
    with h5py.File(out / "f.h5") as f:
        rows = f["jets"][...]
    np.testing.assert_array_equal(rows["eventNumber"], jet_events)
    np.testing.assert_array_equal(rows["jetIndex"], index)


@pytest.mark.parametrize(("name", "tree", "event", "pt", "rntuple"), [
    ("uproot-issue-798.root", "CollectionTree", "EventInfoAux./EventInfoAux.eventNumber",
     "AnalysisJetsAuxDyn.pt", False),
    ("uproot-physlite-rntuple_v1-0-0-0.root", "EventData", "EventInfoAuxDyn:eventNumber",
     "AnalysisJetsAuxDyn:pt", True),
])
def test_physlite_ttree_and_rntuple(tmp_path: Path, name: str, tree: str, event: str, pt: str,
                                    rntuple: bool) -> None:
    """Real PHYSLITE files (Run 2 TTree, Run 3 RNTuple): the friend follows CollectionTree /
    EventData entry by entry, with the scores of the jets the dump kept."""
    import skhep_testdata

    path = Path(skhep_testdata.data_path(name))
    dump = tmp_path / "dump.h5"
    dump_core.run(path, dump, nt.Selection(PT_MIN, ETA_MAX), max_tracks=10, step_size=13,
                  fmt="physlite")
    network = write_network(tmp_path / "network.json", dl1_network(np.random.default_rng(0)))
    out = tmp_path / "out"
    args = ["inject", "--ntuple", str(path), "--dump", str(dump), "--network", str(network),
            "--model", "DL1", "--tree-out", str(out / "f.root"), "--h5-out", str(out / "f.h5"),
            "--fc", str(F_C), "--step-size", "7", "--input-format", "physlite"]
    assert cli.main(args) == 0
    check_any_format(path, tree, event, pt, dump, network, out, "DL1", rntuple)
    # the generated ntuple's layout is not assumed: a PHYSLITE file read as one is refused
    assert cli.main([*args[:-2]]) == 1


@pytest.mark.parametrize("layout", ["jagged", "flat"])
def test_mapping_jagged_and_flat(tmp_path: Path, layout: str) -> None:
    """A user's ntuple described by a mapping (GeV, renamed branches), one event per entry or
    one jet per entry: a flat file's jets are numbered within their event across blocks."""
    from factories import synthetic_events

    ours = synthetic_events(300, 4)
    n = ak.to_numpy(ak.num(ours["jet_pt"]))
    branches = {"evt": ours["eventNumber"] + 500, "j_pt": ours["jet_pt"] / 1000.0,
                "j_eta": ours["jet_eta"], "j_phi": ours["jet_phi"],
                "j_flav": ours["jet_HadronConeExclTruthLabelID"]}
    if layout == "flat":
        branches = {k: np.repeat(np.asarray(v), n) if v.ndim == 1 else ak.to_numpy(
            ak.flatten(v)) for k, v in ((k, ak.Array(v)) for k, v in branches.items())}
    path = tmp_path / "user.root"
    with uproot.recreate(path) as f:
        f["nominal"] = branches
    spec = {"tree": "nominal", "jets": {
        "pt": {"branch": "j_pt", "scale": 1000.0}, "eta": "j_eta", "phi": "j_phi",
        "HadronConeExclTruthLabelID": "j_flav", "eventNumber": "evt"}}
    mapping_file = tmp_path / "m.yaml"
    import yaml

    mapping_file.write_text(yaml.safe_dump(spec))
    dump = tmp_path / "dump.h5"
    dump_core.run(path, dump, nt.Selection(PT_MIN, ETA_MAX), max_tracks=10, step_size=97,
                  fmt="mapping", mapping_file=mapping_file)
    network = dl1_network(np.random.default_rng(1))
    network["inputs"][0]["variables"] = network["inputs"][0]["variables"][:2]  # log_pt, eta
    network["layers"][0] = dense(np.random.default_rng(2), 2, 8, "rectified")
    network["nodes"][0]["size"] = 2
    network_file = write_network(tmp_path / "network.json", network)
    out = tmp_path / "out"
    core.run(path, dump, network_file, out / "f.root", out / "f.h5", "DL1", F_C, step_size=61,
             input_format="mapping", mapping_file=mapping_file)
    graph = LightweightGraph.from_file(network_file)
    with h5py.File(dump) as f:
        jets = f["jets"][...]
    probs = graph.compute({"jets": np.stack([np.log(jets["pt"].astype(float)),
                                             jets["eta"].astype(float)], axis=1)}, {})
    with h5py.File(out / "f.h5") as f:
        rows = f["jets"][...]
    friend = uproot.open(out / "f.root")["DL1_scores"].arrays()
    assert len(friend) == (n.sum() if layout == "flat" else len(n))
    key = {(int(e), int(j)): i for i, (e, j) in enumerate(zip(rows["eventNumber"],
                                                              rows["jetIndex"], strict=True))}
    assert len(key) == len(rows) == n.sum()
    for jet, p in zip(jets, probs, strict=True):  # every dumped jet, found by event and jet
        i = key[(int(jet["eventNumber"]), int(jet["jetIndex"]))]
        np.testing.assert_array_equal([rows[i]["pu"], rows[i]["pc"], rows[i]["pb"]],
                                      p.astype(np.float32))
    assert np.isfinite(rows["pb"]).sum() == len(jets) < len(rows)
    flat_pb = ak.to_numpy(ak.flatten(friend["jet_DL1_pb"], axis=None))
    np.testing.assert_array_equal(flat_pb, rows["pb"])
