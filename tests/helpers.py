"""Builders shared by tests: compose a config like the CLI does, compile it on a pinned site."""
from __future__ import annotations

import subprocess
import sys
from typing import Sequence

from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from nemorun.cli import CONFIG_NAME
from nemorun.compile import Site

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
