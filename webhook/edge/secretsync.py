"""Copies of default pull secrets: made on demand, kept in sync, recreated when deleted.

When a pod in namespace N gets a default pull secret injected whose master copy lives in
``sourceNamespace``, :class:`SecretSyncer` copies it into N (never on dry-run: the app does
not call it then). A background loop re-reads each master copy and brings every managed copy
in line when the source rotates, and recreates a copy that was deleted.

Several replicas never fight: a copy's content is a pure function of its source (same type,
same data, same labels), creation treats "already exists" as success, and updates are
guarded by the copy's resourceVersion, so two replicas can only converge on the same bytes.

Must not: log secret data, or copy anything not named by the configuration.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Protocol

from webhook.core.cluster import SecretInfo
from webhook.core.mutate import MANAGED_BY_LABEL, MANAGED_BY_VALUE, SecretCopy

log = logging.getLogger("pullguard.secrets")
SOURCE_ANNOTATION = "pullguard.io/source"


class SecretWriter(Protocol):
    def read(self, namespace: str, name: str) -> SecretInfo | None: ...
    def create(self, secret: SecretInfo) -> str: ...
    def replace_data(
        self, secret: SecretInfo, data: Mapping[str, str], resource_version: str
    ) -> str: ...
    def managed_copies(self) -> Iterable[SecretInfo]: ...


def copy_of(source: SecretInfo, namespace: str) -> SecretInfo:
    """The managed copy of ``source`` for ``namespace``: same type and data, labelled."""
    return SecretInfo(
        namespace=namespace,
        name=source.name,
        type=source.type,
        data=dict(source.data),
        labels={MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        annotations={SOURCE_ANNOTATION: f"{source.namespace}/{source.name}"},
    )


class SecretSyncer:
    """Creates and maintains managed copies; thread-safe."""

    def __init__(self, writer: SecretWriter) -> None:
        self.writer = writer
        self._targets: set[tuple[str, str, str]] = set()  # (namespace, name, source ns)
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def copy(self, request: SecretCopy) -> str:
        """Make the copy now (the mutating webhook asked for it). Returns the outcome."""
        with self._lock:
            self._targets.add((request.namespace, request.name, request.source_namespace))
        try:
            source = self.writer.read(request.source_namespace, request.name)
            if source is None:
                log.error(
                    "default pull secret %s/%s does not exist; nothing to copy",
                    request.source_namespace,
                    request.name,
                )
                return "failed"
            outcome = self.writer.create(copy_of(source, request.namespace))
        except Exception as error:
            log.error(
                "copying secret %s into %s failed: %s",
                request.name,
                request.namespace,
                type(error).__name__,
            )
            return "failed"
        log.info(
            "secret %s/%s copied into %s (%s)",
            request.source_namespace,
            request.name,
            request.namespace,
            outcome,
        )
        return outcome

    def learn_existing(self) -> None:
        """Adopt the managed copies already in the cluster (after a restart)."""
        for secret in self.writer.managed_copies():
            source = secret.annotations.get(SOURCE_ANNOTATION, "")
            source_ns, _, source_name = source.partition("/")
            if source_ns and source_name == secret.name:
                with self._lock:
                    self._targets.add((secret.namespace, secret.name, source_ns))

    def reconcile_once(self) -> dict[str, int]:
        """Bring every known copy in line with its source. Returns counts by outcome."""
        counts: dict[str, int] = {}
        with self._lock:
            targets = sorted(self._targets)
        for namespace, name, source_ns in targets:
            outcome = self._reconcile(namespace, name, source_ns)
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    def _reconcile(self, namespace: str, name: str, source_ns: str) -> str:
        try:
            source = self.writer.read(source_ns, name)
            if source is None:
                return "source-missing"  # keep the copies: pods may still need them
            current = self.writer.read(namespace, name)
            if current is None:
                outcome = self.writer.create(copy_of(source, namespace))
                return "recreated" if outcome == "created" else outcome
            if current.labels.get(MANAGED_BY_LABEL) != MANAGED_BY_VALUE:
                return "not-managed"  # someone else's secret of that name: never touch it
            if dict(current.data) == dict(source.data) and current.type == source.type:
                return "in-sync"
            return self.writer.replace_data(current, source.data, current.resource_version)
        except Exception as error:
            log.warning("sync of %s/%s failed: %s", namespace, name, type(error).__name__)
            return "failed"

    def run(self, interval: float = 30.0) -> None:
        """Reconcile until stopped (a daemon thread of ``pullguard serve``)."""
        try:
            self.learn_existing()
        except Exception as error:
            log.warning("could not list managed secret copies: %s", type(error).__name__)
        while not self._stop.wait(interval):
            self.reconcile_once()

    def stop(self) -> None:
        self._stop.set()
