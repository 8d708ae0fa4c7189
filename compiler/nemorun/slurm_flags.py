"""The exact long-option names of ``sbatch`` and ``srun`` per Slurm release (with Pyxis 0.24.0).

Why a list of our own: getopt accepts any unambiguous *prefix* of a long option
(``--gpus-per-nod=8`` is taken as ``--gpus-per-node``), so sbatch never rejects a truncated name;
we want exact names only, checked before anything reaches a cluster. Why one list per release:
options come and go (``--segment`` and ``--exclusive=topo`` exist from 24.11 on, ``--power`` and
srun's ``--uid`` are gone), and a cluster runs the release its site chose; ``executor.slurm_version``
picks the list (default :data:`CURRENT`), and a submission to a cluster of another release is
checked against that cluster's own ``--help`` (:mod:`nemorun.slurm_probe`).

Provenance (generated once, embedded so the installed package reads nothing outside itself):
- 22.05: ``*_HELP``: every long option in ``sbatch --help`` / ``srun --help`` of Debian
  slurm-client 22.05.8-4+deb12u3 with the Pyxis 0.24.0 SPANK plugin loaded
  (tests/contracts/cli/{sbatch,srun}-22.05.8-pyxis-0.24.0.help.txt; lines
  ``  [-X, ]--name[=ARG]``); ``*_MAN_ONLY``: long options documented in the same package's
  sbatch(1) / srun(1) man pages but missing from ``--help`` (``--open-mode``, ``--test-only``, ...).
- 24.11 / 25.11: SchedMD/slurm tags slurm-24-11-7-1 / slurm-25-11-7-1: the ``--help`` text
  rebuilt from ``_help()`` in src/{sbatch,srun}/opt.c plus the options documented in
  doc/man/man1/{sbatch,srun}.1, minus ``--power`` (still in the help text, but no longer in
  src/common/slurm_opt.c's getopt table since 23.11), plus Pyxis's ``--container-*``
  (tests/contracts/slurm/, extract.py there; the same recipe on tag slurm-22-05-8-1 gives
  exactly the 22.05 list above).
"""
from __future__ import annotations

from dataclasses import dataclass

_SBATCH_HELP: frozenset[str] = frozenset({
    "account", "array", "bb", "bbf", "begin", "chdir", "cluster-constraint", "clusters", "comment",
    "constraint", "container", "container-entrypoint", "container-entrypoint-log", "container-env",
    "container-image", "container-mount-home", "container-mounts", "container-name",
    "container-readonly", "container-remap-root", "container-save", "container-unshare",
    "container-workdir", "container-writable", "contiguous", "core-spec", "cores-per-socket",
    "cpu-freq", "cpus-per-gpu", "cpus-per-task", "deadline", "delay-boot", "dependency",
    "distribution", "error", "exclude", "exclusive", "export", "export-file", "extra-node-info",
    "get-user-env", "gid", "gpu-bind", "gpu-freq", "gpus", "gpus-per-node", "gpus-per-socket",
    "gpus-per-task", "gres", "gres-flags", "help", "hold", "ignore-pbs", "input", "job-name",
    "licenses", "mail-type", "mail-user", "mcs-label", "mem", "mem-per-cpu", "mem-per-gpu",
    "mincpus", "nice", "no-container-entrypoint", "no-container-mount-home",
    "no-container-remap-root", "no-kill", "no-requeue", "nodefile", "nodelist", "nodes", "ntasks",
    "ntasks-per-core", "ntasks-per-node", "ntasks-per-socket", "output", "overcommit",
    "oversubscribe", "parsable", "partition", "power", "priority", "profile", "propagate", "qos",
    "quiet", "reboot", "requeue", "reservation", "signal", "sockets-per-node", "spread-job",
    "switches", "thread-spec", "threads-per-core", "time", "time-min", "tmp", "uid", "usage",
    "use-min-nodes", "verbose", "version", "wait", "wckey", "wrap",
})

_SBATCH_MAN_ONLY: frozenset[str] = frozenset({
    "acctg-freq", "batch", "hint", "kill-on-invalid-dep", "mem-bind", "network", "ntasks-per-gpu",
    "open-mode", "prefer", "test-only", "wait-all-nodes",
})

_SRUN_HELP: frozenset[str] = frozenset({
    "account", "acctg-freq", "bb", "bbf", "bcast", "bcast-exclude", "begin", "chdir",
    "cluster-constraint", "clusters", "comment", "compress", "constraint", "container",
    "container-entrypoint", "container-entrypoint-log", "container-env", "container-image",
    "container-mount-home", "container-mounts", "container-name", "container-readonly",
    "container-remap-root", "container-save", "container-unshare", "container-workdir",
    "container-writable", "contiguous", "core-spec", "cores-per-socket", "cpu-freq", "cpus-per-gpu",
    "cpus-per-task", "deadline", "delay-boot", "dependency", "disable-status", "distribution",
    "epilog", "error", "exact", "exclude", "exclusive", "export", "extra-node-info", "gpu-bind",
    "gpu-freq", "gpus", "gpus-per-node", "gpus-per-socket", "gpus-per-task", "gres", "gres-flags",
    "help", "het-group", "hold", "immediate", "input", "job-name", "jobid", "kill-on-bad-exit",
    "label", "licenses", "mail-type", "mail-user", "mcs-label", "mem", "mem-per-cpu", "mem-per-gpu",
    "mincpus", "mpi", "multi-prog", "nice", "no-allocate", "no-container-entrypoint",
    "no-container-mount-home", "no-container-remap-root", "no-kill", "nodelist", "nodes", "ntasks",
    "ntasks-per-core", "ntasks-per-node", "ntasks-per-socket", "output", "overcommit", "overlap",
    "oversubscribe", "partition", "power", "preserve-env", "priority", "profile", "prolog",
    "propagate", "pty", "qos", "quiet", "quit-on-interrupt", "reboot", "relative", "reservation",
    "resv-ports", "send-libs", "signal", "slurmd-debug", "sockets-per-node", "spread-job",
    "switches", "task-epilog", "task-prolog", "thread-spec", "threads", "threads-per-core", "time",
    "time-min", "tmp", "unbuffered", "usage", "use-min-nodes", "verbose", "version", "wait", "wckey",
})

_SRUN_MAN_ONLY: frozenset[str] = frozenset({
    "accel-bind", "cpu-bind", "gid", "hint", "mem-bind", "msg-timeout", "network", "nodefile",
    "ntasks-per-gpu", "open-mode", "prefer", "test-only", "uid", "x11",
})

SBATCH_OPTIONS: frozenset[str] = _SBATCH_HELP | _SBATCH_MAN_ONLY
SRUN_OPTIONS: frozenset[str] = _SRUN_HELP | _SRUN_MAN_ONLY

# Pyxis 0.24.0's SPANK options: the same on every Slurm release (a plugin, not Slurm)
PYXIS_OPTIONS: frozenset[str] = frozenset({
    "container-entrypoint", "container-entrypoint-log", "container-env", "container-image",
    "container-mount-home", "container-mounts", "container-name", "container-readonly",
    "container-remap-root", "container-save", "container-unshare", "container-workdir",
    "container-writable", "no-container-entrypoint", "no-container-mount-home",
    "no-container-remap-root",
})

_SBATCH_24_11: frozenset[str] = frozenset({
    "account", "acctg-freq", "array", "batch", "bb", "bbf", "begin", "chdir",
    "cluster-constraint", "clusters", "comment", "constraint", "container", "container-id",
    "contiguous", "core-spec", "cores-per-socket", "cpu-freq", "cpus-per-gpu", "cpus-per-task",
    "deadline", "delay-boot", "dependency", "distribution", "error", "exclude", "exclusive",
    "export", "export-file", "extra", "extra-node-info", "get-user-env", "gid", "gpu-bind",
    "gpu-freq", "gpus", "gpus-per-node", "gpus-per-socket", "gpus-per-task", "gres",
    "gres-flags", "help", "hint", "hold", "ignore-pbs", "input", "job-name",
    "kill-on-invalid-dep", "licenses", "mail-type", "mail-user", "mcs-label", "mem", "mem-bind",
    "mem-per-cpu", "mem-per-gpu", "mincpus", "network", "nice", "no-kill", "no-requeue",
    "nodefile", "nodelist", "nodes", "ntasks", "ntasks-per-core", "ntasks-per-gpu",
    "ntasks-per-node", "ntasks-per-socket", "oom-kill-step", "open-mode", "output",
    "overcommit", "oversubscribe", "parsable", "partition", "prefer", "priority", "profile",
    "propagate", "qos", "quiet", "reboot", "requeue", "reservation", "resv-ports", "segment",
    "signal", "sockets-per-node", "spread-job", "stepmgr", "switches", "test-only",
    "thread-spec", "threads-per-core", "time", "time-min", "tmp", "tres-bind", "tres-per-task",
    "uid", "usage", "use-min-nodes", "verbose", "version", "wait", "wait-all-nodes", "wckey",
    "wrap",
})

_SRUN_24_11: frozenset[str] = frozenset({
    "account", "acctg-freq", "bb", "bbf", "bcast", "bcast-exclude", "begin", "chdir",
    "cluster-constraint", "clusters", "comment", "compress", "constraint", "container",
    "container-id", "contiguous", "core-spec", "cores-per-socket", "cpu-bind", "cpu-freq",
    "cpus-per-gpu", "cpus-per-task", "deadline", "delay-boot", "dependency", "disable-status",
    "distribution", "epilog", "error", "exact", "exclude", "exclusive", "export",
    "external-launcher", "extra", "extra-node-info", "gpu-bind", "gpu-freq", "gpus",
    "gpus-per-node", "gpus-per-socket", "gpus-per-task", "gres", "gres-flags", "help",
    "het-group", "hint", "hold", "immediate", "input", "job-name", "jobid", "kill-on-bad-exit",
    "label", "licenses", "mail-type", "mail-user", "mcs-label", "mem", "mem-bind",
    "mem-per-cpu", "mem-per-gpu", "mincpus", "mpi", "msg-timeout", "multi-prog", "network",
    "nice", "no-allocate", "no-kill", "nodefile", "nodelist", "nodes", "ntasks",
    "ntasks-per-core", "ntasks-per-gpu", "ntasks-per-node", "ntasks-per-socket",
    "oom-kill-step", "open-mode", "output", "overcommit", "overlap", "oversubscribe",
    "partition", "prefer", "preserve-env", "priority", "profile", "prolog", "propagate", "pty",
    "qos", "quiet", "quit-on-interrupt", "reboot", "relative", "reservation", "resv-ports",
    "segment", "send-libs", "signal", "slurmd-debug", "sockets-per-node", "spread-job",
    "stepmgr", "switches", "task-epilog", "task-prolog", "test-only", "thread-spec", "threads",
    "threads-per-core", "time", "time-min", "tmp", "treewidth", "tres-bind", "tres-per-task",
    "unbuffered", "usage", "use-min-nodes", "verbose", "version", "wait", "wckey", "x11",
})

_SBATCH_25_11: frozenset[str] = frozenset({
    "account", "acctg-freq", "array", "batch", "bb", "bbf", "begin", "chdir",
    "cluster-constraint", "clusters", "comment", "consolidate-segments", "constraint",
    "container", "container-id", "contiguous", "core-spec", "cores-per-socket", "cpu-freq",
    "cpus-per-gpu", "cpus-per-task", "deadline", "delay-boot", "dependency", "distribution",
    "error", "exclude", "exclusive", "export", "export-file", "extra", "extra-node-info",
    "get-user-env", "gid", "gpu-bind", "gpu-freq", "gpus", "gpus-per-node", "gpus-per-socket",
    "gpus-per-task", "gres", "gres-flags", "help", "hint", "hold", "ignore-pbs", "input",
    "job-name", "kill-on-invalid-dep", "licenses", "mail-type", "mail-user", "mcs-label", "mem",
    "mem-bind", "mem-per-cpu", "mem-per-gpu", "mincpus", "network", "nice", "no-kill",
    "no-requeue", "nodefile", "nodelist", "nodes", "ntasks", "ntasks-per-core",
    "ntasks-per-gpu", "ntasks-per-node", "ntasks-per-socket", "oom-kill-step", "open-mode",
    "output", "overcommit", "oversubscribe", "parsable", "partition", "prefer", "priority",
    "profile", "propagate", "qos", "quiet", "reboot", "requeue", "reservation", "resources",
    "resv-ports", "segment", "signal", "sockets-per-node", "spread-job", "spread-segments",
    "stepmgr", "switches", "test-only", "thread-spec", "threads-per-core", "time", "time-min",
    "tmp", "tres-bind", "tres-per-task", "uid", "usage", "use-min-nodes", "verbose", "version",
    "wait", "wait-all-nodes", "wckey", "wrap",
})

_SRUN_25_11: frozenset[str] = frozenset({
    "account", "acctg-freq", "bb", "bbf", "bcast", "bcast-exclude", "begin", "chdir",
    "cluster-constraint", "clusters", "comment", "compress", "consolidate-segments",
    "constraint", "container", "container-id", "contiguous", "core-spec", "cores-per-socket",
    "cpu-bind", "cpu-freq", "cpus-per-gpu", "cpus-per-task", "deadline", "delay-boot",
    "dependency", "disable-status", "distribution", "epilog", "error", "exact", "exclude",
    "exclusive", "export", "external-launcher", "extra", "extra-node-info", "gpu-bind",
    "gpu-freq", "gpus", "gpus-per-node", "gpus-per-socket", "gpus-per-task", "gres",
    "gres-flags", "help", "het-group", "hint", "hold", "immediate", "input", "job-name",
    "jobid", "kill-on-bad-exit", "label", "licenses", "mail-type", "mail-user", "mcs-label",
    "mem", "mem-bind", "mem-per-cpu", "mem-per-gpu", "mincpus", "mpi", "msg-timeout",
    "multi-prog", "network", "nice", "no-allocate", "no-kill", "nodefile", "nodelist", "nodes",
    "ntasks", "ntasks-per-core", "ntasks-per-gpu", "ntasks-per-node", "ntasks-per-socket",
    "oom-kill-step", "open-mode", "output", "overcommit", "overlap", "oversubscribe",
    "partition", "prefer", "preserve-env", "priority", "profile", "prolog", "propagate", "pty",
    "qos", "quiet", "quit-on-interrupt", "reboot", "relative", "reservation", "resources",
    "resv-ports", "segment", "send-libs", "signal", "slurmd-debug", "sockets-per-node",
    "spread-job", "spread-segments", "stepmgr", "switches", "task-epilog", "task-prolog",
    "test-only", "thread-spec", "threads", "threads-per-core", "time", "time-min", "tmp",
    "treewidth", "tres-bind", "tres-per-task", "unbuffered", "usage", "use-min-nodes",
    "verbose", "version", "wait", "wait-for-children", "wckey", "x11",
})



@dataclass(frozen=True)
class SlurmRelease:
    """What nemorun knows about one Slurm release's sbatch/srun command lines."""

    version: str  # "major.minor", as Slurm numbers its releases
    sbatch: frozenset[str]
    srun: frozenset[str]
    # --exclusive[=MODE] values besides a bare --exclusive
    exclusive_modes: tuple[str, ...]
    # option groups the release's sbatch refuses together ("fatal: ... mutually exclusive")
    conflicting: tuple[tuple[str, ...], ...]

    def options(self, program: str) -> frozenset[str]:
        return self.sbatch if program == "sbatch" else self.srun


# 22.05: every group checked against the real 22.05.8 binary with `sbatch --test-only`
# (tests/test_slurm_depth.py keeps it so); the help text only hints at the first group. Pairs it
# accepts (--exclusive with --oversubscribe, --hint with --ntasks-per-core) are not here.
_CONFLICTS_22_05: tuple[tuple[str, ...], ...] = (
    ("mem", "mem-per-cpu", "mem-per-gpu"),
    ("gpus-per-task", "ntasks-per-gpu"),
    ("ntasks-per-node", "ntasks-per-gpu"),
    ("cpus-per-task", "cpus-per-gpu"),
)
# 24.11 on: the fatal() calls of src/common/slurm_opt.c add --tres-per-task with --ntasks-per-gpu
# and --exclusive with --oversubscribe
_CONFLICTS_24_11 = (*_CONFLICTS_22_05, ("tres-per-task", "ntasks-per-gpu"), ("exclusive", "oversubscribe"))

RELEASES: dict[str, SlurmRelease] = {
    "22.05": SlurmRelease("22.05", SBATCH_OPTIONS, SRUN_OPTIONS, ("user", "mcs"), _CONFLICTS_22_05),
    "24.11": SlurmRelease("24.11", _SBATCH_24_11 | PYXIS_OPTIONS, _SRUN_24_11 | PYXIS_OPTIONS, ("user", "mcs", "topo"), _CONFLICTS_24_11),
    "25.11": SlurmRelease("25.11", _SBATCH_25_11 | PYXIS_OPTIONS, _SRUN_25_11 | PYXIS_OPTIONS, ("user", "mcs", "topo"), _CONFLICTS_24_11),
}
# the newest release nemorun has lists for: what executor.slurm_version defaults to
CURRENT = "25.11"
# options every known release has: a release between two known ones has them too
COMMON_SBATCH: frozenset[str] = frozenset.intersection(*(r.sbatch for r in RELEASES.values()))
COMMON_SRUN: frozenset[str] = frozenset.intersection(*(r.srun for r in RELEASES.values()))
_ANY_SBATCH: frozenset[str] = frozenset.union(*(r.sbatch for r in RELEASES.values()))
_ANY_SRUN: frozenset[str] = frozenset.union(*(r.srun for r in RELEASES.values()))


def release_key(version: str) -> str:
    """``"25.11.7"`` / ``"25.11"`` -> ``"25.11"`` (Slurm's options change with major.minor only)."""
    parts = str(version).strip().split(".")
    return ".".join(parts[:2])


def release(version: str) -> SlurmRelease:
    """The lists of ``version``; ValueError naming the known releases for any other."""
    key = release_key(version)
    if key not in RELEASES:
        raise ValueError(f"slurm_version={version!r} is not a Slurm release nemorun has option lists for; use one of {', '.join(RELEASES)}")
    return RELEASES[key]


def unknown_option(name: str, program: str, version: str | None = None) -> str | None:
    """Why ``name`` (no leading dashes) is not an exact long option of ``program`` (sbatch|srun)
    in release ``version``, or None. Without a version: of any release nemorun knows (a rendered
    artifact, whose release was checked when the config was composed)."""
    if version is None:
        known = _ANY_SBATCH if program == "sbatch" else _ANY_SRUN
    else:
        known = release(version).options(program)
    if name in known:
        return None
    import difflib

    prefixed = sorted(k for k in known if k.startswith(name)) if name else []
    if prefixed:
        full = ", ".join("--" + k for k in prefixed[:3])
        return f"'--{name}' is only a prefix of {program}'s {full}; use the full name"
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
    others = [v for v, r in RELEASES.items() if name in r.options(program)] if version is not None else []
    if others:
        note = f" (Slurm {', '.join(others)} {'has' if len(others) == 1 else 'have'} it; executor.slurm_version is {version})"
    else:
        note = f" (Slurm {release_key(version)})" if version is not None else ""
    return f"'--{name}' is not a {program} option" + (f"; did you mean '--{close[0]}'?" if close else "") + note
