"""Outside review of issue 22 (rev22), item 1: "the fix then says to create a new secret".

At admission, a refusal whose namespace already holds a secret that covers the image (here
the ServiceAccount's own "good", hidden by the pod's list) still gets the fix "kubectl create
secret docker-registry regcred-... --docker-username=USER --docker-password=PASSWORD, then
add {name: regcred-...}": a second copy of credentials the namespace has, which the person
must go and find. ``pullguard diagnose`` of the same pod says "imagePullSecret "good" in
namespace t2 already covers ...: kubectl patch ..." (seen on the real API server): the
admission denial should say the same, since the message already names the hidden "good".
"""

from __future__ import annotations

from tests.unit.builders import cluster_with, container, pod, pod_spec, pull_secret, request
from webhook.core.cluster import ServiceAccountInfo
from webhook.core.config import parse_config
from webhook.core.registry import Answer, FixedRegistry, Outcome
from webhook.core.validate import validate

PORTED = "registry.example.com:5000/team/app:1"


def test_a_refusal_points_at_the_namespaces_secret_that_covers_the_image() -> None:
    cluster = cluster_with(
        pull_secret("team-a", "noport", "registry.example.com"),
        pull_secret("team-a", "good", "registry.example.com:5000"),
        accounts=(ServiceAccountInfo("team-a", "default", ("good",)),),
    )
    registry = FixedRegistry({PORTED: Answer(Outcome.UNAUTHORIZED, "HTTP 401")})
    spec = pod_spec(container("web", PORTED), secrets=["noport"])
    decision = validate(request(pod(spec)), parse_config({}), cluster, registry=registry)
    assert not decision.allowed
    message = decision.message or ""
    assert 'hide ServiceAccount "default"\'s ("good")' in message  # it knows
    fix = message.split("Fix: ", 1)[1]
    assert "good" in fix, fix
    assert "--docker-password=PASSWORD" not in fix, fix
