"""The SkyPilot submitter against a REAL SkyPilot 0.14 API server (``python -m sky.server.server``,
the process ``sky api start`` runs) on 127.0.0.1, with HOME in a temp dir so ~/.sky lives there.

No cloud credentials exist and only package registries are reachable, so nothing can be
provisioned: a launch comes back with SkyPilot's own refusal, which is what these tests check
reaches the user as one line. Status, cancel and logs of jobs that do not exist get the real
server's answers (cluster does not exist / no managed jobs controller).

Not exercised: a job that really runs (SSH node pools install k3s from the internet; Kubernetes
needs a cluster; the local Docker backend is deprecated and builds images from a registry), so
the RUNNING/SUCCEEDED path of status, a non-empty log tail and a cancel that stops something.
The clients run with SKYPILOT_DISABLE_LOCAL_API_SERVER=1: if the server died they would fail
instead of quietly starting a second server that outlives the session.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.sky_server import SkyServer  # the sky_server fixture: a plugin of tests/conftest.py


# Runs in a subprocess: importing sky writes ~/.sky and caches the server URL process-wide.
_FUNCTIONS = r"""
import json
from nemorun.errors import SubmitError
from nemorun.states import Handle
from nemorun.submitters import skypilot as sub

handles = [Handle("skypilot", "nemorun-nosuch/3", {"cluster": "nemorun-nosuch", "job_id": 3}),
           Handle("skypilot", "managed/7", {"cluster": "managed", "job_id": 7})]
def attempt(fn):
    try:
        return {"ok": fn()}
    except SubmitError as exc:
        return {"error": str(exc)}
out = {"status": {k: [v.state.value, v.detail] for k, v in sub.status(handles).items()}}
for h in handles:
    out[h.id] = {"cancel": [attempt(lambda: sub.cancel(h)) for _ in range(2)], "logs": attempt(lambda: list(sub.logs(h)))}
print(json.dumps(out))
"""
# name -> (argv after the interpreter, the SDK call it makes); each takes ~10 s of client start-up
# (import sky), so all run at once against the one server
_CLIENTS = {
    "launch": (["-m", "nemorun", "executor=skypilot", "task=hello"], "launch"),
    "jobs.launch": (["-m", "nemorun", "executor=skypilot", "task=hello", "executor.managed=true"], "jobs.launch"),
    "functions": (["-c", _FUNCTIONS], ""),
}


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    nemorun_home: Path


@pytest.fixture(scope="session")
def sky_runs(sky_server: SkyServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    env = {k: v for k, v in os.environ.items() if k not in ("NEMORUN_DEBUG", "HYDRA_FULL_ERROR")}
    procs = {}
    for name, (argv, _) in _CLIENTS.items():
        home = tmp_path_factory.mktemp("nemorun-home")
        procs[name] = (home, subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                              env={**env, **sky_server.env, "NEMORUN_HOME": str(home)}))  # fmt: skip
    runs = {}
    for name, (home, proc) in procs.items():
        try:
            out, err = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err += "\n(test: killed after 240 s: the client hung)"
        runs[name] = Run(proc.returncode, out, err, home)
    return runs


def _record(nemorun_home: Path) -> dict:
    records = list(nemorun_home.glob("experiments/hello/*/jobs/hello/record.json"))
    assert len(records) == 1, records
    return json.loads(records[0].read_text())


@pytest.mark.parametrize("call", ["launch", "jobs.launch"])
def test_launch_refused_by_real_server(call: str, sky_server: SkyServer, sky_runs: dict[str, Run]) -> None:
    """The real CLI; the launch request reaches the server (its request log names it), which
    refuses it: no cloud is enabled here (for a managed job: none for its jobs controller either)."""
    run = sky_runs[call]
    assert run.returncode == 1, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(f"nemorun: error: job hello was not submitted: SkyPilot API server {sky_server.url}: {call} of hello failed: ")
    assert "NoCloudAccessError: Cloud access is not set up" in lines[0] and "\x1b" not in lines[0]
    rec = _record(run.nemorun_home)
    assert rec["phase"] == "failed-to-submit" and rec["handle"] is None
    assert f'"POST /{call.replace(".", "/")} HTTP/1.1" 200' in sky_server.log.read_text(errors="replace")


def test_status_cancel_logs_of_missing_jobs(sky_server: SkyServer, sky_runs: dict[str, Run]) -> None:
    """The submitter functions on a cluster that does not exist and a managed job with no jobs
    controller: the server's own answers become UNKNOWN, a no-op cancel (twice) and a one-line
    logs error."""
    run = sky_runs["functions"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stderr.strip() == "", run.stderr  # no SDK warnings (jobs.queue version 1 logs one)
    out = json.loads(run.stdout)
    gone = {"nemorun-nosuch/3": "Cluster 'nemorun-nosuch' does not exist.", "managed/7": "No in-progress managed jobs."}
    assert out["status"] == {handle_id: ["UNKNOWN", detail] for handle_id, detail in gone.items()}
    for handle_id, detail in gone.items():
        assert out[handle_id]["cancel"] == [{"ok": None}, {"ok": None}]
        assert out[handle_id]["logs"] == {"error": f"SkyPilot API server {sky_server.url}: no logs for {handle_id}: {detail}"}
