"""Checks every artifact passes before it leaves this machine.

Shell scripts go through ``bash -n`` (syntax); backend-specific checks live in each target
module's ``validate``. A failure is an :class:`~nemorun.errors.ArtifactError` naming the artifact.
"""
from __future__ import annotations

import contextlib
import functools
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from nemorun.errors import ArtifactError, one_line


# Set while a sweep validates many scripts: checks are queued and run together at the end
# (a fork + exec of ``bash -n`` from Python costs ~15 ms, i.e. minutes for a 10,000-job sweep).
_deferred: Optional[list[tuple[str, str, str, Optional[str]]]] = None
_label = ""
_token: Optional[str] = None
# What a job's name is replaced by before scripts are compared (see :func:`_normalized`).
_PLACEHOLDER = "NEMORUNJOBNAME"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")

# One ``bash -n`` per file, looped inside one shell per chunk (~2 ms a script). Never ``eval``:
# ANY wrapper around a script's text (a function body, a subshell) can be closed by that text and
# the rest would run here. ``bash -n a b`` checks only ``a``, hence the loop.
_CHECK_FILES = r"""for f; do bash -n "$f" 2>"$f.err" || printf '%s\n' "$f"; done"""
# below this many scripts per chunk the extra processes cost more than they save
_CHUNK_MIN = 64


@contextlib.contextmanager
def batched_shell_checks() -> Iterator[Callable[..., None]]:
    """Queue :func:`check_shell_syntax` calls; check them all at the end.

    Yields ``set_label(label, job_name=None)``: the label (e.g. ``job train-0``) is attached to
    later checks, and the job's name lets scripts that differ only in it share one ``bash -n``
    (a 10,000-job sweep of one function is one check, not 10,000). The first failing script (in
    queue order) raises, labelled.
    """
    global _deferred, _label, _token
    if _deferred is not None:
        yield lambda label, job_name=None: None
        return
    _deferred, _label, _token = [], "", None

    def set_label(label: str, job_name: Optional[str] = None) -> None:
        global _label, _token
        _label, _token = label, job_name

    try:
        yield set_label
        queued = _deferred
    finally:
        _deferred, _label, _token = None, "", None
    if not queued:
        return
    failures = _grouped_syntax_errors([(text, token) for _, _, text, token in queued])
    if failures:
        index = min(failures)
        label, name, _, _ = queued[index]
        message = f"{name} is not valid bash: {failures[index]}"
        raise ArtifactError(f"{label}: {message}" if label else message)


def _normalized(text: str, job_name: Optional[str]) -> str:
    """``text`` with its job's name replaced by one placeholder, when that cannot change whether
    bash parses it: the name holds only letters, digits, ``.``, ``_``, ``-`` (characters that are
    ordinary inside every bash word, quote and comment) and at least one ``-``, ``.`` or digit, so
    neither it nor any token containing it is a reserved word, and the upper-case placeholder is
    none either. Sweep jobs' scripts then compare equal when only the job differs."""
    if (not job_name or _PLACEHOLDER in text or not set(job_name) <= _NAME_CHARS
            or not any(c in "-.0123456789" for c in job_name)):
        return text
    return text.replace(job_name, _PLACEHOLDER)


def _grouped_syntax_errors(items: Sequence[tuple[str, Optional[str]]]) -> dict[int, str]:
    """Like :func:`_syntax_errors` for many scripts, parsing each distinct (normalized) script once;
    a group whose representative fails is checked script by script, so every error is exact."""
    groups: dict[str, list[int]] = {}
    for index, (text, token) in enumerate(items):
        groups.setdefault(_normalized(text, token), []).append(index)
    keys = list(groups)
    failed_keys = _syntax_errors(keys)
    suspects = [i for k in failed_keys for i in groups[keys[k]]]
    if not suspects:
        return {}
    exact = _syntax_errors([items[i][0] for i in suspects])
    return {suspects[j]: message for j, message in exact.items()}


def check_shell_syntax(name: str, text: str) -> None:
    """Parse (never run) ``text`` as bash; the same check as a batch of one."""
    if _deferred is not None:
        _deferred.append((_label, name, text, _token))
        return
    failures = _syntax_errors([text])
    if failures:
        raise ArtifactError(f"{name} is not valid bash: {failures[0]}")


def _syntax_errors(scripts: Sequence[str]) -> dict[int, str]:
    """Index -> bash's one-line complaint, for each script that does not parse.

    Each script is written to its own file and checked by ``bash -n`` alone, so nothing in one
    script can hide an error in another or get executed.
    """
    with tempfile.TemporaryDirectory(prefix="nemorun-bash-n-") as tmp:
        names = [str(i) for i in range(len(scripts))]
        for file_name, text in zip(names, scripts):
            Path(tmp, file_name).write_bytes(text.encode("utf-8", "surrogateescape"))
        jobs = max(1, min(os.cpu_count() or 1, len(names) // _CHUNK_MIN))
        procs = [
            subprocess.Popen(["bash", "-c", _CHECK_FILES, "bash", *names[i::jobs]], cwd=tmp,
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
            for i in range(jobs)
        ]
        failed: list[str] = []
        for proc in procs:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise ArtifactError(f"bash could not check the scripts' syntax (exit {proc.returncode})")
            failed += out.split()
        return {int(f): _message(Path(tmp, f + ".err").read_text(errors="replace"), f) for f in failed}


def _message(stderr: str, file_name: str) -> str:
    """bash names the file it read (``0: line 3: ...``): say ``line 3: ...`` instead."""
    lines = [line[len(file_name) + 2:] if line.startswith(file_name + ": ") else line for line in stderr.splitlines()]
    return one_line("\n".join(lines)) or "bash -n failed"


@functools.lru_cache(maxsize=1)
def _yaml_loader() -> type:
    """PyYAML's safe loader on libyaml's parser, building plain documents without its generators.

    Why: a sweep reads back one or two YAML artifacts per job, and PyYAML's constructor (one
    generator per mapping, a state machine for recursive objects) costs more than libyaml's
    parse. A document of plain mappings, lists and str/int/float/bool/null scalars is built by a
    direct walk calling PyYAML's own scalar constructors on the nodes its resolver tagged, so the
    objects are the same; anything else (merge keys, other tags, an unhashable key, a recursive
    alias) goes through PyYAML's constructor unchanged, errors included.
    """
    import yaml
    from yaml.constructor import SafeConstructor

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    scalars = {f"tag:yaml.org,2002:{kind}": getattr(SafeConstructor, f"construct_yaml_{kind}")
               for kind in ("str", "int", "float", "bool", "null")}
    map_tag, seq_tag = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"

    class Fallback(Exception):
        pass

    str_tag, scalar_node = "tag:yaml.org,2002:str", yaml.ScalarNode
    # plain scalar -> tag: the resolver's answer depends on the text and the implicit flags alone
    # (no path resolvers are registered), and its regexes ran for every scalar of every job
    resolved: dict[tuple[str, Any], str] = {}

    class Loader(base):  # type: ignore[misc, valid-type]
        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            if kind is not scalar_node or self.yaml_path_resolvers or len(value) > 64:
                return super().resolve(kind, value, implicit)
            key = (value, implicit)
            tag = resolved.get(key)
            if tag is None:
                if len(resolved) >= 4096:
                    resolved.clear()
                tag = resolved[key] = super().resolve(kind, value, implicit)
            return tag

        def _plain(self, node: Any, open_nodes: set[int]) -> Any:
            if isinstance(node, scalar_node):
                if node.tag == str_tag:  # construct_yaml_str's answer for a scalar node
                    return node.value
                make = scalars.get(node.tag)
                if make is None:
                    raise Fallback
                return make(self, node)
            if id(node) in open_nodes:
                raise Fallback  # a recursive alias
            open_nodes.add(id(node))
            try:
                if isinstance(node, yaml.SequenceNode) and node.tag == seq_tag:
                    return [self._plain(item, open_nodes) for item in node.value]
                if isinstance(node, yaml.MappingNode) and node.tag == map_tag:
                    out = {}
                    for key_node, value_node in node.value:
                        key = self._plain(key_node, open_nodes)
                        if not isinstance(key, (str, int, float, bool, type(None))):
                            raise Fallback
                        out[key] = self._plain(value_node, open_nodes)
                    return out
                raise Fallback
            finally:
                open_nodes.discard(id(node))

        def get_single_data(self) -> Any:
            node = self.get_single_node()
            if node is None:
                return None
            try:
                return self._plain(node, set())
            except (Fallback, RecursionError):
                return self.construct_document(node)

    return Loader


def parse_mapping_artifact(name: str, text: str, fmt: str) -> dict:
    """Read back a JSON or YAML artifact as the mapping it must be, or fail naming it.

    Every structured target validates by reading its own output back: what is checked is what
    is sent, not the object it was rendered from.
    """
    import json

    import yaml

    try:
        # libyaml's parser, PyYAML's resolver and scalar constructors: the same objects as
        # yaml.safe_load, ~10x faster (a sweep reads back one or two YAML files per job)
        value = json.loads(text) if fmt == "json" else yaml.load(text, Loader=_yaml_loader())
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ArtifactError(f"{name} is not valid {fmt.upper()}: {one_line(str(exc))}") from exc
    if not isinstance(value, dict):
        raise ArtifactError(f"{name} is not a {fmt.upper()} mapping")
    return value
