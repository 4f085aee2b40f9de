"""Shared fixtures: small real files written by uproot and by the dump stage."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from factories import write_ntuple  # noqa: E402

#: under CI a skipped test fails the run unless it is on tests/skip_allowlist.txt
pytest_plugins = ["ci_skips"]


@pytest.fixture
def ntuple(tmp_path: Path) -> Path:
    """A synthetic 400-event ntuple."""
    return write_ntuple(tmp_path / "sample.root", 400, seed=1)


@pytest.fixture
def dumped(tmp_path: Path, ntuple: Path) -> Path:
    """The synthetic ntuple run through the dump stage."""
    from flavourflow.dump import core
    from flavourflow.dump import ntuple as nt

    out = tmp_path / "dump.h5"
    core.run(ntuple, out, nt.Selection(pt_min=20_000.0, abs_eta_max=2.5), max_tracks=10,
             step_size=150)
    return out
