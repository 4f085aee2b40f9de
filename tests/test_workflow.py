"""The real `snakemake` on the real workflow: config validation, a tiny end-to-end run,
incrementality (nothing reruns; only evaluation reruns after an evaluation key changes)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def copy_checkout(dest: Path) -> Path:
    """The workflow, config, code and README in ``dest``, so a test can touch them freely."""
    for name in ("workflow", "config", "src"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "README.md", dest / "README.md")
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True, env: dict | None = None,
              ) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*SNAKEMAKE, "--snakefile", "workflow/Snakefile", *args],
        cwd=workdir, capture_output=True, text=True, check=False, env=env,
    )
    if check and result.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in workdir.glob("logs/**/*.log"))
        raise AssertionError(f"snakemake {args} failed:\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-6000:]}\n{logs}")
    return result


def planned_jobs(workdir: Path, *args: str, env: dict | None = None) -> dict[str, int]:
    """Jobs `snakemake -n` would run, per rule."""
    out = snakemake(workdir, *args, "-n", "--quiet", "rules", env=env).stdout
    if "Nothing to be done" in out:
        return {}
    counts = dict(re.findall(r"^\s*([A-Za-z_]\w*)\s+(\d+)\s*$", out, flags=re.M))
    counts.pop("total", None)
    return {rule: int(n) for rule, n in counts.items()}


def test_misspelt_key_fails_before_any_job_and_names_it(tmp_path: Path) -> None:
    work = copy_checkout(tmp_path)
    (work / "bad.yaml").write_text(yaml.safe_dump({"evaluate": {"fc": 0.2}}))
    result = snakemake(work, "-n", "--configfile", "bad.yaml", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "('fc' was unexpected)" in output and "On instance['evaluate']" in output
    assert not (work / "results").exists()


def test_wrong_type_fails_and_names_the_key(tmp_path: Path) -> None:
    work = copy_checkout(tmp_path)
    (work / "bad.yaml").write_text(yaml.safe_dump({"dump": {"max_tracks": "many"}}))
    result = snakemake(work, "-n", "--configfile", "bad.yaml", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "On instance['dump']['max_tracks']" in output and "'many'" in output


def test_aux_tasks_on_a_sample_without_truth_fail_when_planning(tmp_path: Path) -> None:
    """Auxiliary tasks need per-track truth, which PHYSLITE lacks: one line naming the model,
    the sample and the field, before any job."""
    work = copy_checkout(tmp_path)
    tiny = yaml.safe_load((work / "config/tiny.yaml").read_text())
    tiny["samples"]["run3"] = {"source": "files", "format": "physlite",
                               "files": ["run3.root"]}
    tiny["models"]["transformer"]["sample"] = "run3"
    (work / "aux.yaml").write_text(yaml.safe_dump(tiny))
    result = snakemake(work, "-n", "--configfile", "aux.yaml", check=False)
    assert result.returncode != 0
    assert ("config: models.transformer.aux_tasks: sample 'run3' has no per-track truth "
            "'ftagTruthOriginLabel' (PHYSLITE and mapped samples carry none)") in \
        result.stdout + result.stderr
    # and a dips model cannot have them
    tiny = yaml.safe_load((work / "config/tiny.yaml").read_text())
    tiny["models"]["dips"]["aux_tasks"] = {"track_origin": 1.0}
    (work / "aux.yaml").write_text(yaml.safe_dump(tiny))
    result = snakemake(work, "-n", "--configfile", "aux.yaml", check=False)
    assert result.returncode != 0
    assert "config: models.dips.aux_tasks: architecture dips has no auxiliary tasks" in \
        result.stdout + result.stderr
    assert not (work / "results").exists()


def test_hybrid_sample_plans_both_components_and_the_pt_windows(tmp_path: Path) -> None:
    work = copy_checkout(tmp_path)
    generator = {"process": "zprime", "shards": 3, "events_per_shard": 10, "seed": 2}
    overlay = {"samples": {"zprime": {"source": "generator", "generator": generator},
                           "hybrid": {"source": "hybrid", "hybrid": {
                               "low": "ttbar", "high": "zprime", "pt_threshold": 250000.0}}},
               "evaluate": {"samples": ["hybrid"]}}
    (work / "hybrid.yaml").write_text(yaml.safe_dump(overlay))
    result = snakemake(work, "results/merge/hybrid.h5", "-n", "-p", "--configfile",
                       "hybrid.yaml")
    assert "--inputs results/merge/ttbar.h5 results/merge/zprime.h5" in result.stdout
    assert "--pt-windows 0:250000.0 250000.0:inf" in result.stdout
    assert planned_jobs(work, "results/merge/hybrid.h5", "--configfile", "hybrid.yaml") == {
        "generate": 7, "dump": 7, "merge": 3}
    overlay["samples"]["hybrid"]["hybrid"]["high"] = "hybrid"
    (work / "bad.yaml").write_text(yaml.safe_dump(overlay))
    bad = snakemake(work, "-n", "--configfile", "bad.yaml", check=False)
    assert bad.returncode != 0 and "samples.hybrid.hybrid.high" in bad.stdout + bad.stderr


TINY = ["--configfile", "config/tiny.yaml"]


def merged(base: dict, override: dict) -> dict:
    """``override`` over ``base``, mappings key by key (as Snakemake merges config files)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(base[key], value) if isinstance(value, dict) and isinstance(
            base.get(key), dict) else value
    return out


def overlay(work: Path, change: dict, name: str = "changed.yaml") -> list[str]:
    """config/tiny.yaml with ``change`` merged over it, as --configfile arguments."""
    tiny = yaml.safe_load((work / "config/tiny.yaml").read_text())
    (work / name).write_text(yaml.safe_dump(merged(tiny, change)))
    return ["--configfile", name]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One complete run of the tiny config, shared by the tests below (each leaves the
    checkout as it found it)."""
    work = copy_checkout(tmp_path_factory.mktemp("tiny"))
    snakemake(work, "--cores", "2", *TINY)
    return work


def light_70(entry: dict) -> float:
    """Light rejection at 70 % of a tagger's metrics, or its lower limit where fewer than 10
    light jets pass."""
    point = entry["working_points"]["70"]
    return point["light_rejection"] or point["light_rejection_lower_limit"]


@pytest.mark.slow
def test_physlite_sample_through_the_dag(tiny: Path) -> None:
    """A real Run 3 PHYSLITE file as a `source: files` sample evaluated by the tiny run's
    networks, run to `all`: dump, merge, inspect (with the file's GN2v01 and DL1dv01 as
    baselines), evaluate, compare and inject (a friend RNTuple per network, entry by entry
    with EventData)."""
    import skhep_testdata
    import uproot

    work = tiny
    path = skhep_testdata.data_path("uproot-physlite-rntuple_v1-0-0-0.root")
    config = overlay(work, {"samples": {"run3": {"source": "files", "format": "physlite",
                                                 "files": [path]}},
                            "evaluate": {"samples": ["ttbar", "run3"]}}, "run3.yaml")
    assert planned_jobs(work, *config) == {
        "dump": 1, "merge": 1, "inspect": 1, "evaluate": 4, "compare": 1, "inject": 4,
        "all": 1}
    snakemake(work, "--cores", "2", *config)
    summary = json.loads((work / "results/inspect/run3/summary.json").read_text())
    assert set(summary["baselines"]) == {"ip2d_llr", "sv_sig", "DL1dv01", "GN2v01"}
    # GN2v01's D_b with its own f_c = 0.2, on the jets the default selection keeps (pT > 20
    # GeV: higher AUC than the 0.96 of all jets in test_dump_physlite)
    from flavourflow.core.roc import auc, b_discriminant

    stem = Path(path).stem
    with h5py.File(work / f"results/dump/run3/{stem}.h5") as f:
        jets = f["jets"][...]
    d_b = b_discriminant(jets["GN2v01_pb"], jets["GN2v01_pc"], jets["GN2v01_pu"], 0.2)
    label = jets["HadronConeExclTruthLabelID"]
    expected = auc(d_b[label == 5], d_b[label == 0])
    assert expected > 0.95
    assert summary["baselines"]["GN2v01"]["auc_b_vs_light"] == pytest.approx(expected, abs=1e-12)
    for model in ("tutorial", "dl1", "dips"):
        metrics = json.loads((work / f"results/evaluate/{model}/run3/metrics.json").read_text())
        assert light_70(metrics["taggers"]["network"]) > 0
        events = uproot.open(path)["EventData"].arrays(["EventInfoAuxDyn:eventNumber",
                                                        "AnalysisJetsAuxDyn:pt"])
        friend = uproot.open(work / f"results/inject/{model}/run3/{stem}.root")[
            f"{model}_scores"]
        assert "RNTuple" in type(friend).__name__
        scores = friend.arrays()
        np.testing.assert_array_equal(scores["eventNumber"],
                                      events["EventInfoAuxDyn:eventNumber"])
        assert (ak_num(scores[f"jet_{model}_pb"]) == ak_num(events["AnalysisJetsAuxDyn:pt"])
                ).all()
        pb = np.asarray(ak_flat(scores[f"jet_{model}_pb"]))
        assert np.count_nonzero(np.isfinite(pb)) == len(jets)  # every dumped jet, no other
    assert planned_jobs(work, *config) == {}
    # the tiny run is left as it was: its own config still plans nothing
    assert planned_jobs(work, *TINY) == {}


def ak_num(array):
    import awkward as ak

    return ak.to_numpy(ak.num(array))


def ak_flat(array):
    import awkward as ak

    return ak.to_numpy(ak.flatten(array))


@pytest.mark.slow
def test_tiny_end_to_end(tiny: Path) -> None:
    work = tiny
    # the lwtnn network evaluates like the Keras model on the test jets
    import keras

    from flavourflow.export.evaluator import LightweightGraph

    pre, exp = work / "results/preprocess/tutorial", work / "results/export/tutorial"
    variables = json.loads((pre / "variables.json").read_text())
    x_norm = np.load(pre / "test_jets.npy")
    node = variables["inputs"][0]
    offset = np.array([v["offset"] for v in node["variables"]])
    scale = np.array([v["scale"] for v in node["variables"]])
    raw = x_norm.astype(np.float64) / scale - offset
    model = keras.saving.load_model(work / "results/train/tutorial/model.keras")
    graph = LightweightGraph.from_file(exp / "network.json")
    diff = np.abs(model.predict(x_norm, verbose=0) - graph.compute({node["name"]: raw}))
    assert diff.max() < 1e-5
    closure = json.loads((exp / "closure.json").read_text())
    assert closure["passed"] and closure["n_jets"] == len(x_norm)

    metrics = json.loads((work / "results/evaluate/tutorial/ttbar/metrics.json").read_text())
    for tagger, wps in (("network", ("60", "70", "77", "85")), ("ip2d_llr", ("60", "70")),
                        ("sv_sig", ("60",))):  # sv_sig is 0 without a vertex: 85 % unreachable
        for wp in wps:
            point = metrics["taggers"][tagger]["working_points"][wp]
            for bkg in ("light", "c"):  # a value with its uncertainty, or a lower limit
                value, limit = point[f"{bkg}_rejection"], point[f"{bkg}_rejection_lower_limit"]
                assert (value is None) != (limit is None), (tagger, wp, bkg)
                if value is not None:
                    assert math.isfinite(value) and value > 1 and point[f"{bkg}_n_pass"] >= 10
                    assert 0 < point[f"{bkg}_rejection_err"] < value
                else:
                    assert limit > 1 and point[f"{bkg}_n_pass"] < 10
    for stem in ("roc", "discriminant", "performance_vs_pt", "performance_vs_eta", "fc_scan",
                 "confusion", "training"):
        assert (work / f"results/evaluate/tutorial/ttbar/{stem}.pdf").read_bytes()[:4] == b"%PDF"
        assert (work / f"results/evaluate/tutorial/ttbar/{stem}.png").stat().st_size > 10_000
    assert (work / "results/inspect/ttbar/jet_inputs.png").stat().st_size > 10_000
    # each network learned: a tagger that learned nothing has AUC 0.5 and light rejection
    # 1/0.7 = 1.43 at 70 % (+- 0.05 on the ~540 light test jets); the tiny run's one epoch
    # gives 0.78-0.91 and 4.5-34. The tutorial (a logistic regression on ip2d_llr and sv_sig)
    # reaches at least half of its best input's rejection (about 0.7 of it after one epoch).
    best_input = max(metrics["taggers"][b]["working_points"]["70"]["light_rejection"] or 0
                     for b in ("ip2d_llr", "sv_sig"))

    for model in ("tutorial", "dl1", "dips"):
        network = json.loads((work / f"results/evaluate/{model}/ttbar/metrics.json").read_text(
            ))["taggers"]["network"]
        assert network["auc_b_vs_light"] > 0.7, model
        assert light_70(network) > 3.0, model
    assert light_70(metrics["taggers"]["network"]) >= 0.5 * best_input
    compared = json.loads((work / "results/compare/ttbar/metrics.json").read_text())
    assert set(compared["taggers"]) == {"tutorial", "dl1", "dips", "transformer", "ip2d_llr",
                                        "sv_sig"}
    assert compared["taggers"]["tutorial"] == metrics["taggers"]["network"]

    # the transformer: ONNX alone (no lwtnn file), its closure on every test jet plus the
    # edge jets, evaluated through onnxruntime with the auxiliary-task metrics
    exported = work / "results/export/transformer"
    assert (exported / "model.onnx").is_file() and not (exported / "network.json").exists()
    closure = json.loads((exported / "closure.json").read_text())
    n_test = len(np.load(work / "results/preprocess/transformer/test_labels.npy"))
    assert closure["passed"] and closure["n_test_jets"] == n_test
    assert closure["max_abs_diff_overall"] <= 1e-5
    assert set(closure["comparisons"]["keras_vs_onnx"]["by_output"]) == {
        "transformer", "track_origin", "track_vertex"}
    evaluated = json.loads((work / "results/evaluate/transformer/ttbar/metrics.json"
                            ).read_text())
    assert evaluated["taggers"]["network"]["auc_b_vs_light"] > 0.5
    origin = evaluated["aux_tasks"]["track_origin"]
    assert sum(map(sum, origin["confusion"])) == origin["n_tracks"] > 0
    assert 0 <= evaluated["aux_tasks"]["track_vertex"]["pair_purity"] <= 1
    assert compared["taggers"]["transformer"] == evaluated["taggers"]["network"]
    for shard in ("shard_0", "shard_1"):
        assert (work / f"results/inject/transformer/ttbar/{shard}.h5").is_file()

    # inject: per shard, a friend with one entry per original event, in the original's order
    import uproot

    for shard in ("shard_0", "shard_1"):
        events = uproot.open(work / f"results/generate/ttbar/{shard}.root")["events"]
        friend = uproot.open(work / f"results/inject/tutorial/ttbar/{shard}.root")[
            "tutorial_scores"]
        np.testing.assert_array_equal(friend["eventNumber"].array(library="np"),
                                      events["eventNumber"].array(library="np"))
        assert (work / f"results/inject/tutorial/ttbar/{shard}.h5").is_file()

    # every job recorded its time and memory
    bench = (work / "logs/benchmarks/train/tutorial.tsv").read_text().splitlines()
    assert bench[0].split("\t")[:3] == ["s", "h:m:s", "max_rss"] and len(bench) == 2


# The rerun promise on the tiny config (2 shards, 3 lwtnn models and an ONNX-only transformer,
# inject on), as the README's table states it: change -> the jobs `snakemake -n` plans, per
# rule.
AFTER_THE_GATE = {"closure": 3, "closure_onnx": 1, "evaluate": 4, "inject": 8, "compare": 1,
                  "all": 1}
DOWNSTREAM_OF_EXPORT = {"export": 3, "export_onnx": 1, **AFTER_THE_GATE}
DOWNSTREAM_OF_PREPROCESS = {"preprocess": 4, "train": 4, **DOWNSTREAM_OF_EXPORT}
DOWNSTREAM_OF_DUMP = {"dump": 2, "merge": 1, "inspect": 1, **DOWNSTREAM_OF_PREPROCESS}
EVERYTHING = {"generate": 2, **DOWNSTREAM_OF_DUMP}
ONE_MODEL = {"train": 1, "export": 1, "closure": 1, "evaluate": 1, "inject": 2, "compare": 1,
             "all": 1}
CONFIG_MATRIX = [
    ("dump.step_size", {"dump": {"step_size": 77}}, {}),
    ("inject.step_size", {"inject": {"step_size": 77}}, {}),
    ("dump.merge_layout", {"dump": {"merge_layout": "concat"}}, {}),
    ("fetch.retries", {"fetch": {"retries": 7}}, {}),
    ("hdf5_file_locking", {"hdf5_file_locking": False}, {}),
    ("inspect.bins", {"inspect": {"bins": 20}}, {"inspect": 1, "all": 1}),
    ("evaluate.f_c", {"evaluate": {"f_c": 0.05}},
     {"evaluate": 4, "inject": 8, "compare": 1, "all": 1}),
    ("evaluate.working_points", {"evaluate": {"working_points": [0.6, 0.7]}},
     {"inspect": 1, "evaluate": 4, "compare": 1, "all": 1}),
    ("evaluate.reference", {"evaluate": {"reference": "sv_sig"}},
     {"evaluate": 4, "compare": 1, "all": 1}),
    ("export.tolerance", {"export": {"tolerance": 2e-5}}, AFTER_THE_GATE),
    ("export.max_jets", {"export": {"max_jets": 500}}, AFTER_THE_GATE),
    ("export.onnx_opset", {"export": {"onnx_opset": 16}}, DOWNSTREAM_OF_EXPORT),
    ("models.<m>.training", {"models": {"tutorial": {"training": {"learning_rate": 0.02}}}},
     ONE_MODEL),
    ("models.<m>.log1p_variables", {"models": {"tutorial": {"log1p_variables": []}}},
     {"preprocess": 1, **ONE_MODEL}),
    ("preprocess.split_seed", {"preprocess": {"split_seed": 3}}, DOWNSTREAM_OF_PREPROCESS),
    ("dump.max_tracks", {"dump": {"max_tracks": 30}}, DOWNSTREAM_OF_DUMP),
    ("dump.selection", {"dump": {"selection": {"pt_min": 25000.0}}}, DOWNSTREAM_OF_DUMP),
    ("samples.<s>.generator", {"samples": {"ttbar": {"generator": {"seed": 6}}}}, EVERYTHING),
]
# a comment added to a module reruns the stages that import it, and what depends on them
CODE_MATRIX = [
    ("inspect/core.py", {"inspect": 1, "all": 1}),
    ("core/rejections.py", {"inspect": 1, "evaluate": 4, "compare": 1, "all": 1}),
    ("core/style.py", {"inspect": 1, "evaluate": 4, "compare": 1, "all": 1}),
    ("evaluate/plots.py", {"evaluate": 4, "compare": 1, "all": 1}),
    ("core/roc.py", {"inspect": 1, "evaluate": 4, "compare": 1, "inject": 8, "all": 1}),
    ("core/plots.py", {"inspect": 1, **DOWNSTREAM_OF_PREPROCESS}),
    ("export/evaluator.py", DOWNSTREAM_OF_EXPORT),
    ("export/lwtnn.py", DOWNSTREAM_OF_EXPORT),
    ("train/models.py", {**DOWNSTREAM_OF_EXPORT, "train": 4}),
    ("generate/truth.py", EVERYTHING),
    ("dump/h5.py", DOWNSTREAM_OF_DUMP),
    ("core/flavours.py", EVERYTHING),
    ("cli.py", EVERYTHING),
]


@pytest.mark.slow
@pytest.mark.parametrize("key, change, expected", CONFIG_MATRIX, ids=[c[0] for c in CONFIG_MATRIX])
def test_rerun_matrix_config(tiny: Path, key: str, change: dict, expected: dict) -> None:
    assert planned_jobs(tiny, *overlay(tiny, change)) == expected


@pytest.mark.slow
@pytest.mark.parametrize("module, expected", CODE_MATRIX, ids=[c[0] for c in CODE_MATRIX])
def test_rerun_matrix_code(tiny: Path, module: str, expected: dict) -> None:
    path = tiny / "src/flavourflow" / module
    original = path.read_text()
    try:
        path.write_text(original + "\n# a comment\n")
        assert planned_jobs(tiny, *TINY) == expected
    finally:
        path.write_text(original)


@pytest.mark.slow
def test_rerun_matrix_no_change(tiny: Path, tmp_path: Path) -> None:
    """Nothing reruns: a second run; a README edit; `touch` of every output, large ones
    included (Snakemake compares their checksums); the whole checkout moved elsewhere."""
    assert planned_jobs(tiny, *TINY) == {}
    readme = tiny / "README.md"
    readme.write_text(readme.read_text() + "\nedited\n")
    results = [path for path in (tiny / "results").rglob("*") if path.is_file()]
    # Snakemake's default checksum limit is 1 MB: the tiny config's memmaps pass it
    assert any(path.stat().st_size > 1_000_000 for path in results)
    for path in results:
        path.touch()
    assert planned_jobs(tiny, *TINY) == {}
    moved = tmp_path / "elsewhere" / "checkout"
    shutil.copytree(tiny, moved, symlinks=True)
    assert planned_jobs(moved, *TINY) == {}


@pytest.mark.slow
def test_report_gathers_every_plot_with_captions(tiny: Path, tmp_path: Path) -> None:
    """`snakemake --report`: one self-contained HTML file holding every model's evaluation
    figures, inspect's and compare's, each with its caption, grouped by stage and model."""
    report = tmp_path / "report.html"
    snakemake(tiny, *TINY, "--report", str(report))
    html = report.read_text()
    figures = ("roc", "discriminant", "performance_vs_pt", "performance_vs_eta", "fc_scan",
               "confusion", "training")
    for model in ("tutorial", "dl1", "dips", "transformer"):
        for name in figures:
            assert f'"results/evaluate/{model}/ttbar/{name}.png": {{"name"' in html, (model, name)
        assert f"2. evaluate {model}" in html
        assert f"Model <strong>{model}</strong> on the test jets of <strong>ttbar</strong>" in html
    for path in ("results/inspect/ttbar/correlations.png", "results/compare/ttbar/roc.png",
                 "results/compare/ttbar/rejections.csv"):
        assert f'"{path}": {{"name"' in html
    assert "1. inspect" in html and "3. compare" in html
    # self-contained: the figures are inside (base64), nothing is fetched when it is opened
    assert len(re.findall(r'"data_uri": "data:image/png;[^"]*base64,iVBOR', html)) == \
        4 * len(figures) + 5 + 1  # + inspect's 5 + compare's rejection plot
    assert not re.search(r"<(?:script|link|img)[^>]*(?:src|href)=[\"']https?://", html)
    assert planned_jobs(tiny, *TINY) == {}  # building the report runs nothing


@pytest.mark.slow
def test_rerun_matrix_dependency_version(tiny: Path, tmp_path: Path) -> None:
    """A version bump of an installed distribution reruns the stages that import it: here
    onnxruntime (export's closure imports it), seen first on the path as a newer version."""
    import onnxruntime

    fake = tmp_path / "site" / "onnxruntime-99.0.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: onnxruntime\nVersion: 99.0\n")
    (fake / "top_level.txt").write_text("onnxruntime\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    assert onnxruntime.__version__ != "99.0"
    assert planned_jobs(tiny, *TINY, env=env) == DOWNSTREAM_OF_EXPORT


@pytest.mark.slow
def test_study_stands_beside_the_default_and_reruns_only_evaluation(tiny: Path) -> None:
    """A convener's what-if (an evaluation-time pT cut; another f_c) evaluates the existing
    networks into <sample>.<study> folders: no retraining, the default outputs untouched, a
    second run plans nothing."""
    studies = overlay(tiny, {"studies": {"pt30": {"selection": {"pt_min": 30000.0}},
                                         "fc": {"f_c": 0.05, "models": ["tutorial", "dl1"]}}})
    default = tiny / "results/compare/ttbar/rejections.md"
    before = default.stat().st_mtime_ns
    target = "results/compare/ttbar.pt30/rejections.md"
    assert planned_jobs(tiny, target, *studies) == {"evaluate_study": 4, "compare_study": 1}
    assert planned_jobs(tiny, "studies", *studies) == {
        "evaluate_study": 6, "compare_study": 2, "studies": 1}
    snakemake(tiny, "--cores", "2", target, *studies)
    assert planned_jobs(tiny, target, *studies) == {}
    assert default.stat().st_mtime_ns == before
    with h5py.File(tiny / "results/evaluate/dl1/ttbar.pt30/scores.h5") as f:
        cut = f["jets"][...]
    with h5py.File(tiny / "results/evaluate/dl1/ttbar/scores.h5") as f:
        full = f["jets"][...]
    assert cut["pt"].min() >= 30000.0 and len(cut) == np.count_nonzero(full["pt"] >= 30000.0)
    metrics = json.loads((tiny / "results/evaluate/dl1/ttbar.pt30/metrics.json").read_text())
    assert metrics["selection"] == {"pt_min": 30000.0}
    # the default run still plans nothing: the study's outputs are not its outputs
    assert planned_jobs(tiny, *TINY) == {}


@pytest.mark.slow
def test_variant_and_scan_plan_only_their_models(tiny: Path) -> None:
    """`base:` variants and a `scan` grid train as their own models: nothing of the others
    reruns; the scan's variants are ranked."""
    variant = overlay(tiny, {"models": {"tut2": {"base": "tutorial",
                                                 "training": {"learning_rate": 0.02}}}})
    assert planned_jobs(tiny, *variant) == {"preprocess": 1, **ONE_MODEL}
    scan = overlay(tiny, {"scan": {"lr": {"base": "tutorial", "grid": {
        "training.learning_rate": [0.005, 0.02], "training.batch_size": [64]}}}})
    assert planned_jobs(tiny, *scan) == {
        "preprocess": 2, "train": 2, "export": 2, "closure": 2, "evaluate": 2, "inject": 4,
        "compare": 1, "rank": 1, "all": 1}
    target = "results/compare/ttbar/scan_lr.md"
    snakemake(tiny, "--cores", "2", target, *scan)
    ranking = json.loads((tiny / "results/compare/ttbar/scan_lr.json").read_text())
    rows = ranking["rows"]
    assert {r["model"] for r in rows} == {"lr_0", "lr_1"}
    assert {r["training.learning_rate"] for r in rows} == {0.005, 0.02}
    ranked = [r["light_rejection"] or r["light_rejection_lower_limit"] for r in rows]
    assert ranked[0] >= ranked[1]
    record = json.loads((tiny / "results/train/lr_1/training.json").read_text())
    assert record["config"]["model"]["training"]["learning_rate"] == 0.02
    assert record["config"]["model"]["jet_variables"] == ["ip2d_llr", "sv_sig"]  # from its base
    assert planned_jobs(tiny, target, *scan) == {}


@pytest.mark.slow
def test_closure_gate_stops_evaluation(tiny: Path) -> None:
    """A closure that fails (Keras float32 and the numpy evaluator float64 cannot agree to
    1e-14) keeps network.json (its conversion does not rerun) and lets no evaluation run."""
    strict = overlay(tiny, {"export": {"tolerance": 1e-14}})
    network = tiny / "results/export/tutorial/network.json"
    before = network.read_bytes()
    metrics = tiny / "results/evaluate/tutorial/ttbar/metrics.json"
    metrics.unlink()
    target = str(metrics.relative_to(tiny))
    assert planned_jobs(tiny, target, *strict) == {"closure": 1, "evaluate": 1}
    failed = snakemake(tiny, "--cores", "2", target, *strict, check=False)
    assert failed.returncode != 0
    assert "closure failed" in (tiny / "logs/export/tutorial.closure.log").read_text()
    # Snakemake prints the failed job's one-line cause, not only "check log file(s)"
    assert "failed job closure (logs/export/tutorial.closure.log): flavourflow " in \
        failed.stderr and ": error: " in failed.stderr
    assert "rule evaluate:" not in failed.stdout + failed.stderr and not metrics.exists()
    assert network.read_bytes() == before
    record = json.loads((tiny / "results/export/tutorial/closure.failed.json").read_text())
    assert record["passed"] is False and record["tolerance"] == 1e-14
    # back to the tiny config's tolerance: the gate passes again and evaluation follows
    snakemake(tiny, "--cores", "2", target, *TINY)
    assert metrics.is_file() and network.read_bytes() == before


# --- interruption: kill -9 mid-job, rerun with --rerun-incomplete -----------------------------


def _job_pids(work: Path, stage: str) -> list[int]:
    """Processes running `python -m flavourflow <stage>` in ``work`` (the job, not its shell)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if cwd == str(work) and b"flavourflow" in argv and stage.encode() in argv:
            pids.append(int(proc.name))
    return pids


def _contents(path: Path) -> object:
    """What must be identical after a rerun: an h5's datasets and attributes, a Keras model's
    weights, a JSON record without its timings, any other file's bytes."""
    if path.suffix == ".h5":
        with h5py.File(path) as f:
            return ({k: f[k][...].tobytes() for k in f}, {k: str(v) for k, v in f.attrs.items()})
    if path.suffix == ".keras":
        import keras

        return [w.tobytes() for w in keras.saving.load_model(path).get_weights()]
    if path.name == "training.json":
        record = json.loads(path.read_text())
        return {k: v for k, v in record.items() if "second" not in k and "time" not in k}
    return path.read_bytes()


INTERRUPTED = [
    ("dump", ["results/dump/ttbar/shard_0.h5"], 0.0),
    ("preprocess", ["results/preprocess/tutorial/variables.json",
                    "results/preprocess/tutorial/train_jets.npy"], 1.0),
    ("train", ["results/train/tutorial/model.keras", "results/train/tutorial/history.csv",
               "results/train/tutorial/training.json"], 4.0),
]


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "outputs", "delay"), INTERRUPTED,
                         ids=[case[0] for case in INTERRUPTED])
def test_kill_9_mid_job_then_rerun_incomplete_gives_the_same_outputs(
        tiny: Path, stage: str, outputs: list[str], delay: float) -> None:
    """kill -9 of Snakemake and its job while the job runs (a lost node): the rerun with
    --rerun-incomplete ends with the outputs of the uninterrupted run and no leftover
    (hidden temporaries of the killed job included); the tiny run is left as it was."""
    import signal
    import time

    paths = [tiny / p for p in outputs]
    before = {p: _contents(p) for p in paths}
    target = outputs[0]
    run = subprocess.Popen([*SNAKEMAKE, "--snakefile", "workflow/Snakefile", "--cores", "2",
                            *TINY, "--forcerun", target, "--", target], cwd=tiny,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    deadline = time.monotonic() + 120
    while not (pids := _job_pids(tiny, stage)):
        assert run.poll() is None and time.monotonic() < deadline, "the job never started"
        time.sleep(0.02)
    time.sleep(delay)
    os.killpg(run.pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    run.wait()
    # what a user does after a lost node: the killed Snakemake's lock, then the incomplete job
    snakemake(tiny, "--unlock", *TINY)
    snakemake(tiny, "--cores", "2", *TINY, "--rerun-incomplete", target)
    for path in paths:
        assert _contents(path) == before[path], path
        assert not list(path.parent.glob(".*partial*")), list(path.parent.glob(".*partial*"))
    # the outputs are the same, so the later jobs of the tiny run are up to date (for the
    # other tests): Snakemake's --touch says so without running them
    snakemake(tiny, "--touch", "--cores", "1", *TINY)
    assert planned_jobs(tiny, *TINY) == {}
