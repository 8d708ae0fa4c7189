"""The backend-neutral job description every target renders from.

Why an IR: the composed Hydra config is shaped for people (groups, interpolations, defaults);
renderers want one small, typed, fully resolved value. ``nemorun.lower`` builds it; templates
never see raw config. Everything a render needs that depends on the outside world (experiment
id, submit directory, archive digest) is decided before compiling and carried here, so a render
is a pure function of this value.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Literal, Mapping, Optional, Sequence, TypeVar, Union

from nemorun.schemas.core import NonePackagerConfig
from nemorun.schemas.dgxcloud import DgxCloudExecutorConfig
from nemorun.schemas.docker import DockerExecutorConfig
from nemorun.schemas.kubeflow import ConfigMapPackagerConfig, KubeflowExecutorConfig
from nemorun.schemas.lepton import LeptonExecutorConfig
from nemorun.schemas.local import LocalExecutorConfig
from nemorun.schemas.packagers import GitPackagerConfig, HybridPackagerConfig, PatternPackagerConfig
from nemorun.schemas.skypilot import SkypilotExecutorConfig
from nemorun.schemas.slurm import SlurmExecutorConfig

TaskKind = Literal["inline", "script", "function"]

# The executor's own typed config: what ``job.executor`` holds, for backend-only options
# (partition, namespace, cluster_name...). Resources, image, retries, env and mounts are NOT read
# from it: they are on the Job in one spelling (tests/test_ir_purity.py keeps targets to that).
ExecutorConfig = Union[
    LocalExecutorConfig,
    SlurmExecutorConfig,
    DockerExecutorConfig,
    KubeflowExecutorConfig,
    SkypilotExecutorConfig,
    DgxCloudExecutorConfig,
    LeptonExecutorConfig,
]
PackagerConfig = Union[
    NonePackagerConfig, GitPackagerConfig, PatternPackagerConfig, HybridPackagerConfig, ConfigMapPackagerConfig
]


@dataclass(frozen=True)
class Task:
    name: str
    kind: TaskKind
    inline: Optional[str] = None
    script: Optional[str] = None
    args: tuple[str, ...] = ()
    target: Optional[str] = None
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Resources:
    """What the job asks of the machines, in ONE spelling whatever the executor calls it.

    ``nemorun.lower.EXECUTOR_FIELDS`` maps each executor's schema fields onto these; a target
    renders only these (``None``: not asked for, the backend's default applies).
    """

    nodes: int = 1
    tasks_per_node: int = 1
    # None: none asked for; -1: every GPU of the node (docker's ``num_gpus=-1``)
    gpus_per_node: Optional[int] = None
    gpus_per_task: Optional[int] = None
    # accelerator name (SkyPilot's ``gpus``: H100, A100-80GB)
    gpu_type: Optional[str] = None
    cpus_per_task: Optional[int] = None
    # CPUs per node as the backend takes them ("8", "8+" on SkyPilot, "500m" on Kubernetes)
    cpus: Optional[str] = None
    # memory per node as the backend takes it ("64G" Slurm, "512Gi" Kubernetes, "32+" GB SkyPilot)
    mem: Optional[str] = None
    # wall-time limit in Slurm's format ("04:00:00")
    time: Optional[str] = None
    # size of /dev/shm in docker units ("16g", "65536m"); see :func:`shm_mib`
    shm_size: Optional[str] = None


_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def shm_mib(size: str) -> int:
    """``Resources.shm_size`` in MiB, for backends that take a number (Lepton)."""
    m = re.match(r"^(\d+)([bkmg]?)$", size.strip().lower())
    if not m:
        raise ValueError(f"shm size {size!r} is not <number>[b|k|m|g]")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2)] // (1 << 20)


@dataclass(frozen=True)
class Mount:
    """A storage path made visible to the job. :meth:`colon_form` gives back the ``SRC:DST[:FLAGS]``
    spelling of Pyxis and docker exactly, so a malformed entry still reaches the check that names it."""

    # host path, volume, claim or storage the path comes from
    source: str
    # path inside the job; None: the same as source (Pyxis ``SRC`` alone)
    target: Optional[str] = None
    read_only: bool = False
    # the flags as given after the second colon ("ro", "rw,z"); None: none given
    options: Optional[str] = None
    # path within the source storage (Lepton's ``path``)
    subpath: Optional[str] = None
    # the platform's name for this storage entry (Run:ai storage instance)
    name: Optional[str] = None
    # the platform creates the source when it is missing (Run:ai ``existingPvc: false``)
    create: bool = False

    @classmethod
    def parse(cls, text: str) -> "Mount":
        source, *rest = str(text).split(":", 2)
        target = rest[0] if rest else None
        options = rest[1] if len(rest) > 1 else None
        return cls(source=source, target=target, options=options, read_only="ro" in (options or "").split(","))

    def colon_form(self) -> str:
        return ":".join(p for p in (self.source, self.target, self.options) if p is not None)


@dataclass(frozen=True)
class Launcher:
    """How the task's Python command is started on each node (``none`` = as it is).

    ``options`` holds the launcher's typed config as a plain dict; the launcher fragments in
    ``templates/launchers/`` turn it into the form each target needs.
    """

    kind: str = "none"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Package:
    """The code a job runs from, as produced by a packager before compiling."""

    kind: str = "none"
    # local path of the archive (tar.gz) or None when nothing is shipped
    archive: Optional[str] = None
    sha256: Optional[str] = None
    # subfolder of the unpacked archive that becomes the working directory
    workdir_subpath: str = ""
    # the local folder the unpacked working directory mirrors (compile imports function
    # targets from here); never rendered
    source_dir: Optional[str] = None
    # packagers whose files go into an artifact (configmap): (relative POSIX path, content)
    # pairs, sorted by path, read at packaging time so a render never touches the disk
    files: tuple[tuple[str, bytes], ...] = ()
    # the archive's bytes, for targets whose job body carries the code itself (a target module
    # declaring ``code_in_artifact="bytes"``: Lepton); read at packaging time so a render stays pure
    archive_data: Optional[bytes] = field(default=None, repr=False)


@dataclass(frozen=True)
class SecretRef:
    """Where a secret lives on the platform, never its value: the platform resolves it in the pod.

    ``key`` names one entry of the secret where the platform stores several per secret
    (Kubernetes ``secretKeyRef``, Run:ai ``secret``); Lepton's workspace secrets have none.
    """

    name: str
    key: Optional[str] = None


@dataclass(frozen=True)
class ArrayTask:
    """One point of a value-only sweep inside an array job: only its name and task differ."""

    # the sweep job's name (its record folder is jobs/<name>/)
    name: str
    task: Task


T = TypeVar("T")


class ComputedSequence(Sequence[T]):
    """A read-only sequence whose items are made when read (``_item``), for tables of a sweep's
    jobs that would cost an object per job if held: indexes, negative indexes, slices and
    iteration are handled here once."""

    def _item(self, index: int) -> T:
        raise NotImplementedError

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self._item(i) for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._item(index)

    def __iter__(self) -> Iterator[T]:
        return (self._item(i) for i in range(len(self)))


@dataclass(frozen=True)
class NumberedNames(ComputedSequence[str]):
    """A sweep's job names (``train-0007``), made when read: 10,000 names cost two fields, not
    10,000 strings held for the whole launch. One job keeps the bare ``prefix``."""

    prefix: str
    count: int

    def __len__(self) -> int:
        return self.count

    def _item(self, index: int) -> str:
        if self.count == 1:
            return self.prefix
        return f"{self.prefix}-{index:0{len(str(self.count - 1))}d}"


@dataclass(frozen=True)
class ArrayTable(ComputedSequence[ArrayTask]):
    """The tasks of an array job as columns: task i is ``base`` with, for each column, the value at
    ``path`` under ``base.params`` set to the column's i-th value.

    Why columns: a value-only sweep of 10,000 points differs per task by one or two values, so a
    reference per task and column is what it costs (not a Task, a params dict and a name per
    task, held from planning to the end of the launch). Each :class:`ArrayTask` is made when read.
    Every ``path`` exists in ``base.params`` and none is a prefix of another (the planner's rule),
    so setting a column's value where a task keeps the base's changes nothing.
    """

    base: Task
    names: Sequence[str]
    columns: tuple[tuple[tuple[str, ...], Sequence[Any]], ...] = ()

    def __len__(self) -> int:
        return len(self.names)

    def params(self, index: int) -> Mapping[str, Any]:
        return with_values(self.base.params, {path: values[index] for path, values in self.columns})

    def _item(self, index: int) -> ArrayTask:
        return ArrayTask(self.names[index], replace(self.base, params=self.params(index)))


def with_values(params: Mapping[str, Any], changes: Mapping[tuple[str, ...], Any]) -> dict[str, Any]:
    """``params`` with ``changes`` (path under params -> value) set, copying only the dicts on a
    changed path: the rest is shared with ``params`` (never mutated), so many variants of one
    task's params hold small dicts, not deep copies."""
    out = dict(params)
    for path, value in changes.items():
        node = out
        for part in path[:-1]:
            child = node.get(part)
            node[part] = child = dict(child) if isinstance(child, Mapping) else {}
            node = child
        node[path[-1]] = value
    return out


@dataclass(frozen=True)
class Step:
    """One task of a multi-task experiment run as one step of a shared Slurm job (``allocation:``).

    Why a step carries its own resources, image, launcher and executor config: the tasks of one
    allocation are lowered one by one (each keeps everything its own overrides asked for), and
    a heterogeneous job gives each its own component. What is job-wide (retries, signal, tunnel,
    job dir, code) is the allocation Job's and checked equal across its steps by
    :mod:`nemorun.allocations` before rendering.
    """

    name: str
    task: Task
    env: Mapping[str, str]
    resources: Resources
    launcher: Launcher
    executor: ExecutorConfig
    image: Optional[str] = None
    mounts: tuple[Mount, ...] = ()
    # heterogeneous job: the component (``srun --het-group=i``) this step runs in; None: a job
    # group, every step sharing the one allocation
    het_group: Optional[int] = None


@dataclass(frozen=True)
class Job:
    """One job of an experiment, ready to render."""

    experiment_id: str
    experiment_name: str
    name: str
    task: Task
    # plain environment variables (task env over executor env)
    env: Mapping[str, str]
    resources: Resources
    launcher: Launcher
    package: Package
    # the executor's own typed config, for backend-only options (see ExecutorConfig)
    executor: ExecutorConfig
    # directory the job is launched from on the target (local: the submit directory)
    workdir: str
    # folder of this job inside the experiment record on this machine
    job_dir: str
    image: Optional[str] = None
    mounts: tuple[Mount, ...] = ()
    # environment variable name -> secret reference (never a value)
    secrets: Mapping[str, SecretRef] = field(default_factory=dict)
    retries: int = 0
    # interpreter for Python scripts and function tasks on the target
    python: str = "python"
    # handles of upstream jobs this one waits for, and how
    dependencies: tuple[str, ...] = ()
    dependency_type: str = "afterok"
    # the packager's typed config, for packagers a target applies itself (configmap)
    packager: PackagerConfig = field(default_factory=NonePackagerConfig)
    # non-empty: ONE array job (a value-only sweep) whose array task i runs array_tasks[i]
    # (Slurm: --array=0-(n-1), selected by SLURM_ARRAY_TASK_ID); ``task`` is array_tasks[0]'s.
    # The planner gives an ArrayTable (columns, tasks made when read); a tuple works as well
    array_tasks: Sequence["ArrayTask"] = ()
    # at most this many array tasks at once (Slurm: the %N of --array); None = no limit
    array_parallelism: Optional[int] = None
    # non-empty: ONE Slurm job running these tasks as concurrent steps (an experiment's
    # ``allocation:``); ``task``/``resources``/... are steps[0]'s, the job's name the allocation's
    steps: tuple[Step, ...] = ()

    @property
    def target(self) -> str:
        return str(self.executor.kind)

    @property
    def heterogeneous(self) -> bool:
        """Steps in components of their own (``#SBATCH hetjob``) rather than one shared allocation."""
        return any(s.het_group is not None for s in self.steps)


@dataclass(frozen=True)
class Rendered:
    """What a dry run shows and what a submitter sends: the artifacts, byte for byte.

    ``artifacts`` maps the fixed file name of each artifact (``launch.sh``, ``sbatch.sh``, ...) to
    its text, in the order they are shown. ``submit_command`` is the human-readable form of how
    they are applied. ``views`` are for people only: a readable form of something an artifact
    buries (the job's script inside a JSON string), shown by a dry run after the artifacts and
    never written, recorded or sent.
    """

    target: str
    job_name: str
    artifacts: Mapping[str, str]
    submit_command: str
    views: Mapping[str, str] = field(default_factory=dict)
