"""Target ``slurm``: one batch job, submitted with ``sbatch --parsable``.

Artifacts: ``sbatch.sh`` (sorted ``#SBATCH`` header, environment, setup lines, one ``srun``
step; Pyxis ``--container-*`` options on the step when ``container_image`` is set, otherwise
``--chdir`` into the unpacked code), plus ``function.yaml`` for function tasks.

Launchers (torchrun, ft) start ONCE PER NODE and spawn the ranks themselves: the step gets
``--nodes=N --ntasks=N --ntasks-per-node=1``, the launcher's rendezvous lines
(:func:`nemorun.launchers.setup_lines`) run in the batch script, and a multi-node command runs
as ``bash -c '<launcher command>'`` so ``$SLURM_NODEID`` expands on each node.

Packaged code: the submitter unpacks the archive into ``<remote job dir>/code`` before
``sbatch``; the archive itself is kept once per digest in ``<job_dir base>/archives/`` on the
cluster (:func:`remote_archive`), so the same code is not uploaded twice.

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
from nemorun.capabilities import ARCHIVE_PACKAGERS, Capabilities, Evidence
from nemorun.command import ENTRY_FILE, ENTRY_SOURCE, FUNCTION_SPEC, function_artifacts, function_spec_text, task_argv
from nemorun.errors import ArtifactError, ConfigError
from nemorun.ir import Job, Rendered
from nemorun.render import Raw, render_template, shjoin, shquote
from nemorun.slurm_flags import unknown_option
from nemorun.validate import check_shell_syntax

SBATCH_SCRIPT = "sbatch.sh"
STDOUT, STDERR = "stdout.log", "stderr.log"
CODE_DIR = "code"
ARRAY_STDOUT, ARRAY_STDERR = "stdout-%a.log", "stderr-%a.log"
ARCHIVES_DIR = "archives"
# nvidia-resiliency-ext's protocol: the workload creates $FAULT_TOL_FINISHED_FLAG_FILE once training
# has finished; the batch script then never requeues (and a requeued attempt finding it ends at once)
FT_FINISHED_FLAG = "ft_finished.flag"
FT_FLAG_VAR = "FAULT_TOL_FINISHED_FLAG_FILE"
# --signal=[[R][B]:]num[@time] (sbatch --help)
_SIGNAL = re.compile(r"^(?:(?P<flags>[RB]{1,2}):)?(?P<sig>[A-Za-z0-9]+)(?:@(?P<time>\d+))?$")
# srun step defaults (as NeMo-Run): end the step when one task fails; wait at most 60 s for the rest
_STEP_DEFAULTS: Mapping[str, Any] = {"kill-on-bad-exit": 1, "wait": 60}

CAPABILITIES = Capabilities(
    executor="slurm",
    packagers=("none", *ARCHIVE_PACKAGERS),
    retries="sbatch --requeue + a guard that requeues a failed attempt while SLURM_RESTART_COUNT < retries",
    # value-only sweeps arrive as ONE job with ir.Job.array_tasks (nemorun.sweep): --array, a log
    # pair and a function-<i>.yaml per array task, the step picking its spec by SLURM_ARRAY_TASK_ID
    arrays=True,
    native_dependencies=True,
    evidence=Evidence(retries=("#SBATCH --requeue", '"${{SLURM_RESTART_COUNT:-0}}" -lt {n} ]'),
                      code=("sha256 {sha256}", "{job_dir}/code")),
)  # fmt: skip


def remote_job_dir(job: Job) -> str:
    base = job.executor.job_dir or job.executor.tunnel.job_dir
    if not base:
        return str(job.job_dir)
    return posixpath.join(str(base), job.experiment_name, job.experiment_id, job.name)


def code_dir(job: Job) -> Optional[str]:
    """Where the shipped archive is unpacked on the cluster (None: no code is shipped)."""
    if not job.package.archive:
        return None
    return posixpath.join(remote_job_dir(job), CODE_DIR, job.package.workdir_subpath).rstrip("/")


def remote_archive(job: Job) -> Optional[str]:
    """Where the code archive is kept on the cluster: one file per digest under the job-dir base,
    shared by all experiments (an archive already there is not uploaded again). Without a base
    (local tunnel, job dirs in the local record) it is the record's own copy, already in place."""
    archive = job.package.archive
    base = job.executor.job_dir or job.executor.tunnel.job_dir
    if not archive or not base:
        return archive
    return posixpath.join(str(base), ARCHIVES_DIR, posixpath.basename(archive))


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
        "gpus-per-node": res.gpus_per_node,
        "gpus-per-task": res.gpus_per_task,
        "cpus-per-task": res.cpus_per_task,
        "mem": res.mem,
        "time": res.time,
        "exclusive": ex.exclusive,
        "dependency": dependency(job),
        # a requeued attempt appends to the same log files instead of truncating them
        "requeue": job.retries > 0 or None,
        "open-mode": "append" if job.retries > 0 else None,
        "chdir": None if job.image else workdir(job),
    }
    if job.array_tasks:
        parallel = f"%{job.array_parallelism}" if job.array_parallelism else ""
        options.update(array=f"0-{len(job.array_tasks) - 1}{parallel}",
                       output=posixpath.join(remote, ARRAY_STDOUT), error=posixpath.join(remote, ARRAY_STDERR))
    for key in ("account", "partition", "qos", "constraint", "exclude", "reservation", "comment"):
        options[key] = getattr(ex, key)
    options["signal"] = batch_signal(ex.signal)
    extra = {str(k).replace("_", "-"): v for k, v in ex.additional_parameters.items()}
    if extra.get("array") not in (None, False):
        if job.array_tasks:
            raise ConfigError("additional_parameters.array: this job is already a sweep array; drop one of them")
        # a user array: every task writes its own pair, never one shared stdout.log
        options.update(output=posixpath.join(remote, ARRAY_STDOUT), error=posixpath.join(remote, ARRAY_STDERR))
    options.update(extra)
    return options


def batch_signal(spec: Optional[str]) -> Optional[str]:
    """``--signal`` for the BATCH SHELL only (``B:``): torchrun and ft_launcher have no handler for
    SIGUSR1 and die of it, so the step must not get it; the script's trap stops the step with
    SIGTERM (which both launchers turn into a clean stop) and requeues (:func:`stop_signal`)."""
    if spec is None:
        return None
    m = _SIGNAL.match(spec)
    if not m:
        raise ConfigError(f"signal={spec!r} is not [R:]SIGNAL[@SECONDS] (e.g. USR1@90)")
    flags = "".join(sorted(set((m["flags"] or "") + "B")))
    return f"{flags}:{m['sig']}" + (f"@{m['time']}" if m["time"] else "")


def stop_signal(job: Job) -> Optional[str]:
    """The signal name the batch script traps (None: no --signal asked for)."""
    spec = job.executor.signal
    m = _SIGNAL.match(spec) if spec else None
    return m["sig"].upper() if m else None


def ft_flag_file(job: Job) -> Optional[str]:
    return posixpath.join(remote_job_dir(job), FT_FINISHED_FLAG) if job.launcher.kind == "ft" else None


def srun_options(job: Job) -> list[str]:
    ex, options = job.executor, dict(_STEP_DEFAULTS)
    if job.launcher.kind != "none":  # one launcher per node; it spawns the ranks itself
        nodes = job.resources.nodes
        options.update({"nodes": nodes, "ntasks": nodes, "ntasks-per-node": 1})
    if job.image:
        remote = remote_job_dir(job)
        options["container-image"] = job.image
        options["container-mounts"] = ",".join([*(m.colon_form() for m in job.mounts), f"{remote}:{remote}"])
        options["container-workdir"] = workdir(job)
        names = sorted(set(job.env) | set(ex.container_env) | ({FT_FLAG_VAR} if ft_flag_file(job) else set()))
        options["container-env"] = ",".join(names) or None
    return option_words(options, shquote) + [shquote(a) for a in ex.srun_args]


def step_command(job: Job, remote: str) -> list[str]:
    """The step's command: the task under its launcher. Words the node's shell must expand
    (``$head_node``, ``$SLURM_NODEID``) need a shell on each node, not the batch script's."""
    spec = posixpath.join(remote, FUNCTION_SPEC)
    if job.array_tasks:  # expanded on the node: each array task runs its own function-<i>.yaml
        spec = Raw(shquote(posixpath.join(remote, "function-")) + '"$SLURM_ARRAY_TASK_ID".yaml')
    argv = launchers.wrap(job, task_argv(job, spec, entry_path=posixpath.join(remote, ENTRY_FILE)), form="slurm")
    if any(isinstance(word, Raw) for word in argv):
        return ["bash", "-c", shjoin(argv)]
    return argv


def render(job: Job) -> Rendered:
    remote = remote_job_dir(job)
    script = render_template(
        "slurm/sbatch.sh.j2",
        job=job,
        sbatch_lines=option_words(sbatch_options(job), sbatch_quote),
        srun_options=srun_options(job),
        launcher_setup=launchers.setup_lines(job, "slurm"),
        code_dir=code_dir(job),
        command=step_command(job, remote),
        submit_command=submit_command(remote),
        ft_flag_file=ft_flag_file(job),
        ft_flag_var=FT_FLAG_VAR,
        stop_signal=stop_signal(job),
    )
    return Rendered(
        target="slurm",
        job_name=job.name,
        artifacts={SBATCH_SCRIPT: script, **(array_artifacts(job) if job.array_tasks else function_artifacts(job))},
        submit_command=submit_command(remote),
    )


def array_artifacts(job: Job) -> dict[str, str]:
    specs = {f"function-{i}.yaml": function_spec_text(t.task) for i, t in enumerate(job.array_tasks)}
    return {**specs, ENTRY_FILE: ENTRY_SOURCE}


def submit_command(remote: str) -> str:
    return f"sbatch --parsable {shquote(posixpath.join(remote, SBATCH_SCRIPT))}"


def _check_names(words: Iterable[str], program: str, where: str) -> None:
    for word in words:
        if word.startswith("--"):
            why = unknown_option(word[2:].split("=", 1)[0], program)
            if why:
                raise ArtifactError(f"{SBATCH_SCRIPT}: {where}: {why}")


def srun_commands(script: str) -> list[list[str]]:
    """The option words of every ``srun`` line of a script (up to the step's own command).

    Tokens are read lazily from the ``srun`` word on, so a quoted argument spanning lines
    later in the command does not matter."""
    text = script.replace("\\\n", " ")
    found = []
    for m in re.finditer(r"^[ \t]*srun[ \t]", text, flags=re.M):
        lexer = shlex.shlex(text[m.end():], posix=True, punctuation_chars=False)
        lexer.whitespace_split = True
        opts = []
        for word in iter(lexer.get_token, None):
            if not word.startswith("-"):
                break
            opts.append(word)
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
