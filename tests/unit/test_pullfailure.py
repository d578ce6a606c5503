"""The runtime texts of tests/fixtures/pull-failures.yaml, each classified as its cause."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from webhook.core.pullfailure import Cause, classify

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pull-failures.yaml"
CASES: list[dict[str, Any]] = yaml.safe_load(FIXTURES.read_text())


def test_every_cause_and_both_runtimes_have_cases() -> None:
    causes = {case["cause"] for case in CASES}
    assert causes == {c.value for c in Cause} - {"unknown"}
    runtimes = {case["runtime"] for case in CASES}
    assert {"containerd", "cri-o", "kubelet"} <= runtimes
    assert all(case.get("source") for case in CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['runtime']}-{c['cause']}")
def test_runtime_text_is_classified(case: dict[str, Any]) -> None:
    found = classify(case["message"])
    assert found.cause.value == case["cause"], found


def test_unrecognised_text_is_unknown_with_its_evidence() -> None:
    found = classify("", "something the runtime never said before")
    assert found.cause is Cause.UNKNOWN
    assert found.evidence == "something the runtime never said before"
