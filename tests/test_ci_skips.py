"""The CI skip guard (tests/ci_skips.py) on a real pytest run in a child process: under CI a
skip fails the run unless allowed; outside CI it stays a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent


def run(tmp_path: Path, ci: str | None, allow: str = "") -> subprocess.CompletedProcess:
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "def test_runs():\n    pass\n"
        "def test_skips():\n    pytest.skip('no broken_dependency')\n")
    (tmp_path / "allow.txt").write_text(allow)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env |= {"PYTHONPATH": os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]),
            "FLAVOURFLOW_SKIP_ALLOWLIST": str(tmp_path / "allow.txt")}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "ci_skips", "-q",
                           "-p", "no:cacheprovider", str(tmp_path / "test_sample.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, check=False)


def test_skip_fails_ci_unless_allowed(tmp_path: Path) -> None:
    failed = run(tmp_path, "true")
    assert failed.returncode == 1, failed.stdout
    assert "SKIP FAILS CI: test_sample.py::test_skips: Skipped: no broken_dependency" in \
        failed.stdout
    allowed = run(tmp_path, "true", "test_sample.py::test_skips  # needs the moon\n")
    assert allowed.returncode == 0, allowed.stdout
    assert run(tmp_path, None).returncode == 0  # a laptop: a skip is a skip
    assert run(tmp_path, "false").returncode == 0
