"""Values given to the Python API arrive as given: the overrides it writes compose back to exactly
the Python value (a str stays a str whatever it looks like, ``${`` is never an interpolation),
or the value is refused in one line; positional arguments are recorded by parameter name; the
recorded overrides read as a user types them and rerun from the shell; and leaving an
``Experiment`` block launches nothing. Jobs here run for real on this machine (LocalExecutor).
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

import nemorun
from nemorun import python_api
from nemorun.errors import ConfigError
from nemorun.examples.train import train
from nemorun.plan import plan_config
from tests.helpers import PINNED_SITE, run_cli
from tests.test_python_api import cli_compose

# strings a YAML/Hydra/OmegaConf/shell layer would re-type or re-interpret if passed on naively
TRICKY = ["1.10", "true", "null", "${oc.env:HOME}", "a,b", "???", "~x", "[1, 2]", "{a: 1}", "'", '"', "\\", "\\${x}", "nan",
          "1e3", "-1", "0x10", " lead", "trail ", "", "a=b", "#c", "$(touch pwned)", "`id`", "line1\nline2", "é€😀",
          "${", "}", "\\'", "a\\", "%s", "*", "key: value", "- item"]
_CHARS = list("ab $`\"'\\{}()[],:=#;|&<>\n\t\r*?~!./-%@^\u00e9\u20ac\U0001F600")
VALUES = st.one_of(st.sampled_from(TRICKY), st.text(alphabet=st.sampled_from(_CHARS), max_size=20),
                   st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=12))


def _compose(overrides: list[str]) -> Any:
    # resolve=True: an interpolation the API let through would be resolved (or fail) here
    return OmegaConf.to_container(cli_compose(overrides), resolve=True)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUES)
def test_free_form_values_compose_to_exactly_the_python_value(value: str) -> None:
    """Script args, task env, function params (nested too): only OmegaConf's missing marker
    ``???`` is refused, everything else comes back byte for byte and still a str."""
    script = nemorun.Script(path="run.sh", args=[value, "--last"], env={"HOSTILE": value})
    function = nemorun.Partial("pkg.mod.fn", text=value, nested={"k": [value, 1]})
    for task, check in ((script, lambda t: (t["args"], t["env"]["HOSTILE"]) == ([value, "--last"], value)),
                        (function, lambda t: (t["params"]["text"], t["params"]["nested"]) == (value, {"k": [value, 1]}))):
        try:
            overrides = python_api.job_overrides(task)
        except ConfigError as err:
            assert value == "???" and "\n" not in str(err)
            continue
        assert value != "???"
        assert check(_compose(overrides)["task"]), overrides


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUES)
def test_typed_fields_take_the_value_or_refuse_it_in_one_line(value: str) -> None:
    """Names, image, paths: checked fields may refuse a value (one line ConfigError, at
    construction, at compose or at rendering), never with a traceback of another kind, and what
    is accepted is the Python value exactly, in the config the artifacts render from."""
    def build() -> tuple[list[str], dict[str, Any]]:
        ex = nemorun.SlurmExecutor(container_image=value, container_mounts=[f"{value}:/data"], env_vars={"V": value},
                                   tunnel=nemorun.SSHTunnel(host="login", job_dir=f"/scratch/{value}"))
        exp = nemorun.Experiment("values", executor=ex)
        exp.add(nemorun.Script(path=f"bin/{value}", name="job"), name="job")
        overrides, _ = exp.overrides()
        expected = {"container_image": value, "container_mounts": [f"{value}:/data"], "env_vars": {"V": value}}
        return overrides, expected

    try:
        overrides, expected = build()
        cfg = cli_compose(overrides)
        plan_config(cfg, PINNED_SITE, overrides)
    except ConfigError as err:
        assert "\n" not in str(err)
        return
    ex = OmegaConf.to_container(cfg.executor, resolve=True)
    assert {k: ex[k] for k in expected} == expected
    assert ex["tunnel"]["job_dir"] == f"/scratch/{value}"
    assert OmegaConf.to_container(cfg.task, resolve=True)["script"] == f"bin/{value}"


@pytest.mark.parametrize("value", ["${", "${x}", "a${b}c", "\\${x}", "${oc.env:HOME}", "1.10", "true", "null"])
def test_interpolation_syntax_in_typed_fields_is_plain_data(value: str) -> None:
    """Accepted, not refused as bad interpolation grammar, and composed as typed (the property
    above lets typed fields refuse; these values have nothing to refuse)."""
    ex = nemorun.DockerExecutor(container_image=value, working_dir=f"/w/{value}", env_vars={"V": value})
    cfg = _compose([*python_api.executor_overrides(ex), *python_api.task_overrides(nemorun.Script(path=f"x/{value}"))])
    assert (cfg["executor"]["container_image"], cfg["executor"]["working_dir"], cfg["executor"]["env_vars"]["V"], cfg["task"]["script"]) == \
        (value, f"/w/{value}", value, f"x/{value}")


@pytest.mark.parametrize(("value", "written"), [
    ("1.10", "'1.10'"), ("true", "'true'"), ("null", "'null'"), ("a,b", "'a,b'"), ("${oc.env:X}", "'\\${oc.env:X}'"),
    ("plain", "plain"), ("my_pkg.train.main", "my_pkg.train.main"), ("/abs/path:/x", "/abs/path:/x"),
])
def test_strings_are_written_as_a_user_types_them_quoted_only_when_needed(value: str, written: str) -> None:
    assert python_api.hydra_value(value) == written
    assert _compose(["task=function", "task.target=a.b", f"task.params.v={written}"])["task"]["params"]["v"] == value


def test_a_secret_field_keeps_its_reference() -> None:
    """The one place a Python ``${...}`` is an interpolation on purpose: a secret's reference."""
    ex = nemorun.DGXCloudExecutor(base_url="https://x/api/v1", app_id="a", app_secret="${oc.env:DGX_SECRET}", project_name="p",
                                  container_image="i", env_vars={"NOT_A_REF": "${oc.env:DGX_SECRET}"})
    cfg = OmegaConf.to_container(cli_compose([*python_api.executor_overrides(ex), "task=hello"]).executor, resolve=False)
    assert cfg["app_secret"] == "${oc.env:DGX_SECRET}" and cfg["env_vars"]["NOT_A_REF"] == "\\${oc.env:DGX_SECRET}"


@pytest.mark.parametrize(("build", "message"), [
    (lambda: nemorun.Experiment("t").add(nemorun.Script(inline="true", env={"A": "???"})), "'???' is OmegaConf's missing-value marker"),
    (lambda: nemorun.Experiment("t").add(nemorun.Script(inline="true"), name="two words"), "job name 'two words': use letters"),
    (lambda: nemorun.Experiment("t\nx"), "experiment title must be a name"),
    (lambda: nemorun.Experiment("t").add(nemorun.Script(inline="true", env={"A.B": "x", "$(id)": "y"})), "mapping key '$(id)' cannot be written"),
])
def test_hostile_names_and_markers_are_one_line_errors(build: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


# -- positional arguments ----------------------------------------------------------------------

USER_MODULE = '''\
import json, os, sys


def show(text, items, n=1):
    print("SHOW " + json.dumps({"text": text, "items": items, "n": n, "env": os.environ.get("HOSTILE")}))


def pair(a, /, b):
    return [a, b]


def gather(*parts, sep="-"):
    return sep.join(map(str, parts))


def use(p, label="x"):
    print("USE " + json.dumps({"p": p, "label": label}))
'''

ARGS_SCRIPT = "import json, os, sys\nprint('ARGS ' + json.dumps({'argv': sys.argv[1:], 'env': os.environ.get('HOSTILE')}))\n"


@pytest.fixture
def user_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A user module in the submit directory, importable here (signatures) and on the node."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "valmod.py").write_text(USER_MODULE)
    (work / "show_args.py").write_text(ARGS_SCRIPT)
    monkeypatch.chdir(work)
    monkeypatch.syspath_prepend(str(work))
    import importlib

    sys.modules.pop("valmod", None)
    return importlib.import_module("valmod")


def test_positional_arguments_are_recorded_by_name(user_code: Any) -> None:
    task = nemorun.Partial(user_code.show, "hi", [1, 2], n=3)
    assert task.params == {"text": "hi", "items": [1, 2], "n": 3}
    assert python_api.task_overrides(task) == ["task=function", "task.name=show", "task.target=valmod.show", "task.params.text=hi",
                                               "task.params.items=[1, 2]", "task.params.n=3"]
    cfg = nemorun.Config(user_code.use, "p-value", label="l")
    assert cfg.to_dict() == {"_target_": "valmod.use", "p": "p-value", "label": "l"}
    # no name to record: Hydra's _args_ for a Config value ...
    assert nemorun.Config(user_code.pair, 1, 2).to_dict() == {"_target_": "valmod.pair", "_args_": [1, 2]}
    assert nemorun.Config(user_code.gather, "a", "b", sep="+").to_dict() == {"_target_": "valmod.gather", "_args_": ["a", "b"], "sep": "+"}


@pytest.mark.parametrize(("build", "message"), [
    (lambda m: nemorun.Partial(m.pair, 1, 2), "Partial(valmod.pair, ...): parameter 'a' is positional-only and the job calls valmod.pair with keyword"),
    (lambda m: nemorun.Partial(m.gather, 1, 2), "Partial(valmod.gather, ...): parameter '*parts' is a *args parameter"),
    (lambda m: nemorun.Partial(m.show, 1, 2, 3, 4), "Partial(valmod.show, ...): too many positional arguments"),
    (lambda m: nemorun.Partial(m.show, 1, text=2), "Partial(valmod.show, ...): multiple values for argument 'text'"),
    (lambda m: nemorun.Partial("valmod.show", 1), "Partial(valmod.show, ...) takes keyword arguments only here"),
    (lambda m: nemorun.Config(m.use, 1, 2, 3), "Config(valmod.use, ...): too many positional arguments"),
])
def test_positional_arguments_without_a_name_are_refused_for_a_task(user_code: Any, build: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        build(user_code)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


# -- for real: hostile values on the node, records, rerun, the with block ------------------------

HOSTILE = ["1.10", "true", "null", "a,b", "${oc.env:HOME}", "$(touch pwned)", "`id`", "it's \"quoted\"", "line1\nline2", "é€😀",
           "\\${x}", "a\\", "#c", " lead", "{a: 1}"]


def _tagged(exp: nemorun.Experiment, job: str, tag: str) -> Any:
    [line] = [line for line in exp.logs(job) if line.startswith(tag + " ")]
    return json.loads(line[len(tag) + 1:])


def test_hostile_values_arrive_on_the_node_and_survive_a_rerun(user_code: Any, nemorun_home: Path, cli_env: dict[str, str]) -> None:
    exp = nemorun.Experiment("hostile")
    exp.add(nemorun.Partial(user_code.show, "|".join(HOSTILE), HOSTILE), name="fn")
    exp.add(nemorun.Partial(user_code.use, nemorun.Config(user_code.pair, "$(id)", "1.10"), label="${x}"), name="cfg")
    script = nemorun.Script(path="show_args.py", args=HOSTILE, env={"HOSTILE": "\n".join(HOSTILE)})
    exp.add(script, name="script")
    exp.run(detach=False)
    assert {k: s.state.value for k, s in exp.status().items()} == dict.fromkeys(("fn", "cfg", "script"), "SUCCEEDED")
    assert _tagged(exp, "fn", "SHOW") == {"text": "|".join(HOSTILE), "items": HOSTILE, "n": 1, "env": None}
    assert _tagged(exp, "cfg", "USE") == {"p": ["$(id)", "1.10"], "label": "${x}"}
    assert _tagged(exp, "script", "ARGS") == {"argv": HOSTILE, "env": "\n".join(HOSTILE)}
    assert not Path("pwned").exists()

    only_fn = nemorun.run(nemorun.Partial(user_code.show, "|".join(HOSTILE), HOSTILE), name="hostile-fn", detach=False)
    assert only_fn is not None
    proc = run_cli(["exp", "rerun", only_fn.id, "task.params.n=7"], env=cli_env, cwd=os.getcwd())
    assert proc.returncode == 0, proc.stderr
    again = nemorun.Experiment.latest()
    assert again.id != only_fn.id and again.wait(poll=0.2)["show"].state.value == "SUCCEEDED"
    assert _tagged(again, "show", "SHOW") == {"text": "|".join(HOSTILE), "items": HOSTILE, "n": 7, "env": None}


def test_recorded_overrides_read_as_typed_and_rerun_from_the_shell(nemorun_home: Path, cli_env: dict[str, str],
                                                                   tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``task=function`` + only what the task sets: the record reads like the command line, its
    config.yaml is the CLI's for the same job, and ``exp rerun ID task.params.lr=...`` works."""
    monkeypatch.chdir(tmp_path)
    exp = nemorun.run(nemorun.Partial(train, 3, lr=0.5, sleep=0.0), name="typed", detach=False)
    assert exp is not None
    assert exp.meta["overrides"] == ["executor=local", "task=function", "task.name=train", "task.target=nemorun.examples.train.train",
                                     "task.params.steps=3", "task.params.lr=0.5", "task.params.sleep=0.0", "name=typed", "wait=true"]
    proc = run_cli(["task=train", "task.params.steps=3", "task.params.lr=0.5", "task.params.sleep=0.0", "~task.params.seed", "name=typed",
                    "wait=true"], env={**cli_env, "NEMORUN_HOME": str(nemorun_home)}, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    from_cli = nemorun.Experiment.latest()
    assert (from_cli.path / "config.yaml").read_text() == (exp.path / "config.yaml").read_text()

    proc = run_cli(["exp", "rerun", exp.id, "task.params.lr=0.25"], env=cli_env, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    again = nemorun.Experiment.latest()
    assert again.wait(poll=0.2)["train"].state.value == "SUCCEEDED"
    assert (again.path / "config.yaml").read_text() == (exp.path / "config.yaml").read_text().replace("lr: 0.5", "lr: 0.25")


def test_an_exception_in_the_with_block_submits_nothing(nemorun_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyError), warnings.catch_warnings():
        warnings.simplefilter("error")  # and no "not run" warning on top of the user's exception
        with nemorun.Experiment("broken") as exp:
            exp.add(nemorun.Script(inline=f"touch {tmp_path / 'ran'}"), name="job")
            raise KeyError("user bug")
    assert not (nemorun_home / "experiments").exists() and not (tmp_path / "ran").exists()


def test_leaving_the_block_without_run_launches_nothing_and_warns(nemorun_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As in NeMo-Run, only exp.run() launches (its __exit__ acts on a launched experiment only);
    jobs added and neither run nor dry-run are a forgotten exp.run(): warned, not submitted."""
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match=r"experiment 'forgot' was not run: its jobs \(a, b\) were added but exp.run\(\) was never called"):
        with nemorun.Experiment("forgot") as exp:
            exp.add(nemorun.Script(inline="true"), name="a")
            exp.add(nemorun.Script(inline="true"), name="b")
    assert not (nemorun_home / "experiments").exists()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with nemorun.Experiment("looked") as exp:
            exp.add(nemorun.Script(inline="true"), name="a")
            exp.dryrun()
        with nemorun.Experiment("empty"):
            pass
        with nemorun.Experiment("ran") as exp:
            exp.add(nemorun.Script(inline="true"), name="a")
            exp.run(detach=False)
    assert [str(w.message) for w in seen if "was not run" in str(w.message)] == []
    assert [e["name"] for e in nemorun.experiments()] == ["ran"]
