"""Jobs that really run on the local and docker executors: retries, function tasks in a stock
image, and code placed once per archive digest.

Real parts only: the CLI in a subprocess, real processes for local, and a real Docker engine
(the ``docker_engine`` fixture: dockerd on a private socket). The "stock image" is built here from
this machine's Python interpreter: its binary, standard library and shared libraries, imported
as a root filesystem (no pip, no site-packages, no nemorun, no shell); nothing of nemorun is
mounted into it, so a function task runs only through the entry point shipped with the job.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from nemorun.states import AppState
from nemorun.store import ExperimentRecord
from nemorun.submitters import docker as docker_submitter
from tests.helpers import git, run_cli, write_files
from tests.test_local import only_experiment

PYTHON_IMAGE = "local/python-only:1"
# a task that fails until its third run: the count survives the runs in a file
THIRD_TIME_LUCKY = "n=$(cat {f} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {f}; echo try-$n; sleep 0.3; [ $n -ge 3 ]"


def _experiments(home: Path) -> list[ExperimentRecord]:
    return sorted((ExperimentRecord(p.parent) for p in home.glob("experiments/*/*/experiment.json")), key=lambda r: r.id)


def _status_line(proc: subprocess.CompletedProcess[str], job: str) -> str:
    return next(line for line in proc.stdout.splitlines() if line.split()[:1] == [job])


# -- local ----------------------------------------------------------------------------------------
def test_local_retries_until_the_task_succeeds(cli_env: dict[str, str], nemorun_home: Path, tmp_path: Path) -> None:
    counter = tmp_path / "count"
    proc = run_cli(["task=hello", f"task.inline='{THIRD_TIME_LUCKY.format(f=counter)}'", "executor.retries=2", "wait=true"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stdout.splitlines() if line.startswith("try-")] == ["try-1", "try-2", "try-3"]
    rec = only_experiment(nemorun_home)
    job = rec.job("hello")
    assert (job.state, job.exit_code) == ("SUCCEEDED", 0)
    assert (rec.job_dir("hello") / "attempts").read_text() == "attempt 1 exit 1\nattempt 2 exit 1\nattempt 3 exit 0\n"
    status = run_cli(["exp", "status", rec.id], env=cli_env)
    assert status.returncode == 0, status.stderr
    assert _status_line(status, "hello").split()[1:3] == ["SUCCEEDED", "0"]
    assert "3 attempts (exit 1, 1, 0)" in _status_line(status, "hello")


def test_local_retries_give_up_after_the_last_attempt(cli_env: dict[str, str], nemorun_home: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = run_cli(["task=hello", f"task.inline='echo run >> {runs}; exit 4'", "executor.retries=1", "wait=true"], env=cli_env)
    assert proc.returncode == 4, proc.stderr
    assert runs.read_text() == "run\n" * 2
    rec = only_experiment(nemorun_home)
    assert (rec.job("hello").state, rec.job("hello").exit_code) == ("FAILED", 4)
    status = run_cli(["exp", "status", rec.id], env=cli_env)
    assert "2 attempts (exit 4, 4)" in _status_line(status, "hello"), status.stdout


def test_local_cancel_stops_the_retries(cli_env: dict[str, str], nemorun_home: Path, tmp_path: Path) -> None:
    """A cancelled attempt is not retried: the TERM that ends it ends launch.sh's loop too."""
    runs = tmp_path / "runs"
    proc = run_cli(["task=hello", f"task.inline='echo run >> {runs}; sleep 300'", "executor.retries=3"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    rec = only_experiment(nemorun_home)
    deadline = time.monotonic() + 30
    while not runs.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run_cli(["exp", "cancel", rec.id], env=cli_env).returncode == 0
    status = run_cli(["exp", "status", rec.id], env=cli_env)
    assert "CANCELLED" in _status_line(status, "hello"), status.stdout
    time.sleep(0.5)
    assert runs.read_text() == "run\n"


# -- docker ---------------------------------------------------------------------------------------
@pytest.fixture
def docker_env(cli_env: dict[str, str], docker_engine: Any) -> dict[str, str]:
    pytest.importorskip("docker")
    return {**cli_env, "DOCKER_HOST": docker_engine.host}


def _busybox(engine: Any, *more: str) -> list[str]:
    return ["executor=docker", "task=hello", f"executor.container_image={engine.image}", "executor.shell=sh", "executor.network=none", *more]


@pytest.mark.docker
def test_docker_retries_follow_the_restarts_to_success(docker_env: dict[str, str], nemorun_home: Path, tmp_path: Path, docker_engine: Any) -> None:
    """``wait=true`` streams every attempt (the engine ends a followed log at each exit) and
    returns the final exit code; status says RUNNING between attempts, never FAILED."""
    out = tmp_path / "out"
    out.mkdir()
    task = THIRD_TIME_LUCKY.format(f="/out/count")
    proc = run_cli(_busybox(docker_engine, f"task.inline='{task}'", "executor.retries=2", f"executor.volumes=['{out}:/out']", "wait=true"), env=docker_env)
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stdout.splitlines() if line.startswith("try-")] == ["try-1", "try-2", "try-3"]
    rec = only_experiment(nemorun_home)
    job = rec.job("hello")
    assert (job.state, job.exit_code) == ("SUCCEEDED", 0)
    assert "RestartCount 2 (3 attempts)" in job.detail
    status = run_cli(["exp", "status", rec.id], env=docker_env)
    assert "RestartCount 2" in _status_line(status, "hello") and "SUCCEEDED" in _status_line(status, "hello"), status.stdout


@pytest.mark.docker
def test_docker_status_between_attempts_is_running(docker_env: dict[str, str], nemorun_home: Path, tmp_path: Path, docker_engine: Any) -> None:
    out = tmp_path / "out"
    out.mkdir()
    # each attempt waits for the test to have seen it running (go-N), so on a loaded machine the
    # first attempts cannot all be over before the first status call
    task = THIRD_TIME_LUCKY.format(f="/out/count").replace("sleep 0.3;", "until [ -e /out/go-$n ]; do sleep 0.05; done;")
    proc = run_cli(_busybox(docker_engine, f"task.inline='{task}'", "executor.retries=2", f"executor.volumes=['{out}:/out']"), env=docker_env)
    assert proc.returncode == 0, proc.stderr
    handle = only_experiment(nemorun_home).job("hello").handle_obj()
    assert handle is not None
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st = docker_submitter.status([handle])[handle.id]
        seen.append((st.state, st.detail))
        if st.state.is_terminal:
            break
        if st.state is AppState.RUNNING and (out / "count").exists():
            (out / f"go-{(out / 'count').read_text().strip()}").touch()  # release the attempt seen running
        time.sleep(0.02)
    assert seen[-1][0] is AppState.SUCCEEDED, seen[-1]
    assert all(state is AppState.RUNNING for state, _ in seen[:-1]), [s for s in seen if s[0] is not AppState.RUNNING]
    assert any("RestartCount 1" in detail for _, detail in seen), seen  # a later attempt was seen running


@pytest.mark.docker
def test_docker_retries_exhausted_end_failed(docker_env: dict[str, str], nemorun_home: Path, tmp_path: Path, docker_engine: Any) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cli(_busybox(docker_engine, "task.inline='echo run >> /out/runs; echo attempt-failed; exit 6'", "executor.retries=1",
                            f"executor.volumes=['{out}:/out']", "wait=true"), env=docker_env)  # fmt: skip
    assert proc.returncode == 6, proc.stderr
    assert proc.stdout.count("attempt-failed") == 2 and (out / "runs").read_text() == "run\n" * 2
    job = only_experiment(nemorun_home).job("hello")
    assert (job.state, job.exit_code) == ("FAILED", 6) and "RestartCount 1" in job.detail


def _ldd(path: str) -> list[str]:
    """Absolute paths of the shared libraries ``path`` loads (the loader included)."""
    proc = subprocess.run(["ldd", path], capture_output=True, text=True)
    if proc.returncode != 0 or "not found" in proc.stdout:
        return []
    libs = []
    for line in proc.stdout.splitlines():
        words = line.split()
        if "=>" in words and words[words.index("=>") + 1].startswith("/"):
            libs.append(words[words.index("=>") + 1])
        elif words and words[0].startswith("/"):
            libs.append(words[0])
    return libs


# standard library parts a function task never needs (tests, GUI, build files, bundled wheels)
_SKIP_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3"}


def python_rootfs_tar(dest: Path) -> None:
    """A root filesystem holding this machine's Python interpreter and nothing else: the binary
    at its own path (so its RUNPATH and prefix hold), ``python``/``python3`` links on the default
    PATH, the standard library without site-packages, the extension modules whose libraries are
    here, and those libraries."""
    exe = os.path.realpath(sys.executable)
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    files: set[str] = {exe, *_ldd(exe)}
    for path in sorted(stdlib.rglob("*")):
        rel = path.relative_to(stdlib).parts
        if any(part in _SKIP_DIRS or part.startswith("config-") for part in rel) or not path.is_file():
            continue
        if path.suffix == ".pyc" and ".opt-" in path.name:
            continue
        if path.suffix == ".so":
            needs = _ldd(str(path))
            if not needs or "_tkinter" in path.name:
                continue  # a library this machine lacks: the module stays out, as in a slim image
            files.update(needs)
        files.add(str(path))
    with tarfile.open(dest, "w", dereference=True) as tar:
        for name in sorted(files):
            tar.add(name, arcname=name.lstrip("/"), recursive=False)
        for link in ("usr/local/bin/python", "usr/local/bin/python3"):
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, exe
            tar.addfile(info)
        tmp = tarfile.TarInfo("tmp")
        tmp.type, tmp.mode = tarfile.DIRTYPE, 0o1777
        tar.addfile(tmp)


@pytest.fixture(scope="module")
def python_image(docker_engine: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=docker_engine.host)
    try:
        try:
            client.images.get(PYTHON_IMAGE)
        except docker.errors.ImageNotFound:
            rootfs = tmp_path_factory.mktemp("python-rootfs") / "rootfs.tar"
            python_rootfs_tar(rootfs)
            repo, tag = PYTHON_IMAGE.split(":")
            client.api.import_image_from_file(str(rootfs), repository=repo, tag=tag)
            rootfs.unlink()
        probe = client.containers.run(PYTHON_IMAGE, ["python", "-c", "import importlib.util, json, sys; "
                                      "print(sys.version_info[:2] >= (3, 9), importlib.util.find_spec('nemorun'))"],
                                      network_mode="none", remove=True)  # fmt: skip
        assert probe.decode().split() == ["True", "None"], probe  # Python, and no nemorun
    finally:
        client.close()
    return PYTHON_IMAGE


MYPKG = {
    ".gitignore": "__pycache__/\n",
    "mypkg/__init__.py": "",
    "mypkg/mod.py": (
        "import importlib.util\n"
        "import os\n"
        "\n"
        "\n"
        "def fn(steps: int = 20, lr: float = 0.1, seed: int = 0, code: int = 0) -> int:\n"
        "    has = importlib.util.find_spec('nemorun') is not None\n"
        "    print(f'fn steps={steps} lr={lr} cwd={os.getcwd()} nemorun-importable={has}', flush=True)\n"
        "    return code\n"
    ),
}


@pytest.fixture
def mypkg_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write_files(repo, MYPKG)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "mypkg")
    return repo


@pytest.mark.docker
@pytest.mark.parametrize(
    "packager, extra, code",
    [("git", [], 0), ("pattern", ["packager.include_pattern=mypkg", "+task.params.code=5"], 5)],
    ids=["git", "pattern"],
)
def test_function_task_runs_in_a_python_only_image(packager: str, extra: list[str], code: int, python_image: str, mypkg_repo: Path,
                                                   docker_env: dict[str, str], nemorun_home: Path) -> None:  # fmt: skip
    proc = run_cli(["executor=docker", "task=train", "task.target=mypkg.mod.fn", "task.params.steps=3", f"packager={packager}", *extra,
                    f"executor.container_image={python_image}", "executor.network=none", "wait=true"],
                   env=docker_env, cwd=str(mypkg_repo))  # fmt: skip
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "fn steps=3 lr=0.1 cwd=/nemorun/code nemorun-importable=False" in proc.stdout, proc.stdout + proc.stderr
    rec = only_experiment(nemorun_home)
    job = rec.job("train")
    assert (job.state, job.exit_code) == ("SUCCEEDED" if code == 0 else "FAILED", code)
    logs = run_cli(["exp", "logs", rec.id], env=docker_env)
    assert "nemorun-importable=False" in logs.stdout, logs.stdout + logs.stderr
    kwargs = json.loads((rec.job_dir("train") / "container.json").read_text())
    sources = sorted(Path(v.split(":")[0]).relative_to(rec.path).as_posix() for v in kwargs["volumes"])
    assert sources == ["jobs/train", "jobs/train/code"]  # the job folder and the code: nothing of nemorun
    assert "environment" not in kwargs and kwargs["command"][:2] == ["python", "/nemorun/job/nemorun_entry.py"]


@pytest.mark.docker
def test_unchanged_archive_is_unpacked_once(docker_env: dict[str, str], nemorun_home: Path, tmp_path: Path, docker_engine: Any) -> None:
    """Two launches of the same committed tree: one digest, one unpacked tree, both jobs ran from it."""
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write_files(repo, {"job.sh": "cat data.txt\n", "data.txt": "from the archive\n"})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    args = _busybox(docker_engine, "task.inline=null", "task.script=job.sh", "packager=git", "wait=true")
    first = run_cli(args, env=docker_env, cwd=str(repo))
    assert first.returncode == 0 and "from the archive" in first.stdout, first.stderr
    [rec1] = _experiments(nemorun_home)
    tree = (rec1.job_dir("hello") / "code").resolve()
    assert tree == docker_submitter.code_cache(_sha(rec1)) and (tree / "job.sh").is_file()
    before = (tree.stat().st_ino, (tree / "job.sh").stat().st_mtime_ns)
    second = run_cli(args, env=docker_env, cwd=str(repo))
    assert second.returncode == 0 and "from the archive" in second.stdout, second.stderr
    rec2 = [r for r in _experiments(nemorun_home) if r.id != rec1.id][0]
    assert (rec2.job_dir("hello") / "code").resolve() == tree
    assert (tree.stat().st_ino, (tree / "job.sh").stat().st_mtime_ns) == before  # not unpacked again
    assert [p.name for p in tree.parent.iterdir()] == [tree.name]  # no temp tree left behind


def _sha(rec: ExperimentRecord) -> str:
    return str(json.loads((rec.path / "code.json").read_text())["sha256"])
