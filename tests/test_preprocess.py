"""The merge and preprocess stages on a dumped synthetic sample."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from factories import write_ntuple

from flavourflow.core import split
from flavourflow.core.errors import FlavourflowError
from flavourflow.core.flavours import LABEL_FIELD, class_index
from flavourflow.dump import core as dump
from flavourflow.dump import ntuple as nt
from flavourflow.merge import core as merge
from flavourflow.preprocess import core as preprocess
from flavourflow.preprocess import shuffle
from flavourflow.preprocess.resampling import Resampling

VARIABLES = ["ip2d_llr", "sv_sig", "sv_mass"]


def settings(**changes) -> preprocess.Settings:
    base = dict(variables=VARIABLES, fractions={"train": 0.6, "val": 0.2, "test": 0.2},
                split_seed=3, shuffle_seed=4, block_size=333, model_name="m", plots=False)
    return preprocess.Settings(**{**base, **changes})


@pytest.fixture
def merged(tmp_path: Path) -> Path:
    parts = []
    for i in range(2):
        root = write_ntuple(tmp_path / f"part{i}.root", 300, seed=10 + i, first_event=i * 1000)
        parts.append(tmp_path / f"part{i}.h5")
        dump.run(root, parts[-1], nt.Selection(20_000.0, 2.5), 10, 100)
    out = tmp_path / "merged.h5"
    merge.run(parts, out, block_size=50)
    return out


def test_merge_concatenates_in_order(merged: Path, tmp_path: Path) -> None:
    with h5py.File(merged) as m, h5py.File(tmp_path / "part0.h5") as a, \
            h5py.File(tmp_path / "part1.h5") as b:
        assert m["jets"][...].tobytes() == a["jets"][...].tobytes() + b["jets"][...].tobytes()
        assert m["tracks"].shape == (len(a["tracks"]) + len(b["tracks"]), 10)
        assert "part1.root" in m.attrs["merged_from"]


def test_memmaps_variables_and_split(merged: Path, tmp_path: Path) -> None:
    out = tmp_path / "pre"
    info = preprocess.run(merged, out, settings())
    with h5py.File(merged) as f:
        jets = f["jets"][...]
    jets = jets[class_index(jets[LABEL_FIELD]) >= 0]  # taus are not a class
    which = split.assign(jets["eventNumber"], settings().fractions, 3)

    variables = json.loads((out / "variables.json").read_text())
    assert variables == info
    assert [v["name"] for v in variables["inputs"][0]["variables"]] == VARIABLES
    assert variables["outputs"][0]["labels"] == ["pu", "pc", "pb"]

    train = np.load(out / "train_jets.npy", mmap_mode="r")
    assert isinstance(train, np.memmap) and train.dtype == np.float32
    for i, name in enumerate(split.SPLITS):
        assert len(np.load(out / f"{name}_labels.npy")) == np.count_nonzero(which == i)
    # normalised on the training split: mean 0, std 1 (NaN -> default = mean)
    assert np.allclose(train.mean(axis=0), 0.0, atol=1e-5)
    raw = jets[which == 0]
    for i, var in enumerate(variables["inputs"][0]["variables"]):
        finite = raw[var["name"]][np.isfinite(raw[var["name"]])].astype(np.float64)
        assert var["offset"] == pytest.approx(-finite.mean(), rel=1e-9)
        assert var["scale"] == pytest.approx(1 / finite.std(), rel=1e-9)
        assert np.all(np.isfinite(train[:, i]))
    # the same jets, shuffled: each row of the test split (its inputs and its label) is one
    # jet's row, and every jet is there once (a permutation within a column would fail)
    test = np.load(out / "test_jets.npy")
    expected = np.stack([jets[which == 2][v].astype(np.float64) for v in VARIABLES], axis=1)
    offsets = np.array([v["offset"] for v in variables["inputs"][0]["variables"]])
    scales = np.array([v["scale"] for v in variables["inputs"][0]["variables"]])
    expected = np.where(np.isfinite(expected), expected, -offsets)
    expected = ((expected + offsets) * scales).astype(np.float32)
    labels = np.load(out / "test_labels.npy")
    expected_labels = class_index(jets[which == 2][LABEL_FIELD])

    def by_row(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Row order by label, then the inputs (whole rows stay together)."""
        return np.lexsort([*x.T[::-1], y])

    assert len(test) == len(expected) > 0
    got, want = by_row(test, labels), by_row(expected, expected_labels)
    np.testing.assert_array_equal(labels[got], expected_labels[want])
    np.testing.assert_allclose(test[got], expected[want], atol=1e-5)  # row by row


def test_block_size_and_file_order_do_not_change_the_split(merged: Path, tmp_path: Path):
    """The same jets land in each split whatever the read block size and the order in which
    the files were merged: the split depends on the event number alone."""
    reversed_merge = tmp_path / "reversed.h5"
    merge.run([tmp_path / "part1.h5", tmp_path / "part0.h5"], reversed_merge, block_size=50)
    ids = ["eventNumber", "jetIndex"]
    runs = {"a": (merged, 50), "b": (merged, 100_000), "c": (reversed_merge, 77)}
    for name, (source, block) in runs.items():
        preprocess.run(source, tmp_path / name, settings(variables=ids, block_size=block))

    def jets_of(name: str, split_name: str) -> set[tuple[int, int]]:
        node = json.loads((tmp_path / name / "variables.json").read_text())["inputs"][0]
        raw = np.rint(_raw_columns(tmp_path / name, split_name, node)).astype(np.int64)
        return set(map(tuple, raw))

    for split_name in ("train", "val", "test"):
        reference = jets_of("a", split_name)
        assert len(reference) > 50
        assert jets_of("b", split_name) == reference == jets_of("c", split_name)


def test_constant_variable_is_refused_and_nothing_written(merged: Path, tmp_path: Path):
    out = tmp_path / "pre"
    with pytest.raises(FlavourflowError, match="field 'mcEventWeight'.*variance"):
        preprocess.run(merged, out, settings(variables=["ip2d_llr", "mcEventWeight"]))
    assert not list(out.glob("*")) if out.exists() else True


def test_missing_variable_names_file_and_field(merged: Path, tmp_path: Path):
    with pytest.raises(FlavourflowError, match=r"merged\.h5: field 'nope'"):
        preprocess.run(merged, tmp_path / "pre", settings(variables=["nope"]))


def test_hybrid_merge_takes_each_input_in_its_pt_window(tmp_path: Path, merged: Path) -> None:
    low, high = tmp_path / "part0.h5", tmp_path / "part1.h5"
    out = tmp_path / "hybrid.h5"
    threshold = 50_000.0
    merge.run([low, high], out, block_size=64, pt_windows=[(0.0, threshold),
                                                          (threshold, np.inf)])
    with h5py.File(out) as h, h5py.File(low) as a, h5py.File(high) as b:
        jets = h["jets"][...]
        expect_low = a["jets"][...][a["jets"]["pt"] < threshold]
        expect_high = b["jets"][...][b["jets"]["pt"] >= threshold]
        assert jets.tobytes() == expect_low.tobytes() + expect_high.tobytes()
        assert len(h["tracks"]) == len(jets)
        assert json.loads(h.attrs["merged_from"])[1]["pt_window"] == [threshold, None]
    with pytest.raises(FlavourflowError, match="pt_windows"):
        merge.run([low, high], tmp_path / "bad.h5", pt_windows=[(0.0, 1.0)])


# --- track inputs, log transforms, resampling, shuffling ---------------------------------

TRACKS = ["IP3D_signed_d0_significance", "ptfrac"]


def _raw_columns(out: Path, split_name: str, node: dict) -> np.ndarray:
    """Un-normalise a jets memmap: x = x_norm / scale - offset (float64)."""
    x = np.load(out / f"{split_name}_jets.npy").astype(np.float64)
    offset = np.array([v["offset"] for v in node["variables"]])
    scale = np.array([v["scale"] for v in node["variables"]])
    return x / scale - offset


def test_track_memmaps_valid_only_normalisation_and_log(merged: Path, tmp_path: Path):
    out = tmp_path / "pre"
    # eventNumber and jetIndex as jet "inputs" identify the shuffled rows in the test
    info = preprocess.run(merged, out, settings(
        variables=["eventNumber", "jetIndex"], track_variables=TRACKS, max_tracks=6,
        log_variables=["ptfrac"]))
    seq = info["input_sequences"]
    assert [s["name"] for s in seq] == ["tracks"] and seq[0]["max_tracks"] == 6
    names = [v["name"] for v in seq[0]["variables"]]
    assert names == ["IP3D_signed_d0_significance", "log_ptfrac"]
    assert seq[0]["variables"][1]["source"] == "ptfrac"

    with h5py.File(merged) as f:
        jets, tracks = f["jets"][...], f["tracks"][...]
    keep = class_index(jets[LABEL_FIELD]) >= 0
    which = split.assign(jets["eventNumber"], settings().fractions, 3)
    index = {(int(e), int(j)): i for i, (e, j) in enumerate(zip(jets["eventNumber"],
                                                                 jets["jetIndex"],
                                                                 strict=True))}
    spec = seq[0]["variables"]
    offset = np.array([v["offset"] for v in spec])
    scale = np.array([v["scale"] for v in spec])
    for s, name in enumerate(split.SPLITS):
        values = np.load(out / f"{name}_tracks.npy", mmap_mode="r")
        valid = np.load(out / f"{name}_tracks_valid.npy", mmap_mode="r")
        assert values.dtype == np.float32 and valid.dtype == np.bool_
        assert values.shape == (np.count_nonzero(keep & (which == s)), 6, 2)
        assert valid.shape == values.shape[:2]
        assert np.all(values[~valid] == 0.0)  # padded steps are 0 after normalisation
        raw = np.rint(_raw_columns(out, name, info["inputs"][0])).astype(np.int64)
        rows = np.array([index[(e, j)] for e, j in raw])
        assert np.all(which[rows] == s) and len(set(rows)) == len(rows)
        dump = tracks[rows, :6]
        np.testing.assert_array_equal(valid, dump["valid"])
        expected = np.stack([dump["IP3D_signed_d0_significance"], np.log(dump["ptfrac"])],
                            axis=-1)
        expected = (expected + offset) * scale
        np.testing.assert_allclose(values[valid], expected[dump["valid"]], rtol=1e-5,
                                   atol=1e-5)
        if name == "train":  # moments over valid tracks only: mean 0, std 1 there
            assert np.allclose(values[valid].mean(axis=0), 0.0, atol=1e-4)
            assert np.allclose(values[valid].std(axis=0), 1.0, atol=1e-4)
            assert not np.all(np.diff(rows) > 0)  # shuffled, not in file order
    # a jets-only model still gets every file, the track ones with zero width
    preprocess.run(merged, tmp_path / "jets_only", settings())
    assert np.load(tmp_path / "jets_only/train_tracks.npy").shape[1:] == (0, 0)


def test_shuffle_is_the_same_rows_whatever_the_bucket_size(merged: Path, tmp_path: Path):
    ident = dict(variables=["eventNumber", "jetIndex", "sv_sig"], track_variables=TRACKS)
    a = preprocess.run(merged, tmp_path / "a", settings(block_size=100_000, **ident))
    b = preprocess.run(merged, tmp_path / "b", settings(block_size=64, **ident))  # 10+ buckets
    assert a["n_jets"] == b["n_jets"]
    for name in split.SPLITS:
        ra = _raw_columns(tmp_path / "a", name, a["inputs"][0])
        rb = _raw_columns(tmp_path / "b", name, b["inputs"][0])
        assert not np.array_equal(ra, rb)  # another order...
        order_a, order_b = np.lexsort(ra[:, :2].T), np.lexsort(rb[:, :2].T)
        np.testing.assert_allclose(ra[order_a], rb[order_b], rtol=1e-5)  # ...same rows
        ta = np.load(tmp_path / "a" / f"{name}_tracks.npy")[order_a]
        tb = np.load(tmp_path / "b" / f"{name}_tracks.npy")[order_b]
        np.testing.assert_allclose(ta, tb, rtol=1e-5, atol=1e-6)


def test_bucket_shuffle_gives_every_slot_equal_chances() -> None:
    rng = np.random.default_rng(0)
    hits = np.zeros((6, 6))
    for _ in range(3000):  # 6 rows, buckets of 2, dealt in blocks of 4 and 2
        shuffler = shuffle.BucketShuffler(6, 2, rng)
        slot = np.empty(6, dtype=int)
        first = 0
        for size in (4, 2):
            for idx, slots in shuffler.deal(size):
                slot[first + idx] = np.arange(slots.start, slots.stop)
            first += size
        assert shuffler.complete() and sorted(slot) == list(range(6))
        out = np.arange(6)
        arrays = {"x": np.empty(6, dtype=int)}
        arrays["x"][slot] = out
        shuffle.permute_buckets(arrays, shuffler)
        hits[np.arange(6), np.argsort(arrays["x"])] += 1
    assert np.all(np.abs(hits - 500) < 5 * np.sqrt(500 * 5 / 6))  # uniform over slots


@pytest.fixture
def hard_b(merged: Path, tmp_path: Path) -> Path:
    """The merged sample with b-jets twice as hard as the others (different kinematics)."""
    out = tmp_path / "hard_b.h5"
    out.write_bytes(merged.read_bytes())
    with h5py.File(out, "r+") as f:
        jets = f["jets"][...]
        jets["pt"] = np.where(jets[LABEL_FIELD] == 5, 2 * jets["pt"], jets["pt"])
        f["jets"][...] = jets
    return out


BINS = dict(pt_bins=[20e3, 40e3, 80e3, 160e3, 1e6], abs_eta_bins=[0.0, 1.2, 2.5])


def _train_hist(out: Path, info: dict, weighted: bool = False) -> np.ndarray:
    """[class, pt bin, |eta| bin] counts (or weights) of the written training split."""
    raw = _raw_columns(out, "train", info["inputs"][0])  # columns: pt, eta
    labels = np.load(out / "train_labels.npy")
    w = np.load(out / "train_weights.npy") if weighted else np.ones(len(labels))
    i = np.searchsorted(BINS["pt_bins"][1:-1], raw[:, 0], side="right")
    j = np.searchsorted(BINS["abs_eta_bins"][1:-1], np.abs(raw[:, 1]), side="right")
    hist = np.zeros((3, len(BINS["pt_bins"]) - 1, len(BINS["abs_eta_bins"]) - 1))
    np.add.at(hist, (labels, i, j), w)
    return hist


def test_resampling_weights_match_the_target_kinematics(hard_b: Path, tmp_path: Path):
    out = tmp_path / "w"
    info = preprocess.run(hard_b, out, settings(
        variables=["pt", "eta"], plots=True,
        resampling=Resampling(method="weights", target="bottom", max_weight=1e9, **BINS)))
    before, after = _train_hist(out, info), _train_hist(out, info, weighted=True)
    target = before[2] / before[2].sum()
    for c in range(3):  # every flavour now has the b-jets' (pT, |eta|) density...
        np.testing.assert_allclose(after[c] / after[c].sum(), target, atol=1e-6)
    assert not np.allclose(before[0] / before[0].sum(), target, atol=0.05)  # ...unlike before
    assert np.load(out / "train_weights.npy").mean() == pytest.approx(1.0, rel=1e-5)
    assert np.all(np.load(out / "test_weights.npy") == 1.0)  # test split not reweighted
    for suffix in (".pdf", ".png"):
        assert (out / f"kinematics{suffix}").stat().st_size > 5_000


@pytest.mark.parametrize("method", ["count", "pdf"])
def test_resampling_count_and_pdf(hard_b: Path, tmp_path: Path, method: str):
    out = tmp_path / method
    none = preprocess.run(hard_b, tmp_path / "none", settings(variables=["pt", "eta"]))
    info = preprocess.run(hard_b, out, settings(
        variables=["pt", "eta"], resampling=Resampling(method=method, target="bottom",
                                                       max_upsampling=50, **BINS)))
    before, after = _train_hist(tmp_path / "none", none), _train_hist(out, info)
    noise = 4 * np.sqrt(np.maximum(after, 1)) + 1  # binomial thinning: 4 sigma
    if method == "count":  # every flavour keeps as many jets per bin as the rarest has
        assert np.all(np.abs(after - before.min(axis=0)) <= noise)
        assert info["n_jets"]["train"] < none["n_jets"]["train"]
    else:  # each flavour, its total kept, takes the b-jets' density (b-jets unchanged)
        np.testing.assert_array_equal(after[2], before[2])
        expected = before.sum(axis=(1, 2))[:, None, None] * before[2] / before[2].sum()
        assert np.all(np.abs(after - expected) <= 4 * np.sqrt(np.maximum(expected, 1)) + 1)
        assert np.any(after > before)  # upsampled somewhere
    # test split untouched; labels of the validation split resampled too
    assert info["n_jets"]["test"] == none["n_jets"]["test"]
    assert info["resampling"]["applied_to"] == ["train", "val"]


def test_log1p_transform_of_a_variable_that_is_zero_without_a_vertex(merged: Path,
                                                                     tmp_path: Path):
    out = tmp_path / "pre"
    info = preprocess.run(merged, out, settings(
        variables=["eventNumber", "jetIndex", "sv_sig", "pt"], log1p_variables=["sv_sig"],
        log_variables=["pt"]))
    node = info["inputs"][0]
    assert [v["name"] for v in node["variables"]] == [
        "eventNumber", "jetIndex", "log1p_sv_sig", "log_pt"]
    assert node["variables"][2]["transform"] == "log1p"
    with h5py.File(merged) as f:
        jets = f["jets"][...]
    assert np.count_nonzero(jets["sv_sig"] == 0) > 0  # jets without a vertex are kept as 0
    index = {(int(e), int(j)): i for i, (e, j) in enumerate(zip(jets["eventNumber"],
                                                                 jets["jetIndex"],
                                                                 strict=True))}
    raw = _raw_columns(out, "train", node)
    rows = np.array([index[(int(round(e)), int(round(j)))] for e, j in raw[:, :2]])
    np.testing.assert_allclose(raw[:, 2], np.log1p(jets["sv_sig"][rows].astype(np.float64)),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(raw[:, 3], np.log(jets["pt"][rows].astype(np.float64)),
                               rtol=1e-5)
    with pytest.raises(FlavourflowError, match="two transforms"):
        preprocess.run(merged, tmp_path / "x", settings(log1p_variables=["sv_sig"],
                                                        log_variables=["sv_sig"]))
