"""Packaging: environment.yml mirrors pyproject.toml; the code is ruff clean."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> dict[str, str]:
    """pyproject's dependencies plus those of the `all` extra, as {name: specifier}."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    wanted = list(project["dependencies"])
    for group in re.findall(r"flavourflow\[(.*)\]", extras["all"][0])[0].split(","):
        wanted += extras[group.strip()]
    return dict(_split(r) for r in wanted)


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(.*)", requirement).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def test_environment_yml_lists_the_same_dependencies_as_pyproject() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    listed: dict[str, str] = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            listed.update(_split(d) for d in dep["pip"])
        elif not dep.startswith(("python", "pip")) or dep.startswith("python-"):
            listed.update([_split(dep)])
    assert listed == _requirements()


def test_ruff_clean() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "src", "tests", "benchmarks"],
                            cwd=ROOT,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_non_editable_install_carries_the_schema(tmp_path: Path) -> None:
    """A wheel installed elsewhere (not the checkout) has the config schema the CLIs take
    their defaults from, and `flavourflow export --help` shows the schema's min_jets."""
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "wheel"), str(ROOT)], capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "wheel").glob("flavourflow-*.whl"))
    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target),
         str(wheel)], capture_output=True, text=True, check=False)
    assert installed.returncode == 0, installed.stderr
    assert (target / "flavourflow" / "config.schema.yaml").is_file()
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    expected = schema["properties"]["export"]["properties"]["min_jets"]["default"]
    code = ("import flavourflow.core.defaults as d; print(d.SCHEMA); "
            "print(d.default('export.min_jets'))")
    run = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, "
                          f"{str(target)!r}); {code}"], capture_output=True, text=True,
                         check=False, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    where, value = run.stdout.split()
    assert where.startswith(str(target)) and int(value) == expected
