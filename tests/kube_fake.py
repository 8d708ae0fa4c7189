"""A local stand-in for the few Kubernetes API endpoints the kubeflow submitter uses.

No Kubernetes API server can run on these machines (no kind, k3s or envtest packages), so tests
talk HTTP to this server on 127.0.0.1 instead, through the real ``kubernetes`` client and a
generated kubeconfig. It ENFORCES the upstream contract rather than echoing: every ConfigMap
and TrainJob body is checked with ``tests.contracts`` (the vendored Trainer v2.2+ CRD in strict
mode with its CEL rules; ConfigMap name, key and 1 MiB rules) and refused with a 422 ``Status``
like the apiserver's; a ``runtimeRef`` to a (Cluster)TrainingRuntime the server does not hold is
refused with 404; any request into a forbidden namespace gets 403 (``echo_credentials``: every
refusal quotes the request's Authorization header). Created TrainJobs get trainer
pods labelled as JobSet labels them, with logs; tests move a job along with :meth:`FakeKube.finish`.
"""
from __future__ import annotations

import contextlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator, Optional
from urllib.parse import parse_qs, urlparse

from tests.contracts import configmap_errors, trainjob_errors

TRAINJOBS = re.compile(r"^/apis/trainer\.kubeflow\.org/v1alpha1/namespaces/([^/]+)/trainjobs(?:/([^/]+))?$")
CONFIGMAPS = re.compile(r"^/api/v1/namespaces/([^/]+)/configmaps(?:/([^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+)(/log)?)?$")


@dataclass
class FakeKube:
    cluster_runtimes: set[str] = field(default_factory=lambda: {"torch-distributed"})
    # (namespace, name) of namespaced TrainingRuntimes
    runtimes: set[tuple[str, str]] = field(default_factory=set)
    forbidden_namespaces: set[str] = field(default_factory=set)
    configmaps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    trainjobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    logs: dict[tuple[str, str], str] = field(default_factory=dict)
    # (method, path, query) of every request, in order
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)
    url: str = ""
    # "echo" mode: every refusal quotes the request's Authorization header, as a proxy or an
    # admission webhook that logs the request it refused may (tests that no credential leaks)
    echo_credentials: bool = False
    authorization: str = ""

    # ------------------------------------------------------------------ test controls
    def finish(self, ns: str, name: str, ok: bool = True) -> None:
        """What the Trainer controller does when the JobSet ends."""
        kind, reason = ("Complete", "JobSetCompleted") if ok else ("Failed", "JobSetFailed")
        status = self.trainjobs[(ns, name)].setdefault("status", {})
        status["conditions"] = [
            {"type": "Created", "status": "True", "reason": "JobsCreationSucceeded", "message": "Succeeded to create Jobs"},
            {"type": kind, "status": "True", "reason": reason, "message": f"jobset {name} {'completed' if ok else 'failed'}"},
        ]
        status["jobsStatus"] = [{"name": "node", "active": 0, "ready": 0, "succeeded": int(ok), "failed": int(not ok), "suspended": 0}]

    def kubeconfig(self, path: Path, namespace: str = "default", token: str = "not-a-secret") -> Path:
        path.write_text(
            json.dumps({
                "apiVersion": "v1", "kind": "Config", "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                "users": [{"name": "tester", "user": {"token": token}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester", "namespace": namespace}}],
            })  # fmt: skip
        )
        return path

    # ------------------------------------------------------------------ the API
    def _status(self, code: int, reason: str, message: str) -> tuple[int, dict[str, Any]]:
        if self.echo_credentials:
            message += f" (request: Authorization: {self.authorization})"
        return code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code}

    def _create_pods(self, ns: str, name: str, trainjob: dict[str, Any]) -> None:
        for i in range(int(trainjob["spec"]["trainer"].get("numNodes", 1))):
            pod = f"{name}-node-{i}-0-abcde"
            labels = {"jobset.sigs.k8s.io/jobset-name": name, "jobset.sigs.k8s.io/replicatedjob-name": "node", "jobset.sigs.k8s.io/job-index": str(i)}
            self.pods[(ns, pod)] = {"metadata": {"name": pod, "namespace": ns, "labels": labels}, "spec": {"containers": [{"name": "node"}]}}
            self.logs[(ns, pod)] = f"node {i} of {name}: step 1\nnode {i} of {name}: done\n"

    def handle(self, method: str, path: str, query: dict[str, list[str]], body: Optional[dict[str, Any]]) -> tuple[int, Any]:
        self.requests.append((method, path, query))
        m = TRAINJOBS.match(path) or CONFIGMAPS.match(path) or PODS.match(path)
        if not m:
            return self._status(404, "NotFound", "the server could not find the requested resource")
        ns, name = m.group(1), m.group(2)
        resource = "trainjobs" if m.re is TRAINJOBS else "configmaps" if m.re is CONFIGMAPS else "pods"
        group = "trainer.kubeflow.org" if resource == "trainjobs" else ""
        full = f"{resource}.{group}" if group else resource
        if ns in self.forbidden_namespaces:
            verb = {"POST": "create", "PUT": "update", "DELETE": "delete", "GET": "get" if name else "list"}[method]
            who = f'{full} "{name}"' if name else full
            return self._status(403, "Forbidden", f'{who} is forbidden: User "system:serviceaccount:ci:tester" cannot {verb} resource "{resource}" in API group "{group}" in the namespace "{ns}"')
        if resource == "pods":
            return self._pods(ns, name, bool(m.group(3)), query)
        store = self.trainjobs if resource == "trainjobs" else self.configmaps
        kind = "TrainJob" if resource == "trainjobs" else "ConfigMap"
        if method in ("POST", "PUT"):
            assert body is not None
            if body.get("metadata", {}).get("namespace", ns) != ns:
                return self._status(400, "BadRequest", "the namespace of the provided object does not match the namespace sent on the request")
            errors = trainjob_errors(body) if kind == "TrainJob" else configmap_errors(body)
            obj_name = body.get("metadata", {}).get("name", "")
            if errors:
                return self._status(422, "Invalid", f'{kind} "{obj_name}" is invalid: {"; ".join(errors)}')
            if kind == "TrainJob":
                ref = body["spec"]["runtimeRef"]
                known = ref["name"] in self.cluster_runtimes if ref.get("kind", "ClusterTrainingRuntime") == "ClusterTrainingRuntime" else (ns, ref["name"]) in self.runtimes
                if not known:
                    plural = "clustertrainingruntimes" if ref.get("kind", "ClusterTrainingRuntime") == "ClusterTrainingRuntime" else "trainingruntimes"
                    return self._status(404, "NotFound", f'{plural}.trainer.kubeflow.org "{ref["name"]}" not found')
            if method == "POST":
                if (ns, obj_name) in store:
                    return self._status(409, "AlreadyExists", f'{full} "{obj_name}" already exists')
                store[(ns, obj_name)] = body
                if kind == "TrainJob":
                    body["status"] = {"conditions": [{"type": "Created", "status": "True", "reason": "JobsCreationSucceeded"}],
                                      "jobsStatus": [{"name": "node", "active": 1, "ready": 1, "succeeded": 0, "failed": 0, "suspended": 0}]}  # fmt: skip
                    self._create_pods(ns, obj_name, body)
                return 201, body
            if (ns, name) not in store:
                return self._status(404, "NotFound", f'{full} "{name}" not found')
            store[(ns, name)] = body
            return 200, body
        if not name:
            return self._status(405, "MethodNotAllowed", "listing is not implemented by the fake")
        if (ns, name) not in store:
            return self._status(404, "NotFound", f'{full} "{name}" not found')
        if method == "DELETE":
            obj = store.pop((ns, name))
            if kind == "TrainJob":  # the garbage collector removes the JobSet's pods
                for key in [k for k, p in self.pods.items() if p["metadata"]["labels"]["jobset.sigs.k8s.io/jobset-name"] == name and k[0] == ns]:
                    self.pods.pop(key)
            return 200, obj
        return 200, store[(ns, name)]

    def _pods(self, ns: str, name: Optional[str], log: bool, query: dict[str, list[str]]) -> tuple[int, Any]:
        if name:
            if (ns, name) not in self.pods:
                return self._status(404, "NotFound", f'pods "{name}" not found')
            container = (query.get("container") or ["node"])[0]
            if container != "node":
                return self._status(400, "BadRequest", f"container {container} is not valid for pod {name}")
            return (200, self.logs[(ns, name)]) if log else (200, self.pods[(ns, name)])
        wanted = dict(term.split("=", 1) for term in (query.get("labelSelector") or [""])[0].split(",") if term)
        items = [p for (pns, _), p in self.pods.items() if pns == ns and all(p["metadata"]["labels"].get(k) == v for k, v in wanted.items())]
        return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}


def serve(fake: FakeKube) -> tuple[ThreadingHTTPServer, threading.Thread]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            fake.authorization = self.headers.get("Authorization", "")
            code, payload = fake.handle(self.command, url.path, parse_qs(url.query), body)
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@contextlib.contextmanager
def serving(fake: "FakeKube", kubeconfig: Path, monkeypatch: Any) -> Iterator["FakeKube"]:
    """``fake`` served on 127.0.0.1 with ``KUBECONFIG`` pointing at it, for the block."""
    server, thread = serve(fake)
    monkeypatch.setenv("KUBECONFIG", str(fake.kubeconfig(kubeconfig)))
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
