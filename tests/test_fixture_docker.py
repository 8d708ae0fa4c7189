"""Self-test of the docker_engine fixture (tests/fixtures/docker_engine.py) via docker-py."""

from __future__ import annotations

import os
import sys
import uuid

import pytest

docker = pytest.importorskip("docker")

pytestmark = pytest.mark.docker


@pytest.fixture
def client(docker_engine):
    # from_env() must pick up the DOCKER_HOST the fixture exported.
    assert os.environ["DOCKER_HOST"] == docker_engine.host
    c = docker.from_env()
    yield c
    c.close()


@pytest.fixture
def run_label():
    return {"nemorun.test": uuid.uuid4().hex}


def test_engine_dataclass(docker_engine):
    assert docker_engine.host.startswith("unix://")
    assert docker_engine.image == "local/busybox:1"
    assert docker_engine.dir.is_dir()
    with pytest.raises(Exception):
        docker_engine.host = "x"  # frozen


def test_echo_and_exit_code(client, docker_engine, run_label):
    c = client.containers.run(
        docker_engine.image,
        ["sh", "-c", "echo hello-nemorun; echo to-stderr >&2; exit 3"],
        network_mode="none",
        labels=run_label,
        detach=True,
    )
    try:
        assert c.wait(timeout=60)["StatusCode"] == 3
        assert b"hello-nemorun" in c.logs(stdout=True, stderr=False)
        assert b"to-stderr" in c.logs(stdout=False, stderr=True)
    finally:
        c.remove(force=True)


def _host_python_volumes() -> dict[str, dict[str, str]]:
    vols = {"/usr": {"bind": "/usr", "mode": "ro"}}
    for prefix in {os.path.realpath(sys.base_prefix), os.path.realpath(sys.prefix)}:
        if prefix != "/usr" and not prefix.startswith("/usr/"):
            vols[prefix] = {"bind": prefix, "mode": "ro"}
    return vols


def test_host_python_in_busybox(client, docker_engine, run_label):
    # Python outside /usr (e.g. pyenv under /root/.pyenv) needs its prefix mounted too; the image
    # has lib -> usr/lib and lib64 -> usr/lib64 so the host loader and libc resolve.
    python = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    c = client.containers.run(
        docker_engine.image,
        [python, "-I", "-c", "import sys; print('py-inside', sys.version_info[:2], sys.prefix)"],
        volumes=_host_python_volumes(),
        network_mode="none",
        labels=run_label,
        detach=True,
    )
    try:
        status = c.wait(timeout=60)["StatusCode"]
        out = c.logs().decode()
        assert status == 0, out
        assert f"py-inside {tuple(sys.version_info[:2])}" in out
    finally:
        c.remove(force=True)


def test_label_filtering(client, docker_engine, run_label):
    other = {"nemorun.test": uuid.uuid4().hex}
    mine = client.containers.run(
        docker_engine.image, ["sleep", "60"], network_mode="none", labels=run_label, detach=True
    )
    theirs = client.containers.run(
        docker_engine.image, ["sleep", "60"], network_mode="none", labels=other, detach=True
    )
    try:
        (key, value), = run_label.items()
        found = client.containers.list(filters={"label": f"{key}={value}"})
        assert [x.id for x in found] == [mine.id]
        assert {x.id for x in client.containers.list(filters={"label": key})} >= {mine.id, theirs.id}
    finally:
        for x in (mine, theirs):
            x.remove(force=True)
