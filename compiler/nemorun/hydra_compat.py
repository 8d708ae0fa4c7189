"""Every private Hydra/OmegaConf call nemorun makes, in one place.

Why: nemorun composes at milliseconds per job by patching values into an already composed
config, and checks configs without resolving interpolations (a secret's ``${oc.env:...}`` must
wait for submission). Hydra and OmegaConf offer no public API for either. Each function here
wraps exactly one private call and has its own test (``tests/test_hydra_compat.py``), so a
Hydra or OmegaConf upgrade that changes one fails there first, with the call's name, instead
of deep inside a sweep. pyproject.toml pins the versions these were tested with.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Optional, Sequence, Union

from omegaconf import DictConfig


def apply_value_overrides(overrides: Sequence[Any], cfg: DictConfig) -> None:
    """Hydra's own merge of parsed overrides into a composed config (types still enforced).

    Private: ``hydra._internal.config_loader_impl.ConfigLoaderImpl._apply_overrides_to_config``.
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    ConfigLoaderImpl._apply_overrides_to_config(list(overrides), cfg)


# where ``nemorun.conf`` is found when Hydra was initialised with nemorun's config module
PACKAGED_PRIMARY = ("main", "pkg://nemorun.conf")


def compose_without_hydra_node(config_loader: Any, config_name: str, overrides: Sequence[str]) -> Optional[DictConfig]:
    """What Hydra's compose API returns for ``overrides`` (same config, same errors), composed
    without Hydra's own ``hydra`` node; None when that node could change the outcome, and the
    caller composes with the compose API instead.

    Why: the compose API composes ``hydra/config`` (launcher, sweeper, logging, help, output:
    a dozen structured configs) and then deletes it; that was over half of a cold dry run's
    compose. It can only matter when something reaches into it, so None is returned (before
    anything is merged) when an override names ``hydra`` (``hydra.*``, ``hydra/...``, a
    ``@hydra`` package), when the primary config is not nemorun's packaged one, or when a config
    other than the primary overrides a ``hydra/`` option or puts keys under ``hydra``. Every
    step is Hydra's own call in Hydra's order (``ConfigLoaderImpl._load_configuration_impl``);
    the only change is ``prepend_hydra=False`` and an empty ``hydra`` mapping where
    ``hydra/config`` would put its node first (the primary config's own ``hydra:`` keys merge
    into it, as they do into Hydra's schema). ``tests/test_compose_paths_agree.py`` composes
    every option and a set of overrides both ways.

    Private: ``ConfigLoaderImpl._parse_overrides_and_create_caching_repo``,
    ``validate_sweep_overrides_legal``, ``_compose_config_from_defaults_list`` and
    ``_apply_overrides_to_config``; ``hydra._internal.defaults_list.Overrides`` (its
    ``override_metadata``) and ``_create_defaults_list``; Hydra's ``_dummy_empty_config_``.
    """
    import sys

    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.defaults_list import Overrides, _create_defaults_list
    from hydra.core.default_element import ResultDefault
    from hydra.errors import ConfigCompositionException
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    try:  # as ConfigLoaderImpl.load_configuration: an OmegaConf error is a composition error
        config_loader.ensure_main_config_source_available()
        parsed, repo = config_loader._parse_overrides_and_create_caching_repo(config_name, list(overrides))
        if any(_names_hydra(o) for o in parsed):
            return None
        primary = repo.load_config(config_path=config_name)
        if primary is None or (primary.provider, primary.path) != PACKAGED_PRIMARY:
            return None
        config_loader.validate_sweep_overrides_legal(overrides=parsed, run_mode=RunMode.RUN, from_shell=False)
        choices = Overrides(repo=repo, overrides_list=parsed)
        defaults, _ = _create_defaults_list(repo, config_name, choices, prepend_hydra=False, skip_missing=False)
        for key, meta in choices.override_metadata.items():
            if key.split("@")[0].startswith("hydra/"):  # an option of Hydra's own node: only the packaged primary's
                if meta.external_override or meta.containing_config_path != config_name:
                    return None
                meta.used = True  # hydra/config's defaults list is where Hydra would use it
        choices.ensure_overrides_used()
        choices.ensure_deletions_used()
        if any(_puts_hydra_keys(repo, d) for d in defaults if not d.primary):
            return None
        slot = ResultDefault(config_path="_dummy_empty_config_", package="hydra")
        cfg = config_loader._compose_config_from_defaults_list(defaults=[slot, *defaults], repo=repo)
        OmegaConf.set_struct(cfg, True)
        ConfigLoaderImpl._apply_overrides_to_config(choices.config_overrides, cfg)
    except OmegaConfBaseException as e:
        raise ConfigCompositionException().with_traceback(sys.exc_info()[2]) from e
    with open_dict(cfg):  # as hydra.compose(return_hydra_config=False)
        del cfg["hydra"]
    return cfg


def _names_hydra(override: Any) -> bool:
    package = str(override.package or "")
    return bool(override.key_or_group == "hydra" or override.is_hydra_override() or "hydra" in package.split("."))


def _puts_hydra_keys(repo: Any, default: Any) -> bool:
    """Whether a config of the defaults list would set anything under ``hydra``."""
    loaded = repo.load_config(config_path=default.config_path)  # cached: the defaults list loaded it
    package = default.package if default.package is not None else (loaded.header or {}).get("package") if loaded else None
    if package:
        return package.split(".")[0] == "hydra"
    return loaded is not None and isinstance(loaded.config, DictConfig) and "hydra" in loaded.config


def group_exists(config_loader: Any, key: str) -> bool:
    """Whether ``key`` (dotted) names a config group (``executor``, ``executor.tunnel``).

    Private: ``ConfigLoaderImpl.repository`` (its ``group_exists``).
    """
    return bool(config_loader.repository.group_exists(key.replace(".", "/")))


def element_override(template: Any, key: str, text: str, value: Any) -> Any:
    """A one-value override cut out of a sweep override, without parsing ``key=text`` again.

    Private: the ``_value`` field of ``hydra.core.override_parser.types.Override``.
    """
    from hydra.core.override_parser.types import Override, ValueType

    return Override(type=template.type, key_or_group=template.key_or_group, value_type=ValueType.ELEMENT,
                    _value=value, package=template.package, input_line=f"{key}={text}")


def with_value(override: Any, value: Any) -> Any:
    """The same override with another (already parsed) value.

    Private: the ``_value`` field of ``Override``.
    """
    import dataclasses

    return dataclasses.replace(override, _value=value)


def as_force_add(override: Any) -> Any:
    """The same override as ``++key=value`` (set whether or not the key exists).

    Private: ``Override`` is a dataclass whose ``type`` is not meant to be replaced.
    """
    import dataclasses

    from hydra.core.override_parser.types import OverrideType

    return dataclasses.replace(override, type=OverrideType.FORCE_ADD)


# -- OmegaConf nodes, read without resolving interpolations ----------------------------------


def child_node(cfg: Any, key: Any) -> Optional[Any]:
    """The node under ``key`` (None when absent), not its resolved value.

    Private: ``BaseContainer._get_node``.
    """
    from omegaconf.errors import OmegaConfBaseException

    try:
        return cfg._get_node(key)
    except OmegaConfBaseException:
        return None


def is_missing_literal(node: Any) -> bool:
    """``???`` set directly on the node (an interpolation to a missing value is not)."""
    return bool(node._is_missing()) and not bool(node._is_interpolation())


def is_interpolation(node: Any) -> bool:
    """Private: ``Node._is_interpolation``."""
    return bool(node._is_interpolation())


def is_none(node: Any) -> bool:
    """Private: ``Node._is_none``."""
    return bool(node._is_none())


def full_key(cfg: Any, key: Any) -> str:
    """The dotted path of ``cfg[key]`` from the root. Private: ``Node._get_full_key``."""
    return str(cfg._get_full_key(key))


def parent(node: Any) -> Optional[Any]:
    """Private: ``Node._get_parent``."""
    return node._get_parent()


def element_type(node: Any) -> Any:
    """The declared type of a ``Dict[str, T]``/``List[T]`` node's items. Private: ``_metadata.element_type``."""
    return getattr(getattr(node, "_metadata", None), "element_type", Any)


def is_optional(node: Any) -> bool:
    """Whether the node may hold None. Private: ``Node._is_optional``."""
    return bool(node._is_optional())


def node_key(node: Any) -> Any:
    """The key of ``node`` in its parent. Private: ``Node._key``."""
    return node._key()


# -- the text of each value as the user typed it ---------------------------------------------
#
# Hydra's grammar types unquoted tokens (1.10 -> 1.1, true -> True, 1e3 -> 1000.0, null -> None)
# before the value reaches a field; a field typed str then only sees ``str(1.1)``. The lexer's
# tokens still hold the text the user typed: these read it from Hydra's generated ANTLR parser.


@dataclass(frozen=True)
class Typed:
    """An unquoted token Hydra typed (int, float, bool or null) and the text it was typed as."""

    text: str
    is_null: bool = False


@dataclass(frozen=True)
class SweepTexts:
    """The elements of a ``a,b,c`` or ``choice(a,b,c)`` sweep: each one's source text and literals."""

    items: tuple[tuple[str, Any], ...]


# what :func:`value_literals` returns: None (nothing typed), a Typed token, a tuple (list items),
# a dict (dict values) or SweepTexts
Literals = Union[None, Typed, tuple, dict, SweepTexts]


# literals already known for a line (a sweep's elements, from the sweep's one parse)
_KNOWN: dict[str, Literals] = {}


def remember_literals(line: str, literals: Literals) -> None:
    """Record what :func:`value_literals` would find in ``line`` (a sweep element cut out of a
    parsed sweep), so a 10,000-job sweep is not parsed again job by job."""
    if len(_KNOWN) >= 1_000_000:  # a long-lived process (the Python API) must not grow without bound
        _KNOWN.clear()
    _KNOWN[line] = literals


def value_literals(line: str) -> Literals:
    """See :func:`_parse_literals`; served from :func:`remember_literals` when known."""
    return _KNOWN[line] if line in _KNOWN else _parse_literals(line)


@lru_cache(maxsize=8192)
def _parse_literals(line: str) -> Literals:
    """The typed tokens of an override's value, mirrored on its structure (None: no typed token
    anywhere, Hydra's value already is the text). Reads the parse tree of Hydra's own grammar.

    Private: ``hydra.grammar.gen.OverrideLexer``/``OverrideParser`` (generated by ANTLR) and
    ``HydraOverrideVisitor.visitDictKey``.
    """
    from hydra.grammar.gen.OverrideLexer import CommonTokenStream, InputStream, OverrideLexer
    from hydra.grammar.gen.OverrideParser import OverrideParser

    try:
        lexer = OverrideLexer(InputStream(line))
        lexer.removeErrorListeners()
        parser = OverrideParser(CommonTokenStream(lexer))
        parser.removeErrorListeners()
        value = parser.override().value()
        if value is None or parser.getNumberOfSyntaxErrors():
            return None
        if value.element() is not None:
            element = value.element()
            function = element.function()
            if function is not None and function.getChild(0).getText() == "choice":
                args = [c for c in function.getChildren() if isinstance(c, OverrideParser.ElementContext)]
                if len(args) == len([c for c in function.getChildren() if not _is_token(c)]):  # positional only
                    return SweepTexts(tuple((_source(line, a), _mirror(a, OverrideLexer, OverrideParser)) for a in args))
            return _mirror(element, OverrideLexer, OverrideParser)
        sweep = value.simpleChoiceSweep()
        return SweepTexts(tuple((_source(line, e), _mirror(e, OverrideLexer, OverrideParser)) for e in sweep.element()))
    except Exception:  # noqa: BLE001 - Hydra's own parse reports a bad line; here it only loses the text
        return None


def _is_token(node: Any) -> bool:
    return hasattr(node, "symbol")


def _source(line: str, ctx: Any) -> str:
    return line[ctx.start.start: ctx.stop.stop + 1].strip()


def _mirror(element: Any, lexer: Any, parser: Any) -> Literals:
    from hydra.core.override_parser.overrides_visitor import HydraOverrideVisitor

    primitive = element.primitive()
    if primitive is not None:
        tokens = [c.symbol for c in primitive.getChildren() if _is_token(c) and c.symbol.type != lexer.WS]
        if len(tokens) == 1 and tokens[0].type in (lexer.INT, lexer.FLOAT, lexer.BOOL, lexer.NULL):
            return Typed(tokens[0].text, tokens[0].type == lexer.NULL)
        return None
    if element.listContainer() is not None:
        items = tuple(_mirror(e, lexer, parser) for e in element.listContainer().element())
        return items if any(i is not None for i in items) else None
    if element.dictContainer() is not None:
        visitor = HydraOverrideVisitor(None)
        out = {}
        for pair in element.dictContainer().getChildren():
            if isinstance(pair, parser.DictKeyValuePairContext):
                mirrored = _mirror(pair.element(), lexer, parser)
                if mirrored is not None:
                    out[visitor.visitDictKey(pair.dictKey())] = mirrored
        return out or None
    return None  # a function (str(...), int(...)): its result is what the user asked for


def wrap_override_merge(adjust: Callable[[Any, Any], Any]) -> None:
    """Run ``adjust(override, cfg)`` on every override just before Hydra merges it into a config:
    the compose API, ``@hydra.main``, a sweep's per-job compose and nemorun's own patching all
    merge there, so one hook covers every path. Idempotent.

    Private: ``ConfigLoaderImpl._apply_overrides_to_config`` (a staticmethod Hydra calls by class).
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    current = ConfigLoaderImpl.__dict__["_apply_overrides_to_config"]
    if getattr(current.__func__, "nemorun_adjust", None) is adjust:
        return
    original = getattr(current.__func__, "nemorun_original", current.__func__)

    def apply(overrides: Any, cfg: Any) -> None:
        for override in overrides:  # one at a time: an earlier override can create a later one's node
            original([adjust(override, cfg)], cfg)

    apply.nemorun_adjust = adjust  # type: ignore[attr-defined]
    apply.nemorun_original = original  # type: ignore[attr-defined]
    ConfigLoaderImpl._apply_overrides_to_config = staticmethod(apply)  # type: ignore[method-assign]


def store_schema(name: str, schema: type, provider: str) -> None:
    """Put ``schema`` in Hydra's ConfigStore as ``name`` (group-less), converted to a DictConfig
    the first time a compose loads it rather than now.

    Why: ``ConfigStore.store`` converts at once (``OmegaConf.structured``, the costliest part of
    registering every option's schema), a compose loads the few its defaults pick, and each
    compose deep-copies the whole store (``CachingConfigRepository`` copies the repository and
    with it the store). What Hydra loads is the same DictConfig ``store`` would have made.

    Private: the layout of ``ConfigStore.repo`` and ``ConfigNode``, which ``ConfigStore.store``
    writes and ``ConfigStore.load`` copies (a shallow copy, then its ``node`` replaced by a deep copy).
    """
    from hydra.core.config_store import ConfigStore

    if not name.endswith(".yaml"):
        name = f"{name}.yaml"
    ConfigStore.instance().repo[name] = _lazy_node_class()(name, schema, provider)


@lru_cache(maxsize=1)
def _lazy_node_class() -> type:
    """Built on first use: ``ConfigNode`` lives in Hydra, which a compose-cache hit never imports."""
    from hydra.core.config_store import ConfigNode
    from omegaconf import OmegaConf

    class LazyConfigNode(ConfigNode):  # type: ignore[misc, valid-type]
        """A ConfigNode whose ``node`` is ``OmegaConf.structured(schema)``, made once and shared by
        every copy (ConfigStore.load hands out deep copies of it, never the node itself)."""

        def __init__(self, name: str, schema: type, provider: str):
            self.name, self.group, self.package, self.provider = name, None, None, provider
            self._schema = schema
            self._converted: list[Any] = []

        @property  # type: ignore[override]
        def node(self) -> Any:
            if not self._converted:
                self._converted.append(OmegaConf.structured(self._schema))
            return self._converted[0]

        @node.setter
        def node(self, value: Any) -> None:  # ConfigStore.load sets the copy's own node
            self._converted = [value]

        def __deepcopy__(self, memo: dict[int, Any]) -> Any:
            import copy

            # shares the made node: nobody changes it, a caller of ConfigStore.load gets a deep copy
            return copy.copy(self)

    return LazyConfigNode
