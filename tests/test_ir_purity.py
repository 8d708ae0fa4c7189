"""Targets and templates read resources, image, mounts, env and retries from the IR only.

Why: each executor spells these differently (``num_nodes``/``nodes``, ``num_gpus``/``gpus``,
``image``/``container_image``); ``nemorun.lower.EXECUTOR_FIELDS`` is the ONE place that maps
them. A target that reads ``job.executor.<mapped field>`` again bypasses that mapping (and the
capability check built on it). Scanned: the AST of ``compiler/nemorun/targets/*.py`` (attribute
reads and ``getattr`` on the executor, including names bound to it) and every template.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from nemorun.lower import EXECUTOR_FIELDS
from nemorun.targets import TARGET_MODULES
from tests.conftest import ROOT

TARGETS = ROOT / "compiler" / "nemorun" / "targets"
TEMPLATES = ROOT / "templates"
# modules every target uses: they must not read any executor's mapped fields
SHARED = [ROOT / "compiler" / "nemorun" / name for name in ("launchers.py", "command.py")]


def forbidden(kind: str) -> set[str]:
    return set(EXECUTOR_FIELDS[kind].schema_fields().values())


ALL_FORBIDDEN = set().union(*(forbidden(k) for k in EXECUTOR_FIELDS))


def _is_executor(node: ast.AST, bound: set[str]) -> bool:
    """``<x>.executor``, a name bound to it, or a call of a helper returning it (``_executor(job)``)."""
    if isinstance(node, ast.Attribute) and node.attr == "executor":
        return True
    if isinstance(node, ast.Name) and node.id in bound:
        return True
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and "executor" in node.func.id


def _bound_names(tree: ast.AST) -> set[str]:
    """Names assigned from the executor anywhere in the module (``ex = job.executor``,
    ``ex, res = job.executor, job.resources``); a fixpoint, so aliases of aliases count."""
    bound: set[str] = set()
    while True:
        before = len(bound)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Assign):
                continue
            for target in node.targets:
                pairs = (
                    zip(target.elts, node.value.elts)
                    if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
                    else [(target, node.value)]
                )
                for name, value in pairs:
                    if isinstance(name, ast.Name) and _is_executor(value, bound):
                        bound.add(name.id)
        # parameters annotated with an executor schema (def f(ex: KubeflowExecutorConfig))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.Lambda)):
                for arg in node.args.args:
                    ann = getattr(arg, "annotation", None)
                    if isinstance(ann, ast.Name) and ann.id.endswith("ExecutorConfig"):
                        bound.add(arg.arg)
        if len(bound) == before:
            return bound


def mapped_reads(source: str, fields: set[str]) -> list[str]:
    """``line: expression`` for every read of a mapped field from the executor."""
    tree = ast.parse(source)
    bound = _bound_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in fields and _is_executor(node.value, bound):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
            and len(node.args) >= 2 and _is_executor(node.args[0], bound)
            and isinstance(node.args[1], ast.Constant) and node.args[1].value in fields
        ):  # fmt: skip
            found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize("kind", sorted(TARGET_MODULES))
def test_target_reads_mapped_fields_from_the_ir(kind: str) -> None:
    path = TARGETS / f"{kind}.py"
    found = mapped_reads(path.read_text(), forbidden(kind))
    assert not found, f"{path.name} reads executor fields the IR holds (use job.resources/image/mounts/env/retries): {found}"


@pytest.mark.parametrize("path", SHARED, ids=lambda p: p.name)
def test_shared_modules_read_no_mapped_field(path: Path) -> None:
    found = mapped_reads(path.read_text(), ALL_FORBIDDEN)
    assert not found, f"{path.name} reads executor fields the IR holds: {found}"


def template_reads(text: str, fields: set[str]) -> list[str]:
    return [m.group(0) for m in re.finditer(r"\bjob\.executor\.(\w+)", text) if m.group(1) in fields]


@pytest.mark.parametrize("path", sorted(TEMPLATES.rglob("*.j2")), ids=lambda p: p.relative_to(TEMPLATES).as_posix())
def test_templates_read_mapped_fields_from_the_ir(path: Path) -> None:
    kind = path.relative_to(TEMPLATES).parts[0]
    fields = forbidden(kind) if kind in EXECUTOR_FIELDS else ALL_FORBIDDEN
    found = template_reads(path.read_text(), fields)
    assert not found, f"{path.relative_to(ROOT)} reads executor fields the IR holds: {found}"


def test_every_executor_schema_is_mapped() -> None:
    """A new executor needs its row in EXECUTOR_FIELDS, naming fields its schema has."""
    from nemorun.schemas import all_schemas

    schemas = {n[len("_schema_executor_"):]: cls for n, cls in all_schemas().items() if n.startswith("_schema_executor_")}
    schemas = {k: v for k, v in schemas.items() if k in TARGET_MODULES}
    assert set(schemas) == set(EXECUTOR_FIELDS) == set(TARGET_MODULES)
    import dataclasses

    for kind, cls in schemas.items():
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(forbidden(kind) - names)
        assert not missing, f"EXECUTOR_FIELDS[{kind!r}] names fields {cls.__name__} does not have: {missing}"


def test_the_scan_catches_what_it_must() -> None:
    """The scan itself: every way a target could read a mapped field is found, other reads are not."""
    fields = {"gpus_per_node", "time", "num_nodes", "container_image"}
    source = (
        "def render(job):\n"
        "    a = job.executor.gpus_per_node\n"
        "    ex = job.executor\n"
        "    b = ex.num_nodes\n"
        "    e2 = ex\n"
        "    c = getattr(e2, 'time')\n"
        "    d, res = job.executor, job.resources\n"
        "    return d.container_image, res.time, ex.partition, job.resources.gpus_per_node\n"
        "def helper(ex2: SlurmExecutorConfig):\n"
        "    return ex2.time\n"
    )
    found = [line.split(":", 1)[0] for line in mapped_reads(source, fields)]
    assert sorted(found, key=int) == ["2", "4", "6", "8", "10"]
    assert template_reads("{{ job.executor.time }} {{ job.executor.partition }} {{ job.resources.time }}", fields) == ["job.executor.time"]
