"""The dump stage on real ROOT files written by uproot: layout, selection, ordering, errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import uproot
from factories import synthetic_events, write_ntuple

from flavourflow.core.flavours import LABEL_FIELD
from flavourflow.dump import core, ntuple


def run_cli(*args: str, block_tensorflow: bool = False) -> subprocess.CompletedProcess:
    """Run `flavourflow` in a fresh interpreter (optionally with TensorFlow unimportable)."""
    prelude = "import sys\n"
    if block_tensorflow:
        prelude += "for m in ('tensorflow', 'keras'): sys.modules[m] = None\n"
    code = prelude + "from flavourflow.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          check=False)


def test_layout_matches_tdd(dumped: Path, ntuple: Path) -> None:
    with h5py.File(dumped, "r") as f:
        jets, tracks = f["jets"], f["tracks"]
        assert jets.ndim == 1 and jets.dtype.names is not None
        assert tracks.ndim == 2 and tracks.shape == (len(jets), 10)
        assert tracks.dtype["valid"] == np.bool_
        assert jets.chunks is not None and jets.compression == "lzf"
        assert f.attrs["schema"] == "flavourflow"
        assert str(ntuple) in f.attrs["source_files"]
        j, t = jets[...], tracks[...]
    assert np.all(j["pt"] > 20_000) and np.all(np.abs(j["eta"]) < 2.5)
    assert set(np.unique(j[LABEL_FIELD])) <= {0, 4, 5, 15}
    # valid tracks first, padded rows NaN / -1, sorted by descending |S_d0|
    n_valid = t["valid"].sum(axis=1)
    assert np.array_equal(n_valid, np.minimum(j["n_tracks"], 10))
    assert np.all(np.isnan(t["d0"][~t["valid"]])) and np.all(t["charge"][~t["valid"]] == -1)
    sig = np.where(t["valid"], np.abs(t["IP3D_signed_d0_significance"]), -1.0)
    assert np.all(np.diff(sig, axis=1) <= 0)


def test_jets_and_tracks_agree_with_the_ntuple(dumped: Path, ntuple: Path) -> None:
    events = uproot.open(ntuple)["events"].arrays(library="ak")
    with h5py.File(dumped, "r") as f:
        jets, tracks = f["jets"][...], f["tracks"][...]
    for row in (0, len(jets) // 2, len(jets) - 1):
        event = int(np.flatnonzero(events["eventNumber"] == jets["eventNumber"][row])[0])
        index = jets["jetIndex"][row]
        assert events["jet_pt"][event][index] == jets["pt"][row]
        source_d0 = np.sort(np.asarray(events["jet_trk_d0"][event][index]))
        dumped_d0 = tracks["d0"][row][tracks["valid"][row]]
        assert np.allclose(np.sort(dumped_d0), source_d0[np.isin(source_d0, dumped_d0)])


def test_lifetime_sign_and_baselines_separate_b_from_light(dumped: Path) -> None:
    with h5py.File(dumped, "r") as f:
        jets, tracks = f["jets"][...], f["tracks"][...]
    b, light = jets[LABEL_FIELD] == 5, jets[LABEL_FIELD] == 0
    for name in ("IP3D_signed_d0_significance", "IP3D_signed_z0_significance"):
        significance = tracks[name]
        assert np.nanmean(significance[b]) > 1.0 > abs(np.nanmean(significance[light]))
    for baseline in ("ip2d_llr", "sv_sig"):
        assert np.median(jets[baseline][b]) > np.median(jets[baseline][light])


def test_streaming_block_size_does_not_change_output(tmp_path: Path, ntuple: Path) -> None:
    selection = ntuple_selection()
    core.run(ntuple, tmp_path / "a.h5", selection, 10, step_size=7)
    core.run(ntuple, tmp_path / "b.h5", selection, 10, step_size=10_000)
    with h5py.File(tmp_path / "a.h5") as a, h5py.File(tmp_path / "b.h5") as b:
        for name in ("jets", "tracks"):
            assert a[name][...].tobytes() == b[name][...].tobytes()


def ntuple_selection() -> ntuple.Selection:
    return ntuple.Selection(pt_min=20_000.0, abs_eta_max=2.5)


def test_cli_runs_without_tensorflow(tmp_path: Path, ntuple: Path) -> None:
    out = tmp_path / "out.h5"
    result = run_cli("dump", "--input", str(ntuple), "--output", str(out),
                     block_tensorflow=True)
    assert result.returncode == 0, result.stderr
    with h5py.File(out) as f:
        assert len(f["jets"]) > 0


def _truncated(tmp_path: Path, ntuple: Path) -> Path:
    data = ntuple.read_bytes()
    bad = tmp_path / "truncated.root"
    bad.write_bytes(data[: len(data) // 2])
    return bad


def _not_root(tmp_path: Path, ntuple: Path) -> Path:
    bad = tmp_path / "text.root"
    bad.write_text("this is not a ROOT file\n")
    return bad


def _missing_branch(tmp_path: Path, ntuple: Path) -> Path:
    return write_ntuple(tmp_path / "nod0.root", 50, drop=("jet_trk_d0",))


def _zero_events(tmp_path: Path, ntuple: Path) -> Path:
    return write_ntuple(tmp_path / "empty.root", 0)


def _wrong_type(tmp_path: Path, ntuple: Path) -> Path:
    """One number per event where a list per event (one per jet) is expected."""
    branches = synthetic_events(50)
    branches["jet_eta"] = np.zeros(50, dtype=np.float32)
    with uproot.recreate(tmp_path / "scalar.root") as f:
        f["events"] = branches
    return tmp_path / "scalar.root"


@pytest.mark.parametrize(
    ("make_bad", "extra_args", "expected"),
    [
        (_truncated, (), "truncated ROOT file ("),
        (_not_root, (), "not a ROOT file ("),
        (_missing_branch, (), "field 'jet_trk_d0': missing branch"),
        (_zero_events, (), "field 'events': tree has zero events"),
        (_wrong_type, (), "field 'jet_eta': branch has type float32, expected var * any"),
        (lambda tmp, nt: nt, ("--pt-min", "1e12"), "field 'jet_pt': no jet passes"),
    ],
    ids=["truncated", "not-root", "missing-branch", "zero-events", "wrong-type",
         "no-jet-selected"],
)
def test_bad_input_one_line_error_no_output(tmp_path, ntuple, make_bad, extra_args, expected):
    bad = make_bad(tmp_path, ntuple)
    out = tmp_path / "out" / "bad.h5"
    result = run_cli("dump", "--input", str(bad), "--output", str(out), *extra_args)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(bad) in lines[0] and expected in lines[0]
    assert not out.exists()
    assert not any(out.parent.glob("*")) if out.parent.exists() else True


def test_ip_templates_are_normalised_and_the_ratio_grows_at_most_linearly() -> None:
    from flavourflow.dump import taggers

    s = np.linspace(-200, 200, 400_001)
    step = s[1] - s[0]
    light, heavy = (np.vectorize(pdf, otypes=[float])(s)
                    for pdf in (taggers.light_pdf, taggers.heavy_pdf))
    for pdf in (light, heavy):
        assert np.sum(pdf) * step == pytest.approx(1.0, abs=1e-4)
    ratio = np.log(heavy) - np.log(light)
    at = {x: ratio[np.searchsorted(s, x)] for x in (-5, 0, 10)}
    assert at[10] > at[0] > at[-5]
    lo, hi = np.searchsorted(s, [20, 60])
    assert (ratio[hi] - ratio[lo]) / 40 < 0.2  # linear, not quadratic, in S


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_interrupted_dump_leaves_nothing_and_reruns_identically(tmp_path: Path,
                                                                signal_name: str) -> None:
    """A dump stopped mid-file: SIGTERM cleans its hidden temporary up at once; after SIGKILL
    (which nothing can catch) the next run writing the same output removes it. Either way
    the rerun's output is the uninterrupted run's."""
    import os
    import signal
    import time

    from factories import write_ntuple

    source = write_ntuple(tmp_path / "big.root", 6000, seed=9)
    reference = tmp_path / "reference.h5"
    core.run(source, reference, ntuple_selection(), 10, step_size=20)
    out = tmp_path / "out" / "x.h5"
    args = ["dump", "--input", str(source), "--output", str(out), "--max-tracks", "10",
            "--step-size", "20"]
    code = "import sys\nfrom flavourflow.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    child = subprocess.Popen([sys.executable, "-c", code, *args], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not list(out.parent.glob(".x.partial-*.h5")):  # mid-way: the temporary exists
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(child.pid, getattr(signal, signal_name))
    status = child.wait()
    assert status != 0 and not out.exists()
    leftovers = list(out.parent.glob(".x.partial-*.h5"))
    if signal_name == "SIGTERM":
        assert leftovers == [] and status == 128 + signal.SIGTERM
    else:
        assert len(leftovers) == 1  # the killed process's, until the next run
    assert run_cli(*args).returncode == 0
    assert list(out.parent.iterdir()) == [out]  # no temporary of anyone left
    with h5py.File(out) as a, h5py.File(reference) as b:
        for name in ("jets", "tracks"):
            assert a[name][...].tobytes() == b[name][...].tobytes()
