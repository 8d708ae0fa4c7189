"""How Slurm commands reach a cluster: here (subprocess) or on a login node over SSH (fabric).

A tunnel runs an argv, writes a file, and reads a file from an offset — all the Slurm submitter
needs for submit, status, logs and cancel. SSH connections are opened once per process and
reused (one handshake for a whole status sweep or log follow). fabric is imported only when an
SSH tunnel is used. Every failure to reach the host becomes ONE SubmitError line naming the
host and the cause.
"""
from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence

from nemorun.errors import SubmitError, one_line
from nemorun.render import shjoin
from nemorun.store import atomic_write


@dataclass(frozen=True)
class Result:
    rc: int
    stdout: str
    stderr: str


class Tunnel(Protocol):
    label: str

    def run(self, argv: Sequence[str]) -> Result: ...

    def write(self, path: str, data: bytes, mode: int = 0o644) -> None: ...

    def put(self, local: str, remote: str) -> None: ...

    def read(self, path: str, offset: int = 0) -> bytes: ...


class LocalTunnel:
    label = "localhost"

    def run(self, argv: Sequence[str]) -> Result:
        try:
            p = subprocess.run(list(argv), capture_output=True, text=True, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise SubmitError(f"{argv[0]} is not installed on this machine (use executor/tunnel=ssh to reach a login node)") from None
        return Result(p.returncode, p.stdout, p.stderr)

    def write(self, path: str, data: bytes, mode: int = 0o644) -> None:
        atomic_write(Path(path), data, mode=mode)

    def put(self, local: str, remote: str) -> None:
        os.makedirs(os.path.dirname(remote), exist_ok=True)
        shutil.copyfile(local, remote)

    def read(self, path: str, offset: int = 0) -> bytes:
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read()
        except FileNotFoundError:
            return b""


def _ssh_cause(exc: BaseException, timeout: float) -> str:
    import paramiko

    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror or exc})"
    if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError) or isinstance(exc, ConnectionRefusedError):
        return "connection refused (no SSH server on that port?)"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, paramiko.BadHostKeyException):
        return "host key does not match known_hosts"
    if isinstance(exc, paramiko.AuthenticationException):
        return "authentication failed (key not accepted)"
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return "host key not in known_hosts"
    return f"{type(exc).__name__}: {one_line(str(exc))}"


class SshTunnel:
    def __init__(self, host: str, user: Optional[str], port: int, identity: Optional[str],
                 known_hosts: Optional[str], connect_timeout: float):
        self.host, self.user, self.port = host, user, port
        self.identity, self.known_hosts, self.timeout = identity, known_hosts, connect_timeout
        self.label = f"{user + '@' if user else ''}{host}:{port}"
        self._conn: Any = None
        self._sftp: Any = None

    def _fail(self, exc: BaseException) -> SubmitError:
        return SubmitError(f"cannot reach {self.label} over SSH: {_ssh_cause(exc, self.timeout)}")

    def connection(self) -> Any:
        if self._conn is not None and self._conn.is_connected:
            return self._conn
        try:
            import fabric
            import paramiko
        except ImportError:
            raise SubmitError("the SSH tunnel needs fabric: pip install 'fabric>=3,<4'") from None
        if self.identity and not os.path.isfile(os.path.expanduser(self.identity)):
            raise SubmitError(f"cannot reach {self.label} over SSH: identity file {self.identity} not found")
        kwargs: dict[str, Any] = {"banner_timeout": self.timeout, "auth_timeout": self.timeout}
        if self.identity:
            kwargs.update(key_filename=os.path.expanduser(self.identity), look_for_keys=False, allow_agent=False)
        conn = fabric.Connection(self.host, user=self.user, port=self.port, connect_kwargs=kwargs,
                                 connect_timeout=self.timeout)
        if self.known_hosts:
            conn.client.load_host_keys(os.path.expanduser(self.known_hosts))
            conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            conn.open()
        except Exception as exc:  # paramiko/socket raise many types; each becomes one line
            raise self._fail(exc) from None
        self._conn, self._sftp = conn, None
        return conn

    def sftp(self) -> Any:
        if self._sftp is None:
            self._sftp = self.connection().sftp()
        return self._sftp

    def run(self, argv: Sequence[str]) -> Result:
        conn = self.connection()
        try:
            # in_stream=False: never forward our stdin (pytest and daemons have none to read)
            r = conn.run(shjoin(argv), hide=True, warn=True, in_stream=False)
        except Exception as exc:
            raise self._fail(exc) from None
        return Result(r.exited, r.stdout, r.stderr)

    def write(self, path: str, data: bytes, mode: int = 0o644) -> None:
        try:
            self.sftp().putfo(io.BytesIO(data), path)
            self.sftp().chmod(path, mode)
        except OSError as exc:
            raise SubmitError(f"cannot write {path} on {self.label}: {exc.strerror or exc}") from None

    def put(self, local: str, remote: str) -> None:
        try:
            self.sftp().put(local, remote)
        except OSError as exc:
            raise SubmitError(f"cannot upload {local} to {remote} on {self.label}: {exc.strerror or exc}") from None

    def read(self, path: str, offset: int = 0) -> bytes:
        try:
            with self.sftp().open(path, "rb") as f:
                f.seek(offset)
                return bytes(f.read())
        except FileNotFoundError:
            return b""
        except OSError as exc:
            if getattr(exc, "errno", None) == 2:
                return b""
            raise SubmitError(f"cannot read {path} on {self.label}: {exc}") from None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = self._sftp = None


_OPEN: dict[tuple[Any, ...], Tunnel] = {}


def tunnel_spec(cfg: Any) -> dict[str, Any]:
    """The tunnel config as a plain dict (what a handle stores to find the cluster again)."""
    return asdict(cfg) if is_dataclass(cfg) and not isinstance(cfg, type) else dict(cfg)


def open_tunnel(cfg: Any) -> Tunnel:
    """The tunnel for a config (dataclass or handle dict); one per distinct config per process."""
    spec = tunnel_spec(cfg)
    if spec.get("kind", "local") == "local":
        return LocalTunnel()
    key = tuple(spec.get(k) for k in ("host", "user", "port", "identity", "known_hosts"))
    if key not in _OPEN:
        _OPEN[key] = SshTunnel(str(spec["host"]), spec.get("user"), int(spec.get("port") or 22), spec.get("identity"),
                               spec.get("known_hosts"), float(spec.get("connect_timeout") or 10.0))
    return _OPEN[key]


def close_all() -> None:
    for t in _OPEN.values():
        if isinstance(t, SshTunnel):
            t.close()
    _OPEN.clear()


def check(result: Result, what: str, label: str) -> Result:
    if result.rc != 0:
        raise SubmitError(f"{what} on {label} failed: {one_line(result.stderr or result.stdout) or f'exit {result.rc}'}")
    return result


