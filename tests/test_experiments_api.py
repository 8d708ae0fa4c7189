"""The Python API (``nemorun.launch``, ``Experiment``, ``experiments``) on real local jobs."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

import nemorun
from nemorun.errors import ConfigError


def test_launch_sweep_load_rerun(nemorun_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    assert nemorun.launch(["task=train", "task.params.lr=0.1,0.2"], dryrun=True, out=out) is None
    assert "sweep of 2 jobs" in out.getvalue() and not (nemorun_home / "experiments").exists()

    exp = nemorun.launch(["task=train", "task.params.steps=2", "task.params.lr=0.1,0.2"], out=out)
    assert exp is not None and [j.name for j in exp.jobs] == ["train-0", "train-1"]
    assert {s.state.value for s in exp.wait(poll=0.2).values()} == {"SUCCEEDED"}
    assert "done" in "".join(exp.logs("train-1"))
    with pytest.raises(ConfigError, match="has 2 jobs"):
        list(exp.logs())

    same = nemorun.Experiment.load(exp.id[:20])
    assert same.path == exp.path and same.meta["multirun"] is True
    again = exp.rerun(["task.params.steps=1"], out=out)
    assert again is not None and again.id != exp.id and len(again.jobs) == 2
    assert [r["id"] for r in nemorun.experiments(name="train")] == [again.id, exp.id]
    again.wait(poll=0.2)


def test_single_launch_and_config_errors(nemorun_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exp = nemorun.launch(["task=hello", "name=single"], out=io.StringIO())
    assert exp is not None and exp.meta["kind"] == "single"
    assert exp.wait(poll=0.2)["hello"].state.value == "SUCCEEDED"
    with pytest.raises(ConfigError, match="executor.retries"):
        nemorun.launch(["task=hello", "executor.retries=x"], out=io.StringIO())
    with pytest.raises(ConfigError, match="no experiment 'zzz'"):
        nemorun.Experiment.load("zzz")
