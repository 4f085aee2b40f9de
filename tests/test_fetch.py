"""Remote inputs for real: a local HTTP server on 127.0.0.1 (good file, checksum mismatch,
404, truncated transfers, a transient failure), a local XRootD server when Debian's
`xrootd-server` is installed, Rucio without a server, and the workflow fetching then dumping
a remote file with the real snakemake."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

import h5py
import pytest
import yaml
from factories import write_ntuple
from test_dump import run_cli
from test_workflow import copy_checkout, planned_jobs, snakemake

from flavourflow.dump import core
from flavourflow.dump.blocks import Selection

FAST = ("--retries", "2", "--backoff", "0.01")


class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; `/truncated/<f>` announces the whole file but sends half and hangs
    up; `/flaky/<f>` does so on the first GET only; `/busy/<f>` answers 503 once;
    `/private/<f>` answers 403."""

    requests: Counter

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def _special(self, head: bool) -> bool:
        self.requests[(self.command, self.path)] += 1
        kind, _, name = self.path.lstrip("/").partition("/")
        if kind not in ("truncated", "flaky", "busy", "private"):
            return False
        if kind == "private":
            self.send_error(403)
            return True
        data = (Path(self.directory) / name).read_bytes()
        n_get = self.requests[("GET", self.path)]
        if kind == "busy" and self.requests[("HEAD", self.path)] == 1:
            self.send_error(503)
            return True
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if not head:
            cut = kind == "truncated" or (kind == "flaky" and n_get == 1)
            self.wfile.write(data[: len(data) // 2] if cut else data)
            self.wfile.flush()
            self.close_connection = True
        return True

    def do_HEAD(self) -> None:
        if not self._special(head=True):
            super().do_HEAD()

    def do_GET(self) -> None:
        if not self._special(head=False):
            super().do_GET()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """(base URL, served folder, request counter) of a server in a thread."""
    folder = tmp_path_factory.mktemp("served")
    write_ntuple(folder / "good.root", 200, seed=3)
    (folder / "page.root").write_text("<html>not a ROOT file</html>\n")
    handler = type("H", (Handler,), {"requests": Counter()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(handler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", folder, handler.requests
    httpd.shutdown()
    httpd.server_close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(url: str, out: Path, *extra: str):
    return run_cli("fetch", "--url", url, "--output", str(out), *FAST, *extra)


def assert_failed(result, out: Path, url: str, expected: str) -> None:
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0] == result.stderr.strip().splitlines()[-1]
    assert url in errors[0] and expected in errors[0], result.stderr
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_good_file_is_fetched_verified_and_dumped(server, tmp_path: Path) -> None:
    base, folder, _ = server
    out = tmp_path / "in" / "good.root"
    digest = zlib.adler32((folder / "good.root").read_bytes())
    result = fetch(f"{base}/good.root", out, "--sha256", sha256(folder / "good.root"),
                   "--adler32", f"{digest:08x}")
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == (folder / "good.root").read_bytes()
    assert sorted(p.name for p in out.parent.iterdir()) == ["good.root"]
    n = core.run(out, tmp_path / "good.h5", Selection(20_000.0, 2.5), 10, 100)
    assert n > 0


def test_checksum_mismatch_fails_without_output(server, tmp_path: Path) -> None:
    base, folder, requests = server
    out = tmp_path / "in" / "good.root"
    wrong = "0" * 64
    result = fetch(f"{base}/good.root", out, "--sha256", wrong)
    assert_failed(result, out, f"{base}/good.root", f"sha256 checksum mismatch: got "
                  f"{sha256(folder / 'good.root')}, expected {wrong}")


def test_missing_file_fails_at_once(server, tmp_path: Path) -> None:
    base, _, requests = server
    out = tmp_path / "in" / "nothere.root"
    result = fetch(f"{base}/nothere.root", out)
    assert_failed(result, out, f"{base}/nothere.root", "not found on the server (HTTP 404)")
    assert requests[("HEAD", "/nothere.root")] == 1 and requests[("GET", "/nothere.root")] == 0


def test_access_refused_fails_at_once(server, tmp_path: Path) -> None:
    base, _, requests = server
    out = tmp_path / "in" / "good.root"
    result = fetch(f"{base}/private/good.root", out)
    assert_failed(result, out, f"{base}/private/good.root",
                  "access refused by the server (HTTP 403)")
    assert "retrying" not in result.stderr
    assert requests[("HEAD", "/private/good.root")] == 1


def test_truncated_transfer_is_retried_then_fails(server, tmp_path: Path) -> None:
    base, _, requests = server
    out = tmp_path / "in" / "good.root"
    result = fetch(f"{base}/truncated/good.root", out)
    assert_failed(result, out, f"{base}/truncated/good.root", "transfer failed after 3 attempt")
    assert requests[("GET", "/truncated/good.root")] == 3  # 1 + --retries 2
    assert result.stderr.count("retrying in") == 2


def test_transient_failures_are_retried(server, tmp_path: Path) -> None:
    base, folder, requests = server
    for kind in ("flaky", "busy"):
        out = tmp_path / kind / "good.root"
        result = fetch(f"{base}/{kind}/good.root", out, "--sha256", sha256(folder / "good.root"))
        assert result.returncode == 0, result.stderr
        assert out.read_bytes() == (folder / "good.root").read_bytes()
    assert requests[("GET", "/flaky/good.root")] == 2
    assert requests[("HEAD", "/busy/good.root")] == 3  # 503, then exists + size


def test_a_page_that_is_not_root_is_refused(server, tmp_path: Path) -> None:
    base, _, _ = server
    out = tmp_path / "in" / "page.root"
    assert_failed(fetch(f"{base}/page.root", out), out, f"{base}/page.root", "not a ROOT file")


def test_workflow_fetches_then_dumps_a_remote_sample(server, tmp_path: Path) -> None:
    base, folder, _ = server
    work = copy_checkout(tmp_path)
    url = f"{base}/good.root"
    overlay = {"samples": {"remote": {"source": "files", "format": "flavourflow", "files": [
        {"url": url, "checksum": {"sha256": sha256(folder / "good.root")}}]}},
        "fetch": {"retries": 1, "backoff_s": 0.01}}
    (work / "remote.yaml").write_text(yaml.safe_dump(overlay))
    snakemake(work, "results/merge/remote.h5", "--cores", "1", "--configfile", "remote.yaml")
    assert (work / "resources/fetch/remote/good.root").read_bytes() == \
        (folder / "good.root").read_bytes()
    with h5py.File(work / "results/merge/remote.h5") as f:
        assert len(f["jets"]) > 0 and url in (work / "logs/fetch/remote/good.log").read_text()
    assert planned_jobs(work, "results/merge/remote.h5", "--configfile", "remote.yaml") == {}


def test_rucio_dids_plan_a_fetch_and_fail_cleanly_without_a_server(tmp_path: Path) -> None:
    work = copy_checkout(tmp_path)
    did = "rucio://mc20_13TeV/DAOD_PHYSLITE.37621409._000001.pool.root.1"
    overlay = {"samples": {"grid": {"source": "files", "format": "physlite", "files": [
        {"url": did, "checksum": {"adler32": "0a1b2c3d"}}]}}}
    (work / "grid.yaml").write_text(yaml.safe_dump(overlay))
    assert planned_jobs(work, "results/merge/grid.h5", "--configfile", "grid.yaml") == {
        "fetch": 1, "dump": 1, "merge": 1}
    config = tmp_path / "rucio.cfg"
    port = _free_port()
    config.write_text(f"[client]\nrucio_host = http://127.0.0.1:{port}\n"
                      f"auth_host = http://127.0.0.1:{port}\naccount = nobody\n"
                      "auth_type = userpass\nusername = nobody\npassword = none\n")
    out = tmp_path / "grid" / "f.root"
    env = {**os.environ, "RUCIO_CONFIG": str(config)}
    result = subprocess.run([*run_cli_prefix(), "fetch", "--url", did, "--output", str(out),
                             *FAST], capture_output=True, text=True, env=env, check=False)
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and did in last and "Cannot connect to the Rucio server" in last
    assert not out.exists()
    result = subprocess.run([*run_cli_prefix(), "fetch", "--url", did, "--output", str(out)],
                            capture_output=True, text=True, check=False,
                            env={**env, "RUCIO_CONFIG": str(tmp_path / "none.cfg")})
    assert result.returncode == 1 and "ConfigLoadingError" in result.stderr
    assert "retrying" not in result.stderr  # a configuration error is not transient


def run_cli_prefix() -> list[str]:
    code = "import sys\nfrom flavourflow.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return [sys.executable, "-c", code]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- XRootD: a real server, when Debian's xrootd-server is installed --------------------------


@pytest.fixture(scope="module")
def xrootd_server(tmp_path_factory: pytest.TempPathFactory):
    binary = shutil.which("xrootd")
    if binary is None:
        if os.environ.get("FLAVOURFLOW_REQUIRE_XROOTD"):  # set by .ci/run, which installs it
            pytest.fail("FLAVOURFLOW_REQUIRE_XROOTD is set but there is no xrootd binary")
        pytest.skip("no xrootd server (apt-get install xrootd-server)")
    # xrootd refuses to run as root; then it drops to the `xrootd` user the package creates,
    # which needs world-readable data and a writable admin/log folder.
    base = Path(tempfile.mkdtemp(prefix="flavourflow-xrd-"))
    data, admin = base / "data", base / "admin"
    data.mkdir()
    admin.mkdir()
    write_ntuple(data / "good.root", 200, seed=4)
    for path in (base, data, data / "good.root"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    admin.chmod(0o777)
    port = _free_port()
    (base / "xrd.cfg").write_text(f"all.export /\noss.localroot {data}\nxrd.port {port}\n"
                                  f"all.adminpath {admin}\nall.pidpath {admin}\n")
    user = ["-R", "xrootd"] if os.geteuid() == 0 else []
    process = subprocess.Popen([binary, *user, "-c", str(base / "xrd.cfg"), "-l",
                                str(admin / "xrootd.log"), "-n", "flavourflow"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if process.poll() is not None:
                pytest.fail(f"xrootd exited with {process.returncode}")
            time.sleep(0.1)
    yield f"root://127.0.0.1:{port}/", data
    process.terminate()
    process.wait(timeout=10)
    shutil.rmtree(base, ignore_errors=True)


def test_xrootd_good_missing_and_mismatch(xrootd_server, tmp_path: Path) -> None:
    base, data = xrootd_server
    good = data / "good.root"
    digest = f"{zlib.adler32(good.read_bytes()):08x}"
    out = tmp_path / "x" / "good.root"
    result = fetch(f"{base}/good.root", out, "--adler32", digest)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes() == good.read_bytes()
    out = tmp_path / "y" / "good.root"
    assert_failed(fetch(f"{base}/good.root", out, "--adler32", "00000000"), out,
                  f"{base}/good.root", "adler32 checksum mismatch")
    out = tmp_path / "z" / "missing.root"
    assert_failed(fetch(f"{base}/missing.root", out), out, f"{base}/missing.root",
                  "not found on the server")
