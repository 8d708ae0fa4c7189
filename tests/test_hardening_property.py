"""Property: hostile strings in any value that reaches an artifact either are refused (ConfigError)
or arrive byte for byte, and the shell artifacts parse and run nothing but the intended command."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nemorun import lower
from nemorun.errors import ConfigError
from nemorun.plan import render_job
from tests.golden_cases import CASES
from tests.helpers import PINNED_SITE, compose_config

_SPECIAL = list("ab $`\"'\\{}()#;|&<>\n\t\r*?~!./-=%\u00e9\u20ac\U0001F600")
# ${ is OmegaConf interpolation syntax in every config value, hostile or not, and a whole value of
# ??? is OmegaConf's "missing" (refused as such: test_missing_literal_set_from_python_is_one_line)
HOSTILE = st.one_of(
    st.text(alphabet=st.sampled_from(_SPECIAL), max_size=24),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=16),
    st.sampled_from(["$(touch pwned)", "`touch pwned`", "}\ntouch pwned\nf() {", "'; touch pwned; '", "..", "../../x", "a/b", "#"]),
).filter(lambda s: "${" not in s and s != "???")

_STUB = """#!{python}
import json, os, sys
with open(os.environ["NEMORUN_PROBE_OUT"], "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "env": dict(os.environ)}}) + "\\n")
"""

_STRUCTURED = {"docker": "docker_minimal", "kubeflow": "kubeflow_function", "skypilot": "skypilot_hello_k8s",
               "lepton": "lepton_hello", "dgxcloud": "dgxcloud_hello"}


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _run(script: Path, cwd: Path, path_dir: Path) -> list[dict[str, Any]]:
    out = cwd / "probe.jsonl"
    env = {"PATH": f"{path_dir}:/usr/bin:/bin", "NEMORUN_PROBE_OUT": str(out), "HOME": str(cwd)}
    proc = subprocess.run(["bash", str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def _stub(where: Path, name: str) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    path = where / name
    path.write_text(_STUB.format(python=sys.executable))
    path.chmod(0o755)
    return path


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arg=HOSTILE, env_value=HOSTILE, executor_value=HOSTILE)
def test_local_launch_script_runs_only_the_task(arg: str, env_value: str, executor_value: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stub = _stub(root / "bin", "python-stub")
        cfg = compose_config(["task=hello", "task.inline=null", "task.script=t.py"])
        cfg.task.args = [arg, "--last"]
        cfg.task.env = {"HOSTILE": env_value}
        cfg.executor.env_vars = {"FROM_EXECUTOR": executor_value}
        cfg.executor.python = str(stub)
        cfg.executor.workdir = str(root)
        job = lower.compile_job(cfg, PINNED_SITE)
        rendered = render_job(job)
        script = root / "launch.sh"
        script.write_text(rendered.artifacts["launch.sh"])
        calls = _run(script, root, root / "bin")
        assert [c["argv"] for c in calls] == [["t.py", arg, "--last"]]
        assert calls[0]["env"]["HOSTILE"] == env_value and calls[0]["env"]["FROM_EXECUTOR"] == executor_value
        assert sorted(p.name for p in root.iterdir()) == ["bin", "launch.sh", "probe.jsonl"]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arg=HOSTILE, env_value=HOSTILE, mount=HOSTILE, setup=HOSTILE)
def test_slurm_script_parses_and_passes_values_through(arg: str, env_value: str, mount: str, setup: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _stub(root / "bin", "srun")
        cfg = compose_config(["executor=slurm", "executor.partition=batch", "task=hello", "task.inline=null", "task.script=t.sh"])
        cfg.task.args = [arg]
        cfg.task.env = {"HOSTILE": env_value}
        cfg.executor.setup_lines = [f": {shlex.quote(setup)}"]  # setup lines are shell code: quoted, it is data
        try:
            cfg.executor.container_mounts = [f"/d:{mount}"]
            job = lower.compile_job(cfg, PINNED_SITE)
        except ConfigError:
            cfg.executor.container_mounts = []
            job = lower.compile_job(cfg, PINNED_SITE)
        rendered = render_job(job)
        script = root / "sbatch.sh"
        script.write_text(rendered.artifacts["sbatch.sh"])
        calls = _run(script, root, root / "bin")
        assert len(calls) == 1 and calls[0]["argv"][-2:] == ["t.sh", arg]
        assert calls[0]["env"]["HOSTILE"] == env_value
        assert sorted(p.name for p in root.iterdir()) == ["bin", "probe.jsonl", "sbatch.sh"]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(env_value=HOSTILE)
def test_structured_artifacts_carry_values_verbatim(env_value: str) -> None:
    for kind, case in _STRUCTURED.items():
        cfg = compose_config(CASES[case])
        cfg.task.env = {"HOSTILE": env_value}
        job = lower.compile_job(cfg, PINNED_SITE)
        rendered = render_job(job)
        assert rendered.target == kind
        found = [s for name, text in rendered.artifacts.items() if name.endswith((".json", ".yaml"))
                 for s in _strings(json.loads(text) if name.endswith(".json") else yaml.safe_load(text))]
        assert any(env_value in s for s in found), (kind, env_value)
        for name, text in rendered.artifacts.items():
            if name.endswith(".sh"):
                assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0


@pytest.mark.parametrize("where", ["task.args", "task.env", "executor.env_vars", "executor.python"])
def test_missing_literal_set_from_python_is_one_line(where: str) -> None:
    """Regression (found by the properties above): ``???`` assigned after compose reached
    OmegaConf's MissingMandatoryValue traceback instead of the one-line missing-value error."""
    cfg = compose_config(["task=hello", "task.inline=null", "task.script=t.py"])
    node, key = where.split(".")
    value: Any = {"task.args": ["???"], "task.env": {"A": "???"}, "executor.env_vars": {"B": "???"}}.get(where, "???")
    cfg[node][key] = value
    expected = "^missing required value '" + re.escape(where)
    with pytest.raises(ConfigError, match=expected):
        lower.compile_job(cfg, PINNED_SITE)
