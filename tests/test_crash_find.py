"""``kill -9`` while a job is being submitted, then ``exp rerun ID --resume``: every planned job
exists exactly once on its backend.

The record of a job killed mid-submission says only "in doubt" (phase ``rendered`` with
``attempted_at``). Fault points (``NEMORUN_FAULT``, a real SIGKILL at an exact step) give the two
truths behind it: ``after-submit`` (the backend has the job) and ``before-submit`` (it does
not). The backend's ``find`` must tell them apart — by the batch script path on Slurm (no
accounting runs on the test cluster), by labels on Docker, by the job folder locally, by the
name nemorun gave it on Kubeflow and Lepton (their contract servers) — and the count is taken
from the backend's own listing, independent of nemorun's record.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from nemorun.api import Experiment
from tests.fixtures.slurm_cluster import SlurmCluster
from tests.helpers import run_cli
from tests.test_lepton_submit import lepton, lepton_env  # noqa: F401  (fixtures: the fake Lepton workspace)

FAULTS = [("after-submit:0", True), ("before-submit:0", False)]


def _crash_then_resume(args: list[str], env: dict[str, str], fault: str, existed: bool) -> Experiment:
    proc = run_cli(args, env=dict(env, NEMORUN_FAULT=fault))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    exp = Experiment.load("latest", home=env["NEMORUN_HOME"])
    submitted_as = list(exp.meta.get("arrays") or {}) or [j.name for j in exp.jobs]  # an array is sent as one job
    assert [n for n in submitted_as if exp.record.job(n).in_doubt] == submitted_as
    resumed = run_cli(["exp", "rerun", exp.id, "--resume"], env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert ("found on" in resumed.stdout) is existed, resumed.stdout
    assert "warning" not in resumed.stdout
    exp = Experiment(exp.path)
    assert all(j.phase == "submitted" for j in exp.jobs)
    return exp


# ---------------------------------------------------------------- Slurm (the real cluster fixture)
def _slurm_jobs(script: Path) -> list[tuple[str, str]]:
    """(job id, array base id) of every job or array task slurmctld has whose batch script is
    ``script``: the cluster's own listing, one line per array task (``-r``)."""
    r = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-o", "%i|%F|%o"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = [line.split("|", 2) for line in r.stdout.splitlines()]
    return [(i, base) for i, base, command in rows if command == str(script)]


@pytest.mark.slurm
@pytest.mark.parametrize("fault, existed", FAULTS)
def test_slurm_single_job_is_never_duplicated(slurm_cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path,
                                              fault: str, existed: bool) -> None:
    marker = slurm_cluster.jobs_dir / f"ran-{tmp_path.name}.log"
    exp = _crash_then_resume(["executor=slurm", "task=hello", f"task.inline='echo ran >> {marker}'"], cli_env, fault, existed)
    rec = exp.record.job("hello")
    [(job_id, _)] = _slurm_jobs(exp.record.job_dir("hello") / "sbatch.sh")
    assert rec.handle["id"] == job_id
    assert exp.wait(poll=0.5)["hello"].state.value == "SUCCEEDED"
    assert marker.read_text() == "ran\n"


@pytest.mark.slurm
@pytest.mark.parametrize("fault, existed", FAULTS)
def test_slurm_array_sweep_is_never_duplicated(slurm_cluster: SlurmCluster, cli_env: dict[str, str], fault: str, existed: bool) -> None:
    args = ["-m", "executor=slurm", "task=train", "task.params.steps=2", "task.params.lr=0.1,0.2,0.3"]
    exp = _crash_then_resume(args, cli_env, fault, existed)
    assert exp.meta["arrays"] == {"train-array": ["train-0", "train-1", "train-2"]}
    listed = _slurm_jobs(exp.record.job_dir("train-array") / "sbatch.sh")
    [base] = {b for _, b in listed}
    assert len(listed) == 3  # three tasks of one array, not six
    assert exp.record.job("train-array").handle["id"] == base
    assert [j.handle["id"] for j in exp.jobs] == [f"{base}_{i}" for i in range(3)]
    assert {s.state.value for s in exp.wait(poll=0.5).values()} == {"SUCCEEDED"}


@pytest.mark.slurm
def test_slurm_job_found_by_its_logs_once_slurmctld_forgot_it(slurm_cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path) -> None:
    """A job that ended longer than MinJobAge ago is gone from squeue (the fixture keeps jobs
    300 s, so an ``squeue`` on PATH that lists nothing stands in for the purge); the logs Slurm
    wrote in its job dir still prove it ran, so it is not run again."""
    marker = slurm_cluster.jobs_dir / f"ran-{tmp_path.name}.log"
    proc = run_cli(["executor=slurm", "task=hello", f"task.inline='echo ran >> {marker}'"], env=dict(cli_env, NEMORUN_FAULT="after-submit:0"))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    exp = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    [(job_id, _)] = _slurm_jobs(exp.record.job_dir("hello") / "sbatch.sh")
    deadline = time.monotonic() + 60  # a bound on a poll loop, not a timing assertion
    while _slurm_state(job_id) not in ("COMPLETED", "FAILED"):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "squeue").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "squeue").chmod(0o755)
    forgot = dict(cli_env, PATH=f"{bin_dir}{os.pathsep}{cli_env['PATH']}")
    resumed = run_cli(["exp", "rerun", exp.id, "--resume"], env=forgot)
    assert resumed.returncode == 0, resumed.stderr
    assert "found on slurm" in resumed.stdout
    assert _slurm_jobs(exp.record.job_dir("hello") / "sbatch.sh") == [(job_id, job_id)]
    assert marker.read_text() == "ran\n"
    status = run_cli(["exp", "status", exp.id, "--json"], env=forgot)
    assert status.returncode == 0, status.stderr
    assert '"UNKNOWN"' in status.stdout


def _slurm_state(job_id: str) -> str:
    r = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
    return r.stdout.strip()


# ---------------------------------------------------------------- local and Docker
@pytest.mark.parametrize("fault, existed", FAULTS)
def test_local_job_is_never_duplicated(cli_env: dict[str, str], tmp_path: Path, fault: str, existed: bool) -> None:
    marker = tmp_path / "ran.log"
    exp = _crash_then_resume(["task=hello", f"task.inline='echo ran >> {marker}'"], cli_env, fault, existed)
    assert exp.wait(poll=0.2)["hello"].state.value == "SUCCEEDED"
    assert marker.read_text() == "ran\n"


@pytest.fixture
def docker_env(cli_env: dict[str, str], docker_engine: Any) -> dict[str, str]:
    return {**cli_env, "DOCKER_HOST": docker_engine.host}


@pytest.fixture
def docker_client(docker_engine: Any) -> Iterator[Any]:
    docker = pytest.importorskip("docker")
    c = docker.DockerClient(base_url=docker_engine.host)
    yield c
    c.close()


@pytest.mark.docker
@pytest.mark.parametrize("fault, existed", FAULTS)
def test_docker_job_is_never_duplicated(docker_engine: Any, docker_env: dict[str, str], docker_client: Any,
                                        fault: str, existed: bool) -> None:
    args = ["executor=docker", "task=hello", f"executor.container_image={docker_engine.image}", "executor.shell=sh",
            "executor.network=none", "task.inline='echo ran'"]
    exp = _crash_then_resume(args, docker_env, fault, existed)
    listed = docker_client.containers.list(all=True, filters={"label": [f"nemorun.experiment-id={exp.id}", "nemorun.job=hello"]})
    assert len(listed) == 1
    assert exp.record.job("hello").handle["data"]["container_id"] == listed[0].id
    assert exp.wait(poll=0.2)["hello"].state.value == "SUCCEEDED"


@pytest.mark.docker
def test_docker_container_created_but_never_started_is_replaced(docker_engine: Any, docker_env: dict[str, str], docker_client: Any) -> None:
    """``containers.run`` is create-then-start: a kill between the two leaves a ``created``
    container that never ran. ``find`` removes it, so the resubmission is not refused by its name."""
    args = ["executor=docker", "task=hello", f"executor.container_image={docker_engine.image}", "executor.shell=sh",
            "executor.network=none", "task.inline='echo ran'"]
    proc = run_cli(args, env=dict(docker_env, NEMORUN_FAULT="before-submit:0"))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    exp = Experiment.load("latest", home=docker_env["NEMORUN_HOME"])
    import json

    kwargs = json.loads((exp.record.job_dir("hello") / "container.json").read_text())
    kwargs.pop("detach")
    docker_client.containers.create(**kwargs)
    resumed = run_cli(["exp", "rerun", exp.id, "--resume"], env=docker_env)
    assert resumed.returncode == 0, resumed.stderr
    listed = docker_client.containers.list(all=True, filters={"label": f"nemorun.experiment-id={exp.id}"})
    assert len(listed) == 1 and listed[0].status != "created"
    assert Experiment(exp.path).wait(poll=0.2)["hello"].state.value == "SUCCEEDED"


# ---------------------------------------------------------------- a real kill -9 during sbatch
@pytest.mark.slurm
def test_kill_9_during_sbatch_then_resume(slurm_cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path) -> None:
    """No fault point: ``sbatch`` on PATH is a stub that calls the real one, says so, and then
    hangs; the test kills the launching ``nemorun`` (and the stub) with SIGKILL while it waits."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    said = tmp_path / "sbatch-returned"
    (bin_dir / "sbatch").write_text(textwrap.dedent(f"""\
        #!/bin/sh
        case "$1" in --version|--help) exec /usr/bin/sbatch "$@";; esac  # the release probe passes through
        /usr/bin/sbatch "$@" > {tmp_path}/sbatch.out || exit $?
        echo $$ > {said}.tmp && mv {said}.tmp {said}
        exec sleep 300
        """))
    (bin_dir / "sbatch").chmod(0o755)
    marker = slurm_cluster.jobs_dir / f"ran-{tmp_path.name}.log"
    env = dict(cli_env, PATH=f"{bin_dir}{os.pathsep}{cli_env['PATH']}")
    launch = subprocess.Popen([sys.executable, "-m", "nemorun", "executor=slurm", "task=hello", f"task.inline='echo ran >> {marker}'"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120  # a bound on a poll loop, not a timing assertion
        while not said.exists():
            assert launch.poll() is None, launch.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        launch.kill()  # SIGKILL
        launch.wait()
    finally:
        if said.exists():
            os.kill(int(said.read_text()), signal.SIGKILL)  # the stub's sleep (exec'd in its shell)
        if launch.poll() is None:
            launch.kill()
            launch.wait()
    assert launch.returncode == -signal.SIGKILL
    exp = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    assert exp.record.job("hello").in_doubt
    resumed = run_cli(["exp", "rerun", exp.id, "--resume"], env=cli_env)
    assert resumed.returncode == 0, resumed.stderr
    job_id = (tmp_path / "sbatch.out").read_text().strip()
    assert _slurm_jobs(exp.record.job_dir("hello") / "sbatch.sh") == [(job_id, job_id)]
    exp = Experiment(exp.path)
    assert exp.record.job("hello").handle["id"] == job_id
    assert exp.wait(poll=0.5)["hello"].state.value == "SUCCEEDED"
    assert marker.read_text() == "ran\n"


# ---------------------------------------------------------------- Kubeflow (the contract-enforcing fake API)
@pytest.mark.parametrize("fault, existed", FAULTS)
def test_kubeflow_trainjob_is_adopted_not_refused(cli_env: dict[str, str], tmp_path: Path, fault: str, existed: bool) -> None:
    """A second create of the same TrainJob would be refused (409) and fail the resume; ``find``
    adopts the one the dead launch created."""
    from tests.kube_fake import FakeKube, serve

    fake = FakeKube()
    server, thread = serve(fake)
    try:
        env = dict(cli_env, KUBECONFIG=str(fake.kubeconfig(tmp_path / "kubeconfig")))
        exp = _crash_then_resume(["executor=kubeflow", "executor.image=nvcr.io/nvidia/nemo:25.04", "task=hello"], env, fault, existed)
        [(ns, name)] = fake.trainjobs
        assert exp.record.job("hello").handle["id"] == f"{ns}/{name}"
        assert sum(1 for m, path, _ in fake.requests if m == "POST" and "trainjobs" in path) == 1
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# ---------------------------------------------------------------- Lepton (the fake workspace API)
@pytest.mark.parametrize("fault, existed", FAULTS)
def test_lepton_job_is_adopted_not_refused(lepton_env: dict[str, str], lepton: Any, fault: str, existed: bool) -> None:
    from tests.test_lepton_submit import LEPTON_ARGS

    args = [*LEPTON_ARGS, "executor.node_group_id=ng-h100-7f3a"]
    exp = _crash_then_resume(args, lepton_env, fault, existed)
    assert len(lepton.jobs) == 1 and exp.record.job(exp.jobs[0].name).handle["id"] in lepton.jobs
    assert [m for m, p in lepton.requests if p.endswith("/jobs")] == ["POST"]
