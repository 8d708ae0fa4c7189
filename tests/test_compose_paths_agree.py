"""nemorun composes without Hydra's own ``hydra`` node (:func:`nemorun.hydra_compat.compose_without_hydra_node`,
used by :func:`nemorun.compose.compose_files`), and falls back to Hydra's compose API when that node could
matter. Both must give the same config and the same error, for every option of every config group (listed
from the config tree, not by hand) and for overrides of every kind, packaged and from a user's config folder.

"The same config": the same container (unresolved), the same YAML (key order), and the same node metadata
(schema types, optional, flags) at every path. "The same error": the same exception type and the same
one-line message the CLI prints (:func:`nemorun.compose.describe_error`). A case listed as taking the
short path must really take it (else this test would pass with the short path switched off), and a case
that reaches into ``hydra`` must not.
"""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest
from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from hydra_plugins.nemorun_plugins import register_all
from nemorun import compose, hydra_compat
from nemorun.compose import CONFIG_NAME, describe_error, free_form_overrides


def _nodes(cfg: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every node's path and metadata (schema type, reference type, optional, flags), without resolving."""
    meta = cfg._metadata
    yield path, repr((type(cfg).__name__, meta.object_type, meta.ref_type, meta.optional,
                      getattr(meta, "key_type", None), getattr(meta, "element_type", None), sorted(meta.flags.items())))
    if isinstance(cfg, DictConfig) and not (cfg._is_missing() or cfg._is_none() or cfg._is_interpolation()):
        for key in cfg.keys():
            yield from _nodes(cfg._get_node(key), f"{path}.{key}")
    elif isinstance(cfg, ListConfig) and not (cfg._is_missing() or cfg._is_none() or cfg._is_interpolation()):
        for i in range(len(cfg)):
            yield from _nodes(cfg._get_node(i), f"{path}[{i}]")


def _outcome(run: Any) -> tuple[Any, ...]:
    try:
        cfg = run()
    except Exception as exc:  # noqa: BLE001 - the error is what is compared
        return ("error", type(exc).__name__, describe_error(exc))
    return ("config", OmegaConf.to_container(cfg, resolve=False), OmegaConf.to_yaml(cfg), list(_nodes(cfg)))


def _short_path_taken(overrides: list[str]) -> bool:
    """Whether compose_files composed (or failed) without Hydra's node, rather than falling back."""
    loader = GlobalHydra.instance().config_loader()
    try:
        return hydra_compat.compose_without_hydra_node(loader, CONFIG_NAME, free_form_overrides(overrides)) is not None
    except Exception:  # noqa: BLE001 - the short path raised the error itself
        return True


def _both_ways(overrides: list[str]) -> tuple[tuple[Any, ...], tuple[Any, ...], bool]:
    GlobalHydra.instance().clear()  # NEMORUN_CONFIG_PATH is read when Hydra is initialised
    register_all()
    with initialize_config_module(config_module="nemorun.conf", version_base="1.3"):
        full = _outcome(lambda: hydra_compose(config_name=CONFIG_NAME, overrides=free_form_overrides(overrides)))
        short = _outcome(lambda: compose.compose_files(overrides))
        taken = _short_path_taken(overrides)
    return full, short, taken


def _assert_agree(overrides: list[str], short_path: Optional[bool] = True) -> tuple[Any, ...]:
    full, short, taken = _both_ways(overrides)
    assert short == full, overrides
    if short_path is not None:
        assert taken is short_path, (overrides, "short path taken" if taken else "fell back to the compose API")
    return full


def _option_cases() -> list[list[str]]:
    """``group=option`` for every option of every group of the packaged tree; a nested group
    (``executor/tunnel``) under every option of its parent group (where it is not in the parent
    option's defaults, both ways must fail alike)."""
    GlobalHydra.instance().clear()
    register_all()
    with initialize_config_module(config_module="nemorun.conf", version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()

        def options(group: str) -> list[str]:
            return [o for o in loader.get_group_options(group) if not o.startswith("_")]

        cases: list[list[str]] = []
        for group in loader.list_groups(""):
            if group == "hydra":
                continue
            for option in options(group):
                cases.append([f"{group}={option}"])
                if group != "task":
                    cases.append([f"{group}={option}", "task=train"])
            for nested in loader.list_groups(group):
                for parent in options(group):
                    for option in options(f"{group}/{nested}"):
                        cases.append([f"{group}={parent}", f"{group}/{nested}={option}"])
    return cases


OPTION_CASES = _option_cases()


def test_the_generated_cases_cover_the_tree() -> None:
    groups = {case[0].split("=")[0] for case in OPTION_CASES} | {case[-1].split("=")[0] for case in OPTION_CASES}
    assert {"executor", "task", "packager", "launcher", "experiment", "executor/tunnel"} <= groups
    assert ["executor=slurm", "executor/tunnel=ssh"] in OPTION_CASES and ["experiment=prepare_train_eval"] in OPTION_CASES


@pytest.mark.parametrize("overrides", OPTION_CASES, ids=" ".join)
def test_every_option_composes_alike(overrides: list[str]) -> None:
    _assert_agree(overrides)


OVERRIDE_CASES = [
    # values (typed, as typed text, lists, mappings, free-form maps)
    ["task=train", "task.params.lr=0.5", "name=x", "dryrun=true", "max_parallel=2"],
    ["task=train", "executor.env_vars.V=1.10", "executor.env_vars.W=true"],
    ["task=script", "task.script=run.sh", "task.args=[--tag,1.10,null]"],
    ["task=train", "task.params={a:1,b:[x,y]}"],
    ["executor={kind:local}", "task=hello"],
    ["executor=slurm", "task=train", "executor.account=acct", "executor.nodes=2", "executor.env_vars.X=1"],
    ["experiment=prepare_train_eval", "executor=slurm", "executor.account=a"],
    # +add, ++force, ~delete
    ["task=train", "+task.params.extra=1"],
    ["task=hello", "+executor.env_vars.A=1", "+task.env.B=x y"],
    ["task=hello", "+executor.acount=1"],
    ["task=train", "+task.params.lr=1"],
    ["task=train", "+launcher=torchrun"],
    ["task=train", "+task@extra=hello"],
    ["task=train", "++task.params.lr=0.3", "++newkey=1"],
    ["task=train", "~task.params.seed"],
    ["task=train", "~task.params.nope"],
    ["task=train", "~launcher"],
    ["~task"],
    ["task=train", "~executor=slurm"],
    # typos
    ["tsk=train"],
    ["task=trian"],
    ["executor=slrum", "task=train"],
    ["task=train", "task.parms.lr=1"],
    ["task=train", "executor.acount=1"],
    ["task=train", "executor/tunel=ssh"],
    # wrong types
    ["task=train", "executor.retries=two"],
    ["task=train", "dryrun=maybe"],
    ["task=train", "max_parallel=abc"],
    ["task=train", "executor=[a,b]"],
    # missing required values and empty selections
    ["executor=slurm", "task=train"],
    ["executor=slurm", "task=train", "executor.account=???"],
    ["task="],
    ["executor=null", "task=train"],
    # interpolations (kept unresolved)
    ["task=train", "name=${task.name}-x"],
    ["task=train", "task.params.lr=${oc.env:NEMORUN_TEST_LR,0.1}"],
    ["task=train", "name=${hydra:job.name}"],
    ["task=train", "name=${hydra.job.name}"],
    # sweep syntax and text that does not parse
    ["task=train", "task.params.lr=0.1,0.2"],
    ["task=train", "task.params.lr=range(0,3)"],
    ["task=train", "task.params.lr=[1,"],
    ["task=train", "name=a b"],
    [],
]


@pytest.mark.parametrize("overrides", OVERRIDE_CASES, ids=" ".join)
def test_every_kind_of_override_composes_alike(overrides: list[str]) -> None:
    _assert_agree(overrides)


HYDRA_CASES = [
    ["task=train", "hydra.job.chdir=true"],
    ["task=train", "hydra.verbose=true"],
    ["task=train", "hydra.nope=1"],
    ["task=train", "+hydra.nope=1"],
    ["task=train", "hydra/launcher=basic"],
    ["task=train", "hydra/launcher=nope"],
    ["task=train", "~hydra"],
    ["task=train", "hydra.sweeper.max_jobs=3"],
    ["task=train", "hydra.launcher.max_parallel=2"],
]


@pytest.mark.parametrize("overrides", HYDRA_CASES, ids=" ".join)
def test_an_override_of_hydra_takes_the_compose_api(overrides: list[str]) -> None:
    _assert_agree(overrides, short_path=False)


def test_the_short_path_errors_are_the_ones_a_user_sees_in_one_line() -> None:
    full = _assert_agree(["executor=slrum", "task=train"])
    assert full[0] == "error" and full[2][0] == 2 and full[2][1].startswith("unknown executor option 'slrum'; available:")
    full = _assert_agree(["task=train", "executor.retries=two"])
    assert full[0] == "error" and full[2][0] == 2 and "retries" in full[2][1] and "\n" not in full[2][1]


USER_FILES = {
    # a team's cluster: a new option, and a packaged option replaced
    "executor/mycluster.yaml": """
        defaults:
          - /_schema_executor_slurm@_here_
          - tunnel: local
          - _self_
        account: team
        env_vars:
          SITE: ${oc.env:NEMORUN_TEST_SITE,here}
        """,
    "executor/local.yaml": """
        defaults:
          - /_schema_executor_local@_here_
          - _self_
        env_vars:
          FROM_USER: 'yes'
        """,
    "executor/typo.yaml": """
        defaults:
          - /_schema_executor_local@_here_
          - _self_
        retrys: 1
        """,
    "task/mine.yaml": """
        defaults:
          - /_schema_task@_here_
          - _self_
        name: mine-${task.inline}
        inline: echo mine
        """,
    "task/broken.yaml": "inline: [\n",
    # options that reach into Hydra's own node: the compose API decides
    "task/hydraish.yaml": """
        # @package _global_
        task:
          inline: echo hi
        hydra:
          job:
            chdir: true
        """,
    "task/badhydra.yaml": """
        # @package _global_
        hydra:
          nope: 1
        """,
    "task/searchpath.yaml": """
        # @package _global_
        hydra:
          searchpath: [file:///tmp]
        """,
    "packager/withlauncher.yaml": """
        defaults:
          - /_schema_packager_none@_here_
          - override /hydra/launcher: basic
          - _self_
        """,
    "packager/badlauncher.yaml": """
        defaults:
          - /_schema_packager_none@_here_
          - override /hydra/launcher: nope
          - _self_
        """,
}


@pytest.fixture
def user_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "conf"
    for name, text in USER_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text).lstrip("\n"))
    monkeypatch.setenv("NEMORUN_CONFIG_PATH", str(root))
    yield root
    GlobalHydra.instance().clear()


@pytest.mark.parametrize("overrides, short_path", [
    (["executor=mycluster", "task=train"], True),
    (["executor=mycluster", "executor/tunnel=ssh", "executor.tunnel.host=h", "task=mine"], True),
    (["executor=local", "task=mine"], True),
    (["executor=typo", "task=hello"], True),
    (["task=broken"], True),
    (["task=nope"], True),
    (["task=hydraish"], False),
    (["task=badhydra"], False),
    (["task=searchpath"], True),  # refused as the file is loaded, on either path (searchpath.py)
    (["task=train", "packager=withlauncher"], False),
    (["task=train", "packager=badlauncher"], False),
], ids=lambda v: " ".join(v) if isinstance(v, list) else str(v))
def test_a_user_config_folder_composes_alike(user_conf: Path, overrides: list[str], short_path: bool) -> None:
    full = _assert_agree(overrides, short_path=short_path)
    if overrides[0] == "executor=mycluster":
        assert full[0] == "config" and full[1]["executor"]["account"] == "team"


def test_a_user_primary_config_takes_the_compose_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    packaged = Path(compose.__file__).parent.parent.parent / "conf" / "nemorun.yaml"
    if not packaged.is_file():  # an installed (not editable) nemorun
        from importlib import resources

        packaged = Path(str(resources.files("nemorun.conf") / "nemorun.yaml"))
    root = tmp_path / "conf"
    root.mkdir()
    (root / "nemorun.yaml").write_text(packaged.read_text().replace("dryrun: false", "dryrun: true"))
    monkeypatch.setenv("NEMORUN_CONFIG_PATH", str(root))
    try:
        full = _assert_agree(["task=train"], short_path=False)
    finally:
        GlobalHydra.instance().clear()
    assert full[0] == "config" and full[1]["dryrun"] is True
