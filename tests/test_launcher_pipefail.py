"""The rendered launcher setup lines survive ``set -euo pipefail``, run many times.

Why: a ``producer | head -n1`` in a setup line is a race — ``head`` exits after one line, the
producer may then die of SIGPIPE, and with ``pipefail`` that exit 141 ends the job script before
the command starts. A short node list hides the race (one write fits in the pipe buffer); a long
one (more than the 64 KiB pipe buffer) turns it into a certainty, so each form runs with a
realistic and a long sample. The lines run in real bash; Slurm's ``scontrol`` is a stub function.
"""
from __future__ import annotations

import dataclasses
import re
import subprocess

import pytest

from nemorun import launchers
from nemorun.lower import compile_job
from nemorun.ir import Job
from tests.helpers import PINNED_SITE, compose_config

RUNS = 100
LONG = 8000  # node addresses: about 90 KiB, more than a pipe buffer

# (environment a node of that platform sees, head_node the setup must derive from it)
SAMPLES: dict[str, list[tuple[dict[str, str], str]]] = {
    "slurm": [({"SLURM_JOB_NODELIST": "node[00001-00002]", "NODES": "2"}, "node00001"),
              ({"SLURM_JOB_NODELIST": f"node[00001-{LONG:05d}]", "NODES": str(LONG)}, "node00001")],
    "skypilot": [({"SKYPILOT_NODE_IPS": "10.0.0.1\n10.0.0.2", "SKYPILOT_NODE_RANK": "1"}, "10.0.0.1"),
                 ({"SKYPILOT_NODE_IPS": "\n".join(f"10.0.{i // 250}.{i % 250 + 1}" for i in range(LONG)),
                   "SKYPILOT_NODE_RANK": "7"}, "10.0.0.1")],
    "kubernetes": [({"PET_MASTER_ADDR": "job-node-0-0.job", "PET_MASTER_PORT": "29500", "PET_NODE_RANK": "1"}, "job-node-0-0.job")],
    "dgxcloud": [({"MASTER_ADDR": "wl-master-0", "MASTER_PORT": "23456", "RANK": "1"}, "wl-master-0")],
    "lepton": [({"LEPTON_JOB_NAME": "job", "LEPTON_SUBDOMAIN": "job-svc", "LEPTON_JOB_WORKER_INDEX": "1"}, "job-0.job-svc")],
}
# `scontrol show hostnames` prints one name per line, like the real one; `show node` prints nothing
SCONTROL_STUB = """scontrol() {
  if [ "$1 $2" = "show hostnames" ]; then seq -f 'node%05g' 1 "$NODES"; fi
}"""


def _job(nodes: int) -> Job:
    job = compile_job(compose_config(["task=train", "launcher=torchrun"]), PINNED_SITE)
    return dataclasses.replace(job, resources=dataclasses.replace(job.resources, nodes=nodes))


def _script(lines: list[str]) -> str:
    """RUNS subshells, each with the setup under `set -euo pipefail`; stop at the first failure.

    The status is read with `rc=$?` on its own line: a `( ... ) || ...` would switch `set -e`
    off inside the subshell and hide exactly the failure looked for.
    """
    body = "\n    ".join(lines)
    return f"""{SCONTROL_STUB}
for i in $(seq 1 {RUNS}); do
  ( set -euo pipefail
    {body}
    printf '%s\\n' "$head_node" )
  rc=$?
  if [ "$rc" -ne 0 ]; then echo "run $i of {RUNS}: setup exited $rc" >&2; exit "$rc"; fi
done
"""


@pytest.mark.parametrize("form", sorted(SAMPLES))
def test_setup_lines_never_die_of_sigpipe(form: str) -> None:
    lines = launchers.setup_lines(_job(2), form)  # type: ignore[arg-type]
    assert lines, f"{form}: a multi-node torchrun job needs setup lines"
    for env, head in SAMPLES[form]:
        proc = subprocess.run(["bash", "-c", _script(lines)], env={"PATH": "/usr/bin:/bin", **env},
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{form} ({len(env.get('SKYPILOT_NODE_IPS', ''))} bytes of IPs): {proc.stderr}"
        assert proc.stdout.splitlines() == [head] * RUNS, proc.stdout[:200]


def test_no_form_takes_a_first_line_with_head() -> None:
    """Every form's setup, for every launcher kind: no `head` in a pipe anywhere."""
    for kind in ("torchrun", "ft"):
        job = compile_job(compose_config(["task=train", f"launcher={kind}"]), PINNED_SITE)
        job = dataclasses.replace(job, resources=dataclasses.replace(job.resources, nodes=2))
        for form in ("slurm", "kubernetes", "lepton", "dgxcloud", "skypilot"):
            text = "\n".join(launchers.setup_lines(job, form))  # type: ignore[arg-type]
            assert not re.search(r"(?<!\|)\|\s*head\b", text), (kind, form, text)
