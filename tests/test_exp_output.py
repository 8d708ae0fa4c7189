"""What ``nemorun exp list|show|status`` tell a reader, on real local jobs through the real CLI:
a sweep's jobs by their swept values, exit codes, and states known on this machine without a
status query (a finished local job never lists as SUBMITTED; a non-final state says how old it is).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from tests.helpers import run_cli


def _json(args: list[str], env: dict[str, str]) -> object:
    proc = run_cli([*args, "--json"], env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _until(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.3)


def test_sweep_jobs_are_named_by_their_values(cli_env: dict[str, str]) -> None:
    proc = run_cli(["-m", "task=hello", "executor.ntasks_per_node=1,2", "task.env.X=a,b",
                    "name=grid"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    # `exp list` alone (no status query) sees the local jobs finish: it reads their exit codes
    _until(lambda: _json(["exp", "list"], cli_env)[0]["states"] == {"SUCCEEDED": 4})  # type: ignore[index]
    [row] = _json(["exp", "list"], cli_env)  # type: ignore[misc]
    assert row["swept"] == ["executor.ntasks_per_node", "task.env.X"]

    shown = _json(["exp", "show", "latest"], cli_env)
    values = {j["name"]: j["values"] for j in shown["jobs"]}  # type: ignore[index]
    assert sorted(values.values(), key=str) == sorted(
        [{"executor.ntasks_per_node": n, "task.env.X": x} for n in "12" for x in "ab"], key=str)
    for job in shown["jobs"]:  # type: ignore[index]
        record = json.loads((Path(job["folder"]) / "record.json").read_text())
        assert f"task.env.X={job['values']['task.env.X']}" in record["overrides"]

    table = run_cli(["exp", "show", "latest"], env=cli_env).stdout.splitlines()
    header = next(line for line in table if line.startswith("JOB"))
    assert header.split()[:6] == ["JOB", "ntasks_per_node", "X", "PHASE", "STATE", "EXIT"]
    first = values["hello-0"]
    assert any(line.split()[:3] == ["hello-0", first["executor.ntasks_per_node"], first["task.env.X"]] for line in table)

    status = _json(["exp", "status", "latest"], cli_env)
    assert status["swept"] == ["executor.ntasks_per_node", "task.env.X"]  # type: ignore[index]
    assert {n: j["values"] for n, j in status["jobs"].items()} == values  # type: ignore[index]
    plain = run_cli(["exp", "list"], env=cli_env).stdout
    assert "ntasks_per_node,X" in plain and "(as of" not in plain


def test_failed_job_shows_its_exit_code_and_a_running_one_its_age(cli_env: dict[str, str]) -> None:
    assert run_cli(["task=hello", "task.inline='exit 3'", "name=bad"], env=cli_env).returncode == 0
    _until(lambda: _json(["exp", "list", "--name", "bad"], cli_env)[0]["states"] == {"FAILED": 1})  # type: ignore[index]
    table = run_cli(["exp", "show", "latest"], env=cli_env).stdout
    assert any(line.split()[:4] == ["hello", "submitted", "FAILED", "3"] for line in table.splitlines()), table

    assert run_cli(["task=hello", "task.inline='sleep 60'", "name=slow"], env=cli_env).returncode == 0
    try:
        _until(lambda: "RUNNING" in _json(["exp", "list", "--name", "slow"], cli_env)[0]["states"])  # type: ignore[index]
        line = next(x for x in run_cli(["exp", "list"], env=cli_env).stdout.splitlines() if " slow " in x)
        assert "RUNNING:1 (as of " in line
        [row] = _json(["exp", "list", "--name", "slow"], cli_env)  # type: ignore[misc]
        assert abs(row["checked"] - time.time()) < 60
    finally:
        run_cli(["exp", "cancel", "latest"], env=cli_env)
