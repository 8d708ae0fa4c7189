"""A dry run needs no backend SDK: every executor renders and validates with none of the extras
importable (docker, kubernetes, skypilot, leptonai, requests, fabric and their own deps).

Each case runs in a fresh interpreter whose ``sys.meta_path`` refuses those packages, so an
import anywhere on the dry-run path (targets, lowering, packaging, launchers, validation)
fails the case, whatever happens to be installed on the machine.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nemorun.targets import TARGET_MODULES
from tests.golden_cases import CASES

REFUSED = ("docker", "kubernetes", "sky", "leptonai", "requests", "fabric", "paramiko", "invoke")

_RUNNER = r"""
import importlib.abc, json, sys

REFUSED = frozenset(json.loads(sys.argv[1]))
imported = []

class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in REFUSED:
            imported.append(name)
            raise ImportError(f"test: {name} must not be imported by a dry run")
        return None

sys.meta_path.insert(0, Refuse())
from nemorun.cli import main
try:
    code = main(json.loads(sys.argv[2])) or 0
except SystemExit as exc:
    code = exc.code or 0
sys.stdout.flush()
print(json.dumps({"exit": code, "refused": imported}), file=sys.stderr)
"""

# one case per executor: the richest golden case, so launchers, packagers and secrets are on the path
PER_EXECUTOR = {
    "local": "local_torchrun",
    "slurm": "slurm_pyxis_two_nodes",
    "docker": "docker_gpus_shm_ipc_runtime",
    "kubeflow": "kubeflow_configmap_torchrun",
    "skypilot": "skypilot_train_torchrun",
    "dgxcloud": "dgxcloud_two_nodes_pvc_env",
    "lepton": "lepton_train_torchrun",
}


def test_every_executor_has_a_case() -> None:
    assert set(PER_EXECUTOR) == set(TARGET_MODULES)


@pytest.mark.parametrize("executor", sorted(PER_EXECUTOR))
def test_dry_run_imports_no_sdk(executor: str, cli_env: dict[str, str]) -> None:
    args = [*CASES[PER_EXECUTOR[executor]], "dryrun=true"]
    proc = subprocess.run([sys.executable, "-c", _RUNNER, json.dumps(REFUSED), json.dumps(args)],
                          capture_output=True, text=True, env=cli_env, timeout=120)  # fmt: skip
    *messages, summary = proc.stderr.strip().splitlines()
    result = json.loads(summary)
    assert result == {"exit": 0, "refused": []}, proc.stderr
    assert messages == []
    assert proc.stdout.startswith("# job ") and f"({executor}); submit: " in proc.stdout
    assert proc.stdout.count("==> ") >= 1


def test_the_refusal_is_real(cli_env: dict[str, str]) -> None:
    """The runner does refuse: a submission (which needs docker-py) fails on the import."""
    code = "import docker"
    proc = subprocess.run([sys.executable, "-c", _RUNNER.replace("from nemorun.cli import main", code + "\nfrom nemorun.cli import main"),
                           json.dumps(REFUSED), "[]"], capture_output=True, text=True, env=cli_env, timeout=60)  # fmt: skip
    assert proc.returncode != 0 and "docker must not be imported by a dry run" in proc.stderr


def test_run_kwargs_table_matches_docker_py() -> None:
    """nemorun's table of ``containers.run`` keywords is docker-py's public lists, plus what
    ``run``/``create`` handle themselves, less what docker-py sets."""
    containers = pytest.importorskip("docker.models.containers")
    from nemorun.targets import docker as target

    public = set(containers.RUN_CREATE_KWARGS) | set(containers.RUN_HOST_CONFIG_KWARGS)
    assert set(target.RUN_KWARGS) == (public - target.SET_BY_DOCKER_PY) | target._RUN_ONLY
    assert target.SET_BY_DOCKER_PY <= public
    assert not target._RUN_ONLY & public


def test_run_kwargs_table_agrees_with_docker_py_on_goldens() -> None:
    """Where docker-py (through the contract helper) accepts a golden's kwargs, so does the table;
    and a type docker-py refuses is refused by the table too."""
    pytest.importorskip("docker")
    from pathlib import Path

    from nemorun.targets import docker as target
    from tests.contracts import docker_create_errors

    root = Path(__file__).resolve().parent.parent / "golden"
    for case in sorted(c for c in CASES if c.startswith("docker_")):
        kwargs = json.loads((root / case / target.ARTIFACT).read_text())
        assert docker_create_errors(kwargs) == [] and target.run_kwargs_problems(kwargs) == [], case
        for bad in ({"shm_size": "lots"}, {"mem_limit": "1gigabyte"}, {"privileged": "yes"}, {"enviroment": {}}):
            assert docker_create_errors({**kwargs, **bad}) != [] and target.run_kwargs_problems({**kwargs, **bad}) != [], (case, bad)
