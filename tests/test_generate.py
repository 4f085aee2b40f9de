"""The generate stage with real Pythia 8 events: file format, cuts, labels, tracks,
determinism and argument checks. A few hundred events in all (~15 s on 2 cores)."""

from __future__ import annotations

import argparse
from pathlib import Path

import awkward as ak
import numpy as np
import pytest

pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")
uproot = pytest.importorskip("uproot")

from flavourflow.core.errors import FlavourflowError  # noqa: E402
from flavourflow.generate import cli, writer  # noqa: E402
from flavourflow.generate.pythia import ShardConfig  # noqa: E402

JET = "std::vector<float>"
EXPECTED_TYPES = {
    "eventNumber": "std::int64_t", "mcEventWeight": "float",
    "jet_pt": JET, "jet_eta": JET, "jet_phi": JET, "jet_m": JET,
    "jet_HadronConeExclTruthLabelID": "std::vector<std::int32_t>", "jet_truthHadron_pt": JET,
    "jet_truthHadron_Lxy": JET,
    **{f"jet_trk_{k}": "std::vector<std::vector<float>>" for k in writer.TRACK_FIELDS},
    **{f"jet_trk_{k}": "std::vector<std::vector<std::int32_t>>"
       for k in writer.TRACK_TRUTH_FIELDS},
}
PT_MIN, ETA_MAX = 20_000.0, 2.5


def _generate(path: Path, events: int, seed: int = 7, shard: int = 3,
              process: str = "ttbar") -> ak.Array:
    config = ShardConfig(process=process, events=events, seed=seed, shard=shard,
                         jet_pt_min=PT_MIN, jet_eta_max=ETA_MAX)
    cli.run_shard(config, path)
    return uproot.open(path)["events"].arrays()


def _dphi(a, b):
    return (a - b + np.pi) % (2 * np.pi) - np.pi


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ak.Array]:
    path = tmp_path_factory.mktemp("gen") / "shard_3.root"
    return path, _generate(path, 30)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> ak.Array:
    """A larger shard for the impact-parameter physics check."""
    return _generate(tmp_path_factory.mktemp("gen") / "sample.root", 150, seed=11, shard=0)


def test_branches_and_types(shard):
    path, events = shard
    tree = uproot.open(path)["events"]
    assert type(tree).__name__.endswith("RNTuple")
    assert tree.num_entries == 30
    assert {name: tree[name].typename for name in tree.keys()} == EXPECTED_TYPES
    assert events["jet_trk_pt"].type.content == ak.types.ListType(
        ak.types.ListType(ak.types.NumpyType("float32")))
    for name in writer.TRACK_FIELDS:  # every track field has the same nesting
        assert ak.all(ak.num(events[f"jet_trk_{name}"], axis=2)
                      == ak.num(events["jet_trk_pt"], axis=2))
    numbers = ak.to_numpy(events["eventNumber"])
    assert np.array_equal(numbers, 3 * cli.EVENT_NUMBER_STRIDE + np.arange(30))
    assert np.all(ak.to_numpy(events["mcEventWeight"]) == 1.0)
    assert not list(path.parent.glob(".*partial*"))


def test_jets_and_labels(shard):
    _, events = shard
    pt, eta = ak.flatten(events["jet_pt"]), ak.flatten(events["jet_eta"])
    assert len(pt) > 30
    assert ak.all(pt > PT_MIN) and ak.all(abs(eta) < ETA_MAX)
    assert ak.all(events["jet_pt"][:, :-1] >= events["jet_pt"][:, 1:])  # pT ordered
    labels = ak.to_numpy(ak.flatten(events["jet_HadronConeExclTruthLabelID"]))
    assert set(np.unique(labels)) <= {0, 4, 5, 15}
    assert np.count_nonzero(labels == 5) >= 1
    hadron_pt = ak.to_numpy(ak.flatten(events["jet_truthHadron_pt"]))
    lxy = ak.to_numpy(ak.flatten(events["jet_truthHadron_Lxy"]))
    heavy = (labels == 4) | (labels == 5)
    assert np.all(hadron_pt[heavy] > 5_000.0) and np.all(lxy[heavy] >= 0.0)
    assert np.all(np.isnan(hadron_pt[~heavy])) and np.all(np.isnan(lxy[~heavy]))


def test_tracks(shard):
    _, events = shard
    deta = events["jet_trk_eta"] - events["jet_eta"]
    dphi = _dphi(events["jet_trk_phi"], events["jet_phi"])
    assert ak.count(events["jet_trk_pt"]) > 100
    assert ak.all(np.hypot(deta, dphi) < 0.4)
    assert ak.all(events["jet_trk_pt"] > 500.0)
    assert ak.all(abs(events["jet_trk_eta"]) < 2.5)
    assert ak.all(events["jet_trk_d0_sigma"] > 0) and ak.all(events["jet_trk_z0SinTheta_sigma"] > 0)
    charges = set(np.unique(ak.to_numpy(ak.flatten(events["jet_trk_charge"], axis=None))))
    assert charges <= {-2.0, -1.0, 1.0, 2.0}


def test_lifetime_signed_d0_significance(sample):
    labels = sample["jet_HadronConeExclTruthLabelID"]
    dphi = _dphi(sample["jet_trk_phi"], sample["jet_phi"])
    sign = np.where(sample["jet_trk_d0"] * np.sin(dphi) >= 0, 1.0, -1.0)
    significance = sign * abs(sample["jet_trk_d0"]) / sample["jet_trk_d0_sigma"]

    def mean(label: int) -> float:
        values = ak.to_numpy(ak.flatten(significance[labels == label], axis=None))
        assert len(values) > 100
        return float(np.mean(values))

    assert mean(5) > 0
    assert mean(5) > mean(0) + 2.0


def test_same_seed_and_shard_reproduce(tmp_path: Path):
    a = _generate(tmp_path / "a.root", 8)
    b = _generate(tmp_path / "b.root", 8)
    c = _generate(tmp_path / "c.root", 8, shard=4)
    for field in a.fields:
        if field == "eventNumber":
            continue
        assert ak.array_equal(a[field], b[field], equal_nan=True), field
    assert not ak.array_equal(a["jet_pt"], c["jet_pt"])
    assert not ak.array_equal(a["eventNumber"], c["eventNumber"])


def test_zprime(tmp_path: Path):
    events = _generate(tmp_path / "zp.root", 10, process="zprime")
    assert ak.max(events["jet_pt"]) > 100_000.0


def _args(output: Path, **overrides) -> argparse.Namespace:
    values = dict(process="ttbar", events=5, seed=1, shard=0, output=output,
                  ecm=13_000.0, jet_pt_min=15_000.0, jet_eta_max=2.8, pileup_tracks=0.0)
    values.update(overrides)
    return argparse.Namespace(**values)


@pytest.mark.parametrize("overrides", [
    {"process": "wprime"}, {"events": 0}, {"events": -3}, {"jet_eta_max": 0.0},
    {"ecm": 13e6}, {"pileup_tracks": -1.0},
])
def test_bad_arguments(tmp_path: Path, overrides: dict):
    output = tmp_path / "out" / "shard.root"
    with pytest.raises(FlavourflowError):
        cli.main(_args(output, **overrides))
    assert not output.exists()
    assert not output.parent.exists() or not any(output.parent.iterdir())


def test_failure_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "process_batch", broken)
    output = tmp_path / "shard.root"
    with pytest.raises(RuntimeError):
        cli.run_shard(ShardConfig(events=3), output)
    assert list(tmp_path.iterdir()) == []


def test_top_level_cli(tmp_path: Path, capfd: pytest.CaptureFixture):
    from flavourflow.cli import main

    output = tmp_path / "shard.root"
    argv = ["generate", "--process", "ttbar", "--events", "3", "--seed", "2", "--shard", "1",
            "--output", str(output), "--ecm", "13000", "--jet-pt-min", "15000",
            "--jet-eta-max", "2.8"]
    assert main(argv) == 0
    assert uproot.open(output)["events"].num_entries == 3
    assert "Pythia" not in capfd.readouterr().out  # banners and listings are silenced
    assert main(["generate", "--process", "nope", "--events", "3", "--seed", "2",
                 "--output", str(tmp_path / "x.root")]) == 1
    assert "unknown process" in capfd.readouterr().err
    assert not (tmp_path / "x.root").exists()


def test_impact_parameter_geometry():
    """d0 and z0SinTheta against the numerically found point of closest approach, and the
    lifetime sign of tracks from a vertex displaced along the jet."""
    from flavourflow.generate.tracks import impact_parameters

    rng = np.random.default_rng(3)
    n = 200
    origin = rng.normal(0.0, 2.0, (n, 3))
    phi, theta = rng.uniform(-np.pi, np.pi, n), rng.uniform(0.2, np.pi - 0.2, n)
    d0, z0st = impact_parameters(origin[:, 0], origin[:, 1], origin[:, 2], phi, theta)
    direction = np.stack([np.cos(phi), np.sin(phi), 1.0 / np.tan(theta)], axis=1)
    s = -(origin[:, 0] * direction[:, 0] + origin[:, 1] * direction[:, 1])
    pca = origin + s[:, None] * direction
    assert np.allclose(np.abs(d0), np.hypot(pca[:, 0], pca[:, 1]))
    assert np.allclose(d0, pca[:, 0] * np.sin(phi) - pca[:, 1] * np.cos(phi))
    assert np.allclose(z0st, pca[:, 2] * np.sin(theta))

    phi_jet = rng.uniform(-np.pi, np.pi, n)
    decay = 5.0 * np.stack([np.cos(phi_jet), np.sin(phi_jet), np.zeros(n)], axis=1)
    phi_trk = phi_jet + rng.uniform(-0.3, 0.3, n)
    d0, _ = impact_parameters(decay[:, 0], decay[:, 1], decay[:, 2], phi_trk,
                              np.full(n, np.pi / 2))
    assert np.all(d0 * np.sin(phi_trk - phi_jet) >= 0)


def test_nearest_jet_is_exclusive():
    from flavourflow.generate.jets import Jets, nearest_jet

    # event 0: two jets; event 1: none; event 2: one jet across the phi = pi boundary
    jets = Jets(offsets=np.array([0, 2, 2, 3]), pt=np.array([50.0, 40.0, 30.0]),
                eta=np.array([0.0, 0.5, 1.0]), phi=np.array([0.0, 0.0, 3.1]),
                m=np.zeros(3))
    eta = np.array([0.2, 0.3, 0.0, 1.0, 1.0])
    phi = np.array([0.0, 0.0, 0.0, -3.1, 0.0])
    event = np.array([0, 0, 1, 2, 2])
    assert nearest_jet(eta, phi, event, jets, 0.4).tolist() == [0, 1, -1, 2, -1]


def test_pileup_tracks_add_soft_selected_tracks(tmp_path):
    without = _generate(tmp_path / "a.root", 40, seed=3, shard=1)
    config = ShardConfig(process="ttbar", events=40, seed=3, shard=1, jet_pt_min=PT_MIN,
                         jet_eta_max=ETA_MAX, pileup_tracks=400.0)
    cli.run_shard(config, tmp_path / "b.root")
    with_pu = uproot.open(tmp_path / "b.root")["events"].arrays()
    # the hard scatter is the same; pile-up only adds tracks, all passing the selection
    assert ak.all(with_pu["jet_pt"] == without["jet_pt"])
    assert ak.count(with_pu["jet_trk_pt"]) > 1.05 * ak.count(without["jet_trk_pt"])
    assert ak.all(abs(with_pu["jet_trk_z0SinTheta"]) < 5.0)
    assert ak.all(abs(with_pu["jet_trk_d0"]) < 3.5)
