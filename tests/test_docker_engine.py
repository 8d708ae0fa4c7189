"""The docker executor end to end on a real Docker engine (the ``docker_engine`` fixture: dockerd on a
private socket, busybox image imported locally), through the real CLI. Containers run with
``network_mode=none``; busybox has ``sh``, not bash, hence ``executor.shell=sh``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from nemorun.states import AppState
from nemorun.store import ExperimentRecord
from nemorun.submitters import docker as submitter
from nemorun.targets.docker import LABEL_EXPERIMENT_ID
from tests.conftest import ROOT
from tests.helpers import run_cli
from tests.test_local import only_experiment

docker = pytest.importorskip("docker")
pytestmark = pytest.mark.docker


@pytest.fixture
def env(cli_env: dict[str, str], docker_engine: Any) -> dict[str, str]:
    return {**cli_env, "DOCKER_HOST": docker_engine.host}


@pytest.fixture
def client(docker_engine: Any) -> Iterator[Any]:
    c = docker.DockerClient(base_url=docker_engine.host)
    yield c
    c.close()


def base(docker_engine: Any, *more: str) -> list[str]:
    return ["executor=docker", "task=hello", f"executor.container_image={docker_engine.image}", "executor.shell=sh", "executor.network=none", *more]


def wait_state(rec: ExperimentRecord, job: str, until: Any, timeout: float = 60) -> Any:
    """Poll the submitter until ``until(status)``; record and return that status."""
    handle = rec.job(job).handle_obj()
    assert handle is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = submitter.status([handle])[handle.id]
        if until(status):
            rec.record_status(job, status)
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job}: condition not reached in {timeout}s (last: {status})")


def assert_one_line_error(proc: Any, code: int, *parts: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert proc.stderr.startswith("nemorun: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    for part in parts:
        assert part in proc.stderr


def test_packaged_script_reads_its_code_from_the_mount(env: dict[str, str], nemorun_home: Path, tmp_path: Path, docker_engine: Any) -> None:
    project, out = tmp_path / "project", tmp_path / "out"
    (project / "data").mkdir(parents=True)
    out.mkdir()
    (project / "data" / "input.txt").write_text("payload 42\n")
    (project / "job.sh").write_text(
        "cat data/input.txt > /out/result.txt\n"
        "pwd >> /out/result.txt\n"
        "if touch probe 2>/dev/null; then echo writable; else echo read-only; fi >> /out/result.txt\n"
        "echo \"done: $GREETING\"\n"
    )
    (project / "unshipped.txt").write_text("not in the archive\n")
    proc = run_cli(
        base(docker_engine, "task.inline=null", "task.script=job.sh", "packager=pattern", "packager.include_pattern=[job.sh, data]",
             f"executor.volumes=['{out}:/out']", "+task.env.GREETING='hi there'", "wait=true"),
        env=env, cwd=str(project),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (out / "result.txt").read_text() == "payload 42\n/nemorun/code\nread-only\n"
    assert "done: hi there" in proc.stdout
    rec = only_experiment(nemorun_home)
    job = rec.job("hello")
    assert (job.phase, job.state, job.exit_code) == ("submitted", "SUCCEEDED", 0)
    code_dir = rec.job_dir("hello") / "code"
    assert sorted(p.relative_to(code_dir).as_posix() for p in code_dir.rglob("*") if p.is_file()) == ["data/input.txt", "job.sh"]


def test_function_task_runs_with_host_python(env: dict[str, str], nemorun_home: Path, tmp_path: Path, docker_engine: Any) -> None:
    """A packaged module called through nemorun's entry point, with this machine's Python and
    nemorun (editable install under the repo) bind-mounted read-only into busybox."""
    project, out = tmp_path / "project", tmp_path / "out"
    project.mkdir()
    out.mkdir()
    (project / "mymod.py").write_text(
        "import os\n"
        "def run(out: str, n: int) -> None:\n"
        "    open(out, 'w').write(f'{n * 2} {os.getcwd()}\\n')\n"
    )
    prefix = os.path.realpath(sys.base_prefix)
    # nemorun's source mounted as a package on PYTHONPATH: works whatever the install mode (editable,
    # venv) of the nemorun running this test
    mounts = ["/usr:/usr:ro", f"{prefix}:{prefix}:ro", f"{ROOT / 'compiler' / 'nemorun'}:/opt/nemorun-src/nemorun:ro", f"{out}:/out"]
    proc = run_cli(
        base(docker_engine, "task.inline=null", "task.target=mymod.run", "+task.params.out=/out/fn.txt", "+task.params.n=21",
             "packager=pattern", "packager.include_pattern=mymod.py", f"executor.python={os.path.realpath(sys.executable)}",
             "+executor.env_vars.PYTHONPATH=/opt/nemorun-src",
             "executor.volumes=[" + ", ".join(f"'{m}'" for m in mounts) + "]", "wait=true"),
        env=env, cwd=str(project),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "fn.txt").read_text() == "42 /nemorun/code\n"


def test_failing_job_exit_code_is_returned_and_recorded(env: dict[str, str], nemorun_home: Path, docker_engine: Any) -> None:
    proc = run_cli(base(docker_engine, "task.inline='echo failing; exit 3'", "wait=true"), env=env)
    assert proc.returncode == 3, proc.stderr
    assert "failing" in proc.stdout
    job = only_experiment(nemorun_home).job("hello")
    assert (job.state, job.exit_code) == ("FAILED", 3)


def test_cancel_stops_a_sleeping_job(env: dict[str, str], nemorun_home: Path, docker_engine: Any, client: Any) -> None:
    proc = run_cli(base(docker_engine, "task.inline='echo started; sleep 300'", "executor.cancel_grace_seconds=1"), env=env)
    assert proc.returncode == 0, proc.stderr
    rec = only_experiment(nemorun_home)
    wait_state(rec, "hello", lambda s: s.state is AppState.RUNNING)
    proc = run_cli(["exp", "cancel", rec.id], env=env)
    assert proc.returncode == 0, proc.stderr
    handle = rec.job("hello").handle_obj()
    assert handle is not None
    assert client.containers.get(handle.data["container_id"]).status == "exited"
    status = wait_state(rec, "hello", lambda s: s.state.is_terminal)
    assert status.state is AppState.CANCELLED
    assert run_cli(["exp", "cancel", rec.id], env=env).returncode == 0  # idempotent
    proc = run_cli(["exp", "status", rec.id], env=env)
    assert "CANCELLED" in proc.stdout, proc.stdout + proc.stderr


def test_env_with_special_characters_and_shm_size(env: dict[str, str], tmp_path: Path, docker_engine: Any) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "check.sh").write_text(
        "printf '%s' \"$QUOTE\" > /out/quote; printf '%s' \"$MULTI\" > /out/multi; printf '%s' \"$DOLLAR\" > /out/dollar\n"
        "df -k /dev/shm | tail -n 1 > /out/shm\n"
    )
    proc = run_cli(
        base(docker_engine, "task.inline='sh /out/check.sh'", "+task.env.QUOTE=\"it's \\\"quoted\\\" = yes\"",
             "+task.env.MULTI='line1\nline2'", "+task.env.DOLLAR='$HOME and \\${PATH}'", "executor.shm_size=96m",
             f"executor.volumes=['{out}:/out']", "wait=true"),
        env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (out / "quote").read_text() == 'it\'s "quoted" = yes'
    assert (out / "multi").read_text() == "line1\nline2"
    assert (out / "dollar").read_text() == "$HOME and ${PATH}"
    assert (out / "shm").read_text().split()[1] == str(96 * 1024)


def test_logs_follow_until_the_job_ends(env: dict[str, str], nemorun_home: Path, docker_engine: Any) -> None:
    proc = run_cli(base(docker_engine, "task.inline='for i in 1 2 3; do echo line-$i; sleep 0.3; done; echo err-line >&2'"), env=env)
    assert proc.returncode == 0, proc.stderr
    rec = only_experiment(nemorun_home)
    handle = rec.job("hello").handle_obj()
    assert handle is not None
    followed = list(submitter.logs(handle, follow=True))
    assert followed == ["line-1\n", "line-2\n", "line-3\n", "err-line\n"]
    assert submitter.status([handle])[handle.id].state is AppState.SUCCEEDED
    assert list(submitter.logs(handle)) == followed
    cli = run_cli(["exp", "logs", "-f", rec.id], env=env)
    assert cli.returncode == 0 and "line-1\nline-2\nline-3\n" in cli.stdout and "err-line" in cli.stdout + cli.stderr


def test_retries_restart_the_container_on_failure(env: dict[str, str], nemorun_home: Path, tmp_path: Path, docker_engine: Any) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cli(base(docker_engine, "task.inline='echo run >> /out/runs; exit 1'", "executor.retries=2", f"executor.volumes=['{out}:/out']"), env=env)
    assert proc.returncode == 0, proc.stderr
    rec = only_experiment(nemorun_home)
    status = wait_state(rec, "hello", lambda s: s.state.is_terminal and (out / "runs").read_text().count("run") == 3)
    assert (status.state, status.exit_code) == (AppState.FAILED, 1)
    assert (out / "runs").read_text() == "run\n" * 3


def test_missing_image_is_one_line_and_recorded(env: dict[str, str], nemorun_home: Path, docker_engine: Any, client: Any) -> None:
    proc = run_cli([*base(docker_engine), "executor.container_image=local/nothere:1"], env=env)
    assert_one_line_error(proc, 1, "local/nothere:1", "never pulls", docker_engine.host)
    rec = only_experiment(nemorun_home)
    job = rec.job("hello")
    assert (job.phase, job.handle) == ("failed-to-submit", None)
    assert "local/nothere:1" in str(job.error)
    assert client.containers.list(all=True, filters={"label": f"{LABEL_EXPERIMENT_ID}={rec.id}"}) == []


@pytest.mark.parametrize("host", ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:9"])
def test_unreachable_docker_host_is_one_line_and_recorded(host: str, cli_env: dict[str, str], nemorun_home: Path) -> None:
    proc = run_cli(["executor=docker", "task=hello", "executor.container_image=local/busybox:1"], env={**cli_env, "DOCKER_HOST": host})
    assert_one_line_error(proc, 1, f"cannot reach the Docker engine at {host}")
    job = only_experiment(nemorun_home).job("hello")
    assert job.phase == "failed-to-submit" and host in str(job.error)


def test_start_failure_leaves_no_container(env: dict[str, str], nemorun_home: Path, docker_engine: Any, client: Any) -> None:
    """busybox has no bash: the engine creates the container but cannot start it."""
    proc = run_cli([*base(docker_engine), "executor.shell=bash"], env=env)
    assert_one_line_error(proc, 1, "refused container", "bash")
    rec = only_experiment(nemorun_home)
    assert rec.job("hello").phase == "failed-to-submit"
    assert client.containers.list(all=True, filters={"label": f"{LABEL_EXPERIMENT_ID}={rec.id}"}) == []


def test_stopped_engine_with_stale_socket_is_one_line(cli_env: dict[str, str], nemorun_home: Path, tmp_path: Path) -> None:
    """What a stopped dockerd can leave behind: a socket file nobody listens on."""
    import socket

    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
    proc = run_cli(["executor=docker", "task=hello", "executor.container_image=local/busybox:1"], env={**cli_env, "DOCKER_HOST": f"unix://{path}"})
    assert_one_line_error(proc, 1, f"cannot reach the Docker engine at unix://{path}", "refused")
    assert only_experiment(nemorun_home).job("hello").phase == "failed-to-submit"


def test_wait_keeps_stdout_and_stderr_apart(env: dict[str, str], nemorun_home: Path, docker_engine: Any) -> None:
    proc = run_cli(base(docker_engine, "task.inline='echo to-out; sleep 0.3; echo to-err >&2; exit 5'", "wait=true"), env=env)
    assert proc.returncode == 5, proc.stderr
    assert "to-out" in proc.stdout and "to-err" not in proc.stdout
    assert "to-err" in proc.stderr and "to-out" not in proc.stderr


def _aged(path: Path, days: float) -> Path:
    when = time.time() - days * 24 * 3600
    os.utime(path, (when, when))
    return path


def test_code_cache_prunes_old_trees_no_live_container_mounts(env: dict[str, str], nemorun_home: Path, tmp_path: Path,
                                                              docker_engine: Any, client: Any) -> None:  # fmt: skip
    """The pruning rule on the real engine: a tree a running container mounts stays however old;
    an old unused tree, an old half-unpacked folder go; a recently used tree stays. Once that
    container has ended its tree goes too, and the recorded archive unpacks it again on demand."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "job.sh").write_text("echo started; sleep 300\n")
    proc = run_cli(base(docker_engine, "task.inline=null", "task.script=job.sh", "packager=pattern", "packager.include_pattern=[job.sh]",
                        "executor.cancel_grace_seconds=1"), env=env, cwd=str(project))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rec = only_experiment(nemorun_home)
    wait_state(rec, "hello", lambda s: s.state is AppState.RUNNING)
    root = submitter.code_cache_root()
    [mounted] = [p for p in root.iterdir() if not p.name.startswith(".")]
    assert (rec.job_dir("hello") / "code").resolve() == mounted
    _aged(mounted, 30)
    old, recent, half = root / ("b" * 64), root / ("c" * 64), root / f".{'d' * 64}-x1y2"
    for folder in (old, recent, half):
        folder.mkdir()
        (folder / "f.txt").write_text("x")
    _aged(old, 30), _aged(recent, 1), _aged(half, 30)

    assert sorted(submitter.prune_code_cache(client)) == sorted([f".trash-{old.name}-{os.getpid()}", f".trash-{half.name}-{os.getpid()}"])
    assert mounted.is_dir() and recent.is_dir() and not old.exists() and not half.exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".trash-")]

    assert run_cli(["exp", "cancel", rec.id], env=env).returncode == 0
    assert submitter.prune_code_cache(client) == [f".trash-{mounted.name}-{os.getpid()}"]
    assert not mounted.exists() and recent.is_dir()
    code = json.loads((rec.path / "code.json").read_text())
    again = submitter._unpacked(str(rec.path / code["archive"]), code["sha256"])  # what a rerun/resume does
    assert again == mounted and (again / "job.sh").read_text() == "echo started; sleep 300\n"


def test_code_cache_prune_waits_for_a_launch_holding_the_lock(nemorun_home: Path, client: Any) -> None:
    """Another process holding the cache lock (a launch unpacking and linking its tree): pruning
    does not touch the cache meanwhile; a launch's own prune gives up at once and never fails it."""
    from filelock import Timeout

    root = submitter.code_cache_root()
    old = root / ("e" * 64)
    old.mkdir(parents=True)
    _aged(old, 30)
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from filelock import FileLock\n"
                               f"with FileLock({str(submitter._lock_file())!r}):\n print('locked', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(Timeout):
            submitter.prune_code_cache(client, lock_timeout=0)
        submitter._prune_quietly(client)
        assert old.is_dir()
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    submitter._prune_quietly(client)
    assert not old.exists() and submitter._pruned_file().exists()
    _aged(submitter._pruned_file(), 0)
    old.mkdir()
    _aged(old, 30)
    submitter._prune_quietly(client)  # pruned less than a day ago: not again
    assert old.is_dir()


def test_second_task_image_missing_sends_nothing(env: dict[str, str], nemorun_home: Path, docker_engine: Any, client: Any,
                                                 tmp_path: Path) -> None:  # fmt: skip
    """The image check runs in resolve, for every task before the first is sent: the first task's
    container is never created when the second task's image is not on the engine."""
    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "two.yaml").write_text(
        "defaults:\n  - /_schema_experiment@_here_\n  - _self_\nname: two\ntasks:\n"
        "  first:\n    overrides: [task=hello, task.name=first]\n"
        "  second:\n    overrides: [task=hello, task.name=second, executor.container_image=local/nothere:1]\n")
    proc = run_cli(["--config-dir", str(conf), *base(docker_engine)[:1], *base(docker_engine)[2:], "experiment=two"], env=env)
    assert_one_line_error(proc, 1, "job second was not submitted", "local/nothere:1", "never pulls", "no job of this launch was sent")
    rec = only_experiment(nemorun_home)
    assert (rec.job("first").phase, rec.job("second").phase) == ("rendered", "failed-to-submit")
    assert client.containers.list(all=True, filters={"label": f"{LABEL_EXPERIMENT_ID}={rec.id}"}) == []


class EngineCalls:
    """The container endpoints docker-py calls on the real engine (paths of its HTTP requests)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.paths: list[str] = []
        send = docker.api.client.APIClient.send

        def counting(api: Any, request: Any, **kwargs: Any) -> Any:
            path = request.path_url.split("?")[0]
            if "/containers/" in path or "/images/" in path:
                self.paths.append(path.split("/", 2)[2] if path.startswith("/v") else path.lstrip("/"))
            return send(api, request, **kwargs)

        monkeypatch.setattr(docker.api.client.APIClient, "send", counting)

    def take(self) -> tuple[int, int]:
        """(list calls, inspect calls) since the last take."""
        lists = sum(p == "containers/json" for p in self.paths)
        inspects = sum(p.startswith("containers/") and p.endswith("/json") and p != "containers/json" for p in self.paths)
        self.paths.clear()
        return lists, inspects


def test_status_poll_is_one_list_call_and_inspects_only_ended_containers(env: dict[str, str], nemorun_home: Path, docker_engine: Any,
                                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    out = tmp_path / "out"
    out.mkdir()
    task = "task.inline='touch /out/up-$JOB; until [ -e /out/go ]; do sleep 0.05; done; exit 3'"
    proc = run_cli(["-m", *base(docker_engine, task, f"executor.volumes=['{out}:/out']"), "+executor.env_vars.JOB=a,b,c"], env=env)
    assert proc.returncode == 0, proc.stderr
    rec = only_experiment(nemorun_home)
    handles = [j.handle_obj() for j in (rec.job(n) for n in rec.meta["jobs"])]
    assert all(h is not None and h.data["retries"] == 0 for h in handles)
    deadline = time.monotonic() + 60
    while len(list(out.glob("up-*"))) < 3:  # every container is running
        assert time.monotonic() < deadline, "the containers did not start"
        time.sleep(0.05)
    calls = EngineCalls(monkeypatch)
    for _ in range(3):
        states = submitter.status(handles)
        assert {s.state for s in states.values()} == {AppState.RUNNING}
        assert calls.take() == (1, 0)  # one list per poll, no container inspected
    (out / "go").touch()
    ended: dict[str, Any] = {}
    while len(ended) < 3:
        assert time.monotonic() < deadline + 60, f"the containers did not end: {ended}"
        states = submitter.status(handles)
        lists, inspects = calls.take()
        newly = {k: s for k, s in states.items() if s.state.is_terminal and k not in ended}
        assert lists == 1 and inspects == len(newly), (lists, inspects, states)  # only what just ended
        ended.update(newly)
        handles = [h for h in handles if h.id not in ended]  # as a tracker polls: live jobs only
        time.sleep(0.05)
    assert {(s.state, s.exit_code) for s in ended.values()} == {(AppState.FAILED, 3)}


def test_resolve_asks_the_engine_for_an_image_once_per_launch(docker_engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every job of a sweep is resolved before the first is sent; they share the image: one look."""
    from nemorun.errors import SubmitError
    from tests.test_submitter_contract import _compile

    job = _compile(base(docker_engine), tmp_path)
    calls = EngineCalls(monkeypatch)
    for _ in range(3):
        assert submitter.resolve(job) is job
    assert sum(p.startswith("images/") for p in calls.paths) == 1
    other = _compile(base(docker_engine), tmp_path)  # the next launch (another experiment id) looks again
    submitter.resolve(other)
    assert sum(p.startswith("images/") for p in calls.paths) == 2
    missing = _compile([*base(docker_engine), "executor.container_image=local/nothere:2"], tmp_path)
    with pytest.raises(SubmitError, match="local/nothere:2 is not on the Docker engine"):
        submitter.resolve(missing)
