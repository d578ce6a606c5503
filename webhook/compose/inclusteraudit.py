"""In-cluster audit (``serve --audit-interval SECONDS``, off by default): the ``pullguard
audit`` scan, run by the webhook on an interval, so a secret that expired or a tag that was
deleted is seen before a pod restart needs it.

Each pass lists the workloads and the Pods no controller made, judges them with the live
configuration, the webhook's cluster caches, its registry client (each distinct image
asked once per pass) and its credential providers, and publishes:

- ``pullguard_audit_findings{namespace,check,action}``: findings of the last pass (gauges,
  set at the end of each pass; a series whose findings went away drops to 0);
- ``pullguard_audit_objects`` and ``pullguard_audit_last_pass_timestamp_seconds``;
- a Warning Event ``PullguardAudit`` on each offending object, only when its findings
  changed since the last pass (no event storm from a steady state).

Composition: the scan (:func:`webhook.compose.scan.scan`) and the live judge
(:mod:`webhook.compose.livecheck`) that ``pullguard audit`` also uses, over the webhook's
own caches; listing and Events through :mod:`webhook.edge.kubereads`. It needs the RBAC of
``deploy/components/in-cluster-audit``. It must never write anything but Events, and a
failing pass must never stop the webhook.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from webhook.compose import livecheck
from webhook.compose.scan import in_scope, scan, tally
from webhook.core.cluster import ClusterView
from webhook.core.config import Config
from webhook.core.nodecreds import NodeCredentialView
from webhook.core.registry import RegistryView
from webhook.core.validate import Decision

if TYPE_CHECKING:  # prometheus_client must load after the shared metrics folder is set
    from webhook.edge.kubereads import Kube
    from webhook.edge.metrics import Metrics

log = logging.getLogger("pullguard.audit")

EVENT_REASON = "PullguardAudit"
EVENT_MESSAGE_MAX = 1024


class InClusterAudit:
    def __init__(
        self,
        kube: Kube,
        config: Callable[[], Config],
        cluster: ClusterView,
        registry: RegistryView,
        metrics: Metrics,
        *,
        not_ready: Callable[[], list[str]] = list,
        own_namespace: str = "",
        node: NodeCredentialView | None = None,
    ) -> None:
        self.kube = kube
        self.node = node
        """The webhook's own credential providers (their cache shared with admission)."""
        self.own_namespace = own_namespace
        """pullguard's own namespace: exempt at admission, so never judged here either."""
        self.not_ready = not_ready
        """Why a pass would judge on partial data now (configuration not loaded, caches not
        synced); a pass waits until this is empty, so a half-filled cache never reports
        findings (or sends Events) that are not there."""
        self.config = config
        self.cluster = cluster
        self.registry = registry
        self.metrics = metrics
        self.reported: dict[str, str] = {}  # object uid -> digest of its findings' texts
        self.published: set[tuple[str, str, str]] = set()  # audit_findings series set
        self.stopping = threading.Event()

    def run_once(self) -> int:
        """One pass; returns the number of objects with findings."""
        config = self.config()
        registry = livecheck.RunMemo(self.registry)
        result = scan(
            in_scope(self.kube, None),
            config,
            self.cluster,
            registry,
            own_namespace=self.own_namespace,
            node=self.node,
        )
        offending: list[tuple[str, Decision]] = []  # (namespace, decision)
        seen: dict[str, str] = {}
        for kind, document, decision in result.judged:
            meta = document["metadata"]
            offending.append((str(meta.get("namespace", "")), decision))
            text = decision.message or "\n".join(decision.warnings)
            digest = hashlib.sha256(text.encode()).hexdigest()
            uid = str(meta.get("uid", ""))
            seen[uid] = digest
            if self.reported.get(uid) != digest:
                self._event(kind, document, text, denied=not decision.allowed)
        self.reported = seen
        gauge = self.metrics.audit_findings
        counts = tally(offending)
        # Series that went away are set to 0, not removed: with several workers the values
        # live in shared files, where a removed series would keep its last value.
        for gone in self.published - counts.keys():
            gauge.labels(*gone).set(0)
        for (namespace, check, action), value in counts.items():
            gauge.labels(namespace, check, action).set(value)
        self.published |= counts.keys()
        self.metrics.audit_objects.set(result.scanned)
        self.metrics.audit_last_pass.set(time.time())
        log.info("audit pass: %d objects, %d with findings", result.scanned, len(offending))
        return len(offending)

    def _event(self, kind: str, document: dict[str, Any], text: str, *, denied: bool) -> None:
        lead = "would be denied today" if denied else "has warnings today"
        try:
            self.kube.warn_about(
                kind,
                document,
                reason=EVENT_REASON,
                message=f"pullguard audit: {lead}:\n{text}",
                limit=EVENT_MESSAGE_MAX,
            )
        except Exception as error:
            meta = document["metadata"]
            log.warning(
                "audit event on %s %s/%s failed: %s",
                kind,
                meta.get("namespace") or "default",
                meta.get("name"),
                type(error).__name__,
            )

    def run(self, interval: float) -> None:
        while not self.stopping.is_set():
            waiting = self.not_ready()
            if waiting:
                log.info("audit pass waits: %s", "; ".join(waiting))
                self.stopping.wait(min(interval, 2.0))
                continue
            try:
                self.run_once()
            except Exception:
                log.exception("audit pass failed; trying again in %.0fs", interval)
            self.stopping.wait(interval)
