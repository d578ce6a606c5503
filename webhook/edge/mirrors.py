"""Mirror health: the mutating webhook rewrites to a mirror only while it answers ``/v2/``.

A background loop probes each configured mirror every few seconds. A mirror is down after
:data:`FAILURES_TO_DOWN` failed probes in a row (or when its first probe fails) and up again
after one good probe; while down, images stay as written (a warning on each request and
``pullguard_mirror_skipped_rewrites_total``), so an outage of the mirror never becomes an
outage of the cluster.

It must not probe anything but the mirrors an admin configured, nor block an admission: the
webhook reads the last state only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

log = logging.getLogger("pullguard.mirrors")

FAILURES_TO_DOWN = 2
PROBE_TIMEOUT_SECONDS = 2.0


class MirrorHealth:
    def __init__(
        self,
        mirrors: Callable[[], Sequence[str]],
        probe: Callable[[str, float], bool],
        *,
        interval: float = 10.0,
        metrics: Any = None,
    ) -> None:
        self.mirrors = mirrors
        self.probe = probe
        self.interval = interval
        self.metrics = metrics
        self.failures: dict[str, int] = {}
        self._down: frozenset[str] = frozenset()
        self.stopping = threading.Event()

    def down(self) -> frozenset[str]:
        """Mirror hosts not to rewrite to now."""
        return self._down

    def check_once(self) -> None:
        hosts = list(dict.fromkeys(self.mirrors()))
        down = set()
        for host in hosts:
            first = host not in self.failures
            if self.probe(host, PROBE_TIMEOUT_SECONDS):
                if self.failures.get(host):
                    log.warning("mirror %s answers again; rewriting to it", host)
                self.failures[host] = 0
            else:
                self.failures[host] = self.failures.get(host, 0) + 1
                if first or self.failures[host] >= FAILURES_TO_DOWN:
                    if host not in self._down:
                        log.warning("mirror %s does not answer /v2/; images stay as written", host)
                    down.add(host)
            if self.metrics is not None:
                self.metrics.mirror_up.labels(host).set(0 if host in down else 1)
        for gone in set(self.failures) - set(hosts):
            del self.failures[gone]
        self._down = frozenset(down)

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.check_once()
            except Exception:
                log.exception("mirror probe loop failed; trying again")
            self.stopping.wait(self.interval)

    def start(self) -> None:
        threading.Thread(target=self.run, name="mirror-health", daemon=True).start()
