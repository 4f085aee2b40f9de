"""pytest plugin: under CI (``CI`` set to a true value) a skipped test fails the run unless
its node id starts with an entry of the allow-list ``tests/skip_allowlist.txt``.

Why: a module-level ``importorskip`` (keras, onnx, onnxruntime, pythia8mc, fastjet) turns a
broken install into ~40 quiet skips and a green run. Outside CI skips stay skips (a laptop
without Pythia runs the rest). The allow-list file can be replaced with the environment
variable ``FLAVOURFLOW_SKIP_ALLOWLIST`` (a path), which the plugin's own test uses.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DEFAULT_ALLOWLIST = Path(__file__).with_name("skip_allowlist.txt")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def allowlist() -> dict[str, str]:
    """Node-id prefix -> reason, from the allow-list file (``prefix  # reason`` per line)."""
    path = Path(os.environ.get("FLAVOURFLOW_SKIP_ALLOWLIST") or DEFAULT_ALLOWLIST)
    entries = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            prefix, _, reason = line.partition("#")
            if prefix.strip():
                entries[prefix.strip()] = reason.strip()
    return entries


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _in_ci():
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    allowed = allowlist()
    unexpected = []
    for report in reporter.stats.get("skipped", []):
        nodeid = report.nodeid or str(getattr(report, "fspath", ""))
        if not any(nodeid.startswith(prefix) for prefix in allowed):
            reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else \
                str(report.longrepr)
            unexpected.append(f"{nodeid or '(collection)'}: {reason}")
    if unexpected:
        reporter.write_sep("=", "skipped under CI and not on tests/skip_allowlist.txt",
                           red=True)
        for line in unexpected:
            reporter.write_line(f"SKIP FAILS CI: {line}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
