"""SkyPilot and Kubeflow ship a job's packaged code the way each platform ships code, and run it.

SkyPilot: against a REAL SkyPilot 0.14 API server (the ``sky_server`` fixture,
tests/fixtures/sky_server.py). The nemorun CLI's SkyPilot client is pointed at it as at a REMOTE
server (its environment does not name the server's port as the local one), so the client uploads
the task's workdir exactly as for a remote deployment. The tests read what the server received —
the request body (``/api/status`` lists it to its owner) and the files in its upload folder — and
then run the ``run`` script the server got inside the folder the server got, as a node runs it in
``~/sky_workdir``. Nothing can be provisioned here (no cloud credentials), so the launch itself
ends with SkyPilot's NoCloudAccessError, which is asserted too.

Kubeflow: against ``tests/kube_fake.py``, a contract server (the Trainer CRD in strict mode with
its CEL rules, Kubernetes' ConfigMap rules) reached through the real ``kubernetes`` client. The
TrainJob's command then runs with the ConfigMap laid out as the kubelet lays out its volume (each
``items`` key written to its ``path`` under ``code_dir``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from nemorun import configmap_packaging as cmp
from nemorun.command import REMOTE_ENTRY, REMOTE_FUNCTION_SPEC
from nemorun.errors import SubmitError
from nemorun.lower import Site
from nemorun.plan import plan_config
from nemorun.submitters import kubeflow as kube_sub
from nemorun.submitters import skypilot as sky_sub
from tests.contracts import trainjob_errors
from tests.fixtures.sky_server import SkyServer  # the sky_server fixture: a plugin of tests/conftest.py
from tests.helpers import compose_config, git, run_cli, write_files
from tests.kube_fake import FakeKube, serving

SHIPPED_FN = (
    "import helper_mod\n\n"
    "def run(n: int = 1) -> int:\n"
    "    print('shipped-ok', helper_mod.twice(n))\n"
    "    return 0\n"
)
PROJECT = {"shipped_fn.py": SHIPPED_FN, "helper_mod.py": "def twice(n):\n    return 2 * n\n", ".gitignore": "data/\n"}
FUNCTION = ["task=hello", "task.inline=null", "task.target=shipped_fn.run", "+task.params.n=3"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git project whose function imports a sibling module; ``data/keep.txt`` is git-ignored."""
    root = tmp_path_factory.mktemp("shipped") / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write_files(root, PROJECT)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    write_files(root, {"data/keep.txt": "kept although git-ignored\n"})
    return root


def _python_path(tmp: Path) -> str:
    """PATH whose ``python`` is this interpreter (the rendered commands call ``python``)."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "python").exists():
        (bin_dir / "python").symlink_to(sys.executable)
    return f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"


# ---------------------------------------------------------------------------------- SkyPilot
@dataclass(frozen=True)
class Launch:
    returncode: int
    stdout: str
    stderr: str
    job_dir: Path


# name -> (SDK call, overrides); both clients run at once against the one server (~10 s each)
LAUNCHES = {
    "launch": ("sky.launch", [*FUNCTION, "packager=pattern", "packager.include_pattern=[shipped_fn.py, helper_mod.py, .gitignore, data/keep.txt]"]),
    "jobs.launch": ("sky.jobs.launch", [*FUNCTION, "packager=git", "executor.managed=true", "executor.retries=2"]),
}


@pytest.fixture(scope="module")
def sky_launches(sky_server: SkyServer, project: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Launch]:
    client = {k: v for k, v in sky_server.env.items() if k != "SKYPILOT_API_SERVER_LOCAL_PORT"}  # the server is "remote"
    base = {k: v for k, v in os.environ.items() if k not in ("NEMORUN_DEBUG", "HYDRA_FULL_ERROR")}
    procs = {}
    for name, (_, overrides) in LAUNCHES.items():
        home = tmp_path_factory.mktemp("nemorun-home")
        proc = subprocess.Popen([sys.executable, "-m", "nemorun", "executor=skypilot", *overrides], cwd=project, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**base, **client, "NEMORUN_HOME": str(home)})  # fmt: skip
        procs[name] = (home, proc)
    out = {}
    for name, (home, proc) in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=240)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        (job_dir,) = home.glob("experiments/hello/*/jobs/hello")
        out[name] = Launch(proc.returncode, stdout, stderr, job_dir)
    return out


def _received(server: SkyServer, call: str, workdir: Path) -> tuple[dict, dict]:
    """(request body, task config) of the ``call`` request whose task has this workdir, as the server holds it."""
    with urllib.request.urlopen(f"{server.url}/api/status?all_status=true", timeout=30) as resp:
        listed = json.load(resp)
    for request in listed:
        if request["name"] != call:
            continue
        body = json.loads(request["request_body"])
        task = [doc for doc in yaml.safe_load_all(body["task"]) if doc and "run" in doc][0]
        if task.get("workdir") == str(workdir):
            return body, task
    raise AssertionError(f"no {call} request with workdir {workdir} among {[r['name'] for r in listed]}")


def _uploaded(server: SkyServer, body: dict, workdir: Path) -> Path:
    """Where the server unpacked the client's upload of ``workdir`` (its per-user blob folder)."""
    (found,) = server.home.glob(f".sky/api_server/clients/*/file_mounts/blobs/{body['file_mounts_blob_id']}{workdir}")
    return found


def test_workdir_reaches_the_server_and_its_run_script_runs_the_shipped_function(
    sky_server: SkyServer, sky_launches: dict[str, Launch], project: Path, tmp_path: Path
) -> None:
    run = sky_launches["launch"]
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and len(lines) == 1, run.stderr
    assert "launch of hello failed: NoCloudAccessError: Cloud access is not set up" in lines[0]

    code = run.job_dir / "code"  # unpacked by the submitter: the workdir the render named
    sha = json.loads((run.job_dir.parent.parent / "code.json").read_text())["sha256"]
    assert (run.job_dir / sky_sub.CODE_STAMP).read_text().strip() == sha
    assert f"workdir: {code}\n" in (run.job_dir / "task.yaml").read_text()

    body, task = _received(sky_server, "sky.launch", code)
    assert body["cluster_name"].startswith("nemorun-hello-") and body["using_remote_api_server"] is True
    assert task["file_mounts_mapping"] == {str(code): str(code)}  # the client uploaded the workdir
    on_server = _uploaded(sky_server, body, code)
    for rel in ("shipped_fn.py", "helper_mod.py", ".gitignore"):
        assert (on_server / rel).read_bytes() == (project / rel).read_bytes()
    # git-ignored but packed: the empty .skyignore keeps SkyPilot from dropping it
    assert (on_server / "data/keep.txt").read_text() == "kept although git-ignored\n"
    assert (on_server / ".skyignore").read_text() == ""

    # what a node does with it: `cd ~/sky_workdir && bash -c "$run"` (the node's /tmp made private here)
    script = task["run"].replace(REMOTE_FUNCTION_SPEC, str(tmp_path / "function.yaml")).replace(REMOTE_ENTRY, str(tmp_path / "entry.py"))
    assert script != task["run"]
    done = subprocess.run(["bash", "-c", script], cwd=on_server, capture_output=True, text=True, timeout=60,
                          env={"PATH": _python_path(tmp_path), "HOME": str(tmp_path)})  # fmt: skip
    assert done.returncode == 0 and done.stdout == "shipped-ok 6\n", done.stderr


def test_managed_job_carries_its_restart_budget_and_code_to_the_server(sky_server: SkyServer, sky_launches: dict[str, Launch], project: Path) -> None:
    run = sky_launches["jobs.launch"]
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1 and len(lines) == 1, run.stderr
    assert "jobs.launch of hello failed: NoCloudAccessError" in lines[0]
    code = run.job_dir / "code"
    body, task = _received(sky_server, "sky.jobs.launch", code)
    assert task["resources"]["job_recovery"]["max_restarts_on_errors"] == 2  # (the SDK adds strategy: null)
    on_server = _uploaded(sky_server, body, code)
    assert (on_server / "shipped_fn.py").read_text() == SHIPPED_FN
    assert not (on_server / "data").exists()  # packager=git packs tracked files only


def test_unpacking_is_skipped_for_the_same_digest_and_refused_for_a_changed_archive(project: Path, tmp_path: Path) -> None:
    site = Site(experiment_id="20260101-000000-000000-sky1", submit_dir=str(project), home=str(tmp_path / "home"), python="python3")
    plan = plan_config(compose_config(["executor=skypilot", *FUNCTION, "packager=git"]), site)
    job = plan.jobs[0].job
    Path(job.job_dir).mkdir(parents=True)
    plan.packages.commit(Path(site.experiment_dir("hello")))
    code = sky_sub.unpack_code(job)
    assert code == Path(job.job_dir, "code") and (code / "shipped_fn.py").read_text() == SHIPPED_FN
    (code / "marker").write_text("left alone")
    assert sky_sub.unpack_code(job) == code and (code / "marker").exists()  # same digest: not unpacked again
    with open(str(job.package.archive), "ab") as f:
        f.write(b"changed")
    (Path(job.job_dir) / sky_sub.CODE_STAMP).unlink()
    with pytest.raises(SubmitError, match=f"not the planned {job.package.sha256}"):
        sky_sub.unpack_code(job)


@pytest.mark.parametrize(
    "overrides, line",
    [
        (["packager=pattern", "packager.include_pattern=*.py", "executor.workdir=/elsewhere"],
         "executor.workdir=/elsewhere and packager=pattern both set the SkyPilot task's workdir"),
        (["executor.retries=2"], "retries=2 needs managed=true: only SkyPilot managed jobs restart on errors"),
    ],
    ids=["workdir-and-packager", "retries-without-managed"],
)  # fmt: skip
def test_skypilot_config_conflicts_are_one_line(overrides: list[str], line: str, project: Path, cli_env: dict[str, str]) -> None:
    proc = run_cli(["executor=skypilot", "task=hello", *overrides, "dryrun=true"], env=cli_env, cwd=str(project))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("nemorun: error: "), proc.stderr
    assert line in proc.stderr


# ---------------------------------------------------------------------------------- Kubeflow
@pytest.fixture
def fake_kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeKube]:
    with serving(FakeKube(), tmp_path / "kubeconfig", monkeypatch) as fake:
        yield fake


KUBE = ["executor=kubeflow", "executor.image=python:3.11-slim"]


def _pod_spec(trainjob: dict) -> dict:
    (patch,) = trainjob["spec"]["runtimePatches"]
    (rjob,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    return rjob["template"]["spec"]["template"]["spec"]


def test_git_archive_runs_from_the_configmap_volume(project: Path, fake_kube: FakeKube, tmp_path: Path) -> None:
    mount = tmp_path / "pod" / "code"  # executor.code_dir: where the pod sees the ConfigMap
    site = Site(experiment_id="20260101-000000-000000-kube", submit_dir=str(project), home=str(tmp_path / "home"), python="python3")
    planned = plan_config(compose_config([*KUBE, *FUNCTION, "packager=git", f"executor.code_dir={mount}"]), site).jobs[0]
    handle = kube_sub.submit(planned.rendered, planned.job)
    ns, name = handle.data["namespace"], handle.data["name"]
    trainjob, configmap = fake_kube.trainjobs[(ns, name)], fake_kube.configmaps[(ns, handle.data["configmap"])]
    files = cmp.files_of(configmap)
    tracked = {rel: (project / rel).read_bytes() for rel in PROJECT}
    assert {k: v for k, v in files.items() if not k.startswith(".nemorun/")} == tracked
    assert set(files) - set(tracked) == {".nemorun/function.yaml", ".nemorun/nemorun_entry.py"}

    # the kubelet's part: each item of the volume written to its path under the mount
    (volume,) = [v for v in _pod_spec(trainjob)["volumes"] if "configMap" in v]
    for item in volume["configMap"]["items"]:
        path = mount / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[cmp.decode_key(item["key"])])
    command = trainjob["spec"]["trainer"]["command"]
    assert command[:2] == ["/bin/bash", "-c"] and command[2].startswith(f"cd {mount}\n")
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={"PATH": _python_path(tmp_path), "HOME": str(tmp_path)})  # fmt: skip
    assert done.returncode == 0 and done.stdout == "shipped-ok 6\n", done.stderr


def test_archive_over_a_configmap_is_refused_before_anything_is_recorded(project: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    write_files(big, {"big.py": "x = 0\n" + "#" * (1100 * 1024) + "\n", "small.py": "y = 1\n"})
    proc = run_cli([*KUBE, "task=hello", "packager=pattern", f"packager.relative_path={big}", "packager.include_pattern=*.py"],
                   env=cli_env, cwd=str(project))  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("nemorun: error: ConfigMap nemorun-code-<TrainJob name> would hold 1.07 MiB in 2 files") and "big.py" in proc.stderr
    assert not list(Path(cli_env["NEMORUN_HOME"]).rglob("record.json"))


def test_kubeflow_retries_are_refused_with_the_reason(cli_env: dict[str, str]) -> None:
    proc = run_cli([*KUBE, "task=hello", "executor.retries=1", "dryrun=true"], env=cli_env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "executor.retries=1 is not supported by executor=kubeflow (a TrainJob's runtimePatches reach only the pod template" in proc.stderr


def _trainjob(overrides: list[str]) -> dict:
    from tests.helpers import PINNED_SITE

    rendered = plan_config(compose_config([*KUBE, "task=hello", *overrides]), PINNED_SITE).jobs[0].rendered
    trainjob = yaml.safe_load(rendered.artifacts["trainjob.yaml"])
    assert trainjob_errors(trainjob, "v2.2+") == []
    return trainjob


def _shm(trainjob: dict) -> tuple[list, list]:
    if "runtimePatches" not in trainjob["spec"]:
        return [], []
    spec = _pod_spec(trainjob)
    volumes = [v for v in spec.get("volumes", []) if v["name"] == "nemorun-dshm"]
    mounts = [m for c in spec.get("containers", []) for m in c.get("volumeMounts", []) if m["mountPath"] == "/dev/shm"]
    return volumes, mounts


@pytest.mark.parametrize(
    "overrides, volume, nproc",
    [
        ([], None, 1),  # CPU pod: the runtime's default /dev/shm
        (["executor.gpus=8"], {"medium": "Memory"}, 8),  # bounded by the pod's memory, like DGX Cloud's large /dev/shm
        (["executor.gpus=8", "executor.shm_size=64g", "launcher=torchrun", "launcher.nproc_per_node=2"], {"medium": "Memory", "sizeLimit": "64Gi"}, 2),
        (["executor.shm_size=512m", "executor.ntasks_per_node=3"], {"medium": "Memory", "sizeLimit": "512Mi"}, 3),
        (["executor.gpus=4", "launcher=ft"], {"medium": "Memory"}, 4),
    ],
    ids=["cpu", "gpus", "sized-torchrun", "sized-cpu", "ft"],
)  # fmt: skip
def test_shared_memory_and_processes_per_node(overrides: list[str], volume: dict | None, nproc: int) -> None:
    trainjob = _trainjob(overrides)
    volumes, mounts = _shm(trainjob)
    if volume is None:
        assert volumes == [] and mounts == []
    else:
        assert volumes == [{"name": "nemorun-dshm", "emptyDir": volume}]
        assert mounts == [{"name": "nemorun-dshm", "mountPath": "/dev/shm"}]
    assert trainjob["spec"]["trainer"]["numProcPerNode"] == nproc
    if "launcher=torchrun" in overrides or "launcher=ft" in overrides:
        assert f"--nproc-per-node {nproc} " in trainjob["spec"]["trainer"]["command"][2]


def test_a_users_own_dev_shm_mount_wins() -> None:
    trainjob = _trainjob(["executor.gpus=8", "executor.volumes=[{name: shm, emptyDir: {medium: Memory, sizeLimit: 8Gi}}]",
                          "executor.volume_mounts=[{name: shm, mountPath: /dev/shm}]"])  # fmt: skip
    volumes, mounts = _shm(trainjob)
    assert volumes == [] and mounts == [{"name": "shm", "mountPath": "/dev/shm"}]


def test_bad_shm_size_is_one_line(cli_env: dict[str, str]) -> None:
    proc = run_cli([*KUBE, "task=hello", "executor.shm_size=lots", "dryrun=true"], env=cli_env)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "shm_size must be <number>[b|k|m|g] like '64g' (got 'lots')" in proc.stderr
