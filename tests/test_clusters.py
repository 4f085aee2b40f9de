"""The workflow on real clusters, through the users' profiles: a single-node SLURM
(`.ci/slurm-up.sh`: slurmctld, slurmd, munged) and a one-machine HTCondor pool in a Debian 13
chroot (`.ci/htcondor-up.sh`), each with one fake GPU, with CI's fast status checks laid over
the profiles (`.ci/profiles/<name>`, a workflow profile). What ran as a batch job, its state
and its GPU are read from the scheduler (squeue; condor_history), not from Snakemake's output.

Without a cluster up these tests skip; with FLAVOURFLOW_REQUIRE_CLUSTERS set (`.ci/run` sets it
after starting both) a missing cluster fails them."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from test_workflow import copy_checkout, planned_jobs

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "tests" / "cluster" / "Snakefile"
# the grouped rules of both profiles, by group
GROUPS = {"inspect": {"inspect"}, "performance": {"evaluate", "compare"}, "inject": {"inject"}}
TIMEOUT = 900
pytestmark = pytest.mark.slow  # each test runs Snakemake and batch jobs: 20 s to 4 min


def _unavailable(reason: str) -> None:
    if os.environ.get("FLAVOURFLOW_REQUIRE_CLUSTERS"):  # set by .ci/run, which starts them
        pytest.fail(f"FLAVOURFLOW_REQUIRE_CLUSTERS is set but {reason}")
    pytest.skip(reason)


@dataclass
class Job:
    """One batch job as the scheduler recorded it."""

    id: int
    name: str  # the rule, or the group's name for a group job
    ok: bool
    gpus: str  # what the scheduler gave it ("" for none)


class Slurm:
    """Runs Snakemake on this host through profiles/slurm, in a copy of the checkout; the jobs
    run as root (SlurmUser) on the same filesystem."""

    name = "slurm"

    def __init__(self) -> None:
        if not shutil.which("squeue"):
            _unavailable("no SLURM client (bash .ci/slurm-up.sh)")
        state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
        if state.returncode != 0 or not re.search(r"idle|mix|alloc", state.stdout):
            _unavailable(f"no SLURM node takes jobs (bash .ci/slurm-up.sh): {state.stdout}"
                         f"{state.stderr}".strip())

    def workdir(self, tmp_path: Path) -> Path:
        return tmp_path

    def host(self, work: Path) -> Path:
        return work

    def snakemake(self, work: Path, *args: str, overlay: Path | None = None
                  ) -> subprocess.CompletedProcess:
        overlay = overlay or ROOT / ".ci/profiles/slurm"
        return subprocess.run(
            [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm",
             "--workflow-profile", str(overlay), *args],
            cwd=work, capture_output=True, text=True, timeout=TIMEOUT)

    def jobs(self, work: Path) -> list[Job]:
        """The batch jobs whose working directory was `work` (squeue keeps finished jobs for
        MinJobAge = 3600 s there); the plugin's comment names the rule or the group job."""
        out = subprocess.run(
            ["squeue", "-h", "--states=all",
             "--Format=JobID:|,State:|,tres-per-job:|,WorkDir:|,Comment:"],
            capture_output=True, text=True, check=True).stdout
        jobs = []
        for line in out.splitlines():
            jobid, state, tres, workdir, comment = (f.strip() for f in line.split("|", 4))
            if workdir != str(work):
                continue
            name = re.match(r"rule_(.+?)(_wildcards_.*)?$", comment).group(1)
            jobs.append(_job(int(jobid), name, state == "COMPLETED",
                             "" if tres in ("N/A", "(null)") else tres))
        return sorted(jobs, key=lambda j: j.id)


class HTCondor:
    """Runs Snakemake in the pool's chroot as its unprivileged submitter, through
    profiles/htcondor; the checkout and its Python are bound at the same paths there."""

    name = "htcondor"

    def __init__(self) -> None:
        self.root = Path(os.environ.get("CONDOR_ROOT", "/tmp/condor-root"))
        self.user = os.environ.get("CONDOR_USER", "ci")
        if os.geteuid() != 0 or not (self.root / "usr/sbin/condor_master").exists():
            _unavailable(f"no HTCondor chroot at {self.root} (bash .ci/htcondor-up.sh, as root)")
        for path in (ROOT / "pyproject.toml", Path(sys.executable)):
            if not (self.root / path.relative_to("/")).exists():
                _unavailable(f"{path} is not bound into {self.root} (bash .ci/htcondor-up.sh)")
        status = self._chroot("condor_status", "-af", "Name")
        if status.returncode != 0 or not status.stdout.strip():
            _unavailable(f"the HTCondor pool in {self.root} is not up (bash .ci/htcondor-up.sh)")

    def _chroot(self, *command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["chroot", str(self.root), *command], capture_output=True,
                              text=True, timeout=TIMEOUT)

    def workdir(self, tmp_path: Path) -> Path:
        """A folder of the submitter's home in the chroot (its path inside the chroot)."""
        home = self.root / "home" / self.user
        inside = Path("/") / Path(tempfile.mkdtemp(dir=home, prefix="pytest-")).relative_to(
            self.root)
        return inside

    def host(self, work: Path) -> Path:
        """Where `work` (a path inside the chroot) is on this host."""
        return self.root / work.relative_to("/")

    def snakemake(self, work: Path, *args: str, overlay: Path | None = None
                  ) -> subprocess.CompletedProcess:
        self._chroot("chown", "-R", f"{self.user}:{self.user}", str(work))
        overlay = overlay or ROOT / ".ci/profiles/htcondor"
        command = shlex.join([sys.executable, "-m", "snakemake", "--profile", "profiles/htcondor",
                              "--workflow-profile", str(overlay), *args])
        return self._chroot("runuser", "-u", self.user, "--", "/usr/bin/env", "-i",
                            f"HOME=/home/{self.user}", "PATH=/usr/bin:/bin", "LANG=C.UTF-8",
                            "bash", "-c", f"cd {shlex.quote(str(work))} && {command}")

    def jobs(self, work: Path) -> list[Job]:
        """The jobs of the schedd's history whose initial directory was `work`; the plugin's
        batch name is `<rule>-<job>` or, for a group job, `<group>_<rules>-<uuid>`."""
        out = self._chroot("condor_history", "-constraint", f'Iwd == "{work}"', "-af:,",
                           "ClusterId", "JobBatchName", "ExitCode", "AssignedGPUs", "Owner")
        assert out.returncode == 0, out.stderr
        jobs = []
        for line in out.stdout.splitlines():
            cluster, batch, code, gpus, owner = (f.strip() for f in line.split(",", 4))
            assert owner == self.user, line  # never root
            name = re.match(r"(.+?)-(\d+|[0-9a-f-]{36})$", batch).group(1)
            jobs.append(_job(int(cluster), name, code == "0",
                             "" if gpus == "undefined" else gpus))
        return sorted(jobs, key=lambda j: j.id)


def _job(jobid: int, name: str, ok: bool, gpus: str) -> Job:
    """A job named `<rule>`, or `<group>_<its rules>` for a group job."""
    group, _, rules = name.partition("_")
    if group in GROUPS:
        assert set(rules.split("_")) == GROUPS[group], name
        return Job(jobid, group, ok, gpus)
    return Job(jobid, name, ok, gpus)


@pytest.fixture(scope="module", params=[Slurm, HTCondor], ids=["slurm", "htcondor"])
def cluster(request: pytest.FixtureRequest) -> Slurm | HTCondor:
    return request.param()


def _checkout(cluster: Slurm | HTCondor, tmp_path: Path) -> tuple[Path, Path]:
    """(path Snakemake sees, path on this host) of a fresh copy of the workflow, its config,
    code and profiles: users run a profile from the checkout's root."""
    work = cluster.workdir(tmp_path)
    host = cluster.host(work)
    copy_checkout(host)
    shutil.copytree(ROOT / "profiles", host / "profiles")
    shutil.copy(RULES, host / "Snakefile")
    return work, host


def _run(cluster, work: Path, *args: str, ok: bool = True, overlay: Path | None = None
         ) -> tuple[str, float]:
    """Snakemake's output and wall time, after checking its exit status."""
    start = time.monotonic()
    result = cluster.snakemake(work, *args, overlay=overlay)
    output = result.stdout + result.stderr
    assert (result.returncode == 0) == ok, f"snakemake {args}: rc {result.returncode}\n" + \
        output[-6000:]
    return output, time.monotonic() - start


def _without_transformer(host: Path) -> tuple[str, str]:
    """The tiny config less its transformer, as --configfile arguments: its ONNX-only rules
    are plain rules to a scheduler (test_workflow's tiny run covers them), and its training
    and conversion would add minutes to each cluster's run."""
    tiny = yaml.safe_load((host / "config/tiny.yaml").read_text())
    del tiny["models"]["transformer"]
    (host / "cluster.yaml").write_text(yaml.safe_dump(tiny))
    return ("--configfile", "cluster.yaml")


def test_tiny_config_every_job_a_batch_job(cluster, tmp_path: Path, capsys) -> None:
    """The tiny config through the profile: every job but `all` ran as a batch job (the
    small ones as group jobs), all succeeded, train asked for and got the fake GPU."""
    work, host = _checkout(cluster, tmp_path)
    tiny = _without_transformer(host)
    wanted = planned_jobs(host, *tiny)  # {rule: jobs}, Snakemake's plan without groups
    _, seconds = _run(cluster, work, "--snakefile", "workflow/Snakefile", *tiny)
    with capsys.disabled():
        print(f"\ntiny config through profiles/{cluster.name}: {seconds:.0f} s")
    jobs = cluster.jobs(work)
    assert jobs and all(job.ok for job in jobs), jobs
    single = Counter(job.name for job in jobs if job.name not in GROUPS)
    assert single == {rule: n for rule, n in wanted.items()
                      if rule != "all" and not any(rule in g for g in GROUPS.values())}
    groups = Counter(job.name for job in jobs if job.name in GROUPS)
    assert groups == {"inspect": 1, "performance": 1, "inject": 1}  # one sample
    assert {job.gpus for job in jobs if job.name == "train"} == {
        "gres:gpu:1" if cluster.name == "slurm" else "fakegpu0"}
    assert (host / "results/compare/ttbar/rejections.md").exists()
    for err in host.glob(".snakemake/htcondor/**/*.err"):  # job.sh's no-GPU note: nowhere
        assert "no GPU for this job" not in err.read_text(), err
    assert len(list((host / "results/inject").rglob("*.root"))) == wanted["inject"]


def test_failing_job_fails_the_run_and_a_retry_recovers_a_transient_one(
        cluster, tmp_path: Path) -> None:
    """In one run (--keep-going): a job that always fails is submitted three times (the
    profile's retries: 2), reported, and fails the run; a job that fails once only is submitted
    again and succeeds. The scheduler saw exactly those jobs."""
    work, host = _checkout(cluster, tmp_path)
    output, _ = _run(cluster, work, "broken.txt", "flaky.txt", "--keep-going", ok=False)
    assert "Error in rule broken" in output and "Error in rule flaky" in output
    assert (host / "flaky.txt").read_text() == "recovered\n"
    assert not (host / "broken.txt").exists()
    jobs = cluster.jobs(work)
    assert [job.ok for job in jobs if job.name == "broken"] == [False] * 3
    assert [job.ok for job in jobs if job.name == "flaky"] == [False, True]
    assert len(jobs) == 5


def test_train_no_gpu_node_can_run_does_not_wait_silently(cluster, tmp_path: Path) -> None:
    """A train job asking for more GPUs than any node has: SLURM refuses it at submission and
    the run fails naming it; HTCondor would keep it idle forever, so the profile's request
    drops to no GPU after a wait (1800 s, 15 s here) and job.sh says so in the job's log."""
    work, host = _checkout(cluster, tmp_path)
    if cluster.name == "slurm":
        output, _ = _run(cluster, work, "train.txt", "--set-resources", "train:gpu=2",
                         ok=False)
        assert "Requested node configuration is not available" in output
        assert "Error in rule train" in output
        # SLURM records each refused submission as a job FAILED at once (BadConstraints)
        assert {(job.name, job.ok, job.gpus) for job in cluster.jobs(work)} == {
            ("train", False, "gres:gpu:2")}
        return
    profile = yaml.safe_load((ROOT / "profiles/htcondor/config.yaml").read_text())
    request = profile["set-resources"]["train"]["request_gpus"]
    assert request == "ifThenElse(time() - QDate > 1800, 0, 1)"
    overlay = host / "no-gpu"  # CI's overlay, and train asking for 2 GPUs (the pool has 1)
    overlay.mkdir()
    settings = yaml.safe_load((ROOT / ".ci/profiles/htcondor/config.yaml").read_text())
    settings["set-resources"] = {"train": {
        "request_gpus": request.replace("1800", "15").replace("0, 1)", "0, 2)")}}
    (overlay / "config.yaml").write_text(yaml.safe_dump(settings))
    output, seconds = _run(cluster, work, "train.txt", overlay=work / "no-gpu")
    assert seconds > 15
    assert "fakegpu0" not in (host / "train.txt").read_text()
    [job] = cluster.jobs(work)
    assert job.name == "train" and job.ok and job.gpus == ""
    [err] = (host / ".snakemake/htcondor/train").glob("*.err")
    assert "no GPU for this job" in err.read_text()
