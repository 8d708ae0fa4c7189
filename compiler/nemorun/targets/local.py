"""Target ``local``: run the job on this machine.

Artifacts: ``launch.sh`` (a bash script that enters the working directory — with a packager,
the archive unpacked into ``<job dir>/code`` — exports the environment and runs the task under
its launcher), plus ``function.yaml`` and ``nemorun_entry.py`` for function tasks.

Retries live in ``launch.sh`` itself, not in a supervisor: nothing else outlives nemorun on this
machine, and the script shows exactly what will happen. After a failure the task runs again (in
the same unpacked code, same environment) up to ``retries`` times; each attempt appends
``attempt N exit RC`` to ``<job dir>/attempts``, which status reads. The script's exit code is
the last attempt's, so the submitter's exit-code file stays the one truth about the outcome.
"""
from __future__ import annotations

import os

from nemorun import launchers
from nemorun.capabilities import ARCHIVE_PACKAGERS, Capabilities, Evidence
from nemorun.command import FUNCTION_SPEC, function_artifacts, task_argv
from nemorun.ir import Job, Rendered
from nemorun.local_files import ATTEMPTS_FILE
from nemorun.render import render_template
from nemorun.validate import check_shell_syntax

LAUNCH_SCRIPT = "launch.sh"
# where a packaged job's archive is unpacked, inside the job folder
CODE_DIR = "code"

CAPABILITIES = Capabilities(
    executor="local",
    packagers=("none", *ARCHIVE_PACKAGERS),
    retries="launch.sh re-runs the task after a failure (attempts in the job folder)",
    evidence=Evidence(
        retries=('[ "$attempt" -gt {n} ]',),
        code=("sha256 {sha256}", "tar -xzf {archive}"),
        # locally torchrun runs as <job python> -m torch.distributed.run (nemorun.launchers.program)
        launchers={"torchrun": "-m torch.distributed.run", "ft": "ft_launcher"},
    ),
)


def render(job: Job) -> Rendered:
    argv = launchers.wrap(job, task_argv(job, os.path.join(job.job_dir, FUNCTION_SPEC)), "local")
    code_dir = os.path.join(job.job_dir, CODE_DIR) if job.package.archive else None
    run_dir = os.path.join(code_dir, job.package.workdir_subpath) if code_dir else job.workdir
    script = render_template(
        "local/launch.sh.j2", job=job, argv=argv, code_dir=code_dir, run_dir=os.path.normpath(run_dir),
        attempts_file=os.path.join(job.job_dir, ATTEMPTS_FILE),
    )
    artifacts = {LAUNCH_SCRIPT: script, **function_artifacts(job)}
    return Rendered(
        target="local",
        job_name=job.name,
        artifacts=artifacts,
        submit_command=f"bash {os.path.join(job.job_dir, LAUNCH_SCRIPT)}",
    )


def validate(rendered: Rendered) -> None:
    check_shell_syntax(LAUNCH_SCRIPT, rendered.artifacts[LAUNCH_SCRIPT])
