"""A local stand-in for the Run:ai control-plane REST API (2.24) on 127.0.0.1, for tests.

No real Run:ai can be reached from here, so this server ENFORCES the upstream contract: every
request is checked with ``tests.contracts.runai_request_errors`` (method and path must be an
operation of the 2.24 OpenAPI spec; a body must pass its request schema in strict mode, unknown
keys and a non-UUID clusterId included). A violation is answered 400 and kept in
``violations``, which the fixture asserts empty at teardown. Replies follow the spec's response
shapes: token, project list, 202 + workload on create, phase progression on GET
(Creating → Pending → Running; ``set_phase`` ends it), 202 on suspend and delete, ``{code, message}`` errors.
``GET /workloads`` lists workloads as the spec's ``Workload`` objects, filtered by ``filterBy``
(each value must match the spec's ``WorkloadsFilter`` pattern, else 400 and a violation; the
spec declares ``explode: false``, so several filters arrive comma-joined in one value).

Switches: ``expire_tokens()`` (next call gets 401, as an expired token does) and
``inject(status, ...)`` (the next matching requests get that status, e.g. 429 with Retry-After,
or a 400 with the service's JSON message), ``echo_credentials(status, ...)`` (the next matching
requests get that status with an error body quoting the credential they carried — the app secret
of ``POST /token``, the bearer token of any other call — in every encoding of :func:`echoed`, as a
careless proxy or service may).
"""
from __future__ import annotations

import base64
import functools
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

from tests.contracts import runai_request_errors
from tests.contracts._common import load_json

PROGRESSION = ("Creating", "Pending", "Running")
# filterBy operators of the 2.24 spec (components.parameters.WorkloadsFilter), longest first
_OPERATORS = ("==", "!=", "<=", ">=", "=@", "!@", "=^", "=$")


@functools.lru_cache(maxsize=1)
def _workloads_filter_pattern() -> "re.Pattern[str]":
    spec = load_json("runai", "runai-openapi-2.24.json")
    return re.compile(spec["components"]["parameters"]["WorkloadsFilter"]["schema"]["items"]["pattern"])


def _matches(value: str, op: str, wanted: str) -> bool:
    return {"==": value == wanted, "!=": value != wanted, "=@": wanted in value, "!@": wanted not in value,
            "=^": value.startswith(wanted), "=$": value.endswith(wanted),
            "<=": value <= wanted, ">=": value >= wanted}[op]  # fmt: skip


def echoed(value: str) -> list[str]:
    """Every encoding a server may echo a credential in: raw, JSON-escaped, URL-encoded
    (``quote``, ``quote`` with nothing safe, ``quote_plus``) and base64 (standard and URL-safe,
    with and without padding), plus the base64 of a Basic ``app:value`` credential."""
    data = value.encode()
    b64 = [base64.b64encode(data).decode(), base64.urlsafe_b64encode(data).decode()]
    return [
        value,
        json.dumps(value)[1:-1],
        quote(value),
        quote(value, safe=""),
        quote_plus(value),
        *b64,
        *(b.rstrip("=") for b in b64),
        base64.b64encode(b"app:" + data).decode(),
    ]


@dataclass
class Injection:
    status: int
    method: str
    path_suffix: str
    body: dict[str, Any]
    headers: dict[str, str]
    times: int
    # reply with the request's credential echoed in every encoding (see echo_credentials)
    echo: bool = False


@dataclass
class RunaiState:
    app_id: str
    secret: str
    projects: list[dict[str, Any]]
    tokens: set[str] = field(default_factory=set)
    workloads: dict[str, dict[str, Any]] = field(default_factory=dict)
    # every request: (method, path, raw body)
    requests: list[tuple[str, str, bytes]] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    injections: list[Injection] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class RunaiServer:
    def __init__(self, app_id: str, secret: str, projects: list[dict[str, Any]]):
        self.state = RunaiState(app_id, secret, projects)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/api/v1"

    def __enter__(self) -> "RunaiServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def expire_tokens(self) -> None:
        with self.state.lock:
            self.state.tokens.clear()

    def inject(self, status: int, method: str, path_suffix: str, message: str = "", retry_after: Optional[str] = None, times: int = 1) -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        body = {"code": status, "message": message or f"injected {status}"}
        with self.state.lock:
            self.state.injections.append(Injection(status, method, path_suffix, body, headers, times))

    def echo_credentials(self, status: int, method: str, path_suffix: str, times: int = 1) -> None:
        with self.state.lock:
            self.state.injections.append(Injection(status, method, path_suffix, {}, {}, times, echo=True))

    def calls(self, method: str, path_suffix: str) -> list[bytes]:
        return [b for m, p, b in self.state.requests if m == method and p.endswith(path_suffix)]

    def set_phase(self, workload_id: str, phase: str) -> None:
        with self.state.lock:
            self.state.workloads[workload_id]["actualPhase"] = phase


def _handler(state: RunaiState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _reply(self, status: int, body: Any, headers: Optional[dict[str, str]] = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str) -> None:
            self._reply(status, {"code": status, "message": message})

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            with state.lock:
                state.requests.append((method, url.path, raw))
                injected = next((i for i in state.injections if i.method == method and url.path.endswith(i.path_suffix)), None)
                if injected:
                    injected.times -= 1
                    if injected.times <= 0:
                        state.injections.remove(injected)
            errors = runai_request_errors(method, url.path, raw if raw else None)
            if raw and self.headers.get("Content-Type") != "application/json":
                errors.append(f"{method} {url.path}: Content-Type is {self.headers.get('Content-Type')!r}")
            if errors:
                with state.lock:
                    state.violations.extend(errors)
                return self._error(400, "; ".join(errors))
            if injected and injected.echo:
                return self._echo(injected.status, url.path, raw)
            if injected:
                return self._reply(injected.status, injected.body, injected.headers)
            path = url.path.removeprefix("/api/v1")
            body = json.loads(raw) if raw else None
            if path == "/token":
                return self._token(body)
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            with state.lock:
                known = token in state.tokens
            if not known:
                return self._error(401, "Issuer is not familiar.")
            if method == "GET" and path == "/org-unit/projects":
                return self._projects(parse_qs(url.query))
            if method == "GET" and path == "/workloads":
                return self._list(parse_qs(url.query))
            parts = path.strip("/").split("/")
            if method == "POST" and len(parts) == 2 and parts[0] == "workloads":
                return self._create(parts[1], body)
            if len(parts) >= 3 and parts[0] == "workloads":
                return self._workload(method, parts[1], parts[2], parts[3:])
            return self._error(404, "Resource id not found.")

        def _echo(self, status: int, path: str, raw: bytes) -> None:
            if path.endswith("/token"):
                value = str(json.loads(raw).get("clientSecret"))
            else:
                value = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            forms = " | ".join(echoed(value))
            self._reply(status, {"code": status, "message": f"rejected credential: {forms}", "details": forms})

        def _token(self, body: Any) -> None:
            if body.get("grantType") != "client_credentials" or body.get("clientID") != state.app_id or body.get("clientSecret") != state.secret:
                return self._error(400, "invalid client credentials")
            token = f"tok-{uuid.uuid4().hex}"
            with state.lock:
                state.tokens.add(token)
            self._reply(200, {"accessToken": token, "expiresIn": 3600})

        def _projects(self, query: dict[str, list[str]]) -> None:
            projects = state.projects
            for f in query.get("filterBy", []):
                key, _, value = f.partition("==")
                projects = [p for p in projects if str(p.get(key)) == value]
            self._reply(200, {"projects": projects})

        def _list(self, query: dict[str, list[str]]) -> None:
            """``GET /workloads``: the spec's ``Workload`` objects of the workloads not deleted."""
            pattern = _workloads_filter_pattern()
            filters = [f for value in query.get("filterBy", []) for f in value.split(",")]
            bad = [f for f in filters if not pattern.match(f)]
            if bad:
                with state.lock:
                    state.violations.append(f"GET /workloads: filterBy {bad[0]!r} does not match the spec's WorkloadsFilter pattern")
                return self._error(400, f"invalid filterBy {bad[0]!r}")
            with state.lock:
                listed = [self._summary(w) for w in state.workloads.values()]
            for f in filters:
                field_name = re.match(r"^[A-Za-z]+", f).group(0)  # type: ignore[union-attr]
                op = next(o for o in _OPERATORS if f[len(field_name):].startswith(o))
                wanted = f[len(field_name) + len(op):]
                listed = [w for w in listed if _matches(str(w.get(field_name, "")), op, wanted)]
            limit = int((query.get("limit") or ["50"])[0])
            self._reply(200, {"workloads": listed[:limit]})

        def _summary(self, w: dict[str, Any]) -> dict[str, Any]:
            project = next(p for p in state.projects if p["id"] == w["projectId"])
            return {
                "type": "training" if w["kind"] == "trainings" else "distributed", "name": w["name"], "id": w["workloadId"],
                "source": "Control-plane", "priority": 50, "priorityClassName": "train", "clusterId": w["clusterId"],
                "projectName": project["name"], "projectId": w["projectId"], "departmentName": "default",
                "departmentId": "1", "namespace": f"runai-{project['name']}", "createdAt": w["createdAt"],
                "phase": w["actualPhase"], "conditions": [], "k8sPhase": w["actualPhase"], "tenantId": 1001,
                "runningPods": 0, "phaseUpdatedAt": w["createdAt"], "k8sPhaseUpdatedAt": w["createdAt"],
                "updatedAt": w["createdAt"], "deletedAt": None, "category": "Train",
            }  # fmt: skip

        def _create(self, kind: str, body: dict[str, Any]) -> None:
            project = next((p for p in state.projects if p["id"] == body["projectId"]), None)
            if project is None or project["clusterId"] != body["clusterId"]:
                return self._error(400, f"project {body['projectId']} does not exist on cluster {body['clusterId']}")
            workload_id = str(uuid.uuid4())
            name = body["name"] + ("-" + uuid.uuid4().hex[:5] if body.get("useGivenNameAsPrefix") else "")
            workload = {
                "name": name, "requestedName": body["name"], "workloadId": workload_id,
                "projectId": body["projectId"], "clusterId": body["clusterId"], "createdBy": state.app_id,
                "createdAt": "2026-01-01T00:00:00Z", "desiredPhase": "Running", "actualPhase": "Creating",
                "kind": kind, "spec": body.get("spec", {}),
            }
            with state.lock:
                state.workloads[workload_id] = workload
            self._reply(202, {k: v for k, v in workload.items() if k != "kind"})

        def _workload(self, method: str, kind: str, workload_id: str, rest: list[str]) -> None:
            with state.lock:
                w = state.workloads.get(workload_id)
                if w is None or w["kind"] != kind:
                    return self._error(404, "Resource id not found.")
                if method == "GET" and not rest:
                    reply = {k: v for k, v in w.items() if k != "kind"}
                    if w["actualPhase"] in PROGRESSION[:-1]:
                        w["actualPhase"] = PROGRESSION[PROGRESSION.index(w["actualPhase"]) + 1]
                    return self._reply(200, reply)
                if method == "POST" and rest == ["suspend"]:
                    if w["actualPhase"] in ("Completed", "Failed", "Stopped"):
                        return self._error(409, f"workload {w['name']} is {w['actualPhase']} and cannot be suspended")
                    w["actualPhase"], w["desiredPhase"] = "Stopped", "Stopped"
                    return self._reply(202, {"code": 202, "message": "Request has been accepted."})
                if method == "DELETE" and not rest:
                    del state.workloads[workload_id]
                    return self._reply(202, {"code": 202, "message": "Request has been accepted."})
            self._error(404, "Resource id not found.")

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

    return Handler
