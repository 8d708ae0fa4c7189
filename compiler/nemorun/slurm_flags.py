"""The exact long-option names of ``sbatch`` and ``srun`` (Slurm 22.05.8 with Pyxis 0.24.0).

Why a list of our own: getopt accepts any unambiguous *prefix* of a long option
(``--gpus-per-nod=8`` is taken as ``--gpus-per-node``), so sbatch never rejects a truncated name;
we want exact names only, checked before anything reaches a cluster.

Provenance (generated once, embedded so the installed package reads nothing outside itself):
- ``*_HELP``: every long option in ``sbatch --help`` / ``srun --help`` of Debian slurm-client
  22.05.8-4+deb12u3 with the Pyxis 0.24.0 SPANK plugin loaded
  (shared/schemas/cli/{sbatch,srun}-22.05.8-pyxis-0.24.0.help.txt; lines
  ``  [-X, ]--name[=ARG]``).
- ``*_MAN_ONLY``: long options documented in the same package's sbatch(1) / srun(1) man pages
  but missing from ``--help`` (``--open-mode``, ``--test-only``, ``--hint``, ...).
"""
from __future__ import annotations

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


def unknown_option(name: str, program: str) -> str | None:
    """Why ``name`` (no leading dashes) is not an exact long option of ``program`` (sbatch|srun), or None."""
    known = SBATCH_OPTIONS if program == "sbatch" else SRUN_OPTIONS
    if name in known:
        return None
    import difflib

    prefixed = sorted(k for k in known if k.startswith(name)) if name else []
    if prefixed:
        full = ", ".join("--" + k for k in prefixed[:3])
        return f"'--{name}' is only a prefix of {program}'s {full}; use the full name"
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75)
    return f"'--{name}' is not a {program} option" + (f"; did you mean '--{close[0]}'?" if close else "")
