"""A cache of composed configs for single runs, keyed by everything a compose reads.

Why: composing nemorun's config tree costs Hydra about 250 ms on these machines, as much as the
rest of a dry run together, and a user repeats the same command line again and again (edit
code, rerun). The composed ``DictConfig`` holds interpolations unresolved, so the environment
(``${oc.env:...}``) is read at use, never frozen into the cache.

The key covers: the exact override list; nemorun's, Hydra's and OmegaConf's versions; every file
(name, size, mtime) under the packaged config tree, the schema modules and each folder of
``NEMORUN_CONFIG_PATH``. Any change to any of them is a miss. ``NEMORUN_COMPOSE_CACHE=0``
turns the cache off. Entries live in ``NEMORUN_HOME/cache/compose/`` (pickles of nemorun's own
objects, in the user's own folder) and the oldest are pruned past ``MAX_ENTRIES``.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import importlib.util
from pathlib import Path
from typing import Any, Optional, Sequence

from nemorun.store import atomic_write, nemorun_home

MAX_ENTRIES = 512


def _enabled() -> bool:
    return os.environ.get("NEMORUN_COMPOSE_CACHE", "1") not in ("0", "false", "no")


def tree_stamp(root: Path, digest: Any) -> None:
    """Feed ``digest`` the size and mtime of every config file under ``root``: an edit is a new key."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith((".yaml", ".yml", ".py")):
                try:
                    st = os.stat(os.path.join(dirpath, name))
                    stamp = f"{st.st_size}:{st.st_mtime_ns}"
                except OSError:  # a dangling link or a file removed meanwhile: Hydra says what it makes of it
                    stamp = "unreadable"
                digest.update(f"{dirpath}/{name}:{stamp}\n".encode(errors="surrogateescape"))


def _package_dir(name: str) -> Path:
    """Where a package's files are, without importing it (importing ``nemorun.conf`` registers
    every schema with Hydra, the very cost a cache hit avoids)."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, name
    return Path(list(spec.submodule_search_locations)[0])


def cache_key(overrides: Sequence[str]) -> Optional[str]:
    if not _enabled():
        return None
    from importlib import metadata  # here: with the cache off, its import (email, zipfile, csv) is all it would cost

    digest = hashlib.sha256()
    for dist in ("nemorun", "hydra-core", "omegaconf"):
        try:
            digest.update(f"{dist}={metadata.version(dist)}\n".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{dist}=?\n".encode())
    digest.update(repr(list(overrides)).encode())
    roots = [_package_dir("nemorun.conf"), _package_dir("nemorun.schemas")]
    roots += [Path(d).expanduser().resolve() for d in os.environ.get("NEMORUN_CONFIG_PATH", "").split(os.pathsep) if d]
    for root in roots:
        digest.update(f"root {root}\n".encode(errors="surrogateescape"))  # a folder name need not be UTF-8
        if root.is_dir():
            tree_stamp(root, digest)
    return digest.hexdigest()


def _path(key: str) -> Path:
    return nemorun_home() / "cache" / "compose" / f"{key}.pkl"


def read_entry(path: Path) -> Optional[bytes]:
    """What :func:`write_entry` stored at ``path``, or None when it is absent, unreadable or damaged.

    The first 32 bytes are the sha256 of the rest: a truncated or damaged entry is a miss, never an
    answer (a damaged pickle raises UnicodeDecodeError, TypeError, ValueError, ... or loads as garbage;
    a truncated ``--help`` would print as the help)."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if len(data) < 32 or hashlib.sha256(data[32:]).digest() != data[:32]:
        return None
    return data[32:]


def write_entry(path: Path, data: bytes) -> None:
    """Store ``data`` at ``path`` atomically (two launches, or a TAB pressed twice, may race) and keep
    the newest :data:`MAX_ENTRIES` of its folder; a cache that cannot be written only costs time."""
    try:
        atomic_write(path, hashlib.sha256(data).digest() + data)
        entries = sorted((p for p in path.parent.iterdir() if not p.name.startswith(".")), key=lambda p: p.stat().st_mtime)
        for old in entries[: max(0, len(entries) - MAX_ENTRIES)]:
            old.unlink(missing_ok=True)
    except OSError:
        pass


def load(key: Optional[str]) -> Optional[Any]:
    data = None if key is None else read_entry(_path(key))
    if data is None:
        return None  # absent, unreadable or damaged: compose again
    try:
        return pickle.loads(data)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return None  # written by another nemorun or Hydra version than the one now installed


def save(key: Optional[str], cfg: Any) -> None:
    if key is not None:
        write_entry(_path(key), pickle.dumps(cfg, protocol=pickle.HIGHEST_PROTOCOL))
