"""SQLite index of the experiment folders: ``NEMORUN_HOME/catalog.db``.

Why both: the folders (:mod:`nemorun.store`) are the truth and readable by any tool; listing
hundreds of experiments by opening every ``experiment.json`` and ``record.json`` would be slow.
The catalog caches one row per experiment (id, name, target, created, jobs, state counts).
It is only a cache: :func:`sync` adds folders it does not know (a launch killed before its
insert) and drops rows whose folder is gone, and deleting ``catalog.db`` loses nothing.

Concurrency: SQLite's own locking (WAL journal, 30 s busy timeout) serialises writers from
concurrent launches; creating the schema is guarded by a file lock (``catalog.db.lock``) because
switching the journal mode is not itself safe to race.
"""
from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional

if TYPE_CHECKING:
    from nemorun.store import ExperimentRecord

DB_NAME = "catalog.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS experiments (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    created REAL NOT NULL,
    path TEXT NOT NULL,
    jobs INTEGER NOT NULL,
    states TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS experiments_name ON experiments (name, created);
CREATE INDEX IF NOT EXISTS experiments_created ON experiments (created);
"""


def _connect(home: Path) -> sqlite3.Connection:
    from filelock import FileLock

    home.mkdir(parents=True, exist_ok=True)
    db = home / DB_NAME
    with FileLock(str(db) + ".lock", timeout=60):
        conn = sqlite3.connect(str(db), timeout=30, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(_SCHEMA)
    conn.row_factory = sqlite3.Row
    return conn


def _row(rec: "ExperimentRecord", meta: Optional[dict[str, Any]] = None, states: Optional[dict[str, int]] = None) -> tuple[Any, ...]:
    meta = meta or rec.meta
    if states is None:
        states = {"UNSUBMITTED": len(meta["jobs"])}
    return (
        meta["id"], meta["name"], meta["target"], meta.get("kind", "single"), float(meta["created"]),
        str(rec.path), len(meta["jobs"]), json.dumps(states, sort_keys=True),
    )


_UPSERT = "INSERT OR REPLACE INTO experiments VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def upsert(home: Path, rec: "ExperimentRecord", states: Optional[dict[str, int]] = None) -> None:
    with closing(_connect(home)) as conn:
        conn.execute(_UPSERT, _row(rec, states=states))


def refresh(home: Path, rec: "ExperimentRecord") -> None:
    """Recount the experiment's job states from its folder (after a launch or a status)."""
    upsert(home, rec, rec.state_counts())


def _folders(home: Path) -> Iterator[Path]:
    root = home / "experiments"
    if not root.is_dir():
        return
    for name_dir in os.scandir(root):
        if name_dir.is_dir():
            for exp_dir in os.scandir(name_dir.path):
                if exp_dir.is_dir() and not exp_dir.name.startswith("."):
                    yield Path(exp_dir.path)


def sync(home: Path) -> None:
    """Make the catalog agree with the folders: a directory scan, JSON read only for new ones."""
    from nemorun.store import EXPERIMENT_FILE, ExperimentRecord

    folders = {p.name: p for p in _folders(home) if (p / EXPERIMENT_FILE).exists()}
    with closing(_connect(home)) as conn:
        known = {r["id"]: r["path"] for r in conn.execute("SELECT id, path FROM experiments")}
        gone = [i for i, path in known.items() if i not in folders or str(folders[i]) != path]
        conn.executemany("DELETE FROM experiments WHERE id = ?", [(i,) for i in gone])
        for exp_id, path in folders.items():
            if exp_id not in known or exp_id in gone:
                rec = ExperimentRecord(path)
                try:
                    conn.execute(_UPSERT, _row(rec, states=rec.state_counts()))
                except (OSError, ValueError, KeyError):
                    continue  # half-written folder of a launch still starting: next sync


def rows(home: Path, name: Optional[str] = None, limit: Optional[int] = None) -> list[dict[str, Any]]:
    """Experiments, newest first (reading never creates NEMORUN_HOME)."""
    if not home.exists():
        return []
    sync(home)
    sql, args = "SELECT * FROM experiments", []
    if name:
        sql += " WHERE name = ?"
        args.append(name)
    sql += " ORDER BY created DESC"
    if limit:
        sql += f" LIMIT {int(limit)}"
    with closing(_connect(home)) as conn:
        out = [dict(r) for r in conn.execute(sql, args)]
    for r in out:
        r["states"] = json.loads(r["states"])
    return out


def resolve(home: Path, ref: str) -> Path:
    """``latest``, a full id or a unique id prefix -> experiment folder (ConfigError otherwise)."""
    from nemorun.errors import ConfigError

    if not home.exists():
        raise ConfigError(f"no experiment '{ref}': {home} does not exist yet")
    sync(home)
    with closing(_connect(home)) as conn:
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
