"""Every private Hydra/OmegaConf call nemorun makes, in one place.

Why: nemorun composes at milliseconds per job by patching values into an already composed
config, and checks configs without resolving interpolations (a secret's ``${oc.env:...}`` must
wait for submission). Hydra and OmegaConf offer no public API for either. Each function here
wraps exactly one private call and has its own test (``tests/test_hydra_compat.py``), so a
Hydra or OmegaConf upgrade that changes one fails there first, with the call's name, instead
of deep inside a sweep. pyproject.toml pins the versions these were tested with.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from omegaconf import DictConfig


def apply_value_overrides(overrides: Sequence[Any], cfg: DictConfig) -> None:
    """Hydra's own merge of parsed overrides into a composed config (types still enforced).

    Private: ``hydra._internal.config_loader_impl.ConfigLoaderImpl._apply_overrides_to_config``.
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    ConfigLoaderImpl._apply_overrides_to_config(list(overrides), cfg)


def split_sweep(parsed: Sequence[Any]) -> list[list[str]]:
    """The job override lists of a grid sweep, in Hydra's order (the cartesian product).

    Private: ``hydra._internal.core_plugins.basic_sweeper.BasicSweeper.split_arguments``.
    """
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    batches = BasicSweeper.split_arguments(list(parsed), None)
    return [list(job) for job in batches[0]] if batches else [[]]


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
