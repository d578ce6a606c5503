"""The MutatingAdmissionPolicy of webhook.core.mutationpolicy against /mutate's engine, through
the real API server (issue 25 item 3).

Each pod is created with ``dryRun=All`` twice: in a namespace the policy is not bound to (the
object every mutating step but pullguard's has made: defaults, the ServiceAccount plugin) and
in one it is bound to. ``webhook.core.mutate`` is run on the first, its JSON patch applied
with jsonpatch, and the result compared with the second: identical. Where the policy leaves
a pod to /mutate (it needs the pod's secrets, a mirror is down, a default secret may be
injected), the second equals the first, and the reason is one the engine shows.
"""

from __future__ import annotations

import copy
import json
import re
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.cluster import (
    ADMIN_TOKEN,
    ControlPlane,
    assets_folder,
    missing_assets_reason,
    wait_for,
)
from tests.e2e.conftest import namespace, pull_secret
from webhook.core.cluster import InMemoryCluster, SecretInfo
from webhook.core.config import Config, load_config_text
from webhook.core.mutate import ORIGINAL_IMAGES_ANNOTATION, mutate
from webhook.core.mutationpolicy import needs_webhook_expression, render_binding, render_policy
from webhook.core.podspec import MAX_IMAGE_ENTRIES
from webhook.core.review import AdmissionRequest, UserInfo

PLAIN, BOUND = "mp-plain", "mp-bound"
DOWN = frozenset({"quay-mirror.example.com"})
CONFIG_TEXT = """
mirrors:
  - registry: docker.io
    mirror: mirror.example.com/dockerhub
    exclude: [busybox, docker.io/bitnami/redis]
    probe: false
  - registry: ghcr.io
    mirror: ghcr-mirror.example.com:5000
    upstreamCredentials: true
  - registry: quay.io
    mirror: quay-mirror.example.com
  - registry: localhost:5000
    mirror: mirror.local:5001/local/cache
    probe: false
  - registry: registry.example.com
    mirror: hub.example.com
    probe: false
defaultPullSecrets:
  - secret: corp-pull
    registries: [corp.example.com, "*.corp.example.net"]
"""
SECRETS = {"hub-cred": "docker.io", "ghcr-cred": "ghcr.io", "corp-pull": "corp.example.com"}
DIGEST = "sha256:" + "0123456789abcdef" * 4


@dataclass
class Policy:
    plane: ControlPlane
    config: Config
    client: httpx.Client
    cluster: InMemoryCluster
    counts: dict[str, int] = field(default_factory=dict)

    def dry_run(self, ns: str, pod: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """The pod as ``ns`` would store it, and whether /mutate would be called for it (the
        probe policy's warning: the webhook's matchCondition, true)."""
        body = copy.deepcopy(pod)
        body["metadata"]["namespace"] = ns
        reply = self.client.post(
            f"/api/v1/namespaces/{ns}/pods", params={"dryRun": "All"}, json=body
        )
        assert reply.status_code == 201, reply.text
        warnings = reply.headers.get_list("warning")
        # (The API server's own warnings, e.g. for an empty pull secret name, are not ours.)
        result: dict[str, Any] = reply.json()
        return result, any(NEEDS_MARK in w for w in warnings)

    def compare(self, pod: dict[str, Any]) -> str:
        """Create ``pod`` both ways; return how the policy and /mutate's engine agreed."""
        before, needs = self.dry_run(PLAIN, pod)
        bound, needs_after = self.dry_run(BOUND, pod)
        request = AdmissionRequest(
            uid="u",
            kind="Pod",
            namespace=PLAIN,
            name=pod["metadata"]["name"],
            operation="CREATE",
            sub_resource="",
            object=copy.deepcopy(before),
            old_object=None,
            dry_run=True,
            user=UserInfo(username="admin", groups=("system:masters",)),
        )
        mutation = mutate(request, self.config, self.cluster, mirrors_down=DOWN)
        expected = jsonpatch.apply_patch(before, mutation.patch) if mutation.patch else before
        if needs:
            # Left to /mutate, which is called on the object as it was: it gives `expected`.
            # The policy changed nothing, for a reason that needs outside data.
            assert normal(bound) == normal(before), (pod, bound["spec"])
            assert needs_after, pod
            names = [s.get("name") for s in before["spec"].get("imagePullSecrets", [])]
            annotated = ORIGINAL_IMAGES_ANNOTATION in (before["metadata"].get("annotations") or {})
            assert (
                any(names)
                or mutation.skipped
                or mutation.withheld
                or mutation.injected_secrets
                or annotated
                or mutation.reason in ("too-many-images", "too-many-secrets")
            ), (pod, mutation)
            outcome = "left-to-webhook"
        else:
            # The policy alone: exactly /mutate's result, and /mutate not called after it.
            assert normal(bound) == normal(expected), (pod, mutation.patch, bound["spec"])
            assert not needs_after, (pod, bound["spec"])
            outcome = "same-unchanged" if mutation.patch is None else "same-mutated"
        # Whichever ran, the policy on the result changes nothing (its reinvocation, or its
        # run after /mutate's patch); after the policy's work /mutate is not called either.
        again, needs_again = self.dry_run(BOUND, resubmitted(expected))
        assert normal(again) == normal(expected), (pod, again["spec"])
        assert needs or not needs_again, pod
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        return outcome


def resubmitted(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` as a client would create it again (without what the server sets)."""
    out = copy.deepcopy(obj)
    for key in ("uid", "creationTimestamp", "managedFields", "resourceVersion"):
        out["metadata"].pop(key, None)
    out.pop("status", None)
    return out


def normal(obj: dict[str, Any]) -> str:
    """``obj`` without what differs between two dry-runs of one pod."""
    out = copy.deepcopy(obj)
    metadata = out["metadata"]
    for key in ("uid", "creationTimestamp", "namespace", "managedFields", "resourceVersion"):
        metadata.pop(key, None)
    text = json.dumps(out, sort_keys=True)
    return re.sub(r"kube-api-access-[a-z0-9]{5}", "kube-api-access-x", text)


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """This module's own control plane: the session's has pullguard's webhooks installed by
    the tests before it (tests/e2e/conftest.py ``installed``), whose /mutate rewrote the
    pods compared here in both namespaces (CI: every test here failed after the others ran;
    alone they passed)."""
    assets = assets_folder()
    if assets is None:
        pytest.skip(missing_assets_reason())
    plane = ControlPlane(assets, tmp_path_factory.mktemp("policy-plane")).start()
    try:
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="module")
def policy(control_plane: ControlPlane) -> Iterator[Policy]:
    config = load_config_text(CONFIG_TEXT)
    cluster = InMemoryCluster()
    for ns in (PLAIN, BOUND):
        namespace(control_plane, ns)
        for name, host in SECRETS.items():
            control_plane.apply(pull_secret(name, ns, host), check=True)
    for name, host in SECRETS.items():
        # The engine's view of the namespace it is asked about (the same secrets).
        secret = json.loads(pull_secret(name, PLAIN, host))
        cluster.add_secret(SecretInfo(PLAIN, name, secret["type"], secret["data"]))
    policy_doc = render_policy(config, mirrors_down=DOWN)
    binding = render_binding(config, own_namespace="pullguard")
    # Bound to one namespace only, so the other shows the object without it.
    binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"].append(
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [BOUND]}
    )
    control_plane.apply(json.dumps(policy_doc), check=True)
    control_plane.apply(json.dumps(binding), check=True)
    for document in needs_probe(config):
        control_plane.apply(json.dumps(document), check=True)
    client = httpx.Client(
        base_url=control_plane.server,
        verify=ssl.create_default_context(cafile=str(control_plane.ca)),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )
    state = Policy(control_plane, config, client, cluster)
    probe = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe"},
        "spec": {"containers": [{"name": "a", "image": "nginx"}]},
    }
    wait_for(
        lambda: (
            state.dry_run(BOUND, probe)[0]["spec"]["containers"][0]["image"] != "nginx"
            and state.dry_run(PLAIN, make_pod([{"name": "a", "image": "quay.io/a"}]))[1]
        ),
        60,
        "the MutatingAdmissionPolicy in force",
    )
    try:
        yield state
    finally:
        client.close()
        control_plane.kubectl(
            "delete", "mutatingadmissionpolicybinding", binding["metadata"]["name"]
        )
        control_plane.kubectl("delete", "mutatingadmissionpolicy", policy_doc["metadata"]["name"])
        control_plane.kubectl("delete", "validatingadmissionpolicybinding", NEEDS_PROBE)
        control_plane.kubectl("delete", "validatingadmissionpolicy", NEEDS_PROBE)


NEEDS_PROBE = "pullguard-needs-webhook-probe"
NEEDS_MARK = "pullguard-needs-webhook"


def needs_probe(config: Config) -> list[dict[str, Any]]:
    """A ValidatingAdmissionPolicy that warns exactly when /mutate's matchCondition
    (needs_webhook_expression, one CEL expression as a webhook takes it) is true."""
    rules = [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
    ]
    return [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": NEEDS_PROBE},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": rules},
                "validations": [
                    {
                        "expression": "!("
                        + needs_webhook_expression(config, mirrors_down=DOWN)
                        + ")",
                        "message": NEEDS_MARK,
                    }
                ],
            },
        },
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": NEEDS_PROBE},
            "spec": {
                "policyName": NEEDS_PROBE,
                "validationActions": ["Warn"],
                "matchResources": {
                    "namespaceSelector": {
                        "matchExpressions": [
                            {
                                "key": "kubernetes.io/metadata.name",
                                "operator": "In",
                                "values": [PLAIN, BOUND],
                            }
                        ]
                    }
                },
            },
        },
    ]


def make_pod(
    containers: list[dict[str, Any]],
    *,
    init: list[dict[str, Any]] | None = None,
    volumes: list[dict[str, Any]] | None = None,
    secrets: list[str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": containers}
    if init:
        spec["initContainers"] = init
    if volumes:
        spec["volumes"] = volumes
    if secrets is not None:
        spec["imagePullSecrets"] = [{"name": s} for s in secrets]
    metadata: dict[str, Any] = {"name": "p"}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


FIXED = [
    make_pod(
        [
            {"name": "a", "image": "nginx"},
            {"name": "b", "image": "ghcr.io/org/app:1.0"},
            {"name": "c", "image": "busybox"},
            {"name": "d", "image": "nginx", "imagePullPolicy": "Never"},
            {"name": "e", "image": "docker.io/library/nginx:1.25"},
            {"name": "f", "image": "Ghcr.io/x/y"},
            {"name": "g", "image": f"index.docker.io/bitnami/redis:7@{DIGEST}"},
            {"name": "h", "image": f"localhost:5000/app:2@{DIGEST}"},
        ],
        init=[{"name": "init", "image": f"library/alpine@{DIGEST}"}],
        volumes=[{"name": "models", "image": {"reference": "ghcr.io/models/m:v1"}}],
    ),
    make_pod([{"name": "a", "image": "nginx"}], annotations={"team": "a"}),
    make_pod([{"name": "a", "image": "nginx"}], secrets=["hub-cred"]),
    make_pod([{"name": "a", "image": "ghcr.io/x/y"}], secrets=["ghcr-cred"]),
    make_pod([{"name": "a", "image": "quay.io/x/y"}]),
    make_pod([{"name": "a", "image": "corp.example.com/x/y"}]),
    make_pod([{"name": "a", "image": "mirror.example.com/dockerhub/library/nginx"}]),
    make_pod([{"name": "a", "image": "a/" + "b" * 250}]),
    make_pod([{"name": "a", "image": "nginx:"}, {"name": "b", "image": "UPPER/x"}]),
]
FIXED_OUTCOMES = [
    "same-mutated",
    "same-mutated",
    "left-to-webhook",  # the pod lists a secret: its contents decide docker.io's rewrite
    "same-mutated",  # ghcr.io's mirror has upstream credentials
    "left-to-webhook",  # quay.io's mirror is down: /mutate warns
    "left-to-webhook",  # a default pull secret may be injected
    "same-unchanged",
    "same-unchanged",  # too long a path on the mirror (262 characters with its prefix)
    "same-unchanged",  # invalid references
]


def test_fixed_pods_get_what_mutate_gives(policy: Policy) -> None:
    outcomes = [policy.compare(pod) for pod in FIXED]
    assert outcomes == FIXED_OUTCOMES
    first, _ = policy.dry_run(BOUND, FIXED[0])
    images = {c["name"]: c["image"] for c in first["spec"]["containers"]}
    assert images["a"] == "mirror.example.com/dockerhub/library/nginx"
    assert images["g"] == f"index.docker.io/bitnami/redis:7@{DIGEST}"  # excluded
    assert images["h"] == f"mirror.local:5001/local/cache/app:2@{DIGEST}"


# -- the property -----------------------------------------------------------------------

HOSTS = [
    None,
    "docker.io",
    "index.docker.io",
    "Docker.io",
    "ghcr.io",
    "GHCR.IO",
    "quay.io",
    "localhost:5000",
    "localhost",
    "registry.example.com",
    "registry.example.com:5000",
    "corp.example.com",
    "a.corp.example.net",
    "[::1]:5000",
    "mirror.example.com",
    "a_b.c",
]
PATHS = [
    "nginx",
    "library/nginx",
    "busybox",
    "library/busybox",
    "bitnami/redis",
    "org/team/app",
    "a-b__c.d/e",
    "x" * 240,
    "a/" + "b" * 246,
    "a/" + "b" * 250,
    "UPPER",
    "0123456789abcdef" * 4,
]
TAGS = [None, None, None, "1.25", "1.25", "latest", "v1_2-3.x", "Tag", "", "a" * 128, "a" * 129]
DIGESTS = [
    None,
    None,
    None,
    None,
    DIGEST,
    DIGEST,
    "sha512:" + "ab" * 64,
    "sha256:" + "AB" * 32,
    "sha256:abc",
    "md5:" + "0" * 32,
]


@st.composite
def references(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(alphabet="aA0.:/@_-[]", min_size=1, max_size=20))
    host = draw(st.sampled_from(HOSTS))
    out = (host + "/" if host else "") + draw(st.sampled_from(PATHS))
    tag = draw(st.sampled_from(TAGS))
    if tag is not None:
        out += ":" + tag
    digest = draw(st.sampled_from(DIGESTS))
    if digest is not None:
        out += "@" + digest
    return out


POLICIES = st.sampled_from([None, "Always", "IfNotPresent", "Never"])


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    def entry(name: str) -> dict[str, Any]:
        out: dict[str, Any] = {"name": name, "image": draw(references())}
        policy = draw(POLICIES)
        if policy:
            out["imagePullPolicy"] = policy
        return out

    containers = [entry(f"c{i}") for i in range(draw(st.integers(1, 3)))]
    init = [entry(f"i{i}") for i in range(draw(st.integers(0, 2)))]
    volumes = []
    for i in range(draw(st.integers(0, 2))):
        source: dict[str, Any] = {"reference": draw(references())}
        policy = draw(POLICIES)
        if policy:
            source["pullPolicy"] = policy
        volumes.append({"name": f"v{i}", "image": source})
    secrets = draw(
        st.sampled_from([None, None, None, [], [""], ["hub-cred"], ["ghcr-cred"], ["missing"]])
    )
    annotations = draw(
        st.sampled_from([None, None, {"team": "a"}, {ORIGINAL_IMAGES_ANNOTATION: '{"c0":"nginx"}'}])
    )
    return make_pod(
        containers, init=init, volumes=volumes, secrets=secrets, annotations=annotations
    )


EXAMPLES = 1000


def test_generated_pods_get_what_mutate_gives(policy: Policy) -> None:
    seen: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(pods())
    def check(pod: dict[str, Any]) -> None:
        seen.append(policy.compare(pod))

    started = time.monotonic()
    check()
    took = time.monotonic() - started
    counts = {k: seen.count(k) for k in sorted(set(seen))}
    print(f"\n{len(seen)} generated pods compared in {took:.1f}s: {counts}")
    assert len(seen) >= EXAMPLES
    # The comparison means something only if the policy rewrote many of them, and left
    # many to /mutate.
    assert counts.get("same-mutated", 0) >= EXAMPLES // 10, counts
    assert counts.get("left-to-webhook", 0) >= EXAMPLES // 10, counts


@pytest.mark.parametrize("entries", [MAX_IMAGE_ENTRIES, MAX_IMAGE_ENTRIES + 1])
def test_the_largest_pods_stay_within_the_cel_cost_budget(policy: Policy, entries: int) -> None:
    """At the cap every entry is rewritten in-process (a CEL cost error would admit the pod
    as written, and skip the webhook too); past it the pod is /mutate's, which warns."""
    half = entries // 2
    pod = make_pod(
        [
            {"name": f"c{i}", "image": f"index.docker.io/team/app-{i}:1@{DIGEST}"}
            for i in range(half)
        ],
        init=[
            {"name": f"i{i}", "image": f"ghcr.io/org/tool-{i}:v2"} for i in range(entries - half)
        ],
    )
    outcome = policy.compare(pod)
    assert outcome == ("same-mutated" if entries == MAX_IMAGE_ENTRIES else "left-to-webhook")


def test_the_webhook_condition_is_accepted_as_a_match_condition(policy: Policy) -> None:
    """The API server takes needs_webhook_expression as a mutating webhook's matchCondition
    (compiled and cost-checked on write). Scoped to a namespace nothing uses."""
    webhook = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "pullguard-condition-probe"},
        "webhooks": [
            {
                "name": "mutate.pullguard.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "NoneOnDryRun",
                "failurePolicy": "Ignore",
                "clientConfig": {"url": "https://127.0.0.1:1/mutate"},
                "namespaceSelector": {
                    "matchLabels": {"kubernetes.io/metadata.name": "mp-nothing-here"}
                },
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
                        "name": "needs-outside-data",
                        "expression": needs_webhook_expression(policy.config, mirrors_down=DOWN),
                    }
                ],
            }
        ],
    }
    result = policy.plane.apply(json.dumps(webhook))
    try:
        assert result.ok, result.stderr
    finally:
        policy.plane.kubectl("delete", "mutatingwebhookconfiguration", "pullguard-condition-probe")
