"""Ask a Slurm cluster which sbatch/srun options it has, when it runs another release than
``executor.slurm_version`` says.

Why at submission: the config was checked against the option lists of the release the user
named (:mod:`nemorun.slurm_flags`), but a login node may run an older or newer Slurm. Its
``sbatch`` would refuse an option it does not know only after nemorun wrote the job there (or, for
an ``srun`` option, when the job starts, after queueing). So before anything is written the
cluster says its version; if that differs, every ``#SBATCH`` / ``srun`` option of the rendered
script must be one the cluster's own ``--help`` lists (or one its release documents outside
``--help``, such as ``--open-mode``). The answer is cached per cluster under
``NEMORUN_HOME/cache/slurm/`` for :data:`TTL_S` seconds: one probe per cluster and day.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

from nemorun import slurm_flags, tunnels
from nemorun.errors import ConfigError, SubmitError, one_line
from nemorun.ir import Job, Rendered
from nemorun.store import atomic_write, nemorun_home
from nemorun.targets.slurm import SBATCH_SCRIPT, srun_commands

TTL_S = 24 * 3600
_SEP = "@@nemorun-slurm-probe@@"
PROBE = f"sbatch --version && echo {_SEP} && sbatch --help && echo {_SEP} && srun --help"
# `  -A, --account=name` / `      --bb=<spec>`: the option lines of Slurm's --help (and Pyxis's)
_HELP_OPTION = re.compile(r"^ {2,6}(?:-[A-Za-z0-9],?\s+)?--([A-Za-z0-9][-A-Za-z0-9_]*)", re.M)
_VERSION = re.compile(r"\bslurm(?:-wlm)?\s+(\d+\.\d+(?:\.\d+)?)", re.I)


@dataclass(frozen=True)
class ClusterOptions:
    """What one cluster's sbatch/srun said about themselves."""

    cluster: str
    version: str
    sbatch: tuple[str, ...]
    srun: tuple[str, ...]
    checked_at: float

    def accepts(self, program: str) -> frozenset[str]:
        """Names the cluster's getopt takes: its --help, plus what its release (or, for a release
        nemorun has no lists for, every known release) documents outside --help. Pyxis options
        count only when the cluster's --help shows them (the plugin is loaded there)."""
        listed = frozenset(self.sbatch if program == "sbatch" else self.srun)
        known = slurm_flags.RELEASES.get(slurm_flags.release_key(self.version))
        documented = known.options(program) if known else (
            slurm_flags.COMMON_SBATCH if program == "sbatch" else slurm_flags.COMMON_SRUN)
        return listed | (documented - slurm_flags.PYXIS_OPTIONS)


def parse_probe(cluster: str, text: str, now: float) -> ClusterOptions:
    """The probe's output (version, sbatch --help, srun --help) as ClusterOptions."""
    parts = text.split(_SEP)
    match = _VERSION.search(parts[0]) if len(parts) == 3 else None
    if not match:
        raise SubmitError(f"cannot read sbatch --version / --help on {cluster}: {one_line(text)[:200]}")
    names = [tuple(sorted(set(_HELP_OPTION.findall(p)))) for p in parts[1:]]
    return ClusterOptions(cluster, match.group(1), names[0], names[1], now)


def cluster_key(tunnel: tunnels.Tunnel) -> str:
    """One cluster per login (user@host:port); on this machine, per slurm.conf."""
    if tunnel.label == "localhost":
        return f"localhost:{os.environ.get('SLURM_CONF', '/etc/slurm/slurm.conf')}"
    return tunnel.label


def _cache_file(key: str) -> Path:
    return nemorun_home() / "cache" / "slurm" / (hashlib.sha256(key.encode()).hexdigest()[:16] + ".json")


_MEMO: dict[str, ClusterOptions] = {}


def cluster_options(tunnel: tunnels.Tunnel, now: Optional[float] = None) -> ClusterOptions:
    """The cluster's options: from this process, the cache, or one probe over ``tunnel``."""
    key, now = cluster_key(tunnel), time.time() if now is None else now
    cached = _MEMO.get(key)
    path = _cache_file(key)
    if cached is None:
        try:
            data = json.loads(path.read_text())
            if not (isinstance(data["version"], str) and all(isinstance(data[k], list) for k in ("sbatch", "srun"))):
                raise TypeError("damaged")  # a string here would be read as one option per character, for a day
            cached = ClusterOptions(data["cluster"], data["version"], tuple(data["sbatch"]), tuple(data["srun"]), float(data["checked_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            cached = None
    if cached is not None and cached.cluster == key and now - cached.checked_at < TTL_S:
        _MEMO[key] = cached
        return cached
    r = tunnel.run(["sh", "-c", PROBE])
    if r.rc != 0:
        raise SubmitError(f"asking sbatch/srun on {tunnel.label} for their options failed: {one_line(r.stderr or r.stdout) or f'exit {r.rc}'}")
    fresh = parse_probe(key, r.stdout, now)
    atomic_write(path, json.dumps(asdict(fresh), indent=1))
    _MEMO[key] = fresh
    return fresh


def used_options(script: str) -> list[tuple[str, str]]:
    """(program, name) of every ``#SBATCH --name`` and ``srun --name`` of a rendered script."""
    used = [("sbatch", line.split()[1][2:].split("=", 1)[0]) for line in script.splitlines()
            if line.startswith("#SBATCH --")]
    for opts in srun_commands(script):
        used += [("srun", word[2:].split("=", 1)[0]) for word in opts if word.startswith("--")]
    return used


def unknown_on_cluster(found: ClusterOptions, script: str) -> Optional[tuple[str, str]]:
    """The first (program, option) of ``script`` the cluster does not have, or None."""
    accepted = {p: found.accepts(p) for p in ("sbatch", "srun")}
    for program, name in used_options(script):
        if name not in accepted[program]:
            return program, name
    return None


def check_cluster(tunnel: tunnels.Tunnel, job: Job, render: Callable[[Job], Rendered]) -> None:
    """Refuse (one line, exit 2) a script using an option the cluster's Slurm does not have, when
    the cluster runs another release than ``executor.slurm_version``; nothing to ask otherwise."""
    version = str(getattr(job.executor, "slurm_version", slurm_flags.CURRENT))
    found = cluster_options(tunnel)
    if slurm_flags.release_key(found.version) == slurm_flags.release_key(version):
        return
    missing = unknown_on_cluster(found, render(job).artifacts[SBATCH_SCRIPT])  # rendered only when asked
    if missing:
        program, name = missing
        raise ConfigError(
            f"job {job.name}: {program} on {tunnel.label} (Slurm {found.version}) has no option --{name}, which "
            f"executor.slurm_version={version} allows; drop it or set executor.slurm_version={slurm_flags.release_key(found.version)}"
        )
