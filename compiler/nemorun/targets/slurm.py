"""Target ``slurm``: one batch job, submitted with ``sbatch --parsable``.

Artifacts: ``sbatch.sh`` (sorted ``#SBATCH`` header, environment, setup lines, one ``srun``
step; Pyxis ``--container-*`` options on the step when ``container_image`` is set, otherwise
``--chdir`` into the unpacked code), plus ``function.yaml`` for function tasks.

Launchers (torchrun, ft) start ONCE PER NODE and spawn the ranks themselves: the step gets
``--nodes=N --ntasks=N --ntasks-per-node=1``, the launcher's rendezvous lines
(:func:`nemorun.launchers.setup_lines`) run in the batch script, and a multi-node command runs
as ``bash -c '<launcher command>'`` so ``$SLURM_NODEID`` expands on each node.

Allocations (an experiment's tasks sharing ``allocation:``, or a sweep's jobs under a top-level
``allocation=NAME``; :mod:`nemorun.allocations`) arrive as ONE job with ``ir.Job.steps`` and
render from ``slurm/steps.sh.j2``: every task its own ``srun`` step in the background (``--overlap`` in a job group, ``--het-group=i`` in a heterogeneous job
whose ``#SBATCH hetjob`` components carry each task's resources), its own log files and exit
file; the first failing step stops the others, and a requeue restarts the whole job except a
step cancelled by ``exp cancel ID TASK`` (its marker file outlives the attempt).

Packaged code: the submitter unpacks the archive into ``<remote job dir>/code`` before
``sbatch``; the archive itself is kept once per digest in ``<job_dir base>/archives/`` on the
cluster (:func:`remote_archive`), so the same code is not uploaded twice.

Where things live on the cluster is decided here from the IR only (no clock, no probing): the
remote job dir is ``<executor.job_dir | tunnel.job_dir>/<experiment>/<experiment id>/<job>``,
or the local record's job dir when neither is set (local tunnel on a login node).
"""
from __future__ import annotations

import dataclasses
import posixpath
import re
import shlex
from typing import Any, Callable, Iterable, Mapping, Optional

from nemorun import launchers
from nemorun.capabilities import ARCHIVE_PACKAGERS, Capabilities, Evidence
from nemorun.command import (
    ENTRY_FILE, ENTRY_SOURCE, FUNCTION_SPEC, TASK_TABLE, function_artifacts, function_spec_text, task_argv, task_table_text,
)
from nemorun.errors import ArtifactError, ConfigError
from nemorun.ir import Job, Rendered, Step
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
    # value-only sweeps arrive as ONE job with ir.Job.array_tasks (nemorun.plan): --array, a log
    # pair per array task and ONE tasks.jsonl, the step reading its row by SLURM_ARRAY_TASK_ID
    arrays=True,
    native_dependencies=True,
    # an experiment's allocation arrives as ONE job with ir.Job.steps (nemorun.allocations): a job
    # group (srun --overlap steps) or a heterogeneous job (#SBATCH hetjob, srun --het-group=i)
    allocations=True,
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
        # a limit of at least the task count limits nothing (and %4294967296 is not a valid array for sbatch)
        limits = job.array_parallelism is not None and job.array_parallelism < len(job.array_tasks)
        parallel = f"%{job.array_parallelism}" if limits else ""
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
        options["gpus-per-node"] = launchers.slurm_step_gpus_per_node(job)  # not the inherited per-task binding
    if job.image:
        remote = remote_job_dir(job)
        options["container-image"] = job.image
        options["container-mounts"] = ",".join([*(m.colon_form() for m in job.mounts), f"{remote}:{remote}"])
        options["container-workdir"] = workdir(job)
        names = sorted(set(job.env) | set(ex.container_env) | ({FT_FLAG_VAR} if ft_flag_file(job) else set()))
        options["container-env"] = ",".join(names) or None
    return option_words(options, shquote) + [shquote(a) for a in ex.srun_args]


def array_task_spec(remote: str) -> Raw:
    """Where array task ``$SLURM_ARRAY_TASK_ID`` finds its function spec (written by its batch script)."""
    return Raw(shquote(posixpath.join(remote, "function-")) + '"$SLURM_ARRAY_TASK_ID".yaml')


def step_command(job: Job, remote: str, spec_name: str = FUNCTION_SPEC) -> list[str]:
    """The step's command: the task under its launcher. Words the node's shell must expand
    (``$head_node``, ``$SLURM_NODEID``) need a shell on each node, not the batch script's."""
    spec = posixpath.join(remote, spec_name)
    if job.array_tasks:  # expanded on the node: array task i runs the spec its batch script took from row i
        spec = array_task_spec(remote)
    argv = launchers.wrap(job, task_argv(job, spec, entry_path=posixpath.join(remote, ENTRY_FILE)), form="slurm")
    if any(isinstance(word, Raw) for word in argv):
        return ["bash", "-c", shjoin(argv)]
    return argv


def render(job: Job) -> Rendered:
    if job.steps:
        return render_steps(job)
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
        task_table=posixpath.join(remote, TASK_TABLE) if job.array_tasks else None,
        task_spec=array_task_spec(remote) if job.array_tasks else None,
    )
    return Rendered(
        target="slurm",
        job_name=job.name,
        artifacts={SBATCH_SCRIPT: script, **(array_artifacts(job) if job.array_tasks else function_artifacts(job))},
        submit_command=submit_command(remote),
    )


def array_artifacts(job: Job) -> dict[str, str]:
    """One table for the whole array, not a file per task: 10,000 tasks are one write and one upload.
    Its rows are made one task at a time (``array_tasks`` makes each when read)."""
    return {TASK_TABLE: task_table_text(t.task for t in job.array_tasks), ENTRY_FILE: ENTRY_SOURCE}


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
    for m in re.finditer(r"^[ \t]*(?:exec[ \t]+)?srun[ \t]", text, flags=re.M):
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
    if "\r\n" in script:  # sbatch: "Batch script contains DOS line breaks", after the record was made
        line = script[:script.index("\r\n")].count("\n") + 1
        raise ArtifactError(f"{SBATCH_SCRIPT} line {line}: a value holds a CR LF line break (\\r\\n), which sbatch refuses "
                            "in a batch script; drop the \\r (a function task's params may hold it: they travel as JSON)")
    check_shell_syntax(SBATCH_SCRIPT, script)
    for line in script.splitlines():
        if line.startswith("#SBATCH"):
            _check_names(line.split()[1:2], "sbatch", line)
    for opts in srun_commands(script):
        _check_names(opts, "srun", "srun step")


# -- allocations: several tasks as steps of ONE job (ir.Job.steps, nemorun.allocations) -------
#
# Each step runs in a subshell of the batch script with its own environment and launcher
# rendezvous, started in the background; the script then watches them all. The first step that
# fails stops the others (a server step would otherwise keep the job alive until its time limit)
# and its status is the job's; each step's exit status is written to exit-<task>.txt (what
# status reads without accounting) and its output goes to its own stdout-/stderr-<task>.log.

STEP_STDOUT, STEP_STDERR, STEP_EXIT = "stdout-{step}.log", "stderr-{step}.log", "exit-{step}.txt"
# written by nemorun before it cancels ONE step: the script does not count that step as a failure
STEP_CANCELLED = "cancelled-{step}"
STEP_SPEC = "function-{step}.yaml"
# sbatch options of ONE component of a heterogeneous job; the rest are the whole job's, given
# once in the first component (nemorun.allocations checks the tasks agree on them)
COMPONENT_OPTIONS = ("nodes", "ntasks-per-node", "gpus-per-node", "gpus-per-task", "cpus-per-task", "mem", "partition",
                     "account", "qos", "constraint", "exclude", "reservation", "exclusive")
_NODELIST = '"$SLURM_JOB_NODELIST"'


def step_file(pattern: str, step: str) -> str:
    return pattern.format(step=step)


def step_job(job: Job, step: Step) -> Job:
    """The allocation seen as one of its steps, for the single-step helpers (srun options,
    launcher forms). Its name stays the allocation's, so job dir and code dir are the job's."""
    return dataclasses.replace(job, task=step.task, env=step.env, resources=step.resources, launcher=step.launcher,
                               executor=step.executor, image=step.image, mounts=step.mounts, steps=())


def host_workdir(job: Job) -> str:
    """Where the batch script and bare steps run (container steps get --container-workdir)."""
    return code_dir(job) or remote_job_dir(job)


def component_lines(job: Job) -> list[str]:
    """``#SBATCH`` words. A job group asks for one allocation (the tasks' common resources); a
    heterogeneous job's first component carries the job-wide options and each further one,
    after a ``hetjob`` line, only its own resources and additional_parameters."""
    if not job.heterogeneous:
        return option_words({**sbatch_options(job), "chdir": host_workdir(job)}, sbatch_quote)
    lines: list[str] = []
    for step in job.steps:
        options = sbatch_options(step_job(job, step))
        if step.het_group == 0:
            lines += option_words({**options, "chdir": host_workdir(job)}, sbatch_quote)
            continue
        extra = {str(k).replace("_", "-") for k in step.executor.additional_parameters}
        lines += ["hetjob", *option_words({k: v for k, v in options.items() if k in COMPONENT_OPTIONS or k in extra}, sbatch_quote)]
    return lines


def step_srun_options(job: Job, step: Step) -> list[str]:
    """The step's own words (name, log files, component or ``--overlap``: job-group steps share
    the allocation's CPUs and GPUs and run at once) followed by what a lone job's step gets."""
    remote = remote_job_dir(job)
    own: dict[str, Any] = {
        "job-name": step.name,
        "output": posixpath.join(remote, step_file(STEP_STDOUT, step.name)),
        "error": posixpath.join(remote, step_file(STEP_STDERR, step.name)),
        "open-mode": "append" if job.retries > 0 else None,
    }
    if step.het_group is None:
        own["overlap"] = True
    else:
        own["het-group"] = step.het_group
    return option_words(own, shquote) + srun_options(step_job(job, step))


def step_setup(job: Job, step: Step) -> list[str]:
    """The launcher's rendezvous lines for this step: in a heterogeneous job, from the node list
    of the step's own component (``SLURM_JOB_NODELIST_HET_GROUP_<i>``)."""
    lines = launchers.setup_lines(step_job(job, step), "slurm")
    if step.het_group is None or not lines:
        return lines
    if not any(_NODELIST in line for line in lines):
        raise ArtifactError(f"step {step.name}: the Slurm rendezvous lines no longer read {_NODELIST}")
    return [line.replace(_NODELIST, f'"$SLURM_JOB_NODELIST_HET_GROUP_{step.het_group}"') for line in lines]


def render_steps(job: Job) -> Rendered:
    remote = remote_job_dir(job)
    ft = any(s.launcher.kind == "ft" for s in job.steps)
    steps = [
        {
            "step": step,
            "env": dict(step.env),
            "setup": step_setup(job, step),
            "srun_options": step_srun_options(job, step),
            "command": step_command(step_job(job, step), remote, step_file(STEP_SPEC, step.name)),
            "exit_file": posixpath.join(remote, step_file(STEP_EXIT, step.name)),
            "cancel_file": posixpath.join(remote, step_file(STEP_CANCELLED, step.name)),
        }
        for step in job.steps
    ]
    script = render_template(
        "slurm/steps.sh.j2",
        job=job,
        sbatch_lines=component_lines(job),
        steps=steps,
        code_dir=code_dir(job),
        submit_command=submit_command(remote),
        ft_flag_file=posixpath.join(remote, FT_FINISHED_FLAG) if ft else None,
        ft_flag_var=FT_FLAG_VAR,
        stop_signal=stop_signal(job),
    )
    functions = [s for s in job.steps if s.task.kind == "function"]
    artifacts = {step_file(STEP_SPEC, s.name): function_spec_text(s.task) for s in functions}
    return Rendered(
        target="slurm",
        job_name=job.name,
        artifacts={SBATCH_SCRIPT: script, **artifacts, **({ENTRY_FILE: ENTRY_SOURCE} if functions else {})},
        submit_command=submit_command(remote),
    )
