"""A status writes the states it saw change as ONE file (``states.json``), not one record per job:
the first look at a finished 1,000-task array rewrote 1,000 records (1,000 new files, the whole
cost of that look on these disks). Real store, real files, real processes (kills are real
SIGKILLs); where no backend is needed the backend's answers are given as the JobStatus values a
status would record, and the end-to-end crash tests run real local jobs through the CLI."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nemorun import catalog, tracking
from nemorun.api import Experiment
from nemorun.errors import DamagedRecordError
from nemorun.states import AppState, JobStatus
from nemorun.store import JOB_FILE, STATES_FILE, ExperimentRecord, JobRecord, new_experiment_id
from tests.helpers import run_cli


def _array(home: Path, tasks: int) -> ExperimentRecord:
    names = [f"t-{i}" for i in range(tasks)]
    rec = ExperimentRecord.create(home=home, name="t", experiment_id=new_experiment_id(), target="slurm", config_yaml="{}\n",
                                  overrides=[], submit_dir="/", job_names=names, kind="sweep", multirun=True)
    rec.save_jobs(JobRecord(n, "slurm", phase="submitted", state="SUBMITTED", array="t-array", array_index=i,
                            handle={"backend": "slurm", "id": f"7_{i}", "data": {}}) for i, n in enumerate(names))
    return rec


def test_a_status_rewrites_no_record_and_reads_back_through_the_table(tmp_path: Path) -> None:
    rec = _array(tmp_path, 50)
    files = [rec.job_dir(f"t-{i}") / JOB_FILE for i in range(50)]
    before = [(f.stat().st_ino, f.read_bytes()) for f in files]
    seen = rec.record_statuses((rec.job(f"t-{i}"), JobStatus(AppState.FAILED if i % 2 else AppState.SUCCEEDED, i % 2, "x"))
                               for i in range(50))
    assert [r.state for r in seen[:2]] == ["SUCCEEDED", "FAILED"]
    assert [(f.stat().st_ino, f.read_bytes()) for f in files] == before  # the records are as the launch wrote them
    assert len(json.loads((rec.path / STATES_FILE).read_text())["jobs"]) == 50
    fresh = ExperimentRecord(rec.path)  # another process: reads the state through the table
    assert [(j.state, j.exit_code) for j in fresh.jobs()[:3]] == [("SUCCEEDED", 0), ("FAILED", 1), ("SUCCEEDED", 0)]
    catalog.refresh(tmp_path, fresh)
    assert catalog.rows(tmp_path)[0]["states"] == {"FAILED": 25, "SUCCEEDED": 25}


def test_a_record_written_after_the_table_wins(tmp_path: Path) -> None:
    """``exp cancel`` (or a resume) writes the job's record after a status: its state is the newer truth."""
    rec = _array(tmp_path, 2)
    rec.record_statuses([(rec.job("t-0"), JobStatus(AppState.RUNNING, None, "R"))])
    job = rec.job("t-0")
    assert job.state == "RUNNING"
    job.cancelled_at, job.state = job.updated_at, "CANCELLED"
    rec.save_job(job)
    assert ExperimentRecord(rec.path).job("t-0").state == "CANCELLED"
    rec.record_statuses([(rec.job("t-1"), JobStatus(AppState.RUNNING, None, "R"))])  # the table rewritten, t-0 kept
    assert ExperimentRecord(rec.path).job("t-0").state == "CANCELLED"


def test_concurrent_statuses_keep_each_others_news(tmp_path: Path) -> None:
    """Two processes recording different jobs at once (a waiting launch and ``exp status``), one
    poll after the other, both started together: the table is merged under its lock, never one
    writer's whole view over the other's (without the lock this lost jobs in most runs)."""
    tasks = 120
    rec = _array(tmp_path, tasks)
    go = tmp_path / "go"
    script = ("import os, sys, time; from nemorun.store import ExperimentRecord; from nemorun.states import AppState, JobStatus\n"
              "r = ExperimentRecord(sys.argv[1])\n"
              "while not os.path.exists(sys.argv[3]): time.sleep(0.001)\n"
              f"for i in range(int(sys.argv[2]), {tasks}, 2):\n"
              "    r.record_statuses([(r.job(f't-{i}'), JobStatus(AppState.SUCCEEDED, 0, ''))])\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(rec.path), str(k), str(go)], env=os.environ) for k in (0, 1)]
    time.sleep(0.5)  # both started and waiting (a late one only makes the test weaker, never fail)
    go.touch()
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert [j.name for j in ExperimentRecord(rec.path).jobs() if j.state != "SUCCEEDED"] == []


def test_a_killed_table_write_leaves_the_old_table(tmp_path: Path) -> None:
    rec = _array(tmp_path, 3)
    rec.record_statuses([(rec.job("t-0"), JobStatus(AppState.RUNNING, None, ""))])
    script = ("import os, signal, sys\nfrom nemorun.store import ExperimentRecord\nfrom nemorun.states import AppState, JobStatus\n"
              "os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)\n"
              "r = ExperimentRecord(sys.argv[1])\n"
              "r.record_statuses([(r.job(f't-{i}'), JobStatus(AppState.SUCCEEDED, 0, '')) for i in range(3)])\n")
    assert subprocess.run([sys.executable, "-c", script, str(rec.path)]).returncode == -9
    assert [j.state for j in ExperimentRecord(rec.path).jobs()] == ["RUNNING", "SUBMITTED", "SUBMITTED"]


def test_equal_times_and_a_clock_stepping_back_cannot_make_a_status_win_over_a_later_record(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The table applies to the version of the record it was seen on (``rev``), not to "older"
    records by wall time: a cancel written at the same instant as the status, or after the clock
    stepped back an hour, is still the job's state."""
    rec = _array(tmp_path, 2)
    for name, later in (("t-0", 5000.0), ("t-1", 5000.0 - 3600)):  # same tick; clock stepped back
        monkeypatch.setattr(time, "time", lambda: 5000.0)
        rec.record_statuses([(rec.job(name), JobStatus(AppState.RUNNING, None, "R"))])
        assert ExperimentRecord(rec.path).job(name).state == "RUNNING"
        monkeypatch.setattr(time, "time", lambda t=later: t)
        job = rec.job(name)
        job.cancelled_at, job.state = later, "CANCELLED"
        rec.save_job(job)
        assert ExperimentRecord(rec.path).job(name).state == "CANCELLED"
    # the stale entries stay in the file but never apply again; a new status replaces them
    assert set(json.loads((rec.path / STATES_FILE).read_text())["jobs"]) == {"t-0", "t-1"}
    rec.record_statuses([(rec.job("t-1"), JobStatus(AppState.UNKNOWN, None, "gone"))])
    assert ExperimentRecord(rec.path).job("t-1").state == "CANCELLED"  # cancelled by nemorun, then forgotten


def test_a_launch_rewriting_a_record_keeps_the_state_a_status_saw(tmp_path: Path) -> None:
    """Writers read the job through the table, so a record they write carries the state a status
    saw (a resume adopting tasks, a launch marking steps) rather than the record's older one."""
    rec = _array(tmp_path, 1)
    rec.record_statuses([(rec.job("t-0"), JobStatus(AppState.FAILED, 3, "exit 3"))])
    job = rec.job("t-0")
    job.submitted_at = 1.0  # any rewrite
    rec.save_job(job)
    raw = json.loads((rec.job_dir("t-0") / JOB_FILE).read_text())
    assert (raw["state"], raw["exit_code"], raw["detail"]) == ("FAILED", 3, "exit 3")
    assert ExperimentRecord(rec.path).job("t-0").state == "FAILED"


def test_of_two_statuses_of_the_same_record_the_one_that_saw_the_end_wins(tmp_path: Path) -> None:
    """Two statuses merging into the table under its lock: one that queried earlier and saw the job
    RUNNING writes after one that saw it SUCCEEDED; the job does not go back to RUNNING."""
    rec = _array(tmp_path, 1)
    stale = rec.job("t-0")  # the slower status read the record before the other one wrote
    rec.record_statuses([(rec.job("t-0"), JobStatus(AppState.SUCCEEDED, 0, ""))])
    [kept] = ExperimentRecord(rec.path).record_statuses([(stale, JobStatus(AppState.RUNNING, None, "R"))])
    assert (kept.state, kept.exit_code) == ("SUCCEEDED", 0)
    assert ExperimentRecord(rec.path).job("t-0").state == "SUCCEEDED"


def test_catalog_rows_see_a_table_written_behind_their_back(tmp_path: Path) -> None:
    """A status killed after writing the table but before the catalog row (``status-recorded``):
    ``exp list`` re-reads the experiment because the table is part of its fingerprint."""
    rec = _array(tmp_path, 4)
    catalog.refresh(tmp_path, rec)
    assert catalog.rows(tmp_path)[0]["states"] == {"SUBMITTED": 4}
    ExperimentRecord(rec.path).record_statuses([(f"t-{i}", JobStatus(AppState.SUCCEEDED, 0, "")) for i in range(3)])
    assert catalog.rows(tmp_path)[0]["states"] == {"SUBMITTED": 1, "SUCCEEDED": 3}


def _finished(rec: ExperimentRecord, states: dict[str, tuple[AppState, int]]) -> None:
    rec.record_statuses([(rec.job(n), JobStatus(s, code, s.value.lower())) for n, (s, code) in states.items()])


def test_every_reader_takes_the_state_from_the_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The records still say SUBMITTED; every reader of a job's state (catalog rows, ``exp
    list/show/status/cancel``, the Python API, a wait) says what the status recorded. ``exp
    cancel`` cancelling nothing shows it read the finished states (it would call scancel, which
    this machine does not have, for a SUBMITTED task)."""
    monkeypatch.setenv("NEMORUN_HOME", str(tmp_path))
    rec = _array(tmp_path, 3)
    _finished(rec, {"t-0": (AppState.SUCCEEDED, 0), "t-1": (AppState.FAILED, 7), "t-2": (AppState.CANCELLED, 143)})
    assert {json.loads((rec.job_dir(f"t-{i}") / JOB_FILE).read_text())["state"] for i in range(3)} == {"SUBMITTED"}
    want = {"t-0": ("SUCCEEDED", 0), "t-1": ("FAILED", 7), "t-2": ("CANCELLED", 143)}
    env = {**os.environ, "NEMORUN_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}

    def cli(*args: str) -> dict:  # type: ignore[type-arg]
        proc = run_cli(list(args), env=env)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    assert cli("exp", "list", "--json")[0]["states"] == {"CANCELLED": 1, "FAILED": 1, "SUCCEEDED": 1}
    assert {j["name"]: (j["state"], j["exit_code"]) for j in cli("exp", "show", rec.id, "--json")["jobs"]} == want
    assert {n: (j["state"], j["exit_code"]) for n, j in cli("exp", "status", rec.id, "--json")["jobs"].items()} == want
    assert cli("exp", "cancel", rec.id, "--json")["cancelled"] == []
    exp = Experiment(rec.path)
    assert {j.name: (j.state, j.exit_code) for j in exp.jobs} == want
    assert {n: (s.state.value, s.exit_code) for n, s in exp.status().items()} == want
    assert {n: (s.state.value, s.exit_code) for n, s in tracking.wait(exp.record, poll=0).items()} == want


def _damage(rec: ExperimentRecord, text: str) -> Path:
    path = rec.path / STATES_FILE
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, why", [
    ('{"jobs": {"t-0": {"rev": "ab", "sta', "is not valid JSON"),  # truncated
    ('{"jobs": [1, 2]}\n', "has no job table"),
    ('{"jobs": {"t-0": {"rev": null, "state": 3, "seen_at": 1}}}\n', "holds no readable state for job 't-0'"),
])
def test_a_damaged_table_is_one_line_naming_the_file(tmp_path: Path, text: str, why: str) -> None:
    """Damage is ONE line that names the file and says what to do; ``exp list`` still lists the
    other experiments, this one as damaged; moving the file away recovers the records' states."""
    rec = _array(tmp_path, 2)
    _finished(rec, {"t-0": (AppState.SUCCEEDED, 0), "t-1": (AppState.SUCCEEDED, 0)})
    other = _array(tmp_path, 1)
    path = _damage(rec, text)
    env = {**os.environ, "NEMORUN_HOME": str(tmp_path)}
    for command in ("status", "show", "cancel"):
        proc = run_cli(["exp", command, rec.id], env=env)
        assert proc.returncode == 1 and proc.stdout == "", proc.stdout
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert proc.stderr.startswith(f"nemorun: error: experiment record damaged: {path}"), proc.stderr
        assert why in proc.stderr and "move it away" in proc.stderr
    rows = {r["id"]: r for r in json.loads(run_cli(["exp", "list", "--json"], env=env).stdout)}
    assert rows[rec.id]["kind"] == "damaged" and rows[other.id]["states"] == {"SUBMITTED": 1}
    with pytest.raises(DamagedRecordError, match=STATES_FILE):
        Experiment(rec.path).status()
    path.rename(path.with_name("states.json.bad"))
    assert {j.state for j in ExperimentRecord(rec.path).jobs()} == {"SUBMITTED"}


# -- crash safety end to end: real local jobs, a real kill -9 at each point of a status --------------


def _launch_finished_sweep(cli_env: dict[str, str], home: Path) -> ExperimentRecord:
    """A 3-job local sweep whose jobs have all ended, not yet looked at by any status."""
    proc = run_cli(["-m", "task=hello", "task.inline='echo out-$X; exit 0'", "task.env.X=1,2,3"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    [folder] = [p for p in (home / "experiments").glob("*/*") if p.is_dir()]
    rec = ExperimentRecord(folder)
    deadline = time.monotonic() + 60
    while not all((rec.job_dir(n) / "exit_code").exists() for n in rec.meta["jobs"]):
        assert time.monotonic() < deadline, "the local jobs did not end"
        time.sleep(0.1)
    assert not (rec.path / STATES_FILE).exists()
    return rec


@pytest.mark.parametrize("point", ["status-logs-kept", "states-merged", "status-recorded"])
def test_kill_9_during_a_status_leaves_a_readable_store_and_the_next_status_completes(
        cli_env: dict[str, str], nemorun_home: Path, point: str) -> None:
    rec = _launch_finished_sweep(cli_env, nemorun_home)
    killed = run_cli(["exp", "status", rec.id], env={**cli_env, "NEMORUN_FAULT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    after = ExperimentRecord(rec.path).jobs()  # every file reads
    written = point == "status-recorded"
    assert {j.state for j in after} == ({"SUCCEEDED"} if written else {"SUBMITTED"})
    assert (rec.path / STATES_FILE).exists() == written
    # the lock a killed status held (states-merged) is free: the next status writes the table
    proc = run_cli(["exp", "status", rec.id, "--json"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert {j["state"] for j in json.loads(proc.stdout)["jobs"].values()} == {"SUCCEEDED"}
    [row] = json.loads(run_cli(["exp", "list", "--json"], env=cli_env).stdout)
    assert row["states"] == {"SUCCEEDED": 3}
    assert sorted((rec.job_dir(n) / "stdout.log").read_text() for n in rec.meta["jobs"]) == [f"out-{i}\n" for i in (1, 2, 3)]


def test_a_resume_after_a_crash_keeps_the_states_a_status_recorded(cli_env: dict[str, str], nemorun_home: Path) -> None:
    """A launch killed after sending 3 of 5 jobs (the third in doubt), a status that records the
    sent ones' ends in the table, then ``--resume``: it adopts the job in doubt and sends the
    rest (rewriting their records), and the states the status recorded are still the jobs'."""
    proc = run_cli(["-m", "task=hello", "task.inline='echo ran'", "task.env.X=1,2,3,4,5"],
                   env={**cli_env, "NEMORUN_FAULT": "after-submit:2"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    [folder] = [p for p in (nemorun_home / "experiments").glob("*/*") if p.is_dir()]
    rec = ExperimentRecord(folder)
    sent = [n for n in rec.meta["jobs"] if rec.job(n).phase == "submitted"]
    assert len(sent) == 2
    deadline = time.monotonic() + 60
    while not all((rec.job_dir(n) / "exit_code").exists() for n in sent):
        assert time.monotonic() < deadline, "the local jobs did not end"
        time.sleep(0.1)
    assert run_cli(["exp", "status", rec.id], env=cli_env).returncode == 0
    assert {rec.job(n).state for n in sent} == {"SUCCEEDED"} and (rec.path / STATES_FILE).exists()
    resumed = run_cli(["exp", "rerun", rec.id, "--resume"], env=cli_env)
    assert resumed.returncode == 0, resumed.stderr
    assert {rec.job(n).state for n in sent} == {"SUCCEEDED"}  # not back to SUBMITTED
    states = Experiment(rec.path).wait(poll=0.2)
    assert {s.state.value for s in states.values()} == {"SUCCEEDED"}
    assert [(rec.job_dir(n) / "stdout.log").read_text() for n in rec.meta["jobs"]] == ["ran\n"] * 5  # each ran once


def test_a_waiting_launch_and_exp_status_at_once(cli_env: dict[str, str], nemorun_home: Path) -> None:
    """The real pair: a sweep launched with ``wait=true`` polls (and writes the table) while
    ``exp status`` runs beside it; both finish, and every job ends recorded SUCCEEDED."""
    launch = subprocess.Popen([sys.executable, "-m", "nemorun", "-m", "task=hello", "task.inline='sleep 1; echo done'",
                               "task.env.X=1,2,3,4", "wait=true"], env=cli_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list((nemorun_home / "experiments").glob("*/*/jobs/*/record.json")):
        assert time.monotonic() < deadline and launch.poll() is None, launch.communicate()
        time.sleep(0.05)
    statuses = 0
    while launch.poll() is None:
        proc = run_cli(["exp", "status", "latest", "--json"], env=cli_env)
        assert proc.returncode == 0, proc.stderr
        statuses += 1
    out, err = launch.communicate()
    assert launch.returncode == 0, err
    assert statuses >= 1
    [folder] = [p for p in (nemorun_home / "experiments").glob("*/*") if p.is_dir()]
    assert {j.state for j in ExperimentRecord(folder).jobs()} == {"SUCCEEDED"}
    assert set(json.loads((folder / STATES_FILE).read_text())["jobs"]) == {f"hello-{i}" for i in range(4)}
