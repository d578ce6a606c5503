"""rev25a: an outside review of issue 25's policy controller (merge 16645fc), the parts a
fake API server or the rendered objects show. Each finding is an ``open_finding`` test that
fails today; the e2e ones are in tests/e2e/test_rev25a_review.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_mutation_mode import ONE, Clock, FakeApi, controller
from webhook.core.config import load_config_text
from webhook.core.mutationmode import webhook_condition
from webhook.core.mutationpolicy import render_binding
from webhook.edge.policycontroller import POLICIES

ROOT = Path(__file__).resolve().parents[2]
QUAY_MIRROR = "quay-mirror.example.com"


@pytest.mark.open_finding
def test_a_leader_that_lost_the_lease_mid_plan_does_not_set_its_condition() -> None:
    """Seen: the Lease is checked once, at the start of a pass; the plan then runs for
    seconds (two ``settle`` sleeps), and ``set_condition`` re-reads the webhook
    configuration before its resourceVersion "test", so nothing ties the condition it
    writes to the policy it rendered it for. Replica A (both mirrors answering) removes
    the condition and writes the policy for a new configuration, then stalls before
    setting the condition (a GC pause, CPU throttling, SIGSTOP: longer than the 15 s
    Lease); replica B takes the Lease, sees quay's mirror down, writes a policy that
    leaves quay.io images to /mutate and sets its condition; A wakes and sets its own
    condition, which says the policy handles quay.io images. Until B's next pass (2 s),
    a quay.io pod is mutated by neither: the fake API server records a gap.

    Expected: a writer re-checks that it still holds the Lease (its renewTime unchanged
    since it was read) right before each write, or the condition carries the policy's
    resourceVersion it was rendered for and is written only while that policy is stored;
    no gap.
    """
    api = FakeApi()
    two = load_config_text(
        "mirrors:\n  - registry: docker.io\n    mirror: mirror.example.com/other\n"
        "  - registry: quay.io\n    mirror: quay-mirror.example.com\n"
    )
    for config, down in ((ONE, frozenset()), (two, frozenset()), (two, frozenset({QUAY_MIRROR}))):
        api.allow(config, down)
    clock_a, clock_b = Clock(), Clock()
    holder_a: dict[str, Any] = {"config": ONE}
    holder_b: dict[str, Any] = {"config": two, "down": frozenset({QUAY_MIRROR})}
    a = controller(api, holder_a, identity="a", clock=clock_a)
    b = controller(api, holder_b, identity="b", clock=clock_b)
    a.sync()
    assert api.condition == webhook_condition(ONE) and api.gaps == []
    b.sync()  # B sees A's Lease and waits
    assert b.writes == []

    sleeps: list[float] = []

    def a_sleeps(seconds: float) -> None:
        clock_a.now += seconds
        sleeps.append(seconds)
        if len(sleeps) == 2:  # after the policy write, before the condition: A stalls
            clock_b.now += 20.0  # longer than the Lease, on B's clock
            b.sync()

    a.sleep = a_sleeps
    holder_a["config"] = two
    a.sync()
    assert b.writes, "the premise: B took the Lease and wrote while A stalled"
    stored = api.objects[POLICIES]
    assert api.gaps == [], (
        f"gaps {api.gaps}: the condition is A's ({api.condition == webhook_condition(two)}) "
        f"for a policy that leaves quay.io to /mutate ({'?' in str(stored['spec'])})"
    )


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector with matchExpressions In/NotIn and matchLabels, as the API server
    reads it."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression["values"]
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
    return True


@pytest.mark.open_finding
def test_the_binding_leaves_alone_the_namespaces_the_webhook_never_sees() -> None:
    """Seen: deploy/base/webhooks.yaml's mutating entry never sees kube-system (its
    namespaceSelector excludes it, "so an outage can never keep ... the control plane
    from restarting"), whatever the ConfigMap says; the binding excludes kube-system only
    while ``exemptNamespaces`` lists it. An admin whose ConfigMap says ``exemptNamespaces:
    [ci]`` (the documented key, replacing the default list) had no kube-system pod mutated
    in webhook mode; in policy mode the binding selects kube-system and the policy
    rewrites its pods (coredns, kube-proxy ...) to the mirrors, probe: false ones
    included. The same for any namespaceSelector or objectSelector an admin's overlay
    puts on the entry: the binding does not follow it.

    Expected: the binding selects no namespace that pullguard's mutating webhook entry
    does not select (rendered from, or intersected with, the entry's namespaceSelector
    and objectSelector, which the controller reads anyway).
    """
    config = load_config_text(
        "exemptNamespaces: [ci]\nmirrors:\n  - registry: docker.io\n"
        "    mirror: mirror.example.com/hub\n    probe: false\n"
    )
    documents = list(yaml.safe_load_all((ROOT / "deploy/base/webhooks.yaml").read_text()))
    (hook,) = [
        w
        for d in documents
        if d and d["kind"] == "MutatingWebhookConfiguration"
        for w in d["webhooks"]
        if w["name"] == "mutate.pullguard.io"
    ]
    binding = render_binding(config, own_namespace="pullguard")
    selector = binding["spec"]["matchResources"]["namespaceSelector"]
    for name in ("kube-system", "pullguard", "ci", "team-a"):
        labels = {"kubernetes.io/metadata.name": name}
        webhook_sees = _selects(hook["namespaceSelector"], labels)
        policy_mutates = _selects(selector, labels) and name not in config.exempt_namespaces
        assert not policy_mutates or webhook_sees, (
            f"the policy mutates pods in {name}, which /mutate never sees"
        )
