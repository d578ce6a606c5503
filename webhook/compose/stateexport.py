"""The cluster state ``pullguard check --cluster-state`` reads, listed without credentials:
Namespaces (name, labels), ServiceAccounts (their imagePullSecrets) and the Secrets of the two
pull-secret types, as one YAML ``List``. Each pull secret keeps its name, type and the
registries its entries cover; every credential is replaced (``keyring.redacted_pull_secret``).

Reads with the caller's own credentials; writes nothing to the cluster. Secrets of other types
are not exported: a pod naming one is judged as naming a missing secret.
"""

from __future__ import annotations

from typing import Any

from webhook.core.keyring import DOCKER_CFG, DOCKER_CONFIG_JSON, redacted_pull_secret


def _meta(obj: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": obj.metadata.name}
    if obj.metadata.namespace:
        meta["namespace"] = obj.metadata.namespace
    if obj.metadata.labels:
        meta["labels"] = dict(obj.metadata.labels)
    return meta


def export(core: Any, namespace: str | None) -> dict[str, Any]:
    """The redacted state as a ``List`` document."""
    items: list[dict[str, Any]] = []
    if namespace:
        namespaces = [core.read_namespace(namespace)]
        accounts = core.list_namespaced_service_account(namespace).items
        secrets = [
            s
            for kind in (DOCKER_CONFIG_JSON, DOCKER_CFG)
            for s in core.list_namespaced_secret(namespace, field_selector=f"type={kind}").items
        ]
    else:
        namespaces = core.list_namespace().items
        accounts = core.list_service_account_for_all_namespaces().items
        secrets = [
            s
            for kind in (DOCKER_CONFIG_JSON, DOCKER_CFG)
            for s in core.list_secret_for_all_namespaces(field_selector=f"type={kind}").items
        ]
    for ns in namespaces:
        items.append({"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns)})
    for account in accounts:
        item: dict[str, Any] = {"apiVersion": "v1", "kind": "ServiceAccount"}
        item["metadata"] = _meta(account)
        names = [r.name for r in account.image_pull_secrets or [] if r.name]
        if names:
            item["imagePullSecrets"] = [{"name": n} for n in names]
        items.append(item)
    for secret in secrets:
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": _meta(secret),
                "type": secret.type,
                "data": redacted_pull_secret(secret.type, dict(secret.data or {})),
            }
        )
    return {"apiVersion": "v1", "kind": "List", "items": items}
