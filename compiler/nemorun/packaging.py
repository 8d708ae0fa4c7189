"""Packagers: the code archive a job runs from (``packager=none|git|pattern|hybrid``).

Packaging runs once per experiment, before compiling (it reads git and the file system, which a
render may not). The archive is reproducible — entries sorted, fixed mtime/owner/mode, gzip
header without name or time — so the same code gives the same sha256 on every run and machine
with the same zlib. Archives are named by digest (:func:`archive_name`): a target that finds
that name already present does not upload it again.

Flow: every path that plans jobs (single job, multi-task experiment, sweep, ``--resume``) asks one
:class:`Packages` per experiment for each job's :class:`ir.Package`; it packs each distinct
packager config once (:func:`stage`: a private temp folder, the package pointing at the archive's
final place in the record) and :meth:`Packages.commit` moves the archives into the record and
writes ``code.json`` once the record exists, before any job is recorded. A dry run never commits;
the temp folder goes away with the :class:`Staged` object. ``packager=configmap`` is staged here
too: its files are collected and size-checked before compiling and travel in
``ir.Package.files`` (a render reads nothing); an archive of them is recorded for ``--resume``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nemorun import configmap_packaging as cmp
from nemorun import ir, progress
from nemorun.archives import file_sha256
from nemorun.capabilities import check_packager
from nemorun.capabilities import of as capabilities_of
from nemorun.lower import experiment_name
from nemorun.store import write_json
from nemorun.errors import ConfigError, one_line
from nemorun.schemas.packagers import GitPackagerConfig, PatternPackagerConfig

CODE_FILE = "code.json"
# packagers that build a tar.gz the job unpacks
ARCHIVE_KINDS = ("git", "pattern", "hybrid")
# 1980-01-01T00:00:00Z: the earliest time zip and most tools accept (0 upsets some)
FIXED_MTIME = 315532800
# archives this big take a second or more to compress (level 9): a bar on a terminal, per file
PROGRESS_MIN_BYTES = 32 << 20
PROGRESS_MIN_FILES = 2000


def archive_name(sha256: str) -> str:
    """File name of an archive: its digest, so "already present on the target" is a name check."""
    return f"code-{sha256[:16]}.tar.gz"


@dataclass(frozen=True)
class Entry:
    data: bytes = b""
    executable: bool = False
    # set for a symbolic link (data unused)
    linkname: Optional[str] = None


Entries = dict[str, Entry]


# -- git --------------------------------------------------------------------------------------
def _git(root: str, *args: str) -> bytes:
    try:
        proc = subprocess.run(["git", "-C", root, *args], capture_output=True)
    except FileNotFoundError as exc:
        raise ConfigError("packager=git needs the git command, which is not installed") from exc
    if proc.returncode != 0:
        raise ConfigError(f"packager=git: git {' '.join(args)} failed in {root}: {one_line(proc.stderr.decode(errors='replace'))}")
    return proc.stdout


def _repo_root(submit_dir: str) -> str:
    try:
        return _git(submit_dir, "rev-parse", "--show-toplevel").decode().strip()
    except ConfigError as exc:
        raise ConfigError(f"packager=git: {submit_dir} is not inside a git repository") from exc


def _clean_subpath(subpath: str) -> str:
    sub = os.path.normpath(subpath).strip("/") if subpath else ""
    if sub in (".", ""):
        return ""
    if sub.startswith(".."):
        raise ConfigError(f"packager.subpath={subpath!r} must stay inside the repository")
    return sub


def _git_entries(cfg: GitPackagerConfig, submit_dir: str) -> tuple[Entries, dict[str, Any]]:
    root = _repo_root(submit_dir)
    sub = _clean_subpath(cfg.subpath)
    if not os.path.isdir(os.path.join(root, sub)):
        raise ConfigError(f"packager.subpath={cfg.subpath!r} is not a folder of the repository {root}")
    head = _head(root)
    meta: dict[str, Any] = {"repository": root, "subpath": sub, "commit": head}
    if cfg.include_uncommitted:
        meta["uncommitted"] = True
        return _worktree_entries(root, sub), meta
    if head is None:
        raise ConfigError(f"packager=git: {root} has no commit yet; commit your code or set packager.include_uncommitted=true")
    dirty = [line[3:] for line in _git(root, "status", "--porcelain", "--untracked-files=normal").decode(errors="replace").splitlines()]
    if dirty:
        more = f" and {len(dirty) - 1} more" if len(dirty) > 1 else ""
        raise ConfigError(
            f"packager=git: {root} has uncommitted changes ({dirty[0]}{more}); commit them, add them to .gitignore, "
            "or set packager.include_uncommitted=true to pack the working tree"
        )
    tree = _git(root, "archive", "--format=tar", f"HEAD:{sub}" if sub else "HEAD")
    return _tar_entries(tree), meta


def _head(root: str) -> Optional[str]:
    """The commit checked out, or None in a repository without commits."""
    proc = subprocess.run(["git", "-C", root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}"], capture_output=True)
    return proc.stdout.decode().strip() or None if proc.returncode == 0 else None


def _tar_entries(blob: bytes) -> Entries:
    out: Entries = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as tar:
        for m in tar.getmembers():
            if m.issym():
                out[m.name] = Entry(linkname=m.linkname)
            elif m.isfile():
                f = tar.extractfile(m)
                out[m.name] = Entry(data=f.read() if f else b"", executable=bool(m.mode & 0o111))
    return out


def _file_entry(path: Path) -> Entry:
    if path.is_symlink():
        return Entry(linkname=os.readlink(path))
    return Entry(data=path.read_bytes(), executable=os.access(path, os.X_OK))


def _worktree_entries(root: str, sub: str) -> Entries:
    """Tracked and untracked files of the working tree, minus what .gitignore excludes."""
    listed = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", sub or ".").split(b"\0")
    out: Entries = {}
    for raw in listed:
        rel = raw.decode()
        path = Path(root, rel)
        if not rel or not (path.is_file() or path.is_symlink()):
            continue  # deleted in the working tree, or a submodule folder
        out[os.path.relpath(rel, sub) if sub else rel] = _file_entry(path)
    return out


# -- pattern ------------------------------------------------------------------------------------
def _pattern_entries(cfg: PatternPackagerConfig, submit_dir: str) -> tuple[Entries, dict[str, Any]]:
    base = Path(submit_dir, cfg.relative_path or "").resolve()
    if not base.is_dir():
        raise ConfigError(f"packager.relative_path={cfg.relative_path!r}: {base} is not a folder")
    patterns = [cfg.include_pattern] if isinstance(cfg.include_pattern, str) else list(cfg.include_pattern or [])
    if not patterns:
        raise ConfigError("packager.include_pattern is empty; give one glob or a list of globs")
    out: Entries = {}
    for pattern in patterns:
        pattern = str(pattern)
        if os.path.isabs(pattern) or ".." in Path(pattern).parts:
            raise ConfigError(f"packager.include_pattern {pattern!r} must be relative to {base} and stay inside it")
        matches = sorted(base.glob(pattern))
        if not matches:
            raise ConfigError(f"packager.include_pattern {pattern!r} matches nothing under {base}")
        for match in matches:
            files = sorted(p for p in match.rglob("*") if not p.is_dir()) if match.is_dir() and not match.is_symlink() else [match]
            for path in files:
                rel = path.relative_to(base)
                if ".git" not in rel.parts:
                    out[rel.as_posix()] = _file_entry(path)
    return out, {"base": str(base), "include_pattern": patterns}


# -- hybrid -------------------------------------------------------------------------------------
_SUB_SCHEMAS: Mapping[str, type] = {"git": GitPackagerConfig, "pattern": PatternPackagerConfig}


def _sub_config(name: str, raw: Any) -> Any:
    kind = raw.get("kind") if isinstance(raw, Mapping) else None
    schema = _SUB_SCHEMAS.get(str(kind))
    if schema is None:
        raise ConfigError(f"packager.sub_packagers.{name}.kind must be one of {', '.join(_SUB_SCHEMAS)} (got {kind!r})")
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), raw))
    except OmegaConfBaseException as exc:
        raise ConfigError(f"packager.sub_packagers.{name}: {one_line(str(exc))}") from exc


def _hybrid_entries(cfg: Any, submit_dir: str) -> tuple[Entries, dict[str, Any]]:
    subs = dict(cfg.sub_packagers or {})
    if not subs:
        raise ConfigError("packager=hybrid needs packager.sub_packagers (name -> {kind: git|pattern, ...})")
    out: Entries = {}
    origin: dict[str, str] = {}
    meta: dict[str, Any] = {"extract_at_root": bool(cfg.extract_at_root), "sub_packagers": {}}
    for name in sorted(subs):
        if not cfg.extract_at_root and (not name or "/" in name or name in (".", "..")):
            raise ConfigError(f"packager.sub_packagers: {name!r} cannot be a folder name")
        entries, sub_meta = _collect(_sub_config(name, subs[name]), submit_dir)
        meta["sub_packagers"][name] = sub_meta
        for rel, entry in entries.items():
            arc = rel if cfg.extract_at_root else f"{name}/{rel}"
            if arc in origin:
                raise ConfigError(
                    f"packager=hybrid with extract_at_root: '{arc}' comes from both sub_packagers "
                    f"'{origin[arc]}' and '{name}'; narrow one of them or set packager.extract_at_root=false"
                )
            origin[arc] = name
            out[arc] = entry
    return out, meta


def _collect(cfg: Any, submit_dir: str) -> tuple[Entries, dict[str, Any]]:
    if cfg.kind == "git":
        return _git_entries(cfg, submit_dir)
    if cfg.kind == "pattern":
        return _pattern_entries(cfg, submit_dir)
    if cfg.kind == "hybrid":
        return _hybrid_entries(cfg, submit_dir)
    raise ConfigError(f"packager '{cfg.kind}' cannot build an archive here; known: git, pattern, hybrid")


def _source_dir(cfg: Any, meta: Mapping[str, Any]) -> Optional[str]:
    if cfg.kind == "git":
        return os.path.join(meta["repository"], meta["subpath"]) if meta["subpath"] else meta["repository"]
    if cfg.kind == "pattern":
        return str(meta["base"])
    return None


# -- the archive --------------------------------------------------------------------------------
def _info(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_archive(entries: Mapping[str, Entry], dest: Path) -> str:
    """Write a reproducible tar.gz of ``entries`` (folders included, sorted) and return its sha256."""
    if not entries:
        raise ConfigError("the packager selected no files; nothing to ship")
    folders = {str(p) for name in entries for p in Path(name).parents if str(p) != "."}
    names = sorted(folders | set(entries))
    big = len(entries) >= PROGRESS_MIN_FILES or sum(len(e.data) for e in entries.values()) >= PROGRESS_MIN_BYTES
    advance, close = progress.bar("packing code", len(names), min_total=1 if big else len(names) + 1)
    with open(dest, "wb") as raw, contextlib.ExitStack() as shown:
        shown.callback(close)
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for name in names:
                    entry = entries.get(name)
                    if entry is None:
                        tar.addfile(_info(name, tarfile.DIRTYPE, 0o755))
                    elif entry.linkname is not None:
                        info = _info(name, tarfile.SYMTYPE, 0o777)
                        info.linkname = entry.linkname
                        tar.addfile(info)
                    else:
                        info = _info(name, tarfile.REGTYPE, 0o755 if entry.executable else 0o644, len(entry.data))
                        tar.addfile(info, io.BytesIO(entry.data))
                    advance()
    digest = hashlib.sha256()
    with open(dest, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build(packager: Any, submit_dir: str, out_dir: Path) -> tuple[Path, str, dict[str, Any]]:
    """Pack per ``packager`` (typed config) into ``out_dir``: (archive path, sha256, manifest)."""
    entries, meta = _collect(packager, submit_dir)
    tmp = out_dir / "code.tar.gz.tmp"
    sha = write_archive(entries, tmp)
    path = out_dir / archive_name(sha)
    os.replace(tmp, path)
    manifest = {"kind": packager.kind, "sha256": sha, "archive": path.name, "files": len(entries), "bytes": path.stat().st_size, **meta}
    manifest["source_dir"] = _source_dir(packager, meta)
    return path, sha, manifest


@dataclass
class Staged:
    """An archive built in a private temp folder (or found in a record), waiting for the record."""

    package: ir.Package
    # the archive; None for a configmap packager that selected no file
    path: Optional[Path]
    manifest: dict[str, Any] = field(default_factory=dict)
    # already in the experiment record (a resumed experiment's archive)
    committed: bool = False


def packager_config(cfg: DictConfig) -> Any:
    try:
        return OmegaConf.to_object(cfg.packager)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"packager: {one_line(str(exc))}") from exc


def _configmap_files(packager: Any, base_dir: str) -> dict[str, bytes]:
    """The files of ``packager=configmap`` (collected, size-checked): before compile, never in a render."""
    files = cmp.collect(packager, base_dir)
    cmp.check_size(f"{packager.configmap_prefix}-<TrainJob name>", files)
    return files


def stage(packager: Any, submit_dir: str, experiment_dir: str, base_dir: Optional[str] = None) -> Optional[Staged]:
    """Build the experiment's archive; ``None`` when the packager ships nothing from here.

    ``base_dir`` (default ``submit_dir``) is where ``packager=configmap`` looks for files when it
    has no ``base_path`` (the job's working directory); its files also travel in the IR.
    """
    if packager is None or packager.kind not in (*ARCHIVE_KINDS, "configmap"):
        return None
    tmp = tempfile.mkdtemp(prefix="nemorun-package-")
    config = {"config": _plain(packager), "base_dir": base_dir or submit_dir}
    if packager.kind == "configmap":
        files = _configmap_files(packager, base_dir or submit_dir)
        path, sha = None, None
        if files:
            sha = write_archive({k: Entry(data=v) for k, v in files.items()}, Path(tmp, "code.tar.gz.tmp"))
            path = Path(tmp, archive_name(sha))
            os.replace(Path(tmp, "code.tar.gz.tmp"), path)
        manifest: dict[str, Any] = {"kind": "configmap", "sha256": sha, "archive": path.name if path else None,
                                    "files": len(files), "bytes": path.stat().st_size if path else 0, "source_dir": None}
        package = ir.Package(kind="configmap", sha256=sha, files=tuple(sorted(files.items())))
    else:
        path, sha, manifest = build(packager, submit_dir, Path(tmp))
        package = ir.Package(kind=packager.kind, archive=os.path.join(experiment_dir, path.name), sha256=sha,
                             source_dir=manifest["source_dir"])
    staged = Staged(package, path, {**manifest, **config})
    weakref.finalize(staged, shutil.rmtree, tmp, True)
    return staged


def _plain(packager: Any) -> Any:
    return dataclasses.asdict(packager) if dataclasses.is_dataclass(packager) and not isinstance(packager, type) else packager


def _key(config: Any, base_dir: str) -> str:
    """Identity of a packager config: the same key packs the same files (one archive)."""
    return json.dumps([config, base_dir], sort_keys=True, default=str)


def _commit(staged: list[Staged], record_dir: Path, recorded: list[dict[str, Any]]) -> None:
    """Move the new archives into the record; ``code.json`` = the first manifest, plus all of them
    under ``packages`` when the experiment has several packager configs."""
    new = [s for s in staged if not s.committed]
    if not new:
        return
    for s in new:
        if s.path is not None:
            shutil.move(str(s.path), record_dir / s.path.name)
            s.path = record_dir / s.path.name
        s.committed = True
    manifests = [*recorded, *(s.manifest for s in new)]
    body = manifests[0] if len(manifests) == 1 else {**manifests[0], "packages": manifests}
    write_json(record_dir / CODE_FILE, body)


def _read_archive(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, mode="r:gz") as tar:
        return {m.name: (tar.extractfile(m) or io.BytesIO()).read() for m in tar.getmembers() if m.isfile()}


def recorded_manifests(record_dir: Path) -> list[dict[str, Any]]:
    """The manifests in an experiment's ``code.json`` (one per distinct packager), oldest first."""
    path = Path(record_dir) / CODE_FILE
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    return list(data.get("packages") or [data])


def _accepted(target: str, kind: str) -> bool:
    """Whether to pack for this target. A packager the target does not ship (its declared
    ``CAPABILITIES.packagers``) is refused here, before any code is packed, with the same line
    ``nemorun.lower.compile_job`` would give."""
    check_packager(target, kind)
    return True


class Packages:
    """One experiment's packaging: each distinct packager config is packed once, then committed once.

    Every path that plans jobs (single job, multi-task experiment, sweep, resume) asks this for
    each job's :class:`ir.Package` (:meth:`package`, given the job's composed config); tasks or
    sweep points with the same packager config share one archive. With ``record_dir`` (resume),
    the archives recorded there (``code.json``) are reused as they are, not packed again, so
    resumed jobs render byte-identical artifacts; a packager missing from the record is packed.

    With ``code_from`` (``exp rerun``), the code is the code that EARLIER experiment ran, not the
    working tree as it is now: each job gets the archive recorded there for the same packager
    config, checked against its recorded sha256 and copied into the new record (``exp rerun
    --fresh-code`` packs the current tree instead).
    """

    def __init__(self, site: Any, record_dir: Optional[Path] = None, code_from: Optional[Path] = None):
        self._site = site
        self._staged: dict[str, Optional[Staged]] = {}
        # archive packages with their files read, for targets whose artifact carries the files
        self._files: dict[str, ir.Package] = {}
        self._recorded = recorded_manifests(record_dir) if record_dir is not None else []
        self._record_dir = record_dir
        self._code_from = code_from
        self._earlier = recorded_manifests(code_from) if code_from is not None else []

    def package(self, cfg: DictConfig) -> ir.Package:
        packager = packager_config(cfg)
        if not _accepted(str(cfg.executor.kind), packager.kind):
            return ir.Package()
        base_dir = str(cfg.executor.get("workdir") or self._site.submit_dir) if packager.kind == "configmap" else self._site.submit_dir
        key = _key(_plain(packager), base_dir)
        experiment_dir = self._site.experiment_dir(experiment_name(cfg))
        if key not in self._staged:
            self._staged[key] = (self._from_record(key, experiment_dir)
                                 or (self._from_earlier(packager, experiment_dir) if self._code_from is not None else None)
                                 or stage(packager, self._site.submit_dir, experiment_dir, base_dir))
        found = self._staged[key]
        if found is None:
            return ir.Package()
        carried = capabilities_of(str(cfg.executor.kind)).code_in_artifact
        if found.path is not None and found.package.archive and carried == "files":
            return self._with_files(key, found.package, found.path)
        if found.path is not None and found.package.archive and carried == "bytes":
            return dataclasses.replace(found.package, archive_data=found.path.read_bytes())
        return found.package

    def _with_files(self, key: str, package: ir.Package, path: Path) -> ir.Package:
        """The package with its archive's files, read once and size-checked before compiling (a
        ConfigMap holds at most 1 MiB; a render never reads the disk)."""
        if key not in self._files:
            files = cmp.archive_files(str(path))
            cmp.check_size("nemorun-code-<TrainJob name>", files)
            self._files[key] = dataclasses.replace(package, files=tuple(files.items()))
        return self._files[key]

    def _from_record(self, key: str, experiment_dir: str) -> Optional[Staged]:
        for m in self._recorded:
            if "config" not in m or _key(m["config"], m.get("base_dir", "")) != key:
                continue
            path = Path(self._record_dir, m["archive"]) if m.get("archive") else None  # type: ignore[arg-type]
            if path is not None and not path.is_file():
                return None
            if m["kind"] == "configmap":
                files = _read_archive(path) if path is not None else {}
                package = ir.Package(kind="configmap", sha256=m["sha256"], files=tuple(sorted(files.items())))
            else:
                package = ir.Package(kind=m["kind"], archive=os.path.join(experiment_dir, m["archive"]), sha256=m["sha256"],
                                     source_dir=m["source_dir"])
            return Staged(package, path, m, committed=True)
        return None

    def _from_earlier(self, packager: Any, experiment_dir: str) -> Optional[Staged]:
        """The archive the earlier experiment recorded for this packager config, verified and
        staged for the new record; None when it shipped no code and none is asked for."""
        if packager.kind == "none":
            return None
        earlier = self._code_from
        matches = [m for m in self._earlier if m.get("config") == _plain(packager)]
        if not matches:
            raise ConfigError(f"experiment {Path(str(earlier)).name} recorded no code for this packager config "
                              f"(packager={packager.kind}); rerun with --fresh-code to pack the current tree")
        m = matches[0]
        if not m.get("archive"):
            return None  # a configmap packager that selected no file
        path = Path(str(earlier), m["archive"])
        if not path.is_file():
            raise ConfigError(f"the code archive {path} of experiment {Path(str(earlier)).name} is missing; "
                              "rerun with --fresh-code to pack the current tree")
        digest = file_sha256(path)
        if digest != m["sha256"]:
            raise ConfigError(f"the code archive {path} does not match its recorded sha256 ({digest[:12]} != "
                              f"{m['sha256'][:12]}); rerun with --fresh-code to pack the current tree")
        tmp = tempfile.mkdtemp(prefix="nemorun-rerun-")
        copy = Path(tmp, path.name)
        shutil.copyfile(path, copy)
        manifest = {**m, "rerun_of": Path(str(earlier)).name}
        if m["kind"] == "configmap":
            package = ir.Package(kind="configmap", sha256=m["sha256"], files=tuple(sorted(_read_archive(copy).items())))
        else:
            source = Path(tmp, "source")
            with tarfile.open(copy, mode="r:gz") as tar:  # where compile imports function targets from
                tar.extractall(source, filter="data")
            package = ir.Package(kind=m["kind"], archive=os.path.join(experiment_dir, path.name), sha256=m["sha256"],
                                 source_dir=str(source))
            manifest["source_dir"] = m.get("source_dir")
        staged = Staged(package, copy, manifest)
        weakref.finalize(staged, shutil.rmtree, tmp, True)
        return staged

    def commit(self, record_dir: Path) -> None:
        """Move the new archives into the record and (re)write ``code.json``; the recorded ones stay."""
        _commit([s for s in self._staged.values() if s is not None], Path(record_dir), self._recorded)
