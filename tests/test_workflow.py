"""The real `snakemake` on the real workflow: config validation, a tiny end-to-end run,
incrementality (nothing reruns; only evaluation reruns after an evaluation key changes)."""

from __future__ import annotations

import json
import math
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
    """The workflow, config and code in ``dest``, so a test can touch code and config freely."""
    for name in ("workflow", "config", "src"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [*SNAKEMAKE, "--snakefile", "workflow/Snakefile", *args],
        cwd=workdir, capture_output=True, text=True, check=False,
    )
    if check and result.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-3000:]}" for p in workdir.glob("logs/**/*.log"))
        raise AssertionError(f"snakemake {args} failed:\n{result.stderr[-6000:]}\n{logs}")
    return result


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Jobs `snakemake -n` would run, per rule."""
    out = snakemake(workdir, *args, "-n", "--quiet", "rules").stdout
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


def test_physlite_sample_through_the_dag(tmp_path: Path) -> None:
    """A real Run 3 PHYSLITE file as a `source: files` sample: dump, merge and inspect, with
    the file's GN2v01 and DL1dv01 as baselines."""
    import skhep_testdata

    work = copy_checkout(tmp_path)
    path = skhep_testdata.data_path("uproot-physlite-rntuple_v1-0-0-0.root")
    overlay = {"samples": {"run3": {"source": "files", "format": "physlite", "files": [path]}}}
    (work / "run3.yaml").write_text(yaml.safe_dump(overlay))
    target = "results/inspect/run3/summary.json"
    assert planned_jobs(work, target, "--configfile", "run3.yaml") == {
        "dump": 1, "merge": 1, "inspect": 1}
    snakemake(work, "--cores", "2", target, "--configfile", "run3.yaml")
    summary = json.loads((work / target).read_text())
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
    assert planned_jobs(work, target, "--configfile", "run3.yaml") == {}


@pytest.mark.slow
def test_tiny_end_to_end(tmp_path: Path) -> None:
    work = copy_checkout(tmp_path)
    tiny = ["--configfile", "config/tiny.yaml"]
    snakemake(work, "--cores", "2", *tiny)

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
            assert math.isfinite(point["light_rejection"]) and point["light_rejection"] > 1
            assert math.isfinite(point["c_rejection"]) and point["c_rejection"] > 1
    for stem in ("roc", "discriminant", "training"):
        assert (work / f"results/evaluate/tutorial/ttbar/{stem}.pdf").read_bytes()[:4] == b"%PDF"
        assert (work / f"results/evaluate/tutorial/ttbar/{stem}.png").stat().st_size > 10_000
    assert (work / "results/inspect/ttbar/jet_inputs.png").stat().st_size > 10_000
    compared = json.loads((work / "results/compare/ttbar/metrics.json").read_text())
    assert set(compared["taggers"]) == {"tutorial", "dl1", "dips", "ip2d_llr", "sv_sig"}
    assert compared["taggers"]["tutorial"] == metrics["taggers"]["network"]

    # inject: per shard, a friend with one entry per original event, in the original's order
    import uproot

    for shard in ("shard_0", "shard_1"):
        events = uproot.open(work / f"results/generate/ttbar/{shard}.root")["events"]
        friend = uproot.open(work / f"results/inject/tutorial/ttbar/{shard}.root")[
            "tutorial_scores"]
        np.testing.assert_array_equal(friend["eventNumber"].array(library="np"),
                                      events["eventNumber"].array(library="np"))
        assert (work / f"results/inject/tutorial/ttbar/{shard}.h5").is_file()

    # a second run plans nothing
    assert planned_jobs(work, *tiny) == {}

    # an evaluation key changes: only evaluation reruns (3 models; the injected D_b uses f_c)
    overlay = yaml.safe_load((work / "config/tiny.yaml").read_text())
    overlay["evaluate"] = {"f_c": 0.05}
    (work / "changed.yaml").write_text(yaml.safe_dump(overlay))
    assert planned_jobs(work, "--configfile", "changed.yaml") == {
        "evaluate": 3, "inject": 6, "compare": 1, "all": 1}

    # a training key changes: training and what depends on it, not generation or dumping
    overlay = yaml.safe_load((work / "config/tiny.yaml").read_text())
    overlay["models"]["tutorial"]["training"]["learning_rate"] = 0.02
    (work / "changed.yaml").write_text(yaml.safe_dump(overlay))
    assert planned_jobs(work, "--configfile", "changed.yaml") == {
        "train": 1, "export": 1, "evaluate": 1, "inject": 2, "compare": 1, "all": 1}

    # the code of a stage changes: that stage and its dependents rerun (a mere touch does not:
    # Snakemake compares the checksums of small inputs)
    inspect_code, core_code = (work / "src/flavourflow/inspect/core.py",
                               work / "src/flavourflow/core/roc.py")
    originals = {path: path.read_text() for path in (inspect_code, core_code)}
    inspect_code.write_text(originals[inspect_code] + "\n# changed\n")
    assert planned_jobs(work, *tiny) == {"inspect": 1, "all": 1}
    core_code.write_text(originals[core_code] + "\n# changed\n")
    assert set(planned_jobs(work, *tiny)) == {
        "generate", "dump", "merge", "inspect", "preprocess", "train", "export", "evaluate",
        "compare", "inject", "all"}
    for path, text in originals.items():
        path.write_text(text)

    # a closure that fails stops the DAG before evaluation: Keras (float32) and the numpy
    # evaluator (float64) cannot agree to 1e-14
    overlay = yaml.safe_load((work / "config/tiny.yaml").read_text())
    overlay["export"]["tolerance"] = 1e-14
    (work / "changed.yaml").write_text(yaml.safe_dump(overlay))
    target = "results/evaluate/tutorial/ttbar/metrics.json"
    assert planned_jobs(work, target, "--configfile", "changed.yaml") == {
        "export": 1, "evaluate": 1}
    failed = snakemake(work, "--cores", "2", target, "--configfile", "changed.yaml",
                       check=False)
    assert failed.returncode != 0
    assert "closure failed" in (work / "logs/export/tutorial.log").read_text()
    assert "rule evaluate:" not in failed.stdout + failed.stderr
    assert not (work / "results/export/tutorial/network.json").exists()
    record = json.loads((work / "results/export/tutorial/closure.failed.json").read_text())
    assert record["passed"] is False and record["tolerance"] == 1e-14
