"""SQLite index of the experiment folders: ``NEMORUN_HOME/catalog.db``.

Why both: the folders (:mod:`nemorun.store`) are the truth and readable by any tool; listing
hundreds of experiments by opening every ``experiment.json``, ``record.json`` and ``states.json``
would be slow. A row's job states are read as :meth:`nemorun.store.ExperimentRecord.job` reads them
(a record and the state a status saw since), never from ``record.json`` alone.
The catalog caches one row per experiment (id, name, target, created, jobs, state counts, the
keys a sweep varies, and when a job state was last checked — so ``exp list`` can say how old a
non-final state is).
It is only a cache: :func:`sync` adds folders it does not know (a launch killed before its
insert) and drops rows whose folder is gone, and deleting ``catalog.db`` loses nothing.

Concurrency: SQLite's own locking (WAL journal, 30 s busy timeout) serialises writers from
concurrent launches; creating the schema is guarded by a file lock (``catalog.db.lock``) because
switching the journal mode is not itself safe to race.

Damage: a ``catalog.db`` SQLite cannot read is deleted and rebuilt from the folders (said once on
stderr). Where ``NEMORUN_HOME`` cannot be written (read-only mount, another user's home), reads use
an in-memory catalog built from the folders: no lock file, nothing written. An experiment whose
``experiment.json``, a ``record.json`` or its ``states.json`` is unreadable is listed as kind
``damaged`` (state ``DAMAGED``) so the rest still list; each row keeps a fingerprint of its record
files (``states.json`` included), so a file changed behind the catalog's back is re-read.
"""
from __future__ import annotations

import json
import os
import sys
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional, Sequence

from nemorun.errors import ConfigError, DamagedRecordError
from nemorun.states import AppState
from nemorun.store import EXPERIMENT_FILE, JOB_FILE, STATES_FILE, ExperimentRecord, JobRecord, StoreError

if TYPE_CHECKING:  # imported where a catalog is opened: a dry run never opens one (tests/test_startup_paths.py)
    import sqlite3

DB_NAME = "catalog.db"
# bumped when the table changes: an older catalog is dropped and rebuilt (it is only a cache)
_VERSION = 4  # 4: an experiment file's tasks have no swept columns (were cached as if a sweep)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    created REAL NOT NULL,
    path TEXT NOT NULL,
    jobs INTEGER NOT NULL,
    states TEXT NOT NULL,
    stamp TEXT NOT NULL,
    swept TEXT NOT NULL,
    checked REAL
);
CREATE INDEX IF NOT EXISTS experiments_name ON experiments (name, created);
CREATE INDEX IF NOT EXISTS experiments_created ON experiments (created);
"""
DAMAGED_KIND, DAMAGED_STATE = "damaged", "DAMAGED"
_warned_rebuild = False


def _open(db: Path) -> sqlite3.Connection:
    import sqlite3

    conn = sqlite3.connect(str(db), timeout=30, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        if conn.execute("PRAGMA user_version").fetchone()[0] != _VERSION:
            conn.execute("DROP TABLE IF EXISTS experiments")
            conn.execute(f"PRAGMA user_version={_VERSION}")
        conn.executescript(_SCHEMA)
        conn.execute("SELECT count(*) FROM experiments").fetchone()  # reads a page: finds a damaged file
    except BaseException:
        conn.close()
        raise
    return conn


def _writable(home: Path) -> bool:
    return os.access(home, os.W_OK) and (not (home / DB_NAME).exists() or os.access(home / DB_NAME, os.W_OK))


def _memory() -> sqlite3.Connection:
    import sqlite3

    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(_SCHEMA)
    return conn


def _connect(home: Path, *, create: bool = True) -> sqlite3.Connection:
    """The catalog of ``home``; an in-memory one when ``home`` cannot be written (reads only:
    ``create=False``), a rebuilt one when the file is damaged."""
    global _warned_rebuild
    import sqlite3

    from filelock import FileLock

    if not create and not _writable(home):
        conn = _memory()
    else:
        try:
            home.mkdir(parents=True, exist_ok=True)
            db = home / DB_NAME
            with FileLock(str(db) + ".lock", timeout=60):
                try:
                    conn = _open(db)
                except sqlite3.OperationalError:
                    raise  # locked, unopenable: not damage
                except sqlite3.DatabaseError as exc:  # "file is not a database", "malformed"
                    for suffix in ("", "-wal", "-shm"):
                        Path(str(db) + suffix).unlink(missing_ok=True)
                    if not _warned_rebuild:
                        print(f"nemorun: warning: {db} was damaged ({exc}); rebuilt it from the experiment folders",
                              file=sys.stderr)
                        _warned_rebuild = True
                    conn = _open(db)
        except (OSError, sqlite3.OperationalError) as exc:
            if create:
                raise StoreError(f"cannot write the experiment catalog in {home}: {exc}") from exc
            conn = _memory()
    conn.row_factory = sqlite3.Row
    return conn


def _stamp(path: Path) -> str:
    """Sizes and change times of the record files: differs whenever one of them was rewritten."""
    parts = []
    for f in [path / EXPERIMENT_FILE, path / STATES_FILE, *sorted(p / JOB_FILE for p in _subdirs(path / "jobs"))]:
        try:
            st = f.stat()
        except OSError:
            continue
        parts.append(f"{f.parent.name}:{st.st_size}:{st.st_mtime_ns}")
    return ";".join(parts)


def _subdirs(path: Path) -> Iterator[Path]:
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for e in entries:
        if e.is_dir():
            yield Path(e.path)


def override_values(overrides: Sequence[str]) -> dict[str, str]:
    """``key -> value`` of ``key=value`` overrides (``+``/``~`` prefixes dropped)."""
    out: dict[str, str] = {}
    for o in overrides:
        key, eq, value = o.partition("=")
        if eq:
            out[key.lstrip("+~")] = value
    return out


def swept_values(job_overrides: Mapping[str, Sequence[str]], *, kind: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """The keys whose value differs between jobs (a sweep's parameters, in command-line order)
    and each job's values of them: what tells ``train-3`` from ``train-4`` to a reader.

    Only a sweep (``kind``) has swept keys: the tasks of an experiment file differ by design
    (``task=hello`` vs ``task=train``), and those were shown as sweep columns."""
    if kind != "sweep":
        return [], {job: {} for job in job_overrides}
    values = {job: override_values(ovs) for job, ovs in job_overrides.items()}
    keys: list[str] = []
    for vals in values.values():
        keys.extend(k for k in vals if k not in keys)
    swept = [k for k in keys if len({v.get(k) for v in values.values()}) > 1]
    return swept, {job: {k: v.get(k, "-") for k in swept} for job, v in values.items()}


def _row(rec: ExperimentRecord, states: Optional[dict[str, int]] = None,
         known: Optional[Mapping[str, JobRecord]] = None) -> tuple[Any, ...]:
    """The experiment's catalog row; a damaged record gives a ``damaged`` row, not an error.
    ``known``: job records the caller has just read or written (``exp status``), not read again."""
    stamp = _stamp(rec.path)
    try:
        meta = rec.meta
        known = known or {}
        jobs = [j for j in (known[n] if n in known else rec.try_job(n) for n in meta["jobs"]) if j is not None]
        if states is None:  # ExperimentRecord.state_counts, from the records read once here
            states = {}
            for state in [j.state for j in jobs] + [AppState.UNSUBMITTED.value] * (len(meta["jobs"]) - len(jobs)):
                states[state] = states.get(state, 0) + 1
        swept, _ = swept_values({j.name: j.overrides for j in jobs}, kind=meta.get("kind", "single"))
        checked = max((t for t in (*(j.updated_at for j in jobs), rec.checked_at) if t), default=None)
        return (
            meta["id"], meta["name"], meta["target"], meta.get("kind", "single"), float(meta["created"]),
            str(rec.path), len(meta["jobs"]), json.dumps(states, sort_keys=True), stamp, json.dumps(swept), checked,
        )
    except (DamagedRecordError, ValueError, TypeError):
        try:
            created = rec.path.stat().st_mtime
        except OSError:
            created = 0.0
        return (rec.path.name, rec.path.parent.name, "-", DAMAGED_KIND, created, str(rec.path), 0,
                json.dumps({DAMAGED_STATE: 1}), stamp, "[]", None)


_UPSERT = "INSERT OR REPLACE INTO experiments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


def upsert(home: Path, rec: ExperimentRecord, states: Optional[dict[str, int]] = None) -> None:
    with closing(_connect(home)) as conn:
        conn.execute(_UPSERT, _row(rec, states={"UNSUBMITTED": len(rec.meta["jobs"])} if states is None else states))


def refresh(home: Path, rec: ExperimentRecord, known: Optional[Mapping[str, JobRecord]] = None) -> None:
    """Recount the experiment's job states from its folder (after a launch or a status)."""
    with closing(_connect(home)) as conn:
        conn.execute(_UPSERT, _row(rec, known=known))


def _folders(home: Path) -> Iterator[Path]:
    root = home / "experiments"
    if not root.is_dir():
        return
    for name_dir in os.scandir(root):
        if name_dir.is_dir():
            for exp_dir in os.scandir(name_dir.path):
                if exp_dir.is_dir() and not exp_dir.name.startswith("."):
                    yield Path(exp_dir.path)


def sync(home: Path, conn: Optional[sqlite3.Connection] = None) -> None:
    """Make the catalog agree with the folders: a directory scan, JSON read only for new ones.

    The changes go in as ONE transaction, read first and written after: a catalog rebuilt for
    500 experiments is one commit (one WAL sync), not 500, and the write lock is held only for
    the inserts, never while folders are read."""
    if conn is None:
        with closing(_connect(home)) as own:
            return sync(home, own)
    folders = {p.name: p for p in _folders(home) if (p / EXPERIMENT_FILE).exists()}
    known = {r["id"]: r["path"] for r in conn.execute("SELECT id, path FROM experiments")}
    gone = [i for i, path in known.items() if i not in folders or str(folders[i]) != path]
    new = []
    for exp_id, path in folders.items():
        if exp_id not in known or exp_id in gone:
            try:
                new.append(_row(ExperimentRecord(path)))
            except (OSError, KeyError):
                continue  # a folder vanishing mid-scan, or a launch still starting: next sync
    if not gone and not new:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany("DELETE FROM experiments WHERE id = ?", [(i,) for i in gone])
        conn.executemany(_UPSERT, new)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _fresh(conn: sqlite3.Connection, row: dict[str, Any]) -> dict[str, Any]:
    """The row again, re-read from its folder if a record file changed since it was cached."""
    path = Path(row["path"])
    if _stamp(path) == row["stamp"] and _decodes(row):
        return row
    try:
        new = _row(ExperimentRecord(path))
    except (OSError, KeyError):
        return row
    conn.execute(_UPSERT, new)
    return dict(zip(row.keys(), new))


def _decodes(row: Mapping[str, Any]) -> bool:
    """Whether the cached columns read back (a damaged catalog row is re-read from its folder)."""
    try:
        states, swept = json.loads(row["states"]), json.loads(row["swept"])
    except (TypeError, ValueError):
        return False
    return isinstance(states, dict) and isinstance(swept, list) and (
        row["checked"] is None or type(row["checked"]) in (int, float))


def rows(home: Path, name: Optional[str] = None, limit: Optional[int] = None) -> list[dict[str, Any]]:
    """Experiments, newest first (reading never creates NEMORUN_HOME)."""
    if not home.exists():
        return []
    sql, args = "SELECT * FROM experiments", []
    if name:
        sql += " WHERE name = ?"
        args.append(name)
    sql += " ORDER BY created DESC"
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ConfigError(f"limit must be a whole number >= 0, 0 or None for all (got {limit!r})")
    if limit and limit < 2**63:  # SQLite's LIMIT is a 64-bit integer; more than that is all
        sql += " LIMIT ?"
        args.append(limit)
    with closing(_connect(home, create=False)) as conn:
        sync(home, conn)
        out = [_fresh(conn, dict(r)) for r in conn.execute(sql, args).fetchall()]
    for r in out:
        r["states"] = json.loads(r["states"])
        r["swept"] = json.loads(r["swept"])
        del r["stamp"]
    return out


def resolve(home: Path, ref: str) -> Path:
    """``latest``, a full id or a unique id prefix -> experiment folder (ConfigError otherwise)."""
    if not home.exists():
        raise ConfigError(f"no experiment '{ref}': {home} does not exist yet")
    with closing(_connect(home, create=False)) as conn:
        sync(home, conn)
        if ref == "latest":
            found = list(conn.execute("SELECT id, path FROM experiments ORDER BY created DESC LIMIT 1"))
        else:
            found = list(conn.execute("SELECT id, path FROM experiments WHERE id = ?", (ref,)))
            if not found:
                found = list(conn.execute("SELECT id, path FROM experiments WHERE id LIKE ? ESCAPE '\\' ORDER BY created",
                                          (ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",)))
    if not found:
        raise ConfigError(f"no experiment '{ref}' in {home} (see: nemorun exp list)")
    if len(found) > 1:
        ids = ", ".join(r["id"] for r in found[:5])
        raise ConfigError(f"experiment id prefix '{ref}' is ambiguous: {ids}{' ...' if len(found) > 5 else ''}")
    return Path(found[0]["path"])
