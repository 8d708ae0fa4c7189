"""What you type is what the job gets (issue 16), through the real CLI and real local jobs.

Hydra's grammar types ``1.10``/``true``/``1e3``/``null`` before a str field sees them; nemorun
gives str destinations the text as typed on every path: a single run, a sweep (the patched fast
path and per-job composes), a multi-task experiment, ``exp rerun`` and the stored overrides.
Also: the one-line errors for awkward syntax, ``task=script``/``task=function`` and
``--config-dir`` winning over packaged options like ``NEMORUN_CONFIG_PATH``.
"""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from nemorun import compose
from nemorun.api import Experiment
from tests.helpers import run_cli

ARGS = "task.args=[--tag,1.10,--flag,true,--x,1e3,--n,null,--hex,0x10,--z,007]"
RENDERED_ARGS = "--tag 1.10 --flag true --x 1e3 --n null --hex 0x10 --z 007"
SCRIPT = ["task=script", "task.script=run.sh"]


def _dry(env: dict[str, str], out: Path, *overrides: str) -> dict[str, str]:
    proc = run_cli([*overrides, "dryrun=true", f"render_dir={out}"], env=env)
    assert proc.returncode == 0, proc.stderr
    return {p.relative_to(out).as_posix(): p.read_text() for p in out.rglob("*.sh")}


def _error(env: dict[str, str], *args: str) -> str:
    proc = run_cli(list(args), env=env)
    assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nemorun: error: "), proc.stderr
    return lines[0][len("nemorun: error: "):]


def test_single_run_keeps_the_typed_text(cli_env: dict[str, str], tmp_path: Path) -> None:
    [script] = _dry(cli_env, tmp_path / "out", *SCRIPT, ARGS, "executor.env_vars.CUDA_VERSION=12.10",
                    "executor.env_vars.DEBUG=false", "task.env.EMPTY=null", "name=007").values()
    assert f"bash run.sh {RENDERED_ARGS}\n" in script
    assert "export CUDA_VERSION=12.10\n" in script and "export DEBUG=false\n" in script
    assert "export EMPTY=null\n" in script  # an env value cannot be None: null is its text
    assert "experiment 007/" in script


def test_null_unsets_optional_fields_and_any_fields_keep_hydras_types() -> None:
    with compose.hydra_context():
        cfg = compose.compose_files(["task=train", "name=null", "task.params.lr=1.10", "task.params.on=true",
                                     "executor=slurm", "executor.account=null", "executor.additional_parameters.hold=true"])
    assert cfg.name is None and cfg.executor.account is None
    assert cfg.task.params.lr == 1.1 and cfg.task.params.on is True  # function kwargs keep their types
    assert cfg.executor.additional_parameters.hold is True  # true = a flag without value (see slurm_flags)


def test_secret_ref_env_vars_keep_text_and_references() -> None:
    with compose.hydra_context():
        cfg = compose.compose_files(["executor=lepton", "task=hello", "executor.env_vars.DEBUG=false",
                                     "executor.env_vars.V=1.10", "executor.env_vars.T={secret: tok}"])
    assert dict(cfg.executor.env_vars) == {"DEBUG": "false", "V": "1.10", "T": {"secret": "tok"}}


def test_sweeps_keep_the_typed_text_per_job(cli_env: dict[str, str], tmp_path: Path) -> None:
    # task.args differ per job (patched into the composed config) and so do env values
    scripts = _dry(cli_env, tmp_path / "a", "-m", *SCRIPT, "task.args=[--tag,1.10],[--tag,2.50]",
                   "executor.env_vars.V=1.0,true")
    assert sorted(scripts) == [f"script-{i}/launch.sh" for i in range(4)]
    got = sorted((s.split("export V=")[1].split("\n")[0], s.strip().splitlines()[-1]) for s in scripts.values())
    assert got == [("1.0", "bash run.sh --tag 1.10"), ("1.0", "bash run.sh --tag 2.50"),
                   ("true", "bash run.sh --tag 1.10"), ("true", "bash run.sh --tag 2.50")]
    # through @hydra.main (a hydra.* override takes that path) and its sweep launcher
    scripts = _dry(cli_env, tmp_path / "b", "-m", *SCRIPT, "task.args=[--x,1e3],[--x,007]", "hydra.sweeper.max_jobs=10")
    assert sorted(s.strip().splitlines()[-1] for s in scripts.values()) == ["bash run.sh --x 007", "bash run.sh --x 1e3"]


def test_multi_task_experiment_keeps_the_typed_text(cli_env: dict[str, str], tmp_path: Path) -> None:
    scripts = _dry(cli_env, tmp_path / "out", "experiment=prepare_train_eval", "executor.env_vars.CUDA_VERSION=12.10")
    assert len(scripts) == 3 and all("export CUDA_VERSION=12.10\n" in s for s in scripts.values())


def test_rerun_and_stored_overrides_keep_the_typed_text(cli_env: dict[str, str]) -> None:
    proc = run_cli(["task=hello", 'task.inline="echo V=$V W=$W"', "executor.env_vars.V=1.10", "wait=true"], env=cli_env)
    assert proc.returncode == 0 and "V=1.10 W=" in proc.stdout, proc.stderr
    first = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    assert "executor.env_vars.V=1.10" in first.meta["overrides"]
    again = run_cli(["exp", "rerun", first.id, "executor.env_vars.W=2.50", "wait=false", "--json"], env=cli_env)
    assert again.returncode == 0, again.stderr
    new = Experiment(Path(json.loads(again.stdout)["path"]))
    assert new.wait(poll=0.2)["hello"].state.value == "SUCCEEDED"
    assert "".join(new.logs("hello")).split() == ["V=1.10", "W=2.50"]
    assert new.meta["overrides"][-2:] == ["executor.env_vars.W=2.50", "wait=false"]


def test_sweep_rerun_keeps_the_typed_text(cli_env: dict[str, str]) -> None:
    proc = run_cli(["-m", "task=hello", 'task.inline="echo V=$V"', "task.env.V=1.10,2.50", "wait=true"], env=cli_env)
    assert proc.returncode == 0, proc.stderr
    first = Experiment.load("latest", home=cli_env["NEMORUN_HOME"])
    assert [j.overrides[-2] for j in first.jobs] == ["task.env.V=1.10", "task.env.V=2.50"]
    again = run_cli(["exp", "rerun", first.id, "wait=false", "--json"], env=cli_env)
    assert again.returncode == 0, again.stderr
    new = Experiment(Path(json.loads(again.stdout)["path"]))
    assert {s.state.value for s in new.wait(poll=0.2).values()} == {"SUCCEEDED"}
    assert ["".join(new.logs(j)).strip() for j in ("hello-0", "hello-1")] == ["V=1.10", "V=2.50"]


@pytest.mark.parametrize("override, expected", [
    ("executor.container_image=nvcr.io#nvidia/pytorch:24.05-py3",
     "write it as 'executor.container_image=\"nvcr.io#nvidia/pytorch:24.05-py3\"'"),
    ("executor.srun_args=[--mpi=pmix]", "write it as 'executor.srun_args=[\"--mpi=pmix\"]'"),
    ("executor.setup_lines=[module load x; echo y]", "write it as 'executor.setup_lines=[\"module load x; echo y\"]'"),
    ("executor.env_vars.X=a=b", "cannot parse the override 'executor.env_vars.X=a=b'"),  # as typed: no `++`
    ("task.inline=echo {a}", "write it as 'task.inline=\"echo {a}\"'"),
    ("task.inline=echo it's", "write it as 'task.inline=\"echo it'\\''s\"'"),
])
def test_awkward_values_name_the_override_and_a_form_that_works(cli_env: dict[str, str], override: str, expected: str) -> None:
    message = _error(cli_env, "executor=slurm", "task=hello", override, "dryrun=true")
    assert expected in message and "mismatched input" not in message
    fixed = message.split("write it as ")[1]
    import shlex

    [arg] = shlex.split(fixed)  # the advice is one shell word that Hydra parses
    assert compose.parse_overrides([arg])


def test_a_comma_outside_a_sweep_says_how_to_quote_list_or_sweep(cli_env: dict[str, str]) -> None:
    message = _error(cli_env, "task=hello", "executor.env_vars.X=a,b", "dryrun=true")
    assert message == ("the override 'executor.env_vars.X=a,b' has a comma: for one value with a comma write "
                       "'executor.env_vars.X=\"a,b\"'; for a list, executor.env_vars.X=[a,b]; to sweep over the values, add -m")
    proc = run_cli(["task=hello", 'executor.env_vars.X="a,b"', "dryrun=true"], env=cli_env)
    assert proc.returncode == 0 and "export X=a,b\n" in proc.stdout, proc.stderr


def test_missing_list_entry_advice_parses(cli_env: dict[str, str]) -> None:
    dgx = ["executor=dgxcloud", "task=hello", "executor.base_url=https://x.example.com/api", "executor.app_id=a",
           "executor.app_secret=${oc.env:S}", "executor.project_name=p", "executor.container_image=i", "dryrun=true"]
    message = _error(cli_env, *dgx, "executor.pvcs=[{path: /pvc}]")
    assert message.endswith("set it with executor.pvcs.0.claim_name=...")
    proc = run_cli([*dgx, "executor.pvcs=[{path: /pvc}]", "executor.pvcs.0.claim_name=data"], env=dict(cli_env, S="s"))
    assert proc.returncode == 0, proc.stderr  # the advice, followed, works
    bracket = _error(cli_env, *dgx, "executor.pvcs[0].claim_name=data")
    assert "'executor.pvcs.0.claim_name=data'" in bracket


def test_plus_is_suggested_only_where_it_helps(cli_env: dict[str, str]) -> None:
    assert _error(cli_env, "task=hello", "executor.bogus=1") == "unknown key 'executor.bogus'"  # typed: strict
    message = _error(cli_env, "executor=kubeflow", "task=hello", "executor.image=i", "executor.volumes=[{name: a}]",
                     "executor.volumes.0.readOnly=true", "dryrun=true")
    assert message.endswith("write +executor.volumes.0.readOnly=...")
    proc = run_cli(["executor=kubeflow", "task=hello", "executor.image=i", "executor.volumes=[{name: a}]",
                    "+executor.volumes.0.readOnly=true", "dryrun=true"], env=cli_env)
    assert proc.returncode == 0, proc.stderr


def test_generic_script_and_function_tasks(cli_env: dict[str, str], tmp_path: Path) -> None:
    assert _error(cli_env, "task=script", "dryrun=true") == "missing required value 'task.script'; set it with task.script=..."
    assert _error(cli_env, "task=function", "dryrun=true") == "missing required value 'task.target'; set it with task.target=..."
    [script] = _dry(cli_env, tmp_path / "s", "task=script", "task.script=train.py", "task.args=[--lr,0.10]").values()
    assert script.strip().endswith("train.py --lr 0.10")
    proc = run_cli(["task=function", "task.target=nemorun.examples.train.train", "task.params.steps=2",
                    "task.params.lr=0.5", "wait=true"], env=cli_env)
    assert proc.returncode == 0 and "step=2 loss=" in proc.stdout, (proc.stdout, proc.stderr)
    assert "unknown key 'task.params.bogus'" in _error(cli_env, "task=function", "task.target=nemorun.examples.train.train",
                                                       "task.params.bogus=1", "dryrun=true")


def test_config_dir_and_config_path_both_win_over_packaged_options(cli_env: dict[str, str], tmp_path: Path) -> None:
    team = tmp_path / "team"
    (team / "executor").mkdir(parents=True)
    (team / "executor" / "slurm.yaml").write_text(textwrap.dedent("""\
        defaults: [/_schema_executor_slurm@_here_, {tunnel: local}, _self_]
        account: team-acct
        """))
    run = ["executor=slurm", "task=hello"]
    for i, (args, env) in enumerate([(["--config-dir", str(team)], cli_env), ([f"--config-dir={team}"], cli_env),
                                     (["-m", "--config-dir", str(team)], cli_env), ([], dict(cli_env, NEMORUN_CONFIG_PATH=str(team)))]):
        scripts = _dry(env, tmp_path / f"out{i}", *args, *run)
        assert scripts and all("#SBATCH --account=team-acct\n" in s for s in scripts.values()), (args, scripts)
    assert _error(cli_env, "--config-dir", str(tmp_path / "nope"), *run).startswith(f"--config-dir {tmp_path / 'nope'}: no such folder")
