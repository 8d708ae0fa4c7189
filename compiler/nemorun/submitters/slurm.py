"""Backend ``slurm``: ``sbatch --parsable`` through a tunnel (this machine, or SSH).

Status works without accounting (many clusters have no slurmdbd): one ``squeue`` for all
handles on a cluster (state, reason and exit status of every array task), ``scontrol show job``
(one call per array) only for what squeue did not answer, then ``sacct`` only when accounting
answers. A job purged from slurmctld's memory with no accounting is UNKNOWN; the experiment
record keeps the last state it saw (``store.record_status``), which is then the truth.
"""
from __future__ import annotations

import base64
import os
import posixpath
import re
import time
import uuid
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Mapping, Optional, Sequence

from nemorun import slurm_probe, tunnels
from nemorun.errors import SubmitError, one_line
from nemorun.ir import Job, Rendered
from nemorun.states import AppState, Handle, JobStatus
from nemorun.store import artifact_mode
from nemorun.submitters.base import SubmitterFeatures
from nemorun.targets.slurm import (
    ARRAY_STDERR, ARRAY_STDOUT, CODE_DIR, SBATCH_SCRIPT, STDERR, STDOUT, STEP_CANCELLED, STEP_EXIT, STEP_STDERR, STEP_STDOUT,
    remote_archive, remote_job_dir, render, step_file,
)

FEATURES = SubmitterFeatures(stream=True, fetch_logs=True, array_task_handle=True, find=True, resolve=True)

# Slurm job states -> AppState (as TorchX's slurm_scheduler); anything else is UNKNOWN
SLURM_STATES: Mapping[str, AppState] = {
    "BOOT_FAIL": AppState.FAILED, "CANCELLED": AppState.CANCELLED, "COMPLETED": AppState.SUCCEEDED,
    "DEADLINE": AppState.FAILED, "FAILED": AppState.FAILED, "NODE_FAIL": AppState.FAILED,
    "OUT_OF_MEMORY": AppState.FAILED, "PREEMPTED": AppState.FAILED, "REVOKED": AppState.FAILED,
    "SPECIAL_EXIT": AppState.FAILED, "TIMEOUT": AppState.FAILED,
    "PENDING": AppState.PENDING, "REQUEUED": AppState.PENDING, "REQUEUE_FED": AppState.PENDING,
    "REQUEUE_HOLD": AppState.PENDING, "RESV_DEL_HOLD": AppState.PENDING, "RESIZING": AppState.PENDING,
    "SUSPENDED": AppState.PENDING, "STOPPED": AppState.PENDING, "CONFIGURING": AppState.PENDING,
    "RUNNING": AppState.RUNNING, "COMPLETING": AppState.RUNNING, "SIGNALING": AppState.RUNNING,
    "STAGE_OUT": AppState.RUNNING,
}
_GONE = ("Invalid job id", "already completing or completed")


def _tunnel(handle: Handle) -> tunnels.Tunnel:
    return tunnels.open_tunnel(handle.data["tunnel"])


def resolve(job: Job) -> Job:
    """Nothing to look up, but the cluster is asked here, before the job is recorded as attempted,
    whether its Slurm release has every option of the script (:mod:`nemorun.slurm_probe`): a refusal
    is then a config error with nothing left in doubt."""
    slurm_probe.check_cluster(tunnels.open_tunnel(job.executor.tunnel), job, render)
    return job


def submit(rendered: Rendered, job: Job) -> Handle:
    tunnel = tunnels.open_tunnel(job.executor.tunnel)
    remote = remote_job_dir(job)
    tunnels.check(tunnel.run(["mkdir", "-p", remote]), f"creating {remote}", tunnel.label)
    for name, text in rendered.artifacts.items():
        tunnel.write(posixpath.join(remote, name), text.encode(), artifact_mode(PurePosixPath(name)))
    code = ship_code(tunnel, job) if job.package.archive else None
    r = tunnel.run(["sbatch", "--parsable", posixpath.join(remote, SBATCH_SCRIPT)])
    if r.rc != 0:
        raise SubmitError(f"sbatch on {tunnel.label} refused job {job.name}: {one_line(r.stderr or r.stdout)}")
    job_id = r.stdout.strip().split(";", 1)[0]
    if not job_id.isdigit():
        raise SubmitError(f"sbatch on {tunnel.label} printed no job id for job {job.name}: {one_line(r.stdout + r.stderr)}")
    return _handle(job, tunnel, job_id, code)


def _user_array(job: Job) -> Optional[str]:
    """The ``--array`` a user set through ``additional_parameters`` (not a sweep's own array)."""
    for key, value in job.executor.additional_parameters.items():
        if str(key).replace("_", "-") == "array" and value not in (None, False):
            return str(value)
    return None


def _first_array_index(spec: str) -> int:
    """The first task of an ``--array`` spec (``0-15%4``, ``1,3,5``, ``2-10:2``)."""
    first = spec.split("%", 1)[0].split(",", 1)[0].split(":", 1)[0].split("-", 1)[0]
    return int(first) if first.strip().isdigit() else 0


def _handle(job: Job, tunnel: tunnels.Tunnel, job_id: str, code: Optional[dict[str, object]]) -> Handle:
    """A user ``--array`` writes one log pair per task (``stdout-%a.log``): the handle names the
    first task's, so ``exp logs`` shows real output instead of a file that never exists."""
    remote = remote_job_dir(job)
    user_array = _user_array(job)
    out, err = STDOUT, STDERR
    if user_array is not None:
        index = str(_first_array_index(user_array))
        out, err = ARRAY_STDOUT.replace("%a", index), ARRAY_STDERR.replace("%a", index)
    return Handle(
        backend="slurm",
        id=job_id,
        data={
            "tunnel": tunnels.tunnel_spec(job.executor.tunnel),
            "host": tunnel.label,
            "job_dir": remote,
            "stdout": posixpath.join(remote, out),
            "stderr": posixpath.join(remote, err),
            **({"code": code} if code else {}),
        },
    )


# the id of a job found only by the logs it left (slurmctld forgot it, no accounting): status
# reports it UNKNOWN without asking Slurm about an id it never had
ENDED_UNLISTED = "ended-unlisted"


def find(job: Job) -> Optional[Handle]:
    """The job a crashed launch may have submitted, found by its batch script's path.

    slurmctld keeps every job's ``Command`` (the script path sbatch was given), and nemorun
    alone writes ``<remote job dir>/sbatch.sh`` — unique per experiment and job, which the
    user-settable job name and comment are not — so ``squeue`` finds the job without
    accounting. A job that ended longer than ``MinJobAge`` ago has left squeue: then the logs it
    wrote in its job dir (Slurm creates them when the job starts) still prove it ran. Raises
    SubmitError when the cluster cannot be asked: resubmitting blind could run the job twice.
    """
    tunnel = tunnels.open_tunnel(job.executor.tunnel)
    remote = remote_job_dir(job)
    script = posixpath.join(remote, SBATCH_SCRIPT)
    r = tunnel.run(["squeue", "-h", "-t", "all", "-o", "%F|%o"])
    if r.rc != 0:
        raise SubmitError(f"squeue on {tunnel.label} failed while looking for job {job.name}: {one_line(r.stderr or r.stdout)}")
    for line in r.stdout.splitlines():
        base_id, _, command = line.strip().partition("|")
        if base_id.isdigit() and (command == script or (not script.startswith("/") and command.endswith("/" + script))):
            return _handle(job, tunnel, base_id, _shipped(job))
    if job.array_tasks:
        logs = {p.replace("%a", str(i)) for p in (ARRAY_STDOUT, ARRAY_STDERR) for i in range(len(job.array_tasks))}
    elif _user_array(job) is not None:
        index = str(_first_array_index(str(_user_array(job))))
        logs = {ARRAY_STDOUT.replace("%a", index), ARRAY_STDERR.replace("%a", index)}
    else:
        logs = {STDOUT, STDERR}
    listed = tunnel.run(["ls", "-1", remote])
    if listed.rc == 0 and logs & set(listed.stdout.split()):
        return _handle(job, tunnel, ENDED_UNLISTED, _shipped(job))
    return None


def _shipped(job: Job) -> Optional[dict[str, object]]:
    """What ``ship_code`` would have recorded for a job found after a crash (whether the
    archive was uploaded then is not known)."""
    if not job.package.archive:
        return None
    return {"archive": str(remote_archive(job)), "sha256": job.package.sha256}


def ship_code(tunnel: tunnels.Tunnel, job: Job) -> dict[str, object]:
    """Upload the archive unless the cluster already has this digest, then unpack it into
    ``<job dir>/code``. The upload lands under a temporary name and is renamed, so a file with
    the archive's name is always complete (a concurrent or interrupted upload never counts)."""
    local, remote = str(job.package.archive), str(remote_archive(job))
    unpack = posixpath.join(remote_job_dir(job), CODE_DIR)
    tunnels.check(tunnel.run(["mkdir", "-p", posixpath.dirname(remote), unpack]), f"creating {unpack}", tunnel.label)
    uploaded = remote != local and tunnel.run(["test", "-f", remote]).rc != 0
    if uploaded:
        part = f"{remote}.part-{uuid.uuid4().hex[:8]}"
        tunnel.put(local, part)
        tunnels.check(tunnel.run(["mv", "-f", part, remote]), f"storing {remote}", tunnel.label)
    tunnels.check(tunnel.run(["tar", "-xzf", remote, "-C", unpack]), f"unpacking {remote}", tunnel.label)
    return {"archive": remote, "sha256": job.package.sha256, "uploaded": uploaded}


def _exit_code(text: str) -> Optional[int]:
    """Slurm's ``code:signal`` as a shell-style exit code (128+signal for signal deaths)."""
    m = re.match(r"^(\d+):(\d+)$", text.strip())
    if not m:
        return None
    code, sig = int(m.group(1)), int(m.group(2))
    return 128 + sig if sig else code


def _status(native: str, exit_code: Optional[int], reason: str) -> JobStatus:
    base = native.split()[0].rstrip("+") if native else ""
    detail = native if reason in ("", "None", "(null)") else f"{native} ({reason})"
    return JobStatus(SLURM_STATES.get(base, AppState.UNKNOWN), exit_code, detail)


# One squeue answers for every listed job, array task by array task (-r), exit status included:
# ``exit_code`` is the job's wait status, the value scontrol shows as ``code:signal``.
_SQUEUE_FORMAT = "JobArrayID:|,State:|,Reason:|,exit_code:|"


def _wait_status(text: str) -> Optional[int]:
    """squeue's ``exit_code`` (a wait status) as a shell-style exit code, like :func:`_exit_code`."""
    if not text.strip().isdigit():
        return None
    raw = int(text)
    return 128 + (raw & 0x7F) if raw & 0x7F else (raw >> 8) & 0xFF


def _squeue(tunnel: tunnels.Tunnel, ids: Sequence[str]) -> dict[str, JobStatus]:
    r = tunnel.run(["squeue", "-h", "-r", "-t", "all", "-j", ",".join(ids), "-O", _SQUEUE_FORMAT])
    if r.rc != 0:
        if "Invalid job id" in r.stderr:
            return {}  # a single id that slurmctld has purged
        raise SubmitError(f"squeue on {tunnel.label} failed: {one_line(r.stderr)}")
    rows = {}
    for line in r.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 4:
            job_id, _, component = parts[0].partition("+")
            if component in ("", "0"):  # a heterogeneous job is listed per component: the first stands for it
                status = _status(parts[1], None, parts[2])
                if status.state.is_terminal:
                    status = _status(parts[1], _wait_status(parts[3]), parts[2])
                rows[job_id] = status
    return rows


def _scontrol(tunnel: tunnels.Tunnel, ids: Sequence[str]) -> dict[str, JobStatus]:
    """``scontrol show job`` takes one id (22.05 refuses a list) but lists every task of an array
    for the array's id: one call per array, not per task."""
    out: dict[str, JobStatus] = {}
    for base in dict.fromkeys(i.partition("_")[0] for i in ids):
        r = tunnel.run(["scontrol", "-o", "show", "job", base])
        if r.rc != 0:
            continue
        for line in r.stdout.splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if "JobState" not in fields or fields.get("HetJobOffset", "0") not in ("", "0"):
                continue
            task = fields.get("ArrayTaskId", "")
            key = f"{fields.get('ArrayJobId')}_{task}" if task.isdigit() else fields.get("JobId", "")
            out[key] = _status(fields["JobState"], _exit_code(fields.get("ExitCode", "")), fields.get("Reason", ""))
    return {i: out[i] for i in ids if i in out}


def _sacct(tunnel: tunnels.Tunnel, ids: Sequence[str]) -> dict[str, JobStatus]:
    """From accounting when it answers: slurmdbd (plain sacct), else the job-completion log (-c)."""
    for extra in ([], ["-c"]):
        r = tunnel.run(["sacct", *extra, "-n", "-P", "-X", "-j", ",".join(ids), "-o", "JobID,State,ExitCode"])
        if r.rc == 0:
            found = {}
            for line in r.stdout.splitlines():
                parts = line.strip().split("|")
                if len(parts) == 3 and parts[0] in ids:
                    found[parts[0]] = _status(parts[1], _exit_code(parts[2]), "from accounting")
            return found
    return {}


def _status_on(tunnel: tunnels.Tunnel, ids: Sequence[str]) -> dict[str, JobStatus]:
    out = _squeue(tunnel, ids)
    # scontrol only for finished jobs squeue gave no exit status (another squeue) or did not list
    unsure = [i for i in ids if i not in out or (out[i].state.is_terminal and out[i].exit_code is None)]
    if unsure:
        out.update(_scontrol(tunnel, unsure))
    missing = [i for i in ids if i not in out]
    if missing:
        out.update(_sacct(tunnel, missing))
    for job_id in ids:
        out.setdefault(job_id, JobStatus(AppState.UNKNOWN, None, "no longer known to slurmctld and no accounting"))
    return {i: out[i] for i in ids}


def status(handles: Sequence[Handle]) -> dict[str, JobStatus]:
    steps = [h for h in handles if "step" in h.data]
    if steps:  # one query for the jobs of all steps, then each step from its exit file
        jobs = {h.data["job_id"]: Handle("slurm", h.data["job_id"], {k: v for k, v in h.data.items() if k != "step"}) for h in steps}
        plain = [h for h in handles if "step" not in h.data]
        found = status([*plain, *(j for i, j in jobs.items() if i not in {h.id for h in plain})])
        return {**{h.id: found[h.id] for h in plain}, **{h.id: _step_status(h, found[h.data["job_id"]]) for h in steps}}
    groups: dict[str, list[Handle]] = {}
    for h in handles:
        groups.setdefault(repr(sorted(h.data["tunnel"].items())), []).append(h)
    out: dict[str, JobStatus] = {}
    for group in groups.values():
        ids = [h.id for h in group if not h.id.startswith(ENDED_UNLISTED)]
        if ids:
            out.update(_status_on(_tunnel(group[0]), ids))
    for h in handles:
        if h.id.startswith(ENDED_UNLISTED):
            out[h.id] = JobStatus(AppState.UNKNOWN, None, "ran (its logs exist) and was forgotten by slurmctld before a resume found it")
    return out


def array_task_handle(handle: Handle, index: int) -> Handle:
    """Task ``index`` of an array job (a sweep, nemorun.sweep): ``<id>_<index>`` and its own logs."""
    remote = handle.data["job_dir"]
    logs = {k: posixpath.join(remote, name.replace("%a", str(index))) for k, name in (("stdout", ARRAY_STDOUT), ("stderr", ARRAY_STDERR))}
    return Handle(backend="slurm", id=f"{handle.id}_{index}", data={**handle.data, **logs})


def step_handle(handle: Handle, step: str) -> Handle:
    """Task ``step`` of an allocation (nemorun.allocations): the job's id and the step's name,
    its own log files and the file its exit status is written to (status without accounting)."""
    remote = handle.data["job_dir"]
    return Handle(backend="slurm", id=f"{handle.id}:{step}", data={
        **handle.data, "job_id": handle.id, "step": step,
        "stdout": posixpath.join(remote, step_file(STEP_STDOUT, step)),
        "stderr": posixpath.join(remote, step_file(STEP_STDERR, step)),
        "exit_file": posixpath.join(remote, step_file(STEP_EXIT, step)),
        "cancel_file": posixpath.join(remote, step_file(STEP_CANCELLED, step)),
    })


def _step_status(handle: Handle, job: JobStatus) -> JobStatus:
    """A step ends with its job (the whole job is requeued, so a step that exited may run again):
    while the job lives the step shows the job's state; once it has ended, the step's own exit
    status, or the job's end when the step never reported one (cancelled before it started)."""
    tunnel = _tunnel(handle)
    text = tunnel.read(str(handle.data["exit_file"])).decode(errors="replace").strip()
    rc = int(text) if text.isdigit() else None
    if rc != 0 and (job.state is AppState.CANCELLED or (rc is not None and tunnel.read(str(handle.data["cancel_file"])))):
        return JobStatus(AppState.CANCELLED, rc, f"step of job {handle.data['job_id']} cancelled")
    if not job.state.is_terminal:
        note = f"step exited with {rc}; " if rc is not None else ""
        return JobStatus(job.state, None, f"{note}job {handle.data['job_id']} {job.detail}".strip())
    if rc is None:
        return JobStatus(job.state, job.exit_code, f"job {handle.data['job_id']} ended {job.detail} before this step reported")
    if rc == 0:
        return JobStatus(AppState.SUCCEEDED, 0, f"step of job {handle.data['job_id']}")
    return JobStatus(AppState.FAILED, rc, f"step of job {handle.data['job_id']} exited with {rc}")


def _cancel_step(tunnel: tunnels.Tunnel, handle: Handle) -> None:
    """``scancel`` of the step's own id (looked up by its name), leaving the other steps running.
    A step of a job still pending has no id yet: refused, naming what to cancel instead."""
    job_id, step = str(handle.data["job_id"]), str(handle.data["step"])
    r = tunnel.run(["squeue", "-h", "-s", "-j", job_id, "-o", "%i|%j"])
    ids = [i for i, _, name in (line.strip().partition("|") for line in r.stdout.splitlines()) if name == step]
    if not ids:
        job = _status_on(tunnel, [job_id])[job_id]
        if job.state in (AppState.PENDING, AppState.SUBMITTED):
            allocation = posixpath.basename(str(handle.data["job_dir"]).rstrip("/"))
            raise SubmitError(f"step {step} of job {job_id} has not started (job {job.state}); cancel its allocation "
                              f"{allocation} instead, which cancels every step")
        return  # the step has ended
    tunnel.write(str(handle.data["cancel_file"]), b"cancelled by nemorun\n")
    r = tunnel.run(["scancel", *ids])
    if r.rc != 0 and not any(g in r.stderr for g in _GONE):
        raise SubmitError(f"scancel {' '.join(ids)} on {tunnel.label} failed: {one_line(r.stderr)}")


def cancel(handle: Handle) -> None:
    tunnel = _tunnel(handle)
    if "step" in handle.data:
        _cancel_step(tunnel, handle)
        return
    r = tunnel.run(["scancel", handle.id])
    if r.rc != 0 and not any(g in r.stderr for g in _GONE):
        raise SubmitError(f"scancel {handle.id} on {tunnel.label} failed: {one_line(r.stderr)}")


def _ended(handle: Handle) -> Callable[[], bool]:
    def ended() -> bool:
        state = status([handle])[handle.id].state
        return state.is_terminal or state is AppState.UNKNOWN

    return ended


def follow_files(tunnel: tunnels.Tunnel, paths: Mapping[str, str], done: Callable[[], bool], poll: float = 0.5) -> Iterator[tuple[str, str]]:
    """``(stream, line)`` from growing files read through the tunnel, until ``done()`` and drained."""
    offsets = {name: 0 for name in paths}
    partial = {name: b"" for name in paths}
    while True:
        finished = done()
        progressed = False
        for name, path in paths.items():
            chunk = tunnel.read(path, offsets[name])
            if not chunk:
                continue
            progressed = True
            offsets[name] += len(chunk)
            *lines, partial[name] = (partial[name] + chunk).split(b"\n")
            for line in lines:
                yield name, line.decode(errors="replace") + "\n"
        if finished and not progressed:
            for name, rest in partial.items():
                if rest:
                    yield name, rest.decode(errors="replace")
            return
        if not progressed:
            time.sleep(poll)


def _paths(handle: Handle) -> dict[str, str]:
    return {"stdout": str(handle.data["stdout"]), "stderr": str(handle.data["stderr"])}


def logs(handle: Handle, follow: bool = False) -> Iterator[str]:
    done: Callable[[], bool] = _ended(handle) if follow else (lambda: True)
    for _stream, line in follow_files(_tunnel(handle), _paths(handle), done):
        yield line


# where a finished job's output is kept in its record folder (the names ``exp logs`` reads first)
_KEPT_LOGS = (("stdout", "stdout.log"), ("stderr", "stderr.log"))


def fetch_logs(jobs: Sequence[tuple[Handle, Path]]) -> list[tuple[Path, bytes]]:
    """Keep finished jobs' output in their record folders (``stdout.log``, ``stderr.log``): the
    cluster purges its job dirs, the record must not lose the output with them.

    When the log files are on this machine (local tunnel, on the record's file system) each is
    HARD-LINKED: no byte is copied and no file is created, which for a 1,000-task array is the
    difference between ~2,000 new files (the cost of its first ``exp status``) and 2,000
    directory entries; the output survives the cluster deleting its name for it. The link is
    made once the job has ended (Slurm has closed the file); a later requeue of the same job
    rewrites it, as it rewrites the cluster's copy. Durability comes from the caller's next
    batch sync (the state records are written after the logs). The rest (SSH, another file
    system, a file this user may not link) is read in as few commands as possible
    (:func:`_read_many`) and returned as ``(path, bytes)`` for the caller to write in ONE batch.
    A file missing or unreadable is skipped: ``exp logs`` then asks the cluster."""
    to_read: dict[int, tuple[tunnels.Tunnel, list[tuple[str, Path]]]] = {}
    for handle, dest in jobs:
        tunnel = _tunnel(handle)
        for stream, name in _KEPT_LOGS:
            src = str(handle.data.get(stream) or "")
            if not src:
                continue
            if isinstance(tunnel, tunnels.LocalTunnel):
                try:
                    os.link(src, dest / name)
                    continue
                except FileExistsError:
                    continue
                except OSError:
                    if not os.path.exists(src):
                        continue  # never written (a job cancelled while pending, no stderr)
            to_read.setdefault(id(tunnel), (tunnel, []))[1].append((src, dest / name))
    copies: list[tuple[Path, bytes]] = []
    for tunnel, wanted in to_read.values():
        for start in range(0, len(wanted), _READ_CHUNK):
            chunk = wanted[start:start + _READ_CHUNK]
            for (_, path), data in zip(chunk, _read_many(tunnel, [src for src, _ in chunk])):
                if data is not None:
                    copies.append((path, data))
    return copies


# files per remote command when reading many (bounded by the command line's length, ARG_MAX)
_READ_CHUNK = 256
# one remote command for many files: "<index> <base64>" per file that exists (text-safe through
# the tunnel whatever the bytes); base64 is coreutils, on every Slurm login node
_READ_MANY = 'i=0; for f; do if [ -f "$f" ]; then printf "%s " "$i"; base64 -w0 < "$f" || exit 1; echo; fi; i=$((i+1)); done'


def _read_many(tunnel: tunnels.Tunnel, paths: Sequence[str]) -> list[Optional[bytes]]:
    """The files' bytes (None: absent) in ONE command over SSH instead of an SFTP round trip
    each (2,000 for a finished 1,000-task array); file by file where that command fails."""
    if not isinstance(tunnel, tunnels.LocalTunnel):
        try:
            r = tunnel.run(["sh", "-c", _READ_MANY, "sh", *paths])
        except SubmitError:
            return [None] * len(paths)  # unreachable: exp logs asks again later
        if r.rc == 0:
            found: list[Optional[bytes]] = [None] * len(paths)
            try:
                for line in r.stdout.splitlines():
                    index, _, text = line.partition(" ")
                    found[int(index)] = base64.b64decode(text, validate=True)
                return found
            except (ValueError, IndexError):
                pass  # not the answer asked for (a login banner on stdout?): file by file
    out: list[Optional[bytes]] = []
    for path in paths:
        try:
            out.append(tunnel.read(path) or None)
        except (SubmitError, OSError):
            out.append(None)
    return out


def stream(handle: Handle) -> Iterator[tuple[str, str]]:
    """``(stream, line)`` pairs until the job ends: what ``wait=true`` shows."""
    return follow_files(_tunnel(handle), _paths(handle), _ended(handle))


