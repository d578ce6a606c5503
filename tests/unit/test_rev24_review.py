"""Outside review rev24 of issue 24 (kubelet credential providers): findings still open.

Each test marked open_finding fails until its finding is fixed (``pytest -m open_finding``);
a fixed one loses its marker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from tests.unit.builders import (
    TableProviders,
    cluster_with,
    container,
    pod,
    pod_spec,
    pull_secret,
    request,
)
from webhook.core.config import parse_config
from webhook.core.credprovider import ProviderConfigError, load_provider_config_text
from webhook.core.nodecreds import ProviderAnswer
from webhook.core.registry import Answer, Outcome, Question
from webhook.core.validate import validate

HOST = "registry.corp.example"
IMAGE = f"{HOST}/team/app:1.0"
CONFIG = parse_config({"checks": {"registry": "enforce", "pullSecrets": "enforce"}})
TOKEN_REASON = (
    "it asks for the pod's ServiceAccount token (tokenAttributes): "
    "pullguard cannot act as the pod's ServiceAccount"
)


class HidesPrivateRepositories:
    """A registry that hides a private repository behind ``404 NAME_UNKNOWN`` from every
    login that may not read it (and from anonymous pulls), the case
    ``webhook.edge.registry``'s ``answer`` is built for: only the node's identity (the
    credential provider's) may read ``team/app``. It answers as the edge's client does."""

    def ask(
        self, questions: Sequence[Question], budget: float, tenant: str = ""
    ) -> Mapping[Question, Answer]:
        out = {}
        for q in questions:
            tried = tuple(c.source for c in q.credentials)
            if any(c.source.startswith("credential provider ") for c in q.credentials):
                out[q] = Answer(Outcome.FOUND, "HTTP 200", tried=tried)
            else:
                out[q] = Answer(Outcome.NOT_FOUND, "HTTP 404 NAME_UNKNOWN", tried=tried)
        return out


def _judge(secrets: tuple[str, ...], reason: str):  # type: ignore[no-untyped-def]
    failed = [ProviderAnswer("corp-provider", error=reason)]
    spec = pod_spec(container("web", IMAGE), secrets=list(secrets))
    cluster = cluster_with(pull_secret("team-a", "other-team", HOST))
    return validate(
        request(pod(spec)),
        CONFIG,
        cluster,
        registry=HidesPrivateRepositories(),
        node=TableProviders({f"{HOST}/team/app": failed}),
    )


@pytest.mark.parametrize(
    ("secrets", "reason"),
    [
        ((), TOKEN_REASON),
        ((), "no answer within 1.8 s"),
        (("other-team",), TOKEN_REASON),
        (("other-team",), "it exited with status 1"),
    ],
)
def test_rev24_not_found_without_the_failed_providers_credentials_does_not_deny(
    secrets: tuple[str, ...], reason: str
) -> None:
    """Finding 1. A matching provider failed in pullguard (a tokenAttributes provider always
    does), so the registry was asked anonymously or with the pod's secret only, and said
    404. The kubelet tries the provider's credentials after those (FACTS.md; the edge's
    client tries every credential because registries hide a repository behind 404 from a
    login that may not read it): the node may well pull the image. Not certain: warn."""
    decision = _judge(secrets, reason)
    assert decision.allowed, decision.message


class TagMissingFromAReadableRepository:
    """The login that asked read the repository's tags: the tag is missing for every login."""

    def ask(
        self, questions: Sequence[Question], budget: float, tenant: str = ""
    ) -> Mapping[Question, Answer]:
        return {
            q: Answer(
                Outcome.NOT_FOUND,
                "HTTP 404 MANIFEST_UNKNOWN",
                repository_exists=True,
                tags=("0.9",),
                tried=tuple(c.source for c in q.credentials),
            )
            for q in questions
        }


def test_a_tag_missing_from_a_repository_the_login_read_is_denied_despite_a_failed_provider() -> (
    None
):
    """The other side of finding 1: the tags list was read, so no credential would see the
    tag: certain, denied (the provider's failure changes nothing)."""
    failed = [ProviderAnswer("corp-provider", error="it exited with status 1")]
    decision = validate(
        request(pod(pod_spec(container("web", IMAGE)))),
        CONFIG,
        cluster_with(),
        registry=TagMissingFromAReadableRepository(),
        node=TableProviders({f"{HOST}/team/app": failed}),
    )
    assert not decision.allowed
    assert "has no tag '1.0'" in decision.message, decision.message


def test_a_404_warning_names_the_failed_provider() -> None:
    decision = _judge((), "it exited with status 1")
    assert decision.allowed
    warned = " ".join(decision.warnings)
    assert "credential provider corp-provider failed" in warned, warned


def test_rev24_match_images_with_a_percent_escape_in_the_host_is_refused() -> None:
    """Finding 5. Go's ``url.Parse`` (the kubelet's ``ParseSchemelessURL``) refuses a
    ``%XX`` escape of an ASCII byte in a host (RFC 3986: only non-ASCII bytes may be
    escaped there, ``%25`` aside): ``invalid URL escape "%41"``. The kubelet refuses the
    document; pullguard accepts it."""
    document = """
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: corp-provider
    matchImages: ["%41.dkr.ecr.us-east-1.amazonaws.com"]
    defaultCacheDuration: "12h"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
"""
    with pytest.raises(ProviderConfigError) as refused:
        load_provider_config_text(document)
    assert any("matchImages" in p for p in refused.value.problems)
