"""Conformance matrix, generated from the targets' capability declarations.

Every executor (``nemorun.targets.TARGET_MODULES``) x packager (``conf/packager``) x launcher
(``conf/launcher``) x task kind x retries (0, 2) either renders artifacts in which each option
shows as the target's declared :class:`nemorun.capabilities.Evidence` says, or is refused with
ONE ``ConfigError`` line naming the option and the executor. Nothing in between: an option that
is accepted and then ignored fails here. A few refusals also go through the real CLI (exit 2,
one stderr line), including one that proves the packager is refused before any code is packed.

Speed: one compose per executor, packager and launcher option (Hydra composition is the slow
part); each combination swaps those group nodes into a copy and sets the task and retries.
"""
from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any, Optional

import pytest
from omegaconf import DictConfig

from nemorun import capabilities, lower
from nemorun.capabilities import Capabilities
from nemorun.errors import ConfigError
from nemorun.lower import Site, secret_ref_fields
from nemorun.packaging import Packages
from nemorun.schemas import all_schemas
from nemorun.targets import TARGET_MODULES, target_module
from tests.conftest import ROOT
from tests.helpers import compose_config, git, run_cli, write_files

EXECUTORS = list(TARGET_MODULES)
PACKAGERS = sorted(p.stem for p in (ROOT / "conf" / "packager").glob("*.yaml"))
LAUNCHERS = sorted(p.stem for p in (ROOT / "conf" / "launcher").glob("*.yaml"))
TASK_KINDS = ("inline", "script", "function")
RETRIES = (0, 2)

# what each executor needs to render at all (nothing about the options under test)
REQUIRED: dict[str, list[str]] = {
    "local": [],
    "slurm": [],
    "docker": ["executor.container_image=python:3.11-slim"],
    "kubeflow": ["executor.image=python:3.11-slim"],
    "skypilot": ["executor.managed=true"],  # SkyPilot restarts on errors in managed jobs only
    "lepton": ["executor.resource_shape=cpu.small", "executor.container_image=python:3.11-slim", "executor.node_group_id=ng-1"],
    "dgxcloud": ["executor.base_url=https://tenant.example.com/api/v1", "executor.app_id=ci", "executor.app_secret_env=DGX_APP_SECRET",
                 "executor.project_name=team-a", "executor.container_image=python:3.11-slim",
                 "executor.pvcs=[{claim_name: nemo-pvc, path: /nemo-workspace}]", "executor.pvc_nemo_run_dir=/nemo-workspace/nemo_run"],
}  # fmt: skip
# what each packager needs to pack the test repository
PACKAGER_OPTIONS: dict[str, list[str]] = {
    "pattern": ["packager.include_pattern=*.py"],
    "hybrid": ["+packager.sub_packagers.code={kind: git}"],
    "configmap": ["packager.include_pattern=*.py"],
}
INLINE = "echo conformance-ok"
SCRIPT = "conformance.py"
FUNCTION = "conformance_fn.run"


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("conformance") / "project"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write_files(root, {
        SCRIPT: "print('conformance-ok')\n",
        "conformance_fn.py": "def run(steps: int = 1) -> int:\n    return steps\n",
    })  # fmt: skip
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "init")
    return root


@pytest.fixture(scope="module")
def site(repo: Path) -> Site:
    return Site(experiment_id="20260101-000000-000000-conf", submit_dir=str(repo), home=str(repo.parent / "home"), python="python3")


@pytest.fixture(scope="module")
def groups() -> dict[tuple[str, str], DictConfig]:
    """One composed config per executor, packager and launcher option."""
    out = {("executor", e): compose_config([f"executor={e}", "task=hello", *REQUIRED[e]]) for e in EXECUTORS}
    out.update({("packager", p): compose_config(["task=hello", f"packager={p}", *PACKAGER_OPTIONS.get(p, [])]) for p in PACKAGERS})
    out.update({("launcher", n): compose_config(["task=hello", f"launcher={n}"]) for n in LAUNCHERS})
    return out


@pytest.fixture(scope="module")
def packages(site: Site) -> Packages:
    """Shared, so each packager config is packed once for the whole matrix."""
    return Packages(site)


def configure(groups: dict[tuple[str, str], DictConfig], executor: str, packager: str, launcher: str, kind: str, retries: int) -> DictConfig:
    cfg = groups[("executor", executor)].copy()
    cfg.packager = groups[("packager", packager)].packager
    cfg.launcher = groups[("launcher", launcher)].launcher
    cfg.name = "conformance"
    cfg.task.inline = INLINE if kind == "inline" else None
    cfg.task.script = SCRIPT if kind == "script" else None
    cfg.task.target = FUNCTION if kind == "function" else None
    cfg.executor.retries = retries
    return cfg


def refusal(caps: Capabilities, packager: str, launcher: str, kind: str, retries: int) -> Optional[tuple[str, ...]]:
    """What the declaration says must be refused: the words the one line must hold, else None."""
    if packager not in caps.packagers:
        return (f"packager={packager} is not supported by executor={caps.executor}",)
    if retries and not caps.retries:
        return (f"executor.retries={retries} is not supported by executor={caps.executor}", "retries=0")
    if launcher not in caps.launchers:
        return (f"launcher={launcher}", f"executor={caps.executor}")
    if kind not in caps.task_kinds:
        return (f"{kind} task", f"executor={caps.executor}")
    return None


def evidence(caps: Capabilities, job: Any, packager: str, launcher: str, kind: str, retries: int) -> list[str]:
    """The texts the artifacts must hold for every option to count as honoured."""
    ev = caps.evidence
    need = [{"inline": INLINE, "script": SCRIPT, "function": ev.function}[kind]]
    if retries:
        assert ev.retries, f"{caps.executor} declares retries ({caps.retries}) but no evidence of them"
        need += [t.format(n=retries) for t in ev.retries]
    if packager != "none":
        assert ev.code, f"{caps.executor} declares packager={packager} but no evidence of shipped code"
        pkg = job.package
        assert pkg.kind == packager and pkg.sha256, f"{caps.executor}: packager={packager} packed nothing"
        files = len(pkg.files) + 2 * (kind == "function")  # a ConfigMap also carries a function task's spec and entry point
        need += [t.format(sha256=pkg.sha256, archive=pkg.archive, job_dir=job.job_dir, files=files) for t in ev.code]
    if launcher != "none":
        need.append(ev.launchers[launcher])
    return need


MATRIX = list(itertools.product(EXECUTORS, PACKAGERS, LAUNCHERS, TASK_KINDS, RETRIES))


@pytest.mark.parametrize("executor", EXECUTORS)
def test_matrix(executor: str, groups: dict[tuple[str, str], DictConfig], packages: Packages, site: Site) -> None:
    """All combinations of one executor (one test per executor keeps the report readable)."""
    caps = capabilities.of(executor)
    module = target_module(executor)
    failures: list[str] = []
    for _, packager, launcher, kind, retries in [m for m in MATRIX if m[0] == executor]:
        combo = f"executor={executor} packager={packager} launcher={launcher} task={kind} retries={retries}"
        cfg = configure(groups, executor, packager, launcher, kind, retries)
        refused = refusal(caps, packager, launcher, kind, retries)
        try:
            lower.check_config(cfg)
            job = lower.compile_job(cfg, site, package=packages.package(cfg))
            rendered = module.render(job)
            module.validate(rendered)
        except ConfigError as exc:
            line = str(exc)
            if refused is None:
                failures.append(f"{combo}: refused although declared supported: {line}")
            elif "\n" in line or not all(w in line for w in refused):
                failures.append(f"{combo}: refusal {line!r} must be one line holding {refused}")
            continue
        if refused is not None:
            failures.append(f"{combo}: rendered although the declaration refuses it ({refused[0]})")
            continue
        text = "\n".join(rendered.artifacts.values())
        missing = [t for t in evidence(caps, job, packager, launcher, kind, retries) if t not in text]
        if missing:
            failures.append(f"{combo}: artifacts lack the evidence {missing}")
    assert not failures, f"{len(failures)} combination(s) do not conform:\n" + "\n".join(failures[:20])


def test_packager_refusal_is_the_same_line_before_packing_and_after_compiling(groups: dict[tuple[str, str], DictConfig], site: Site) -> None:
    cfg = configure(groups, "skypilot", "configmap", "none", "inline", 0)
    with pytest.raises(ConfigError) as before:
        Packages(site).package(cfg)
    with pytest.raises(ConfigError) as after:  # compiled without packing (a caller that skips packaging)
        lower.compile_job(cfg, site)
    assert str(before.value) == str(after.value) == capabilities.packager_message("skypilot", "configmap")
    assert str(before.value) == (
        "packager=configmap is not supported by executor=skypilot (it ships code with packager=git, packager=pattern, "
        "packager=hybrid or packager=none); use executor=kubeflow, or packager=none"
    )


def test_retries_refusal_names_the_executors_that_retry() -> None:
    assert capabilities.retries_message("kubeflow", 2) == (
        "executor.retries=2 is not supported by executor=kubeflow (a TrainJob's runtimePatches reach only the pod "
        "template; JobSet failurePolicy and Job backoffLimit are set by the (Cluster)TrainingRuntime); "
        "use executor=local, slurm, docker, skypilot, dgxcloud or lepton, or retries=0"
    )


@pytest.mark.parametrize("kind", EXECUTORS)
def test_declarations_match_the_schemas_and_config_groups(kind: str) -> None:
    caps = capabilities.of(kind)
    assert caps.executor == kind
    assert "none" in caps.packagers and set(caps.packagers) <= set(PACKAGERS)
    assert set(caps.launchers) <= set(LAUNCHERS) and set(caps.task_kinds) <= set(TASK_KINDS)
    schema = all_schemas()[f"_schema_executor_{kind}"]
    assert caps.secret_store == bool(secret_ref_fields(schema)), f"{kind}: secret_store must match the schema's secret env refs"
    assert bool(caps.retries) == bool(caps.evidence.retries), f"{kind}: retries and their evidence go together"
    assert capabilities.supports_arrays(kind) is caps.arrays


def test_a_declaration_without_none_is_refused() -> None:
    with pytest.raises(ValueError, match="packager=none"):
        Capabilities(executor="x", packagers=("git",))
    assert dataclasses.replace(capabilities.of("slurm"), arrays=False).arrays is False


@pytest.mark.parametrize(
    "args, line",
    [
        (["task=hello", "executor=kubeflow", "executor.image=x", "executor.retries=1"], "executor.retries=1 is not supported by executor=kubeflow"),
        (["task=hello", "packager=configmap", "executor=lepton", *REQUIRED["lepton"]], "packager=configmap is not supported by executor=lepton"),
        (["task=hello", "executor=docker", *REQUIRED["docker"], "packager=configmap"], "packager=configmap is not supported by executor=docker"),
    ],
    ids=["kubeflow-retries", "lepton-configmap", "docker-configmap"],
)
def test_cli_refuses_in_one_line(args: list[str], line: str, repo: Path, cli_env: dict[str, str]) -> None:
    proc = run_cli([*args, "dryrun=true"], env=cli_env, cwd=str(repo))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"nemorun: error: {line}"), proc.stderr
    assert proc.stdout == ""


def test_cli_refuses_the_packager_before_packing(repo: Path, cli_env: dict[str, str], nemorun_home: Path, tmp_path: Path) -> None:
    """A ConfigMap over its 1 MiB limit would fail ``packager=configmap`` while packing: the capability
    line comes first, and no archive is written."""
    big = tmp_path / "big"
    big.mkdir()
    write_files(big, {"a.py": "x = 1\n" * 400_000})
    proc = run_cli(["task=hello", "executor=skypilot", "packager=configmap", "packager.include_pattern=*.py", "dryrun=true"],
                   env=cli_env, cwd=str(big))
    assert proc.returncode == 2 and proc.stderr.startswith("nemorun: error: packager=configmap is not supported by executor=skypilot"), proc.stderr
    assert proc.stderr.count("\n") == 1
    assert not list(nemorun_home.rglob("*.tar.gz"))
