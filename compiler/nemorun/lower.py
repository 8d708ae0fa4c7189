"""Composed config → checked → typed IR (:class:`nemorun.ir.Job`).

Every check a user can fail without a cluster happens here, before anything is rendered:
keys the schema does not know (including ``+key=`` force-adds, which Hydra lets through typed
nodes), missing ``???`` values, a task that is not exactly one of inline/script/function, a
function target that does not import, malformed environment names, and (last) an option the
job's target would accept and then ignore (:func:`nemorun.capabilities.check`).

Executors spell the same facts differently (``nodes``/``num_nodes``, ``num_gpus``/``gpus``,
``image``/``container_image``); :data:`EXECUTOR_FIELDS` is the one table that maps each schema
onto the IR, so targets render resources, image, mounts, env and retries from the IR only.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from nemorun import capabilities, hydra_compat, ir
from nemorun.entry import load_target
from nemorun.errors import ConfigError
from nemorun.render import is_env_name
from nemorun.schemas import all_schemas
from nemorun.schemas.core import SECRET_REFS, check_name


@dataclass(frozen=True)
class Site:
    """Facts from outside the config that a compile needs, fixed before compiling.

    Tests pin them (fixed id, paths and interpreter) so renders are reproducible.
    """

    experiment_id: str
    # directory nemorun was started from: the local job's working directory by default
    submit_dir: str
    # NEMORUN_HOME: where experiment records live on this machine
    home: str
    # interpreter that runs nemorun; the local executor uses it for Python tasks
    python: str = sys.executable

    def experiment_dir(self, name: str) -> str:
        return os.path.join(self.home, "experiments", name, self.experiment_id)


def _dataclass_nodes(cfg: Any, path: str = "") -> Iterator[tuple[str, DictConfig, type]]:
    if isinstance(cfg, DictConfig):
        kind = OmegaConf.get_type(cfg)
        if kind is not None and dataclasses.is_dataclass(kind):
            yield path, cfg, kind
        for key in cfg.keys():
            if OmegaConf.is_missing(cfg, key):
                continue
            child = hydra_compat.child_node(cfg, key)
            if isinstance(child, (DictConfig, ListConfig)):
                yield from _dataclass_nodes(child, f"{path}.{key}" if path else str(key))
    elif isinstance(cfg, ListConfig):
        for i in range(len(cfg)):
            item = hydra_compat.child_node(cfg, i)
            if isinstance(item, (DictConfig, ListConfig)):
                yield from _dataclass_nodes(item, f"{path}[{i}]")


def unknown_key_message(path: str, key: str, known: list[str]) -> str:
    full = f"{path}.{key}" if path else key
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean '{(path + '.') if path else ''}{close[0]}'?" if close else ""
    return f"unknown key '{full}'{hint}"


def check_known_keys(cfg: DictConfig) -> None:
    """Reject keys a schema does not declare (``+key=`` bypasses Hydra's own check)."""
    for path, node, kind in _dataclass_nodes(cfg):
        known = [f.name for f in dataclasses.fields(kind)]
        if path == "":
            known += ["hydra"]
        for key in node.keys():
            if key not in known:
                raise ConfigError(unknown_key_message(path, str(key), known))


def _missing_keys(cfg: DictConfig | ListConfig) -> Iterator[str]:
    """``OmegaConf.missing_keys`` without resolving interpolations: it reads every value, and a
    secret's interpolation (``${oc.env:...}``) must wait for submission."""
    for key in cfg.keys() if isinstance(cfg, DictConfig) else range(len(cfg)):
        child = hydra_compat.child_node(cfg, key)
        if child is None:
            continue
        if hydra_compat.is_missing_literal(child):
            yield hydra_compat.full_key(cfg, key)
        elif isinstance(child, (DictConfig, ListConfig)) and not hydra_compat.is_interpolation(child) and not hydra_compat.is_none(child):
            yield from _missing_keys(child)


def missing_value_message(key: str, more: list[str] = []) -> str:
    extra = f" (and {len(more)} more: {', '.join(more[:3])})" if more else ""
    dotted = re.sub(r"\[(\d+)\]", r".\1", key)  # brackets do not parse in an override's key
    return f"missing required value '{key}'{extra}; set it with {dotted}=..."


def check_missing(cfg: DictConfig) -> None:
    missing = sorted(_missing_keys(cfg))
    if missing:
        raise ConfigError(missing_value_message(missing[0], missing[1:]))


def _to_object(node: DictConfig, what: str) -> Any:
    try:
        obj = OmegaConf.to_object(node)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what}: {exc}") from exc
    _check_containers(obj, what)
    return obj


def _check_containers(obj: Any, what: str) -> None:
    """OmegaConf checks an interpolation's result against a field's type for scalars only:
    ``executor.env_vars=${oc.env:HOME}`` gave a str where a mapping goes (an AttributeError
    traceback further on). Each mapping or list field must hold one."""
    if not dataclasses.is_dataclass(obj):
        return
    for name, wanted in _container_fields(type(obj)):
        value = getattr(obj, name, None)
        if dataclasses.is_dataclass(value):
            _check_containers(value, f"{what}.{name}")
        elif wanted and value is not None and not isinstance(value, wanted):
            raise ConfigError(f"{what}.{name}: an interpolation gave a {type(value).__name__} where a "
                              f"{'mapping' if wanted[0] is dict else 'list'} goes")


_CONTAINER_FIELDS: dict[type, tuple[tuple[str, tuple[type, ...]], ...]] = {}


def _container_fields(kind: type) -> tuple[tuple[str, tuple[type, ...]], ...]:
    """Each field of dataclass ``kind`` with the containers (dict, list) its type allows (once per type)."""
    import typing

    if kind not in _CONTAINER_FIELDS:
        out = []
        for name, hint in typing.get_type_hints(kind).items():
            kinds = [typing.get_origin(t) or t for t in (typing.get_args(hint) if typing.get_origin(hint) is Union else (hint,))]
            out.append((name, tuple(k for k in kinds if k in (dict, list))))
        _CONTAINER_FIELDS[kind] = tuple(out)
    return _CONTAINER_FIELDS[kind]


def secret_fields_as_references(node: DictConfig) -> DictConfig:
    """A copy of ``node`` whose secret fields (dataclass field metadata ``secret=True``) hold their
    interpolation TEXT (``${oc.env:VAR}``) instead of its value.

    Why: ``OmegaConf.to_object`` resolves interpolations, which would put the secret value into
    the IR (and fail a dry run when the variable is unset). Escaping ``${`` keeps the reference;
    the submitter resolves it at submission only.
    """
    kind = OmegaConf.get_type(node)
    if kind is None or not dataclasses.is_dataclass(kind):
        return node
    names = [f.name for f in dataclasses.fields(kind) if f.metadata.get("secret") is True]
    raw = OmegaConf.to_container(node, resolve=False)
    if not names or not isinstance(raw, dict):
        return node
    node = node.copy()
    for name in names:
        value = raw.get(name)
        if isinstance(value, str):
            node[name] = value.replace("${", "\\${")
    return node


# -- no secret interpolated into anything that is rendered ---------------------------------
#
# Field metadata ``secret``: ``True`` (the field's value is a secret: an interpolation resolved at
# submission only), ``"env"`` (the field names an environment variable holding a secret) or
# ``"file"`` (the field names a file holding one). Any of them makes the field a secret source.

_OC_ENV_ARG = re.compile(r"""^\s*['"]?([A-Za-z_][A-Za-z0-9_]*)""")
_KEY = re.compile(r"^\s*(\.*[A-Za-z0-9_\-\[\]]+(?:\.[A-Za-z0-9_\-\[\]]+)*)\s*$")
_RESOLVER = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*:(.*)$", re.S)


def _parts(path: str) -> tuple[str, ...]:
    """``a.b[0].c`` and ``a.b.0.c`` alike, as OmegaConf treats them."""
    return tuple(p for p in path.replace("[", ".").replace("]", "").split(".") if p)


def _interpolation_bodies(text: str) -> Iterator[str]:
    """The text inside every ``${...}`` of ``text``, nested ones included (escaped ``\\${`` is not
    an interpolation)."""
    starts: list[int] = []
    i = 0
    while i < len(text):
        if text.startswith("\\${", i):
            i += 3
            continue
        if text.startswith("${", i):
            starts.append(i + 2)
            i += 2
            continue
        if text[i] == "}" and starts:
            yield text[starts.pop():i]
        i += 1


@dataclass(frozen=True)
class _Refs:
    """What one string value reads when resolved: config nodes (absolute parts) and env vars."""

    nodes: tuple[tuple[str, ...], ...]
    env: tuple[str, ...]


def _refs(text: str, at: tuple[str, ...]) -> _Refs:
    """The nodes and environment variables the interpolations in ``text`` (the value at path
    ``at``) read: ``${key}``, ``${.rel}``, ``${oc.select:key,...}``, ``${oc.env:VAR}``; the
    arguments of any other resolver are read through their own nested ``${...}``."""
    nodes: list[tuple[str, ...]] = []
    env: list[str] = []

    def key(text: str) -> None:
        dots = len(text) - len(text.lstrip("."))
        base = at[: len(at) - dots] if dots else ()
        nodes.append(base + _parts(text[dots:]))

    for body in _interpolation_bodies(text):
        resolver = _RESOLVER.match(body)
        if resolver is None:
            if _KEY.match(body):
                key(body.strip())
            continue
        name, args = resolver.group(1), resolver.group(2)
        first = _OC_ENV_ARG.match(args) if "${" not in args.split(",")[0] else None
        if name == "oc.env" and first:
            env.append(first.group(1))
        elif name == "oc.select":
            selected = _KEY.match(args.split(",")[0].strip().strip("'\""))
            if selected:
                key(selected.group(1))
    return _Refs(tuple(nodes), tuple(env))


def _leaves(value: Any, at: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, at + (str(k),))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, at + (str(i),))
    else:
        yield at, value


def _lookup(raw: Any, parts: tuple[str, ...]) -> Any:
    for part in parts:
        if isinstance(raw, dict) and part in raw:
            raw = raw[part]
        elif isinstance(raw, list) and part.isdigit() and int(part) < len(raw):
            raw = raw[int(part)]
        else:
            return None
    return raw


def _secret_sources(cfg: DictConfig, raw: Any) -> tuple[dict[tuple[str, ...], str], dict[str, str]]:
    """The secret source fields of ``cfg`` (path → how a message names it) and the environment
    variables that hold a secret (variable → the field that reads or names it)."""
    fields: dict[tuple[str, ...], str] = {}
    env: dict[str, str] = {}
    for path, _node, kind in _dataclass_nodes(cfg):
        for f in dataclasses.fields(kind):
            how = f.metadata.get("secret")
            if not how:
                continue
            at = _parts(path) + (f.name,)
            dotted = ".".join(at)
            fields[at] = f"the secret {dotted}" if how is True else f"{dotted}, which names where a secret is"
            value = _lookup(raw, at)
            if not isinstance(value, str):
                continue
            if how == "env" and "${" not in value:
                env[value] = dotted
            for var in _refs(value, at).env:
                env.setdefault(var, dotted)
    return fields, env


def check_secret_interpolations(cfg: DictConfig) -> None:
    """Refuse any config value (an env var above all) whose interpolation reads a secret.

    Why: a secret field is kept unresolved until submission (:func:`secret_fields_as_references`),
    but ``TOKEN=${executor.app_secret}`` — or an indirection through another key, or
    ``${oc.env:VAR}`` of the variable the secret field reads — would resolve the value into the
    IR, the rendered artifact and the record. Read on the UNRESOLVED config, so nothing is resolved
    to find out, and followed through every node an interpolation reads.
    """
    raw = OmegaConf.to_container(cfg, resolve=False)
    if not isinstance(raw, dict):
        return
    secret_fields, secret_env = _secret_sources(cfg, raw)
    if not secret_fields:
        return

    def reached(at: tuple[str, ...], value: Any, seen: set[tuple[str, ...]]) -> Optional[str]:
        """The secret ``value`` (at ``at``) reads, directly or through the nodes it reads."""
        for path, leaf in _leaves(value, at):
            if not (isinstance(leaf, str) and "${" in leaf):
                continue
            refs = _refs(leaf, path)
            for var in refs.env:
                if var in secret_env:
                    return f"${{oc.env:{var}}}, the variable holding the secret of {secret_env[var]}"
            for node in refs.nodes:
                hit = next((name for p, name in secret_fields.items() if p[: len(node)] == node), None)
                if hit is None and node not in seen:
                    seen.add(node)
                    hit = reached(node, _lookup(raw, node), seen)
                if hit:
                    return hit
        return None

    for at, leaf in _leaves({k: v for k, v in raw.items() if k != "hydra"}, ()):
        if at in secret_fields or not (isinstance(leaf, str) and "${" in leaf):
            continue
        found = reached(at, leaf, {at})
        if found:
            raise ConfigError(
                f"{'.'.join(at)} interpolates {found}: a secret is resolved at submission only, never into "
                "an artifact or the record; give the job a secret reference ({secret: <name>, ...} in "
                "executor.env_vars) instead"
            )


_REF_FIELD_FORMS = {"secret": "secret: <secret name>", "key": "key: <key in the secret>"}


def secret_ref_fields(executor_type: type) -> tuple[str, ...]:
    """The fields of a secret reference on this executor; () when its env_vars are plain strings."""
    for f in dataclasses.fields(executor_type):
        if f.name == "env_vars":
            return tuple(f.metadata.get(SECRET_REFS, ()))  # declared with schemas.core.secret_env_vars
    return ()


def secret_reference_executors() -> list[str]:
    """Executor kinds whose env_vars take secret references, read from the schemas themselves."""
    prefix = "_schema_executor_"
    return sorted(n[len(prefix):] for n, cls in all_schemas().items() if n.startswith(prefix) and secret_ref_fields(cls))


def secret_refs_unsupported(path: str, kind: Optional[str]) -> str:
    """The one line for a ``{secret: ...}`` value on an executor whose env_vars are plain strings."""
    *others, last = secret_reference_executors()
    which = f"{', '.join(others)} and {last}" if others else last
    this = f"; executor={kind} takes plain string values" if kind else ""
    return f"{path}: secret references ({{secret: ...}}) are supported by the {which} executors only{this}"


def secret_references(env_vars: Mapping[str, Any], fields: tuple[str, ...], kind: str) -> dict[str, ir.SecretRef]:
    """The ``{NAME: {secret: name[, key: key]}}`` entries of an executor's env_vars, as IR references.

    One parser for every target that takes references, so all spell and check them alike. Nothing
    is resolved or read: a reference names where the platform keeps the value, in the pod.
    """
    form = "{" + ", ".join(_REF_FIELD_FORMS[f] for f in fields) + "}"
    refs: dict[str, ir.SecretRef] = {}
    for key, value in env_vars.items():
        path = f"executor.env_vars.{key}"
        if isinstance(value, Mapping):
            if not fields:
                raise ConfigError(secret_refs_unsupported(path, kind))
            missing = [f for f in fields if f not in value]
            unknown = sorted(str(f) for f in value if f not in fields)
            empty = [f for f in fields if f in value and not (isinstance(value[f], str) and value[f])]
            if missing or unknown or empty:
                what = "; ".join(
                    f"{label}: {', '.join(names)}"
                    for label, names in (("missing", missing), ("unknown", unknown), ("not a non-empty string", empty))
                    if names
                )
                raise ConfigError(f"{path}: a mapping value must be {form} ({what})")
            refs[str(key)] = ir.SecretRef(name=value["secret"], key=value.get("key"))
        elif isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: a value must be a string{' or ' + form if fields else ''}, not a list")
    return refs


def task_of(cfg: DictConfig) -> ir.Task:
    t = _to_object(cfg.task, "task")
    given = [k for k in ("inline", "script", "target") if getattr(t, k)]
    if len(given) != 1:
        which = "none" if not given else " and ".join(given)
        raise ConfigError(f"task '{t.name}' must set exactly one of inline, script or target (it sets {which})")
    kind = {"inline": "inline", "script": "script", "target": "function"}[given[0]]
    return ir.Task(
        name=t.name,
        kind=kind,  # type: ignore[arg-type]
        inline=t.inline,
        script=t.script,
        args=tuple(str(a) for a in t.args),
        target=t.target,
        params=t.params,
    )


_SIMPLE_TYPES = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}


def check_function_call(target: str, params: dict[str, Any], search_dir: str) -> None:
    """Import the function here and bind the params to its signature, so a typo in the target,
    an unknown or missing parameter, or a value of the wrong simple type fails now, not on the node."""
    import inspect

    added = search_dir not in sys.path
    if added:
        sys.path.insert(0, search_dir)
    try:
        fn = load_target(target)
    except Exception as exc:  # any import-time failure of user code is the user's to fix
        raise ConfigError(f"function target '{target}' cannot be imported: {type(exc).__name__}: {exc}") from exc
    finally:
        if added:
            sys.path.remove(search_dir)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    try:
        sig.bind(**params)
    except TypeError as exc:
        known = [n for n in sig.parameters]
        unknown = [k for k in params if k not in sig.parameters]
        if unknown and not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
            raise ConfigError(unknown_key_message("task.params", unknown[0], known) + f" ({target} takes: {', '.join(known)})") from exc
        raise ConfigError(f"task.params do not fit {target}{sig}: {exc}") from exc
    hints: dict[str, Any] = {}
    try:
        import typing

        hints = typing.get_type_hints(fn)
    except Exception:
        pass
    for key, value in params.items():
        allowed = _SIMPLE_TYPES.get(hints.get(key))  # type: ignore[arg-type]
        if allowed and value is not None and (not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed)):
            raise ConfigError(f"task.params.{key}={value!r}: {target} expects {hints[key].__name__}")


def _checked_name(what: str, name: str) -> str:
    """Names become folder names, Slurm job names and comment lines: one character set for all."""
    try:
        check_name(what, name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return name


def experiment_name(cfg: DictConfig) -> str:
    name = cfg.get("name") or (cfg.task.name if cfg.get("task") is not None else None)
    if not name:
        raise ConfigError("no experiment name: set name=... or pick a task with task=<name>")
    return _checked_name("name" if cfg.get("name") else "task: name", str(name))


# -- max_parallel: how many jobs of a sweep run at once ----------------------------------------
#
# A top-level key (``max_parallel=N``, shown in --help) because it is part of the experiment: kept
# in config.yaml, so ``exp rerun`` and ``--resume`` plan the same limit. A job array takes it as
# Slurm's ``--array=...%N``; any other sweep as N lanes: job i waits for job i-N to end (any end:
# ``afterany``), natively where the target has dependencies (Slurm), else nemorun waits before it
# submits (the launch stays attached until the last lane's job is submitted). At most N run at
# once; a lane does not borrow a slot another lane freed. ``hydra.launcher.max_parallel`` is the
# older spelling and means the same.

MAX_PARALLEL_SINGLE = ("max_parallel limits how many jobs of a sweep run at once; this launch is one job (or one "
                       "experiment's tasks, ordered by depends_on): drop it, or sweep with -m and a,b values")


def max_parallel(cfg: DictConfig, alias: Optional[int] = None) -> Optional[int]:
    """The sweep's ``max_parallel`` (the config's key, else ``hydra.launcher.max_parallel``)."""
    value = cfg.get("max_parallel")
    if value is not None and alias is not None and value != alias:
        raise ConfigError(f"max_parallel={value} and hydra.launcher.max_parallel={alias} disagree; set max_parallel only")
    key = "max_parallel" if value is not None else "hydra.launcher.max_parallel"  # the one the user wrote
    value = value if value is not None else alias
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{key} must be a whole number >= 1 (got {value!r})")
    return value


def parallel_lane(jobs: Sequence[ir.Job], index: int, limit: Optional[int]) -> tuple[tuple[str, ...], str]:
    """(depends_on, dependency_type) of sweep job ``index`` of ``jobs`` under ``limit`` jobs at once."""
    if limit is None or index < limit:
        return (), "afterok"
    return (jobs[index - limit].name,), "afterany"


def check_config(cfg: DictConfig) -> None:
    if cfg.get("task") is None:
        raise ConfigError("no task selected; pick one with task=<name> (see --help for the list)")
    check_known_keys(cfg)
    check_missing(cfg)


# Where an IR value comes from in an executor's schema: a field name, or (field name, function
# of the executor) for what a name alone cannot say (a unit to convert, a field that counts
# only with another). The name is what a target must never read itself (tests/test_ir_purity.py).
Source = Union[str, tuple[str, Callable[[Any], Any]]]


def _colon_mounts(ex: Any, name: str) -> tuple[ir.Mount, ...]:
    return tuple(ir.Mount.parse(m) for m in getattr(ex, name))


@dataclass(frozen=True)
class ExecutorFields:
    """Where one executor's schema keeps what the IR holds in one spelling.

    The schemas keep the names users know (NeMo-Run's ``num_nodes``, ``num_gpus``,
    ``container_image``...); this table is the only place that knows them. ``env_vars`` and
    ``retries`` are on every executor (``schemas.core.ExecutorConfig``).
    """

    # ir.Resources field -> its source; fields left out keep the IR's default
    resources: Mapping[str, Source]
    image: Optional[str] = None
    # -> Job.mounts
    mounts: Optional[tuple[str, Callable[[Any], tuple[ir.Mount, ...]]]] = None
    # interpreter for Python tasks on the target (default: "python"; local: nemorun's own)
    python: Optional[str] = None
    # the folder holding the job's code as the config names it (default: the submit directory);
    # where the function target is imported from at compile time
    workdir: Optional[str] = None
    dependency_type: Optional[str] = None

    def schema_fields(self) -> dict[str, str]:
        """IR field -> the schema field it is read from: what targets must read from the IR instead."""
        named = {f"resources.{k}": v if isinstance(v, str) else v[0] for k, v in self.resources.items()}
        named.update({k: v for k, v in (("image", self.image), ("python", self.python)) if v})
        if self.mounts:
            named["mounts"] = self.mounts[0]
        named.update(env="env_vars", retries="retries")
        return named


EXECUTOR_FIELDS: dict[str, ExecutorFields] = {
    "local": ExecutorFields(resources={"tasks_per_node": "ntasks_per_node"}, python="python", workdir="workdir"),
    "slurm": ExecutorFields(
        resources={"nodes": "nodes", "tasks_per_node": "ntasks_per_node", "gpus_per_node": "gpus_per_node",
                   "gpus_per_task": "gpus_per_task", "cpus_per_task": "cpus_per_task", "mem": "mem", "time": "time"},
        image="container_image",
        mounts=("container_mounts", lambda ex: _colon_mounts(ex, "container_mounts")),
        dependency_type="dependency_type",
    ),  # fmt: skip
    "docker": ExecutorFields(
        resources={"tasks_per_node": "ntasks_per_node", "gpus_per_node": "num_gpus", "shm_size": "shm_size"},
        image="container_image",
        mounts=("volumes", lambda ex: _colon_mounts(ex, "volumes")),
        python="python",
    ),
    # volumes/volume_mounts stay Kubernetes objects on the executor (no common spelling holds
    # them), as do cpu_limit/memory_limit (limits are Kubernetes' own notion)
    "kubeflow": ExecutorFields(
        resources={"nodes": "nodes", "tasks_per_node": "ntasks_per_node", "gpus_per_node": "gpus",
                   "cpus": "cpu_request", "mem": "memory_request"},
        image="image",
        python="python",
    ),  # fmt: skip
    "skypilot": ExecutorFields(
        resources={"nodes": "num_nodes", "gpu_type": "gpus", "cpus": "cpus", "mem": "memory",
                   # accelerators per node count only with an accelerator name
                   "gpus_per_node": ("gpus_per_node", lambda ex: ex.gpus_per_node if ex.gpus else None)},
        image="container_image",
        # remote path -> local path or bucket
        mounts=("file_mounts", lambda ex: tuple(ir.Mount(source=str(s), target=str(d)) for d, s in ex.file_mounts.items())),
        workdir="workdir",
    ),  # fmt: skip
    "dgxcloud": ExecutorFields(
        resources={"nodes": "nodes", "gpus_per_node": "gpus_per_node"},
        image="container_image",
        mounts=("pvcs", lambda ex: tuple(
            ir.Mount(source=p.claim_name, target=p.path, read_only=p.read_only, name=p.name, create=not p.existing_pvc)
            for p in ex.pvcs
        )),
        workdir="workdir",
    ),  # fmt: skip
    "lepton": ExecutorFields(
        resources={"nodes": "nodes", "gpus_per_node": "gpus_per_node",
                   # MiB as a number -> the IR's docker-style size
                   "shm_size": ("shared_memory_size",
                                lambda ex: None if ex.shared_memory_size is None else f"{ex.shared_memory_size}m")},
        image="container_image",
        mounts=("mounts", lambda ex: tuple(
            ir.Mount(source=m.source, target=m.mount_path, subpath=m.path, read_only=m.read_only) for m in ex.mounts
        )),
    ),  # fmt: skip
}


def executor_fields(kind: str) -> ExecutorFields:
    try:
        return EXECUTOR_FIELDS[kind]
    except KeyError:
        raise ConfigError(f"executor kind '{kind}' has no IR mapping (known: {', '.join(EXECUTOR_FIELDS)})") from None


def _get(executor: Any, source: Source) -> Any:
    return getattr(executor, source) if isinstance(source, str) else source[1](executor)


def resources_of(executor: Any) -> ir.Resources:
    """The executor's resources in the IR's one spelling (:data:`EXECUTOR_FIELDS`)."""
    values = {name: _get(executor, source) for name, source in executor_fields(str(executor.kind)).resources.items()}
    return ir.Resources(**{k: v for k, v in values.items() if v is not None})


def compile_job(
    cfg: DictConfig,
    site: Site,
    *,
    job_name: Optional[str] = None,
    package: ir.Package = ir.Package(),
    dependencies: tuple[str, ...] = (),
) -> ir.Job:
    """Build the IR of one job. ``cfg`` should have passed :func:`check_config`.

    Ends with the target's capability check, so an option the target would accept and then
    ignore is refused here, on every path that compiles a job. A value still ``???`` (OmegaConf's
    "missing", e.g. set from Python after the check) is the same one-line error as at compose time."""
    try:
        return _compile_job(cfg, site, job_name=job_name, package=package, dependencies=dependencies)
    except MissingMandatoryValue as exc:
        raise ConfigError(missing_value_message(exc.full_key or str(exc))) from None


def _compile_job(
    cfg: DictConfig,
    site: Site,
    *,
    job_name: Optional[str],
    package: ir.Package,
    dependencies: tuple[str, ...],
) -> ir.Job:
    check_secret_interpolations(cfg)
    task = task_of(cfg)
    executor = _to_object(secret_fields_as_references(cfg.executor), "executor")
    launcher_cfg = _to_object(cfg.launcher, "launcher")
    name = experiment_name(cfg)
    job = _checked_name("job name", job_name or task.name)

    env: dict[str, str] = {}
    secrets = secret_references(executor.env_vars, secret_ref_fields(type(executor)), str(executor.kind))
    env.update({str(k): str(v) for k, v in executor.env_vars.items() if str(k) not in secrets})
    task_env = {str(k): str(v) for k, v in _to_object(cfg.task, "task").env.items()}
    both = sorted(set(task_env) & set(secrets))
    if both:
        raise ConfigError(f"task.env.{both[0]} is also a secret reference in executor.env_vars; set it in one place")
    env.update(task_env)
    for key in [*env, *secrets]:
        if not is_env_name(key):
            raise ConfigError(f"environment variable name {key!r} is not valid (letters, digits, _; not starting with a digit)")

    fields = executor_fields(str(executor.kind))
    workdir = (fields.workdir and getattr(executor, fields.workdir)) or site.submit_dir
    if task.kind == "function":
        check_function_call(str(task.target), dict(task.params), package.source_dir or workdir)
    python = (fields.python and getattr(executor, fields.python)) or (site.python if executor.kind == "local" else "python")
    launcher_options = {k: v for k, v in dataclasses.asdict(launcher_cfg).items() if k != "kind"}

    job = ir.Job(
        experiment_id=site.experiment_id,
        experiment_name=name,
        name=job,
        task=task,
        env=env,
        resources=resources_of(executor),
        launcher=ir.Launcher(kind=launcher_cfg.kind, options=launcher_options),
        package=package,
        executor=executor,
        workdir=workdir,
        job_dir=os.path.join(site.experiment_dir(name), "jobs", job),
        image=(fields.image and getattr(executor, fields.image)) or None,
        mounts=fields.mounts[1](executor) if fields.mounts else (),
        retries=int(executor.retries or 0),
        python=python,
        dependencies=dependencies,
        dependency_type=str((fields.dependency_type and getattr(executor, fields.dependency_type)) or "afterok"),
        packager=_to_object(cfg.packager, "packager"),
        secrets=secrets,
    )
    capabilities.check(job)
    return job
