"""The compiled kernels of the dump give the bytes of their numpy references, on real blocks
of every input format and on the edge cases each kernel has a branch for."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import skhep_testdata
from factories import write_ntuple

from flavourflow.dump import blocks, core, h5, kernels, lzf
from flavourflow.dump.blocks import Selection

ALL_JETS = Selection(pt_min=0.0, abs_eta_max=10.0)

needs_kernels = pytest.mark.skipif(not kernels.available(),
                                   reason="the compiled kernels are not built")


def test_kernels_are_built_where_required() -> None:
    """CI sets FLAVOURFLOW_REQUIRE_KERNELS: there the build of the kernels must not be
    skipped silently."""
    if os.environ.get("FLAVOURFLOW_REQUIRE_KERNELS"):
        assert kernels.available(), "flavourflow.dump._kernels was not built"
    assert kernels.IMPLEMENTATION == ("c" if kernels.available() else "numpy")


def _both(monkeypatch: pytest.MonkeyPatch, function, *args):
    """``function(*args)`` with the kernels, then with the numpy references."""
    fast = function(*args)
    with monkeypatch.context() as m:
        m.setattr(kernels, "available", lambda: False)
        reference = function(*args)
    return fast, reference


def _assert_same(fast: tuple[np.ndarray, np.ndarray], reference: tuple[np.ndarray, np.ndarray],
                 ) -> None:
    for a, b in zip(fast, reference, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        differ = [f for f in a.dtype.names if a[f].tobytes() != b[f].tobytes()]
        assert not differ, f"fields differ: {differ}"


def _reader_blocks(path: Path, fmt: str, step: int):
    reader = core.open_reader(path, fmt)
    return reader, list(reader.blocks(step))


@needs_kernels
@pytest.mark.parametrize("max_tracks, selection", [(40, ALL_JETS), (5, ALL_JETS),
                                                   (40, Selection(40_000.0, 1.5))])
def test_build_on_generated_ntuple(tmp_path: Path, monkeypatch, max_tracks: int,
                                   selection: Selection) -> None:
    """The generated ntuple's float32 columns go to the kernel unselected, each selected
    jet's tracks found from its offset."""
    reader, events = _reader_blocks(write_ntuple(tmp_path / "n.root", 400, seed=3),
                                    "flavourflow", 150)
    for block in events:
        fast, reference = _both(monkeypatch, reader.convert, block, selection, max_tracks)
        _assert_same(fast, reference)
        assert (fast[0]["sv_n2trk"] > 0).any() and np.isfinite(fast[0]["ip2d_llr"]).all()


@needs_kernels
@pytest.mark.parametrize("name", ["uproot-physlite-rntuple_v1-0-0-0.root",
                                  "uproot-issue-798.root"])
def test_build_on_physlite(monkeypatch, name: str) -> None:
    """The tracks found through the GhostTrack links (ff_ghost_tracks), their link counts and
    the jets' fields (ff_interleave) too."""
    reader, events = _reader_blocks(Path(skhep_testdata.data_path(name)), "physlite", 30)
    counted = []

    def convert(*args):
        before = dataclasses.asdict(reader.stats)
        out = reader.convert(*args)
        counted.append({k: v - before[k] for k, v in dataclasses.asdict(reader.stats).items()})
        return out

    for block in events:
        _assert_same(*_both(monkeypatch, convert, block, ALL_JETS, 40))
        fast, reference = counted[-2:]
        assert fast == reference and fast["tracks_selected"] > 0


@needs_kernels
def test_build_edge_cases(monkeypatch) -> None:
    """No tracks, more than max_tracks, unknown uncertainties (NaN significance, ordered
    last), zero uncertainty (infinite), ties in |significance|, NaN charge, dphi across pi."""
    counts = np.array([0, 3, 12, 1, 6, 0, 4])
    n = int(counts.sum())
    rng = np.random.default_rng(7)
    jets = {"pt": rng.uniform(2e4, 2e5, len(counts)), "eta": rng.uniform(-2, 2, len(counts)),
            "phi": np.array([3.1, -3.1, 0.0, 1.0, 3.14, -2.0, 0.5])}
    tracks = {
        "pt": rng.uniform(500, 2e4, n), "eta": rng.uniform(-2.5, 2.5, n),
        "phi": rng.uniform(-np.pi, np.pi, n), "charge": rng.choice([-1.0, 1.0], n),
        "d0": rng.normal(0, 0.5, n), "z0SinTheta": rng.normal(0, 0.5, n),
        "d0Uncertainty": rng.uniform(0.01, 0.05, n),
        "z0SinThetaUncertainty": rng.uniform(0.01, 0.05, n),
    }
    tracks["d0Uncertainty"][[1, 5]] = np.nan
    tracks["d0Uncertainty"][7] = 0.0
    tracks["d0"][8:11] = 0.2  # ties
    tracks["d0Uncertainty"][8:11] = 0.02
    tracks["charge"][2] = np.nan
    for max_tracks in (1, 4, 40):
        fast, reference = _both(monkeypatch, blocks.build, jets, counts, tracks, max_tracks)
        _assert_same(fast, reference)
        assert (fast[1]["valid"].sum(axis=1) == np.minimum(counts, max_tracks)).all()


@needs_kernels
@pytest.mark.parametrize("counts, max_tracks", [
    ([3, 0, 40, 12, 0, 0, 55, 1] * 60, 40),
    ([0] * 500, 40),
    ([180, 3, 190, 0, 200] * 30, 200),
    ([1, 1, 0] * 100, 1),
])
def test_lzf_and_prefix_match_their_references(counts, max_tracks) -> None:
    rng = np.random.default_rng(1)
    n = len(counts)
    tracks = {name: rng.normal(size=int(sum(counts))) for name in blocks.TRACK_INPUTS}
    jets = {"pt": rng.uniform(2e4, 2e5, n), "eta": rng.uniform(-2, 2, n),
            "phi": rng.uniform(-3, 3, n)}
    _, padded = blocks.build(jets, np.array(counts), tracks, max_tracks)
    lengths = h5._valid_prefix(padded)
    assert lengths.tobytes() == h5._valid_prefix_numpy(padded).tobytes()
    per_chunk = 25
    whole = n - n % per_chunk
    assert (lzf.encode_chunks(padded[:whole], lengths[:whole], per_chunk)
            == lzf.encode_chunks_numpy(padded[:whole], lengths[:whole], per_chunk))
    broken = padded.copy()
    broken["valid"][0, -1] = True  # a track row after padding
    if max_tracks > 1:
        for prefix in (h5._valid_prefix, h5._valid_prefix_numpy):
            with pytest.raises(ValueError, match="after a padding row"):
                prefix(broken)


@needs_kernels
@pytest.mark.parametrize("n_jets", [1, 4095, 4096, 4097, 12_345])
def test_jets_written_by_rows_read_back_unchanged(tmp_path: Path, n_jets: int) -> None:
    """Jet rows through ff_lzf_rows (event fields repeating, others not, appends cutting
    chunks, a short last chunk) come back byte for byte from h5py's own LZF decoder, every
    chunk compressed."""
    rng = np.random.default_rng(n_jets)
    jets = blocks.filled(n_jets, blocks.JET_DTYPE)
    jets["eventNumber"] = np.repeat(np.arange(n_jets), 3)[:n_jets]
    jets["pt"] = rng.uniform(2e4, 2e5, n_jets)
    jets["eta"] = rng.normal(size=n_jets)
    tracks = blocks.filled((n_jets, 2), blocks.TRACK_DTYPE)
    path = tmp_path / "j.h5"
    writer = h5.TDDWriter(path)
    for a, b in [(0, 7), (7, 5000), (5000, n_jets)]:
        if a < min(b, n_jets):
            writer.append(jets[a:b], tracks[a:b])
    writer.close()
    with h5py.File(path) as f:
        ds = f["jets"]
        assert ds.compression == "lzf"
        assert ds[...].tobytes() == jets.tobytes()
        n_chunks = ds.id.get_num_chunks()
        stored = sum(ds.id.get_chunk_info(k).size for k in range(n_chunks))
        assert stored < n_chunks * ds.chunks[0] * jets.itemsize  # chunks, stored whole
        assert all(ds.id.get_chunk_info(k).filter_mask == 0 for k in range(n_chunks))


def test_numpy_fallback_dumps_the_same_bytes(tmp_path: Path) -> None:
    """`flavourflow dump` with FLAVOURFLOW_KERNELS=numpy (what runs where nothing was
    compiled) writes the same jets and tracks, and says so in its provenance."""
    source = write_ntuple(tmp_path / "n.root", 300, seed=5)
    outputs = {}
    for name, env in (("default", {}), ("numpy", {"FLAVOURFLOW_KERNELS": "numpy"})):
        out = tmp_path / f"{name}.h5"
        subprocess.run([sys.executable, "-m", "flavourflow", "dump", "--input", str(source),
                        "--output", str(out), "--step-size", "70"],
                       check=True, env={**os.environ, **env})
        with h5py.File(out) as f:
            outputs[name] = ({k: f[k][...].tobytes() for k in ("jets", "tracks")},
                             f.attrs["kernels"])
    assert outputs["default"][0] == outputs["numpy"][0]
    assert outputs["numpy"][1] == "numpy"
    assert outputs["default"][1] == kernels.IMPLEMENTATION


@needs_kernels
@pytest.mark.parametrize("name", ["uproot-physlite-rntuple_v1-0-0-0.root",
                                  "uproot-issue-798.root"])
def test_ghost_tracks_while_another_thread_allocates(monkeypatch, name: str) -> None:
    """The kernel runs without the GIL while the read-ahead thread allocates: every array it
    reads must stay alive through the call. A thread here fills freshly freed small buffers
    with garbage as fast as it can; the uncertainties must still match the numpy reference
    (a freed covariance-index array made them all NaN)."""
    import threading

    reader, events = _reader_blocks(Path(skhep_testdata.data_path(name)), "physlite", 30)
    references = []
    with monkeypatch.context() as m:
        m.setattr(kernels, "available", lambda: False)
        references = [reader.convert(block, ALL_JETS, 40) for block in events]
    stop = threading.Event()

    def scribble() -> None:
        while not stop.is_set():
            for size in (1, 2, 3, 4, 5, 8):
                np.full(size, -(2 ** 40), dtype=np.int64)

    thread = threading.Thread(target=scribble, daemon=True)
    thread.start()
    try:
        for _ in range(20):
            for block, reference in zip(events, references, strict=True):
                _assert_same(reader.convert(block, ALL_JETS, 40), reference)
    finally:
        stop.set()
        thread.join()
