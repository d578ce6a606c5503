"""``pullguard diagnose``: explain pods already failing to pull their images.

Reads each pod's container statuses and events, classifies the failure from the kubelet's
and the runtime's texts, re-runs the checks live (with the pod's own credentials, and the
platform check against the node the pod was scheduled on), and prints per image the cause,
the evidence and the commands that fix it. Exit 0 when a cause was found, 1 when no pod is
failing on an image, 2 on usage errors (no such pod, no cluster).

Wiring only: classification and wording are in ``webhook.core.pullfailure`` and
``webhook.core.diagnosis``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from typing import Any

from webhook.cli.options import SubParsers, add_live_arguments
from webhook.compose import livecheck
from webhook.core.cluster import ClusterUnavailable, ClusterView
from webhook.core.config import Config
from webhook.core.diagnosis import (
    ContainerDiagnosis,
    Workload,
    diagnose,
    failing_containers,
    render_text,
)
from webhook.core.keyring import (
    PULL_SECRET_KEYS,
    Credential,
    SecretFormatError,
    parse_pull_secret,
)
from webhook.core.pullfailure import CAUSE_WORDS, Cause
from webhook.core.registry import RegistryView


def register(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "diagnose", help="explain pods failing to pull their images, with the fix"
    )
    parser.add_argument("pod", nargs="?", metavar="POD", help="the pod (omit with --all)")
    parser.add_argument("-n", "--namespace", default="default", help="the pod's namespace")
    parser.add_argument("--all", action="store_true", help="every pod failing on an image")
    parser.add_argument(
        "-A", "--all-namespaces", action="store_true", help="with --all: in every namespace"
    )
    add_live_arguments(parser)
    parser.set_defaults(func=cmd_diagnose)


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
    return diagnose(
        pod,
        events,
        decision.findings,
        live_note=note,
        workload=workload_of(core, pod),
        namespace_credentials=namespace_credentials(core, meta["namespace"]),
        image_platforms=dict(decision.image_platforms),
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


def cmd_diagnose(args: argparse.Namespace) -> int:
    if bool(args.pod) == bool(args.all):
        print("pullguard diagnose: give a POD, or --all", file=sys.stderr)
        return 2
    from kubernetes.client.exceptions import ApiException

    from webhook.edge.kube import DirectClusterView

    try:
        core, api_client = livecheck.load_kube()
    except Exception as error:
        print(f"pullguard diagnose: no cluster: {error}", file=sys.stderr)
        return 2
    config, _ = livecheck.live_config(core, args)
    config = livecheck.everything_on(config)
    cluster = DirectClusterView(core)
    registry = livecheck.live_registry(config)
    try:
        if args.pod:
            pods = [
                api_client.sanitize_for_serialization(
                    core.read_namespaced_pod(args.pod, args.namespace, _request_timeout=10)
                )
            ]
        elif args.all_namespaces:
            pods = [
                api_client.sanitize_for_serialization(p)
                for p in core.list_pod_for_all_namespaces().items
            ]
        else:
            pods = [
                api_client.sanitize_for_serialization(p)
                for p in core.list_namespaced_pod(args.namespace).items
            ]
    except ApiException as error:
        if error.status == 404:
            print(f"pullguard diagnose: pod {args.namespace}/{args.pod} not found", file=sys.stderr)
        else:
            print(f"pullguard diagnose: the API server answered {error.status}", file=sys.stderr)
        return 2
    if not pods and not args.pod and not args.all_namespaces:
        missing = livecheck.namespace_missing(core, args.namespace)
        if missing:
            print(f"pullguard diagnose: {missing}", file=sys.stderr)
            return 2
    results = []
    for pod in pods:
        found = diagnose_one(core, pod, config, cluster, registry)
        if found:
            results.append((pod["metadata"]["namespace"], pod["metadata"]["name"], found))
    if args.output == "json":
        document = {
            "pods": [
                {"namespace": ns, "name": name, "images": [d.as_json() for d in found]}
                for ns, name, found in results
            ]
        }
        print(json.dumps(document, indent=2))
    elif not results:
        if args.pod:
            print(f"pullguard: pod {args.namespace}/{args.pod} is not failing on an image")
        else:
            where = "" if args.all_namespaces else f" in namespace {args.namespace}"
            print(f"pullguard: no pod{where} is failing on an image")
    elif args.all:
        print(_grouped(results))
    else:
        ns, name, found = results[0]
        print(render_text(name, ns, found))
    return 0 if results else 1


def _grouped(results: list[tuple[str, str, list[ContainerDiagnosis]]]) -> str:
    by_cause: dict[Cause, list[str]] = defaultdict(list)
    for ns, name, found in results:
        for d in found:
            by_cause[d.cause].append(f"{ns}/{name} {d.container} ({d.image})")
    plural = "s" if len(results) != 1 else ""
    lines = [f"pullguard diagnosed {len(results)} pod{plural} failing on an image"]
    for cause, entries in sorted(by_cause.items(), key=lambda item: -len(item[1])):
        lines.append(f"\n{cause.value} ({len(entries)}): {CAUSE_WORDS[cause]}")
        lines.extend(f"  {entry}" for entry in entries)
    lines.append("")
    for ns, name, found in results:
        lines.append(render_text(name, ns, found))
    return "\n".join(lines)
