"""``allocation=NAME`` without an experiment file: the jobs of a sweep (``nemorun -m``) run as
steps of ONE Slurm job, through the same rules as an experiment's ``allocation:``
(nemorun.allocations.pack_sweep -> group).

Refusals run the real CLI (one line, exit 2, nothing rendered). The rest runs on the real Slurm
test cluster (``slurm_cluster`` fixture: slurmctld + 4 slurmd + sshd, sbatch over SSH): the
packed sweep runs, status/logs/cancel take the sweep's job names, ``exp rerun ID`` plans it packed
again, and ``--resume`` after a kill -9 finds the job instead of sending it twice.
"""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from nemorun import allocations, compose
from nemorun.api import Experiment
from nemorun.plan import default_site, plan
from tests.fixtures.slurm_cluster import SlurmCluster
from tests.helpers import run_cli
from tests.test_slurm_groups import _logs, _ssh, _status, _steps, _until

SWEEP = ["-m", "executor=slurm", "task=train", "task.params.seed=0,1,2", "allocation=packed"]


def _plan(overrides: list[str]):  # type: ignore[no-untyped-def]
    with compose.hydra_context() as loader:
        return plan(compose.sweep_batch(overrides), compose.FilesComposer(loader), default_site(),
                    command_overrides=overrides, multirun=True)


@pytest.mark.parametrize(
    "args, message",
    [
        (["-m", "task=train", "task.params.seed=0,1", "allocation=packed"],
         "allocation 'packed' (tasks train-0, train-1): executor=local cannot run tasks in one allocation"),
        (["executor=slurm", "task=train", "allocation=packed"],
         "allocation=packed packs the jobs of a sweep into one Slurm job; this launch is one job"),
        (["experiment=packed_seeds", "allocation=packed"],
         "allocation=packed packs the jobs of a sweep (-m); an experiment's tasks name their own"),
        ([*SWEEP, "max_parallel=2"], "allocation=packed runs every job of the sweep at once, as steps of one Slurm job, "
                                     "so max_parallel=2 cannot limit them"),
        (["-m", "executor=slurm", "task=train", "executor.time=00:10:00,00:20:00", "allocation=packed"],
         "executor.time is '00:10:00' for task train-0 but '00:20:00' for task train-1; it is the whole job's"),
        ([*SWEEP, "+executor.additional_parameters.array=0-1"], "task train-0 is a job array, which cannot be one step"),
        ([*SWEEP[:-1], "allocation=train-1"], "allocation 'train-1' (tasks train-0, train-1, train-2): use letters, digits and _"),
        (["-m", "executor=slurm", "task=train", "task.params.seed=range(0,9)", "executor.retries=0,1", "allocation=p"],
         "allocation 'p' (tasks train-00, train-01, train-02, train-03, train-04, train-05 and 12 more): retries differs"),
        ([*SWEEP[:-1], "allocation=a,b"], "allocation=a,b: the whole sweep is packed into ONE job, so allocation takes one name"),
    ],
    ids=["not-slurm", "single-run", "experiment", "max-parallel", "job-wide-option", "user-array", "bad-name", "long-list", "swept-name"],
)
def test_refused_in_one_line(args: list[str], message: str, cli_env: dict[str, str]) -> None:
    proc = run_cli([*args, "dryrun=true"], env=cli_env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("nemorun: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr, proc.stderr
    assert "#SBATCH" not in proc.stdout


def test_help_shows_the_key(cli_env: dict[str, str]) -> None:
    proc = run_cli(["--help"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "allocation: null" in proc.stdout and "allocation=packed" in proc.stdout


def test_a_sweep_becomes_one_job_group_not_an_array() -> None:
    """A value-only function sweep would be a job array; with allocation=NAME it is ONE job whose
    steps are the sweep's jobs, in order, each running its own params."""
    p = _plan(SWEEP[1:])
    assert p.array is None and [j.name for j in p.jobs] == ["packed"]
    job = p.jobs[0].job
    assert [s.name for s in job.steps] == ["train-0", "train-1", "train-2"] and not job.heterogeneous
    assert [s.task.params["seed"] for s in job.steps] == [0, 1, 2]
    assert allocations.record_names(p.jobs) == ["packed", "train-0", "train-1", "train-2"]
    assert allocations.task_names(p.jobs) == ["train-0", "train-1", "train-2"]
    script = p.jobs[0].rendered.artifacts["sbatch.sh"]
    assert script.count("exec srun") == 3 and script.count("--overlap") == 3 and "--array" not in script


def test_swept_resources_make_a_heterogeneous_job() -> None:
    p = _plan(["executor=slurm", "task=ddp", "launcher=torchrun", "executor.nodes=1,2", "allocation=sizes"])
    job = p.jobs[0].job
    assert [(s.name, s.het_group, s.resources.nodes) for s in job.steps] == [("ddp-0", 0, 1), ("ddp-1", 1, 2)]
    script = p.jobs[0].rendered.artifacts["sbatch.sh"]
    assert script.count("#SBATCH hetjob") == 1 and "--het-group=1" in script


def test_dry_run_names_the_allocation_and_its_steps(cli_env: dict[str, str]) -> None:
    proc = run_cli([*SWEEP, "dryrun=true"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# allocation packed: tasks train-0, train-1, train-2 as steps of one job\n")
    assert proc.stdout.count("==> sbatch.sh <==") == 1 and proc.stdout.count("==> function-train-") == 3


# -- on the real cluster ---------------------------------------------------------------------


def _sweep(cluster: SlurmCluster, *extra: str) -> list[str]:
    return ["-m", *_ssh(cluster), "task=hello", "allocation=packed", *extra]


@pytest.mark.slurm
def test_packed_sweep_runs_cancels_one_step_and_reruns(slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    """Step hello-1 is cancelled by name while hello-0 finishes: the job succeeds (a cancelled
    step is not a failure). ``exp rerun ID`` then plans the sweep packed again, as one job."""
    proc = run_cli(_sweep(slurm_cluster, "task.env.S=1,300", "task.inline='sleep $S; echo slept $S in $SLURM_JOB_ID'"),
                   env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "(slurm): 2 jobs in" in proc.stdout, proc.stdout  # the allocation is not counted as a job
    exp = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    assert exp.meta["jobs"] == ["packed", "hello-0", "hello-1"]
    job_id = exp.record.job("packed").handle["id"]
    assert [exp.record.job(t).handle["id"] for t in ("hello-0", "hello-1")] == [f"{job_id}:hello-0", f"{job_id}:hello-1"]
    _until(lambda: "hello-1" in _steps(job_id))
    cancelled = run_cli(["exp", "cancel", exp.id, "hello-1", "--json"], env=cli_env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["cancelled"] == ["hello-1"]
    states = exp.wait(poll=0.5)
    assert {n: s.state.value for n, s in states.items()} == {"packed": "SUCCEEDED", "hello-0": "SUCCEEDED", "hello-1": "CANCELLED"}, \
        {n: (s.state.value, s.detail) for n, s in states.items()}
    assert _logs(cli_env, exp, "hello-0").strip() == f"slept 1 in {job_id}"
    assert {n: j["state"] for n, j in _status(cli_env, exp).items()}["hello-1"] == "CANCELLED"

    rerun = run_cli(["exp", "rerun", exp.id, "task.inline='echo again $S'"], env=cli_env)
    assert rerun.returncode == 0, rerun.stderr
    again = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    assert again.id != exp.id and again.meta["jobs"] == ["packed", "hello-0", "hello-1"]
    assert {n: s.state.value for n, s in again.wait(poll=0.5).items()} == dict.fromkeys(again.meta["jobs"], "SUCCEEDED")
    assert [_logs(cli_env, again, t).strip() for t in ("hello-0", "hello-1")] == ["again 1", "again 300"]


@pytest.mark.slurm
def test_heterogeneous_sweep_and_resume_after_kill_9(slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    """``executor.nodes=1,2`` packs as a hetjob; killed right after its sbatch, before the record
    says so: the resume finds the job (not sent twice) and gives each sweep job its step handle."""
    args = _sweep(slurm_cluster, "executor.nodes=1,2", "task.inline='echo nodes $SLURM_STEP_NUM_NODES'")
    proc = run_cli(args, env=dict(cli_env, NEMORUN_FAULT="after-submit:0"))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    exp = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    assert exp.record.job("packed").in_doubt and "#SBATCH hetjob" in (exp.record.job_dir("packed") / "sbatch.sh").read_text()
    resumed = run_cli(["exp", "rerun", exp.id, "--resume"], env=cli_env)
    assert resumed.returncode == 0, resumed.stderr
    assert "job packed: found on slurm as" in resumed.stdout, resumed.stdout
    job_id = exp.record.job("packed").handle["id"]
    assert [exp.record.job(t).handle["id"] for t in ("hello-0", "hello-1")] == [f"{job_id}:hello-0", f"{job_id}:hello-1"]
    assert {n: s.state.value for n, s in exp.wait(poll=0.5).items()} == dict.fromkeys(["packed", "hello-0", "hello-1"], "SUCCEEDED")
    assert [_logs(cli_env, exp, t).strip() for t in ("hello-0", "hello-1")] == ["nodes 1", "nodes 2\nnodes 2"]


@pytest.mark.slurm
def test_wait_names_the_failed_step_once(slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    """``wait=true`` on a packed sweep fails the command naming the sweep job whose step failed;
    the allocation is not counted as one more failed job."""
    proc = run_cli(_sweep(slurm_cluster, "task.env.C=0,3", "task.inline='sleep $C; exit $C'", "wait=true"), env=cli_env)
    assert proc.returncode == 1, proc.stderr
    exp = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    assert f"1 of 2 jobs of experiment {exp.id} failed: hello-1 (exit 3)" in proc.stderr, proc.stderr
