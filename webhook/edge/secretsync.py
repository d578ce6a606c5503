"""Copies of default pull secrets: made on demand, kept in sync, recreated when deleted.

When a pod in namespace N gets a default pull secret injected whose master copy lives in
``sourceNamespace``, :class:`SecretSyncer` copies it into N (never on dry-run: the app does
not call it then). A background loop re-reads each master copy and brings every managed copy
in line when the source rotates, recreates a copy that was deleted, and recreates one whose
source changed type (a Secret's type is immutable).

Trust rules, each against an attack a tenant could mount with rights to its own namespace:

- Only the (secret, sourceNamespace) pairs of the configuration's ``defaultPullSecrets`` are
  ever copied or synced, and only sources of a pull-secret type. A label or annotation that
  names another source (``kube-system/some-token``) is never followed: otherwise any tenant
  could have pullguard fill a secret of theirs with another namespace's credentials.
- Only copies pullguard made itself are ever written to. Labels can be forged, so each copy
  carries ``pullguard.io/copy-proof``, an HMAC of (namespace, name, source namespace) under a
  key only pullguard can read (the Secret ``pullguard-sync-key`` in its own namespace). A
  secret without a valid proof is someone else's: never adopted, never touched.
- A copy joins the sync list only after it was made (or proven ours) in a namespace that
  exists, and leaves it when the namespace is gone or its pair leaves the configuration, so
  forged reviews cannot grow the list.
- Every outcome is logged (names only) and counted; a copy that can no longer be synced is
  never left silently stale.

Several replicas never fight: a copy's content is a pure function of its source, creation
treats "already exists" as success, and updates are guarded by the copy's resourceVersion.

Must not: log secret data, or copy anything not named by the configuration.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Protocol

from webhook.core.cluster import SecretInfo
from webhook.core.keyring import PULL_SECRET_KEYS
from webhook.core.mutate import MANAGED_BY_LABEL, MANAGED_BY_VALUE, SecretCopy

log = logging.getLogger("pullguard.secrets")
SOURCE_ANNOTATION = "pullguard.io/source"
PROOF_ANNOTATION = "pullguard.io/copy-proof"
KEY_SECRET = "pullguard-sync-key"  # noqa: S105 - a Secret's name

#: Every outcome a copy or a sync pass can have (metric label values come from here only).
OUTCOMES = (
    "created",
    "exists",
    "updated",
    "in-sync",
    "recreated",
    "conflict",
    "source-missing",
    "not-managed",
    "refused",
    "namespace-gone",
    "failed",
)


def api_message(error: Exception, limit: int = 300) -> str:
    """The API server's ``message`` of a refused request (its Status body), else the error's
    type: what the user is shown about a copy that failed. Never the request's contents."""
    body = getattr(error, "body", None)
    try:
        message = json.loads(body).get("message") if isinstance(body, (str, bytes)) else None
    except (ValueError, AttributeError):
        message = None
    if not isinstance(message, str) or not message:
        return type(error).__name__
    return message if len(message) <= limit else message[:limit] + "..."


class SecretWriter(Protocol):
    def read(self, namespace: str, name: str) -> SecretInfo | None: ...
    def create(self, secret: SecretInfo) -> str:
        """created | exists | namespace-gone."""
        ...

    def replace_data(
        self, secret: SecretInfo, data: Mapping[str, str], resource_version: str
    ) -> str: ...
    def delete(self, secret: SecretInfo) -> bool:
        """Delete exactly this secret (its resourceVersion as precondition); False when it
        changed or went meanwhile."""
        ...

    def managed_copies(self) -> Iterable[SecretInfo]: ...


def copy_proof(key: bytes, namespace: str, name: str, source_namespace: str) -> str:
    """The HMAC that marks a copy as pullguard's own."""
    message = f"{namespace}\0{name}\0{source_namespace}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def copy_of(source: SecretInfo, namespace: str, key: bytes) -> SecretInfo:
    """The managed copy of ``source`` for ``namespace``: same type and data, labelled, proven."""
    return SecretInfo(
        namespace=namespace,
        name=source.name,
        type=source.type,
        data=dict(source.data),
        labels={MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        annotations={
            SOURCE_ANNOTATION: f"{source.namespace}/{source.name}",
            PROOF_ANNOTATION: copy_proof(key, namespace, source.name, source.namespace),
        },
    )


def is_our_copy(secret: SecretInfo, source_namespace: str, key: bytes) -> bool:
    """Did pullguard make ``secret`` as a copy from ``source_namespace``? Labels alone prove
    nothing; the proof annotation does."""
    expected = copy_proof(key, secret.namespace, secret.name, source_namespace)
    return secret.labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE and hmac.compare_digest(
        secret.annotations.get(PROOF_ANNOTATION, ""), expected
    )


Target = tuple[str, str, str]  # (namespace, secret name, source namespace)


class SecretSyncer:
    """Creates and maintains managed copies; thread-safe.

    ``allowed`` returns the (secret, sourceNamespace) pairs the configuration names now;
    ``record`` counts each outcome (one of :data:`OUTCOMES`).
    """

    def __init__(
        self,
        writer: SecretWriter,
        *,
        key: bytes,
        allowed: Callable[[], Collection[tuple[str, str]]],
        record: Callable[[str], None] = lambda _outcome: None,
    ) -> None:
        self.writer = writer
        self.key = key
        self.allowed = allowed
        self.record = record
        self._targets: set[Target] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    @property
    def targets(self) -> set[Target]:
        with self._lock:
            return set(self._targets)

    def _remember(self, target: Target) -> None:
        with self._lock:
            self._targets.add(target)

    def _forget(self, target: Target) -> None:
        with self._lock:
            self._targets.discard(target)

    def _source(self, name: str, source_namespace: str) -> tuple[SecretInfo | None, str]:
        """The source, or why there is none to copy: refused | source-missing."""
        if (name, source_namespace) not in set(self.allowed()):
            log.warning(
                "secret %s/%s is not a configured default pull secret; not copied",
                source_namespace,
                name,
            )
            return None, "refused"
        source = self.writer.read(source_namespace, name)
        if source is None:
            log.error("default pull secret %s/%s does not exist", source_namespace, name)
            return None, "source-missing"
        if source.type not in PULL_SECRET_KEYS:
            log.error(
                "default pull secret %s/%s has type %s, not a pull-secret type; not copied",
                source_namespace,
                name,
                source.type,
            )
            return None, "refused"
        return source, ""

    def copy(self, request: SecretCopy) -> str:
        """Make the copy now (the mutating webhook asked for it). Returns the outcome, which
        the caller counts (``record`` counts the background sync only)."""
        target = (request.namespace, request.name, request.source_namespace)
        try:
            source, why = self._source(request.name, request.source_namespace)
            if source is None:
                return why
            outcome = self.writer.create(copy_of(source, request.namespace, self.key))
            if outcome == "exists":
                current = self.writer.read(request.namespace, request.name)
                if current is None or not is_our_copy(current, request.source_namespace, self.key):
                    log.warning(
                        "secret %s/%s exists and is not a pullguard copy; left alone",
                        request.namespace,
                        request.name,
                    )
                    return "not-managed"
        except Exception as error:
            why = api_message(error)
            log.error("copying secret %s into %s failed: %s", request.name, request.namespace, why)
            # The API server's words (a ResourceQuota's "exceeded quota", a Forbidden) go
            # into the warning: the fix the user would try next is refused for that reason.
            return f"failed: {why}"
        if outcome in ("created", "exists"):
            self._remember(target)
        log.info(
            "secret %s/%s copied into %s (%s)",
            request.source_namespace,
            request.name,
            request.namespace,
            outcome,
        )
        return outcome

    def learn_existing(self) -> None:
        """Adopt the copies already in the cluster (after a restart) that are provably ours
        and still configured."""
        allowed = set(self.allowed())
        for secret in self.writer.managed_copies():
            source_ns, _, source_name = secret.annotations.get(SOURCE_ANNOTATION, "").partition("/")
            if (
                source_name == secret.name
                and (secret.name, source_ns) in allowed
                and is_our_copy(secret, source_ns, self.key)
            ):
                self._remember((secret.namespace, secret.name, source_ns))

    def reconcile_once(self) -> dict[str, int]:
        """Bring every known copy in line with its source. Returns counts by outcome."""
        counts: dict[str, int] = {}
        allowed = set(self.allowed())
        for target in sorted(self.targets):
            if (target[1], target[2]) not in allowed:
                self._forget(target)  # no longer configured: leave the copy, stop syncing it
                continue
            outcome = self._reconcile(target)
            self.record(outcome)
            counts[outcome] = counts.get(outcome, 0) + 1
        return counts

    def _reconcile(self, target: Target) -> str:
        namespace, name, source_ns = target
        try:
            source, why = self._source(name, source_ns)
            if source is None:
                return why  # keep the copies: pods may still need them
            current = self.writer.read(namespace, name)
            if current is None:
                outcome = self.writer.create(copy_of(source, namespace, self.key))
                if outcome == "namespace-gone":
                    self._forget(target)
                    return outcome
                return "recreated" if outcome == "created" else outcome
            if not is_our_copy(current, source_ns, self.key):
                self._forget(target)  # someone else's secret of that name: never touch it
                log.warning("secret %s/%s is not a pullguard copy; left alone", namespace, name)
                return "not-managed"
            if current.type != source.type:
                # A Secret's type is immutable: replace the copy whole.
                if not self.writer.delete(current):
                    return "conflict"
                outcome = self.writer.create(copy_of(source, namespace, self.key))
                return "recreated" if outcome == "created" else outcome
            if dict(current.data) == dict(source.data):
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
