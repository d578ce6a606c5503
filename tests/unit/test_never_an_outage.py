"""Issue 19, "never the cause of an outage": the core rules behind items 2, 3, 5, 7 and 8.

Each test is a case the platform engineer's kubectl run found denied (or matched wrongly)
where the pod would have run; the end-to-end twins are in tests/e2e/test_never_an_outage.py.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import httpcore
import pytest

from tests.unit.builders import (
    cluster_with,
    container,
    deployment,
    image_volume,
    pod,
    pod_spec,
    pull_secret,
    request,
)
from webhook.core.cluster import ServiceAccountInfo
from webhook.core.config import ConfigError, load_config_text
from webhook.core.hosts import host_matches
from webhook.core.registry import Answer, FixedRegistry, Outcome
from webhook.core.validate import validate
from webhook.edge.registry import GuardedBackend

FOUND = Answer(Outcome.FOUND, "HTTP 200")
REFUSED = Answer(Outcome.UNAUTHORIZED, "HTTP 401")
NOT_FOUND = Answer(Outcome.NOT_FOUND, "HTTP 404", repository_exists=False)

# -- item 2: a default pull secret is an optimisation, not a requirement ------------------

HUB_DEFAULT = load_config_text(
    "defaultPullSecrets:\n"
    "  - secret: hub-pull\n    registries: [docker.io]\n    sourceNamespace: pullguard\n"
)
HUB_IMAGE = "docker.io/library/nginx:1.25"
OWNED = [
    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "w", "uid": "u", "controller": True}
]
EMPTY = load_config_text("{}")


def _hub_pod(*, owned: bool = False) -> dict[str, object]:
    # What the mutating webhook left: hub-pull injected, its copy into team-a failed.
    obj = pod(pod_spec(container("web", HUB_IMAGE), secrets=["hub-pull"]))
    if owned:
        obj["metadata"]["ownerReferences"] = OWNED  # type: ignore[index]
    return obj


@pytest.mark.parametrize("owned", [False, True], ids=["by-hand", "scale-up"])
def test_a_default_secret_whose_copy_failed_never_denies_an_anonymous_pull(owned: bool) -> None:
    source = cluster_with(pull_secret("pullguard", "hub-pull", "docker.io"))
    registry = FixedRegistry({HUB_IMAGE: FOUND})
    decision = validate(request(_hub_pod(owned=owned)), HUB_DEFAULT, source, registry=registry)
    assert decision.allowed, decision.message
    # A Pod is judged by the copy's source (issue 20: its copy follows the real Pod, so it
    # may not exist yet when the Pod is judged): nothing about the copy is certain here.
    (question,) = registry.asked
    assert question.credentials, "asked with the source secret's credentials"
    # Without a registry answer (offline check, registry unreachable) it cannot be known
    # either way: still a warning, never a denial.
    offline = validate(request(_hub_pod(owned=owned)), HUB_DEFAULT, source)
    assert offline.allowed, offline.message


def test_an_unreachable_registry_never_says_a_missing_secret_is_not_needed() -> None:
    # pullguard cannot know the registry serves the image without it (issue 19 review F6a;
    # a default secret's copy is judged by its source since issue 20, so a pod's own here).
    obj = pod(pod_spec(container("web", HUB_IMAGE), secrets=["regcred"]))
    registry = FixedRegistry({HUB_IMAGE: Answer(Outcome.UNREACHABLE, "connection refused")})
    decision = validate(request(obj), EMPTY, cluster_with(), registry=registry)
    assert decision.allowed, decision.message
    said = " ".join(decision.warnings)
    assert "(not checked: the registry could not be reached)" in said, said
    assert "(not needed)" not in said


def test_a_default_secret_still_denies_when_the_registry_refuses_without_it() -> None:
    # "unless the registry refuses the pull without it": then the pod fails for certain.
    registry = FixedRegistry({HUB_IMAGE: REFUSED})
    decision = validate(request(_hub_pod()), HUB_DEFAULT, cluster_with(), registry=registry)
    assert not decision.allowed
    assert 'imagePullSecret "hub-pull" does not exist in namespace "team-a"' in (
        decision.message or ""
    )


def test_a_default_secrets_registry_listed_as_private_still_needs_it() -> None:
    config = load_config_text(
        "privateRegistries: [corp.example.com]\n"
        "defaultPullSecrets:\n"
        "  - secret: corp\n    registries: [corp.example.com]\n    sourceNamespace: pullguard\n"
    )
    obj = pod(pod_spec(container("app", "corp.example.com/a:1"), secrets=["corp"]))
    assert not validate(request(obj), config, cluster_with()).allowed


# -- item 3: imagePullPolicy Never is never pulled, so never asked about ---------------


def test_pull_policy_never_is_not_asked_about_at_the_registry() -> None:
    image = "registry.example.com/team/preloaded:1"
    registry = FixedRegistry({image: NOT_FOUND})
    obj = pod(pod_spec(container("app", image, "Never")))
    decision = validate(request(obj), EMPTY, cluster_with(), registry=registry)
    assert decision.allowed, decision.message
    assert registry.asked == []
    # The pull-policy advice about Never stays.
    assert any("imagePullPolicy Never" in w for w in decision.warnings)


def test_pull_policy_never_needs_no_credentials() -> None:
    config = load_config_text("privateRegistries: [registry.example.com]\n")
    image = "registry.example.com/team/preloaded:1"
    for obj in (
        pod(pod_spec(container("app", image, "Never"))),
        pod(pod_spec(container("app", image, "Never"), secrets=["gone"])),
        deployment(pod_spec(container("app", image, "Never"))),
    ):
        decision = validate(request(obj), config, cluster_with(), registry=FixedRegistry())
        assert decision.allowed, decision.message
    listed = pod(pod_spec(container("app", image, "Never"), secrets=["gone"]))
    decision = validate(request(listed), config, cluster_with(), registry=FixedRegistry())
    (gone,) = [f for f in decision.findings if f.check == "pullSecrets"]
    assert "the kubelet pulls none of its images (pull policy Never)" in gone.problem


def test_an_image_volume_with_pull_policy_never_is_not_asked_about() -> None:
    reference = "registry.example.com/models/llm:1"
    registry = FixedRegistry({reference: NOT_FOUND})
    spec = pod_spec(
        container("app", "registry.k8s.io/pause:3.10"),
        volumes=[image_volume("models", reference, "Never")],
    )
    registry.answers["registry.k8s.io/pause:3.10"] = FOUND
    decision = validate(request(pod(spec)), EMPTY, cluster_with(), registry=registry)
    assert decision.allowed, decision.message
    assert [q.image for q in registry.asked] == ["registry.k8s.io/pause:3.10"]


def test_pull_policy_never_still_denies_a_reference_the_runtime_cannot_parse() -> None:
    # The kubelet parses the reference before it looks at the policy (InvalidImageName).
    obj = pod(pod_spec(container("app", "Registry.Example.com/Team/App:1", "Never")))
    assert not validate(request(obj), EMPTY, cluster_with()).allowed


def test_pull_policy_never_beside_a_pulled_image_judges_only_the_pulled_one() -> None:
    config = load_config_text("privateRegistries: [registry.example.com]\n")
    spec = pod_spec(
        container("cached", "registry.example.com/a:1", "Never"),
        container("pulled", "registry.example.com/b:1", "IfNotPresent"),
    )
    decision = validate(request(pod(spec)), config, cluster_with())
    assert not decision.allowed
    assert "registry.example.com/b:1" in (decision.message or "")
    assert "registry.example.com/a:1" not in (decision.message or "")


# -- item 5: the order of kubectl apply -f dir/ does not matter -----------------------

PRIVATE = load_config_text("privateRegistries: [registry.example.com]\n")


def test_a_template_whose_service_account_does_not_exist_yet_only_warns() -> None:
    spec = pod_spec(container("web", "registry.example.com/team/web:1"), sa="builder")
    decision = validate(request(deployment(spec)), PRIVATE, cluster_with())
    assert decision.allowed, decision.message
    text = "\n".join(decision.warnings)
    assert 'ServiceAccount "builder" does not exist yet' in text
    assert "create secret" not in text  # never told to create a secret it may not need
    # A refusal from the registry is no more certain: the account's secrets may cover it.
    refused = FixedRegistry({"registry.example.com/team/web:1": REFUSED})
    asked = validate(request(deployment(spec)), PRIVATE, cluster_with(), registry=refused)
    assert asked.allowed, asked.message
    # Nor told to create one: the refusal's fix (a new secret) waits for the account, and
    # a fix line is no longer dropped for its length (WARNING_FIX_MAX).
    said = "\n".join(asked.warnings)
    assert "refused" in said and "create secret" not in said, said
    assert "create ServiceAccount builder" in said
    # Once the account exists, its (missing) secrets are judged as before.
    account = ServiceAccountInfo("team-a", "builder", ())
    later = validate(request(deployment(spec)), PRIVATE, cluster_with(accounts=(account,)))
    assert not later.allowed


def test_a_template_with_its_own_secrets_is_judged_whatever_its_account() -> None:
    # Its own list is what its pods use (the ServiceAccount plugin adds nothing then).
    spec = pod_spec(
        container("web", "registry.example.com/team/web:1"), sa="builder", secrets=["regcred"]
    )
    decision = validate(request(deployment(spec)), PRIVATE, cluster_with())
    assert not decision.allowed
    assert 'imagePullSecret "regcred" does not exist' in (decision.message or "")


def test_a_template_whose_account_is_missing_still_denies_certain_failures() -> None:
    spec = pod_spec(container("web", "registry.example.com/Team/web:1"), sa="builder")
    assert not validate(request(deployment(spec)), PRIVATE, cluster_with()).allowed
    found = FixedRegistry({"registry.example.com/team/web:1": NOT_FOUND})
    spec = pod_spec(container("web", "registry.example.com/team/web:1"), sa="builder")
    decision = validate(request(deployment(spec)), PRIVATE, cluster_with(), registry=found)
    assert not decision.allowed  # does not exist at all, whoever asks


# -- item 7: kubectl debug of a controller's pod is a person's change -----------------


def test_kubectl_debug_of_a_controllers_pod_is_judged_as_a_persons_change() -> None:
    old = pod(pod_spec(container("app", "registry.k8s.io/pause:3.10")))
    old["metadata"]["ownerReferences"] = OWNED
    new = pod(pod_spec(container("app", "registry.k8s.io/pause:3.10")))
    new["metadata"]["ownerReferences"] = old["metadata"]["ownerReferences"]
    new["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "ghcr.io/acme/nope:1"}]
    registry = FixedRegistry({"ghcr.io/acme/nope:1": NOT_FOUND})
    review = request(new, operation="UPDATE", old=old, sub_resource="ephemeralcontainers")
    decision = validate(review, EMPTY, cluster_with(), registry=registry)
    assert not decision.allowed
    assert 'ephemeral container "debugger"' in (decision.message or "")
    # The controller's own pods keep the leniency (a template-made pod, same answer).
    made = pod(pod_spec(container("app", "ghcr.io/acme/nope:1")))
    made["metadata"]["ownerReferences"] = old["metadata"]["ownerReferences"]
    by_rs = request(made, user="system:serviceaccount:kube-system:replicaset-controller")
    assert validate(by_rs, EMPTY, cluster_with(), registry=registry).allowed


# -- item 8: IPv6 registries, as users write them and as images name them --------------


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("2001:db8::1", "[2001:db8::1]"),
        ("::1", "[::1]"),
        ("[::1]:5000", "[::1]:5000"),
        ("[2001:DB8:0:0::1]:5000", "[2001:db8::1]:5000"),
    ],
)
def test_ipv6_registries_are_accepted_as_users_write_them(written: str, stored: str) -> None:
    config = load_config_text(
        f"privateRegistries: ['{written}']\nregistry: {{allowedPrivateRegistries: ['{written}']}}\n"
    )
    assert config.private_registries == (stored,)
    assert config.registry.allowed_private_registries == (stored,)


def test_an_ipv6_address_with_a_port_must_be_bracketed() -> None:
    with pytest.raises(ConfigError, match=r"registry\.allowedPrivateRegistries\[0\]"):
        load_config_text("registry: {allowedPrivateRegistries: ['not:an::ipv6:x']}\n")


@pytest.mark.parametrize(
    ("pattern", "hostport", "matches"),
    [
        ("[::1]:5000", "[::1]:5000", True),
        ("[2001:db8::1]", "[2001:0db8:0000::1]", True),  # one address, two spellings
        ("[::1]:5000", "[::1]:5001", False),
        ("[::1]", "[::1]:5000", False),  # ports must be equal, as for any host
        ("[::1]", "[::2]", False),
    ],
)
def test_ipv6_hosts_match_by_address(pattern: str, hostport: str, matches: bool) -> None:
    assert host_matches(pattern, hostport) is matches


class _Connected(Exception):
    """Raised by the fake inner backend: the guard let the connection through."""


class _Inner(httpcore.NetworkBackend):
    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise _Connected(f"{host} {port}")


def test_the_private_network_guard_allows_a_listed_ipv6_registry() -> None:
    # httpcore hands the guard the host without its brackets ("::1"); the allow list names
    # it as images do ("[::1]:5000").
    allowed: list[str] = []

    def allows(hostport: str) -> bool:
        allowed.append(hostport)
        return host_matches("[::1]:5000", hostport)

    guard = GuardedBackend(allows, resolver=lambda host, port: ["::1"], inner=_Inner())
    with pytest.raises(_Connected):
        guard.connect_tcp("::1", 5000)
    assert allowed == ["[::1]:5000"]


def test_pullguard_check_agrees_on_pull_policy_never_and_a_missing_account(tmp_path: Path) -> None:
    # The offline check runs the same engine: a preloaded private image, and a Deployment
    # whose ServiceAccount is in a file applied after it, pass with warnings.
    (tmp_path / "config.yaml").write_text("privateRegistries: [registry.example.com]\n")
    manifests = tmp_path / "manifests.yaml"
    manifests.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: cached, namespace: team-a}\n"
        "spec:\n  containers: [{name: app, image: registry.example.com/a:1, "
        "imagePullPolicy: Never}]\n"
        "---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: team-a}\n"
        "spec:\n  template:\n    spec:\n      serviceAccountName: builder\n"
        "      containers: [{name: web, image: registry.example.com/web:1}]\n"
    )
    config = tmp_path / "config.yaml"
    state = tmp_path / "state.yaml"  # the cluster as it is: team-a, no ServiceAccount yet
    state.write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n")
    flags = ["-f", str(manifests), "--config", str(config), "--cluster-state", str(state)]
    done = subprocess.run(
        [sys.executable, "-m", "webhook", "check", *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "imagePullPolicy Never" in done.stdout
    assert 'ServiceAccount "builder" does not exist yet' in done.stdout
