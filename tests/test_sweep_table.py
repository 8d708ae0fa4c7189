"""A value-only sweep on Slurm is ONE array: one script and one task table (``tasks.jsonl``, row i
= array task i), its tasks' records written in batches; every value is still type-checked.

The cluster side (task i really runs row i, hostile values included; a crash between the array's
record and its tasks' records) is in tests/test_sweep_table_slurm.py."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from nemorun import lower, plan as plan_module, store
from nemorun.command import TASK_TABLE, task_table_text
from nemorun.errors import StoreError
from nemorun.ir import Task
from nemorun.store import ExperimentRecord, JobRecord, atomic_write_many
from nemorun.targets import slurm
from tests.helpers import PINNED_SITE, compose_config, run_cli

HOSTILE = ["plain", "it's \"quoted\"", "$(touch /tmp/pwned) `id` ;#", "two\nlines", "tab\tand\rreturn",
           "unicode é 你 \u2028 sep", "{p;q}", ""]


def _function_task(text: str) -> Task:
    return Task(kind="function", name="show", target="mymod.show", params={"text": text, "n": 1})


def test_table_row_i_is_task_i_one_line_each() -> None:
    """JSON escapes newlines and (ensure_ascii) every other line break: a row is one line."""
    text = task_table_text([_function_task(v) for v in HOSTILE])
    rows = text.split("\n")
    assert rows[-1] == "" and len(rows) == len(HOSTILE) + 1
    assert [json.loads(r)["params"]["text"] for r in rows[:-1]] == HOSTILE
    assert text.isascii()


def test_batch_script_cuts_row_i_for_task_i(tmp_path: Path) -> None:
    """The batch script's own lines (as rendered) run in bash: SLURM_ARRAY_TASK_ID=i gives row i
    as the spec the step reads; a task past the table's end fails with one message."""
    cfg = compose_config(["executor=slurm", "task=train", f"executor.job_dir={tmp_path}"])
    lower.check_config(cfg)
    jobs = [lower.compile_job(cfg, PINNED_SITE, job_name=f"train-{i}") for i in range(len(HOSTILE))]
    import dataclasses

    jobs = [dataclasses.replace(j, task=dataclasses.replace(j.task, params={**j.task.params, "seed": i, "lr": v}))
            for i, (j, v) in enumerate(zip(jobs, HOSTILE))]
    array = plan_module.array_job(jobs)
    assert array is not None
    rendered = slurm.render(array)
    assert sorted(rendered.artifacts) == ["nemorun_entry.py", "sbatch.sh", TASK_TABLE]
    remote = Path(slurm.remote_job_dir(array))
    remote.mkdir(parents=True)
    (remote / TASK_TABLE).write_text(rendered.artifacts[TASK_TABLE])
    script = rendered.artifacts["sbatch.sh"]
    lines = script[script.index("# this array task's function spec"):script.index("# command")]
    for i, value in enumerate(HOSTILE):
        r = subprocess.run(["bash", "-c", "set -euo pipefail\n" + lines], env={"SLURM_ARRAY_TASK_ID": str(i), "PATH": os.environ["PATH"]},
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        spec = json.loads((remote / f"function-{i}.yaml").read_text())
        assert spec["params"]["lr"] == value and spec["params"]["seed"] == i
    r = subprocess.run(["bash", "-c", lines], env={"SLURM_ARRAY_TASK_ID": str(len(HOSTILE)), "PATH": os.environ["PATH"]},
                       capture_output=True, text=True)
    assert r.returncode == 1 and f"nemorun: no row {len(HOSTILE)} in" in r.stderr


def test_array_dry_run_writes_one_script_and_one_table(tmp_path: Path, cli_env: dict[str, str]) -> None:
    out = tmp_path / "out"
    proc = run_cli(["-m", "executor=slurm", "task=train", "task.params.lr=range(0,50)", "dryrun=true", f"render_dir={out}"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "train-array", "train-array/nemorun_entry.py", "train-array/sbatch.sh", f"train-array/{TASK_TABLE}"]
    rows = (out / "train-array" / TASK_TABLE).read_text().splitlines()
    assert [json.loads(r)["params"]["lr"] for r in rows] == list(range(50))
    assert "#SBATCH --array=0-49" in (out / "train-array" / "sbatch.sh").read_text()
    assert f"# ... and 47 more rows of {TASK_TABLE}" in proc.stdout
    assert proc.stdout.count('"target"') == 3  # three rows shown, not fifty


@pytest.mark.parametrize("values, bad", [("1,2,many", "many"), ("1,2.5,3", "2.5")])
def test_wrong_type_in_a_sweep_value_is_one_line(values: str, bad: str, cli_env: dict[str, str]) -> None:
    proc = run_cli(["-m", "executor=slurm", "task=train", f"task.params.steps={values}", "dryrun=true"], env=cli_env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("nemorun: error: "), proc.stderr
    assert bad in lines[0] and "expects int" in lines[0]


def test_call_checks_once_per_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """Values of one type share a signature check; a new type or a new key is checked again."""
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(lower, "check_function_call", lambda target, params, where: calls.append(params))
    checks = plan_module._CallChecks()
    for v in range(100):
        checks.check("m.f", {"lr": v, "seed": 0}, "/w")
    checks.check("m.f", {"lr": 0.5, "seed": 0}, "/w")
    checks.check("m.f", {"lr": 1, "seed": 0, "extra": 1}, "/w")
    assert calls == [{"lr": 0, "seed": 0}, {"lr": 0.5, "seed": 0}, {"lr": 1, "seed": 0, "extra": 1}]


def test_unchanged_params_are_shared_not_copied() -> None:
    first = {"lr": 1, "opt": {"beta": 0.9, "eps": 1e-8}, "other": {"x": [1, 2]}}
    out = plan_module._with_values(first, {("opt", "beta"): 0.5, ("new", "k"): 2})
    assert out == {"lr": 1, "opt": {"beta": 0.5, "eps": 1e-8}, "other": {"x": [1, 2]}, "new": {"k": 2}}
    assert first["opt"] == {"beta": 0.9, "eps": 1e-8} and out["other"] is first["other"]


# -- batched records ------------------------------------------------------------------------


def _record(tmp_path: Path, jobs: list[str]) -> ExperimentRecord:
    return ExperimentRecord.create(home=tmp_path, name="e", experiment_id="20260101-000000-000000-abcd", target="slurm",
                                   config_yaml="{}\n", overrides=[], submit_dir=str(tmp_path), job_names=jobs, kind="sweep")


def test_task_records_are_one_batch_and_small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    syncs: list[Path] = []
    real = store._sync_filesystem
    monkeypatch.setattr(store, "_sync_filesystem", lambda path: (syncs.append(path), real(path)))
    names = [f"t-{i:03d}" for i in range(200)]
    record = _record(tmp_path, names)
    record.save_jobs(JobRecord(n, "slurm", overrides=[f"x={i}"], array="t-array", array_index=i) for i, n in enumerate(names))
    assert syncs == [record.path, record.path]  # data, then renames: two syncs for 200 records
    assert [r.array_index for r in record.jobs()] == list(range(200))
    raw = json.loads((record.job_dir("t-007") / "record.json").read_text())
    assert set(raw) == {"name", "target", "phase", "state", "overrides", "array", "array_index", "updated_at", "rev"}
    assert not list(record.path.rglob("*.tmp"))


def test_a_failed_batch_leaves_no_partial_files(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")
    files = [(tmp_path / "a" / "x.json", "1"), (blocked / "y.json", "2")]
    with pytest.raises(StoreError, match="cannot write"):
        atomic_write_many(files, tmp_path)
    assert not (tmp_path / "a" / "x.json").exists() and not list(tmp_path.rglob("*.tmp"))
