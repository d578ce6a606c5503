"""Outside review of issue 22 (rev22): a false statement in the platform warning.

GKE taints every Arm node ``kubernetes.io/arch=arm64:NoSchedule`` (and mixed clusters
commonly taint the odd-architecture pool): a pod without the toleration never lands there.
The platform check judges the cluster's node *platforms* only, so every amd64-only image
gets "is linux/amd64 only: on linux/arm64 nodes it fails with exec format error", though
none of its pods can be scheduled on one. Seen on the real API server (nodes as objects):

    $ kubectl run typo -n t6 --image=localhost:55757/team/app:1.0 --dry-run=server
    Warning: pullguard: container "typo": localhost:55757/team/app:1.0 is linux/amd64 only:
      on linux/arm64 nodes it fails with exec format error

(node arm1 carries arch=arm:NoSchedule). The taints are known: the platform *fixes* use them.
"""

from __future__ import annotations

from tests.unit.builders import cluster_with, container, pod, pod_spec, request
from webhook.core.cluster import Taint
from webhook.core.config import parse_config
from webhook.core.registry import Answer, FixedRegistry, Outcome, Platform
from webhook.core.validate import validate

IMAGE = "registry.example.com/team/app:1"


def test_no_platform_warning_for_nodes_the_pod_cannot_be_scheduled_on() -> None:
    cluster = cluster_with()
    cluster.add_node("amd-1", "linux", "amd64")
    cluster.add_node(
        "arm-1", "linux", "arm64", taints=(Taint("kubernetes.io/arch", "arm64", "NoSchedule"),)
    )
    answer = Answer(Outcome.FOUND, platforms=(Platform("linux", "amd64"),))
    decision = validate(
        request(pod(pod_spec(container("web", IMAGE)))),
        parse_config({}),
        cluster,
        registry=FixedRegistry({IMAGE: answer}),
    )
    assert decision.allowed
    assert not [w for w in decision.warnings if "arm64" in w], decision.warnings
