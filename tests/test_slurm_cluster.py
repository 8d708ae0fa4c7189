"""Slurm end to end on the real test cluster (tests/fixtures/slurm_cluster.py): submit through the
CLI over the local and SSH tunnels, then status/logs/cancel through the submitter via the handle
stored in the experiment record (as ``nemorun exp`` will). No mocks."""
from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Callable

import pytest

from nemorun.lower import check_config, compile_job
from nemorun.execute import record_and_submit
from nemorun.plan import PlannedJob, render_job
from nemorun.states import AppState, Handle, JobStatus
from nemorun.store import ExperimentRecord
from nemorun.submitters import slurm as submitter
from tests.fixtures.slurm_cluster import SlurmCluster
from tests.helpers import PINNED_SITE, compose_config, run_cli

pytestmark = pytest.mark.slurm


def ssh(cluster: SlurmCluster, **kw: object) -> list[str]:
    values = {"host": cluster.ssh_host, "port": cluster.ssh_port, "user": cluster.ssh_user, "identity": cluster.ssh_key,
              "known_hosts": cluster.known_hosts, "job_dir": cluster.jobs_dir / "nemorun", **kw}
    return ["executor/tunnel=ssh", *(f"executor.tunnel.{k}={v}" for k, v in values.items())]


def launch(args: list[str], env: dict[str, str]) -> tuple[ExperimentRecord, Handle]:
    r = run_cli(["executor=slurm", *args], env=env)
    assert r.returncode == 0, r.stderr
    record = ExperimentRecord(Path(re.search(r" in (\S+)\n", r.stdout).group(1)))
    job = record.jobs()[0]
    handle = job.handle_obj()
    assert handle is not None and f"submitted as {handle.id}" in r.stdout
    return record, handle


def wait_until(handle: Handle, done: Callable[[JobStatus], bool], timeout: float = 120) -> JobStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = submitter.status([handle])[handle.id]
        if done(status):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {handle.id} still {status} after {timeout}s")
        time.sleep(0.3)


def terminal(s: JobStatus) -> bool:
    return s.state.is_terminal


def test_two_nodes_over_ssh(slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    record, handle = launch(["task=hello", "executor.nodes=2", "task.inline='echo $SLURMD_NODENAME $(hostname)'", *ssh(slurm_cluster)], cli_env)
    assert handle.data["host"] == f"{slurm_cluster.ssh_user}@{slurm_cluster.ssh_host}:{slurm_cluster.ssh_port}"
    status = wait_until(handle, terminal)
    assert (status.state, status.exit_code) == (AppState.SUCCEEDED, 0)
    lines = sorted(submitter.logs(handle))
    assert [ln.split()[0] for ln in lines] == ["gpu01", "gpu02"]
    assert record.record_status("hello", status).state == "SUCCEEDED"


def test_failing_job_is_failed_with_exit_code(slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    record, handle = launch(["task=hello", "task.inline='echo going down; exit 3'"], cli_env)
    status = wait_until(handle, terminal)
    assert (status.state, status.exit_code) == (AppState.FAILED, 3)
    assert "NonZeroExitCode" in status.detail
    assert list(submitter.logs(handle, follow=True))[0] == "going down\n"
    assert record.record_status("hello", status).exit_code == 3


def test_cancel_running_job(slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    _, handle = launch(["task=hello", "task.inline='sleep 300'", *ssh(slurm_cluster)], cli_env)
    wait_until(handle, lambda s: s.state is AppState.RUNNING)
    submitter.cancel(handle)
    assert wait_until(handle, terminal).state is AppState.CANCELLED
    submitter.cancel(handle)  # idempotent


def test_purged_job_is_unknown_and_record_keeps_last_state(slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    record, handle = launch(["task=hello"], cli_env)
    status = wait_until(handle, terminal)
    record.record_status("hello", status)
    gone = Handle("slurm", "99999", handle.data)  # an id slurmctld has never (or no longer) known
    forgotten = submitter.status([gone, handle])
    assert forgotten["99999"].state is AppState.UNKNOWN and forgotten[handle.id].state is AppState.SUCCEEDED
    assert record.record_status("hello", forgotten["99999"]).state == "SUCCEEDED"


@pytest.mark.parametrize(
    "override, message",
    [
        ("executor.partition=nope", "invalid partition specified: nope"),
        ("executor.time=08:00:00", "Requested time limit is invalid (missing or exceeds some limit)"),
    ],
)
def test_slurm_refusal_is_one_line_and_recorded(override: str, message: str, slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    r = run_cli(["executor=slurm", "task=hello", override, *ssh(slurm_cluster)], env=cli_env)
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and message in r.stderr and "sbatch on" in r.stderr
    record = ExperimentRecord(Path(re.search(r" in (\S+)\n", r.stdout).group(1)))
    job = record.job("hello")
    assert job.phase == "failed-to-submit" and message in (job.error or "") and job.handle is None


@pytest.mark.parametrize(
    "override, cause",
    [("port=1", "connection refused"), ("host=no-such-host.invalid", "unknown host"), ("identity=/nonexistent/key", "identity file /nonexistent/key not found")],
)
def test_unreachable_login_node(override: str, cause: str, slurm_cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path) -> None:
    key, value = override.split("=", 1)
    r = run_cli(["executor=slurm", "task=hello", *ssh(slurm_cluster, **{key: value})], env=cli_env)
    assert r.returncode == 1
    (line,) = r.stderr.strip().splitlines()
    assert "over SSH" in line and cause in line
    host = value if key == "host" else slurm_cluster.ssh_host
    assert host in line
    record = ExperimentRecord(Path(re.search(r" in (\S+)\n", r.stdout).group(1)))
    assert record.job("hello").phase == "failed-to-submit"


def test_wrong_key_is_refused(slurm_cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path) -> None:
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    r = run_cli(["executor=slurm", "task=hello", *ssh(slurm_cluster, identity=tmp_path / "k")], env=cli_env)
    assert r.returncode == 1 and "authentication failed" in r.stderr and slurm_cluster.ssh_host in r.stderr


def _chain(tmp_path: Path, steps: list[tuple[str, str, str]], cluster: SlurmCluster) -> tuple[ExperimentRecord, dict[str, Handle]]:
    """Compile, record and submit jobs in order; each (name, inline, dependency_type) depends on all before it."""
    cfg = compose_config(["executor=slurm", "task=hello", f"executor.job_dir={cluster.jobs_dir}/chains"])
    check_config(cfg)
    site = type(PINNED_SITE)(experiment_id=uuid.uuid4().hex[:12], submit_dir=str(tmp_path), home=str(tmp_path / "home"))
    record = ExperimentRecord.create(home=Path(site.home), name="chain", experiment_id=site.experiment_id, target="slurm",
                                     config_yaml="", overrides=[], submit_dir=str(tmp_path), job_names=[s[0] for s in steps])
    handles: dict[str, Handle] = {}
    for name, inline, dep_type in steps:
        cfg.task.inline = inline
        cfg.executor.dependency_type = dep_type
        job = compile_job(cfg, site, job_name=name, dependencies=tuple(h.id for h in handles.values()))
        handles[name] = record_and_submit(record, PlannedJob(job, render_job(job))).handle_obj()  # type: ignore[assignment]
    return record, handles


def test_afterok_chain_runs_in_order(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    marker = slurm_cluster.jobs_dir / f"first-{uuid.uuid4().hex[:8]}"
    _, h = _chain(tmp_path, [("first", f"sleep 2; echo done > {marker}", "afterok"), ("second", f"cat {marker}", "afterok")], slurm_cluster)
    assert wait_until(h["second"], terminal).state is AppState.SUCCEEDED  # cat fails if second ran before first ended
    assert list(submitter.logs(h["second"])) == ["done\n"]
    assert wait_until(h["first"], terminal).state is AppState.SUCCEEDED


def test_afternotok_runs_only_after_failure(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    _, h = _chain(tmp_path, [("fails", "exit 1", "afterok"), ("rescue", "echo rescued", "afternotok"), ("never", "echo no", "afterok")], slurm_cluster)
    assert wait_until(h["rescue"], terminal).state is AppState.SUCCEEDED
    assert list(submitter.logs(h["rescue"])) == ["rescued\n"]
    never = wait_until(h["never"], lambda s: "DependencyNeverSatisfied" in s.detail)
    assert never.state is AppState.PENDING
    submitter.cancel(h["never"])
