"""Secret values this process has seen, and the one scrubber that removes them from any text.

Why: a service may echo a credential back in an error body in whatever encoding it was sent or
stored in (JSON-escaped inside a reply, URL-encoded from a form or a query, base64 from a Basic
header or a Kubernetes Secret), and that body becomes an error message, a line in the experiment
record and a line on stderr. A submitter calls :func:`register` the moment it holds a value (the
Run:ai app secret, a Run:ai access token, a Lepton workspace token); every ``NemorunError`` and
every :func:`nemorun.errors.one_line` then passes through :func:`scrub`, so no path that reports a
failure has to remember to scrub, and a new path cannot forget to.

Stdlib only: ``nemorun.errors`` imports this module, and everything imports ``nemorun.errors``.
"""
from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from urllib.parse import quote, quote_plus

MASK = "***"

# An encoded form shorter than this is not scrubbed on its own (the raw value always is): a
# two-character base64 fragment of a short secret would blank out unrelated words.
MIN_FORM = 6


def _base64_forms(raw: bytes) -> set[str]:
    """The characters of the base64 (standard and URL-safe) text of ``raw`` that are the same
    wherever ``raw`` sits in a longer encoded buffer (``user:secret`` in a Basic header, a JSON
    document in a Kubernetes Secret): one form per alignment of ``raw`` in 3-byte groups, each
    cut to the characters that depend on ``raw``'s bits only. Padded and unpadded at offset 0."""
    forms: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(raw).decode()
        forms |= {whole, whole.rstrip("=")}
        for offset in (0, 1, 2):
            text = encode(b"\0" * offset + raw).decode().rstrip("=")
            start = {0: 0, 1: 2, 2: 3}[offset]  # first character made of raw's bits only
            end = ((offset + len(raw)) * 8) // 6  # last character all of whose bits are raw's
            forms.add(text[start:end])
    return forms


def encodings(value: str) -> set[str]:
    """Every spelling of ``value`` a server or a library may print: raw, JSON-escaped (ASCII and
    not), Python ``repr``, URL-encoded (``quote`` with and without ``/`` safe, ``quote_plus``) and
    base64 (:func:`_base64_forms`)."""
    forms = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
        quote(value),
        quote(value, safe=""),
        quote_plus(value),
        quote_plus(value, safe=""),
    }
    forms |= {f.lower() for f in forms if "%" in f}  # percent-escapes in lower-case hex
    forms |= _base64_forms(value.encode())
    return {f for f in forms if f == value or len(f) >= MIN_FORM}


@dataclass
class Secrets:
    """The registered values' forms, longest first (a longer form contains shorter ones)."""

    _forms: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def register(self, value: str | None) -> None:
        if not value:
            return
        with self._lock:
            merged = set(self._forms) | encodings(str(value))
            self._forms = sorted(merged, key=lambda f: (-len(f), f))

    def scrub(self, text: str) -> str:
        forms = self._forms  # replaced whole under the lock, so a snapshot is consistent
        for form in forms:
            if form in text:
                text = text.replace(form, MASK)
        return text


# The process's registry: a value registered by one submitter call is scrubbed from every later
# message, including those of another call, thread or experiment in the same process.
_SECRETS = Secrets()


def register(value: str | None) -> None:
    """Scrub ``value`` (in all its :func:`encodings`) from every message from now on."""
    _SECRETS.register(value)


def scrub(text: str) -> str:
    """``text`` with every registered secret, in every encoding, replaced by ``***``."""
    return _SECRETS.scrub(text)
