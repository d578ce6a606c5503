"""The API server authenticating itself to pullguard with a client certificate.

A real kube-apiserver is started with ``--admission-control-config-file``: its
``WebhookAdmissionConfiguration.kubeConfigFile`` names a client certificate for pullguard's
host:port. pullguard runs with ``--client-ca`` (the CA that signed it), so it answers only
connections that present a certificate that CA signed. The webhook has ``failurePolicy:
Fail``: a call pullguard refused (401) would fail the create with "failed calling webhook",
so a denial in pullguard's words proves the API server's certificate was accepted; a review
posted without one is refused.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import REVIEWS, Server, load_review, start_server, stop_server
from tests.e2e.cluster import ControlPlane, assets_folder, missing_assets_reason
from tests.e2e.conftest import namespace, pod
from tests.integration.test_port_attacks import client_certificate
from webhook.edge.certs import make_bundle

pytestmark = pytest.mark.e2e


def _admission_config(folder: Path, host: str, cert: tuple[Path, Path]) -> Path:
    """An AdmissionConfiguration whose webhook plugins authenticate to ``host`` (the
    webhook URL's host:port) with ``cert``."""
    kubeconfig = folder / "webhook-kubeconfig.yaml"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "users": [
                    {
                        "name": host,
                        "user": {"client-certificate": str(cert[0]), "client-key": str(cert[1])},
                    }
                ],
            }
        )
    )
    plugin = {
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "WebhookAdmissionConfiguration",
        "kubeConfigFile": str(kubeconfig),
    }
    config = folder / "admission-config.yaml"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "apiserver.config.k8s.io/v1",
                "kind": "AdmissionConfiguration",
                "plugins": [
                    {"name": "ValidatingAdmissionWebhook", "configuration": plugin},
                    {"name": "MutatingAdmissionWebhook", "configuration": plugin},
                ],
            }
        )
    )
    return config


@pytest.fixture(scope="module")
def authenticated(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ControlPlane, Server]]:
    assets = assets_folder()
    if assets is None:
        pytest.skip(missing_assets_reason())
    work = tmp_path_factory.mktemp("client-cert")
    client_ca = make_bundle(["api-server-client-ca"]).write(work / "client-ca")
    cert = client_certificate(
        work / "client", "kube-apiserver", ca=client_ca["ca.crt"], ca_key=client_ca["ca.key"]
    )
    server = start_server(work, "--client-ca", str(client_ca["ca.crt"]))
    host = f"127.0.0.1:{server.port}"
    plane = ControlPlane(
        assets, work / "plane", admission_config=_admission_config(work, host, cert)
    )
    (work / "plane").mkdir()
    try:
        plane.start()
        hook = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "pullguard-client-cert"},
            "webhooks": [
                {
                    "name": "validate.pullguard.io",
                    "clientConfig": {
                        "url": f"https://{host}/validate",
                        "caBundle": base64.b64encode(server.ca.read_bytes()).decode(),
                    },
                    "rules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["pods"],
                        }
                    ],
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "client-cert"}
                    },
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 10,
                }
            ],
        }
        plane.apply(json.dumps(hook), check=True)
        namespace(plane, "client-cert")
        yield plane, server
    finally:
        plane.stop()
        stop_server(server)


def test_the_api_server_authenticates_with_its_client_certificate(
    authenticated: tuple[ControlPlane, Server],
) -> None:
    plane, _server = authenticated
    denied = plane.apply(pod("shouting", "client-cert", "docker.io/Library/Nginx:1.25"))
    assert denied.returncode != 0
    # pullguard's own words: the API server's call was authenticated and judged.
    assert 'admission webhook "validate.pullguard.io" denied the request' in denied.stderr
    assert "can never be pulled" in denied.stderr, denied.stderr
    assert "failed calling webhook" not in denied.stderr


def test_a_review_without_the_certificate_is_refused(
    authenticated: tuple[ControlPlane, Server],
) -> None:
    _plane, server = authenticated
    body = load_review(REVIEWS / "pod-create-plain.json")["body"]
    with server.client() as client:  # trusts pullguard's certificate, presents none
        reply = client.post("/validate", json=body)
    assert reply.status_code == 401
    assert "client certificate" in reply.json()["response"]["status"]["message"]
    with pytest.raises(httpx.HTTPError), httpx.Client(verify=False) as anyone:
        anyone.post(f"{server.url}/mutate", json=body, timeout=5).raise_for_status()
