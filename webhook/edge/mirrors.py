"""Mirror health: the mutating webhook rewrites to a mirror only while it is seen answering.

A background loop in each worker probes every configured mirror (``GET /v2/``; 200 or 401
is an answer) every :data:`PROBE_INTERVAL_SECONDS`, all mirrors at once, each within
:data:`PROBE_TIMEOUT_SECONDS`. :meth:`MirrorHealth.down` names every mirror that may not be
rewritten to now, with why:

- **Never seen answering**: a mirror is down until its first probe succeeds. Right after
  start, and right after the ConfigMap adds a mirror, no pod goes to a mirror nobody has
  seen answer (a worker that found a new mirror wakes its probe loop at once).
- **Failed its last probe**: down at the first failure. Being down costs nothing but the
  mirror (the image is pulled as written, from its own registry), so there is no second
  chance that would stretch the time pods go to a dead mirror.
- **Not probed lately**: an answer older than :data:`FRESH_SECONDS` is not trusted (a probe
  loop that stalled must not keep a mirror "up").

- **Lacked an image its registry has**: the validating webhook saw the mirror say "not
  found" for an image the registry as written has (the mirror lost its upstream, or is
  refused there), and denied that pod, which would certainly have failed. For
  :data:`LACKS_SECONDS` after, the mirror is not rewritten to, so the retry is pulled as
  written. A ``/v2/`` probe cannot prove it serves again (it answered all along), so this
  ends by time only. Each worker learns it from its own admissions.

So a mirror that dies is still rewritten to for at most one probe period plus one probe
timeout (:data:`BLIND_SECONDS`): what a probe can know. Nothing can warn about those pods
at admission, since even the registry check may answer from its cache; docs/reference.md
says so.

It must not probe anything but the mirrors an admin configured, nor block an admission: the
webhook reads the last state only.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from webhook.edge.metrics import Metrics

log = logging.getLogger("pullguard.mirrors")

PROBE_INTERVAL_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 2.0
#: The longest a dead mirror is still rewritten to: until the next probe has failed.
BLIND_SECONDS = PROBE_INTERVAL_SECONDS + PROBE_TIMEOUT_SECONDS
#: A good probe is trusted this long; past it the loop has stalled, and the mirror is down.
FRESH_SECONDS = BLIND_SECONDS + 1.0

NOT_YET = "has not answered its /v2/ probe yet"
FAILED = f"did not answer its last /v2/ probe (every {PROBE_INTERVAL_SECONDS:g} s)"
STALE = "has not been probed for {seconds:.0f} s"
#: How long a mirror that lacked an image its registry has is not rewritten to.
LACKS_SECONDS = 120.0
LACKS = "lacked {image}, which its registry has, {seconds:.0f} s ago"


class MirrorHealth:
    """The probe loop of one worker, and the state the admissions read."""

    def __init__(
        self,
        mirrors: Callable[[], Sequence[str]],
        probe: Callable[[str, float], bool],
        *,
        interval: float = PROBE_INTERVAL_SECONDS,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mirrors = mirrors
        self.probe = probe
        self.interval = interval
        self.metrics = metrics
        self.clock = clock
        self.fresh = interval + PROBE_TIMEOUT_SECONDS + 1.0
        self._answered: dict[str, float] = {}
        """Per mirror: when its last good probe started (the mirror answered after that)."""
        self._failing: set[str] = set()
        self._probed: set[str] = set()
        self._lacking: dict[str, tuple[float, str]] = {}
        """Per mirror: when it lacked an image its registry has, and which."""
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self.first_round = threading.Event()
        """Set once every mirror configured at start has been probed."""

    def not_ready(self) -> list[str]:
        """For /readyz: a process is ready only once it has probed its mirrors (a mirror the
        ConfigMap adds later never makes it unready: it is only not rewritten to yet)."""
        return [] if self.first_round.is_set() else ["mirrors not probed yet"]

    def probed(self) -> bool:
        """Has every configured mirror been probed at least once (so :meth:`down` no longer
        says "not yet" of any)? Wakes the loop for one it has not met."""
        missing = [host for host in self.mirrors() if host not in self._probed]
        if missing:
            self._wake.set()
        return not missing

    def lacks(self, host: str, image: str) -> None:
        """The validating webhook saw mirror ``host`` lack ``image``, which its registry has."""
        if host not in self._lacking:
            log.warning(
                "mirror %s lacks %s, which its registry has; images stay as written for %g s",
                host,
                image,
                LACKS_SECONDS,
            )
        self._lacking[host] = (self.clock(), image)

    def down(self) -> dict[str, str]:
        """Probed mirror hosts not to rewrite to now, each with why (for the warning)."""
        now = self.clock()
        down: dict[str, str] = {}
        for host in self.mirrors():
            answered = self._answered.get(host)
            lacked = self._lacking.get(host)
            if lacked is not None and now - lacked[0] > LACKS_SECONDS:
                self._lacking.pop(host, None)
                lacked = None
            if lacked is not None:
                down[host] = LACKS.format(image=lacked[1], seconds=now - lacked[0])
            elif host in self._failing:
                down[host] = FAILED
            elif answered is None:
                down[host] = NOT_YET
                if host not in self._probed:
                    self._wake.set()  # a mirror the loop has not met yet: probe it now
            elif now - answered > self.fresh:
                down[host] = STALE.format(seconds=now - answered)
        return down

    def check_once(self) -> None:
        """Probe every configured mirror once, all at the same time."""
        hosts = list(dict.fromkeys(self.mirrors()))
        results: dict[str, bool] = {}

        def one(host: str) -> None:
            results[host] = self.probe(host, PROBE_TIMEOUT_SECONDS)

        started = self.clock()
        threads = [
            threading.Thread(target=one, args=(h,), name="mirror-probe", daemon=True) for h in hosts
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(PROBE_TIMEOUT_SECONDS + 1.0)
        for host in hosts:
            ok = results.get(host, False)
            if ok:
                if host in self._failing or host not in self._answered:
                    log.warning("mirror %s answers /v2/; rewriting to it", host)
                self._failing.discard(host)
                self._answered[host] = started
            else:
                if host not in self._failing:
                    log.warning("mirror %s does not answer /v2/; images stay as written", host)
                self._failing.add(host)
            self._probed.add(host)
            if self.metrics is not None:
                self.metrics.mirror_up.labels(host).set(1 if ok else 0)
        for gone in (self._probed | set(self._answered)) - set(hosts):
            self._probed.discard(gone)
            self._failing.discard(gone)
            self._answered.pop(gone, None)

    def run(self) -> None:
        while not self.stopping.is_set():
            self._wake.clear()
            try:
                self.check_once()
            except Exception:
                log.exception("mirror probe loop failed; trying again")
            self.first_round.set()
            self._wake.wait(self.interval)

    def stop(self) -> None:
        self.stopping.set()
        self._wake.set()

    def start(self) -> None:
        threading.Thread(target=self.run, name="mirror-health", daemon=True).start()
