"""Backend ``docker``: ``container.json`` through docker-py (``pip install 'docker>=7,<8'``).

The engine is the one ``docker.from_env()`` finds (``DOCKER_HOST``, ``DOCKER_TLS_VERIFY``,
``DOCKER_CERT_PATH``, else the local socket); the handle keeps that ``DOCKER_HOST`` so later
status/logs/cancel reach the same engine. docker-py is imported inside functions only.

- Submit: the image must already be on the engine (``images.get``): nemorun never pulls, because
  ``containers.run`` would pull a missing image implicitly. Checked by :func:`resolve`, which
  the core runs for every job of a launch before the first is sent (a sweep's 2nd image missing
  no longer leaves the 1st running), and again at submit. With a packager, ``<job dir>/code``
  (bound read-only by the rendered kwargs) becomes a link to the archive's tree in
  ``NEMORUN_HOME/cache/code/<sha256>``, unpacked once per digest: the mount is read-only, so jobs
  can share it, and an unchanged archive (the next launch, every point of a sweep) costs a
  symlink, not an unpack. Then ``containers.run(**container.json)`` — detached; a container the
  engine created but could not start is removed again so nothing half-made stays behind.
- Code cache pruning (:func:`prune_code_cache`, at most once a day, after a container started):
  a tree is removed only when it was last linked by a launch more than
  :data:`CODE_CACHE_KEEP_S` ago AND no container on the engine that is not over (running,
  restarting, paused, created) mounts it. A recorded job that is rerun or resumed loses nothing:
  its archive is in the experiment record and is unpacked again on demand; an exited container
  started again by hand after that (``docker start``) finds its code gone. Launches and pruning
  take one file lock (``cache/code.lock``, filelock): a launch finds or unpacks, touches and
  links its tree under it, so pruning never removes a tree between a launch finding it and its
  container mounting it; a tree is renamed away under the lock and deleted after.
- Status: one sparse ``containers.list(all=True)`` per engine and poll, filtered by nemorun's
  ``nemorun.experiment-id`` label (the engine's list answer: id and state of each container, no
  inspect). A container is inspected only when the list cannot say it all: it ended (exit code,
  OOMKilled, ``RestartCount`` — once, as the job's final state is then recorded), it is not
  ``running``, or its job retries (``RestartCount`` of a later attempt). docker-py's plain list
  inspects EVERY container it lists: a poll of a 100-job sweep was 101 engine calls. With
  retries (restart policy ``on-failure``) a container between attempts is ``restarting``:
  RUNNING, not FAILED; the detail shows the engine's ``RestartCount``.
- Logs: from the engine (``follow`` streams until the container stops for good, across restarts;
  the engine ends a followed log at every exit); stdout and stderr merged.
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

from filelock import FileLock, Timeout

from nemorun.archives import extract_beside, file_sha256
from nemorun.errors import SubmitError, one_line
from nemorun.ir import Job, Rendered
from nemorun.states import AppState, Handle, JobStatus
from nemorun.store import nemorun_home
from nemorun.submitters.base import SubmitterFeatures
from nemorun.targets.docker import ARTIFACT, CODE_DIR, LABEL_EXPERIMENT_ID, LABEL_JOB

FEATURES = SubmitterFeatures(stream=True, find=True, resolve=True)

CANCELLED_FILE = "cancelled"
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
# container states in which the job is not over (``restarting``: between two attempts)
LIVE_STATES = ("running", "restarting", "paused")
# a code tree not linked by a launch for this long may be pruned (unless a live container mounts it)
CODE_CACHE_KEEP_S = 7 * 24 * 3600
# how often a launch looks for trees to prune
PRUNE_EVERY_S = 24 * 3600
# how long a launch waits for another's unpack (or a prune) holding the cache lock
CACHE_LOCK_TIMEOUT_S = 600.0
_TRASH = ".trash-"


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


def _failures(docker: Any) -> tuple[type[BaseException], ...]:
    """What an engine call raises when the engine fails or went away: docker-py's errors, and
    the connection errors of requests, which docker-py lets through once it knows the API version
    (no GET /version made at :func:`client`, which wrapped them then)."""
    import requests

    return (docker.errors.DockerException, requests.exceptions.RequestException)


# the API version each engine answered this process's first client (key: pid, DOCKER_HOST, TLS
# settings): later clients are told it, or every client (one per poll of `exp status --watch`,
# per job of a launch) asked the engine GET /version before its one real request
_api_versions: dict[tuple[Any, ...], str] = {}


def client(host: Optional[str]) -> Any:
    """A docker-py client for ``host`` (None: the environment's). The first one of the process
    asks the engine its API version (an unreachable engine is refused here, in one line)."""
    docker = sdk()
    env = dict(os.environ)
    if host:
        env["DOCKER_HOST"] = host
    key = (os.getpid(), env.get("DOCKER_HOST"), env.get("DOCKER_TLS_VERIFY"), env.get("DOCKER_CERT_PATH"))
    try:
        c = docker.from_env(environment=env, version=_api_versions.get(key))
    except docker.errors.DockerException as exc:
        raise SubmitError(f"cannot reach the Docker engine at {_where(host)}: {_reason(exc)}") from None
    _api_versions[key] = c.api.api_version
    return c


def code_cache_root() -> Path:
    return nemorun_home() / "cache" / "code"


def code_cache(sha256: str) -> Path:
    """Where the tree of the archive with this digest is unpacked, once, for every job using it."""
    return code_cache_root() / sha256


def _lock_file() -> Path:
    """Beside the cache, not in it: the cache folder holds only trees (and their temp folders)."""
    return code_cache_root().with_name("code.lock")


def _pruned_file() -> Path:
    return code_cache_root().with_name("code.pruned")


def _cache_lock(timeout: float = CACHE_LOCK_TIMEOUT_S) -> FileLock:
    code_cache_root().mkdir(parents=True, exist_ok=True)
    return FileLock(str(_lock_file()), timeout=timeout)


def _digest(archive: str) -> str:
    """sha256 of an archive the job names without its digest (packaging always records one)."""
    try:
        return file_sha256(archive)
    except OSError as exc:
        raise SubmitError(f"cannot unpack the code archive {archive}: {one_line(str(exc))}") from None


def _unpacked(archive: str, sha256: str) -> Path:
    """The archive's tree in the cache, unpacked now unless an earlier launch did. Unpacked
    beside it and renamed into place, so a tree under the digest's name is always complete
    (a crash or a concurrent launch never leaves a half tree that would count as done)."""
    tree = code_cache(sha256)
    if tree.is_dir():
        return tree
    tmp = None
    try:
        tmp = extract_beside(archive, tree)
        tmp.chmod(0o755)
        os.rename(tmp, tree)
    except (OSError, tarfile.TarError) as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if tree.is_dir():  # a concurrent launch renamed the same digest's tree into place first
            return tree
        raise SubmitError(f"cannot unpack the code archive {archive} into {tree}: {one_line(str(exc))}") from None
    return tree


def _unpack_code(job: Job) -> None:
    """``<job dir>/code`` -> the digest's unpacked tree (what the rendered bind mount names)."""
    archive = job.package.archive
    if not archive:
        return
    try:
        with _cache_lock():  # a prune cannot take the tree between finding it and the container mounting it
            tree = _unpacked(archive, job.package.sha256 or _digest(archive))
            os.utime(tree)  # last used: what pruning goes by
            _link(job, tree)
    except Timeout:
        raise SubmitError(f"the code cache {code_cache_root()} stayed locked for {CACHE_LOCK_TIMEOUT_S:.0f} s "
                          f"(another launch unpacking?); remove {_lock_file()} if no nemorun runs") from None


def _link(job: Job, tree: Path) -> None:
    link = Path(job.job_dir) / CODE_DIR
    try:
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            shutil.rmtree(link)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(tree, target_is_directory=True)
    except OSError as exc:
        raise SubmitError(f"cannot link {link} to the unpacked code {tree}: {one_line(str(exc))}") from None


def _image_present(c: Any, image: str, host: Optional[str]) -> None:
    docker = sdk()
    try:
        c.images.get(image)
    except docker.errors.ImageNotFound as exc:
        raise SubmitError(
            f"image {image} is not on the Docker engine at {_where(host)} and nemorun never pulls: "
            f"build, load or pull it there first ({_reason(exc)})"
        ) from None


# (experiment id, engine, image) found on the engine by resolve: every job of a sweep uses the
# same image, so a launch asks the engine once per image, not once per job
_images_found: set[tuple[str, Optional[str], str]] = set()


def resolve(job: Job) -> Job:
    """Nothing to fill in: refuses, before any job of the launch is sent, what :func:`submit`
    would refuse at its turn — docker-py missing, the engine unreachable, the image not on it."""
    docker = sdk()
    host = os.environ.get("DOCKER_HOST") or None
    seen = (job.experiment_id, host, str(job.image))
    if seen in _images_found:
        return job
    c = client(host)
    try:
        _image_present(c, str(job.image), host)
        _images_found.intersection_update({k for k in _images_found if k[0] == job.experiment_id})  # this launch's only
        _images_found.add(seen)
    except _failures(docker) as exc:
        raise SubmitError(f"the Docker engine at {_where(host)} failed: {_reason(exc)}") from None
    finally:
        c.close()
    return job


def submit(rendered: Rendered, job: Job) -> Handle:
    docker = sdk()
    kwargs = json.loads(rendered.artifacts[ARTIFACT])
    host = os.environ.get("DOCKER_HOST") or None
    c = client(host)
    try:
        _image_present(c, str(kwargs["image"]), host)  # resolve checked it; removed since?
        _unpack_code(job)
        name = str(kwargs["name"])
        try:
            container = c.containers.run(**kwargs)
        except docker.errors.DockerException as exc:
            _remove_quietly(c, name)
            raise SubmitError(f"the Docker engine at {_where(host)} refused container {name}: {_reason(exc)}") from None
        if job.package.archive:
            _prune_quietly(c)
        return _handle(container, job, host)
    except _failures(docker) as exc:  # the engine went away mid-way
        raise SubmitError(f"the Docker engine at {_where(host)} failed: {_reason(exc)}") from None
    finally:
        c.close()


def _mounted_trees(c: Any) -> set[str]:
    """Real paths of what the engine's nemorun containers that are not over bind-mount (a job's
    ``code`` link resolves to its tree)."""
    found = c.containers.list(all=True, filters={"label": LABEL_EXPERIMENT_ID}, sparse=True, ignore_removed=True)
    return {os.path.realpath(m["Source"]) for ct in found if ct.status in (*LIVE_STATES, "created")
            for m in ct.attrs.get("Mounts") or [] if m.get("Source")}


def prune_code_cache(c: Any, now: Optional[float] = None, lock_timeout: float = CACHE_LOCK_TIMEOUT_S) -> list[str]:
    """Remove the cache entries the rule in the module docstring allows; return their names.
    Also removes half-unpacked folders and leftovers of an interrupted prune past the same age."""
    root, now = code_cache_root(), time.time() if now is None else now
    trash: list[Path] = []
    with _cache_lock(lock_timeout):
        in_use = _mounted_trees(c)
        for entry in sorted(root.iterdir()):
            if entry.is_symlink() or not entry.is_dir():
                continue
            if now - entry.stat().st_mtime <= CODE_CACHE_KEEP_S or os.path.realpath(entry) in in_use:
                continue
            away = entry if entry.name.startswith(_TRASH) else root / f"{_TRASH}{entry.name}-{os.getpid()}"
            if away != entry:
                os.rename(entry, away)
            trash.append(away)
        _pruned_file().touch()
    for away in trash:
        shutil.rmtree(away, ignore_errors=True)
    return [t.name for t in trash]


def _prune_quietly(c: Any) -> None:
    """Prune at most once per :data:`PRUNE_EVERY_S`; a launch never fails or waits for it."""
    try:
        if time.time() - _pruned_file().stat().st_mtime < PRUNE_EVERY_S:
            return
    except FileNotFoundError:
        pass
    try:
        prune_code_cache(c, lock_timeout=0)
    except (OSError, Timeout, sdk().errors.DockerException):
        pass  # another launch holds the lock, or the engine went away: the next launch prunes


def _handle(container: Any, job: Job, host: Optional[str]) -> Handle:
    return Handle(
        backend="docker",
        id=str(container.short_id),
        data={
            "container_id": container.id,
            "name": container.name,
            "docker_host": host,
            "experiment_id": job.experiment_id,
            "job_dir": job.job_dir,
            "grace_seconds": int(job.executor.cancel_grace_seconds),
            "retries": int(job.retries),  # status then inspects a running container only when it may restart
        },
    )


def find(job: Job) -> Optional[Handle]:
    """The container a crashed launch may have made, by the labels nemorun puts on it
    (experiment id and job name; the engine keeps them for stopped containers too).

    ``containers.run`` is create-then-start: a container killed between the two is still
    ``created`` and never ran, so it is removed and the job counts as not submitted (its name
    would otherwise block the new one)."""
    docker = sdk()
    host = os.environ.get("DOCKER_HOST") or None
    c = client(host)
    try:
        labels = [f"{LABEL_EXPERIMENT_ID}={job.experiment_id}", f"{LABEL_JOB}={job.name}"]
        found = c.containers.list(all=True, filters={"label": labels}, ignore_removed=True)
        for container in found:
            if container.status == "created":
                container.remove(force=True)
                continue
            return _handle(container, job, host)
        return None
    except _failures(docker) as exc:
        raise SubmitError(f"cannot look for container of job {job.name} on the Docker engine at {_where(host)}: {_reason(exc)}") from None
    finally:
        c.close()


def _remove_quietly(c: Any, name: str) -> None:
    docker = sdk()
    try:
        c.containers.get(name).remove(force=True)
    except _failures(docker):
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
    restarts = int(attrs.get("RestartCount") or 0)
    # how many times the restart policy ran the job again (retries)
    tried = f"RestartCount {restarts} ({restarts + 1} attempts)" if restarts else ""
    if status in LIVE_STATES:
        return JobStatus(AppState.RUNNING, None, ", ".join(filter(None, (status, tried))))
    if status in ("exited", "dead", "removing"):
        if cancelled:
            return JobStatus(AppState.CANCELLED, code, ", ".join(filter(None, ("cancelled", tried))))
        detail = "OOMKilled" if st.get("OOMKilled") else status
        return JobStatus(AppState.SUCCEEDED if code == 0 else AppState.FAILED, code, ", ".join(filter(None, (detail, tried))))
    return JobStatus(AppState.UNKNOWN, None, status)


def _cancelled(handle: Handle) -> bool:
    return (Path(str(handle.data.get("job_dir", ""))) / CANCELLED_FILE).exists()


def _needs_inspect(listed_state: str, handle: Handle) -> bool:
    """Whether the list's one-word state is not the whole answer (see the module docstring)."""
    return listed_state != "running" or handle.data.get("retries", 1) != 0


def status(handles: Sequence[Handle]) -> dict[str, JobStatus]:
    docker = sdk()
    unanswered: tuple[type[BaseException], ...] = (SubmitError, *_failures(docker))
    out: dict[str, JobStatus] = {}
    hosts: dict[Optional[str], list[Handle]] = {}
    for h in handles:
        hosts.setdefault(h.data.get("docker_host"), []).append(h)
    for host, group in hosts.items():
        ids = {str(h.data.get("experiment_id")) for h in group}
        # one experiment: the engine filters by its id; several: every nemorun container, one call
        label = f"{LABEL_EXPERIMENT_ID}={next(iter(ids))}" if len(ids) == 1 else LABEL_EXPERIMENT_ID
        try:
            c = client(host)
            try:
                listed = {x.id: x for x in c.containers.list(all=True, filters={"label": label}, sparse=True, ignore_removed=True)}
                for h in group:
                    found = listed.get(str(h.data["container_id"]))
                    if found is None:
                        gone = AppState.CANCELLED if _cancelled(h) else AppState.UNKNOWN
                        out[h.id] = JobStatus(gone, None, f"container {h.data['name']} is no longer on the engine")
                    elif _needs_inspect(found.status, h):
                        try:
                            out[h.id] = state_of(c.api.inspect_container(found.id), _cancelled(h))
                        except docker.errors.NotFound:  # removed since the list
                            out[h.id] = JobStatus(AppState.CANCELLED if _cancelled(h) else AppState.UNKNOWN, None,
                                                  f"container {h.data['name']} is no longer on the engine")
                    else:
                        out[h.id] = JobStatus(AppState.RUNNING, None, "running")
            finally:
                c.close()
        except unanswered as exc:
            out.update({h.id: JobStatus(AppState.UNKNOWN, None, _reason(exc)) for h in group if h.id not in out})
    return out


def _container(c: Any, handle: Handle) -> Any:
    docker = sdk()
    try:
        return c.containers.get(str(handle.data["container_id"]))
    except docker.errors.NotFound:
        return None


def follow_log(container: Any, poll: float = 0.1, **which: bool) -> Iterator[bytes]:
    """The container's log bytes (``which``: ``stdout``/``stderr`` selection) as they come, until
    it stops for good.

    The engine ends a followed log whenever the container's process exits, also when its restart
    policy is about to run it again (and ``wait`` returns then too), so one follow would miss every
    attempt after the first. Each time the stream ends this looks at the state: while the
    container is live it follows again, skipping the bytes already passed on (the engine serves
    the whole log, all attempts, in order); once it is not, one last plain read picks up an attempt
    that started and ended between two looks."""
    docker = sdk()
    seen, follow = 0, True
    while True:
        read, fresh = 0, False
        for chunk in container.logs(stream=True, follow=follow, **which):
            start = max(0, seen - read)
            read += len(chunk)
            if start < len(chunk):
                fresh = True
                yield chunk[start:]
        seen = max(seen, read)
        if not follow:
            return
        try:
            container.reload()
        except docker.errors.NotFound:
            return
        if container.status not in LIVE_STATES:
            follow = False
        elif not fresh:
            time.sleep(poll)  # restarting, or the state lags the end of the stream


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    partial = b""
    for chunk in chunks:
        *lines, partial = (partial + chunk).split(b"\n")
        for line in lines:
            yield line.decode(errors="replace") + "\n"
    if partial:
        yield partial.decode(errors="replace")


def logs(handle: Handle, follow: bool = False) -> Iterator[str]:
    docker = sdk()
    host = handle.data.get("docker_host")
    c = client(host)
    try:
        container = _container(c, handle)
        if container is None:
            raise SubmitError(f"container {handle.data['name']} is no longer on the Docker engine at {_where(host)}; its logs went with it")
        try:
            chunks = follow_log(container) if follow else container.logs(stream=True, follow=False)
            yield from _lines(chunks)
        except _failures(docker) as exc:
            raise SubmitError(f"logs of container {handle.data['name']} on {_where(host)}: {_reason(exc)}") from None
    finally:
        c.close()


def stream(handle: Handle) -> Iterator[tuple[str, str]]:
    """``(stream, line)`` while the container runs, across restarts, stdout and stderr kept apart
    (``wait=true``).

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
        try:
            # each thread its own Container object: follow_log reloads it
            own = c.containers.get(container.id)
            for line in _lines(follow_log(own, stdout=name == "stdout", stderr=name == "stderr")):
                lines.put((name, line))
        except _failures(docker):
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
    except _failures(docker) as exc:
        raise SubmitError(f"cannot cancel container {handle.data['name']} on {_where(host)}: {_reason(exc)}") from None
    finally:
        c.close()
