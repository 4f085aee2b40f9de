"""Defaults of the stages' settings, read from the one place that defines them: the config
schema (``flavourflow/config.schema.yaml``, installed with the package; the workflow's
``workflow/schemas/config.schema.yaml`` is a link to it), key ``default``.

The CLIs and the Python API take their defaults from here, so that ``flavourflow export`` run
by hand closes the network on as many jets as the workflow does (``export.min_jets`` was
10 000 in the schema but 1 in the CLI and the API), and ``fetch.*`` is defined once instead of
in four places. Stdlib and PyYAML only: the workflow reads it when the DAG is built.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml

SCHEMA = Path(__file__).resolve().parents[1] / "config.schema.yaml"


@cache
def _schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA.read_text())


def default(key: str) -> Any:
    """The schema's default of the dotted config key ``key`` (e.g. ``export.min_jets``)."""
    node = _schema()
    for part in key.split("."):
        node = node["properties"][part]
    return node["default"]
