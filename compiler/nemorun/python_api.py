"""NeMo-Run's Python vocabulary over nemorun's ONE contract: the Hydra override list.

Why overrides and not a config of our own: the CLI, ``exp rerun`` and ``--resume`` all start from
the override list an experiment records. An executor object written here becomes exactly the
``executor=slurm executor.nodes=2 ...`` a user would type, so a job launched from Python renders
byte for byte like its CLI form, is recorded the same way, and reruns from the shell
(``nemorun exp rerun ID key=val``). Nothing here renders, records or submits.

The classes ARE the config schemas (``nemorun.schemas``), subclassed to add what NeMo-Run keeps on
an executor (``packager``, ``launcher``) and to check at construction: an unknown keyword or a
value the schema refuses is the CLI's one-line :class:`~nemorun.errors.ConfigError` there and then,
not an error at submission. NeMo-Run spellings that differ from nemorun's are in :data:`ALIASES`
(one table); the README's "Coming from NeMo-Run" shows both forms side by side.
"""
from __future__ import annotations

import copy
import dataclasses
import enum
import functools
import inspect
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar, Union

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue, OmegaConfBaseException

from nemorun import compose as composing
from nemorun.errors import ConfigError, one_line
from nemorun.lower import secret_fields_as_references, unknown_key_message
from nemorun.schemas.core import NonePackagerConfig
from nemorun.schemas.dgxcloud import DgxCloudExecutorConfig
from nemorun.schemas.docker import DockerExecutorConfig
from nemorun.schemas.kubeflow import ConfigMapPackagerConfig, KubeflowExecutorConfig
from nemorun.schemas.launchers import FtLauncherConfig, TorchrunLauncherConfig
from nemorun.schemas.lepton import LeptonExecutorConfig
from nemorun.schemas.local import LocalExecutorConfig
from nemorun.schemas.packagers import GitPackagerConfig, HybridPackagerConfig, PatternPackagerConfig
from nemorun.schemas.skypilot import SkypilotExecutorConfig
from nemorun.schemas.slurm import LocalTunnelConfig, SlurmExecutorConfig, SshTunnelConfig

C = TypeVar("C")

# -- NeMo-Run spellings ------------------------------------------------------------------------
#
# class name -> NeMo-Run keyword -> what it becomes. A string renames the keyword; ("moved", hint)
# refuses it with where the setting lives in nemorun (a one-line ConfigError); ("only", values,
# hint) accepts the values that mean what nemorun does anyway (dropped) and refuses any other;
# ("additional_parameters", None) files a Slurm option NeMo-Run has as a field under
# ``additional_parameters`` (sbatch's own option name, checked like any other).

Alias = Union[str, Tuple[str, Optional[str]], Tuple[str, Tuple[Any, ...], str]]

_WORKTREE = "include_uncommitted=True packs the working tree (changed and untracked files, .gitignore honoured)"

ALIASES: dict[str, dict[str, Alias]] = {
    "SlurmExecutor": {
        "gres": ("additional_parameters", None),
        "mem_per_cpu": ("additional_parameters", None),
        "mem_per_gpu": ("additional_parameters", None),
        "cpus_per_gpu": ("additional_parameters", None),
        "dependencies": ("moved", "pass depends_on=[job ids] to Experiment.add"),
    },
    "GitArchivePackager": {
        "ref": ("only", ("HEAD",), "nemorun packs the commit checked out in the submit directory; check REF out there "
                                  "(git worktree add DIR REF) and launch from DIR"),
        "include_submodules": ("only", (False,), "git archive leaves submodules out; ship one with HybridPackager(sub_packagers="
                                                 "{'code': GitArchivePackager(), 'sub': PatternPackager(include_pattern='SUBMODULE/**')})"),
        "basepath": ("only", ("",), "the repository packed is the one holding the submit directory: launch from it"),
        "include_untracked": ("only", (False,), f"nemorun's {_WORKTREE}"),
        "check_uncommitted_changes": ("only", (True,), f"nemorun always refuses uncommitted changes unless {_WORKTREE}"),
        "check_untracked_files": ("only", (False,), f"untracked files are never packed unless {_WORKTREE}"),
        "include_pattern": ("only", ("", []), "add the files with HybridPackager(sub_packagers={'code': GitArchivePackager(), "
                                              "'extra': PatternPackager(include_pattern=..., relative_path=...)})"),
        "include_pattern_relative_path": ("only", ("", []), "see include_pattern: a PatternPackager in a HybridPackager"),
    },
    "DockerExecutor": {
        "healthcheck": ("moved", "nemorun runs no container health check: the job's exit status is its state"),
        "privileged": ("only", (False,), "nemorun does not start privileged containers; give the device or capability "
                                         "through volumes or the image instead"),
        "additional_kwargs": ("moved", "every docker run option nemorun passes is a field of DockerExecutor (see "
                                       "nemorun --help executor=docker)"),
    },
    "SkypilotExecutor": {"autodown": "down"},
    "DGXCloudExecutor": {"nprocs_per_node": ("moved", "set nproc_per_node on the launcher: launcher=Torchrun(nproc_per_node=...)")},
    "LeptonExecutor": {"nprocs_per_node": ("moved", "set nproc_per_node on the launcher: launcher=Torchrun(nproc_per_node=...)")},
    "KubeflowExecutor": {
        "python_file": ("moved", "the file is the task in nemorun: exp.add(nemorun.Script(path='train.py'), executor=...)"),
        "func": ("moved", "the function is the task in nemorun: exp.add(nemorun.Partial(fn, ...), executor=...)"),
    },
}

# keys of list-of-mapping fields, NeMo-Run spelling -> nemorun's (DGX Cloud pvcs, Lepton mounts)
ITEM_ALIASES: dict[tuple[str, str], dict[str, str]] = {
    ("DGXCloudExecutor", "pvcs"): {"claimName": "claim_name", "readOnly": "read_only"},
    ("LeptonExecutor", "mounts"): {"from": "source", "mountPath": "mount_path"},
}

LAUNCHER_NAMES = {"none": "none", "default": "none", "torchrun": "torchrun", "ft": "ft"}


def _ulimits(value: Any) -> Any:
    """NeMo-Run's list form ``["nofile:1024:65536", "memlock:-1"]`` (``name:soft[:hard]``) as
    nemorun's mapping ``{nofile: "1024:65536", memlock: "-1"}``; a mapping stays as it is."""
    if not isinstance(value, (list, tuple)):
        return value
    out: dict[str, str] = {}
    for item in value:
        name, sep, limits = str(item).partition(":")
        if not sep or not name or not limits:
            raise ConfigError(f"executor.ulimits item {item!r}: write name:soft[:hard], e.g. 'nofile:1024:65536'")
        out[name] = limits
    return out


# (class name, field) -> NeMo-Run's form of the value -> nemorun's
VALUE_FORMS: dict[tuple[str, str], Callable[[Any], Any]] = {("DockerExecutor", "ulimits"): _ulimits}


def _apply_aliases(cls_name: str, group: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    table = ALIASES.get(cls_name, {})
    out: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in kwargs.items():
        alias = table.get(key)
        if alias is None:
            out[key] = value
        elif isinstance(alias, str):
            if alias in kwargs:
                raise ConfigError(f"{group}.{key} is NeMo-Run's name of {group}.{alias}: set one of them")
            out[alias] = value
        elif alias[0] == "moved":
            raise ConfigError(f"{group}.{key} is not a setting in nemorun: {alias[1]}")
        elif alias[0] == "only":
            if value not in alias[1]:  # type: ignore[operator]
                raise ConfigError(f"{group}.{key}={value!r} is not available in nemorun: {alias[2]}")  # type: ignore[misc]
        else:
            extra[key.replace("_", "-")] = value
    if extra:
        out["additional_parameters"] = {**extra, **dict(out.get("additional_parameters") or {})}
    for (owner, name), form in VALUE_FORMS.items():
        if owner == cls_name and name in out:
            out[name] = form(out[name])
    for (owner, name), keys in ITEM_ALIASES.items():
        if owner == cls_name and isinstance(out.get(name), (list, tuple)):
            out[name] = [_item_aliases(cls_name, item, keys) for item in out[name]]
    return out


def _item_aliases(cls_name: str, item: Any, keys: Mapping[str, str]) -> Any:
    if not isinstance(item, Mapping):
        return item
    renamed = {keys.get(str(k), str(k)): v for k, v in item.items()}
    if cls_name == "DGXCloudExecutor" and "claim_name" not in renamed and "name" in renamed:
        # NeMo-Run's pvcs[].name is the claim's Kubernetes name (nemorun's claim_name; nemorun's
        # name, the Run:ai storage name, defaults to it)
        renamed["claim_name"] = renamed.pop("name")
    return renamed


# -- construction-time checks ------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A value as the config holds it: dataclasses as mappings, enums as their values."""
    if isinstance(value, _Api):
        return {"kind": value.kind, **{f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value._schema) if f.name != "kind"}}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _as_data(value: Any) -> Any:
    """``value`` with every ``${`` escaped, as :func:`hydra_value` writes it (OmegaConf reads it
    back literally)."""
    if isinstance(value, str):
        return re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", value)
    if isinstance(value, dict):
        return {k: _as_data(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_data(v) for v in value]
    return value


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return MISSING


def _key_of(exc: BaseException) -> str:
    return str(getattr(exc, "full_key", "") or getattr(exc.__cause__, "full_key", "") or "")


class _Api:
    """Checks of the API classes: the schema's own, through OmegaConf's structured merge (the
    CLI's type rules) and the schema's ``__post_init__`` (its value rules), at construction."""

    _schema: ClassVar[type]
    # where the object sits in the config ("executor", "executor.tunnel", "packager", "launcher")
    _group: ClassVar[str]
    # its option in that group (executor=slurm, packager=git, executor/tunnel=ssh)
    _option: ClassVar[str]
    kind: str

    def __post_init__(self) -> None:
        _check_extras(self)
        # checked as the overrides will carry them: a str is data (``${`` escaped), a secret a reference
        values = {f.name: _plain(getattr(self, f.name)) if f.metadata.get("secret") is True else _as_data(_plain(getattr(self, f.name)))
                  for f in dataclasses.fields(self._schema) if f.name != "kind"}
        node = OmegaConf.structured(self._schema)
        hints = _text_fields(self._schema)
        for key, value in values.items():
            if isinstance(value, str) and "${" in value and key not in hints:
                # OmegaConf takes an (escaped) interpolation for any field and checks it only when
                # resolved: nodes="${x}" passed here and failed at launch (env_vars: a traceback)
                raise ConfigError(f"{self._group}.{key}={getattr(self, key)!r}: a string is data here, not a reference, "
                                  f"and {key} does not take text")
            try:
                node.merge_with({key: value})
            except OmegaConfBaseException as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise ConfigError(f"{self._group}.{key}={value!r}: {first}") from None
        try:
            OmegaConf.to_object(secret_fields_as_references(node))
        except (MissingMandatoryValue, InterpolationResolutionError):
            pass  # a required value left for later, or ${oc.env:...}: the CLI's compose reports those
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{self._group.split('.')[0]}: {one_line(str(exc))}") from None

    def clone(self: C) -> C:
        """A deep copy to change for another job (``dataclasses.replace`` works too, checked again)."""
        return copy.deepcopy(self)


@functools.lru_cache(maxsize=None)
def _text_fields(schema: type) -> frozenset[str]:
    """The fields of ``schema`` that hold text (str, Optional[str], Any) or a secret reference."""
    import typing

    hints = typing.get_type_hints(schema)
    return frozenset(f.name for f in dataclasses.fields(schema)
                     if f.metadata.get("secret") is True or hints.get(f.name) in (str, Optional[str], Any))


def _checked_init(cls: Type[C]) -> Type[C]:
    """Wrap the dataclass ``__init__``: NeMo-Run's spellings first, then an unknown keyword is the
    CLI's "unknown key ... did you mean" line, not a TypeError."""
    init = cls.__init__
    known = [f.name for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    group = getattr(cls, "_group")

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs = _apply_aliases(cls.__name__, group, kwargs)
        for key in kwargs:
            if key not in known:
                raise ConfigError(unknown_key_message(group, key, known))
        if len(args) > len(known):
            raise ConfigError(f"{cls.__name__} takes keyword arguments ({', '.join(known)})")
        init(self, *args, **kwargs)

    cls.__init__ = __init__  # type: ignore[method-assign]
    return cls


# -- tunnels, packagers, launchers -------------------------------------------------------------


@_checked_init
@dataclass
class LocalTunnel(_Api, LocalTunnelConfig):
    """Submit with sbatch on this machine (you are on a login node)."""

    _group: ClassVar[str] = "executor.tunnel"
    _option: ClassVar[str] = "local"
    _schema: ClassVar[type] = LocalTunnelConfig
    kind: str = field(default="local", init=False)


@_checked_init
@dataclass
class SSHTunnel(_Api, SshTunnelConfig):
    """Submit with sbatch on a login node over SSH."""

    _group: ClassVar[str] = "executor.tunnel"
    _option: ClassVar[str] = "ssh"
    _schema: ClassVar[type] = SshTunnelConfig
    kind: str = field(default="ssh", init=False)


@_checked_init
@dataclass
class Packager(_Api, NonePackagerConfig):
    """Ship no code (NeMo-Run's pass-through ``run.Packager``)."""

    _group: ClassVar[str] = "packager"
    _option: ClassVar[str] = "none"
    _schema: ClassVar[type] = NonePackagerConfig
    kind: str = field(default="none", init=False)


@_checked_init
@dataclass
class GitArchivePackager(_Api, GitPackagerConfig):
    _group: ClassVar[str] = "packager"
    _option: ClassVar[str] = "git"
    _schema: ClassVar[type] = GitPackagerConfig
    kind: str = field(default="git", init=False)


@_checked_init
@dataclass
class PatternPackager(_Api, PatternPackagerConfig):
    _group: ClassVar[str] = "packager"
    _option: ClassVar[str] = "pattern"
    _schema: ClassVar[type] = PatternPackagerConfig
    kind: str = field(default="pattern", init=False)


@_checked_init
@dataclass
class ConfigMapPackager(_Api, ConfigMapPackagerConfig):
    _group: ClassVar[str] = "packager"
    _option: ClassVar[str] = "configmap"
    _schema: ClassVar[type] = ConfigMapPackagerConfig
    kind: str = field(default="configmap", init=False)


AnyPackager = Union[Packager, GitArchivePackager, PatternPackager, ConfigMapPackager, "HybridPackager"]


@_checked_init
@dataclass
class HybridPackager(_Api, HybridPackagerConfig):
    """Sub-packagers (git, pattern) in one archive, each under its key unless ``extract_at_root``."""

    _group: ClassVar[str] = "packager"
    _option: ClassVar[str] = "hybrid"
    _schema: ClassVar[type] = HybridPackagerConfig
    kind: str = field(default="hybrid", init=False)
    sub_packagers: Dict[str, Any] = field(default_factory=dict)


@_checked_init
@dataclass
class Torchrun(_Api, TorchrunLauncherConfig):
    _group: ClassVar[str] = "launcher"
    _option: ClassVar[str] = "torchrun"
    _schema: ClassVar[type] = TorchrunLauncherConfig
    kind: str = field(default="torchrun", init=False)


@_checked_init
@dataclass
class FaultTolerance(_Api, FtLauncherConfig):
    """NVIDIA's ``ft_launcher`` (NeMo-Run's ``run.core.execution.FaultTolerance``)."""

    _group: ClassVar[str] = "launcher"
    _option: ClassVar[str] = "ft"
    _schema: ClassVar[type] = FtLauncherConfig
    kind: str = field(default="ft", init=False)


AnyLauncher = Union[None, str, Torchrun, FaultTolerance]
_PACKAGERS = (Packager, GitArchivePackager, PatternPackager, ConfigMapPackager, HybridPackager)


def _check_extras(obj: Any) -> None:
    """The fields an API class has beyond its schema (an executor's packager and launcher, a
    hybrid packager's sub-packagers): the schema types them ``Any``, so their types are checked here."""
    if isinstance(obj, HybridPackager):
        for key, sub in obj.sub_packagers.items():
            if not isinstance(sub, (GitArchivePackager, PatternPackager, Mapping)):
                raise ConfigError(f"packager.sub_packagers.{key} must be a GitArchivePackager or PatternPackager, not {type(sub).__name__}")
    if not isinstance(obj, _Executor):
        return
    if obj.packager is not None and not isinstance(obj.packager, _PACKAGERS):
        raise ConfigError(f"executor.packager must be a packager (nemorun.GitArchivePackager(...), PatternPackager, "
                          f"HybridPackager, ConfigMapPackager, Packager), not {type(obj.packager).__name__}")
    launcher = obj.launcher
    if isinstance(launcher, str) and launcher not in LAUNCHER_NAMES:
        raise ConfigError(f"executor.launcher={launcher!r}: use one of {', '.join(LAUNCHER_NAMES)}, nemorun.Torchrun(...) or nemorun.FaultTolerance(...)")
    if launcher is not None and not isinstance(launcher, (str, Torchrun, FaultTolerance)):
        raise ConfigError(f"executor.launcher must be None, a name or nemorun.Torchrun/FaultTolerance, not {type(launcher).__name__}")


# -- executors ---------------------------------------------------------------------------------


class _Executor(_Api):
    """What NeMo-Run keeps on every executor besides the backend's own fields."""

    _group: ClassVar[str] = "executor"
    packager: Optional[AnyPackager]
    launcher: AnyLauncher


@_checked_init
@dataclass
class LocalExecutor(_Executor, LocalExecutorConfig):
    _option: ClassVar[str] = "local"
    _schema: ClassVar[type] = LocalExecutorConfig
    kind: str = field(default="local", init=False)
    packager: Optional[AnyPackager] = None
    launcher: AnyLauncher = None


@_checked_init
@dataclass
class DockerExecutor(_Executor, DockerExecutorConfig):
    _option: ClassVar[str] = "docker"
    _schema: ClassVar[type] = DockerExecutorConfig
    kind: str = field(default="docker", init=False)
    packager: Optional[AnyPackager] = None
    launcher: AnyLauncher = None


@_checked_init
@dataclass
class SlurmExecutor(_Executor, SlurmExecutorConfig):
    _option: ClassVar[str] = "slurm"
    _schema: ClassVar[type] = SlurmExecutorConfig
    kind: str = field(default="slurm", init=False)
    tunnel: Union[LocalTunnel, SSHTunnel] = field(default_factory=LocalTunnel)
    # NeMo-Run's: the Slurm job name is this + the job's name (job_name, when set, wins)
    job_name_prefix: Optional[str] = None
    packager: Optional[AnyPackager] = None
    launcher: AnyLauncher = None


@_checked_init
@dataclass
class SkypilotExecutor(_Executor, SkypilotExecutorConfig):
    _option: ClassVar[str] = "skypilot"
    _schema: ClassVar[type] = SkypilotExecutorConfig
    kind: str = field(default="skypilot", init=False)
    packager: Optional[AnyPackager] = None
    launcher: AnyLauncher = None


@_checked_init
@dataclass
class DGXCloudExecutor(_Executor, DgxCloudExecutorConfig):
    _option: ClassVar[str] = "dgxcloud"
    _schema: ClassVar[type] = DgxCloudExecutorConfig
    kind: str = field(default="dgxcloud", init=False)
    packager: Optional[AnyPackager] = None
    launcher: AnyLauncher = None


@_checked_init
@dataclass
class LeptonExecutor(_Executor, LeptonExecutorConfig):
    _option: ClassVar[str] = "lepton"
    _schema: ClassVar[type] = LeptonExecutorConfig
    kind: str = field(default="lepton", init=False)
    packager: Optional[AnyPackager] = None
    launcher: AnyLauncher = None


@_checked_init
@dataclass
class KubeflowExecutor(_Executor, KubeflowExecutorConfig):
    _option: ClassVar[str] = "kubeflow"
    _schema: ClassVar[type] = KubeflowExecutorConfig
    kind: str = field(default="kubeflow", init=False)
    packager: Optional[AnyPackager] = None
    launcher: AnyLauncher = None


AnyExecutor = Union[LocalExecutor, DockerExecutor, SlurmExecutor, SkypilotExecutor, DGXCloudExecutor, LeptonExecutor, KubeflowExecutor]
EXECUTORS: dict[str, type] = {c._option: c for c in (LocalExecutor, DockerExecutor, SlurmExecutor, SkypilotExecutor,
                                                     DGXCloudExecutor, LeptonExecutor, KubeflowExecutor)}
PACKAGERS: dict[str, type] = {c._option: c for c in _PACKAGERS}
LAUNCHERS: dict[str, type] = {"torchrun": Torchrun, "ft": FaultTolerance}
TUNNELS: dict[str, type] = {"local": LocalTunnel, "ssh": SSHTunnel}


# -- tasks -------------------------------------------------------------------------------------

_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


def _import_path(fn: Any, what: str) -> str:
    """``package.module.function`` of a module-level callable, as the node-side entry point imports it."""
    if isinstance(fn, str):
        if "." not in fn:
            raise ConfigError(f"{what} {fn!r} must be 'package.module.function'")
        return fn
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not callable(fn) or not module or not qualname:
        raise ConfigError(f"{what} must be a function or class defined at module level, not {type(fn).__name__}")
    if "<" in qualname or "." in qualname:
        raise ConfigError(f"{what} {qualname} must be defined at module level (no lambdas, nested functions or methods): "
                          "the job imports it by name")
    if module == "__main__":
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
        if not main_file:
            raise ConfigError(f"{what} {qualname} is defined in an interactive session: put it in a module the job can import")
        module = Path(main_file).stem  # the script imported by name on the node (keep `if __name__ == "__main__":`)
    return f"{module}.{qualname}"


def _check_signature(fn: Any, params: Mapping[str, Any], path: str, target: str) -> None:
    if isinstance(fn, str):
        return  # imported and checked when the job is planned
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return
    known = list(sig.parameters)
    for key in params:
        if key not in sig.parameters:
            raise ConfigError(unknown_key_message(path, key, known) + f" ({target} takes: {', '.join(known)})")


def _bind(fn: Any, target: str, what: str, args: Sequence[Any], kwargs: Mapping[str, Any],
          carries_args: bool) -> tuple[list[Any], dict[str, Any]]:
    """Positional arguments as keywords where the parameter has a name, so the record (and a
    rerun's ``task.params.lr=...``) names every value. A positional-only or ``*args`` parameter
    has no name to record: it goes in Hydra's ``_args_`` where the value is a :class:`Config`
    (``carries_args``), and is refused for a task function, which the job calls with keywords."""
    if not args:
        return [], dict(kwargs)
    sig = None
    if not isinstance(fn, str):
        try:
            sig = inspect.signature(fn)
        except (TypeError, ValueError):
            pass
    if sig is None:
        if carries_args:
            return list(args), dict(kwargs)
        raise ConfigError(f"{what}({target}, ...) takes keyword arguments only here: the signature of {target} is not "
                          "known to name the positional ones")
    try:
        sig.bind_partial(*args, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"{what}({target}, ...): {exc}") from None
    slots = [p for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    taken = [slots[min(i, len(slots) - 1)] for i in range(len(args))]
    unnamed = [p for p in taken if p.kind is not p.POSITIONAL_OR_KEYWORD]
    if not unnamed:
        return [], {**{p.name: a for p, a in zip(taken, args)}, **kwargs}
    if carries_args:
        return list(args), dict(kwargs)  # Hydra's _args_: every positional, in order
    star = "*" if unnamed[0].kind is unnamed[0].VAR_POSITIONAL else ""
    kind = "a *args parameter" if star else "positional-only"
    raise ConfigError(f"{what}({target}, ...): parameter '{star}{unnamed[0].name}' is {kind} and the job calls {target} "
                      "with keyword arguments; wrap it in a module-level function with named parameters")


class Config:
    """A value built on the node: ``Config(cls_or_fn, *args, **kw)`` ships as ``{_target_: ...,
    **kw}`` (Hydra's ``_target_`` form; a positional argument is recorded by its parameter's name,
    or in ``_args_`` when the parameter has none) and the entry point calls ``cls_or_fn(...)``
    before the task function runs, innermost first. For values that are objects, not plain data."""

    def __init__(self, target: Union[Callable[..., Any], str], /, *args: Any, **kwargs: Any) -> None:
        self.target = _import_path(target, "Config target")
        _check_signature(target, kwargs, "Config", self.target)
        self.args, self.kwargs = _bind(target, self.target, "Config", args, kwargs, carries_args=True)

    def to_dict(self) -> dict[str, Any]:
        positional = {"_args_": _param_value(self.args)} if self.args else {}
        return {"_target_": self.target, **positional, **{k: _param_value(v) for k, v in self.kwargs.items()}}

    def __repr__(self) -> str:
        shown = [*map(repr, self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())]
        return f"Config({', '.join([self.target, *shown])})"


def _param_value(value: Any) -> Any:
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, Mapping):
        for k in value:
            if not isinstance(k, str):  # the job's function.yaml (JSON) has string keys only
                raise ConfigError(f"mapping key {k!r} ({type(k).__name__}) would reach the function as the string {str(k)!r}: "
                                  "use string keys")
        return {k: _param_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_param_value(v) for v in value]
    return value


class Partial:
    """A function task: ``Partial(fn, *args, **params)`` runs ``fn(**params)`` on the node
    (nemorun's ``task.target`` + ``task.params``; positional arguments are recorded by their
    parameter names). Parameters are checked against the signature now; values may nest
    :class:`Config`."""

    def __init__(self, fn: Union[Callable[..., Any], str], /, *args: Any, **params: Any) -> None:
        self.target = _import_path(fn, "Partial function")
        _check_signature(fn, params, "task.params", self.target)
        _, self.params = _bind(fn, self.target, "Partial", args, params, carries_args=False)
        self.name = _NAME_CHARS.sub("_", self.target.rpartition(".")[2])
        # environment variables of this task, on top of the executor's env_vars (task.env)
        self.env: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"Partial({', '.join([self.target, *(f'{k}={v!r}' for k, v in self.params.items())])})"


@_checked_init
@dataclass
class Script:
    """A script file (``path`` + ``args``; ``.py`` runs with Python, anything else with bash) or an
    ``inline`` shell command, with ``env`` on top of the executor's ``env_vars``."""

    _group: ClassVar[str] = "task"
    path: Optional[str] = None
    inline: Optional[str] = None
    args: List[str] = field(default_factory=list)
    env: Dict[str, str] = field(default_factory=dict)
    # job/experiment name; default: the script's file name, or "script"
    name: Optional[str] = None

    def __post_init__(self) -> None:
        if (self.path is None) == (self.inline is None):
            raise ConfigError("Script needs exactly one of path=... or inline=...")
        if not isinstance(self.args, (list, tuple)):
            raise ConfigError(f"Script args must be a list of strings, not {type(self.args).__name__}")
        # typed here, as an executor's fields are: Script(path=5) was a TypeError traceback,
        # env=[...] a ValueError, and inline=5 or args=[b"x"] ran the text of their repr
        self.path = str(self.path) if isinstance(self.path, Path) else self.path
        self.args = [str(a) if isinstance(a, Path) else a for a in self.args]
        for what, value in (("path", self.path), ("inline", self.inline), ("name", self.name)):
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"Script {what} must be a string, not {type(value).__name__}")
        bad = [a for a in self.args if not isinstance(a, (str, int, float))]
        if bad:
            raise ConfigError(f"Script args must be strings or numbers, not {type(bad[0]).__name__} ({bad[0]!r})")
        if not isinstance(self.env, Mapping):
            raise ConfigError(f"Script env must be a mapping of names to strings, not {type(self.env).__name__}")
        if self.name is None:
            stem = Path(self.path).stem if self.path else "script"
            self.name = _NAME_CHARS.sub("_", stem).strip("._-") or "script"


Task = Union[Script, Partial]


# -- objects -> overrides ----------------------------------------------------------------------


def _quote(text: str) -> str:
    """A string as a quoted Hydra value: ``'`` escaped, and the backslashes that would escape it."""
    body = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    body = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, body)
    return f"'{body}'"


def _literal(text: str) -> str:
    """``text`` as OmegaConf reads it back literally: a Python string is data, never an
    interpolation, so ``${`` is escaped (with the backslashes before it, which OmegaConf would
    otherwise read as escapes). OmegaConf has no escape for its missing-value marker."""
    if text == "???":
        raise ConfigError("'???' is OmegaConf's missing-value marker and cannot be a value; leave the field unset instead")
    return str(_as_data(text))


_BARE_CANDIDATE = re.compile(r"[A-Za-z0-9_./:@+-]+")
# the words Hydra's grammar reads as something else than a string, in any letter case
_WORD_VALUES = frozenset({"true", "false", "null", "nan", "inf"})


@functools.lru_cache(maxsize=4096)
def _reads_back_bare(text: str) -> bool:
    """Whether ``key=text`` unquoted parses back as exactly this string (not a number, bool,
    null, sweep or interpolation): then it is written as a user would type it."""
    if not _BARE_CANDIDATE.fullmatch(text):
        return False
    if _IDENTIFIER.fullmatch(text) and text.lower() not in _WORD_VALUES:
        return True  # Hydra's ID token, read as this very string: no parse (~0.25 ms a value, 10,000 in a sweep)
    from hydra.errors import OverrideParseException

    try:
        [parsed] = _parser().parse_overrides([f"k={text}"])
    except OverrideParseException:
        return False
    return type(parsed.value()) is str and parsed.value() == text


def _parsed_key(key: str) -> Any:
    [parsed] = _parser().parse_overrides([f"k={{{key}: 0}}"])
    return next(iter(parsed.value()))


@functools.lru_cache(maxsize=4096)
def _key_reads_back(key: str) -> bool:
    """Whether ``{key: ...}`` in an override composes with exactly this string key: Hydra reads
    ``{1: a}`` as int 1, ``{null: a}`` as None, ``{1e3: a}`` as 1000.0 (the IR and config.yaml
    then hold that, not the ``'1'`` the Python code passed)."""
    found = _parsed_key(key)
    return type(found) is str and found == key


@functools.lru_cache(maxsize=1)
def _parser() -> Any:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


_BARE_KEY = re.compile(r"[A-Za-z0-9_/][A-Za-z0-9_./-]*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def hydra_value(value: Any, interpolate: bool = False) -> str:
    """A Python value in Hydra's override grammar that composes back to exactly that value: a
    string stays a string whatever it looks like (``"1.10"``, ``"true"``, ``"a,b"``, ``"${x}"``),
    quoted unless it reads back bare. ``interpolate``: a top-level string is an OmegaConf
    interpolation on purpose (a secret field's ``${oc.env:VAR}`` reference)."""
    value = _plain(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value == math.inf else ("-inf" if value == -math.inf else repr(value)))
    if isinstance(value, str):
        text = value if interpolate else _literal(value)
        return text if text == value and _reads_back_bare(text) else _quote(text)
    if isinstance(value, list):
        return "[" + ", ".join(hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        for key in value:
            if not _BARE_KEY.fullmatch(key):
                raise ConfigError(f"mapping key {key!r} cannot be written as an override; use letters, digits and _ . / -")
            if not _key_reads_back(key):
                raise ConfigError(f"mapping key {key!r} would arrive as {_parsed_key(key)!r} (Hydra's override grammar reads "
                                  "a key that looks like a number, bool or null as one); use a key such as 'k" + key + "'")
        return "{" + ", ".join(f"{k}: {hydra_value(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"{type(value).__name__} value {value!r} cannot be part of a config; use str, int, float, bool, "
                      "None, lists, dicts or nemorun.Config(...)")


def _map_overrides(path: str, mapping: Mapping[str, Any]) -> list[str]:
    """A free-form map (``task.params``, ``task.env``) one key per override, as a user types it
    (``task.params.lr=0.1``: a rerun's ``task.params.lr=...`` then reads the same); keys that
    are not identifiers go as one mapping value instead."""
    if all(isinstance(k, str) and _IDENTIFIER.fullmatch(k) for k in mapping):
        return [f"{path}.{k}={hydra_value(v)}" for k, v in mapping.items()]
    return [f"{path}={hydra_value(dict(mapping))}"]


def _changed(obj: _Api, skip: Sequence[str] = ()) -> dict[str, Any]:
    """The schema fields of ``obj`` that differ from their defaults, as plain values (the packaged
    options add nothing to their schema, so the option holds exactly the schema's defaults).
    Required values still unset are left out: the compose reports them as the CLI does."""
    out = {}
    for f in dataclasses.fields(obj._schema):
        if f.name == "kind" or f.name in skip:
            continue
        value = _plain(getattr(obj, f.name))
        if value != _plain(_default(f)) and value is not MISSING and value != "???":
            out[f.name] = value
    return out


def _values(obj: _Api, path: str, skip: Sequence[str] = ()) -> list[str]:
    obj.__post_init__()  # again: NeMo-Run scripts set fields after construction (executor.launcher = "torchrun")
    # a secret field holds a reference (${oc.env:VAR}), the one place a Python string interpolates
    fields = {f.name: f for f in dataclasses.fields(obj._schema)}
    out: list[str] = []
    for key, value in _changed(obj, skip).items():
        if isinstance(value, dict) and _default(fields[key]) == {}:
            out += _map_overrides(f"{path}.{key}", value)  # executor.env_vars.NCCL_DEBUG=INFO, as typed
        else:
            # a secret field holds a reference (${oc.env:VAR}), the one place a Python string interpolates
            out.append(f"{path}.{key}={hydra_value(value, interpolate=fields[key].metadata.get('secret') is True)}")
    return out


def packager_overrides(packager: Optional[AnyPackager]) -> list[str]:
    if packager is None:
        return []
    return [f"packager={packager._option}", *_values(packager, "packager")]


def launcher_overrides(launcher: AnyLauncher) -> list[str]:
    if launcher is None:
        return []
    if isinstance(launcher, str):
        return [f"launcher={LAUNCHER_NAMES[launcher]}"]
    return [f"launcher={launcher._option}", *_values(launcher, "launcher")]


def executor_overrides(executor: AnyExecutor, job: Optional[str] = None) -> list[str]:
    """The overrides that select and set ``executor`` (with its packager and launcher) for the
    job named ``job`` (a Slurm ``job_name_prefix`` becomes that job's ``job_name``)."""
    if not isinstance(executor, _Executor):
        raise ConfigError(f"executor must be a nemorun executor (LocalExecutor(), SlurmExecutor(...), ...), not {type(executor).__name__}")
    out = [f"executor={executor._option}"]
    if isinstance(executor, SlurmExecutor):
        tunnel = executor.tunnel
        if not isinstance(tunnel, (LocalTunnel, SSHTunnel)):
            raise ConfigError(f"executor.tunnel must be nemorun.SSHTunnel(...) or nemorun.LocalTunnel(), not {type(tunnel).__name__}")
        if tunnel._option != "local":
            out.append(f"executor/tunnel={tunnel._option}")
        out += _values(executor, "executor", skip=("tunnel",)) + _values(tunnel, "executor.tunnel")
        if executor.job_name_prefix and not executor.job_name and job is not None:
            out.append(f"executor.job_name={hydra_value(executor.job_name_prefix + job)}")
    else:
        out += _values(executor, "executor")
    return out + packager_overrides(executor.packager) + launcher_overrides(executor.launcher)


TASK_OPTIONS = {"function": "function", "script": "script"}  # option -> the name it gives a task


def _arg_text(value: Any) -> str:
    """A Script argument as its command line gets it, by the rule every text field follows (env
    values, executor env_vars, the command line's ``task.args=[--flag,true]``): a bool is written
    as the config language writes it, ``true``/``false`` (``str(True)`` made ``True`` of an
    argument while the same value in ``env`` arrived as ``true``); a number as Python writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def task_overrides(task: Task, name: Optional[str] = None) -> list[str]:
    """A task as a user types it on the command line: ``task=function task.target=pkg.fn
    task.params.lr=0.1`` or ``task=script task.script=train.py task.args=[...]`` (an inline
    command: ``task=script task.script=null task.inline=...``). Those options hold no example
    values, so only what the task sets is written; a rerun's ``task.params.lr=...`` lands on the
    same key. ``name``: the job's name instead of the task's own."""
    if isinstance(task, Partial):
        option = "function"
        body = [f"task.target={hydra_value(task.target)}", *_map_overrides("task.params", _param_value(task.params))]
    elif isinstance(task, Script):
        option = "script"
        if task.path is not None:
            body = [f"task.script={hydra_value(task.path)}"]
        else:
            body = ["task.script=null", f"task.inline={hydra_value(task.inline)}"]
        if task.args:
            body.append(f"task.args={hydra_value([_arg_text(a) for a in task.args])}")
    else:
        raise ConfigError(f"a task is nemorun.Script(...) or nemorun.Partial(fn, ...), not {type(task).__name__}")
    job_name = name or str(task.name)
    named = [] if job_name == TASK_OPTIONS[option] else [f"task.name={hydra_value(job_name)}"]
    return [f"task={option}", *named, *body, *_map_overrides("task.env", dict(task.env))]


def job_overrides(task: Task, executor: Optional[AnyExecutor] = None, name: Optional[str] = None) -> list[str]:
    """One job as overrides: the executor (default: this machine), then the task."""
    return [*executor_overrides(executor if executor is not None else LocalExecutor(), name or str(task.name)),
            *task_overrides(task, name)]


def sweep_overrides(task: Task, grid: Mapping[str, Sequence[Any]]) -> list[str]:
    """``key=v1,v2`` per grid axis; a bare key is a function parameter (``task.params.<key>``)."""
    out = []
    for key, values in grid.items():
        if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__iter__"):
            # list("0.1") would sweep '0', '.', '1' without a word
            raise ConfigError(f"sweep axis {key!r}: give a list of values, e.g. [{values!r}], not a {type(values).__name__}")
        values = list(values)
        if not values:
            raise ConfigError(f"sweep axis {key!r} has no values")
        if "." not in key and not isinstance(task, Partial):
            raise ConfigError(f"sweep axis {key!r}: a Script has no parameters; sweep a config key such as task.args or executor.nodes")
        full = key if "." in key else f"task.params.{key}"
        if isinstance(task, Partial) and full.startswith("task.params."):
            _check_signature_key(task, full[len("task.params."):])
        out.append(f"{full}={','.join(hydra_value(_param_value(v)) for v in values)}")
    return out


def _check_signature_key(task: Partial, key: str) -> None:
    module, _, name = task.target.rpartition(".")
    fn = getattr(sys.modules.get(module), name, None)
    if fn is not None:
        _check_signature(fn, {key.split(".")[0]: None}, "task.params", task.target)


def experiment_override(title: str, tasks: Mapping[str, tuple[Sequence[str], Sequence[str], str, Optional[str]]]) -> str:
    """Several tasks as ONE ``+experiment={...}`` override: what ``conf/experiment/<option>.yaml``
    holds (each task's overrides, depends_on, dependency_type, allocation), inline."""
    body: dict[str, Any] = {}
    for name, (ovs, deps, dep_type, allocation) in tasks.items():
        body[name] = {"overrides": list(ovs), "depends_on": list(deps), "dependency_type": dep_type}
        if allocation is not None:
            body[name]["allocation"] = allocation
    return f"+experiment={hydra_value({'name': title, 'tasks': body})}"


def checked_overrides(overrides: Sequence[str]) -> list[str]:
    """Every override parsed back by Hydra's own parser: what is recorded must be what was meant."""
    with composing.described():
        composing.parse_overrides(overrides)
    return list(overrides)


# -- config -> objects (compose) ---------------------------------------------------------------


@dataclass
class Composed:
    """A composed config as the API's objects (``nemorun.compose_typed([...])``)."""

    executor: AnyExecutor
    task: Optional[Task]
    name: Optional[str] = None


def _from_node(classes: Mapping[str, type], data: Mapping[str, Any]) -> Any:
    data = dict(data)
    cls = classes[str(data.pop("kind"))]
    init = {f.name for f in dataclasses.fields(cls) if f.init}
    return cls(**{k: v for k, v in data.items() if k in init})


def from_config(cfg: DictConfig) -> Composed:
    """The objects a composed config describes (interpolations kept as written, e.g. secret references)."""
    data: Any = OmegaConf.to_container(cfg, resolve=False)
    if data.get("experiment") is not None:
        raise ConfigError("compose_typed gives the objects of one job; a multi-task experiment's tasks compose one by one "
                          "(each task's overrides after the experiment's)")
    ex = dict(data["executor"])
    if ex.get("kind") == "slurm":
        ex["tunnel"] = _from_node(TUNNELS, ex["tunnel"])
    pk = data.get("packager") or {"kind": "none"}
    packager = None if pk.get("kind") == "none" else _from_node(PACKAGERS, pk)
    if isinstance(packager, HybridPackager):
        packager.sub_packagers = {k: _from_node(PACKAGERS, v) for k, v in packager.sub_packagers.items()}
    ln = data.get("launcher") or {"kind": "none"}
    ex["packager"] = packager
    ex["launcher"] = None if ln.get("kind") == "none" else _from_node(LAUNCHERS, ln)
    executor = _from_node(EXECUTORS, ex)
    t = data.get("task")
    task: Optional[Task] = None
    if t is not None:
        if t.get("target"):
            task = Partial(str(t["target"]), **dict(t.get("params") or {}))
            task.name, task.env = str(t["name"]), dict(t.get("env") or {})
        else:
            task = Script(path=t.get("script"), inline=t.get("inline"), args=list(t.get("args") or []),
                          env=dict(t.get("env") or {}), name=str(t["name"]))
    return Composed(executor=executor, task=task, name=data.get("name"))


def compose_typed(overrides: Sequence[str]) -> Composed:
    """``nemorun.compose_typed(["executor=slurm", ...])``: what the CLI would compose, as typed
    objects. (Not ``nemorun.compose``: that name is the compose module's, once it is imported.)"""
    return from_config(composing.compose_single(list(overrides)))


# -- objects -> config-group option files ------------------------------------------------------


def to_yaml(obj: Union[AnyExecutor, AnyPackager, Torchrun, FaultTolerance], name: Optional[str] = None,
            config_dir: Optional[Union[str, Path]] = None) -> str:
    """A config-group option holding ``obj`` (``executor/<name>.yaml``, ``packager/...``,
    ``launcher/...``) for ``nemorun --config-dir DIR executor=<name>``. Written under
    ``config_dir`` when given; the text is returned either way. An executor's packager and
    launcher are options of their own groups (an executor option cannot pick them), so an
    executor that carries one is refused rather than written without it."""
    if not isinstance(obj, _Api) or obj._group not in ("executor", "packager", "launcher"):
        raise ConfigError(f"to_yaml takes an executor, packager or launcher, not {type(obj).__name__}")
    if isinstance(obj, _Executor) and (obj.packager is not None or obj.launcher is not None):
        raise ConfigError("to_yaml writes executor/<name>.yaml only, and its packager/launcher are options of their own "
                          "groups: write them with to_yaml(executor.packager, name=...) and pick them with packager=<name>, "
                          "then pass dataclasses.replace(executor, packager=None, launcher=None)")
    if isinstance(obj, SlurmExecutor) and obj.job_name_prefix:
        raise ConfigError("to_yaml: job_name_prefix names each job from the Python API only; an option file sets the "
                          "whole Slurm job name with job_name")
    group = obj._group
    defaults: list[Any] = [f"/_schema_{group}_{obj._option}@_here_"]
    body = _changed(obj, skip=("tunnel",) if isinstance(obj, SlurmExecutor) else ())
    if isinstance(obj, SlurmExecutor):
        defaults.append({"tunnel": obj.tunnel._option})
        if _changed(obj.tunnel):
            body["tunnel"] = _changed(obj.tunnel)
    defaults.append("_self_")
    text = "# written by nemorun.to_yaml\n" + OmegaConf.to_yaml(OmegaConf.create({"defaults": defaults, **body}))
    if config_dir is not None:
        option = name or obj._option
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", option):
            raise ConfigError(f"to_yaml name {option!r}: use letters, digits, '_' and '-'")
        path = Path(config_dir).expanduser() / group / f"{option}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return text
