"""Every way nemorun turns override strings into a composed config, in one module.

Front ends (the CLI, the Python API, ``exp rerun``, ``--resume``, the multirun launcher plugin)
pick a :class:`Composer` and hand it to :func:`nemorun.plan.plan`:

- :class:`FilesComposer`: Hydra's compose API over nemorun's config tree, the user's config
  folders and plugins — what ``nemorun ...`` composes (single runs are served from
  :mod:`nemorun.compose_cache` when the same inputs were composed before), without composing
  Hydra's own ``hydra`` node when nothing reaches into it (:func:`compose_files`);
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

from omegaconf import AnyNode, DictConfig, ListConfig, OmegaConf, StringNode, open_dict, read_write

from nemorun import compose_cache, hydra_compat
from nemorun.errors import ConfigError, DamagedRecordError, NemorunError, one_line
from nemorun.lower import secret_refs_unsupported
from nemorun.schemas import all_schemas
from nemorun.schemas.core import SECRET_REFS, RootConfig

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
    """One compose from the config files (inside :func:`hydra_context`): Hydra's compose API,
    without composing Hydra's own ``hydra`` node when nothing reaches into it (the compose
    API throws that node away; see :func:`nemorun.hydra_compat.compose_without_hydra_node`)."""
    from hydra import compose
    from hydra.core.global_hydra import GlobalHydra

    overrides = free_form_overrides(overrides)
    cfg = hydra_compat.compose_without_hydra_node(GlobalHydra.instance().config_loader(), CONFIG_NAME, overrides)
    return cfg if cfg is not None else compose(config_name=CONFIG_NAME, overrides=overrides)


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
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    # inside hydra_context, glob(...) sweeps list the group's options with Hydra's loader
    hydra = GlobalHydra.instance()
    loader = hydra.config_loader() if hydra.is_initialized() else None
    return list(OverridesParser.create(config_loader=loader).parse_overrides(free_form_overrides(strings)))


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


# why a search path override is refused rather than followed: a launch copies its config folders
# into its record (--resume and rerun compose from the copies), and a rerun would read the
# folders such an override names as they are then, or not at all (and Hydra searches them after
# the packaged options, so a same-named packaged option would win there anyway)
SEARCHPATH_REFUSED = ("hydra.searchpath is not supported: give your config folder with --config-dir DIR (or "
                      "NEMORUN_CONFIG_PATH), which a launch records so that rerun and --resume compose from its copy")


def free_form_overrides(overrides: Sequence[str]) -> list[str]:
    """``key=value`` overrides into a free-form mapping become ``++key=value``, so a new key needs
    no ``+`` (``executor.env_vars.HF_TOKEN=abc``, ``task.params.sleep=0.1``) while typed nodes keep
    Hydra's strict check. Function parameters are still checked against the function's signature."""
    out = []
    for text in overrides:
        key, eq, _ = text.partition("=")
        if eq and not text.startswith("-") and ("\0" in text or not text.isascii()):
            _check_text(text)
        if eq and key.lstrip("+~").startswith("hydra.searchpath"):
            raise ConfigError(SEARCHPATH_REFUSED)
        if eq and not key.startswith(("+", "~")) and "@" not in key and _is_free_form(key):
            text = "++" + text
        out.append(text)
    return out


def _check_text(override: str) -> None:
    """Refuse what no record, script or environment can hold: a lone surrogate (a byte that is not
    UTF-8 in argv, or a Python str made from one) was an internal UnicodeEncodeError when the
    job's files were written; a NUL was silently dropped from the command by bash."""
    if "\0" in override:
        raise ConfigError(f"override {override[:200]!r} holds a NUL character, which no command, environment "
                          "variable or file can carry")
    try:
        override.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"override {override[:200]!r} is not UTF-8 text (a byte such as \\xff): records and job "
                          "scripts are UTF-8") from None


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
    limits = [o.value() for o in parsed if str(o.key_or_group) == MAX_JOBS_KEY and not o.is_sweep_override()]
    if limits and (isinstance(limits[-1], bool) or not isinstance(limits[-1], int)):  # as Hydra's own schema says
        raise ConfigError(f"{MAX_JOBS_KEY} must be a whole number (got {limits[-1]!r})")
    check_sweep_size(parsed, limits[-1] if limits else MAX_SWEEP_JOBS)
    return split_sweep(parsed)


def split_sweep(parsed: Sequence[Any]) -> list[list[str]]:
    """The job override lists of a grid sweep, in Hydra's order (the cartesian product; a key given
    twice keeps its first place and its last value), each value AS TYPED: Hydra's own split
    (``BasicSweeper.split_arguments``) writes values back from their parsed form, so
    ``env_vars.V=1.10,2.0`` would give jobs ``V=1.1``."""
    import itertools

    columns: dict[str, list[str]] = {}
    for ov in parsed:
        key = ov.get_key_element()
        if ov.is_sweep_override():
            if not ov.is_discrete_sweep():
                raise ConfigError(f"{as_typed([str(ov.input_line)])[0]}: a grid sweep takes a list of values (a,b or range(...)), "
                                  "not an interval; intervals are for hydra/sweeper=optuna and the like")
            columns[key] = [f"{key}={text}" for text in sweep_texts(ov)]
            if not columns[key]:  # range(0,0), glob(*) of a value key: the product has no job at all
                raise ConfigError(f"{as_typed([str(ov.input_line)])[0]}: the sweep gives no values, so there would be no job to launch")
        else:
            line = str(ov.input_line)
            columns[key] = [f"{key}={ov.get_value_string()}" if "=" in line else line]
    return [list(job) for job in itertools.product(*columns.values())]


def sweep_texts(ov: Any) -> list[str]:
    """Each value of a discrete sweep as the user typed it (``1.10,2.0`` -> ``1.10``, ``2.0``);
    values a function computed (``range``, ``sort``, ``glob``) as Hydra writes them."""
    literals = hydra_compat.value_literals(str(ov.input_line))
    hydra_texts = list(ov.sweep_string_iterator())
    if isinstance(literals, hydra_compat.SweepTexts) and len(literals.items) == len(hydra_texts):
        return [text for text, _ in literals.items]
    return hydra_texts


class ValueTable:
    """override string -> parsed Override. A sweep's overrides are parsed once (``range(0,10000)``
    is one parse, not 10,000); each job's one-value override is cut from that parse when asked for
    and not kept: holding an Override, its line and its literals per value cost ~5 MB of a
    10,000-job sweep's plan. :meth:`remember` gives Hydra's merge a job's literals (no parse of
    its lines again) for the jobs that are merged, not for every job."""

    def __init__(self, command_overrides: Sequence[str]):
        self._by_string: dict[str, Any] = {}
        # key as typed -> (the sweep override, its key as parsed, value text -> value, value text -> literals)
        self._sweeps: dict[str, tuple[Any, str, dict[str, Any], dict[str, Any]]] = {}
        try:
            parsed = parse_overrides(command_overrides)
        except Exception:  # noqa: BLE001 - a bad line is reported by the per-job parse below
            parsed = []
        from hydra.core.override_parser.types import Glob

        for ov in parsed:
            key = ov.get_key_element()
            # glob(...) of a group expands with a config loader (the sweeper's); each job's option parses alone
            if ov.is_sweep_override() and ov.is_discrete_sweep() and not isinstance(ov.value(), Glob):
                literals = hydra_compat.value_literals(str(ov.input_line))
                items = literals.items if isinstance(literals, hydra_compat.SweepTexts) else ()
                texts = sweep_texts(ov)
                self._sweeps[as_typed([f"{key}="])[0][:-1]] = (
                    ov, key, dict(zip(texts, ov.sweep_iterator())), {text: lit for text, (_, lit) in zip(texts, items)})
            elif not ov.is_sweep_override():
                self._by_string[as_typed([f"{key}={ov.get_value_string()}"])[0]] = ov

    def _element(self, text: str) -> Optional[tuple[Any, str, str, Any, dict[str, Any]]]:
        typed_key, _, value_text = text.partition("=")
        sweep = self._sweeps.get(typed_key)
        if sweep is None or value_text not in sweep[2]:
            return None
        template, key, values, literals = sweep
        return template, key, value_text, values[value_text], literals

    def get(self, text: str) -> Any:
        ov = self._by_string.get(text)
        if ov is not None:
            return ov
        element = self._element(text)
        if element is not None:
            template, key, value_text, value, _ = element
            return hydra_compat.element_override(template, key, value_text, value)
        ov = self._by_string[text] = parse_overrides([text])[0]
        return ov

    def remember(self, texts: Sequence[str]) -> None:
        """Known from the sweep's one parse: no parse of these lines when Hydra merges them."""
        for text in texts:
            element = self._element(text)
            if element is None:
                continue
            _, key, value_text, value, literals = element
            line = f"{key}={value_text}"
            if value_text in literals:
                hydra_compat.remember_literals(line, literals[value_text])
            elif isinstance(value, (bool, int, float)) or value is None:  # range(...): Hydra's text is the text
                hydra_compat.remember_literals(line, hydra_compat.Typed(value_text, value is None))


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
    """Hydra's own merge of parsed value overrides into a composed config (types still enforced,
    values of str fields as typed)."""
    keep_literals_in_merges()
    hydra_compat.apply_value_overrides(overrides, cfg)


# -- values as typed -------------------------------------------------------------------------
#
# Hydra's grammar types unquoted values before they reach a field: ``task.args=[--tag,1.10]``
# would run ``--tag 1.1``, ``env_vars.DEBUG=false`` would export ``False``. Every destination
# typed ``str`` (a str field, an item of a ``List[str]``, a value of a ``Dict[str, str]`` or of
# an executor's env_vars) gets the text as typed instead: ``1.10``, ``007``, ``true``, ``1e3``,
# ``0x10``. ``null`` is None where None is allowed (an ``Optional[str]`` field: "unset it") and
# the text ``null`` where it is not (an item of ``List[str]``, an env var value). Destinations
# typed ``Any`` (``task.params``, ``additional_parameters``) keep Hydra's types: a function's
# ``lr=0.1`` is a float. YAML files keep YAML's types; only command-line text is at issue.
# The hook sits in Hydra's merge (:func:`nemorun.hydra_compat.wrap_override_merge`), which
# every path goes through: compose, ``@hydra.main``, sweeps, reruns.


def keep_literals_in_merges() -> None:
    """Make Hydra's merge keep command-line literals for str destinations (idempotent)."""
    hydra_compat.wrap_override_merge(keep_literal)


def keep_literal(ov: Any, cfg: Any) -> Any:
    """``ov`` with its typed tokens given back as text where its destination in ``cfg`` holds text."""
    from hydra.core.override_parser.types import ValueType

    if (ov.is_delete() or ov.value_type is not ValueType.ELEMENT or ov.package is not None or not ov.input_line
            or not isinstance(cfg, DictConfig) or OmegaConf.get_type(cfg) is not RootConfig):
        return ov
    value = ov.value()
    if isinstance(value, str):  # Hydra kept the text already (quoted, or not a number/bool/null)
        return ov
    parent: Any = None
    node: Any = cfg
    for part in str(ov.key_or_group).split("."):
        if node is None or not isinstance(node, (DictConfig, ListConfig)):
            return ov
        parent = node
        node = hydra_compat.child_node(node, int(part) if isinstance(node, ListConfig) and part.isdigit() else part)
    if not isinstance(value, (list, dict)) and not _holds_text(node, parent):
        return ov  # an int, float, bool or Any destination: Hydra's type is right (and no second parse)
    literals = hydra_compat.value_literals(ov.input_line)
    if literals is None or isinstance(literals, hydra_compat.SweepTexts):
        return ov
    typed = _as_typed(value, literals, node, parent)
    return ov if typed is value else hydra_compat.with_value(ov, typed)


def _holds_text(node: Any, parent: Any) -> bool:
    if isinstance(node, StringNode):
        return True
    if node is not None and not isinstance(node, AnyNode):  # a typed node (int, bool, a container)
        return False
    return parent is not None and (hydra_compat.element_type(parent) is str or _is_secret_ref_map(parent))


def _is_secret_ref_map(node: Any) -> bool:
    """An executor's ``env_vars`` typed ``Dict[str, Any]`` for secret references: its plain values are text."""
    owner = hydra_compat.parent(node) if isinstance(node, DictConfig) else None
    schema = OmegaConf.get_type(owner) if isinstance(owner, DictConfig) else None
    if schema is None or not dataclasses.is_dataclass(schema):
        return False
    key = hydra_compat.node_key(node)
    return any(f.name == key and SECRET_REFS in f.metadata for f in dataclasses.fields(schema))


def _as_typed(value: Any, literals: Any, node: Any, parent: Any) -> Any:
    if isinstance(literals, hydra_compat.Typed):
        if not _holds_text(node, parent) or (literals.is_null and node is not None and hydra_compat.is_optional(node)):
            return value
        return literals.text
    if isinstance(literals, tuple) and isinstance(value, list) and isinstance(node, ListConfig):
        if len(literals) != len(value) or hydra_compat.element_type(node) is not str:
            return value
        return [lit.text if isinstance(lit, hydra_compat.Typed) else item for item, lit in zip(value, literals)]
    if isinstance(literals, dict) and isinstance(value, dict) and isinstance(node, DictConfig):
        out, changed = {}, False
        for key, item in value.items():
            out[key] = _as_typed(item, literals[key], hydra_compat.child_node(node, key), node) if key in literals else item
            changed = changed or out[key] is not item
        return out if changed else value
    return value


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
    """A stored config, typed and in struct mode as Hydra composes it.

    A config.yaml that is gone, not UTF-8, cut short (nemorun ends it with a newline) or not a
    config is a damaged record, said in one line: it was an internal error, or a rerun with
    whatever part of the config survived."""
    damaged = f"experiment record damaged: {config_yaml}"
    try:
        text = config_yaml.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DamagedRecordError(f"{damaged} cannot be read ({type(exc).__name__}); `nemorun exp show` lists its overrides "
                                 "to launch again") from None
    try:
        loaded = OmegaConf.create(text) if text.endswith("\n") else None
    except Exception:  # noqa: BLE001 - YAML or OmegaConf refusing the text: damaged either way
        loaded = None
    # an experiment file's config has ``task: null`` (its tasks are under ``experiment``)
    if not isinstance(loaded, DictConfig) or not isinstance(loaded.get("executor"), DictConfig) or not (
        isinstance(loaded.get("task"), DictConfig) or (loaded.get("task") is None and isinstance(loaded.get("experiment"), DictConfig))
    ):
        raise DamagedRecordError(f"{damaged} is cut short or is not a config; `nemorun exp show` lists its overrides "
                                 "to launch again")
    data = OmegaConf.to_container(loaded, resolve=False)
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
        parsed = parse_overrides(stored)
        self._selection = frozenset(t for t, o in zip(stored, parsed) if _is_selection(o, self._is_group))
        # the snapshot is the FIRST job's config: a mapping it set was merged into it by Hydra
        self._first_maps = {str(o.key_or_group): o.value() for o in parsed
                            if isinstance(o.value(), dict) and not _is_selection(o, self._is_group)}

    def is_group(self, key: str) -> bool:
        return self._is_group(key)

    def compose(self, overrides: Sequence[str]) -> DictConfig:
        cfg = copy.deepcopy(self._base)
        apply: list[Any] = []
        parsed = parse_overrides(overrides)
        for text, ov in zip(overrides, parsed):
            if str(ov.key_or_group).split(".", 1)[0] == "hydra":
                continue
            if _is_selection(ov, self._is_group):
                if text not in self._selection:
                    raise ConfigError(f"'{text}' selects a config group option: a rerun starts from the stored config "
                                      "and changes values only; launch anew to pick other options")
                continue
            if ov.is_delete() and OmegaConf.select(cfg, str(ov.key_or_group), throw_on_missing=False) is None:
                continue  # a stored ~key: already gone from the snapshot
            key = str(ov.key_or_group)
            if isinstance(ov.value(), dict) and key in self._first_maps and not any(
                    str(o.key_or_group) == key and o.value() == self._first_maps[key] for o in parsed):
                raise ConfigError(f"'{text}': a sweep rerun applies each job's values to the first job's stored config, "
                                  f"where Hydra would merge this mapping into the first job's {key} and keep its other "
                                  "keys; launch the sweep anew")
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
    ambiguous = re.match(r"Ambiguous value for argument '(.*)'\n", str(exc)) if isinstance(exc, HydraException) else None
    if ambiguous:
        [line] = as_typed([ambiguous.group(1)])
        key, _, value = line.partition("=")
        return 2, (f"the override '{line}' has a comma: for one value with a comma write {quoted_form(key + '=' + ','.join(map(_unquoted, _top_level_values(value))), whole=True)}; for a "
                   f"list, {key}=[{value}]; to sweep over the values, add -m")
    if isinstance(exc, (HydraException, OmegaConfBaseException)):
        return 2, _describe_config_error(exc)
    if isinstance(exc, (ValueError, TypeError)) and "override" in str(exc).lower():
        return 2, one_line(str(exc))
    if type(exc).__module__.startswith("yaml"):  # PyYAML's errors name the file, line and column
        return 2, f"a config file is not valid YAML: {one_line(str(exc))}"
    if isinstance(exc, UnicodeDecodeError):  # Hydra's file source reads option files as UTF-8
        tb, where = exc.__traceback__, ""
        while tb is not None:
            where = str(tb.tb_frame.f_locals.get("full_path") or where)
            tb = tb.tb_next
        return 2, f"config file {where or '(one of the options picked)'} is not UTF-8 text: {exc.reason} at byte {exc.start}"
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


def quoted_form(override: str, whole: bool = False) -> str:
    """The override with its value quoted for Hydra's grammar, as a shell argument that works:
    ``k=a#b`` -> ``'k="a#b"'``, ``k=[--mpi=pmix,x]`` -> ``'k=["--mpi=pmix","x"]'``. Commas outside
    brackets keep separating values, each quoted on its own (``k=a#b,c#d`` -> ``'k="a#b","c#d"'``):
    quoted whole, the advice turned a ``-m`` sweep into one job; this form, without ``-m``, is
    refused with the choices (one value, a list, a sweep). ``whole``: the value is one string."""
    key, _, value = override.partition("=")

    def quote(text: str) -> str:
        return '"' + text.strip().replace("\\", "\\\\").replace('"', '\\"') + '"'

    def quote_value(text: str) -> str:
        if text.startswith("[") and text.endswith("]"):
            inner = text[1:-1]
            return f"[{','.join(quote(v) for v in inner.split(','))}]" if inner.strip() else "[]"
        return quote(text)

    quoted = quote(value) if whole else ",".join(quote_value(v) for v in _top_level_values(value))
    text = f"{key}={quoted}"
    return "'" + text.replace("'", "'\\''") + "'"


def _unquoted(text: str) -> str:
    """A sweep value as the string it stands for: ``"a#b"`` -> ``a#b`` (written again as part of one
    quoted value, its own quotes would become characters of it)."""
    text = text.strip()
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text


def _top_level_values(value: str) -> list[str]:
    """``value`` split at the commas outside brackets: the values of a sweep as Hydra reads them."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(value):
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    return parts


def dotted_key(key: str) -> str:
    """``a.b[0].c`` as Hydra's override grammar spells it: ``a.b.0.c`` (brackets do not parse in a key)."""
    return re.sub(r"\[(\d+)\]", r".\1", key)


def unparsable_override(override: str) -> str:
    """One line for an override Hydra's lexer cannot read: which one, why, and the form that works."""
    [override] = as_typed([override])  # as the user typed it: without the `++` free-form maps get
    key, eq, value = override.partition("=")
    if eq and re.search(r"\[\d+\]", key):
        fixed = f"{dotted_key(key)}={value}"
        try:
            parse_overrides([fixed])
        except Exception:  # noqa: BLE001 - the value needs quotes too
            fixed = quoted_form(fixed)[1:-1]
        return (f"cannot parse the override {override!r}: a list item in a key is written with a dot, "
                f"'{fixed}' (the item must exist; a new list is set whole, e.g. {key.split('[')[0]}=[...])")
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
        if not close and object_type in (None, dict):  # a plain mapping: a new key is legitimate with `+`
            hint = f"; to add it to that mapping, write +{dotted_key(str(key_path))}=..."
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
