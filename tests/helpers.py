"""Builders shared by tests: compose a config like the CLI does, compile it on a pinned site."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from nemorun.cli import CONFIG_NAME
from nemorun.lower import Site

# Everything a render depends on from outside the config, fixed so goldens are reproducible.
PINNED_SITE = Site(
    experiment_id="20260101-000000-000000-abcd",
    submit_dir="/home/user/project",
    home="/home/user/.run",
    python="python3",
)


def compose_config(overrides: Sequence[str]) -> DictConfig:
    with initialize_config_module(config_module="nemorun.conf", version_base="1.3"):
        return compose(config_name=CONFIG_NAME, overrides=list(overrides))


def run_cli(args: Sequence[str], env: dict[str, str] | None = None, cwd: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nemorun", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout
    )


# A git identity and no user/system config, so test repositories behave the same on every machine.
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}  # fmt: skip


def one_line_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """The one ``nemorun: error: ...`` line a refused command printed, after checking it exited ``code``."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nemorun: error: "), proc.stderr
    return lines[0]


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return proc


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env={**os.environ, **GIT_ENV})


def write_files(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
