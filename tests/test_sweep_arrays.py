"""Which sweep jobs may become ONE job array: only those that differ in values of their task."""
from __future__ import annotations

import dataclasses

from nemorun import lower
from nemorun.ir import Job
from nemorun.plan import array_job
from tests.helpers import PINNED_SITE, compose_config


def _job(name: str, *overrides: str) -> Job:
    cfg = compose_config(["task=train", *overrides])
    lower.check_config(cfg)
    return lower.compile_job(cfg, PINNED_SITE, job_name=name)


def test_value_only_jobs_make_one_array() -> None:
    jobs = [_job(f"train-{i}", f"task.params.lr={lr}") for i, lr in enumerate((0.1, 0.2, 0.3))]
    array = array_job(jobs, parallelism=2)
    assert array is not None and array.name == "train-array" and array.array_parallelism == 2
    assert [t.name for t in array.array_tasks] == ["train-0", "train-1", "train-2"]
    assert [t.task.params["lr"] for t in array.array_tasks] == [0.1, 0.2, 0.3]
    assert array.job_dir.endswith("/jobs/train-array") and array.task == jobs[0].task
    assert dataclasses.replace(array, array_tasks=(), array_parallelism=None, name="train-0", job_dir=jobs[0].job_dir) == jobs[0]


def test_jobs_differing_beyond_task_values_stay_separate() -> None:
    assert array_job([_job("train-0", "executor.ntasks_per_node=1"), _job("train-1", "executor.ntasks_per_node=2")]) is None
    assert array_job([_job("train-0"), _job("train-1", "task.target=null", "task.inline=true")]) is None
    inline = [_job(f"i-{i}", "task.target=null", f"task.inline='echo {i}'") for i in range(2)]
    assert array_job(inline) is None  # only function tasks: array task i differs by its function-<i>.yaml
    assert array_job([_job("train-0")]) is None
