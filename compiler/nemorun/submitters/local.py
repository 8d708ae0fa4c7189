"""Backend ``local``: ``launch.sh`` runs detached on this machine.

The job runs in its own session (so Ctrl-C on nemorun or nemorun's exit does not touch it)
under a small bash wrapper that writes the exit code into the job folder when the job ends.
That file, not a live nemorun process, is how the exit code reaches the record — also for jobs
that end long after nemorun returned. A job with retries re-runs its task inside ``launch.sh``
(see ``nemorun.targets.local``); the ``attempts`` file it keeps is what status shows as detail.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Mapping, Optional, Sequence

from nemorun.errors import ConfigError, SubmitError
from nemorun.local_files import ATTEMPTS_FILE
from nemorun.states import AppState, Handle, JobStatus
from nemorun.submitters.base import SubmitterFeatures

if TYPE_CHECKING:  # annotations only: the IR loads the schemas and OmegaConf, which a status never needs
    from nemorun.ir import Job, Rendered

FEATURES = SubmitterFeatures(stream=True, find=True, resolve=True)

EXIT_CODE_FILE = "exit_code"
CANCELLED_FILE = "cancelled"
STDOUT, STDERR = "stdout.log", "stderr.log"

# A handler (not an ignore) for TERM: the wrapper outlives a group-wide TERM long enough to
# record the job's exit status, while the job itself keeps default signal handling.
_WRAPPER = r"""
trap 'true' TERM INT
bash "$1/launch.sh"
rc=$?
printf '%s\n' "$rc" > "$1/exit_code.tmp" && mv "$1/exit_code.tmp" "$1/exit_code"
exit "$rc"
"""


def _proc_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def resolve(job: Job) -> Job:
    """Refuses a job whose working directory does not exist. Here, not at submit: every job of a
    launch is resolved before the first is sent, so task 2's missing folder no longer leaves task
    1 running."""
    if not os.path.isdir(job.workdir):
        raise ConfigError(f"working directory {job.workdir} does not exist (executor.workdir)")
    return job


def submit(rendered: Rendered, job: Job) -> Handle:
    job_dir = Path(job.job_dir)
    if not (job_dir / "launch.sh").is_file():
        raise SubmitError(f"{job_dir / 'launch.sh'} is missing: artifacts must be recorded before submission")
    with open(job_dir / STDOUT, "ab") as out, open(job_dir / STDERR, "ab") as err:
        try:
            proc = subprocess.Popen(
                ["bash", "-c", _WRAPPER, "nemorun-job", str(job_dir)],
                cwd=job.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:  # no bash on PATH, the working directory removed since resolve, ...
            raise SubmitError(f"cannot start job {job.name} with bash in {job.workdir}: {exc.strerror or exc}") from None
    return Handle(
        backend="local",
        id=str(proc.pid),
        data={"pid": proc.pid, "start_time": _proc_start_time(proc.pid), "job_dir": str(job_dir)},
    )


def _alive(handle: Handle) -> bool:
    pid = int(handle.data["pid"])
    start = _proc_start_time(pid)
    if start is None or start != handle.data.get("start_time"):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def attempts(job_dir: Path) -> list[int]:
    """Exit codes of the finished attempts of a job that retries (launch.sh appends one line
    ``attempt N exit RC`` each); empty for a job without retries."""
    try:
        lines = (job_dir / ATTEMPTS_FILE).read_text().splitlines()
    except OSError:
        return []
    return [int(words[3]) for words in (line.split() for line in lines) if len(words) == 4 and words[3].lstrip("-").isdigit()]


def _attempts_detail(codes: list[int], running: bool) -> str:
    if not codes:
        return ""
    tried = f"{len(codes)} attempt{'s' if len(codes) > 1 else ''} (exit {', '.join(str(c) for c in codes)})"
    return f"retrying after {tried}" if running else tried


def status_of(handle: Handle) -> JobStatus:
    job_dir = Path(handle.data["job_dir"])
    code_file = job_dir / EXIT_CODE_FILE
    if code_file.exists():
        code = int(code_file.read_text().strip() or "1")
        tried = _attempts_detail(attempts(job_dir), running=False)
        if (job_dir / CANCELLED_FILE).exists():
            return JobStatus(AppState.CANCELLED, code, "; ".join(filter(None, ("cancelled", tried))))
        return JobStatus(AppState.SUCCEEDED if code == 0 else AppState.FAILED, code, tried)
    if _alive(handle):
        return JobStatus(AppState.RUNNING, None, _attempts_detail(attempts(job_dir), running=True))
    if (job_dir / CANCELLED_FILE).exists():
        return JobStatus(AppState.CANCELLED, None, "killed after the grace period")
    # The wrapper is gone without writing an exit code: killed with SIGKILL, or the machine rebooted.
    return JobStatus(AppState.UNKNOWN, None, "process vanished without recording an exit code")


def status(handles: Sequence[Handle]) -> dict[str, JobStatus]:
    return {h.id: status_of(h) for h in handles}


def cancel(handle: Handle, grace_seconds: float = 10.0) -> None:
    if not _alive(handle):
        return
    job_dir = Path(handle.data["job_dir"])
    (job_dir / CANCELLED_FILE).write_text(f"{time.time()}\n")
    pgid = int(handle.data["pid"])
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and not (job_dir / EXIT_CODE_FILE).exists():
        time.sleep(0.05)
    if not (job_dir / EXIT_CODE_FILE).exists():
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def log_paths(handle: Handle) -> Mapping[str, Path]:
    d = Path(handle.data["job_dir"])
    return {"stdout": d / STDOUT, "stderr": d / STDERR}


def follow_files(paths: Mapping[str, Path], done, poll: float = 0.05) -> Iterator[tuple[str, str]]:
    """Yield ``(stream, line)`` from several growing files until ``done()`` and all are drained."""
    handles = {name: open(p, "r", errors="replace") for name, p in paths.items() if p.exists()}
    partial = {name: "" for name in handles}
    try:
        while True:
            finished = done()
            progressed = False
            for name, f in handles.items():
                chunk = f.read()
                if chunk:
                    progressed = True
                    text = partial[name] + chunk
                    *lines, partial[name] = text.split("\n")
                    for line in lines:
                        yield name, line + "\n"
            if finished and not progressed:
                for name, rest in partial.items():
                    if rest:
                        yield name, rest
                return
            if not progressed:
                time.sleep(poll)
    finally:
        for f in handles.values():
            f.close()


def logs(handle: Handle, follow: bool = False) -> Iterator[str]:
    paths = log_paths(handle)
    if not follow:
        for p in paths.values():
            if p.exists():
                yield from p.open(errors="replace")
        return
    for _stream, line in follow_files(paths, lambda: status_of(handle).state is not AppState.RUNNING):
        yield line


def stream(handle: Handle) -> Iterator[tuple[str, str]]:
    """``(stream, line)`` pairs while the job runs: what ``wait=true`` shows."""
    return follow_files(log_paths(handle), lambda: status_of(handle).state is not AppState.RUNNING)


def find(job: Job) -> Optional[Handle]:
    """Did this job folder's wrapper start? Its argv names the folder, so a scan of /proc finds
    it while it runs, and its exit code file once it has ended."""
    job_dir = str(job.job_dir)
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            argv = (pid_dir / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) >= 5 and argv[0] == b"bash" and argv[3] == b"nemorun-job" and argv[4].decode(errors="replace") == job_dir:
            pid = int(pid_dir.name)
            return Handle("local", str(pid), {"pid": pid, "start_time": _proc_start_time(pid), "job_dir": job_dir})
    if (Path(job_dir) / EXIT_CODE_FILE).exists():
        return Handle("local", "finished", {"pid": 0, "start_time": None, "job_dir": job_dir})
    return None
