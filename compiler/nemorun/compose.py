"""Every way nemorun turns override strings into a composed config, in one module.

Front ends (the CLI, the Python API, ``exp rerun``, ``--resume``, the multirun launcher plugin)
pick a :class:`Composer` and hand it to :func:`nemorun.plan.plan`:

- :class:`FilesComposer`: Hydra's compose API over nemorun's config tree, the user's config
  folders and plugins — what ``nemorun ...`` composes (single runs are served from
  :mod:`nemorun.compose_cache` when the same inputs were composed before);
- :class:`SnapshotComposer`: an experiment's stored ``config.yaml`` typed again, for ``exp rerun``
  (a config file edited since must not change the rerun);
- :class:`SweepMasterComposer`: inside Hydra's multirun, a copy of the master config Hydra
  already composed, patched with the swept values.

A sweep's jobs that differ only in values are patched, not composed (see :mod:`nemorun.plan`):
:func:`parse_overrides`, :class:`ValueTable`, :func:`is_value_override` and
:func:`apply_overrides` serve that. Private Hydra calls go through :mod:`nemorun.hydra_compat`.
:func:`describe_error` turns any compose error into the one line a user sees.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from nemorun import compose_cache, hydra_compat
from nemorun.errors import ConfigError, NemorunError, one_line
from nemorun.lower import secret_refs_unsupported
from nemorun.schemas import all_schemas

CONFIG_NAME = "nemorun"


class Composer(Protocol):
    """What planning needs from a compose path."""

    def compose(self, overrides: Sequence[str]) -> DictConfig: ...

    def is_group(self, key: str) -> bool:
        """Whether an override's key selects a config group option (``executor``, ``executor.tunnel``)."""
        ...


# -- Hydra's compose API ---------------------------------------------------------------------


@contextlib.contextmanager
def hydra_context() -> Iterator[Any]:
    """The config loader of an initialised Hydra (initialising one for this block if needed)."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from hydra_plugins.nemorun_plugins import register_all

    register_all()
    if GlobalHydra.instance().is_initialized():
        yield GlobalHydra.instance().config_loader()
        return
    with initialize_config_module(config_module="nemorun.conf", version_base="1.3"):
        yield GlobalHydra.instance().config_loader()


def compose_files(overrides: Sequence[str]) -> DictConfig:
    """One compose from the config files (inside :func:`hydra_context`)."""
    from hydra import compose

    return compose(config_name=CONFIG_NAME, overrides=free_form_overrides(overrides))


def _group_test(loader: Any) -> Callable[[str], bool]:
    @lru_cache(maxsize=None)
    def is_group(key: str) -> bool:
        return hydra_compat.group_exists(loader, key)

    return is_group


class FilesComposer:
    """Composes from the config files; must be used inside :func:`hydra_context` (``loader``)."""

    def __init__(self, loader: Any):
        self._is_group = _group_test(loader)

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        return compose_files(overrides)

    def is_group(self, key: str) -> bool:
        return self._is_group(key)


def compose_single(overrides: Sequence[str]) -> DictConfig:
    """A single run's config: from :mod:`nemorun.compose_cache` when these exact inputs were
    composed before (then Hydra's composition machinery is not even imported), else composed
    (inside :func:`hydra_context`) and cached. Multi-task experiments are not cached: their
    tasks compose more configs, from the files."""
    key = compose_cache.cache_key(overrides)
    cfg = compose_cache.load(key)
    if cfg is not None:
        return cfg
    with hydra_context(), described():
        cfg = compose_files(overrides)
    if cfg.get("experiment") is None:
        compose_cache.save(key, cfg)
    return cfg


# -- override strings ------------------------------------------------------------------------


def parse_overrides(strings: Sequence[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return list(OverridesParser.create().parse_overrides(free_form_overrides(strings)))


# config groups whose options have free-form mappings (env_vars, params, labels, ...)
_FREE_FORM_GROUPS = ("executor", "task", "packager")


@lru_cache(maxsize=1)
def free_form_fields() -> dict[str, frozenset[str]]:
    """group -> the fields typed ``Dict[...]`` in any of its options' schemas: mappings that are
    free-form by design (environment variables, function parameters, labels, extra options)."""
    import typing

    out: dict[str, set[str]] = {g: set() for g in _FREE_FORM_GROUPS}
    for name, cls in all_schemas().items():
        group = name[len("_schema_"):].split("_", 1)[0]
        if group not in out or name.startswith("_schema_executor_tunnel_"):
            continue
        for field_name, hint in typing.get_type_hints(cls).items():
            if typing.get_origin(hint) is dict:
                out[group].add(field_name)
    return {g: frozenset(f) for g, f in out.items()}


def free_form_overrides(overrides: Sequence[str]) -> list[str]:
    """``key=value`` overrides into a free-form mapping become ``++key=value``, so a new key needs
    no ``+`` (``executor.env_vars.HF_TOKEN=abc``, ``task.params.sleep=0.1``) while typed nodes keep
    Hydra's strict check. Function parameters are still checked against the function's signature."""
    out = []
    for text in overrides:
        key, eq, _ = text.partition("=")
        if eq and not key.startswith(("+", "~")) and "@" not in key and _is_free_form(key):
            text = "++" + text
        out.append(text)
    return out


def _is_free_form(key: str) -> bool:
    parts = key.split(".")
    return len(parts) >= 2 and parts[1] in free_form_fields().get(parts[0], frozenset())


def as_typed(overrides: Sequence[str]) -> list[str]:
    """The overrides as a user types them: ``++`` taken off free-form ones (where it changes
    nothing), so records, summaries and reruns show ``executor.env_vars.X=1``."""
    return [t[2:] if t.startswith("++") and "=" in t and "@" not in t.partition("=")[0] and _is_free_form(t[2:].partition("=")[0])
            else t for t in overrides]


def is_sweep(overrides: Sequence[str]) -> bool:
    return any(o.is_sweep_override() for o in parse_overrides(overrides))


# a sweep larger than this is refused before it is expanded (hydra.sweeper.max_jobs=N changes it)
MAX_SWEEP_JOBS = 100_000
MAX_JOBS_KEY = "hydra.sweeper.max_jobs"


def sweep_size(parsed: Sequence[Any]) -> int:
    """How many jobs a grid sweep makes, computed without expanding it (``range(0,10**8)`` is
    one number, not a list)."""
    import math

    from hydra.core.override_parser.types import ChoiceSweep, RangeSweep

    size = 1
    for ov in parsed:
        if not ov.is_sweep_override():
            continue
        value = ov.value()
        if isinstance(value, RangeSweep):
            start, stop, step = value.start, value.stop, value.step
            size *= max(0, math.ceil((stop - start) / step)) if step else 0
        elif isinstance(value, ChoiceSweep):
            size *= len(value.list)
    return size


def check_sweep_size(parsed: Sequence[Any], limit: int = MAX_SWEEP_JOBS) -> None:
    size = sweep_size(parsed)
    if size > limit:
        raise ConfigError(f"the sweep makes {size:,} jobs, more than {MAX_JOBS_KEY}={limit}; narrow it, or raise the limit "
                          f"with {MAX_JOBS_KEY}=N")


def sweep_batch(overrides: Sequence[str]) -> list[list[str]]:
    """The job override lists of a grid sweep (a plain override list gives one job), refused
    before expanding when it is larger than ``hydra.sweeper.max_jobs``."""
    parsed = parse_overrides(overrides)
    limits = [int(o.value()) for o in parsed if str(o.key_or_group) == MAX_JOBS_KEY and not o.is_sweep_override()]
    check_sweep_size(parsed, limits[-1] if limits else MAX_SWEEP_JOBS)
    return hydra_compat.split_sweep(parsed)


class ValueTable:
    """override string -> parsed Override, filled from the sweep's own overrides in one parse
    (``range(0,10000)`` is parsed once, not 10,000 times)."""

    def __init__(self, command_overrides: Sequence[str]):
        self._by_string: dict[str, Any] = {}
        try:
            parsed = parse_overrides(command_overrides)
        except Exception:  # noqa: BLE001 - a bad line is reported by the per-job parse below
            parsed = []
        for ov in parsed:
            key = ov.get_key_element()
            if ov.is_sweep_override() and ov.is_discrete_sweep():
                for text, value in zip(ov.sweep_string_iterator(), ov.sweep_iterator()):
                    line = f"{key}={text}"
                    self._by_string[as_typed([line])[0]] = hydra_compat.element_override(ov, key, text, value)
            elif not ov.is_sweep_override():
                self._by_string[as_typed([f"{key}={ov.get_value_element_as_str()}"])[0]] = ov

    def get(self, text: str) -> Any:
        ov = self._by_string.get(text)
        if ov is None:
            ov = self._by_string[text] = parse_overrides([text])[0]
        return ov


def is_value_override(ov: Any, is_group: Callable[[str], bool]) -> bool:
    """``key=value`` on a config value (not a group selection, not ``+``/``~``, not ``hydra.``)."""
    from hydra.core.override_parser.types import OverrideType

    key = str(ov.key_or_group)
    free_form = ov.type is OverrideType.FORCE_ADD and _is_free_form(key)
    return (
        (ov.type is OverrideType.CHANGE or free_form)
        and ov.package is None
        and not key.startswith("hydra.")
        and "/" not in key
        and not is_group(key)
    )


def apply_overrides(overrides: Sequence[Any], cfg: DictConfig) -> None:
    """Hydra's own merge of parsed value overrides into a composed config (types still enforced)."""
    hydra_compat.apply_value_overrides(overrides, cfg)


# -- inside Hydra's multirun -----------------------------------------------------------------


def without_hydra(cfg: DictConfig) -> DictConfig:
    """The job's config as the task function would see it (Hydra's run_job drops it too)."""
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    return cfg


class SweepMasterComposer:
    """Hydra already composed the sweep's master config (every override but the swept ones):
    when a job's swept overrides are plain values, a copy of it patched with them saves a whole
    compose; a job that selects other group options is composed by Hydra's own loader."""

    def __init__(self, master: DictConfig, loader: Any, command: Sequence[str]):
        self._master, self._loader, self._command = master, loader, as_typed(command)
        self._is_group = _group_test(loader)

    def is_group(self, key: str) -> bool:
        return self._is_group(key)

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        overrides = as_typed(overrides)
        swept = parse_overrides([o for o in overrides if o not in self._command])
        if all(is_value_override(o, self._is_group) for o in swept):
            cfg = without_hydra(copy.deepcopy(self._master))
            apply_overrides(swept, cfg)
            return cfg
        return without_hydra(self._loader.load_sweep_config(self._master, free_form_overrides(overrides)))


# -- the stored config of an experiment (exp rerun) ------------------------------------------
#
# ``exp rerun ID [overrides]`` starts from the experiment's config.yaml (the composed config as
# launched), not from the config files. config.yaml is typed again with the schema of each group
# option (picked by the node's ``kind``: an ``executor`` of kind slurm gets
# ``_schema_executor_slurm``), so overrides go through the CLI's own parser and Hydra's own
# merge: a typo or a bad type is still one line, exit 2. Every override line is applied to the
# snapshot again (stored ones re-set the values they set, and a sweep's jobs differ only in them).
# Group selections cannot apply to a snapshot: new ones are refused, and a sweep across group
# options (``task=a,b``) cannot rerun (its config.yaml holds one selection).


def _typed(data: Any, path: str, schemas: dict[str, type]) -> Any:
    """A plain config tree (from config.yaml) with every group node typed by its schema again."""
    if not isinstance(data, dict):
        return data
    base = "_schema_" + path.replace(".", "_") if path else "_schema_root"
    kind = data.get("kind")
    schema = (schemas.get(f"{base}_{kind}") if isinstance(kind, str) else None) or schemas.get(base)
    children = {k: _typed(v, f"{path}.{k}" if path else str(k), schemas) for k, v in data.items()}
    if schema is None:
        return children
    node = OmegaConf.structured(schema)
    for key, value in children.items():
        if isinstance(value, DictConfig):
            with open_dict(node):
                node[key] = value  # an `Any` field keeps the child's own schema
        else:
            node.merge_with({key: value})
    return node


def snapshot(config_yaml: Path) -> DictConfig:
    """A stored config, typed and in struct mode as Hydra composes it."""
    data = OmegaConf.to_container(OmegaConf.load(config_yaml), resolve=False)
    cfg: DictConfig = _typed(data, "", all_schemas())
    OmegaConf.set_struct(cfg, True)
    return cfg


def _is_selection(ov: Any, is_group: Callable[[str], bool]) -> bool:
    key = str(ov.key_or_group)
    return ov.package is not None or "/" in key or bool(is_group(key))


class SnapshotComposer:
    """``compose(overrides)`` against a stored config instead of the config files.

    ``stored`` are the experiment's own overrides (for a sweep: its first job's): the group
    selections among them are already in the snapshot; any other selection is refused.
    """

    def __init__(self, base: DictConfig, stored: Sequence[str], loader: Any):
        self._base = base
        self._is_group = _group_test(loader)
        self._selection = frozenset(t for t, o in zip(stored, parse_overrides(stored)) if _is_selection(o, self._is_group))

    def is_group(self, key: str) -> bool:
        return self._is_group(key)

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        cfg = copy.deepcopy(self._base)
        apply: list[Any] = []
        for text, ov in zip(overrides, parse_overrides(overrides)):
            if str(ov.key_or_group).split(".", 1)[0] == "hydra":
                continue
            if _is_selection(ov, self._is_group):
                if text not in self._selection:
                    raise ConfigError(f"'{text}' selects a config group option: a rerun starts from the stored config "
                                      "and changes values only; launch anew to pick other options")
                continue
            if ov.is_delete() and OmegaConf.select(cfg, str(ov.key_or_group), throw_on_missing=False) is None:
                continue  # a stored ~key: already gone from the snapshot
            if ov.is_add():  # a stored +key: already in the snapshot, set it again
                ov = hydra_compat.as_force_add(ov)
            apply.append(ov)
        apply_overrides(apply, cfg)
        return cfg


# -- errors ----------------------------------------------------------------------------------


class Described(Exception):
    """An error already turned into its one line (while Hydra's option lists were available)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def _available_options(group: str) -> list[str]:
    try:
        from hydra.core.global_hydra import GlobalHydra

        loader = GlobalHydra.instance().config_loader()
        return [o for o in loader.get_group_options(group) if not o.startswith("_")]
    except Exception:
        return []


def describe_error(exc: BaseException) -> tuple[int, str]:
    """Turn any exception out of Hydra/OmegaConf/nemorun into (exit code, one-line message)."""
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    from hydra.errors import OverrideParseException

    if isinstance(exc, Described):
        return exc.code, str(exc)
    if isinstance(exc, NemorunError):
        return exc.exit_code, one_line(str(exc))
    if isinstance(exc, OverrideParseException) and "=" in str(exc.override or ""):
        return 2, unparsable_override(str(exc.override))
    if isinstance(exc, MissingConfigException):
        text = str(exc)
        empty = re.search(r"Could not find '([^']+)/'", text)
        if empty:
            group = empty.group(1)
            options = [o for o in (_available_options(group) or re.findall(r"^\t(\S+)$", text, flags=re.M)) if not o.startswith("_")]
            example = f" (e.g. {group}={options[0]})" if options else ""
            return 2, f"{group}= picks no option; choose one of: {', '.join(options) or '(none)'}{example}"
        m = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
        if m:
            group, option = m.group(1), m.group(2)
            options = _available_options(group) or re.findall(r"^\t(\S+)$", text, flags=re.M)
            listed = ", ".join(o for o in options if not o.startswith("_"))
            return 2, f"unknown {group} option '{option}'; available: {listed or '(none)'}"
        return 2, one_line(text)
    if isinstance(exc, (HydraException, OmegaConfBaseException)):
        return 2, _describe_config_error(exc)
    if isinstance(exc, (ValueError, TypeError)) and "override" in str(exc).lower():
        return 2, one_line(str(exc))
    return 1, f"internal error: {type(exc).__name__}: {one_line(str(exc))} (NEMORUN_DEBUG=1 shows the traceback)"


@contextlib.contextmanager
def described() -> Iterator[None]:
    """Raise any compose error of this block as a one-line NemorunError — inside
    :func:`hydra_context`, where the option lists that message names are still known."""
    try:
        yield
    except NemorunError:
        raise
    except Exception as exc:
        raise as_nemorun_error(exc) from exc


def quoted_form(override: str) -> str:
    """The override with its value quoted for Hydra's grammar, as a shell argument that works:
    ``k=a#b`` -> ``'k="a#b"'``, ``k=[--mpi=pmix,x]`` -> ``'k=["--mpi=pmix","x"]'``."""
    key, _, value = override.partition("=")

    def quote(text: str) -> str:
        return '"' + text.strip().replace("\\", "\\\\").replace('"', '\\"') + '"'

    if value.startswith("[") and value.endswith("]"):
        inner = value[1:-1]
        quoted = f"[{','.join(quote(v) for v in inner.split(','))}]" if inner.strip() else "[]"
    else:
        quoted = quote(value)
    text = f"{key}={quoted}"
    return "'" + text.replace("'", "'\\''") + "'"


def unparsable_override(override: str) -> str:
    """One line for an override Hydra's lexer cannot read: which one, why, and the form that works."""
    return (f"cannot parse the override {override!r}: characters such as # ; [ ] = spaces or non-ASCII letters in a "
            f"value need quotes; write it as {quoted_form(override)}")


def as_nemorun_error(exc: BaseException) -> NemorunError:
    """A compose error as the one-line nemorun error the CLI would print (exit 2 = config)."""
    if isinstance(exc, NemorunError):
        return exc
    code, message = describe_error(exc)
    return ConfigError(message) if code == 2 else NemorunError(message)


def _describe_config_error(exc: BaseException) -> str:
    import difflib

    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    text = str(exc)
    cause = exc.__cause__ or exc
    key_path = getattr(cause, "full_key", None)
    object_type = getattr(cause, "object_type", None)
    refused_ref = _secret_reference_refused(cause)
    if refused_ref:
        return refused_ref
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and key_path:
        known: list[str] = []
        if object_type is not None and dataclasses.is_dataclass(object_type):
            known = [f.name for f in dataclasses.fields(object_type)]
        prefix, _, key = str(key_path).rpartition(".")
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"; did you mean '{prefix + '.' if prefix else ''}{close[0]}'?" if close else ""
        return f"unknown key '{key_path}'{hint}"
    m = re.match(r"Error merging override (\S+)", text)
    if m and isinstance(cause, OmegaConfBaseException):
        first = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        return f"bad value in override {m.group(1)}: {first}"
    if isinstance(exc, OmegaConfBaseException):
        first = text.splitlines()[0] if text else type(exc).__name__
        key = getattr(exc, "full_key", None)
        return f"{key}: {first}" if key and key not in first else first
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(("full_key:", "object_type", "reference_type"))]
    return "; ".join(lines) or type(exc).__name__


def _secret_reference_refused(cause: BaseException) -> Optional[str]:
    """A ``{secret: ...}`` env var that a plain-string env_vars schema refused (OmegaConf says only
    "Cannot convert 'dict' to string"): say which executors take references instead."""
    key = str(getattr(cause, "full_key", "") or "")
    value = getattr(cause, "value", None)
    if not (key.startswith("executor.env_vars.") and isinstance(value, dict) and "secret" in value):
        return None
    env_vars = getattr(cause, "parent_node", None)
    executor = hydra_compat.parent(env_vars) if env_vars is not None else None
    kind = executor.get("kind") if isinstance(executor, DictConfig) else None
    return secret_refs_unsupported(key, str(kind) if kind else None)
