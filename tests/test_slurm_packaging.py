"""Packaged code on Slurm: the archive from the experiment record reaches the cluster through the
tunnel, is unpacked into ``<job dir>/code`` before ``sbatch``, and the job runs from there; an
archive already on the cluster (same digest) is not uploaded again. Real git repositories, the
real Slurm test cluster and sshd (tests/fixtures/slurm_cluster.py); no mocks.
"""
from __future__ import annotations

import json
import os
import re
import sys
import uuid
from pathlib import Path

import pytest

from nemorun.lower import compile_job
from nemorun.ir import Package
from nemorun.plan import render_job
from nemorun.store import ExperimentRecord
from nemorun.targets.slurm import remote_archive
from tests.fixtures.slurm_cluster import SlurmCluster
from tests.helpers import PINNED_SITE, compose_config, run_cli, git, write_files
from tests.test_slurm_cluster import ssh, terminal, wait_until

SHA = "ab" * 32
ARCHIVE = f"{PINNED_SITE.home}/experiments/hello/{PINNED_SITE.experiment_id}/code-{SHA[:16]}.tar.gz"


def _render(overrides: list[str]) -> str:
    job = compile_job(compose_config(["executor=slurm", "task=hello", *overrides]), PINNED_SITE,
                      package=Package(kind="git", archive=ARCHIVE, sha256=SHA))  # fmt: skip
    return render_job(job).artifacts["sbatch.sh"]


def test_bare_job_runs_from_the_unpacked_code() -> None:
    text = _render(["executor.job_dir=/shared/runs"])
    job_dir = f"/shared/runs/hello/{PINNED_SITE.experiment_id}/hello"
    assert f"#SBATCH --chdir={job_dir}/code\n" in text
    assert f"# Code: git archive, sha256 {SHA}, unpacked into {job_dir}/code before submission.\n" in text


def test_pyxis_job_mounts_the_job_dir_and_works_in_the_code() -> None:
    text = _render(["executor.job_dir=/shared/runs", "executor.container_image='nvcr.io#nvidia/pytorch:24.05-py3'"])
    job_dir = f"/shared/runs/hello/{PINNED_SITE.experiment_id}/hello"
    assert "--chdir" not in text
    assert f"  --container-mounts={job_dir}:{job_dir} \\\n" in text
    assert f"  --container-workdir={job_dir}/code \\\n" in text


def test_archive_is_kept_once_per_digest_under_the_job_dir_base() -> None:
    cfg = compose_config(["executor=slurm", "task=hello", "executor/tunnel=ssh", "executor.tunnel.host=login",
                          "executor.tunnel.job_dir=/lustre/me/nemorun"])  # fmt: skip
    job = compile_job(cfg, PINNED_SITE, package=Package(kind="git", archive=ARCHIVE, sha256=SHA))
    assert remote_archive(job) == f"/lustre/me/nemorun/archives/code-{SHA[:16]}.tar.gz"
    local = compile_job(compose_config(["executor=slurm", "task=hello"]), PINNED_SITE, package=Package(kind="git", archive=ARCHIVE, sha256=SHA))
    assert remote_archive(local) == ARCHIVE  # no base: job dirs live in the record, next to the archive


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git repository whose src/work.py writes a file; a unique stamp gives each test its own digest."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write_files(root, {
        "src/work.py": (
            "import os, sys\n"
            "stamp = open('stamp.txt').read().strip()\n"
            "with open(sys.argv[1], 'w') as f:\n"
            "    f.write(f'{stamp} {os.getcwd()}\\n')\n"
            "print('wrote', sys.argv[1], flush=True)\n"
        ),
        "src/stamp.txt": f"stamp-{uuid.uuid4().hex}\n",
        "README.md": "not shipped with subpath=src\n",
    })  # fmt: skip
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


def _run(project: Path, result: Path, extra: list[str], env: dict[str, str]) -> tuple[ExperimentRecord, dict]:
    """Submit src/work.py with packager=git (subpath src) from ``project``; wait; return the record
    and the code facts the submitter stored in the handle."""
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    args = ["task=hello", "task.inline=null", "task.script=work.py", f"task.args=[{result}]", "packager=git",
            "packager.subpath=src", f"+executor.env_vars.PATH={path}", *extra]  # fmt: skip
    r = run_cli(["executor=slurm", *args], env=env, cwd=str(project))  # it packs the repository it starts in
    assert r.returncode == 0, r.stderr
    record = ExperimentRecord(Path(re.search(r" in (\S+)\n", r.stdout).group(1)))  # type: ignore[union-attr]
    handle = record.job("hello").handle_obj()
    assert handle is not None
    status = wait_until(handle, terminal)
    assert status.exit_code == 0, Path(handle.data["stderr"]).read_text()
    return record, dict(handle.data["code"])


@pytest.mark.slurm
def test_git_package_over_ssh_uploaded_once(project: Path, slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    stamp = (project / "src" / "stamp.txt").read_text().strip()
    results = [slurm_cluster.jobs_dir / f"result-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    record, code = _run(project, results[0], ssh(slurm_cluster), cli_env)
    job_dir = Path(record.job("hello").handle_obj().data["job_dir"])  # type: ignore[union-attr]
    manifest = json.loads((record.path / "code.json").read_text())
    assert code == {"archive": str(slurm_cluster.jobs_dir / "nemorun" / "archives" / manifest["archive"]),
                    "sha256": manifest["sha256"], "uploaded": True}  # fmt: skip
    assert results[0].read_text() == f"{stamp} {job_dir / 'code'}\n"
    assert not (job_dir / "code" / "README.md").exists()

    archive = Path(code["archive"])
    os.utime(archive, (1_000_000_000, 1_000_000_000))  # a re-upload would give it a new mtime
    record2, code2 = _run(project, results[1], ssh(slurm_cluster), cli_env)
    assert (code2["archive"], code2["uploaded"]) == (code["archive"], False)
    assert archive.stat().st_mtime == 1_000_000_000
    job_dir2 = Path(record2.job("hello").handle_obj().data["job_dir"])  # type: ignore[union-attr]
    assert job_dir2 != job_dir and results[1].read_text() == f"{stamp} {job_dir2 / 'code'}\n"
    assert not list(archive.parent.glob("*.part-*"))


@pytest.mark.slurm
@pytest.mark.parametrize("with_base", [True, False], ids=["job-dir-base", "in-record"])
def test_git_package_over_local_tunnel(with_base: bool, project: Path, slurm_cluster: SlurmCluster, cli_env: dict[str, str]) -> None:
    """With a job-dir base the archive is copied there through the local tunnel; without one the
    job dir is in the local record and the record's own archive is unpacked in place."""
    result = slurm_cluster.jobs_dir / f"result-{uuid.uuid4().hex[:8]}"
    base = slurm_cluster.jobs_dir / "local-base"
    record, code = _run(project, result, [f"executor.job_dir={base}"] if with_base else [], cli_env)
    manifest = json.loads((record.path / "code.json").read_text())
    expected = base / "archives" / manifest["archive"] if with_base else record.path / manifest["archive"]
    assert (code["archive"], code["uploaded"]) == (str(expected), with_base)
    job_dir = Path(record.job("hello").handle_obj().data["job_dir"])  # type: ignore[union-attr]
    assert job_dir.is_relative_to(base) is with_base
    assert result.read_text().split() == [(project / "src" / "stamp.txt").read_text().strip(), str(job_dir / "code")]
