"""The validating decision with node credentials (issue 24, item 4): a credential provider's
answer, tried after the pod's own secrets, on a registry that answers by the credentials
it is asked with (the plugins themselves are run for real in tests/integration and e2e)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tests.unit.builders import cluster_with, container, pod, pod_spec, pull_secret, request
from webhook.core.config import parse_config
from webhook.core.keyring import Credential
from webhook.core.nodecreds import ProviderAnswer
from webhook.core.registry import Answer, Outcome, Question
from webhook.core.validate import validate

HOST = "registry.corp.example"
IMAGE = f"{HOST}/team/app:1.0"
MISSING = f"{HOST}/team/app:never-pushed"
CONFIG = parse_config({"checks": {"registry": "enforce", "pullSecrets": "enforce"}})


def node_credential(password: str = "good", provider: str = "corp-provider") -> Credential:
    return Credential(
        key=HOST, username="AWS", password=password, source=f"credential provider {provider}"
    )


class Providers:
    """A NodeCredentialView answering from a table, by repository."""

    def __init__(self, answers: Mapping[str, list[ProviderAnswer]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, float]] = []

    def provide(
        self, image: str, timeout: float, tenant: str | None = None
    ) -> Sequence[ProviderAnswer]:
        self.asked.append((image, timeout))
        return self.answers.get(image, [])


class ByCredential:
    """A registry that serves ``present`` to a credential whose password is "good", says
    "not found" for other images to it, and refuses everyone else, as an htpasswd
    registry does; it answers as the edge's client does (each credential in turn)."""

    def __init__(self, present: set[str]) -> None:
        self.present = present
        self.asked: list[Question] = []

    def ask(
        self, questions: Sequence[Question], budget: float, tenant: str = ""
    ) -> Mapping[Question, Answer]:
        self.asked.extend(questions)
        out = {}
        for q in questions:
            tried = tuple(c.source for c in q.credentials)
            good = any(c.password == "good" for c in q.credentials)
            if not good:
                out[q] = Answer(Outcome.UNAUTHORIZED, "HTTP 401", tried=tried)
            elif q.image in self.present:
                out[q] = Answer(Outcome.FOUND, "HTTP 200", tried=tried)
            else:
                out[q] = Answer(
                    Outcome.NOT_FOUND, "HTTP 404 MANIFEST_UNKNOWN", tried=tried, tags=("1.0",)
                )
        return out


def judge(image: str, node: Providers | None, secrets: tuple[str, ...] = (), cluster=None):  # type: ignore[no-untyped-def]
    spec = pod_spec(container("web", image), secrets=list(secrets))
    return validate(
        request(pod(spec)),
        CONFIG,
        cluster or cluster_with(),
        registry=ByCredential({IMAGE}),
        node=node,
    )


def good_providers() -> Providers:
    answer = [ProviderAnswer("corp-provider", (node_credential(),))]
    return Providers({f"{HOST}/team/app": answer})


def test_an_image_the_providers_credentials_find_is_admitted_without_a_warning() -> None:
    providers = good_providers()
    decision = judge(IMAGE, providers)
    assert decision.allowed, decision.message
    assert decision.warnings == ()
    # asked as the kubelet asks: the repository, without the tag; within the registry budget
    assert providers.asked == [(f"{HOST}/team/app", CONFIG.registry.timeout_seconds)]


def test_without_providers_the_same_registry_denies_the_anonymous_pull() -> None:
    decision = judge(IMAGE, None)
    assert not decision.allowed
    assert "refused to serve" in (decision.message or "")


def test_a_tag_never_pushed_asked_with_the_providers_credentials_is_denied() -> None:
    decision = judge(MISSING, good_providers())
    assert not decision.allowed
    assert f"image '{MISSING}' does not exist" in (decision.message or "")


def test_a_refusal_of_the_providers_credentials_only_warns() -> None:
    """pullguard's identity (its ServiceAccount's cloud role) is not the node's; the host
    is not in nodeCredentialRegistries, and a provider matching it is enough."""
    answer = [ProviderAnswer("corp-provider", (node_credential("expired"),))]
    decision = judge(IMAGE, Providers({f"{HOST}/team/app": answer}))
    assert decision.allowed, decision.message
    (warning, *_) = decision.warnings
    assert (
        f"{HOST} refused {HOST}/team/app:1.0 with pullguard's node credentials "
        "(the nodes' own may work)" in warning
    )
    full = decision.findings[0].problem
    assert "with the credentials of credential provider corp-provider" in full


def test_a_provider_that_fails_admits_with_a_warning_naming_it_and_why() -> None:
    answer = [ProviderAnswer("corp-provider", error="it exited with status 3")]
    decision = judge(IMAGE, Providers({f"{HOST}/team/app": answer}))
    assert decision.allowed, decision.message
    assert any(
        "credential provider corp-provider failed for" in w and "it exited with status 3" in w
        for w in decision.warnings
    ), decision.warnings
    assert not any("refused" in w for w in decision.warnings)


def test_a_stale_pod_secret_before_good_node_credentials_is_admitted() -> None:
    """The kubelet tries the pod's secrets first, then the provider's (FACTS.md)."""
    stale = pull_secret("team-a", "stale", HOST)
    registry = ByCredential({IMAGE})
    spec = pod_spec(container("web", IMAGE), secrets=["stale"])
    decision = validate(
        request(pod(spec)), CONFIG, cluster_with(stale), registry=registry, node=good_providers()
    )
    assert decision.allowed, decision.message
    assert decision.warnings == ()
    (question,) = registry.asked
    assert [c.source for c in question.credentials] == [
        "team-a/stale",
        "credential provider corp-provider",
    ]


def test_an_image_no_provider_matches_is_judged_as_before() -> None:
    decision = judge("other.example/team/app:1.0", good_providers())
    assert not decision.allowed
    assert "anonymously" in (decision.message or "")


def test_providers_are_not_asked_when_the_registry_check_is_off() -> None:
    providers = good_providers()
    config = parse_config({"checks": {"registry": "off", "platform": "off"}})
    spec = pod_spec(container("web", IMAGE))
    validate(
        request(pod(spec)), config, cluster_with(), registry=ByCredential(set()), node=providers
    )
    assert providers.asked == []


class BudgetSpent:
    """A registry asked after the providers spent the review's budget (a plugin that hung
    until its deadline): it answers as the edge's deadline view does."""

    def ask(
        self, questions: Sequence[Question], budget: float, tenant: str = ""
    ) -> Mapping[Question, Answer]:
        spent = Answer(Outcome.NOT_ASKED, "the review's time budget was spent")
        return dict.fromkeys(questions, spent)


def test_a_provider_that_hung_through_the_budget_is_named_in_the_warning() -> None:
    """A plugin killed at the budget leaves no time to ask the registry: the warning names
    the provider and why (not only "the registry check could not run"), and still says the
    registry was not asked (nothing claims it refused)."""
    answer = [ProviderAnswer("corp-provider", error="no answer within 1.8 s")]
    # a second image after it, as in a pod of several containers
    spec = pod_spec(container("web", IMAGE), container("side", "other.example/side:1.0"))
    decision = validate(
        request(pod(spec)),
        CONFIG,
        cluster_with(),
        registry=BudgetSpent(),
        node=Providers({f"{HOST}/team/app": answer}),
    )
    assert decision.allowed, decision.message
    assert any(
        f"credential provider corp-provider failed for {IMAGE}: no answer within 1.8 s" in w
        for w in decision.warnings
    ), decision.warnings
    (finding,) = [f for f in decision.findings if "corp-provider" in f.problem]
    assert "refused" not in finding.problem
    assert "the review's time budget was spent" in finding.problem
    spent = "not asked: the review's time budget was spent"
    assert decision.not_checked == ((IMAGE, spent), ("other.example/side:1.0", spent))


def test_a_provider_that_needs_the_pods_service_account_token_warns_never_denies() -> None:
    """Issue 24 item 5 (KEP-4412 tokenAttributes): pullguard does not mint the pod's
    ServiceAccount tokens, so the edge gives this answer without running the plugin
    (tests/integration/test_credential_plugins.py); at admission it is a warning that says
    so, never a denial, even with the registry refusing the anonymous pull."""
    why = (
        "it asks for the pod's ServiceAccount token (tokenAttributes): "
        "pullguard cannot act as the pod's ServiceAccount"
    )
    answer = [ProviderAnswer("corp-provider", error=why)]
    decision = judge(IMAGE, Providers({f"{HOST}/team/app": answer}))
    assert decision.allowed, decision.message
    assert any(
        f"credential provider corp-provider failed for {IMAGE}: {why}" in w
        for w in decision.warnings
    ), decision.warnings
