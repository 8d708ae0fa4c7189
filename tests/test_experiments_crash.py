"""Crash safety: ``kill -9`` of a sweep submission at several points, then ``exp rerun --resume``.

The kill is real (SIGKILL from ``NEMORUN_FAULT`` fault points in nemorun.experiment, so it lands
at an exact step); the jobs are real local jobs. After each crash the record must say which jobs
exist, and ``--resume`` must submit exactly the missing ones (each job runs once).
"""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nemorun.api import Experiment
from tests.helpers import run_cli

SWEEP = ["-m", "task=hello", "task.inline='echo run-$RANDOM'", "executor.ntasks_per_node=1,2,3,4,5"]


def _only_experiment(home: Path) -> Experiment:
    [folder] = [p for p in (home / "experiments").glob("*/*") if p.is_dir()]
    return Experiment(folder)


@pytest.mark.parametrize(
    "fault, submitted, in_doubt",
    [("rendered", 0, 0), ("before-submit:2", 2, 1), ("after-submit:2", 2, 1), ("after-submit:4", 4, 1)],
)
def test_kill_9_then_resume_submits_only_missing(cli_env: dict[str, str], nemorun_home: Path, fault: str, submitted: int, in_doubt: int) -> None:
    proc = run_cli(SWEEP, env=dict(cli_env, NEMORUN_FAULT=fault))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    exp = _only_experiment(nemorun_home)
    jobs = exp.jobs
    assert len(jobs) == 5 and all((exp.record.job_dir(j.name) / "launch.sh").exists() for j in jobs)
    assert sum(j.phase == "submitted" for j in jobs) == submitted
    assert sum(j.in_doubt for j in jobs) == in_doubt
    assert all(j.phase in ("rendered", "submitted") for j in jobs)

    resumed = run_cli(["exp", "rerun", exp.id[:12], "--resume"], env=cli_env)
    assert resumed.returncode == 0, resumed.stderr
    exp = Experiment(exp.path)
    assert all(j.phase == "submitted" for j in exp.jobs)
    states = exp.wait(poll=0.2)
    assert {s.state.value for s in states.values()} == {"SUCCEEDED"}
    for j in exp.jobs:  # each job ran exactly once, including the one whose submission was in doubt
        out = (exp.record.job_dir(j.name) / "stdout.log").read_text()
        assert out.count("run-") == 1, (j.name, out)
    again = run_cli(["exp", "rerun", exp.id, "--resume"], env=cli_env)
    assert again.returncode == 0 and "0 of 5 jobs not yet submitted" in again.stdout


def test_two_launches_at_once(cli_env: dict[str, str], nemorun_home: Path) -> None:
    cmd = [sys.executable, "-m", "nemorun", "-m", "task=hello", "executor.ntasks_per_node=1,2,3"]
    procs = [subprocess.Popen(cmd + [f"name=twin{i}"], env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    listed = run_cli(["exp", "list", "--json"], env=cli_env)
    rows = __import__("json").loads(listed.stdout)
    assert sorted(r["name"] for r in rows) == ["twin0", "twin1"]
    assert all(r["jobs"] == 3 for r in rows)
    (nemorun_home / "catalog.db").unlink()  # the catalog is a cache: rebuilt from the folders
    rows = __import__("json").loads(run_cli(["exp", "list", "--json"], env=cli_env).stdout)
    assert sorted(r["name"] for r in rows) == ["twin0", "twin1"]
