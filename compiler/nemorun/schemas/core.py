"""Schemas for the top level, tasks, and the options that need no backend (packager/launcher ``none``)."""
from __future__ import annotations

import dataclasses
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Dict, List, Optional

from omegaconf import MISSING

from nemorun.names import NAME as _NAME
from nemorun.names import NAME_RULE, check_name

# -- value checks shared by every schema -------------------------------------------------------
# A field declared with ``checked(...)`` carries its check in its metadata; ``Checked.__post_init__``
# runs them all when the config becomes a dataclass (compose time). Why one place: each executor
# names its counts differently, but "how many nodes is absurd" must not differ between them.

MAX_NODES = 100_000
# GPUs, processes or CPUs on one node (or per task): far above any real machine
MAX_PER_NODE = 4096
# names (check_name, NAME_RULE): nemorun.names
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Slurm --mem: an integer and an optional unit (default MB); 0 = all the node's memory
_SLURM_MEM = re.compile(r"\d+[KMGTkmgt]?")
# RFC 1123 label (Kubernetes namespaces)
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

# a check returns why a (non-None) value is wrong, or None
Check = Callable[[Any], Optional[str]]
CHECK = "nemorun_check"


def _name(value: Any) -> Optional[str]:
    return None if isinstance(value, str) and _NAME.fullmatch(value) else f"must be a name: {NAME_RULE}"


def count(low: int, high: Optional[int] = None) -> Check:
    """An integer in ``low..high`` (no upper bound when ``high`` is None)."""

    def check(value: Any) -> Optional[str]:
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
            return f"must be >= {low}" + (f" and <= {high}" if high is not None else "")
        return None

    return check


def positive_number(value: Any) -> Optional[str]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        return "must be a number > 0"
    return None


def one_line(value: Any) -> Optional[str]:
    """Text that ends up on one line of an artifact (a comment, a header, an option value)."""
    return "must not contain newlines or other control characters" if _CONTROL.search(str(value)) else None


def absolute_path(value: Any) -> Optional[str]:
    """A path on a remote machine: relative would be relative to whatever the login shell's cwd is."""
    return one_line(value) or (None if posixpath.isabs(str(value)) else "must be an absolute path")


def slurm_mem(value: Any) -> Optional[str]:
    return None if _SLURM_MEM.fullmatch(str(value)) else "must be a Slurm memory size: an integer with an optional unit K, M, G or T (e.g. 64G)"


def dns_label(value: Any) -> Optional[str]:
    return None if _DNS_LABEL.fullmatch(str(value)) else "must be a DNS label: lowercase letters, digits and '-', at most 63 characters"


def mount_spec(value: Any) -> Optional[str]:
    """One ``SRC:DST[:FLAGS]`` bind mount: Pyxis joins the list with commas, so a comma would
    silently make two mounts out of one item."""
    text = str(value)
    if "," in text:
        return "must be one mount each (no ','; list several mounts as list items)"
    return one_line(text)


def each(check: Check) -> Check:
    """Apply ``check`` to every item of a list (or every value of a mapping)."""

    def check_all(values: Any) -> Optional[str]:
        items = values.values() if isinstance(values, dict) else values
        for item in items:
            why = check(item)
            if why:
                return f"{why} (not {item!r})"
        return None

    return check_all


NAME = _name
NODES = count(1, MAX_NODES)
PER_NODE = count(1, MAX_PER_NODE)
GPUS = count(0, MAX_PER_NODE)
PORT = count(1, 65535)


def checked(default: Any = MISSING, *, check: Check, factory: Any = None) -> Any:
    """A dataclass field whose value ``check`` vets at compose time (None is always allowed)."""
    if factory is not None:
        return field(default_factory=factory, metadata={CHECK: check})
    return field(default=default, metadata={CHECK: check})


class Checked:
    """Mixin of the schemas: run every ``checked`` field's check when the dataclass is built.

    A subclass with its own ``__post_init__`` calls ``super().__post_init__()`` first.
    """

    # where the schema sits in the config, for messages ("tunnel.": nested under the executor)
    _path: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            check = f.metadata.get(CHECK)
            value = getattr(self, f.name)
            if check is None or value is None or value is MISSING or value == MISSING:
                continue
            why = check(value)
            if why:
                raise ValueError(f"{self._path}{f.name} {why} (got {value!r})")


@dataclass
class TaskConfig(Checked):
    """One unit of work. Exactly one of ``inline``, ``script`` or ``target`` is set.

    - ``inline``: a shell command line, run with bash.
    - ``script``: a path (relative to the job's working directory) run with ``python`` when it
      ends in ``.py``, else with ``bash``; ``args`` follow it.
    - ``target``: ``package.module.function``; on the node nemorun's entry point imports it and
      calls it with ``params`` as keyword arguments (the Hydra-native form of NeMo-Run's
      ``run.Partial``).
    """

    # name of the task; the default experiment title and job name
    name: str = checked(check=NAME)
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
class ScriptTaskConfig(TaskConfig):
    """``task=script``: the user's own script with no example values to delete first; the script
    path is required (a missing one is the one-line missing-value error, not "sets none")."""

    name: str = checked("script", check=NAME)
    script: Optional[str] = MISSING


@dataclass
class FunctionTaskConfig(TaskConfig):
    """``task=function``: the user's own ``package.module.function``; its ``params`` are free-form."""

    name: str = checked("function", check=NAME)
    target: Optional[str] = MISSING


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
class ExecutorConfig(Checked):
    """Fields every executor has. Executors add their own fields in a subclass (one level only)."""

    kind: str = MISSING
    # environment variables exported for the job (values are literal strings)
    env_vars: Dict[str, str] = field(default_factory=dict)
    # resubmit/restart a failed job at most this many times (how depends on the backend)
    retries: int = checked(0, check=count(0, 1000))


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
    # a sweep runs at most this many jobs at once (job arrays: %N; see nemorun.lower.max_parallel)
    max_parallel: Optional[int] = None
    # a sweep (-m) runs as ONE Slurm job named this, each sweep job one srun step (nemorun.allocations)
    allocation: Optional[str] = None


SCHEMAS: dict[str, type] = {
    "_schema_root": RootConfig,
    "_schema_task": TaskConfig,
    "_schema_task_script": ScriptTaskConfig,
    "_schema_task_function": FunctionTaskConfig,
    "_schema_packager_none": NonePackagerConfig,
    "_schema_launcher_none": NoneLauncherConfig,
}
