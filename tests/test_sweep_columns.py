"""An array sweep is planned as ONE array job plus a column table, never a Job per task.

Why: a 10,000-task dry run held a Job, a PlannedJob, a params dict, a name and an override tuple
per task (~20 MB more than 1,000 tasks; issue 18 asks for flat memory). The plan now carries
``ir.ArrayTable`` (a value per task and varying parameter) and ``plan.ArrayTaskJobs`` (each task's
job made when read). These tests pin that the table gives exactly what the Job-per-task path gave
(artifacts byte for byte, rows, records), and that the cases a column cannot hold (a task adding a
parameter, one path under another) still plan correctly through that path.
Peak memory itself is measured in bench/sweep_floor.py, not asserted here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from nemorun import compose, ir
from nemorun.command import TASK_TABLE
from nemorun.lower import Site
from nemorun.plan import ArrayTaskJobs, ExperimentPlan, array_job, plan, render_job

KWARGS_MODULE = "def fn(**params):\n    return 0\n"


def _plan(batch: Sequence[Sequence[str]], site: Site, command: Sequence[str] | None = None) -> ExperimentPlan:
    with compose.hydra_context() as loader, compose.described():
        return plan(batch, compose.FilesComposer(loader), site, multirun=True, command_overrides=command)


def _site(tmp_path: Path) -> Site:
    return Site(experiment_id="20260101-000000-000000-abcd", submit_dir=str(tmp_path), home=str(tmp_path / "home"),
                python=sys.executable)


def _rows(p: ExperimentPlan) -> list[dict]:
    assert p.array is not None and p.array.rendered is not None
    return [json.loads(r)["params"] for r in p.array.rendered.artifacts[TASK_TABLE].splitlines()]


def test_array_sweep_is_one_job_and_columns(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    command = ["executor=slurm", "task=train", "task.params.lr=range(0,60)", "task.params.seed=1,2"]
    batch = compose.sweep_batch(command)
    p = _plan(batch, _site(tmp_path), command)
    assert p.array is not None
    table = p.array.job.array_tasks
    assert isinstance(table, ir.ArrayTable) and isinstance(p.jobs, ArrayTaskJobs)
    # one value per task and varying key; the task itself is made only when read
    assert {path: len(values) for path, values in table.columns} == {("lr",): 120, ("seed",): 120}
    assert _rows(p) == [{"steps": 20, "lr": lr, "seed": seed} for lr in range(60) for seed in (1, 2)]
    # the same artifacts, byte for byte, as an array made from a Job per task (the old path)
    jobs = [planned.job for planned in p.jobs]
    assert [j.name for j in jobs] == [f"train-{i:03d}" for i in range(120)] == p.record_names()
    per_job = array_job(jobs, None)
    assert per_job is not None and isinstance(per_job.array_tasks, tuple)
    assert render_job(per_job).artifacts == p.array.rendered.artifacts
    assert list(table) == list(per_job.array_tasks)
    assert [list(o) for o in p.job_overrides()] == [compose.as_typed(o) for o in batch]
    assert p.jobs[-1].overrides == tuple(compose.as_typed(batch[-1])) and p.jobs[-1].rendered is None
    assert p.jobs[-1].job.job_dir == os.path.join(os.path.dirname(p.array.job.job_dir), "train-119")


def test_a_task_adding_a_parameter_is_planned_task_by_task(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A column needs its path in the first task's params; a later task adding one is still one
    array (its row has the parameter, the first's does not)."""
    (tmp_path / "kwmod.py").write_text(KWARGS_MODULE)
    monkeypatch.chdir(tmp_path)
    base = ["executor=slurm", "task=train", "task.target=kwmod.fn"]
    p = _plan([[*base, "task.params.lr=1"], [*base, "task.params.lr=2", "++task.params.extra=5"]], _site(tmp_path))
    assert p.array is not None and isinstance(p.array.job.array_tasks, tuple)
    assert [{k: r[k] for k in ("lr", "extra") if k in r} for r in _rows(p)] == [{"lr": 1}, {"lr": 2, "extra": 5}]


def test_a_path_under_another_column_keeps_its_order(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """``opt.a`` then ``opt`` in later tasks: setting a column's kept value would undo ``opt=5``,
    so such a task is not a row of the table."""
    (tmp_path / "kwmod.py").write_text(KWARGS_MODULE)
    monkeypatch.chdir(tmp_path)
    base = ["executor=slurm", "task=train", "task.target=kwmod.fn", "++task.params.opt={a:1}"]
    p = _plan([base, [*base, "++task.params.opt.a=2"], [*base, "++task.params.opt=5"]], _site(tmp_path))
    assert p.array is not None
    assert [r["opt"] for r in _rows(p)] == [{"a": 1}, {"a": 2}, 5]


def _crash(tmp_path: Path, fault: str) -> Path:
    env = dict(os.environ, NEMORUN_HOME=str(tmp_path / "home"), NEMORUN_FAULT=fault)
    proc = subprocess.run([sys.executable, "-m", "nemorun", "-m", "executor=slurm", "task=train",
                           "task.params.lr=range(0,6)", "task.params.seed=1,2"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr  # killed at the fault point, before anything is sent
    [exp] = (tmp_path / "home" / "experiments" / "train").iterdir()
    return exp


def test_task_records_are_made_from_the_table(tmp_path: Path) -> None:
    """The tasks' records (name, overrides, array index) as the Job-per-task path wrote them, then
    the array's own record last: killed right after, nothing is on the backend and the record says so."""
    exp = _crash(tmp_path, "rendered")
    names = [f"train-{i:02d}" for i in range(12)]
    assert json.loads((exp / "experiment.json").read_text())["jobs"] == names
    for i, name in enumerate(names):
        rec = json.loads((exp / "jobs" / name / "record.json").read_text())
        lr, seed = divmod(i, 2)
        assert rec["overrides"] == ["executor=slurm", "task=train", f"task.params.lr={lr}", f"task.params.seed={seed + 1}"]
        assert (rec["array"], rec["array_index"], rec["phase"]) == ("train-array", i, "rendered")
    array = json.loads((exp / "jobs" / "train-array" / "record.json").read_text())
    assert array["array_of"] == names and array["phase"] == "rendered" and array["attempted_at"] is None
    rows = (exp / "jobs" / "train-array" / TASK_TABLE).read_text().splitlines()
    assert [(json.loads(r)["params"]["lr"], json.loads(r)["params"]["seed"]) for r in rows] == [
        (lr, seed) for lr in range(6) for seed in (1, 2)]


def test_killed_after_the_tasks_no_array_is_recorded(tmp_path: Path) -> None:
    exp = _crash(tmp_path, "tasks-recorded")
    assert not (exp / "jobs" / "train-array").exists()
    assert json.loads((exp / "jobs" / "train-11" / "record.json").read_text())["array_index"] == 11


def test_merged_sweep_values_keep_their_text_without_a_parse_each(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Values merged by Hydra (not task params) into a str destination keep the text typed, from
    the sweep's one parse (ValueTable.remember), not a parse of each job's line."""
    from nemorun import hydra_compat

    monkeypatch.chdir(tmp_path)
    parsed: list[str] = []
    real = hydra_compat._parse_literals
    monkeypatch.setattr(hydra_compat, "_parse_literals", lambda line: (parsed.append(line), real(line))[1])
    command = ["task=train", "executor.env_vars.V=1.10,007,1e3", "task.params.lr=1,2"]
    batch = compose.sweep_batch(command)
    parsed.clear()
    p = _plan(batch, _site(tmp_path), command)
    assert p.array is None  # local: a job per point
    assert [(j.job.env["V"], j.job.task.params["lr"]) for j in p.jobs] == [
        (v, lr) for v in ("1.10", "007", "1e3") for lr in (1, 2)]
    assert parsed and not [line for line in parsed if line.rpartition("=")[2] in ("1.10", "007", "1e3")]


def test_plain_sweeps_skip_hydra_main() -> None:
    """``-m`` plus a plain run's overrides is planned through the compose API (launching.launch,
    the Python API's path): ``@hydra.main`` composed once more only to learn the run mode. Flags
    and ``hydra.*`` overrides (sweepers, launchers, --cfg) still go through Hydra."""
    from nemorun.cli import plain_sweep

    assert plain_sweep(["-m", "task=train", "task.params.lr=1,2"]) == ["task=train", "task.params.lr=1,2"]
    assert plain_sweep(["task=train", "--multirun", "+x=1"]) == ["task=train", "+x=1"]
    for args in (["task=train"], ["-m"], ["-m", "-m", "a=1"], ["-m", "hydra/sweeper=optuna", "a=1"],
                 ["-m", "hydra.sweeper.max_jobs=5", "a=1,2"], ["-m", "--cfg", "job", "a=1"], ["-m", "task=glob(*)"]):
        assert plain_sweep(args) is None, args
