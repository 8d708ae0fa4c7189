"""One contract for every submitter, checked against each backend's real part or local contract server.

The contract (nemorun.submitters.base.Submitter): a short job submitted gives a Handle whose
status ends SUCCEEDED for ``exit 0``; the status of a handle the backend never issued is UNKNOWN
or terminal, never an exception; logs carry the job's output where the backend serves any;
cancel is idempotent (twice, and on a finished job); a backend that is not there is ONE
SubmitError line. Jobs go through the executor's order: ``prepare`` (resolve, render, validate),
the artifacts written where the record keeps them, then ``submit``.

Backends: local (real processes), slurm (the real cluster fixture), docker (the real engine
fixture), kubeflow (tests/kube_fake.py), dgxcloud (tests/dgxcloud_runai_server.py), lepton (the
server of tests/test_lepton_submit.py), skypilot (the real local API server; nothing can be
provisioned here, so its submit is refused and only the refusal and the unknown-handle clauses
apply). The fakes have no runtime: ``finish`` ends a job as their controller would.
"""
from __future__ import annotations

import inspect
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

from nemorun import submitters
from nemorun.errors import ConfigError, SubmitError
from nemorun.ir import Job
from nemorun.lower import Site, check_config, compile_job
from nemorun.states import AppState, Handle, JobStatus
from nemorun.store import atomic_write
from nemorun.submitters.base import REQUIRED, OptionalFunctions, Submitter, SubmitterFeatures
from tests.helpers import compose_config

MARKER = "contract-ok"
KINDS = sorted(submitters.SUBMITTER_MODULES)


# ---------------------------------------------------------------- the interface itself
def _params(fn: Any) -> list[tuple[str, Any, bool]]:
    """(name, kind, has default) of a function's parameters, ``self`` dropped."""
    return [(p.name, p.kind, p.default is not p.empty) for p in inspect.signature(fn).parameters.values() if p.name != "self"]


def _conforms(impl: Any, spec: Any) -> bool:
    """``impl`` accepts every call ``spec`` allows: the same leading parameters (names, kinds,
    defaults where spec has them); anything extra has a default."""
    want, have = _params(spec), _params(impl)
    if len(have) < len(want):
        return False
    for (wn, wk, wd), (hn, hk, hd) in zip(want, have):
        if wn != hn or wk != hk or (wd and not hd):
            return False
    return all(hd for _, _, hd in have[len(want):])


@pytest.mark.parametrize("kind", KINDS)
def test_module_satisfies_the_protocol_and_declares_exactly_its_optional_functions(kind: str) -> None:
    module = submitters.submitter(kind)
    assert isinstance(module.FEATURES, SubmitterFeatures)
    for name in REQUIRED:
        assert _conforms(getattr(module, name), getattr(Submitter, name)), f"{kind}.{name}{inspect.signature(getattr(module, name))}"
    has = {name for name in SubmitterFeatures.names() if callable(getattr(module, name, None))}
    assert has == module.FEATURES.declared(), f"{kind} declares {sorted(module.FEATURES.declared())} but defines {sorted(has)}"
    for name in has:
        assert _conforms(getattr(module, name), getattr(OptionalFunctions, name)), f"{kind}.{name}{inspect.signature(getattr(module, name))}"


def test_dispatch_reads_the_declaration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    job = _compile(["task=hello"], tmp_path)
    assert submitters.resolve(job) is job  # local declares no resolve
    with pytest.raises(LookupError, match="no array tasks"):
        submitters.array_task_handle(Handle("docker", "x", {}), 0)
    # every backend declares find today: take the declaration away and dispatch must refuse
    monkeypatch.setattr(submitters.submitter("skypilot"), "FEATURES", SubmitterFeatures())
    with pytest.raises(LookupError, match="cannot find"):
        submitters.find(_compile(["executor=skypilot", "task=hello"], tmp_path))
    assert submitters.submitter_module is submitters.submitter


def test_local_find_reports_a_finished_job_and_nothing_for_an_unknown_folder(tmp_path: Path) -> None:
    job = _compile(["task=hello", f"task.inline='echo {MARKER}'"], tmp_path)
    assert submitters.find(job) is None
    handle = _send(job)
    _wait_terminal(submitters.submitter("local"), handle, lambda h: None)
    found = submitters.find(job)
    assert found is not None and found.data["job_dir"] == job.job_dir


# ---------------------------------------------------------------- per-backend adapters
@dataclass
class Backend:
    kind: str
    module: Any  # the submitter (or, for skypilot, a proxy running it in a client process)
    overrides: list[str]  # executor options of a job this backend accepts
    down: list[str]  # the same executor pointed at nothing listening
    unknown: Handle  # a handle this backend never issued
    finish: Callable[[Handle], None] = lambda handle: None  # fakes: end the job as their controller would
    log_text: Optional[str] = MARKER  # what logs() carries; None: the backend serves no job output
    runs: bool = True  # False: nothing can run here (the submit is refused; see the module docstring)
    down_env: dict[str, str] = field(default_factory=dict)  # where the endpoint is not a config option
    down_module: Optional[Callable[[], Any]] = None  # skypilot: makes a client process that talks to a dead server
    cleanup: list[Callable[[], None]] = field(default_factory=list)
    down_error: type[Exception] = SubmitError  # what the "down" submission raises


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _compile(overrides: list[str], submit_dir: Path) -> Job:
    cfg = compose_config(overrides)
    check_config(cfg)
    site = Site(experiment_id=f"contract-{uuid.uuid4().hex[:8]}", submit_dir=str(submit_dir), home=str(submit_dir / "home"))
    return compile_job(cfg, site)


def _send(job: Job, module: Any = None) -> Handle:
    """The executor's order: resolve + render + validate, record the artifacts, submit them."""
    job, rendered = module.prepare(job) if isinstance(module, _ClientProcess) else submitters.prepare(job)  # resolve may import the SDK
    for name, text in rendered.artifacts.items():
        atomic_write(Path(job.job_dir) / name, text, mode=0o755 if name.endswith(".sh") else 0o644)
    return (module or submitters.submitter(job.target)).submit(rendered, job)


def _wait_terminal(module: Any, handle: Handle, finish: Callable[[Handle], None], timeout: float = 90) -> JobStatus:
    deadline = time.monotonic() + timeout
    while True:
        status: JobStatus = module.status([handle])[handle.id]
        if status.state.is_terminal:
            return status
        finish(handle)
        if time.monotonic() > deadline:
            raise AssertionError(f"{handle.backend} job {handle.id} still {status} after {timeout}s")
        time.sleep(0.2)


def _local(request: pytest.FixtureRequest, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    unknown = Handle("local", "999999999", {"pid": 999999999, "start_time": None, "job_dir": str(tmp / "never")})
    # "down" for a backend that is this machine: a working directory that is not there, a config
    # mistake that resolve refuses before anything of the launch is sent
    return Backend("local", submitters.submitter("local"), [], [f"executor.workdir={tmp / 'missing'}"], unknown,
                   down_error=ConfigError)


def _slurm(request: pytest.FixtureRequest, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    cluster = request.getfixturevalue("slurm_cluster")
    from nemorun import tunnels

    spec = tunnels.tunnel_spec(_compile(["executor=slurm", "task=hello"], tmp).executor.tunnel)
    unknown = Handle("slurm", "987654", {"tunnel": spec, "job_dir": str(tmp), "stdout": str(tmp / "o"), "stderr": str(tmp / "e")})
    down = ["executor/tunnel=ssh", "executor.tunnel.host=127.0.0.1", f"executor.tunnel.port={_free_port()}", f"executor.tunnel.user={cluster.ssh_user}",
            f"executor.tunnel.identity={cluster.ssh_key}", f"executor.tunnel.known_hosts={cluster.known_hosts}", f"executor.tunnel.job_dir={tmp / 'remote'}"]  # fmt: skip
    return Backend("slurm", submitters.submitter("slurm"), ["executor=slurm"], ["executor=slurm", *down], unknown)


def _docker(request: pytest.FixtureRequest, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    pytest.importorskip("docker")
    engine = request.getfixturevalue("docker_engine")
    monkeypatch.setenv("DOCKER_HOST", engine.host)
    base = ["executor=docker", f"executor.container_image={engine.image}", "executor.shell=sh", "executor.network=none", "executor.cancel_grace_seconds=1"]
    unknown = Handle("docker", "0123456789ab", {"container_id": "0" * 64, "name": "nemorun-never", "docker_host": engine.host,
                                                "experiment_id": "never", "job_dir": str(tmp / "never")})  # fmt: skip
    return Backend("docker", submitters.submitter("docker"), base, base, unknown,
                   down_env={"DOCKER_HOST": f"unix://{tmp / 'no-engine.sock'}"})  # fmt: skip


def _kubeflow(request: pytest.FixtureRequest, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    pytest.importorskip("kubernetes")
    from tests.kube_fake import FakeKube, serve

    fake = FakeKube()
    server, thread = serve(fake)
    monkeypatch.setenv("KUBECONFIG", str(fake.kubeconfig(tmp / "kubeconfig")))

    def finish(handle: Handle) -> None:
        fake.finish(handle.data["namespace"], handle.data["name"], ok=True)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join()

    unknown = Handle("kubeflow", "default/never", {"namespace": "default", "name": "never", "configmap": None, "host": fake.url})
    # the fake has no kubelet: the pods' logs are its own lines, not the command's output
    options = ["executor=kubeflow", "executor.image=busybox:1"]
    dead = FakeKube(url=f"http://127.0.0.1:{_free_port()}").kubeconfig(tmp / "dead-kubeconfig")
    return Backend("kubeflow", submitters.submitter("kubeflow"), options, options, unknown, finish, log_text="node 0 of ",
                   down_env={"KUBECONFIG": str(dead)}, cleanup=[stop])  # fmt: skip


def _dgxcloud(request: pytest.FixtureRequest, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    pytest.importorskip("requests")
    from nemorun.submitters import dgxcloud
    from tests.dgxcloud_runai_server import RunaiServer

    projects = [{"id": "4501", "name": "team-a", "clusterId": "71f69d83-ba66-4822-adf5-55ce55efd210"}]
    server = RunaiServer("nemorun-ci", "s3cr3t", projects).__enter__()
    monkeypatch.setenv("DGX_APP_SECRET", "s3cr3t")
    monkeypatch.setattr(dgxcloud, "FIRST_BACKOFF", 0.01)

    def options(url: str) -> list[str]:
        return ["executor=dgxcloud", f"executor.base_url={url}", "executor.app_id=nemorun-ci", "executor.app_secret_env=DGX_APP_SECRET",
                "executor.project_name=team-a", "executor.container_image=busybox:1"]  # fmt: skip

    def finish(handle: Handle) -> None:
        server.set_phase(handle.id, "Completed")

    unknown = Handle("dgxcloud", "never", {"base_url": server.base_url, "app_id": "nemorun-ci", "secret": {"env": "DGX_APP_SECRET"}, "kind": "trainings", "name": "never"})
    backend = Backend("dgxcloud", submitters.submitter("dgxcloud"), options(server.base_url), options(f"http://127.0.0.1:{_free_port()}/api/v1"),
                      unknown, finish, log_text=None)  # fmt: skip  # the Run:ai API serves no logs (logs() says where they are)

    def stop() -> None:
        server.__exit__(None, None, None)
        assert server.state.violations == [], "requests that break the Run:ai 2.24 contract"

    backend.cleanup.append(stop)
    return backend


def _lepton(request: pytest.FixtureRequest, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    pytest.importorskip("leptonai")
    from tests.test_lepton_submit import LOG_TEXT, PREFIX, TOKEN, FakeLepton

    server = FakeLepton()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for k, v in {"HOME": str(tmp / "lepton-home"), "LEPTON_WORKSPACE_ID": "ws1", "LEPTON_WORKSPACE_TOKEN": TOKEN, "LEPTON_WORKSPACE_URL": server.url}.items():
        monkeypatch.setenv(k, v)

    def finish(handle: Handle) -> None:
        server.jobs[handle.id]["status"]["state"] = "Completed"

    def stop() -> None:
        server.shutdown()
        server.server_close()

    options = ["executor=lepton", "executor.resource_shape=cpu.small", "executor.container_image=busybox:1", "executor.node_group=h100-pool"]
    unknown = Handle("lepton", "never-000000", {"workspace_id": "ws1", "url": server.url})
    # the fake serves a fixed log (it runs nothing)
    return Backend("lepton", submitters.submitter("lepton"), options, options, unknown, finish, log_text=LOG_TEXT.splitlines()[0],
                   down_env={"LEPTON_WORKSPACE_URL": f"http://127.0.0.1:{_free_port()}{PREFIX}"}, cleanup=[stop])  # fmt: skip


class _ClientProcess:
    """A submitter run in its own interpreter, called over pickles: ``import sky`` caches its
    server URL process-wide and writes ~/.sky, so SkyPilot clients never run inside pytest."""

    _WORKER = r"""
import os, pickle, sys, importlib
proto = os.fdopen(os.dup(1), "wb"); os.dup2(2, 1)  # SDK prints go to stderr, not into the protocol
import sky  # noqa: F401  (the slow part, once)
from nemorun.errors import NemorunError
from nemorun import submitters
pickle.dump(("ready",), proto); proto.flush()
while True:
    try:
        kind, name, args = pickle.load(sys.stdin.buffer)
    except EOFError:
        break
    try:
        fn = getattr(submitters, name) if name == "prepare" else getattr(submitters.submitter(kind), name)
        result = fn(*args)
        if hasattr(result, "__next__"):
            result = list(result)
        reply = ("ok", result)
    except NemorunError as exc:
        reply = ("error", str(exc))
    pickle.dump(reply, proto); proto.flush()
"""

    def __init__(self, kind: str, env: dict[str, str]) -> None:
        self.kind = kind
        self.proc = subprocess.Popen([sys.executable, "-c", self._WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env)  # fmt: skip
        self._ready = False

    def _call(self, name: str, *args: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if not self._ready:
            assert pickle.load(self.proc.stdout) == ("ready",)
            self._ready = True
        pickle.dump((self.kind, name, args), self.proc.stdin)
        self.proc.stdin.flush()
        reply = pickle.load(self.proc.stdout)
        if reply[0] == "error":
            raise SubmitError(reply[1])
        return reply[1]

    def prepare(self, job: Job) -> tuple[Job, Any]:
        return self._call("prepare", job)

    def submit(self, rendered: Any, job: Job) -> Handle:
        return self._call("submit", rendered, job)

    def status(self, handles: list[Handle]) -> dict[str, JobStatus]:
        return self._call("status", list(handles))

    def logs(self, handle: Handle, follow: bool = False) -> Iterator[str]:
        return iter(self._call("logs", handle, follow))

    def cancel(self, handle: Handle) -> None:
        self._call("cancel", handle)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _skypilot(request: pytest.FixtureRequest, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Backend:
    sky = request.getfixturevalue("sky_server")
    env = {k: v for k, v in os.environ.items() if k not in ("NEMORUN_DEBUG", "HYDRA_FULL_ERROR")}
    client = _ClientProcess("skypilot", {**env, **sky.env})
    unknown = Handle("skypilot", "nemorun-never/3", {"cluster": "nemorun-never", "job_id": 3})
    backend = Backend("skypilot", client, ["executor=skypilot"], ["executor=skypilot"], unknown, runs=False, cleanup=[client.close])

    def dead() -> _ClientProcess:
        proc = _ClientProcess("skypilot", {**env, **sky.env, "SKYPILOT_API_SERVER_ENDPOINT": f"http://127.0.0.1:{_free_port()}"})
        backend.cleanup.append(proc.close)
        return proc

    backend.down_module = dead
    return backend


ADAPTERS: dict[str, Callable[[pytest.FixtureRequest, Path, pytest.MonkeyPatch], Backend]] = {
    "local": _local, "slurm": _slurm, "docker": _docker, "kubeflow": _kubeflow,
    "dgxcloud": _dgxcloud, "lepton": _lepton, "skypilot": _skypilot,
}  # fmt: skip


def test_every_backend_has_an_adapter() -> None:
    assert set(ADAPTERS) == set(KINDS)


# the real services' markers: they also put these cases in their service's xdist group (tests/conftest.py)
SERVICE_MARKS = {"slurm": pytest.mark.slurm, "docker": pytest.mark.docker, "skypilot": pytest.mark.skypilot}


@pytest.fixture(params=[pytest.param(k, marks=SERVICE_MARKS.get(k, ())) for k in KINDS])
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    monkeypatch.setenv("NEMORUN_HOME", str(tmp_path / "home"))
    b = ADAPTERS[request.param](request, tmp_path, monkeypatch)
    try:
        yield b
    finally:
        for fn in reversed(b.cleanup):
            fn()


def _job(b: Backend, tmp_path: Path, inline: str = f"echo {MARKER}", overrides: Optional[list[str]] = None) -> Job:
    return _compile([*(b.overrides if overrides is None else overrides), "task=hello", f"task.inline='{inline}'"], tmp_path)


# ---------------------------------------------------------------- the contract
def test_a_short_job_succeeds_and_its_logs_carry_its_output(backend: Backend, tmp_path: Path) -> None:
    if not backend.runs:
        with pytest.raises(SubmitError) as err:
            _send(_job(backend, tmp_path), backend.module)
        assert "\n" not in str(err.value).strip()
        return
    handle = _send(_job(backend, tmp_path), backend.module)
    assert isinstance(handle, Handle) and handle.backend == backend.kind
    status = _wait_terminal(backend.module, handle, backend.finish)
    assert status.state is AppState.SUCCEEDED, status
    text = "".join(backend.module.logs(handle))
    if backend.log_text is not None:
        assert backend.log_text in text
    else:
        assert handle.id in text  # it says where the logs are


def test_status_of_a_handle_never_issued_is_unknown_or_terminal(backend: Backend) -> None:
    status = backend.module.status([backend.unknown])[backend.unknown.id]
    assert status.state is AppState.UNKNOWN or status.state.is_terminal, status


def test_cancel_is_idempotent(backend: Backend, tmp_path: Path) -> None:
    backend.module.cancel(backend.unknown)
    backend.module.cancel(backend.unknown)
    if not backend.runs:
        return
    running = _send(_job(backend, tmp_path, "sleep 60"), backend.module)
    backend.module.cancel(running)
    backend.module.cancel(running)
    assert backend.module.status([running])[running.id].state is not AppState.SUCCEEDED
    done = _send(_job(backend, tmp_path), backend.module)
    assert _wait_terminal(backend.module, done, backend.finish).state is AppState.SUCCEEDED
    backend.module.cancel(done)  # some backends remove a finished job (kubeflow, lepton), none fail
    backend.module.cancel(done)
    after = backend.module.status([done])[done.id].state
    assert after.is_terminal or after is AppState.UNKNOWN


def test_backend_down_is_one_line(backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in backend.down_env.items():
        monkeypatch.setenv(k, v)
    module = backend.down_module() if backend.down_module else backend.module
    with pytest.raises(backend.down_error) as err:
        _send(_job(backend, tmp_path, overrides=backend.down), module)
    message = str(err.value)
    assert message and "\n" not in message.strip(), message
