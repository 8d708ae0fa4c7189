"""Tasks sharing an ``allocation:`` run as steps of ONE Slurm job (nemorun.allocations).

The refusals run the real CLI (one line, exit 2, nothing rendered). The rest runs on the real
Slurm test cluster (``slurm_cluster`` fixture: slurmctld + 4 slurmd + sshd, sbatch over SSH): a
job group and a heterogeneous job both run, each step writes its own logs, status/logs/cancel
take task names, a failing step fails the job and its record says which step, and a task
depending on a task of an allocation waits for the whole job (native ``--dependency``).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Callable

import pytest

from nemorun import allocations, capabilities
from nemorun.api import Experiment
from nemorun.errors import ConfigError
from nemorun.lower import compile_job
from nemorun.plan import PlannedJob, render_job
from nemorun.targets import TARGET_MODULES
from tests.fixtures.slurm_cluster import SlurmCluster
from tests.conftest import ROOT
from tests.golden_cases import CASES
from tests.helpers import PINNED_SITE, compose_config, run_cli


def _conf(tmp_path: Path, tasks: str, name: str = "grp") -> list[str]:
    """``--config-dir`` with an experiment option ``name`` whose tasks are ``tasks`` (YAML)."""
    conf = tmp_path / "conf" / "experiment"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / f"{name}.yaml").write_text(f"defaults: [/_schema_experiment@_here_, _self_]\nname: {name}\ntasks:\n"
                                       + textwrap.indent(textwrap.dedent(tasks), "  "))
    return ["--config-dir", str(tmp_path / "conf"), f"experiment={name}"]


def _slurm(task: str, *extra: str) -> str:
    return "[" + ", ".join(["executor=slurm", "task=hello", f"task.name={task}", *extra]) + "]"


@pytest.mark.parametrize(
    "tasks, message",
    [
        (f"""\
         a: {{allocation: x, overrides: {_slurm('a')}}}
         b: {{allocation: x, overrides: {_slurm('b')}, depends_on: [a]}}
         """, "allocation 'x' (tasks a, b): task b depends on task a of the same allocation, but the steps of one Slurm job "
              "start together and cannot be ordered"),
        ("""\
         a: {allocation: x, overrides: [task=hello]}
         b: {allocation: x, overrides: [task=hello]}
         """, "allocation 'x' (tasks a, b): executor=local cannot run tasks in one allocation"),
        (f"""\
         a: {{allocation: x, overrides: {_slurm('a')}}}
         b: {{allocation: x, overrides: {_slurm('b', 'executor/tunnel=ssh', 'executor.tunnel.host=login2', 'executor.tunnel.job_dir=/j')}}}
         """, "allocation 'x' (tasks a, b): task b is sent to another cluster (executor.tunnel) than task a"),
        (f"""\
         a: {{allocation: x, overrides: {_slurm('a', 'executor.time=00:10:00')}}}
         b: {{allocation: x, overrides: {_slurm('b', 'executor.time=00:20:00')}}}
         """, "allocation 'x' (tasks a, b): executor.time is '00:10:00' for task a but '00:20:00' for task b; it is the whole job's"),
        (f"""\
         a: {{allocation: x, overrides: {_slurm('a', 'executor.retries=1')}}}
         b: {{allocation: x, overrides: {_slurm('b')}}}
         """, "allocation 'x' (tasks a, b): retries differs between task a and task b"),
        (f"""\
         a: {{allocation: b, overrides: {_slurm('a')}}}
         b: {{allocation: b, overrides: {_slurm('b')}}}
         """, "allocation 'b' has the name of a task"),
        (f"""\
         up: {{overrides: {_slurm('up')}}}
         a: {{allocation: x, overrides: {_slurm('a')}, depends_on: [up]}}
         b: {{allocation: x, overrides: {_slurm('b')}, depends_on: [up], dependency_type: afterany}}
         """, "allocation 'x' (tasks a, b): the tasks wait for their upstream jobs with different dependency_type"),
    ],
    ids=["dependency-inside", "not-slurm", "two-clusters", "job-wide-option", "retries", "name-clash", "dependency-types"],
)
def test_refused_in_one_line(tasks: str, message: str, tmp_path: Path, cli_env: dict[str, str]) -> None:
    proc = run_cli([*_conf(tmp_path, tasks), "dryrun=true"], env=cli_env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("nemorun: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert "#SBATCH" not in proc.stdout


def test_dependency_on_a_task_of_an_allocation_waits_for_the_allocation(tmp_path: Path, cli_env: dict[str, str]) -> None:
    """A downstream task names a task; Slurm can only wait for the job running it."""
    proc = run_cli([*_conf(tmp_path, f"""\
        a: {{allocation: x, overrides: {_slurm('a')}}}
        b: {{allocation: x, overrides: {_slurm('b', 'executor.nodes=2')}}}
        after: {{overrides: {_slurm('after')}, depends_on: [b], dependency_type: afterany}}
        """), "dryrun=true"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "# task after after x (afterany)" in proc.stdout
    assert proc.stdout.count("#SBATCH hetjob") == 1  # nodes differ: one component each


@pytest.mark.parametrize("kind", sorted(TARGET_MODULES))
def test_every_executor_as_declared(kind: str) -> None:
    """Generated from the declarations: an executor declaring ``allocations`` runs two tasks as
    steps of one job; every other one refuses the allocation in one line, before rendering."""
    case = next(c for c in sorted(CASES) if c.startswith(f"{kind}_") and "configmap" not in c)
    cfg = compose_config(CASES[case])
    jobs = [compile_job(cfg, PINNED_SITE, job_name=name) for name in ("a", "b")]
    planned = [PlannedJob(job, render_job(job)) for job in jobs]
    tasks = {"a": {"allocation": "x"}, "b": {"allocation": "x"}}
    if capabilities.of(kind).allocations:
        [job] = allocations.group(planned, tasks, render_job)
        assert job.name == "x" and [s.name for s in job.job.steps] == ["a", "b"]
        assert allocations.record_names([job]) == ["x", "a", "b"]
    else:
        with pytest.raises(ConfigError, match=f"executor={kind} cannot run tasks in one allocation"):
            allocations.group(planned, tasks, render_job)


# -- the rendered script in real bash, with stub srun/scontrol (a real requeue waits ~2 min in
# Slurm's requeue delay: tests/test_slurm_depth.py does the same for single-step jobs)

PYXIS_HET = ROOT / "golden" / "slurm_het_pyxis" / "sbatch.sh"  # retries=1, signal=USR1@90


SERVE = "trap 'exit 143' TERM; while true; do sleep 0.1; done"  # a server: runs until stopped


def _run_steps(tmp_path: Path, restarts: str, trainer: str, server: str = SERVE,
               signal_after: float | None = None) -> tuple[int, str, str]:
    """Run the golden hetjob script with its job dir moved under ``tmp_path``; the stub srun
    plays the step named by its ``--job-name`` with the shell snippet given for it. Returns
    (exit status, scontrol requeue calls, stderr)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    srun = """#!/bin/bash
name=; for a in "$@"; do case $a in --job-name=*) name=${a#--job-name=};; esac; done
touch "$OUT/started-$name"
if [ "$name" = server ]; then """ + server + """; fi
""" + trainer + "\n"
    (bin_dir / "srun").write_text(srun)
    (bin_dir / "scontrol").write_text(f'#!/bin/bash\nif [ "$1" = requeue ]; then echo "$*" >> {tmp_path}/scontrol.calls; fi\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    text = PYXIS_HET.read_text().replace("/shared/nemorun", str(tmp_path))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "77", "SLURM_RESTART_COUNT": restarts,
           "SLURM_JOB_NODELIST_HET_GROUP_0": "node[1-2]", "OUT": str(tmp_path)}
    proc = subprocess.Popen(["bash", "-c", text], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if signal_after is not None:
        _until(lambda: all((tmp_path / f"started-{n}").exists() for n in ("trainer", "server")), 10)
        time.sleep(signal_after)
        proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=30)
    calls = tmp_path / "scontrol.calls"
    return proc.returncode, calls.read_text() if calls.exists() else "", err


def _exits(tmp_path: Path) -> dict[str, str]:
    job = next(tmp_path.glob("train_with_server_pyxis/*/pair"))
    return {n: (job / f"exit-{n}.txt").read_text().strip() for n in ("trainer", "server")}


@pytest.mark.parametrize("restarts, requeued", [("0", True), ("1", False)])
def test_failing_step_stops_the_others_and_requeues_the_whole_job(restarts: str, requeued: bool, tmp_path: Path) -> None:
    (tmp_path / "train_with_server_pyxis" / "20260101-000000-000000-abcd" / "pair").mkdir(parents=True)
    rc, calls, err = _run_steps(tmp_path, restarts, "sleep 0.5; exit 3")
    assert rc == 3, err
    assert _exits(tmp_path) == {"trainer": "3", "server": "143"}
    assert "nemorun: step trainer exited with 3; stopping the other steps of job 77" in err
    assert calls == ("requeue 77\n" if requeued else "")


def test_time_limit_signal_stops_every_step_and_requeues(tmp_path: Path) -> None:
    (tmp_path / "train_with_server_pyxis" / "20260101-000000-000000-abcd" / "pair").mkdir(parents=True)
    rc, calls, err = _run_steps(tmp_path, "0", SERVE, signal_after=0.3)
    assert "nemorun: SIGUSR1 before the time limit; stopping the steps of job 77" in err
    assert _exits(tmp_path) == {"trainer": "143", "server": "143"} and rc == 143
    assert calls == "requeue 77\n"


def test_a_step_cancelled_by_nemorun_is_not_a_failure(tmp_path: Path) -> None:
    job = tmp_path / "train_with_server_pyxis" / "20260101-000000-000000-abcd" / "pair"
    job.mkdir(parents=True)
    # what `exp cancel ID server` does: its marker first, then scancel of the step
    rc, calls, err = _run_steps(tmp_path, "0", "sleep 0.5; exit 0", server=f"echo cancelled > {job}/cancelled-server; exit 143")
    assert (rc, calls) == (0, ""), err
    assert _exits(tmp_path) == {"trainer": "0", "server": "143"} and "stopping" not in err


@pytest.mark.parametrize("exit_file", [True, False], ids=["exit-recorded", "exit-missing"])
def test_a_cancelled_step_stays_cancelled_in_a_requeued_attempt(exit_file: bool, tmp_path: Path) -> None:
    """Attempt 2 of a job whose step ``server`` was cancelled by ``exp cancel ID server`` in
    attempt 1: the marker survives, the step is not started again, its exit file says how it
    ended (143 if the first attempt died before writing it), and the job ends as its other step."""
    job = tmp_path / "train_with_server_pyxis" / "20260101-000000-000000-abcd" / "pair"
    job.mkdir(parents=True)
    (job / "cancelled-server").write_text("cancelled by nemorun\n")
    (job / "exit-trainer.txt").write_text("3\n")  # attempt 1's failure: cleared, the trainer runs again
    if exit_file:
        (job / "exit-server.txt").write_text("15\n")
    rc, calls, err = _run_steps(tmp_path, "1", "sleep 0.3; exit 0")
    assert (rc, calls) == (0, ""), err
    assert not (tmp_path / "started-server").exists() and (tmp_path / "started-trainer").exists()
    assert _exits(tmp_path) == {"trainer": "0", "server": "15" if exit_file else "143"}
    assert "nemorun: step server was cancelled (nemorun exp cancel); not running it again" in err


# -- on the real cluster ---------------------------------------------------------------------


def _ssh(cluster: SlurmCluster) -> list[str]:
    values = {"host": cluster.ssh_host, "port": cluster.ssh_port, "user": cluster.ssh_user, "identity": cluster.ssh_key,
              "known_hosts": cluster.known_hosts, "job_dir": cluster.jobs_dir / "nemorun-groups"}
    return ["executor=slurm", "executor/tunnel=ssh", *(f"executor.tunnel.{k}={v}" for k, v in values.items())]


def _launch(cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path, tasks: str) -> Experiment:
    proc = run_cli([*_conf(tmp_path, tasks), *_ssh(cluster)], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    return Experiment.load("latest", home=cli_env["NEMORUN_HOME"])


def _status(cli_env: dict[str, str], exp: Experiment) -> dict[str, dict[str, object]]:
    proc = run_cli(["exp", "status", exp.id, "--json"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["jobs"]


def _logs(cli_env: dict[str, str], exp: Experiment, job: str) -> str:
    proc = run_cli(["exp", "logs", exp.id, job], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _until(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def _steps(job_id: str) -> dict[str, str]:
    """step name -> step id, as squeue lists the job's running steps."""
    r = subprocess.run(["squeue", "-h", "-s", "-j", job_id, "-o", "%j|%i"], capture_output=True, text=True)
    return dict(line.split("|", 1) for line in r.stdout.split())


@pytest.mark.slurm
def test_job_group_runs_each_task_as_a_step(slurm_cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path) -> None:
    exp = _launch(slurm_cluster, cli_env, tmp_path, f"""\
        left: {{allocation: pair, overrides: {_slurm('left', "task.inline='echo left $SLURM_JOB_ID; echo left-err >&2'")}}}
        right: {{allocation: pair, overrides: {_slurm('right', "task.inline='echo right $SLURM_JOB_ID'")}}}
        after: {{overrides: {_slurm('after', "task.inline='echo after'")}, depends_on: [right]}}
        """)
    assert exp.meta["jobs"] == ["pair", "left", "right", "after"]
    job_id = exp.record.job("pair").handle["id"]
    assert [exp.record.job(t).handle["id"] for t in ("left", "right")] == [f"{job_id}:left", f"{job_id}:right"]
    assert f"#SBATCH --dependency=afterok:{job_id}" in (exp.record.job_dir("after") / "sbatch.sh").read_text()
    states = exp.wait(poll=0.5)
    assert {n: s.state.value for n, s in states.items()} == dict.fromkeys(["pair", "left", "right", "after"], "SUCCEEDED")
    # one job, two steps, each with its own output
    assert _logs(cli_env, exp, "left").split("\n")[0] == f"left {job_id}"
    assert "left-err" in _logs(cli_env, exp, "left") and "right" not in _logs(cli_env, exp, "left")
    assert _logs(cli_env, exp, "right").strip() == f"right {job_id}"
    assert {n: j["state"] for n, j in _status(cli_env, exp).items()} == dict.fromkeys(["pair", "left", "right", "after"], "SUCCEEDED")


@pytest.mark.slurm
def test_heterogeneous_job_with_torchrun_component(slurm_cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path) -> None:
    """Component 0: 2 nodes of torchrun (gloo, rendezvous on SLURM_JOB_NODELIST_HET_GROUP_0);
    component 1: 1 node of another partition running a plain command."""
    exp = _launch(slurm_cluster, cli_env, tmp_path, """\
        trainer:
          allocation: pair
          overrides: [executor=slurm, task=ddp, launcher=torchrun, executor.nodes=2, launcher.nproc_per_node=1, executor.partition=batch]
        server:
          allocation: pair
          overrides: [executor=slurm, task=hello, task.name=server, executor.partition=interactive, "task.inline='echo server on $SLURM_JOB_PARTITION nodes $SLURM_JOB_NUM_NODES'"]
        """)
    script = (exp.record.job_dir("pair") / "sbatch.sh").read_text()
    assert "#SBATCH hetjob" in script and "--het-group=1" in script
    states = exp.wait(poll=0.5)
    assert {n: s.state.value for n, s in states.items()} == dict.fromkeys(["pair", "trainer", "server"], "SUCCEEDED"), \
        {n: (s.state.value, s.detail) for n, s in states.items()} | {"stderr": _logs(cli_env, exp, "trainer")}
    assert _logs(cli_env, exp, "server").strip() == "server on interactive nodes 1"
    ranks = sorted(line.split(" local_rank")[0] for line in _logs(cli_env, exp, "trainer").splitlines() if "world_size" in line)
    assert ranks == ["rank=0 world_size=2", "rank=1 world_size=2"]  # one gloo group across the component's 2 nodes


@pytest.mark.slurm
def test_a_failing_step_fails_the_job_and_stops_the_others(slurm_cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path) -> None:
    started = time.monotonic()
    exp = _launch(slurm_cluster, cli_env, tmp_path, f"""\
        broken: {{allocation: pair, overrides: {_slurm('broken', "task.inline='sleep 1; exit 3'")}}}
        slow: {{allocation: pair, overrides: {_slurm('slow', "task.inline='sleep 300'")}}}
        """)
    states = exp.wait(poll=0.5)
    assert time.monotonic() - started < 120  # the slow step was stopped, not waited for
    assert (states["pair"].state.value, states["pair"].exit_code) == ("FAILED", 3)
    assert (states["broken"].state.value, states["broken"].exit_code) == ("FAILED", 3)
    assert states["slow"].state.value == "FAILED" and states["slow"].exit_code != 3
    assert exp.record.job("broken").detail.endswith("exited with 3")
    assert "nemorun: step broken exited with 3; stopping the other steps" in _logs(cli_env, exp, "pair")


@pytest.mark.slurm
def test_cancel_one_step_then_the_allocation(slurm_cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path) -> None:
    """``exp cancel ID TASK`` scancels that step only (a cancelled step is not a failure: the
    others run on); ``exp cancel ID`` cancels the job and with it every step."""
    exp = _launch(slurm_cluster, cli_env, tmp_path, f"""\
        one: {{allocation: pair, overrides: {_slurm('one', "task.inline='sleep 300'")}}}
        two: {{allocation: pair, overrides: {_slurm('two', "task.inline='sleep 300'")}}}
        """)
    job_id = exp.record.job("pair").handle["id"]
    _until(lambda: set(_steps(job_id)) >= {"one", "two"})
    cancelled = run_cli(["exp", "cancel", exp.id, "one", "--json"], env=cli_env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["cancelled"] == ["one"]
    _until(lambda: "one" not in _steps(job_id))
    _until(lambda: {n: j["state"] for n, j in _status(cli_env, exp).items()} == {"pair": "RUNNING", "one": "CANCELLED", "two": "RUNNING"})
    assert set(_steps(job_id)) >= {"two"}

    cancelled = run_cli(["exp", "cancel", exp.id], env=cli_env)
    assert cancelled.returncode == 0, cancelled.stderr
    states = exp.wait(poll=0.5)
    assert {n: s.state.value for n, s in states.items()} == dict.fromkeys(["pair", "one", "two"], "CANCELLED"), \
        {n: (s.state.value, s.detail) for n, s in states.items()}


@pytest.mark.slurm
def test_resume_after_kill_9_gives_the_steps_their_handles(slurm_cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path) -> None:
    """Killed right after the allocation's sbatch, before the record says so: the resume finds
    the job on the cluster (not submitted twice) and gives its tasks their step handles."""
    _conf(tmp_path, f"""\
        a: {{allocation: pair, overrides: {_slurm('a', "task.inline='echo a'")}}}
        b: {{allocation: pair, overrides: {_slurm('b', "task.inline='echo b'")}}}
        """)
    env = dict(cli_env, NEMORUN_CONFIG_PATH=str(tmp_path / "conf"))
    proc = run_cli(["experiment=grp", *_ssh(slurm_cluster)], env=dict(env, NEMORUN_FAULT="after-submit:0"))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    exp = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    assert [(j.name, j.phase) for j in exp.jobs] == [("pair", "rendered"), ("a", "rendered"), ("b", "rendered")]
    assert exp.record.job("pair").in_doubt
    resumed = run_cli(["exp", "rerun", exp.id, "--resume"], env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert "job pair: found on slurm as" in resumed.stdout, resumed.stdout
    job_id = exp.record.job("pair").handle["id"]
    assert [exp.record.job(t).handle["id"] for t in ("a", "b")] == [f"{job_id}:a", f"{job_id}:b"]
    assert {n: s.state.value for n, s in exp.wait(poll=0.5).items()} == dict.fromkeys(["pair", "a", "b"], "SUCCEEDED")
    assert _logs(cli_env, exp, "b").strip() == "b"


@pytest.mark.slurm
def test_rerun_of_an_experiment_with_an_allocation(slurm_cluster: SlurmCluster, cli_env: dict[str, str], tmp_path: Path) -> None:
    """``exp rerun ID`` (not --resume): a new experiment, the allocation planned and packed again
    (its tasks composed from the config files: the documented limit), the new values in its steps;
    the launch line counts the two tasks, not the allocation as a third."""
    _conf(tmp_path, f"""\
        a: {{allocation: pair, overrides: {_slurm('a', "task.inline='echo a $SLURM_JOB_ID $WHO'")}}}
        b: {{allocation: pair, overrides: {_slurm('b', "task.inline='echo b $SLURM_JOB_ID $WHO'")}}}
        """)
    env = dict(cli_env, NEMORUN_CONFIG_PATH=str(tmp_path / "conf"))
    proc = run_cli(["experiment=grp", *_ssh(slurm_cluster), "executor.env_vars.WHO=first"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert "(slurm): 2 tasks in" in proc.stdout, proc.stdout
    exp = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    assert {n: s.state.value for n, s in exp.wait(poll=0.5).items()} == dict.fromkeys(["pair", "a", "b"], "SUCCEEDED")

    rerun = run_cli(["exp", "rerun", exp.id, "executor.env_vars.WHO=second"], env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert "(slurm): 2 tasks in" in rerun.stdout, rerun.stdout
    again = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    assert again.id != exp.id and again.meta["jobs"] == ["pair", "a", "b"]
    job_id = again.record.job("pair").handle["id"]
    assert job_id != exp.record.job("pair").handle["id"]
    assert [again.record.job(t).handle["id"] for t in ("a", "b")] == [f"{job_id}:a", f"{job_id}:b"]
    assert {n: s.state.value for n, s in again.wait(poll=0.5).items()} == dict.fromkeys(["pair", "a", "b"], "SUCCEEDED")
    assert [_logs(cli_env, again, t).strip() for t in ("a", "b")] == [f"a {job_id} second", f"b {job_id} second"]
