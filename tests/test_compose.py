"""Composition: defaults, schema typing, user config folders (compose API, no subprocess)."""
from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from nemorun.lower import check_config, compile_job
from nemorun.errors import ConfigError
from nemorun.schemas.core import TaskConfig
from nemorun.schemas.local import LocalExecutorConfig
from tests.helpers import PINNED_SITE, compose_config


def test_defaults_are_typed_by_schemas() -> None:
    cfg = compose_config(["task=train"])
    assert OmegaConf.get_type(cfg.executor) is LocalExecutorConfig
    assert OmegaConf.get_type(cfg.task) is TaskConfig
    assert cfg.dryrun is False and cfg.render_dir is None and cfg.wait is False
    assert cfg.task.params.steps == 20


def test_value_override_is_converted_to_schema_type() -> None:
    cfg = compose_config(["task=train", "executor.retries=3", "dryrun=true"])
    assert cfg.executor.retries == 3 and cfg.dryrun is True


@pytest.mark.parametrize(
    "overrides",
    [["task=hello", "executor.retries=two"], ["task=hello", "dryrun=maybe"], ["task=hello", "executor.acount=1"], ["task=hello", "newkey=1"]],
)
def test_schema_rejects_at_compose(overrides: list[str]) -> None:
    with pytest.raises(ConfigCompositionException):
        compose_config(overrides)


def test_force_added_key_on_typed_node_is_rejected_after_compose() -> None:
    cfg = compose_config(["task=hello", "+executor.acount=1"])  # Hydra lets this through
    with pytest.raises(ConfigError, match="unknown key 'executor.acount'"):
        check_config(cfg)


def test_free_form_mappings_accept_new_keys() -> None:
    cfg = compose_config(["task=hello", "+executor.env_vars.A=1", "+task.env.B=x y"])
    check_config(cfg)
    job = compile_job(cfg, PINNED_SITE)
    assert job.env == {"A": "1", "B": "x y"}


def test_task_must_be_exactly_one_kind() -> None:
    cfg = compose_config(["task=hello", "task.script=run.sh"])
    with pytest.raises(ConfigError, match="exactly one of inline, script or target"):
        compile_job(cfg, PINNED_SITE)
    cfg = compose_config(["task=hello", "task.inline=null"])
    with pytest.raises(ConfigError, match=r"\(it sets none\)"):
        compile_job(cfg, PINNED_SITE)


def test_function_params_are_bound_to_the_signature() -> None:
    with pytest.raises(ConfigError, match="did you mean 'task.params.steps'"):
        compile_job(compose_config(["task=train", "+task.params.stepz=1"]), PINNED_SITE)
    with pytest.raises(ConfigError, match="expects int"):
        compile_job(compose_config(["task=train", "task.params.steps=many"]), PINNED_SITE)


def test_ir_of_the_train_task() -> None:
    job = compile_job(compose_config(["task=train", "task.params.steps=5", "name=exp1"]), PINNED_SITE)
    assert job.task.kind == "function" and job.task.params["steps"] == 5
    assert job.experiment_name == "exp1" and job.name == "train"
    assert job.job_dir == "/home/user/.run/experiments/exp1/20260101-000000-000000-abcd/jobs/train"
    assert job.workdir == PINNED_SITE.submit_dir and job.python == "python3"


def _user_conf(root: Path) -> Path:
    (root / "executor").mkdir(parents=True)
    (root / "task").mkdir()
    (root / "task" / "pretrain.yaml").write_text("defaults:\n  - /_schema_task@_here_\n  - _self_\nname: pretrain\ninline: echo pre\n")
    (root / "executor" / "local.yaml").write_text(
        "defaults:\n  - /_schema_executor_local@_here_\n  - _self_\nenv_vars:\n  FROM_USER: 'yes'\n"
    )
    (root / "executor" / "typo.yaml").write_text("defaults:\n  - /_schema_executor_local@_here_\n  - _self_\nretrys: 1\n")
    return root


def test_user_config_dir_adds_options(tmp_path: Path) -> None:
    user = _user_conf(tmp_path / "conf")
    cfg = compose_config([f"hydra.searchpath=[file://{user}]", "task=pretrain"])
    assert cfg.task.inline == "echo pre"
    # hydra.searchpath comes after the packaged tree: the packaged local.yaml wins (--config-dir does
    # not: nemorun.cli puts it first, like NEMORUN_CONFIG_PATH; tests/test_literals.py)
    assert "FROM_USER" not in cfg.executor.env_vars


def test_nemorun_config_path_overrides_packaged_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hydra_plugins.nemorun_plugins import register_all

    user = _user_conf(tmp_path / "conf")
    monkeypatch.setenv("NEMORUN_CONFIG_PATH", str(user))
    register_all()
    cfg = compose_config(["task=pretrain"])
    assert cfg.executor.env_vars["FROM_USER"] == "yes"


def test_user_option_with_a_typo_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hydra_plugins.nemorun_plugins import register_all

    monkeypatch.setenv("NEMORUN_CONFIG_PATH", str(_user_conf(tmp_path / "conf")))
    register_all()
    with pytest.raises(ConfigCompositionException, match="retrys"):
        compose_config(["task=hello", "executor=typo"])
