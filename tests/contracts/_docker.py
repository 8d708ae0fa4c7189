"""Docker `containers.run(**kwargs)` -> Engine API `POST /containers/create` body, offline.

docker-py builds the exact JSON body without an engine: an APIClient with an explicit API
version never contacts a daemon, `docker.models.containers._create_container_args` turns
`run()`/`create()` kwargs into `create_container` kwargs (TypeError on unknown kwargs), and
`APIClient.create_container` builds the ContainerConfig that `create_container_from_config`
would POST; here that last method only captures the body.

The body is then checked against the Engine API v1.45 swagger (docker/…container-create.json,
mechanically extracted from moby api/docs/v1.45.yaml), strict:
  * the body's `allOf [ContainerConfig, {HostConfig, NetworkingConfig}]` and HostConfig's
    `allOf [Resources, {...}]` are merged into single object schemas so that Draft 4
    `additionalProperties: false` can be added to every object schema with `properties`;
  * `x-nullable: true` -> `type: [T, "null"]`;
  * None values are dropped first: docker-py sends explicit nulls for unset fields
    (`Domainname`, `User`, `Healthcheck.Timeout`, `NetworkingConfig: {<net>: null}`, ...),
    which the engine treats as absent.
"""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import jsonschema

from ._common import add_additional_properties_false, load_json, schema_errors

API_VERSION = "1.45"  # docker-py 7.x DEFAULT_DOCKER_API_VERSION, matches the vendored swagger
_RUN_ONLY_KWARGS = ("stdout", "stderr", "stream")  # parameters of run() that never reach the body


@functools.lru_cache(maxsize=1)
def _client_class():
    import docker
    from docker.utils.proxy import ProxyConfig

    class _OfflineAPIClient(docker.APIClient):
        def __init__(self):
            # explicit version => no /version request; the socket path does not exist on purpose
            super().__init__(base_url="unix:///nonexistent/docker.sock", version=API_VERSION)
            self._proxy_configs = ProxyConfig()  # ignore the host's ~/.docker/config.json proxies
            self.captured = None

        def create_container_from_config(self, config, name=None, platform=None):
            self.captured = (config, name, platform)
            return {"Id": "offline", "Warnings": []}

    return _OfflineAPIClient


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def docker_create_request(run_kwargs: dict) -> tuple[dict, dict]:
    """(body, query) that `client.containers.run(**run_kwargs)` would send to /containers/create.

    `run_kwargs` includes `image` and `command` (and may include `remove`, `detach`, `name`, ...).
    Raises TypeError / docker.errors.DockerException / RuntimeError / ValueError like docker-py.
    The body is returned exactly as docker-py builds it (None values included)."""
    kw = dict(run_kwargs)
    if "image" not in kw:
        raise TypeError("run() missing 1 required positional argument: 'image'")
    image = kw.pop("image")
    command = kw.pop("command", None)
    for key in _RUN_ONLY_KWARGS:
        kw.pop(key, None)
    remove = kw.pop("remove", False)
    detach = kw.pop("detach", False)
    # --- ContainerCollection.run()
    if detach and remove:
        kw["auto_remove"] = True  # API >= 1.25
    if kw.get("network") and kw.get("network_mode"):
        raise RuntimeError('The options "network" and "network_mode" can not be used together.')
    if kw.get("networking_config") and not kw.get("network"):
        raise RuntimeError('The option "networking_config" can not be used without "network".')
    # --- ContainerCollection.create()
    from docker.models.containers import _create_container_args

    api = _client_class()()
    kw.update(image=image, command=command, detach=detach, version=api._version)
    create_kwargs = _create_container_args(kw)
    api.create_container(**create_kwargs)
    config, name, platform = api.captured
    body = json.loads(json.dumps(config))  # dict subclasses -> plain JSON types
    query = {k: v for k, v in (("name", name), ("platform", platform)) if v is not None}
    return body, query


def docker_create_body(run_kwargs: dict) -> dict:
    """The /containers/create JSON body docker-py would send (None values included)."""
    return docker_create_request(run_kwargs)[0]


# ---------------------------------------------------------------- swagger (strict)
def _resolve(schema: dict, defs: dict) -> dict:
    while "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _merge_all_of(schema: dict, defs: dict) -> dict:
    if "allOf" not in schema:
        return schema
    merged = {k: v for k, v in schema.items() if k not in ("allOf", "example")}
    merged["type"] = "object"
    props, required = dict(merged.pop("properties", {})), list(merged.pop("required", []))
    for member in schema["allOf"]:
        m = _merge_all_of(_resolve(member, defs), defs)
        if m.get("type", "object") != "object" or "allOf" in m:
            raise ValueError("cannot flatten a non-object allOf member")
        props.update(m.get("properties", {}))
        required += [r for r in m.get("required", []) if r not in required]
    merged["properties"] = props
    if required:
        merged["required"] = required
    return merged


def _x_nullable(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _x_nullable(v) for k, v in node.items()}
        if out.pop("x-nullable", False) and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(node, list):
        return [_x_nullable(v) for v in node]
    return node


@functools.lru_cache(maxsize=1)
def _validator():
    spec = load_json("docker", "engine-api-v1.45.container-create.json")
    defs = spec["definitions"]
    defs = {name: _merge_all_of(copy.deepcopy(s), defs) for name, s in defs.items()}
    body = _merge_all_of(copy.deepcopy(spec["body"]), defs)
    root = _x_nullable({**body, "definitions": defs})
    add_additional_properties_false(root)
    return jsonschema.Draft4Validator(root)


def docker_body_errors(body: Any) -> list[str]:
    """Validate a raw /containers/create JSON body (None values dropped first), strict."""
    return schema_errors(_validator(), _drop_none(body))


def docker_create_errors(run_kwargs: dict) -> list[str]:
    """docker-py kwarg checks (unknown kwargs, bad units/types) + strict swagger check of the body."""
    import docker.errors

    try:
        body = docker_create_body(run_kwargs)
    except (TypeError, ValueError, RuntimeError, docker.errors.DockerException) as exc:
        return [f"docker-py: {type(exc).__name__}: {exc}"]
    return docker_body_errors(body)
