"""The API server read directly, with the caller's own credentials, for the commands that run
outside the webhook (``diagnose``, ``audit``, ``export-state``) and the in-cluster audit:
typed functions over the official kubernetes client, each answering with plain data
(objects as the API returns them, as dicts) or a typed error.

- :func:`connect` loads KUBECONFIG (or the in-cluster service account) into a :class:`Kube`;
  :func:`configured` makes one of the configuration already loaded (the webhook's).
- :class:`Kube` lists pods and every pod template carrier, reads a pod and its events, a
  ServiceAccount's pull secrets, a ReplicaSet's or Job's owner, the configuration ConfigMap,
  whether a namespace exists, the state ``export-state`` writes, and creates Warning Events;
  its :meth:`Kube.cluster_view` reads (and lists) Secrets for the core, once per run.
- :class:`ApiAnswered` is the API server's refusal (its HTTP status), the only error a read
  translates; no answer at all is whatever the client raised.

Must not: decide anything, or hold watches (the webhook's caches are :mod:`webhook.edge.kube`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from webhook.core.keyring import DOCKER_CFG, DOCKER_CONFIG_JSON
from webhook.edge.kube import DirectClusterView, load_kube_config, warning_event

#: kind -> (API class, list method for one namespace, for all namespaces)
POD_CARRIERS = {
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

#: Owners read to find what makes a pod: kind -> (API class, read method).
OWNER_READS = {
    "ReplicaSet": ("AppsV1Api", "read_namespaced_replica_set"),
    "Deployment": ("AppsV1Api", "read_namespaced_deployment"),
    "Job": ("BatchV1Api", "read_namespaced_job"),
}


class ApiAnswered(Exception):
    """The API server answered a read with an error status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the API server answered {status}")
        self.status = status


def connect() -> Kube:
    """The API server from the usual KUBECONFIG or in-cluster configuration."""
    load_kube_config()
    return configured()


def configured() -> Kube:
    """The API server of the configuration already loaded (:func:`load_kube_config`)."""
    from kubernetes import client

    return Kube(client.ApiClient())


@dataclass
class Kube:
    """Direct reads (and Event creation) over one ``kubernetes.client.ApiClient``."""

    api_client: Any

    @property
    def core(self) -> Any:
        """The ``CoreV1Api`` over this client."""
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    def _api(self, name: str) -> Any:
        from kubernetes import client

        return getattr(client, name)(self.api_client)

    def _plain(self, obj: Any) -> dict[str, Any]:
        plain: dict[str, Any] = self.api_client.sanitize_for_serialization(obj)
        return plain

    def cluster_view(self) -> DirectClusterView:
        """The core's ClusterView by direct reads, remembered for one run."""
        return DirectClusterView(self.core)

    def read_pod(self, namespace: str, name: str) -> dict[str, Any]:
        """The pod; :class:`ApiAnswered` (404 when there is none)."""
        from kubernetes.client.exceptions import ApiException

        try:
            return self._plain(self.core.read_namespaced_pod(name, namespace, _request_timeout=10))
        except ApiException as error:
            raise ApiAnswered(error.status) from error

    def list_pods(self, namespace: str | None) -> list[dict[str, Any]]:
        """The pods of ``namespace``, or of every namespace for ``None``; :class:`ApiAnswered`."""
        from kubernetes.client.exceptions import ApiException

        core = self.core
        try:
            listed = (
                core.list_namespaced_pod(namespace)
                if namespace is not None
                else core.list_pod_for_all_namespaces()
            )
        except ApiException as error:
            raise ApiAnswered(error.status) from error
        return [self._plain(p) for p in listed.items]

    def pod_carriers(self, namespace: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
        """(kind, object) for every object of the :data:`POD_CARRIERS` kinds in
        ``namespace`` (every namespace for ``None``), kind by kind."""
        for kind, (api_name, namespaced, everywhere) in POD_CARRIERS.items():
            api = self._api(api_name)
            listed = (
                getattr(api, namespaced)(namespace, _request_timeout=30)
                if namespace
                else getattr(api, everywhere)(_request_timeout=30)
            )
            for item in listed.items:
                yield kind, self._plain(item)

    def pod_events(self, namespace: str, pod: str) -> list[dict[str, Any]]:
        """The Events about one pod."""
        listed = self.core.list_namespaced_event(
            namespace,
            field_selector=f"involvedObject.kind=Pod,involvedObject.name={pod}",
            _request_timeout=10,
        )
        return [self._plain(e) for e in listed.items]

    def service_account_pull_secrets(self, namespace: str, name: str) -> tuple[str, ...]:
        """The imagePullSecrets a ServiceAccount names; raises when it cannot be read."""
        read = self.core.read_namespaced_service_account(name, namespace, _request_timeout=10)
        return tuple(s.name for s in read.image_pull_secrets or [] if s.name)

    def owner(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """A ReplicaSet, Deployment or Job (:data:`OWNER_READS`) as the API returns it; ``None`` for
        other kinds. Raises when it cannot be read."""
        read = OWNER_READS.get(kind)
        if read is None:
            return None
        api_name, method = read
        return self._plain(
            getattr(self._api(api_name), method)(name, namespace, _request_timeout=10)
        )

    def config_map_text(self, namespace: str, name: str, key: str) -> str:
        """One key of a ConfigMap ('' when it has none); raises when it cannot be read."""
        configmap = self.core.read_namespaced_config_map(name, namespace, _request_timeout=10)
        return str((configmap.data or {}).get(key) or "")

    def namespace_exists(self, namespace: str) -> bool | None:
        """Whether the namespace exists; ``None`` when this user may not tell."""
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.read_namespace(namespace, _request_timeout=10)
        except ApiException as error:
            return False if error.status == 404 else None
        except Exception:  # not readable: unknown
            return None
        return True

    def pull_state(
        self, namespace: str | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
        """(Namespaces, ServiceAccounts, Secrets of the two pull-secret types) of
        ``namespace``, or of every namespace for ``None``, as the API returns them."""
        core = self.core
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
        return (
            [self._plain(n) for n in namespaces],
            [self._plain(a) for a in accounts],
            [self._plain(s) for s in secrets],
        )

    def warn_about(
        self, kind: str, document: dict[str, Any], *, reason: str, message: str, limit: int
    ) -> None:
        """A Warning Event on ``document`` (an object as the API returns it) from pullguard,
        its message cut to ``limit`` characters; raises when it cannot be created."""
        from kubernetes import client

        meta = document["metadata"]
        namespace = meta.get("namespace") or "default"
        event = warning_event(
            client.V1ObjectMeta(generate_name=f"{meta.get('name', 'object')}.pullguard-"),
            client.V1ObjectReference(
                api_version=document.get("apiVersion"),
                kind=kind,
                name=meta.get("name"),
                namespace=namespace,
                uid=meta.get("uid"),
            ),
            reason=reason,
            message=message,
            limit=limit,
        )
        self.core.create_namespaced_event(namespace, event, _request_timeout=10)
