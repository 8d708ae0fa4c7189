"""Target ``local``: run the job on this machine.

Artifacts: ``launch.sh`` (a bash script that enters the working directory, exports the
environment and runs the task), plus ``function.yaml`` for function tasks.
"""
from __future__ import annotations

import os

from nemorun.command import FUNCTION_SPEC, function_artifacts, task_argv
from nemorun.ir import Job, Rendered
from nemorun.render import render_template
from nemorun.validate import check_shell_syntax

LAUNCH_SCRIPT = "launch.sh"


def render(job: Job) -> Rendered:
    argv = task_argv(job, os.path.join(job.job_dir, FUNCTION_SPEC))
    script = render_template("local/launch.sh.j2", job=job, argv=argv)
    artifacts = {LAUNCH_SCRIPT: script, **function_artifacts(job)}
    return Rendered(
        target="local",
        job_name=job.name,
        artifacts=artifacts,
        submit_command=f"bash {os.path.join(job.job_dir, LAUNCH_SCRIPT)}",
    )


def validate(rendered: Rendered) -> None:
    check_shell_syntax(LAUNCH_SCRIPT, rendered.artifacts[LAUNCH_SCRIPT])
