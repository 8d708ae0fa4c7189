"""Shared test fixtures: real services (Slurm + sshd, Docker engine) and the pinned compile site."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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


# Real services and what marks a test as using one: the fixture (also reached through another
# fixture) or the marker (the way a test that asks for the fixture at run time, with
# request.getfixturevalue, says so).
SERVICES: dict[str, tuple[str, str]] = {"slurm": ("slurm_cluster", "slurm"), "docker": ("docker_engine", "docker"),
                                        "skypilot": ("sky_server", "skypilot")}  # fmt: skip


def services_of(item: pytest.Item) -> list[str]:
    names = set(getattr(item, "fixturenames", ()))
    return sorted(s for s, (fixture, mark) in SERVICES.items() if fixture in names or item.get_closest_marker(mark))


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """``-n N`` alone means ``--dist loadgroup`` here: xdist's default (``load``) would hand tests of one
    service to several workers, and each worker would start its own Slurm cluster / Docker engine /
    SkyPilot server (and two clusters' torchrun jobs would race for the same rendezvous port)."""
    if getattr(config.option, "numprocesses", None) and getattr(config.option, "dist", "no") in ("no", "load"):
        config.option.dist = "loadgroup"
    workerinput = getattr(config, "workerinput", None)
    if workerinput and workerinput.get("nemorun_loadgroup"):
        config.option.loadgroup = True  # a worker does not see the controller's -n, only this


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    node.workerinput["nemorun_loadgroup"] = node.config.getoption("dist") == "loadgroup"


def _shares_module_setup(item: pytest.Item) -> bool:
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    return any(d and d[-1].scope in ("module", "class", "package") for d in defs.values())


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """One xdist group per service, so that under ``-n`` ONE worker starts it and runs all its tests
    one after another, as a serial run does (they share nodes, ports and a job namespace). A module
    whose tests share a module-scoped fixture (a built wheel, a git project, composed configs) is one
    group too: spread over the workers, each would build it again."""
    for item in items:
        used = services_of(item)
        if len(used) > 1:
            raise pytest.UsageError(f"{item.nodeid} uses {' and '.join(used)}: one test, one service "
                                    "(or merge their xdist groups in tests/conftest.py)")
        if used:
            item.add_marker(pytest.mark.xdist_group(used[0]))
        elif _shares_module_setup(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))


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
