"""Command line: ``nemorun [overrides]`` (Hydra app) and ``nemorun exp ...`` (experiment commands).

Errors a user can fix print ONE line, ``nemorun: error: ...``, and exit 2 (config) or 1 (backend);
tracebacks only with ``hydra.verbose=true`` or ``NEMORUN_DEBUG=1``. Hydra's own error printer is
bypassed (``HYDRA_FULL_ERROR=1`` makes it re-raise) so its multi-line reports can be condensed.
"""
from __future__ import annotations

import os
import re
import sys
from typing import Callable, NoReturn, Optional

from omegaconf import DictConfig, OmegaConf

from nemorun.errors import NemorunError, one_line

CONFIG_NAME = "nemorun"

_result_code: Optional[int] = None
# An error inside the task function is kept here and raised after Hydra returns: raised inside,
# Hydra would log its own multi-line "Error executing job" report first.
_pending_error: Optional[BaseException] = None


def _task_function(cfg: DictConfig) -> None:
    global _result_code, _pending_error
    from hydra.core.hydra_config import HydraConfig

    from nemorun.pipeline import launch_config

    try:
        # unresolved: an override such as name=${x} is text here, not an interpolation to follow
        overrides = [str(o) for o in OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False)]
        result = launch_config(cfg, overrides)
    except Exception as exc:  # noqa: BLE001 - re-raised by main() once Hydra has returned
        _pending_error = exc
        return
    _result_code = result.exit_code


def _hydra_app() -> Callable[[], None]:
    """The ``@hydra.main`` app: built on demand, so a run served by the compose cache never
    imports Hydra's composition machinery."""
    import hydra

    return hydra.main(config_path="pkg://nemorun.conf", config_name=CONFIG_NAME, version_base="1.3")(_task_function)


def _debug(argv: list[str]) -> bool:
    if os.environ.get("NEMORUN_DEBUG", "") not in ("", "0"):
        return True
    return any(re.match(r"^hydra\.verbose=(?!false$|\[\]$|null$)", a) for a in argv)


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

    if isinstance(exc, _Described):
        return exc.code, str(exc)
    if isinstance(exc, NemorunError):
        return exc.exit_code, one_line(str(exc))
    if isinstance(exc, MissingConfigException):
        text = str(exc)
        m = re.search(r"Could not find '([^']+)/([^'/]+)'", text)
        if m:
            group, option = m.group(1), m.group(2)
            options = _available_options(group) or re.findall(r"^\t(\S+)$", text, flags=re.M)
            listed = ", ".join(o for o in options if not o.startswith("_"))
            return 2, f"unknown {group} option '{option}'; available: {listed or '(none)'}"
        return 2, one_line(text)
    if isinstance(exc, (HydraException, OmegaConfBaseException)):
        return 2, _describe_config_error(exc)
    if isinstance(exc, (ValueError, TypeError)) and "override" in str(exc).lower():
        return 2, one_line(str(exc))
    return 1, f"internal error: {type(exc).__name__}: {one_line(str(exc))} (NEMORUN_DEBUG=1 shows the traceback)"


def _describe_config_error(exc: BaseException) -> str:
    import dataclasses
    import difflib

    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    text = str(exc)
    cause = exc.__cause__ or exc
    full_key = getattr(cause, "full_key", None)
    object_type = getattr(cause, "object_type", None)
    refused_ref = _secret_reference_refused(cause)
    if refused_ref:
        return refused_ref
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and full_key:
        known: list[str] = []
        if object_type is not None and dataclasses.is_dataclass(object_type):
            known = [f.name for f in dataclasses.fields(object_type)]
        prefix, _, key = str(full_key).rpartition(".")
        close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        hint = f"; did you mean '{prefix + '.' if prefix else ''}{close[0]}'?" if close else ""
        return f"unknown key '{full_key}'{hint}"
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
    from nemorun.lower import secret_refs_unsupported

    env_vars = getattr(cause, "parent_node", None)
    executor = env_vars._get_parent() if env_vars is not None else None
    kind = executor.get("kind") if isinstance(executor, DictConfig) else None
    return secret_refs_unsupported(key, str(kind) if kind else None)


def is_plain_run(args: list[str]) -> bool:
    """A single run given only as overrides: no flags (-m, --help, --cfg, --config-dir, ...) and
    nothing under ``hydra.``. Such a run is composed once with Hydra's compose API; through
    ``@hydra.main`` Hydra composes it twice (once only to learn the run mode), which costs about
    as much as all of nemorun's own work in a dry run.
    """
    return bool(args) and all(not a.startswith("-") and not a.lstrip("+~").startswith("hydra") for a in args)


def _run_composed(args: list[str]) -> None:
    """Same config module, plugins, search path and checks as the ``@hydra.main`` path; a
    config composed before from the same inputs comes from :mod:`nemorun.compose_cache`
    (then Hydra's composition machinery is not even imported)."""
    global _result_code
    from nemorun import compose_cache
    from nemorun.pipeline import launch_config

    key = compose_cache.cache_key(args)
    cfg = compose_cache.load(key)
    if cfg is not None:
        _result_code = launch_config(cfg, args).exit_code
        return
    from nemorun.launching import compose_config, hydra_context

    with hydra_context():
        try:
            cfg = compose_config(args)
            if cfg.get("experiment") is None:  # multi-task experiments compose more, inside Hydra
                compose_cache.save(key, cfg)
            _result_code = launch_config(cfg, args).exit_code
        except Exception as exc:  # described here, while Hydra still knows the option lists
            if _debug(args):
                raise
            raise _Described(*describe_error(exc)) from exc


class _Described(Exception):
    """An error already turned into its one line (while Hydra's option lists were available)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def fail(code: int, message: str) -> NoReturn:
    print(f"nemorun: error: {message}", file=sys.stderr)
    sys.exit(code)


def main(argv: Optional[list[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "exp":
        from nemorun.exp_cli import main as exp_main

        sys.exit(exp_main(args[1:]))
    if argv is not None:
        sys.argv = [sys.argv[0], *args]
    debug = _debug(args)
    os.environ["HYDRA_FULL_ERROR"] = "1"
    if not debug:
        import logging

        # Hydra logs its own multi-line "Error executing job" report before re-raising; ours is one line.
        quiet = logging.getLogger("hydra.core.utils")
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
    try:
        if is_plain_run(args):
            _run_composed(args)
        else:
            from hydra_plugins.nemorun_plugins import register_all

            register_all()
            _hydra_app()()
        if _pending_error is not None:
            raise _pending_error
    except SystemExit:
        raise
    except KeyboardInterrupt:
        fail(130, "interrupted")
    except BaseException as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if debug:
            raise
        code, message = describe_error(exc)
        fail(code, message)
    if _result_code:
        sys.exit(_result_code)
