"""The LZF encoder of padded track chunks: what h5py reads back is what was written, byte for
byte, in every layout the encoder has a branch for."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from factories import write_ntuple

from flavourflow.dump import blocks, core, lzf, ntuple
from flavourflow.dump.h5 import TDDWriter


def _tracks(counts: list[int], max_tracks: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Jets with ``counts`` tracks of random values, built as every reader builds them."""
    rng = np.random.default_rng(seed)
    counts = np.asarray(counts)
    total = int(counts.sum())
    jets = {"pt": rng.uniform(2e4, 2e5, len(counts)), "eta": rng.uniform(-2, 2, len(counts)),
            "phi": rng.uniform(-3, 3, len(counts))}
    tracks = {name: rng.normal(size=total) for name in blocks.TRACK_INPUTS}
    tracks["charge"] = rng.choice([-1.0, 1.0], total)
    tracks["pt"] = rng.uniform(1e3, 1e4, total)
    for name in ("d0Uncertainty", "z0SinThetaUncertainty"):
        tracks[name] = rng.uniform(0.01, 0.1, total)
    return blocks.build(jets, counts, tracks, max_tracks)


def _write(path: Path, blocks_: list[np.ndarray], compression: str = "lzf") -> np.ndarray:
    writer = TDDWriter(path, compression)
    for tracks in blocks_:
        writer.append(blocks.filled(len(tracks), blocks.JET_DTYPE), tracks)
    writer.close()
    with h5py.File(path) as f:
        return f["tracks"][...]


@pytest.mark.parametrize("counts, max_tracks", [
    ([3, 0, 40, 12, 0, 0, 55, 1] * 60, 40),  # empty, full, overfull jets; appends cut chunks
    ([0] * 500, 40),                          # nothing but padding
    ([180, 3, 190, 0, 200] * 30, 200),        # padding rows too far apart to copy
    ([1, 1, 0] * 100, 1),                     # one row per jet
])
def test_written_chunks_read_back_unchanged(tmp_path: Path, counts, max_tracks) -> None:
    jets, tracks = _tracks(counts, max_tracks)
    cuts = [0, 7, 150, 151, len(tracks)]  # appends that start and end inside chunks
    parts = [tracks[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    ours = _write(tmp_path / "ours.h5", parts)
    plain = _write(tmp_path / "plain.h5", parts, "none")
    assert ours.dtype == tracks.dtype and ours.shape == tracks.shape
    assert ours.tobytes() == tracks.tobytes() == plain.tobytes()
    with h5py.File(tmp_path / "ours.h5") as f:
        ds = f["tracks"]
        assert ds.compression == "lzf"
        n_chunks = -(-len(tracks) // ds.chunks[0])
        masks = [ds.id.get_chunk_info(k).filter_mask for k in range(n_chunks)]
        stored = sum(ds.id.get_chunk_info(k).size for k in range(n_chunks))
    if max_tracks > 1:  # padding to compress: every chunk went through the filter, and
        # stores little more than its tracks (literals: a control byte per 32 bytes)
        assert masks == [0] * n_chunks
        chunk_bytes = ds.chunks[0] * tracks.shape[1] * tracks.itemsize  # the last one filled
        assert stored < (1.04 * tracks["valid"].sum() * tracks.itemsize
                         + 0.02 * n_chunks * chunk_bytes)
    else:  # nothing to gain: stored raw, the filter marked as skipped
        assert set(masks) <= {0, 1}


def test_smaller_than_h5py_lzf_on_a_dump(tmp_path: Path) -> None:
    source = write_ntuple(tmp_path / "in.root", 300, seed=3)
    selection = ntuple.Selection(20_000.0, 2.5)
    core.run(source, tmp_path / "ours.h5", selection, 40, step_size=70)
    core.run(source, tmp_path / "none.h5", selection, 40, step_size=70, compression="none")
    with h5py.File(tmp_path / "ours.h5") as a, h5py.File(tmp_path / "none.h5") as b:
        tracks = b["tracks"][...]
        assert a["tracks"][...].tobytes() == tracks.tobytes()
        with h5py.File(tmp_path / "h5py.h5", "w") as c:
            c.create_dataset("tracks", data=tracks, chunks=a["tracks"].chunks,
                             compression="lzf")
        ours = a["tracks"].id.get_storage_size()
    with h5py.File(tmp_path / "h5py.h5") as c:
        assert ours < c["tracks"].id.get_storage_size()


def test_rows_after_padding_are_refused(tmp_path: Path) -> None:
    _, tracks = _tracks([2, 5], 8)
    tracks[0, 6]["valid"] = True
    with pytest.raises(ValueError, match="a track row after a padding row"):
        _write(tmp_path / "bad.h5", [tracks])
    with pytest.raises(ValueError, match="cannot encode"):
        lzf.encode_tracks(tracks, 3)
