"""Run:ai control-plane REST API 2.24 (OpenAPI 3.0.3) request-body validation, strict.

Conversion OpenAPI 3.0 -> JSON Schema 2020-12 (done once, cached):
  * `nullable: true` on a plain typed schema -> `type: [T, "null"]` (and `null` added to `enum`);
    on a `$ref` / `allOf` / untyped schema -> `anyOf: [{type: null}, <schema>]`;
  * `example` dropped (OpenAPI-only);
  * every component exists twice under `$defs`: `strict/X` and `member/X`.  Both are the same
    except that `strict/X` also carries `unevaluatedProperties: false` when it has `properties`
    or `allOf`.  A `$ref` that is an `allOf` member points to `member/X` (it must stay open,
    its siblings contribute the other properties); every other `$ref` points to `strict/X`.
    Inline `allOf` members are likewise left open; the enclosing schema closes them.
The converted document is registered in a `referencing.Registry` as `urn:runai`.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any
from urllib.parse import urlsplit

import jsonschema
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from ._common import load_json, schema_errors

_SPEC_FILE = ("runai", "runai-openapi-2.24.json")
_REF_PREFIX = "#/components/schemas/"
_URN = "urn:runai"
# Formats checked (all stdlib-only, so results do not depend on optional jsonschema extras).
_FORMATS = ("uuid", "ipv4", "ipv6", "regex")


def _conv(node: Any, member: bool) -> Any:
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, val in node.items():
        if key in ("example", "nullable"):
            continue
        if key == "$ref":
            if not val.startswith(_REF_PREFIX):
                raise ValueError(f"unexpected $ref {val!r}")
            out[key] = f"#/$defs/{'member' if member else 'strict'}/{val[len(_REF_PREFIX):]}"
        elif key == "properties":
            out[key] = {name: _conv(sub, False) for name, sub in val.items()}
        elif key in ("items", "not") or (key == "additionalProperties" and isinstance(val, dict)):
            out[key] = _conv(val, False)
        elif key == "allOf":
            out[key] = [_conv(sub, True) for sub in val]
        elif key in ("anyOf", "oneOf"):
            out[key] = [_conv(sub, False) for sub in val]
        else:
            out[key] = val
    if not member and ("properties" in out or "allOf" in out) and "additionalProperties" not in out:
        out["unevaluatedProperties"] = False
    if node.get("nullable") is True:
        if "type" in out and not any(k in out for k in ("$ref", "allOf", "anyOf", "oneOf")):
            t = out["type"]
            out["type"] = [t, "null"] if isinstance(t, str) else [*t, "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [{"type": "null"}, out]}
    return out


class _Spec:
    def __init__(self) -> None:
        spec = load_json(*_SPEC_FILE)
        comps = spec["components"]["schemas"]
        self.schema_names = frozenset(comps)
        doc = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$defs": {
                "strict": {n: _conv(s, False) for n, s in comps.items()},
                "member": {n: _conv(s, True) for n, s in comps.items()},
            },
        }
        self.defs = doc["$defs"]
        self.registry = Registry().with_resource(_URN, DRAFT202012.create_resource(doc))
        self.format_checker = jsonschema.FormatChecker(formats=_FORMATS)
        self.operations = []  # (method, regex, template, request-body schema name | None, required)
        for template, item in spec["paths"].items():
            rx = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$")
            for method, op in item.items():
                if not isinstance(op, dict) or "responses" not in op:
                    continue
                name, required = None, False
                rb = op.get("requestBody")
                if rb:
                    schema = (rb.get("content", {}).get("application/json") or {}).get("schema") or {}
                    ref = schema.get("$ref", "")
                    name = ref[len(_REF_PREFIX):] if ref.startswith(_REF_PREFIX) else None
                    required = bool(rb.get("required"))
                self.operations.append((method.upper(), rx, template, name, required, template.count("{")))
        # literal segments win over templated ones (e.g. /workloads/distributed vs /workloads/{id})
        self.operations.sort(key=lambda o: o[5])


@functools.lru_cache(maxsize=1)
def _spec() -> _Spec:
    return _Spec()


@functools.lru_cache(maxsize=None)
def _validator(schema_name: str):
    spec = _spec()
    if schema_name not in spec.schema_names:
        raise ValueError(f"no schema {schema_name!r} in components.schemas of the Run:ai 2.24 spec")
    return jsonschema.Draft202012Validator(
        {"$ref": f"{_URN}#/$defs/strict/{schema_name}"},
        registry=spec.registry,
        format_checker=spec.format_checker,
    )


def _declared(schema: Any, defs: dict, seen: set) -> set[str]:
    """Property names a (converted) schema declares, through $ref / allOf / anyOf."""
    names: set[str] = set()
    if not isinstance(schema, dict) or id(schema) in seen:
        return names
    seen.add(id(schema))
    names.update(schema.get("properties") or {})
    ref = schema.get("$ref")
    if ref:
        _, kind, name = ref.rsplit("/", 2)
        names |= _declared(defs[kind][name], defs, seen)
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key) or []:
            names |= _declared(sub, defs, seen)
    return names


def _rewrite(err) -> str | None:
    """With 2020-12, once an allOf member fails, `unevaluatedProperties` also reports that
    member's (valid) properties.  Keep only keys that no branch declares; drop pure cascades."""
    if err.validator != "unevaluatedProperties" or not isinstance(err.instance, dict):
        return err.message
    unknown = sorted(set(err.instance) - _declared(err.schema, _spec().defs, set()))
    if not unknown:
        return None
    return f"Unknown field(s) {unknown} (strict: not in the schema)"


def runai_errors(body: Any, schema_name: str) -> list[str]:
    """Validate `body` against components.schemas[schema_name], strict (unknown keys are errors)."""
    return schema_errors(_validator(schema_name), body, rewrite=_rewrite)


def runai_operation(method: str, path: str):
    """Return (template, request schema name | None, body required) for a request, or None."""
    spec = _spec()
    p = urlsplit(path).path or "/"
    if len(p) > 1:
        p = p.rstrip("/")
    candidates = [p] if p.startswith("/api/") else [p, "/api/v1" + p]
    for cand in candidates:
        for m, rx, template, name, required, _ in spec.operations:
            if m == method.upper() and rx.match(cand):
                return template, name, required
    return None


def runai_request_errors(method: str, path: str, body: Any = None) -> list[str]:
    """Check an HTTP request (method, path[, JSON body]) against the Run:ai 2.24 paths.

    Paths may be full URLs, start with /api/v1, or be relative to base_url (/token, /workloads/...).
    """
    op = runai_operation(method, path)
    if op is None:
        spec = _spec()
        p = urlsplit(path).path.rstrip("/") or "/"
        allowed = sorted({m for m, rx, *_ in spec.operations
                          if rx.match(p) or rx.match("/api/v1" + p)})
        hint = f" (the spec allows {', '.join(allowed)} on this path)" if allowed else ""
        return [f"{method.upper()} {path}: no such operation in the Run:ai 2.24 API{hint}"]
    template, name, required = op
    if isinstance(body, (bytes, str)) and body not in (b"", ""):
        try:
            body = json.loads(body)
        except ValueError as exc:
            return [f"{method.upper()} {template}: body is not JSON: {exc}"]
    empty = body is None or body in (b"", "")
    if name is None:
        if not empty and body != {}:
            return [f"{method.upper()} {template}: operation takes no request body, got {type(body).__name__}"]
        return []
    if empty:
        # OpenAPI's requestBody.required defaults to false and this spec rarely sets it; a missing
        # body is still an error when even an empty object would not satisfy the schema.
        if required or runai_errors({}, name):
            return [f"{method.upper()} {template}: request body ({name}) is required"]
        return []
    return [f"{method.upper()} {template} [{name}] {e}" for e in runai_errors(body, name)]
