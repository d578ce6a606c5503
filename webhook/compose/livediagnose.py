"""What ``pullguard diagnose`` reads of a live pod and judges: its events, what makes it,
the credentials its namespace holds, and the live decision against the node it was
scheduled on, put together into one diagnosis per failing image.

Reads with the caller's own credentials and writes nothing. Classification and wording are
in ``webhook.core.pullfailure`` and ``webhook.core.diagnosis``; printing in
``webhook.cli.diagnose``.
"""

from __future__ import annotations

from typing import Any

from webhook.compose import livecheck
from webhook.core.cluster import ClusterUnavailable, ClusterView
from webhook.core.config import Config
from webhook.core.diagnosis import (
    ContainerDiagnosis,
    Workload,
    diagnose,
    failing_containers,
)
from webhook.core.keyring import (
    PULL_SECRET_KEYS,
    Credential,
    SecretFormatError,
    parse_pull_secret,
)
from webhook.core.registry import RegistryView


class _ScheduledNode:
    """The cluster view, with the node platforms narrowed to the node the pod runs on."""

    def __init__(self, cluster: ClusterView, node: str) -> None:
        self.cluster = cluster
        self.node = node

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster, name)

    def node_platforms(self) -> frozenset[tuple[str, str]]:
        if not self.node:
            return frozenset(self.cluster.node_platforms())
        platform = self.cluster.node_platform(self.node)
        if platform is None:
            raise ClusterUnavailable(f"node {self.node} does not say its os and arch")
        return frozenset({platform})


def _events(core: Any, namespace: str, pod: str) -> list[dict[str, Any]]:
    listed = core.list_namespaced_event(
        namespace,
        field_selector=f"involvedObject.kind=Pod,involvedObject.name={pod}",
        _request_timeout=10,
    )
    return [core.api_client.sanitize_for_serialization(e) for e in listed.items]


def _controller(metadata: Any) -> tuple[str, str] | None:
    for owner in (metadata or {}).get("ownerReferences") or []:
        if owner.get("controller") is True and owner.get("kind") and owner.get("name"):
            return str(owner["kind"]), str(owner["name"])
    return None


def workload_of(core: Any, pod: dict[str, Any]) -> Workload:
    """What makes the pod, for fixes that must outlive it: its controller, and a
    ReplicaSet's Deployment (or a Job's CronJob) above that; the pod itself when it has no
    controller. A read that fails leaves the nearest owner known."""
    from kubernetes import client

    meta = pod["metadata"]
    namespace = meta["namespace"]
    spec = pod.get("spec") or {}
    account = str(spec.get("serviceAccountName") or "default")
    try:
        read = core.read_namespaced_service_account(account, namespace, _request_timeout=10)
        account_secrets = tuple(s.name for s in read.image_pull_secrets or [] if s.name)
    except Exception:  # not readable by this user: the fix names the pod's own list
        account_secrets = ()
    owner = _controller(meta)
    if owner is None:
        return Workload("Pod", meta["name"], account, account_secrets)
    kind, name = owner
    above = {
        "ReplicaSet": (client.AppsV1Api, "read_namespaced_replica_set"),
        "Job": (client.BatchV1Api, "read_namespaced_job"),
    }.get(kind)
    if above is not None:
        api, method = above
        try:
            parent = getattr(api(core.api_client), method)(name, namespace, _request_timeout=10)
            grand = _controller(core.api_client.sanitize_for_serialization(parent)["metadata"])
        except Exception:
            grand = None
        if grand is not None and grand[0] in ("Deployment", "CronJob"):
            kind, name = grand
    return Workload(kind, name, account, account_secrets)


def diagnose_one(
    core: Any, pod: dict[str, Any], config: Config, cluster: ClusterView, registry: RegistryView
) -> list[ContainerDiagnosis]:
    meta = pod["metadata"]
    events = _events(core, meta["namespace"], meta["name"])
    if not failing_containers(pod, events):
        return []
    node = str((pod.get("spec") or {}).get("nodeName") or "")
    decision = livecheck.judge("Pod", pod, config, _ScheduledNode(cluster, node), registry)
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
        workload=workload_of(core, pod),
        namespace_credentials=namespace_credentials(core, meta["namespace"]),
        image_platforms=dict(decision.image_platforms),
        node_platforms=nodes,
    )


def namespace_credentials(core: Any, namespace: str) -> list[Credential]:
    """The pull credentials of the namespace's secrets, so a fix patches in a secret that
    already covers the image instead of creating one whose name may be taken. Empty when
    this user may not list secrets there (the fix then creates one, idempotently)."""
    try:
        listed = core.list_namespaced_secret(namespace, _request_timeout=10).items
    except Exception:
        return []
    out: list[Credential] = []
    for secret in listed:
        if secret.type not in PULL_SECRET_KEYS or not secret.data:
            continue
        try:
            out += parse_pull_secret(
                secret.type, secret.data, source=f"{namespace}/{secret.metadata.name}"
            )
        except SecretFormatError:
            continue
    return out
