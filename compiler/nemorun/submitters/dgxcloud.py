"""Backend ``dgxcloud``: the Run:ai REST API (control plane 2.24) with ``requests`` (imported lazily).

Flow: :func:`resolve` (before rendering): ``POST /token`` (client credentials) → ``GET
/org-unit/projects`` (project and cluster id by name); then :func:`submit`: ``POST
/workloads/{trainings|distributed}`` with the recorded ``workload.json`` bytes → ``GET`` for
status → ``POST .../suspend`` to cancel (``DELETE`` with ``delete=True``).

The app secret is resolved here, at the moment a request needs it, from the reference in the
config (an interpolation, an env var name or a file path); handles and records keep only the
reference. The value, and every access token the service issues, is registered with
:mod:`nemorun.secrets` the moment it is held, so no message, record or stderr line carries it in
any encoding the service may echo it in.

Token request: the spec's ``TokenRequest`` names the field ``clientID``; Run:ai's docs write
``clientId``, which the service accepts only because its JSON decoding ignores case. We send
``clientID``: what the spec (and a strict validator) accepts.

Code on the PVC: with ``pvc_nemo_run_dir``, :func:`submit` first checks that this pod mounts the
PVC (the folder exists here), unpacks the archive into the job's ``code`` folder (skipped when
the digest recorded there matches; a private folder renamed into place, so a crash never leaves
half an archive that counts) and writes the render's other artifacts into the job folder.

Crash recovery: :func:`find` asks ``GET /workloads`` for the name nemorun gave the workload
(``filterBy=name=^<name>``: Run:ai appends random characters to it), in the job's project.

Robustness: 429 and 5xx are retried with exponential backoff, honouring ``Retry-After``; a 401
on a call refreshes the token once; every failure is ONE line naming the host, the call and
the service's own message.
"""
from __future__ import annotations

import email.utils
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence
from urllib.parse import urlsplit

from nemorun import secrets
from nemorun.archives import extract_beside
from nemorun.errors import ConfigError, SubmitError, one_line
from nemorun.ir import Job, Rendered
from nemorun.states import AppState, Handle, JobStatus
from nemorun.submitters.base import SubmitterFeatures
from nemorun.schemas.dgxcloud import pvc_of
from nemorun.targets import dgxcloud as target

FEATURES = SubmitterFeatures(resolve=True, find=True)
# the digest of the code unpacked in a job's code folder (inside it, written before the rename)
CODE_MARKER = ".nemorun-sha256"

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_ATTEMPTS = 5
# seconds: cap of one wait (Retry-After or backoff), and the first backoff step
MAX_WAIT, FIRST_BACKOFF = 30.0, 0.5
# seconds: connect and read timeouts of one HTTP call
TIMEOUT = (10.0, 60.0)

# Run:ai ``Phase`` → AppState. Stopped/Stopping is a suspended workload: what cancel does.
PHASES: Mapping[str, AppState] = {
    "Creating": AppState.PENDING,
    "Initializing": AppState.PENDING,
    "Resuming": AppState.PENDING,
    "Pending": AppState.PENDING,
    "Running": AppState.RUNNING,
    "Updating": AppState.RUNNING,
    "Degraded": AppState.RUNNING,
    "Completed": AppState.SUCCEEDED,
    "Failed": AppState.FAILED,
    "Stopping": AppState.CANCELLED,
    "Stopped": AppState.CANCELLED,
    "Deleting": AppState.CANCELLED,
    "Terminating": AppState.CANCELLED,
    "Unknown": AppState.UNKNOWN,
}
# phases in which there is nothing left to suspend
_SETTLED = frozenset({"Completed", "Failed", "Stopping", "Stopped", "Deleting", "Terminating"})


def secret_ref(executor: Any) -> dict[str, str]:
    """Where the secret is, never what it is: ``{"interpolation"|"env"|"file": text}``."""
    if executor.app_secret_env:
        return {"env": str(executor.app_secret_env)}
    if executor.app_secret_file:
        return {"file": str(executor.app_secret_file)}
    return {"interpolation": str(executor.app_secret)}


def resolve_secret(ref: Mapping[str, str]) -> str:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if "env" in ref:
        value = os.environ.get(ref["env"])
        if not value:
            raise SubmitError(f"the DGX Cloud app secret: environment variable {ref['env']} is not set")
        secrets.register(value)
        return value
    if "file" in ref:
        path = Path(ref["file"]).expanduser()
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise SubmitError(f"the DGX Cloud app secret: cannot read {path}: {exc.strerror}") from None
        secrets.register(value)
        return value
    try:
        value = str(OmegaConf.create({"secret": ref["interpolation"]}).secret)
    except OmegaConfBaseException as exc:
        # the message names the interpolation's inputs (e.g. the variable), never a value
        raise SubmitError(f"the DGX Cloud app secret {ref['interpolation']} cannot be resolved: {one_line(str(exc).splitlines()[0])}") from None
    secrets.register(value)
    return value


@dataclass(frozen=True)
class Endpoint:
    """All a later process needs to reach the API again (stored in handles; no secret value)."""

    base_url: str
    app_id: str
    secret: Mapping[str, str]

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc or self.base_url

    def to_dict(self) -> dict[str, Any]:
        return {"base_url": self.base_url, "app_id": self.app_id, "secret": dict(self.secret)}

    @classmethod
    def of(cls, executor: Any) -> "Endpoint":
        return cls(str(executor.base_url).rstrip("/"), str(executor.app_id), secret_ref(executor))

    @classmethod
    def from_handle(cls, handle: Handle) -> "Endpoint":
        d = handle.data
        return cls(str(d["base_url"]), str(d["app_id"]), dict(d["secret"]))


def _service_message(resp: Any) -> str:
    try:
        data = resp.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("message"):
        details = f" ({data['details']})" if data.get("details") else ""
        return one_line(f"{data['message']}{details}")
    text = one_line(resp.text or "")[:300]
    return text or (resp.reason or "no message")


def _retry_after(resp: Any, attempt: int) -> float:
    header = resp.headers.get("Retry-After") if resp is not None else None
    if header:
        try:
            wait = float(header)
        except ValueError:
            try:
                wait = email.utils.parsedate_to_datetime(header).timestamp() - time.time()
            except (TypeError, ValueError):
                wait = FIRST_BACKOFF * 2**attempt
        return min(max(wait, 0.0), MAX_WAIT)
    return min(FIRST_BACKOFF * 2**attempt, MAX_WAIT)


@dataclass
class Client:
    """One authenticated session against one Run:ai tenant."""

    endpoint: Endpoint
    sleep: Callable[[float], None] = time.sleep
    _token: Optional[str] = None
    _secret: Optional[str] = None
    _session: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        import requests

        self._session = requests.Session()
        self._session.headers.update({"Accept": "application/json", "Content-Type": "application/json"})

    def fail(self, message: str) -> SubmitError:
        # one_line scrubs the app secret and the tokens (registered when they were obtained)
        return SubmitError(f"DGX Cloud {self.endpoint.host}: {one_line(message)}")

    def _send(self, method: str, path: str, body: Optional[bytes], params: Optional[Mapping[str, str]], auth: bool) -> Any:
        """One call with retries on 429/5xx (and on connection errors when repeating is safe)."""
        import requests

        url = self.endpoint.base_url + path
        safe_to_repeat = method != "POST" or path == "/token"
        for attempt in range(MAX_ATTEMPTS):
            headers = {"Authorization": f"Bearer {self._token}"} if auth else {}
            try:
                resp = self._session.request(method, url, data=body, params=params, headers=headers, timeout=TIMEOUT)
            except requests.RequestException as exc:
                if not safe_to_repeat or attempt == MAX_ATTEMPTS - 1:
                    raise self.fail(f"{method} {path}: unreachable: {type(exc).__name__}: {exc}") from None
                self.sleep(_retry_after(None, attempt))
                continue
            if resp.status_code in RETRY_STATUSES and attempt < MAX_ATTEMPTS - 1:
                self.sleep(_retry_after(resp, attempt))
                continue
            return resp
        raise AssertionError("unreachable")  # the loop returns or raises on its last attempt

    def authenticate(self) -> None:
        if self._secret is None:
            self._secret = resolve_secret(self.endpoint.secret)
        body = json.dumps({"grantType": "client_credentials", "clientID": self.endpoint.app_id, "clientSecret": self._secret})
        resp = self._send("POST", "/token", body.encode(), None, auth=False)
        token = None
        if resp.ok:
            try:
                token = resp.json().get("accessToken")
            except ValueError:
                pass
        if not token:
            raise self.fail(f"authentication of app '{self.endpoint.app_id}' failed: HTTP {resp.status_code}: {_service_message(resp)}")
        self._token = str(token)
        secrets.register(self._token)

    def call(self, method: str, path: str, body: Optional[bytes] = None, params: Optional[Mapping[str, str]] = None, ok_404: bool = False) -> Any:
        """An authenticated call; returns the response (or None for a tolerated 404)."""
        if self._token is None:
            self.authenticate()
        resp = self._send(method, path, body, params, auth=True)
        if resp.status_code == 401:  # expired or revoked: one fresh token, one more try
            self.authenticate()
            resp = self._send(method, path, body, params, auth=True)
        if resp.status_code == 404 and ok_404:
            return None
        if not resp.ok:
            raise self.fail(f"{method} {path}: HTTP {resp.status_code}: {_service_message(resp)}")
        return resp

    def project_ids(self, project_name: str) -> tuple[str, str]:
        resp = self.call("GET", "/org-unit/projects", params={"filterBy": f"name=={project_name}"})
        for project in resp.json().get("projects", []):
            if project.get("name") == project_name:
                return str(project["id"]), str(project["clusterId"])
        raise self.fail(f"no project named '{project_name}' is visible to app '{self.endpoint.app_id}'")


def resolve(job: Job) -> Job:
    """The job with ``project_id``/``cluster_id`` looked up by ``project_name`` (one token and one
    ``GET /org-unit/projects``), so the rendered request carries the real ids; a job that names
    its ids already is returned as it is. Also refuses, before any job of the launch is sent,
    what :func:`submit` could not get past: the PVC folder missing here, the app secret unset."""
    ex = job.executor
    _check_pvc_dir(job)
    if ex.project_id and ex.cluster_id:
        resolve_secret(secret_ref(ex))
        return job
    project_id, cluster_id = Client(Endpoint.of(ex)).project_ids(ex.project_name)
    return target.with_ids(job, project_id, cluster_id)


def place_files(rendered: Rendered, job: Job) -> Optional[dict[str, Any]]:
    """Put the job's folder on the PVC in place before the workload exists: the code unpacked
    into ``code/`` and the render's other artifacts beside it. None without ``pvc_nemo_run_dir``."""
    folder = target.pvc_job_dir(job)
    if folder is None:
        return None
    _check_pvc_dir(job)  # resolve checked it; gone since
    try:
        os.makedirs(folder, exist_ok=True)
        for name, text in rendered.artifacts.items():
            if name != target.ARTIFACT:
                _write_atomic(os.path.join(folder, name), text.encode())
        unpacked = unpack_code(job) if job.package.archive else None
    except OSError as exc:
        raise SubmitError(f"cannot write the job folder {folder} on the PVC: {exc.strerror or exc}") from None
    return {"job_dir": folder, **({"code": unpacked} if unpacked else {})}


def _check_pvc_dir(job: Job) -> None:
    """``pvc_nemo_run_dir`` must be a writable folder here: the job's files are put there before
    the workload is created, from a pod that mounts the PVC at the same path."""
    base = job.executor.pvc_nemo_run_dir
    if not base:
        return
    pvc = pvc_of(job.executor)
    mount = f"PVC {pvc.claim_name if pvc else '?'} at {pvc.path if pvc else base}"
    if not os.path.isdir(str(base)):
        raise ConfigError(f"executor.pvc_nemo_run_dir {base} does not exist here: nemorun is not running inside a pod that "
                          f"mounts {mount}; launch from such a pod")  # fmt: skip
    if not os.access(str(base), os.W_OK | os.X_OK):
        raise ConfigError(f"executor.pvc_nemo_run_dir {base} is not writable here: launch from a pod that mounts {mount} read-write")


def _write_atomic(path: str, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def unpack_code(job: Job) -> dict[str, Any]:
    """Unpack the archive into the job's code folder unless it already holds this digest."""
    code, sha = str(target.code_dir(job)), str(job.package.sha256)
    marker = os.path.join(code, CODE_MARKER)
    if os.path.isfile(marker) and Path(marker).read_text().strip() == sha:
        return {"dir": code, "sha256": sha, "unpacked": False}
    tmp = extract_beside(str(job.package.archive), Path(code))
    try:
        Path(tmp, CODE_MARKER).write_text(sha + "\n")
        os.chmod(tmp, 0o755)
        if os.path.isdir(code):  # other code, or an older nemorun's unmarked unpack: replaced whole
            shutil.rmtree(code)
        os.replace(tmp, code)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"dir": code, "sha256": sha, "unpacked": True}


def submit(rendered: Rendered, job: Job) -> Handle:
    """Place the job's files on the PVC (:func:`place_files`), then POST the recorded
    ``workload.json`` bytes as they are; a body still holding placeholder ids (rendered without
    :func:`resolve`, as a dry run does) is refused before anything is written or sent."""
    text = rendered.artifacts[target.ARTIFACT]
    request = json.loads(text)
    if target.has_placeholders(request):
        raise SubmitError(f"{target.ARTIFACT} still holds placeholder ids: it was rendered without looking them up (resolve)")
    placed = place_files(rendered, job)
    client = Client(Endpoint.of(job.executor))
    kind = target.workload_kind(job.executor.nodes)
    data = client.call("POST", f"/workloads/{kind}", text.encode()).json()
    workload_id = str(data.get("workloadId") or "")
    if not workload_id:
        raise client.fail(f"POST /workloads/{kind}: the reply has no workloadId")
    return _handle(client, kind, workload_id, str(data.get("name") or request["name"]), str(request["projectId"]),
                   str(request["clusterId"]), placed)  # fmt: skip


def _handle(client: Client, kind: str, workload_id: str, name: str, project_id: str, cluster_id: str,
            placed: Optional[dict[str, Any]]) -> Handle:  # fmt: skip
    data: dict[str, Any] = {**client.endpoint.to_dict(), "kind": kind, "name": name, "project_id": project_id, "cluster_id": cluster_id}
    if placed:
        data["pvc"] = placed
    return Handle(backend="dgxcloud", id=workload_id, data=data)


def find(job: Job) -> Optional[Handle]:
    """The workload a crashed launch may have created. nemorun names it (:func:`target.workload_name`:
    unique per experiment and job) and Run:ai appends random characters, so ``GET /workloads``
    with ``filterBy=name=^<name>`` lists it; the project (and cluster) must be the job's too."""
    ex = job.executor
    client = Client(Endpoint.of(ex))
    name = target.workload_name(job)
    resp = client.call("GET", "/workloads", params={"filterBy": f"name=^{name}", "limit": "500"})
    found = [w for w in resp.json().get("workloads", [])
             if str(w.get("name", "")).startswith(name)
             and (str(w.get("projectId")) == str(ex.project_id) if ex.project_id else w.get("projectName") == ex.project_name)
             and (not ex.cluster_id or str(w.get("clusterId")) == str(ex.cluster_id))]  # fmt: skip
    if not found:
        return None
    if len(found) > 1:
        ids = ", ".join(sorted(str(w.get("id")) for w in found))
        raise client.fail(f"GET /workloads: {len(found)} workloads are named {name}* ({ids}); cancel the extra ones")
    w = found[0]
    kind = target.workload_kind(job.resources.nodes)
    placed = {"job_dir": target.pvc_job_dir(job)} if target.pvc_job_dir(job) else None
    return _handle(client, kind, str(w["id"]), str(w["name"]), str(w.get("projectId")), str(w.get("clusterId")), placed)


def _path(handle: Handle) -> str:
    return f"/workloads/{handle.data['kind']}/{handle.id}"


def status_of(client: Client, handle: Handle) -> JobStatus:
    resp = client.call("GET", _path(handle), ok_404=True)
    if resp is None:
        return JobStatus(AppState.UNKNOWN, None, "workload not found (deleted?)")
    data = resp.json()
    phase = str(data.get("actualPhase") or data.get("phase") or "Unknown")
    return JobStatus(PHASES.get(phase, AppState.UNKNOWN), None, phase)


def status(handles: Sequence[Handle]) -> dict[str, JobStatus]:
    """One token per tenant, one GET per workload."""
    clients: dict[str, Client] = {}
    out: dict[str, JobStatus] = {}
    for h in handles:
        endpoint = Endpoint.from_handle(h)
        key = json.dumps(endpoint.to_dict(), sort_keys=True)
        if key not in clients:
            clients[key] = Client(endpoint)
        out[h.id] = status_of(clients[key], h)
    return out


def cancel(handle: Handle, delete: bool = False) -> None:
    """Suspend the workload (``POST .../suspend``, as the spec defines for trainings and
    distributed workloads); ``delete=True`` removes it instead. Idempotent: a workload that is
    gone, or already settled, is left alone."""
    client = Client(Endpoint.from_handle(handle))
    resp = client.call("GET", _path(handle), ok_404=True)
    if resp is None:
        return
    if delete:
        client.call("DELETE", _path(handle), ok_404=True)
        return
    if str(resp.json().get("actualPhase") or "") in _SETTLED:
        return
    client.call("POST", _path(handle) + "/suspend", ok_404=True)


def logs(handle: Handle, follow: bool = False) -> Iterator[str]:
    """The Run:ai workloads API serves no container logs; say where to find them."""
    yield (
        f"nemorun: logs of DGX Cloud workload {handle.data.get('name', handle.id)} ({handle.id}) are not served by the "
        f"Run:ai REST API; see the Run:ai UI of {Endpoint.from_handle(handle).host} or `runai workload logs`\n"
    )
