"""Exact option-name checks for sbatch / srun (Slurm 22.05.8 + Pyxis 0.24.0), torchrun (PyTorch
2.13.0) and ft_launcher (nvidia-resiliency-ext 0.7.0), from the programs' saved help texts.

Both getopt_long (Slurm) and argparse (torchrun, ft_launcher) silently accept unambiguous
*prefixes* of long options (`--gpus-per-nod=8`, `--nproc-per 8`), so a typo can pass a real
parser.  Here only exact names are accepted; a prefix is reported as unknown.

Which options take a value is derived from the help text: Slurm `--opt=ARG` (required),
`--opt[=ARG]` (optional, only `--opt=ARG` form), `--opt` (none); argparse `--opt METAVAR` /
`--opt {a,b}` (one value) or bare `--opt` (flag).  Argument scanning stops at the first
positional (the batch script / executable / training script); `--` also ends the options.
"""

from __future__ import annotations

import difflib
import functools
import re
import shlex

from ._common import data_path

_GETOPT, _ARGPARSE = "getopt", "argparse"
PROGRAMS = {
    # program: (style, help files)
    "sbatch": (_GETOPT, ("sbatch-22.05.8-pyxis-0.24.0.help.txt", "sbatch-22.05.8.man-only-options.txt")),
    "srun": (_GETOPT, ("srun-22.05.8-pyxis-0.24.0.help.txt", "srun-22.05.8.man-only-options.txt")),
    "torchrun": (_ARGPARSE, ("torchrun-2.13.0.help.txt",)),
    "ft_launcher": (_ARGPARSE, ("ft_launcher-nvrx-0.7.0.help.txt",)),
}
# Where `--help` misstates the argument kind; each checked with the real Slurm 22.05.8 binaries
# (Debian slurm-client 22.05.8-4+deb12u3): `--x=1` accepted although the help shows no `=ARG`,
# and `sbatch --container script.sh` consumes script.sh as the bundle path.
_ARG_OVERRIDES = {
    "sbatch": {"--container": "required", "--get-user-env": "optional", "--no-kill": "optional",
               "-k": "optional"},
    "srun": {"--container": "required", "--kill-on-bad-exit": "optional", "-K": "optional",
             "--no-kill": "optional", "-k": "optional", "--overlap": "optional", "--resv-ports": "optional"},
}

_SLURM_OPT_RE = re.compile(
    r"^ {2,6}(?:(?P<short>-[A-Za-z0-9]),?\s+)?(?P<long>--[A-Za-z0-9][-A-Za-z0-9_]*)(?P<arg>\[=|=)?")
_ARGPARSE_PART_RE = re.compile(r"^(?P<name>--?[A-Za-z0-9][-A-Za-z0-9_]*)(?:\s+(?P<metavar>\S+))?$")


def _parse_getopt_help(text: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    for line in text.splitlines():
        m = _SLURM_OPT_RE.match(line)
        if not m:
            continue
        kind = {"=": "required", "[=": "optional", None: "none"}[m.group("arg")]
        for name in (m.group("long"), m.group("short")):
            if name and name not in opts:
                opts[name] = kind
    return opts


def _parse_argparse_help(text: str) -> dict[str, str]:
    opts: dict[str, str] = {}
    in_options = False
    for line in text.splitlines():
        if re.match(r"^\S.*:$", line):  # section header ("options:", "positional arguments:", ...)
            in_options = True
            continue
        if not in_options or not line.startswith("  -") or line.startswith("   "):
            continue
        invocation = re.split(r"\s{2,}", line.strip())[0]
        for part in invocation.split(", "):
            m = _ARGPARSE_PART_RE.match(part.strip())
            if not m:
                raise ValueError(f"unparsed help line: {line!r}")
            opts[m.group("name")] = "required" if m.group("metavar") else "none"
    return opts


@functools.lru_cache(maxsize=None)
def _options(program: str) -> dict[str, str]:
    try:
        style, files = PROGRAMS[program]
    except KeyError:
        raise ValueError(f"unknown program {program!r}; expected one of {sorted(PROGRAMS)}") from None
    opts: dict[str, str] = {}
    for name in files:
        text = data_path("cli", name).read_text()
        parsed = _parse_getopt_help(text) if style == _GETOPT else _parse_argparse_help(text)
        for k, v in parsed.items():
            opts.setdefault(k, v)
    opts.update(_ARG_OVERRIDES.get(program, {}))
    return opts


def known_flags(program: str) -> frozenset[str]:
    """Exact option names ('--nnodes', '--nproc_per_node', '-m', ...) the program accepts."""
    return frozenset(_options(program))


def option_arity(program: str, name: str) -> str:
    """'none' | 'required' | 'optional' for a known option name (KeyError otherwise)."""
    return _options(program)[name]


def _unknown(program: str, name: str, opts: dict[str, str]) -> tuple[str, str]:
    """Error message for an unknown option and a guessed arity (to keep scanning sensibly)."""
    longs = [o for o in opts if o.startswith("--")]
    prefixed = sorted(o for o in longs if o.startswith(name)) if name.startswith("--") else []
    if prefixed:
        hint = (f" (only a prefix of {', '.join(prefixed[:4])}; "
                f"{'getopt' if PROGRAMS[program][0] == _GETOPT else 'argparse'} may accept abbreviations "
                "but exact names are required)")
        return f"{program}: unknown option '{name}'{hint}", opts[prefixed[0]]
    close = difflib.get_close_matches(name, longs if name.startswith("--") else list(opts), n=1, cutoff=0.75)
    if close:
        return f"{program}: unknown option '{name}' (did you mean '{close[0]}'?)", opts[close[0]]
    return f"{program}: unknown option '{name}'", "none"


def _scan(argv: list[str], program: str, *, stop_at_positional: bool = True) -> list[str]:
    opts = _options(program)
    getopt = PROGRAMS[program][0] == _GETOPT
    errs: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok == "--":
            break
        if getopt and tok == ":":  # heterogeneous-job component separator
            continue
        if tok.startswith("--") and len(tok) > 2:
            name, eq, _ = tok.partition("=")
            arity = opts.get(name)
            if arity is None:
                msg, arity = _unknown(program, name, opts)
                errs.append(msg)
            elif eq and arity == "none":
                errs.append(f"{program}: option '{name}' does not take an argument (got '{tok}')")
            if not eq and arity == "required":
                if i >= len(argv):
                    errs.append(f"{program}: option '{name}' requires an argument")
                i += 1  # the value
            continue
        if tok.startswith("-") and len(tok) > 1 and tok != "-":
            # one or more short options: -v, -vv, -N2, -N 2, -t3
            j = 1
            while j < len(tok):
                short = "-" + tok[j]
                arity = opts.get(short)
                if arity is None:
                    msg, arity = _unknown(program, short, opts)
                    errs.append(msg if len(tok) == 2 else f"{msg} in '{tok}'")
                if arity in ("required", "optional"):
                    if j + 1 == len(tok) and arity == "required":
                        if i >= len(argv):
                            errs.append(f"{program}: option '{short}' requires an argument")
                        i += 1
                    break  # the rest of the token is the value
                j += 1
            continue
        # a positional: script / executable / training_script; the rest belongs to it
        if stop_at_positional:
            break
        errs.append(f"{program}: unexpected non-option argument '{tok}'")
    return errs


def cli_flag_errors(argv: list[str], program: str) -> list[str]:
    """Report every option in argv (up to the script / command) that is not an exact known name.

    argv excludes the program name (a leading 'sbatch' / 'torchrun' / ... is tolerated)."""
    argv = [str(a) for a in argv]
    if argv and argv[0].rsplit("/", 1)[-1] == program:
        argv = argv[1:]
    return _scan(argv, program)


_SBATCH_PREFIX = "#SBATCH"


def sbatch_header_flag_errors(script_text: str) -> list[str]:
    """Check the option names of every `#SBATCH` line of a batch script against sbatch's list.

    sbatch stops reading `#SBATCH` lines at the first line that is neither blank nor a comment;
    later `#SBATCH` lines are silently ignored and reported here.  `#SBATCH hetjob` (or the old
    `packjob`) separates heterogeneous components."""
    errs: list[str] = []
    in_header = True
    for lineno, line in enumerate(script_text.splitlines(), 1):
        stripped = line.strip()
        if in_header and stripped and not stripped.startswith("#"):
            in_header = False
        if not stripped.startswith(_SBATCH_PREFIX):
            continue
        rest = stripped[len(_SBATCH_PREFIX):]
        if rest and not rest[0].isspace():
            continue  # e.g. '#SBATCHX' is just a comment
        if not in_header:
            errs.append(f"line {lineno}: #SBATCH after the first command is ignored by sbatch: {stripped!r}")
            continue
        if rest.strip() in ("hetjob", "packjob"):
            continue
        try:
            tokens = shlex.split(rest, comments=True)
        except ValueError as exc:
            errs.append(f"line {lineno}: cannot split {stripped!r}: {exc}")
            continue
        errs += [f"line {lineno}: {e}" for e in _scan(tokens, "sbatch", stop_at_positional=False)]
    return errs
