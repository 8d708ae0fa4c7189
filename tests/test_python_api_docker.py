"""The Python API on a real Docker engine (``docker_engine`` fixture: dockerd on a private socket):
NeMo-Run's DockerExecutor form runs a job, its output comes back through ``exp.logs``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import nemorun


def test_docker_executor_runs_a_script(docker_engine: Any, nemorun_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", docker_engine.host)
    monkeypatch.chdir(tmp_path)
    ex = nemorun.DockerExecutor(container_image=docker_engine.image, shell="sh", network="none", env_vars={"WHO": "python api"},
                                retries=1, packager=nemorun.Packager())
    exp = nemorun.run(nemorun.Script(inline='echo "hello from $WHO"', name="greet"), executor=ex, detach=False)
    assert exp is not None and exp.status()["greet"].state.value == "SUCCEEDED"
    assert "hello from python api" in "".join(exp.logs("greet"))
