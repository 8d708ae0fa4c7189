"""Node-side entry point of function tasks: ``python nemorun_entry.py function.yaml``.

It imports ``target`` and calls it with ``params`` as keyword arguments. Standard library only
(the spec is JSON-compatible YAML), so it runs inside containers that have nothing but Python
and this file; the job's working directory comes first on ``sys.path`` so packaged code imports.
"""
from __future__ import annotations

import functools
import importlib
import json
import os
import sys
from typing import Any, Callable


def load_target(path: str) -> Callable[..., Any]:
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ImportError(f"function target {path!r} must be 'package.module.function'")
    module = importlib.import_module(module_name)
    try:
        fn = getattr(module, attr)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(fn):
        raise ImportError(f"{path!r} is not callable")
    return fn


TARGET_KEY = "_target_"


def instantiate(value: Any) -> Any:
    """Build the objects ``nemorun.Config(cls, **kw)`` describes: a mapping with ``_target_`` becomes
    ``cls(**kw)`` (``_args_``: positional arguments; ``_partial_: true``: ``functools.partial``),
    innermost first, as Hydra's ``instantiate`` does, so a plain-data spec can carry objects."""
    if isinstance(value, list):
        return [instantiate(v) for v in value]
    if not isinstance(value, dict):
        return value
    built = {k: instantiate(v) for k, v in value.items() if k not in (TARGET_KEY, "_args_", "_partial_")}
    if TARGET_KEY not in value:
        return built
    fn = load_target(str(value[TARGET_KEY]))
    args = instantiate(value.get("_args_", []))
    if value.get("_partial_"):
        return functools.partial(fn, *args, **built)
    return fn(*args, **built)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python nemorun_entry.py function.yaml", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as f:
        spec = json.load(f)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    fn = load_target(spec["target"])
    result = fn(**instantiate(spec.get("params", {})))
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


if __name__ == "__main__":
    sys.exit(main())
