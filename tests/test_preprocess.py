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

VARIABLES = ["ip2d_llr", "sv_sig", "sv_mass"]


def settings(**changes) -> preprocess.Settings:
    base = dict(variables=VARIABLES, fractions={"train": 0.6, "val": 0.2, "test": 0.2},
                split_seed=3, shuffle_seed=4, block_size=333, model_name="m")
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
    # the same jets, shuffled: compare sorted rows of the test split
    test = np.load(out / "test_jets.npy")
    expected = np.stack([jets[which == 2][v].astype(np.float64) for v in VARIABLES], axis=1)
    offsets = np.array([v["offset"] for v in variables["inputs"][0]["variables"]])
    scales = np.array([v["scale"] for v in variables["inputs"][0]["variables"]])
    expected = np.where(np.isfinite(expected), expected, -offsets)
    expected = ((expected + offsets) * scales).astype(np.float32)
    assert np.allclose(np.sort(test, axis=0), np.sort(expected, axis=0), atol=1e-5)


def test_block_size_and_file_order_do_not_change_the_split(merged: Path, tmp_path: Path):
    preprocess.run(merged, tmp_path / "a", settings(block_size=50))
    preprocess.run(merged, tmp_path / "b", settings(block_size=100_000))
    for name in ("train", "val", "test"):
        a = np.load(tmp_path / "a" / f"{name}_labels.npy")
        b = np.load(tmp_path / "b" / f"{name}_labels.npy")
        assert np.array_equal(np.bincount(a), np.bincount(b))


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
