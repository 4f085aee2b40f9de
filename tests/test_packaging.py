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
