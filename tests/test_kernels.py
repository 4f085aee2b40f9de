"""The dump's numba kernels: track building, its baselines, the PHYSLITE ghost-track links and
the LZF encoders, on constructed cases whose results are computed by hand, on the real files
(skhep PHYSLITE, generated ntuples) through the properties every block must have, and on inputs
that do not fit together (a one-line error, never a write out of bounds)."""

from __future__ import annotations

import math
import threading
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pytest
import skhep_testdata
from factories import write_ntuple

from flavourflow.dump import blocks, core, h5, kernels, lzf, physlite, taggers
from flavourflow.dump.blocks import TRACK_DTYPE, Selection

ALL_JETS = Selection(pt_min=0.0, abs_eta_max=10.0)
PHYSLITE = ["uproot-physlite-rntuple_v1-0-0-0.root", "uproot-issue-798.root"]
F4 = np.float32


def _reader_blocks(path: Path, fmt: str, step: int):
    reader = core.open_reader(path, fmt)
    return reader, list(reader.blocks(step))


def _check_block(jets: np.ndarray, tracks: np.ndarray, max_tracks: int) -> None:
    """What every converted block satisfies, whatever the input."""
    assert tracks.shape == (len(jets), max_tracks) and tracks.dtype == TRACK_DTYPE
    valid = tracks["valid"]
    kept = np.minimum(jets["n_tracks"], max_tracks)
    assert (valid.sum(axis=1) == kept).all()
    assert (valid == (np.arange(max_tracks) < kept[:, None])).all()  # tracks, then padding
    padding = blocks.filled(1, TRACK_DTYPE).tobytes()
    assert all(row.tobytes() == padding for row in tracks[~valid])
    t = tracks[valid]
    jet = np.nonzero(valid)[0]
    magnitude = np.abs(tracks["IP3D_signed_d0_significance"])
    ordered = np.where(np.isnan(magnitude), np.inf, -magnitude)  # NaN last
    with np.errstate(invalid="ignore"):  # inf - inf between infinite significances
        steps = np.diff(ordered, axis=1)[valid[:, 1:]]
    assert ((steps >= 0) | np.isnan(steps)).all()
    assert (np.abs(t["dphi"]) <= F4(np.pi)).all()
    np.testing.assert_allclose(t["dr"], np.hypot(t["deta"], t["dphi"]), rtol=1e-6)
    np.testing.assert_allclose(t["ptfrac"], t["pt"] / jets["pt"][jet], rtol=1e-6)
    np.testing.assert_allclose(t["deta"], t["eta"] - jets["eta"][jet], rtol=1e-5, atol=1e-5)
    finite = np.isfinite(t["IP3D_signed_d0_significance"])
    # the lifetime sign: + when d0 and sin(dphi) have the same sign
    sign = np.where(t["d0"] * np.sin(t["dphi"]) < 0, -1, 1)[finite]
    assert (np.sign(t["IP3D_signed_d0_significance"][finite]) * sign >= 0).all()
    assert np.isfinite(jets["ip2d_llr"]).all()
    has_sv = jets["sv_n2trk"] > 0
    assert (jets["sv_ntrk"][has_sv] >= 2).all() and (jets["sv_sig"][~has_sv] == 0).all()
    assert np.isnan(jets["sv_mass"][~has_sv]).all()


@pytest.mark.parametrize("max_tracks, selection", [(40, ALL_JETS), (5, ALL_JETS),
                                                   (40, Selection(40_000.0, 1.5))])
def test_build_on_generated_ntuple(tmp_path: Path, max_tracks: int,
                                   selection: Selection) -> None:
    """The generated ntuple's float32 columns go to the kernel unselected, each selected
    jet's tracks found from its offset: its tracks are the ntuple's, reordered."""
    path = write_ntuple(tmp_path / "n.root", 400, seed=3)
    reader, events = _reader_blocks(path, "flavourflow", 150)
    for block in events:
        jets, tracks = reader.convert(block, selection, max_tracks)
        _check_block(jets, tracks, max_tracks)
        assert (jets["sv_n2trk"] > 0).any()
        keep = selection.keep(*(ak.to_numpy(ak.flatten(block[f"jet_{k}"]))
                                for k in ("pt", "eta")))
        assert len(jets) == int(keep.sum())
        for j, pts in enumerate(ak.flatten(block["jet_trk_pt"], axis=1)[keep]):
            mine = np.sort(tracks["pt"][j][tracks["valid"][j]])
            theirs = np.sort(np.asarray(pts, F4))
            if len(theirs) <= max_tracks:
                assert (mine == theirs).all()
            else:
                assert np.isin(mine, theirs).all()


@pytest.mark.parametrize("name", PHYSLITE)
def test_build_on_physlite(name: str) -> None:
    """The tracks found through the GhostTrack links pass the track selection, their link
    counts add up, and the blocks have every property above."""
    reader, events = _reader_blocks(Path(skhep_testdata.data_path(name)), "physlite", 30)
    for block in events:
        jets, tracks = reader.convert(block, ALL_JETS, 40)
        _check_block(jets, tracks, 40)
        t = tracks[tracks["valid"]]
        cuts = physlite.TRACK_CUTS
        assert (t["pt"] > cuts["pt_min"]).all() and (np.abs(t["eta"]) < cuts["abs_eta_max"]).all()
        assert (np.abs(t["d0"]) < cuts["abs_d0_max"]).all()
        assert set(np.unique(t["charge"])) <= {-1, 1}
        assert np.isfinite(t["d0Uncertainty"]).all() and (t["d0Uncertainty"] > 0).all()
    s = reader.stats
    assert 0 < s.tracks_selected <= s.ghost_links_valid <= s.ghost_links


def test_build_constructed_jets() -> None:
    """Hand-computed significances, order, padding, dphi across pi and the IP sum: no
    tracks, more than max_tracks, unknown (NaN) and zero uncertainties, ties, NaN charge."""
    jets = {"pt": np.array([50e3, 40e3, 30e3]), "eta": np.array([0.5, 0.0, 1.0]),
            "phi": np.array([3.1, 0.0, -1.0])}
    counts = np.array([4, 0, 2])
    tracks = {
        "pt": np.array([1e3, 2e3, 3e3, 4e3, 5e3, 6e3]),
        "eta": np.array([0.6, 0.4, 0.5, 0.5, 1.2, 0.8]),
        "phi": np.array([-3.1, 3.0, 3.1, 3.1, -1.0, -1.0]),
        "charge": np.array([1.0, -1.0, np.nan, 1.0, 1.0, -1.0]),
        "d0": np.array([0.1, 0.2, 0.3, 0.2, 0.05, -0.05]),
        "z0SinTheta": np.array([0.1, 0.1, 0.0, -0.1, 0.2, 0.2]),
        "d0Uncertainty": np.array([0.01, 0.1, np.nan, 0.1, 0.0, 0.01]),
        "z0SinThetaUncertainty": np.array([0.1, 0.1, 0.1, 0.1, 0.1, 0.1]),
    }
    out, padded = blocks.build(jets, counts, tracks, max_tracks=3)
    # jet 0: dphi of the first track wraps across pi: -3.1 - 3.1 + 2 pi
    dphi0 = -6.2 + 2 * math.pi
    assert padded[0, 0]["dphi"] == pytest.approx(dphi0, abs=1e-6)
    # S(d0) = sign(d0 sin dphi) |d0| / sigma: 10 (track 0), -2 and 2 (ties: in their order,
    # track 1 then track 3), NaN (track 2: unknown sigma, last and dropped beyond 3 rows)
    s = padded[0]["IP3D_signed_d0_significance"]
    assert s[0] == F4(10.0) and abs(s[1]) == abs(s[2]) == F4(2.0)
    assert list(padded[0]["pt"]) == [1e3, 2e3, 4e3]
    assert s[1] == -2.0  # d0 > 0, sin(3.0 - 3.1) < 0
    assert padded[0]["valid"].all() and out["n_tracks"][0] == 4
    # z0 sign: + when z0 * deta <= 0 (deta = 0.1 > 0 and z0 > 0 for track 0)
    assert padded[0, 0]["IP3D_signed_z0_significance"] == F4(-1.0)
    assert padded[0, 0]["ptfrac"] == F4(1e3 / F4(50e3))
    # the IP sum is over every track with a finite S, kept or not
    expected = sum(taggers.track_llr(x) for x in (10.0, -2.0, 2.0))
    assert out["ip2d_llr"][0] == F4(expected)
    # jet 1: no tracks: all padding, IP 0, no vertex
    assert padded[1].tobytes() == blocks.filled(3, TRACK_DTYPE).tobytes()
    assert out["ip2d_llr"][1] == 0 and out["sv_n2trk"][1] == 0 and np.isnan(out["sv_mass"][1])
    # jet 2: zero uncertainty -> infinite S, ordered first; NaN charge -> -1 (jet 0, none kept)
    assert padded[2, 0]["pt"] == 5e3 and np.isinf(padded[2, 0]["IP3D_signed_d0_significance"])
    assert padded[2, 1]["IP3D_signed_d0_significance"] == F4(5.0)
    assert out["ip2d_llr"][2] == F4(taggers.track_llr(0.05 / 0.01))
    assert not padded[2, 2]["valid"]
    nan_charge = blocks.build({k: v[:1] for k, v in jets.items()}, np.array([1]),
                              {k: v[2:3] for k, v in tracks.items()}, 1)[1]
    assert nan_charge[0, 0]["charge"] == -1


def test_ip_llr_by_hand() -> None:
    """track_llr at S = 0 is log(heavy/light) with the templates as written; S beyond the
    range is clipped; non-finite S contributes nothing."""
    light = (0.96 / math.sqrt(2 * math.pi) + 0.03 / (3 * math.sqrt(2 * math.pi))
             + 0.01 / 10)
    assert taggers.light_pdf(0.0) == pytest.approx(light, rel=1e-12)
    assert taggers.track_llr(100.0) == taggers.track_llr(60.0)
    assert taggers.track_llr(-100.0) == taggers.track_llr(-30.0)
    assert taggers.track_llr(math.nan) == 0.0 == taggers.track_llr(math.inf)
    assert taggers.track_llr(10.0) > taggers.track_llr(0.0) > taggers.track_llr(-3.0)


@pytest.mark.parametrize("change, message", [
    (lambda a: a.update(counts=np.array([2, -1])), "counts"),
    (lambda a: a.update(starts=np.array([0])), "track starts"),
    (lambda a: a.update(starts=np.array([0, 5])), "beyond"),
    (lambda a: a["tracks"].update(d0=np.zeros(2)), "beyond"),
    (lambda a: a["tracks"].update(pt=np.zeros((3, 1))), "track pt"),
])
def test_build_refuses_what_does_not_fit(change, message: str) -> None:
    """Each check that used to be the callers' business: one ValueError, nothing written."""
    args = {"jets": {"pt": np.ones(2), "eta": np.zeros(2), "phi": np.zeros(2)},
            "counts": np.array([2, 1]), "starts": np.array([0, 2]),
            "tracks": {name: np.ones(3) for name in blocks.TRACK_INPUTS}}
    change(args)
    with pytest.raises(ValueError, match=message):
        blocks.build(args["jets"], args["counts"], args["tracks"], 40, starts=args["starts"])


def _links(**override) -> physlite.GhostLinks:
    """One event with three tracks, one jet with four links: the track container's key 7 to
    tracks 2 and 0, a thinned link (key 0) and one beyond the event's tracks."""
    theta = np.array([math.pi / 2, 1.0, 2.0])
    fields = dict(
        n_links=np.array([4]), key=np.array([7, 0, 7, 7]), index=np.array([2, 0, 0, 3]),
        wanted_key=7, n_tracks=np.array([3]), track_first=np.array([0]),
        columns={"d0": np.array([0.1, 0.2, -0.3]), "z0": np.array([1.0, 0.0, 2.0]),
                 "theta": theta, "phi": np.array([0.0, 1.0, math.pi / 2]),
                 "qOverP": np.array([-1 / 2000, 1 / 5000, 1 / 4000])},
        vertex=(np.array([0.0]), np.array([0.0]), np.array([0.5])),
        covariance=[(np.array([0.04, 0.09, 1e-6, 0.0] * 3), np.array([0, 4, 8]),
                     np.array([4, 4, 4]), k) for k in range(4)],
        compressed=False)
    fields.update(override)
    return physlite.GhostLinks(**fields)


def test_ghost_tracks_by_hand() -> None:
    """pt = sin(theta) / |q/p|, eta = -log tan(theta / 2), z0 from the primary vertex, d0
    negated (ATLAS -> flavourflow); thinned and out-of-range links skipped."""
    counts, tracks, stats = physlite.ghost_tracks(_links(), np.array([0]), np.array([True]),
                                                  physlite.TRACK_CUTS)
    assert stats == {"ghost_links": 4, "ghost_links_valid": 2, "tracks_selected": 2}
    assert list(counts) == [2]
    assert tracks["pt"][0] == pytest.approx(math.sin(2.0) * 4000)  # track 2 first
    assert tracks["pt"][1] == pytest.approx(2000.0)
    assert tracks["eta"][0] == pytest.approx(-math.log(math.tan(1.0)))
    assert tracks["eta"][1] == pytest.approx(0.0, abs=1e-12)
    assert list(tracks["charge"]) == [1.0, -1.0]
    assert list(tracks["d0"]) == [0.3, -0.1]
    assert tracks["z0SinTheta"][0] == pytest.approx(1.5 * math.sin(2.0))
    assert tracks["d0Uncertainty"][1] == pytest.approx(0.2)
    # sigma(z0 sin theta)^2 = sin^2 var(z0) + (z0 cos)^2 var(theta) (+ 2 z0 sin cos cov = 0)
    assert tracks["z0SinThetaUncertainty"][1] == pytest.approx(0.3)
    # the jet not kept: its links are not followed
    none = physlite.ghost_tracks(_links(), np.array([0]), np.array([False]),
                                 physlite.TRACK_CUTS)
    assert len(none[0]) == 0 and none[2]["ghost_links"] == 0


@pytest.mark.parametrize("override", [
    {"n_links": np.array([5])}, {"n_links": np.array([-1])}, {"track_first": np.array([1])},
    {"n_tracks": np.array([4])},
    {"covariance": [(np.zeros(3), np.array([0, 4, 8]), np.array([4, 4, 4]), 0)] * 4},
])
def test_ghost_tracks_refuse_what_does_not_fit(override) -> None:
    with pytest.raises(ValueError, match="do not fit together"):
        physlite.ghost_tracks(_links(**override), np.array([0]), np.array([True]),
                              physlite.TRACK_CUTS)


@pytest.mark.parametrize("counts, max_tracks", [
    ([3, 0, 40, 12, 0, 0, 55, 1] * 60, 40),
    ([180, 3, 190, 0, 200] * 30, 200),
])
def test_valid_prefix(counts, max_tracks) -> None:
    rng = np.random.default_rng(1)
    n = len(counts)
    tracks = {name: rng.normal(size=int(sum(counts))) for name in blocks.TRACK_INPUTS}
    jets = {"pt": rng.uniform(2e4, 2e5, n), "eta": rng.uniform(-2, 2, n),
            "phi": rng.uniform(-3, 3, n)}
    _, padded = blocks.build(jets, np.array(counts), tracks, max_tracks)
    assert (lzf.valid_prefix(padded) == np.minimum(counts, max_tracks)).all()
    broken = padded.copy()
    broken["valid"][0, -1] = True  # a track row after padding
    with pytest.raises(ValueError, match="after a padding row"):
        lzf.valid_prefix(broken)


def test_lzf_by_hand() -> None:
    """The streams of tiny chunks, byte by byte: one jet of one 4-byte track row and two
    padding rows -> a literal run of the track and the first padding row, then a copy of 4
    bytes 4 back; rows one row back -> a literal row, then a copy."""
    dtype = np.dtype([("x", "<i2"), ("y", "u1"), ("valid", "?")])
    tracks = np.zeros((1, 3), dtype)
    tracks[0, 0] = (258, 3, True)
    tracks[0, 1:] = (-1, 0, False)
    (stream,) = lzf.encode_tracks(tracks, 1)
    assert bytes(stream) == bytes([7, 2, 1, 3, 1, 255, 255, 0, 0, (4 - 2) << 5, 3])
    rows = np.array([(1, 2, 3)] * 4, dtype=[("a", "u1"), ("b", "u1"), ("c", "u1")])
    (stream,) = lzf.encode_rows(rows, 4)
    assert bytes(stream) == bytes([2, 1, 2, 3, (9 - 2) << 5 | 0, 9 - 2 - 7, 2])


def test_lzf_refuses_rows_it_cannot_encode() -> None:
    """Rows longer than one LZF copy (the old kernel looped forever writing past its output),
    chunks that do not divide the rows, rows after padding."""
    wide = blocks.filled((2, 3), np.dtype([("x", "f8", 40), ("valid", "?")]))
    with pytest.raises(ValueError, match="cannot encode"):
        lzf.encode_tracks(wide, 1)
    assert not lzf.supported(wide.dtype.itemsize)
    with pytest.raises(ValueError, match="cannot encode"):
        lzf.encode_rows(np.zeros(10, "V9000"), 5)
    with pytest.raises(ValueError, match="cannot encode"):
        lzf.encode_rows(np.zeros(10, "V16"), 3)


@pytest.mark.parametrize("n_jets", [1, 4095, 4096, 4097, 12_345])
def test_jets_written_by_rows_read_back_unchanged(tmp_path: Path, n_jets: int) -> None:
    """Jet rows through encode_rows (event fields repeating, others not, appends cutting
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


def test_provenance_names_the_kernels(tmp_path: Path) -> None:
    source = write_ntuple(tmp_path / "n.root", 100, seed=5)
    core.run(source, tmp_path / "o.h5", Selection(0.0, 10.0), 40, 50)
    with h5py.File(tmp_path / "o.h5") as f:
        assert f.attrs["kernels"] == kernels.PROVENANCE
    assert kernels.PROVENANCE.startswith("numba ")


@pytest.mark.parametrize("name", PHYSLITE)
def test_ghost_tracks_while_another_thread_allocates(name: str) -> None:
    """The kernels run without the GIL while the read-ahead thread allocates: every array
    they read must stay alive through the call. A thread here fills freshly freed small
    buffers with garbage as fast as it can; the blocks must still come out as they do
    without it (a freed covariance-index array, in the C kernels, made the uncertainties
    all NaN)."""
    reader, events = _reader_blocks(Path(skhep_testdata.data_path(name)), "physlite", 30)
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
                for a, b in zip(reader.convert(block, ALL_JETS, 40), reference, strict=True):
                    assert a.tobytes() == b.tobytes()
    finally:
        stop.set()
        thread.join()
