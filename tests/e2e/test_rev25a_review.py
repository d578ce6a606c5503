"""rev25a: an outside review of issue 25's policy controller (merge 16645fc), on a real
kube-apiserver 1.36.2.

Each finding is a test marked ``open_finding`` that fails today. They run on the control
plane of tests/e2e/test_mutation_policy.py (its ``policy`` fixture: pullguard's rendered
policy and binding, bound to one namespace, with a ``Warn`` probe of the webhook's
matchCondition), with deploy/'s RBAC (only) installed for the ServiceAccount checks.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest

from tests.e2e import test_mutation_policy as mp
from tests.e2e.cluster import wait_for
from tests.e2e.conftest import NAMESPACE, rendered_deploy, server_side_apply
from tests.e2e.test_mutation_policy import BOUND, DOWN, PLAIN, Policy, make_pod, normal
from webhook.core.mutate import mutate
from webhook.core.mutationmode import CONDITION_NAME, webhook_condition
from webhook.core.podspec import MAX_IMAGE_ENTRIES
from webhook.core.review import AdmissionRequest, UserInfo

pytestmark = pytest.mark.e2e

# test_mutation_policy's fixtures, used by name: a control plane of this module's own.
control_plane = mp.control_plane
policy = mp.policy

SERVICE_ACCOUNT = f"system:serviceaccount:{NAMESPACE}:pullguard"
RBAC_KINDS = (
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
)


def _install_rbac(policy: Policy) -> None:
    documents = [d for d in rendered_deploy(policy.plane) if d.get("kind") in RBAC_KINDS]
    server_side_apply(policy.plane, documents)


def _escalating_policy(name: str) -> list[dict[str, Any]]:
    """What a compromised pullguard pod could write with its ServiceAccount: a policy of
    another name that adds a subject to every ClusterRoleBinding written from now on (a
    way to cluster-admin), and its binding."""
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Ignore",
                "reinvocationPolicy": "Never",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": ["rbac.authorization.k8s.io"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["clusterrolebindings"],
                        }
                    ]
                },
                "mutations": [
                    {
                        "patchType": "JSONPatch",
                        "jsonPatch": {
                            "expression": '[JSONPatch{op: "add", path: "/subjects/-", value: '
                            '{"kind": "User", "name": "attacker", "apiGroup": '
                            '"rbac.authorization.k8s.io"}}]'
                        },
                    }
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {"policyName": name},
        },
    ]


@pytest.mark.open_finding
def test_pullguards_service_account_cannot_write_a_policy_of_another_name(policy: Policy) -> None:
    """Seen: deploy/base/rbac.yaml grants the pullguard ServiceAccount ``create`` on every
    mutatingadmissionpolicy and mutatingadmissionpolicybinding (RBAC cannot limit create by
    name, as its comment says), and nothing else limits it: as that ServiceAccount, a
    ``--dry-run=server`` create of a policy named ``not-pullguard`` that adds a subject to
    every ClusterRoleBinding, and of its binding, is admitted. A compromised pullguard pod
    (a hostile tenant's image parser exploit, a leaked token) can so mutate any object of
    any kind cluster-wide: Secrets, RBAC bindings, other admission configurations. Before
    issue 25 the ServiceAccount could patch only its own two webhook configurations.

    Expected: the install limits what that ServiceAccount may create to the names it owns
    (``pullguard-mirrors``), e.g. with a ValidatingAdmissionPolicy in deploy/ that denies
    its creates of any other name (``request.userInfo.username == "system:serviceaccount:
    pullguard:pullguard" && object.metadata.name != "pullguard-mirrors"``) and any policy
    whose matchConstraints go beyond Pod CREATEs; so both creates are forbidden.
    """
    _install_rbac(policy)
    admitted = []
    for document in _escalating_policy("not-pullguard"):
        result = policy.plane.kubectl(
            "create",
            f"--as={SERVICE_ACCOUNT}",
            "--dry-run=server",
            "-f",
            "-",
            stdin=json.dumps(document),
        )
        if result.ok:
            admitted.append(document["kind"])
    assert admitted == [], f"the pullguard ServiceAccount may create: {admitted}"


@pytest.mark.open_finding
def test_pullguards_service_account_cannot_widen_its_own_policy(policy: Policy) -> None:
    """Seen: the ServiceAccount may ``update`` the policy ``pullguard-mirrors`` with any
    spec: as that ServiceAccount, a ``--dry-run=server`` replace of the stored
    ``pullguard-mirrors`` whose matchConstraints match ClusterRoleBindings and whose
    mutation adds a subject to them (the same escalation, under the name RBAC allows) is
    admitted. resourceNames limit the name, not what the object does.

    Expected: what limits the first finding also limits the spec of pullguard's own
    objects: matchConstraints of Pod CREATEs only (``resourceRules`` of ``pods``, group
    ``""``), so this replace is forbidden.
    """
    _install_rbac(policy)
    stored = policy.plane.get_json("mutatingadmissionpolicy", "pullguard-mirrors")
    widened = _escalating_policy("pullguard-mirrors")[0]
    stored["spec"]["matchConstraints"] = widened["spec"]["matchConstraints"]
    stored["spec"]["mutations"] = widened["spec"]["mutations"]
    stored["spec"]["variables"] = []
    result = policy.plane.kubectl(
        "replace",
        f"--as={SERVICE_ACCOUNT}",
        "--dry-run=server",
        "-f",
        "-",
        stdin=json.dumps(stored),
    )
    assert not result.ok, "pullguard-mirrors on clusterrolebindings was admitted"
    print(result.stderr)


PROBE_HOOK = "rev25a-condition-probe"


def _probe_hook(policy: Policy, ns: str) -> dict[str, Any]:
    """A mutating webhook with exactly the matchCondition pullguard's controller writes
    (``webhook_condition``) and ``failurePolicy: Fail``, pointing at a port nobody serves:
    a create it skips is admitted (201), one it calls fails with "failed calling webhook"
    (500), and an error of the condition itself is a 403 naming the expression. (deploy/
    has ``failurePolicy: Ignore``: there that error silently skips /mutate.)"""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": PROBE_HOOK},
        "webhooks": [
            {
                "name": "probe.rev25a.pullguard.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Fail",
                "timeoutSeconds": 2,
                "clientConfig": {"url": "https://127.0.0.1:1/mutate"},
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ],
                "matchConditions": [
                    {
                        "name": CONDITION_NAME,
                        "expression": webhook_condition(policy.config, mirrors_down=DOWN),
                    }
                ],
            }
        ],
    }


def _create(policy: Policy, ns: str, pod: dict[str, Any]) -> httpx.Response:
    body = copy.deepcopy(pod)
    body["metadata"]["namespace"] = ns
    return policy.client.post(f"/api/v1/namespaces/{ns}/pods", params={"dryRun": "All"}, json=body)


def _with_probe(policy: Policy, ns: str, pods: list[dict[str, Any]]) -> list[httpx.Response]:
    policy.plane.apply(json.dumps(_probe_hook(policy, ns)), check=True)
    try:
        # The API server loads webhook configurations through an informer.
        wait_for(
            lambda: (
                _create(policy, ns, make_pod([{"name": "a", "image": "quay.io/a"}])).status_code
                == 500
            ),
            30,
            "the probe webhook in force",
        )
        return [_create(policy, ns, pod) for pod in pods]
    finally:
        policy.plane.kubectl("delete", "mutatingwebhookconfiguration", PROBE_HOOK)
        wait_for(
            lambda: (
                _create(policy, ns, make_pod([{"name": "a", "image": "quay.io/a"}])).status_code
                == 201
            ),
            30,
            "the probe webhook gone",
        )


def test_the_webhook_condition_does_not_err_on_a_pod_create(policy: Policy) -> None:
    """Seen: the matchCondition the controller writes starts with ``!(request.resource.group
    == "" && request.resource.resource == "pods" && request.subResource == "" && ...)``;
    ``subResource`` is absent from a Pod CREATE's request (omitempty), so the condition
    errs with "no such key: subResource" on every Pod CREATE it should skip (false) (the
    ``||`` hides it only when the pod needs /mutate). Under deploy/'s ``failurePolicy:
    Ignore`` the error happens to skip the webhook, as false would; the API server counts
    a matchCondition error for nearly every pod (apiserver_admission_match_condition_
    evaluation_errors_total), and an admin who sets ``failurePolicy: Fail`` on the
    mutating entry (webhooks.yaml's header speaks of switching to Fail) has every pod the
    policy handles denied: here ``nginx`` gets 403 "... resulted in error: no such key:
    subResource". Issue 25 item 4: "A matchCondition error must not deny (say how)";
    test_mutation_policy's probe checks ``needs_webhook_expression`` only, without that
    prefix, so it never saw this.

    Expected: the condition is false, without error, for a Pod CREATE the policy handles
    (``!has(request.subResource)`` or ``request.?subResource.orValue("") == ""``): the
    probe webhook is skipped and the create admitted (201).
    """
    (reply,) = _with_probe(policy, BOUND, [make_pod([{"name": "a", "image": "nginx"}])])
    assert reply.status_code == 201, (reply.status_code, reply.text[-300:])


@pytest.mark.open_finding
def test_a_long_pod_that_needs_mutate_is_mutated_by_one_of_the_two(policy: Policy) -> None:
    """Seen: a tenant's pod of 256 image entries (the cap) with long but valid references (a
    200-character path, a 128-character tag, a sha512 digest) that lists a pull secret
    (``hub-cred``; docker.io's mirror has no upstreamCredentials) needs /mutate: the
    policy leaves it alone (it comes back unchanged in the bound namespace) and /mutate
    would rewrite its registry.example.com images (the engine's patch). But the webhook's
    matchCondition exceeds the CEL cost limit on it: the probe gets 403 "... resulted in
    error: operation cancelled: actual cost limit exceeded", which under deploy/'s
    ``failurePolicy: Ignore`` skips /mutate. The pod is mutated by neither (64 and 128
    such entries are fine; docs/performance.md measured 256 entries of ~40 characters).

    Expected: a pod /mutate would change is changed by the policy or sends the webhook to
    /mutate (the probe's create fails with "failed calling webhook"); e.g. a cheap first
    term of the condition (the total length of the images, counted without regexes) that
    sends a pod this large to /mutate before any costly CEL runs.
    """
    tag, digest = "t" + "1" * 127, "sha512:" + "ab" * 64
    path = "team/" + "a" * 195
    half = MAX_IMAGE_ENTRIES // 2
    pod = make_pod(
        [{"name": f"c{i}", "image": f"docker.io/{path}{i}:{tag}@{digest}"} for i in range(half)],
        init=[
            {"name": f"i{i}", "image": f"registry.example.com/{path}{i}:{tag}"}
            for i in range(MAX_IMAGE_ENTRIES - half)
        ],
        secrets=["hub-cred"],
    )
    before, _ = policy.dry_run(PLAIN, pod)
    request = AdmissionRequest(
        uid="u",
        kind="Pod",
        namespace=PLAIN,
        name="p",
        operation="CREATE",
        sub_resource="",
        object=copy.deepcopy(before),
        old_object=None,
        dry_run=True,
        user=UserInfo(username="admin", groups=("system:masters",)),
    )
    mutation = mutate(request, policy.config, policy.cluster, mirrors_down=DOWN)
    assert mutation.patch, "the premise: /mutate changes this pod"
    bound, _ = policy.dry_run(BOUND, pod)
    by_policy = normal(bound) != normal(before)
    (reply,) = _with_probe(policy, BOUND, [pod])
    to_mutate = reply.status_code == 500 and "failed calling webhook" in reply.text
    assert by_policy or to_mutate, (
        f"mutated by neither: the policy changed nothing, and the condition gave "
        f"{reply.status_code}: {reply.json().get('message', '')[-120:]}"
    )
