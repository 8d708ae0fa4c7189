"""A damaged, unwritable or full store gives one line and the right exit code, never a traceback,
and loses nothing else; names cannot write records outside ``NEMORUN_HOME/experiments``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nemorun.errors import ConfigError
from nemorun.store import ExperimentRecord, JobRecord, new_experiment_id
from tests.helpers import run_cli


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "NEMORUN_HOME": str(home)}


def _record(home: Path, name: str, jobs: tuple[str, ...] = ("j",)) -> ExperimentRecord:
    rec = ExperimentRecord.create(home=home, name=name, experiment_id=new_experiment_id(), target="local",
                                  config_yaml="{}\n", overrides=[], submit_dir="/", job_names=list(jobs))
    for job in jobs:
        rec.save_job(JobRecord(name=job, target="local", state="SUCCEEDED", phase="submitted"))
    return rec


def _exp(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["exp", *args], env=_env(home))


def _one_line(proc: subprocess.CompletedProcess[str], code: int) -> str:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nemorun: error: "), proc.stderr
    return lines[0]


@pytest.mark.parametrize("name", ["../../escape", "a/b", "..", ".", "x\ny", ""])
def test_record_names_cannot_leave_the_experiments_folder(tmp_path: Path, name: str) -> None:
    home = tmp_path / "home"
    with pytest.raises(ConfigError, match="must be a name"):
        _record(home, name)
    with pytest.raises(ConfigError, match="must be a name"):
        _record(home, "ok", jobs=(name,))
    assert not (home / "experiments").exists() or not any((home / "experiments").rglob("*.json"))
    assert {p.name for p in tmp_path.iterdir()} <= {"home"}


def test_job_dir_refuses_traversal(tmp_path: Path) -> None:
    rec = _record(tmp_path, "ok")
    for bad in ("../../../../pwned", "..", "a/b"):
        with pytest.raises(ConfigError):
            rec.job_dir(bad)


def test_task_name_traversal_through_the_cli(tmp_path: Path) -> None:
    proc = run_cli(["task=hello", "task.name=../../../../pwned"], env=_env(tmp_path / "home"), cwd=str(tmp_path))
    assert "must be a name" in _one_line(proc, 2)
    assert not list(tmp_path.rglob("*pwned*")) and not (tmp_path / "home" / "experiments").exists()


def test_corrupt_catalog_is_rebuilt_once_and_says_so(tmp_path: Path) -> None:
    a, b = _record(tmp_path, "a"), _record(tmp_path, "b")
    assert _exp(tmp_path, "list").returncode == 0  # the catalog learns the folders
    db = tmp_path / "catalog.db"
    db.write_bytes(db.read_bytes()[:100] + b"garbage" * 50)
    proc = _exp(tmp_path, "list", "--json")
    assert proc.returncode == 0, proc.stderr
    assert {r["id"] for r in json.loads(proc.stdout)} == {a.id, b.id}
    assert proc.stderr.count("warning") == 1 and "rebuilt" in proc.stderr and "\n" == proc.stderr[-1]
    again = _exp(tmp_path, "list", "--json")
    assert again.returncode == 0 and again.stderr == ""


def test_truncated_records_are_listed_as_damaged_and_shown_in_one_line(tmp_path: Path) -> None:
    good, bad_meta, bad_job = _record(tmp_path, "good"), _record(tmp_path, "meta"), _record(tmp_path, "job")
    assert _exp(tmp_path, "list").returncode == 0  # cached in the catalog before the damage
    (bad_meta.path / "experiment.json").write_text('{"id": "x", "na')
    (bad_job.job_dir("j") / "record.json").write_text('{"name": "j", "tar')
    proc = _exp(tmp_path, "list", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["id"]: r for r in json.loads(proc.stdout)}
    assert rows[good.id]["states"] == {"SUCCEEDED": 1} and rows[good.id]["kind"] == "single"
    assert rows[bad_meta.id]["kind"] == rows[bad_job.id]["kind"] == "damaged"
    assert rows[bad_meta.id]["states"] == {"DAMAGED": 1}
    for rec in (bad_meta, bad_job):
        for command in ("show", "status"):
            assert "damaged" in _one_line(_exp(tmp_path, command, rec.id), 1)
    assert _exp(tmp_path, "show", good.id).returncode == 0


def test_unknown_state_reads_as_unknown(tmp_path: Path) -> None:
    rec = _record(tmp_path, "odd")
    path = rec.job_dir("j") / "record.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "state": "TELEPORTED"}))
    assert rec.job("j").state == "UNKNOWN"
    proc = _exp(tmp_path, "show", rec.id)
    assert proc.returncode == 0 and "UNKNOWN" in proc.stdout, proc.stderr


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("needs root to mount a tmpfs")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_read_only_home_can_be_read(small_tmpfs: Path) -> None:
    rec = _record(small_tmpfs, "ro")
    (small_tmpfs / "catalog.db.lock").unlink(missing_ok=True)
    for extra in ("catalog.db-wal", "catalog.db-shm"):
        (small_tmpfs / extra).unlink(missing_ok=True)
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    proc = _exp(small_tmpfs, "list", "--json")
    assert proc.returncode == 0, proc.stderr
    assert [r["id"] for r in json.loads(proc.stdout)] == [rec.id]
    assert _exp(small_tmpfs, "show", rec.id).returncode == 0
    launch = run_cli(["task=hello"], env=_env(small_tmpfs))
    assert "cannot write" in _one_line(launch, 1)


def test_full_disk_leaves_no_empty_experiment_folder(small_tmpfs: Path, tmp_path: Path) -> None:
    keep = _record(small_tmpfs, "keep")
    filler = small_tmpfs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:  # fill the disk to the last block
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    proc = run_cli(["task=hello", 'task.inline="echo ' + "x" * 3000 + '"'], env=_env(small_tmpfs), cwd=str(tmp_path))
    assert "No space left on device" in _one_line(proc, 1)
    assert [p.name for p in (small_tmpfs / "experiments").iterdir()] == ["keep"]
    filler.unlink()
    assert [r["id"] for r in json.loads(_exp(small_tmpfs, "list", "--json").stdout)] == [keep.id]


def test_catalog_rebuild_is_one_transaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A catalog rebuilt from 30 folders (deleted, or a first ``exp list`` over an old home) is
    written in ONE transaction: each insert committed on its own cost a WAL sync each (500
    experiments: about a tenth of a second of a cold ``exp list``)."""
    from nemorun import catalog

    made = {_record(tmp_path, f"e{i}").id for i in range(30)}
    statements: list[str] = []
    real_open = catalog._open

    def traced(db: Path):  # the real connection, its statements recorded as SQLite runs them
        conn = real_open(db)
        conn.set_trace_callback(statements.append)
        return conn

    monkeypatch.setattr(catalog, "_open", traced)
    assert {r["id"] for r in catalog.rows(tmp_path)} == made
    writes = [i for i, s in enumerate(statements) if s.startswith(("INSERT", "DELETE"))]
    begins = [i for i, s in enumerate(statements) if s.startswith("BEGIN")]
    commits = [i for i, s in enumerate(statements) if s == "COMMIT"]
    assert len(writes) == 30 and len(begins) == len(commits) == 1, statements
    assert begins[0] < writes[0] and writes[-1] < commits[0]
    statements.clear()
    assert {r["id"] for r in catalog.rows(tmp_path)} == made  # nothing new: nothing written
    assert not [s for s in statements if s.startswith(("INSERT", "DELETE", "BEGIN"))], statements


def test_slurm_logs_on_another_file_system_are_copied_not_linked(small_tmpfs: Path, tmp_path: Path) -> None:
    """A finished Slurm job's logs are hard-linked into its record when they are on the record's
    file system; on another one (here a tmpfs: link() fails with EXDEV) they are read and
    returned for one batch write instead, byte for byte; a log never written is not invented."""
    from nemorun.states import Handle
    from nemorun.submitters import slurm

    near, far = tmp_path / "cluster", small_tmpfs / "cluster"
    jobs = []
    for i, where in enumerate((near, far)):
        where.mkdir()
        (where / "stdout.log").write_bytes(b"\x00\xffout %d\n" % i)
        dest = tmp_path / f"record-{i}"
        dest.mkdir()
        jobs.append((Handle("slurm", f"9_{i}", {"tunnel": {"kind": "local"}, "job_dir": str(where),
                                                 "stdout": str(where / "stdout.log"), "stderr": str(where / "stderr.log")}), dest))
    copies = slurm.fetch_logs(jobs)
    assert (tmp_path / "record-0" / "stdout.log").stat().st_ino == (near / "stdout.log").stat().st_ino
    assert copies == [(tmp_path / "record-1" / "stdout.log", b"\x00\xffout 1\n")]
    assert not (tmp_path / "record-1" / "stdout.log").exists()  # the caller writes the batch
    assert not any(p.name == "stderr.log" for p in tmp_path.rglob("*"))
