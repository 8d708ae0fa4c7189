"""Golden files: every case in ``tests/golden_cases.py`` renders exactly ``golden/<case>/*``.

Uses pytest-regressions' ``file_regression`` (it shows a unified diff, and ``--force-regen`` or
our ``--update-golden`` rewrites). A missing golden file fails; it is never written silently.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from nemorun.command import ENTRY_FILE, ENTRY_SOURCE
from nemorun import compose
from nemorun.plan import plan, plan_config
from tests.conftest import ROOT
from tests.golden_cases import CASES
from tests.helpers import PINNED_SITE, compose_config

GOLDEN = ROOT / "golden"


def render_case(overrides: list[str]) -> dict[str, str]:
    """The case's artifacts by file name. The shipped entry point is not kept in golden/ (it is
    nemorun's own entry.py, byte for byte: checked here instead of stored once per case)."""
    if compose.is_sweep(overrides):  # a sweep case is planned as `nemorun -m` plans it
        with compose.hydra_context() as loader:
            planned = plan(compose.sweep_batch(overrides), compose.FilesComposer(loader), PINNED_SITE, multirun=True).jobs
    else:
        planned = plan_config(compose_config(overrides), PINNED_SITE).jobs
    out: dict[str, str] = {}
    for p in planned:
        prefix = "" if len(planned) == 1 else f"{p.job.name}/"
        for name, text in p.rendered.artifacts.items():
            if name == ENTRY_FILE:
                assert text == ENTRY_SOURCE == (ROOT / "compiler" / "nemorun" / "entry.py").read_text()
                continue
            out[prefix + name] = text
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str, request: pytest.FixtureRequest) -> None:
    artifacts = render_case(CASES[case])
    case_dir = GOLDEN / case
    update = request.config.getoption("--update-golden")
    if update:
        for old in case_dir.rglob("*"):
            if old.is_file() and old.relative_to(case_dir).as_posix() not in artifacts:
                old.unlink()
        for name, text in artifacts.items():
            (case_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (case_dir / name).write_text(text)
        return
    expected = {p.relative_to(case_dir).as_posix() for p in case_dir.rglob("*") if p.is_file()} if case_dir.exists() else set()
    assert set(artifacts) == expected, (
        f"case {case}: rendered {sorted(artifacts)} but golden/{case}/ holds {sorted(expected)}; "
        f"regenerate with: pytest tests/test_golden.py -k {case} --update-golden"
    )
    for name, text in artifacts.items():
        _compare(case_dir / name, text, case)


def _compare(path: Path, actual: str, case: str) -> None:
    import difflib

    expected = path.read_text()
    if expected != actual:
        diff = "".join(
            difflib.unified_diff(expected.splitlines(True), actual.splitlines(True), f"golden/{case}/{path.name}", "rendered")
        )
        pytest.fail(f"{path.name} differs from its golden file:\n{diff}\nregenerate: pytest tests/test_golden.py -k {case} --update-golden", pytrace=False)


def test_no_stale_golden_dirs() -> None:
    stale = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir() and p.name not in CASES) if GOLDEN.exists() else []
    assert not stale, f"golden/ has folders for cases that no longer exist: {stale}"
