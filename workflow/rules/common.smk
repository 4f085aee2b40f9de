# Configuration, wildcards and input functions shared by all rules.

import ast
import copy
import hashlib
import importlib.metadata
import itertools
import json
import re
import sys
from functools import cache
from pathlib import Path

import yaml

from snakemake.settings.types import DeploymentMethod
from snakemake.utils import validate


def _merged(base, override):
    """``override`` over ``base``: mappings merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **{k: _merged(base.get(k), v) for k, v in override.items()}}
    return copy.deepcopy(override)


def _resolve_models(models):
    """Each model with `base: <name>` as that model's entry with its own keys merged over it
    (a base may have a base), so a variant states only what differs."""
    resolved = {}

    def resolve(name, seen):
        if name in resolved:
            return resolved[name]
        entry = models[name]
        if "base" not in entry:
            resolved[name] = entry
            return entry
        base = entry["base"]
        if base not in models:
            raise ValueError(f"config: models.{name}.base: no model '{base}'")
        if base in seen:
            raise ValueError(f"config: models.{name}.base: a cycle ({' -> '.join(seen)})")
        own = {k: v for k, v in entry.items() if k != "base"}
        resolved[name] = _merged(resolve(base, [*seen, base]), own)
        return resolved[name]

    for name in models:
        resolve(name, [name])
    return resolved


def scan_points(scan, entry=None):
    """A scan's variants `<scan>_<i>` and the grid values of each ({dotted key: value}), in
    the product order of the grid's sorted keys."""
    entry = entry or config["scan"][scan]
    keys = sorted(entry["grid"])
    return {f"{scan}_{i}": dict(zip(keys, values)) for i, values in
            enumerate(itertools.product(*(entry["grid"][k] for k in keys)))}


def _scan_variants(scans, models):
    """The `scan` block as model variants, each `base: <scan's base>` with a point's values
    set at their dotted keys."""
    variants = {}
    for scan, entry in scans.items():
        if entry["base"] not in models:
            raise ValueError(f"config: scan.{scan}.base: no model '{entry['base']}'")
        for name, point in scan_points(scan, entry).items():
            if name in models:
                raise ValueError(f"config: scan.{scan}: variant '{name}' is also in models")
            variant = {"base": entry["base"]}
            for key, value in point.items():
                *path, last = key.split(".")
                node = variant
                for part in path:
                    node = node.setdefault(part, {})
                node[last] = value
            variants[name] = variant
    return variants


config.setdefault("scan", {})
config.setdefault("studies", {})
config["models"] = _resolve_models({**config.get("models", {}),
                                    **_scan_variants(config["scan"], config.get("models", {}))})
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
# The config checks that need the code's own lists (stdlib only: nothing heavy is imported).
sys.path.insert(0, str(SRC))
from flavourflow.core import configcheck  # noqa: E402
from flavourflow.core.defaults import default  # noqa: E402
# HDF5 file locking off for every job where the filesystem cannot lock (hdf5_file_locking).
if not config.get("hdf5_file_locking", default("hdf5_file_locking")):
    os.environ["HDF5_USE_FILE_LOCKING"] = "FALSE"
# The interpreter running Snakemake, unless jobs run in their own conda environments.
_USE_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
PYTHON = "python" if _USE_CONDA else sys.executable
FLAVOURFLOW = f"{PYTHON} -m flavourflow"

SAMPLES = config["samples"]
MODELS = config["models"]
STUDIES = config["studies"]


# ---- the code each stage runs: the import graph of src/flavourflow ----------------------

_PACKAGE = SRC / "flavourflow"


def _module_path(name):
    """The file of module ``flavourflow.x.y`` (a package's __init__.py), or None."""
    base = _PACKAGE.parent.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _module_name(path):
    parts = path.relative_to(_PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _imports(path):
    """(flavourflow modules, other top-level modules) that ``path`` imports anywhere in it,
    function-level imports included: those run too."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    ours, theirs = set(), set()
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target_module = f"{anchor}.{node.module}" if node.module else anchor
            else:
                target_module = node.module
            # `from package import module` imports the module too
            targets = [target_module] + [f"{target_module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] != "flavourflow":
                theirs.add(target.split(".")[0])
                continue
            parts = target.split(".")
            for i in range(1, len(parts) + 1):  # a module's parent packages are imported too
                if (module_path := _module_path(".".join(parts[:i]))) is not None:
                    ours.add(module_path)
    return frozenset(ours), frozenset(theirs)


@cache
def _closure(stage):
    """Files of the modules ``flavourflow <stage>`` can run: the CLI's entry modules, the
    stage's package and everything they import, transitively (the CLI imports its stages by
    name, so the other stages are not in it); and the other top-level modules imported."""
    stage_dir = _PACKAGE / stage
    todo = [_PACKAGE / "__init__.py", _PACKAGE / "__main__.py", _PACKAGE / "cli.py",
            *sorted(stage_dir.glob("*.py"))]
    files, others = set(), set()
    while todo:
        path = todo.pop()
        if path in files:
            continue
        files.add(path)
        ours, theirs = _imports(path)
        others |= theirs
        todo += sorted(ours - files)
    return sorted(files), frozenset(others - set(sys.stdlib_module_names))


@cache
def code(stage):
    """The source files the stage runs, as {path relative to src/: sha256 of the content}: a
    rule's params, so that editing one reruns the rule, while a moved or copied checkout or
    a `touch` reruns nothing. (Params, not inputs: Snakemake looks each input up among all
    rules' outputs, for every job, which made planning thousands of files take minutes.)"""
    return {path.relative_to(SRC).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in _closure(stage)[0]}


@cache
def _distributions():
    return importlib.metadata.packages_distributions()


@cache
def _installed(module):
    """{distribution: version} of the installed distributions providing a top-level module."""
    try:  # mostly the distribution has the module's name, and a look-up by name is quick
        return {module: importlib.metadata.version(module)}
    except importlib.metadata.PackageNotFoundError:  # yaml -> PyYAML: a scan of them all
        return {dist: importlib.metadata.version(dist)
                for dist in _distributions().get(module, [])}


def versions(stage):
    """Versions of the installed distributions the stage's code imports (a rule's params: a
    version bump reruns the stages that import it). With per-rule conda environments the
    environment files stand for them (Snakemake's software-env trigger)."""
    if _USE_CONDA:
        return {}
    return {dist: version for module in sorted(_closure(stage)[1])
            for dist, version in _installed(module).items()}


def file_entry(item):
    """One `files` item -> {stem, location (local path or URL), remote, checksum}."""
    from urllib.parse import urlparse

    item = {"url": item} if isinstance(item, str) else item
    location = item["url"]
    remote = urlparse(location).scheme in ("http", "https", "root", "roots", "xroot", "rucio")
    name = urlparse(location).path if remote else location
    return {"stem": Path(name).stem, "location": location, "remote": remote,
            "checksum": item.get("checksum", {})}


@cache
def file_entries(sample):
    """A files sample's entries by stem, built once (rules look one up per job: rebuilding the
    map each time made planning quadratic in the number of files)."""
    return {entry["stem"]: entry for entry in map(file_entry, SAMPLES[sample]["files"])}


def _check_references():
    """Cross-references the schema can't express, named like the schema names keys."""
    for model, entry in MODELS.items():
        if entry["sample"] not in SAMPLES:
            raise ValueError(f"config: models.{model}.sample: no sample '{entry['sample']}'")
        jets, tracks = entry.get("jet_variables", []), entry.get("track_variables", [])
        over_tracks = entry["architecture"] in ("dips", "transformer")
        if over_tracks and not tracks:
            raise ValueError(f"config: models.{model}.track_variables: "
                             f"{entry['architecture']} needs track inputs")
        if not over_tracks and (tracks or not jets):
            raise ValueError(f"config: models.{model}.track_variables: "
                             f"{entry['architecture']} takes jet_variables only")
        for key in ("log_variables", "log1p_variables"):
            for name in set(entry.get(key, [])) - {*jets, *tracks}:
                raise ValueError(f"config: models.{model}.{key}: '{name}' is not an input")
    for sample in config["evaluate"]["samples"]:
        if sample not in SAMPLES:
            raise ValueError(f"config: evaluate.samples: no sample '{sample}'")
    reference = config["evaluate"].get("reference")
    if reference and reference not in MODELS and reference not in configcheck.baselines():
        raise ValueError(f"config: evaluate.reference: '{reference}' is neither a model nor a "
                         f"baseline ({', '.join(configcheck.baselines())})")
    for sample in config["inject"].get("samples", []):
        if sample not in SAMPLES:
            raise ValueError(f"config: inject.samples: no sample '{sample}'")
    for study, entry in STUDIES.items():
        for sample in entry.get("samples", []):
            if sample not in SAMPLES:
                raise ValueError(f"config: studies.{study}.samples: no sample '{sample}'")
        for model in entry.get("models", []):
            if model not in MODELS:
                raise ValueError(f"config: studies.{study}.models: no model '{model}'")
    total = sum(config["preprocess"]["split"].values())
    if abs(total - 1.0) > 1e-9:
        raise ValueError(f"config: preprocess.split: fractions add up to {total}, not 1")
    for sample, entry in SAMPLES.items():
        for part in ("low", "high") if entry["source"] == "hybrid" else ():
            other = entry["hybrid"][part]
            if other not in SAMPLES or SAMPLES[other]["source"] == "hybrid":
                raise ValueError(f"config: samples.{sample}.hybrid.{part}: '{other}' is not a"
                                 " generated or file sample")
        if entry["source"] == "files" and len(file_entries(sample)) != len(entry["files"]):
            raise ValueError(f"config: samples.{sample}.files: file names must be unique")


@cache
def sample_fields(sample):
    """(jet fields, track fields) the dump of ``sample`` writes: every dump's, plus the
    tagger outputs of PHYSLITE or a mapping's extra fields; a hybrid has what both parts have."""
    entry = SAMPLES[sample]
    jets, tracks = configcheck.dump_fields()
    if entry["source"] == "hybrid":
        parts = [sample_fields(entry["hybrid"][p]) for p in ("low", "high")]
        return parts[0][0] & parts[1][0], parts[0][1] & parts[1][1]
    fmt = entry.get("format", "flavourflow") if entry["source"] == "files" else "flavourflow"
    if fmt == "flavourflow":
        tracks = tracks | configcheck.truth_track_fields()
    elif fmt == "physlite":
        jets = jets | configcheck.physlite_tagger_fields()
    elif fmt == "mapping":
        try:
            mapping = yaml.safe_load(Path(entry["mapping"]).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f"config: samples.{sample}.mapping: cannot read "
                             f"{entry['mapping']}: {' '.join(str(err).split())}") from None
        jets = jets | set((mapping.get("jets") or {}) if isinstance(mapping, dict) else ())
    return frozenset(jets), frozenset(tracks)


def _check_models():
    """Each model's inputs exist in the dumps of the samples it trains and is evaluated on,
    and its architecture takes its options: errors before any job, not after dump and
    preprocess."""
    options = configcheck.architecture_options()
    evaluated = set(config["evaluate"]["samples"]) | set(config["inject"].get("samples", []))
    for model, entry in MODELS.items():
        unknown = set(entry.get("options", {})) - options[entry["architecture"]]
        for key in sorted(unknown):
            raise ValueError(f"config: models.{model}.options.{key}: architecture "
                             f"{entry['architecture']} has no such option (it has "
                             f"{sorted(options[entry['architecture']]) or 'none'})")
        aux = sorted(t for t, w in entry.get("aux_tasks", {}).items() if w > 0)
        if aux and entry["architecture"] not in configcheck.aux_architectures():
            raise ValueError(f"config: models.{model}.aux_tasks: architecture "
                             f"{entry['architecture']} has no auxiliary tasks")
        if aux and not entry.get("track_variables"):
            raise ValueError(f"config: models.{model}.aux_tasks: need track_variables")
        for field in sorted(configcheck.truth_track_fields()) if aux else ():
            if field not in sample_fields(entry["sample"])[1]:
                raise ValueError(f"config: models.{model}.aux_tasks: sample "
                                 f"'{entry['sample']}' has no per-track truth '{field}' "
                                 "(PHYSLITE and mapped samples carry none)")
        for sample in dict.fromkeys([entry["sample"], *sorted(evaluated)]):
            jets, tracks = sample_fields(sample)
            for key, fields in (("jet_variables", jets), ("track_variables", tracks)):
                for name in configcheck.missing_inputs(entry.get(key, []), fields):
                    raise ValueError(f"config: models.{model}.{key}: '{name}' is not a field "
                                     f"of the dump of sample '{sample}'")


_check_references()
_check_models()


wildcard_constraints:
    sample="[A-Za-z][A-Za-z0-9_]*",
    model="[A-Za-z][A-Za-z0-9_]*",
    study="[A-Za-z][A-Za-z0-9_]*",
    scan="[A-Za-z][A-Za-z0-9_]*",
    shard=r"\d+",


def as_json(value):
    """Config slices go to the CLI as JSON (quoted with :q in shell commands)."""
    return json.dumps(value, sort_keys=True)


def benchmark(stage, name):
    """Where Snakemake records a job's wall time, CPU time and peak memory."""
    return f"logs/benchmarks/{stage}/{name}.tsv"


def sample_files(sample):
    """Per-file (or per-shard) names of a sample: the {file} wildcard of the dump rule."""
    entry = SAMPLES[sample]
    if entry["source"] == "generator":
        return [f"shard_{i}" for i in range(entry["generator"]["shards"])]
    return list(file_entries(sample))


#: The figures of each stage (stems), in the order the report shows them.
INSPECT_PLOTS = ["jet_inputs", "track_inputs", "ip_significance", "correlations",
                 "baselines_roc"]
EVALUATE_PLOTS = ["roc", "discriminant", "performance_vs_pt", "performance_vs_eta", "fc_scan",
                  "confusion", "training"]


def inspect_outputs():
    return expand(
        "results/inspect/{sample}/{name}",
        sample=SAMPLES,
        name=["summary.json", *(f"{plot}.pdf" for plot in INSPECT_PLOTS)],
    )


#: Models whose architecture lwtnn cannot express: exported to ONNX alone (model.onnx and
#: closure.json, Keras vs onnxruntime), evaluated and injected through onnxruntime.
ONNX_ONLY_MODELS = [m for m, e in MODELS.items()
                    if e["architecture"] in configcheck.onnx_only_architectures()]
LWTNN_MODELS = [m for m in MODELS if m not in ONNX_ONLY_MODELS]


def models_regex(names):
    """A wildcard constraint matching exactly ``names`` (nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def deployed(wildcards):
    """The file a model is deployed as: lwtnn network.json, or model.onnx for ONNX-only."""
    name = "model.onnx" if wildcards.model in ONNX_ONLY_MODELS else "network.json"
    return f"results/export/{wildcards.model}/{name}"


def export_outputs():
    return expand(
        "results/export/{model}/{name}",
        model=LWTNN_MODELS,
        name=["network.json", "model.onnx", "closure.json", "inputs.json"],
    ) + expand("results/export/{model}/{name}", model=ONNX_ONLY_MODELS,
               name=["model.onnx", "closure.json"])


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
        name=["metrics.json", "rejections.md", "rejections.csv", "roc.pdf"],
    ) + expand("results/compare/{sample}/scan_{scan}.md", sample=config["evaluate"]["samples"],
               scan=config["scan"])


def evaluate_outputs():
    return expand(
        "results/evaluate/{model}/{sample}/{name}",
        model=MODELS,
        sample=config["evaluate"]["samples"],
        name=["metrics.json", *(f"{plot}.pdf" for plot in EVALUATE_PLOTS)],
    )


_PROCESSES = {"ttbar": r"$t\bar{t}$", "zprime": r"$Z'$"}


def plot_label(sample, selection=None):
    """The lines under the plots' experiment label: √s and sample, then the jets (the
    dump's selection and an evaluation-time one)."""
    entry = SAMPLES[sample]
    if entry["source"] == "generator":
        gen = entry["generator"]
        first = (f"√s = {gen.get('ecm_gev', 13000) / 1000:g} TeV, "
                 f"{_PROCESSES.get(gen['process'], gen['process'])} (Pythia 8)")
    elif entry["source"] == "hybrid":
        first = f"{sample}: hybrid of {entry['hybrid']['low']} and {entry['hybrid']['high']}"
    else:
        first = f"{sample} ({entry.get('format', 'flavourflow')} files)"
    cuts = config["dump"]["selection"]
    jets = [f"$p_T$ > {cuts['pt_min'] / 1000:g} GeV", f"$|\\eta|$ < {cuts['abs_eta_max']:g}"]
    extra = selection or {}
    jets += [f"$p_T$ > {extra['pt_min'] / 1000:g} GeV"] if "pt_min" in extra else []
    jets += [f"$p_T$ < {extra['pt_max'] / 1000:g} GeV"] if "pt_max" in extra else []
    jets += [f"$|\\eta|$ > {extra['abs_eta_min']:g}"] if "abs_eta_min" in extra else []
    jets += [f"$|\\eta|$ < {extra['abs_eta_max']:g}"] if "abs_eta_max" in extra else []
    return [first, "anti-$k_t$ R = 0.4 jets, " + ", ".join(jets)]


def study_models(study):
    return STUDIES[study].get("models") or list(MODELS)


def study_samples(study):
    return STUDIES[study].get("samples") or config["evaluate"]["samples"]


def study_outputs(study):
    """A study's comparison table per sample: `snakemake results/compare/<sample>.<study>/...`
    builds it, next to (never over) the default evaluation."""
    return expand("results/compare/{sample}.{study}/rejections.md",
                  sample=study_samples(study), study=study)


def failed_job_causes(snakemake_logs):
    """One line per failed job of the run logged in ``snakemake_logs`` (Snakemake's log
    files): its rule, its log and the error line the stage wrote there (`flavourflow <stage>:
    error: ...`), else the log's last line."""
    import re

    paths = [snakemake_logs] if isinstance(snakemake_logs, (str, Path)) else snakemake_logs
    text = ""
    for path in paths or []:
        try:
            text += Path(path).read_text(errors="replace")
        except OSError:
            pass
    lines = []
    for rule, job_log in re.findall(r"Error in rule (\w+):.*?\n\s+log: (.+?) \(check log",
                                    text, flags=re.S):
        try:
            content = [l for l in Path(job_log).read_text(errors="replace").splitlines() if l]
        except OSError:
            continue
        errors = [l for l in content if ": error:" in l] or content[-1:]
        if errors:
            lines.append(f"failed job {rule} ({job_log}): {errors[-1].strip()}")
    return "\n".join(lines)
