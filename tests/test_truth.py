"""Per-track truth for the auxiliary tasks: the origin classes and vertex indices of the
generator (a hand-made Pythia-like record, then real Pythia events), and the dump carrying
them into `tracks` beside the tracks they belong to (~10 s on 2 cores)."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pytest

pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")
uproot = pytest.importorskip("uproot")

from factories import write_ntuple  # noqa: E402

from flavourflow.dump import core as dump  # noqa: E402
from flavourflow.dump.blocks import Selection  # noqa: E402
from flavourflow.generate import cli, truth  # noqa: E402
from flavourflow.generate.pythia import Particles, ShardConfig  # noqa: E402


def _record() -> Particles:
    """One event: a B0 decaying (at 1 mm) to a D0 (decaying at 2 mm to two pions) and a pion,
    a tau decaying at 0.1 mm to a pion, a prompt pion, a K0S decaying at 20 mm to two pions,
    and a strongly decaying rho0 whose pions come from the primary vertex."""
    #            0 sys  1 B0   2 tau  3 D0   4 pi   5 pi   6 pi   7 pi   8 pi   9 K0S 10 pi 11 pi
    pdg = [90, 511, 15, 421, 211, -211, 211, -211, 211, 310, 211, -211, 113, 211, -211]
    status = [-11, -91, -91, -91, 91, 91, 91, 91, 83, -91, 91, 91, -91, 91, 91]
    d1 = [0, 3, 7, 5, 0, 0, 0, 0, 0, 10, 0, 0, 13, 0, 0]
    d2 = [0, 4, 7, 6, 0, 0, 0, 0, 0, 11, 0, 0, 14, 0, 0]
    x = [0, 0, 0, 1, 1, 2, 2, 0.1, 0, 0, 20, 20, 0, 0, 0]
    n = len(pdg)
    zeros = np.zeros(n)
    return Particles(
        offsets=np.array([0, n]), id=np.array(pdg), status=np.array(status),
        daughter1=np.array(d1), daughter2=np.array(d2), px=zeros + 1, py=zeros, pz=zeros,
        e=zeros + 2, x=np.array(x, dtype=float), y=zeros, z=zeros, pv=np.zeros((1, 3)),
        weight=np.ones(1))


def test_origins_follow_the_decay_chain() -> None:
    origin, prompt = truth.origins(_record())
    expected = {4: truth.FROM_B, 5: truth.FROM_BC, 6: truth.FROM_BC, 7: truth.FROM_TAU,
                8: truth.PRIMARY, 10: truth.OTHER_SECONDARY, 11: truth.OTHER_SECONDARY,
                13: truth.PRIMARY, 14: truth.PRIMARY}
    assert {i: int(origin[i]) for i in expected} == expected
    assert prompt[[8, 13, 14]].all() and not prompt[[4, 5, 7, 10]].any()
    assert truth.ORIGINS[truth.FROM_BC] == "fromBC" and len(truth.ORIGINS) == 8


def test_vertex_indices_number_displaced_vertices_by_pt_within_each_jet() -> None:
    track_jet = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    pt = np.array([5.0, 9.0, 1.0, 3.0, 7.0, 2.0, 4.0, 6.0])
    keys = np.array([0, 17, 17, 23, -1, 23, 0, 17])  # key 17 in both jets: numbered per jet
    np.testing.assert_array_equal(truth.vertex_indices(track_jet, pt, keys),
                                  [0, 1, 1, 2, -1, 2, 0, 1])
    # a prompt track is vertex 0 and a fake -1 whatever the other tracks
    np.testing.assert_array_equal(truth.vertex_keys(
        np.zeros(4, int), np.array([0.0, 1.0, 1.0, 2.0]), np.zeros(4), np.zeros(4),
        np.array([True, False, False, False]), np.array([False, False, False, True])),
        [0, 1, 1, -1])


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("truth") / "shard_0.root"
    cli.run_shard(ShardConfig(process="ttbar", events=120, seed=3, shard=0,
                              jet_pt_min=20_000.0, jet_eta_max=2.5, pileup_tracks=20.0), path)
    return path


def test_generated_tracks_carry_origin_and_vertex(generated: Path) -> None:
    events = uproot.open(generated)["events"].arrays()
    label = ak.flatten(ak.broadcast_arrays(events["jet_HadronConeExclTruthLabelID"],
                                           events["jet_trk_truthOriginLabel"])[0], axis=None)
    origin = ak.to_numpy(ak.flatten(events["jet_trk_truthOriginLabel"], axis=None))
    vertex = ak.to_numpy(ak.flatten(events["jet_trk_truthVertexIndex"], axis=None))
    label = ak.to_numpy(label)
    assert set(np.unique(origin)) <= set(range(8))
    heavy = np.isin(origin, [truth.FROM_B, truth.FROM_BC])
    assert heavy[label == 5].mean() > 0.3 and heavy[label == 0].mean() < 0.05
    assert (origin == truth.PILEUP).any()  # pile-up tracks were asked for
    assert np.all(vertex[np.isin(origin, [truth.PILEUP, truth.FAKE])] == -1)
    assert np.all(vertex[origin == truth.PRIMARY] == 0)
    assert np.all(vertex[np.isin(origin, [truth.FROM_BC, truth.OTHER_SECONDARY])] >= 1)
    # the first displaced vertex of a jet is 1, the next ones follow without gaps
    for per_jet in ak.flatten(events["jet_trk_truthVertexIndex"], axis=1):
        found = sorted({v for v in per_jet.tolist() if v > 0})
        assert found == list(range(1, len(found) + 1))


def test_dump_carries_the_truth_with_its_tracks(generated: Path, tmp_path: Path) -> None:
    out = tmp_path / "dump.h5"
    dump.run(generated, out, Selection(20_000.0, 2.5), max_tracks=40, step_size=50)
    events = uproot.open(generated)["events"].arrays()
    with h5py.File(out) as f:
        jets, tracks = f["jets"][:], f["tracks"][:]
    assert tracks.dtype["ftagTruthOriginLabel"] == np.int8
    valid = tracks["valid"]
    assert np.all(tracks["ftagTruthOriginLabel"][~valid] == -1)
    assert np.all(tracks["ftagTruthVertexIndex"][~valid] == -1)
    assert np.all(tracks["ftagTruthOriginLabel"][valid] >= 0)
    numbers = ak.to_numpy(events["eventNumber"])
    for row, jet in enumerate(jets[:60]):
        event = int(np.flatnonzero(numbers == jet["eventNumber"])[0])
        source = events[event]
        index = int(jet["jetIndex"])
        expected = sorted(zip(np.float32(source["jet_trk_pt"][index].to_numpy()).tolist(),
                              source["jet_trk_truthOriginLabel"][index].tolist(),
                              source["jet_trk_truthVertexIndex"][index].tolist(), strict=True))
        kept = valid[row]
        got = sorted(zip(tracks["pt"][row][kept].tolist(),
                         tracks["ftagTruthOriginLabel"][row][kept].tolist(),
                         tracks["ftagTruthVertexIndex"][row][kept].tolist(), strict=True))
        # each track keeps its own labels, whatever the dump's reordering of the tracks
        assert got == expected


def test_an_ntuple_without_truth_dumps_without_it(tmp_path: Path) -> None:
    source = write_ntuple(tmp_path / "plain.root", 20)
    out = tmp_path / "plain.h5"
    dump.run(source, out, Selection(20_000.0, 2.5), max_tracks=10, step_size=50)
    with h5py.File(out) as f:
        assert "ftagTruthOriginLabel" not in f["tracks"].dtype.names
