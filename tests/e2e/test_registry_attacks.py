"""Registry-client attacks (issue 20) through the real API server, as a tenant with ``edit`` in
one namespace: the tenant's pull secret and pod, an attacker's registry on loopback."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests.e2e.cluster import ControlPlane
from tests.e2e.conftest import E2ERegistries, pod, pull_secret
from tests.integration.faults import Request, ScriptedServer

pytestmark = pytest.mark.e2e

PASSWORD = "victim-password-e2e"


def _editor(plane: ControlPlane, ns: str) -> Path:
    """A kubeconfig for ServiceAccount ``ns/dev`` with the built-in ``edit`` role in ``ns``."""
    plane.apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [
                    {
                        "apiVersion": "v1",
                        "kind": "ServiceAccount",
                        "metadata": {"name": "dev", "namespace": ns},
                    },
                    {
                        "apiVersion": "rbac.authorization.k8s.io/v1",
                        "kind": "RoleBinding",
                        "metadata": {"name": "dev-edit", "namespace": ns},
                        "roleRef": {
                            "apiGroup": "rbac.authorization.k8s.io",
                            "kind": "ClusterRole",
                            "name": "edit",
                        },
                        "subjects": [{"kind": "ServiceAccount", "name": "dev", "namespace": ns}],
                    },
                ],
            }
        ),
        check=True,
    )
    return plane.service_account_kubeconfig(ns, "dev")


def test_a_pods_password_never_reaches_a_realm_named_by_the_host_a_registry_redirects_to(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    folder = registries.ca.parent  # the registries' own CA signs the attacker's servers too
    tls = {"cert": folder / "tls.crt", "key": folder / "tls.key", "ca": registries.ca}

    def realm(request: Request) -> tuple[int, dict[str, str], bytes]:
        return 200, {}, b'{"token": "anonymous-token"}'

    realm_server = ScriptedServer(tls, realm)

    def other(request: Request) -> tuple[int, dict[str, str], bytes]:
        if request.headers.get("authorization") != "Bearer anonymous-token":
            challenge = f'Bearer realm="https://{realm_server.host}/token",service="b"'
            return 401, {"WWW-Authenticate": challenge}, b""
        return 200, {"Docker-Content-Digest": "sha256:" + "0" * 64}, b""

    other_server = ScriptedServer(tls, other)

    def attacked(request: Request) -> tuple[int, dict[str, str], bytes]:
        return 302, {"Location": f"https://{other_server.host}{request.path}"}, b""

    registry = ScriptedServer(tls, attacked)
    try:
        tenant = _editor(plane, ns)
        auth = base64.b64encode(f"victim:{PASSWORD}".encode()).decode()
        plane.kubectl(
            "apply",
            "-f",
            "-",
            stdin=pull_secret("regcred", ns, registry.host, auth),
            kubeconfig=tenant,
            check=True,
        )
        manifest = pod("app", ns, f"{registry.host}/team/app:1.0", ("regcred",))
        result = plane.kubectl(
            "apply", "--dry-run=server", "-f", "-", stdin=manifest, kubeconfig=tenant
        )
        assert registry.requests and other_server.requests and realm_server.requests
        for server in (realm_server, other_server):
            for request in server.requests:
                assert not request.headers.get("authorization", "").startswith("Basic"), request
                assert auth not in json.dumps(request.headers)
        # Found, anonymously, where the registry sent it (before the fix the realm got the
        # password, and its refusal of it denied the pod as "unauthorized").
        assert result.ok, result.stderr
    finally:
        for server in (registry, other_server, realm_server):
            server.stop()
