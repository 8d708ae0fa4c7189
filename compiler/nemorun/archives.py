"""Reading and unpacking a recorded code archive where a job runs from it.

One implementation for every submitter that places code itself (Docker's per-digest cache,
SkyPilot's workdir, DGX Cloud's PVC) and for ``exp rerun``'s check of a recorded archive: each
used to hash and unpack archives its own way.
"""
from __future__ import annotations

import hashlib
import shutil
import tarfile
import tempfile
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, read in 1 MiB chunks (archives can be large). Raises OSError."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def extract_beside(archive: str | Path, dest: Path) -> Path:
    """The archive unpacked into a new private folder next to ``dest`` (same file system), for
    the caller to rename into place: a folder under ``dest``'s name is then always complete.
    Members are extracted with tarfile's ``data`` filter (no paths outside, no devices). On
    failure the folder is removed and the OSError/TarError raised."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp
