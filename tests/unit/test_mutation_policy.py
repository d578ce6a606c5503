"""The shape of the MutatingAdmissionPolicy and binding rendered from the configuration.

What the CEL does is proven through the real API server (tests/e2e/test_mutation_policy.py);
these pin what the objects say and that the configuration reaches them.
"""

from __future__ import annotations

import re

from webhook.core.config import load_config_text
from webhook.core.mutationpolicy import (
    NEEDS_WEBHOOK,
    POLICY_NAME,
    needs_webhook_expression,
    policy_variables,
    render_binding,
    render_policy,
)

CONFIG = load_config_text(
    """
exemptNamespaces: [kube-system, infra]
mirrors:
  - registry: docker.io
    mirror: mirror.example.com/dockerhub
    exclude: [busybox]
  - registry: ghcr.io
    mirror: ghcr-mirror.example.com:5000
    upstreamCredentials: true
defaultPullSecrets:
  - secret: corp-pull
    registries: ["*.corp.example.com"]
"""
)


def variable(name: str, **kwargs: object) -> str:
    found = {v["name"]: v["expression"] for v in policy_variables(CONFIG, **kwargs)}  # type: ignore[arg-type]
    return found[name]


def test_the_policy_mutates_pod_creates_and_admits_on_error() -> None:
    policy = render_policy(CONFIG)
    assert policy["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert policy["kind"] == "MutatingAdmissionPolicy"
    assert policy["metadata"]["name"] == POLICY_NAME
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Ignore"
    assert spec["reinvocationPolicy"] == "IfNeeded"
    assert spec["matchConstraints"]["resourceRules"] == [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
    ]
    (mutation,) = spec["mutations"]
    assert mutation["patchType"] == "JSONPatch"
    expression = mutation["jsonPatch"]["expression"]
    assert expression.startswith("variables.needsWebhook || size(variables.rewrites) == 0 ? []")
    assert "pullguard.io/original-images" in expression


def test_each_mirror_and_exclude_is_in_the_cel() -> None:
    targets = variable("targets")
    assert '"mirror.example.com/dockerhub/" + r[5] + r[6]' in targets
    assert '"ghcr-mirror.example.com:5000/" + r[5] + r[6]' in targets
    assert '["docker.io/library/busybox"]' in targets
    # docker.io's mirror has no upstream credentials: a pod with secrets goes to /mutate.
    docker_arm = targets.split('r[4] == "ghcr.io"')[0]
    assert "variables.hasSecrets" in docker_arm
    assert "variables.hasSecrets" not in targets.split('r[4] == "ghcr.io"')[1]


def test_a_mirror_that_is_down_is_left_to_the_webhook() -> None:
    up = variable("targets")
    down = variable("targets", mirrors_down={"mirror.example.com"})
    assert up != down
    assert '"mirror.example.com/dockerhub/"' not in down
    assert '"?"' in down
    # A mirror without a probe is always in force.
    unprobed = load_config_text(
        "mirrors: [{registry: docker.io, mirror: m.example.com, probe: false}]"
    )
    assert render_policy(unprobed, mirrors_down={"m.example.com"}) == render_policy(unprobed)


def test_default_pull_secrets_send_pods_of_their_registries_to_the_webhook() -> None:
    needs = variable(NEEDS_WEBHOOK)
    assert '"corp-pull" in variables.secretNames' in needs
    assert re.search(r"\(\?i\)\^\[\^\.:\]\*\\\\\.corp", needs), needs
    none = load_config_text("mirrors: [{registry: docker.io, mirror: m.example.com}]")
    assert needs_webhook_expression(none).endswith("(false)")


def test_the_binding_skips_own_exempt_and_mode_off_namespaces() -> None:
    binding = render_binding(CONFIG, own_namespace="pullguard")
    assert binding["kind"] == "MutatingAdmissionPolicyBinding"
    assert binding["spec"]["policyName"] == POLICY_NAME
    expressions = binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"]
    assert expressions == [
        {
            "key": "kubernetes.io/metadata.name",
            "operator": "NotIn",
            "values": ["infra", "kube-system", "pullguard"],
        },
        {"key": "pullguard.io/mode", "operator": "NotIn", "values": ["off"]},
    ]


def test_the_webhook_condition_has_no_variables() -> None:
    text = needs_webhook_expression(CONFIG)
    assert "variables." not in text
    assert text.count("(") == text.count(")")
