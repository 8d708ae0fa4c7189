"""One test per private Hydra/OmegaConf call in :mod:`nemorun.hydra_compat`: after a Hydra or
OmegaConf upgrade, a changed private API fails here, by name, first."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from nemorun import compose, hydra_compat


@pytest.fixture(scope="module")
def loader():  # type: ignore[no-untyped-def]
    with compose.hydra_context() as loader:
        yield loader


def test_apply_value_overrides_merges_with_types_enforced(loader) -> None:  # type: ignore[no-untyped-def]
    cfg = compose.compose_files(["task=train"])
    hydra_compat.apply_value_overrides(compose.parse_overrides(["task.params.steps=7"]), cfg)
    assert cfg.task.params.steps == 7
    with pytest.raises(Exception) as info:
        hydra_compat.apply_value_overrides(compose.parse_overrides(["executor.retries=many"]), cfg)
    assert isinstance(info.value.__cause__ or info.value, ValidationError)


def test_split_sweep_is_the_cartesian_product_in_order_with_values_as_typed() -> None:
    parsed = compose.parse_overrides(["a=1,2", "b=x,y", "c=3"])
    assert compose.split_sweep(parsed) == [
        ["a=1", "b=x", "c=3"], ["a=1", "b=y", "c=3"], ["a=2", "b=x", "c=3"], ["a=2", "b=y", "c=3"]]
    assert compose.split_sweep(compose.parse_overrides(["c=3"])) == [["c=3"]]
    # Hydra's own split writes 1.1 and True back; the jobs must get what was typed
    assert compose.split_sweep(compose.parse_overrides(["v=1.10,true", "w=1e3", "r=range(0,2)", "s=choice(007,0x10)"])) == [
        ["v=1.10", "w=1e3", "r=0", "s=007"], ["v=1.10", "w=1e3", "r=0", "s=0x10"],
        ["v=1.10", "w=1e3", "r=1", "s=007"], ["v=1.10", "w=1e3", "r=1", "s=0x10"],
        ["v=true", "w=1e3", "r=0", "s=007"], ["v=true", "w=1e3", "r=0", "s=0x10"],
        ["v=true", "w=1e3", "r=1", "s=007"], ["v=true", "w=1e3", "r=1", "s=0x10"]]


def test_value_literals_reads_the_typed_tokens_from_hydras_parse_tree() -> None:
    Typed, SweepTexts = hydra_compat.Typed, hydra_compat.SweepTexts
    assert hydra_compat.value_literals("a=1.10") == Typed("1.10")
    assert hydra_compat.value_literals("a=null") == Typed("null", is_null=True)
    assert hydra_compat.value_literals("a=[x, 1e3, true,'q']") == (None, Typed("1e3"), Typed("true"), None)
    assert hydra_compat.value_literals("a={A: 12.10, B: x}") == {"A": Typed("12.10")}
    assert hydra_compat.value_literals("a=1.10, [b,2.0]") == SweepTexts((("1.10", Typed("1.10")), ("[b,2.0]", (None, Typed("2.0")))))
    for untyped in ("a=x", "a='1.10'", "a=str(1.10)", "a=${x}", "~a", "a=", "a=[b"):
        assert hydra_compat.value_literals(untyped) is None, untyped


def test_with_value_replaces_the_parsed_value() -> None:
    [ov] = compose.parse_overrides(["a=1.10"])
    assert hydra_compat.with_value(ov, "1.10").value() == "1.10" and ov.value() == 1.1


def test_node_metadata_accessors() -> None:
    from omegaconf import OmegaConf as OC

    from nemorun.schemas.core import TaskConfig

    cfg = OC.structured(TaskConfig(name="t"))
    assert hydra_compat.element_type(cfg._get_node("args")) is str
    assert hydra_compat.is_optional(cfg._get_node("script")) and not hydra_compat.is_optional(cfg._get_node("name"))
    assert hydra_compat.node_key(cfg._get_node("env")) == "env"


def test_wrap_override_merge_sees_every_override_before_hydra_merges_it(loader) -> None:  # type: ignore[no-untyped-def]
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    seen: list[str] = []

    def adjust(ov, cfg):  # type: ignore[no-untyped-def]
        seen.append(ov.input_line)
        return hydra_compat.with_value(ov, 9) if ov.key_or_group == "task.params.steps" else ov

    compose.compose_files(["task=train"])  # the first compose installs nemorun's own hook: do it before ours
    try:
        hydra_compat.wrap_override_merge(adjust)
        cfg = compose.compose_files(["task=train", "task.params.steps=7", "task.params.lr=0.5"])
    finally:
        compose.keep_literals_in_merges()  # nemorun's own hook back in place
    assert cfg.task.params.steps == 9 and cfg.task.params.lr == 0.5
    assert seen == ["++task.params.steps=7", "++task.params.lr=0.5"]
    assert ConfigLoaderImpl.__dict__["_apply_overrides_to_config"].__func__.nemorun_adjust is compose.keep_literal


def test_group_exists(loader) -> None:  # type: ignore[no-untyped-def]
    assert hydra_compat.group_exists(loader, "executor")
    assert hydra_compat.group_exists(loader, "executor.tunnel")
    assert not hydra_compat.group_exists(loader, "task.params")


def test_element_override_applies_like_the_parsed_line(loader) -> None:  # type: ignore[no-untyped-def]
    [sweep] = compose.parse_overrides(["task.params.steps=3,4"])
    element = hydra_compat.element_override(sweep, "task.params.steps", "4", 4)
    assert element.value() == 4 and not element.is_sweep_override()
    cfg = compose.compose_files(["task=train"])
    hydra_compat.apply_value_overrides([element], cfg)
    assert cfg.task.params.steps == 4


def test_as_force_add_sets_existing_and_new_keys(loader) -> None:  # type: ignore[no-untyped-def]
    [ov] = compose.parse_overrides(["+task.env.NEW=1"])
    forced = hydra_compat.as_force_add(ov)
    assert forced.is_force_add()
    cfg = compose.compose_files(["task=train", "+task.env.NEW=0"])
    hydra_compat.apply_value_overrides([forced], cfg)  # a plain + would refuse an existing key
    assert cfg.task.env.NEW == "1"


def test_node_accessors_do_not_resolve() -> None:
    cfg = OmegaConf.create({"a": "???", "b": "${oc.env:NEMORUN_COMPAT_UNSET_VAR}", "c": None, "d": {"e": 1}})
    a, b, c, d = (hydra_compat.child_node(cfg, k) for k in "abcd")
    assert hydra_compat.is_missing_literal(a) and not hydra_compat.is_missing_literal(b)
    assert hydra_compat.is_interpolation(b) and not hydra_compat.is_interpolation(a)
    assert hydra_compat.is_none(c) and not hydra_compat.is_none(a)
    assert hydra_compat.full_key(d, "e") == "d.e"
    assert hydra_compat.parent(hydra_compat.child_node(d, "e")) is d
    assert hydra_compat.child_node(cfg, "absent") is None


def test_compose_without_hydra_node_gives_the_compose_apis_config_or_steps_aside(loader) -> None:  # type: ignore[no-untyped-def]
    """Every private call it makes (the defaults list without ``hydra/config``, the compose from it,
    the override merge) in one compose; ``tests/test_compose_paths_agree.py`` compares the two ways
    over every option and kind of override."""
    from hydra import compose as hydra_compose

    overrides = compose.free_form_overrides(["task=train", "task.params.lr=0.5", "executor.env_vars.A=1"])
    short = hydra_compat.compose_without_hydra_node(loader, compose.CONFIG_NAME, overrides)
    full = hydra_compose(config_name=compose.CONFIG_NAME, overrides=overrides)
    assert short is not None and "hydra" not in short and OmegaConf.is_struct(short)
    assert OmegaConf.to_yaml(short) == OmegaConf.to_yaml(full)
    assert OmegaConf.get_type(short.executor) is OmegaConf.get_type(full.executor)
    for reaches_hydra in (["task=train", "hydra.job.chdir=true"], ["task=train", "hydra/launcher=basic"], ["~hydra"]):
        assert hydra_compat.compose_without_hydra_node(loader, compose.CONFIG_NAME, reaches_hydra) is None
