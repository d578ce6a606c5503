"""What ``pullguard diagnose`` reads of a live pod and judges: its events, what makes it,
the credentials its namespace holds, and the live decision against the node it was
scheduled on, put together into one diagnosis per failing image.

Reads with the caller's own credentials and writes nothing, through
:mod:`webhook.edge.kubereads`; the API server's refusals arrive as typed errors
(:class:`PodNotFound`, :class:`PodsUnreadable`, ``livecheck.NamespaceMissing``,
``livecheck.ClusterUnreadable``) that ``webhook.cli.diagnose`` turns into messages and exit
codes. Classification and wording are in ``webhook.core.pullfailure`` and
``webhook.core.diagnosis``. Must not: print, or call the kubernetes client itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webhook.compose import livecheck
from webhook.core.checks import SecretReads
from webhook.core.cluster import ClusterUnavailable, ClusterView, ClusterViewOver
from webhook.core.config import Config
from webhook.core.diagnosis import (
    ContainerDiagnosis,
    Workload,
    diagnose,
    failing_containers,
)
from webhook.core.keyring import Credential
from webhook.core.nodecreds import NodeCredentialView
from webhook.core.podspec import controller_owner
from webhook.core.registry import RegistryView

if TYPE_CHECKING:
    from webhook.edge.kube import DirectClusterView
    from webhook.edge.kubereads import Kube


class PodsUnreadable(Exception):
    """The API server refused to give the pods (its HTTP status)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the API server answered {status}")
        self.status = status


class PodNotFound(PodsUnreadable):
    """The API server answered 404 to the pods asked for."""

    def __init__(self) -> None:
        super().__init__(404)


class _ScheduledNode(ClusterViewOver):
    """The cluster view, with the node platforms narrowed to the node the pod runs on; every
    other read is the cluster view's own (:class:`~webhook.core.cluster.ClusterViewOver`)."""

    def __init__(self, cluster: ClusterView, node: str) -> None:
        super().__init__(cluster)
        self.node = node

    def node_platforms(self) -> frozenset[tuple[str, str]]:
        if not self.node:
            return frozenset(self._cluster.node_platforms())
        platform = self._cluster.node_platform(self.node)
        if platform is None:
            raise ClusterUnavailable(f"node {self.node} does not say its os and arch")
        return frozenset({platform})


def _controller(obj: Mapping[str, Any] | None) -> tuple[str, str] | None:
    owner = controller_owner(obj)
    if owner is None or not owner.get("kind") or not owner.get("name"):
        return None
    return str(owner["kind"]), str(owner["name"])


def workload_of(kube: Kube, pod: dict[str, Any]) -> Workload:
    """What makes the pod, for fixes that must outlive it: its controller, and a
    ReplicaSet's Deployment (or a Job's CronJob) above that; the pod itself when it has no
    controller. A read that fails leaves the nearest owner known."""
    meta = pod["metadata"]
    namespace = meta["namespace"]
    spec = pod.get("spec") or {}
    account = str(spec.get("serviceAccountName") or "default")
    try:
        account_secrets = kube.service_account_pull_secrets(namespace, account)
    except Exception:  # not readable by this user: the fix names the pod's own list
        account_secrets = ()
    owner = _controller(pod)
    if owner is None:
        return Workload("Pod", meta["name"], account, account_secrets)
    kind, name = owner
    try:
        parent = kube.owner(kind, namespace, name)
        grand = _controller(parent) if parent is not None else None
    except Exception:
        grand = None
    if grand is not None and grand[0] in ("Deployment", "CronJob"):
        kind, name = grand
    return Workload(
        kind, name, account, account_secrets, paused=_paused(kube, kind, namespace, name)
    )


def _paused(kube: Kube, kind: str, namespace: str, name: str) -> bool:
    """Is the pod's Deployment paused (``kubectl rollout pause``: it rolls out no change of
    its template until resumed)? Read with the caller's identity (rev22b F6); ``False`` when
    it cannot be read (the fix is then as for a running Deployment)."""
    if kind != "Deployment":
        return False
    try:
        deployment = kube.owner(kind, namespace, name)
    except Exception:
        return False
    spec = (deployment or {}).get("spec") or {}
    return spec.get("paused") is True


def pods_in_scope(
    kube: Kube, *, pod: str | None, namespace: str, all_namespaces: bool
) -> list[dict[str, Any]]:
    """The pod asked for (``pod`` in ``namespace``), else the pods of ``namespace``, or of
    every namespace with ``all_namespaces``, as the API returns them.
    :class:`PodNotFound` (a 404) or :class:`PodsUnreadable` when the API server refuses;
    :class:`~webhook.compose.livecheck.NamespaceMissing` when there are none because the
    namespace does not exist."""
    from webhook.edge.kubereads import ApiAnswered

    try:
        if pod:
            pods = [kube.read_pod(namespace, pod)]
        else:
            pods = kube.list_pods(None if all_namespaces else namespace)
    except ApiAnswered as error:
        if error.status == 404:
            raise PodNotFound() from error
        raise PodsUnreadable(error.status) from error
    if not pods and not pod and not all_namespaces:
        missing = livecheck.namespace_missing(kube, namespace)
        if missing:
            raise livecheck.NamespaceMissing(missing)
    return pods


def diagnose_pods(
    config_file: Path | None,
    pullguard_namespace: str,
    *,
    pod: str | None,
    namespace: str,
    all_namespaces: bool,
) -> list[tuple[str, str, list[ContainerDiagnosis]]]:
    """``pullguard diagnose``: (namespace, name, diagnoses) of every pod in scope
    (:func:`pods_in_scope`) that is failing on an image, judged with ``config_file`` or the
    cluster's configuration, every check on (:func:`~webhook.compose.livecheck.everything_on`).
    :class:`~webhook.compose.livecheck.ClusterUnreadable` when there is no cluster to ask."""
    from webhook.edge.kubereads import connect

    try:
        kube = connect()
    except Exception as error:
        raise livecheck.ClusterUnreadable(str(error)) from error
    config, _ = livecheck.live_config(kube, config_file, pullguard_namespace)
    config = livecheck.everything_on(config)
    cluster = kube.cluster_view()
    registry = livecheck.live_registry(config)
    node = livecheck.live_providers(config)
    pods = pods_in_scope(kube, pod=pod, namespace=namespace, all_namespaces=all_namespaces)
    # One set of secret reads per namespace for the run: the judge's and the fixes' share
    # it, so each pull secret is read and parsed once, however many of its pods fail.
    reads: dict[str, SecretReads] = {}
    results = []
    for found in pods:
        shared = reads.setdefault(found["metadata"]["namespace"], SecretReads(cluster))
        diagnosed = diagnose_one(kube, found, config, cluster, registry, node=node, reads=shared)
        if diagnosed:
            results.append((found["metadata"]["namespace"], found["metadata"]["name"], diagnosed))
    return results


def diagnose_one(
    kube: Kube,
    pod: dict[str, Any],
    config: Config,
    cluster: DirectClusterView,
    registry: RegistryView,
    *,
    node: NodeCredentialView | None = None,
    reads: SecretReads | None = None,
) -> list[ContainerDiagnosis]:
    """The diagnoses of ``pod``'s images failing to pull (none when none is). ``reads``:
    the run's secret reads of the pod's namespace, over ``cluster``."""
    meta = pod["metadata"]
    events = kube.pod_events(meta["namespace"], meta["name"])
    if not failing_containers(pod, events):
        return []
    reads = reads or SecretReads(cluster)
    # Listed first: the listing serves the judge's reads of the pod's own secrets too.
    credentials = namespace_credentials(cluster, reads, meta["namespace"])
    node_name = str((pod.get("spec") or {}).get("nodeName") or "")
    decision = livecheck.judge(
        "Pod", pod, config, _ScheduledNode(cluster, node_name), registry, node=node, reads=reads
    )
    unavailable = [
        f"{check}: {result}"
        for check, result in decision.outcomes.items()
        if result == "unavailable"
    ]
    note = "; ".join(unavailable) if not decision.findings and unavailable else ""
    try:
        nodes: frozenset[tuple[str, str]] | None = cluster.node_platforms() or None
    except ClusterUnavailable:
        nodes = None
    return diagnose(
        pod,
        events,
        decision.findings,
        live_note=note,
        workload=workload_of(kube, pod),
        namespace_credentials=credentials,
        image_platforms=dict(decision.image_platforms),
        node_platforms=nodes,
    )


def namespace_credentials(
    cluster: DirectClusterView, reads: SecretReads, namespace: str
) -> list[Credential]:
    """The pull credentials of the namespace's secrets, so a fix patches in a secret that
    already covers the image instead of creating one whose name may be taken: listed by the
    edge (``DirectClusterView.pull_secret_names``), each read and parsed through ``reads``
    (once in the run, the judge's reads included); one the kubelet cannot use holds none.
    Empty when this user may not list secrets there (the fix then creates one,
    idempotently)."""
    try:
        names = cluster.pull_secret_names(namespace)
    except ClusterUnavailable:
        return []
    return reads.credentials(namespace, names)
