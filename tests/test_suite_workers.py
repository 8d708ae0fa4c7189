"""Under pytest-xdist every real service runs on ONE worker, as tests/conftest.py promises.

Why: tests/ci.sh runs the suite with ``-n 4``. A second worker starting its own Slurm cluster,
Docker engine or SkyPilot server would double their start-up on a 2-core machine, and two
clusters' multi-node torchrun jobs would race for the same rendezvous port. The real hooks of
tests/conftest.py and the real guard of tests/fixtures/workers.py run here on a small suite in a
pytest subprocess; stand-in session fixtures with the services' names record which worker they
started on, so the real services are not started again for this.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytest.importorskip("xdist")

CONFTEST = '''
import os
import pytest
from tests.conftest import pytest_cmdline_main, pytest_collection_modifyitems, pytest_configure_node  # noqa: F401
from tests.fixtures.workers import require_group


def pytest_configure(config):
    for mark in ("slurm", "docker", "skypilot"):
        config.addinivalue_line("markers", mark)


def _started(request, service):
    require_group(request, service)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(os.path.join(os.environ["STARTS"], service), "a") as f:
        f.write(worker + "\\n")
    return worker


@pytest.fixture(scope="session")
def slurm_cluster(request):
    return _started(request, "slurm")


@pytest.fixture(scope="session")
def docker_engine(request):
    return _started(request, "docker")


@pytest.fixture(scope="session")
def sky_server(request):
    return _started(request, "skypilot")


@pytest.fixture
def via_docker(docker_engine):  # a service reached through another fixture
    return docker_engine
'''

TESTS = '''
import os
import pytest


def _ran(name):
    with open(os.path.join(os.environ["STARTS"], "ran-" + name), "a") as f:
        f.write(os.environ.get("PYTEST_XDIST_WORKER", "main") + "\\n")


@pytest.mark.parametrize("i", range(5))
def test_slurm(slurm_cluster, i):
    _ran("slurm")


@pytest.mark.parametrize("i", range(5))
def test_docker(via_docker, i):
    _ran("docker")


@pytest.mark.parametrize("i", range(8))
def test_plain(i):
    _ran("plain")


@pytest.mark.slurm
def test_asks_at_run_time_and_says_so(request):
    request.getfixturevalue("slurm_cluster")
    _ran("slurm")


def test_asks_at_run_time_without_the_marker(request):
    request.getfixturevalue("sky_server")
'''


def _run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    suite, starts = tmp_path / "suite", tmp_path / f"starts{len(list(tmp_path.glob('starts*')))}"
    suite.mkdir(exist_ok=True)
    starts.mkdir()
    (suite / "conftest.py").write_text(CONFTEST)
    (suite / "test_services.py").write_text(TESTS)
    env = {**os.environ, "STARTS": str(starts), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("PYTEST_XDIST_WORKER", None)  # this test may itself run on a worker
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(suite),
                           *args, str(suite)], cwd=suite, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    return proc, starts


def _lines(path: Path) -> list[str]:
    return path.read_text().split()


def test_each_service_starts_once_on_one_worker_and_runs_all_its_tests_there(tmp_path: Path) -> None:
    proc, starts = _run(tmp_path, "-n", "2")  # no --dist: the conftest makes it loadgroup
    out = proc.stdout + proc.stderr
    assert "1 failed, 19 passed" in out, out
    assert "test_asks_at_run_time_without_the_marker" in out and "add @pytest.mark.skypilot" in out, out
    [slurm_worker] = _lines(starts / "slurm")
    assert set(_lines(starts / "ran-slurm")) == {slurm_worker} and len(_lines(starts / "ran-slurm")) == 6
    [docker_worker] = _lines(starts / "docker")
    assert set(_lines(starts / "ran-docker")) == {docker_worker} and len(_lines(starts / "ran-docker")) == 5
    workers = set(_lines(starts / "ran-slurm") + _lines(starts / "ran-docker") + _lines(starts / "ran-plain"))
    assert len(workers) > 1 and all(w.startswith("gw") for w in workers), workers  # it did run in parallel


def test_a_serial_run_needs_no_marker(tmp_path: Path) -> None:
    proc, starts = _run(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [_lines(starts / s) for s in ("slurm", "docker", "skypilot")] == [["main"]] * 3
