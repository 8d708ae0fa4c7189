"""Target ``slurm``: one batch job, submitted with ``sbatch --parsable``.

Artifacts: ``sbatch.sh`` (sorted ``#SBATCH`` header, environment, setup lines, one ``srun``
step; Pyxis ``--container-*`` options on the step when ``container_image`` is set, otherwise
``--chdir`` into the unpacked code), plus ``function.yaml`` for function tasks.

Where things live on the cluster is decided here from the IR only (no clock, no probing): the
remote job dir is ``<executor.job_dir | tunnel.job_dir>/<experiment>/<experiment id>/<job>``,
or the local record's job dir when neither is set (local tunnel on a login node).
"""
from __future__ import annotations

import posixpath
import re
import shlex
from typing import Any, Callable, Iterable, Mapping, Optional

from nemorun import launchers
from nemorun.command import FUNCTION_SPEC, function_artifacts, task_argv
from nemorun.errors import ArtifactError
from nemorun.ir import Job, Rendered
from nemorun.render import render_template, shquote
from nemorun.slurm_flags import unknown_option
from nemorun.validate import check_shell_syntax

SBATCH_SCRIPT = "sbatch.sh"
STDOUT, STDERR = "stdout.log", "stderr.log"
CODE_DIR = "code"
# srun step defaults (as NeMo-Run): end the step when one task fails; wait at most 60 s for the rest
_STEP_DEFAULTS: Mapping[str, Any] = {"kill-on-bad-exit": 1, "wait": 60}


def remote_job_dir(job: Job) -> str:
    base = job.executor.job_dir or job.executor.tunnel.job_dir
    if not base:
        return job.job_dir
    return posixpath.join(base, job.experiment_name, job.experiment_id, job.name)


def code_dir(job: Job) -> Optional[str]:
    """Where the shipped archive is unpacked on the cluster (None: no code is shipped)."""
    if not job.package.archive:
        return None
    return posixpath.join(remote_job_dir(job), CODE_DIR, job.package.workdir_subpath).rstrip("/")


def workdir(job: Job) -> str:
    return job.executor.container_workdir or code_dir(job) or remote_job_dir(job)


def sbatch_quote(value: Any) -> str:
    """Quote a value for an ``#SBATCH`` line. sbatch parses these itself (not the shell): it knows
    double quotes and backslash escapes only, and an unescaped ``#`` starts a comment even inside
    quotes (so ``nvcr.io#nvidia/pytorch`` must be written ``nvcr.io\\#nvidia/pytorch``)."""
    text = str(value)
    if "\n" in text or "\r" in text:
        raise ArtifactError(f"#SBATCH value {text!r} contains a newline, which sbatch cannot read")
    escaped = re.sub(r'([\\"#])', r"\\\1", text)
    return f'"{escaped}"' if not text or re.search(r"\s", text) else escaped


def option_words(options: Mapping[str, Any], quote: Callable[[Any], str]) -> list[str]:
    """``--name=value`` words sorted by name: True gives a bare ``--name``; False/None are left out."""
    out = []
    for name in sorted(options):
        value = options[name]
        if value is None or value is False:
            continue
        out.append(f"--{name}" if value is True else f"--{name}={quote(value)}")
    return out


def slurm_job_name(job: Job) -> str:
    if job.executor.job_name:
        return str(job.executor.job_name)
    return job.name if job.name == job.experiment_name else f"{job.experiment_name}-{job.name}"


def dependency(job: Job) -> Optional[str]:
    if job.dependency_type == "singleton":
        return "singleton"
    if not job.dependencies:
        return None
    return ":".join([job.dependency_type, *job.dependencies])


def sbatch_options(job: Job) -> dict[str, Any]:
    ex, res, remote = job.executor, job.resources, remote_job_dir(job)
    options: dict[str, Any] = {
        "job-name": slurm_job_name(job),
        "output": posixpath.join(remote, STDOUT),
        "error": posixpath.join(remote, STDERR),
        "nodes": res.nodes,
        "ntasks-per-node": res.tasks_per_node,
        "gpus-per-node": ex.gpus_per_node,
        "gpus-per-task": ex.gpus_per_task,
        "cpus-per-task": ex.cpus_per_task,
        "mem": ex.mem,
        "time": ex.time,
        "exclusive": ex.exclusive,
        "dependency": dependency(job),
        # a requeued attempt appends to the same log files instead of truncating them
        "requeue": job.retries > 0 or None,
        "open-mode": "append" if job.retries > 0 else None,
        "chdir": None if job.image else workdir(job),
    }
    for key in ("account", "partition", "qos", "constraint", "exclude", "reservation", "comment", "signal"):
        options[key] = getattr(ex, key)
    options.update({str(k).replace("_", "-"): v for k, v in ex.additional_parameters.items()})
    return options


def srun_options(job: Job) -> list[str]:
    ex, options = job.executor, dict(_STEP_DEFAULTS)
    if job.image:
        remote = remote_job_dir(job)
        options["container-image"] = job.image
        options["container-mounts"] = ",".join([*ex.container_mounts, f"{remote}:{remote}"])
        options["container-workdir"] = workdir(job)
        names = sorted(set(job.env) | set(ex.container_env))
        options["container-env"] = ",".join(names) or None
    return option_words(options, shquote) + [shquote(a) for a in ex.srun_args]


def render(job: Job) -> Rendered:
    remote = remote_job_dir(job)
    argv = launchers.wrap(job, task_argv(job, posixpath.join(remote, FUNCTION_SPEC)), form="slurm")
    script = render_template(
        "slurm/sbatch.sh.j2",
        job=job,
        sbatch_lines=option_words(sbatch_options(job), sbatch_quote),
        srun_options=srun_options(job),
        command=argv,
        submit_command=submit_command(remote),
    )
    return Rendered(
        target="slurm",
        job_name=job.name,
        artifacts={SBATCH_SCRIPT: script, **function_artifacts(job)},
        submit_command=submit_command(remote),
    )


def submit_command(remote: str) -> str:
    return f"sbatch --parsable {shquote(posixpath.join(remote, SBATCH_SCRIPT))}"


def _check_names(words: Iterable[str], program: str, where: str) -> None:
    for word in words:
        if word.startswith("--"):
            why = unknown_option(word[2:].split("=", 1)[0], program)
            if why:
                raise ArtifactError(f"{SBATCH_SCRIPT}: {where}: {why}")


def srun_commands(script: str) -> list[list[str]]:
    """The option words of every ``srun`` line of a script (up to the step's own command)."""
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True) if line.lstrip().startswith("srun") else []
        if words and words[0] == "srun":
            opts = []
            for w in words[1:]:
                if not w.startswith("-"):
                    break
                opts.append(w)
            found.append(opts)
    return found


def validate(rendered: Rendered) -> None:
    script = rendered.artifacts[SBATCH_SCRIPT]
    check_shell_syntax(SBATCH_SCRIPT, script)
    for line in script.splitlines():
        if line.startswith("#SBATCH"):
            _check_names(line.split()[1:2], "sbatch", line)
    for opts in srun_commands(script):
        _check_names(opts, "srun", "srun step")
