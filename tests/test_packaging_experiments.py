"""Packaging on every path that plans jobs: multi-task experiments, sweeps, and ``--resume``.

Real temporary git repositories, real local jobs and the real CLI. The code is packed once per
experiment (once per distinct packager config) and committed into the record before any job is;
``exp rerun --resume`` after a real ``kill -9`` (``NEMORUN_FAULT`` points in nemorun.experiment)
reuses the recorded archive: the repository is changed between the crash and the resume, so a
re-pack would give other artifacts (and other file contents) than the launch.
"""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from nemorun.api import Experiment
from tests.helpers import run_cli, git, write_files

EXPERIMENT = """\
defaults:
  - /_schema_experiment@_here_
  - _self_
name: packed
tasks:
  first:
    overrides: [task=hello, task.name=first, "task.inline='cat data/first.txt'"]
  second:
    overrides: [task=hello, task.name=second, "task.inline='cat data/second.txt'"]
    depends_on: [first]
  third:
    overrides: [task=hello, task.name=third, packager=pattern, "packager.include_pattern=data/third.txt",
                "task.inline='cat data/third.txt; test -e data/first.txt || echo only-third'"]
    depends_on: [first]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write_files(root, {"data/first.txt": "first v1\n", "data/second.txt": "second v1\n", "data/third.txt": "third v1\n"})
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "v1")
    return root


@pytest.fixture
def env(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The CLI environment plus a user config folder holding the ``packed`` experiment."""
    conf = tmp_path / "conf"
    write_files(conf, {"experiment/packed.yaml": EXPERIMENT})
    return dict(cli_env, NEMORUN_CONFIG_PATH=str(conf))


def _experiment(home: Path) -> Experiment:
    [folder] = [p for p in (home / "experiments").glob("*/*") if p.is_dir()]
    return Experiment(folder)


def _artifacts(exp: Experiment) -> dict[str, bytes]:
    return {p.relative_to(exp.path).as_posix(): p.read_bytes() for p in (exp.path / "jobs").rglob("*.sh")}


def _change_repo(root: Path) -> None:
    write_files(root, {"data/first.txt": "first v2\n", "data/second.txt": "second v2\n", "data/third.txt": "third v2\n"})
    git(root, "commit", "-q", "-am", "v2")


def test_dry_run_ships_the_code_in_every_task(project: Path, cli_env: dict[str, str]) -> None:
    proc = run_cli(["experiment=prepare_train_eval", "packager=git", "executor=slurm", "dryrun=true"], env=cli_env, cwd=str(project))
    assert proc.returncode == 0, proc.stderr
    jobs = proc.stdout.split("# job ")[1:]
    assert [j.split(" ", 1)[0] for j in jobs] == ["prepare_data", "train", "evaluate"]
    codes = [line for j in jobs for line in j.splitlines() if line.startswith("# Code: git archive, sha256 ")]
    assert len(codes) == 3, proc.stdout
    assert len({c.split("sha256 ")[1].split(",")[0] for c in codes}) == 1  # one archive for the experiment
    assert not (Path(cli_env["NEMORUN_HOME"]) / "experiments").exists()  # a dry run records nothing (caches may fill)


def test_local_multitask_runs_each_task_from_its_package(project: Path, env: dict[str, str], nemorun_home: Path) -> None:
    proc = run_cli(["experiment=packed", "packager=git"], env=env, cwd=str(project))
    assert proc.returncode == 0, proc.stderr
    exp = _experiment(nemorun_home)
    states = exp.wait(poll=0.2)
    assert {s.state.value for s in states.values()} == {"SUCCEEDED"}, states
    out = {j.name: (exp.record.job_dir(j.name) / "stdout.log").read_text() for j in exp.jobs}
    assert out == {"first": "first v1\n", "second": "second v1\n", "third": "third v1\nonly-third\n"}
    code = json.loads((exp.path / "code.json").read_text())
    kinds = [m["kind"] for m in code["packages"]]
    assert kinds == ["git", "pattern"] and code["sha256"] == code["packages"][0]["sha256"]  # two packagers, packed once each
    assert sorted(p.name for p in exp.path.glob("code-*.tar.gz")) == sorted(m["archive"] for m in code["packages"])


@pytest.mark.parametrize("fault", ["rendered", "after-submit:0"])
def test_kill_9_then_resume_reuses_the_recorded_archives(fault: str, project: Path, env: dict[str, str], nemorun_home: Path) -> None:
    proc = run_cli(["experiment=packed", "packager=git"], env=dict(env, NEMORUN_FAULT=fault), cwd=str(project))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    exp = _experiment(nemorun_home)
    before = _artifacts(exp)
    assert len(before) == 3 and (exp.path / "code.json").exists()
    code = (exp.path / "code.json").read_bytes()
    _change_repo(project)

    resumed = run_cli(["exp", "rerun", exp.id, "--resume"], env=env, cwd=str(project))
    assert resumed.returncode == 0, resumed.stderr
    exp = Experiment(exp.path)
    states = exp.wait(poll=0.2)
    assert {s.state.value for s in states.values()} == {"SUCCEEDED"}, states
    assert _artifacts(exp) == before and (exp.path / "code.json").read_bytes() == code
    out = {j.name: (exp.record.job_dir(j.name) / "stdout.log").read_text() for j in exp.jobs}
    assert out == {"first": "first v1\n", "second": "second v1\n", "third": "third v1\nonly-third\n"}


def test_sweep_kill_9_then_resume_reuses_the_recorded_archive(project: Path, cli_env: dict[str, str], nemorun_home: Path) -> None:
    sweep = ["-m", "task=hello", "task.inline='cat data/first.txt'", "packager=git", "executor.ntasks_per_node=1,2,3"]
    proc = run_cli(sweep, env=dict(cli_env, NEMORUN_FAULT="after-submit:0"), cwd=str(project))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    exp = _experiment(nemorun_home)
    before = _artifacts(exp)
    _change_repo(project)
    resumed = run_cli(["exp", "rerun", exp.id, "--resume"], env=cli_env, cwd=str(project))
    assert resumed.returncode == 0, resumed.stderr
    exp = Experiment(exp.path)
    exp.wait(poll=0.2)
    assert _artifacts(exp) == before and len(list(exp.path.glob("code-*.tar.gz"))) == 1
    assert {(exp.record.job_dir(j.name) / "stdout.log").read_text() for j in exp.jobs} == {"first v1\n"}


def test_sweep_over_a_packager_value_packs_each_value(project: Path, cli_env: dict[str, str]) -> None:
    """``packager.include_pattern`` swept: a value override, yet each job must ship its own files."""
    sweep = ["-m", "task=hello", "packager=pattern", "packager.include_pattern=data/first.txt,data/second.txt",
             "executor=slurm", "dryrun=true", f"render_dir={project.parent / 'out'}"]  # fmt: skip
    proc = run_cli(sweep, env=cli_env, cwd=str(project))
    assert proc.returncode == 0, proc.stderr
    shas = {p.parent.name: p.read_text().split("# Code: pattern archive, sha256 ")[1].split(",")[0]
            for p in (project.parent / "out").glob("*/sbatch.sh")}  # fmt: skip
    assert len(shas) == 2 and len(set(shas.values())) == 2, shas


def test_single_job_resume_reuses_the_recorded_archive(project: Path, cli_env: dict[str, str], nemorun_home: Path) -> None:
    """A single job has no NEMORUN_FAULT point (nemorun.pipeline submits it); its record is put back
    to what a crash between recording and submitting leaves: phase ``rendered``, nothing run."""
    import shutil

    proc = run_cli(["task=hello", "task.inline='cat data/first.txt'", "packager=git", "wait=true"], env=cli_env, cwd=str(project))
    assert proc.returncode == 0 and proc.stdout.endswith("first v1\n"), proc.stderr
    exp = _experiment(nemorun_home)
    before = _artifacts(exp)
    rec = exp.record.job("hello")
    rec.phase, rec.handle, rec.state, rec.exit_code, rec.submitted_at = "rendered", None, "UNSUBMITTED", None, None
    exp.record.save_job(rec)
    job_dir = exp.record.job_dir("hello")
    for leftover in ("code", "stdout.log", "stderr.log", "exit_code"):
        shutil.rmtree(job_dir / leftover) if (job_dir / leftover).is_dir() else (job_dir / leftover).unlink(missing_ok=True)
    _change_repo(project)

    resumed = run_cli(["exp", "rerun", exp.id, "--resume"], env=cli_env, cwd=str(project))
    assert resumed.returncode == 0, resumed.stderr
    exp = Experiment(exp.path)
    assert exp.wait(poll=0.2)["hello"].state.value == "SUCCEEDED"
    assert _artifacts(exp) == before and (job_dir / "stdout.log").read_text() == "first v1\n"
