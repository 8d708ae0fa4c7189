"""What each target can do, declared once per target module as ``CAPABILITIES``.

Why a declaration and not probes: an option a target does not honour used to be accepted and
then ignored (``packager=git`` on SkyPilot rendered a task that never saw the archive;
``executor.retries=2`` on local ran once). Now the declaration is the truth every part reads:
:func:`check` refuses such a job at the end of ``nemorun.lower.compile_job`` (so every path that
compiles a job is covered), :func:`check_packager` refuses the packager before any code is packed,
the sweep asks :func:`supports_arrays`, the experiment asks ``of(kind).native_dependencies``, and
``tests/test_conformance.py`` generates its matrix from it, checking each honoured option against
the declared :class:`Evidence` in the rendered artifacts. When a target learns something new, only
its declaration changes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Optional

from nemorun.errors import ConfigError
from nemorun.targets import TARGET_MODULES, target_module

if TYPE_CHECKING:
    from nemorun.ir import Job

ALL_LAUNCHERS = ("none", "torchrun", "ft")
ALL_TASK_KINDS = ("inline", "script", "function")
# the packagers that ship a tar.gz archive (nemorun.packaging), as opposed to a ConfigMap
ARCHIVE_PACKAGERS = ("git", "pattern", "hybrid")


@dataclass(frozen=True)
class Evidence:
    """How an honoured option shows in the rendered artifacts: format strings that must ALL appear
    in the artifacts' text (the conformance test fills them in and looks for them)."""

    # retries honoured; ``{n}`` = the retry count
    retries: tuple[str, ...] = ()
    # code shipped; ``{sha256}`` = the archive's digest, ``{archive}`` its path, ``{job_dir}`` the
    # job's record folder, ``{files}`` the number of files a ConfigMap carries
    code: tuple[str, ...] = ()
    # launcher kind -> the program that shows it runs
    launchers: Mapping[str, str] = field(default_factory=lambda: {"torchrun": "torchrun", "ft": "ft_launcher"})
    # a function task runs through the entry point shipped with it
    function: str = "nemorun_entry.py"


@dataclass(frozen=True)
class Capabilities:
    """What one target renders faithfully, as it renders it today."""

    executor: str
    # packager kinds whose code reaches the job ("none" always)
    packagers: tuple[str, ...] = ("none",)
    launchers: tuple[str, ...] = ALL_LAUNCHERS
    task_kinds: tuple[str, ...] = ALL_TASK_KINDS
    # how retries happen ("sbatch --requeue + guard"); None: retries>0 is refused
    retries: Optional[str] = None
    # why there are none (shown in the refusal)
    no_retries_why: str = "no retry mechanism"
    # one array job for a value-only sweep (ir.Job.array_tasks)
    arrays: bool = False
    # the backend itself holds a job until its dependencies end (else nemorun waits, then submits)
    native_dependencies: bool = False
    # env_vars may reference the platform's secrets (matches the schema's secret_env_vars)
    secret_store: bool = False
    # an experiment's tasks naming one ``allocation:`` run as steps of ONE job (ir.Job.steps:
    # Slurm job groups and heterogeneous jobs, nemorun.allocations)
    allocations: bool = False
    # how an archive packager's code travels when the artifact itself carries it (packaging reads
    # it before compiling, so a render stays pure): "files" (each file, e.g. in a ConfigMap),
    # "bytes" (the archive, e.g. base64 in the job's command); None: the submitter places it
    code_in_artifact: Optional[str] = None
    evidence: Evidence = field(default_factory=Evidence)

    def __post_init__(self) -> None:
        if self.code_in_artifact not in (None, "files", "bytes"):
            raise ValueError(f"{self.executor}: code_in_artifact is None, 'files' or 'bytes'")
        if "none" not in self.packagers:
            raise ValueError(f"{self.executor}: every target runs with packager=none")


def of(kind: str) -> Capabilities:
    """The declaration of the target for executor ``kind`` (ConfigError for an unknown kind)."""
    caps = target_module(kind).CAPABILITIES
    if not isinstance(caps, Capabilities):
        raise TypeError(f"nemorun.targets.{kind}.CAPABILITIES is not a Capabilities")
    return caps


def supports_arrays(kind: str) -> bool:
    """A target renders ``ir.Job.array_tasks`` as one array job."""
    return of(kind).arrays


def _known() -> list[Capabilities]:
    return [of(kind) for kind in TARGET_MODULES]


def _either(words: list[str], last: str = "or") -> str:
    return f"{', '.join(words[:-1])} {last} {words[-1]}" if len(words) > 1 else words[0]


def packager_message(executor: str, packager: str) -> str:
    """The one line refusing ``packager`` on ``executor`` (used before packing and after compiling)."""
    caps = of(executor)
    ships = _either([f"packager={k}" for k in (*[p for p in caps.packagers if p != "none"], "none")])
    others = [c.executor for c in _known() if packager in c.packagers]
    instead = f"use executor={_either(others)}, or packager=none" if others else "use packager=none"
    return f"packager={packager} is not supported by executor={executor} (it ships code with {ships}); {instead}"


def check_packager(executor: str, packager: str) -> None:
    if packager not in of(executor).packagers:
        raise ConfigError(packager_message(executor, packager))


def retries_message(executor: str, retries: int) -> str:
    caps = of(executor)
    others = [c.executor for c in _known() if c.retries]
    return (f"executor.retries={retries} is not supported by executor={executor} ({caps.no_retries_why}); "
            f"use executor={_either(others)}, or retries=0")  # fmt: skip


def check(job: "Job") -> None:
    """Refuse, in one line, an option the job's target would accept and then ignore."""
    kind = job.target
    caps = of(kind)
    packager = str(getattr(job.packager, "kind", "none"))
    check_packager(kind, packager)
    if job.retries > 0 and not caps.retries:
        raise ConfigError(retries_message(kind, job.retries))
    if job.launcher.kind not in caps.launchers:
        raise ConfigError(f"launcher={job.launcher.kind} is not supported by executor={kind}; use launcher={_either(list(caps.launchers))}")
    if job.task.kind not in caps.task_kinds:
        raise ConfigError(f"task '{job.task.name}' is a {job.task.kind} task, which executor={kind} does not run; "
                          f"it runs {_either(list(caps.task_kinds))} tasks")  # fmt: skip
    if job.secrets and not caps.secret_store:
        name = sorted(job.secrets)[0]
        others = [c.executor for c in _known() if c.secret_store]
        raise ConfigError(f"executor.env_vars.{name}: secret references are not supported by executor={kind}; "
                          f"use executor={_either(others)}")  # fmt: skip
    if job.array_tasks and not caps.arrays:
        raise ConfigError(f"executor={kind} cannot run a sweep as one array job")
    if job.dependencies and not caps.native_dependencies:
        raise ConfigError(f"executor={kind} has no native job dependencies; nemorun waits for upstream jobs instead")


def markdown_table() -> str:
    """The README's table of what each executor honours, generated from the declarations
    (``tests/test_readme.py`` keeps the README's copy equal to it)."""
    rows = ["| `executor=` | packagers | retries | sweep as one array | native dependencies | secret references |",
            "|---|---|---|---|---|---|"]
    for caps in _known():
        rows.append(f"| `{caps.executor}` | {', '.join(caps.packagers)} | {caps.retries or 'refused: ' + caps.no_retries_why} "
                    f"| {'yes' if caps.arrays else 'no'} | {'yes' if caps.native_dependencies else 'no (nemorun waits)'} "
                    f"| {'yes' if caps.secret_store else 'no'} |")
    return "\n".join(rows) + "\n"
