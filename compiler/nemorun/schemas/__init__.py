"""Structured-config schemas for every config group option, registered in Hydra's ConfigStore.

Why here and not in the CLI: Hydra imports ``nemorun.conf`` (whose ``__init__`` calls
:func:`register`) before it composes anything, so every entry point — the CLI, ``compose()`` in
tests, the multirun launcher — sees the same schemas. Schemas are stored under group-less private
names (``_schema_<group>_<option>``) so they stay out of ``--help`` and the option lists; each YAML
option pulls its schema in with ``- /_schema_<group>_<option>@_here_``.

To add an option: write its dataclass in a module here, list it in that module's ``SCHEMAS`` and
add the module to ``_MODULES`` below.
"""
from __future__ import annotations

import importlib

from nemorun import hydra_compat

_MODULES = (
    "nemorun.schemas.core",
    "nemorun.schemas.local",
    "nemorun.schemas.slurm",
    "nemorun.schemas.docker",
    "nemorun.schemas.kubeflow",
    "nemorun.schemas.skypilot",
    "nemorun.schemas.dgxcloud",
    "nemorun.schemas.lepton",
    "nemorun.schemas.launchers",
    "nemorun.schemas.packagers",
    "nemorun.schemas.experiment",
)

_registered = False


def all_schemas() -> dict[str, type]:
    """Every schema by its ConfigStore name; modules that do not exist yet are skipped."""
    found: dict[str, type] = {}
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        found.update(module.SCHEMAS)
    return found


def register() -> None:
    global _registered
    if _registered:
        return
    for name, node in all_schemas().items():  # converted when a compose first loads it
        hydra_compat.store_schema(name, node, provider="nemorun")
    _registered = True
