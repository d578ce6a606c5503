"""One admission parses at most PULL_SECRET_BYTES_PER_REVIEW of pull secret data (rev20e
F8): past it, that pod's pullSecrets check does not run (a warning), and it is not denied."""

from __future__ import annotations

import base64
import json

import pytest

from webhook.core.checks import (
    PULL_SECRET_BYTES_PER_REVIEW,
    SecretReads,
    SecretsTooLarge,
    read_secrets,
)
from webhook.core.cluster import InMemoryCluster, SecretInfo
from webhook.core.keyring import DOCKER_CONFIG_JSON


def _secret(name: str, entries: int) -> SecretInfo:
    auths = {f"https://u{i}@r.example.test/t": {"auth": "dTpw"} for i in range(entries)}
    data = base64.b64encode(json.dumps({"auths": auths}).encode()).decode()
    return SecretInfo("team-a", name, DOCKER_CONFIG_JSON, {".dockerconfigjson": data})


def _cluster(*secrets: SecretInfo) -> InMemoryCluster:
    cluster = InMemoryCluster()
    for secret in secrets:
        cluster.add_secret(secret)
    return cluster


def test_secrets_within_the_budget_are_all_parsed() -> None:
    reads = SecretReads(_cluster(_secret("a", 10), _secret("b", 10)))
    assert len(reads.credentials("team-a", ["a", "b"])) == 20
    assert 0 < reads.parsed_bytes < PULL_SECRET_BYTES_PER_REVIEW


def test_past_the_budget_a_secret_is_not_parsed_and_says_why() -> None:
    big = 30_000  # ~1.3 MB decoded each: the second is past 2 MiB
    reads = SecretReads(_cluster(_secret("a", big), _secret("b", big), _secret("c", 1)))
    assert len(reads.read("team-a", "a").credentials) == big
    with pytest.raises(SecretsTooLarge) as caught:
        reads.read("team-a", "b")
    words = str(caught.value)
    assert "team-a/b" in words and "MiB" in words
    assert "kubectl get secret -n team-a b" in words
    with pytest.raises(SecretsTooLarge):  # refused again, not parsed on a second ask
        reads.read("team-a", "b")
    assert reads.parsed_bytes <= PULL_SECRET_BYTES_PER_REVIEW


def test_a_pod_past_the_budget_has_its_secrets_unavailable_not_missing() -> None:
    big = 30_000
    cluster = _cluster(_secret("a", big), _secret("b", big))
    secrets, findings = read_secrets(
        ["a", "b"],
        "",
        "team-a",
        cluster,
        subject='container "c0"',
        needing_registries=["r.example.test"],
    )
    assert secrets.unavailable is not None and "team-a/b" in secrets.unavailable
    assert not findings  # no finding (no denial) about a secret it did not read
