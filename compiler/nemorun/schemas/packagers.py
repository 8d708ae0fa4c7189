"""Schemas of ``packager=git|pattern|hybrid``: how the job's code is shipped (NeMo-Run's semantics).

Packaging runs once per experiment, before compiling; the archive (reproducible tar.gz) and its
sha256 go into the experiment record. See ``nemorun.packaging``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict

from omegaconf import MISSING


@dataclass
class GitPackagerConfig:
    """``git archive`` of the committed tree of the repository holding the submit directory."""

    kind: str = "git"
    # folder of the repository (relative to its root) whose contents are packed and become the
    # job's working directory (on the Python path of function tasks); "" = the whole repository
    subpath: str = ""
    # pack the working tree instead (tracked + untracked files, .gitignore honoured);
    # without it, uncommitted changes are an error
    include_uncommitted: bool = False


@dataclass
class PatternPackagerConfig:
    """Files matching glob patterns (``**`` recurses), relative to ``relative_path``."""

    kind: str = "pattern"
    # one glob or a list of globs; a matched folder brings all files below it
    include_pattern: Any = MISSING
    # folder the patterns and archive paths are relative to; relative to the submit directory
    relative_path: str = ""


@dataclass
class HybridPackagerConfig:
    """Several packagers in one archive: each into a subfolder named by its key, or all at the root."""

    kind: str = "hybrid"
    # name -> packager config (a mapping with ``kind: git|pattern`` and that packager's fields)
    sub_packagers: Dict[str, Any] = field(default_factory=dict)
    # unpack every sub-archive at the root instead of <name>/ (a path from two sources is an error)
    extract_at_root: bool = False


SCHEMAS: dict[str, type] = {
    "_schema_packager_git": GitPackagerConfig,
    "_schema_packager_pattern": PatternPackagerConfig,
    "_schema_packager_hybrid": HybridPackagerConfig,
}
