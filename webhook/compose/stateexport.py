"""The cluster state ``pullguard check --cluster-state`` reads, listed without credentials:
Namespaces (name, labels), ServiceAccounts (their imagePullSecrets) and the Secrets of the two
pull-secret types, as one YAML ``List``. Each pull secret keeps its name, type and the
registries its entries cover; every credential is replaced (``keyring.redacted_pull_secret``).

Reads with the caller's own credentials, through :mod:`webhook.edge.kubereads`; writes nothing
to the cluster. Secrets of other types
are not exported: a pod naming one is judged as naming a missing secret.
"""

from __future__ import annotations

from typing import Any

from webhook.core.keyring import redacted_pull_secret


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = obj.get("metadata") or {}
    meta: dict[str, Any] = {"name": metadata.get("name")}
    if metadata.get("namespace"):
        meta["namespace"] = metadata["namespace"]
    if metadata.get("labels"):
        meta["labels"] = dict(metadata["labels"])
    return meta


def export(namespace: str | None) -> dict[str, Any]:
    """The redacted state of ``namespace`` (every namespace for ``None``) as a ``List``
    document, read with the caller's credentials (KUBECONFIG)."""
    from webhook.edge.kubereads import connect

    namespaces, accounts, secrets = connect().pull_state(namespace)
    items: list[dict[str, Any]] = []
    for ns in namespaces:
        items.append({"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns)})
    for account in accounts:
        item: dict[str, Any] = {"apiVersion": "v1", "kind": "ServiceAccount"}
        item["metadata"] = _meta(account)
        names = [r.get("name") for r in account.get("imagePullSecrets") or [] if r.get("name")]
        if names:
            item["imagePullSecrets"] = [{"name": n} for n in names]
        items.append(item)
    for secret in secrets:
        kind = str(secret.get("type"))
        items.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": _meta(secret),
                "type": secret.get("type"),
                "data": redacted_pull_secret(kind, dict(secret.get("data") or {})),
            }
        )
    return {"apiVersion": "v1", "kind": "List", "items": items}
