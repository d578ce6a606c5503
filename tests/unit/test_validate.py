"""The validating decision against the behaviours in FACTS.md, on an in-memory cluster."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from webhook.core.cluster import InMemoryCluster, NoCluster, SecretInfo, ServiceAccountInfo
from webhook.core.config import load_config_text
from webhook.core.registry import Answer, FixedRegistry, Outcome
from webhook.core.review import UserInfo
from webhook.core.validate import Decision, validate

PRIVATE = load_config_text("privateRegistries: [registry.example.com]\n")
REG_IMAGE = "registry.example.com/team/app:1.0"


def test_invalid_reference_is_denied_with_the_correction() -> None:
    obj = deployment(pod_spec(container("web", "docker.io/Library/Nginx:1.25")))
    decision = validate(request(obj), PRIVATE, cluster_with())
    assert not decision.allowed
    assert decision.message is not None
    lines = decision.message.splitlines()
    assert (
        lines[0] == "pullguard denied Deployment team-a/web: 1 problem would cause ImagePullBackOff"
    )
    assert lines[1].startswith(
        "- container \"web\": image 'docker.io/Library/Nginx:1.25' can never "
        "be pulled: repository name must be lowercase"
    )
    # On CREATE the Deployment does not exist yet: the fix is in the manifest.
    assert lines[2] == (
        "  Fix: use image 'docker.io/library/nginx:1.25' in the manifest, then apply it again"
    )
    # On UPDATE it exists, and kubectl set image changes it in place.
    old = deployment(pod_spec(container("web", "docker.io/library/nginx:1.24")))
    update = validate(request(obj, operation="UPDATE", old=old), PRIVATE, cluster_with())
    assert (update.message or "").splitlines()[2] == (
        "  Fix: use image 'docker.io/library/nginx:1.25': kubectl set image "
        "deployment/web web=docker.io/library/nginx:1.25 -n team-a"
    )


def test_template_gets_the_service_accounts_secrets() -> None:
    # The SA plugin adds the account's secrets only to Pods: a Deployment naming SA "builder"
    # (which lists a secret covering the registry) must not be denied for lack of credentials.
    account = ServiceAccountInfo("team-a", "builder", ("regcred",))
    cluster = cluster_with(
        pull_secret("team-a", "regcred", "registry.example.com"), accounts=(account,)
    )
    obj = deployment(pod_spec(container("web", REG_IMAGE), sa="builder"))
    assert validate(request(obj), PRIVATE, cluster).allowed
    # ... and a template's own secrets replace the account's, as they will in its pods.
    obj = deployment(pod_spec(container("web", REG_IMAGE), sa="builder", secrets=["other"]))
    decision = validate(request(obj), PRIVATE, cluster)
    assert not decision.allowed
    assert 'imagePullSecret "other" does not exist' in (decision.message or "")


def test_missing_secret_on_service_account_says_where_it_was_listed() -> None:
    account = ServiceAccountInfo("team-a", "builder", ("regcred",))
    cluster = cluster_with(
        pull_secret("default", "regcred", "registry.example.com"), accounts=(account,)
    )
    obj = deployment(pod_spec(container("web", REG_IMAGE), sa="builder"))
    message = validate(request(obj), PRIVATE, cluster, user_verified=True).message or ""
    assert (
        'imagePullSecret "regcred" (listed on ServiceAccount "builder") does not exist in '
        'namespace "team-a" (it exists in "default")'
    ) in message
    assert (
        "kubectl get secret regcred -n default -o yaml | sed 's/namespace: default/namespace: "
        "team-a/' | kubectl apply -f -" in message
    )


def test_wrong_secret_type_is_reported() -> None:
    opaque = SecretInfo("team-a", "regcred", "Opaque", {"password": "eA=="})
    obj = pod(pod_spec(container("app", REG_IMAGE), secrets=["regcred"]))
    message = validate(request(obj), PRIVATE, cluster_with(opaque)).message or ""
    assert "has type 'Opaque'; a pull secret must be kubernetes.io/dockerconfigjson" in message
    assert "password" not in message.replace("--docker-password=PASSWORD", "")


def test_malformed_secret_is_reported_without_its_content() -> None:
    broken = SecretInfo(
        "team-a", "regcred", "kubernetes.io/dockerconfigjson", {".dockerconfigjson": "bm90IGpzb24="}
    )  # "not json"
    obj = pod(pod_spec(container("app", REG_IMAGE), secrets=["regcred"]))
    message = validate(request(obj), PRIVATE, cluster_with(broken)).message or ""
    assert "is not valid base64-encoded JSON" in message
    assert "bm90IGpzb24" not in message


def test_secret_for_another_registry_names_what_it_covers() -> None:
    cluster = cluster_with(pull_secret("team-a", "regcred", "ghcr.io"))
    obj = pod(pod_spec(container("app", REG_IMAGE), secrets=["regcred"]))
    message = validate(request(obj), PRIVATE, cluster).message or ""
    assert "is on registry.example.com, which needs credentials" in message
    assert (
        "the pod's imagePullSecrets \"regcred\" (entry 'ghcr.io' is for another registry) "
        "do not cover registry.example.com/" in message
    )


@pytest.mark.parametrize(
    ("entry", "image", "covered"),
    [
        ("registry.example.com", REG_IMAGE, True),
        ("https://registry.example.com/v2/", REG_IMAGE, True),
        ("registry.example.com/team", REG_IMAGE, True),
        ("registry.example.com/other", REG_IMAGE, False),
        ("*.example.com", REG_IMAGE, True),
        ("registry.example.com:5000", REG_IMAGE, False),
        ("registry.example.com:5000", "registry.example.com:5000/team/app", True),
    ],
)
def test_coverage_is_matched_like_the_kubelet(entry: str, image: str, covered: bool) -> None:
    config = load_config_text(
        "privateRegistries: ['registry.example.com', 'registry.example.com:5000']\n"
    )
    cluster = cluster_with(pull_secret("team-a", "regcred", entry))
    obj = pod(pod_spec(container("app", image), secrets=["regcred"]))
    assert validate(request(obj), config, cluster).allowed is covered


def test_generate_name_pod_takes_the_namespace_from_the_request() -> None:
    obj = pod(pod_spec(container("app", REG_IMAGE), secrets=["gone"]), name="")
    obj["metadata"] = {"generateName": "web-5c77-"}
    decision = validate(request(obj, name=""), PRIVATE, cluster_with())
    assert (decision.message or "").startswith("pullguard denied Pod team-a/web-5c77-*:")
    assert 'does not exist in namespace "team-a"' in (decision.message or "")


def test_update_with_unchanged_image_is_never_judged() -> None:
    old = deployment(pod_spec(container("web", "Bad:Image")))
    new = deployment(pod_spec(container("web", "Bad:Image")))
    new["spec"]["replicas"] = 5
    decision = validate(request(new, operation="UPDATE", old=old), PRIVATE, cluster_with())
    assert decision.allowed
    assert decision.reason == "unchanged"


def test_update_judges_only_the_changed_container() -> None:
    old = deployment(pod_spec(container("a", "Bad:Image"), container("b", "nginx:1.25")))
    new = deployment(pod_spec(container("a", "Bad:Image"), container("b", "nginx:1.26")))
    assert validate(request(new, operation="UPDATE", old=old), PRIVATE, cluster_with()).allowed
    new = deployment(pod_spec(container("a", "Bad:Image"), container("b", "Nginx:1.26")))
    decision = validate(request(new, operation="UPDATE", old=old), PRIVATE, cluster_with())
    assert not decision.allowed
    assert 'container "b"' in (decision.message or "")
    assert 'container "a"' not in (decision.message or "")


def test_ephemeral_container_added_by_kubectl_debug_is_judged() -> None:
    old = pod(pod_spec(container("app", "nginx:1.25")))
    new = pod(pod_spec(container("app", "nginx:1.25")))
    new["spec"]["ephemeralContainers"] = [container("debugger", "BusyBox")]
    decision = validate(
        request(new, operation="UPDATE", old=old, sub_resource="ephemeralcontainers"),
        PRIVATE,
        cluster_with(),
    )
    assert not decision.allowed
    assert 'ephemeral container "debugger"' in (decision.message or "")


def test_dry_run_is_judged_the_same() -> None:
    obj = pod(pod_spec(container("app", "Nginx")))
    assert not validate(request(obj, dry_run=True), PRIVATE, cluster_with()).allowed


def test_pull_policy_findings_are_warnings_by_default() -> None:
    obj = pod(
        pod_spec(
            container("a", "nginx:latest", "IfNotPresent"), container("b", "nginx:1.25", "Never")
        )
    )
    decision = validate(request(obj), PRIVATE, cluster_with())
    assert decision.allowed
    # Each finding: what is wrong (under 120 characters), then its fix.
    problems, fixes = decision.warnings[0::2], decision.warnings[1::2]
    assert len(problems) == len(fixes) == 2
    assert all(len(w) <= 120 for w in problems), problems
    assert "IfNotPresent" in problems[0]
    assert "Never" in problems[1]
    assert all(f.startswith("pullguard: fix: ") for f in fixes)


def test_namespace_mode_label_overrides_every_check() -> None:
    obj = pod(pod_spec(container("app", "Nginx")))
    warn = cluster_with(namespaces={"team-a": {"pullguard.io/mode": "warn"}})
    decision = validate(request(obj), PRIVATE, warn)
    assert decision.allowed and decision.warnings
    off = cluster_with(namespaces={"team-a": {"pullguard.io/mode": "off"}})
    decision = validate(request(obj), PRIVATE, off)
    assert decision.allowed and not decision.warnings


def test_exempt_and_own_namespaces_are_never_judged() -> None:
    obj = pod(pod_spec(container("app", "Nginx")), namespace="kube-system")
    assert validate(request(obj, namespace="kube-system"), PRIVATE, cluster_with()).allowed
    obj = pod(pod_spec(container("app", "Nginx")), namespace="pullguard")
    assert validate(
        request(obj, namespace="pullguard"), PRIVATE, cluster_with(), own_namespace="pullguard"
    ).allowed


def test_without_a_cluster_secret_checks_say_they_could_not_run() -> None:
    obj = pod(pod_spec(container("app", REG_IMAGE), secrets=["regcred"]))
    decision = validate(request(obj), PRIVATE, NoCluster())
    assert decision.allowed
    assert any("pullSecrets check could not run" in w for w in decision.warnings)
    assert decision.outcomes["pullSecrets"] == "unavailable"


def test_registry_typo_is_a_warning_even_when_reference_is_enforced() -> None:
    config = load_config_text("privateRegistries: [my-registry.com]\n")
    obj = pod(pod_spec(container("app", "my-regisry.com/team/app:1")))
    decision = validate(request(obj), config, cluster_with())
    assert decision.allowed
    assert any("looks like a typo of 'my-registry.com'" in w for w in decision.warnings)


def test_template_is_judged_as_its_pods_after_mutation() -> None:
    # A Deployment is not denied for a secret pullguard would inject into its pods.
    config = load_config_text(
        "privateRegistries: [registry.example.com]\n"
        "defaultPullSecrets:\n  - secret: corp\n    registries: [registry.example.com]\n"
    )
    cluster = cluster_with(pull_secret("team-a", "corp", "registry.example.com"))
    obj = deployment(pod_spec(container("web", REG_IMAGE)))
    assert validate(request(obj), config, cluster).allowed
    assert not validate(request(obj), PRIVATE, cluster).allowed


def test_warnings_stay_within_the_api_servers_limits() -> None:
    many = [container(f"c{i}", "nginx:latest", "IfNotPresent") for i in range(200)]
    decision = validate(request(pod(pod_spec(*many))), PRIVATE, cluster_with())
    assert sum(len(w.encode()) for w in decision.warnings) <= 4096
    assert decision.warnings[-1].endswith("more warnings not shown")


CORP = load_config_text(
    "privateRegistries: [registry.example.com]\n"
    "defaultPullSecrets:\n"
    "  - secret: corp\n    registries: [registry.example.com]\n    sourceNamespace: pullguard\n"
)


def test_default_secret_that_pullguard_copies_is_not_missing() -> None:
    # The mutating webhook injected "corp" and copies it from "pullguard", but not on a
    # dry-run: the real create succeeds, so the dry-run may not be denied for it. A template's
    # pods get their copy when they are created, so a Deployment is not denied either.
    cluster = cluster_with(pull_secret("pullguard", "corp", "registry.example.com"))
    obj = pod(pod_spec(container("app", REG_IMAGE), secrets=["corp"]))
    decision = validate(request(obj, dry_run=True), CORP, cluster)
    assert decision.allowed, decision.message
    assert validate(request(deployment(pod_spec(container("w", REG_IMAGE)))), CORP, cluster).allowed


def test_a_real_pod_create_is_judged_by_the_copys_source() -> None:
    # Copies follow real objects (webhook/edge/secretsync.py): without the API server's
    # client certificate, a bare Pod's copy is made once the API server has the Pod, after
    # this admission. So the copy-to-be is judged by its source, as for a template.
    cluster = cluster_with(pull_secret("pullguard", "corp", "registry.example.com"))
    obj = pod(pod_spec(container("app", REG_IMAGE), secrets=["corp"]))
    decision = validate(request(obj), CORP, cluster)
    assert decision.allowed, decision.message


def test_default_secret_copy_still_has_to_cover_the_registry() -> None:
    # The source's credentials are what the copy will hold: they are judged as the pod's.
    cluster = cluster_with(pull_secret("pullguard", "corp", "other.example.com"))
    obj = pod(pod_spec(container("app", REG_IMAGE), secrets=["corp"]))
    decision = validate(request(obj, dry_run=True), CORP, cluster)
    assert not decision.allowed
    assert "no registry" not in (decision.message or "")
    assert "other.example.com" in (decision.message or "")


def test_default_secret_missing_at_its_source_is_still_missing() -> None:
    obj = pod(pod_spec(container("app", REG_IMAGE), secrets=["corp"]))
    decision = validate(request(obj), CORP, cluster_with())
    assert not decision.allowed
    assert 'imagePullSecret "corp" does not exist' in (decision.message or "")


def test_image_volume_reference_is_judged_like_a_container() -> None:
    obj = deployment(
        pod_spec(container("web", "nginx:1.25"), volumes=[image_volume("models", "Acme/Models:1")])
    )
    decision = validate(request(obj), PRIVATE, cluster_with())
    assert not decision.allowed
    message = decision.message or ""
    assert "- image volume \"models\": image 'Acme/Models:1' can never be pulled" in message
    assert "kubectl set image" not in message  # it knows containers only
    (finding,) = decision.findings
    assert finding.pointer == "/spec/template/spec/volumes/0/image/reference"


def test_image_volume_on_a_private_registry_needs_a_covering_secret() -> None:
    obj = pod(pod_spec(container("app", "nginx:1.25"), volumes=[image_volume("data", REG_IMAGE)]))
    decision = validate(request(obj), PRIVATE, cluster_with())
    assert not decision.allowed
    assert 'image volume "data"' in (decision.message or "")
    covered = cluster_with(pull_secret("team-a", "reg", "registry.example.com"))
    obj["spec"]["imagePullSecrets"] = [{"name": "reg"}]
    assert validate(request(obj), PRIVATE, covered).allowed


def test_image_volume_pull_policy_is_named_as_its_own_field() -> None:
    obj = pod(
        pod_spec(
            container("app", "nginx:1.25"),
            volumes=[image_volume("data", "quay.io/x/data:latest", "IfNotPresent")],
        )
    )
    decision = validate(request(obj), PRIVATE, cluster_with())
    assert decision.allowed
    (finding,) = decision.findings
    assert finding.pointer == "/spec/volumes/0/image/pullPolicy"
    assert "set pullPolicy: Always" in (finding.fix or "")


# -- issue: no denial of what would run -------------------------------------------------


def test_a_missing_secret_that_is_not_needed_only_warns() -> None:
    # [regcred, legacy]: regcred covers the private registry, legacy is gone. The kubelet
    # pulls with regcred and only records a warning event for legacy.
    cluster = cluster_with(pull_secret("team-a", "regcred", "registry.example.com"))
    obj = pod(pod_spec(container("app", REG_IMAGE), secrets=["regcred", "legacy"]))
    decision = validate(request(obj), PRIVATE, cluster)
    assert decision.allowed, decision.message
    assert any('imagePullSecret "legacy" does not exist' in w for w in decision.warnings)


def test_a_missing_secret_on_a_public_image_only_warns() -> None:
    obj = pod(pod_spec(container("app", "nginx:1.25"), secrets=["gone"]))
    decision = validate(request(obj), PRIVATE, cluster_with())
    assert decision.allowed
    assert any('"gone" does not exist' in w for w in decision.warnings)


def test_a_missing_secret_that_is_needed_denies() -> None:
    obj = pod(pod_spec(container("app", REG_IMAGE), secrets=["regcred"]))
    decision = validate(request(obj), PRIVATE, cluster_with())
    assert not decision.allowed
    assert 'imagePullSecret "regcred" does not exist' in (decision.message or "")


def test_kubectl_debug_of_a_pod_whose_list_names_a_missing_secret_is_allowed() -> None:
    old = pod(pod_spec(container("app", "nginx:1.25"), secrets=["gone"]))
    new = pod(pod_spec(container("app", "nginx:1.25"), secrets=["gone"]))
    new["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "busybox:1.36"}]
    review = request(new, operation="UPDATE", old=old, sub_resource="ephemeralcontainers")
    decision = validate(review, PRIVATE, cluster_with())
    assert decision.allowed, decision.message


#: The user the API server names for the ReplicaSet controller.
RS_CONTROLLER = "system:serviceaccount:kube-system:replicaset-controller"


def _owned(obj: dict[str, object], kind: str = "ReplicaSet") -> dict[str, object]:
    obj["metadata"]["ownerReferences"] = [  # type: ignore[index]
        {"apiVersion": "apps/v1", "kind": kind, "name": "web-1", "uid": "u", "controller": True}
    ]
    return obj


def test_controller_made_pods_are_denied_only_for_certain_failures() -> None:
    config = load_config_text(
        "checks: {pullPolicy: enforce}\nprivateRegistries: [registry.example.com]\n"
    )
    moving = _owned(pod(pod_spec(container("app", "nginx:latest", "IfNotPresent"))))
    decision = validate(request(moving, user=RS_CONTROLLER), config, cluster_with())
    assert decision.allowed, decision.message  # advisory for a pod its controller made
    assert any("IfNotPresent" in w for w in decision.warnings)
    by_hand = pod(pod_spec(container("app", "nginx:latest", "IfNotPresent")))
    assert not validate(request(by_hand), config, cluster_with()).allowed
    # Certain failures still deny: they would fail on every node anyway.
    broken = _owned(pod(pod_spec(container("app", "Nginx:1.25"))))
    assert not validate(request(broken, user=RS_CONTROLLER), config, cluster_with()).allowed
    uncovered = _owned(pod(pod_spec(container("app", REG_IMAGE))))
    assert not validate(request(uncovered, user=RS_CONTROLLER), config, cluster_with()).allowed


def test_replicasets_of_a_deployment_follow_the_same_rule() -> None:
    config = load_config_text("checks: {pullPolicy: enforce}\n")

    def replicaset() -> dict[str, object]:
        spec = pod_spec(container("app", "nginx:latest", "IfNotPresent"))
        return {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "web-1", "namespace": "team-a"},
            "spec": {"template": {"metadata": {}, "spec": spec}},
        }

    assert validate(
        request(_owned(replicaset(), "Deployment"), user=RS_CONTROLLER), config, cluster_with()
    ).allowed
    assert not validate(request(replicaset()), config, cluster_with()).allowed


def test_a_template_whose_list_has_only_a_blank_name_gets_no_service_account_secrets() -> None:
    # [{name: ""}] is a non-empty list: the ServiceAccount plugin adds nothing to its pods.
    account = ServiceAccountInfo("team-a", "builder", ("regcred",))
    cluster = cluster_with(
        pull_secret("team-a", "regcred", "registry.example.com"), accounts=(account,)
    )
    spec = pod_spec(container("web", REG_IMAGE), sa="builder")
    assert validate(request(deployment(spec)), PRIVATE, cluster).allowed
    spec["imagePullSecrets"] = [{"name": ""}]
    decision = validate(request(deployment(spec)), PRIVATE, cluster)
    assert not decision.allowed
    assert 'hide ServiceAccount "builder"\'s ("regcred")' in (decision.message or "")


def test_ipv6_registries_match_their_secret_and_get_a_valid_secret_name() -> None:
    config = load_config_text("privateRegistries: ['[2001:db8::1]:5000']\n")
    image = "[2001:db8::1]:5000/team/app:1"
    covered = cluster_with(pull_secret("team-a", "v6", "[2001:db8::1]:5000"))
    obj = pod(pod_spec(container("app", image), secrets=["v6"]))
    assert validate(request(obj), config, covered).allowed
    decision = validate(request(pod(pod_spec(container("app", image)))), config, cluster_with())
    assert not decision.allowed
    (finding,) = decision.findings
    name = (finding.fix or "").split("create secret docker-registry ")[1].split()[0]
    import re

    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
    assert len(name) <= 63


def test_an_upper_case_single_label_host_warns_with_the_docker_hub_name() -> None:
    decision = validate(
        request(pod(pod_spec(container("app", "Bitnami/os-shell:12")))), PRIVATE, cluster_with()
    )
    assert decision.allowed  # a guess: the name might resolve somewhere
    (warning,) = [w for w in decision.warnings if "Bitnami" in w]
    assert "docker.io/bitnami/os-shell:12" in warning


MIRRORED = load_config_text(
    "privateRegistries: [mirror.example.com]\n"
    "mirrors:\n  - registry: docker.io\n    mirror: mirror.example.com/dockerhub\n"
)


def test_messages_name_the_image_as_the_user_wrote_it() -> None:
    # The validating webhook sees the Pod after the mirror rewrite; the annotation says what
    # the user wrote, and the denial speaks of that.
    obj = pod(pod_spec(container("app", "mirror.example.com/dockerhub/library/nginx:1.25")))
    obj["metadata"]["annotations"] = {"pullguard.io/original-images": '{"app": "nginx:1.25"}'}
    decision = validate(request(obj), MIRRORED, cluster_with())
    assert not decision.allowed
    assert "image 'nginx:1.25' is on mirror.example.com" in (decision.message or "")
    # A template: judged as its pods will be, named as written.
    template = validate(
        request(deployment(pod_spec(container("w", "nginx:1.25")))), MIRRORED, cluster_with()
    )
    assert "image 'nginx:1.25' is on mirror.example.com" in (template.message or "")
    # A forged or stale annotation never renames an image.
    obj["metadata"]["annotations"] = {"pullguard.io/original-images": '{"app": "evil:1"}'}
    forged = validate(request(obj), MIRRORED, cluster_with())
    assert "image 'mirror.example.com/dockerhub/library/nginx:1.25'" in (forged.message or "")


def test_a_running_pod_is_never_told_to_change_its_pull_secrets() -> None:
    old = pod(pod_spec(container("app", "nginx:1.25")))
    new = pod(pod_spec(container("app", "nginx:1.25")))
    new["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": REG_IMAGE}]
    review = request(new, operation="UPDATE", old=old, sub_resource="ephemeralcontainers")
    decision = validate(review, PRIVATE, cluster_with())
    assert not decision.allowed
    fix = decision.findings[0].fix or ""
    assert "recreate the pod" in fix and "add {name:" not in fix


def test_pull_policy_wording() -> None:
    decision = validate(
        request(pod(pod_spec(container("app", "busybox", "IfNotPresent")))), PRIVATE, cluster_with()
    )
    (finding,) = decision.findings
    assert finding.problem == (
        "image 'busybox' has no tag, and with imagePullPolicy IfNotPresent each node runs "
        "whatever version it cached"
    )


# -- properties behind those cases -------------------------------------------------------


PROPERTY_IMAGES = st.sampled_from(
    [
        "nginx:1.25",
        "nginx:latest",
        "busybox",
        "registry.example.com/team/app:1",
        "registry.example.com/team/app:latest",
        "quay.io/x/y:2",
        "Bad:Ref",
        "Bitnami/os-shell:12",
    ]
)
POLICIES = st.sampled_from([None, "Always", "IfNotPresent", "Never"])


@st.composite
def pod_specs(draw: st.DrawFn) -> dict[str, object]:
    count = draw(st.integers(1, 3))
    containers = [container(f"c{i}", draw(PROPERTY_IMAGES), draw(POLICIES)) for i in range(count)]
    return pod_spec(*containers)


@settings(max_examples=200, deadline=None)
@given(pod_specs(), st.lists(st.sampled_from(["gone", "legacy", "old"]), max_size=3))
def test_missing_secrets_never_turn_an_allowed_pod_into_a_denied_one(
    spec: dict[str, object], missing: list[str]
) -> None:
    cluster = cluster_with(pull_secret("team-a", "regcred", "registry.example.com"))
    spec["imagePullSecrets"] = [{"name": "regcred"}]
    before = validate(request(pod(spec)), PRIVATE, cluster)
    spec["imagePullSecrets"] = [{"name": "regcred"}] + [{"name": n} for n in missing]
    after = validate(request(pod(spec)), PRIVATE, cluster)
    assert after.allowed or not before.allowed, after.message


@settings(max_examples=200, deadline=None)
@given(pod_specs())
def test_controller_made_pods_are_denied_only_by_certain_checks(spec: dict[str, object]) -> None:
    enforce_all = load_config_text(
        "checks: {reference: enforce, pullSecrets: enforce, pullPolicy: enforce}\n"
        "privateRegistries: [registry.example.com]\n"
    )
    decision = validate(request(_owned(pod(spec)), user=RS_CONTROLLER), enforce_all, cluster_with())
    enforced = {f.check for f in decision.findings if f.action.value == "enforce"}
    assert enforced <= {"reference", "pullSecrets"}
    assert all(not f.advisory for f in decision.findings if f.action.value == "enforce")


def test_warnings_carry_the_prefix_and_the_fix() -> None:
    # The namespace warns instead of denying: the developer still gets where it comes from,
    # what is wrong, and what to do (the corrected image for a bad reference).
    cluster = cluster_with(namespaces={"team-a": {"pullguard.io/mode": "warn"}})
    obj = pod(pod_spec(container("app", "docker.io/Library/Nginx:1.25")))
    decision = validate(request(obj), PRIVATE, cluster)
    assert decision.allowed
    assert decision.warnings[0].startswith('pullguard: container "app": ')
    assert decision.warnings[1] == (
        "pullguard: fix: use image 'docker.io/library/nginx:1.25' in the manifest, then apply it "
        "again"
    )
    assert all(w.startswith("pullguard: ") and len(w) <= 256 for w in decision.warnings)


# -- what the kubelet does with a secret it cannot parse (MakeDockerKeyring) ----------------


def _unparseable(name: str = "broken") -> SecretInfo:
    import base64
    import json

    document = {"auths": {"registry.example.com": {"auth": "%%% not base64"}}}
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    return SecretInfo(
        "team-a", name, "kubernetes.io/dockerconfigjson", {".dockerconfigjson": encoded}
    )


def test_an_unparseable_secret_fails_every_pull_even_of_a_public_image() -> None:
    """The kubelet builds one keyring from all the pod's secrets and returns the parse
    error before any pull: a Docker Hub image the pod does not need credentials for fails
    too, so this is certain (it was "the image is public, so the pod runs")."""
    obj = pod(pod_spec(container("app", "docker.io/library/nginx:1.25"), secrets=["broken"]))
    decision = validate(request(obj), PRIVATE, cluster_with(_unparseable()))
    assert not decision.allowed
    assert (
        'imagePullSecret "broken" entry \'registry.example.com\' has an "auth" that is not '
        "base64: the kubelet cannot parse it, and then pulls no image of this pod at all, "
        "not even a public one" in (decision.message or "")
    )


def test_an_unparseable_secret_is_fatal_beside_a_good_one() -> None:
    obj = pod(pod_spec(container("app", REG_IMAGE), secrets=["broken", "regcred"]))
    cluster = cluster_with(_unparseable(), pull_secret("team-a", "regcred", "registry.example.com"))
    decision = validate(request(obj), PRIVATE, cluster)
    assert not decision.allowed
    assert 'imagePullSecret "broken"' in (decision.message or "")


def test_an_unparseable_secret_only_warns_when_nothing_is_pulled() -> None:
    obj = pod(
        pod_spec(container("app", "docker.io/library/nginx:1.25", "Never"), secrets=["broken"])
    )
    decision = validate(request(obj), PRIVATE, cluster_with(_unparseable()))
    assert decision.allowed
    assert any("the kubelet pulls no image of the pod" in w for w in decision.warnings)


def test_a_secret_the_kubelet_skips_is_like_a_missing_one() -> None:
    """The wrong type is skipped silently (secrets.go): a public image still runs."""
    opaque = SecretInfo("team-a", "regcred", "Opaque", {"password": "eA=="})
    obj = pod(pod_spec(container("app", "docker.io/library/nginx:1.25"), secrets=["regcred"]))
    decision = validate(request(obj), PRIVATE, cluster_with(opaque))
    assert decision.allowed
    assert any("has type 'Opaque'" in w for w in decision.warnings)


def test_an_unpadded_auth_is_read_as_the_kubelet_reads_it() -> None:
    """``auth`` without its ``=`` padding: the kubelet decodes it (RawStdEncoding) and
    pulls; it was denied as "not base64"."""
    import base64
    import json

    auth = base64.b64encode(b"robot:s3cret!").decode().rstrip("=")
    document = {"auths": {"registry.example.com": {"auth": auth}}}
    secret = SecretInfo(
        "team-a",
        "regcred",
        "kubernetes.io/dockerconfigjson",
        {".dockerconfigjson": base64.b64encode(json.dumps(document).encode()).decode()},
    )
    obj = pod(pod_spec(container("app", REG_IMAGE), secrets=["regcred"]))
    decision = validate(request(obj), PRIVATE, cluster_with(secret))
    assert decision.allowed, decision.message
    assert decision.warnings == ()


@pytest.mark.parametrize(
    ("user", "judged_as_controllers"),
    [
        ("alice", False),
        ("system:serviceaccount:team-a:deployer", False),
        ("system:serviceaccount:team-a:fake-controller", False),  # not kube-system
        (RS_CONTROLLER, True),
        ("system:kube-controller-manager", True),
    ],
)
def test_a_made_up_controller_owner_is_trusted_only_from_a_controller(
    user: str, judged_as_controllers: bool
) -> None:
    """A tenant's bare Pod with ``ownerReferences[].controller: true`` used to be judged as
    a controller's pod: an image the registry says does not exist was only a warning."""
    missing = "registry.example.com/team/app:gone"
    registry = FixedRegistry({missing: Answer(Outcome.NOT_FOUND, "manifest unknown")})
    cluster = cluster_with(pull_secret("team-a", "regcred", "registry.example.com"))
    spec = pod_spec(container("app", missing), secrets=["regcred"])
    review = request(_owned(pod(spec)), user=user)
    decision = validate(review, PRIVATE, cluster, registry=registry)
    assert decision.allowed is judged_as_controllers, decision.message
    if not judged_as_controllers:
        assert "gone" in (decision.message or "")


def test_where_a_missing_secret_exists_is_said_only_to_who_may_read_it_there() -> None:
    """ "it exists in namespace project-falcon" told any tenant which namespaces hold a
    secret of that name: only namespaces whose Secrets the requesting user may read are
    named (the API server's authorizer decides; here the in-memory cluster's table)."""
    cluster = cluster_with(
        pull_secret("project-falcon", "regcred", "registry.example.com"),
        pull_secret("team-a-shared", "regcred", "registry.example.com"),
    )
    cluster.secret_readers = {"alice": {"team-a", "team-a-shared"}, "mallory": {"team-a"}}
    obj = pod(pod_spec(container("web", REG_IMAGE), secrets=["regcred"]))
    told_alice = validate(request(obj, user="alice"), PRIVATE, cluster, user_verified=True).message
    told_mallory = (
        validate(request(obj, user="mallory"), PRIVATE, cluster, user_verified=True).message or ""
    )
    assert told_alice is not None
    assert '(it exists in "team-a-shared")' in told_alice
    assert "project-falcon" not in told_alice
    assert 'imagePullSecret "regcred" does not exist in namespace "team-a"' in told_mallory
    assert "project-falcon" not in told_mallory and "team-a-shared" not in told_mallory


class AskedCluster(InMemoryCluster):
    """Counts the SubjectAccessReviews a decision asks (each one a POST to the API server)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = 0

    def may_read_secrets(self, user: UserInfo, namespace: str) -> bool:
        self.asked += 1
        return super().may_read_secrets(user, namespace)


def test_a_forged_user_is_not_believed_where_a_secret_exists() -> None:
    """A review anyone could POST to the port claimed ``groups: [system:masters]``: the
    SubjectAccessReview said yes, and the denial said where the secret is ("it exists in
    project-falcon"). Unverified, ``userInfo`` is nobody's word: no namespace is named, no
    SubjectAccessReview is asked, and the fix is the command that still makes sense."""
    cluster = AskedCluster()
    cluster.add_namespace("team-a")
    cluster.add_secret(pull_secret("project-falcon", "falcon-cred", "registry.example.com"))
    cluster.secret_readers = {"x": {"team-a", "project-falcon"}}  # what system:masters gets
    forged = request(pod(pod_spec(container("web", REG_IMAGE), secrets=["falcon-cred"])), user="x")
    forged = replace(forged, user=UserInfo(username="x", groups=("system:masters",)))
    message = validate(forged, PRIVATE, cluster).message or ""
    assert "project-falcon" not in message, message
    assert 'imagePullSecret "falcon-cred" does not exist in namespace "team-a"' in message
    assert "kubectl create secret docker-registry falcon-cred -n team-a" in message
    assert cluster.asked == 0
    # The same review from the API server (serve --client-ca): today's answer.
    verified = validate(forged, PRIVATE, cluster, user_verified=True).message or ""
    assert '(it exists in "project-falcon")' in verified, verified
    assert cluster.asked == 1


def test_a_verified_review_asks_a_bounded_number_of_subject_access_reviews() -> None:
    """64 missing secret names, each held by 10 other namespaces, once cost 8
    SubjectAccessReviews per name (512 per review); the bound is per admission."""
    from webhook.core.validate import MAX_NAMESPACES_ASKED, MAX_PULL_SECRETS

    cluster = AskedCluster()
    cluster.add_namespace("team-a")
    names = [f"s{n}" for n in range(MAX_PULL_SECRETS)]
    for name in names:
        for other in range(10):
            cluster.add_secret(pull_secret(f"other-{other}", name, "registry.example.com"))
    obj = pod(pod_spec(container("web", REG_IMAGE), secrets=names))
    decision = validate(request(obj), PRIVATE, cluster, user_verified=True)
    assert not decision.allowed
    assert 0 < cluster.asked <= MAX_NAMESPACES_ASKED, cluster.asked


class CountingCluster(InMemoryCluster):
    """Counts the secret reads a decision makes (each miss is a direct read on a real one)."""

    def __init__(self) -> None:
        super().__init__()
        self.secret_reads = 0

    def get_secret(self, namespace: str, name: str) -> SecretInfo | None:
        self.secret_reads += 1
        return super().get_secret(namespace, name)


def test_a_pod_listing_3000_pull_secrets_costs_a_bounded_number_of_reads_and_is_denied() -> None:
    """3,000 made-up names once cost 6,020 API-server GETs and outlived the API server's
    timeout (so the pod was admitted unchecked). Past the cap the pod is denied, with why,
    even when its image is public: an unread secret that does not parse fails every pull."""
    from webhook.core.validate import MAX_PULL_SECRETS

    cluster = CountingCluster()
    cluster.add_namespace("team-a")
    obj = pod(pod_spec(container("web", "nginx:1.25"), secrets=[f"s{n}" for n in range(3000)]))
    decision = validate(request(obj), PRIVATE, cluster)
    assert cluster.secret_reads <= MAX_PULL_SECRETS
    assert not decision.allowed
    assert f"lists 3000 imagePullSecrets; pullguard checks at most {MAX_PULL_SECRETS}" in (
        decision.message or ""
    )
    # A real pod with a few secrets is not touched by the cap.
    few = pod(pod_spec(container("web", "nginx:1.25"), secrets=["a", "b", "c"]))
    assert validate(request(few), PRIVATE, cluster).allowed


REV23_DEFAULTS = load_config_text(
    "privateRegistries: [registry.example.com]\n"
    "defaultPullSecrets:\n  - secret: corp\n    registries: [registry.example.com]\n"
)


def test_a_template_listing_3000_pull_secrets_costs_a_bounded_number_of_reads() -> None:
    """The preview of the mutation read every name before the capped read_pod_secrets:
    3,065 reads for 3,000 made-up names (review rev23)."""
    from webhook.core.validate import MAX_PULL_SECRETS

    cluster = CountingCluster()
    cluster.add_namespace("team-a")
    names = [f"s{n}" for n in range(3000)]
    image = "registry.example.com/team/app:1.0"
    decision = validate(
        request(deployment(pod_spec(container("web", image), secrets=names))),
        REV23_DEFAULTS,
        cluster,
    )
    assert not decision.allowed
    assert cluster.secret_reads <= MAX_PULL_SECRETS + 4, cluster.secret_reads
    # The same through the template's ServiceAccount.
    cluster.secret_reads = 0
    cluster.add_service_account(ServiceAccountInfo("team-a", "builder", tuple(names)))
    decision = validate(
        request(deployment(pod_spec(container("web", image), sa="builder"))),
        REV23_DEFAULTS,
        cluster,
    )
    assert not decision.allowed
    assert cluster.secret_reads <= MAX_PULL_SECRETS + 4, cluster.secret_reads


def test_a_pod_naming_more_images_than_are_asked_is_not_left_unchecked() -> None:
    """A 33rd (now 65th) distinct image used to be "not checked": under enforce, a tenant
    could switch the registry check off for its pod by naming many images."""
    from webhook.core.validate import MAX_QUESTIONS

    images = [f"registry.example.com/team/app{n}:1.0" for n in range(MAX_QUESTIONS + 1)]
    registry = FixedRegistry({i: Answer(Outcome.FOUND, "HTTP 200") for i in images})
    cluster = cluster_with(pull_secret("team-a", "regcred", "registry.example.com"))
    spec = pod_spec(*[container(f"c{n}", i) for n, i in enumerate(images)], secrets=["regcred"])
    decision = validate(request(pod(spec)), PRIVATE, cluster, registry=registry)
    assert len(registry.asked) <= MAX_QUESTIONS
    assert not decision.allowed
    assert f"{MAX_QUESTIONS + 1} distinct images" in (decision.message or "")
    # 40 containers sharing a few images: judged as usual, and admitted.
    shared = pod_spec(*[container(f"c{n}", images[n % 5]) for n in range(40)], secrets=["regcred"])
    assert validate(request(pod(shared)), PRIVATE, cluster, registry=registry).allowed


def _judge_template_listing_a_and_b(cluster: InMemoryCluster) -> Decision:
    spec = pod_spec(container("web", "registry.example.com/team/app:1.0"), secrets=["a", "b"])
    return validate(request(deployment(spec)), REV23_DEFAULTS, cluster)


def test_a_template_decision_reads_each_secret_once() -> None:
    """The mutation's preview, its judgement of the default secret and the pullSecrets
    check each read the secrets: 5 reads for a, b and the default (review rev23), now one
    each (core.cluster.ReadOnce, per admission)."""
    cluster = CountingCluster()
    cluster.add_namespace("team-a")
    decision = _judge_template_listing_a_and_b(cluster)
    assert not decision.allowed
    assert cluster.secret_reads == 3, cluster.secret_reads


def test_a_template_decision_parses_each_secret_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mutation's preview (its mirror and default-secret questions) and the
    pullSecrets check share one set of parsed credentials (issue 23): a, b and the default
    were parsed 5 times (the preview's own secret set, then the check's), now once each."""
    import sys

    from webhook.core import keyring

    parsed: list[str] = []
    original = keyring.parse_pull_secret

    def counting(secret_type: str, data: object, source: str = "") -> object:
        parsed.append(source)
        return original(secret_type, data, source=source)  # type: ignore[arg-type]

    for module in list(sys.modules.values()):
        if (getattr(module, "__name__", "") or "").startswith("webhook.core.") and hasattr(
            module, "parse_pull_secret"
        ):
            monkeypatch.setattr(module, "parse_pull_secret", counting)
    cluster = CountingCluster()
    cluster.add_namespace("team-a")
    for name in ("a", "b", "corp"):
        cluster.add_secret(pull_secret("team-a", name, "other.example.com"))
    decision = _judge_template_listing_a_and_b(cluster)
    assert not decision.allowed
    assert cluster.secret_reads == 3, cluster.secret_reads
    assert len(parsed) == 3, parsed


def test_the_decision_is_policy_over_findings() -> None:
    """Issue 23: the checks return findings with what they know (advisory, evidence) and
    one policy, validate.decide, turns them into the decision: a refusal that a denying
    pull-secret finding would repeat is set aside there (the registry check used to be told
    ``blocked``), and an unparseable secret's fix goes first (pull_secret_findings made the
    others advisory itself)."""
    from webhook.core.config import CHECK_NAMES, Action
    from webhook.core.findings import UNPARSEABLE, Finding
    from webhook.core.validate import CheckFindings, decide

    enforce = dict.fromkeys(CHECK_NAMES, Action.ENFORCE)
    refusal = Finding("registry", 'container "web"', "refused", cause="unauthorized")
    refusal = replace(refusal, evidence="unauthorized")
    missing = Finding("pullSecrets", 'container "web"', 'imagePullSecret "a" is missing')
    broken = Finding("pullSecrets", 'container "web"', '"b" cannot parse', evidence=UNPARSEABLE)

    def judged(found: CheckFindings) -> list[tuple[str, bool]]:
        decision = decide(
            request(pod(pod_spec(container("web", "nginx:1.25")))),
            found,
            actions=enforce,
            by_controller=False,
            unavailable={},
            loud=frozenset(),
        )
        return [(f.problem, f.action is Action.ENFORCE) for f in decision.findings]

    def found(secrets: list[Finding]) -> CheckFindings:
        return CheckFindings([], secrets, [], [refusal], [])

    assert judged(found([])) == [("refused", True)]
    assert judged(found([missing])) == [('imagePullSecret "a" is missing', True)]
    assert judged(found([broken, missing])) == [
        ('"b" cannot parse', True),
        ('imagePullSecret "a" is missing', False),
    ]
    # A pull-secret finding that only warns does not hide the refusal.
    assert judged(found([missing.as_advisory()])) == [
        ('imagePullSecret "a" is missing', False),
        ("refused", True),
    ]
