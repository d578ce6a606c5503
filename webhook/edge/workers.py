"""What several worker processes of one ``pullguard serve`` share, and what only one of them does.

``pullguard serve`` runs one gunicorn worker per usable core (``--workers``). Each worker is a
whole pullguard: its own cluster caches and watches, configuration watch, registry cache and
mirror probes, so a review is judged by whichever worker accepted the connection, with no
cross-process call in the path. What must not happen once per worker:

- **metrics**: every worker writes its counters to files in one shared directory
  (prometheus_client's multiprocess mode) and ``/metrics`` on any worker sums them;
- **loops that act on the cluster** (secret-copy sync, certificate renewal, the in-cluster
  audit): run by one worker at a time, the one that holds an ``flock`` on a file in the shared
  directory. The kernel releases the lock when that process dies, and another worker takes
  over within :data:`LEADER_POLL_SECONDS`.

Nothing here decides admissions or talks to the API server.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

log = logging.getLogger("pullguard.workers")

#: The environment variable prometheus_client reads, at import, to store values in files.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
LEADER_POLL_SECONDS = 2.0

T = TypeVar("T")


def patch_for_gevent() -> None:
    """Set the process up for gevent (``webhook.edge.server`` runs on it): patch the standard
    library before anything imports ssl or socket. The kubernetes client (urllib3) is used in
    gunicorn's master, for self-managed certificates, and an SSLContext class from before the
    patch makes every TLS call in the worker recurse without end. Call it first, once."""
    import sys

    from gevent import monkey

    monkey.patch_all()
    # httpcore (the registry client) imports trio when it is installed, only to support
    # async callers; trio cannot be imported once gevent has removed select.epoll. Never
    # used here: make its import fail the way httpcore expects of a missing package.
    sys.modules.setdefault("trio", None)  # type: ignore[arg-type]


def preload_libraries(*, cluster: bool) -> None:
    """Import, in the master before the fork, the libraries each worker uses: gevent's thread
    pool (:func:`off_the_loop`) and, with a cluster, the kubernetes client and
    :mod:`webhook.edge.kube` (the caches, the ConfigMap watch and the secret copies)."""
    import gevent.threadpool  # noqa: F401

    if cluster:
        import kubernetes.client
        import kubernetes.watch  # noqa: F401

        import webhook.edge.kube  # noqa: F401


def process_identity() -> str:
    """``host/pid``: who this worker is, to a lease or an object's owner on the cluster."""
    import socket

    return f"{socket.gethostname()}/{os.getpid()}"


def off_the_loop() -> Callable[[Callable[[], T]], T]:
    """Runs work in one real thread of the worker (gevent's thread pool), so the event loop
    keeps serving; one thread, so forged work queues behind itself, not in front of reviews."""
    from gevent.threadpool import ThreadPool

    pool = ThreadPool(1)

    def offload(work: Callable[[], T]) -> T:
        result: T = pool.apply(work)
        return result

    return offload


def usable_cores(
    cgroup_root: Path = Path("/sys/fs/cgroup"), affinity: set[int] | None = None
) -> int:
    """Cores this process may use: its CPU affinity, lowered by a cgroup v2 CPU quota (a
    container's CPU limit, rounded up). At least 1."""
    cores = len(affinity if affinity is not None else os.sched_getaffinity(0))
    try:
        quota, period = (cgroup_root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 CPU controller here: the affinity alone
    return max(1, cores)


_CREATOR: dict[Path, int] = {}


def prepare_shared_dir() -> Path:
    """A fresh directory for this server's workers, and metrics in files under it.

    Must run before anything imports prometheus_client (it reads the variable at import).
    """
    run_dir = Path(tempfile.mkdtemp(prefix="pullguard-"))
    metrics_dir = run_dir / "metrics"
    metrics_dir.mkdir()
    os.environ[METRICS_DIR_ENV] = str(metrics_dir)
    _CREATOR[run_dir] = os.getpid()
    return run_dir


def remove_shared_dir(run_dir: Path) -> None:
    """Remove the directory, in the process that made it only (a worker leaving must not)."""
    if _CREATOR.get(run_dir) == os.getpid():
        shutil.rmtree(run_dir, ignore_errors=True)


def worker_exited(pid: int) -> None:
    """Called in the master when a worker exits: its live gauges stop counting."""
    if os.environ.get(METRICS_DIR_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


class Leadership:
    """Runs ``starts`` once, in the one worker that holds the lock on ``path``."""

    def __init__(self, path: Path, poll: float = LEADER_POLL_SECONDS) -> None:
        self.path = path
        self.poll = poll
        self._starts: list[tuple[str, Callable[[], None]]] = []
        self._leading = threading.Event()
        self._fd: int | None = None

    def add(self, name: str, start: Callable[[], None]) -> None:
        self._starts.append((name, start))

    @property
    def leading(self) -> bool:
        return self._leading.is_set()

    def try_lead(self) -> bool:
        """Take the lock if it is free; on success, start every loop. Never blocks."""
        if self._leading.is_set():
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd  # held for the life of the process: the kernel drops it at exit
        self._leading.set()
        log.info(
            "worker %d runs the cluster-wide loops: %s",
            os.getpid(),
            ", ".join(name for name, _ in self._starts) or "none",
        )
        for _, start in self._starts:
            start()
        return True

    def start(self) -> None:
        """Try now, then every ``poll`` seconds in the background until this worker leads."""
        if not self._starts or self.try_lead():
            return

        def follow() -> None:
            while not self.try_lead():
                time.sleep(self.poll)

        threading.Thread(target=follow, name="leadership", daemon=True).start()
