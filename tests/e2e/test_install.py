"""Installing pullguard: ``deploy/`` on a real API server, and self-managed certificates.

The ``installed`` fixture applied ``deploy/`` server-side and started two replicas at the same
moment as the ``pullguard`` ServiceAccount; these tests check what that must have produced.
"""

from __future__ import annotations

import base64
import datetime
import json

import pytest
from cryptography import x509

from tests.e2e.cluster import wait_for
from tests.e2e.conftest import NAMESPACE, Installation, by_url, pod, rendered_deploy
from webhook.edge.certs import make_bundle
from webhook.edge.selfcerts import SECRET_NAME, subject_alt_names

pytestmark = pytest.mark.e2e


def stored_bundle(installed: Installation) -> dict[str, bytes]:
    secret = installed.plane.get_json("secret", SECRET_NAME, "-n", NAMESPACE)
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def der(pem: bytes) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def test_every_object_of_deploy_is_on_the_api_server(installed: Installation) -> None:
    plane = installed.plane
    for document in by_url(rendered_deploy(plane), installed.webhook_url):
        kind, meta = document["kind"], document["metadata"]
        args = [kind.lower(), meta["name"]] + (
            ["-n", meta["namespace"]] if "namespace" in meta else []
        )
        stored = plane.get_json(*args)
        assert stored["metadata"]["labels"]["app.kubernetes.io/name"] == "pullguard"
    # The ConfigMap deploy/ ships was accepted as it is; the tests then applied their own.
    assert "config.yaml" in plane.get_json("configmap", "pullguard-config", "-n", NAMESPACE)["data"]


def test_replicas_started_together_agree_on_one_certificate(installed: Installation) -> None:
    secrets = installed.plane.get_json("secrets", "-n", NAMESPACE)["items"]
    # One certificate Secret and one sync key, however many replicas raced to make them.
    assert sorted(s["metadata"]["name"] for s in secrets if s["type"] == "Opaque") == [
        "pullguard-sync-key",
        SECRET_NAME,
    ]
    bundle = stored_bundle(installed)
    served = {replica.served_certificate() for replica in installed.replicas}
    assert served == {der(bundle["tls.crt"])}
    dns, ips = subject_alt_names(bundle["tls.crt"])
    assert "pullguard.pullguard.svc" in dns
    assert "127.0.0.1" in ips  # the host of --webhook-url


def test_both_configurations_carry_the_ca_and_the_api_server_uses_it(
    installed: Installation,
) -> None:
    plane = installed.plane
    ca = stored_bundle(installed)["ca.crt"]
    for resource in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        for hook in plane.get_json(resource, "pullguard")["webhooks"]:  # every entry
            assert base64.b64decode(hook["clientConfig"]["caBundle"]) == ca
            assert hook["clientConfig"]["url"].startswith(installed.webhook_url + "/")
    # Both webhooks answer the API server over TLS with that CA.
    denied = plane.apply(pod("tls", "e2e", "Bad:Ref"), "--dry-run=server")
    assert 'admission webhook "validate.pullguard.io" denied the request' in denied.stderr
    mutated = plane.apply(pod("tls", "e2e", "nginx:1.25"), "--dry-run=server", "-o", "json")
    assert mutated.ok, mutated.stderr
    assert json.loads(mutated.stdout)["spec"]["containers"][0]["image"].startswith(
        "mirror.example.com/"
    )


def test_a_renewal_is_served_without_a_restart(installed: Installation) -> None:
    plane = installed.plane
    before = stored_bundle(installed)
    pids = [replica.process.pid for replica in installed.replicas]
    # Another replica (simulated) left a serving certificate with a day to live in the Secret.
    now = datetime.datetime.now(datetime.UTC)
    short = make_bundle(
        ["pullguard.pullguard.svc"],
        ["127.0.0.1"],
        ca_cert_pem=before["ca.crt"],
        ca_key_pem=before["ca.key"],
        validity=datetime.timedelta(days=1),
        now=now,
    )
    patch = {
        "data": {
            "tls.crt": base64.b64encode(short.cert).decode(),
            "tls.key": base64.b64encode(short.key).decode(),
        }
    }
    plane.kubectl(
        "patch", "secret", SECRET_NAME, "-n", NAMESPACE, "-p", json.dumps(patch), check=True
    )

    def renewed() -> bytes | None:
        current = stored_bundle(installed)["tls.crt"]
        expiry = x509.load_pem_x509_certificate(current).not_valid_after_utc
        return current if expiry > now + datetime.timedelta(days=300) else None

    fresh = wait_for(renewed, 30, "a replica renewing the certificate")
    assert fresh != before["tls.crt"]
    assert stored_bundle(installed)["ca.crt"] == before["ca.crt"]  # same CA: caBundle unchanged
    for replica in installed.replicas:
        wait_for(
            lambda r=replica: r.served_certificate() == der(fresh),
            30,
            f"replica on {replica.port} serving the renewed certificate",
        )
    assert [replica.process.pid for replica in installed.replicas] == pids
    assert all(replica.process.poll() is None for replica in installed.replicas)
    denied = plane.apply(pod("renewed", "e2e", "Bad:Ref"), "--dry-run=server")
    assert 'admission webhook "validate.pullguard.io" denied the request' in denied.stderr


def test_a_garbage_certificate_in_the_secret_is_repaired_by_the_running_replicas(
    installed: Installation,
) -> None:
    plane = installed.plane
    before = stored_bundle(installed)
    pids = [replica.process.pid for replica in installed.replicas]
    garbage = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    patch = {"data": {"tls.crt": garbage.decode()}}
    plane.kubectl(
        "patch", "secret", SECRET_NAME, "-n", NAMESPACE, "-p", json.dumps(patch), check=True
    )

    def repaired() -> bytes | None:
        current = stored_bundle(installed)["tls.crt"]
        try:
            return current if x509.load_pem_x509_certificate(current) else None
        except ValueError:
            return None

    fresh = wait_for(repaired, 30, "a replica repairing the certificate")
    assert stored_bundle(installed)["ca.crt"] == before["ca.crt"]
    for replica in installed.replicas:
        wait_for(
            lambda r=replica: r.served_certificate() == der(fresh),
            30,
            f"replica on {replica.port} serving the repaired certificate",
        )
    assert [replica.process.pid for replica in installed.replicas] == pids
    denied = plane.apply(pod("repaired", "e2e", "Bad:Ref"), "--dry-run=server")
    assert 'admission webhook "validate.pullguard.io" denied the request' in denied.stderr
