"""The dump stage on ntuples described by a YAML field mapping: jagged (one event per
entry) and flat (one jet per entry), units, defaults, extra fields, and bad mappings/inputs.
The reference is the same events in flavourflow's own schema, dumped by its own reader."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pytest
import uproot
import yaml
from factories import synthetic_events
from test_dump import run_cli

from flavourflow.core.errors import FlavourflowError
from flavourflow.dump import core, mapping
from flavourflow.dump.blocks import Selection

SELECTION = Selection(pt_min=20_000.0, abs_eta_max=2.5)
GEV = 1000.0

#: Our schema's branch -> (the user's branch, unit factor to the user's units)
RENAMES = {
    "eventNumber": ("evt", 1), "mcEventWeight": ("w", 1), "jet_pt": ("j_pt", 1 / GEV),
    "jet_eta": ("j_eta", 1), "jet_phi": ("j_phi", 1), "jet_m": ("j_m", 1 / GEV),
    "jet_HadronConeExclTruthLabelID": ("j_flav", 1), "jet_truthHadron_pt": ("j_hpt", 1 / GEV),
    "jet_truthHadron_Lxy": ("j_lxy", 1), "jet_trk_pt": ("t_pt", 1 / GEV),
    "jet_trk_eta": ("t_eta", 1), "jet_trk_phi": ("t_phi", 1), "jet_trk_charge": ("t_q", 1),
    "jet_trk_d0": ("t_d0", -1),  # ATLAS sign
    "jet_trk_z0SinTheta": ("t_z0st", 1), "jet_trk_d0_sigma": ("t_d0err", 1),
    "jet_trk_z0SinTheta_sigma": ("t_z0sterr", 1),
}
MAPPING = {
    "tree": "nominal",
    "jets": {
        "pt": {"branch": "j_pt", "scale": GEV}, "eta": "j_eta", "phi": "j_phi",
        "mass": {"branch": "j_m", "scale": GEV},
        "HadronConeExclTruthLabelID": "j_flav", "eventNumber": "evt", "mcEventWeight": "w",
        "HadronConeExclTruthLabelPt": {"branch": "j_hpt", "scale": GEV},
        "HadronConeExclTruthLabelLxy": "j_lxy",
        "DL1r_pb": "j_dl1r_pb", "n_hits": {"branch": "j_hits", "type": "int"},
        "JVT": {"branch": "j_jvt", "default": 1.0},  # not in the file: the default
    },
    "tracks": {
        "pt": {"branch": "t_pt", "scale": GEV}, "eta": "t_eta", "phi": "t_phi",
        "charge": "t_q", "d0": "t_d0", "z0SinTheta": "t_z0st", "d0Uncertainty": "t_d0err",
        "z0SinThetaUncertainty": "t_z0sterr",
    },
}


def user_branches(n_events: int, seed: int = 2) -> dict[str, ak.Array]:
    """flavourflow's synthetic events, renamed and in GeV, with two extra jet branches."""
    ours = synthetic_events(n_events, seed)
    theirs = {new: ours[old] * factor if factor != 1 else ours[old]
              for old, (new, factor) in RENAMES.items()}
    rng = np.random.default_rng(seed)
    counts = ak.num(ours["jet_pt"])
    theirs["j_dl1r_pb"] = ak.unflatten(rng.random(int(ak.sum(counts))).astype(np.float32),
                                       counts)
    theirs["j_hits"] = ak.unflatten(rng.integers(0, 9, int(ak.sum(counts))).astype(np.int32),
                                    counts)
    return ours, theirs


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    ours, theirs = user_branches(300)
    with uproot.recreate(tmp_path / "ours.root") as f:
        f["events"] = ours
    with uproot.recreate(tmp_path / "theirs.root") as f:
        f["nominal"] = theirs
    spec = tmp_path / "mapping.yaml"
    spec.write_text(yaml.safe_dump(MAPPING))
    return {"ours": tmp_path / "ours.root", "theirs": tmp_path / "theirs.root", "spec": spec}


def dump(path: Path, out: Path, fmt: str, spec: Path | None = None, step: int = 70):
    core.run(path, out, SELECTION, 10, step, fmt=fmt, mapping_file=spec)
    with h5py.File(out, "r") as f:
        return f["jets"][...], f["tracks"][...], dict(f.attrs)


def test_jagged_mapping_reproduces_our_own_reader(files, tmp_path: Path) -> None:
    ours, ours_tracks, _ = dump(files["ours"], tmp_path / "a.h5", "flavourflow")
    theirs, theirs_tracks, attrs = dump(files["theirs"], tmp_path / "b.h5", "mapping",
                                        files["spec"])
    assert attrs["schema"] == "mapping" and attrs["layout"] == "jagged"
    assert len(theirs) == len(ours) > 100
    for name in ours.dtype.names:
        assert np.allclose(ours[name], theirs[name], rtol=1e-6, equal_nan=True), name
    for name in ours_tracks.dtype.names:
        assert np.allclose(ours_tracks[name], theirs_tracks[name], rtol=1e-5, atol=1e-6,
                           equal_nan=True), name
    assert theirs.dtype["n_hits"] == np.int32 and np.all(theirs["JVT"] == 1.0)
    assert theirs.dtype["DL1r_pb"] == np.float32 and np.all(theirs["DL1r_pb"] >= 0)


def test_flat_mapping_one_jet_per_entry(files, tmp_path: Path) -> None:
    _, theirs = user_branches(300)
    n = ak.num(theirs["j_pt"])
    flat = {}
    for name, values in theirs.items():
        depth = values.ndim if isinstance(values, ak.Array) else 1
        if depth == 1:  # per event: one copy per jet
            flat[name] = np.repeat(np.asarray(values), ak.to_numpy(n))
        elif depth == 2:
            flat[name] = ak.to_numpy(ak.flatten(values))
        else:
            flat[name] = ak.flatten(values, axis=1)
    with uproot.recreate(tmp_path / "flat.root") as f:
        f["nominal"] = flat
    jagged, jagged_tracks, _ = dump(files["theirs"], tmp_path / "a.h5", "mapping",
                                    files["spec"])
    (tmp_path / "flat.yaml").write_text(yaml.safe_dump(MAPPING))
    jets, tracks, attrs = dump(tmp_path / "flat.root", tmp_path / "b.h5", "mapping",
                               tmp_path / "flat.yaml", step=333)
    assert attrs["layout"] == "flat"
    assert np.array_equal(jets["pt"], jagged["pt"])
    # each jet's index in its event, counted over consecutive entries across read blocks
    # (333 entries: events straddle blocks), as in the jagged file: inject aligns by it
    assert np.array_equal(jets["jetIndex"], jagged["jetIndex"])
    assert np.array_equal(jets["eventNumber"], jagged["eventNumber"])
    assert tracks["IP3D_signed_d0_significance"].tobytes() == \
        jagged_tracks["IP3D_signed_d0_significance"].tobytes()


def test_defaults_replace_nan_and_missing_branches(tmp_path: Path) -> None:
    data = {"evt": np.arange(4), "pt": ak.Array([[30.0, 40.0], [50.0], [], [60.0]]),
            "eta": ak.Array([[0.1, 0.2], [0.3], [], [0.4]]),
            "phi": ak.Array([[0.0, 1.0], [2.0], [], [3.0]]),
            "flav": ak.Array([[5, 0], [4], [], [0]]),
            "pb": ak.Array([[np.nan, 0.5], [0.25], [], [np.nan]])}
    with uproot.recreate(tmp_path / "t.root") as f:
        f["t"] = data
    spec = {"tree": "t", "jets": {"pt": {"branch": "pt", "scale": 1000.0}, "eta": "eta",
                                  "phi": "phi", "HadronConeExclTruthLabelID": "flav",
                                  "eventNumber": "evt", "pb": {"branch": "pb", "default": -2},
                                  "mcEventWeight": {"branch": "nope", "default": 0.5}}}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(spec))
    jets, tracks, attrs = dump(tmp_path / "t.root", tmp_path / "t.h5", "mapping",
                               tmp_path / "m.yaml")
    assert np.array_equal(jets["pb"], [-2, 0.5, 0.25, -2])
    assert np.all(jets["mcEventWeight"] == 0.5) and np.array_equal(jets["eventNumber"],
                                                                   [0, 0, 1, 3])
    # the default used for want of a branch is said: a misspelt branch is not silent
    assert attrs["defaulted_fields"] == "mcEventWeight <- nope"
    assert np.array_equal(jets["jetIndex"], [0, 1, 0, 0])
    assert np.all(jets["n_tracks"] == 0) and not tracks["valid"].any()  # no tracks section
    assert np.all(jets["ip2d_llr"] == 0) and np.all(jets["sv_sig"] == 0)


@pytest.mark.parametrize(("change", "expected"), [
    ({"tracks": {"pt": "t_pt"}}, "field 'tracks.eta': required field not mapped"),
    ({"jets": {"pt": {"branch": "j_pt", "scale": "1e3"}}}, "field 'jets.pt.scale': invalid"),
    ({"jets": {"pt": {"branch": "j_pt", "scael": 1000}}}, "field 'jets.pt': invalid mapping"),
    ({"jets": {"ip2d_llr": "x"}}, "field 'jets': invalid mapping"),
    ({"selection": "pt > 20"}, "field '(top level)': invalid mapping"),
])
def test_bad_mapping_one_line_error(files, tmp_path: Path, change: dict, expected: str) -> None:
    spec = {**MAPPING, **change}
    if "jets" in change:
        spec["jets"] = {**MAPPING["jets"], **change["jets"]}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(FlavourflowError) as err:
        mapping.load(path)
    assert str(path) in str(err.value) and expected in str(err.value), str(err.value)


def test_branch_names_are_never_evaluated(files, tmp_path: Path) -> None:
    evil = "__import__('os').system('touch pwned')"
    spec = {**MAPPING, "jets": {**MAPPING["jets"], "eta": evil}}
    (tmp_path / "evil.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(FlavourflowError, match="missing branch"):
        dump(files["theirs"], tmp_path / "e.h5", "mapping", tmp_path / "evil.yaml")
    assert not Path("pwned").exists() and not (tmp_path / "e.h5").exists()


def _write(tmp_path: Path, name: str, branches: dict) -> Path:
    with uproot.recreate(tmp_path / name) as f:
        f["nominal"] = branches
    return tmp_path / name


@pytest.mark.parametrize("case", ["missing-branch", "wrong-type", "zero-events",
                                  "no-jet-selected", "truncated", "not-root"])
def test_bad_input_one_line_error_no_output(files, tmp_path: Path, case: str) -> None:
    _, theirs = user_branches(50)
    extra = ()
    if case == "missing-branch":
        bad = _write(tmp_path, "m.root", {k: v for k, v in theirs.items() if k != "t_d0err"})
        expected = "field 't_d0err': missing branch"
    elif case == "wrong-type":  # a per-jet branch where per-track lists are expected
        bad = _write(tmp_path, "w.root", {**theirs, "t_d0": theirs["j_pt"]})
        expected = "field 't_d0': branch has type var * float32, expected var * var * float"
    elif case == "zero-events":
        bad = _write(tmp_path, "z.root", {k: v[:0] for k, v in theirs.items()})
        expected = "field 'nominal': tree has zero events"
    elif case == "no-jet-selected":
        bad, extra = files["theirs"], ("--pt-min", "1e12")
        expected = "field 'j_pt': no jet passes"
    elif case == "truncated":
        bad = tmp_path / "cut.root"
        bad.write_bytes(files["theirs"].read_bytes()[:20_000])
        expected = "truncated ROOT file (20000 of "
    else:
        bad = tmp_path / "text.root"
        bad.write_text("no ROOT here\n")
        expected = "not a ROOT file (starts with b'no ROOT "
    out = tmp_path / "out" / "bad.h5"
    result = run_cli("dump", "--format", "mapping", "--mapping", str(files["spec"]),
                     "--input", str(bad), "--output", str(out), *extra)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0] and expected in lines[0], result.stderr
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_mapping_format_needs_a_mapping(files, tmp_path: Path) -> None:
    with pytest.raises(FlavourflowError, match="needs a mapping file"):
        core.run(files["theirs"], tmp_path / "x.h5", SELECTION, 10, 100, fmt="mapping")
