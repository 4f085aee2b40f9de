"""The preprocess stage's chunk reader and numba kernels against h5py and numpy."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from factories import write_ntuple

from flavourflow.core import inputs
from flavourflow.core.errors import FlavourflowError
from flavourflow.dump import core as dump
from flavourflow.dump import ntuple as nt
from flavourflow.merge import core as merge
from flavourflow.preprocess import chunks, kernels

TRACK_FIELDS = ["d0", "ptfrac", "IP3D_signed_d0_significance", "valid"]


@pytest.fixture(scope="module")
def merged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two dumps (LZF chunks written by flavourflow's encoders) and their virtual merge."""
    tmp = tmp_path_factory.mktemp("dumps")
    parts = []
    for i in range(2):
        root = write_ntuple(tmp / f"part{i}.root", 700, seed=20 + i, first_event=i * 1000)
        parts.append(tmp / f"part{i}.h5")
        dump.run(root, parts[-1], nt.Selection(20_000.0, 2.5), 12, 100)
    out = tmp / "merged.h5"
    merge.run(parts, out)
    return out


def _ranges(n: int, rows: int) -> list[tuple[int, int]]:
    """Chunk-aligned, straddling, single-row and empty ranges of ``n`` rows."""
    return [(0, n), (0, rows), (rows - 3, 2 * rows + 5), (n - 7, n), (5, 6), (n // 2, n // 2),
            (1, n - 1)]


@pytest.mark.parametrize("name", ["jets", "tracks"])
def test_reader_gives_what_h5py_gives_on_a_virtual_merge(merged: Path, name: str) -> None:
    fields = ["eventNumber", "pt", "HadronConeExclTruthLabelID"] if name == "jets" \
        else TRACK_FIELDS
    with h5py.File(merged) as f, chunks.RowReader(f[name], merged) as reader:
        ds = f[name]
        assert ds.is_virtual and len(reader.segments) == 2
        assert all(s.direct for s in reader.segments)  # decoded by the kernel
        steps = None if name == "jets" else 7
        for start, stop in _ranges(len(ds), reader.segments[0].dataset.chunks[0]):
            got = reader.read(start, stop, fields, steps)
            want = ds.fields(fields)[start:stop] if steps is None else \
                ds.fields(fields)[start:stop, :steps]
            assert got.dtype.names == tuple(fields)
            for field in fields:
                np.testing.assert_array_equal(got[field], want[field])


@pytest.mark.parametrize("options", [{"compression": "gzip"},
                                     {"compression": "lzf", "shuffle": True},
                                     {"compression": "lzf", "chunks": (50, 3)}, {}])
def test_other_layouts_are_read_by_h5py(tmp_path: Path, merged: Path, options: dict) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(merged) as f, h5py.File(path, "w") as out:
        tracks = f["tracks"][:1000]
        out.create_dataset("tracks", data=tracks, **options)
    with h5py.File(path) as f, chunks.RowReader(f["tracks"], path) as reader:
        assert not any(s.direct for s in reader.segments)
        got = reader.read(13, 977, TRACK_FIELDS, 9)
        for field in TRACK_FIELDS:
            np.testing.assert_array_equal(got[field], tracks[13:977, :9][field])


def test_raw_and_plain_lzf_chunks(tmp_path: Path) -> None:
    """Chunks h5py wrote with its LZF filter, one stored raw (the filter skipped)."""
    path = tmp_path / "plain.h5"
    rng = np.random.default_rng(1)
    data = np.zeros((1000, 4), dtype=[("a", "<f4"), ("b", "<i8")])
    data["a"][:300] = rng.normal(size=(300, 4))
    data["b"] = np.arange(4000).reshape(1000, 4) % 7
    noise = rng.integers(0, 256, (128, 4 * 12), dtype=np.uint8)  # incompressible
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("x", data=data, chunks=(128, 4), compression="lzf")
        ds.id.write_direct_chunk((256, 0), noise.tobytes(), filter_mask=chunks.SKIPPED)
        data[256:384] = noise.view(data.dtype).reshape(128, 4)
    with h5py.File(path) as f, chunks.RowReader(f["x"], path) as reader:
        assert reader.segments[0].direct
        got = reader.read(100, 1000, ["b", "a"])
        np.testing.assert_array_equal(got["a"], data["a"][100:])
        np.testing.assert_array_equal(got["b"], data["b"][100:])


def test_a_corrupt_chunk_is_named(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("jets", data=np.arange(1000.0), chunks=(100,), compression="lzf")
        _, stream = ds.id.read_direct_chunk((300,))
        ds.id.write_direct_chunk((300,), stream[: len(stream) // 2])
    with h5py.File(path) as f, chunks.RowReader(f["jets"], path) as reader:
        with pytest.raises(FlavourflowError, match="corrupt LZF chunk at row 300") as err:
            reader.read(0, 1000, [])
        assert "jets" in str(err.value) and "corrupt.h5" in str(err.value)


def test_lzf_decoder_on_hand_made_streams() -> None:
    out = np.zeros(8, dtype=np.uint8)
    # 3 literals "abc", then 5 bytes from 3 back (overlapping): "abcabcab"
    stream = np.array([2, *b"abc", (5 - 2) << 5, 3 - 1], dtype=np.uint8)
    assert chunks._lzf_decode(stream, out) == 8
    assert out.tobytes() == b"abcabcab"
    assert chunks._lzf_decode(np.array([0, 65, 32, 5], np.uint8), out) == -1  # before start
    assert chunks._lzf_decode(np.array([9, 65], np.uint8), out) == -1  # literals cut short
    assert chunks._lzf_decode(np.array([2, *b"abc", 255, 255], np.uint8), out) == -1  # too long


def test_normalise_is_numpy_arithmetic_to_the_bit() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(5.0, 3.0, (200, 9, 3)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = np.nan
    x[0, 0, 1] = np.inf
    valid = rng.random((200, 9)) < 0.7
    mean, scale = np.array([5.1, -2.0, 0.3]), np.array([0.33, 1.7, 12.0])
    expected = x.astype(np.float64)
    expected = np.where(~np.isfinite(expected) & valid[..., None], mean, expected)
    expected = (expected - mean) * scale
    expected[~valid] = 0.0
    got = kernels.normalise(x.copy(), mean, scale, valid)
    assert got.tobytes() == expected.astype(np.float32).tobytes()
    jets = x[:, 0, :].copy()
    want = (np.where(np.isfinite(jets), jets.astype(np.float64), mean) - mean) * scale
    assert kernels.normalise(jets, mean, scale).tobytes() == want.astype(np.float32).tobytes()
    with pytest.raises(ValueError):
        kernels.normalise(x.astype(np.float64), mean, scale, valid)


def test_gather_steps_equals_track_tensor_of_the_rows() -> None:
    rng = np.random.default_rng(4)
    block = np.zeros((50, 6), dtype=[("d0", "<f4"), ("n", "<i4"), ("valid", "?")])
    block["d0"] = rng.normal(size=(50, 6))
    block["n"] = rng.integers(-5, 5, (50, 6))
    block["valid"] = rng.random((50, 6)) < 0.6
    rows = np.repeat(np.arange(50), rng.integers(0, 3, 50))  # copies and drops
    variables = [inputs.variable("d0"), inputs.variable("n", "log1p")]
    columns = [block["d0"], variables[1].compute(block["n"])]
    values, valid = kernels.gather_steps(columns, block["valid"], rows, 8)
    want_values, want_valid = inputs.track_tensor(block[rows], variables, 8, np.float32)
    np.testing.assert_array_equal(valid, want_valid)
    assert values.tobytes() == want_values.tobytes()
    with pytest.raises(ValueError):
        kernels.gather_steps(columns, block["valid"], np.array([50]), 8)


def test_count_inf_counts_both_signs_not_nan_on_strided_views() -> None:
    block = np.zeros((30, 5), dtype=[("x", "<f4"), ("n", "<i8")])
    block["x"][3, 1] = np.inf
    block["x"][7, 4] = -np.inf
    block["x"][9, 0] = np.nan
    assert kernels.count_inf(block["x"]) == 2
    assert kernels.count_inf(block["x"][:, 0]) == 0
    assert kernels.count_inf(block["x"][:, 1]) == 1
    assert kernels.count_inf(block["n"]) == 0


@pytest.mark.parametrize("width", [1, 2, 6])
def test_moments_of_valid_steps_are_those_of_the_copy_to_the_bit(width: int) -> None:
    from flavourflow.preprocess.stats import RunningMoments

    rng = np.random.default_rng(5)
    values = (rng.normal(3.0, 50.0, (3000, 11, width))
              * rng.exponential(1.0, (3000, 1, 1))).astype(np.float32)
    values[rng.random(values.shape) < 0.03] = np.nan
    values[5, 2, 0] = -np.inf
    valid = rng.random((3000, 11)) < 0.6
    streamed, copied = RunningMoments(width), RunningMoments(width)
    for start in range(0, 3000, 700):  # several blocks, merged
        streamed.update_steps(values[start : start + 700], valid[start : start + 700])
        copied_block = values[start : start + 700][valid[start : start + 700]]
        finite = np.isfinite(copied_block.astype(np.float64))
        n = finite.sum(axis=0).astype(np.float64)
        safe = np.where(finite, copied_block.astype(np.float64), 0.0)
        mean = np.where(n > 0, safe.sum(axis=0) / n, 0.0)
        copied._merge(n, mean, np.where(finite, (safe - mean) ** 2, 0.0).sum(axis=0))
    for name in ("count", "mean", "m2"):
        assert getattr(streamed, name).tobytes() == getattr(copied, name).tobytes()
    jets = RunningMoments(width)
    jets.update(values[:, 0, :])
    assert jets.count.tolist() == np.isfinite(values[:, 0, :]).sum(axis=0).tolist()
