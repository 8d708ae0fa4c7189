"""The experiment record on disk: ``NEMORUN_HOME/experiments/<name>/<id>/``.

Layout (a public contract: ``nemorun exp`` and other tools read it)::

    experiment.json          id, name, created, target, submit dir, job names, kind
                             (single | sweep | experiment), multirun, arrays
    jobs/<array>/            a job array (value-only sweep on Slurm): its artifacts (ONE script and
                             one task table, tasks.jsonl) and record.json (``array_of``: the jobs it
                             runs); each of those jobs' record.json names the array and its index and
                             holds its own task handle. These task records are small (fields at their
                             default left out) and written in batches (save_jobs: one sync per batch)
    config.yaml              the composed config, interpolations unresolved (no secret values)
    config_dirs/<i>/         the user's config folders at launch (NEMORUN_CONFIG_PATH, --config-dir;
                             their non-hidden .yaml files and the folders holding them, at most
                             2,000 files / 20 MB a folder, in search order), listed in experiment.json
                             ``config_dirs``: --resume and rerun compose from these copies
    overrides.yaml           the command-line overrides
    jobs/<job>/<artifact>    every rendered artifact, byte for byte as submitted
    jobs/<job>/record.json   the job: rendered → submitted (handle) | failed-to-submit, its state
                             and exit code as of this write; ``attempted_at`` set while phase is
                             still rendered = the launch died during this job's submission (it may
                             or may not exist on the backend); ``rev``: a fresh token at every write
    jobs/<job>/stdout.log, stderr.log   the job's output (local jobs write here directly)
    states.json              {"jobs": {<job>: {rev, state, exit_code, detail, seen_at}}}: the states
                             the statuses saw change since the records were written, ONE file
                             rewritten per poll (a poll changing 1,000 states writes one file, not
                             1,000 records). An entry is the job's state while its ``rev`` is the
                             rev of the job's record.json; a record rewritten since (cancel, resume,
                             a launch's own writes, which carry the state they read) has a new rev,
                             so the entry no longer applies. Read a job's state as
                             :meth:`ExperimentRecord.job` does, never record.json alone

``NEMORUN_HOME/catalog.db`` (SQLite, :mod:`nemorun.catalog`) indexes these folders for fast
listing; it is a cache, rebuilt from the folders whenever it disagrees with them.

Every file is written atomically (temp file + rename), and a job's record is written before
and after its submission, so a crash at any moment leaves a record saying which jobs exist. A
batch (:func:`atomic_write_many`) syncs its data before any rename and its renames before it
returns: each file is old or new, never partial, for two syncs instead of one fsync per file.
``states.json`` is rewritten whole under ``states.json.lock`` (merged with what another status
wrote meanwhile); a status killed at any point leaves the old table or the new one, and what it
had not written yet it asks the backend again. A table that does not parse is an error naming
the file (never guessed around: the finished states it holds may be ones no backend remembers).
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import tempfile
import time
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional

from nemorun.errors import ConfigError, DamagedRecordError, StoreError
from nemorun.names import check_name
from nemorun.states import AppState, Handle, JobStatus

EXPERIMENT_FILE = "experiment.json"
CONFIG_DIRS = "config_dirs"


# what a launch copies of one config folder at most: a folder pointed at by mistake (a home
# directory, a data tree) is refused in one line rather than recorded again at every launch
CONFIG_DIR_MAX_FILES = 2000
CONFIG_DIR_MAX_BYTES = 20 * 1024 * 1024


def _config_files(folder: str) -> list[tuple[str, int]]:
    """The option files of a config folder (relative path, size): its non-hidden ``.yaml`` files,
    hidden folders skipped (Hydra reads only ``.yaml``, and a config folder that is a git checkout
    keeps nothing in .git). Folders linked in are followed once (a link loop is not walked
    around). Refuses a folder holding more than the limits above, naming it."""
    found: list[tuple[str, int]] = []
    total, seen = 0, set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        st = os.stat(root)
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith(".") or not name.endswith(".yaml"):
                continue
            full = os.path.join(root, name)
            try:
                size = os.stat(full).st_size
            except OSError:  # a dangling link: no option Hydra could read
                continue
            found.append((os.path.relpath(full, folder), size))
            total += size
            if len(found) > CONFIG_DIR_MAX_FILES or total > CONFIG_DIR_MAX_BYTES:
                raise ConfigError(
                    f"config folder {folder} holds more than {CONFIG_DIR_MAX_FILES} .yaml files or "
                    f"{CONFIG_DIR_MAX_BYTES // (1024 * 1024)} MB of them (at least {len(found)} files, "
                    f"{total / (1024 * 1024):.1f} MB), which a launch would copy into its record: point "
                    "--config-dir / NEMORUN_CONFIG_PATH at the folder holding only your options")
    return found


def _copy_config_files(folder: str, dest: Path) -> None:
    """``folder``'s option files into ``dest``, laid out as in ``folder``; a sub-folder is made
    only for a file copied into it (an empty tree records nothing)."""
    files = _config_files(folder)
    dest.mkdir(parents=True, exist_ok=True)
    made = {dest}
    for rel, _ in files:
        target = dest / rel
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        try:
            shutil.copyfile(os.path.join(folder, rel), target)
        except OSError as exc:
            raise _store_error(target, exc) from exc
JOB_FILE = "record.json"
# when nemorun last asked the backends (``exp status``, a wait): one small file, so a poll that
# sees no change rewrites no job record and ``exp list`` still says how fresh its states are
CHECKED_FILE = "checked"
# the states a status saw change, for all jobs in one file (see the layout above): the first look
# at a finished 1,000-task array rewrote 1,000 records, 1,000 new files, the whole cost of that look
STATES_FILE = "states.json"
# how long a status waits for another one's write of STATES_FILE (a write takes milliseconds)
STATES_LOCK_SECONDS = 60
# held while one job record is compared and swapped (:meth:`ExperimentRecord.save_job`): a
# launch's write and ``exp cancel``'s of the same record cannot overwrite each other
RECORDS_LOCK = "records.lock"


def fault(point: str) -> None:
    """Crash tests: ``NEMORUN_FAULT=<point>`` kills this process with SIGKILL here (a real kill -9
    at an exact step; :mod:`nemorun.execute` has the launch's points, these are a status's)."""
    if os.environ.get("NEMORUN_FAULT") == point:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def nemorun_home() -> Path:
    return Path(os.environ.get("NEMORUN_HOME") or Path.home() / ".run").expanduser()


def new_experiment_id(now: Optional[float] = None) -> str:
    """Sortable by creation time (UTC, to the microsecond) and unique (random suffix)."""
    t = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(t))
    return f"{stamp}-{int((t % 1) * 1_000_000):06d}-{secrets.token_hex(2)}"


def atomic_write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Write ``path`` whole or not at all; a failing disk is a :class:`StoreError` (one line)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _store_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, StoreError):
            raise _store_error(path, exc) from exc
        raise


def _sync_filesystem(path: Path) -> None:
    """Flush every pending write of the file system holding ``path`` (Linux ``syncfs``: one call
    for a batch of files instead of an ``fsync`` each); ``sync`` where there is no syncfs."""
    global _syncfs
    if _syncfs is None:
        try:
            import ctypes

            _syncfs = ctypes.CDLL(None, use_errno=True).syncfs
        except (OSError, AttributeError):
            _syncfs = False
    if _syncfs:
        fd = os.open(path, os.O_RDONLY)
        try:
            if _syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    os.sync()


_syncfs: Any = None


def artifact_mode(path: PurePath) -> int:
    """Scripts are executable, every other artifact is not."""
    return 0o755 if path.name.endswith(".sh") else 0o644


def atomic_write_many(files: Iterable[tuple[Path, str | bytes]], sync_root: Path,
                      mode: Callable[[Path], int] = lambda path: 0o644) -> int:
    """Write a batch of files, each whole or not at all, durable together at the cost of two
    file-system syncs rather than one ``fsync`` per file: every temp file is written, synced,
    then renamed into place, then the renames are synced. A crash at any moment leaves each file
    either old or new, never partly written (the data is on disk before any rename). Returns
    how many files were written."""
    staged: list[tuple[str, Path]] = []
    renamed = 0
    try:
        for path, data in files:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            except OSError as exc:
                raise _store_error(path, exc) from exc
            staged.append((tmp, path))
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
            os.chmod(tmp, mode(path))
        if not staged:
            return 0
        _sync_filesystem(sync_root)
        for tmp, path in staged:
            os.replace(tmp, path)
            renamed += 1
        _sync_filesystem(sync_root)
    except BaseException as exc:
        for tmp, _ in staged[renamed:]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, StoreError):
            raise _store_error(staged[renamed][1] if renamed < len(staged) else sync_root, exc) from exc
        raise
    return len(staged)


@contextlib.contextmanager
def _holding(lock: Path, path: Path) -> Iterator[None]:
    """``lock`` held (a file lock: released by the OS if this process dies) while ``path`` is
    read and rewritten by one nemorun at a time; a lock held too long or a store that cannot be
    written is a :class:`StoreError` naming ``path``."""
    from filelock import FileLock, Timeout

    try:
        with FileLock(str(lock), timeout=STATES_LOCK_SECONDS):
            yield
    except Timeout:
        raise StoreError(f"cannot write {path}: another nemorun has held {lock} for {STATES_LOCK_SECONDS} s") from None
    except StoreError:
        raise
    except OSError as exc:
        raise _store_error(path, exc) from exc


def _store_error(path: Path, exc: OSError) -> StoreError:
    return StoreError(f"cannot write {path}: {exc.strerror or exc}")


def _read_json(path: Path) -> Any:
    """A record file as JSON; absent stays FileNotFoundError, anything else unreadable is damage."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedRecordError(f"experiment record damaged: cannot read {path}: {exc}") from exc
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise DamagedRecordError(f"experiment record damaged: {path} is not valid JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise DamagedRecordError(f"experiment record damaged: {path} is not a JSON object")
    return value


def check_job_name(job: str) -> None:
    """Job names are folder names under ``jobs/``: the same rule as every other name."""
    try:
        check_name("job name", job)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _inside(root: Path, path: Path) -> Path:
    """``path`` if it stays under ``root`` once resolved (no ``..`` or symlink escapes)."""
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root or real == real_root:
        raise ConfigError(f"{path} is outside {root}; names must not contain '/' or be '..'")
    return path


def write_json(path: Path, value: Any) -> None:
    atomic_write(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


@dataclass
class JobRecord:
    name: str
    target: str
    # rendered | submitted | failed-to-submit
    phase: str = "rendered"
    handle: Optional[dict[str, Any]] = None
    state: str = AppState.UNSUBMITTED.value
    exit_code: Optional[int] = None
    detail: str = ""
    error: Optional[str] = None
    artifacts: list[str] = field(default_factory=list)
    submitted_at: Optional[float] = None
    updated_at: Optional[float] = None
    # the Hydra overrides that make this job (sweeps: the job's own line)
    overrides: list[str] = field(default_factory=list)
    # set just before the submit call; with phase still 'rendered' the submission is in doubt
    attempted_at: Optional[float] = None
    # jobs (by name) this one waits for, and how (afterok, afterany, ...)
    depends_on: list[str] = field(default_factory=list)
    dependency_type: str = "afterok"
    # an array job's record: the sweep jobs it runs, in array-index order
    array_of: list[str] = field(default_factory=list)
    array_parallelism: Optional[int] = None
    # a sweep job run as a task of an array job: that job's name and this task's index
    array: Optional[str] = None
    array_index: Optional[int] = None
    # set when nemorun cancelled the job: if the backend then forgets it (Slurm keeps no record of
    # a cancelled PENDING array task), it ended CANCELLED rather than UNKNOWN
    cancelled_at: Optional[float] = None
    # which write of record.json this is (a fresh token each time): a states.json entry made from
    # this version applies to it and to no later one. Identity, not time: a clock stepping back
    # or two writes in the same tick cannot make an older state look newer
    rev: Optional[str] = None

    @property
    def app_state(self) -> AppState:
        try:
            return AppState(self.state)
        except ValueError:  # written by a newer nemorun or by hand: not a state this one knows
            return AppState.UNKNOWN

    def handle_obj(self) -> Optional[Handle]:
        return Handle.from_dict(self.handle) if self.handle else None

    @property
    def in_doubt(self) -> bool:
        return self.phase == "rendered" and self.attempted_at is not None

    def fields(self) -> dict[str, Any]:
        """The record as a dict for JSON: every field holds plain JSON values, so a shallow dict
        serialises like ``asdict`` without its deep copy (a tenth of a second per 1,000 records)."""
        return {name: getattr(self, name) for name in _JOB_FIELDS}

    def compact(self) -> dict[str, Any]:
        """The record without the fields that hold their default, except the ones every reader
        looks at first (name, target, phase, state)."""
        full = self.fields()
        return {k: v for k, v in full.items() if k in _ALWAYS_RECORDED or v != _JOB_DEFAULTS.get(k, _NO_DEFAULT)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "JobRecord":
        values = {k: v for k, v in d.items() if k in _JOB_FIELD_SET}
        if values.get("state") not in AppState._value2member_map_:
            values["state"] = AppState.UNKNOWN.value
        try:
            return cls(**values)
        except TypeError as exc:  # a required field is missing
            raise DamagedRecordError(f"experiment record damaged: job record without {exc}") from exc


def as_recorded(rec: JobRecord, status: JobStatus) -> JobStatus:
    """The state seen on the backend as ``rec`` takes it: a job nemorun cancelled that the backend
    no longer knows (UNKNOWN) was cancelled."""
    if rec.cancelled_at is not None and status.state is AppState.UNKNOWN:
        return JobStatus(AppState.CANCELLED, status.exit_code, f"cancelled by nemorun; {status.detail}".rstrip("; "))
    return status


def _apply_status(rec: JobRecord, status: JobStatus) -> bool:
    """Put a state seen on the backend into ``rec``; False when the record keeps what it has."""
    if rec.app_state.is_terminal and status.state is AppState.UNKNOWN:
        return False  # once a backend forgets a finished job, the last state seen stays the truth
    status = as_recorded(rec, status)
    exit_code = status.exit_code if status.exit_code is not None else rec.exit_code
    if (rec.state, rec.exit_code, rec.detail) == (status.state.value, exit_code, status.detail):
        return False  # seen as it was: a poll of 1,000 running tasks rewrites nothing
    rec.state = status.state.value
    rec.exit_code = exit_code
    rec.detail = status.detail
    return True


def _new_rev() -> str:
    return secrets.token_hex(8)


def _merge_if_rewritten(record: JobRecord, path: Path,
                        reapply: Optional[Callable[[JobRecord, JobRecord], JobRecord]]) -> Optional[JobRecord]:
    """The compare of the compare-and-swap (caller holds :data:`RECORDS_LOCK`): when ``path`` was
    rewritten since ``record`` was read (another ``rev``), ``record`` becomes ``reapply(record,
    theirs)`` (default :func:`cancel_wins`) and ``theirs`` is returned; else None. A new record
    (rev None) is not compared."""
    if record.rev is None:
        return None
    try:
        on_disk = _read_json(path)
    except FileNotFoundError:
        return None
    if on_disk is None or on_disk.get("rev") == record.rev:
        return None
    theirs = JobRecord.from_dict(on_disk)
    merged = (reapply or cancel_wins)(dataclasses.replace(record), theirs)
    for name in _JOB_FIELDS:
        setattr(record, name, getattr(merged, name))
    return theirs


def cancel_wins(mine: JobRecord, theirs: JobRecord) -> JobRecord:
    """The record to write when ``theirs`` was written after ``mine`` was read (the default merge
    of :meth:`ExperimentRecord.save_job`): ``mine``, without losing what only ``theirs`` knows.
    A submission is never lost (a handle, and the attempt that may have made one: the record must
    say what may exist on the backend), and a cancel is never lost: a mark on a job not sent stays
    (the launch does not send it, or cancels what it just sent), ``cancelled_at`` stays. A job
    ``mine`` sent while ``theirs`` marked it keeps its submitted state: the caller, seeing
    ``theirs`` returned, cancels it on the backend (:mod:`nemorun.execute`)."""
    out = dataclasses.replace(mine)
    if theirs.handle is not None and mine.handle is None:  # sent meanwhile: the backend's truth
        out.phase, out.handle, out.state = theirs.phase, theirs.handle, theirs.state
        out.submitted_at, out.exit_code, out.detail = theirs.submitted_at, theirs.exit_code, theirs.detail
    if out.attempted_at is None:
        out.attempted_at = theirs.attempted_at
    if out.cancelled_at is None:
        out.cancelled_at = theirs.cancelled_at
    if theirs.state == AppState.CANCELLED.value and out.state != AppState.CANCELLED.value and theirs.handle is None:
        if out.handle is None and not out.app_state.is_terminal:
            out.state, out.detail = theirs.state, theirs.detail
        elif out.handle is not None and mine.handle is not None:
            out.detail = "exp cancel came while it was being submitted"
    return out


_DAMAGED_STATES_HINT = ("move it away to ask the backends again (a finished job a backend no longer "
                        "knows then shows its state as of its record)")


def _damaged_states(path: Path, why: str) -> DamagedRecordError:
    return DamagedRecordError(f"experiment record damaged: {path} {why}; {_DAMAGED_STATES_HINT}")


def _check_entry(name: str, seen: Any, path: Path) -> None:
    """A :data:`STATES_FILE` entry as a status writes it, or the file is damaged (one line)."""
    if not (isinstance(seen, dict) and isinstance(seen.get("state"), str) and isinstance(seen.get("detail", ""), str)
            and (seen.get("rev") is None or isinstance(seen.get("rev"), str))
            and (seen.get("exit_code") is None or type(seen.get("exit_code")) is int)
            and type(seen.get("seen_at")) in (int, float)):
        raise _damaged_states(path, f"holds no readable state for job {name!r}")


def _overlay(rec: JobRecord, seen: dict[str, Any]) -> None:
    """The state a status recorded for ``rec`` (:data:`STATES_FILE`), if it was seen on this very
    version of the record (same ``rev``); a record written since is the newer truth."""
    if seen.get("rev") != rec.rev:
        return
    state = seen["state"]
    rec.state = state if state in AppState._value2member_map_ else AppState.UNKNOWN.value
    rec.exit_code, rec.detail, rec.updated_at = seen.get("exit_code"), seen.get("detail", ""), seen["seen_at"]


def _entry(rec: JobRecord, now: float) -> dict[str, Any]:
    return {"rev": rec.rev, "state": rec.state, "exit_code": rec.exit_code, "detail": rec.detail, "seen_at": now}


_NO_DEFAULT = object()
_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(JobRecord))
_JOB_FIELD_SET = frozenset(_JOB_FIELDS)
_TERMINAL_STATES = frozenset(s.value for s in AppState if s.is_terminal)
_ALWAYS_RECORDED = frozenset({"name", "target", "phase", "state"})
_JOB_DEFAULTS: dict[str, Any] = {
    f.name: (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)  # type: ignore[misc]
    for f in dataclasses.fields(JobRecord)
    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
}


class ExperimentRecord:
    """One experiment folder. Cheap to open; every method reads or writes one small file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        # STATES_FILE as last parsed, keyed by its stat: parsed once per version of the file
        self._states_seen: Optional[tuple[tuple[int, ...], dict[str, Any]]] = None

    # -- creation ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        *,
        home: Path,
        name: str,
        experiment_id: str,
        target: str,
        config_yaml: str,
        overrides: Iterable[str],
        submit_dir: str,
        job_names: Iterable[str],
        kind: str = "single",
        multirun: bool = False,
        arrays: Optional[Mapping[str, list[str]]] = None,
        config_dirs: Iterable[str] = (),
    ) -> "ExperimentRecord":
        job_names = list(job_names)
        try:
            check_name("name", name)
            check_name("experiment id", experiment_id)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        for job in job_names:
            check_job_name(job)
        root = Path(home) / "experiments"
        path = _inside(root, root / name / experiment_id)
        try:
            path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise
        except OSError as exc:
            raise _store_error(path, exc) from exc
        try:
            return cls._fill(path, home=Path(home), name=name, experiment_id=experiment_id, target=target,
                             config_yaml=config_yaml, overrides=list(overrides), submit_dir=submit_dir,
                             job_names=job_names, kind=kind, multirun=multirun, arrays=arrays,
                             config_dirs=[d for d in config_dirs if os.path.isdir(d)])
        except BaseException:
            # a record that could not be written whole is no record: leave no empty folder behind
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # only if no other experiment of that name is in it
            raise

    @classmethod
    def _fill(cls, path: Path, *, home: Path, name: str, experiment_id: str, target: str, config_yaml: str,
              overrides: list[str], submit_dir: str, job_names: list[str], kind: str, multirun: bool,
              arrays: Optional[Mapping[str, list[str]]], config_dirs: list[str]) -> "ExperimentRecord":
        rec = cls(path)
        for i, folder in enumerate(config_dirs):  # before experiment.json: no record without them
            _copy_config_files(folder, path / CONFIG_DIRS / str(i))
        atomic_write(path / "config.yaml", config_yaml)
        atomic_write(path / "overrides.yaml", "".join(f"- {json.dumps(o)}\n" for o in overrides) or "[]\n")
        write_json(
            path / EXPERIMENT_FILE,
            {
                "id": experiment_id,
                "name": name,
                "target": target,
                "created": time.time(),
                "submit_dir": submit_dir,
                "jobs": list(job_names),
                "overrides": list(overrides),
                "kind": kind,
                "multirun": multirun,
                # array job name -> the sweep jobs it runs (jobs/<array>/ holds its artifacts)
                "arrays": dict(arrays or {}),
                "config_dirs": list(config_dirs),
            },
        )
        return rec

    @contextlib.contextmanager
    def config_folders(self) -> Iterator[None]:
        """``NEMORUN_CONFIG_PATH`` set to this record's copies of the launch's config folders for
        the block, so --resume and rerun compose what the launch composed, whatever the folders
        hold now (or without them). A record made before they were kept leaves the variable alone."""
        dirs = self.meta.get("config_dirs")
        if not isinstance(dirs, list):
            yield
            return
        before = os.environ.get("NEMORUN_CONFIG_PATH")
        os.environ["NEMORUN_CONFIG_PATH"] = os.pathsep.join(str(self.path / CONFIG_DIRS / str(i)) for i in range(len(dirs)))
        try:
            yield
        finally:
            if before is None:
                os.environ.pop("NEMORUN_CONFIG_PATH", None)
            else:
                os.environ["NEMORUN_CONFIG_PATH"] = before

    # -- reading ----------------------------------------------------------------------------
    @property
    def meta(self) -> dict[str, Any]:
        meta = _read_json(self.path / EXPERIMENT_FILE)
        missing = [k for k in ("id", "name", "target", "created", "jobs") if k not in meta]
        if missing or not isinstance(meta["jobs"], list):
            raise DamagedRecordError(f"experiment record damaged: {self.path / EXPERIMENT_FILE} lacks {', '.join(missing) or 'a job list'}")
        return meta

    @property
    def id(self) -> str:
        return self.path.name

    def job_dir(self, job: str) -> Path:
        check_job_name(job)
        return self.path / "jobs" / job

    def job(self, job: str) -> JobRecord:
        """The job as it stands: its record.json with the state a status saw since (the one
        place a job's state is read: catalog rows, ``exp`` commands, waits, resume, the API)."""
        check_job_name(job)
        rec = JobRecord.from_dict(_read_json(Path(self.path, "jobs", job, JOB_FILE)))  # one Path, not three
        seen = self._states().get(rec.name)
        if seen is not None:
            _overlay(rec, seen)
        return rec

    def _states(self, fresh: bool = False) -> dict[str, Any]:
        """:data:`STATES_FILE`'s entries, parsed once per version of the file (one stat a call);
        ``fresh``: read the file whatever the cache holds (under its lock, before merging)."""
        path = self.path / STATES_FILE
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._states_seen = None
            return {}
        except OSError as exc:
            raise _damaged_states(path, f"cannot be read ({exc.strerror or exc})") from exc
        key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if fresh or self._states_seen is None or self._states_seen[0] != key:
            try:
                table = _read_json(path)
            except FileNotFoundError:  # replaced between the stat and the read: what replaced it
                return self._states(fresh=True)
            except DamagedRecordError as exc:
                raise DamagedRecordError(f"{exc}; {_DAMAGED_STATES_HINT}") from exc
            jobs = table.get("jobs")
            if not isinstance(jobs, dict):
                raise _damaged_states(path, "has no job table")
            for name, seen in jobs.items():
                _check_entry(name, seen, path)
            self._states_seen = (key, jobs)
        return self._states_seen[1]

    def jobs(self) -> list[JobRecord]:
        return [self.job(j) for j in self.meta["jobs"] if (self.job_dir(j) / JOB_FILE).exists()]

    def try_job(self, job: str) -> Optional[JobRecord]:
        try:
            return self.job(job)
        except FileNotFoundError:
            return None

    def state_counts(self) -> dict[str, int]:
        """Jobs per state; a job whose record was never written counts as UNSUBMITTED."""
        counts: dict[str, int] = {}
        for name in self.meta["jobs"]:
            rec = self.try_job(name)
            state = rec.state if rec else AppState.UNSUBMITTED.value
            counts[state] = counts.get(state, 0) + 1
        return counts

    # -- writing ----------------------------------------------------------------------------
    def save_job(self, record: JobRecord,
                 reapply: Optional[Callable[[JobRecord, JobRecord], JobRecord]] = None) -> Optional[JobRecord]:
        """Write the job's record whole: what it holds (state included) is the job's truth from
        now on, over any state a status recorded before (a new ``rev``).

        A compare-and-swap on ``rev`` under the experiment's :data:`RECORDS_LOCK`: ``record`` is
        written if the file is still the version it was read as (or ``record`` is new, rev None).
        When another nemorun wrote the file since (``exp cancel`` while the launch sends the job),
        the loser's change is applied to the newer record instead: ``reapply(mine, theirs)``,
        by default :func:`cancel_wins`. ``record`` takes what was written; the newer record that
        was built on is returned (None when there was none), so a caller can act on it (the
        launch cancels on the backend a job whose cancel mark came while it was being sent)."""
        path, lock = self.job_dir(record.name) / JOB_FILE, self.path / RECORDS_LOCK
        theirs: Optional[JobRecord] = None
        with _holding(lock, path):
            theirs = _merge_if_rewritten(record, path, reapply)
            record.updated_at, record.rev = time.time(), _new_rev()
            write_json(path, record.fields())
        return theirs

    def save_jobs(self, records: Iterable[JobRecord], compact: bool = True,
                  reapply: Optional[Callable[[JobRecord, JobRecord], JobRecord]] = None) -> list[JobRecord]:
        """Many job records as one batch (a job array's tasks): each file is written whole, and
        the batch costs two file-system syncs instead of an fsync per job. ``compact``: small
        records, fields still at their default left out (:meth:`JobRecord.from_dict` restores them).
        The same compare-and-swap as :meth:`save_job`, for the whole batch under one hold of the
        lock: a record another nemorun rewrote since it was read (``exp cancel ID TASK`` while the
        launch records the array's tasks sent) is merged with ``reapply``; the newer records that
        were built on are returned, so the caller can act on a cancel mark among them."""
        def text(record: JobRecord) -> str:
            if compact:
                return json.dumps(record.compact(), sort_keys=True) + "\n"
            return json.dumps(record.fields(), indent=2, sort_keys=True) + "\n"

        return self._write_batch(((r, {}) for r in records), text, reapply)

    def write_jobs(self, jobs: Iterable[tuple[JobRecord, Mapping[str, str]]],
                   reapply: Optional[Callable[[JobRecord, JobRecord], JobRecord]] = None) -> list[JobRecord]:
        """Jobs not yet sent, with their artifacts, as ONE batch (a sweep's jobs before the first
        submission): two file-system syncs for the lot. Each record lists its artifacts. A record
        rewritten since it was read is merged as in :meth:`save_jobs`."""
        def text(record: JobRecord) -> str:
            return json.dumps(record.fields(), indent=2, sort_keys=True) + "\n"

        def listed() -> Iterator[tuple[JobRecord, Mapping[str, str]]]:
            for record, artifacts in jobs:
                record.artifacts = list(artifacts)
                yield record, artifacts

        return self._write_batch(listed(), text, reapply, mode=artifact_mode)

    def _write_batch(self, jobs: Iterable[tuple[JobRecord, Mapping[str, str]]], text: Callable[[JobRecord], str],
                     reapply: Optional[Callable[[JobRecord, JobRecord], JobRecord]],
                     mode: Callable[[Path], int] = lambda path: 0o644) -> list[JobRecord]:
        """One :func:`atomic_write_many` under :data:`RECORDS_LOCK`, each record with a rev merged
        with what is on disk when that was written since (only those are read: a new record, rev
        None, is written as it is, like :meth:`save_job`)."""
        raced: list[JobRecord] = []
        now = time.time()

        def files() -> Iterable[tuple[Path, str]]:
            for record, artifacts in jobs:
                d = self.job_dir(record.name)
                for name, data in artifacts.items():
                    yield d / name, data
                path = d / JOB_FILE
                theirs = _merge_if_rewritten(record, path, reapply)
                if theirs is not None:
                    raced.append(theirs)
                record.updated_at, record.rev = now, _new_rev()
                yield path, text(record)

        with _holding(self.path / RECORDS_LOCK, self.path):
            atomic_write_many(files(), self.path, mode=mode)
        return raced

    def write_artifacts(self, job: str, artifacts: Mapping[str, str]) -> list[str]:
        d = self.job_dir(job)
        for name, text in artifacts.items():
            atomic_write(d / name, text, mode=artifact_mode(d / name))
        return list(artifacts)

    def record_status(self, job: str, status: JobStatus) -> JobRecord:
        return self.record_statuses([(job, status)])[0]

    def record_statuses(self, updates: Iterable[tuple[str | JobRecord, JobStatus]]) -> list[JobRecord]:
        """The states seen on the backends (``exp status`` of a 1,000-task array), recorded as ONE
        write of :data:`STATES_FILE` for those that changed, and the time of the check
        (:data:`CHECKED_FILE`); no job record is rewritten. A record given as already read is
        not read again: if a concurrent ``exp cancel`` rewrote it meanwhile, its new ``rev``
        makes this state not apply to it (the next status looks again)."""
        out, changed = [], []
        for job, status in updates:
            rec = dataclasses.replace(job) if isinstance(job, JobRecord) else self.job(job)
            if _apply_status(rec, status):
                changed.append(rec)
                out.append(rec)
            else:
                out.append(job if isinstance(job, JobRecord) else rec)
        if changed:
            self._save_states(changed)
        self.mark_checked()
        return out

    def _save_states(self, records: list[JobRecord]) -> None:
        """The new states into :data:`STATES_FILE`: one atomic write for the whole poll, merged
        under the file's lock with what it holds then, so two concurrent statuses (a waiting
        launch and ``exp status``) keep each other's news. Of two statuses that saw the same
        record version, one that saw the job end wins over one that saw it still going (its
        query may have been the earlier one); ``records`` take what was kept."""
        path, now = self.path / STATES_FILE, time.time()
        with _holding(Path(str(path) + ".lock"), path):
            jobs = dict(self._states(fresh=True))
            for rec in records:
                old = jobs.get(rec.name)
                if (old is not None and old.get("rev") == rec.rev and not rec.app_state.is_terminal
                        and old["state"] in _TERMINAL_STATES):
                    _overlay(rec, old)
                    continue
                rec.updated_at = now
                jobs[rec.name] = _entry(rec, now)
            fault("states-merged")
            # a batch of one: the file system is synced BEFORE the rename, so the logs a
            # status kept (hard links, :func:`nemorun.submitters.sync_logs_many`) are on disk
            # before the table can say their jobs ended (a power cut must not lose them)
            atomic_write_many([(path, json.dumps({"jobs": jobs}, sort_keys=True, separators=(",", ":")) + "\n")], self.path)
            st = os.stat(path)  # no other writer while the lock is held: this is what was written
            self._states_seen = ((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns), jobs)

    def mark_checked(self, now: Optional[float] = None) -> None:
        atomic_write(self.path / CHECKED_FILE, f"{time.time() if now is None else now}\n")

    @property
    def checked_at(self) -> Optional[float]:
        """When the backends were last asked (None: never, or a record older than this file)."""
        try:
            return float((self.path / CHECKED_FILE).read_text())
        except (OSError, ValueError):
            return None
