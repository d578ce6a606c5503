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

log = logging.getLogger("pullguard.workers")

#: The environment variable prometheus_client reads, at import, to store values in files.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
LEADER_POLL_SECONDS = 2.0


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
