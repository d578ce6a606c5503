"""The audit scan that ``pullguard audit`` and the in-cluster audit (``serve
--audit-interval``) share: every object in scope that carries a pod template, and the
findings of their decisions counted.

Read-only: lists with the kubernetes client and writes nothing. Objects a controller made
are left out (their owner is judged instead).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from webhook.core.config import Action
from webhook.core.findings import Finding
from webhook.core.validate import Decision, made_by_controller

#: kind -> (API class, list method for one namespace, for all namespaces)
KINDS = {
    "Deployment": ("AppsV1Api", "list_namespaced_deployment", "list_deployment_for_all_namespaces"),
    "StatefulSet": (
        "AppsV1Api",
        "list_namespaced_stateful_set",
        "list_stateful_set_for_all_namespaces",
    ),
    "DaemonSet": ("AppsV1Api", "list_namespaced_daemon_set", "list_daemon_set_for_all_namespaces"),
    "ReplicaSet": (
        "AppsV1Api",
        "list_namespaced_replica_set",
        "list_replica_set_for_all_namespaces",
    ),
    "Job": ("BatchV1Api", "list_namespaced_job", "list_job_for_all_namespaces"),
    "CronJob": ("BatchV1Api", "list_namespaced_cron_job", "list_cron_job_for_all_namespaces"),
    "Pod": ("CoreV1Api", "list_namespaced_pod", "list_pod_for_all_namespaces"),
}


def action_of(finding: Finding) -> str:
    """How the audit names a finding's action: ``deny`` (enforced) or ``warn``."""
    return "deny" if finding.action is Action.ENFORCE else "warn"


def tally(judged: Iterable[tuple[str, Decision]]) -> Counter[tuple[str, str, str]]:
    """Findings of (namespace, decision) pairs, counted by (namespace, check, action)."""
    return Counter(
        (namespace, finding.check, action_of(finding))
        for namespace, decision in judged
        for finding in decision.findings
    )


def objects(api_client: Any, namespace: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind, object as the API returns it) for every judged object in scope."""
    from kubernetes import client

    for kind, (api_name, namespaced, everywhere) in KINDS.items():
        api = getattr(client, api_name)(api_client)
        listed = (
            getattr(api, namespaced)(namespace, _request_timeout=30)
            if namespace
            else getattr(api, everywhere)(_request_timeout=30)
        )
        for item in listed.items:
            document = api_client.sanitize_for_serialization(item)
            if not made_by_controller(document):
                yield kind, document
