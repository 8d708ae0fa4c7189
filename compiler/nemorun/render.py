"""The one Jinja environment and the filters every target's templates share.

Why one environment: compiling a template costs far more than rendering it; NeMo-Run builds a
new Environment per job. Here templates are compiled once per process and reused across a whole
sweep. ``StrictUndefined`` turns a misspelt variable into an error at render time instead of an
empty string in an sbatch script.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable

import jinja2
import yaml

from nemorun.store import nemorun_home


class Raw(str):
    """A command word that the shell must expand (``$SLURM_NODEID``, ``"${MASTER_ADDR}"``).

    Everything else is quoted; marking the exceptions by type keeps quoting in one place.
    """


def shquote(value: Any) -> str:
    """Quote one value for POSIX shells (the only place quoting happens); :class:`Raw` passes."""
    if isinstance(value, Raw):
        return str(value)
    return shlex.quote(str(value))


def shjoin(argv: Iterable[Any]) -> str:
    return " ".join(shquote(a) for a in argv)


def kebab(name: str) -> str:
    return name.replace("_", "-")


class _BlockDumper(yaml.SafeDumper):
    """YAML that reads like hand-written manifests: block style, multi-line strings as ``|``."""


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # Line breaks at the end beyond one need "keep" chomping (|+), which PyYAML closes with a '...'
    # document marker: invalid once the block is indented into a template. Those are double-quoted.
    if "\n" in data:
        keep = data.endswith("\n\n") or not data.strip("\n")
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style='"' if keep else "|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_BlockDumper.add_representer(str, _str_presenter)


class _CBlockDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """The same representers on libyaml's emitter (~10x faster: a sweep dumps several mappings per job)."""


_CBlockDumper.add_representer(str, _str_presenter)
# Where libyaml's emitter is byte-identical to PyYAML's (fuzzed): keys that are short plain words
# (it writes longer or escaped keys as simple keys where PyYAML writes '? key'), and text that
# cannot reach the 10,000-column width (the two fold long quoted lines differently) or is written
# as a '|' block (never folded). Anything else goes through PyYAML's emitter: goldens stay exact.
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_./-]{1,64}\Z")
_ASCII_TEXT = re.compile(r"[\x20-\x7e\n]*\Z")
_SHORT_TEXT = 900  # 10 columns per character at most (\UXXXXXXXX) + indentation < 10,000


def _libyaml_alike(value: Any) -> bool:
    if isinstance(value, str):
        if len(value) <= _SHORT_TEXT:
            return True
        if "\n" not in value or value.endswith("\n\n") or not value.strip("\n") or not _ASCII_TEXT.match(value):
            return False
        # PyYAML's Emitter.analyze_scalar allows the '|' block _str_presenter asks for unless a space
        # ends the text or a line (printable ASCII has no special characters)
        return " \n" not in value and not value.endswith(" ")
    if isinstance(value, dict):
        return all(isinstance(k, str) and _PLAIN_KEY.match(k) and _libyaml_alike(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_libyaml_alike(v) for v in value)
    return value is None or isinstance(value, (bool, int, float))


def to_yaml(value: Any) -> str:
    fast = isinstance(value, (dict, list)) and _libyaml_alike(value)
    return yaml.dump(value, Dumper=_CBlockDumper if fast else _BlockDumper, sort_keys=False, default_flow_style=False,
                     width=10_000)


def to_json(value: Any, indent: int | None = 2) -> str:
    return json.dumps(value, indent=indent, sort_keys=False, ensure_ascii=False)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def tagged_dns_name(base: str, identity: str, max_len: int) -> str:
    """``base`` as a DNS-style name (lower-case letters, digits, '-'; starts with a letter), cut to
    fit ``max_len`` with 6 hex digits of sha256(``identity``) at the end: platforms that name jobs
    by such names (Run:ai, Lepton) get one unique per experiment and job, which a resume can find."""
    digest = hashlib.sha256(identity.encode()).hexdigest()[:6]
    name = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9-]+", "-", base.lower())).strip("-")
    if not name or not name[0].isalpha():
        name = f"job-{name}".rstrip("-")
    return f"{name[: max_len - 7].rstrip('-')}-{digest}"


def is_env_name(name: str) -> bool:
    return bool(_ENV_NAME.match(name))


_OPTIONS: dict[str, Any] = dict(keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)


class _BytecodeCache(jinja2.FileSystemBytecodeCache):
    """Jinja's own cache of compiled templates, kept in ``NEMORUN_HOME/cache/jinja/``.

    Why: each process compiled every template it rendered (5-30 ms each, the sbatch template the
    most), and nemorun is one process per command. Jinja keys an entry on the template's name and
    checks it against a hash of the template's source (an edited template is compiled again), its
    own bytecode format and Python's version; the folder name adds what Jinja does not check: the
    Jinja version, this module's environment options and the filter names (a template is checked
    against them when compiled). A cache that cannot be read or written only costs the compile."""

    def __init__(self, filters: Iterable[str]) -> None:
        tag = hashlib.sha256(repr((jinja2.__version__, sorted(_OPTIONS.items()), sorted(filters))).encode()).hexdigest()[:16]
        super().__init__(str(nemorun_home() / "cache" / "jinja" / tag), "%s.bc")

    def load_bytecode(self, bucket: Any) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # noqa: BLE001 - unreadable or damaged (bad pickle): compile instead
            bucket.reset()

    def dump_bytecode(self, bucket: Any) -> None:
        try:
            os.makedirs(self.directory, exist_ok=True)
            super().dump_bytecode(bucket)
        except OSError:
            pass


_FILTERS = dict(shquote=shquote, shjoin=shjoin, kebab=kebab, to_yaml=to_yaml, to_json=to_json)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    root = resources.files("nemorun.templates")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        bytecode_cache=_BytecodeCache(_FILTERS),
        **_OPTIONS,
    )
    env.filters.update(_FILTERS)
    return env


@lru_cache(maxsize=None)
def template(name: str) -> jinja2.Template:
    return environment().get_template(name)


def render_template(name: str, **context: Any) -> str:
    return template(name).render(**context)
