"""Outside review of issue 22 (rev22), item 2: "A default secret whose source has bad
credentials: fix pullguard/<source>".

The fix replaces the secret with ``kubectl delete secret S && kubectl create secret
docker-registry S --docker-server=<the refusing registry>``. A pull secret often holds
several registries (a default secret's ``registries: [a, b]``; a tenant's config.json):
run as printed, the new secret has one registry, and every pod pulling from the others
loses its credentials (the next denial, or ImagePullBackOff where pullguard is not asked).
The fix must keep the other entries (edit the one entry, or say that the secret covers
other.example.com too).
"""

from __future__ import annotations

import pytest

from tests.unit.builders import cluster_with, container, pod, pod_spec, pull_secret, request
from webhook.core.config import load_config_text
from webhook.core.registry import Answer, FixedRegistry, Outcome
from webhook.core.validate import validate

IMAGE = "registry.example.com/team/app:1"
DEFAULTS = (
    "defaultPullSecrets:\n"
    "  - {secret: hub, registries: [registry.example.com, other.example.com], "
    "sourceNamespace: pullguard}\n"
)


@pytest.mark.parametrize("config_text", [DEFAULTS, "{}"], ids=["default-secret", "own-secret"])
def test_replacing_a_refused_secret_keeps_its_other_registries(config_text: str) -> None:
    config = load_config_text(config_text)
    cluster = cluster_with(
        pull_secret("team-a", "hub", "registry.example.com", "other.example.com")
    )
    registry = FixedRegistry({IMAGE: Answer(Outcome.UNAUTHORIZED, tried=("team-a/hub",))})
    decision = validate(
        request(pod(pod_spec(container("web", IMAGE), secrets=["hub"]))),
        config,
        cluster,
        registry=registry,
    )
    assert not decision.allowed
    fix = (decision.message or "").split("Fix: ", 1)[1]
    # As printed, the recreated secret has registry.example.com only.
    assert not ("kubectl delete secret hub" in fix and "other.example.com" not in fix), fix
