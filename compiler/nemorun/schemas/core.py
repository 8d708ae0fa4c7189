"""Schemas for the top level, tasks, and the options that need no backend (packager/launcher ``none``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING


@dataclass
class TaskConfig:
    """One unit of work. Exactly one of ``inline``, ``script`` or ``target`` is set.

    - ``inline``: a shell command line, run with bash.
    - ``script``: a path (relative to the job's working directory) run with ``python`` when it
      ends in ``.py``, else with ``bash``; ``args`` follow it.
    - ``target``: ``package.module.function``; on the node nemorun's entry point imports it and
      calls it with ``params`` as keyword arguments (the Hydra-native form of NeMo-Run's
      ``run.Partial``).
    """

    # name of the task; the default experiment title and job name
    name: str = MISSING
    inline: Optional[str] = None
    script: Optional[str] = None
    # arguments after the script (ignored for inline and function tasks)
    args: List[str] = field(default_factory=list)
    target: Optional[str] = None
    # keyword arguments for a function task; free-form (nested mappings and lists allowed)
    params: Dict[str, Any] = field(default_factory=dict)
    # environment variables for this task, on top of the executor's env_vars
    env: Dict[str, str] = field(default_factory=dict)


@dataclass
class NonePackagerConfig:
    """Ship no code: the job runs from a directory that already holds it (the submit directory
    for the local executor, the image or a shared file system elsewhere)."""

    kind: str = "none"


@dataclass
class NoneLauncherConfig:
    """Run the task's command as it is (no torchrun / ft_launcher wrapper)."""

    kind: str = "none"


# field metadata naming the fields of an env_vars secret reference (see secret_env_vars)
SECRET_REFS = "secret_refs"


def secret_env_vars(*ref_fields: str) -> Any:
    """``env_vars`` of an executor whose platform resolves secrets in the pod: values are strings or
    references ``{secret: <name>, ...}`` with exactly ``ref_fields`` (type it ``Dict[str, Any]``)."""
    return field(default_factory=dict, metadata={SECRET_REFS: ref_fields})


@dataclass
class ExecutorConfig:
    """Fields every executor has. Executors add their own fields in a subclass (one level only)."""

    kind: str = MISSING
    # environment variables exported for the job (values are literal strings)
    env_vars: Dict[str, str] = field(default_factory=dict)
    # resubmit/restart a failed job at most this many times (how depends on the backend)
    retries: int = 0


@dataclass
class RootConfig:
    """The primary config. Group nodes are typed by their option's own schema."""

    executor: Any = MISSING
    packager: Any = MISSING
    launcher: Any = MISSING
    task: Any = None
    # several named tasks launched as one experiment (conf/experiment/); see nemorun.multitask
    experiment: Any = None
    # experiment title; defaults to the task's name
    name: Optional[str] = None
    # render and validate every artifact, print it, submit nothing
    dryrun: bool = False
    # also write the rendered artifacts into this folder (fixed file name per target)
    render_dir: Optional[str] = None
    # stay attached: stream the job's output and exit with its exit code
    wait: bool = False


SCHEMAS: dict[str, type] = {
    "_schema_root": RootConfig,
    "_schema_task": TaskConfig,
    "_schema_packager_none": NonePackagerConfig,
    "_schema_launcher_none": NoneLauncherConfig,
}
