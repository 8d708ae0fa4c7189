"""``nemorun --help``, ``nemorun -sc ...`` and TAB completion without composing (issue 18).

Why: Hydra composes the whole config tree for ``--help`` and again for every TAB press
(0.4-2.7 s each); a shell prompt that stalls that long is not used. Answers are kept in
``NEMORUN_HOME/cache/quick/`` under a key made by :func:`nemorun.compose_cache.cache_key` (the
same versions, config folders and ``NEMORUN_CONFIG_PATH`` that invalidate composed configs) plus
the ``--config-dir`` folder's files, so an edited option file is a miss, never a stale answer:

- ``--help`` / ``--hydra-help`` / ``-sc install=bash`` (with at most ``--config-dir DIR``): the
  output Hydra printed the first time, byte for byte;
- ``-sc query=bash`` (what ``eval "$(nemorun -sc install=bash)"`` runs on TAB): answered from an
  option index that Hydra's own calls filled for the words already typed
  (:mod:`nemorun.completion_index`), filtered by the word being typed exactly as Hydra's
  ``CompletionPlugin._query`` does; anything the index cannot answer exactly goes to Hydra;
- ``nemorun exp <TAB>``: sub-commands, their flags, experiment ids and job names from the
  experiment folders (Hydra would print a parser error into the prompt).

``NEMORUN_COMPOSE_CACHE=0`` turns this off with the compose cache. The CLI module is imported
only when this module did not answer: importing it costs more than the whole answer (hence the
``importlib`` calls, as in ``nemorun/__init__.py``).
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from nemorun import compose_cache
from nemorun.store import nemorun_home

HELP_FLAGS = ("--help", "-h", "--hydra-help")
COMPLETION_FLAGS = ("-sc", "--shell-completion")
CONFIG_DIR_FLAGS = ("--config-dir", "-cd")
MAX_ENTRIES = 512
# ``nemorun exp`` sub-commands and their flags (tests/test_quick.py checks them against exp_cli's parser)
EXP_COMMANDS: dict[str, tuple[str, ...]] = {
    "list": ("--name", "--limit", "--json", "-h", "--help"),
    "show": ("--json", "-h", "--help"),
    "status": ("--json", "-h", "--help"),
    "logs": ("-f", "--follow", "-h", "--help"),
    "cancel": ("--json", "-h", "--help"),
    "rerun": ("--resume", "--fresh-code", "--json", "-h", "--help"),
}
_JOB_ARG = ("logs", "cancel")  # commands whose second argument is a job name
_busy = False  # set while the slow path runs under a capture, so cli.main does not come back here


class _Unanswerable(Exception):
    """The index has no exact answer for this word: Hydra gives it."""


# -- keys and entries ------------------------------------------------------------------------------


def _key(kind: str, parts: Sequence[str], config_dir: Optional[str] = None) -> Optional[str]:
    base = compose_cache.cache_key([f"<quick:{kind}>", os.path.basename(sys.argv[0] or "nemorun"), *parts])
    if base is None:
        return None
    digest = hashlib.sha256(base.encode())
    if config_dir is not None:
        root = Path(config_dir)
        digest.update(f"config-dir {root}\n".encode(errors="surrogateescape"))
        if root.is_dir():
            compose_cache.tree_stamp(root, digest)
    return digest.hexdigest()


def _entry(key: str, suffix: str) -> Path:
    return nemorun_home() / "cache" / "quick" / f"{key}.{suffix}"


def _read(key: str, suffix: str) -> Optional[str]:
    data = compose_cache.read_entry(_entry(key, suffix))
    # surrogateescape: an option file name need not be UTF-8, and the answer holds it as it is
    return None if data is None else data.decode("utf-8", errors="surrogateescape")


def _write(key: str, suffix: str, text: str) -> None:
    compose_cache.write_entry(_entry(key, suffix), text.encode("utf-8", errors="surrogateescape"))


# -- whole outputs: --help, -sc install=bash -------------------------------------------------------


def _config_dir(args: list[str]) -> tuple[Optional[list[str]], Optional[str]]:
    """``args`` without ``--config-dir DIR`` (None when anything else would be left), and DIR."""
    rest: list[str] = []
    config_dir = None
    i = 0
    while i < len(args):
        a = args[i]
        if a in CONFIG_DIR_FLAGS and i + 1 < len(args) and config_dir is None:
            config_dir, i = args[i + 1], i + 2
            continue
        if a.startswith("--config-dir=") and config_dir is None:
            config_dir, i = a.split("=", 1)[1], i + 1
            continue
        rest.append(a)
        i += 1
    return rest, None if config_dir is None else str(Path(config_dir).expanduser().resolve())


def _cached_output(args: list[str], slow: Callable[[list[str]], None]) -> Optional[int]:
    rest, config_dir = _config_dir(args)
    whole = rest is not None and (
        (len(rest) == 1 and rest[0] in HELP_FLAGS)
        or (len(rest) == 2 and rest[0] in COMPLETION_FLAGS and rest[1] in ("install=bash", "uninstall=bash")))
    if not whole:
        return None
    key = _key("output", [*rest, f"config_dir={config_dir}"], config_dir)
    if key is None:
        return None
    text = _read(key, "out")
    if text is None:
        code, text = _captured(slow, args)
        if code != 0:
            sys.stdout.write(text)
            return code
        _write(key, "out", text)
    sys.stdout.write(text)
    return 0


def _captured(slow: Callable[[list[str]], None], args: list[str]) -> tuple[int, str]:
    global _busy
    buf = io.StringIO()  # printed once the slow path returns (then cached when it succeeded)
    _busy = True
    try:
        with contextlib.redirect_stdout(buf):
            try:
                slow(list(args))
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        _busy = False
    return code, buf.getvalue()


# -- TAB: Hydra's query ------------------------------------------------------------------------------

# Hydra's CompletionPlugin.strip_python_or_app_name, app form (python script.py ... is not nemorun)
_APP_ARGS = re.compile(r"^\s*[\w_\-=\./]+\s*(.*)")
_GROUP_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


@dataclass(frozen=True)
class Query:
    """A completion query as Hydra reads ``COMP_LINE``: finished words and the word being typed."""

    words: tuple[str, ...]
    word: str
    multirun: bool


def parse_line(comp_line: str) -> Optional[Query]:
    """Hydra's parse of the line (``get_args(line.split())``), for the flags it can hold here:
    ``-m`` and ``--config-dir DIR`` (which Hydra's query ignores). None: let Hydra parse it."""
    match = _APP_ARGS.match(comp_line)
    if not match:
        return None
    line = match.group(1)
    new_word = len(line) == 0 or line[-1] == " "
    tokens = line.split()
    words: list[str] = []
    multirun = False
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t in ("-m", "--multirun"):
            multirun = True
        elif t in CONFIG_DIR_FLAGS:
            if i + 1 >= len(tokens):
                return None
            i += 1
        elif t.startswith("--config-dir="):
            pass
        elif t.startswith("-"):
            return None
        else:
            words.append(t)
        i += 1
    if new_word or not words:
        return Query(tuple(words), "", multirun)
    return Query(tuple(words[:-1]), words[-1], multirun)


def _group_lists(index: dict[str, Any], group: str) -> list[list[str]]:
    found = index["groups"].get(group)
    if found is not None:
        return found
    parts = group.split("/")
    if all(_GROUP_PART.fullmatch(p) and p not in (".", "..") for p in parts):
        return [[], []]  # no such group (Hydra lists nothing)
    raise _Unanswerable(group)  # absolute or relative paths: Hydra's repository decides


def _query_groups(index: dict[str, Any], word: str) -> tuple[list[str], bool]:
    """Hydra's ``CompletionPlugin._query_config_groups`` over the index."""
    is_deletion = word.startswith("~")
    prefix = ""
    if word.startswith(("+", "~")):
        prefix, word = word[0], word[1:]
    eq, slash = word.rfind("="), word.rfind("/")
    matched: list[str] = []
    exact = False
    if eq != -1:
        parent = word[:eq]
        for option in _group_lists(index, parent)[0]:
            name = f"{parent}={option}" if parent else option
            if name.startswith(word):
                matched.append(name)
            exact = True
    else:
        parent = "" if slash == -1 else word[:slash]
        for sub in _group_lists(index, parent)[1]:
            name = f"{parent}/{sub}" if parent else sub
            if name.startswith(word):
                files, dirs = _group_lists(index, name)
                if not dirs and files and not is_deletion:
                    name += "="
                elif dirs and not files:
                    name += "/"
                matched.append(name)
    return [prefix + m for m in matched], exact


def _query_config(index: dict[str, Any], word: str) -> list[str]:
    """Hydra's ``CompletionPlugin._get_matches(config, word)`` over the index."""
    tree = index["config"]
    if tree is None:
        return []
    if word.endswith((".", "=")):
        if word not in tree["exact"]:
            raise _Unanswerable(word)
        return list(tree["exact"][word])
    base, dot, partial = word.rpartition(".")
    if dot and base not in tree["children"]:
        raise _Unanswerable(word)
    reps = tree["children"][base if dot else ""]
    return [f"{base}.{r}" if dot else r for r in reps if r[:-1].startswith(partial)]


def _files(word: str) -> Optional[list[str]]:
    """Hydra's ``_get_filename`` + ``complete_files``: ``key=./path`` completes file names."""
    last = word.rfind("=")
    if last == -1:
        return None
    key_eq, filename = word[: last + 1], word[last + 1:]
    if not filename or not filename.lower().startswith((".", "/", "\\", "./", ".\\")):
        return None
    if os.path.isdir(filename):
        dirname, files, file_prefix = filename, os.listdir(filename), ""
    else:
        dirname = os.path.dirname(filename)
        files = os.listdir(dirname) if os.path.isdir(dirname) else []
        file_prefix = os.path.basename(filename)
    return [key_eq + os.path.join(dirname, f) for f in files if f.startswith(file_prefix)]


def answer(index: dict[str, Any], query: Query) -> list[str]:
    """What Hydra's ``_query`` returns for ``query`` (raises :class:`_Unanswerable` otherwise)."""
    files = _files(query.word)
    if files is not None:
        return sorted(files)
    groups, exact = _query_groups(index, query.word)
    config = [] if exact else _query_config(index, query.word)
    return sorted(set(groups + config))


def _index(query: Query) -> Optional[dict[str, Any]]:
    key = _key("index", [f"multirun={query.multirun}", *query.words])
    if key is None:
        return None
    text = _read(key, "json")
    if text is not None:
        try:
            return json.loads(text)
        except ValueError:
            pass
    try:
        index = importlib.import_module("nemorun.completion_index").build(list(query.words), query.multirun)
    except Exception:  # noqa: BLE001 - Hydra itself reports what is wrong with these words
        return None
    _write(key, "json", json.dumps(index, sort_keys=True))
    return index


# -- TAB: nemorun exp ...  ---------------------------------------------------------------------------


def _experiments() -> list[tuple[str, Path]]:
    """(id, folder) of every experiment, read from the folders (no catalog, no JSON)."""
    root = nemorun_home() / "experiments"
    out: list[tuple[str, Path]] = []
    with contextlib.suppress(OSError):
        for name_dir in os.scandir(root):
            if name_dir.is_dir():
                with contextlib.suppress(OSError):
                    out.extend((e.name, Path(e.path)) for e in os.scandir(name_dir.path)
                               if e.is_dir() and not e.name.startswith("."))
    return out


def _jobs(ref: str) -> list[str]:
    found = sorted(_experiments())
    if ref == "latest":
        found = found[-1:]  # ids sort by creation time
    else:
        exact = [f for f in found if f[0] == ref]
        found = exact or [f for f in found if f[0].startswith(ref)]
    if len(found) != 1:
        return []
    try:
        meta = json.loads((found[0][1] / "experiment.json").read_text())
        return [str(j) for j in meta.get("jobs", [])]
    except (OSError, ValueError, AttributeError, TypeError):
        return []


def exp_candidates(tokens: list[str], word: str) -> list[str]:
    """Completions of ``word`` after ``nemorun exp`` + ``tokens`` (finished words)."""
    if not tokens:
        return [c for c in (*EXP_COMMANDS, "-h", "--help") if c.startswith(word)]
    command, rest = tokens[0], tokens[1:]
    flags = EXP_COMMANDS.get(command)
    if flags is None:
        return []
    if word.startswith("-"):
        return [f for f in flags if f.startswith(word)]
    if rest and rest[-1] == "--name":
        names: set[str] = set()
        with contextlib.suppress(OSError):
            names = {e.name for e in os.scandir(nemorun_home() / "experiments") if e.is_dir()}
        return sorted(n for n in names if n.startswith(word))
    if command == "list" or (rest and rest[-1] == "--limit"):
        return []
    positional = [t for t in rest if not t.startswith("-")]
    if not positional:
        return sorted(c for c in {"latest", *(i for i, _ in _experiments())} if c.startswith(word))
    if len(positional) == 1 and command in _JOB_ARG:
        return sorted(j for j in _jobs(positional[0]) if j.startswith(word))
    return []


def _exp_line(comp_line: str) -> Optional[list[str]]:
    match = _APP_ARGS.match(comp_line)
    if not match:
        return None
    line = match.group(1)
    tokens = line.split()
    if not tokens or tokens[0] != "exp" or (len(tokens) == 1 and not line.endswith(" ")):
        return None  # `nemorun exp` without a space yet is still an override being typed
    new_word = line.endswith(" ")
    finished = tokens[1:] if new_word else tokens[1:-1]
    return exp_candidates(finished, "" if new_word else tokens[-1])


def _completion(args: list[str]) -> Optional[int]:
    if len(args) != 2 or args[0] not in COMPLETION_FLAGS or args[1] != "query=bash" or "COMP_LINE" not in os.environ:
        return None
    comp_line = os.environ["COMP_LINE"]
    exp = _exp_line(comp_line)
    if exp is not None:
        print(" ".join(exp))
        return 0
    query = parse_line(comp_line)
    if query is None:
        return None
    index = _index(query)
    if index is None:
        return None
    try:
        print(" ".join(answer(index, query)))
    except _Unanswerable:
        return None
    return 0


# -- entry points --------------------------------------------------------------------------------------


def serve(args: list[str], slow: Callable[[list[str]], None]) -> bool:
    """Answer ``args`` here when it is ``--help``, ``-sc ...`` or a TAB query; False: not answered
    (``slow``, the full CLI, runs instead). ``slow`` also fills the cache on a miss."""
    if _busy or not args or args[0] == "exp":
        return False
    code = _completion(args)
    if code is None:
        code = _cached_output(args, slow)
    if code is None:
        return False
    sys.stdout.flush()
    if code:
        sys.exit(code)
    return True


def _cli_main(args: list[str]) -> None:
    import gc

    gc.disable()  # until the CLI's start-up is over (nemorun.cli.run)
    importlib.import_module("nemorun.cli").run(args)


def main() -> None:
    """Console script: answer here, or load the CLI. ``nemorun exp ...`` goes straight to the
    experiment commands, as the CLI sends it: the CLI module imports the composer, planner and
    OmegaConf (~0.25 s) that reading records never needs."""
    args = sys.argv[1:]
    if args and args[0] == "exp":
        sys.exit(importlib.import_module("nemorun.exp_cli").main(args[1:]))
    if not serve(args, _cli_main):
        _cli_main(args)
