"""The merge stage's two layouts: HDF5 virtual datasets over the per-file dumps (default)
and a concatenated copy; both read back identically, also by ftag's H5Reader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from factories import write_ntuple
from test_dump import run_cli

from flavourflow.core.errors import FlavourflowError
from flavourflow.dump import core as dump
from flavourflow.dump.blocks import Selection
from flavourflow.merge import core as merge


@pytest.fixture
def parts(tmp_path: Path) -> list[Path]:
    out = []
    for k in range(3):
        root = write_ntuple(tmp_path / f"p{k}.root", 150, seed=20 + k, first_event=k * 1000)
        out.append(tmp_path / "dump" / f"p{k}.h5")
        dump.run(root, out[-1], Selection(20_000.0, 2.5), 10, 60)
    return out


def read(path: Path) -> tuple[bytes, bytes, dict]:
    with h5py.File(path, "r") as f:
        return f["jets"][...].tobytes(), f["tracks"][...].tobytes(), dict(f.attrs)


def test_virtual_and_concat_read_back_the_same_rows(parts: list[Path], tmp_path: Path) -> None:
    n_virtual = merge.run(parts, tmp_path / "merge" / "v.h5")
    n_concat = merge.run(parts, tmp_path / "merge" / "c.h5", layout="concat")
    jets_v, tracks_v, attrs_v = read(tmp_path / "merge" / "v.h5")
    jets_c, tracks_c, attrs_c = read(tmp_path / "merge" / "c.h5")
    expected = [read(p) for p in parts]
    assert n_virtual == n_concat > 0
    assert jets_v == jets_c == b"".join(e[0] for e in expected)
    assert tracks_v == tracks_c == b"".join(e[1] for e in expected)
    assert attrs_v["merge_layout"] == "virtual" and attrs_c["merge_layout"] == "concat"
    for attrs in (attrs_v, attrs_c):
        provenance = json.loads(attrs["merged_from"])
        assert [p["file"] for p in provenance] == [str(p) for p in parts]
        assert "p2.root" in provenance[2]["source_files"][0]
        assert attrs["schema"] == "flavourflow" and json.loads(attrs["selection"])["pt_min"]
    with h5py.File(tmp_path / "merge" / "v.h5") as f:
        assert f["jets"].is_virtual and f["tracks"].is_virtual
    assert (tmp_path / "merge" / "v.h5").stat().st_size < 20_000  # no copy of the rows


def test_virtual_merge_survives_moving_the_results_tree(parts: list[Path],
                                                        tmp_path: Path) -> None:
    merge.run(parts, tmp_path / "merge" / "v.h5")
    before = read(tmp_path / "merge" / "v.h5")
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for name in ("merge", "dump"):
        shutil.move(tmp_path / name, moved / name)
    assert read(moved / "merge" / "v.h5")[:2] == before[:2]  # sources found relative to it

    from ftag.hdf5 import H5Reader

    data = H5Reader(moved / "merge" / "v.h5", batch_size=100, shuffle=False).load(
        {"jets": ["pt", "eventNumber"], "tracks": ["d0", "valid"]})
    with h5py.File(moved / "merge" / "v.h5") as f:
        assert np.array_equal(data["jets"]["pt"], f["jets"]["pt"])
        assert np.array_equal(data["tracks"]["valid"], f["tracks"]["valid"])


def test_pt_windows_make_a_copy_even_when_virtual_is_asked(parts: list[Path],
                                                           tmp_path: Path) -> None:
    out = tmp_path / "hybrid.h5"
    merge.run(parts[:2], out, pt_windows=[(0.0, 50_000.0), (50_000.0, np.inf)],
              layout="virtual")
    with h5py.File(out) as f, h5py.File(parts[0]) as a, h5py.File(parts[1]) as b:
        assert not f["jets"].is_virtual
        expected = np.concatenate([a["jets"][a["jets"]["pt"] < 50_000],
                                   b["jets"][b["jets"]["pt"] >= 50_000]])
        assert f["jets"][...].tobytes() == expected.tobytes()


def test_incompatible_parts_are_refused(parts: list[Path], tmp_path: Path) -> None:
    other = tmp_path / "other.h5"
    root = write_ntuple(tmp_path / "o.root", 100, seed=9)
    dump.run(root, other, Selection(20_000.0, 2.5), 5, 60)  # 5 track slots, not 10
    with pytest.raises(FlavourflowError, match=r"other\.h5: field 'tracks': layout"):
        merge.run([*parts, other], tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()


def test_cli_layout_option(parts: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "cli.h5"
    result = run_cli("merge", "--inputs", *map(str, parts), "--output", str(out),
                     "--layout", "concat", "--compression", "gzip-1")
    assert result.returncode == 0, result.stderr
    with h5py.File(out) as f:
        assert not f["jets"].is_virtual and f["jets"].compression == "gzip"
        assert f["tracks"].compression_opts == 1
