"""The kubernetes-client adapters against a real API server (they meet fakes in tests/unit).

Each adapter is built in this process with a client for the control plane, exactly as
``pullguard serve`` builds it, and driven by real objects created with kubectl.
"""

from __future__ import annotations

import base64
import functools
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.cluster import ControlPlane, wait_for
from tests.e2e.conftest import configmap, namespace, pull_secret
from webhook.core.mutate import SecretCopy
from webhook.edge.configsource import ConfigStore
from webhook.edge.kube import (
    ConfigMapSource,
    KubeClusterView,
    KubeSecretWriter,
    Reflector,
    secret_info,
    sync_key,
)
from webhook.edge.metrics import Metrics
from webhook.edge.secretsync import SecretSyncer
from webhook.edge.selfcerts import KubeCertApi

pytestmark = pytest.mark.e2e

PAIRS = {("corp", "adapters-src")}


@pytest.fixture(scope="module")
def core(control_plane: ControlPlane) -> Any:
    namespace(control_plane, "adapters")
    namespace(control_plane, "adapters-src")
    return client.CoreV1Api(control_plane.api_client())


class CountingList:
    """Wraps a client list method, counting full lists (calls without ``watch``).

    :attr:`method` keeps the wrapped method's docstring (``functools.wraps``): the client's
    ``Watch`` reads the model type from it, and without it every event arrives as a dict.
    """

    def __init__(self, method: Any) -> None:
        self.lists = 0

        @functools.wraps(method)
        def counted(*args: Any, **kwargs: Any) -> Any:
            if not kwargs.get("watch"):
                self.lists += 1
            return method(*args, **kwargs)

        self.method = counted


@pytest.fixture
def secrets_reflector(core: Any) -> Iterator[tuple[Reflector, CountingList]]:
    listing = CountingList(core.list_secret_for_all_namespaces)
    reflector = Reflector(
        "secrets-test",
        listing.method,
        secret_info,
        list_kwargs={"field_selector": "type=kubernetes.io/dockerconfigjson"},
        watch_timeout=2,
    )
    reflector.start()
    assert reflector.synced.wait(10)
    yield reflector, listing
    reflector.stop()


def test_reflector_follows_the_watch_and_holds_only_pull_secrets(
    control_plane: ControlPlane, secrets_reflector: tuple[Reflector, CountingList]
) -> None:
    reflector, _ = secrets_reflector
    control_plane.apply(pull_secret("watched", "adapters", "a.example.com"), check=True)
    control_plane.kubectl(
        "create", "secret", "generic", "opaque", "-n", "adapters", "--from-literal=k=v", check=True
    )
    found = wait_for(lambda: reflector.get("adapters", "watched"), 10, "ADDED event")
    assert found.type == "kubernetes.io/dockerconfigjson"
    control_plane.apply(pull_secret("watched", "adapters", "b.example.com"), check=True)

    def holds(host: str) -> bool:
        secret = reflector.get("adapters", "watched")
        return host in base64.b64decode(secret.data[".dockerconfigjson"]).decode()

    wait_for(lambda: holds("b.example.com"), 10, "MODIFIED event")
    control_plane.kubectl("delete", "secret", "watched", "-n", "adapters", check=True)
    wait_for(lambda: reflector.get("adapters", "watched") is None, 10, "DELETED event")
    assert reflector.get("adapters", "opaque") is None  # never held: other types stay out


def test_reflector_resumes_when_the_api_server_ends_the_watch(
    control_plane: ControlPlane, secrets_reflector: tuple[Reflector, CountingList]
) -> None:
    # The watch timeout is 2 s here: across several ends of the watch, every event arrives
    # and the reflector resumes from its resourceVersion instead of listing everything again.
    reflector, listing = secrets_reflector
    for index in range(4):
        control_plane.apply(pull_secret(f"resume-{index}", "adapters", "x.example.com"))
        threading.Event().wait(1.5)
    for index in range(4):
        wait_for(lambda i=index: reflector.get("adapters", f"resume-{i}"), 10, f"resume-{index}")
    assert listing.lists == 1


def test_cluster_view_confirms_absence_and_reads_what_the_cache_does_not_hold(
    control_plane: ControlPlane, core: Any
) -> None:
    view = KubeClusterView(core)
    view.start()
    try:
        wait_for(lambda: not view.not_synced(), 10, "caches synced")
        control_plane.kubectl(
            "create", "secret", "generic", "plain", "-n", "adapters", "--from-literal=k=v"
        )
        # Not a pull-secret type, so never cached: the direct read tells "wrong type".
        plain = view.get_secret("adapters", "plain")
        assert plain is not None and plain.type == "Opaque"
        assert view.get_secret("adapters", "nothing-here") is None
        control_plane.apply(pull_secret("everywhere", "adapters-src", "a.example.com"), check=True)
        wait_for(
            lambda: view.namespaces_with_pull_secret("everywhere") == ["adapters-src"], 10, "cache"
        )
        account = wait_for(lambda: view.get_service_account("adapters", "default"), 10, "SA")
        assert account.image_pull_secrets == ()
        control_plane.kubectl("label", "namespace", "adapters", "tier=gold", "--overwrite")
        wait_for(lambda: (view.namespace_labels("adapters") or {}).get("tier") == "gold", 10, "ns")
        assert view.namespace_labels("no-such-namespace") is None
    finally:
        for reflector in view.reflectors():
            reflector.stop()


def test_configmap_change_is_applied_from_the_watch_event(
    control_plane: ControlPlane, core: Any
) -> None:
    control_plane.apply(
        json.dumps(
            {
                **json.loads(configmap("checks: {pullPolicy: warn}\n")),
                "metadata": {"name": "pullguard-config", "namespace": "adapters"},
            }
        ),
        check=True,
    )
    store = ConfigStore(Metrics())
    source = ConfigMapSource(core, "adapters", store)
    listing = CountingList(core.list_namespaced_config_map)
    source.reflector._list = listing.method  # count full lists of the real method
    source.reflector._watch_timeout = 300
    source.start()
    try:
        wait_for(lambda: store.loaded, 10, "first configuration")
        assert store.current.checks.pullPolicy.value == "warn"
        control_plane.kubectl(
            "patch",
            "configmap",
            "pullguard-config",
            "-n",
            "adapters",
            "--type=merge",
            "-p",
            json.dumps({"data": {"config.yaml": "checks: {pullPolicy: 'off'}\n"}}),
            check=True,
        )
        wait_for(lambda: store.current.checks.pullPolicy.value == "off", 5, "the change")
        assert listing.lists == 1, "applied by a relist, not by the watch event"
    finally:
        source.reflector.stop()


def test_secret_writer_and_syncer_keep_a_copy_in_line_with_its_source(
    control_plane: ControlPlane, core: Any
) -> None:
    control_plane.apply(pull_secret("corp", "adapters-src", "corp.example.com"), check=True)
    writer = KubeSecretWriter(core)
    syncer = SecretSyncer(writer, key=sync_key(core, "adapters-src"), allowed=lambda: PAIRS)
    assert syncer.copy(SecretCopy("corp", "adapters-src", "adapters")) == "created"
    assert syncer.copy(SecretCopy("corp", "adapters-src", "adapters")) == "exists"
    copy = writer.read("adapters", "corp")
    assert copy is not None
    assert copy.labels == {"app.kubernetes.io/managed-by": "pullguard"}
    assert sync_key(core, "adapters-src") == syncer.key  # made once, then read back
    assert copy.data == writer.read("adapters-src", "corp").data  # type: ignore[union-attr]

    # A stale resourceVersion is refused by the API server, never overwritten.
    assert writer.replace_data(copy, {"x": "eA=="}, "1") == "conflict"

    # The source rotates: the next pass brings the copy in line.
    control_plane.apply(pull_secret("corp", "adapters-src", "rotated.example.com"), check=True)
    assert syncer.reconcile_once() == {"updated": 1}
    rotated = writer.read("adapters", "corp")
    assert rotated is not None
    assert b"rotated.example.com" in base64.b64decode(rotated.data[".dockerconfigjson"])
    assert syncer.reconcile_once() == {"in-sync": 1}

    # Deleted by someone: recreated.
    control_plane.kubectl("delete", "secret", "corp", "-n", "adapters", check=True)
    assert syncer.reconcile_once() == {"recreated": 1}
    assert [s.name for s in writer.managed_copies() if s.namespace == "adapters"] == ["corp"]

    # The source changes type (immutable on a Secret): the copy is deleted and made again.
    control_plane.kubectl("delete", "secret", "corp", "-n", "adapters-src", check=True)
    raw = json.dumps({"corp.example.com": {"auth": "dTpw"}}).encode()
    control_plane.apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "corp", "namespace": "adapters-src"},
                "type": "kubernetes.io/dockercfg",
                "data": {".dockercfg": base64.b64encode(raw).decode()},
            }
        ),
        check=True,
    )
    assert syncer.reconcile_once() == {"recreated": 1}
    assert writer.read("adapters", "corp").type == "kubernetes.io/dockercfg"  # type: ignore[union-attr]

    # Its namespace is deleted: forgotten.
    control_plane.kubectl("delete", "namespace", "adapters-gone", "--ignore-not-found")
    namespace(control_plane, "adapters-gone")
    assert syncer.copy(SecretCopy("corp", "adapters-src", "adapters-gone")) == "created"
    control_plane.kubectl("delete", "namespace", "adapters-gone", "--wait=true", timeout=120)
    assert syncer.reconcile_once() == {"in-sync": 1, "namespace-gone": 1}
    assert ("adapters-gone", "corp", "adapters-src") not in syncer.targets


def _webhook_configuration(kind: str, name: str, hooks: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": kind,
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "pullguard"}},
        "webhooks": hooks,
    }


def _hook(name: str, client_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "failurePolicy": "Ignore",
        "clientConfig": client_config,
        # Matches no namespace: these entries exist only to be patched.
        "namespaceSelector": {"matchLabels": {"pullguard-adapter-test": "never"}},
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["configmaps"],
            }
        ],
    }


def test_cert_api_agrees_through_the_api_server(control_plane: ControlPlane) -> None:
    api = KubeCertApi(
        "adapters", "svc-a", url="https://127.0.0.1:1", api_client=control_plane.api_client()
    )
    assert api.read_secret() is None
    assert api.create_secret({"ca.crt": b"one"}) is True
    assert api.create_secret({"ca.crt": b"two"}) is False  # another replica won: adopt theirs
    data, version = api.read_secret()  # type: ignore[misc]
    assert data == {"ca.crt": b"one"}
    assert api.update_secret({"ca.crt": b"three"}, version) is True
    assert api.update_secret({"ca.crt": b"four"}, version) is False  # stale: re-read
    assert api.read_secret()[0] == {"ca.crt": b"three"}  # type: ignore[index]

    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        hooks = [
            _hook("ours.svc.test", {"service": {"name": "svc-a", "namespace": "adapters"}}),
            _hook("ours.url.test", {"url": "https://127.0.0.1:1/validate"}),
            _hook("theirs.svc.test", {"service": {"name": "other", "namespace": "adapters"}}),
            _hook("theirs.url.test", {"url": "https://127.0.0.1:10/validate"}),
        ]
        control_plane.apply(
            json.dumps(_webhook_configuration(kind, "adapter-test", hooks)), check=True
        )
    try:
        assert api.ensure_ca_bundle(b"PEM") == 4  # two entries in each configuration
        assert api.ensure_ca_bundle(b"PEM") == 0
        for resource in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
            stored = control_plane.get_json(resource, "adapter-test")
            bundles = {h["name"]: h["clientConfig"].get("caBundle") for h in stored["webhooks"]}
            encoded = base64.b64encode(b"PEM").decode()
            assert bundles == {
                "ours.svc.test": encoded,
                "ours.url.test": encoded,
                "theirs.svc.test": None,
                "theirs.url.test": None,
            }
    finally:
        for resource in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
            control_plane.kubectl("delete", resource, "adapter-test")
