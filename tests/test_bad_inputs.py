"""The bad-input matrix: one row per way a new user's input can be wrong, each run through the
real `flavourflow` CLI on real files (uproot-written ROOT, dump-written HDF5, a local HTTP
server) and each held to the same promise: exit status non-zero, one line on stderr that names
the file (or URL) and the field or key at fault, and no output left behind, hidden
temporaries (``.<name>.partial-<pid>``) included. Config errors are raised by `snakemake -n`
when the DAG is built, before any job runs.

The cases and their messages are listed in the README (section "Bad inputs").
"""

from __future__ import annotations

import functools
import http.server
import resource
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pytest
import uproot
import yaml
from factories import write_ntuple

from flavourflow import cli

PHYSLITE_RUN3 = "uproot-physlite-rntuple_v1-0-0-0.root"


@dataclass
class Case:
    """A command and what its one-line error must contain."""

    argv: list[str]
    expected: str
    named: str  # the file / URL the line must name
    outputs: list[Path]  # none of these (nor a temporary of them) may exist afterwards
    unchanged: dict[Path, bytes] = field(default_factory=dict)  # inputs that must survive
    limit_file_size: int | None = None  # ulimit -f (bytes): run in a child process


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Good inputs every case spoils in one way: an ntuple, its dump, a mapping."""
    from flavourflow.dump import core
    from flavourflow.dump.blocks import Selection

    folder = tmp_path_factory.mktemp("good")
    root = write_ntuple(folder / "good.root", 300, seed=7)
    dump = folder / "good.h5"
    core.run(root, dump, Selection(20_000.0, 2.5), max_tracks=10, step_size=1000)
    return {"folder": folder, "root": root, "dump": dump}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """A local HTTP server of a folder holding a good ROOT file."""
    folder = tmp_path_factory.mktemp("served")
    write_ntuple(folder / "good.root", 50, seed=3)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


# --- helpers building one spoiled input each --------------------------------------------------


def dump_case(tmp: Path, source: Path, expected: str, *extra: str, named: Path | None = None,
              out: Path | None = None, **kwargs) -> Case:
    out = out or tmp / "out" / "x.h5"
    return Case(["dump", "--input", str(source), "--output", str(out), *extra], expected,
                str(named or source), [out], **kwargs)


def spoiled_dump(tmp: Path, base: dict, change: Callable[[np.ndarray], None],
                 name: str = "spoiled.h5") -> Path:
    """A copy of the good dump whose jets went through ``change``."""
    path = tmp / name
    with h5py.File(base["dump"]) as src, h5py.File(path, "w") as dst:
        jets = src["jets"][...]
        change(jets)
        dst["jets"] = jets
        dst["tracks"] = src["tracks"][...]
        for key, value in src.attrs.items():
            dst.attrs[key] = value
    return path


def preprocess_case(tmp: Path, source: Path, expected: str, *extra: str,
                    variables: tuple[str, ...] = ("ip2d_llr", "sv_sig"),
                    named: str | None = None) -> Case:
    outdir = tmp / "pre"
    return Case(["preprocess", "--input", str(source), "--outdir", str(outdir), "--model", "m",
                 "--variables", *variables, "--no-plots", *extra], expected,
                named or str(source), [outdir])


def write_tree(path: Path, branches: dict) -> Path:
    with uproot.recreate(path) as f:
        f["events"] = branches
    return path


def _from_good(base: dict, tmp: Path, name: str, drop: tuple[str, ...] = ()) -> Path:
    return write_ntuple(tmp / name, 50, seed=7, drop=drop)


# --- the matrix -----------------------------------------------------------------------------


def c_truncated(tmp, base, server):
    bad = tmp / "cut.root"
    bad.write_bytes(base["root"].read_bytes()[:30_000])
    return dump_case(tmp, bad, "truncated ROOT file (30000 of ")


def c_empty(tmp, base, server):
    bad = tmp / "empty.root"
    bad.write_bytes(b"")
    return dump_case(tmp, bad, "empty file (0 bytes), not a ROOT file")


def c_not_root(tmp, base, server):
    bad = tmp / "notes.root"
    bad.write_text("jet_pt,jet_eta\n1,2\n")
    return dump_case(tmp, bad, "not a ROOT file (starts with b'jet_pt,j')")


def c_hdf5_as_root(tmp, base, server):
    return dump_case(tmp, base["dump"], "not a ROOT file (an HDF5 file)")


def c_missing_input(tmp, base, server):
    return dump_case(tmp, tmp / "nope.root", "no such file")


def c_wrong_format_physlite_as_generated(tmp, base, server):
    import skhep_testdata

    path = Path(skhep_testdata.data_path(PHYSLITE_RUN3))
    return dump_case(tmp, path, "field 'events': no such tree in file")


def c_wrong_format_generated_as_physlite(tmp, base, server):
    return dump_case(tmp, base["root"], "field 'CollectionTree': no CollectionTree (TTree) or "
                     "EventData (RNTuple) in file: not PHYSLITE", "--format", "physlite")


def c_missing_branch(tmp, base, server):
    bad = _from_good(base, tmp, "nod0.root", drop=("jet_trk_d0",))
    return dump_case(tmp, bad, "field 'jet_trk_d0': missing branch")


def c_wrong_type(tmp, base, server):
    events = uproot.open(base["root"])["events"].arrays()
    branches = {k: events[k] for k in events.fields}
    branches["jet_eta"] = np.ones(len(events), dtype=np.float32)  # one number per event
    bad = write_tree(tmp / "type.root", branches)
    return dump_case(tmp, bad, "field 'jet_eta': branch has type float32, expected var * ")


def c_zero_events(tmp, base, server):
    events = uproot.open(base["root"])["events"].arrays()
    bad = write_tree(tmp / "zero.root", {k: events[k][:0] for k in events.fields})
    return dump_case(tmp, bad, "field 'events': tree has zero events")


def c_selection_leaves_no_jet(tmp, base, server):
    return dump_case(tmp, base["root"], "field 'jet_pt': no jet passes the selection",
                     "--pt-min", "1e12")


def c_max_tracks_zero(tmp, base, server):
    return dump_case(tmp, base["root"], "--max-tracks must be at least 1, not 0",
                     "--max-tracks", "0", named="field 'max-tracks'")


def c_max_tracks_negative(tmp, base, server):
    return dump_case(tmp, base["root"], "--max-tracks must be at least 1, not -5",
                     "--max-tracks", "-5", named="field 'max-tracks'")


def c_step_size_negative(tmp, base, server):
    return dump_case(tmp, base["root"], "--step-size must be at least 1, not -1",
                     "--step-size", "-1", named="field 'step-size'")


def c_output_is_input(tmp, base, server):
    source = tmp / "precious.root"
    shutil.copy(base["root"], source)
    case = dump_case(tmp, source, "output is the input: refusing to overwrite it", out=source,
                     unchanged={source: source.read_bytes()})
    case.outputs = []
    return case


def c_output_is_folder(tmp, base, server):
    folder = tmp / "out.h5"
    folder.mkdir()
    case = dump_case(tmp, base["root"], "output is a folder, not a file", out=folder,
                     named=folder)
    case.outputs = [folder / "anything"]
    return case


def c_output_under_a_file(tmp, base, server):
    parent = tmp / "afile"
    parent.write_text("x")
    return dump_case(tmp, base["root"], f"{parent} is a file, not a folder",
                     out=parent / "x.h5", named=parent / "x.h5")


def c_output_unwritable(tmp, base, server):
    out = Path("/proc/flavourflow-test/x.h5")  # not creatable, even by root
    case = dump_case(tmp, base["root"], "cannot create the output folder", out=out, named=out)
    case.outputs = []
    return case


def c_output_full(tmp, base, server):
    out = tmp / "out" / "x.h5"
    return dump_case(tmp, base["root"], "cannot write the output (File too large)", out=out,
                     named=out, limit_file_size=20_000)


def c_mapping_missing_branch(tmp, base, server):
    spec = {"tree": "events", "jets": {"pt": "jet_pt", "eta": "jet_eta", "phi": "jet_phi",
                                       "HadronConeExclTruthLabelID": "jet_flavour_typo",
                                       "eventNumber": "eventNumber"}}
    mapping = tmp / "m.yaml"
    mapping.write_text(yaml.safe_dump(spec))
    return dump_case(tmp, base["root"], "field 'jet_flavour_typo': missing branch",
                     "--format", "mapping", "--mapping", str(mapping))


def c_mapping_misplaced_pt(tmp, base, server):
    label = "HadronConeExclTruthLabelID"
    spec = {"tree": "events", "jets": {"pt": "mcEventWeight", "eta": "jet_eta",
                                       "phi": "jet_phi", label: f"jet_{label}",
                                       "eventNumber": "eventNumber"}}
    mapping = tmp / "m.yaml"
    mapping.write_text(yaml.safe_dump(spec))
    return dump_case(tmp, base["root"], "field 'mcEventWeight': jets.pt is mapped to a branch "
                     "with one number per entry", "--format", "mapping", "--mapping",
                     str(mapping))


def c_mapping_unknown_key(tmp, base, server):
    mapping = tmp / "m.yaml"
    mapping.write_text(yaml.safe_dump({"tree": "events", "jets": {"pt": "jet_pt"},
                                       "trees": "x"}))
    return dump_case(tmp, base["root"], "invalid mapping: Additional properties are not "
                     "allowed ('trees' was unexpected)", "--format", "mapping", "--mapping",
                     str(mapping), named=mapping)


def c_mapping_jet_index_default(tmp, base, server):
    spec = {"tree": "events", "jets": {"pt": "jet_pt", "eta": "jet_eta", "phi": "jet_phi",
                                       "HadronConeExclTruthLabelID": "jet_flavour",
                                       "eventNumber": "eventNumber",
                                       "jetIndex": {"branch": "idx", "default": -1}}}
    mapping = tmp / "m.yaml"
    mapping.write_text(yaml.safe_dump(spec))
    return dump_case(tmp, base["root"], "field 'jets.jetIndex.default': jetIndex takes no "
                     "default", "--format", "mapping", "--mapping", str(mapping),
                     named=mapping)


def c_truncated_h5_between_stages(tmp, base, server):
    bad = tmp / "cut.h5"
    bad.write_bytes(base["dump"].read_bytes()[:5000])
    out = tmp / "merged.h5"
    return Case(["merge", "--inputs", str(bad), "--output", str(out)], "not a readable HDF5",
                str(bad), [out])


def c_truncated_h5_to_preprocess(tmp, base, server):
    bad = tmp / "cut.h5"
    bad.write_bytes(base["dump"].read_bytes()[:5000])
    return preprocess_case(tmp, bad, "not a readable HDF5")


def c_inf_input(tmp, base, server):
    def change(jets):
        jets["sv_sig"][::7] = np.inf

    return preprocess_case(tmp, spoiled_dump(tmp, base, change),
                           "infinite values in a block of")


def c_nan_only_input(tmp, base, server):
    def change(jets):
        jets["sv_sig"][:] = np.nan

    return preprocess_case(tmp, spoiled_dump(tmp, base, change),
                           "field 'sv_sig': variance on the training split is nan")


def c_zero_variance(tmp, base, server):
    def change(jets):
        jets["ip2d_llr"][:] = 1.5

    return preprocess_case(tmp, spoiled_dump(tmp, base, change),
                           "field 'ip2d_llr': variance on the training split is 0.0")


def c_unknown_labels(tmp, base, server):
    def change(jets):
        jets["HadronConeExclTruthLabelID"][::5] = 99

    return preprocess_case(tmp, spoiled_dump(tmp, base, change),
                           "field 'HadronConeExclTruthLabelID': unknown label 99")


def c_no_jets_of_one_flavour(tmp, base, server):
    def change(jets):
        labels = jets["HadronConeExclTruthLabelID"]
        labels[labels == 5] = 0

    return preprocess_case(tmp, spoiled_dump(tmp, base, change),
                           "no bottom jets in the training split",
                           "--resampling", '{"method": "weights", "target": "bottom"}')


def c_model_input_not_in_dump(tmp, base, server):
    return preprocess_case(tmp, base["dump"], "field 'sv_sigma': missing jets variable",
                           variables=("ip2d_llr", "sv_sigma"))


def c_inject_dump_of_another_file(tmp, base, server):
    from test_inject import dl1_network, write_network

    other = write_ntuple(tmp / "other.root", 300, seed=8)
    network = write_network(tmp / "network.json", dl1_network(np.random.default_rng(0)))
    out = tmp / "inj"
    return Case(["inject", "--ntuple", str(other), "--dump", str(base["dump"]), "--network",
                 str(network), "--model", "m", "--tree-out", str(out / "f.root"), "--h5-out",
                 str(out / "f.h5")], "the dump was not made from this file",
                str(base["dump"]), [out / "f.root", out / "f.h5"])


def c_inject_network_without_outputs(tmp, base, server):
    network = tmp / "network.json"
    network.write_text('{"inputs": [], "input_sequences": [], "layers": [], "nodes": [], '
                       '"outputs": {}}')
    out = tmp / "inj"
    return Case(["inject", "--ntuple", str(base["root"]), "--dump", str(base["dump"]),
                 "--network", str(network), "--model", "m", "--tree-out", str(out / "f.root"),
                 "--h5-out", str(out / "f.h5")], "lwtnn graph: no outputs", str(network),
                [out / "f.root", out / "f.h5"])


def c_inject_output_is_the_ntuple(tmp, base, server):
    from test_inject import dl1_network, write_network

    source = tmp / "precious.root"
    shutil.copy(base["root"], source)
    network = write_network(tmp / "network.json", dl1_network(np.random.default_rng(0)))
    return Case(["inject", "--ntuple", str(source), "--dump", str(base["dump"]), "--network",
                 str(network), "--model", "m", "--tree-out", str(source), "--h5-out",
                 str(tmp / "f.h5")], "output would overwrite an input", str(source),
                [tmp / "f.h5"], unchanged={source: source.read_bytes()})


def c_checksum_mismatch(tmp, base, server):
    url = f"{server}/good.root"
    out = tmp / "f" / "x.root"
    return Case(["fetch", "--url", url, "--output", str(out), "--sha256", "0" * 64,
                 "--retries", "0", "--backoff", "0"],
                "field 'checksum': sha256 checksum mismatch", url, [out])


def c_unreachable_url(tmp, base, server):
    url = "http://127.0.0.1:9/nothing.root"
    out = tmp / "f" / "x.root"
    return Case(["fetch", "--url", url, "--output", str(out), "--retries", "0", "--backoff",
                 "0"], "", url, [out])


def c_missing_remote_file(tmp, base, server):
    url = f"{server}/missing.root"
    out = tmp / "f" / "x.root"
    return Case(["fetch", "--url", url, "--output", str(out), "--retries", "0", "--backoff",
                 "0"], "", url, [out])


CASES = {name[2:]: f for name, f in dict(globals()).items() if name.startswith("c_")}


def leftovers(paths: list[Path]) -> list[Path]:
    """Each output, and any hidden temporary of it, that exists."""
    found = []
    for path in paths:
        if path.exists():
            found.append(path)
        if path.parent.is_dir():
            found += list(path.parent.glob(f".{path.stem}.partial-*"))
    return found


def run_case(case: Case, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    """Exit status and stderr of `flavourflow <argv>`: in this process, or in a child under
    ``ulimit -f`` when the case limits the file size."""
    if case.limit_file_size is None:
        capsys.readouterr()
        try:
            status = cli.main(case.argv)
        except SystemExit as exit_:  # argparse
            status = exit_.code
        return int(status), capsys.readouterr().err
    limit = case.limit_file_size

    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    code = "import sys\nfrom flavourflow.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    result = subprocess.run([sys.executable, "-c", code, *case.argv], capture_output=True,
                            text=True, check=False, preexec_fn=set_limit)
    return result.returncode, result.stderr


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name: str, base: dict, server: str, tmp_path: Path,
                   capsys: pytest.CaptureFixture) -> None:
    case = CASES[name](tmp_path, base, server)
    status, stderr = run_case(case, capsys)
    assert status != 0
    errors = [line for line in stderr.splitlines() if ": error:" in line]
    assert len(errors) == 1, stderr
    assert "Traceback" not in stderr
    line = errors[0]
    assert case.named in line and case.expected in line, line
    assert not leftovers(case.outputs)
    for path, content in case.unchanged.items():
        assert path.read_bytes() == content
    print(f"{name} -> {line}")  # the matrix, with `pytest -rP`


# --- config errors: raised by `snakemake -n` when the DAG is built, before any job ------------


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from test_workflow import copy_checkout

    return copy_checkout(tmp_path_factory.mktemp("checkout"))


CONFIG_CASES = {
    "unknown_key": ({"evaluate": {"fc": 0.2}}, "('fc' was unexpected)"),
    "wrong_type": ({"dump": {"max_tracks": "many"}}, "'many' is not of type 'integer'"),
    "model_input_not_in_dump": (
        {"models": {"tutorial": {"jet_variables": ["ip2d_llr", "sv_sigma"],
                                 "log1p_variables": []}}},
        "config: models.tutorial.jet_variables: 'sv_sigma' is not a field of the dump of "
        "sample 'ttbar'"),
    "unsafe_variable_name": (
        {"models": {"tutorial": {"jet_variables": ["ip2d_llr", "pt; touch pwned"],
                                 "log1p_variables": []}}},
        "'pt; touch pwned' does not match"),
    "duplicate_variable": (
        {"models": {"tutorial": {"jet_variables": ["ip2d_llr", "ip2d_llr"],
                                 "log1p_variables": []}}},
        "['ip2d_llr', 'ip2d_llr'] has non-unique elements"),
    "unsafe_sample_name": ({"samples": {"my sample": {"source": "files", "files": ["/x.root"]}}},
                           "'my sample' does not match"),
    "unknown_architecture_option": (
        {"models": {"tutorial": {"options": {"hidden": [4]}}}},
        "config: models.tutorial.options.hidden: architecture tutorial has no such option"),
    "evaluated_sample_missing": ({"evaluate": {"samples": ["ttbar", "zz"]}},
                                 "config: evaluate.samples: no sample 'zz'"),
    "unknown_reference_tagger": ({"evaluate": {"reference": "dl2"}},
                                 "config: evaluate.reference: 'dl2' is neither a model nor a"
                                 " baseline (ip2d_llr, sv_sig)"),
}


@pytest.mark.parametrize("name", sorted(CONFIG_CASES))
def test_config_error_before_any_job(name: str, checkout: Path) -> None:
    from test_workflow import snakemake

    change, expected = CONFIG_CASES[name]
    (checkout / f"{name}.yaml").write_text(yaml.safe_dump(change))
    result = snakemake(checkout, "-n", "--configfile", "config/tiny.yaml", f"{name}.yaml",
                       check=False)
    assert result.returncode != 0
    assert expected in result.stdout + result.stderr, result.stderr[-2000:]
    assert not (checkout / "results").exists() and not (checkout / "pwned").exists()


def test_path_with_a_space_is_one_argument(checkout: Path, tmp_path: Path) -> None:
    """Shell commands quote every path (`:q`): a file under a folder with a space, with a
    space in its name, and a `;` in the folder name, is dumped, and no command runs. (With
    `hdf5_file_locking: false`, which the job's log reports.)"""
    from test_workflow import snakemake

    folder = tmp_path / "my data; touch pwned"
    folder.mkdir()
    path = write_ntuple(folder / "run 1.root", 60, seed=2)
    (checkout / "spaced.yaml").write_text(yaml.safe_dump(
        {"samples": {"spaced": {"source": "files", "files": [str(path)]}},
         "evaluate": {"samples": ["spaced"]}, "hdf5_file_locking": False}))
    target = "results/dump/spaced/run 1.h5"
    snakemake(checkout, "--cores", "1", target, "--configfile", "config/tiny.yaml",
              "spaced.yaml")
    with h5py.File(checkout / target) as f:
        assert len(f["jets"]) > 0 and str(path) in str(f.attrs["source_files"])
    assert not (checkout / "pwned").exists() and not (tmp_path / "pwned").exists()
    # hdf5_file_locking: false reached the job (for filesystems that cannot lock)
    assert "HDF5 file locking off" in (checkout / "logs/dump/spaced/run 1.log").read_text()
