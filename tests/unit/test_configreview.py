"""pullguard's own ConfigMap, judged at admission."""

from __future__ import annotations

from tests.unit.builders import request
from webhook.core.configreview import review_config
from webhook.core.validate import Decision


def configmap(text: str | None, name: str = "pullguard-config") -> dict[str, object]:
    data = {} if text is None else {"config.yaml": text}
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "pullguard"},
        "data": data,
    }


def judge(obj: dict[str, object]) -> Decision:
    return review_config(
        request(obj, namespace="pullguard"), namespace="pullguard", name="pullguard-config"
    )


def test_an_invalid_document_is_refused_with_every_problem() -> None:
    decision = judge(configmap("checks: {reference: maybe}\nmirrors: 3\n"))
    assert not decision.allowed
    message = decision.message or ""
    assert "checks.reference: must be one of enforce, warn, off" in message
    assert "mirrors: must be a list, got a number" in message
    assert "The configuration in force stays as it is" in message


def test_a_valid_document_a_missing_key_and_other_configmaps() -> None:
    assert judge(configmap("checks: {pullPolicy: warn}\n")).allowed
    assert not judge(configmap(None)).allowed
    other = configmap("not: [valid", name="something-else")
    assert judge(other).allowed
