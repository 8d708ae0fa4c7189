"""The kubeflow render is a pure function of the IR: ``packager=configmap`` files are read by the
packaging step (nemorun.packaging, before compiling) and travel in ``ir.Package.files``.

Rendered objects are checked offline against the vendored Trainer CRD (strict + CEL) and
Kubernetes' ConfigMap rules (``tests.contracts``).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from nemorun import configmap_packaging as cmp
from nemorun.lower import Site, compile_job
from nemorun.errors import ConfigError
from nemorun.ir import Package
from nemorun.packaging import Packages
from nemorun.plan import render_job
from tests.contracts import configmap_errors, trainjob_errors
from tests.helpers import PINNED_SITE, compose_config, run_cli

BASE = ["executor=kubeflow", "executor.image=nvcr.io/nvidia/nemo:25.04", "task=hello", "task.inline=null", "task.script=train.py"]
GHOSTS = {"train.py": b"print('never on disk')\n", "src/ghost/model.py": b"W = 1\n", "blob.bin": bytes(range(256))}


def test_render_uses_only_the_files_in_the_ir(tmp_path: Path) -> None:
    """The packager points at a folder that does not exist and the IR names files that were never
    written: the render must still produce exactly those files (it reads nothing)."""
    missing = tmp_path / "nowhere"
    cfg = compose_config([*BASE, "packager=configmap", f"packager.base_path={missing}", "launcher=torchrun"])
    package = Package(kind="configmap", files=tuple(sorted(GHOSTS.items())))
    job = compile_job(cfg, PINNED_SITE, package=package)
    rendered = render_job(job)
    trainjob = yaml.safe_load(rendered.artifacts["trainjob.yaml"])
    configmap = yaml.safe_load(rendered.artifacts["configmap.yaml"])
    assert cmp.files_of(configmap) == GHOSTS and not missing.exists()
    assert trainjob_errors(trainjob, "v2.2+") == [] and configmap_errors(configmap) == []
    assert trainjob["spec"]["trainer"]["command"][2].startswith("cd /nemorun/code\n")
    other = render_job(dataclasses.replace(job, package=dataclasses.replace(package, files=(("train.py", b"x = 2\n"),))))
    assert cmp.files_of(yaml.safe_load(other.artifacts["configmap.yaml"])) == {"train.py": b"x = 2\n"}


def test_render_refuses_a_job_compiled_without_its_package() -> None:
    job = compile_job(compose_config([*BASE, "packager=configmap", "packager.base_path=/nowhere"]), PINNED_SITE)
    with pytest.raises(ConfigError, match="compiled without its package"):
        render_job(job)


def test_packaging_collects_and_resume_reuses_the_recorded_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for name, data in GHOSTS.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    cfg = compose_config([*BASE, "packager=configmap", f"packager.base_path={src}", "packager.include_pattern=[*.py, '*.bin']"])
    site = Site(experiment_id="20260101-000000-000000-abcd", submit_dir=str(tmp_path), home=str(tmp_path / "home"))
    packages = Packages(site)
    package = packages.package(cfg)
    assert dict(package.files) == GHOSTS and packages.package(cfg) is package  # packed once
    record = Path(site.experiment_dir("hello"))
    record.mkdir(parents=True)
    packages.commit(record)
    (src / "train.py").write_text("changed after launch\n")
    assert Packages(site, record_dir=record).package(cfg) == package  # resume: the recorded files, not the new ones


def test_cli_dry_run_oversize_is_one_line_and_records_nothing(cli_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "big.py").write_text("#" * 800_000)
    (tmp_path / "small.py").write_text("#" * 300_000)
    proc = run_cli([*BASE, "task.script=big.py", "packager=configmap", f"packager.base_path={tmp_path}", "dryrun=true"], env=cli_env)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("nemorun: error: ConfigMap nemorun-code-")
    assert "over Kubernetes' 1 MiB limit; largest: big.py (781.2 KiB), small.py (293.0 KiB)" in proc.stderr
    assert not (Path(cli_env["NEMORUN_HOME"]) / "experiments").exists(), "a rejected dry run records nothing"
