"""The one-way pipeline behind the CLI and the Python API:
check config → compile (IR) → render → validate → [dry run: show] → record → submit → record.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, TextIO

from omegaconf import DictConfig, OmegaConf

from nemorun import lower
from nemorun.errors import NemorunError, SubmitError, one_line
from nemorun import packaging
from nemorun.ir import Job, Rendered
from nemorun.states import AppState, JobStatus
from nemorun.store import ExperimentRecord, JobRecord, atomic_write, nemorun_home, new_experiment_id
from nemorun.submitters import echo, follow, submitter_module
from nemorun.targets import target_module


@dataclass(frozen=True)
class PlannedJob:
    job: Job
    rendered: Rendered


@dataclass(frozen=True)
class LaunchResult:
    experiment_id: str
    experiment_name: str
    planned: tuple[PlannedJob, ...]
    record: Optional[ExperimentRecord] = None
    # exit code of the job when the launch waited for it
    exit_code: Optional[int] = None


def default_site(experiment_id: Optional[str] = None) -> lower.Site:
    return lower.Site(
        experiment_id=experiment_id or new_experiment_id(),
        submit_dir=os.getcwd(),
        home=str(nemorun_home()),
        python=sys.executable,
    )


def render_job(job: Job) -> Rendered:
    module = target_module(job.target)
    rendered: Rendered = module.render(job)
    module.validate(rendered)
    return rendered


def plan(cfg: DictConfig, site: lower.Site, packages: Optional[packaging.Packages] = None) -> tuple[PlannedJob, ...]:
    """``packages`` packs the code once per distinct packager (a fresh one by default, so every
    caller ships what the config asks for); commit it into the record after creating it."""
    packages = packages or packaging.Packages(site)
    if cfg.get("experiment") is not None:  # several named tasks (nemorun.multitask); sweeps: nemorun.sweep
        from nemorun.experiment import check_dependencies
        from nemorun.multitask import plan_tasks

        return tuple(e.planned for e in check_dependencies(plan_tasks(cfg, [], site, packages)))
    lower.check_config(cfg)
    job = lower.compile_job(cfg, site, package=packages.package(cfg))
    return (PlannedJob(job, render_job(job)),)


def format_dryrun(planned: Sequence[PlannedJob]) -> str:
    out: list[str] = []
    for p in planned:
        out.append(f"# job {p.job.name} ({p.rendered.target}); submit: {p.rendered.submit_command}\n")
        for name, text in p.rendered.artifacts.items():
            out.append(f"==> {name} <==\n")
            out.append(text if text.endswith("\n") else text + "\n")
    return "".join(out)


def write_render_dir(planned: Sequence[PlannedJob], render_dir: str) -> None:
    root = Path(render_dir).expanduser()
    for p in planned:
        d = root if len(planned) == 1 else root / p.job.name
        for name, text in p.rendered.artifacts.items():
            atomic_write(d / name, text, mode=0o755 if name.endswith(".sh") else 0o644)


def submit_planned(record: ExperimentRecord, p: PlannedJob) -> JobRecord:
    """Record → submit → record. The record says 'rendered' while the submission is in flight."""
    job_rec = JobRecord(name=p.job.name, target=p.rendered.target)
    job_rec.artifacts = record.write_artifacts(p.job.name, p.rendered.artifacts)
    record.save_job(job_rec)
    try:
        handle = submitter_module(p.rendered.target).submit(p.rendered, p.job)
    except NemorunError as exc:
        job_rec.phase, job_rec.error, job_rec.state = "failed-to-submit", one_line(str(exc)), AppState.FAILED.value
        record.save_job(job_rec)
        raise
    job_rec.phase, job_rec.handle = "submitted", handle.to_dict()
    job_rec.state, job_rec.submitted_at = AppState.SUBMITTED.value, time.time()
    record.save_job(job_rec)
    return job_rec


def launch_config(
    cfg: DictConfig,
    overrides: Sequence[str],
    *,
    site: Optional[lower.Site] = None,
    out: TextIO = sys.stdout,
) -> LaunchResult:
    site = site or default_site()
    if cfg.get("experiment") is not None:
        from nemorun import multitask

        return multitask.launch(cfg, overrides, site, out)
    packages = packaging.Packages(site)
    planned = plan(cfg, site, packages)
    name = planned[0].job.experiment_name
    if cfg.get("render_dir"):
        write_render_dir(planned, str(cfg.render_dir))
    if cfg.dryrun:
        out.write(format_dryrun(planned))
        return LaunchResult(site.experiment_id, name, planned)

    record = ExperimentRecord.create(
        home=Path(site.home),
        name=name,
        experiment_id=site.experiment_id,
        target=planned[0].rendered.target,
        config_yaml=OmegaConf.to_yaml(cfg),
        overrides=overrides,
        submit_dir=site.submit_dir,
        job_names=[p.job.name for p in planned],
    )
    packages.commit(record.path)
    out.write(f"experiment {name}/{site.experiment_id} ({planned[0].rendered.target}) in {record.path}\n")
    for p in planned:
        try:
            job_rec = submit_planned(record, p)
        except SubmitError as exc:
            raise SubmitError(f"job {p.job.name} was not submitted: {one_line(str(exc))} (record: {record.path})") from exc
        handle = job_rec.handle_obj()
        assert handle is not None
        out.write(f"  job {p.job.name}: submitted as {handle.id}; logs: {record.job_dir(p.job.name)}\n")
    out.flush()
    from nemorun import catalog

    catalog.refresh(Path(site.home), record)

    exit_code = None
    if cfg.wait:
        exit_code = wait_and_stream(record, planned[-1].job.name)
    return LaunchResult(site.experiment_id, name, planned, record, exit_code)


def wait_and_stream(record: ExperimentRecord, job_name: str) -> int:
    """Stream a job's stdout/stderr to ours until it ends; return its exit code."""
    job_rec = record.job(job_name)
    handle = job_rec.handle_obj()
    assert handle is not None
    echo(follow(handle))
    status: JobStatus = submitter_module(handle.backend).status([handle])[handle.id]
    record.record_status(job_name, status)
    if status.exit_code is not None:
        return status.exit_code
    return 0 if status.state is AppState.SUCCEEDED else 1
