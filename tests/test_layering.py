"""The package's imports flow one way (front ends → plan/execute → targets/submitters → IR/store).

Why a test: the previous layout held eight modules in one import cycle by ~77 function-local
imports, which hid who depends on whom. Here every ``nemorun`` import (module level or not) is
an edge; the graph must be acyclic, no module may import a ``nemorun`` module inside a function
(only optional SDKs and heavy third-party modules are imported lazily), and importing the
modules one by one in dependency order in a fresh interpreter must load nothing new but the
module itself — so the order the graph claims is the order Python really follows.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "compiler" / "nemorun"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(tree: ast.AST, name: str, is_package: bool) -> list[tuple[str, bool]]:
    """(module, at module level) for every nemorun import in ``tree``."""
    known = modules()
    out: list[tuple[str, bool]] = []
    top_level = {id(n) for n in getattr(tree, "body", [])}
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{base}" if base else pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            if t == "nemorun" or t.startswith("nemorun."):
                out.append((t, id(node) in top_level or _in_type_checking(tree, node)))
    return out


def _in_type_checking(tree: ast.AST, target: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            if any(child is target for child in ast.walk(node)):
                return True
    return False


def graph() -> tuple[dict[str, set[str]], list[str]]:
    edges: dict[str, set[str]] = {}
    local: list[str] = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        deps = edges.setdefault(name, set())
        for target, top in imported(tree, name, path.name == "__init__.py"):
            if target != name:
                deps.add(target)
            if not top:
                local.append(f"{path.relative_to(ROOT)} imports {target} inside a function")
    # a module depends on its parent packages too (Python imports them first), unless the
    # package itself imports the module (a package's __init__ re-exporting its submodule)
    for name in list(edges):
        parts = name.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if name not in edges.get(parent, set()):
                edges[name].add(parent)
    return edges, local


def test_no_function_local_nemorun_imports() -> None:
    _, local = graph()
    assert not local, "\n".join(local)


def test_import_graph_is_acyclic() -> None:
    edges, _ = graph()
    try:
        list(TopologicalSorter(edges).static_order())
    except CycleError as exc:
        raise AssertionError(f"import cycle: {' -> '.join(exc.args[1])}") from None


def test_importing_in_dependency_order_loads_nothing_else() -> None:
    edges, _ = graph()
    order = [m for m in TopologicalSorter(edges).static_order() if m in modules() and m != "nemorun.__main__"]
    code = (
        "import importlib, json, sys\n"
        f"order = {json.dumps(order)}\n"
        "extra = {}\n"
        "for name in order:\n"
        "    before = set(sys.modules)\n"
        "    importlib.import_module(name)\n"
        "    parents = {name.rsplit('.', i)[0] for i in range(1, name.count('.') + 1)}\n"
        "    new = sorted(m for m in set(sys.modules) - before if m.split('.')[0] == 'nemorun' and m != name and m not in parents)\n"
        "    if new: extra[name] = new\n"
        "print(json.dumps(extra))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    extra = json.loads(proc.stdout.strip().splitlines()[-1])
    assert not extra, f"modules that loaded nemorun modules the import graph does not show: {extra}"
