"""The dump stage on real ATLAS PHYSLITE files (scikit-hep-testdata): Run 3 RNTuple
`EventData` and Run 2 TTree `CollectionTree`; bad inputs on small PHYSLITE-like RNTuples
written by uproot from the real file's branches."""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pytest
import skhep_testdata
import uproot
from test_dump import run_cli

from flavourflow.core.errors import FlavourflowError
from flavourflow.core.flavours import LABEL_FIELD
from flavourflow.core.roc import auc, b_discriminant
from flavourflow.dump import core, physlite
from flavourflow.dump.blocks import Selection

RUN3 = "uproot-physlite-rntuple_v1-0-0-0.root"
RUN2 = "uproot-issue-798.root"
ALL_JETS = Selection(pt_min=0.0, abs_eta_max=10.0)
BTAG = "BTagging_AntiKt4EMPFlowAuxDyn:"
JETS = "AnalysisJetsAuxDyn:"
TRACKS = "InDetTrackParticlesAuxDyn:"


@pytest.fixture(scope="module")
def run3_path() -> Path:
    return Path(skhep_testdata.data_path(RUN3))


@pytest.fixture(scope="module")
def run3_events(run3_path: Path) -> ak.Array:
    """The Run 3 file's branches the reader uses, read directly with uproot."""
    reader = physlite.open_file(run3_path)
    branches = sorted({q.branch for q in reader.quantities.values()})
    return reader.obj.arrays(branches)  # the same RNTuple: its field list is parsed once


@pytest.fixture(scope="module")
def run3(tmp_path_factory: pytest.TempPathFactory, run3_path: Path) -> Path:
    """Every jet of the Run 3 file, dumped in blocks of 30 events."""
    out = tmp_path_factory.mktemp("run3") / "run3.h5"
    core.run(run3_path, out, ALL_JETS, max_tracks=10, step_size=30, fmt="physlite")
    return out


def load(path: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    with h5py.File(path, "r") as f:
        return f["jets"][...], f["tracks"][...], dict(f.attrs)


def test_run3_gn2_b_vs_light_auc(run3: Path, run3_events: ak.Array) -> None:
    jets, _, attrs = load(run3)
    assert len(jets) == ak.sum(ak.num(run3_events[JETS + "pt"])) == 881
    assert attrs["schema"] == "physlite" and attrs["storage"] == "RNTuple EventData"
    assert json.loads(attrs["taggers"]) == ["DL1dv01", "GN2v01"]
    b, light = jets[LABEL_FIELD] == 5, jets[LABEL_FIELD] == 0
    d_b = b_discriminant(jets["GN2v01_pb"], jets["GN2v01_pc"], jets["GN2v01_pu"], 0.018)
    assert auc(d_b[b], d_b[light]) == pytest.approx(0.96, abs=0.005)


def test_btagging_matched_through_links_not_position(run3: Path, run3_events: ak.Array) -> None:
    jets, _, attrs = load(run3)
    index = run3_events[JETS + "btaggingLink"]["m_persIndex"]
    reordered = ak.to_numpy(ak.flatten(index != ak.local_index(index)))
    assert 0.2 < reordered.mean() < 0.35  # the file's point: a quarter of the jets
    assert json.loads(attrs["links"])["btagging_reordered"] == reordered.sum()
    for name in ("GN2v01_pb", "DL1dv01_pu"):
        values = run3_events[BTAG + name]
        linked = ak.to_numpy(ak.flatten(values[index]))
        by_position = ak.to_numpy(ak.flatten(values))
        assert np.array_equal(jets[name], linked)
        assert not np.array_equal(jets[name][reordered], by_position[reordered])
    # the wrong matching would cost a lot of performance
    b, light = jets[LABEL_FIELD] == 5, jets[LABEL_FIELD] == 0
    wrong = ak.to_numpy(ak.flatten(run3_events[BTAG + "GN2v01_pb"]))
    assert auc(jets["GN2v01_pb"][b], jets["GN2v01_pb"][light]) > auc(wrong[b], wrong[light]) + 0.05


def test_tracks_are_the_valid_ghost_links(run3: Path, run3_events: ak.Array) -> None:
    jets, tracks, attrs = load(run3)
    links = json.loads(attrs["links"])
    assert 0 < links["ghost_tracks_valid"] < links["ghost_tracks"]  # thinned links skipped
    ghost = run3_events[JETS + "GhostTrack"]
    key, index = ghost["m_persKey"], ghost["m_persIndex"]
    n_tracks = ak.num(run3_events[TRACKS + "d0"])
    valid = (key == 490246363) & (index < n_tracks)  # InDetTrackParticles' key (EventFormat)
    assert ak.sum(valid) == links["ghost_tracks_valid"]
    assert np.all(ak.to_numpy(ak.flatten(key[~valid], axis=None)) == 0)  # thinned: key 0
    assert jets["n_tracks"].sum() == links["tracks_selected"] <= links["ghost_tracks_valid"]
    n_jets = ak.to_numpy(ak.num(run3_events[JETS + "pt"]))
    event_of_row = np.repeat(np.arange(len(n_jets)), n_jets)
    position = np.arange(len(jets)) - (np.cumsum(n_jets) - n_jets)[event_of_row]
    for row in np.flatnonzero(jets["n_tracks"] >= 2)[:30]:
        event, jet = event_of_row[row], position[row]
        linked = np.asarray(index[event][jet][valid[event][jet]])
        phi = np.asarray(run3_events[TRACKS + "phi"][event])[linked]
        dumped = tracks["phi"][row][tracks["valid"][row]]
        # every dumped track is one of the jet's linked tracks, none twice
        assert set(dumped) <= set(phi) and len(set(dumped)) == len(dumped)


def test_layout_event_numbers_and_lifetime_signs(run3: Path, run3_events: ak.Array) -> None:
    jets, tracks, _ = load(run3)
    numbers = ak.to_numpy(run3_events["EventInfoAuxDyn:eventNumber"]).astype(np.int64)
    assert set(jets["eventNumber"]) == set(numbers)
    n_jets = ak.to_numpy(ak.num(run3_events[JETS + "pt"]))
    assert np.array_equal(jets["eventNumber"], np.repeat(numbers, n_jets))
    assert np.array_equal(jets["pt"], ak.to_numpy(ak.flatten(run3_events[JETS + "pt"])))
    # TDD layout: valid tracks first, by descending |S_d0|; padding NaN / -1
    valid = tracks["valid"]
    assert np.array_equal(valid.sum(axis=1), np.minimum(jets["n_tracks"], 10))
    sig = np.where(valid, np.abs(tracks["IP3D_signed_d0_significance"]), -1.0)
    assert np.all(np.diff(sig, axis=1) <= 0)
    assert np.all(np.isnan(tracks["pt"][~valid])) and np.all(tracks["charge"][~valid] == -1)
    assert np.all(np.isnan(jets["HadronConeExclTruthLabelPt"]))  # not in PHYSLITE
    # lifetime-signed significances: positive tail for b jets, unit core for light jets
    b, light = jets[LABEL_FIELD] == 5, jets[LABEL_FIELD] == 0
    s_b = tracks["IP3D_signed_d0_significance"][b][valid[b]]
    s_light = tracks["IP3D_signed_d0_significance"][light][valid[light]]
    assert np.mean(s_b > 3) > 0.3 > 0.05 > np.mean(s_light > 3)
    assert 0.8 < np.quantile(np.abs(s_light), 0.68) < 1.2
    assert np.median(jets["ip2d_llr"][b]) > np.median(jets["ip2d_llr"][light])


def test_readable_unchanged_by_ftag_h5reader(run3: Path) -> None:
    from ftag.hdf5 import H5Reader

    reader = H5Reader(run3, batch_size=200, shuffle=False)
    data = reader.load({"jets": ["pt", "GN2v01_pb", LABEL_FIELD],
                        "tracks": ["d0", "IP3D_signed_d0_significance", "valid"]})
    jets, tracks, _ = load(run3)
    assert np.array_equal(data["jets"]["GN2v01_pb"], jets["GN2v01_pb"])
    assert np.array_equal(data["tracks"]["valid"], tracks["valid"])


def test_run2_ttree(tmp_path: Path) -> None:
    out = tmp_path / "run2.h5"
    n = core.run(Path(skhep_testdata.data_path(RUN2)), out, ALL_JETS, 10, 15, fmt="physlite")
    jets, tracks, attrs = load(out)
    tree = uproot.open(skhep_testdata.data_path(RUN2))["CollectionTree"]
    assert n == len(jets) == 372
    assert attrs["storage"] == "TTree CollectionTree"
    assert json.loads(attrs["taggers"]) == ["DL1r"]
    numbers = tree["EventInfoAux./EventInfoAux.eventNumber"].array(library="np")
    assert set(jets["eventNumber"]) == set(numbers.astype(np.int64))
    b, light = jets[LABEL_FIELD] == 5, jets[LABEL_FIELD] == 0
    d_b = b_discriminant(jets["DL1r_pb"], jets["DL1r_pc"], jets["DL1r_pu"], 0.018)
    assert auc(d_b[b], d_b[light]) > 0.85
    assert tracks["valid"].sum() > 100


# --- bad inputs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory, run3_events: ak.Array):
    """Writes PHYSLITE-like RNTuples from the Run 3 file's first 20 events, altered."""
    folder = tmp_path_factory.mktemp("small")

    def write(name: str, n_events: int = 20, drop: tuple[str, ...] = (),
              replace: dict | None = None) -> Path:
        events = run3_events[:n_events]
        data = {k: events[k] for k in events.fields if k not in drop}
        data.update(replace or {})
        path = folder / name
        with uproot.recreate(path) as f:
            f.mkrntuple("EventData", data)
        return path

    write.fields = run3_events.fields
    return write


def test_small_rntuple_without_metadata_dumps(small, tmp_path: Path, caplog) -> None:
    out = tmp_path / "ok.h5"
    with caplog.at_level("WARNING"):
        core.run(small("ok.root"), out, ALL_JETS, 10, 7, fmt="physlite")
    jets, tracks, attrs = load(out)
    assert attrs["link_keys"] == "non-zero"  # no EventFormat: any non-zero key is the track
    assert any("EventFormat metadata not readable" in r.getMessage() and "any non-zero"
               in r.getMessage() for r in caplog.records)  # said, not silent
    assert len(jets) > 100 and tracks["valid"].any()


def _cases(small, tmp_path: Path):
    per_event_pt = {JETS + "pt": np.ones(20, dtype=np.float32)}
    return {
        "missing-branch": (small("nolinks.root", drop=(JETS + "GhostTrack",)),
                           (), "field 'AnalysisJetsAuxDyn:GhostTrack': missing branch"),
        "wrong-type": (small("scalar.root", replace=per_event_pt), (),
                       "field 'AnalysisJetsAuxDyn:pt': branch has type float32, expected var"),
        "zero-events": (small("empty.root", n_events=0), (),
                        "field 'EventData': zero events"),
        "no-jet-selected": (small("sel.root"), ("--pt-min", "1e12"),
                            "field 'AnalysisJetsAuxDyn:pt': no jet passes"),
        "no-jets": (small("nojets.root", drop=tuple(
                        k for k in small.fields if k.startswith("AnalysisJets"))), (),
                    "field 'AnalysisJetsAuxDyn:pt': no AnalysisJets in EventData: not a "
                    "PHYSLITE file"),
        "not-physlite": (_not_physlite(tmp_path), (),
                         "field 'CollectionTree': no CollectionTree (TTree) or EventData"),
        "truncated": (_truncated(small("full.root"), tmp_path), (),
                      "truncated ROOT file ("),
    }


def _not_physlite(tmp_path: Path) -> Path:
    path = tmp_path / "other.root"
    with uproot.recreate(path) as f:
        f["events"] = {"x": np.arange(3.0)}
    return path


def _truncated(path: Path, tmp_path: Path) -> Path:
    data = path.read_bytes()
    bad = tmp_path / "truncated.root"
    bad.write_bytes(data[: len(data) // 2])
    return bad


@pytest.mark.parametrize("case", ["missing-branch", "wrong-type", "zero-events",
                                  "no-jet-selected", "no-jets", "not-physlite", "truncated"])
def test_bad_physlite_one_line_error_no_output(small, tmp_path: Path, case: str) -> None:
    bad, extra, expected = _cases(small, tmp_path)[case]
    out = tmp_path / "out" / "bad.h5"
    selection = Selection(float(extra[1]), 2.5) if extra else ALL_JETS
    with pytest.raises(FlavourflowError) as err:
        core.run(bad, out, selection, 10, 7, fmt="physlite")
    message = str(err.value)
    assert "\n" not in message and str(bad) in message and expected in message, message
    assert not out.exists() and not any(out.parent.glob("*"))


def test_bad_physlite_cli_exit_code(small, tmp_path: Path) -> None:
    bad = small("scalar2.root", replace={JETS + "eta": np.zeros(20, dtype=np.float32)})
    out = tmp_path / "bad.h5"
    result = run_cli("dump", "--format", "physlite", "--input", str(bad), "--output", str(out))
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and "field 'AnalysisJetsAuxDyn:eta': branch has type" in lines[0]
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_run2_unsplit_event_info_falls_back_to_mc_event_number(tmp_path: Path) -> None:
    """uproot-issue-123a.root: the same Run 2 PHYSLITE, EventInfoAux stored unsplit."""
    path = Path(skhep_testdata.data_path("uproot-issue-123a.root"))
    out = tmp_path / "run2b.h5"
    core.run(path, out, ALL_JETS, 10, 50, fmt="physlite")
    jets, _, _ = load(out)
    numbers = uproot.open(path)["CollectionTree"]["EventInfoAuxDyn.mcEventNumber"].array(
        library="np")
    assert set(jets["eventNumber"]) == set(numbers.astype(np.int64)) and len(jets) == 1005


def test_what_would_be_silent_is_said(small, run3_events: ak.Array, tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    """A file without beam-spot position (d0 stays w.r.t. the beam line) and b-tagging links
    that point nowhere (NaN tagger outputs): each a warning and a record in the h5."""
    nobeam = small("nobeam.root", drop=("EventInfoAuxDyn:beamPosX", "EventInfoAuxDyn:beamPosY"))
    with caplog.at_level("WARNING"):
        core.run(nobeam, tmp_path / "nobeam.h5", ALL_JETS, 10, 7, fmt="physlite")
    _, _, attrs = load(tmp_path / "nobeam.h5")
    assert attrs["d0_reference"].startswith("beam line for d0 (no beam-spot position")
    assert "beam line for d0" in caplog.text
    links = run3_events[:20][JETS + "btaggingLink"]
    broken = ak.zip({"m_persKey": links["m_persKey"],
                     "m_persIndex": links["m_persIndex"] + 100_000})
    caplog.clear()
    with caplog.at_level("WARNING"):
        core.run(small("nolink.root", replace={JETS + "btaggingLink": broken}),
                 tmp_path / "nolink.h5", ALL_JETS, 10, 7, fmt="physlite")
    jets, _, attrs = load(tmp_path / "nolink.h5")
    counts = json.loads(attrs["links"])
    assert counts["btagging_valid"] == 0 < counts["btagging"] == len(jets)
    assert np.isnan(jets["GN2v01_pb"]).all()
    assert f"{len(jets)} of {len(jets)} b-tagging links point nowhere" in caplog.text
