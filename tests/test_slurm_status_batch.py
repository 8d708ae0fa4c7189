"""``exp status`` of a job array on the real Slurm test cluster (``slurm_cluster`` fixture, 22.05):
ONE ``squeue`` answers state, reason and exit status of every task, whatever the array's size
(it was one ``scontrol`` per finished task: 1,000 calls for a 1,000-task sweep), each job record
is read once, and a poll that sees nothing new rewrites no record.

Slurm's clients are wrapped by scripts on PATH that log their name and exec the real binary, so
the calls are counted while the answers stay Slurm's own."""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from nemorun import catalog, cli, store, tunnels
from nemorun.states import AppState, Handle
from nemorun.store import CHECKED_FILE, JOB_FILE, ExperimentRecord, JobRecord, new_experiment_id
from nemorun.submitters import slurm
from tests.fixtures.slurm_cluster import SlurmCluster, wait_for_job_end

pytestmark = pytest.mark.slurm

PROGRAMS = ("squeue", "scontrol", "sacct")


@pytest.fixture
def counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """PATH wrappers around the real Slurm clients; yields the file each call is logged to."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls.txt"
    bin_dir.mkdir()
    for prog in PROGRAMS:
        real = shutil.which(prog)
        assert real, f"{prog} not installed"
        (bin_dir / prog).write_text(f'#!/bin/sh\necho "{prog} $*" >> {calls}\nexec {real} "$@"\n')
        (bin_dir / prog).chmod(0o755)
    calls.write_text("")
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    yield calls


def _programs(calls: Path) -> list[str]:
    return [line.split()[0] for line in calls.read_text().splitlines()]


def _sbatch(*args: str, output: str = "/dev/null") -> str:
    r = subprocess.run(["sbatch", "--parsable", "-o", output, *args], capture_output=True, text=True, check=True)
    return r.stdout.strip().split(";")[0]


def _finished_array(tmp_path: Path, tasks: int) -> str:
    """A real array whose task i prints its index and exits with i % 3, run to its end; its logs
    in ``tmp_path/remote``."""
    script = tmp_path / "task.sh"
    script.write_text("#!/bin/bash\necho task $SLURM_ARRAY_TASK_ID\nexit $((SLURM_ARRAY_TASK_ID % 3))\n")
    (tmp_path / "remote").mkdir(exist_ok=True)
    array = _sbatch(f"--array=0-{tasks - 1}", str(script), output=str(tmp_path / "remote" / "stdout-%a.log"))
    for i in range(tasks):
        wait_for_job_end(f"{array}_{i}", timeout=120)
    return array


def _handle(job_id: str) -> Handle:
    return Handle("slurm", job_id, {"tunnel": {"kind": "local"}, "job_dir": "/nonexistent"})


def _record(home: Path, array: str, tasks: int, remote: Path) -> ExperimentRecord:
    """An experiment whose jobs are the array's tasks, recorded as a launch records them."""
    names = [f"train-{i}" for i in range(tasks)]
    rec = ExperimentRecord.create(home=home, name="train", experiment_id=new_experiment_id(), target="slurm",
                                  config_yaml="{}\n", overrides=["task=train"], submit_dir=str(home), job_names=names,
                                  kind="sweep", multirun=True)
    rec.save_jobs(JobRecord(n, "slurm", phase="submitted", state=AppState.SUBMITTED.value, overrides=[f"task.params.lr={i}"],
                            array="train-array", array_index=i, handle={"backend": "slurm", "id": f"{array}_{i}", "data": {
                                "tunnel": {"kind": "local"}, "job_dir": str(remote), "stdout": str(remote / f"stdout-{i}.log"),
                                "stderr": str(remote / f"stderr-{i}.log")}})
                  for i, n in enumerate(names))
    catalog.refresh(home, rec)  # as a launch leaves it
    return rec


def _exp_status(exp_id: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            rc = cli.main(["exp", "status", exp_id, "--json"])
        except SystemExit as exc:
            rc = int(exc.code or 0)
    return rc or 0, out.getvalue()


def test_finished_array_states_and_exit_codes_from_one_squeue(slurm_cluster: SlurmCluster, tmp_path: Path,
                                                               counted: Path) -> None:
    array = _finished_array(tmp_path, 6)
    plain = _sbatch("--wrap", "exit 4")
    killed = _sbatch("--wrap", "kill -9 $$")
    for job in (plain, killed):
        wait_for_job_end(job, timeout=120)
    calls_before = len(_programs(counted))
    handles = [_handle(f"{array}_{i}") for i in range(6)] + [_handle(plain), _handle(killed)]
    found = slurm.status(handles)
    assert _programs(counted)[calls_before:] == ["squeue"]  # not one scontrol per finished task
    assert [(found[f"{array}_{i}"].state, found[f"{array}_{i}"].exit_code) for i in range(6)] == [
        (AppState.SUCCEEDED, 0), (AppState.FAILED, 1), (AppState.FAILED, 2)] * 2
    assert (found[plain].state, found[plain].exit_code) == (AppState.FAILED, 4)
    assert (found[killed].state, found[killed].exit_code) == (AppState.FAILED, 128 + 9)  # scontrol says 0:9


def test_scontrol_fallback_is_one_call_per_array(slurm_cluster: SlurmCluster, tmp_path: Path, counted: Path) -> None:
    """What squeue cannot answer goes to scontrol, which (22.05) takes one id but lists every
    task for the array's id: one call for the whole array and one for the plain job."""
    array = _finished_array(tmp_path, 4)
    plain = _sbatch("--wrap", "exit 5")
    wait_for_job_end(plain, timeout=120)
    calls_before = len(_programs(counted))
    found = slurm._scontrol(tunnels.open_tunnel({"kind": "local"}), [f"{array}_{i}" for i in range(4)] + [plain, "99999999"])
    assert _programs(counted)[calls_before:] == ["scontrol", "scontrol", "scontrol"]  # array, plain job, unknown id
    assert [found[f"{array}_{i}"].exit_code for i in range(4)] == [0, 1, 2, 0]
    assert (found[plain].state, found[plain].exit_code) == (AppState.FAILED, 5)
    assert "99999999" not in found


def test_exp_status_reads_each_record_once(slurm_cluster: SlurmCluster, tmp_path: Path, counted: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    tasks = 6
    array = _finished_array(tmp_path, tasks)
    home = tmp_path / "home"
    monkeypatch.setenv("NEMORUN_HOME", str(home))
    rec = _record(home, array, tasks, tmp_path / "remote")
    reads: list[str] = []
    real_read = store._read_json

    def counting(path: Path) -> object:
        if path.name == JOB_FILE:
            reads.append(path.parent.name)
        return real_read(path)

    monkeypatch.setattr(store, "_read_json", counting)
    calls_before = len(_programs(counted))
    rc, out = _exp_status(rec.id)
    assert rc == 0, out
    jobs = json.loads(out)["jobs"]
    assert [(jobs[f"train-{i}"]["state"], jobs[f"train-{i}"]["exit_code"]) for i in range(tasks)] == [
        ("SUCCEEDED", 0), ("FAILED", 1), ("FAILED", 2)] * 2
    assert _programs(counted)[calls_before:] == ["squeue"]
    # read once, to find the handles: the new states go into states.json and no record is read
    # again before a write (a concurrent `exp cancel` gives its record a new rev, over which the
    # table does not apply); it was 5 reads each, then 2
    assert sorted(reads) == [f"train-{i}" for i in range(tasks)], reads
    assert ExperimentRecord(rec.path).job("train-1").exit_code == 1
    # the finished tasks' logs are kept in their folders: hard links to the cluster's files (on
    # this machine: no copy, no new file), which outlive the cluster deleting its job dir
    remote = tmp_path / "remote"
    kept = [rec.job_dir(f"train-{i}") / "stdout.log" for i in range(tasks)]
    assert [k.stat().st_ino for k in kept] == [(remote / f"stdout-{i}.log").stat().st_ino for i in range(tasks)]
    assert not any((rec.job_dir(f"train-{i}") / "output.log").exists() for i in range(tasks))
    shutil.rmtree(remote)
    for i in range(tasks):
        logs = io.StringIO()
        with contextlib.redirect_stdout(logs), contextlib.suppress(SystemExit):
            cli.main(["exp", "logs", rec.id, f"train-{i}"])
        assert logs.getvalue() == f"task {i}\n"


def test_poll_without_news_rewrites_no_record(slurm_cluster: SlurmCluster, tmp_path: Path, counted: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A held (PENDING) array polled twice: the second poll writes no job record, only the time
    of the check, which ``exp list`` shows as "as of"."""
    array = _sbatch("--hold", "--array=0-2", "--wrap", "true")
    try:
        home = tmp_path / "home"
        monkeypatch.setenv("NEMORUN_HOME", str(home))
        rec = _record(home, array, 3, tmp_path / "remote")
        assert _exp_status(rec.id)[0] == 0
        files = [rec.job_dir(f"train-{i}") / JOB_FILE for i in range(3)]
        assert {ExperimentRecord(rec.path).job(f"train-{i}").state for i in range(3)} == {"PENDING"}
        first = [f.stat().st_mtime_ns for f in files]
        checked = (rec.path / CHECKED_FILE).read_text()
        time.sleep(0.05)
        rc, out = _exp_status(rec.id)
        assert rc == 0 and {j["state"] for j in json.loads(out)["jobs"].values()} == {"PENDING"}
        assert [f.stat().st_mtime_ns for f in files] == first
        assert float((rec.path / CHECKED_FILE).read_text()) > float(checked)
        listed = io.StringIO()
        with contextlib.redirect_stdout(listed), contextlib.suppress(SystemExit):
            cli.main(["exp", "list"])
        assert "PENDING:3 (as of " in listed.getvalue()
    finally:
        subprocess.run(["scancel", array], capture_output=True)


# Runs ``nemorun exp status`` with one os function wrapped to SIGKILL the process at its Nth call:
# a status killed exactly there, mid-batch, as a kill -9 or a power cut would stop it.
_KILLED_AT = """
import os, signal, sys
from nemorun import cli
name, at = sys.argv[1], int(sys.argv[2])
real, calls = getattr(os, name), [0]
def dying(*args, **kwargs):
    calls[0] += 1
    if calls[0] == at:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
setattr(os, name, dying)
cli.main(sys.argv[3:])
"""


@pytest.mark.parametrize("call, at", [("link", 1), ("link", 4), ("replace", 1), ("replace", 2)])
def test_status_killed_mid_write_leaves_a_readable_store_and_loses_no_log(
        slurm_cluster: SlurmCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str, at: int) -> None:
    """kill -9 while the logs are being kept (os.link) or the new states renamed into place
    (os.replace: states.json, then the time of the check): every record still reads, old or new; no record says a task ended whose logs
    were not kept (they are kept BEFORE the records say so: a finished record is never asked
    about again, so the other order lost them for good); the next status completes the lot."""
    tasks = 6
    array = _finished_array(tmp_path, tasks)
    home, remote = tmp_path / "home", tmp_path / "remote"
    monkeypatch.setenv("NEMORUN_HOME", str(home))
    rec = _record(home, array, tasks, remote)
    killed = subprocess.run([sys.executable, "-c", _KILLED_AT, call, str(at), "exp", "status", rec.id],
                            capture_output=True, text=True, cwd=tmp_path)
    assert killed.returncode == -signal.SIGKILL, (killed.stdout, killed.stderr)
    names = [f"train-{i}" for i in range(tasks)]
    after_kill = {n: ExperimentRecord(rec.path).job(n) for n in names}  # every record reads
    assert {r.state for r in after_kill.values()} <= {"SUBMITTED", "SUCCEEDED", "FAILED"}
    for n, r in after_kill.items():
        if r.app_state.is_terminal:
            assert (rec.job_dir(n) / "stdout.log").exists(), f"{n} recorded {r.state} without its logs"
    listed = io.StringIO()
    with contextlib.redirect_stdout(listed), contextlib.suppress(SystemExit):
        cli.main(["exp", "list", "--json"])
    assert [r["id"] for r in json.loads(listed.getvalue())] == [rec.id]
    rc, out = _exp_status(rec.id)
    assert rc == 0, out
    jobs = json.loads(out)["jobs"]
    assert [(jobs[n]["state"], jobs[n]["exit_code"]) for n in names] == [("SUCCEEDED", 0), ("FAILED", 1), ("FAILED", 2)] * 2
    shutil.rmtree(remote)  # the cluster purges its job dir: the record keeps every task's output
    assert [(rec.job_dir(n) / "stdout.log").read_text() for n in names] == [f"task {i}\n" for i in range(tasks)]


def test_logs_over_ssh_are_read_in_a_few_commands(slurm_cluster: SlurmCluster, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A finished array's logs on a cluster reached over SSH (the fixture's sshd): one remote
    command per 256 files, not an SFTP round trip per file (2,000 for 1,000 tasks); any bytes
    arrive as written, and a file that does not exist is not invented."""
    remote = slurm_cluster.jobs_dir / f"ssh-logs-{tmp_path.name}"
    remote.mkdir(parents=True)
    spec = {"kind": "ssh", "host": slurm_cluster.ssh_host, "port": slurm_cluster.ssh_port, "user": slurm_cluster.ssh_user,
            "identity": slurm_cluster.ssh_key, "known_hosts": slurm_cluster.known_hosts}
    tasks, expected = 300, {}
    for i in range(tasks):
        out = bytes(range(256))[: i % 256] + f"task {i}\n".encode()  # every byte value, not only text
        (remote / f"stdout-{i}.log").write_bytes(out)
        expected[tmp_path / f"train-{i}" / "stdout.log"] = out
        if i % 3 == 0:
            (remote / f"stderr-{i}.log").write_bytes(b"warn\n")
            expected[tmp_path / f"train-{i}" / "stderr.log"] = b"warn\n"
    handles = [(Handle("slurm", f"5_{i}", {"tunnel": spec, "job_dir": str(remote), "stdout": str(remote / f"stdout-{i}.log"),
                                          "stderr": str(remote / f"stderr-{i}.log")}), tmp_path / f"train-{i}")
               for i in range(tasks)]
    tunnel = tunnels.open_tunnel(spec)
    used: list[str] = []
    for method in ("run", "read"):
        real = getattr(tunnel, method)
        monkeypatch.setattr(tunnel, method, lambda *a, _real=real, _m=method: (used.append(_m), _real(*a))[1])
    try:
        copies = slurm.fetch_logs(handles)
    finally:
        tunnels.close_all()
    assert dict(copies) == expected
    assert used == ["run"] * 3  # 600 paths (stdout and stderr of 300 tasks) in chunks of 256
