"""Cluster state from a YAML file: Secrets, ServiceAccounts, Namespaces and Nodes as kubectl
shows them.

``pullguard check --cluster-state FILE`` and ``pullguard serve --dev --cluster-state FILE``
judge against it instead of a live cluster (``kubectl get secret,sa,ns,node -A -o yaml``
makes one; of a Node only its ``kubernetes.io/os`` and ``kubernetes.io/arch`` labels
count). Secrets may use ``data`` (base64) or ``stringData``.

Must not: print or log secret data.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from webhook.core.cluster import InMemoryCluster, SecretInfo, ServiceAccountInfo


def _objects(document: Any) -> list[dict[str, Any]]:
    if not isinstance(document, dict):
        return []
    if str(document.get("kind", "")).endswith("List"):
        return [item for item in document.get("items") or [] if isinstance(item, dict)]
    return [document]


def load_cluster_state(path: Path) -> InMemoryCluster:
    cluster = InMemoryCluster()
    for document in yaml.safe_load_all(path.read_text("utf-8")):
        for obj in _objects(document):
            meta = obj.get("metadata") or {}
            kind, name = obj.get("kind"), meta.get("name", "")
            namespace = meta.get("namespace") or "default"
            if kind == "Namespace":
                cluster.add_namespace(name, meta.get("labels") or {})
            elif kind == "Secret":
                data = dict(obj.get("data") or {})
                for key, value in (obj.get("stringData") or {}).items():
                    data[key] = base64.b64encode(str(value).encode()).decode()
                cluster.add_secret(
                    SecretInfo(
                        namespace,
                        name,
                        obj.get("type", "Opaque"),
                        data,
                        labels=meta.get("labels") or {},
                    )
                )
            elif kind == "Node":
                labels = meta.get("labels") or {}
                os_name, arch = labels.get("kubernetes.io/os"), labels.get("kubernetes.io/arch")
                if os_name and arch:
                    cluster.nodes.add((str(os_name), str(arch)))
            elif kind == "ServiceAccount":
                names = tuple(
                    str(ref["name"])
                    for ref in obj.get("imagePullSecrets") or []
                    if isinstance(ref, dict) and ref.get("name")
                )
                cluster.add_service_account(ServiceAccountInfo(namespace, name, names))
    return cluster
