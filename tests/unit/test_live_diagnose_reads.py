"""``pullguard diagnose`` reads each pull secret once (issue 23, item 5).

The namespace's pull secrets (a fix patches in one that already covers the image) used to be
listed and parsed by ``compose/livediagnose.namespace_credentials`` itself, beside the
judge's own reads of the pod's secrets: each secret the pod lists was parsed twice, and again
for every failing pod of the namespace. They go through the edge's reader
(``edge/kube.DirectClusterView``) and the one parse path (``core/checks.SecretReads``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client

from tests.unit.builders import container, dockerconfigjson, pod, pod_spec
from webhook.compose import livecheck, livediagnose
from webhook.core.config import load_config_text
from webhook.core.keyring import parse_pull_secret
from webhook.core.registry import FixedRegistry
from webhook.edge import kubereads
from webhook.edge.kube import DirectClusterView


def _secret(name: str, secret_type: str, data: dict[str, str]) -> client.V1Secret:
    return client.V1Secret(
        metadata=client.V1ObjectMeta(name=name, namespace="team-a", resource_version="1"),
        type=secret_type,
        data=data,
    )


SECRETS = [
    _secret("a", "kubernetes.io/dockerconfigjson", dockerconfigjson("registry.example.com")),
    _secret("b", "kubernetes.io/dockerconfigjson", dockerconfigjson("other.example.com")),
    _secret("c", "Opaque", {"token": "eA=="}),
]


class _Core:
    """The CoreV1Api calls a diagnose run makes, counted."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def list_namespaced_secret(self, namespace: str, **kwargs: Any) -> SimpleNamespace:
        self.calls.append(f"list secrets {namespace} {kwargs.get('field_selector', '')}".strip())
        selector = kwargs.get("field_selector") or ""
        wanted = selector.removeprefix("type=")
        return SimpleNamespace(items=[s for s in SECRETS if not wanted or s.type == wanted])

    def read_namespaced_secret(self, name: str, namespace: str, **_: Any) -> client.V1Secret:
        self.calls.append(f"get secret {namespace}/{name}")
        for secret in SECRETS:
            if secret.metadata.name == name:
                return secret
        raise client.exceptions.ApiException(status=404)

    def read_namespaced_service_account(self, name: str, namespace: str, **_: Any) -> Any:
        self.calls.append(f"get sa {namespace}/{name}")
        return client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name, namespace=namespace))

    def read_namespace(self, name: str, **_: Any) -> Any:
        return client.V1Namespace(metadata=client.V1ObjectMeta(name=name))

    def list_node(self, **_: Any) -> SimpleNamespace:
        return SimpleNamespace(items=[])

    def read_node(self, name: str, **_: Any) -> Any:
        raise client.exceptions.ApiException(status=404)


class _Kube:
    def __init__(self, core: _Core, pods: Sequence[dict[str, Any]]) -> None:
        self.core = core
        self.pods = list(pods)

    def cluster_view(self) -> DirectClusterView:
        return DirectClusterView(self.core)

    def list_pods(self, namespace: str | None) -> list[dict[str, Any]]:
        return self.pods

    def pod_events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return []

    def service_account_pull_secrets(self, namespace: str, name: str) -> tuple[str, ...]:
        return ()

    def owner(self, kind: str, namespace: str, name: str) -> None:
        return None

    def secrets(self, namespace: str) -> list[Any]:  # what the listing was before
        from webhook.edge.kube import secret_info

        return [secret_info(s) for s in self.core.list_namespaced_secret(namespace).items]


def _failing(name: str) -> dict[str, Any]:
    obj = pod(
        pod_spec(container("web", "registry.example.com/team/app:1.0"), secrets=["a"]), name=name
    )
    obj["status"] = {
        "containerStatuses": [
            {
                "name": "web",
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off"}},
            }
        ]
    }
    return obj


def test_diagnose_reads_and_parses_each_pull_secret_once(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []

    def counting(secret_type: str, data: Any, *, source: str = "") -> Any:
        parsed.append(source)
        return parse_pull_secret(secret_type, data, source=source)

    for module in list(sys.modules.values()):
        if (getattr(module, "__name__", "") or "").startswith("webhook.") and hasattr(
            module, "parse_pull_secret"
        ):
            monkeypatch.setattr(module, "parse_pull_secret", counting)
    core = _Core()
    kube = _Kube(core, [_failing("one"), _failing("two")])
    config = load_config_text("privateRegistries: [registry.example.com]\n")
    monkeypatch.setattr(kubereads, "connect", lambda: kube)
    monkeypatch.setattr(livecheck, "live_config", lambda *_: (config, "test"))
    monkeypatch.setattr(livecheck, "live_registry", lambda _: FixedRegistry())
    monkeypatch.setattr(livecheck, "live_providers", lambda _: None)

    results = livediagnose.diagnose_pods(
        None, "pullguard", pod=None, namespace="team-a", all_namespaces=False
    )

    assert [name for _, name, diagnosed in results if diagnosed] == ["one", "two"]
    # Two failing pods, one namespace: each pull secret parsed once in the run, the
    # Opaque one never; the pod's own "a" is the listing's, not a GET of its own.
    assert sorted(parsed) == ["team-a/a", "team-a/b"], parsed
    assert [c for c in core.calls if "secret" in c] == [
        "list secrets team-a type=kubernetes.io/dockerconfigjson",
        "list secrets team-a type=kubernetes.io/dockercfg",
    ], core.calls


def test_the_namespaces_credentials_are_its_readable_pull_secrets() -> None:
    from webhook.core.checks import SecretReads

    broken = _secret("d", "kubernetes.io/dockerconfigjson", {".dockerconfigjson": "bm90IGpzb24="})
    empty = _secret("e", "kubernetes.io/dockercfg", {})
    core = _Core()
    cluster = DirectClusterView(core)
    SECRETS.extend([broken, empty])
    try:
        got = livediagnose.namespace_credentials(cluster, SecretReads(cluster), "team-a")
    finally:
        del SECRETS[-2:]
    # What the kubelet can use, as before: not the Opaque one, not one it cannot parse,
    # not one without data.
    assert [(c.source, c.key) for c in got] == [
        ("team-a/a", "registry.example.com"),
        ("team-a/b", "other.example.com"),
    ]


def test_the_namespaces_credentials_are_empty_when_secrets_cannot_be_listed() -> None:
    from webhook.core.checks import SecretReads

    class _Forbidden(_Core):
        def list_namespaced_secret(self, namespace: str, **kwargs: Any) -> SimpleNamespace:
            raise client.exceptions.ApiException(status=403)

    cluster = DirectClusterView(_Forbidden())
    assert livediagnose.namespace_credentials(cluster, SecretReads(cluster), "team-a") == []
