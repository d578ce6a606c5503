"""A review's namespace must be one a namespace can be, and internal tenants none that a
review can name (rev20e F9)."""

from __future__ import annotations

import copy

import pytest

from tests.conftest import REVIEWS, load_review
from webhook.core.registry import MIRROR_PROBE_TENANT, NOT_A_NAMESPACE, tenant_key
from webhook.core.review import MalformedReview, parse_review


def _pod_review() -> dict[str, object]:
    body: dict[str, object] = load_review(REVIEWS / "pod-create-plain.json")["body"]
    return body


@pytest.mark.parametrize(
    "namespace", [MIRROR_PROBE_TENANT, NOT_A_NAMESPACE, "Team-A", "a" * 64, "team_a", "-a", "a."]
)
def test_a_review_naming_no_possible_namespace_is_malformed(namespace: str) -> None:
    document = copy.deepcopy(_pod_review())
    document["request"]["namespace"] = namespace  # type: ignore[index]
    with pytest.raises(MalformedReview) as caught:
        parse_review(document)
    assert "DNS-1123" in caught.value.reason


@pytest.mark.parametrize("namespace", ["team-a", "a" * 63, "0", "kube-system"])
def test_namespace_names_are_judged(namespace: str) -> None:
    document = copy.deepcopy(_pod_review())
    document["request"]["namespace"] = namespace  # type: ignore[index]
    assert parse_review(document).namespace == namespace


def test_no_caller_is_counted_as_an_internal_tenant() -> None:
    assert tenant_key(MIRROR_PROBE_TENANT) == NOT_A_NAMESPACE
    assert tenant_key("Team-A") == NOT_A_NAMESPACE
    assert tenant_key("team-a") == "team-a"
    assert tenant_key("") == ""
