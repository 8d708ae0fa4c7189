"""SkyPilot target: goldens against SkyPilot 0.14.1's own task and resources schemas (offline
contract) and, with SkyPilot installed, ``sky.Task.from_yaml_config`` (its semantic checks);
config mistakes through the real CLI; the submitter's SDK calls bound to the real SDK signatures.

Not exercised here (no SkyPilot API server or cloud can run on this machine): a real launch,
queue, log tail or cancel. The unreachable-server path runs the real SDK against a closed port.
"""
from __future__ import annotations

import inspect
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tests.contracts import skypilot_task_errors
from tests.golden_cases import CASES
from tests.helpers import run_cli

SKY_CASES = sorted(c for c in CASES if c.startswith("skypilot_"))


def _golden(case: str) -> dict:
    return yaml.safe_load((ROOT / "golden" / case / "task.yaml").read_text())


@pytest.mark.parametrize("case", SKY_CASES)
def test_golden_fits_skypilot_schemas(case: str) -> None:
    assert skypilot_task_errors(_golden(case)) == []


def test_contract_is_not_vacuous() -> None:
    task = _golden("skypilot_train_torchrun")
    task["resources"]["use_spot"] = "maybe"
    task["runn"] = "x"
    assert len(skypilot_task_errors(task)) == 2


def test_goldens_build_real_sky_tasks(tmp_path: Path) -> None:
    """``sky.Task.from_yaml_config`` in a subprocess with HOME in a temp dir (importing sky writes ~/.sky)."""
    pytest.importorskip("sky")
    script = (
        "import json, sys, yaml, sky\n"
        "for path in sys.argv[1:]:\n"
        "    t = sky.Task.from_yaml_config(yaml.safe_load(open(path)))\n"
        "    r = list(t.resources)[0]\n"
        "    print(json.dumps({'name': t.name, 'nodes': t.num_nodes, 'acc': r.accelerators, 'image': r.image_id, 'spot': r.use_spot}))\n"
    )
    paths = [str(ROOT / "golden" / c / "task.yaml") for c in SKY_CASES]
    proc = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True, text=True, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    built = {c: json.loads(line) for c, line in zip(SKY_CASES, proc.stdout.splitlines())}
    train = built["skypilot_train_torchrun"]
    assert (train["nodes"], train["acc"], train["spot"]) == (2, {"H100": 8}, True)
    assert train["image"] == {"null": "docker:nvcr.io/nvidia/nemo:25.04"}  # sky keys image_id by region (None = any)
    assert built["skypilot_script_managed"]["acc"] == {"A100-80GB": 1}


@pytest.mark.parametrize(
    "override, expected",
    [
        ("executor.cpus=lots", "cpus must be a number or '<number>+'"),
        ("executor.disk_size=-5", "disk_size must be a positive number"),
        ("executor.managed=true executor.cluster_name=c1", "managed=true runs on a cluster of SkyPilot's choosing"),
        ("executor.infra=k8s executor.cloud=aws", "set infra, or cloud/region/zone"),
        ("executor.use_spot=maybe", "use_spot"),
    ],
)
def test_config_mistakes_are_one_line(override: str, expected: str, cli_env: dict[str, str]) -> None:
    proc = run_cli(["executor=skypilot", "task=hello", "dryrun=true", *override.split()], env=cli_env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("nemorun: error: ") and expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def _sky_function(dotted: str):
    sky = pytest.importorskip("sky")
    obj = sky
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def test_sdk_calls_bind_to_real_signatures() -> None:
    """Every SDK call the submitter makes binds to the installed SDK's signature (names, kinds)."""
    from nemorun.plan import plan_config
    from nemorun.submitters import skypilot as sub
    from tests.helpers import PINNED_SITE, compose_config

    for case, managed in (("skypilot_train_torchrun", False), ("skypilot_script_managed", True)):
        job = plan_config(compose_config(CASES[case]), PINNED_SITE).jobs[0].job
        dotted, kwargs = sub.launch_call(job)
        assert dotted == ("jobs.launch" if managed else "launch")
        inspect.signature(_sky_function(dotted)).bind(object(), **kwargs)
        cluster = sub.MANAGED if managed else kwargs["cluster_name"]
        for dotted, kw in (sub.status_call(cluster, [3]), sub.cancel_call(cluster, 3), sub.logs_call(cluster, 3, True)):
            inspect.signature(_sky_function(dotted)).bind(**kw)
    job = plan_config(compose_config(CASES["skypilot_train_torchrun"]), PINNED_SITE).jobs[0].job
    assert sub.launch_call(job)[1] == {"cluster_name": "team-h100", "idle_minutes_to_autostop": 30, "down": True}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_api_server_is_one_line_and_recorded(cli_env: dict[str, str], nemorun_home: Path, tmp_path: Path) -> None:
    """The real SDK against a closed port: one line naming the server; the record says failed-to-submit."""
    pytest.importorskip("sky")
    url = f"http://127.0.0.1:{_closed_port()}"
    env = {**cli_env, "HOME": str(tmp_path), "SKYPILOT_API_SERVER_ENDPOINT": url}
    proc = run_cli(["executor=skypilot", "task=hello", "executor.infra=k8s"], env=env)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and url in lines[0] and "not submitted" in lines[0], proc.stderr  # refused by resolve, before sky.launch
    records = list(nemorun_home.glob("experiments/hello/*/jobs/hello/record.json"))
    assert len(records) == 1
    rec = json.loads(records[0].read_text())
    assert rec["phase"] == "failed-to-submit" and rec["handle"] is None
    assert (records[0].parent / "task.yaml").read_text().startswith("# Rendered by nemorun")
