"""The registry and platform checks in the validating decision: every no-false-denial rule of
issue 9, on a registry that answers from a table (the HTTP client has its own tests against
real registries)."""

from __future__ import annotations

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
from webhook.core.config import load_config_text, parse_config
from webhook.core.mutate import mutate
from webhook.core.registry import (
    Answer,
    FixedRegistry,
    Outcome,
    Platform,
    address_refusal,
    parse_challenge,
    runnable_node_platforms,
)
from webhook.core.validate import validate

DEFAULT = parse_config({})
IMAGE = "registry.example.com/team/app:1.0"
FOUND = Answer(Outcome.FOUND, "HTTP 200")


def table(mapping: dict[str, Answer]) -> FixedRegistry:
    return FixedRegistry(mapping)


def test_a_tag_that_was_never_pushed_is_denied_with_the_tags_there() -> None:
    registry = table(
        {IMAGE: Answer(Outcome.NOT_FOUND, "HTTP 404", repository_exists=True, tags=("1.1", "2.0"))}
    )
    decision = validate(
        request(pod(pod_spec(container("web", IMAGE)))), DEFAULT, cluster_with(), registry=registry
    )
    assert not decision.allowed
    assert decision.message is not None
    assert (
        "- container \"web\": image 'registry.example.com/team/app:1.0' does not exist: "
        "repository registry.example.com/team/app has no tag '1.0' (tags there include '1.1' "
        "and '2.0')." in decision.message
    )
    assert "Fix: use tag '1.1' if that was meant, or push '1.0' first" in decision.message


def test_a_repository_that_does_not_exist_is_named() -> None:
    registry = table(
        {
            IMAGE: Answer(
                Outcome.NOT_FOUND,
                "HTTP 404",
                repository_exists=False,
                registry_says="NAME_UNKNOWN: repository name not known to registry",
            )
        }
    )
    decision = validate(
        request(pod(pod_spec(container("web", IMAGE)))), DEFAULT, cluster_with(), registry=registry
    )
    assert decision.message is not None
    assert "registry.example.com has no repository 'team/app'" in decision.message
    assert "NAME_UNKNOWN" in decision.message


def test_the_question_carries_the_pods_credentials_most_specific_first() -> None:
    cluster = cluster_with(
        pull_secret("team-a", "broad", "registry.example.com"),
        pull_secret("team-a", "narrow", "registry.example.com/team"),
    )
    registry = table({IMAGE: FOUND})
    spec = pod_spec(container("web", IMAGE), secrets=["broad", "narrow"])
    assert validate(request(pod(spec)), DEFAULT, cluster, registry=registry).allowed
    (question,) = registry.asked
    assert [c.source for c in question.credentials] == ["team-a/narrow", "team-a/broad"]


def test_digest_is_asked_rather_than_the_tag() -> None:
    digest = "sha256:" + "a" * 64
    image = f"registry.example.com/team/app:1.0@{digest}"
    registry = table({f"registry.example.com/team/app@{digest}": FOUND})
    assert validate(
        request(pod(pod_spec(container("web", image)))), DEFAULT, cluster_with(), registry=registry
    ).allowed
    assert registry.asked[0].reference == digest


def test_refused_with_the_pods_secret_is_denied_naming_it() -> None:
    cluster = cluster_with(pull_secret("team-a", "regcred", "registry.example.com"))
    registry = table({IMAGE: Answer(Outcome.UNAUTHORIZED, "HTTP 401", tried=("team-a/regcred",))})
    spec = pod_spec(container("web", IMAGE), secrets=["regcred"])
    decision = validate(request(pod(spec)), DEFAULT, cluster, registry=registry)
    assert not decision.allowed
    assert decision.message is not None
    assert (
        "refused to serve 'registry.example.com/team/app:1.0' with imagePullSecret "
        '"team-a/regcred"' in decision.message
    )


def test_refused_anonymously_says_no_secret_was_tried() -> None:
    registry = table({IMAGE: Answer(Outcome.UNAUTHORIZED, "HTTP 401")})
    decision = validate(
        request(pod(pod_spec(container("web", IMAGE)))), DEFAULT, cluster_with(), registry=registry
    )
    assert decision.message is not None
    assert (
        "anonymously (the pod has no imagePullSecret for it; the image is private or "
        "does not exist)" in decision.message
    )
    assert "kubectl create secret docker-registry regcred-registry-example-com" in decision.message


def test_node_credential_registries_never_deny_on_a_refusal() -> None:
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:1.0"
    registry = table({image: Answer(Outcome.UNAUTHORIZED, "HTTP 401")})
    decision = validate(
        request(pod(pod_spec(container("web", image)))), DEFAULT, cluster_with(), registry=registry
    )
    assert decision.allowed
    assert any("nodes' own credentials may work" in w for w in decision.warnings)


@pytest.mark.parametrize(
    ("answer", "words"),
    [
        (
            Answer(Outcome.RATE_LIMITED, "HTTP 429", ratelimit_remaining="0;w=21600"),
            "rate limiting pulls (429, ratelimit-remaining 0;w=21600)",
        ),
        (
            Answer(Outcome.UNREACHABLE, "DNS name ghrc.io not found", suggestion="ghcr.io"),
            "could not reach registry.example.com to check registry.example.com/team/app:1.0: "
            "DNS name ghrc.io not found; did you mean ghcr.io?",
        ),
        (Answer(Outcome.UNREACHABLE, "connection refused"), "connection refused"),
        (Answer(Outcome.UNREACHABLE, "timed out"), "timed out"),
        (Answer(Outcome.UNREACHABLE, "TLS failure: certificate has expired"), "TLS failure"),
        (
            Answer(Outcome.REGISTRY_ERROR, "HTTP 503"),
            "failed to answer for registry.example.com/team/app:1.0: HTTP 503",
        ),
        (
            Answer(Outcome.NOT_ASKED, "no answer within 2 s (registry.timeoutSeconds)"),
            "registry check could not run: no answer within 2 s",
        ),
    ],
)
def test_everything_else_admits_with_a_warning_saying_why(answer: Answer, words: str) -> None:
    decision = validate(
        request(pod(pod_spec(container("web", IMAGE)))),
        DEFAULT,
        cluster_with(),
        registry=table({IMAGE: answer}),
    )
    assert decision.allowed
    assert any(words in w for w in decision.warnings), decision.warnings


def test_missing_secret_for_a_public_image_only_warns() -> None:
    registry = table({IMAGE: FOUND})
    spec = pod_spec(container("web", IMAGE), secrets=["regcred"])
    decision = validate(request(pod(spec)), DEFAULT, cluster_with(), registry=registry)
    assert decision.allowed
    assert any("is public, so the pod runs" in w for w in decision.warnings), decision.warnings


def test_missing_secret_denies_when_the_registry_refuses_without_it() -> None:
    registry = table({IMAGE: Answer(Outcome.UNAUTHORIZED, "HTTP 401")})
    spec = pod_spec(container("web", IMAGE), secrets=["regcred"])
    decision = validate(request(pod(spec)), DEFAULT, cluster_with(), registry=registry)
    assert not decision.allowed
    assert decision.message is not None
    # One problem: the missing secret is the fix; the refusal would repeat it.
    assert decision.message.startswith("pullguard denied Pod team-a/p: 1 problem")
    assert 'imagePullSecret "regcred" does not exist in namespace "team-a"' in decision.message


def test_missing_secret_for_a_private_registry_denies_even_when_served() -> None:
    config = load_config_text("privateRegistries: [registry.example.com]\n")
    spec = pod_spec(container("web", IMAGE), secrets=["regcred"])
    decision = validate(request(pod(spec)), config, cluster_with(), registry=table({IMAGE: FOUND}))
    assert not decision.allowed


def test_missing_secret_when_the_registry_cannot_be_asked_keeps_todays_rule() -> None:
    spec = pod_spec(container("web", IMAGE), secrets=["regcred"])
    down = table({IMAGE: Answer(Outcome.UNREACHABLE, "connection refused")})
    assert validate(request(pod(spec)), DEFAULT, cluster_with(), registry=down).allowed
    config = load_config_text("privateRegistries: [registry.example.com]\n")
    assert not validate(request(pod(spec)), config, cluster_with(), registry=down).allowed


def test_registry_findings_follow_the_checks_action() -> None:
    config = load_config_text("checks: {registry: warn}\n")
    registry = table({IMAGE: Answer(Outcome.NOT_FOUND, "HTTP 404")})
    decision = validate(
        request(pod(pod_spec(container("web", IMAGE)))), config, cluster_with(), registry=registry
    )
    assert decision.allowed and decision.warnings
    off = load_config_text("checks: {registry: off, platform: off}\n")
    registry = table({})
    validate(
        request(pod(pod_spec(container("web", IMAGE)))), off, cluster_with(), registry=registry
    )
    assert registry.asked == []


def test_pods_made_by_a_controller_only_warn_on_registry_answers() -> None:
    obj = pod(pod_spec(container("web", IMAGE)))
    obj["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "web-1",
            "uid": "u",
            "controller": True,
        }
    ]
    registry = table({IMAGE: Answer(Outcome.NOT_FOUND, "HTTP 404")})
    controller = "system:serviceaccount:kube-system:replicaset-controller"
    decision = validate(request(obj, user=controller), DEFAULT, cluster_with(), registry=registry)
    assert decision.allowed and decision.warnings


def test_image_volumes_and_init_containers_are_asked() -> None:
    other = "registry.example.com/team/init:1.0"
    model = "registry.example.com/team/model:1.0"
    spec = pod_spec(
        container("web", IMAGE),
        init=[container("setup", other)],
        volumes=[image_volume("models", model)],
    )
    registry = table({IMAGE: FOUND, other: FOUND, model: Answer(Outcome.NOT_FOUND, "HTTP 404")})
    decision = validate(request(pod(spec)), DEFAULT, cluster_with(), registry=registry)
    assert {q.image for q in registry.asked} == {IMAGE, other, model}
    assert decision.message is not None and 'image volume "models"' in decision.message


def test_a_template_is_asked_with_its_service_accounts_secrets_after_the_mirror() -> None:
    from webhook.core.cluster import ServiceAccountInfo

    config = load_config_text("mirrors: [{registry: docker.io, mirror: mirror.example.com/hub}]\n")
    cluster = cluster_with(
        pull_secret("team-a", "hub", "mirror.example.com"),
        accounts=(ServiceAccountInfo("team-a", "default", ("hub",)),),
    )
    rewritten = "mirror.example.com/hub/library/nginx:1.25"
    registry = table({rewritten: Answer(Outcome.NOT_FOUND, "HTTP 404")})
    decision = validate(
        request(deployment(pod_spec(container("web", "nginx:1.25")))),
        config,
        cluster,
        registry=registry,
    )
    (question,) = registry.asked
    assert question.image == rewritten
    assert [c.source for c in question.credentials] == ["team-a/hub"]
    # The message names the image as the user wrote it.
    assert decision.message is not None and "'nginx:1.25'" in decision.message


def test_a_down_mirror_is_not_rewritten_to_and_validate_asks_the_original() -> None:
    config = load_config_text("mirrors: [{registry: docker.io, mirror: mirror.example.com/hub}]\n")
    obj = pod(pod_spec(container("web", "nginx:1.25")))
    result = mutate(
        request(obj), config, cluster_with(), mirrors_down=frozenset({"mirror.example.com"})
    )
    assert result.patch is None
    assert result.warnings == (
        'pullguard: container "web": mirror mirror.example.com is not answering, so '
        "nginx:1.25 is pulled as written",
    )
    registry = table({"docker.io/library/nginx:1.25": FOUND})
    decision = validate(
        request(deployment(pod_spec(container("web", "nginx:1.25")))),
        config,
        cluster_with(),
        registry=registry,
        mirrors_down=frozenset({"mirror.example.com"}),
    )
    assert decision.allowed
    assert registry.asked[0].image == "docker.io/library/nginx:1.25"


def test_a_pod_with_40_distinct_images_is_asked_about_every_one() -> None:
    # The cap (64, validate.MAX_QUESTIONS) is past real pods; past it the pod is denied
    # (tests/unit/test_validate.py), never left "not checked".
    images = [f"registry.example.com/team/app{i}:1.0" for i in range(40)]
    registry = table(dict.fromkeys(images, FOUND))
    spec = pod_spec(*[container(f"c{i}", image) for i, image in enumerate(images)])
    decision = validate(request(pod(spec)), DEFAULT, cluster_with(), registry=registry)
    assert len(registry.asked) == 40
    assert decision.allowed
    assert not any("could not run" in w for w in decision.warnings), decision.warnings


# -- Platform ----------------------------------------------------------------------------


def nodes(*platforms: tuple[str, str]):  # type: ignore[no-untyped-def]
    cluster = cluster_with()
    cluster.nodes.update(platforms)
    return cluster


ARM_S390 = Answer(Outcome.FOUND, platforms=(Platform("linux", "arm64"), Platform("linux", "s390x")))


def test_an_image_without_a_build_for_any_node_the_pod_may_use() -> None:
    config = load_config_text("checks: {platform: enforce}\n")
    decision = validate(
        request(pod(pod_spec(container("web", IMAGE)))),
        config,
        nodes(("linux", "amd64")),
        registry=table({IMAGE: ARM_S390}),
    )
    assert not decision.allowed
    assert decision.message is not None
    assert (
        "has linux/arm64 and linux/s390x only; this pod can only run on linux/amd64 nodes"
        in decision.message
    )


def test_the_pods_node_selector_narrows_the_nodes() -> None:
    config = load_config_text("checks: {platform: enforce}\n")
    spec = pod_spec(container("web", IMAGE))
    spec["nodeSelector"] = {"kubernetes.io/arch": "arm64"}
    decision = validate(
        request(pod(spec)),
        config,
        nodes(("linux", "amd64"), ("linux", "arm64")),
        registry=table({IMAGE: ARM_S390}),
    )
    assert decision.allowed and not decision.warnings


def test_a_mixed_cluster_warns_about_the_nodes_without_a_build() -> None:
    config = load_config_text("checks: {platform: enforce}\n")
    decision = validate(
        request(pod(pod_spec(container("web", IMAGE)))),
        config,
        nodes(("linux", "amd64"), ("linux", "arm64")),
        registry=table({IMAGE: ARM_S390}),
    )
    assert decision.allowed
    assert any("fails on linux/amd64 nodes" in w for w in decision.warnings)
    assert any("nodeSelector kubernetes.io/arch: arm64" in w for w in decision.warnings)


def test_without_node_labels_the_platform_check_says_nothing() -> None:
    decision = validate(
        request(pod(pod_spec(container("web", IMAGE)))),
        DEFAULT,
        nodes(),
        registry=table({IMAGE: ARM_S390}),
    )
    assert decision.allowed and not decision.warnings
    assert decision.outcomes["platform"] == "unavailable"


def test_required_node_affinity_is_read() -> None:
    spec = {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "kubernetes.io/arch",
                                    "operator": "NotIn",
                                    "values": ["amd64"],
                                },
                                {
                                    "key": "topology.kubernetes.io/zone",
                                    "operator": "In",
                                    "values": ["a"],
                                },
                            ]
                        }
                    ]
                }
            }
        }
    }
    cluster = {("linux", "amd64"), ("linux", "arm64"), ("windows", "amd64")}
    assert runnable_node_platforms(spec, cluster) == {("linux", "arm64")}


# -- Pure helpers ------------------------------------------------------------------------


def test_challenge_parsing() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull",error="insufficient_scope"'
    )
    assert scheme == "bearer"
    assert params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/nginx:pull",
        "error": "insufficient_scope",
    }
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("169.254.169.254", "link-local"),
        ("::ffff:a9fe:a9fe", "link-local"),
        ("::ffff:127.0.0.1", "loopback"),
        ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 around the metadata address
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd00::1", "private"),
        ("100.64.0.1", "internal"),  # carrier-grade NAT
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_address_policy(address: str, refused: str | None) -> None:
    reason = address_refusal(address)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


def test_tags_read_with_a_tenants_credentials_are_never_printed() -> None:
    """A forged review naming another namespace and its pull secret used to answer "tags
    there include ..." from that tenant's private repository: tags read with credentials
    stay out of every message (anonymous tags are public: still shown, as above)."""
    private = "registry.example.com/team/secret-app:1.0"
    registry = table(
        {
            private: Answer(
                Outcome.NOT_FOUND, "HTTP 404", repository_exists=True, tags=("1.1-rc", "2.0-rc")
            )
        }
    )
    cluster = cluster_with(pull_secret("team-a", "regcred", "registry.example.com"))
    obj = pod(pod_spec(container("web", private), secrets=["regcred"]))
    decision = validate(request(obj), DEFAULT, cluster, registry=registry)
    (question,) = registry.asked
    assert question.credentials  # asked with the tenant's secret
    assert not decision.allowed
    text = (decision.message or "") + "\n".join(decision.warnings)
    assert "has no tag '1.0'" in text
    assert "1.1-rc" not in text and "2.0-rc" not in text, text
