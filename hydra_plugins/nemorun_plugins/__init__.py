"""nemorun's Hydra plugins (search path, multirun launcher and sweeper).

Hydra finds plugins by walking the ``hydra_plugins`` namespace package. setuptools' editable
installs hide namespace packages from that walk, so the CLI also registers these explicitly with
:func:`register_all` (idempotent): the plugins work the same in editable and regular installs.
"""
from __future__ import annotations


def register_all() -> None:
    import importlib
    import inspect
    import pkgutil

    from hydra.core.plugins import Plugins
    from hydra.plugins.plugin import Plugin

    plugins = Plugins.instance()
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Plugin) and obj.__module__ == module.__name__ and not inspect.isabstract(obj):
                plugins.register(obj)
