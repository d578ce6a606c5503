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
- Copies follow real objects, never a review's word alone: anything that reaches the
  webhook port can POST a review naming any namespace (a forged ``/mutate`` once made
  pullguard copy the default secret wherever it said). A copy is made only into a namespace
  the API server says exists and is not terminating, and only when a real object needs it:
  the review came from the API server itself (a client certificate verified against
  ``serve --client-ca``: the API server is creating the object now), or the object's
  controlling owner exists with the uid the review names (a controller's Pod or
  ReplicaSet), or, on UPDATE, the object exists with that uid. Otherwise a named object's
  copy waits until the API server has the object and it lists the secret
  (looked for at :data:`DEFER_CHECKS`, by one scheduler thread; at most
  :data:`MAX_DEFERRED` wait at once, :data:`MAX_DEFERRED_PER_NAMESPACE` per namespace, one
  per (namespace, object, secret), so forged reviews cannot multiply the API server's reads
  or take every namespace's first copy by flooding one), and an unnamed one
  (``generateName``, no owner) is not made: ``unproven``.
- Every outcome is logged (names only) and counted; a copy that can no longer be synced is
  never left silently stale.

Several replicas never fight: a copy's content is a pure function of its source, creation
treats "already exists" as success, and updates are guarded by the copy's resourceVersion.

Must not: log secret data, or copy anything not named by the configuration.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from webhook.core.cluster import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    PROOF_ANNOTATION,
    SOURCE_ANNOTATION,
    SecretInfo,
)
from webhook.core.keyring import PULL_SECRET_KEYS
from webhook.core.mutate import SecretCopy
from webhook.core.podspec import controller_owner, pod_spec
from webhook.core.review import AdmissionRequest

log = logging.getLogger("pullguard.secrets")
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
    "deferred",
    "unproven",
    "failed",
)
#: When a copy for an object the API server does not have yet looks for it: seconds after
#: it was deferred. A bare Pod is created right after its admission, so the first look
#: usually finds it; four reads per waiting copy in all (it once polled 80 times, every
#: 0.25 s, on a thread of its own).
DEFER_CHECKS = (0.5, 2.0, 6.0, 15.0)
#: Copies waiting for their object at once, per process, and per namespace. Each costs at
#: most ``len(DEFER_CHECKS)`` direct reads in ``DEFER_CHECKS[-1]`` seconds: a flood of
#: forged reviews holding every slot costs the API server 128 * 4 / 15 = 34 reads/s (16
#: threads polling every 0.25 s once cost 64 reads/s for 16 slots). Past either bound:
#: ``unproven`` (counted). A (namespace, object, secret) waits once: asked again, it takes
#: no second slot.
MAX_DEFERRED = 128
MAX_DEFERRED_PER_NAMESPACE = 8


@dataclass(frozen=True, slots=True)
class Owner:
    api_version: str
    kind: str
    name: str
    uid: str


@dataclass(frozen=True, slots=True)
class CopyCause:
    """Why a copy is asked for: what the review says, and whether the API server sent it."""

    authenticated: bool = True
    """The review came over a connection with a client certificate ``--client-ca`` signed.
    (The default is for callers that are not the webhook port: tests, tools.)"""
    operation: str = "CREATE"
    api_version: str = "v1"
    kind: str = "Pod"
    name: str = ""
    uid: str = ""
    owner: Owner | None = None


def copy_cause(review: AdmissionRequest, authenticated: bool) -> CopyCause:
    """The cause of the copies one admission review asks for."""
    obj = review.object if isinstance(review.object, Mapping) else {}
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    owner = None
    ref = controller_owner(obj)
    if ref is not None:
        fields = [ref.get(k) for k in ("apiVersion", "kind", "name", "uid")]
        if all(isinstance(f, str) and f for f in fields):
            owner = Owner(*(str(f) for f in fields))
    uid = metadata.get("uid")
    api_version = obj.get("apiVersion")
    return CopyCause(
        authenticated=authenticated,
        operation=review.operation,
        api_version=api_version if isinstance(api_version, str) else "v1",
        kind=review.kind,
        name=review.object_name,
        uid=uid if isinstance(uid, str) else "",
        owner=owner,
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
    def namespace_active(self, namespace: str) -> bool:
        """The API server has the namespace, and it is not terminating (a direct read)."""
        ...

    def read_object(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> Mapping[str, Any] | None:
        """The object as the API server has it (plain JSON), by a direct read; ``None``
        when it has none (or pullguard cannot read that kind)."""
        ...


def _uid(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    uid = metadata.get("uid") if isinstance(metadata, Mapping) else None
    return uid if isinstance(uid, str) else ""


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
        # Copies waiting for their object, by (namespace, kind, object name, secret); when
        # each is looked for next (a heap of (due, sequence, key)); one thread does it.
        self._waiting: dict[tuple[str, str, str, str], _Waiting] = {}
        self._due: list[tuple[float, int, tuple[str, str, str, str]]] = []
        self._sequence = 0
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._scheduler: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def waiting(self) -> int:
        """Copies waiting for their object now."""
        with self._lock:
            return len(self._waiting)

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

    def copy(self, request: SecretCopy, cause: CopyCause = CopyCause()) -> str:
        """Make the copy (the mutating webhook asked for it) once its cause is proven real:
        now, later (``deferred``), or never (``unproven``; see the module). Returns the
        outcome, which the caller counts (``record`` counts the background sync and the
        deferred copies)."""
        try:
            if not self.writer.namespace_active(request.namespace):
                log.warning(
                    "secret %s not copied: no namespace %s", request.name, request.namespace
                )
                return "namespace-gone"
            proven = self._proven(request.namespace, cause)
        except Exception as error:
            log.error("checking the cause of a copy failed: %s", type(error).__name__)
            return "failed"
        if proven:
            return self._copy_now(request)
        if cause.operation == "CREATE" and cause.name and cause.owner is None:
            with self._lock:
                synced = (
                    request.namespace,
                    request.name,
                    request.source_namespace,
                ) in self._targets
            if synced:
                # This worker made or adopted the copy, and the sync loop keeps it (recreates
                # it within a pass if deleted): nothing to wait for, in a flood or not.
                return "exists"
            return self._defer(request, cause)
        log.warning(
            "secret %s not copied into %s: nothing proves the review that asked came from the "
            "API server (serve --client-ca) or that an object there needs it",
            request.name,
            request.namespace,
        )
        return "unproven"

    def _proven(self, namespace: str, cause: CopyCause) -> bool:
        if cause.authenticated:
            return True
        if cause.owner is not None:
            owner = cause.owner
            found = self.writer.read_object(owner.api_version, owner.kind, namespace, owner.name)
            return found is not None and _uid(found) == owner.uid
        if cause.operation == "UPDATE" and cause.name and cause.uid:
            found = self.writer.read_object(cause.api_version, cause.kind, namespace, cause.name)
            return found is not None and _uid(found) == cause.uid
        return False

    def _defer(self, request: SecretCopy, cause: CopyCause) -> str:
        """Wait for the object the review named (a bare Pod is created right after its
        admission): ``deferred``, or ``unproven`` when there is no room for it."""
        key = (request.namespace, cause.kind, cause.name, request.name)
        with self._lock:
            if key in self._waiting:
                # The same object's copy waits already (a review sent again, or reinvoked):
                # that one makes it, and this one takes no slot.
                return "deferred"
            in_namespace = sum(1 for k in self._waiting if k[0] == request.namespace)
            if len(self._waiting) >= MAX_DEFERRED:
                why = f"{len(self._waiting)} copies already wait for their objects"
            elif in_namespace >= MAX_DEFERRED_PER_NAMESPACE:
                why = f"{in_namespace} copies already wait for their objects in that namespace"
            else:
                why = ""
                now = time.monotonic()
                self._waiting[key] = _Waiting(request, cause, now)
                self._schedule(key, now + DEFER_CHECKS[0])
                if self._scheduler is None or not self._scheduler.is_alive():
                    self._scheduler = threading.Thread(
                        target=self._look_for_objects, name="secret-copy-deferred", daemon=True
                    )
                    self._scheduler.start()
                self._wake.notify()
        if why:
            log.warning("secret %s not copied into %s: %s", request.name, request.namespace, why)
            return "unproven"
        return "deferred"

    def _schedule(self, key: tuple[str, str, str, str], due: float) -> None:
        """(Holding the lock.)"""
        self._sequence += 1
        heapq.heappush(self._due, (due, self._sequence, key))

    def _look_for_objects(self) -> None:
        """The one thread that looks for the objects waiting copies are for, each at
        :data:`DEFER_CHECKS` after it was deferred; it ends when none waits."""
        while not self._stop.is_set():
            with self._lock:
                if not self._due:
                    self._scheduler = None
                    return
                due, _, key = self._due[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._wake.wait(min(wait, 1.0))
                    continue
                heapq.heappop(self._due)
                waiting = self._waiting.get(key)
            if waiting is None:
                continue
            done = self._look_once(waiting)
            with self._lock:
                waiting.looks += 1
                if done or waiting.looks >= len(DEFER_CHECKS):
                    del self._waiting[key]
                else:
                    self._schedule(key, waiting.since + DEFER_CHECKS[waiting.looks])
            if not done and waiting.looks >= len(DEFER_CHECKS):
                request, cause = waiting.request, waiting.cause
                log.warning(
                    "secret %s not copied into %s: no %s %s appeared there within %.0fs",
                    request.name,
                    request.namespace,
                    cause.kind,
                    cause.name,
                    DEFER_CHECKS[-1],
                )
                self.record("unproven")

    def _look_once(self, waiting: _Waiting) -> bool:
        """Look for the object once; copy when it is there and lists the secret. True when
        it was found (copied or not)."""
        request, cause = waiting.request, waiting.cause
        try:
            found = self.writer.read_object(
                cause.api_version, cause.kind, request.namespace, cause.name
            )
        except Exception as error:
            log.debug("waiting for %s: %s", cause.name, type(error).__name__)
            return False
        if found is None:
            return False
        # It must need the copy: a forged review naming some existing pod gets none.
        view = pod_spec(cause.kind, found)
        if view is not None and request.name in view.pull_secret_names:
            self.record(self._copy_now(request).partition(": ")[0])
        else:
            log.warning(
                "secret %s not copied into %s: %s %s does not use it",
                request.name,
                request.namespace,
                cause.kind,
                cause.name,
            )
            self.record("unproven")
        return True

    def _copy_now(self, request: SecretCopy) -> str:
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
        """Reconcile until stopped (a daemon thread of ``pullguard serve``).

        Every pass first adopts the copies the cluster holds, not only those this syncer
        made: only the worker holding the cluster-wide lock runs this loop, while any
        worker's admission makes copies, and a copy adopted before the configuration naming
        its source was loaded would otherwise never be synced (a rotated source would leave
        it stale until a restart)."""
        while True:
            try:
                self.learn_existing()
            except Exception as error:
                log.warning("could not list managed secret copies: %s", type(error).__name__)
            if self._stop.wait(interval):
                return
            self.reconcile_once()

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._wake.notify_all()


@dataclass(slots=True)
class _Waiting:
    """A copy waiting for the object its review named."""

    request: SecretCopy
    cause: CopyCause
    since: float
    looks: int = 0
