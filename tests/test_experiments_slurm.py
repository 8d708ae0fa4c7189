"""Experiments on the real Slurm test cluster (``slurm_cluster`` fixture, sbatch over SSH):
a sweep as one experiment, batched status, logs synced into the record, cancel, and a
multi-task experiment chained with Slurm's own ``--dependency``."""
from __future__ import annotations

import contextlib
import json
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from nemorun.api import Experiment
from tests.fixtures.slurm_cluster import SlurmCluster
from tests.helpers import run_cli

pytestmark = pytest.mark.slurm


def ssh(cluster: SlurmCluster) -> list[str]:
    values = {"host": cluster.ssh_host, "port": cluster.ssh_port, "user": cluster.ssh_user, "identity": cluster.ssh_key,
              "known_hosts": cluster.known_hosts, "job_dir": cluster.jobs_dir / "nemorun-exp"}
    return ["executor=slurm", "executor/tunnel=ssh", *(f"executor.tunnel.{k}={v}" for k, v in values.items())]


def test_sweep_status_logs_cancel(slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    proc = run_cli(["-m", "task=hello", "task.inline='echo sweep-one','echo sweep-two'", *ssh(slurm_cluster)], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    exp = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    assert exp.meta["kind"] == "sweep" and len(exp.jobs) == 2
    assert all(j.handle and j.handle["backend"] == "slurm" for j in exp.jobs)
    states = exp.wait(poll=0.5)
    assert {s.state.value for s in states.values()} == {"SUCCEEDED"}
    for job, text in (("hello-0", "sweep-one"), ("hello-1", "sweep-two")):
        assert (exp.record.job_dir(job) / "stdout.log").read_text().strip() == text  # copied over SSH into the record
        logs = run_cli(["exp", "logs", exp.id, job], env=cli_env)
        assert logs.returncode == 0 and text in logs.stdout
    status = json.loads(run_cli(["exp", "status", exp.id, "--json"], env=cli_env).stdout)
    assert {j["state"] for j in status["jobs"].values()} == {"SUCCEEDED"}

    run_cli(["task=hello", "task.inline='sleep 120'", *ssh(slurm_cluster)], env=cli_env)
    cancelled = run_cli(["exp", "cancel", "latest"], env=cli_env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert Experiment.load("latest", home=cli_env["NEMORUN_HOME"]).wait(poll=0.5)["hello"].state.value == "CANCELLED"


def test_multitask_uses_native_dependency(slurm_cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path) -> None:
    log = slurm_cluster.jobs_dir / f"order-{tmp_path.name}.log"
    conf = tmp_path / "conf" / "experiment"
    conf.mkdir(parents=True)
    (conf / "chain.yaml").write_text(textwrap.dedent(f"""\
        defaults: [/_schema_experiment@_here_, _self_]
        name: chain
        tasks:
          prepare:
            overrides: [task=hello, task.name=prepare, "task.inline='sleep 2; echo prepare >> {log}'"]
          train:
            overrides: [task=hello, task.name=train, "task.inline='echo train >> {log}'"]
            depends_on: [prepare]
        """))
    proc = run_cli(["--config-dir", str(tmp_path / "conf"), "experiment=chain", *ssh(slurm_cluster)], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    exp = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    prepare_id = exp.record.job("prepare").handle["id"]
    assert f"#SBATCH --dependency=afterok:{prepare_id}" in (exp.record.job_dir("train") / "sbatch.sh").read_text()
    states = exp.wait(poll=0.5)
    assert {s.state.value for s in states.values()} == {"SUCCEEDED"}
    assert log.read_text().split() == ["prepare", "train"]


def test_value_sweep_is_one_job_array(slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    """sbatch on this machine (local tunnel): the array tasks run nemorun's entry point from PATH."""
    proc = run_cli(["-m", "executor=slurm", "task=train", "task.params.steps=2", "task.params.lr=0.1,0.2,0.3",
                    "hydra.launcher.max_parallel=2"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    exp = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    assert exp.meta["arrays"] == {"train-array": ["train-0", "train-1", "train-2"]}
    array = exp.record.job("train-array")
    assert "#SBATCH --array=0-2%2" in (exp.record.job_dir("train-array") / "sbatch.sh").read_text()
    assert [j.handle["id"] for j in exp.jobs if j.handle] == [f"{array.handle['id']}_{i}" for i in range(3)]
    states = exp.wait(poll=0.5)
    assert {s.state.value for s in states.values()} == {"SUCCEEDED"}, states
    outputs = ["".join(exp.logs(f"train-{i}")) for i in range(3)]
    assert all("rank=0 done" in o for o in outputs) and len(set(outputs)) == 3  # three lrs, three results



def _squeue_tasks(array_id: str) -> dict[str, str]:
    """The cluster's own view, one line per array task (``-r``), independent of nemorun."""
    r = subprocess.run(["squeue", "-h", "-r", "-t", "all", "-j", array_id, "-o", "%i|%T"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return dict(line.split("|", 1) for line in r.stdout.split())


def _poll(array_id: str, done: Callable[[dict[str, str]], bool]) -> dict[str, str]:
    deadline = time.monotonic() + 120  # a bound on a poll loop, not a timing assertion
    while not done(native := _squeue_tasks(array_id)):
        assert time.monotonic() < deadline, native
        time.sleep(0.5)
    return native


@contextlib.contextmanager
def _slow_array(cli_env: dict[str, str], *extra: str) -> Iterator[tuple[Experiment, list[str]]]:
    """A 3-task array sweep still running when the test acts; every task cancelled at the end."""
    proc = run_cli(["-m", "executor=slurm", "task=train", "task.params.steps=3000", "+task.params.sleep=0.1",
                    "task.params.lr=0.1,0.2,0.3", *extra], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    exp = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    array_id = exp.record.job("train-array").handle["id"]
    try:
        yield exp, [f"{array_id}_{i}" for i in range(3)]
    finally:
        run_cli(["exp", "cancel", exp.id], env=cli_env)
    assert {s.state.value for s in exp.wait(poll=0.5).values()} == {"CANCELLED"}


def _states(cli_env: dict[str, str], exp: Experiment) -> dict[str, str]:
    return {n: j["state"] for n, j in json.loads(run_cli(["exp", "status", exp.id, "--json"], env=cli_env).stdout)["jobs"].items()}


def test_cancel_one_array_task_leaves_the_others_running(slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    """``exp cancel ID train-1`` on an array sweep scancels ``<array>_1`` only; status is per task."""
    with _slow_array(cli_env) as (exp, tasks):
        array_id = tasks[0].split("_")[0]
        _poll(array_id, lambda n: {n.get(t) for t in tasks} == {"RUNNING"})
        cancelled = run_cli(["exp", "cancel", exp.id, "train-1", "--json"], env=cli_env)
        assert cancelled.returncode == 0, cancelled.stderr
        assert json.loads(cancelled.stdout)["cancelled"] == ["train-1"]
        native = _poll(array_id, lambda n: n.get(tasks[1]) in ("CANCELLED", None))
        assert native.get(tasks[0]) == "RUNNING" and native.get(tasks[2]) == "RUNNING", native
        assert _states(cli_env, exp) == {"train-0": "RUNNING", "train-1": "CANCELLED", "train-2": "RUNNING"}
        assert [j.handle["id"] for j in exp.jobs] == tasks


def test_cancel_one_pending_array_task(slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    """``%1``: tasks 1 and 2 wait as ONE pending squeue line (``123_[1-2]``); cancelling task 2
    must leave task 1 pending and task 0 running, and status must name each task's own state
    (slurmctld forgets a cancelled pending task: nemorun's record of the cancel says CANCELLED)."""
    with _slow_array(cli_env, "hydra.launcher.max_parallel=1") as (exp, tasks):
        array_id = tasks[0].split("_")[0]
        _poll(array_id, lambda n: n.get(tasks[0]) == "RUNNING")
        assert _states(cli_env, exp) == {"train-0": "RUNNING", "train-1": "PENDING", "train-2": "PENDING"}
        cancelled = run_cli(["exp", "cancel", exp.id, "train-2", "--json"], env=cli_env)
        assert cancelled.returncode == 0, cancelled.stderr
        native = _squeue_tasks(array_id)
        assert native.get(tasks[0]) == "RUNNING" and native.get(tasks[1]) == "PENDING", native
        assert _states(cli_env, exp) == {"train-0": "RUNNING", "train-1": "PENDING", "train-2": "CANCELLED"}
