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
from webhook.core.cluster import ServiceAccountInfo
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


def test_a_never_pushed_tag_on_an_existing_workload_gets_the_set_image_command() -> None:
    """An UPDATE (``kubectl set image`` to a tag never pushed): the fix sets the near tag on
    the workload, as README promises; a CREATE keeps the words (nothing to run it on yet)."""
    registry = table(
        {IMAGE: Answer(Outcome.NOT_FOUND, "HTTP 404", repository_exists=True, tags=("1.1",))}
    )
    old = deployment(pod_spec(container("web", "registry.example.com/team/app:1.1")))
    new = deployment(pod_spec(container("web", IMAGE)))
    decision = validate(
        request(new, operation="UPDATE", old=old), DEFAULT, cluster_with(), registry=registry
    )
    assert not decision.allowed
    assert decision.message is not None
    assert (
        "Fix: push '1.0' first, or use tag '1.1' if that was meant: kubectl set image "
        "deployment/web web=registry.example.com/team/app:1.1 -n team-a" in decision.message
    )
    created = validate(request(new), DEFAULT, cluster_with(), registry=registry)
    assert created.message is not None
    assert "Fix: use tag '1.1' if that was meant, or push '1.0' first" in created.message
    assert "kubectl set image" not in created.message


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
    ("image", "rights", "login"),
    [
        (
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:1.0",
            "give the node IAM role pull access",
            '--docker-username=AWS --docker-password="$(aws ecr get-login-password '
            '--region eu-west-1)"',
        ),
        (
            "europe-docker.pkg.dev/proj/repo/app:1",
            "roles/artifactregistry.reader",
            '--docker-username=_json_key --docker-password="$(cat KEY.json)"',
        ),
        (
            "myreg.azurecr.io/app:1",
            "--attach-acr myreg",
            "--docker-username=SP_APP_ID --docker-password=SP_PASSWORD",
        ),
    ],
)
def test_a_node_credential_registry_is_fixed_with_the_nodes_rights_not_a_made_up_login(
    image: str, rights: str, login: str
) -> None:
    """rev22 F3: pullguard asks anonymously, so every private image of such a registry is
    refused; on EKS, GKE, AKS the nodes pull it with their own identity. The fix says so
    first, then the nodes' pull rights, and a secret only as a last resort, with the
    registry's real login (ECR: user AWS and a 12-hour password; Artifact Registry: a
    service-account key as _json_key; ACR: a service principal), never USER/PASSWORD."""
    registry = table({image: Answer(Outcome.UNAUTHORIZED, "HTTP 401")})
    decision = validate(
        request(pod(pod_spec(container("web", image)))), DEFAULT, cluster_with(), registry=registry
    )
    assert decision.allowed
    (fix,) = [w for w in decision.warnings if w.startswith("pullguard: fix: ")]
    assert fix.startswith("pullguard: fix: nothing to do if pods on these nodes already pull")
    nodes, _, last_resort = fix.partition("only as a last resort")
    assert rights in nodes, fix
    assert login in last_resort, fix
    assert "--docker-username=USER --docker-password=PASSWORD" not in fix, fix


def test_a_node_credential_refusal_does_not_say_the_kubelet_gets_the_same_answer() -> None:
    """rev22: "...; the kubelet will get the same answer; but the nodes may authenticate to
    this registry themselves": the first half is what is not known."""
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:1.0"
    registry = table({image: Answer(Outcome.UNAUTHORIZED, "HTTP 401")})
    decision = validate(
        request(pod(pod_spec(container("web", image)))), DEFAULT, cluster_with(), registry=registry
    )
    (finding,) = [f for f in decision.findings if f.check == "registry"]
    assert "the kubelet will get the same answer" not in finding.problem, finding.problem
    assert finding.problem.endswith(
        "; the kubelet gets the same answer only if the nodes do not authenticate to this "
        "registry themselves (a kubelet credential provider), which pullguard cannot see"
    )


def test_a_refused_secret_for_ecr_is_replaced_with_the_ecr_login() -> None:
    """A refused ECR secret is most often a token past its 12 hours: its replacement is made
    with the real login, not USER/PASSWORD."""
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:1.0"
    cluster = cluster_with(
        pull_secret("team-a", "ecr", "123456789012.dkr.ecr.eu-west-1.amazonaws.com")
    )
    registry = table({image: Answer(Outcome.UNAUTHORIZED, "HTTP 401", tried=("team-a/ecr",))})
    spec = pod_spec(container("web", image), secrets=["ecr"])
    decision = validate(request(pod(spec)), DEFAULT, cluster, registry=registry)
    (finding,) = [f for f in decision.findings if f.check == "registry"]
    assert "--docker-username=AWS" in (finding.fix or ""), finding.fix


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
    original = "docker.io/library/nginx:1.25"
    registry = table(
        {
            rewritten: Answer(Outcome.NOT_FOUND, "HTTP 404"),
            original: Answer(Outcome.NOT_FOUND, "HTTP 404"),
        }
    )
    decision = validate(
        request(deployment(pod_spec(container("web", "nginx:1.25")))),
        config,
        cluster,
        registry=registry,
    )
    question, as_written = registry.asked
    assert question.image == rewritten
    assert [c.source for c in question.credentials] == ["team-a/hub"]
    # The mirror's "not found" is confirmed with the registry itself before it denies; the
    # pod has no credentials for docker.io, so it is asked anonymously.
    assert as_written.image == original and as_written.credentials == ()
    # The message names the image as the user wrote it.
    assert not decision.allowed
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
    assert any(
        'set the pod\'s nodeSelector to {"kubernetes.io/arch":"arm64"}' in w
        for w in decision.warnings
    ), decision.warnings


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
        # rev20d F8: IANA's non-global special-purpose blocks, whatever this Python's
        # ipaddress tables say (3.11.7 calls most of 192.0.0.0/24 global); "": any refusal.
        ("192.0.0.192", ""),  # Oracle Cloud's legacy metadata service
        ("192.0.0.8", ""),
        ("64:ff9b::c000:c0", ""),
        ("::ffff:192.0.0.192", ""),
        ("192.0.2.1", ""),  # documentation
        ("198.18.0.1", ""),  # benchmarking
        ("198.51.100.7", ""),
        ("203.0.113.9", ""),
        ("240.0.0.1", ""),  # reserved
        ("255.255.255.255", ""),
        ("192.88.99.1", ""),  # the retired 6to4 relay anycast
        ("100::1", ""),  # discard-only
        ("2001:db8::1", ""),  # documentation
        ("3fff::1", ""),  # documentation (RFC 9637)
        ("5f00::1", ""),  # SRv6 SIDs
        ("2001:2::1", ""),  # benchmarking
        ("1.1.1.1", None),
        ("192.0.1.1", None),
    ],
)
def test_address_policy(address: str, refused: str | None) -> None:
    reason = address_refusal(address)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


# -- issue 19: a mirror's "not found" is not its upstream's ---------------------------------

HUB = load_config_text("mirrors: [{registry: docker.io, mirror: mirror.example.com/hub}]\n")
ON_MIRROR = "mirror.example.com/hub/library/nginx:1.25"
AS_WRITTEN = "docker.io/library/nginx:1.25"
MIRROR_404 = Answer(Outcome.NOT_FOUND, "HTTP 404", repository_exists=False)


def _rewritten_pod() -> dict[str, object]:
    obj = pod(pod_spec(container("web", ON_MIRROR)))
    obj["metadata"]["annotations"] = {"pullguard.io/original-images": '{"web": "nginx:1.25"}'}
    return obj


@pytest.mark.parametrize(
    ("upstream", "allowed", "words"),
    [
        # The mirror answers /v2/ but cannot reach the registry it mirrors: the pod as
        # stored certainly fails (issue 19 review F2); its retry is left as written.
        (
            FOUND,
            False,
            "mirror mirror.example.com says 'nginx:1.25' does not exist, but docker.io has it",
        ),
        (
            Answer(Outcome.UNREACHABLE, "connection refused"),
            True,
            "mirror.example.com lacks nginx:1.25; docker.io could not confirm (connection refused)",
        ),
        (
            Answer(Outcome.NOT_FOUND, "HTTP 404", repository_exists=True, tags=("1.24",)),
            False,
            "image 'nginx:1.25' does not exist: repository docker.io/library/nginx has no "
            "tag '1.25'",
        ),
        # Refused as the pod would be: the mirror, with no credentials of its own, is too.
        (
            Answer(Outcome.UNAUTHORIZED, "HTTP 401"),
            False,
            "registry docker.io refused to serve 'nginx:1.25' anonymously",
        ),
    ],
)
def test_a_mirrors_not_found_is_asked_again_as_written_before_it_denies(
    upstream: Answer, allowed: bool, words: str
) -> None:
    registry = table({ON_MIRROR: MIRROR_404, AS_WRITTEN: upstream})
    decision = validate(request(_rewritten_pod()), HUB, cluster_with(), registry=registry)
    assert [q.image for q in registry.asked] == [ON_MIRROR, AS_WRITTEN]
    assert decision.allowed is allowed
    text = decision.message if not allowed else " ".join(decision.warnings)
    assert words in (text or ""), text
    assert "correct the repository name" not in (text or "")


def test_a_template_judged_as_its_pods_asks_as_written_too() -> None:
    registry = table({ON_MIRROR: MIRROR_404, AS_WRITTEN: FOUND})
    template = deployment(pod_spec(container("web", "nginx:1.25")))
    decision = validate(request(template), HUB, cluster_with(), registry=registry)
    assert decision.allowed
    assert any("mirror mirror.example.com lacks" in w for w in decision.warnings)
    # The edge learns from it too: the template's pods are left as written.
    assert [(f.cause, f.mirror) for f in decision.findings] == [
        ("mirror_lacks", "mirror.example.com")
    ]


def test_a_pod_rewritten_to_a_mirror_that_stopped_answering_is_warned_about() -> None:
    # Another worker rewrote the pod a moment ago; this one's probe already knows better,
    # and the mirror's cached "found" must not hide it.
    registry = table({ON_MIRROR: Answer(Outcome.FOUND, "HTTP 200", cached=True)})
    decision = validate(
        request(_rewritten_pod()),
        HUB,
        cluster_with(),
        registry=registry,
        mirrors_down=frozenset({"mirror.example.com"}),
    )
    assert decision.allowed
    assert any("mirror mirror.example.com stopped answering" in w for w in decision.warnings), (
        decision.warnings
    )


# -- Platforms as the runtime matches them (containerd 1.6, checked in tests/e2e) ---------


def _index(*platforms: Platform) -> Answer:
    return Answer(Outcome.FOUND, platforms=platforms)


ENFORCE_PLATFORM = load_config_text("checks: {platform: enforce}\n")


def judge(answer: Answer, *node_platforms: tuple[str, str], spec_extra: dict | None = None):  # type: ignore[no-untyped-def,type-arg]
    spec = pod_spec(container("web", IMAGE)) | (spec_extra or {})
    cluster = nodes(*node_platforms)
    cluster.add_node("node-amd64", "linux", "amd64")
    return validate(request(pod(spec)), ENFORCE_PLATFORM, cluster, registry=table({IMAGE: answer}))


def test_a_386_only_index_runs_on_containerd_amd64_nodes_and_warns_for_cri_o() -> None:
    decision = judge(_index(Platform("linux", "386")))
    assert decision.allowed
    assert any(
        "runs on containerd linux/amd64 nodes, fails on CRI-O" in w for w in decision.warnings
    )


def test_an_amd64_v3_only_index_fails_on_amd64_nodes() -> None:
    """Was admitted silently: the architecture matched and the variant was not read."""
    decision = judge(_index(Platform("linux", "amd64", "v3"), Platform("linux", "arm64")))
    assert not decision.allowed
    assert "takes no variant but v1, and the image has linux/amd64/v3 only" in (
        decision.message or ""
    )


@pytest.mark.parametrize(
    "build",
    [
        Platform("linux", "amd64"),
        Platform("linux", "amd64", "v1"),
        Platform("linux", "x86_64"),
        Platform("Linux", "amd64"),
    ],
)
def test_what_the_runtime_normalizes_to_amd64_serves_amd64(build: Platform) -> None:
    decision = judge(_index(build, Platform("linux", "amd64", "v3")))
    assert decision.allowed and not decision.warnings


def test_a_386_build_with_a_variant_is_no_fallback() -> None:
    assert not judge(_index(Platform("linux", "386", "sse2"))).allowed


def test_a_single_platform_image_of_another_arch_is_pulled_and_dies_with_exec_format_error() -> (
    None
):
    answer = Answer(Outcome.FOUND, platforms=(Platform("linux", "arm64"),), single_image=True)
    decision = judge(answer)
    assert decision.allowed  # a node may emulate arm64: not certain
    assert any("exec format error" in w for w in decision.warnings), decision.warnings
    full = [f.problem for f in decision.findings]
    assert any("(CrashLoopBackOff, not ImagePullBackOff)" in p for p in full)


def test_a_single_platform_image_volume_executes_nothing() -> None:
    answer = Answer(Outcome.FOUND, platforms=(Platform("linux", "arm64"),), single_image=True)
    spec = pod_spec(container("web", "registry.example.com/team/web:1"))
    spec["volumes"] = [image_volume("data", IMAGE)]
    cluster = nodes()
    cluster.add_node("node-amd64", "linux", "amd64")
    registry = table({IMAGE: answer, "registry.example.com/team/web:1": FOUND})
    decision = validate(request(pod(spec)), ENFORCE_PLATFORM, cluster, registry=registry)
    assert decision.allowed and not decision.warnings


def test_an_image_volume_index_follows_the_same_platform_rules() -> None:
    spec = pod_spec(container("web", "registry.example.com/team/web:1"))
    spec["volumes"] = [image_volume("data", IMAGE)]
    cluster = nodes()
    cluster.add_node("node-amd64", "linux", "amd64")
    registry = table({IMAGE: ARM_S390, "registry.example.com/team/web:1": FOUND})
    decision = validate(request(pod(spec)), ENFORCE_PLATFORM, cluster, registry=registry)
    assert not decision.allowed
    assert "has linux/arm64 and linux/s390x only" in (decision.message or "")


def test_node_name_decides_the_node_and_the_fix_names_no_node_selector() -> None:
    """spec.nodeName bypasses the scheduler: the named node alone counts. It was ignored,
    and the suggested nodeSelector would make the kubelet reject the pod."""
    cluster = nodes(("linux", "arm64"))
    cluster.add_node("node-amd64", "linux", "amd64")
    spec = pod_spec(container("web", IMAGE)) | {"nodeName": "node-amd64"}
    decision = validate(
        request(pod(spec)), ENFORCE_PLATFORM, cluster, registry=table({IMAGE: ARM_S390})
    )
    assert not decision.allowed
    message = decision.message or ""
    assert "this pod can only run on node node-amd64" in message
    assert "nodeSelector" not in message
    # Named onto an arm64 node, the same image is fine.
    cluster.add_node("node-arm64", "linux", "arm64")
    spec["nodeName"] = "node-arm64"
    decision = validate(
        request(pod(spec)), ENFORCE_PLATFORM, cluster, registry=table({IMAGE: ARM_S390})
    )
    assert decision.allowed and not decision.warnings


def test_a_digest_naming_a_blob_is_denied_as_what_it_is() -> None:
    image = "registry.example.com/team/app@sha256:" + "a" * 64
    answer = Answer(Outcome.NOT_A_MANIFEST, "a blob, not a manifest")
    decision = validate(
        request(pod(pod_spec(container("web", image)))),
        DEFAULT,
        cluster_with(),
        registry=table({image: answer}),
    )
    assert not decision.allowed
    assert "is a blob (a layer or an image config), not a manifest" in (decision.message or "")
    assert "An image ID (the config's digest) is not a pull digest" in (decision.message or "")


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


def test_an_unreachable_registry_is_worded_for_audit_and_diagnose_too() -> None:
    """Issue 22 review item 8: the same words are printed by audit and diagnose, which admit
    nothing: no "so the pod was admitted"."""
    registry = table({IMAGE: Answer(Outcome.UNREACHABLE, "connection refused")})
    decision = validate(
        request(pod(pod_spec(container("web", IMAGE)))), DEFAULT, cluster_with(), registry=registry
    )
    assert decision.allowed
    (finding,) = [f for f in decision.findings if f.check == "registry"]
    assert "was admitted" not in finding.problem
    assert finding.problem.endswith("(the nodes may see another network: a warning, not a denial)")


def test_a_refusal_points_at_the_namespaces_secret_that_covers_the_image() -> None:
    """rev22 F11: the denial names the ServiceAccount's "good", hidden by the pod's own
    list, and covering the image: its fix adds "good" (as ``diagnose`` says), never a new
    secret with USER/PASSWORD."""
    cluster = cluster_with(
        pull_secret("team-a", "noport", "registry.example.com"),
        pull_secret("team-a", "good", "registry.example.com:5000"),
        accounts=(ServiceAccountInfo("team-a", "default", ("good",)),),
    )
    registry = FixedRegistry(
        {"registry.example.com:5000/team/app:1": Answer(Outcome.UNAUTHORIZED, "HTTP 401")}
    )
    spec = pod_spec(container("web", "registry.example.com:5000/team/app:1"), secrets=["noport"])
    decision = validate(request(pod(spec)), DEFAULT, cluster, registry=registry)
    assert not decision.allowed
    message = decision.message or ""
    assert 'hide ServiceAccount "default"\'s ("good")' in message  # it knows
    fix = message.split("Fix: ", 1)[1]
    assert "good" in fix, fix
    assert "--docker-password=PASSWORD" not in fix, fix
    assert fix.endswith("then add {name: good} to the imagePullSecrets in the manifest"), fix
