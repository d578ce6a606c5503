"""The cluster, through the official kubernetes client: caches, direct reads, watches, writes.

- :class:`Reflector` keeps a list+watch cache of one kind (relisting on ``410 Gone``, backing
  off on errors) and says when it has synced. It is never silently stale: each watch is ended
  by the server after ``watch_timeout`` and abandoned by the client when nothing at all
  arrives for ``read_timeout`` (a half-open connection, which TCP keepalive alone may never
  notice behind a proxy that still answers), errors resume from the last resourceVersion,
  the back-off is short and resets as soon as the API server answers, and readiness reports
  a cache that has not heard from the API server for too long.
- :class:`KubeClusterView` answers the core's :class:`~webhook.core.cluster.ClusterView` from
  those caches, and confirms every "does not exist" with a direct read before returning it:
  ``kubectl apply`` of a Secret and a Deployment in one file reaches the webhook before the
  watch event does.
- Secrets are cached only for the two pull-secret types (field selectors on ``type``), so
  pullguard never holds the cluster's other secrets. A direct read by name is still needed to
  tell "missing" from "exists with the wrong type".
- :class:`ConfigMapSource` watches ``pullguard-config`` and feeds the config store; a
  document it refuses gets a Warning Event ``PullguardConfigRefused`` on the ConfigMap, one
  per refused version whichever replica or worker sees it first (the Event is named after
  the ConfigMap's resourceVersion, so the others' creates fail as already there).
- :class:`KubeSecretWriter` performs the copies of default pull secrets, and reads the
  namespace and the object (or owner) a copy is for, to see that they are real.
- :class:`SecretAccess` asks the API server's authorizer (SubjectAccessReview) whether the
  requesting user may read Secrets in a namespace, before a message says a secret is there.

Must not: decide anything; every answer goes back to the core as plain data.
"""

from __future__ import annotations

import datetime
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from webhook.core.cluster import (
    MANAGED_BY_LABEL,
    ClusterUnavailable,
    NodeTaints,
    SecretInfo,
    ServiceAccountInfo,
    Taint,
    bounded_taints,
    group_node_taints,
)
from webhook.core.keyring import DOCKER_CFG, DOCKER_CONFIG_JSON, PULL_SECRET_KEYS
from webhook.core.review import UserInfo
from webhook.edge.configsource import ConfigStore, default_config_text
from webhook.edge.secretsync import SecretWriter

log = logging.getLogger("pullguard.kube")

#: The server ends each watch after this long; a clean end is proof the API server is there.
WATCH_SECONDS = 60
#: Nothing at all received on a watch for this long: the connection is dead, start another.
READ_SECONDS = 75
#: A cache that has heard nothing from the API server for this long makes pullguard unready.
MAX_SILENCE_SECONDS = 150
MIN_BACKOFF = 0.5
MAX_BACKOFF = 8.0

CONFIGMAP_NAME = "pullguard-config"
CONFIGMAP_KEY = "config.yaml"
CONFIG_EVENT_REASON = "PullguardConfigRefused"
CONFIG_EVENT_MESSAGE_MAX = 1024


def load_kube_config() -> None:
    """In-cluster service account first, then ``KUBECONFIG`` / ``~/.kube/config``."""
    from kubernetes import client
    from kubernetes import config as kube_config

    try:
        kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kube_config.ConfigException:
        kube_config.load_kube_config()  # type: ignore[no-untyped-call]
    # TCP keepalive with client-go's settings: a dead peer under a quiet watch is noticed.
    configuration = client.Configuration.get_default_copy()
    configuration.keep_alive = True
    client.Configuration.set_default(configuration)


def core_api() -> Any:
    """The core/v1 API of the configuration already loaded (:func:`load_kube_config`)."""
    from kubernetes import client

    return client.CoreV1Api()


def own_namespace_default() -> str:
    """The namespace pullguard runs in: ``POD_NAMESPACE``, else the service account's."""
    import os

    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
    except OSError:
        return ""


#: Objects per list request when a cache (re)lists.
LIST_PAGE = 500


class Reflector:
    """A list+watch cache of one resource, keyed by (namespace, name)."""

    def __init__(
        self,
        name: str,
        list_func: Callable[..., Any],
        convert: Callable[[Any], Any],
        *,
        list_args: tuple[Any, ...] = (),
        list_kwargs: Mapping[str, Any] | None = None,
        on_event: Callable[[str, Any], None] | None = None,
        watch_factory: Callable[[], Any] | None = None,
        watch_timeout: int = WATCH_SECONDS,
        read_timeout: float = READ_SECONDS,
        sleep: Callable[[float], bool] | None = None,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``list_func`` must be the client's own list method (``list_func(*list_args)``),
        never a lambda around it: the client's ``Watch`` reads the model type from the
        method's docstring, and without it every watch event arrives as a plain dict."""
        self.name = name
        self._list = list_func
        self._args = list_args
        self._convert = convert
        self._kwargs = dict(list_kwargs or {})
        self._watch_timeout = watch_timeout
        self._read_timeout = read_timeout
        self._on_event = on_event
        self._watch_factory = watch_factory
        self._items: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._jitter = jitter
        self._clock = clock
        self._heard: float | None = None
        self._thread: threading.Thread | None = None

    def heard(self) -> None:
        """The API server answered (a list, an event, a bookmark, a watch it ended)."""
        self._heard = self._clock()

    def silence(self) -> float | None:
        """Seconds since the API server last answered this cache; ``None`` before the first
        list (readiness says "not synced" then)."""
        return None if self._heard is None else self._clock() - self._heard

    def items(self) -> list[Any]:
        with self._lock:
            return list(self._items.values())

    def get(self, namespace: str, name: str) -> Any | None:
        with self._lock:
            return self._items.get((namespace, name))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"reflect-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @staticmethod
    def _key(obj: Any) -> tuple[str, str]:
        meta = obj.metadata
        return (meta.namespace or "", meta.name)

    def relist(self) -> str:
        """Replace the cache with a fresh list; return its resourceVersion.

        Listed in pages of :data:`LIST_PAGE`: only one page of the client's full objects is
        alive at a time, so a cluster's 10,000 Secrets never sit in memory as full objects
        at once (the peak would stay as the worker's resident size). An expired continue
        token (410) fails the relist, and the caller lists again from the start."""
        fresh: dict[tuple[str, str], Any] = {}
        token: str | None = None
        version = ""
        while True:
            page = self._list(
                *self._args, limit=LIST_PAGE, **({"_continue": token} if token else {}),
                **self._kwargs,
            )  # fmt: skip
            for item in page.items:
                fresh[self._key(item)] = self._convert(item)
                if self._on_event is not None:
                    # A relist (at start, or after 410 Gone) may hide changes no event announced.
                    self._on_event("ADDED", item)
            version = str(page.metadata.resource_version or version)
            token = getattr(page.metadata, "_continue", None)
            if not token:
                break
        with self._lock:
            self._items = fresh
        self.heard()
        self.synced.set()
        return version

    def apply_event(self, event_type: str, obj: Any) -> None:
        key = self._key(obj)
        with self._lock:
            if event_type == "DELETED":
                self._items.pop(key, None)
            elif event_type in ("ADDED", "MODIFIED"):
                self._items[key] = self._convert(obj)
        if self._on_event is not None:
            self._on_event(event_type, obj)

    def _run(self) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        delay = MIN_BACKOFF
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    version = self.relist()
                    delay = MIN_BACKOFF
                stream = (self._watch_factory or watch.Watch)()
                for event in stream.stream(
                    self._list,
                    *self._args,
                    resource_version=version,
                    timeout_seconds=self._watch_timeout,
                    allow_watch_bookmarks=True,
                    _request_timeout=(10, self._read_timeout),
                    **self._kwargs,
                ):
                    self.heard()
                    delay = MIN_BACKOFF
                    if self._stop.is_set():
                        stream.stop()
                        return
                    obj = event["object"]
                    if event["type"] == "BOOKMARK":
                        version = (
                            obj["metadata"]["resourceVersion"]
                            if isinstance(obj, dict)
                            else obj.metadata.resource_version
                        )
                        continue
                    if event["type"] == "ERROR":
                        version = ""  # typically 410 Gone: relist
                        break
                    self.apply_event(event["type"], obj)
                    version = obj.metadata.resource_version or version
                else:
                    self.heard()  # the server ended the watch after its timeout
                    delay = MIN_BACKOFF
                continue
            except ApiException as error:
                if error.status == 410:
                    version = ""
                    continue
                problem = f"API server answered {error.status}"
            except Exception as error:  # network errors of every kind: keep trying
                # Resume from the last resourceVersion: a relist of every secret is costly,
                # and if the version is too old the API server says 410 and we relist then.
                problem = type(error).__name__
            log.warning("%s watch failed (%s); retrying in %.1fs", self.name, problem, delay)
            if self._sleep(delay + self._jitter() * delay / 2):
                return
            delay = min(delay * 2, MAX_BACKOFF)


def _ours(values: Mapping[str, str] | None, keep: frozenset[str] = frozenset()) -> dict[str, str]:
    """The labels or annotations pullguard reads: its own (``pullguard.io/``) and ``keep``."""
    return {k: v for k, v in (values or {}).items() if k.startswith("pullguard.io/") or k in keep}


def secret_info(secret: Any) -> SecretInfo:
    """What pullguard keeps of a Secret: its type and data, and only its own labels and
    annotations (a kubectl-applied Secret's last-applied annotation is a second copy of its
    data: with 10,000 pull secrets that alone was megabytes per worker)."""
    meta = secret.metadata
    return SecretInfo(
        namespace=meta.namespace or "",
        name=meta.name,
        type=secret.type or "Opaque",
        data=dict(secret.data or {}),
        labels=_ours(meta.labels, frozenset({MANAGED_BY_LABEL})),
        annotations=_ours(meta.annotations),
        resource_version=str(meta.resource_version or ""),
    )


def service_account_info(account: Any) -> ServiceAccountInfo:
    meta = account.metadata
    names = tuple(ref.name for ref in (account.image_pull_secrets or []) if ref.name)
    return ServiceAccountInfo(
        namespace=meta.namespace or "", name=meta.name, image_pull_secrets=names
    )


def namespace_labels_of(namespace: Any) -> dict[str, str]:
    return dict(namespace.metadata.labels or {})


def node_platform_of(node: Any) -> tuple[str, str] | None:
    """A Node's (os, arch) from its well-known labels (the kubelet sets them); only these two
    strings are kept, never the rest of the Node."""
    labels = node.metadata.labels or {}
    os_name = labels.get("kubernetes.io/os") or labels.get("beta.kubernetes.io/os")
    arch = labels.get("kubernetes.io/arch") or labels.get("beta.kubernetes.io/arch")
    return (str(os_name), str(arch)) if os_name and arch else None


#: What the Node cache keeps of a Node: its (os, arch), and its barring taints (bounded:
#: ``None`` when over the caps of :func:`webhook.core.cluster.bounded_taints`).
NodeFacts = tuple[tuple[str, str] | None, tuple[Taint, ...] | None]


def node_facts_of(node: Any) -> NodeFacts:
    """A Node's platform and its NoSchedule/NoExecute taints (key, value, effect only; a
    cordoned node's ``spec.unschedulable`` as its taint), never the rest of the Node."""
    spec = node.spec
    taints = [(t.key, t.value, t.effect) for t in (spec.taints if spec else None) or []]
    cordoned = bool(spec and spec.unschedulable)
    return node_platform_of(node), bounded_taints(taints, unschedulable=cordoned)


def read_or_none(reader: Callable[..., Any], *args: str, timeout: float) -> Any | None:
    """A direct read: the object, ``None`` when the API server says 404, else
    :class:`ClusterUnavailable` (any other status, or no answer)."""
    from kubernetes.client.exceptions import ApiException

    try:
        return reader(*args, _request_timeout=timeout)
    except ApiException as error:
        if error.status == 404:
            return None
        raise ClusterUnavailable(f"API server answered {error.status}") from None
    except Exception as error:
        raise ClusterUnavailable(f"API server unreachable: {type(error).__name__}") from None


class SecretAccess:
    """ "May this user read Secrets in that namespace?", asked of the API server's authorizer
    with a SubjectAccessReview for the request's ``userInfo`` (pullguard needs ``create`` on
    ``subjectaccessreviews``), remembered :data:`ACCESS_TTL_SECONDS` for at most
    :data:`ACCESS_CACHE_SIZE` (user, namespace) pairs. No answer counts as "no": a message
    then says less, never more."""

    def __init__(self, api_client: Any, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.api_client = api_client
        self.clock = clock
        self._answers: dict[tuple[Any, ...], tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def may_read_secrets(self, user: UserInfo, namespace: str) -> bool:
        if not user.username or self.api_client is None:
            return False
        key = (user.username, user.uid, user.groups, tuple(sorted(user.extra.items())), namespace)
        now = self.clock()
        with self._lock:
            found = self._answers.get(key)
            if found is not None and now - found[0] < ACCESS_TTL_SECONDS:
                return found[1]
        allowed = self._ask(user, namespace)
        with self._lock:
            if len(self._answers) >= ACCESS_CACHE_SIZE:
                self._answers.clear()  # a bound, not an LRU: refilled at one review each
            self._answers[key] = (now, allowed)
        return allowed

    def _ask(self, user: UserInfo, namespace: str) -> bool:
        from kubernetes import client

        review = client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=user.username,
                uid=user.uid or None,
                groups=list(user.groups) or None,
                extra={k: list(v) for k, v in user.extra.items()} or None,
                resource_attributes=client.V1ResourceAttributes(
                    namespace=namespace, verb="get", resource="secrets"
                ),
            )
        )
        try:
            answer = client.AuthorizationV1Api(self.api_client).create_subject_access_review(
                review, _request_timeout=2
            )
        except Exception as error:
            log.warning("SubjectAccessReview failed: %s", type(error).__name__)
            return False
        return bool(answer.status and answer.status.allowed)


ACCESS_TTL_SECONDS = 60.0
ACCESS_CACHE_SIZE = 4096


class KubeClusterView:
    """The core's ClusterView over list+watch caches, with direct reads to confirm absence."""

    def __init__(
        self,
        core_api: Any,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_silence: float = MAX_SILENCE_SECONDS,
    ) -> None:
        self.api = core_api
        self.max_silence = max_silence
        self.secret_caches = [
            Reflector(
                f"secrets-{kind.rsplit('/', 1)[-1]}",
                core_api.list_secret_for_all_namespaces,
                secret_info,
                list_kwargs={"field_selector": f"type={kind}"},
                clock=clock,
            )
            for kind in (DOCKER_CONFIG_JSON, DOCKER_CFG)
        ]
        self.accounts = Reflector(
            "serviceaccounts",
            core_api.list_service_account_for_all_namespaces,
            service_account_info,
            clock=clock,
        )
        self.namespaces = Reflector(
            "namespaces", core_api.list_namespace, namespace_labels_of, clock=clock
        )
        self.nodes = Reflector("nodes", core_api.list_node, node_facts_of, clock=clock)
        # (A stand-in API without a client, in tests, can authorize nothing.)
        self.access = SecretAccess(getattr(core_api, "api_client", None), clock=clock)

    def reflectors(self) -> list[Reflector]:
        return [*self.secret_caches, self.accounts, self.namespaces, self.nodes]

    def start(self) -> None:
        for reflector in self.reflectors():
            reflector.start()

    def not_synced(self) -> list[str]:
        """Why the caches cannot be trusted now: not synced yet, or silent for too long."""
        problems = []
        for reflector in self.reflectors():
            silence = reflector.silence()
            if not reflector.synced.is_set() or silence is None:
                problems.append(f"{reflector.name} cache not synced")
            elif silence > self.max_silence:
                problems.append(
                    f"{reflector.name} cache has not heard from the API server for {silence:.0f}s"
                )
        return problems

    def _read(self, reader: Callable[..., Any], *args: str) -> Any | None:
        return read_or_none(reader, *args, timeout=2)

    def get_secret(self, namespace: str, name: str) -> SecretInfo | None:
        for cache in self.secret_caches:
            found = cache.get(namespace, name)
            if found is not None:
                return found  # type: ignore[no-any-return]
        secret = self._read(self.api.read_namespaced_secret, name, namespace)
        return secret_info(secret) if secret is not None else None

    def namespaces_with_pull_secret(self, name: str) -> list[str]:
        found = {
            s.namespace for cache in self.secret_caches for s in cache.items() if s.name == name
        }
        return sorted(found)

    def may_read_secrets(self, user: UserInfo, namespace: str) -> bool:
        return self.access.may_read_secrets(user, namespace)

    def get_service_account(self, namespace: str, name: str) -> ServiceAccountInfo | None:
        cached = self.accounts.get(namespace, name)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        account = self._read(self.api.read_namespaced_service_account, name, namespace)
        return service_account_info(account) if account is not None else None

    def namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        cached = self.namespaces.get("", namespace)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        found = self._read(self.api.read_namespace, namespace)
        return namespace_labels_of(found) if found is not None else None

    def _node_facts(self) -> list[NodeFacts]:
        if not self.nodes.synced.is_set():
            raise ClusterUnavailable("the Node cache has not synced yet")
        return self.nodes.items()

    def node_platforms(self) -> frozenset[tuple[str, str]]:
        return frozenset(p for p, _ in self._node_facts() if p is not None)

    def node_platform(self, name: str) -> tuple[str, str] | None:
        if not self.nodes.synced.is_set():
            raise ClusterUnavailable("the Node cache has not synced yet")
        facts: NodeFacts | None = self.nodes.get("", name)
        return facts[0] if facts is not None else None

    def node_taints(self) -> NodeTaints:
        return group_node_taints(self._node_facts())


class ConfigMapSource:
    """Watches the ConfigMap ``pullguard-config`` in the webhook's namespace."""

    def __init__(
        self, core_api: Any, namespace: str, store: ConfigStore, name: str = CONFIGMAP_NAME
    ) -> None:
        self.api = core_api
        self.store = store
        self.namespace = namespace
        self.name = name
        self.reflector = Reflector(
            "configmap",
            core_api.list_namespaced_config_map,
            lambda cm: cm,
            list_args=(namespace,),
            list_kwargs={"field_selector": f"metadata.name={name}"},
            on_event=self._on_event,
        )

    def _apply(self, configmap: Any) -> None:
        text = (configmap.data or {}).get(CONFIGMAP_KEY)
        source = f"ConfigMap {self.namespace}/{self.name}"
        if text is None:
            log.error("%s has no key %r; configuration unchanged", source, CONFIGMAP_KEY)
            return
        if not self.store.apply_text(text, source):
            threading.Thread(
                target=self._refused_event,
                args=(configmap, list(self.store.last_problems), self.store.loaded),
                name="config-event",
                daemon=True,
            ).start()

    def _refused_event(self, configmap: Any, problems: list[str], kept: bool) -> None:
        """A Warning Event on the ConfigMap saying what was refused and what is in force."""

        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        meta = configmap.metadata
        version = str(meta.resource_version or "0")
        in_force = (
            "the last good configuration stays in force"
            if kept
            else "no good configuration yet: reviews are judged with the embedded default "
            "(no mirrors, no default pull secrets) and pullguard is not ready"
        )
        event = warning_event(
            client.V1ObjectMeta(
                name=f"{self.name}.pullguard-refused.{version}", namespace=self.namespace
            ),
            client.V1ObjectReference(
                api_version="v1",
                kind="ConfigMap",
                name=self.name,
                namespace=self.namespace,
                uid=meta.uid,
                resource_version=version,
            ),
            reason=CONFIG_EVENT_REASON,
            message=f"pullguard refused config.yaml; {in_force}: " + "; ".join(problems),
            limit=CONFIG_EVENT_MESSAGE_MAX,
        )
        try:
            self.api.create_namespaced_event(self.namespace, event, _request_timeout=5)
        except ApiException as error:
            if error.status != 409:  # 409: another replica or worker told it first
                log.warning("Event on refused %s failed: HTTP %s", self.name, error.status)
        except Exception as error:
            log.warning("Event on refused %s failed: %s", self.name, type(error).__name__)

    def _on_event(self, event_type: str, configmap: Any) -> None:
        if event_type in ("ADDED", "MODIFIED"):
            self._apply(configmap)
        elif event_type == "DELETED":
            log.warning(
                "ConfigMap %s/%s deleted; the last good configuration stays in force",
                self.namespace,
                self.name,
            )

    def start(self) -> None:
        self.reflector.start()
        threading.Thread(target=self._initial, name="configmap-initial", daemon=True).start()

    def _initial(self) -> None:
        self.reflector.synced.wait()
        if not self.reflector.items() and not self.store.loaded:
            log.warning(
                "ConfigMap %s/%s not found; running on the embedded default",
                self.namespace,
                self.name,
            )
            self.store.apply_text(default_config_text(), "embedded default")


#: Kinds whose objects a default pull secret is copied for (Pods and their controllers'),
#: with the client call that reads one: what :meth:`KubeSecretWriter.read_object` may read.
_WORKLOAD_READERS = {
    ("v1", "Pod"): ("CoreV1Api", "read_namespaced_pod"),
    ("v1", "ReplicationController"): ("CoreV1Api", "read_namespaced_replication_controller"),
    ("apps/v1", "ReplicaSet"): ("AppsV1Api", "read_namespaced_replica_set"),
    ("apps/v1", "Deployment"): ("AppsV1Api", "read_namespaced_deployment"),
    ("apps/v1", "StatefulSet"): ("AppsV1Api", "read_namespaced_stateful_set"),
    ("apps/v1", "DaemonSet"): ("AppsV1Api", "read_namespaced_daemon_set"),
    ("batch/v1", "Job"): ("BatchV1Api", "read_namespaced_job"),
    ("batch/v1", "CronJob"): ("BatchV1Api", "read_namespaced_cron_job"),
}


class KubeSecretWriter(SecretWriter):
    """Secret reads and writes for :mod:`webhook.edge.secretsync`, via the client."""

    def __init__(self, core_api: Any) -> None:
        self.api = core_api

    def read(self, namespace: str, name: str) -> SecretInfo | None:
        from kubernetes.client.exceptions import ApiException

        try:
            return secret_info(self.api.read_namespaced_secret(name, namespace, _request_timeout=3))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def create(self, secret: SecretInfo) -> str:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=secret.name,
                namespace=secret.namespace,
                labels=dict(secret.labels),
                annotations=dict(secret.annotations),
            ),
            type=secret.type,
            data=dict(secret.data),
        )
        try:
            self.api.create_namespaced_secret(secret.namespace, body, _request_timeout=3)
        except ApiException as error:
            if error.status == 409:
                return "exists"  # another replica was first, or someone else's secret
            if error.status == 404:
                return "namespace-gone"
            raise
        return "created"

    def delete(self, secret: SecretInfo) -> bool:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            self.api.delete_namespaced_secret(
                secret.name,
                secret.namespace,
                body=client.V1DeleteOptions(
                    preconditions=client.V1Preconditions(resource_version=secret.resource_version)
                ),
                _request_timeout=3,
            )
        except ApiException as error:
            if error.status in (404, 409):
                return False
            raise
        return True

    def replace_data(
        self, secret: SecretInfo, data: Mapping[str, str], resource_version: str
    ) -> str:
        from kubernetes.client.exceptions import ApiException

        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version},
            {"op": "replace", "path": "/data", "value": dict(data)},
        ]
        try:
            self.api.patch_namespaced_secret(
                secret.name, secret.namespace, patch, _request_timeout=3
            )
        except ApiException as error:
            if error.status in (409, 422):
                return "conflict"
            raise
        return "updated"

    def namespace_active(self, namespace: str) -> bool:
        found = read_or_none(self.api.read_namespace, namespace, timeout=3)
        return found is not None and (found.status is None or found.status.phase != "Terminating")

    def read_object(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> Mapping[str, Any] | None:
        from kubernetes import client

        reader = _WORKLOAD_READERS.get((api_version, kind))
        if reader is None or not name:
            return None  # a kind whose objects never carry a pod pullguard copies for
        api_class, method = reader
        api = getattr(client, api_class)(self.api.api_client)
        found = read_or_none(getattr(api, method), name, namespace, timeout=3)
        if found is None:
            return None
        plain: Mapping[str, Any] = self.api.api_client.sanitize_for_serialization(found)
        return plain

    def managed_copies(self) -> Iterable[SecretInfo]:
        from webhook.core.cluster import MANAGED_BY_LABEL, MANAGED_BY_VALUE

        result = self.api.list_secret_for_all_namespaces(
            label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}", _request_timeout=10
        )
        return [secret_info(s) for s in result.items]


def sync_key(core_api: Any, namespace: str) -> bytes:
    """The key that proves a secret copy is pullguard's (see ``secretsync``): read from the
    Secret ``pullguard-sync-key`` in pullguard's namespace, made once by the first replica."""
    import base64
    import secrets

    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from webhook.edge.secretsync import KEY_SECRET

    for _ in range(3):
        try:
            found = core_api.read_namespaced_secret(KEY_SECRET, namespace, _request_timeout=5)
            return base64.b64decode((found.data or {})["key"])
        except ApiException as error:
            if error.status != 404:
                raise
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(
                name=KEY_SECRET,
                namespace=namespace,
                labels={"app.kubernetes.io/name": "pullguard"},
            ),
            type="Opaque",
            data={"key": base64.b64encode(secrets.token_bytes(32)).decode()},
        )
        try:
            core_api.create_namespaced_secret(namespace, body, _request_timeout=5)
        except ApiException as error:
            if error.status != 409:  # another replica made it first: read theirs
                raise
    raise RuntimeError(f"could not read or create Secret {namespace}/{KEY_SECRET}")


class DirectClusterView:
    """The core's ClusterView by direct reads, remembered for one run: for the CLI
    (``diagnose``, ``audit``), which must not hold cluster-wide watches. A read the
    caller's RBAC forbids becomes "could not run" for the check that needed it."""

    def __init__(self, core_api: Any) -> None:
        self.api = core_api
        self.memo: dict[tuple[str, ...], Any] = {}

    def _read(self, key: tuple[str, ...], reader: Callable[..., Any], *args: str) -> Any | None:
        if key not in self.memo:
            self.memo[key] = read_or_none(reader, *args, timeout=10)
        return self.memo[key]

    def get_secret(self, namespace: str, name: str) -> SecretInfo | None:
        found = self._read(
            ("secret", namespace, name), self.api.read_namespaced_secret, name, namespace
        )
        return secret_info(found) if found is not None else None

    def pull_secret_names(self, namespace: str) -> list[str]:
        """The names of ``namespace``'s Secrets of the two pull-secret types, listed once
        per run (by type: a namespace's other Secrets, Helm's releases say, never cross the
        wire). Each listed Secret is remembered as its read, so :meth:`get_secret` of one
        asks nothing more (one read already made stays as it was). Raises
        :class:`ClusterUnavailable` when they cannot be listed."""
        key = ("pull-secrets", namespace)
        if key not in self.memo:
            from kubernetes.client.exceptions import ApiException

            try:
                listed = [
                    secret
                    for kind in PULL_SECRET_KEYS
                    for secret in self.api.list_namespaced_secret(
                        namespace, field_selector=f"type={kind}", _request_timeout=10
                    ).items
                ]
            except ApiException as error:
                raise ClusterUnavailable(f"cannot list secrets ({error.status})") from None
            except Exception as error:
                raise ClusterUnavailable(
                    f"API server unreachable: {type(error).__name__}"
                ) from None
            for secret in listed:
                self.memo.setdefault(("secret", namespace, secret.metadata.name), secret)
            self.memo[key] = [s.metadata.name for s in listed]
        names: list[str] = self.memo[key]
        return names

    def namespaces_with_pull_secret(self, name: str) -> list[str]:
        from kubernetes.client.exceptions import ApiException

        try:
            listed = self.api.list_secret_for_all_namespaces(
                field_selector=f"metadata.name={name}", _request_timeout=10
            )
        except (ApiException, OSError):
            return []  # no cluster-wide read: the message just cannot say where it is
        return sorted(s.metadata.namespace for s in listed.items if s.type in PULL_SECRET_KEYS)

    def may_read_secrets(self, user: UserInfo, namespace: str) -> bool:
        # The CLI lists secrets with the caller's own credentials: what it found, they read.
        return True

    def get_service_account(self, namespace: str, name: str) -> ServiceAccountInfo | None:
        found = self._read(
            ("sa", namespace, name), self.api.read_namespaced_service_account, name, namespace
        )
        return service_account_info(found) if found is not None else None

    def namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        found = self._read(("ns", namespace), self.api.read_namespace, namespace)
        return namespace_labels_of(found) if found is not None else None

    def _node_facts(self) -> list[NodeFacts]:
        key = ("nodes",)
        if key not in self.memo:
            from kubernetes.client.exceptions import ApiException

            try:
                nodes = self.api.list_node(_request_timeout=10).items
            except ApiException as error:
                raise ClusterUnavailable(f"cannot list nodes ({error.status})") from None
            self.memo[key] = [node_facts_of(n) for n in nodes]
        facts: list[NodeFacts] = self.memo[key]
        return facts

    def node_platforms(self) -> frozenset[tuple[str, str]]:
        return frozenset(p for p, _ in self._node_facts() if p is not None)

    def node_taints(self) -> NodeTaints:
        return group_node_taints(self._node_facts())

    def node_platform(self, name: str) -> tuple[str, str] | None:
        """One node's (os, arch), or ``None`` when unknown."""
        found = self._read(("node", name), self.api.read_node, name)
        return node_platform_of(found) if found is not None else None


def warning_event(
    metadata: Any, involved_object: Any, *, reason: str, message: str, limit: int
) -> Any:
    """A Warning Event from pullguard about ``involved_object``, its message cut to
    ``limit`` characters (the API server refuses longer ones)."""
    from kubernetes import client

    if len(message) > limit:
        message = message[: limit - 3] + "..."
    now = datetime.datetime.now(datetime.UTC)
    return client.CoreV1Event(
        metadata=metadata,
        involved_object=involved_object,
        reason=reason,
        type="Warning",
        message=message,
        first_timestamp=now,
        last_timestamp=now,
        count=1,
        source=client.V1EventSource(component="pullguard"),
        reporting_component="pullguard",
    )
