"""Time from the command to the printed handle for a git-packaged job, on local and on docker.

For each executor it launches ``python -m nemorun task=hello task.script=job.sh packager=git``
from a generated git repository (``--files`` files of ``--kb`` KiB) and measures, from process
start, when the ``submitted as <handle>`` line appears on stdout: start-up, compose, packing,
render, record, code placement and submission included. Two cases, interleaved:

- new digest: a commit changed one file before the launch, so the archive is new everywhere;
- unchanged: the same tree launched again; its archive is already recorded by the previous launch.

nemorun packs the tree on every launch (the digest IS the check), so "unchanged" saves only what
a target does with an archive it already has: docker links ``<job dir>/code`` to the tree unpacked
once per digest (``NEMORUN_HOME/cache/code``); local unpacks inside the job (``launch.sh``, after
the handle), so its two cases should not differ. The unpack an unchanged docker launch skips is
timed on its own for comparison. One NEMORUN_HOME for all runs (a warm compose cache for both
cases). Docker: the engine at DOCKER_HOST, else the test fixture's engine
(tests/fixtures/docker/engine.sh, root) started in a temp dir and stopped afterwards.

    python bench/ship_code.py [-n 5] [--files 2000] [--kb 8]
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
ENGINE = ROOT / "tests" / "fixtures" / "docker" / "engine.sh"
IMAGE = "local/busybox:1"
NAME = "shipbench"
GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@example.com", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}  # fmt: skip


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env={**os.environ, **GIT_ENV})


def make_repo(root: Path, files: int, kb: int) -> Path:
    """Source-like files (words, so gzip compresses them about as much as code)."""
    rng = random.Random(0)
    words = [f"{w}_{i}" for i, w in enumerate(("def", "return", "self", "import", "value", "data", "for", "in")) for _ in range(8)]
    repo = root / "repo"
    (repo / "pkg").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    for i in range(files):
        text = " ".join(rng.choice(words) for _ in range(kb * 1024 // 8))
        (repo / "pkg" / f"m{i:05d}.py").write_text(f"# {i}\n{text}\n")
    (repo / "job.sh").write_text("echo shipped\n")
    (repo / "version.txt").write_text("0\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    return repo


def bump(repo: Path, n: int) -> None:
    (repo / "version.txt").write_text(f"{n}\n")
    git(repo, "commit", "-q", "-am", f"v{n}")


def launch(args: list[str], env: dict[str, str], repo: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "nemorun", "task=hello", "task.inline=null", "task.script=job.sh", "packager=git",
                             f"name={NAME}", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=str(repo))  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:
        if "submitted as" in line:
            elapsed = time.perf_counter() - t0
            proc.wait()
            return elapsed
    raise RuntimeError(f"no handle printed: {proc.stderr.read()}")


def start_engine() -> tuple[str, str]:
    d = tempfile.mkdtemp(prefix="nemorun-bench-docker-", dir="/tmp")
    proc = subprocess.run(["sh", str(ENGINE), "start"], env={**os.environ, "DOCKERTEST_DIR": d}, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"cannot start the fixture's Docker engine: {proc.stderr.strip()[-500:]}")
    host = next(ln.split("=", 1)[1] for ln in proc.stdout.splitlines() if ln.startswith("DOCKER_HOST="))
    return host, d


def unpack_seconds(archive: Path) -> float:
    dest = Path(tempfile.mkdtemp(prefix="nemorun-bench-unpack-"))
    try:
        t0 = time.perf_counter()
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(dest, filter="data")
        return time.perf_counter() - t0
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def summary(label: str, times: list[float]) -> str:
    return f"{label:28s} median {statistics.median(times):.3f} s  min {min(times):.3f} s  max {max(times):.3f} s  (n={len(times)})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5, help="launches per case")
    parser.add_argument("--files", type=int, default=2000, help="files in the generated repository")
    parser.add_argument("--kb", type=int, default=8, help="KiB per file")
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nemorun-bench-ship-"))
    engine_dir: Optional[str] = None
    host = os.environ.get("DOCKER_HOST")
    try:
        repo = make_repo(work, opts.files, opts.kb)
        env = {**os.environ, "NEMORUN_HOME": str(work / "home")}
        if not host:
            host, engine_dir = start_engine()
        env["DOCKER_HOST"] = host
        docker = ["executor=docker", f"executor.container_image={IMAGE}", "executor.shell=sh", "executor.network=none"]
        launch([], env, repo)  # warm the compose cache and the page cache before timing
        version = 0
        results: dict[str, list[float]] = {}
        for _ in range(opts.n):
            for executor, args in (("local", []), ("docker", docker)):
                version += 1
                bump(repo, version)
                results.setdefault(f"{executor}: new digest", []).append(launch(args, env, repo))
                results.setdefault(f"{executor}: unchanged", []).append(launch(args, env, repo))
        archives = sorted((work / "home" / "experiments" / NAME).glob("*/code-*.tar.gz"))
        size = archives[-1].stat().st_size
        print(f"repository: {opts.files} files x {opts.kb} KiB = {opts.files * opts.kb / 1024:.1f} MiB; archive {size / 2**20:.1f} MiB (gzip -9)")
        for label, times in results.items():
            print(summary(label, times))
        print(f"{'unpack of that archive':28s} {unpack_seconds(archives[-1]):.3f} s (what an unchanged docker launch no longer does)")
    finally:
        if engine_dir:
            subprocess.run(["sh", str(ENGINE), "stop"], env={**os.environ, "DOCKERTEST_DIR": engine_dir}, capture_output=True)
            shutil.rmtree(engine_dir, ignore_errors=True)
        elif host:
            _remove_containers(host)
        shutil.rmtree(work, ignore_errors=True)


def _remove_containers(host: str) -> None:
    """Leave a user's engine as it was: the bench's containers go (its image stays)."""
    import docker

    client = docker.DockerClient(base_url=host)
    try:
        for c in client.containers.list(all=True, filters={"label": f"nemorun.experiment-name={NAME}"}):
            c.remove(force=True)
    finally:
        client.close()


if __name__ == "__main__":
    main()
