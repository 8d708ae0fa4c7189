"""Builds the option index that :mod:`nemorun.quick` answers TAB completion from.

Why an index, and why built by Hydra: Hydra answers each completion query by composing the whole
config (0.4-0.8 s a key press). Everything it needs for one command line is a small, plain tree:
which options and sub-groups each config group has, and, for the config composed from the words
already typed, what each key completes to. This module asks Hydra itself for those answers
(``ConfigLoader.get_group_options`` and ``CompletionPlugin._get_matches``, the very calls Hydra's
bash completion makes), so a cached answer is Hydra's answer; :mod:`nemorun.quick` only filters
them by the word being typed, as Hydra does. What the index cannot answer exactly (keys under
``hydra.``, interpolated values, which depend on the environment) is left out, and
:mod:`nemorun.quick` asks Hydra for those.
"""
from __future__ import annotations

from typing import Any, Optional

from nemorun.compose import CONFIG_NAME, hydra_context

# Keys whose values are not cached: Hydra's own node resolves job- and run-time values.
_SKIPPED_ROOTS = ("hydra",)


def _groups(loader: Any, words: list[str]) -> dict[str, list[list[str]]]:
    """Every config group reachable from the root: ``{group: [options, sub-groups]}``."""
    from hydra.core.object_type import ObjectType

    out: dict[str, list[list[str]]] = {}
    todo = [""]
    while todo:
        group = todo.pop()
        configs = loader.get_group_options(group, ObjectType.CONFIG, CONFIG_NAME, words)
        subs = loader.get_group_options(group, ObjectType.GROUP, CONFIG_NAME, words)
        out[group] = [list(configs), list(subs)]
        todo.extend(f"{group}/{s}" if group else s for s in subs)
    return out


def _is_interpolation(config: Any, path: str) -> bool:
    from omegaconf import OmegaConf

    parent, _, key = path.rpartition(".")
    node = config if not parent else OmegaConf.select(config, parent)
    if not OmegaConf.is_config(node):
        return True  # not a plain child of a container: let Hydra answer
    try:
        return OmegaConf.is_interpolation(node, int(key) if OmegaConf.is_list(node) else key)
    except Exception:  # noqa: BLE001 - any doubt: Hydra answers
        return True


def _config_tree(config: Any) -> dict[str, dict[str, list[str]]]:
    """``children``: the completions of ``path.`` + a partial key (Hydra: ``_get_matches`` of the
    selected node); ``exact``: Hydra's answer for the words ``path.`` and ``path=``."""
    from hydra.plugins.completion_plugin import CompletionPlugin
    from omegaconf import OmegaConf

    children: dict[str, list[str]] = {}
    exact: dict[str, list[str]] = {}
    todo = [""]
    while todo:
        path = todo.pop()
        try:
            node = config if path == "" else OmegaConf.select(config, path)
            reps = CompletionPlugin._get_matches(node, "")
        except Exception:  # noqa: BLE001 - a value (Hydra asserts) or an unresolvable node
            reps = None
        if reps is not None:
            children[path] = sorted(reps)
        if path and not _is_interpolation(config, path):
            for suffix in (".", "="):
                try:
                    exact[path + suffix] = sorted(CompletionPlugin._get_matches(config, path + suffix))
                except Exception:  # noqa: BLE001 - Hydra would fail too: let it say so
                    pass
        for rep in reps or []:
            key = rep[:-1]
            if path == "" and key in _SKIPPED_ROOTS:
                continue
            todo.append(f"{path}.{key}" if path else key)
    return {"children": children, "exact": exact}


def build(words: list[str], multirun: bool) -> dict[str, Any]:
    """The index for a command line whose finished words are ``words`` (overrides only)."""
    from hydra.errors import ConfigCompositionException
    from hydra.types import RunMode

    with hydra_context() as loader:
        groups = _groups(loader, words)
        config: Optional[dict[str, Any]]
        try:
            cfg = loader.load_configuration(config_name=CONFIG_NAME, overrides=list(words),
                                            run_mode=RunMode.MULTIRUN if multirun else RunMode.RUN)
        except ConfigCompositionException:
            config = None  # Hydra then offers no key completions, only groups
        else:
            config = _config_tree(cfg)
    return {"groups": groups, "config": config}
