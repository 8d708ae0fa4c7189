"""Schemas of ``executor=slurm`` and its nested tunnel group ``executor/tunnel=local|ssh``.

Checks that need no cluster run when the config becomes a dataclass (``__post_init__``), so a
malformed ``time``, a misspelt or prefix-only sbatch/srun option or an unknown dependency type
is a config error (exit 2) before anything is rendered.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, List, Optional

from omegaconf import MISSING

from nemorun.schemas.core import (
    GPUS, NAME, NODES, PER_NODE, PORT, Checked, ExecutorConfig, absolute_path, checked, each, mount_spec,
    one_line, positive_number, slurm_mem,
)
from nemorun.slurm_flags import CURRENT, RELEASES, release, unknown_option

# sbatch --time: min, min:sec, h:min:sec, d-h, d-h:min, d-h:min:sec (sbatch(1)), or no limit
_TIME = re.compile(r"^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+|\d+-\d+:\d{1,2}|\d+-\d+:\d{1,2}:\d{1,2})$")
_NO_LIMIT = {"infinite", "unlimited"}
DEPENDENCY_TYPES = ("after", "afterok", "afterany", "afternotok", "aftercorr", "singleton")

# sbatch options nemorun renders itself from typed fields or job facts; not settable twice
_OWN_FLAGS = {
    "account": "account", "partition": "partition", "nodes": "nodes", "ntasks-per-node": "ntasks_per_node",
    "gpus-per-node": "gpus_per_node", "gpus-per-task": "gpus_per_task", "cpus-per-task": "cpus_per_task",
    "mem": "mem", "time": "time", "exclusive": "exclusive", "qos": "qos", "constraint": "constraint",
    "exclude": "exclude", "reservation": "reservation", "comment": "comment", "signal": "signal",
    "job-name": "job_name", "dependency": "dependency_type", "requeue": "retries", "chdir": "container_workdir",
}
# sbatch options nemorun sets from job facts (log files in the job dir, the submit command)
_RESERVED = ("output", "error", "parsable", "open-mode", "wrap")


# Options sbatch refuses together and the --exclusive modes are per release (nemorun.slurm_flags);
# the real-binary checks of tests/test_slurm_depth.py judge the 22.05 groups the test cluster runs.
CONFLICTING_OPTIONS: tuple[tuple[str, ...], ...] = RELEASES["22.05"].conflicting
# every mode some release knows; whether executor.slurm_version has it is checked in __post_init__
# (22.05 refuses `--exclusive=topo` with "Invalid --exclusive specification", as it does `=true`)
EXCLUSIVE_MODES: tuple[str, ...] = tuple(dict.fromkeys(m for r in RELEASES.values() for m in r.exclusive_modes))


def _exclusive(value: Any) -> Optional[str]:
    if isinstance(value, bool) or value in EXCLUSIVE_MODES:
        return None
    return f"must be true, false, {' or '.join(EXCLUSIVE_MODES)} (sbatch --exclusive[={'|'.join(EXCLUSIVE_MODES)}])"


def _slurm_version(value: Any) -> Optional[str]:
    try:
        release(str(value))
    except ValueError:
        return f"is not a Slurm release nemorun has option lists for; use one of {', '.join(RELEASES)}"
    return None


# sbatch --signal=[[R][B]:]num[@time]
_SIGNAL = re.compile(r"^(?:[RB]{1,2}:)?[A-Za-z0-9]+(?:@\d+)?$")


def _signal(value: Any) -> Optional[str]:
    return None if _SIGNAL.match(str(value)) else "must be [R:]SIGNAL[@SECONDS] as sbatch --signal takes it (e.g. USR1@90)"


# free-text sbatch options: sbatch reads its header line by line
_ONE_LINE = ("account", "partition", "qos", "constraint", "exclude", "reservation", "comment", "signal", "container_image")


def _host(value: object) -> Optional[str]:
    """A host or login name goes to ssh as one word."""
    text = str(value)
    return None if text and not one_line(text) and not any(c.isspace() for c in text) and not text.startswith("-") else "must be one word (no spaces or control characters, not starting with '-')"


def check_time(value: Optional[str]) -> None:
    if value is None or value.lower() in _NO_LIMIT or _TIME.match(value):
        return
    raise ValueError(
        f"time={value!r} is not a Slurm time limit; use minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS (e.g. 04:00:00)"
    )


def check_srun_args(args: List[str], version: Optional[str] = None) -> None:
    for arg in args:
        if arg.startswith("--"):
            why = unknown_option(arg[2:].split("=", 1)[0], "srun", version)
            if why:
                raise ValueError(f"srun_args: {why}")


@dataclass
class LocalTunnelConfig(Checked):
    """Run sbatch/squeue/... on this machine (a login node, or the test cluster)."""

    _path: ClassVar[str] = "tunnel."
    kind: str = "local"
    # base folder for job dirs (<job_dir>/<experiment>/<id>/<job>); default: the experiment record
    job_dir: Optional[str] = checked(None, check=absolute_path)


@dataclass
class SshTunnelConfig(Checked):
    """Run sbatch/squeue/... on a login node over SSH (fabric); one connection per process."""

    _path: ClassVar[str] = "tunnel."
    kind: str = "ssh"
    host: str = checked(check=_host)
    # login name; default: the local user / ~/.ssh/config
    user: Optional[str] = checked(None, check=_host)
    port: int = checked(22, check=PORT)
    # private key file; default: the agent and ~/.ssh keys
    identity: Optional[str] = checked(None, check=one_line)
    # known_hosts file to verify the host key against (then unknown host keys are refused)
    known_hosts: Optional[str] = checked(None, check=one_line)
    # absolute base folder on the login node for job dirs (<job_dir>/<experiment>/<id>/<job>)
    job_dir: str = checked(check=absolute_path)
    # seconds to wait for the TCP connection and the SSH handshake
    connect_timeout: float = checked(10.0, check=positive_number)


@dataclass
class SlurmExecutorConfig(ExecutorConfig):
    """A Slurm batch job (``sbatch.sh``), in a Pyxis container when ``container_image`` is set."""

    kind: str = "slurm"
    account: Optional[str] = None
    partition: Optional[str] = None
    nodes: int = checked(1, check=NODES)
    ntasks_per_node: int = checked(1, check=PER_NODE)
    gpus_per_node: Optional[int] = checked(None, check=GPUS)
    gpus_per_task: Optional[int] = checked(None, check=GPUS)
    cpus_per_task: Optional[int] = checked(None, check=PER_NODE)
    # memory per node, Slurm units ("64G")
    mem: Optional[str] = checked(None, check=slurm_mem)
    # wall-time limit in Slurm's format ("04:00:00", "2-00:00:00", minutes)
    time: Optional[str] = None
    # whole nodes: true (bare --exclusive), or "user" / "mcs" (share nodes only with own / same-MCS jobs)
    exclusive: Any = checked(None, check=_exclusive)
    qos: Optional[str] = None
    constraint: Optional[str] = None
    exclude: Optional[str] = None
    reservation: Optional[str] = None
    comment: Optional[str] = None
    # e.g. "USR1@90": signal sent that many seconds before the time limit. It goes to the batch
    # script (rendered as B:USR1@90), which stops the step with SIGTERM and requeues within retries
    signal: Optional[str] = checked(None, check=_signal)
    # Slurm job name; default: <experiment>-<job> (just <job> when they are the same)
    job_name: Optional[str] = checked(None, check=NAME)
    # any other sbatch long option -> value (true: bare flag; false/null: left out)
    additional_parameters: Dict[str, Any] = field(default_factory=dict)
    # Pyxis: image ([USER@][REGISTRY#]IMAGE[:TAG] or a squashfs path); none = bare Slurm
    container_image: Optional[str] = None
    # Pyxis mounts "SRC:DST[:FLAGS]"; the job dir is always mounted at its own path
    container_mounts: List[str] = checked(factory=list, check=each(mount_spec))
    # working directory of the task (container path with Pyxis, node path without);
    # default: the unpacked code, else the job dir
    container_workdir: Optional[str] = checked(None, check=one_line)
    # extra host variables passed into the container with --container-env (env_vars always are)
    container_env: List[str] = field(default_factory=list)
    # extra srun options for the step, e.g. ["--mpi=pmix"]
    srun_args: List[str] = field(default_factory=list)
    # shell lines run in the batch script before the step (module loads, ...)
    setup_lines: List[str] = field(default_factory=list)
    # base folder for job dirs on the cluster; overrides tunnel.job_dir
    job_dir: Optional[str] = checked(None, check=absolute_path)
    # how this job waits for its dependencies
    dependency_type: str = "afterok"
    # the cluster's Slurm release ("22.05", "24.11.3", ...): which sbatch/srun options and
    # --exclusive modes exist. A cluster found running another release is asked at submission
    # (its own `sbatch --help`, cached per cluster) before anything is written there
    slurm_version: str = checked(CURRENT, check=_slurm_version)
    tunnel: Any = MISSING

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in _ONE_LINE:
            value = getattr(self, key)
            if value is not None and one_line(value):
                raise ValueError(f"{key} {one_line(value)} (got {value!r})")
        check_time(self.time)
        check_srun_args(self.srun_args, self.slurm_version)
        modes = release(self.slurm_version).exclusive_modes
        if not isinstance(self.exclusive, bool) and self.exclusive is not None and self.exclusive not in modes:
            raise ValueError(f"exclusive={self.exclusive!r} needs a newer Slurm than {self.slurm_version} (executor.slurm_version); "
                             f"use true, {' or '.join(modes)}")
        if self.dependency_type not in DEPENDENCY_TYPES:
            raise ValueError(f"dependency_type={self.dependency_type!r}; use one of {', '.join(DEPENDENCY_TYPES)}")
        for key in self.additional_parameters:
            name = str(key).replace("_", "-")
            why = unknown_option(name, "sbatch", self.slurm_version)
            if why:
                raise ValueError(f"additional_parameters: {why}")
            if name in _OWN_FLAGS:
                raise ValueError(f"additional_parameters.{key}: set executor.{_OWN_FLAGS[name]} instead")
            if name in _RESERVED:
                raise ValueError(f"additional_parameters.{key}: --{name} is set by nemorun itself")
        self._check_exclusive_groups()

    def _check_exclusive_groups(self) -> None:
        """Options sbatch would refuse together, named the way the user set them."""
        where = {flag: f"executor.{attr}" for flag, attr in _OWN_FLAGS.items()
                 if attr in self.__dataclass_fields__ and getattr(self, attr) not in (None, False)}
        for key, value in self.additional_parameters.items():
            if value is not None and value is not False:
                where[str(key).replace("_", "-")] = f"executor.additional_parameters.{key}"
        for group in release(self.slurm_version).conflicting:
            both = [where[flag] for flag in group if flag in where]
            if len(both) > 1:
                note = " (nemorun always sets --ntasks-per-node)" if "ntasks-per-node" in group else ""
                raise ValueError(f"{' and '.join(both)} cannot be used together: sbatch takes only one of {', '.join('--' + f for f in group)}{note}")


SCHEMAS: dict[str, type] = {
    "_schema_executor_slurm": SlurmExecutorConfig,
    "_schema_executor_tunnel_local": LocalTunnelConfig,
    "_schema_executor_tunnel_ssh": SshTunnelConfig,
}
