"""Secrets never reach disk or a terminal (issue 13, items 8 and 9).

1. A server that echoes a credential back — the Run:ai app secret, a Run:ai access token, a Lepton
   workspace token — in any encoding (raw, JSON-escaped, URL-encoded, base64 std/URL-safe, padded
   or not) gets none of it into the exception text, the CLI's stderr/stdout or any file under
   NEMORUN_HOME. The servers are the contract servers of the other tests (tests/dgxcloud_runai_server.py
   with its ``echo_credentials`` switch; ``FakeLepton`` of tests/test_lepton_submit.py with an echoing
   handler); the encodings the servers echo are their own (``echoed``), not nemorun's list.
2. A config that interpolates a secret field into anything rendered (env vars first of all) is
   refused with one line and exit 2, with and without ``dryrun=true``, before any request.
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from nemorun import secrets
from nemorun.errors import SubmitError
from nemorun.launching import launch_composed
from nemorun.lower import Site
from tests.dgxcloud_runai_server import RunaiServer, echoed
from tests.helpers import compose_config, run_cli

APP_ID = "nemorun-ci"
# every encoding differs from the raw value: '/', '+', space, quotes, '&', '=', non-ASCII, and a
# base64 text with '+' and '/' (so std and URL-safe differ) and '=' padding
SECRET = 's3cr3t/Välue+42 "q"&x=1>>>?'
CLUSTER = "71f69d83-ba66-4822-adf5-55ce55efd210"
PROJECTS = [{"id": "4501", "name": "team-a", "clusterId": CLUSTER}]


def leaks(home: Path, values: list[str], *texts: str) -> list[str]:
    """Each encoding of each value found in ``texts`` or in a file under ``home``."""
    found = []
    files = [p for p in home.rglob("*") if p.is_file()] if home.exists() else []
    for value in values:
        for form in echoed(value):
            found += [f"{form!r} in output" for t in texts if form in t]
            found += [f"{form!r} in {p}" for p in files if form.encode() in p.read_bytes()]
    return found


# -- the scrubber itself ------------------------------------------------------------------------


def test_every_encoding_is_scrubbed_and_other_text_is_kept() -> None:
    secrets.register(SECRET)
    text = "reply: " + " | ".join(echoed(SECRET)) + " | project team-a not found"
    scrubbed = secrets.scrub(text)
    assert [form for form in echoed(SECRET) if form in scrubbed] == []
    assert scrubbed.startswith("reply: ***") and scrubbed.endswith("project team-a not found")
    # base64 of the value at any offset in a longer buffer (a JSON document, a Basic header)
    import base64

    for prefix in (b"", b"u", b"us", b"user:", b'{"secret": "'):
        encoded = base64.b64encode(prefix + SECRET.encode() + b'"}').decode()
        assert secrets.scrub(encoded) != encoded and len(secrets.scrub(encoded)) < len(encoded) - 20


def test_errors_scrub_their_message_args_and_one_line() -> None:
    from nemorun.errors import StoreError, one_line

    secrets.register(SECRET)
    err = SubmitError(f"bad credential {json.dumps(SECRET)}")
    assert SECRET not in str(err) and SECRET not in repr(err) and json.dumps(SECRET)[1:-1] not in repr(err.args)
    assert "***" in str(StoreError(13, f"cannot write {SECRET}"))
    assert one_line(f"a\n{SECRET}\nb") == "a; ***; b"


# -- Run:ai: the app secret and the access tokens ------------------------------------------------


@pytest.fixture
def runai() -> Iterator[RunaiServer]:
    with RunaiServer(APP_ID, SECRET, PROJECTS) as server:
        yield server
        assert server.state.violations == []


def dgx_args(server: RunaiServer, *extra: str) -> list[str]:
    return [
        "executor=dgxcloud", "task=hello", f"executor.base_url={server.base_url}", f"executor.app_id={APP_ID}",
        "executor.app_secret=${oc.env:DGX_APP_SECRET}", "executor.project_name=team-a",
        "executor.container_image=nvcr.io/nvidia/nemo:25.04", *extra,
    ]


def issued_tokens(server: RunaiServer) -> list[str]:
    tokens = sorted(server.state.tokens)
    assert tokens, "the run must have obtained a token for the test to mean anything"
    return tokens


@pytest.mark.parametrize(
    "method, path, credential",
    [("POST", "/token", "secret"), ("GET", "/org-unit/projects", "token"), ("POST", "/workloads/trainings", "token")],
)
def test_runai_echo_reaches_no_output_and_no_file(
    runai: RunaiServer, cli_env: dict[str, str], nemorun_home: Path, method: str, path: str, credential: str
) -> None:
    cli_env["DGX_APP_SECRET"] = SECRET
    runai.echo_credentials(400, method, path)
    proc = run_cli(dgx_args(runai), env=cli_env)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "rejected credential: ***" in proc.stderr
    values = [SECRET] + (issued_tokens(runai) if credential == "token" else [])
    assert leaks(nemorun_home, values, proc.stdout, proc.stderr) == []
    [record] = nemorun_home.glob("experiments/*/*/jobs/hello/record.json")
    assert "rejected credential: ***" in json.loads(record.read_text())["error"]


def test_runai_echo_is_not_in_the_exception(runai: RunaiServer, nemorun_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DGX_APP_SECRET", SECRET)
    runai.echo_credentials(400, "POST", "/workloads/trainings")
    args = dgx_args(runai)
    site = Site(experiment_id="exp-echo", submit_dir=str(nemorun_home), home=str(nemorun_home))
    with pytest.raises(SubmitError) as err:
        launch_composed(compose_config(args), args, site=site, out=io.StringIO())
    text = f"{err.value} {err.value!r} {err.value.args}"
    assert "rejected credential: ***" in text
    assert leaks(nemorun_home, [SECRET, *issued_tokens(runai)], text) == []


# -- Lepton: the workspace token -----------------------------------------------------------------

LEPTON_TOKEN = 'lep/tok+en "q"&x=1>>>?'


@pytest.fixture
def echoing_lepton() -> Iterator[Any]:
    """``FakeLepton`` whose every reply is a 400 quoting the request's bearer token in every
    encoding (``echoed``): a workspace proxy that leaks the credential it refused."""
    pytest.importorskip("leptonai")
    import threading

    from tests.test_lepton_submit import FakeLepton, Handler

    class Echo(Handler):
        def _route(self, method: str) -> None:
            self.server.requests.append((method, self.path))
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            self._reply(400, {"code": "InvalidArgument", "message": "rejected credential: " + " | ".join(echoed(token))})

    server = FakeLepton()
    server.RequestHandlerClass = Echo
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def lepton_env(echoing_lepton: Any, cli_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {"HOME": str(tmp_path / "home"), "LEPTON_WORKSPACE_ID": "ws1", "LEPTON_WORKSPACE_TOKEN": LEPTON_TOKEN,
              "LEPTON_WORKSPACE_URL": echoing_lepton.url}
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    return {**cli_env, **values}


def lepton_args(*extra: str) -> list[str]:
    from tests.golden_cases import CASES

    return [*CASES["lepton_train_torchrun"], *extra]


@pytest.mark.parametrize("extra", [(), ("executor.node_group_id=ng-h100-7f3a",)], ids=["resolve", "submit"])
def test_lepton_echo_reaches_no_output_and_no_file(echoing_lepton: Any, lepton_env: dict[str, str], nemorun_home: Path, extra: tuple[str, ...]) -> None:
    proc = run_cli(lepton_args(*extra), env=lepton_env)
    assert proc.returncode == 1, proc.stderr
    assert echoing_lepton.requests, "the CLI must have reached the server"
    assert len(proc.stderr.strip().splitlines()) == 1 and "rejected credential: ***" in proc.stderr
    assert leaks(nemorun_home, [LEPTON_TOKEN], proc.stdout, proc.stderr) == []


def test_lepton_echo_is_not_in_the_exception(echoing_lepton: Any, lepton_env: dict[str, str], nemorun_home: Path) -> None:
    from nemorun.lower import check_config, compile_job
    from nemorun.submitters import lepton as sub
    from nemorun.targets import lepton as target

    cfg = compose_config(lepton_args("executor.node_group_id=ng-h100-7f3a"))
    check_config(cfg)
    job = compile_job(cfg, Site(experiment_id="exp-echo", submit_dir=str(nemorun_home), home=str(nemorun_home)))
    with pytest.raises(SubmitError) as err:
        sub.submit(target.render(job), job)
    text = f"{err.value} {err.value!r} {err.value.args}"
    assert "refused job" in text and "rejected credential: ***" in text
    assert leaks(nemorun_home, [LEPTON_TOKEN], text) == []


# -- a secret interpolated into the config is refused -------------------------------------------

# (overrides, what the one line must name): every way to get the app secret's value resolved
# into an env var (or any other rendered value)
REFUSED = [
    (["+executor.env_vars.TOKEN=${executor.app_secret}"], "executor.env_vars.TOKEN interpolates the secret executor.app_secret"),
    (["+task.env.TOKEN=${executor.app_secret}"], "task.env.TOKEN interpolates the secret executor.app_secret"),
    (["+executor.env_vars.TOKEN=${..app_secret}"], "executor.env_vars.TOKEN interpolates the secret executor.app_secret"),
    (["+executor.env_vars.TOKEN=${oc.select:executor.app_secret,none}"], "interpolates the secret executor.app_secret"),
    (["+executor.env_vars.TOKEN='${oc.decode:${executor.app_secret}}'"], "interpolates the secret executor.app_secret"),
    (["+executor.env_vars.TOKEN=${executor}"], "executor.env_vars.TOKEN interpolates the secret executor.app_secret"),
    (["+executor.env_vars.A=${executor.env_vars.B}", "+executor.env_vars.B=${executor.app_secret}"], "executor.env_vars.A interpolates the secret executor.app_secret"),
    (["+executor.env_vars.TOKEN=${oc.env:DGX_APP_SECRET}"], "${oc.env:DGX_APP_SECRET}, the variable holding the secret of executor.app_secret"),
    (["+executor.env_vars.H={secret: '${executor.app_secret}', key: k}"], "executor.env_vars.H.secret interpolates the secret"),
    (["executor.workdir=/w/${executor.app_secret}"], "executor.workdir interpolates the secret executor.app_secret"),
    # the secret named by app_secret_env: read through the field, or the same variable directly
    (["executor.app_secret=null", "executor.app_secret_env=DGX_APP_SECRET", "+executor.env_vars.T='${oc.env:${executor.app_secret_env}}'"], "executor.env_vars.T interpolates executor.app_secret_env"),
    (["executor.app_secret=null", "executor.app_secret_env=DGX_APP_SECRET", "+task.env.T=${oc.env:DGX_APP_SECRET}"], "${oc.env:DGX_APP_SECRET}, the variable holding the secret of executor.app_secret_env"),
]


# every case as a dry run; without dryrun=true, one of each kind (the check is one, in compile_job)
REFUSAL_RUNS = [(*case, True) for case in REFUSED] + [(*REFUSED[i], False) for i in (0, 6, 7, 10)]


@pytest.mark.parametrize("extra, expected, dryrun", REFUSAL_RUNS, ids=[f"{i}-{'dryrun' if c[2] else 'submit'}" for i, c in enumerate(REFUSAL_RUNS)])
def test_secret_interpolation_is_refused(
    runai: RunaiServer, cli_env: dict[str, str], nemorun_home: Path, extra: list[str], expected: str, dryrun: bool
) -> None:
    cli_env["DGX_APP_SECRET"] = SECRET
    proc = run_cli([*dgx_args(runai, *extra), *(["dryrun=true"] if dryrun else [])], env=cli_env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("nemorun: error: ") and expected in proc.stderr
    assert "never into an artifact" in proc.stderr
    assert runai.state.requests == [], "refused before any request"
    assert leaks(nemorun_home, [SECRET], proc.stdout, proc.stderr) == []


def test_harmless_interpolations_still_compile(runai: RunaiServer, cli_env: dict[str, str], nemorun_home: Path) -> None:
    """The check reads what an interpolation refers to, not that there is one: these resolve."""
    cli_env["DGX_APP_SECRET"], cli_env["OTHER_VAR"] = SECRET, "plain-value"
    proc = run_cli(
        [*dgx_args(runai, "+executor.env_vars.APP=${executor.app_id}", "+executor.env_vars.O=${oc.env:OTHER_VAR}",
                   "+task.env.P=${executor.env_vars.APP}-${executor.project_name}", "+executor.env_vars.S=app_secret"),
         "dryrun=true"],
        env=cli_env,
    )
    assert proc.returncode == 0, proc.stderr
    for text in (f'"value": "{APP_ID}"', '"value": "plain-value"', f'"value": "{APP_ID}-team-a"'):
        assert text in proc.stdout
    assert leaks(nemorun_home, [SECRET], proc.stdout, proc.stderr) == []
