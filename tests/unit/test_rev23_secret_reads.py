"""Review of issue 23 (rev23): the secret set is still read twice per template decision,
and the mutating side's reading (``mutate.pod_credentials``) has no cap.

The validating side reads at most MAX_PULL_SECRETS secrets per pod (reliability.md: 3,000
made-up names once cost 6,020 API-server GETs). On a real cluster each secret the cache
lacks is a direct read (edge/kube.KubeClusterView.get_secret), so the count of get_secret
calls is the count of API-server GETs for made-up names.
"""

from __future__ import annotations

import pytest

from tests.unit.builders import container, deployment, pod_spec, request
from tests.unit.test_validate import CountingCluster
from webhook.core.config import load_config_text
from webhook.core.validate import validate

DEFAULTS = load_config_text(
    "privateRegistries: [registry.example.com]\n"
    "defaultPullSecrets:\n  - secret: corp\n    registries: [registry.example.com]\n"
)
#: Found by review rev23, failing at d052423 and at fb97a5e: strict, so a fix flips them.
OPEN = pytest.mark.xfail(
    strict=True, reason="rev23: mutate.pod_credentials reads every listed secret"
)
IMAGE = "registry.example.com/team/app:1.0"
NAMES = [f"s{n}" for n in range(3000)]


def _cluster() -> CountingCluster:
    cluster = CountingCluster()
    cluster.add_namespace("team-a")
    return cluster


@OPEN
def test_a_template_decision_reads_each_secret_once() -> None:
    """The spine says the pod's secrets are read once per admission."""
    cluster = _cluster()
    decision = validate(
        request(deployment(pod_spec(container("web", IMAGE), secrets=["a", "b"]))),
        DEFAULTS,
        cluster,
    )
    assert not decision.allowed
    # a, b: once each; corp (the default the preview injects, missing): the preview's
    # _withheld reads it (and its source), read_secrets reads it again.
    assert cluster.secret_reads <= 3, cluster.secret_reads
