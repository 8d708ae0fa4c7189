"""The local executor end to end, through the real CLI: real processes, real files, real exit codes."""
from __future__ import annotations

import json
import time
from pathlib import Path

from nemorun.states import AppState
from nemorun.store import ExperimentRecord
from nemorun.submitters import local as local_submitter
from tests.helpers import run_cli


def only_experiment(home: Path) -> ExperimentRecord:
    dirs = [p.parent for p in home.glob("experiments/*/*/experiment.json")]
    assert len(dirs) == 1, dirs
    return ExperimentRecord(dirs[0])


def wait_terminal(rec: ExperimentRecord, job: str, timeout: float = 30) -> None:
    handle = rec.job(job).handle_obj()
    assert handle is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = local_submitter.status([handle])[handle.id]
        if status.state.is_terminal:
            rec.record_status(job, status)
            return
        time.sleep(0.05)
    raise AssertionError(f"job {job} did not finish in {timeout}s")


def test_job_writes_a_file_and_records_success(cli_env: dict[str, str], nemorun_home: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    proc = run_cli(
        ["task=hello", "task.inline='echo written > result.txt; echo to-stderr >&2'", f"executor.workdir={work}", "wait=true"],
        env=cli_env,
    )
    assert proc.returncode == 0, proc.stderr
    assert (work / "result.txt").read_text() == "written\n"
    rec = only_experiment(nemorun_home)
    assert "to-stderr" in proc.stderr and rec.id in proc.stdout
    job = rec.job("hello")
    assert job.phase == "submitted" and job.state == "SUCCEEDED" and job.exit_code == 0
    assert (rec.job_dir("hello") / "stderr.log").read_text() == "to-stderr\n"
    assert (rec.job_dir("hello") / "launch.sh").is_file()
    assert "task=hello" in (rec.path / "overrides.yaml").read_text()
    assert "inline:" in (rec.path / "config.yaml").read_text()


def test_failing_job_exit_code_is_returned_and_recorded(cli_env: dict[str, str], nemorun_home: Path) -> None:
    proc = run_cli(["task=hello", "task.inline='echo failing; exit 3'", "wait=true"], env=cli_env)
    assert proc.returncode == 3
    assert "failing" in proc.stdout
    job = only_experiment(nemorun_home).job("hello")
    assert job.state == "FAILED" and job.exit_code == 3


def test_function_task_streams_its_losses(cli_env: dict[str, str], nemorun_home: Path) -> None:
    proc = run_cli(["task=train", "task.params.steps=3", "+task.params.sleep=0", "wait=true"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    losses = [line for line in proc.stdout.splitlines() if line.startswith("rank=0 step=")]
    assert len(losses) == 3
    values = [float(line.split("loss=")[1]) for line in losses]
    assert values[2] < values[0], "the example should actually learn"
    rec = only_experiment(nemorun_home)
    spec = json.loads((rec.job_dir("train") / "function.yaml").read_text())
    assert spec == {"target": "nemorun.examples.train.train", "params": {"steps": 3, "lr": 0.1, "seed": 0, "sleep": 0}}


def test_detached_job_is_recorded_as_finished_after_the_cli_returned(cli_env: dict[str, str], nemorun_home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "done"
    t0 = time.monotonic()
    proc = run_cli(["task=hello", f"task.inline='sleep 1.5; touch {marker}; exit 4'"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - t0 < 10
    rec = only_experiment(nemorun_home)
    job = rec.job("hello")
    assert job.state == "SUBMITTED" and job.exit_code is None and not marker.exists()
    # nemorun has exited; the job's own wrapper records its exit code when it ends
    deadline = time.monotonic() + 30
    while not (rec.job_dir("hello") / "exit_code").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()
    assert (rec.job_dir("hello") / "exit_code").read_text().strip() == "4"
    wait_terminal(rec, "hello")
    job = rec.job("hello")
    assert job.state == "FAILED" and job.exit_code == 4


def test_cancel_stops_the_whole_process_group(cli_env: dict[str, str], nemorun_home: Path, tmp_path: Path) -> None:
    child_pid = tmp_path / "child.pid"
    proc = run_cli(["task=hello", f"task.inline='sleep 300 & echo $! > {child_pid}; wait'"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    rec = only_experiment(nemorun_home)
    handle = rec.job("hello").handle_obj()
    assert handle is not None
    deadline = time.monotonic() + 10
    while not child_pid.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert local_submitter.status([handle])[handle.id].state is AppState.RUNNING
    local_submitter.cancel(handle)
    local_submitter.cancel(handle)  # idempotent
    wait_terminal(rec, "hello")
    assert rec.job("hello").state == "CANCELLED"
    pid = int(child_pid.read_text())
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_submission_failure_is_recorded(cli_env: dict[str, str], nemorun_home: Path, tmp_path: Path) -> None:
    proc = run_cli(["task=hello", f"executor.workdir={tmp_path / 'missing'}"], env=cli_env)
    assert proc.returncode == 2  # a config mistake, refused by resolve before anything is sent
    assert proc.stderr.startswith("nemorun: error: job hello was not submitted: working directory")
    job = only_experiment(nemorun_home).job("hello")
    assert job.phase == "failed-to-submit" and "does not exist" in (job.error or "")
