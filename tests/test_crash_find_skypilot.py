"""``kill -9`` while a SkyPilot job is being launched, then ``exp rerun ID --resume``, against a REAL
SkyPilot 0.14 API server (the ``sky_server`` fixture, tests/fixtures/sky_server.py).

No cloud can be provisioned here, so every launch ends with SkyPilot's NoCloudAccessError; the
server still records each ``sky.launch`` request, and the tests count those through the server's
own ``/api/status`` listing, independent of nemorun's record.

- ``before-submit:0``: nothing reached the server; ``find`` finds nothing and the resume sends
  exactly one launch request.
Not exercised: ``after-submit:0`` (a launch that returns a job id needs a cloud: submit raises
first), so adopting a SUCCEEDED launch request or a job found in a cluster's queue; and adopting a
PENDING/RUNNING launch request (a failing launch runs for too short a time to kill the client
while its request is in flight, and holding the server's workers also stalls ``/api/status``).
"""
from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path

import pytest

from nemorun.api import Experiment
from tests.fixtures.sky_server import SkyServer  # the sky_server fixture: a plugin of tests/conftest.py
from tests.helpers import run_cli


def _launches(server: SkyServer, cluster_prefix: str) -> list[dict]:
    """The server's ``sky.launch`` requests on clusters named ``cluster_prefix*`` (all statuses)."""
    with urllib.request.urlopen(f"{server.url}/api/status?all_status=true", timeout=30) as resp:
        listed = json.load(resp)
    return [r for r in listed if r["name"] == "sky.launch" and json.loads(r["request_body"])["cluster_name"].startswith(cluster_prefix)]


@pytest.fixture
def sky_env(sky_server: SkyServer, cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, **sky_server.env}



def test_before_submit_kill_then_resume_launches_once(sky_server: SkyServer, sky_env: dict[str, str], tmp_path: Path) -> None:
    args = ["executor=skypilot", "task=hello", f"executor.cluster_name=nemorun-crash-before-{tmp_path.name[-8:].lower()}"]
    cluster = args[-1].split("=", 1)[1]
    proc = run_cli(args, env=dict(sky_env, NEMORUN_FAULT="before-submit:0"))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    exp = Experiment.load("latest", home=sky_env["NEMORUN_HOME"])
    assert exp.record.job("hello").in_doubt
    assert _launches(sky_server, cluster) == []
    resumed = run_cli(["exp", "rerun", exp.id, "--resume"], env=sky_env)
    assert "found on" not in resumed.stdout and "warning" not in resumed.stdout, resumed.stdout
    # the one launch this resume sent is refused by SkyPilot (no cloud), reported on one line
    assert resumed.returncode == 1
    assert "launch of hello failed: NoCloudAccessError" in resumed.stderr.strip().splitlines()[-1]
    [request] = _launches(sky_server, cluster)
    assert request["status"] == "FAILED"
