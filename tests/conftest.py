"""Shared test fixtures: real services (Slurm + sshd, Docker engine) and the pinned compile site."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

pytest_plugins = ["tests.fixtures.docker_engine", "tests.fixtures.slurm_cluster", "tests.fixtures.sky_server"]

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        default=False,
        help="rewrite golden/<case>/<artifact> from the current renderer (review the git diff!)",
    )


@pytest.fixture
def nemorun_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private NEMORUN_HOME for one test."""
    home = tmp_path / "nemorun-home"
    monkeypatch.setenv("NEMORUN_HOME", str(home))
    return home


@pytest.fixture
def cli_env(nemorun_home: Path) -> dict[str, str]:
    """Environment for running the real CLI in a subprocess."""
    env = dict(os.environ)
    env["NEMORUN_HOME"] = str(nemorun_home)
    env.pop("NEMORUN_DEBUG", None)
    env.pop("HYDRA_FULL_ERROR", None)
    return env


# Property tests draw the same examples on every run (CI must not fail on a new random draw, nor
# spend minutes shrinking one); HYPOTHESIS_PROFILE=explore hunts with fresh random examples.
settings.register_profile("repeatable", derandomize=True, print_blob=True)
settings.register_profile("explore", max_examples=500, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
