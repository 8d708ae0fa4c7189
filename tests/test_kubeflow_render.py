"""Kubeflow target and ConfigMap packager: goldens against the upstream contracts, key mapping, limits.

The TrainJob goldens are checked against the vendored Trainer CRD (v2.2+, strict: unknown fields
fail, plus its CEL rules) and the ConfigMaps against Kubernetes' ConfigMap rules, through
``tests.contracts``.
"""
from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from nemorun import configmap_packaging as cmp
from nemorun import lower
from nemorun.errors import ConfigError
from nemorun.plan import plan_config, render_job
from tests.conftest import ROOT
from tests.contracts import configmap_errors, trainjob_errors
from tests.golden_cases import CASES, KUBEFLOW_PROJECT
from tests.helpers import PINNED_SITE, compose_config, run_cli

KUBEFLOW_CASES = sorted(c for c in CASES if c.startswith("kubeflow_"))
BASE = ["executor=kubeflow", "executor.image=nvcr.io/nvidia/nemo:25.04"]


def _docs(case: str) -> tuple[dict, dict | None]:
    folder = ROOT / "golden" / case
    trainjob = yaml.safe_load((folder / "trainjob.yaml").read_text())
    cm = folder / "configmap.yaml"
    return trainjob, (yaml.safe_load(cm.read_text()) if cm.exists() else None)


def _render(overrides: list[str]) -> tuple[dict, dict]:
    rendered = plan_config(compose_config(overrides), PINNED_SITE).jobs[0].rendered
    return yaml.safe_load(rendered.artifacts["trainjob.yaml"]), yaml.safe_load(rendered.artifacts["configmap.yaml"])


def _pod_spec(trainjob: dict) -> dict:
    (patch,) = trainjob["spec"]["runtimePatches"]
    (rjob,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    return rjob["template"]["spec"]["template"]["spec"]


def test_there_are_kubeflow_goldens() -> None:
    assert {"kubeflow_function", "kubeflow_configmap_torchrun", "kubeflow_configmap_function"} <= set(KUBEFLOW_CASES)


@pytest.mark.parametrize("case", KUBEFLOW_CASES)
def test_golden_trainjob_passes_strict_crd_and_cel(case: str) -> None:
    trainjob, _ = _docs(case)
    assert trainjob_errors(trainjob, "v2.2+") == []


@pytest.mark.parametrize("case", KUBEFLOW_CASES)
def test_golden_configmap_passes_kubernetes_rules_and_is_mounted(case: str) -> None:
    trainjob, configmap = _docs(case)
    assert configmap is not None
    assert configmap_errors(configmap) == []
    spec = _pod_spec(trainjob)
    (volume,) = [v for v in spec["volumes"] if "configMap" in v]
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    assert configmap["metadata"]["namespace"] == trainjob["metadata"]["namespace"]
    keys = set(configmap.get("data", {})) | set(configmap.get("binaryData", {}))
    assert {i["key"] for i in volume["configMap"]["items"]} == keys
    assert all(cmp.decode_key(i["key"]) == i["path"] for i in volume["configMap"]["items"])
    (node,) = spec["containers"]
    assert node["name"] == "node"
    assert {"name": volume["name"], "mountPath": "/nemorun/code", "readOnly": True} in node["volumeMounts"]


def test_file_mode_runs_the_packaged_script_from_the_mount() -> None:
    trainjob, configmap = _docs("kubeflow_configmap_torchrun")
    script = trainjob["spec"]["trainer"]["command"][2]
    assert script.startswith("cd /nemorun/code\n")
    assert "torchrun " in script and " train.py --steps 10 'two words'" in script
    files = cmp.files_of(configmap)
    assert files["train.py"] == (KUBEFLOW_PROJECT / "train.py").read_bytes()
    assert files["src/my_pkg/config_base.yaml"] == (KUBEFLOW_PROJECT / "src/my_pkg/config_base.yaml").read_bytes()
    assert trainjob["spec"]["trainer"]["numNodes"] == 2 and trainjob["spec"]["trainer"]["numProcPerNode"] == 8


def test_function_mode_ships_function_yaml_in_the_configmap() -> None:
    trainjob, configmap = _docs("kubeflow_configmap_function")
    assert trainjob["spec"]["trainer"]["command"][2].endswith(
        "python /nemorun/code/.nemorun/nemorun_entry.py /nemorun/code/.nemorun/function.yaml")
    files = cmp.files_of(configmap)
    assert files[".nemorun/nemorun_entry.py"] == (ROOT / "compiler" / "nemorun" / "entry.py").read_bytes()  # no nemorun in the image
    spec = yaml.safe_load(files[".nemorun/function.yaml"])
    assert spec == {"target": "nemorun.examples.train.train", "params": {"steps": 20, "lr": 0.1, "seed": 0}}
    assert trainjob["spec"]["runtimeRef"] == {"apiGroup": "trainer.kubeflow.org", "kind": "TrainingRuntime", "name": "my-torch"}


def test_v21_pod_template_overrides_fail_on_v22_crd() -> None:
    """NeMo-Run's v2.1 shape (podTemplateOverrides) is pruned by a v2.2+ apiserver; strict mode says so."""
    trainjob, _ = _docs("kubeflow_configmap_torchrun")
    assert trainjob_errors(trainjob, "v2.1") != []  # runtimePatches is unknown before v2.2
    old = dict(trainjob, spec=dict(trainjob["spec"]))
    old["spec"].pop("runtimePatches")
    old["spec"]["podTemplateOverrides"] = [{"targetJobs": [{"name": "node"}], "spec": _pod_spec(trainjob)}]
    errors = trainjob_errors(old, "v2.2+")
    assert any("podTemplateOverrides" in e for e in errors), errors
    assert trainjob_errors(old, "v2.1") == []


_ALPHABET = "ab_-./ Zé0$~ü"


def test_key_mapping_round_trips_and_gives_valid_keys() -> None:
    from tests.contracts._kube import configmap_key_errors

    rng = random.Random(7)
    paths = ["src/my_pkg/__init__.py", ".nemorun/function.yaml", "..rc", "a./b", "x.-y", "v1.", "a b.py", "ü/ß.txt"]
    paths += ["/".join("".join(rng.choice(_ALPHABET) for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(1, 3))) for _ in range(3000)]
    for path in paths:
        key = cmp.encode_key(path)
        assert cmp.decode_key(key) == path, (path, key)
        if all(part not in ("", ".", "..") for part in path.split("/")):  # a relative file path
            assert configmap_key_errors(key) == [], (path, key)
    assert cmp.encode_key("src/my_pkg/model.py") == "src..my_pkg..model.py"


def test_binary_files_round_trip_through_binary_data(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "weights.bin").write_bytes(bytes(range(256)))
    trainjob, configmap = _render([*BASE, "task=hello", "packager=configmap", f"packager.base_path={tmp_path}", "packager.include_pattern=[*.py, '*.bin']"])
    assert "weights.bin" in configmap["binaryData"] and configmap_errors(configmap) == []
    assert cmp.files_of(configmap) == {"train.py": b"print('hi')\n", "weights.bin": bytes(range(256))}
    assert trainjob_errors(trainjob) == []


def test_oversize_configmap_names_the_largest_files(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print('hi')\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.py").write_text("#" * 700_000)
    (tmp_path / "data" / "medium.py").write_text("#" * 400_000)
    with pytest.raises(ConfigError) as err:
        _render([*BASE, "task=hello", "packager=configmap", f"packager.base_path={tmp_path}"])
    message = str(err.value)
    assert "over Kubernetes' 1 MiB limit" in message and "1.05 MiB" in message
    assert message.index("data/big.py (683.6 KiB)") < message.index("data/medium.py (390.6 KiB)")


def test_script_outside_the_package_is_refused(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text("print('hi')\n")
    with pytest.raises(ConfigError, match="task.script missing.py is not among the packaged files"):
        _render([*BASE, "task=hello", "task.inline=null", "task.script=missing.py", "packager=configmap", f"packager.base_path={tmp_path}"])


def test_packager_namespace_must_be_the_trainjobs() -> None:
    with pytest.raises(ConfigError, match="packager.namespace=other differs from the TrainJob's namespace default"):
        _render([*BASE, "task=hello", "packager=configmap", f"packager.base_path={KUBEFLOW_PROJECT}", "packager.namespace=other"])


def test_mismatched_pattern_and_folder_lists_are_refused() -> None:
    with pytest.raises(ConfigError, match="relative_path has 2 entries but include_pattern has 3"):
        _render([*BASE, "task=hello", "packager=configmap", f"packager.base_path={KUBEFLOW_PROJECT}", "packager.include_pattern=[a, b, c]", "packager.relative_path=[., src]"])


def test_cli_dry_run_prints_both_artifacts(cli_env: dict[str, str]) -> None:
    proc = run_cli([*BASE, "task=hello", "packager=configmap", f"packager.base_path={KUBEFLOW_PROJECT}", "dryrun=true"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert "==> trainjob.yaml <==" in proc.stdout and "==> configmap.yaml <==" in proc.stdout
    assert "kind: TrainJob" in proc.stdout and "kind: ConfigMap" in proc.stdout and "src..my_pkg..model.py" in proc.stdout


def test_cli_render_dir_writes_both_artifacts(cli_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli([*BASE, "task=train", "packager=configmap", f"packager.base_path={KUBEFLOW_PROJECT}", "dryrun=true", f"render_dir={out}"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["configmap.yaml", "trainjob.yaml"]
    assert trainjob_errors(yaml.safe_load((out / "trainjob.yaml").read_text())) == []
    assert configmap_errors(yaml.safe_load((out / "configmap.yaml").read_text())) == []


def test_cli_oversize_is_one_line_exit_2(cli_env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "huge.py").write_text("#" * 1_100_000)
    proc = run_cli([*BASE, "task=hello", "packager=configmap", f"packager.base_path={tmp_path}", "dryrun=true", f"render_dir={tmp_path / 'out'}"], env=cli_env)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("nemorun: error: ConfigMap ") and "huge.py (1.05 MiB)" in proc.stderr
    assert not (tmp_path / "out").exists()



@pytest.mark.parametrize("value", ["\n", "\n\n", "a\n", " \n", "a\nb", "\r\n", "x\n "])
def test_env_values_with_line_breaks_stay_valid_yaml(value: str) -> None:
    """Regression (found by the hostile-value property test): a value ending in a line break was
    dumped as a keep-chomped block (``|2+``) that PyYAML closes with a ``...`` marker, which made
    the indented trainjob.yaml invalid; such values are now double-quoted."""
    cfg = compose_config(CASES["kubeflow_function"])
    cfg.task.env = {"HOSTILE": value}
    rendered = render_job(lower.compile_job(cfg, PINNED_SITE))
    manifest = yaml.safe_load(rendered.artifacts["trainjob.yaml"])
    env = {e["name"]: e["value"] for e in manifest["spec"]["trainer"]["env"]}
    assert env["HOSTILE"] == value


def test_executable_files_keep_their_exec_bit_on_the_configmap_volume(tmp_path: Path) -> None:
    """A ConfigMap volume writes files 0644 unless an item names a mode: the shipped script and the
    tool it runs as ``./tools/helper.sh`` get 0755 (they start with ``#!``), other files keep the
    default. The kubelet's part is done here as it does it (item mode, else defaultMode, else
    0644), then the TrainJob's command really runs from the mount."""
    import os
    import stat
    import subprocess

    project, mount = tmp_path / "project", tmp_path / "pod" / "code"
    (project / "tools").mkdir(parents=True)
    (project / "run.sh").write_text('#!/bin/bash\nset -e\n./tools/helper.sh "$@"\n')
    (project / "tools" / "helper.sh").write_text('#!/bin/sh\necho "helper ran with $1"\n')
    (project / "notes.txt").write_text("not a program\n")
    trainjob, configmap = _render([*BASE, "task=hello", "task.inline=null", "task.script=run.sh", "task.args=[x]", "packager=configmap",
                                   f"packager.base_path={project}", "packager.include_pattern=['*.sh', '*.txt']", f"executor.code_dir={mount}"])  # fmt: skip
    assert trainjob_errors(trainjob, "v2.2+") == [] and configmap_errors(configmap) == []
    (volume,) = [v for v in _pod_spec(trainjob)["volumes"] if "configMap" in v]
    modes = {i["path"]: i.get("mode") for i in volume["configMap"]["items"]}
    assert modes == {"notes.txt": None, "run.sh": 0o755, "tools/helper.sh": 0o755}
    files = cmp.files_of(configmap)
    for item in volume["configMap"]["items"]:
        path = mount / item["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[cmp.decode_key(item["key"])])
        os.chmod(path, item.get("mode", volume["configMap"].get("defaultMode", 0o644)))
    assert stat.S_IMODE((mount / "notes.txt").stat().st_mode) == 0o644
    command = trainjob["spec"]["trainer"]["command"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == "helper ran with x\n", done.stderr


def test_only_what_execve_runs_is_marked_executable() -> None:
    assert cmp.is_executable(b"#!/usr/bin/env python3\n") and cmp.is_executable(b"\x7fELF\x02\x01")
    assert not any(cmp.is_executable(c) for c in (b"", b"# comment\n", b"print('hi')\n", b" #!/bin/sh\n"))
