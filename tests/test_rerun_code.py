"""``exp rerun`` ships the code the experiment RAN (its recorded archive, checked by digest), not
the working tree as it is now; ``--fresh-code`` packs the current tree. Real git repositories,
real local jobs and the real Slurm cluster, through the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from nemorun.api import Experiment
from tests.fixtures.slurm_cluster import SlurmCluster
from tests.helpers import git, run_cli, write_files

FUNCTION = "def main(tag: str = 'x') -> None:\n    print(f'{tag} version ' + VERSION)\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write_files(root, {"mypkg/__init__.py": "", "mypkg/run.py": "VERSION = 'v1'\n" + FUNCTION, "version.txt": "v1\n"})
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "v1")
    return root


def _v2(root: Path) -> None:
    write_files(root, {"mypkg/run.py": "VERSION = 'v2'\n" + FUNCTION, "version.txt": "v2\n"})
    git(root, "commit", "-q", "-am", "v2")


def _output(env: dict[str, str], exp_id: str) -> str:
    exp = Experiment.load(exp_id, home=env["NEMORUN_HOME"])
    exp.wait(poll=0.2)
    return "".join(exp.logs())


def _latest(env: dict[str, str]) -> str:
    return Experiment.load("latest", home=env["NEMORUN_HOME"]).id


LOCAL = ["task=hello", "task.inline=null", "task.target=mypkg.run.main", "+task.params.tag=local", "packager=git"]


def test_local_rerun_runs_the_recorded_code(project: Path, cli_env: dict[str, str]) -> None:
    first = run_cli([*LOCAL, "wait=true"], env=cli_env, cwd=str(project))
    assert first.returncode == 0 and "local version v1" in first.stdout, first.stderr
    exp_id = _latest(cli_env)
    _v2(project)

    again = run_cli(["exp", "rerun", exp_id, "task.params.tag=again"], env=cli_env, cwd=str(project))
    assert again.returncode == 0, again.stderr
    rerun_id = _latest(cli_env)
    assert rerun_id != exp_id and _output(cli_env, rerun_id).strip() == "again version v1"
    code = json.loads((Experiment.load(rerun_id, home=cli_env["NEMORUN_HOME"]).path / "code.json").read_text())
    first_code = json.loads((Experiment.load(exp_id, home=cli_env["NEMORUN_HOME"]).path / "code.json").read_text())
    assert code["sha256"] == first_code["sha256"] and code["rerun_of"] == exp_id

    fresh = run_cli(["exp", "rerun", exp_id, "task.params.tag=fresh", "--fresh-code"], env=cli_env, cwd=str(project))
    assert fresh.returncode == 0, fresh.stderr
    assert _output(cli_env, _latest(cli_env)).strip() == "fresh version v2"


def test_missing_or_damaged_archive_is_one_clear_line(project: Path, cli_env: dict[str, str]) -> None:
    assert run_cli([*LOCAL, "wait=true"], env=cli_env, cwd=str(project)).returncode == 0
    exp = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    [archive] = exp.path.glob("*.tar.gz")
    archive.write_bytes(archive.read_bytes()[:-10] + b"0123456789")
    damaged = run_cli(["exp", "rerun", exp.id], env=cli_env, cwd=str(project))
    assert damaged.returncode == 2
    [line] = damaged.stderr.strip().splitlines()
    assert "does not match its recorded sha256" in line and "--fresh-code" in line
    archive.unlink()
    missing = run_cli(["exp", "rerun", exp.id], env=cli_env, cwd=str(project))
    assert missing.returncode == 2
    [line] = missing.stderr.strip().splitlines()
    assert "is missing" in line and "--fresh-code" in line
    assert len(list((Path(cli_env["NEMORUN_HOME"]) / "experiments").glob("*/*"))) == 1  # nothing new recorded


@pytest.mark.slurm
def test_slurm_rerun_runs_the_recorded_commit(project: Path, slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    args = ["executor=slurm", f"executor.job_dir={slurm_cluster.jobs_dir}/rerun-code", "task=hello",
            "task.inline='cat version.txt'", "packager=git"]
    first = run_cli(args, env=cli_env, cwd=str(project))
    assert first.returncode == 0, first.stderr
    exp_id = _latest(cli_env)
    assert _output(cli_env, exp_id).strip() == "v1"
    _v2(project)
    again = run_cli(["exp", "rerun", exp_id], env=cli_env, cwd=str(project))
    assert again.returncode == 0, again.stderr
    assert _output(cli_env, _latest(cli_env)).strip() == "v1"
    fresh = run_cli(["exp", "rerun", exp_id, "--fresh-code"], env=cli_env, cwd=str(project))
    assert fresh.returncode == 0, fresh.stderr
    assert _output(cli_env, _latest(cli_env)).strip() == "v2"
