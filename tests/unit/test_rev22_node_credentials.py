"""Outside review of issue 22 (rev22): the anonymous-refusal warning for a registry the nodes
log in to themselves (``registry.nodeCredentialRegistries``: ECR, Artifact Registry, ACR).

pullguard asks anonymously, so *every* private ECR image on EKS is refused and warned about;
the warning rightly says "the nodes' own credentials may work", but its one fix is
``kubectl create secret docker-registry ... --docker-username=USER --docker-password=PASSWORD``:
on EKS the pull works through the node's IAM role (nothing to do), and where it does not, the
fix is the node role's ECR permission (or the kubelet credential provider), not a static
secret. A docker-registry secret for ECR needs user ``AWS`` and ``aws ecr
get-login-password``, which expires after 12 hours: as printed (USER/PASSWORD) it cannot
work, and done right it breaks again in 12 hours. The same for Artifact Registry
(``oauth2accesstoken``, a one-hour token, or ``_json_key``) and ACR.

The fix a person can act on says: nothing to do if the pods on these nodes pull it; else give
the nodes pull rights (and only as a last resort a secret, with the registry's real login).
"""

from __future__ import annotations

import pytest

from tests.unit.builders import cluster_with, container, pod, pod_spec, request
from webhook.core.config import parse_config
from webhook.core.registry import Answer, FixedRegistry, Outcome
from webhook.core.validate import validate

DEFAULT = parse_config({})


@pytest.mark.parametrize(
    "image",
    [
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:1.0",
        "europe-docker.pkg.dev/proj/repo/app:1",
        "myreg.azurecr.io/app:1",
    ],
)
def test_a_node_credential_registry_is_not_fixed_with_a_placeholder_static_secret(
    image: str,
) -> None:
    registry = FixedRegistry({image: Answer(Outcome.UNAUTHORIZED, "HTTP 401")})
    decision = validate(
        request(pod(pod_spec(container("web", image)))), DEFAULT, cluster_with(), registry=registry
    )
    assert decision.allowed
    fixes = [w for w in decision.warnings if w.startswith("pullguard: fix: ")]
    assert fixes, decision.warnings
    (fix,) = fixes
    # The first thing to say is the nodes' own credentials, not a made-up login.
    assert not fix.startswith("pullguard: fix: kubectl create secret docker-registry"), fix
    assert "--docker-username=USER --docker-password=PASSWORD" not in fix, fix
    assert "node" in fix, fix


def test_a_node_credential_refusal_does_not_say_the_kubelet_gets_the_same_answer() -> None:
    """The problem reads "...; the kubelet will get the same answer; but the nodes may
    authenticate to this registry themselves": the first half is what is not known."""
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:1.0"
    registry = FixedRegistry({image: Answer(Outcome.UNAUTHORIZED, "HTTP 401")})
    decision = validate(
        request(pod(pod_spec(container("web", image)))), DEFAULT, cluster_with(), registry=registry
    )
    (finding,) = [f for f in decision.findings if f.check == "registry"]
    assert "the kubelet will get the same answer" not in finding.problem, finding.problem
