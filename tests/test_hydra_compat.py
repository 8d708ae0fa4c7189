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


def test_split_sweep_is_the_cartesian_product_in_order() -> None:
    parsed = compose.parse_overrides(["a=1,2", "b=x,y", "c=3"])
    assert hydra_compat.split_sweep(parsed) == [
        ["a=1", "b=x", "c=3"], ["a=1", "b=y", "c=3"], ["a=2", "b=x", "c=3"], ["a=2", "b=y", "c=3"]]
    assert hydra_compat.split_sweep(compose.parse_overrides(["c=3"])) == [["c=3"]]


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
