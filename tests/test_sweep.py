"""Multirun sweeps through the nemorun launcher + sweeper: ONE experiment, validated before submission.

Everything runs through the real CLI (``python -m nemorun -m ...``) and the real local backend.
"""
from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

from nemorun.api import Experiment
from tests.helpers import run_cli


def _experiments(home: Path) -> list[Path]:
    root = home / "experiments"
    return sorted(p for p in root.glob("*/*") if p.is_dir()) if root.exists() else []


def test_dry_run_prints_summary_and_first_job_and_writes_every_job(cli_env: dict[str, str], nemorun_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "render"
    proc = run_cli(["-m", "task=train", "task.params.lr=range(0,25)", "dryrun=true", f"render_dir={out}"], env=cli_env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "sweep of 25 jobs" in proc.stdout
    assert "train-00: task.params.lr=0" in proc.stdout and "... and 5 more" in proc.stdout
    assert proc.stdout.count("==> launch.sh <==") == 1  # not 25 scripts on the terminal
    jobs = sorted(p.name for p in out.iterdir())
    assert jobs == [f"train-{i:02d}" for i in range(25)]
    assert json.loads((out / "train-24" / "function.yaml").read_text())["params"]["lr"] == 24
    assert _experiments(nemorun_home) == []  # a dry run records nothing
    assert not (tmp_path / "multirun").exists()  # nemorun's sweeper writes no multirun.yaml


def test_patched_jobs_render_exactly_like_a_full_compose(cli_env: dict[str, str], tmp_path: Path) -> None:
    """Compose-once-and-patch must not change a byte: compare with single runs composed from scratch."""
    sweep_dir, single_dir = tmp_path / "sweep", tmp_path / "single"
    proc = run_cli(["-m", "task=train", "task.params.lr=0.5,0.25", "executor.ntasks_per_node=1,3", "task.params.steps=7",
                    "dryrun=true", f"render_dir={sweep_dir}", "name=cmp"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    # job 3 = lr=0.25, retries=3 (grid order: last override varies fastest)
    one = run_cli(["task=train", "task.params.lr=0.25", "executor.ntasks_per_node=3", "task.params.steps=7",
                   "dryrun=true", f"render_dir={single_dir}", "name=cmp"], env=cli_env)
    assert one.returncode == 0, one.stderr
    spec = json.loads((sweep_dir / "train-3" / "function.yaml").read_text())
    assert spec == json.loads((single_dir / "function.yaml").read_text())
    strip = lambda text: "\n".join(l for l in text.splitlines() if "Rendered by" not in l and "/jobs/" not in l)  # noqa: E731
    assert strip((sweep_dir / "train-3" / "launch.sh").read_text()) == strip((single_dir / "launch.sh").read_text())


def test_one_bad_value_submits_nothing(cli_env: dict[str, str], nemorun_home: Path) -> None:
    for bad in (["executor.ntasks_per_node=1,2,x"], ["task.params.lr=0.1,abc"]):
        proc = run_cli(["-m", "task=train", "task.params.steps=1", *bad], env=cli_env)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("nemorun: error: ") and len(proc.stderr.strip().splitlines()) == 1
        assert _experiments(nemorun_home) == []


def test_sweep_is_one_experiment_and_runs(cli_env: dict[str, str], nemorun_home: Path) -> None:
    proc = run_cli(["-m", "task=train", "task.params.steps=2", "task.params.lr=0.1,0.2", "task.params.seed=1,2"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    [folder] = _experiments(nemorun_home)
    exp = Experiment(folder)
    assert exp.meta["kind"] == "sweep" and exp.meta["multirun"] is True
    assert [j.name for j in exp.jobs] == ["train-0", "train-1", "train-2", "train-3"]
    assert exp.jobs[3].overrides[-2:] == ["task.params.lr=0.2", "task.params.seed=2"]
    states = exp.wait(poll=0.2)
    assert {s.state.value for s in states.values()} == {"SUCCEEDED"}
    assert "done" in "".join(exp.logs("train-3"))


def test_group_sweep_composes_each_selection(cli_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "r"
    proc = run_cli(["-m", "task=train,hello", "dryrun=true", f"render_dir={out}"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "function.yaml" in os.listdir(out / "train-0") and "function.yaml" not in os.listdir(out / "train-1")
    assert "hello from" in (out / "train-1" / "launch.sh").read_text()


def test_adaptive_sweeper_is_refused_without_wait(cli_env: dict[str, str], tmp_path: Path) -> None:
    """A real (tiny) non-grid Hydra sweeper plugin, discovered through the hydra_plugins namespace."""
    plugin = tmp_path / "plugins" / "hydra_plugins" / "adaptive_probe"
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text(textwrap.dedent('''
        from dataclasses import dataclass
        from hydra.core.config_store import ConfigStore
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        @dataclass
        class AdaptiveProbeConf:
            _target_: str = "hydra_plugins.adaptive_probe.AdaptiveProbe"
            max_batch_size: int = 1

        ConfigStore.instance().store(group="hydra/sweeper", name="adaptive_probe", node=AdaptiveProbeConf)

        class AdaptiveProbe(BasicSweeper):
            """Stands for Optuna & co: it would read every job's return value."""
    '''))
    env = dict(cli_env, PYTHONPATH=os.pathsep.join([str(tmp_path / "plugins"), cli_env.get("PYTHONPATH", "")]))
    proc = run_cli(["-m", "hydra/sweeper=adaptive_probe", "task=train", "task.params.lr=0.1,0.2", "dryrun=true"], env=env, cwd=str(tmp_path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "needs each job's result" in proc.stderr and "wait=true" in proc.stderr


def test_waiting_grid_sweep_with_failed_jobs_exits_non_zero(cli_env: dict[str, str], nemorun_home: Path) -> None:
    """Real local jobs: hello-1 and hello-2 exit 3, hello-0 succeeds; the command must say so."""
    proc = run_cli(["-m", "task=hello", "task.inline='exit 0','exit 3','exit 3'", "wait=true"], env=cli_env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("nemorun: error: 2 of 3 jobs of experiment ") and "hello-1 (exit 3), hello-2 (exit 3)" in line, line
    [folder] = _experiments(nemorun_home)
    assert {j.name: j.state for j in Experiment(folder).jobs} == {"hello-0": "SUCCEEDED", "hello-1": "FAILED", "hello-2": "FAILED"}
    ok = run_cli(["-m", "task=hello", "executor.ntasks_per_node=1,2", "wait=true"], env=cli_env)
    assert ok.returncode == 0, ok.stderr
