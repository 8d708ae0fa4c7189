"""Packager ``configmap``: the job's code as a Kubernetes ConfigMap, mounted into the pods.

Why a ConfigMap: it needs no registry, shared file system or object store: the apiserver holds
the files (at most 1 MiB in total, checked here before anything is sent). The files are
collected (:func:`collect`) and size-checked by ``nemorun.packaging`` before compiling and travel
in ``ir.Package.files``; the kubeflow render only formats them (:func:`bundle`).

Key mapping. ConfigMap keys may only hold ``[-._a-zA-Z0-9]`` (and may not start with ``..``),
while file paths hold ``/`` and anything else. Keys are an escaped form of the path with ``.`` as
the escape character (a literal ``..`` is rare in file names, so keys stay readable), and the
mapping is reversible (:func:`decode_key`):

- ``A-Z a-z 0-9 _ -`` stay as they are: ``my_mod-2.py`` → ``my_mod-2.py``;
- ``/`` becomes ``..``: ``src/a.py`` → ``src..a.py``;
- ``.`` stays, except before ``.``, ``/``, ``-``, an escaped character or at the start of
  ``..``, where it becomes ``.-2e``: ``a./b`` → ``a.-2e..b``, ``..rc`` → ``.-2e.rc``;
- any other character becomes ``.-`` plus two lower-case hex digits per UTF-8 byte:
  ``a b`` → ``a.-20b``.

The pod never sees keys: the volume lists every key with its original path (``items``), so
Kubernetes itself lays the files out as they were under ``base_path``.

File modes. A ConfigMap keeps no file modes, and its volume writes every file ``0644``
(``defaultMode``) unless the item names a ``mode``: a shipped ``run.sh``, or a tool a script calls
as ``./tools/x.sh``, could not be run ("Permission denied"). Each item of a file the kernel can
execute directly — one starting with ``#!`` or an ELF header, which is all ``execve`` looks at —
gets ``mode: 0755`` (:data:`EXEC_MODE`); others keep the default. Decided from the content
because that is what reaches the render (``ir.Package.files`` holds bytes: the configmap
packager's own files and the git/pattern archives' alike), so the same file gets the same mode on
every path (launch, sweep, ``--resume`` from the recorded archive).
"""
from __future__ import annotations

import base64
import io
import os
import posixpath
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from nemorun.errors import ConfigError

# core.MaxSecretSize, which ValidateConfigMap applies to data + binaryData values
MAX_CONFIGMAP_BYTES = 1024 * 1024
MAX_KEY_LENGTH = 253
# the mode of a file the kernel can execute directly (see "File modes" above); int32 on the wire
EXEC_MODE = 0o755
_EXEC_MAGIC = (b"#!", b"\x7fELF")
_PLAIN = re.compile(r"[A-Za-z0-9_\-]")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _escape(ch: str) -> str:
    return "".join(f".-{b:02x}" for b in ch.encode("utf-8"))


def encode_key(path: str) -> str:
    """ConfigMap key of a relative POSIX file path (see the table in the module docstring)."""
    out: list[str] = []
    for i, ch in enumerate(path):
        nxt = path[i + 1 : i + 2]
        if ch == "/":
            out.append("..")
        elif _PLAIN.fullmatch(ch):
            out.append(ch)
        elif ch == "." and (nxt == "" or (nxt != "-" and _PLAIN.fullmatch(nxt))):
            out.append(".")
        else:
            out.append(_escape(ch))
    return "".join(out)


def decode_key(key: str) -> str:
    """The file path a key stands for: the inverse of :func:`encode_key`."""
    raw = bytearray()
    i = 0
    while i < len(key):
        ch, nxt = key[i], key[i + 1 : i + 2]
        if ch == "." and nxt == ".":
            raw += b"/"
            i += 2
        elif ch == "." and nxt == "-":
            code = key[i + 2 : i + 4]
            if not re.fullmatch(r"[0-9a-f]{2}", code):
                raise ValueError(f"ConfigMap key {key!r} is not an encoded path (bad escape at {i})")
            raw.append(int(code, 16))
            i += 4
        else:
            raw += ch.encode("utf-8")
            i += 1
    return raw.decode("utf-8")


def _as_list(value: Any, what: str) -> list[str]:
    items = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
    if not items or not all(isinstance(v, str) and v for v in items):
        raise ConfigError(f"packager.{what} must be a non-empty string or a list of them, got {value!r}")
    return items


def _pairs(cfg: Any) -> list[tuple[str, str]]:
    """(relative_path, pattern) pairs: lists are paired in order; a single folder serves all patterns."""
    patterns = _as_list(cfg.include_pattern, "include_pattern")
    folders = _as_list(cfg.relative_path, "relative_path")
    if len(folders) == 1:
        folders = folders * len(patterns)
    if len(folders) != len(patterns):
        raise ConfigError(
            f"packager.relative_path has {len(folders)} entries but include_pattern has {len(patterns)}; give one folder or one per pattern"
        )
    return list(zip(folders, patterns))


def collect(cfg: Any, base_dir: str) -> dict[str, bytes]:
    """Relative POSIX path -> content of every file the packager config selects under ``base_dir``."""
    base = Path(cfg.base_path or base_dir).expanduser()
    if not base.is_dir():
        raise ConfigError(f"packager base folder {base} does not exist (set packager.base_path)")
    base = base.resolve()
    files: dict[str, bytes] = {}
    for folder, pattern in _pairs(cfg):
        root = (base / folder).resolve()
        if not root.is_relative_to(base):
            raise ConfigError(f"packager.relative_path {folder!r} leaves the base folder {base}")
        if not root.is_dir():
            raise ConfigError(f"packager.relative_path {folder!r}: {root} is not a folder")
        for path in sorted(root.rglob(pattern)):
            if path.is_file() and path.resolve().is_relative_to(base):
                files[path.resolve().relative_to(base).as_posix()] = path.read_bytes()
    return dict(sorted(files.items()))


# a chain of links longer than this is a loop (Linux's own limit)
_MAX_LINKS = 40


def archive_files(archive: str) -> dict[str, bytes]:
    """Relative POSIX path -> content of the files of a packager's tar.gz (``nemorun.packaging``).

    A ConfigMap holds files only: a symbolic link to a file of the archive becomes a copy of that
    file; one pointing elsewhere (outside, to a folder, a loop) is refused, as the pod could not
    follow it. Size is not checked here (see :func:`check_size`)."""
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members = tar.getmembers()
            files = {m.name: (tar.extractfile(m) or io.BytesIO()).read() for m in members if m.isfile()}
            links = {m.name: m.linkname for m in members if m.issym()}
    except (OSError, tarfile.TarError) as exc:
        raise ConfigError(f"cannot read the code archive {archive}: {exc}") from None
    for name in links:
        path = name
        for _ in range(_MAX_LINKS):
            if path not in links:
                break
            path = posixpath.normpath(posixpath.join(posixpath.dirname(path), links[path]))
        if path not in files:
            raise ConfigError(
                f"packaged file {name} is a symbolic link to {links[name]}, which is not a file of the package; "
                "a ConfigMap cannot hold it (exclude it from the packager or replace it with the file)"
            )
        files[name] = files[path]
    return dict(sorted(files.items()))


def _human(n: int) -> str:
    return f"{n / 1024 / 1024:.2f} MiB" if n >= 1024 * 1024 else f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def check_size(name: str, files: Mapping[str, bytes]) -> None:
    """Refuse a ConfigMap over the apiserver's limit, naming the files that weigh most."""
    total = sum(len(v) for v in files.values())
    if total <= MAX_CONFIGMAP_BYTES:
        return
    largest = sorted(files.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:3]
    listed = ", ".join(f"{path} ({_human(len(data))})" for path, data in largest)
    raise ConfigError(
        f"ConfigMap {name} would hold {_human(total)} in {len(files)} files, over Kubernetes' 1 MiB limit; "
        f"largest: {listed}; narrow packager.include_pattern / packager.relative_path"
    )


def configmap_name(prefix: str, suffix: str) -> str:
    name = re.sub(r"[^a-z0-9.-]+", "-", f"{prefix}-{suffix}".lower()).strip("-.")[:253].rstrip("-.")
    if not _DNS1123_SUBDOMAIN.match(name):
        raise ConfigError(f"packager.configmap_prefix {prefix!r} does not give a valid ConfigMap name ({name!r})")
    return name


@dataclass(frozen=True)
class ConfigMapBundle:
    """The files of one ConfigMap, by path, and where it is."""

    name: str
    namespace: str
    files: Mapping[str, bytes]

    def items(self) -> list[dict[str, Any]]:
        """The volume's ``items``: each key back to its path (what makes the mapping visible to the
        pod), with ``mode`` for a file that must stay executable."""
        return [{"key": encode_key(path), "path": path, **({"mode": EXEC_MODE} if is_executable(data) else {})}
                for path, data in self.files.items()]

    def manifest(self, labels: Mapping[str, str]) -> dict[str, Any]:
        """core/v1 ConfigMap: UTF-8 files in ``data``, anything else base64 in ``binaryData``."""
        data: dict[str, str] = {}
        binary: dict[str, str] = {}
        for path, content in self.files.items():
            key = encode_key(path)
            if len(key) > MAX_KEY_LENGTH:
                raise ConfigError(f"packaged file path {path!r} is too long for a ConfigMap key ({len(key)} > {MAX_KEY_LENGTH})")
            try:
                data[key] = content.decode("utf-8")
            except UnicodeDecodeError:
                binary[key] = base64.b64encode(content).decode("ascii")
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": self.name, "namespace": self.namespace, "labels": dict(labels)},
        }
        if data:
            body["data"] = data
        if binary:
            body["binaryData"] = binary
        return body


def is_executable(content: bytes) -> bool:
    """Whether ``execve`` could run a file with this content (a ``#!`` script or an ELF binary)."""
    return content.startswith(_EXEC_MAGIC)


def files_of(manifest: Mapping[str, Any]) -> dict[str, bytes]:
    """Path -> content from a rendered ConfigMap (the inverse of :meth:`ConfigMapBundle.manifest`)."""
    out = {decode_key(k): v.encode("utf-8") for k, v in (manifest.get("data") or {}).items()}
    out.update({decode_key(k): base64.b64decode(v) for k, v in (manifest.get("binaryData") or {}).items()})
    return out


def bundle(
    cfg: Any, *, files: Mapping[str, bytes], name_suffix: str, namespace: str, extra: Iterable[tuple[str, bytes]] = ()
) -> ConfigMapBundle:
    """Add the generated files (``extra``) to the packaged ``files``; check names, collisions and size.

    ``cfg`` is the packager config, or None to ship only ``extra`` (function spec with packager=none).
    ``files`` were collected by the packaging step (:func:`collect`, run before compiling): this
    only computes, so a render that calls it stays pure.
    """
    if cfg is not None and cfg.namespace and cfg.namespace != namespace:
        raise ConfigError(
            f"packager.namespace={cfg.namespace} differs from the TrainJob's namespace {namespace}; a pod can only mount a ConfigMap of its own namespace"
        )
    files = dict(files)
    for path, content in extra:
        if path in files:
            raise ConfigError(f"packaged file {path} clashes with the file nemorun generates there; exclude it from packager.include_pattern")
        files[path] = content
    name = configmap_name(cfg.configmap_prefix if cfg is not None else "nemorun-code", name_suffix)
    check_size(name, files)
    return ConfigMapBundle(name=name, namespace=namespace, files=dict(sorted(files.items())))


def script_is_packaged(script: str, files: Sequence[str]) -> bool:
    return os.path.normpath(script) in files
