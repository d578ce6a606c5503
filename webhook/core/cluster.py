"""What the engine needs to know about the cluster, as a small protocol, plus two plain
implementations: :class:`InMemoryCluster` (tests, ``pullguard check`` with given state) and
:class:`NoCluster` (``--dev`` and offline runs: every read says it could not be made).

The real implementation, backed by list+watch caches of the API server, lives in
``webhook.edge.kube``. It guarantees what this protocol promises: a ``None`` from
:meth:`ClusterView.get_secret` has been confirmed by a direct read, never taken from a stale
cache alone, so "does not exist" is safe to deny on.

Pure: no client library, no network.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from webhook.core.review import UserInfo


#: What pullguard writes on each copy of a default pull secret it makes
#: (:mod:`webhook.edge.secretsync`): its label, the source it copies, and the proof (an HMAC
#: only pullguard can make) that it made the copy.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "pullguard"
SOURCE_ANNOTATION = "pullguard.io/source"
PROOF_ANNOTATION = "pullguard.io/copy-proof"


class ClusterUnavailable(Exception):
    """The cluster could not be asked; checks that needed the answer report "could not run"."""


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A Secret's type and data (base64 values, exactly as the API returns them)."""

    namespace: str
    name: str
    type: str
    data: Mapping[str, str] = field(default_factory=dict, repr=False)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    resource_version: str = ""


def marked_as_copy(secret: SecretInfo, source_namespace: str) -> bool:
    """Does ``secret`` carry what pullguard writes on its copy of
    ``source_namespace/<its name>``: the managed-by label, that source annotated, and a proof?
    A secret that merely shares a default secret's name is the tenant's own. The proof itself
    is checked only where its key is (:func:`webhook.edge.secretsync.is_our_copy`): a tenant
    can forge these marks, and then is told to fix the source it names, which a sync of a
    real copy would have copied anyway."""
    return (
        secret.labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE
        and secret.annotations.get(SOURCE_ANNOTATION) == f"{source_namespace}/{secret.name}"
        and bool(secret.annotations.get(PROOF_ANNOTATION))
    )


@dataclass(frozen=True, slots=True)
class ServiceAccountInfo:
    namespace: str
    name: str
    image_pull_secrets: tuple[str, ...] = ()


#: The taint effects that keep a pod off a node (``PreferNoSchedule`` only prefers).
BARRING_EFFECTS = ("NoSchedule", "NoExecute")
#: Taints the node lifecycle controller and cloud controllers add for a node's condition
#: (``node.kubernetes.io/not-ready``, ``.../unreachable``, ``.../disk-pressure``,
#: ``.../unschedulable`` for a cordoned node, an uninitialized node): they come and go with
#: the node's health, and a fix that tolerated them would send pods to broken nodes.
CONDITION_TAINT_PREFIXES = ("node.kubernetes.io/", "node.cloudprovider.kubernetes.io/")
#: The condition taints of a node that is only not Ready (no kubelet answers): in a cluster
#: where no node is Ready (a control plane without kubelets) such a node may still be named.
NOT_READY_TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")
#: The taint a cordoned node (``spec.unschedulable``) carries, or is judged as carrying: the
#: scheduler's NodeUnschedulable plugin treats the flag as this taint.
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
#: Taints the cluster autoscaler and Karpenter put on a node they are about to remove (any
#: effect): transient, never tolerated, and such a node takes no new pods.
AUTOSCALER_TAINTS = (
    "ToBeDeletedByClusterAutoscaler",
    "DeletionCandidateOfClusterAutoscaler",
    "karpenter.sh/disrupted",
    "karpenter.sh/disruption",
)
#: At most this many taints are kept per node; a node with more has unknown taints (a fix
#: then says how to list them rather than print tolerations that might not be enough).
MAX_TAINTS_PER_NODE = 16
#: A taint key is a qualified name (a 253-character DNS prefix, ``/``, 63 characters); its
#: value a label value (63). Anything longer is no taint the API server stores.
MAX_TAINT_KEY = 317
MAX_TAINT_VALUE = 63


@dataclass(frozen=True, slots=True, order=True)
class Taint:
    """A node taint that keeps pods without a matching toleration off the node."""

    key: str
    value: str
    effect: str  # NoSchedule | NoExecute (PreferNoSchedule: an autoscaler's only)


#: Per node platform (os, arch), the distinct taint sets of its nodes: ``()`` for a node
#: with no barring taint, ``None`` for one whose taints were not kept (over the caps).
NodeTaints = Mapping[tuple[str, str], frozenset[tuple[Taint, ...] | None]]


def transient(taint: Taint) -> bool:
    """A taint of the node's health or of its coming removal (:data:`CONDITION_TAINT_PREFIXES`,
    :data:`AUTOSCALER_TAINTS`): never tolerated by a fix; a node carrying one is no target
    while a healthy node would do."""
    return taint.key.startswith(CONDITION_TAINT_PREFIXES) or taint.key in AUTOSCALER_TAINTS


def node_state(taints: tuple[Taint, ...]) -> str:
    """``ready`` (no :func:`transient` taint), ``not-ready`` (only those of
    :data:`NOT_READY_TAINTS`), or ``unusable`` (cordoned, under pressure, being removed)."""
    held = {t.key for t in taints if transient(t)}
    if not held:
        return "ready"
    return "not-ready" if held <= set(NOT_READY_TAINTS) else "unusable"


def bounded_taints(taints: object, *, unschedulable: bool = False) -> tuple[Taint, ...] | None:
    """A node's barring taints from ``(key, value, effect)`` triples, sorted, with the
    autoscaler's (any effect), and :data:`UNSCHEDULABLE_TAINT` for a cordoned node
    (``unschedulable``); ``None`` when there are more than :data:`MAX_TAINTS_PER_NODE` or one
    is longer than a real taint."""
    kept: set[Taint] = set()
    if unschedulable:
        kept.add(Taint(UNSCHEDULABLE_TAINT, "", "NoSchedule"))
    if not isinstance(taints, (list, tuple)):
        return tuple(sorted(kept))
    for entry in taints:
        if not isinstance(entry, (list, tuple)) or len(entry) != 3:
            return None
        key, value, effect = (str(part or "") for part in entry)
        if effect not in BARRING_EFFECTS and key not in AUTOSCALER_TAINTS:
            continue
        if not key or len(key) > MAX_TAINT_KEY or len(value) > MAX_TAINT_VALUE:
            return None
        kept.add(Taint(key, value, effect))
        if len(kept) > MAX_TAINTS_PER_NODE:
            return None
    return tuple(sorted(kept))


class ClusterView(Protocol):
    """Reads the engine makes. Each may raise :class:`ClusterUnavailable`."""

    def get_secret(self, namespace: str, name: str) -> SecretInfo | None:
        """The secret, or ``None`` if it certainly does not exist."""
        ...

    def namespaces_with_pull_secret(self, name: str) -> list[str]:
        """Namespaces holding a pull secret called ``name`` (for "it exists in ...")."""
        ...

    def may_read_secrets(self, user: UserInfo, namespace: str) -> bool:
        """May ``user`` read Secrets in ``namespace`` (the API server's authorizer says)?
        ``False`` when it cannot be asked: a message then says less, never more."""
        ...

    def get_service_account(self, namespace: str, name: str) -> ServiceAccountInfo | None: ...

    def namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        """Labels of the namespace, or ``None`` if it does not exist."""
        ...

    def node_platforms(self) -> frozenset[tuple[str, str]]:
        """The (``kubernetes.io/os``, ``kubernetes.io/arch``) pairs of the cluster's nodes;
        empty when no node says."""
        ...

    def node_platform(self, name: str) -> tuple[str, str] | None:
        """One node's (os, arch) (for a pod's ``spec.nodeName``), or ``None`` when the node
        is unknown or does not say."""
        ...

    def node_taints(self) -> NodeTaints:
        """Every node platform of the cluster with the barring taints of its nodes (for a
        platform fix that must schedule: the toleration a Windows node's taint needs)."""
        ...


class NoCluster:
    """A cluster view for runs without a cluster: every read is unavailable."""

    reason = "no cluster connection (pullguard runs with --dev or offline)"

    def get_secret(self, namespace: str, name: str) -> SecretInfo | None:
        raise ClusterUnavailable(self.reason)

    def namespaces_with_pull_secret(self, name: str) -> list[str]:
        raise ClusterUnavailable(self.reason)

    def may_read_secrets(self, user: UserInfo, namespace: str) -> bool:
        return False

    def get_service_account(self, namespace: str, name: str) -> ServiceAccountInfo | None:
        raise ClusterUnavailable(self.reason)

    def namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        raise ClusterUnavailable(self.reason)

    def node_platforms(self) -> frozenset[tuple[str, str]]:
        raise ClusterUnavailable(self.reason)

    def node_platform(self, name: str) -> tuple[str, str] | None:
        raise ClusterUnavailable(self.reason)

    def node_taints(self) -> NodeTaints:
        raise ClusterUnavailable(self.reason)


class InMemoryCluster:
    """A cluster made of plain dictionaries. Namespaces exist once anything is put in them."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], SecretInfo] = {}
        self.service_accounts: dict[tuple[str, str], ServiceAccountInfo] = {}
        self.namespaces: dict[str, dict[str, str]] = {}
        self.nodes: set[tuple[str, str]] = set()
        self.named_nodes: dict[str, tuple[str, str]] = {}
        self.taints: dict[str, tuple[Taint, ...] | None] = {}
        #: Per username, the namespaces whose Secrets they may read; ``None``: everyone
        #: may read every namespace (a state file a person judges against is their own).
        self.secret_readers: dict[str, set[str]] | None = None

    def add_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        self.namespaces.setdefault(name, {}).update(labels or {})

    def add_secret(self, secret: SecretInfo) -> None:
        self.add_namespace(secret.namespace)
        self.secrets[(secret.namespace, secret.name)] = secret

    def add_service_account(self, account: ServiceAccountInfo) -> None:
        self.add_namespace(account.namespace)
        self.service_accounts[(account.namespace, account.name)] = account

    def get_secret(self, namespace: str, name: str) -> SecretInfo | None:
        return self.secrets.get((namespace, name))

    def namespaces_with_pull_secret(self, name: str) -> list[str]:
        from webhook.core.keyring import PULL_SECRET_KEYS

        return sorted(
            ns for (ns, n), s in self.secrets.items() if n == name and s.type in PULL_SECRET_KEYS
        )

    def may_read_secrets(self, user: UserInfo, namespace: str) -> bool:
        if self.secret_readers is None:
            return True
        return namespace in self.secret_readers.get(user.username, set())

    def get_service_account(self, namespace: str, name: str) -> ServiceAccountInfo | None:
        account = self.service_accounts.get((namespace, name))
        if account is None and name == "default" and namespace in self.namespaces:
            # The API server creates "default" in every namespace.
            return ServiceAccountInfo(namespace, "default")
        return account

    def namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        return self.namespaces.get(namespace)

    def add_node(
        self, name: str, os_name: str, arch: str, taints: tuple[Taint, ...] | None = ()
    ) -> None:
        """A node; ``taints=None``: its taints are unknown (over the caps)."""
        self.named_nodes[name] = (os_name, arch)
        self.nodes.add((os_name, arch))
        self.taints[name] = taints

    def node_platforms(self) -> frozenset[tuple[str, str]]:
        return frozenset(self.nodes)

    def node_platform(self, name: str) -> tuple[str, str] | None:
        return self.named_nodes.get(name)

    def node_taints(self) -> NodeTaints:
        grouped = dict(
            group_node_taints((p, self.taints.get(n, ())) for n, p in self.named_nodes.items())
        )
        # A platform added without a named node (``nodes.add``, a state file) says nothing
        # of its nodes' taints.
        for platform in self.nodes - set(grouped):
            grouped[platform] = frozenset({None})
        return grouped


def group_node_taints(
    nodes: Iterable[tuple[tuple[str, str] | None, tuple[Taint, ...] | None]],
) -> NodeTaints:
    """(platform, taints) per node, grouped by platform (nodes without one left out)."""
    out: dict[tuple[str, str], set[tuple[Taint, ...] | None]] = {}
    for platform, taints in nodes:
        if platform is not None:
            out.setdefault(platform, set()).add(taints)
    return {p: frozenset(sets) for p, sets in out.items()}


class ClusterViewOver(ClusterView):
    """A :class:`ClusterView` that passes every read to ``cluster``: the base of the views
    that change one or two reads of another (:class:`ReadOnce`, ``validate.ReadableTo``,
    ``compose/livediagnose._ScheduledNode``). It names the protocol as its base, so mypy
    holds it to every read (a read the protocol gains and this class lacks makes it, and
    every view over it, abstract)."""

    def __init__(self, cluster: ClusterView) -> None:
        self._cluster = cluster

    def get_secret(self, namespace: str, name: str) -> SecretInfo | None:
        return self._cluster.get_secret(namespace, name)

    def namespaces_with_pull_secret(self, name: str) -> list[str]:
        return self._cluster.namespaces_with_pull_secret(name)

    def may_read_secrets(self, user: UserInfo, namespace: str) -> bool:
        return self._cluster.may_read_secrets(user, namespace)

    def get_service_account(self, namespace: str, name: str) -> ServiceAccountInfo | None:
        return self._cluster.get_service_account(namespace, name)

    def namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        return self._cluster.namespace_labels(namespace)

    def node_platforms(self) -> frozenset[tuple[str, str]]:
        return self._cluster.node_platforms()

    def node_platform(self, name: str) -> tuple[str, str] | None:
        return self._cluster.node_platform(name)

    def node_taints(self) -> NodeTaints:
        return self._cluster.node_taints()


class ReadOnce(ClusterViewOver):
    """``cluster`` with each secret and ServiceAccount read at most once: one admission's
    view, so a pod's secrets are read once however many steps ask (the mutation's preview,
    its default-secret judgement and the pullSecrets check of one template decision read
    ``a``, ``b`` and the default five times, now three). Made per admission and dropped
    after it: never a cache across admissions (it would outlive the API server's truth).
    An unavailable read is not kept (asked again, as before)."""

    def __init__(self, cluster: ClusterView) -> None:
        super().__init__(cluster)
        self._secrets: dict[tuple[str, str], SecretInfo | None] = {}
        self._accounts: dict[tuple[str, str], ServiceAccountInfo | None] = {}

    def get_secret(self, namespace: str, name: str) -> SecretInfo | None:
        key = (namespace, name)
        if key not in self._secrets:
            self._secrets[key] = self._cluster.get_secret(namespace, name)
        return self._secrets[key]

    def get_service_account(self, namespace: str, name: str) -> ServiceAccountInfo | None:
        key = (namespace, name)
        if key not in self._accounts:
            self._accounts[key] = self._cluster.get_service_account(namespace, name)
        return self._accounts[key]
