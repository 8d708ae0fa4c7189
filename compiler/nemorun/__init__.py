"""nemorun: configure an ML job once with Hydra; render, validate and run it anywhere.

The package imports nothing heavy at start-up; the Python API below loads on first use.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["launch", "Experiment", "experiments", "__version__"]

_LAZY = {
    "launch": "nemorun.api",
    "Experiment": "nemorun.api",
    "experiments": "nemorun.api",
}


def __dir__() -> list[str]:
    return sorted(__all__)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nemorun' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
