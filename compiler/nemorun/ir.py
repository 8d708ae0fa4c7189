"""The backend-neutral job description every target renders from.

Why an IR: the composed Hydra config is shaped for people (groups, interpolations, defaults);
renderers want one small, typed, fully resolved value. ``nemorun.lower`` builds it; templates
never see raw config. Everything a render needs that depends on the outside world (experiment
id, submit directory, archive digest) is decided before compiling and carried here, so a render
is a pure function of this value.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional

TaskKind = Literal["inline", "script", "function"]


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
    nodes: int = 1
    tasks_per_node: int = 1
    gpus_per_node: int = 0
    cpus_per_task: Optional[int] = None
    # memory per node, in Slurm/Kubernetes-style units as given ("64G", "512Gi")
    mem: Optional[str] = None
    # wall-time limit in Slurm's format ("04:00:00")
    time: Optional[str] = None


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool = False


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
    # the executor's own typed config (a dataclass from nemorun.schemas), for backend options
    executor: Any
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
    # the packager's typed config (a dataclass from nemorun.schemas), for packagers a target applies itself
    packager: Any = None
    # non-empty: ONE array job (a value-only sweep) whose array task i runs array_tasks[i]
    # (Slurm: --array=0-(n-1), selected by SLURM_ARRAY_TASK_ID); ``task`` is array_tasks[0]'s
    array_tasks: tuple["ArrayTask", ...] = ()
    # at most this many array tasks at once (Slurm: the %N of --array); None = no limit
    array_parallelism: Optional[int] = None

    @property
    def target(self) -> str:
        return str(self.executor.kind)


@dataclass(frozen=True)
class Rendered:
    """What a dry run shows and what a submitter sends: the artifacts, byte for byte.

    ``artifacts`` maps the fixed file name of each artifact (``launch.sh``, ``sbatch.sh``, ...) to
    its text, in the order they are shown. ``submit_command`` is the human-readable form of how
    they are applied.
    """

    target: str
    job_name: str
    artifacts: Mapping[str, str]
    submit_command: str
