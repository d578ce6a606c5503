"""Small builders for admission requests, pods, templates and secrets used by unit tests."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from webhook.core.cluster import (
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    PROOF_ANNOTATION,
    SOURCE_ANNOTATION,
    InMemoryCluster,
    SecretInfo,
    ServiceAccountInfo,
)
from webhook.core.nodecreds import ProviderAnswer
from webhook.core.review import AdmissionRequest, UserInfo


def container(name: str, image: str, policy: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "image": image}
    if policy:
        out["imagePullPolicy"] = policy
    return out


def image_volume(name: str, reference: str, policy: str | None = None) -> dict[str, Any]:
    """An image volume (``spec.volumes[].image``), as the API server stores it."""
    source: dict[str, Any] = {"reference": reference}
    if policy:
        source["pullPolicy"] = policy
    return {"name": name, "image": source}


def pod_spec(
    *containers: dict[str, Any],
    secrets: list[str] | None = None,
    sa: str | None = None,
    init: list[dict[str, Any]] | None = None,
    volumes: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": list(containers)}
    if init:
        spec["initContainers"] = init
    if volumes:
        spec["volumes"] = volumes
    if secrets is not None:
        spec["imagePullSecrets"] = [{"name": s} for s in secrets]
    if sa:
        spec["serviceAccountName"] = sa
    return spec


def pod(spec: dict[str, Any], name: str = "p", namespace: str = "team-a") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def deployment(
    spec: dict[str, Any], name: str = "web", namespace: str = "team-a"
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": {"metadata": {"labels": {"app": name}}, "spec": spec}},
    }


def request(
    obj: dict[str, Any],
    *,
    operation: str = "CREATE",
    old: dict[str, Any] | None = None,
    namespace: str = "team-a",
    sub_resource: str = "",
    dry_run: bool = False,
    name: str | None = None,
    user: str = "alice",
) -> AdmissionRequest:
    return AdmissionRequest(
        user=UserInfo(username=user, groups=("system:authenticated",)),
        uid="uid-1",
        kind=obj["kind"],
        namespace=namespace,
        name=obj["metadata"].get("name", "") if name is None else name,
        operation=operation,
        sub_resource=sub_resource,
        object=copy.deepcopy(obj),
        old_object=copy.deepcopy(old),
        dry_run=dry_run,
    )


def dockerconfigjson(*hosts: str) -> dict[str, str]:
    auths = {h: {"auth": base64.b64encode(b"user:pass").decode()} for h in hosts}
    raw = json.dumps({"auths": auths}).encode()
    return {".dockerconfigjson": base64.b64encode(raw).decode()}


def pull_secret(namespace: str, name: str, *hosts: str) -> SecretInfo:
    return SecretInfo(namespace, name, "kubernetes.io/dockerconfigjson", dockerconfigjson(*hosts))


def as_copy(secret: SecretInfo, source_namespace: str = "pullguard") -> SecretInfo:
    """``secret`` as pullguard's copy of ``source_namespace/<its name>``, with the marks
    webhook.edge.secretsync writes on one (the proof is not checked by the core)."""
    return replace(
        secret,
        labels={MANAGED_BY_LABEL: MANAGED_BY_VALUE},
        annotations={
            SOURCE_ANNOTATION: f"{source_namespace}/{secret.name}",
            PROOF_ANNOTATION: "0" * 64,
        },
    )


def cluster_with(
    *secrets: SecretInfo,
    accounts: tuple[ServiceAccountInfo, ...] = (),
    namespaces: dict[str, dict[str, str]] | None = None,
) -> InMemoryCluster:
    cluster = InMemoryCluster()
    cluster.add_namespace("team-a")
    for ns, labels in (namespaces or {}).items():
        cluster.add_namespace(ns, labels)
    for secret in secrets:
        cluster.add_secret(secret)
    for account in accounts:
        cluster.add_service_account(account)
    return cluster


class TableProviders:
    """A NodeCredentialView answering from a table, by repository."""

    def __init__(self, answers: Mapping[str, Sequence[ProviderAnswer]]) -> None:
        self.answers = answers

    def provide(
        self, image: str, timeout: float, tenant: str | None = None
    ) -> Sequence[ProviderAnswer]:
        return self.answers.get(image, [])
