"""Mirror rewriting against real registries: an upstream with TLS and htpasswd, a second
distribution registry in proxy mode in front of it, and pullguard's rewrite in between."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REVIEWS, load_review, start_server, stop_server
from tests.integration.registries import (
    NEEDS_REGISTRY,
    Registry,
    loopback_tls,
    manifest_digest,
    push_image,
    start_registry,
)

pytestmark = NEEDS_REGISTRY


@dataclass
class Registries:
    private: Registry
    upstream: Registry
    mirror: Registry


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registries]:
    """A registry with htpasswd auth, and a mirror in front of another (anonymous) upstream.

    distribution 2.8 in proxy mode sends its upstream credentials only to a Bearer token
    realm it discovers from the upstream's challenge; an htpasswd (Basic) upstream is never
    sent them. So the mirror's upstream is anonymous, and auth is exercised on its own.
    """
    base = tmp_path_factory.mktemp("registries")
    tls = loopback_tls(base / "tls")
    private = start_registry(base / "private", auth=("pusher", "s3cret-pw"), **tls)
    upstream = start_registry(base / "upstream", **tls)
    mirror = start_registry(base / "mirror", proxy_of=upstream, **tls)
    yield Registries(private=private, upstream=upstream, mirror=mirror)
    for registry in (mirror, upstream, private):
        registry.stop()


def test_private_registry_requires_credentials(registries: Registries) -> None:
    private = registries.private
    anonymous = Registry(private.host, private.process, private.ca, private.log, None)
    with anonymous.client() as client:
        assert client.get("/v2/").status_code == 401
    digest = push_image(private, "team/secret-app", "1.0")
    assert manifest_digest(private, "team/secret-app", "1.0") == (200, digest)
    assert manifest_digest(anonymous, "team/secret-app", "1.0")[0] == 401


def test_rewritten_reference_resolves_through_the_mirror_to_the_same_digest(
    registries: Registries, tmp_path: Path
) -> None:
    upstream, mirror = registries.upstream, registries.mirror
    digest = push_image(upstream, "team/app", "1.0")
    config = tmp_path / "config.yaml"
    config.write_text(f"mirrors:\n  - registry: '{upstream.host}'\n    mirror: '{mirror.host}'\n")
    # pullguard probes the mirror before rewriting to it; it trusts the test CA as an admin
    # would have it trust a private one.
    server = start_server(
        tmp_path, "--config", str(config), env={"SSL_CERT_FILE": str(upstream.ca)}
    )
    try:
        review = load_review(REVIEWS / "pod-create-plain.json")
        request = review["body"]["request"]
        request["object"]["spec"]["containers"][0]["image"] = f"{upstream.host}/team/app:1.0"
        request["object"]["spec"]["initContainers"] = [
            {"name": "pinned", "image": f"{upstream.host}/team/app@{digest}"}
        ]
        with server.client() as client:
            response = client.post("/mutate", json=review["body"]).json()["response"]
    finally:
        stop_server(server)
    patch = json.loads(base64.b64decode(response["patch"]))
    images = {op["path"]: op["value"] for op in patch if op["path"].endswith("/image")}
    assert images == {
        "/spec/containers/0/image": f"{mirror.host}/team/app:1.0",
        "/spec/initContainers/0/image": f"{mirror.host}/team/app@{digest}",
    }
    # The mirror fetches from the upstream with its own credentials and serves the same bytes.
    assert manifest_digest(mirror, "team/app", "1.0") == (200, digest)
    assert manifest_digest(mirror, "team/app", digest) == (200, digest)
    assert manifest_digest(mirror, "team/never-pushed", "1.0")[0] == 404
