"""What each start-up path loads and does (issue 18: a dry run, ``--help`` and TAB start fast).

Speed itself is measured in ``bench/startup.py`` and ``bench/help_tab.py``; these tests pin the
causes, each a defect that was found by profiling: a compose-cache hit must not import Hydra (an
override check parsed every command line with Hydra's parser, which imports all of Hydra);
``--help``/TAB from the cache must not import OmegaConf (the record store pulled in the schemas
for one name check); Hydra's ConfigStore converts a schema only when a compose loads it (and
then gives exactly what the eager conversion gave); compiled templates come from Jinja's
bytecode cache, which an unwritable or damaged cache must never break. Every process here is the
real CLI or a real interpreter, in a private NEMORUN_HOME.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from nemorun import hydra_compat, launching
from nemorun.errors import ConfigError
from nemorun.schemas import all_schemas

DRY_RUN = ["task=train", "dryrun=true"]


def _modules_after(code: str, env: dict[str, str], cwd: Path) -> set[str]:
    """The modules a fresh interpreter holds after running ``code`` (which prints to stdout)."""
    probe = f"{code}\nimport json, sys\nprint('\\nMODULES=' + json.dumps(sorted(sys.modules)), file=sys.stderr)"
    proc = subprocess.run([sys.executable, "-c", probe], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES=")][-1]
    return set(json.loads(line[len("MODULES="):]))


def _cli(args: list[str]) -> str:
    return f"import sys\nfrom nemorun.cli import main\ntry:\n    main({args!r})\nexcept SystemExit as e:\n    assert not e.code, e.code"


def _tops(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_a_compose_cache_hit_imports_no_hydra(cli_env: dict[str, str], tmp_path: Path) -> None:
    cli_env.pop("NEMORUN_COMPOSE_CACHE", None)
    cold = _modules_after(_cli(DRY_RUN), cli_env, tmp_path)  # composes with Hydra, fills the cache
    assert "hydra" in _tops(cold)
    warm = _modules_after(_cli(DRY_RUN), cli_env, tmp_path)
    assert "hydra" not in _tops(warm) and "hydra_plugins" not in _tops(warm)
    assert "nemorun.targets.local" in warm  # it did render (from the cached config)


# What a single dry run has no use for: the experiment catalog (SQLite) is opened only to record a
# launch; SSH, container and cloud SDKs only to reach a backend.
NOT_FOR_A_DRY_RUN = ("sqlite3", "_sqlite3", "paramiko", "fabric", "invoke", "docker", "kubernetes", "sky",
                     "requests", "urllib3", "ssl", "http.client", "asyncio", "concurrent.futures", "multiprocessing")


@pytest.mark.parametrize("cache", ["0", "1"])
def test_a_single_dry_run_imports_no_recording_or_backend_machinery(cli_env: dict[str, str], tmp_path: Path,
                                                                     cache: str) -> None:
    cli_env["NEMORUN_COMPOSE_CACHE"] = cache
    _modules_after(_cli(DRY_RUN), cli_env, tmp_path)  # with the cache on: the next run is a hit
    loaded = _modules_after(_cli(DRY_RUN), cli_env, tmp_path)
    assert "nemorun.targets.local" in loaded  # it did render
    assert not set(NOT_FOR_A_DRY_RUN) & loaded, sorted(set(NOT_FOR_A_DRY_RUN) & loaded)


def test_a_plain_run_composes_without_hydras_own_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hydra's compose API composes its ``hydra`` node (launcher, sweeper, logging, help) and throws it
    away: a plain run does not call it (the same config, tests/test_compose_paths_agree.py); an
    override of ``hydra`` still does."""
    import io

    import hydra

    calls: list[list[str]] = []
    real = hydra.compose

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(list(kwargs.get("overrides") or []))
        return real(*args, **kwargs)

    monkeypatch.setenv("NEMORUN_COMPOSE_CACHE", "0")
    monkeypatch.setattr(hydra, "compose", counted)
    out = io.StringIO()
    launching.launch([*DRY_RUN, "task.params.lr=0.5"], out=out)
    assert calls == [] and '"lr": 0.5' in out.getvalue()
    launching.launch([*DRY_RUN, "hydra.job.chdir=true"], out=io.StringIO())
    assert calls == [["task=train", "dryrun=true", "hydra.job.chdir=true"]]


def test_the_cli_starts_up_without_the_cyclic_collector_and_plans_with_it(cli_env: dict[str, str],
                                                                          tmp_path: Path) -> None:
    """``python -m nemorun`` and the console script pause the collector before importing the CLI;
    it stays off while the config is composed and is on again (start-up's objects frozen) before
    a single run or a sweep is planned. A process that calls :func:`nemorun.cli.main` itself keeps
    its collector as it was."""
    cli_env["NEMORUN_COMPOSE_CACHE"] = "0"
    code = (
        "import gc, io, contextlib\n"
        "gc.disable()\n"
        "from nemorun import cli, compose, launching\n"
        "seen = []\n"
        "def spy(name, real):\n"
        "    def call(*a, **k):\n"
        "        seen.append((name, gc.isenabled(), gc.get_freeze_count() > 0))\n"
        "        return real(*a, **k)\n"
        "    return call\n"
        "compose.compose_single = spy('compose', compose.compose_single)\n"
        "launching.plan_config = spy('plan single', launching.plan_config)\n"
        "launching.plan = spy('plan sweep', launching.plan)\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    cli.run(['task=train', 'dryrun=true'])\n"
        "    cli.run(['-m', 'task=train', 'task.params.lr=0.1,0.2', 'dryrun=true'])\n"
        "    gc.unfreeze(); gc.enable()\n"
        "    cli.main(['task=train', 'dryrun=true'])\n"
        "print(seen)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=cli_env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = eval(proc.stdout.strip().splitlines()[-1])  # noqa: S307 - our own printed list
    assert seen == [("compose", False, False), ("plan single", True, True), ("plan sweep", True, True),
                    ("compose", True, False), ("plan single", True, False)]


def test_max_parallel_on_a_single_run_is_still_refused_and_other_values_still_pass() -> None:
    assert launching._max_parallel(["task=train", "name=hydra.launcher.max_parallel"]) is None  # a value, not the key
    assert launching._max_parallel(["task=train", "+hydra.launcher.max_parallel=3"]) == 3
    with pytest.raises(ConfigError, match="max_parallel"):
        launching.launch(["task=train", "dryrun=true", "hydra.launcher.max_parallel=2"], multirun=False)


@pytest.mark.parametrize("argv, comp_line", [(["--help"], None), (["-sc", "query=bash"], "nemorun task=train task.params.")])
def test_help_and_tab_from_the_cache_import_no_omegaconf(cli_env: dict[str, str], tmp_path: Path, argv: list[str],
                                                          comp_line: str | None) -> None:
    cli_env.pop("NEMORUN_COMPOSE_CACHE", None)
    if comp_line is not None:
        cli_env["COMP_LINE"] = comp_line
    code = f"import sys\nsys.argv = ['nemorun', *{argv!r}]\nfrom nemorun.quick import main\nmain()"
    first = _modules_after(code, cli_env, tmp_path)  # a miss: Hydra answers and the answer is kept
    assert "omegaconf" in _tops(first)
    hit = _modules_after(code, cli_env, tmp_path)
    assert not {"omegaconf", "hydra", "yaml", "jinja2"} & _tops(hit), sorted(_tops(hit))
    assert "nemorun.schemas" not in hit and "nemorun.cli" not in hit


def test_a_lazily_stored_schema_loads_as_the_eager_conversion() -> None:
    from hydra.core.config_store import ConfigStore

    from nemorun import schemas

    schemas.register()
    store = ConfigStore.instance()
    for name, cls in all_schemas().items():
        loaded = store.load(f"{name}.yaml")
        eager = OmegaConf.structured(cls)
        assert OmegaConf.get_type(loaded.node) is cls, name
        assert OmegaConf.to_yaml(loaded.node) == OmegaConf.to_yaml(eager), name
        assert (loaded.name, loaded.group, loaded.package, loaded.provider) == (f"{name}.yaml", None, None, "nemorun")


def test_a_loaded_schema_is_a_copy_and_conversion_happens_once() -> None:
    from hydra.core.config_store import ConfigStore

    class Probe:  # any structured config: a dataclass
        pass

    import dataclasses

    Probe = dataclasses.make_dataclass("Probe", [("steps", int, dataclasses.field(default=3))])  # noqa: N806
    hydra_compat.store_schema("_startup_probe", Probe, provider="test")
    store = ConfigStore.instance()
    stored = store.repo["_startup_probe.yaml"]
    assert stored._converted == []  # nothing converted at registration
    first = store.load("_startup_probe.yaml")
    first.node.steps = 99  # a caller's copy
    import copy

    copied_store = copy.deepcopy(store)  # what each compose's CachingConfigRepository does
    again = copied_store.load("_startup_probe.yaml")
    assert again.node.steps == 3 and store.load("_startup_probe.yaml").node.steps == 3
    assert len(stored._converted) == 1 and again.node is not stored._converted[0]
    del store.repo["_startup_probe.yaml"]


def test_a_compose_converts_only_the_schemas_its_defaults_pick(tmp_path: Path) -> None:
    code = (
        "from hydra.core.config_store import ConfigStore\n"
        "from nemorun.compose import compose_files, hydra_context\n"
        "with hydra_context():\n"
        "    compose_files(['task=train'])\n"
        "repo = ConfigStore.instance().repo\n"
        "print(sorted(k[:-5] for k, v in repo.items() if k.startswith('_schema_') and v._converted))\n"
    )
    env = {**os.environ, "NEMORUN_HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    converted = set(eval(proc.stdout.strip().splitlines()[-1]))  # noqa: S307 - our own printed list
    assert {"_schema_root", "_schema_task", "_schema_executor_local"} <= converted
    assert "_schema_executor_slurm" not in converted and len(converted) < len(all_schemas()) // 2


def _render_in_fresh_process(home: Path, template: str) -> str:
    code = f"from nemorun import render\nprint(render.template({template!r}).environment.bytecode_cache.directory)"
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "NEMORUN_HOME": str(home)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_templates_compile_once_into_nemorun_home(tmp_path: Path) -> None:
    folder = Path(_render_in_fresh_process(tmp_path, "slurm/sbatch.sh.j2"))
    assert folder.parent == tmp_path / "cache" / "jinja"
    [entry] = list(folder.iterdir())
    before = entry.stat().st_mtime_ns
    _render_in_fresh_process(tmp_path, "slurm/sbatch.sh.j2")  # loaded, not compiled and written again
    assert [p.name for p in folder.iterdir()] == [entry.name] and entry.stat().st_mtime_ns == before


def test_a_dry_run_renders_the_same_from_a_cold_warm_damaged_or_unwritable_template_cache(cli_env: dict[str, str],
                                                                                          tmp_path: Path) -> None:
    cli_env["NEMORUN_COMPOSE_CACHE"] = "0"
    runs = iter(range(100))

    def sbatch() -> str:
        out = tmp_path / f"out{next(runs)}"
        args = ["executor=slurm", "executor.account=a", "task=train", "dryrun=true", f"render_dir={out}"]
        proc = subprocess.run([sys.executable, "-m", "nemorun", *args], env=cli_env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        [script] = list(out.rglob("sbatch.sh"))
        return re.sub(r"\d{8}-\d{6}-\d{6}-[0-9a-f]{4}", "<id>", script.read_text())  # a new experiment each run

    home = Path(cli_env["NEMORUN_HOME"])
    cold = sbatch()
    folder = next((home / "cache" / "jinja").iterdir())
    assert sbatch() == cold  # from the bytecode cache
    for entry in folder.iterdir():
        entry.write_bytes(entry.read_bytes()[:40])  # damaged: truncated inside the code
    assert sbatch() == cold
    for entry in folder.iterdir():
        entry.write_bytes(b"j2 garbage")
    assert sbatch() == cold
    cache = home / "cache" / "jinja"
    for entry in folder.iterdir():
        entry.unlink()
    folder.rmdir()
    cache.rmdir()
    cache.write_text("not a folder")  # the cache cannot be written at all
    assert sbatch() == cold
