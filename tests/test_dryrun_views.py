"""Lepton and DGX Cloud dry runs show the job's command as a readable script next to the JSON
that buries it in one string: a display-only section, derived from the artifact itself, that is
never written to ``render_dir``, recorded or sent (the golden artifacts are unchanged).
"""
from __future__ import annotations

import json
import shlex
from pathlib import Path

from nemorun.command import ENTRY_SOURCE
from nemorun.render import shquote
from nemorun.targets import dgxcloud, lepton
from tests.golden_cases import CASES
from tests.helpers import run_cli

ENTRY = f"<the nemorun entry point: nemorun/entry.py, {len(ENTRY_SOURCE)} bytes>"


def _dry(args: list[str], env: dict[str, str], out: Path) -> str:
    proc = run_cli([*args, "dryrun=true", f"render_dir={out}"], env={**env, "DGX_APP_SECRET": "unused-in-a-dry-run"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _section(stdout: str, title: str) -> str:
    head = f"==> {title} (display only, not submitted) <==\n"
    assert stdout.count(head) == 1, stdout[-2000:]
    rest = stdout.split(head, 1)[1]
    return rest.split("\n==> ", 1)[0].split("\n# job ", 1)[0].rstrip("\n")


def test_lepton_dry_run_shows_the_script_of_the_json(cli_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    stdout = _dry(CASES["lepton_train_torchrun"], cli_env, out)
    view = _section(stdout, lepton.SCRIPT_VIEW)
    command = json.loads((out / lepton.ARTIFACT).read_text())["spec"]["container"]["command"]
    assert command[:2] == ["/bin/bash", "-c"]
    assert view == command[2].replace(shquote(ENTRY_SOURCE), ENTRY)  # the same script, line for line
    assert "\n" in view and "exec torchrun" in view.splitlines()[-1] and "nvidia-smi" in view.splitlines()
    assert sorted(p.name for p in out.iterdir()) == [lepton.ARTIFACT]  # display only: no file


def test_lepton_view_shortens_the_code_archive(cli_env: dict[str, str], tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "big.py").write_text("".join(f"x{i} = {i * 7919}\n" for i in range(2000)))
    out = tmp_path / "out"
    proc = run_cli([*CASES["lepton_hello"], "packager=pattern", "packager.include_pattern=big.py", "dryrun=true",
                    f"render_dir={out}"], env=cli_env, cwd=str(code))
    assert proc.returncode == 0, proc.stderr
    view = _section(proc.stdout, lepton.SCRIPT_VIEW)
    script = json.loads((out / lepton.ARTIFACT).read_text())["spec"]["container"]["command"][2]
    [blob] = [w for w in shlex.split(script.split("printf %s ", 1)[1].split(" |", 1)[0])]
    assert len(blob) > 1000 and blob not in view and f"<code archive: {len(blob)} base64 characters>" in view


def test_dgxcloud_dry_run_shows_the_command_one_statement_a_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    stdout = _dry(CASES["dgxcloud_torchrun"], cli_env, out)
    view = _section(stdout, dgxcloud.COMMAND_VIEW)
    spec = json.loads((out / dgxcloud.ARTIFACT).read_text())["spec"]
    assert spec["command"] == "bash"
    flag, script = shlex.split(spec["args"])
    assert flag == "-c" and view.split("\n") == script.replace(shquote(ENTRY_SOURCE), ENTRY).split("; ")
    assert view.splitlines()[-1].startswith("exec torchrun ")

    plain = _section(_dry(CASES["dgxcloud_hello"], cli_env, tmp_path / "hello"), dgxcloud.COMMAND_VIEW)
    hello = json.loads((tmp_path / "hello" / dgxcloud.ARTIFACT).read_text())["spec"]
    assert hello["command"] == "bash" and plain == shlex.split(hello["args"])[1]  # the script, unquoted
