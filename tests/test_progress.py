"""Progress reports for real: stage CLIs (dump, generate) with stderr to a file get whole
log lines (count done / total, rate, time left) and no carriage return; under a pseudo-terminal
they draw a live bar; the off switch silences them; outputs are the same either way."""

from __future__ import annotations

import fcntl
import logging
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import awkward as ak
import h5py
import pytest
from factories import write_ntuple

from flavourflow.core import progress

N_EVENTS = 3000
STEP = 500
#: A dump progress line: "dump sample.root: 1500/3000 events (50%) in 00:00, 15441 events/s,
#: 00:00 left, 4244 jets".
DUMP_LINE = re.compile(r"flavourflow\.progress INFO dump sample\.root: (\d+)/3000 events "
                       r"\((\d+)%\) in \d\d:\d\d, ([\d.]+) events/s, \d\d:\d\d left, (\d+) jets$")


def _env(**changes: str | None) -> dict[str, str]:
    """This environment without any progress setting of the caller's, plus ``changes``."""
    env = {k: v for k, v in os.environ.items()
           if k not in (progress.ENV, progress.ENV_INTERVAL, "TQDM_DISABLE")}
    env.update({k: v for k, v in changes.items() if v is not None})
    return env


def _cli(args: list[str], log: Path, **env: str | None) -> None:
    """Run ``flavourflow *args`` with stderr to the file ``log`` (as Snakemake does)."""
    with open(log, "wb") as err:
        done = subprocess.run([sys.executable, "-m", "flavourflow", *args], stderr=err,
                              stdout=subprocess.DEVNULL, env=_env(**env), check=False)
    assert done.returncode == 0, log.read_text()


def _in_terminal(args: list[str], **env: str | None) -> bytes:
    """Run ``flavourflow *args`` with stdout and stderr on a pseudo-terminal (100 columns);
    return what it drew."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "flavourflow", *args], stdin=slave,
                            stdout=slave, stderr=slave, env=_env(**env))
    os.close(slave)
    out = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        out += data
    os.close(master)
    assert proc.wait(timeout=60) == 0, out.decode(errors="replace")
    return out


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ntuple(tmp_path_factory.mktemp("progress") / "sample.root", N_EVENTS, seed=3)


def _dump(sample: Path, out: Path) -> list[str]:
    return ["dump", "--input", str(sample), "--output", str(out), "--step-size", str(STEP)]


def test_dump_log_has_whole_progress_lines_and_the_same_output(sample: Path,
                                                               tmp_path: Path) -> None:
    log = tmp_path / "dump.log"
    _cli(_dump(sample, tmp_path / "on.h5"), log, FLAVOURFLOW_PROGRESS_INTERVAL="0")
    raw = log.read_bytes()
    assert b"\r" not in raw and b"\x1b" not in raw  # no redraws, no cursor moves
    lines = [m for line in raw.decode().splitlines() if (m := DUMP_LINE.search(line))]
    # interval 0: a line at every update, i.e. after each block (and one at 0 events, before
    # any jet); no closing line repeating the last
    assert [int(m[1]) for m in lines] == list(range(STEP, N_EVENTS + 1, STEP)), raw.decode()
    assert int(lines[-1][2]) == 100 and all(float(m[3]) > 0 for m in lines)
    with h5py.File(tmp_path / "on.h5") as f:
        assert int(lines[-1][4]) == len(f["jets"])

    # switched off: not a progress line, and the very same file
    _cli(_dump(sample, tmp_path / "off.h5"), tmp_path / "off.log", FLAVOURFLOW_PROGRESS="0",
         FLAVOURFLOW_PROGRESS_INTERVAL="0")
    assert "flavourflow.progress" not in (tmp_path / "off.log").read_text()
    assert (tmp_path / "on.h5").read_bytes() == (tmp_path / "off.h5").read_bytes()


def test_a_job_shorter_than_the_interval_logs_no_progress(sample: Path,
                                                          tmp_path: Path) -> None:
    log = tmp_path / "dump.log"
    _cli(_dump(sample, tmp_path / "out.h5"), log)  # default interval: 10 s, the dump: < 1 s
    text = log.read_text()
    assert "flavourflow.progress" not in text and "dumped" in text


def test_dump_in_a_terminal_draws_a_live_bar(sample: Path, tmp_path: Path) -> None:
    drawn = _in_terminal(_dump(sample, tmp_path / "tty.h5")).decode()
    redraws = [part for part in drawn.split("\r") if part.startswith("dump sample.root:")]
    assert len(redraws) >= 2  # drawn at the start, redrawn in place (at most every 0.1 s)
    assert "100%|" in drawn and f"{N_EVENTS}/{N_EVENTS} [" in drawn and "events/s" in drawn
    # the off switch silences the bar
    quiet = _in_terminal(_dump(sample, tmp_path / "quiet.h5"), TQDM_DISABLE="1").decode()
    assert "dump sample.root:" not in quiet
    assert (tmp_path / "tty.h5").read_bytes() == (tmp_path / "quiet.h5").read_bytes()


def test_generate_logs_events_done(tmp_path: Path) -> None:
    pytest.importorskip("pythia8mc")
    pytest.importorskip("fastjet")
    uproot = pytest.importorskip("uproot")
    args = ["generate", "--events", "40", "--seed", "5"]
    _cli([*args, "--output", str(tmp_path / "on.root")], tmp_path / "on.log",
         FLAVOURFLOW_PROGRESS_INTERVAL="0")
    raw = (tmp_path / "on.log").read_bytes()
    assert b"\r" not in raw
    last = re.findall(r"generate ttbar shard 0: (\d+)/40 events \(100%\) in \d\d:\d\d, "
                      r"([\d.]+ events/s|[\d.]+ s each), \d\d:\d\d left, (\d+) jets", raw.decode())
    assert last and last[-1][0] == "40", raw.decode()
    _cli([*args, "--output", str(tmp_path / "off.root")], tmp_path / "off.log",
         FLAVOURFLOW_PROGRESS="0")
    # a ROOT file records when it was written: compare the contents
    with uproot.open(tmp_path / "on.root") as on, uproot.open(tmp_path / "off.root") as off:
        a, b = on["events"].arrays(), off["events"].arrays()
        assert a.fields == b.fields
        for key in a.fields:
            assert ak.array_equal(a[key], b[key], equal_nan=True), key
        assert int(last[-1][2]) == ak.count(a["jet_pt"])


def test_log_lines_in_process(monkeypatch: pytest.MonkeyPatch,
                              caplog: pytest.LogCaptureFixture) -> None:
    """The line format (slow jobs: seconds per item), one closing line, the off switches."""
    monkeypatch.delenv(progress.ENV, raising=False)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setenv(progress.ENV_INTERVAL, "0")
    caplog.set_level(logging.INFO, logger="flavourflow.progress")
    assert not progress.live()  # pytest captures stderr
    assert list(progress.track(range(3), 3, "job", "epochs")) == [0, 1, 2]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4 and lines[-1].startswith("job: 3/3 epochs (100%) in 00:00, ")
    line = progress._LogBar.format_meter(3, 10, 95.0, "train m", "epochs",
                                         postfix="loss=0.52")
    assert line == "train m: 3/10 epochs (30%) in 01:35, 31.7 s each, 03:41 left, loss=0.52"
    for off in ((progress.ENV, "0"), ("TQDM_DISABLE", "1")):
        caplog.clear()
        with monkeypatch.context() as m:
            m.setenv(*off)
            assert not progress.enabled()
            list(progress.track(range(3), 3, "job", "epochs"))
        assert not caplog.records
