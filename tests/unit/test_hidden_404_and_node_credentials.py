"""A pod secret's hidden 404 beside refused provider credentials (rev24b finding 1).

The edge's combination of per-credential answers (``_Asker.answer``, the real code) with
only the HTTP conversation stubbed: the pod's secret gets ``404 NAME_UNKNOWN`` (a
repository hidden from a login that may not read it), the provider's credentials
(pullguard's own cloud role, not the nodes') get 401. The kubelet goes on from the 404 to
the nodes' own provider credentials, which may be served: not certain, so never a denial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

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
from webhook.core.keyring import Credential
from webhook.core.nodecreds import PROVIDER_SOURCE_PREFIX, ProviderAnswer
from webhook.core.registry import Answer, Outcome, Question
from webhook.core.validate import validate
from webhook.edge.registry import HttpRegistry

HOST = "111122223333.dkr.ecr.us-east-1.amazonaws.com"
IMAGE = f"{HOST}/team/app:1.0"
CONFIG = parse_config({"checks": {"registry": "enforce", "pullSecrets": "enforce"}})


class Combined:
    """A RegistryView whose answer is the edge's own combination of what each credential
    got (``provider_says`` for a provider's credentials, 404 NAME_UNKNOWN for the rest)."""

    def __init__(self, provider_says: Answer, monkeypatch: pytest.MonkeyPatch) -> None:
        registry = HttpRegistry(lambda: CONFIG.registry)
        self.asker = registry.asker

        def head(question: Question, credential: Credential | None, known: object) -> Answer:
            if credential is not None and credential.source.startswith(PROVIDER_SOURCE_PREFIX):
                return provider_says
            return Answer(Outcome.NOT_FOUND, "HTTP 404", registry_says="NAME_UNKNOWN")

        def facts(question: Question, credential: Credential | None, answer: Answer) -> Answer:
            # The tags list with the hiding login: the same hidden 404 NAME_UNKNOWN.
            return replace(answer, repository_exists=False)

        monkeypatch.setattr(self.asker, "_head", head)
        monkeypatch.setattr(self.asker, "_repository_facts", facts)

    def ask(
        self, questions: Sequence[Question], budget: float, tenant: str = ""
    ) -> Mapping[Question, Answer]:
        return {q: self.asker.answer(q, ()) for q in questions}


def _judge(provider_says: Answer, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    served = Credential(HOST, "AWS", "x" * 40, source=PROVIDER_SOURCE_PREFIX + "ecr")
    return validate(
        request(pod(pod_spec(container("web", IMAGE), secrets=["other-team"]))),
        CONFIG,
        cluster_with(pull_secret("team-a", "other-team", HOST)),
        registry=Combined(provider_says, monkeypatch),
        node=TableProviders({f"{HOST}/team/app": [ProviderAnswer("ecr", (served,))]}),
    )


def test_a_hidden_404_for_the_pod_secret_before_refused_provider_credentials_warns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decision = _judge(Answer(Outcome.UNAUTHORIZED, "HTTP 401"), monkeypatch)
    assert decision.allowed, decision.message
    warned = " ".join(decision.warnings)
    assert "pullguard's node credentials" in warned, warned


def test_a_404_for_the_provider_credentials_too_still_denies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Asked with the provider's credentials, a "not found" is certain (issue 24 item 4)."""
    decision = _judge(
        Answer(Outcome.NOT_FOUND, "HTTP 404", registry_says="MANIFEST_UNKNOWN"), monkeypatch
    )
    assert not decision.allowed
    assert "does not exist" in decision.message, decision.message


#: Two providers for Docker Hub, each a real plugin executable answering with its own key.
HUB_PLUGIN = """#!{python}
import json, sys
json.load(sys.stdin)
print(json.dumps({{
    "kind": "CredentialProviderResponse",
    "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
    "cacheKeyType": "Registry",
    "auth": {{"{key}": {{"username": "u", "password": "{password}"}}}},
}}))
"""


class ByPassword:
    """A RegistryView with the edge's own combination (``_Asker.answer``): each login's
    answer chosen by its password, anonymous pulls refused."""

    def __init__(self, says: Mapping[str, Answer], monkeypatch: pytest.MonkeyPatch) -> None:
        self.asker = HttpRegistry(lambda: CONFIG.registry).asker
        self.asked: list[str] = []

        def head(question: Question, credential: Credential | None, known: object) -> Answer:
            if credential is None:
                return Answer(Outcome.UNAUTHORIZED, "HTTP 401")
            self.asked.append(credential.password)
            return says[credential.password]

        def facts(question: Question, credential: Credential | None, answer: Answer) -> Answer:
            return replace(answer, repository_exists=False)

        monkeypatch.setattr(self.asker, "_head", head)
        monkeypatch.setattr(self.asker, "_repository_facts", facts)

    def ask(
        self, questions: Sequence[Question], budget: float, tenant: str = ""
    ) -> Mapping[Question, Answer]:
        return {q: self.asker.answer(q, ()) for q in questions}


def test_a_login_no_node_uses_cannot_deny(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """rev24f F3's false-denial path, run: provider ``first`` answers ``docker.io``
    (refused for pullguard's role), provider ``second`` answers ``index.docker.io``
    (a 404 with it). The kubelet's one keyring matches ``docker.io`` for
    ``docker.io/library/app``, so the Docker Hub fallback never applies and no node ever
    sends ``second``'s login: its 404 must not deny. (Per provider, both were tried and
    the 404 of ``second`` denied.)"""
    import stat
    import sys

    from webhook.core.credprovider import Provider, ProviderConfig
    from webhook.edge.credproviders import CredentialProviders

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, key, password in (
        ("first", "docker.io", "first-pw"),
        ("second", "index.docker.io", "second-pw"),
    ):
        plugin = bin_dir / name
        plugin.write_text(HUB_PLUGIN.format(python=sys.executable, key=key, password=password))
        plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    version = "credentialprovider.kubelet.k8s.io/v1"
    engine = CredentialProviders(
        ProviderConfig(
            tuple(Provider(n, ("docker.io",), 60.0, version) for n in ("first", "second"))
        ),
        str(bin_dir),
    )
    registry = ByPassword(
        {
            "first-pw": Answer(Outcome.UNAUTHORIZED, "HTTP 401"),
            "second-pw": Answer(Outcome.NOT_FOUND, "HTTP 404", registry_says="MANIFEST_UNKNOWN"),
        },
        monkeypatch,
    )
    decision = validate(
        request(pod(pod_spec(container("web", "docker.io/library/app:1.0")))),
        CONFIG,
        cluster_with(),
        registry=registry,
        node=engine,
    )
    assert engine.execs == 2, "both providers match docker.io and are run"
    assert decision.allowed, decision.message
    assert "second-pw" not in registry.asked, f"a login no node sends was tried: {registry.asked}"
    warned = " ".join(decision.warnings)
    assert "401" in warned or "refused" in warned, warned
