"""Command line: ``nemorun [overrides]`` (Hydra app) and ``nemorun exp ...`` (experiment commands).

Errors a user can fix print ONE line, ``nemorun: error: ...``, and exit 2 (config) or 1 (backend);
tracebacks only with ``hydra.verbose=true`` or ``NEMORUN_DEBUG=1``. Hydra's own error printer is
bypassed (``HYDRA_FULL_ERROR=1`` makes it re-raise) so its multi-line reports can be condensed.
"""
from __future__ import annotations

import gc
import importlib
import os
import re
import sys
from typing import Callable, NoReturn, Optional

from omegaconf import DictConfig, OmegaConf

from nemorun import launching, quick
from nemorun.compose import CONFIG_NAME, Described, describe_error, free_form_overrides
from nemorun.errors import ConfigError, printable

_result_code: Optional[int] = None
# An error inside the task function is kept here and raised after Hydra returns: raised inside,
# Hydra would log its own multi-line "Error executing job" report first.
_pending_error: Optional[BaseException] = None


def _task_function(cfg: DictConfig) -> None:
    """``@hydra.main``'s task: a single run (or multi-task experiment) Hydra composed."""
    global _result_code, _pending_error
    from hydra.core.hydra_config import HydraConfig

    try:
        # unresolved: an override such as name=${x} is text here, not an interpolation to follow
        overrides = [str(o) for o in OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False)]
        if HydraConfig.get().launcher.get("max_parallel") is not None:  # only a sweep (-m) has a launcher
            raise ConfigError(f"hydra.launcher.{launching.MAX_PARALLEL_SINGLE}")
        outcome = launching.launch_composed(cfg, overrides)
    except Exception as exc:  # noqa: BLE001 - re-raised by main() once Hydra has returned
        _pending_error = exc
        return
    _result_code = outcome.exit_code


def _hydra_app() -> Callable[[], None]:
    """The ``@hydra.main`` app: built on demand, so a run served by the compose cache never
    imports Hydra's composition machinery."""
    import hydra

    return hydra.main(config_path="pkg://nemorun.conf", config_name=CONFIG_NAME, version_base="1.3")(_task_function)


def _debug(argv: list[str]) -> bool:
    if os.environ.get("NEMORUN_DEBUG", "") not in ("", "0"):
        return True
    return any(re.match(r"^hydra\.verbose=(?!false$|\[\]$|null$)", a) for a in argv)


def is_plain_run(args: list[str]) -> bool:
    """A single run given only as overrides: no flags (-m, --help, --cfg, --config-dir, ...) and
    nothing under ``hydra.``. Such a run is composed once with Hydra's compose API; through
    ``@hydra.main`` Hydra composes it twice (once only to learn the run mode), which costs about
    as much as all of nemorun's own work in a dry run.
    """
    return bool(args) and all(not a.startswith("-") and not a.lstrip("+~").startswith("hydra") for a in args)


MULTIRUN_FLAGS = ("-m", "--multirun")


def plain_sweep(args: list[str]) -> Optional[list[str]]:
    """The overrides of ``-m`` plus a plain run's overrides (see :func:`is_plain_run`), else None.
    Such a sweep goes to the one planner through Hydra's compose API, as the Python API's does:
    through ``@hydra.main`` Hydra composes once more only to learn the run mode (about a third of
    a 1,000-job array dry run's CPU time). ``glob(...)`` stays with Hydra's sweeper: it expands
    with the sweeper's config loader."""
    rest = [a for a in args if a not in MULTIRUN_FLAGS]
    plain = len(rest) == len(args) - 1 and is_plain_run(rest) and not any("glob(" in a for a in rest)
    return rest if plain else None


def _run_composed(args: list[str], multirun: bool = False) -> None:
    """Same config module, plugins, search path and checks as the ``@hydra.main`` path, composed
    once (or served by :mod:`nemorun.compose_cache`)."""
    global _result_code
    try:
        if multirun:
            _start_up_over()
            _result_code = launching.launch(args, multirun=True).exit_code
        else:
            cfg = launching.compose_run(args)
            _start_up_over()
            _result_code = launching.launch_composed(cfg, args).exit_code
    except Exception as exc:  # described here, while Hydra still knows the option lists
        if _debug(args):
            raise
        raise Described(*describe_error(exc)) from exc


CONFIG_DIR_FLAGS = ("--config-dir", "-cd")


def config_dirs_first(args: list[str]) -> list[str]:
    """``--config-dir DIR`` taken out of ``args`` and put first in ``NEMORUN_CONFIG_PATH``.

    Why: Hydra searches a ``--config-dir`` folder AFTER the packaged configs, so a team's
    ``executor/slurm.yaml`` (with its account) was silently ignored for ``executor=slurm``, while
    the same folder in ``NEMORUN_CONFIG_PATH`` replaced the packaged option. Both now mean the
    same: the user's option wins (``--config-dir`` first, then the variable's folders in order),
    and such a run can take the single-compose path and the compose cache (keyed on the variable).
    """
    out: list[str] = []
    dirs: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in CONFIG_DIR_FLAGS:
            if i + 1 >= len(args) or args[i + 1].startswith("-"):
                raise ConfigError(f"{arg} needs a folder: {arg} DIR")
            dirs.append(args[i + 1])
            i += 2
            continue
        if arg.startswith("--config-dir="):
            dirs.append(arg.partition("=")[2])
        else:
            out.append(arg)
        i += 1
    if not dirs:
        return out
    folders = [os.path.abspath(os.path.expanduser(d)) for d in dirs]
    for given, folder in zip(dirs, folders):
        if not os.path.isdir(folder):
            raise ConfigError(f"--config-dir {given}: no such folder ({folder})")
    existing = [d for d in os.environ.get("NEMORUN_CONFIG_PATH", "").split(os.pathsep) if d]
    os.environ["NEMORUN_CONFIG_PATH"] = os.pathsep.join([*folders, *existing])
    return out


def _quiet_hydra_job_errors() -> None:
    """Hydra's ``run_job`` (``@hydra.main`` and multirun only: a plain run composes through the
    compose API) logs its own multi-line "Error executing job" report before re-raising; ours is
    one line. Set up only for those paths: ``logging`` is not imported otherwise."""
    import logging

    quiet = logging.getLogger("hydra.core.utils")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False


# True while a CLI process (:func:`run`) starts up with the cyclic garbage collector paused
_collector_paused = False


def run(argv: Optional[list[str]] = None) -> None:
    """:func:`main` as a process of its own (``python -m nemorun``, the console script), whose
    start-up the cyclic garbage collector sits out (the entry point pauses it before importing
    this module).

    Why: start-up makes some 10^5 objects that live until the process ends (modules, classes,
    schemas, Hydra's and nemorun's configs) and next to no cyclic garbage; the collector's ~50
    passes over them were ~5% of a cold dry run's CPU. :func:`_start_up_over` freezes what start-up
    made (never traversed again; re-enabling without that would make the next pass walk all of
    it) and turns the collector on before anything that makes garbage per job or waits long."""
    global _collector_paused
    _collector_paused = True
    gc.disable()
    main(argv)


def _start_up_over() -> None:
    global _collector_paused
    if _collector_paused:
        _collector_paused = False
        gc.freeze()
        gc.enable()


def fail(code: int, message: str) -> NoReturn:
    print(f"nemorun: error: {printable(message)}", file=sys.stderr)
    sys.exit(code)


def main(argv: Optional[list[str]] = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if quick.serve(args, main):  # --help, -sc and TAB from nemorun.quick's cache: no compose on a hit
        return
    if args and args[0] == "exp":
        _start_up_over()
        # loaded only here: the experiment commands bring nemorun.api and the Python API
        # (python_api, every schema class by name), a tenth of a cold dry run's imports
        sys.exit(importlib.import_module("nemorun.exp_cli").main(args[1:]))
    try:
        args = config_dirs_first(free_form_overrides(args))  # new keys of env_vars, params, labels... need no `+`
    except ConfigError as exc:
        fail(2, str(exc))
    sys.argv = [sys.argv[0], *args]
    debug = _debug(args)
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        if is_plain_run(args):
            _run_composed(args)
        elif (sweep := plain_sweep(args)) is not None:
            _run_composed(sweep, multirun=True)
        else:
            _start_up_over()
            if not debug:
                _quiet_hydra_job_errors()
            from hydra_plugins.nemorun_plugins import register_all

            register_all()
            _hydra_app()()
        if _pending_error is not None:
            raise _pending_error
    except SystemExit:
        raise
    except KeyboardInterrupt:
        fail(130, "interrupted")
    except BrokenPipeError:  # the reader left (`| head`) while a waited job streamed: it runs on
        _stdout_gone()
    except BaseException as exc:  # noqa: BLE001 - the last line of defence: one line, no traceback
        if debug:
            raise
        code, message = describe_error(exc)
        fail(code, message)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_gone()
    if _result_code:
        sys.exit(_result_code)


def _stdout_gone() -> None:
    """Point stdout at /dev/null so Python's own flush at exit does not print a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
