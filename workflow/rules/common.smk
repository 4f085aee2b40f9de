# Configuration, wildcards and input functions shared by all rules.

import json
import sys
from pathlib import Path

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate


validate(config, os.path.join(workflow.basedir, "schemas", "config.schema.yaml"))


def _sorted(value):
    """Config with keys in sorted order: rules' params, hence reruns, must not depend on the
    order keys happen to have in the YAML files."""
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    return value


for _key in list(config):
    config[_key] = _sorted(config[_key])

REPO = Path(workflow.basedir).parent
SRC = REPO / "src"
# Jobs run the flavourflow code of this checkout, whatever is installed, so that the code a
# rule depends on (see `code`) is the code that runs.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
# The interpreter running Snakemake, unless jobs run in their own conda environments.
_USE_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
PYTHON = "python" if _USE_CONDA else sys.executable
FLAVOURFLOW = f"{PYTHON} -m flavourflow"

SAMPLES = config["samples"]
MODELS = config["models"]


def file_entry(item):
    """One `files` item -> {stem, location (local path or URL), remote, checksum}."""
    from urllib.parse import urlparse

    item = {"url": item} if isinstance(item, str) else item
    location = item["url"]
    remote = urlparse(location).scheme in ("http", "https", "root", "roots", "xroot", "rucio")
    name = urlparse(location).path if remote else location
    return {"stem": Path(name).stem, "location": location, "remote": remote,
            "checksum": item.get("checksum", {})}


def _check_references():
    """Cross-references the schema can't express, named like the schema names keys."""
    for model, entry in MODELS.items():
        if entry["sample"] not in SAMPLES:
            raise ValueError(f"config: models.{model}.sample: no sample '{entry['sample']}'")
        jets, tracks = entry.get("jet_variables", []), entry.get("track_variables", [])
        if entry["architecture"] == "dips" and not tracks:
            raise ValueError(f"config: models.{model}.track_variables: dips needs track inputs")
        if entry["architecture"] != "dips" and (tracks or not jets):
            raise ValueError(f"config: models.{model}.track_variables: "
                             f"{entry['architecture']} takes jet_variables only")
        for key in ("log_variables", "log1p_variables"):
            for name in set(entry.get(key, [])) - {*jets, *tracks}:
                raise ValueError(f"config: models.{model}.{key}: '{name}' is not an input")
    for sample in config["evaluate"]["samples"]:
        if sample not in SAMPLES:
            raise ValueError(f"config: evaluate.samples: no sample '{sample}'")
    for sample in config["inject"].get("samples", []):
        if sample not in SAMPLES:
            raise ValueError(f"config: inject.samples: no sample '{sample}'")
    total = sum(config["preprocess"]["split"].values())
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"config: preprocess.split: fractions add up to {total}, not 1")
    for sample, entry in SAMPLES.items():
        for part in ("low", "high") if entry["source"] == "hybrid" else ():
            other = entry["hybrid"][part]
            if other not in SAMPLES or SAMPLES[other]["source"] == "hybrid":
                raise ValueError(f"config: samples.{sample}.hybrid.{part}: '{other}' is not a"
                                 " generated or file sample")
        if entry["source"] == "files":
            stems = [file_entry(f)["stem"] for f in entry["files"]]
            if len(set(stems)) != len(stems):
                raise ValueError(f"config: samples.{sample}.files: file names must be unique")


_check_references()


wildcard_constraints:
    sample="[A-Za-z][A-Za-z0-9_]*",
    model="[A-Za-z][A-Za-z0-9_]*",
    shard=r"\d+",


# Which subpackages each stage's code comes from (core is shared by all).
_STAGE_PACKAGES = {
    "generate": ["generate"],
    "fetch": ["fetch"],
    "dump": ["dump"],
    "merge": ["merge", "dump"],
    "inspect": ["inspect"],
    "preprocess": ["preprocess"],
    "train": ["train", "export/layers.py"],
    "export": ["export"],
    "evaluate": ["evaluate", "export"],
    "compare": ["compare"],
    "inject": ["inject", "export"],
}


def code(stage):
    """The source files a stage runs: a rule lists them as inputs, so editing them reruns it."""
    files = []
    for package in ["core", *_STAGE_PACKAGES[stage]]:
        path = SRC / "flavourflow" / package  # a subpackage, or one module of another
        files += [str(path)] if path.suffix == ".py" else sorted(
            str(f) for f in path.iterdir() if f.suffix in (".py", ".c"))
    return files


def as_json(value):
    """Config slices go to the CLI as JSON (quoted with :q in shell commands)."""
    return json.dumps(value, sort_keys=True)


def sample_files(sample):
    """Per-file (or per-shard) names of a sample: the {file} wildcard of the dump rule."""
    entry = SAMPLES[sample]
    if entry["source"] == "generator":
        return [f"shard_{i}" for i in range(entry["generator"]["shards"])]
    return [file_entry(f)["stem"] for f in entry["files"]]


def inspect_outputs():
    return expand(
        "results/inspect/{sample}/{name}",
        sample=SAMPLES,
        name=["summary.json", "jet_inputs.pdf", "track_inputs.pdf", "ip_significance.pdf",
              "baselines_roc.pdf"],
    )


def export_outputs():
    return expand(
        "results/export/{model}/{name}",
        model=MODELS,
        name=["network.json", "model.onnx", "closure.json", "inputs.json"],
    )


def inject_samples():
    """Samples whose ntuples get scores; a hybrid sample stands for its components."""
    names = config["inject"].get("samples") or config["evaluate"]["samples"]
    out = []
    for name in names:
        entry = SAMPLES[name]
        parts = [entry["hybrid"]["low"], entry["hybrid"]["high"]] if entry["source"] == "hybrid" \
            else [name]
        out += [part for part in parts if part not in out]
    return out


def inject_outputs():
    if not config["inject"]["enabled"]:
        return []
    return [
        f"results/inject/{model}/{sample}/{file}.{ext}"
        for model in MODELS
        for sample in inject_samples()
        for file in sample_files(sample)
        for ext in ("root", "h5")
    ]


def compare_outputs():
    return expand(
        "results/compare/{sample}/{name}",
        sample=config["evaluate"]["samples"],
        name=["metrics.json", "rejections.md", "roc.pdf"],
    )


def evaluate_outputs():
    return expand(
        "results/evaluate/{model}/{sample}/{name}",
        model=MODELS,
        sample=config["evaluate"]["samples"],
        name=["metrics.json", "roc.pdf", "discriminant.pdf", "training.pdf"],
    )
