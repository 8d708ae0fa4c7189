"""Kubeflow Trainer TrainJob (CRD schema, strict, + CEL) and core/v1 ConfigMap validators.

The ObjectMeta / ConfigMap rules are re-implemented from kubernetes/kubernetes:
  - staging/src/k8s.io/apimachinery/pkg/api/validation/objectmeta.go  (ValidateObjectMeta)
  - staging/src/k8s.io/apimachinery/pkg/util/validation/validation.go (IsDNS1123Subdomain,
    IsDNS1123Label, IsQualifiedName, IsValidLabelValue, IsConfigMapKey)
  - staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/validation/validation.go (ValidateLabels)
  - pkg/apis/core/validation/validation.go (ValidateConfigMap: key rules, data/binaryData
    overlap, total size > core.MaxSecretSize = 1 MiB)
so that tests need no apiserver and no 108 MB kubernetes-validate install.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from typing import Any

import jsonschema

from ._common import add_additional_properties_false, load_yaml, schema_errors

# ---------------------------------------------------------------- apimachinery rules
DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL_RE = re.compile(rf"^{_DNS1123_LABEL}$")
_DNS1123_SUBDOMAIN_RE = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")  # IsQualifiedName name part
_LABEL_VALUE_RE = _QUALIFIED_NAME_RE  # IsValidLabelValue: empty, or same pattern, <= 63
_CONFIGMAP_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")  # IsConfigMapKey
_TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024  # TotalAnnotationSizeLimitB
MAX_CONFIGMAP_SIZE = 1 * 1024 * 1024  # core.MaxSecretSize, used by ValidateConfigMap

# metav1.ObjectMeta JSON field names (anything else is pruned by the apiserver -> strict error here).
OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields",
})


def dns1123_subdomain_errors(value: Any) -> list[str]:
    if not isinstance(value, str):
        return [f"must be a string, got {type(value).__name__}"]
    errs = []
    if len(value) > DNS1123_SUBDOMAIN_MAX:
        errs.append(f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
    if not _DNS1123_SUBDOMAIN_RE.match(value):
        errs.append("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                    "characters, '-' or '.', and must start and end with an alphanumeric character")
    return errs


def dns1123_label_errors(value: Any) -> list[str]:
    if not isinstance(value, str):
        return [f"must be a string, got {type(value).__name__}"]
    errs = []
    if len(value) > DNS1123_LABEL_MAX:
        errs.append(f"must be no more than {DNS1123_LABEL_MAX} characters")
    if not _DNS1123_LABEL_RE.match(value):
        errs.append("a lowercase RFC 1123 label must consist of lower case alphanumeric "
                    "characters or '-', and must start and end with an alphanumeric character")
    return errs


def qualified_name_errors(value: Any) -> list[str]:
    """IsQualifiedName: [prefix/]name, prefix a DNS-1123 subdomain, name <= 63 chars."""
    if not isinstance(value, str):
        return [f"must be a string, got {type(value).__name__}"]
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        errs = [f"prefix part {m}" for m in dns1123_subdomain_errors(prefix)]
        if errs:
            return errs
    else:
        return ["a qualified name must consist of an optional DNS subdomain prefix and '/' and a name"]
    if not name:
        return ["name part must be non-empty"]
    errs = []
    if len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if not _QUALIFIED_NAME_RE.match(name):
        errs.append("name part must consist of alphanumeric characters, '-', '_' or '.', and must "
                    "start and end with an alphanumeric character")
    return errs


def object_meta_errors(meta: Any, *, namespaced: bool = True, path: str = "metadata") -> list[str]:
    """ValidateObjectMeta for a create request (name DNS-1123 subdomain) + strict field names."""
    if not isinstance(meta, dict):
        return [f"{path}: must be an object"]
    errs = []
    unknown = sorted(set(meta) - OBJECT_META_FIELDS)
    if unknown:
        errs.append(f"{path}: unknown field(s) {unknown} (not in metav1.ObjectMeta; the apiserver drops them)")
    name, gen = meta.get("name"), meta.get("generateName")
    if name is None and gen is None:
        errs.append(f"{path}.name: name or generateName is required")
    if name is not None:
        errs += [f"{path}.name: {m}" for m in dns1123_subdomain_errors(name)]
    if gen is not None:
        # generateName may end in '-': validated as a prefix (trailing '-' stripped) by NameIsDNSSubdomain.
        g = gen.rstrip("-") if isinstance(gen, str) else gen
        errs += [f"{path}.generateName: {m}" for m in dns1123_subdomain_errors(g)]
    if "namespace" in meta:
        if not namespaced:
            errs.append(f"{path}.namespace: not allowed on cluster-scoped resources")
        else:
            errs += [f"{path}.namespace: {m}" for m in dns1123_label_errors(meta["namespace"])]
    labels = meta.get("labels")
    if labels is not None:
        if not isinstance(labels, dict):
            errs.append(f"{path}.labels: must be a map of string to string")
        else:
            for k, v in labels.items():
                errs += [f"{path}.labels[{k!r}]: key {m}" for m in qualified_name_errors(k)]
                if not isinstance(v, str):
                    errs.append(f"{path}.labels[{k!r}]: value must be a string, got {type(v).__name__}")
                elif len(v) > 63:
                    errs.append(f"{path}.labels[{k!r}]: value must be no more than 63 characters")
                elif v and not _LABEL_VALUE_RE.match(v):
                    errs.append(f"{path}.labels[{k!r}]: value {v!r} must consist of alphanumeric "
                                "characters, '-', '_' or '.', and must start and end with an alphanumeric character")
    ann = meta.get("annotations")
    if ann is not None:
        if not isinstance(ann, dict):
            errs.append(f"{path}.annotations: must be a map of string to string")
        else:
            total = 0
            for k, v in ann.items():
                errs += [f"{path}.annotations[{k!r}]: key {m}" for m in qualified_name_errors(str(k).lower())]
                if not isinstance(v, str):
                    errs.append(f"{path}.annotations[{k!r}]: value must be a string, got {type(v).__name__}")
                    continue
                total += len(str(k)) + len(v.encode())
            if total > _TOTAL_ANNOTATION_SIZE_LIMIT:
                errs.append(f"{path}.annotations: may not have more than {_TOTAL_ANNOTATION_SIZE_LIMIT} bytes in total")
    return errs


# ---------------------------------------------------------------- ConfigMap
_CONFIGMAP_FIELDS = frozenset({"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"})


def configmap_key_errors(key: Any) -> list[str]:
    """IsConfigMapKey: <= 253 chars, [-._a-zA-Z0-9]+, not '.', '..' nor starting with '..'."""
    if not isinstance(key, str):
        return [f"key must be a string, got {type(key).__name__}"]
    errs = []
    if len(key) > DNS1123_SUBDOMAIN_MAX:
        errs.append(f"must be no more than {DNS1123_SUBDOMAIN_MAX} characters")
    if not _CONFIGMAP_KEY_RE.match(key):
        errs.append("a valid config key must consist of alphanumeric characters, '-', '_' or '.'")
    if key == ".":
        errs.append("must not be '.'")
    elif key == "..":
        errs.append("must not be '..'")
    elif key.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def configmap_errors(doc: Any) -> list[str]:
    """core/v1 ConfigMap, strict: the checks of ValidateConfigMap plus unknown-field detection."""
    if not isinstance(doc, dict):
        return ["<root>: ConfigMap must be a mapping"]
    errs = []
    if doc.get("apiVersion") != "v1":
        errs.append(f"apiVersion: must be 'v1', got {doc.get('apiVersion')!r}")
    if doc.get("kind") != "ConfigMap":
        errs.append(f"kind: must be 'ConfigMap', got {doc.get('kind')!r}")
    unknown = sorted(set(doc) - _CONFIGMAP_FIELDS)
    if unknown:
        errs.append(f"<root>: unknown field(s) {unknown} (strict: allowed {sorted(_CONFIGMAP_FIELDS)})")
    errs += object_meta_errors(doc.get("metadata"), namespaced=True)
    if "immutable" in doc and not isinstance(doc["immutable"], bool):
        errs.append("immutable: must be a boolean")
    data = doc.get("data") or {}
    binary = doc.get("binaryData") or {}
    total = 0
    for field, bag in (("data", data), ("binaryData", binary)):
        if not isinstance(bag, dict):
            errs.append(f"{field}: must be a map of string to string")
            continue
        for key, value in bag.items():
            errs += [f"{field}[{key!r}]: {m}" for m in configmap_key_errors(key)]
            if not isinstance(value, str):
                errs.append(f"{field}[{key!r}]: value must be a string, got {type(value).__name__}")
                continue
            if field == "data":
                if isinstance(binary, dict) and key in binary:
                    errs.append(f"data[{key!r}]: duplicate of key present in binaryData")
                total += len(value.encode("utf-8"))
            else:
                try:  # []byte fields are base64 (std encoding, padded) on the wire
                    raw = base64.b64decode(value, validate=True)
                except (binascii.Error, ValueError):
                    errs.append(f"binaryData[{key!r}]: value is not valid base64")
                    continue
                total += len(raw)
    if total > MAX_CONFIGMAP_SIZE:
        errs.append(f"<root>: Too long: data + binaryData must have at most {MAX_CONFIGMAP_SIZE} bytes "
                    f"(got {total})")
    return errs


# ---------------------------------------------------------------- TrainJob CRD
_CRD_FILES = {
    "v2.2+": ("kubeflow", "trainer.kubeflow.org_trainjobs.yaml"),
    "v2.1": ("kubeflow", "v2.1.0", "trainer.kubeflow.org_trainjobs.yaml"),
}
_VERSION_ALIASES = {
    "v2.2+": "v2.2+", "v2.2": "v2.2+", "v2.3": "v2.2+", "latest": "v2.2+", "master": "v2.2+",
    "v2.1": "v2.1", "v2.1.0": "v2.1",
}


class _Crd:
    def __init__(self, version: str):
        crd = load_yaml(*_CRD_FILES[version])
        ver = next(v for v in crd["spec"]["versions"] if v.get("served", True))
        self.api_version = f"{crd['spec']['group']}/{ver['name']}"
        self.kind = crd["spec"]["names"]["kind"]
        self.namespaced = crd["spec"]["scope"] == "Namespaced"
        self.schema = ver["schema"]["openAPIV3Schema"]  # the walker below uses the unmodified tree
        strict = add_additional_properties_false(json.loads(json.dumps(self.schema)))
        self.validator = jsonschema.Draft7Validator(strict)


@functools.lru_cache(maxsize=None)
def _crd(version: str) -> _Crd:
    return _Crd(version)


@functools.lru_cache(maxsize=None)
def _cel_program(rule: str):
    import celpy  # cel-python; imported lazily (0.2 s)

    env = celpy.Environment()
    return env.program(env.compile(rule))


_JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


def _type_ok(schema: dict, value: Any) -> bool:
    t = schema.get("type")
    if t is None or schema.get("x-kubernetes-int-or-string"):
        return True
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _JSON_TYPES.get(t, object))


def _structural_extras(schema: dict, value: Any, path: str, errs: list[str]) -> None:
    """What the jsonschema pass cannot do: CEL x-kubernetes-validations (rules without oldSelf,
    evaluated only where the value is present, as the apiserver does) and
    x-kubernetes-list-type map/set uniqueness."""
    if not _type_ok(schema, value):
        return  # already a schema error; the apiserver does not run CEL on ill-typed values
    import celpy

    for rule in schema.get("x-kubernetes-validations") or []:
        expr = rule["rule"]
        if "oldSelf" in expr:
            continue  # transition rules need the old object
        msg = rule.get("message") or f"failed rule: {expr}"
        try:
            result = _cel_program(expr).evaluate({"self": celpy.json_to_cel(value)})
        except Exception as exc:  # celpy raises CELEvalError for e.g. missing keys
            errs.append(f"{path or '<root>'}: {msg} (rule {expr!r} could not be evaluated: {exc})")
            continue
        if isinstance(result, Exception):
            errs.append(f"{path or '<root>'}: {msg} (rule {expr!r} could not be evaluated: {result})")
        elif not bool(result):
            errs.append(f"{path or '<root>'}: Invalid value: {msg} (rule: {expr})")

    if isinstance(value, list):
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "map":
            keys = schema.get("x-kubernetes-list-map-keys") or []
            seen = set()
            for i, item in enumerate(value):
                if not isinstance(item, dict):
                    continue
                k = tuple(json.dumps(item.get(key), sort_keys=True) for key in keys)
                if k in seen:
                    desc = ", ".join(f"{key}={item.get(key)!r}" for key in keys)
                    errs.append(f"{path}/{i}: Duplicate value: list-map entry with key [{desc}]")
                seen.add(k)
        elif list_type == "set":
            seen_s = set()
            for i, item in enumerate(value):
                k = json.dumps(item, sort_keys=True)
                if k in seen_s:
                    errs.append(f"{path}/{i}: Duplicate value: {item!r} (x-kubernetes-list-type: set)")
                seen_s.add(k)
        items = schema.get("items")
        if isinstance(items, dict):
            for i, item in enumerate(value):
                _structural_extras(items, item, f"{path}/{i}", errs)
    elif isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key in value and value[key] is not None:
                _structural_extras(sub, value[key], f"{path}/{key}" if path else key, errs)
        addl = schema.get("additionalProperties")
        if isinstance(addl, dict):
            for key, item in value.items():
                if key not in props:
                    _structural_extras(addl, item, f"{path}/{key}" if path else key, errs)


def trainjob_errors(doc: Any, version: str = "v2.2+") -> list[str]:
    """TrainJob against the Kubeflow Trainer CRD: strict schema + CEL + list-map keys + ObjectMeta.

    version: "v2.2+" (master 8c0f5059 ~ v2.3.0; also "v2.2", "v2.3", "latest") or "v2.1" (tag v2.1.0).
    """
    try:
        crd = _crd(_VERSION_ALIASES[version])
    except KeyError:
        raise ValueError(f"unknown Trainer CRD version {version!r}; use one of {sorted(_VERSION_ALIASES)}") from None
    if not isinstance(doc, dict):
        return ["<root>: TrainJob must be a mapping"]
    errs = []
    if doc.get("apiVersion") != crd.api_version:
        errs.append(f"apiVersion: must be {crd.api_version!r}, got {doc.get('apiVersion')!r}")
    if doc.get("kind") != crd.kind:
        errs.append(f"kind: must be {crd.kind!r}, got {doc.get('kind')!r}")
    errs += object_meta_errors(doc.get("metadata"), namespaced=crd.namespaced)
    errs += schema_errors(crd.validator, doc)
    _structural_extras(crd.schema, doc, "", errs)
    return errs
