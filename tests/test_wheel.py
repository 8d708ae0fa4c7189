"""The built wheel, installed into a fresh venv, works from outside the repo.

Editable installs hide missing package data (configs, templates) and plugin-discovery problems;
this is the only test that sees what a user of ``pip install nemorun`` gets.
"""
from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheels = list(dist.glob("nemorun-*.whl"))
    assert len(wheels) == 1
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    proc = subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheels[0])], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return env_dir


def _run(env_dir: Path, args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["NEMORUN_HOME"] = str(home)
    return subprocess.run([str(env_dir / "bin" / "nemorun"), *args], capture_output=True, text=True, cwd=cwd, env=env)


def test_help_and_dry_run_from_outside_the_repo(installed: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    proc = _run(installed, ["--help"], outside, tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    assert "task: " in proc.stdout and "hello" in proc.stdout
    proc = _run(installed, ["task=train", "task.params.steps=2", "dryrun=true"], outside, tmp_path / "home")
    assert proc.returncode == 0, proc.stderr
    assert "==> launch.sh <==" in proc.stdout and str(installed / "bin" / "python") in proc.stdout
    proc = _run(installed, ["--info", "searchpath"], outside, tmp_path / "home")
    assert "pkg://nemorun.conf" in proc.stdout
    proc = _run(installed, ["task=hello", "wait=true"], outside, tmp_path / "home")
    assert proc.returncode == 0 and "hello from" in proc.stdout, proc.stderr


def test_wheel_ships_every_config_and_template(installed: Path) -> None:
    site = next((installed / "lib").glob("python3*/site-packages"))
    shipped = {p.relative_to(site / "nemorun").as_posix() for p in (site / "nemorun").rglob("*") if p.suffix in (".yaml", ".j2")}
    in_repo = {f"conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")}
    in_repo |= {f"templates/{p.relative_to(ROOT / 'templates').as_posix()}" for p in (ROOT / "templates").rglob("*.j2")}
    assert in_repo <= shipped, sorted(in_repo - shipped)
    assert (site / "hydra_plugins" / "nemorun_plugins" / "searchpath.py").is_file()
    assert not (site / "hydra_plugins" / "__init__.py").exists()
