"""Backend ``docker``: ``container.json`` through docker-py (``pip install 'docker>=7,<8'``).

The engine is the one ``docker.from_env()`` finds (``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``,
``DOCKER_CERT_PATH``, else the local socket); the handle keeps that ``DOCKER_HOST`` so later
status/logs/cancel reach the same engine. docker-py is imported inside functions only.

- Submit: the image must already be on the engine (``images.get``): nemorun never pulls, because
  ``containers.run`` would pull a missing image implicitly. With a packager the archive is
  unpacked into ``<job dir>/code`` first (bound read-only by the rendered kwargs). Then
  ``containers.run(**container.json)`` — detached; a container the engine created but could not
  start is removed again so nothing half-made stays behind.
- Status: one ``containers.list(all=True)`` per experiment, by the ``nemorun.experiment-id``
  label; the exit code comes from the container's state.
- Logs: from the engine (``follow`` streams until the container stops); stdout and stderr merged.
- Cancel: ``stop`` (SIGTERM, SIGKILL after the grace period), then ``kill`` if it still runs;
  a ``cancelled`` marker in the job folder makes the final state CANCELLED, not FAILED.
"""
from __future__ import annotations

import json
import os
import shutil
import tarfile
import time
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence

from nemorun.errors import SubmitError, one_line
from nemorun.ir import Job, Rendered
from nemorun.states import AppState, Handle, JobStatus
from nemorun.submitters.base import SubmitterFeatures
from nemorun.targets.docker import ARTIFACT, CODE_DIR, LABEL_EXPERIMENT_ID

FEATURES = SubmitterFeatures(stream=True)

CANCELLED_FILE = "cancelled"
DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def _where(host: Optional[str]) -> str:
    return host or f"{DEFAULT_SOCKET} (DOCKER_HOST unset)"


def _reason(exc: BaseException) -> str:
    """The engine's own message (APIError.explanation) on one line, else the exception's text."""
    text = getattr(exc, "explanation", None) or str(exc) or type(exc).__name__
    return one_line(str(text))


def sdk() -> Any:
    try:
        import docker
    except ImportError:
        raise SubmitError("the docker executor needs docker-py: pip install 'docker>=7,<8'") from None
    return docker


def client(host: Optional[str]) -> Any:
    """A docker-py client for ``host`` (None: the environment's). Contacts the engine once."""
    docker = sdk()
    env = dict(os.environ)
    if host:
        env["DOCKER_HOST"] = host
    try:
        return docker.from_env(environment=env)
    except docker.errors.DockerException as exc:
        raise SubmitError(f"cannot reach the Docker engine at {_where(host)}: {_reason(exc)}") from None


def _unpack_code(job: Job) -> None:
    archive = job.package.archive
    if not archive:
        return
    code = Path(job.job_dir) / CODE_DIR
    shutil.rmtree(code, ignore_errors=True)
    code.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(code, filter="data")
    except (OSError, tarfile.TarError) as exc:
        raise SubmitError(f"cannot unpack the code archive {archive} into {code}: {one_line(str(exc))}") from None


def submit(rendered: Rendered, job: Job) -> Handle:
    docker = sdk()
    kwargs = json.loads(rendered.artifacts[ARTIFACT])
    host = os.environ.get("DOCKER_HOST") or None
    c = client(host)
    try:
        image = str(kwargs["image"])
        try:
            c.images.get(image)
        except docker.errors.ImageNotFound as exc:
            raise SubmitError(
                f"image {image} is not on the Docker engine at {_where(host)} and nemorun never pulls: "
                f"build, load or pull it there first ({_reason(exc)})"
            ) from None
        _unpack_code(job)
        name = str(kwargs["name"])
        try:
            container = c.containers.run(**kwargs)
        except docker.errors.DockerException as exc:
            _remove_quietly(c, name)
            raise SubmitError(f"the Docker engine at {_where(host)} refused container {name}: {_reason(exc)}") from None
        return Handle(
            backend="docker",
            id=str(container.short_id),
            data={
                "container_id": container.id,
                "name": name,
                "docker_host": host,
                "experiment_id": job.experiment_id,
                "job_dir": job.job_dir,
                "grace_seconds": int(job.executor.cancel_grace_seconds),
            },
        )
    except docker.errors.DockerException as exc:  # the engine went away mid-way
        raise SubmitError(f"the Docker engine at {_where(host)} failed: {_reason(exc)}") from None
    finally:
        c.close()


def _remove_quietly(c: Any, name: str) -> None:
    docker = sdk()
    try:
        c.containers.get(name).remove(force=True)
    except docker.errors.DockerException:
        pass


def state_of(attrs: dict[str, Any], cancelled: bool) -> JobStatus:
    """A container's ``State`` (from inspect or list) -> JobStatus."""
    st = attrs.get("State") or {}
    status = str(st.get("Status", ""))
    code = st.get("ExitCode")
    if status == "created":
        if st.get("Error"):
            return JobStatus(AppState.FAILED, code, one_line(str(st["Error"])))
        return JobStatus(AppState.CANCELLED if cancelled else AppState.PENDING, None, status)
    if status in ("running", "restarting", "paused"):
        return JobStatus(AppState.RUNNING, None, status)
    if status in ("exited", "dead", "removing"):
        if cancelled:
            return JobStatus(AppState.CANCELLED, code, "cancelled")
        detail = "OOMKilled" if st.get("OOMKilled") else status
        return JobStatus(AppState.SUCCEEDED if code == 0 else AppState.FAILED, code, detail)
    return JobStatus(AppState.UNKNOWN, None, status)


def _cancelled(handle: Handle) -> bool:
    return (Path(str(handle.data.get("job_dir", ""))) / CANCELLED_FILE).exists()


def status(handles: Sequence[Handle]) -> dict[str, JobStatus]:
    docker = sdk()
    out: dict[str, JobStatus] = {}
    groups: dict[tuple[Optional[str], str], list[Handle]] = {}
    for h in handles:
        groups.setdefault((h.data.get("docker_host"), str(h.data.get("experiment_id"))), []).append(h)
    for (host, experiment_id), group in groups.items():
        try:
            c = client(host)
            try:
                listed = c.containers.list(all=True, filters={"label": f"{LABEL_EXPERIMENT_ID}={experiment_id}"}, ignore_removed=True)
                found = {x.id: x.attrs for x in listed}  # full inspect data (list is not sparse)
            finally:
                c.close()
        except (SubmitError, docker.errors.DockerException) as exc:
            out.update({h.id: JobStatus(AppState.UNKNOWN, None, _reason(exc)) for h in group})
            continue
        for h in group:
            attrs = found.get(str(h.data["container_id"]))
            if attrs is None:
                gone = AppState.CANCELLED if _cancelled(h) else AppState.UNKNOWN
                out[h.id] = JobStatus(gone, None, f"container {h.data['name']} is no longer on the engine")
            else:
                out[h.id] = state_of(attrs, _cancelled(h))
    return out


def _container(c: Any, handle: Handle) -> Any:
    docker = sdk()
    try:
        return c.containers.get(str(handle.data["container_id"]))
    except docker.errors.NotFound:
        return None


def logs(handle: Handle, follow: bool = False) -> Iterator[str]:
    docker = sdk()
    host = handle.data.get("docker_host")
    c = client(host)
    try:
        container = _container(c, handle)
        if container is None:
            raise SubmitError(f"container {handle.data['name']} is no longer on the Docker engine at {_where(host)}; its logs went with it")
        partial = b""
        try:
            for chunk in container.logs(stream=True, follow=follow):
                *lines, partial = (partial + chunk).split(b"\n")
                for line in lines:
                    yield line.decode(errors="replace") + "\n"
            if partial:
                yield partial.decode(errors="replace")
            if follow:
                container.wait()  # the log stream can end a moment before the state says so
        except docker.errors.DockerException as exc:
            raise SubmitError(f"logs of container {handle.data['name']} on {_where(host)}: {_reason(exc)}") from None
    finally:
        c.close()


def stream(handle: Handle) -> Iterator[tuple[str, str]]:
    """``(stream, line)`` while the container runs, stdout and stderr kept apart (``wait=true``).

    The Engine API serves each stream as its own followed log; one thread per stream feeds a
    queue so lines reach the terminal as they come, whichever stream they are on.
    """
    import queue
    import threading

    docker = sdk()
    host = handle.data.get("docker_host")
    c = client(host)
    container = _container(c, handle)
    if container is None:
        c.close()
        raise SubmitError(f"container {handle.data['name']} is no longer on the Docker engine at {_where(host)}")
    lines: "queue.Queue[tuple[str, Optional[str]]]" = queue.Queue()

    def pump(name: str) -> None:
        partial = b""
        try:
            for chunk in container.logs(stream=True, follow=True, stdout=name == "stdout", stderr=name == "stderr"):
                *done, partial = (partial + chunk).split(b"\n")
                for line in done:
                    lines.put((name, line.decode(errors="replace") + "\n"))
            if partial:
                lines.put((name, partial.decode(errors="replace")))
        except docker.errors.DockerException:
            pass  # the container went away: what was read is all there is
        finally:
            lines.put((name, None))

    threads = [threading.Thread(target=pump, args=(n,), daemon=True) for n in ("stdout", "stderr")]
    for t in threads:
        t.start()
    try:
        open_streams = len(threads)
        while open_streams:
            name, line = lines.get()
            if line is None:
                open_streams -= 1
            else:
                yield name, line
        try:
            container.wait()  # the log streams can end a moment before the state says so
        except docker.errors.DockerException:
            pass
    finally:
        c.close()


def cancel(handle: Handle) -> None:
    """Idempotent: a container that already stopped, or is gone, is left as it is."""
    docker = sdk()
    host = handle.data.get("docker_host")
    grace = int(handle.data.get("grace_seconds", 10))
    c = client(host)
    try:
        container = _container(c, handle)
        if container is None or container.status in ("exited", "dead", "removing"):
            return
        marker = Path(str(handle.data["job_dir"])) / CANCELLED_FILE
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"{time.time()}\n")
        if container.status == "created":
            container.remove(force=True)
            return
        container.stop(timeout=grace)
        container.reload()
        if container.status in ("running", "restarting", "paused"):
            container.kill()
    except docker.errors.NotFound:
        return
    except docker.errors.DockerException as exc:
        raise SubmitError(f"cannot cancel container {handle.data['name']} on {_where(host)}: {_reason(exc)}") from None
    finally:
        c.close()
