"""nemorun: configure an ML job once with Hydra; render, validate and run it anywhere.

The package imports nothing heavy at start-up; the Python API below loads on first use.
NeMo-Run's names (executors, packagers, launchers, ``Script``/``Partial``/``Config``, ``run``,
``Experiment``) are the typed front end of :mod:`nemorun.python_api`. Type checkers read
``__init__.pyi`` (importing them here would put every module in one cycle with the package).
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("launch", "Experiment", "experiments", "run")
_PYTHON_API = (
    "LocalExecutor", "DockerExecutor", "SlurmExecutor", "SSHTunnel", "LocalTunnel", "SkypilotExecutor",
    "DGXCloudExecutor", "LeptonExecutor", "KubeflowExecutor", "Packager", "GitArchivePackager", "PatternPackager",
    "HybridPackager", "ConfigMapPackager", "Torchrun", "FaultTolerance", "Script", "Partial", "Config",
    "compose_typed", "to_yaml",
)

__all__ = [*_API, *_PYTHON_API, "__version__"]

_LAZY = {**{n: "nemorun.api" for n in _API}, **{n: "nemorun.python_api" for n in _PYTHON_API}}


def __dir__() -> list[str]:
    return sorted(__all__)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nemorun' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
