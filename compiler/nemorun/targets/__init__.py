"""One module per target: ``render(job) -> Rendered`` (pure) and ``validate(rendered)``.

Modules are imported only when their target is used, so a broken or slow backend never costs
another one anything. Each module's docstring lists its artifacts.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from nemorun.errors import ConfigError

TARGET_MODULES: dict[str, str] = {
    "local": "nemorun.targets.local",
    "slurm": "nemorun.targets.slurm",
    "docker": "nemorun.targets.docker",
    "kubeflow": "nemorun.targets.kubeflow",
    "skypilot": "nemorun.targets.skypilot",
    "dgxcloud": "nemorun.targets.dgxcloud",
    "lepton": "nemorun.targets.lepton",
}


def target_module(kind: str) -> ModuleType:
    try:
        return importlib.import_module(TARGET_MODULES[kind])
    except KeyError:
        raise ConfigError(f"no renderer for executor kind '{kind}' (known: {', '.join(TARGET_MODULES)})") from None
