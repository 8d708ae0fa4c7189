"""Lepton and DGX Cloud (Run:ai) run the job for real: packaged code reaches the job, and the job
starts in it.

No Lepton workspace or Run:ai tenant can be reached from here, so each backend is its contract
server: Lepton is ``FakeLepton`` of tests/test_lepton_submit.py (the real leptonai SDK talks to
it; every ``POST /jobs`` body is checked against the strict LeptonJob schema and the SDK's own
client-side rules), Run:ai is tests/dgxcloud_runai_server.py (every request checked against the
2.24 OpenAPI spec, violations fail the test). What the platform would then do with the job is done
here for real: the command that reached the server runs under bash, with the real ``python``,
in temp folders standing in for the mounted storage (Lepton) and the PVC (DGX Cloud).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from nemorun.lower import Site, check_config, compile_job
from nemorun.packaging import Packages
from nemorun.plan import plan_config
from nemorun.schemas.lepton import gpus_of_shape
from nemorun.submitters import dgxcloud as dgx_submitter
from nemorun.targets import dgxcloud as dgx_target
from nemorun.targets import lepton as lepton_target
from tests.contracts import runai_errors
from tests.dgxcloud_runai_server import RunaiServer
from tests.helpers import compose_config, git, run_cli, write_files
from tests.test_crash_find import FAULTS, _crash_then_resume
from tests.test_lepton_submit import FakeLepton, lepton, lepton_env  # noqa: F401  (fixtures: the fake Lepton workspace)

WORK_PY = '''import os


def run(out: str, tag: str = "ran") -> int:
    with open(out, "a") as f:
        f.write(f"{tag} cwd={os.getcwd()} file={__file__}\\n")
    return 0
'''
APP_ID, SECRET = "nemorun-ci", "s3cr3t-Value-42"
CLUSTER = "71f69d83-ba66-4822-adf5-55ce55efd210"
PROJECTS = [{"id": "4501", "name": "team-a", "clusterId": CLUSTER}]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A committed project whose function task exists only in the repository (not installed)."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write_files(root, {"mypkg/__init__.py": "", "mypkg/work.py": WORK_PY, "requirements.txt": ""})
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


@pytest.fixture
def python_bin(tmp_path: Path) -> Path:
    """A PATH folder whose ``python`` is this interpreter (what the image's ``python`` would be)."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "python").symlink_to(sys.executable)
    return folder


def _env(python_bin: Path, **extra: str) -> dict[str, str]:
    return {"PATH": f"{python_bin}{os.pathsep}{os.environ['PATH']}", "HOME": str(python_bin.parent), **extra}


def _function_task(marker: Path) -> list[str]:
    return ["task=hello", "task.inline=null", "task.target=mypkg.work.run", f"+task.params.out={marker}"]


def _record_dir(home: Path) -> Path:
    [record] = home.glob("experiments/*/*/experiment.json")
    return record.parent


# ------------------------------------------------------------------------------------------ Lepton
def _lepton_args(mount: Path, *extra: str) -> list[str]:
    return ["executor=lepton", "executor.resource_shape=cpu.small", "executor.container_image=python:3.11-slim",
            "executor.node_group_id=ng-h100-7f3a", f"executor.mounts=[{{mount_path: {mount}}}]",
            f"executor.nemo_run_dir={mount}/nemo_run", *extra]  # fmt: skip


def _run_replica(command: list[str], cwd: Path, python_bin: Path, hostname: str) -> subprocess.CompletedProcess[str]:
    """The job's container command as Lepton's replica runs it: argv as sent, cwd the image's."""
    assert command[:2] == ["/bin/bash", "-c"]
    return subprocess.run(command, cwd=cwd, env=_env(python_bin, HOSTNAME=hostname), capture_output=True, text=True, timeout=60)


def test_lepton_git_code_reaches_the_job_and_the_function_runs_in_it(repo: Path, lepton: FakeLepton, lepton_env: dict[str, str],
                                                                     nemorun_home: Path, tmp_path: Path, python_bin: Path) -> None:  # fmt: skip
    """Through the CLI and the real SDK: the body on the server mounts the storage, carries the
    archive recorded in code.json and ``cd``s into ``<nemo_run_dir>/<experiment>/<id>/<job>/code``;
    its command, run under bash, unpacks the code there and runs the shipped entry point in it."""
    mount, marker = tmp_path / "mnt", tmp_path / "ran.log"
    mount.mkdir()
    proc = run_cli([*_lepton_args(mount), *_function_task(marker), "packager=git"], env=lepton_env, cwd=str(repo))
    assert proc.returncode == 0, proc.stderr
    [body] = lepton.bodies
    record = _record_dir(nemorun_home)
    assert json.loads((record / "jobs" / "hello" / "job.json").read_text()) == body
    code_json = json.loads((record / "code.json").read_text())
    archive = (record / code_json["archive"]).read_bytes()
    command = body["spec"]["container"]["command"]
    script = command[2]
    code = mount / "nemo_run" / "hello" / record.name / "hello" / "code"
    assert body["spec"]["mounts"] == [{"path": "/", "from": "node-nfs:lepton-shared-fs", "mount_path": str(mount)}]
    assert base64.b64encode(archive).decode() in script and code_json["sha256"] in script
    assert f"\ncd {code}\n" in script
    entry_dir = f"/tmp/nemorun/hello/{record.name}/hello"
    assert script.endswith(f"exec python {entry_dir}/nemorun_entry.py {entry_dir}/function.yaml")

    image_cwd = tmp_path / "image-cwd"
    image_cwd.mkdir()
    try:
        ran = _run_replica(command, image_cwd, python_bin, "replica-0")
    finally:
        shutil.rmtree(f"/tmp/nemorun/hello/{record.name}", ignore_errors=True)
    assert ran.returncode == 0, ran.stderr
    assert (code / "mypkg" / "work.py").read_text() == WORK_PY
    assert (code / ".nemorun-sha256").read_text() == code_json["sha256"] + "\n"
    assert marker.read_text() == f"ran cwd={code} file={code}/mypkg/work.py\n"
    assert sorted(p.name for p in code.parent.iterdir()) == ["code"], "no unpack leftovers beside the code"


def _lepton_job(repo: Path, tmp_path: Path, *extra: str) -> Any:
    site = Site(experiment_id="20260101-000000-000000-lept", submit_dir=str(repo), home=str(tmp_path / "home"))
    [planned] = plan_config(compose_config([*_lepton_args(tmp_path / "mnt", *extra)]), site).jobs
    return planned


def test_lepton_replicas_unpack_once_and_a_retry_reuses_the_code(repo: Path, tmp_path: Path, python_bin: Path) -> None:
    """Two replicas start at once on the shared mount: both run, the code lands once and whole;
    a restarted replica finds the digest and leaves the code alone; a code folder holding other
    code stops the job with one line instead of running it."""
    marker = tmp_path / "ran.log"
    planned = _lepton_job(repo, tmp_path, *_function_task(marker), "packager=pattern", "packager.include_pattern=mypkg/*.py")
    command = json.loads(planned.rendered.artifacts[lepton_target.ARTIFACT])["spec"]["container"]["command"]
    code = Path(str(lepton_target.code_dir(planned.job)))
    (tmp_path / "mnt").mkdir()
    try:
        replicas = [subprocess.Popen(command, cwd=tmp_path, env=_env(python_bin, HOSTNAME=f"replica-{i}"), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True) for i in range(2)]  # fmt: skip
        outcomes = [(r.wait(timeout=60), r.communicate()[1]) for r in replicas]
        assert [rc for rc, _ in outcomes] == [0, 0], outcomes
        assert sorted(p.name for p in code.parent.iterdir()) == ["code"]
        assert sorted(p.name for p in code.iterdir()) == [".nemorun-sha256", "mypkg"]
        (code / "mypkg" / "touched-by-replica-0.txt").write_text("kept")
        again = _run_replica(command, tmp_path, python_bin, "replica-0")
        assert again.returncode == 0, again.stderr
        assert (code / "mypkg" / "touched-by-replica-0.txt").exists(), "the code was unpacked again"
        assert marker.read_text().count(f"ran cwd={code} ") == 3
        (code / ".nemorun-sha256").write_text("0" * 64 + "\n")
        other = _run_replica(command, tmp_path, python_bin, "replica-1")
        assert other.returncode == 1 and other.stderr.strip().splitlines() == [
            f"nemorun: {code} holds code other than sha256 {planned.job.package.sha256}"
        ]
        assert marker.read_text().count("ran ") == 3
    finally:
        shutil.rmtree(f"/tmp/nemorun/hello/{planned.job.experiment_id}", ignore_errors=True)


def test_lepton_code_without_nemo_run_dir_lands_in_the_replica(repo: Path, tmp_path: Path) -> None:
    """No storage named: each replica unpacks into its own /tmp (the command carries the code)."""
    site = Site(experiment_id="20260101-000000-000000-lep2", submit_dir=str(repo), home=str(tmp_path / "home"))
    args = ["executor=lepton", "executor.resource_shape=cpu.small", "executor.container_image=python:3.11-slim",
            "executor.node_group_id=ng-1", "task=hello", "packager=git"]  # fmt: skip
    [planned] = plan_config(compose_config(args), site).jobs
    assert lepton_target.code_dir(planned.job) == f"/tmp/nemorun/hello/{site.experiment_id}/hello/code"
    assert f"cd /tmp/nemorun/hello/{site.experiment_id}/hello/code" in planned.rendered.artifacts[lepton_target.ARTIFACT]


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["executor.nemo_run_dir=/elsewhere/nemo_run"], "nemo_run_dir '/elsewhere/nemo_run' is not under any of mounts[].mount_path"),
        (["executor.mounts=[{mount_path: /mnt, read_only: true}]", "executor.nemo_run_dir=/mnt/nemo_run"],
         "is on the read-only mount /mnt"),
        (["executor.resource_shape=gpu.8xh100-80gb", "executor.gpus_per_node=4"],
         "gpus_per_node=4 does not match resource_shape gpu.8xh100-80gb (8 GPUs per replica)"),
        (["executor.resource_shape=my-shape"], "resource_shape 'my-shape' does not name its GPU count"),
        (["packager=pattern", "packager.include_pattern=big.bin"], "over the 131071 Linux allows for one argument (MAX_ARG_STRLEN)"),
    ],
    ids=["not-under-a-mount", "read-only-mount", "gpus-mismatch", "unknown-shape", "archive-too-big"],
)
def test_lepton_config_mistakes_are_one_line(extra: list[str], expected: str, repo: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    (repo / "big.bin").write_bytes(os.urandom(120_000))  # incompressible: ~160 KB of base64
    proc = run_cli([*_lepton_args(tmp_path / "mnt"), "task=hello", *extra, "dryrun=true"], env=cli_env, cwd=str(repo))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("nemorun: error: ") and expected in proc.stderr, proc.stderr


def test_lepton_gpus_per_node_defaults_to_the_shape(cli_env: dict[str, str]) -> None:
    proc = run_cli(["executor=lepton", "task=ddp", "launcher=torchrun", "executor.resource_shape=gpu.8xh100-80gb",
                    "executor.container_image=x", "executor.node_group_id=ng-1", "dryrun=true"], env=cli_env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "--nproc-per-node 8" in proc.stdout
    assert [gpus_of_shape(s) for s in ("gpu.8xh100-80gb", "gpu.2xa100-40gb", "gpu.a10", "gpu.a10.6xlarge", "cpu.small", "x")] == [8, 2, 1, 1, 0, None]


# ------------------------------------------------------------------------------------ DGX Cloud
@pytest.fixture
def runai() -> Iterator[RunaiServer]:
    with RunaiServer(APP_ID, SECRET, PROJECTS) as server:
        yield server
        assert server.state.violations == [], "requests that break the Run:ai 2.24 contract"


@pytest.fixture
def dgx_env(cli_env: dict[str, str]) -> dict[str, str]:
    return {**cli_env, "DGX_APP_SECRET": SECRET}


def _dgx_args(base_url: str, pvc: Path, *extra: str) -> list[str]:
    return ["executor=dgxcloud", f"executor.base_url={base_url}", f"executor.app_id={APP_ID}",
            "executor.app_secret_env=DGX_APP_SECRET", "executor.project_name=team-a", "executor.container_image=python:3.11-slim",
            f"executor.pvcs=[{{claim_name: nemo-pvc, path: {pvc}}}]", f"executor.pvc_nemo_run_dir={pvc}/nemo_run", *extra]  # fmt: skip


def _run_like_the_pod(spec: dict[str, Any], python_bin: Path) -> subprocess.CompletedProcess[str]:
    """Run:ai's container: command + args split shell-style, in ``workingDir``."""
    argv = shlex.split(spec["command"]) + shlex.split(spec.get("args", ""))
    env = {**_env(python_bin), **{e["name"]: e["value"] for e in spec.get("environmentVariables", []) if "value" in e}}
    return subprocess.run(argv, cwd=spec["workingDir"], env=env, capture_output=True, text=True, timeout=60)


def test_dgxcloud_git_code_is_unpacked_on_the_pvc_and_the_workload_runs_in_it(repo: Path, runai: RunaiServer, dgx_env: dict[str, str],
                                                                               nemorun_home: Path, tmp_path: Path, python_bin: Path) -> None:  # fmt: skip
    """Through the CLI: before the POST the submitter unpacks the archive into the job's code
    folder on the PVC and writes the function task's files beside it; the workload sent points
    its working directory and command there, and run as the pod would, it runs the shipped code."""
    pvc, marker = tmp_path / "pvc", tmp_path / "ran.log"
    (pvc / "nemo_run").mkdir(parents=True)
    proc = run_cli([*_dgx_args(runai.base_url, pvc), *_function_task(marker), "packager=git"], env=dgx_env, cwd=str(repo))
    assert proc.returncode == 0, proc.stderr
    [sent] = runai.calls("POST", "/workloads/trainings")
    body = json.loads(sent)
    record = _record_dir(nemorun_home)
    assert json.loads((record / "jobs" / "hello" / "workload.json").read_text()) == body
    sha = json.loads((record / "code.json").read_text())["sha256"]
    job_dir = pvc / "nemo_run" / "hello" / record.name / "hello"
    spec = body["spec"]
    assert spec["workingDir"] == str(job_dir / "code")
    assert spec["annotations"] == [{"name": "nemorun/code-sha256", "value": sha}]
    assert spec["storage"]["pvc"][0]["path"] == str(pvc) and spec["storage"]["pvc"][0]["claimName"] == "nemo-pvc"
    assert (spec["command"], spec["args"]) == ("python", f"{job_dir}/nemorun_entry.py {job_dir}/function.yaml")
    assert (job_dir / "code" / "mypkg" / "work.py").read_text() == WORK_PY
    assert (job_dir / "code" / ".nemorun-sha256").read_text() == sha + "\n"
    assert (job_dir / "function.yaml").read_text() == (record / "jobs" / "hello" / "function.yaml").read_text()
    handle = json.loads((record / "jobs" / "hello" / "record.json").read_text())["handle"]
    assert handle["data"]["pvc"] == {"job_dir": str(job_dir), "code": {"dir": str(job_dir / "code"), "sha256": sha, "unpacked": True}}

    ran = _run_like_the_pod(spec, python_bin)
    assert ran.returncode == 0, ran.stderr
    assert marker.read_text() == f"ran cwd={job_dir / 'code'} file={job_dir / 'code'}/mypkg/work.py\n"


def test_dgxcloud_refuses_to_submit_outside_a_pod_that_mounts_the_pvc(repo: Path, runai: RunaiServer, dgx_env: dict[str, str],
                                                                       tmp_path: Path) -> None:  # fmt: skip
    pvc = tmp_path / "not-mounted-here"
    proc = run_cli([*_dgx_args(runai.base_url, pvc), "task=hello", "packager=git"], env=dgx_env, cwd=str(repo))
    assert proc.returncode == 2  # refused by resolve, before anything is written or sent
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f"executor.pvc_nemo_run_dir {pvc}/nemo_run does not exist here" in proc.stderr
    assert f"mounts PVC nemo-pvc at {pvc}" in proc.stderr
    assert runai.calls("POST", "/workloads/trainings") == [] and not pvc.exists()


def test_dgxcloud_unpacks_once_per_digest(repo: Path, tmp_path: Path) -> None:
    """A resubmission (resume, retry) finds the digest and leaves the code alone; a code folder
    holding other code is replaced whole."""
    pvc = tmp_path / "pvc"
    (pvc / "nemo_run").mkdir(parents=True)
    site = Site(experiment_id="20260101-000000-000000-dgx1", submit_dir=str(repo), home=str(tmp_path / "home"))
    cfg = compose_config([*_dgx_args(NO_SERVER, pvc), "task=hello", "packager=git"])
    check_config(cfg)
    packages = Packages(site)
    job = compile_job(cfg, site, package=packages.package(cfg))
    record = Path(site.experiment_dir("hello"))
    record.mkdir(parents=True)
    packages.commit(record)  # the archive in the record, as the executor leaves it before submitting
    rendered = dgx_target.render(job)
    first = dgx_submitter.place_files(rendered, job)
    code = Path(str(dgx_target.code_dir(job)))
    assert first is not None and first["code"]["unpacked"] is True
    (code / "extra.txt").write_text("kept")
    second = dgx_submitter.place_files(rendered, job)
    assert second is not None and second["code"]["unpacked"] is False and (code / "extra.txt").exists()
    (code / ".nemorun-sha256").write_text("0" * 64 + "\n")
    third = dgx_submitter.place_files(rendered, job)
    assert third is not None and third["code"]["unpacked"] is True and not (code / "extra.txt").exists()
    assert sorted(p.name for p in code.parent.iterdir()) == ["code"]


# for renders that send nothing
NO_SERVER = "https://tenant.example.com/api/v1"


@pytest.mark.parametrize(
    "extra, expected",
    [
        (["executor.pvc_nemo_run_dir=null", "packager=git"], "set executor.pvc_nemo_run_dir to a folder under one of executor.pvcs[].path"),
        (["executor.pvc_nemo_run_dir=/elsewhere"], "pvc_nemo_run_dir '/elsewhere' must lie under the path of a writable pvcs[] entry"),
        (["executor.pvcs=[{claim_name: nemo-pvc, path: /pvc, read_only: true}]", "executor.pvc_nemo_run_dir=/pvc/nemo_run"],
         "(pvcs: /pvc (nemo-pvc, read-only))"),
        (["executor.workdir=/workspace", "packager=git"], "executor.workdir=/workspace and packager=git both set the workload's working directory"),
    ],
    ids=["packager-without-pvc-dir", "not-under-a-pvc", "read-only-pvc", "workdir-and-packager"],
)
def test_dgxcloud_config_mistakes_are_one_line(extra: list[str], expected: str, repo: Path, cli_env: dict[str, str], tmp_path: Path) -> None:
    proc = run_cli([*_dgx_args(NO_SERVER, tmp_path / "pvc"), "task=hello", *extra, "dryrun=true"],
                   env={**cli_env, "DGX_APP_SECRET": SECRET}, cwd=str(repo))  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("nemorun: error: ") and expected in proc.stderr, proc.stderr


# -------------------------------------------------------------------- DGX Cloud crash recovery
@pytest.mark.parametrize("fault, existed", FAULTS)
def test_dgxcloud_workload_is_adopted_not_duplicated(runai: RunaiServer, dgx_env: dict[str, str], tmp_path: Path,
                                                     fault: str, existed: bool) -> None:  # fmt: skip
    """``kill -9`` at the fault point, then ``exp rerun ID --resume``: exactly one workload exists.
    An earlier experiment of the same name holds a workload too; ``find`` must not take it for
    this one (the name carries the experiment id's digest)."""
    args = [*_dgx_args(runai.base_url, tmp_path / "pvc"), "executor.pvc_nemo_run_dir=null", "executor.pvcs=[]", "task=hello"]
    earlier = run_cli(args, env=dgx_env)
    assert earlier.returncode == 0, earlier.stderr
    [earlier_id] = list(runai.state.workloads)
    exp = _crash_then_resume(args, dgx_env, fault, existed)
    ours = [w for w in runai.state.workloads.values() if w["workloadId"] != earlier_id]
    assert len(ours) == 1 and len(runai.state.workloads) == 2
    assert exp.record.job("hello").handle["id"] == ours[0]["workloadId"]
    assert ours[0]["name"].startswith(f"hello-{hashlib.sha256(f'{exp.id}/hello'.encode()).hexdigest()[:6]}")
    assert len(runai.calls("POST", "/workloads/trainings")) == 2
    assert len(runai.calls("GET", "/workloads")) == 1  # the resume's one look


def test_dgxcloud_workload_listing_follows_the_spec(runai: RunaiServer, dgx_env: dict[str, str], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """What the contract server answers ``GET /workloads`` with is the spec's ``Workload``, and
    the filter the submitter sends matches the spec's ``WorkloadsFilter`` pattern."""
    args = [*_dgx_args(runai.base_url, tmp_path / "pvc"), "executor.pvc_nemo_run_dir=null", "executor.pvcs=[]", "task=hello"]
    assert run_cli(args, env=dgx_env).returncode == 0
    [workload] = runai.state.workloads.values()
    client = dgx_submitter.Client(dgx_submitter.Endpoint(runai.base_url, APP_ID, {"env": "DGX_APP_SECRET"}))
    monkeypatch.setenv("DGX_APP_SECRET", SECRET)
    listed = client.call("GET", "/workloads", params={"filterBy": f"name=^{workload['requestedName']}"}).json()["workloads"]
    assert [w["id"] for w in listed] == [workload["workloadId"]]
    assert runai_errors(listed[0], "Workload") == []
    assert client.call("GET", "/workloads", params={"filterBy": "name=^other"}).json()["workloads"] == []


def test_dgxcloud_second_task_without_its_pvc_folder_sends_nothing(repo: Path, runai: RunaiServer, dgx_env: dict[str, str],
                                                                    nemorun_home: Path, tmp_path: Path) -> None:  # fmt: skip
    """The PVC folder check runs in resolve, for every task before the first is sent: task 1
    (its PVC folder here) is neither placed on the PVC nor created as a workload."""
    pvc = tmp_path / "pvc"
    (pvc / "nemo_run").mkdir(parents=True)
    gone = tmp_path / "not-mounted-here"
    conf = tmp_path / "conf"
    write_files(conf, {"experiment/two.yaml": (
        "defaults:\n  - /_schema_experiment@_here_\n  - _self_\nname: two\ntasks:\n"
        "  first:\n    overrides: [task=hello, task.name=first]\n"
        f"  second:\n    overrides: [task=hello, task.name=second, 'executor.pvcs=[{{claim_name: other-pvc, path: {gone}}}]', "
        f"'executor.pvc_nemo_run_dir={gone}/nemo_run']\n")})  # fmt: skip
    proc = run_cli(["--config-dir", str(conf), *_dgx_args(runai.base_url, pvc), "packager=git", "experiment=two"], env=dgx_env, cwd=str(repo))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("nemorun: error: job second was not submitted: "), proc.stderr
    assert f"executor.pvc_nemo_run_dir {gone}/nemo_run does not exist here" in proc.stderr and "no job of this launch was sent" in proc.stderr
    assert runai.calls("POST", "/workloads/trainings") == [] and list((pvc / "nemo_run").iterdir()) == []
