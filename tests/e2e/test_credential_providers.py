"""Node credentials through the real API server (issue 24): a kubelet credential provider
plugin the test writes (speaking the real ``credentialprovider.kubelet.k8s.io/v1`` JSON), in
front of the real distribution registry with htpasswd on loopback standing in for ECR. The
pods carry no pull secret for it (or a stale one): only the provider's credentials serve."""

from __future__ import annotations

import base64
import stat
import sys
from pathlib import Path

import pytest

from tests.e2e.cluster import ControlPlane, wait_for
from tests.e2e.conftest import CONFIG, E2ERegistries, pod, pull_secret, set_config
from tests.integration.registries import push_image

pytestmark = pytest.mark.e2e

#: The plugin: the registry's own credentials for an image it matches, or a failure for a
#: repository under ``fail/`` (what an expired role or a broken binary looks like).
PLUGIN = f"""#!{sys.executable}
import json, sys
request = json.load(sys.stdin)
image = request["image"]
if "/fail/" in image:
    sys.stderr.write("AccessDenied: token password=hunter2 expired\\n")
    sys.exit(3)
print(json.dumps({{
    "kind": "CredentialProviderResponse",
    "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
    "cacheKeyType": "Image",
    "cacheDuration": "60s",
    "auth": {{image.split("/")[0]: {{"username": "user", "password": "pass"}}}},
}}))
"""

PROVIDERS = """apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: fake-ecr-credential-provider
    matchImages: ["{host}"]
    defaultCacheDuration: "1m"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
"""


def test_images_on_a_provider_registry_are_judged_with_the_node_credentials(
    plane: ControlPlane, ns: str, registries: E2ERegistries, tmp_path: Path
) -> None:
    host = registries.private.host
    push_image(registries.private, "node/app", "1.0")
    push_image(registries.private, "node/fail/app", "1.0")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    plugin = bin_dir / "fake-ecr-credential-provider"
    plugin.write_text(PLUGIN)
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    config = tmp_path / "providers.yaml"
    config.write_text(PROVIDERS.format(host=host))
    image = f"{host}/node/app:1.0"

    # Without the providers, the anonymous pull is refused: denied.
    assert not plane.apply(pod("before", ns, image), "--dry-run=server").ok
    set_config(
        plane,
        CONFIG
        + f"  imageCredentialProviderConfig: {config}\n"
        + f"  imageCredentialProviderBinDir: {bin_dir}\n",
    )
    try:
        # The config map reaches the server, then the provider document is read (every 2 s).
        wait_for(
            lambda: plane.apply(pod("probe", ns, image), "--dry-run=server").ok,
            30,
            "pullguard using the credential provider",
        )
        exists = plane.apply(pod("exists", ns, image), "--dry-run=server")
        assert exists.ok, exists.stderr
        assert "Warning" not in exists.stderr, exists.stderr

        missing = plane.apply(
            pod("missing", ns, f"{host}/node/app:never-pushed"), "--dry-run=server"
        )
        assert not missing.ok
        assert (
            f"image '{host}/node/app:never-pushed' does not exist: repository "
            f"{host}/node/app has no tag 'never-pushed'" in missing.stderr
        ), missing.stderr

        failing = plane.apply(pod("failing", ns, f"{host}/node/fail/app:1.0"), "--dry-run=server")
        assert failing.ok, failing.stderr
        assert (
            "credential provider fake-ecr-credential-provider failed for "
            f"{host}/node/fail/app:1.0: it exited with status 3" in failing.stderr
        ), failing.stderr
        assert "hunter2" not in failing.stderr

        # A stale pod secret first, then the provider's good credentials: the kubelet's order.
        wrong = base64.b64encode(b"user:wrong").decode()
        plane.apply(pull_secret("stale", ns, host, wrong), check=True)
        stale = plane.apply(pod("stale", ns, image, ("stale",)), "--dry-run=server")
        assert stale.ok, stale.stderr
        assert "Warning" not in stale.stderr, stale.stderr
    finally:
        set_config(plane, CONFIG)
