"""Slurm correctness items of issue 15: options sbatch refuses together, ``--exclusive`` modes,
per-task logs of a user ``--array``, the ft_launcher finished-flag protocol and the time-limit
signal trap.

Real parts: sbatch 22.05.8 of the test cluster (``slurm_cluster`` fixture) judges what it refuses
and runs the time-limit job; the rendered script runs in real bash with stub ``srun``/``scontrol``
executables (as tests/test_slurm_render.py's requeue-guard test) where a real requeue would
outlast the test budget.
"""
from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from nemorun.api import Experiment

from nemorun.lower import check_config, compile_job
from nemorun.plan import render_job
from nemorun.schemas.slurm import CONFLICTING_OPTIONS
from tests.fixtures.slurm_cluster import SlurmCluster
from tests.helpers import PINNED_SITE, compose_config, run_cli


def _script(*overrides: str) -> str:
    cfg = compose_config(["executor=slurm", "task=hello", *overrides])
    check_config(cfg)
    return render_job(compile_job(cfg, PINNED_SITE)).artifacts["sbatch.sh"]


def _refused(override: list[str], cli_env: dict[str, str]) -> str:
    r = run_cli(["executor=slurm", "task=hello", *override, "dryrun=true"], env=cli_env)
    assert r.returncode == 2 and r.stdout == "", r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nemorun: error: "), r.stderr
    return lines[0]


# --- item 3: mutually exclusive options -------------------------------------------------------

@pytest.mark.parametrize("overrides, named", [
    (["executor.mem=1G", "+executor.additional_parameters.mem_per_cpu=100M"], "executor.mem and executor.additional_parameters.mem_per_cpu"),
    (["executor.mem=1G", "+executor.additional_parameters.mem-per-gpu=1G"], "executor.mem and executor.additional_parameters.mem-per-gpu"),
    (["+executor.additional_parameters.mem_per_cpu=1G", "+executor.additional_parameters.mem_per_gpu=1G"], "mem_per_cpu and executor.additional_parameters.mem_per_gpu"),
    (["executor.gpus_per_task=1", "+executor.additional_parameters.ntasks_per_gpu=1"], "executor.gpus_per_task and"),
    (["+executor.additional_parameters.ntasks_per_gpu=1"], "nemorun always sets --ntasks-per-node"),
    (["executor.cpus_per_task=2", "+executor.additional_parameters.cpus_per_gpu=1"], "executor.cpus_per_task and executor.additional_parameters.cpus_per_gpu"),
])
def test_options_sbatch_refuses_together_are_refused_at_compose(overrides: list[str], named: str, cli_env: dict[str, str]) -> None:
    assert named in _refused(overrides, cli_env)


def test_false_or_null_additional_parameter_does_not_conflict() -> None:
    assert "--mem=1G" in _script("executor.mem=1G", "+executor.additional_parameters.mem_per_cpu=null")


@pytest.mark.slurm
@pytest.mark.parametrize("group", CONFLICTING_OPTIONS)
def test_sbatch_really_refuses_each_group(group: tuple[str, ...], slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """The list is the real binary's: any two of a group make sbatch 22.05.8 fail ("mutually exclusive")."""
    values = {"mem": "1G", "mem-per-cpu": "100M", "mem-per-gpu": "100M"}
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/bash\n" + "".join(f"#SBATCH --{f}={values.get(f, '1')}\n" for f in group[:2]) + "true\n")
    r = subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True, text=True)
    assert r.returncode != 0 and "mutually exclusive" in r.stderr, r.stderr


# --- item 7: --exclusive modes ---------------------------------------------------------------

@pytest.mark.parametrize("value, line", [("true", "#SBATCH --exclusive\n"), ("user", "#SBATCH --exclusive=user\n"), ("mcs", "#SBATCH --exclusive=mcs\n")])
def test_exclusive_modes(value: str, line: str) -> None:
    assert line in _script(f"executor.exclusive={value}")


def test_exclusive_false_renders_nothing() -> None:
    assert "--exclusive" not in _script("executor.exclusive=false")


@pytest.mark.parametrize("value, message", [("topo", "'topo' needs a newer Slurm than 22.05"), ("yes", "must be true, false, user or mcs or topo")])
def test_exclusive_unknown_mode_refused(value: str, message: str, cli_env: dict[str, str]) -> None:
    assert message in _refused([f"executor.exclusive={value}", "executor.slurm_version=22.05"], cli_env)


@pytest.mark.slurm
@pytest.mark.parametrize("value", ["user", "mcs", "true"])
def test_exclusive_modes_pass_sbatch(value: str, slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    script = tmp_path / "sbatch.sh"
    script.write_text(_script(f"executor.exclusive={value}", f"executor.job_dir={slurm_cluster.jobs_dir}"))
    r = subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True, text=True)
    assert r.returncode == 0 and "to start at" in r.stderr, r.stderr


# --- item 4: arrays write one log pair per task ----------------------------------------------

def test_user_array_gets_per_task_logs() -> None:
    text = _script("+executor.additional_parameters.array=0-3", "executor.job_dir=/shared/n")
    assert "#SBATCH --array=0-3\n" in text
    assert "/stdout-%a.log\n" in text and "/stderr-%a.log\n" in text and "stdout.log" not in text


@pytest.mark.slurm
def test_user_array_tasks_write_their_own_logs(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    """Submitted for real: each array task's output lands in its own stdout-<i>.log."""
    jobs = tmp_path / "jobs"
    text = _script("+executor.additional_parameters.array=0-1", "task.inline='echo task $SLURM_ARRAY_TASK_ID'", f"executor.job_dir={jobs}")
    remote = next(line.split("=", 1)[1] for line in text.splitlines() if line.startswith("#SBATCH --chdir="))
    Path(remote).mkdir(parents=True)
    (Path(remote) / "sbatch.sh").write_text(text)
    job_id = subprocess.run(["sbatch", "--parsable", f"{remote}/sbatch.sh"], capture_output=True, text=True, check=True).stdout.strip()
    deadline = time.time() + 60
    while time.time() < deadline and subprocess.run(["squeue", "-h", "-j", job_id], capture_output=True, text=True).stdout.strip():
        time.sleep(1)
    assert [(Path(remote) / f"stdout-{i}.log").read_text().strip() for i in (0, 1)] == ["task 0", "task 1"]
    assert not (Path(remote) / "stdout.log").exists()


@pytest.mark.slurm
def test_user_array_logs_through_the_cli(slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    """Launched by nemorun: the job's handle names a task's own log file, so `exp logs` shows output."""
    proc = run_cli(["executor=slurm", f"executor.job_dir={slurm_cluster.jobs_dir}/user-array", "task=hello",
                    "task.inline='echo task $SLURM_ARRAY_TASK_ID'", "+executor.additional_parameters.array=2-3"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    exp = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    exp.wait(poll=0.5)
    logs = run_cli(["exp", "logs", exp.id], env=cli_env)
    assert logs.returncode == 0 and logs.stdout.strip() == "task 2", (logs.stdout, logs.stderr)


# --- items 5 and 2: ft finished flag, time-limit signal --------------------------------------

def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!/bin/bash\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _run(text: str, tmp_path: Path, srun_body: str, restarts: str = "0", signal_after: float | None = None) -> tuple[int, str, str]:
    """Run the batch script with stub srun/scontrol; optionally send the batch shell SIGUSR1
    (what ``--signal=B:USR1@N`` does) once the step has started. Returns (rc, scontrol calls, stderr)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    _stub(bin_dir, "srun", srun_body)
    _stub(bin_dir, "scontrol", f'echo "$*" >> {tmp_path}/scontrol.calls')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "77", "SLURM_RESTART_COUNT": restarts, "OUT": str(tmp_path)}
    proc = subprocess.Popen(["bash", "-c", text], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if signal_after is not None:
        deadline = time.time() + 10
        while not (tmp_path / "step.started").exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(signal_after)
        proc.send_signal(10)  # SIGUSR1
    _, err = proc.communicate(timeout=30)
    calls = tmp_path / "scontrol.calls"
    return proc.returncode, calls.read_text() if calls.exists() else "", err


FT = ["launcher=ft", "task.inline=null", "task.script=train.py", "executor.retries=2", "executor.job_dir=/shared/n"]


def test_ft_exports_the_finished_flag_file() -> None:
    text = _script(*FT)
    assert "export FAULT_TOL_FINISHED_FLAG_FILE=/shared/n/hello/" in text and "/hello/ft_finished.flag\n" in text
    pyxis = _script(*FT, "executor.container_image=img")
    assert "--container-env=FAULT_TOL_FINISHED_FLAG_FILE" in pyxis


@pytest.mark.parametrize("flag, rc, requeued", [(False, 3, True), (True, 3, False), (False, 0, False)])
def test_ft_requeues_only_while_the_finished_flag_is_absent(flag: bool, rc: int, requeued: bool, tmp_path: Path) -> None:
    text = _script(*FT[:-1], f"executor.job_dir={tmp_path}/jobs")
    flag_file = text.split("export FAULT_TOL_FINISHED_FLAG_FILE=", 1)[1].split("\n", 1)[0]
    Path(flag_file).parent.mkdir(parents=True)
    srun = (f'touch {flag_file}; ' if flag else "") + f"exit {rc}"
    code, calls, _ = _run(text, tmp_path, srun)
    assert code == rc and calls == ("requeue 77\n" if requeued else "")


def test_ft_requeued_attempt_after_finish_ends_at_once(tmp_path: Path) -> None:
    text = _script(*FT[:-1], f"executor.job_dir={tmp_path}/jobs")
    flag_file = Path(text.split("export FAULT_TOL_FINISHED_FLAG_FILE=", 1)[1].split("\n", 1)[0])
    flag_file.parent.mkdir(parents=True)
    flag_file.touch()
    code, calls, err = _run(text, tmp_path, "touch $OUT/ran; exit 5", restarts="1")
    assert code == 0 and calls == "" and not (tmp_path / "ran").exists() and "already finished" in err


def test_signal_goes_to_the_batch_shell_only() -> None:
    assert "#SBATCH --signal=B:USR1@90\n" in _script("executor.signal=USR1@90")
    assert "#SBATCH --signal=B:USR1@90\n" in _script("executor.signal=B:USR1@90")
    assert "#SBATCH --signal=BR:10@30\n" in _script("executor.signal=R:10@30")


def test_bad_signal_refused(cli_env: dict[str, str]) -> None:
    assert "executor: signal must be [R:]SIGNAL[@SECONDS]" in _refused(["executor.signal='USR1 at 90'"], cli_env)


# the step: a launcher that, like torchrun, stops cleanly on SIGTERM but would die of SIGUSR1
STEP = 'trap "echo stopped >> $OUT/step.log; exit 0" TERM; trap "echo usr1 >> $OUT/step.log; exit 138" USR1; touch $OUT/step.started; for i in $(seq 100); do sleep 0.1; done; exit 0'


@pytest.mark.parametrize("restarts, requeued", [("0", True), ("3", False)])
def test_time_limit_signal_stops_step_cleanly_and_requeues_within_retries(restarts: str, requeued: bool, tmp_path: Path) -> None:
    text = _script("executor.retries=3", "executor.signal=USR1@90")
    code, calls, err = _run(text, tmp_path, STEP, restarts=restarts, signal_after=0.3)
    assert (tmp_path / "step.log").read_text() == "stopped\n"  # SIGTERM reached the step, SIGUSR1 did not
    assert calls == ("requeue 77\n" if requeued else "")
    assert "before the time limit" in err and code == 0


def test_time_limit_signal_without_retries_only_stops(tmp_path: Path) -> None:
    code, calls, _ = _run(_script("executor.signal=USR1@90"), tmp_path, STEP, signal_after=0.3)
    assert (tmp_path / "step.log").read_text() == "stopped\n" and calls == "" and code == 0
