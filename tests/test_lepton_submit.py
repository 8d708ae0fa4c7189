"""Lepton target and submitter against a local Lepton API server.

No Lepton workspace can be reached from here. ``FakeLepton`` is an HTTP server on 127.0.0.1 that
answers the endpoints the leptonai 0.47.1 SDK calls (``/dedicated-node-groups``, ``/jobs``,
``/jobs/{id}``, ``/jobs/{id}/replicas``, ``/jobs/{id}/replicas/{r}/log``) in the shapes of its
pydantic models, requires the bearer token, and ENFORCES the job contract: every ``POST /jobs``
body is checked with ``tests.contracts.lepton_job_errors`` (the strict LeptonJob schema plus the
SDK's client-side rules) and refused with 400 and the service's error shape when it fails.
It also enforces the platform's size limits, as Lepton (Kubernetes under it) would meet them:
a body over :data:`MAX_OBJECT_BYTES` (etcd's default ``--max-request-bytes``, 1.5 MiB: every
Kubernetes object is stored through one etcd request) is refused with 413; a job whose container
command argument or ``NAME=value`` environment string is longer than Linux's ``MAX_ARG_STRLEN``
(32 pages = 131072 bytes with its NUL; include/uapi/linux/binfmts.h) is accepted, as the service
does, and then FAILS with E2BIG ("argument list too long") when its replicas start.
The real SDK (``APIClient``) and the real CLI talk to it; nothing of the SDK is mocked.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import pytest

from tests.conftest import ROOT
from tests.contracts import lepton_job_errors
from tests.golden_cases import CASES
from tests.helpers import git, run_cli

pytest.importorskip("leptonai")

TOKEN = "lepton-token-s3cr3t-value"
HF_SECRET_VALUE = "hf_s3cr3t_value_never_written"
PREFIX = "/api/v2/workspaces/ws1"
LOG_TEXT = "step 1 loss 0.5\nstep 2 loss 0.25\n"
MAX_OBJECT_BYTES = 3 * 512 * 1024  # etcd --max-request-bytes default (1.5 MiB)
MAX_ARG_STRLEN = 32 * 4096  # include/uapi/linux/binfmts.h, the terminating NUL included


def exec_refusal(body: dict[str, Any]) -> str | None:
    """What the replica's container start would fail with (E2BIG), or None."""
    container = body["spec"].get("container") or {}
    strings = [str(a) for a in container.get("command") or []]
    strings += [f"{e['name']}={e.get('value', '')}" for e in body["spec"].get("envs") or [] if "value" in e]
    too_long = [len(a.encode()) + 1 for a in strings if len(a.encode()) + 1 > MAX_ARG_STRLEN]
    return f"exec: argument list too long (E2BIG): a {too_long[0]}-byte string > MAX_ARG_STRLEN" if too_long else None


class FakeLepton(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.node_groups = [{"metadata": {"id": "ng-h100-7f3a", "name": "h100-pool"}, "spec": {}, "status": {}}]
        self.fail_next: list[tuple[int, dict[str, str]]] = []  # scripted (status, headers) replies
        self.requests: list[tuple[str, str]] = []
        self.bodies: list[Any] = []
        self.start_errors: dict[str, str] = {}  # job id -> why its replicas could not start

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{PREFIX}"


class Handler(BaseHTTPRequestHandler):
    server: FakeLepton

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json" if not isinstance(body, str) else "text/plain")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> None:
        path = urlparse(self.path).path
        self.server.requests.append((method, path))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._reply(401, {"code": "Unauthorized", "message": "invalid or expired workspace token"})
        if self.server.fail_next:
            code, headers = self.server.fail_next.pop(0)
            return self._reply(code, {"code": "TooManyRequests", "message": "rate limited, retry later"}, headers)
        if not path.startswith(PREFIX):
            return self._reply(404, {"code": "NotFound", "message": f"no route {path}"})
        parts = path[len(PREFIX):].strip("/").split("/")
        if method == "GET" and parts == ["dedicated-node-groups"]:
            return self._reply(200, self.server.node_groups)
        if method == "POST" and parts == ["jobs"]:
            if len(raw) > MAX_OBJECT_BYTES:
                return self._reply(413, {"code": "RequestEntityTooLarge", "message": f"request is {len(raw)} bytes, over {MAX_OBJECT_BYTES}"})
            body = json.loads(raw)
            self.server.bodies.append(body)
            errors = lepton_job_errors(body)
            if errors:
                return self._reply(400, {"code": "InvalidArgument", "message": "; ".join(errors)})
            job_id = body["metadata"]["id"]
            if job_id in self.server.jobs:
                return self._reply(409, {"code": "AlreadyExists", "message": f"job {job_id} already exists"})
            refusal = exec_refusal(body)
            job = {**body, "status": {"state": "Failed" if refusal else "Running", "job_name": job_id}}
            if refusal:
                self.server.start_errors[job_id] = refusal
            self.server.jobs[job_id] = job
            return self._reply(200, job)
        if len(parts) >= 2 and parts[0] == "jobs":
            job = self.server.jobs.get(parts[1])
            if job is None:
                return self._reply(404, {"code": "NotFound", "message": f"job {parts[1]} not found"})
            if method == "GET" and len(parts) == 2:
                return self._reply(200, job)
            if method == "DELETE" and len(parts) == 2:
                del self.server.jobs[parts[1]]
                return self._reply(200, {})
            if method == "GET" and parts[2:] == ["replicas"]:
                return self._reply(200, [{"metadata": {"id": f"{parts[1]}-0"}, "id": f"{parts[1]}-0"}])
            if method == "GET" and len(parts) == 5 and parts[2] == "replicas" and parts[4] == "log":
                return self._reply(200, self.server.start_errors.get(parts[1], LOG_TEXT))
        return self._reply(404, {"code": "NotFound", "message": f"no route {method} {path}"})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_DELETE(self) -> None:
        self._route("DELETE")


@pytest.fixture
def lepton() -> Iterator[FakeLepton]:
    server = FakeLepton()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def lepton_env(cli_env: dict[str, str], lepton: FakeLepton, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"HOME": str(tmp_path / "home"), "LEPTON_WORKSPACE_ID": "ws1", "LEPTON_WORKSPACE_TOKEN": TOKEN,
              "LEPTON_WORKSPACE_URL": lepton.url, "HF_TOKEN": HF_SECRET_VALUE}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return {**cli_env, **values}


LEPTON_ARGS = CASES["lepton_train_torchrun"]


def _records(home: Path) -> list[Path]:
    return sorted(home.glob("experiments/*/*/jobs/*/record.json"))


@pytest.mark.parametrize("case", sorted(c for c in CASES if c.startswith("lepton_")))
def test_golden_is_a_valid_job_body_the_sdk_sends_unchanged(case: str) -> None:
    from leptonai.api.v2.job_validation import validate_job_create
    from leptonai.api.v2.types.job import LeptonJob

    text = (ROOT / "golden" / case / "job.json").read_text()
    body = json.loads(text)
    assert lepton_job_errors(body) == []
    model = LeptonJob.model_validate(body)
    validate_job_create(model)
    assert json.dumps(model.model_dump(exclude_none=True, by_alias=True), indent=2) + "\n" == text


def test_full_flow_status_logs_cancel(lepton: FakeLepton, lepton_env: dict[str, str], nemorun_home: Path) -> None:
    proc = run_cli(LEPTON_ARGS, env=lepton_env)
    assert proc.returncode == 0, proc.stderr
    [rec_path] = _records(nemorun_home)
    rec = json.loads(rec_path.read_text())
    assert rec["phase"] == "submitted"
    [sent] = lepton.bodies
    recorded = json.loads((rec_path.parent / "job.json").read_text())
    assert sent == recorded, "the record must hold exactly what was sent"
    assert recorded["spec"]["affinity"]["allowed_dedicated_node_groups"] == ["ng-h100-7f3a"]
    assert ("GET", f"{PREFIX}/dedicated-node-groups") in lepton.requests

    from nemorun.states import AppState, Handle
    from nemorun.submitters import lepton as sub

    handle = Handle.from_dict(rec["handle"])
    assert handle.data == {"workspace_id": "ws1", "url": lepton.url}
    assert sub.status([handle])[handle.id].state is AppState.RUNNING
    assert "".join(sub.logs(handle)) == LOG_TEXT
    sub.cancel(handle)
    assert handle.id not in lepton.jobs
    sub.cancel(handle)  # idempotent: 404 means already gone
    assert sub.status([handle])[handle.id].state is AppState.UNKNOWN

    written = [p for p in nemorun_home.rglob("*") if p.is_file()]
    assert written
    for p in written:
        text = p.read_text(errors="replace")
        assert TOKEN not in text and HF_SECRET_VALUE not in text, p
    assert "hf-token" in (rec_path.parent / "job.json").read_text()  # the reference, not the value


def test_429_is_retried(lepton: FakeLepton, lepton_env: dict[str, str], nemorun_home: Path) -> None:
    lepton.fail_next = [(429, {"Retry-After": "0"}), (429, {"Retry-After": "0"})]
    proc = run_cli([*LEPTON_ARGS, "executor.node_group_id=ng-h100-7f3a"], env=lepton_env)
    assert proc.returncode == 0, proc.stderr
    assert [m for m, p in lepton.requests if p.endswith("/jobs")] == ["POST"] * 3
    assert len(lepton.jobs) == 1


def test_auth_failure_is_one_line(lepton: FakeLepton, lepton_env: dict[str, str], nemorun_home: Path) -> None:
    env = {**lepton_env, "LEPTON_WORKSPACE_TOKEN": "wrong-token"}
    proc = run_cli(LEPTON_ARGS, env=env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "authentication failed (401)" in lines[0] and "invalid or expired workspace token" in lines[0]
    assert lepton.url in lines[0] and "wrong-token" not in proc.stderr
    assert json.loads(_records(nemorun_home)[0].read_text())["phase"] == "failed-to-submit"


def test_service_4xx_message_and_contract_refusal(lepton: FakeLepton, lepton_env: dict[str, str], nemorun_home: Path) -> None:
    """A 409 from the service reaches the user as one line with its message; the server's contract
    check refuses a body the strict schema rejects (this one is forged, not rendered)."""
    assert run_cli(LEPTON_ARGS, env=lepton_env).returncode == 0
    job_id = next(iter(lepton.jobs))
    from nemorun.errors import SubmitError
    from nemorun.submitters.lepton import _call, _client

    client = _client()
    from leptonai.api.v2.types.job import LeptonJob

    existing = LeptonJob.model_validate(lepton.bodies[0])
    with pytest.raises(SubmitError, match=f"refused job {job_id} \\(409\\): job {job_id} already exists"):
        _call(f"job {job_id}", client, client.job.create, existing)
    forged = {**lepton.bodies[0], "spec": {**lepton.bodies[0]["spec"], "resourceShape": "typo"}}
    reply = client._post("/jobs", json=forged)
    assert reply.status_code == 400 and "resourceShape" in reply.json()["message"]


def test_unknown_node_group_lists_the_available_ones(lepton: FakeLepton, lepton_env: dict[str, str]) -> None:
    proc = run_cli([*LEPTON_ARGS, "executor.node_group=a100-pool"], env=lepton_env)
    assert proc.returncode == 1
    assert "no node group 'a100-pool'; available: h100-pool (ng-h100-7f3a)" in proc.stderr
    assert lepton.bodies == []


@pytest.mark.parametrize(
    "override, expected",
    [
        ("executor.priority=urgent", "is not a Lepton priority class"),
        ("executor.mounts=[{mount_path: /usr}]", "Lepton does not reserve"),
        ("+executor.env_vars.X={secrett: y}", "must be {secret: <secret name>}"),
        ("executor.nodes=0", "nodes must be >= 1"),
    ],
)
def test_config_mistakes_are_one_line(override: str, expected: str, cli_env: dict[str, str]) -> None:
    proc = run_cli([*LEPTON_ARGS, "dryrun=true", override], env=cli_env)
    assert proc.returncode == 2, proc.stderr
    assert expected in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_dry_run_marks_the_unresolved_node_group(cli_env: dict[str, str]) -> None:
    proc = run_cli([*LEPTON_ARGS, "dryrun=true"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "<looked up at submission: node group h100-pool>" in proc.stdout
    assert "resolved to its id at submission" in proc.stdout


def test_resolve_then_render_once_and_submit_sends_exactly_those_bytes(lepton: FakeLepton, lepton_env: dict[str, str], tmp_path: Path) -> None:
    """The executor's order through ``prepare``: the node group id is looked up BEFORE rendering;
    ``submit`` sends the rendered body unchanged and writes nothing itself."""
    from nemorun.errors import SubmitError
    from nemorun.lower import Site, check_config, compile_job
    from nemorun.submitters import lepton as sub
    from nemorun.submitters import prepare
    from nemorun.targets import lepton as target
    from tests.helpers import compose_config

    cfg = compose_config(LEPTON_ARGS)
    check_config(cfg)
    job = compile_job(cfg, Site(experiment_id="exp-direct", submit_dir=str(tmp_path), home=str(tmp_path / "home-run")))
    with pytest.raises(SubmitError, match="still holds a node group placeholder") as err:
        sub.submit(target.render(job), job)  # the dry-run rendering
    assert "\n" not in str(err.value) and lepton.requests == []

    resolved, rendered = prepare(job)
    assert resolved.executor.node_group_id == "ng-h100-7f3a"
    assert lepton.requests == [("GET", f"{PREFIX}/dedicated-node-groups")]
    handle = sub.submit(rendered, resolved)
    assert lepton.bodies == [json.loads(rendered.artifacts[target.ARTIFACT])]
    assert handle.id == lepton.bodies[0]["metadata"]["id"]
    assert not Path(job.job_dir).exists(), "submit must not write the record"


# --- size limits: refused before anything is sent, and enforced by the contract server ---------

def test_the_one_argument_limit_is_the_kernels(tmp_path: Path) -> None:
    """The limit nemorun checks is what this kernel's execve really does: a ``bash -c`` script of
    MAX_SCRIPT_BYTES runs; one byte more is refused with E2BIG (what a replica would meet)."""
    from nemorun.targets.lepton import MAX_SCRIPT_BYTES

    assert MAX_SCRIPT_BYTES == MAX_ARG_STRLEN - 1
    ok = subprocess.run(["/bin/bash", "-c", "#" + "x" * (MAX_SCRIPT_BYTES - 1)], capture_output=True)
    assert ok.returncode == 0
    with pytest.raises(OSError) as err:
        subprocess.run(["/bin/bash", "-c", "#" + "x" * MAX_SCRIPT_BYTES], capture_output=True)
    assert err.value.errno == errno.E2BIG


@pytest.fixture
def code_repo(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "big.bin").write_bytes(os.urandom(120_000))  # incompressible: ~160 KB of base64
    (root / "small.bin").write_bytes(os.urandom(90_000))  # ~120 KB of base64: fits, near the limit
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def _code_args(pattern: str) -> list[str]:
    return ["executor=lepton", "task=hello", "executor.resource_shape=cpu.small", "executor.container_image=python:3.11-slim",
            "executor.node_group=h100-pool", "packager=pattern", f"packager.include_pattern={pattern}"]  # fmt: skip


def test_code_archive_over_the_limit_is_refused_before_anything_is_sent(
        code_repo: Path, lepton: FakeLepton, lepton_env: dict[str, str], nemorun_home: Path) -> None:  # fmt: skip
    proc = run_cli(_code_args("big.bin"), env=lepton_env, cwd=str(code_repo))
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("nemorun: error: "), proc.stderr
    assert "with the code archive (" in lines[0] and "over the 131071 Linux allows for one argument (MAX_ARG_STRLEN)" in lines[0]
    assert "put the code in the image or on executor.mounts and use packager=none" in lines[0]
    assert lepton.requests == [] and _records(nemorun_home) == []  # nothing asked, sent or recorded


def test_code_archive_that_fits_is_sent_and_the_job_starts(
        code_repo: Path, lepton: FakeLepton, lepton_env: dict[str, str], nemorun_home: Path) -> None:  # fmt: skip
    proc = run_cli(_code_args("small.bin"), env=lepton_env, cwd=str(code_repo))
    assert proc.returncode == 0, proc.stderr
    [body] = lepton.bodies
    assert 100_000 < len(body["spec"]["container"]["command"][2]) < MAX_ARG_STRLEN
    assert [job["status"]["state"] for job in lepton.jobs.values()] == ["Running"] and lepton.start_errors == {}


def test_contract_server_fails_what_linux_and_etcd_refuse(lepton: FakeLepton, lepton_env: dict[str, str]) -> None:
    """The server's own limits (a body forged past nemorun's checks): an over-long command argument
    is accepted and the job then FAILS to start with E2BIG, as on Lepton; an over-large body is 413."""
    from nemorun.states import AppState, Handle
    from nemorun.submitters import lepton as sub

    body = json.loads((ROOT / "golden" / "lepton_hello" / "job.json").read_text())
    body["metadata"]["id"] = "too-long-1"
    body["spec"]["container"]["command"] = ["/bin/bash", "-c", "#" + "x" * MAX_ARG_STRLEN]
    client = sub._client()
    assert client._post("/jobs", json=body).status_code == 200
    handle = Handle(backend="lepton", id="too-long-1", data={"workspace_id": "ws1", "url": lepton.url})
    assert sub.status([handle])[handle.id].state is AppState.FAILED
    assert "argument list too long (E2BIG)" in "".join(sub.logs(handle))
    body["metadata"]["id"] = "too-big-1"
    body["spec"]["container"]["command"] = ["/bin/bash", "-c", "true"]
    body["spec"]["envs"] = [{"name": f"V{i}", "value": "x" * 100_000} for i in range(16)]
    reply = client._post("/jobs", json=body)
    assert reply.status_code == 413 and "too-big-1" not in lepton.jobs


def _render_lepton(*extra: str) -> None:
    from nemorun.lower import check_config, compile_job
    from nemorun.plan import render_job
    from tests.helpers import PINNED_SITE, compose_config

    cfg = compose_config([*CASES["lepton_hello"], *extra])
    check_config(cfg)
    render_job(compile_job(cfg, PINNED_SITE))


def test_environment_string_over_the_limit_is_one_line() -> None:
    """(In process: a command line holding such a value is itself over the limit for nemorun's argv.)"""
    from nemorun.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        _render_lepton(f"+executor.env_vars.BIG={'x' * 131_100}")
    assert "\n" not in str(err.value)
    assert "environment variable BIG is 131104 bytes (NAME=value), over the 131071 Linux allows" in str(err.value)


def test_body_over_the_object_limit_is_refused_at_render() -> None:
    """Many env values, each under the one-string limit, together over what nemorun sends."""
    from nemorun.errors import ConfigError

    with pytest.raises(ConfigError, match=r"the Lepton job body \(job.json\) is 11\d{5} bytes, over the 1048576 nemorun sends"):
        _render_lepton(*(f"+executor.env_vars.V{i}={'x' * 100_000}" for i in range(11)))


def test_sweep_refused_at_its_third_job_sends_none(lepton: FakeLepton, lepton_env: dict[str, str], nemorun_home: Path) -> None:
    """Every job of a sweep is resolved (node group looked up) before the first is sent: the third
    job's unknown group stops the launch with no job created in the workspace."""
    args = [a for a in LEPTON_ARGS if not a.startswith("executor.node_group=")]
    proc = run_cli(["-m", *args, "executor.node_group=h100-pool,h100-pool,a100-pool"], env=lepton_env)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "no node group 'a100-pool'" in lines[0] and "no job of this launch was sent" in lines[0]
    assert lepton.bodies == [] and lepton.jobs == {}
    phases = sorted(json.loads(p.read_text())["phase"] for p in _records(nemorun_home))
    assert phases == ["failed-to-submit", "rendered", "rendered"]


def test_node_groups_are_listed_once_per_launch(lepton: FakeLepton, lepton_env: dict[str, str], nemorun_home: Path) -> None:
    """Every job of a sweep is resolved before the first is sent: the workspace's node groups are
    listed ONCE for the launch (was once per job), and every job is sent with the group's id; the
    next launch lists them again (groups come and go)."""
    listings = lambda: lepton.requests.count(("GET", f"{PREFIX}/dedicated-node-groups"))  # noqa: E731
    proc = run_cli(["-m", *LEPTON_ARGS, "executor.env_vars.SEED=1,2,3,4"], env=lepton_env)
    assert proc.returncode == 0, proc.stderr
    assert len(lepton.bodies) == 4 and listings() == 1
    assert {tuple(b["spec"]["affinity"]["allowed_dedicated_node_groups"]) for b in lepton.bodies} == {("ng-h100-7f3a",)}
    again = run_cli(LEPTON_ARGS, env=lepton_env)
    assert again.returncode == 0, again.stderr
    assert len(lepton.bodies) == 5 and listings() == 2
