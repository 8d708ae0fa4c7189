"""Regenerate the Slurm option references of this folder from a SchedMD/slurm git clone.

Not run by the tests (they read the files it wrote). Usage:
    python tests/contracts/slurm/extract.py /path/to/slurm-clone slurm-25-11-7-1 25.11.7

For the tag it writes, per program (sbatch, srun):
- ``<prog>-<version>.help.txt``: the text ``<prog> --help`` prints, rebuilt from the C string
  literals of ``_help()`` in ``src/<prog>/opt.c`` (all branches, i.e. as printed with
  TaskPlugin=task/affinity; no SPANK plugin loaded, so no Pyxis ``--container-*`` lines);
- ``<prog>-<version>.man-only-options.txt``: long options documented as an item of
  ``doc/man/man1/<prog>.1`` but absent from that help text, one ``      --name`` per line.
The union of both is the option list nemorun embeds (``nemorun.slurm_flags``); the same recipe
applied to tag slurm-22-05-8-1 gives exactly the list checked against the real 22.05.8 binaries.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LONG = re.compile(r"^ {2,6}(?:-[A-Za-z0-9],?\s+)?--([A-Za-z0-9][-A-Za-z0-9_]*)", re.M)


def show(repo: str, tag: str, path: str) -> str:
    return subprocess.run(["git", "-C", repo, "show", f"{tag}:{path}"], capture_output=True, text=True, check=True).stdout


def help_text(repo: str, tag: str, prog: str) -> str:
    try:
        src = show(repo, tag, f"src/{prog}/opt.c")
    except subprocess.CalledProcessError:  # srun before 23.02
        src = show(repo, tag, f"src/{prog}/libsrun/opt.c")
    body = re.search(r"^static void _help\(void\)\n\{\n(.*?)\n\}\n", src, re.S | re.M).group(1)
    body = re.sub(r"//[^\n]*|/\*.*?\*/", "", body, flags=re.S)
    return "".join(ast.literal_eval(lit) for lit in re.findall(r'"(?:[^"\\\n]|\\.)*"', body))


def man_options(repo: str, tag: str, prog: str) -> set[str]:
    lines = show(repo, tag, f"doc/man/man1/{prog}.1").splitlines()
    names: set[str] = set()
    for i, line in enumerate(lines[:-1]):
        if line.startswith(".TP"):
            found = re.findall(r"\\-\\-([A-Za-z](?:[A-Za-z0-9_]|\\-)*)", lines[i + 1])
            names.update(n.replace("\\-", "-") for n in found)
    return names


def main(repo: str, tag: str, version: str) -> None:
    for prog in ("sbatch", "srun"):
        text = help_text(repo, tag, prog)
        (HERE / f"{prog}-{version}.help.txt").write_text(text)
        extra = sorted(man_options(repo, tag, prog) - set(LONG.findall(text)))
        (HERE / f"{prog}-{version}.man-only-options.txt").write_text("".join(f"      --{n}\n" for n in extra))
        print(prog, version, len(set(LONG.findall(text))), "in --help,", len(extra), "man-only")


if __name__ == "__main__":
    main(*sys.argv[1:4])
