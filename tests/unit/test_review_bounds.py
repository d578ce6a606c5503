"""Bounded work per review (issue 20, security round two): a pod with thousands of image
entries (containers, init containers, image volumes) must be decided within the review's
budget, never admitted "not checked" under ``enforce`` because reference parsing and the
registry-typo guesses spent the budget before the registry was asked.

The registry finds every image, behind a deadline as the server's
(``webhook.edge.app._DeadlineRegistry``): past the review's budget, counted from when the
decision starts, every question is "not asked: the review's time budget was spent". The
clock is this process's CPU time, so the other processes on the machine do not move it: the
tests are about the work a review does, and the bound on it is also asserted as a count
(edit-distance tables of the typo guess). ``tests/integration/test_review_work.py`` sends
such a pod through the real server."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from tests.unit.builders import container, deployment, image_volume, pod, pod_spec, request
from webhook.core import hosts
from webhook.core.cluster import InMemoryCluster
from webhook.core.config import load_config_text
from webhook.core.registry import Answer, Outcome, Question
from webhook.core.validate import MAX_IMAGE_ENTRIES, Decision, validate
from webhook.edge.app import ANSWER_MARGIN_SECONDS

ENFORCE = load_config_text("checks: {registry: enforce, reference: enforce}\n")
N = 20_000
#: Two edits from registry.k8s.io: every entry costs the typo guess its full table.
TYPO_HOST = "registry.k8s.ix"
LONG_PATH = "/".join(["a" * 63] * 4)  # 255 characters, the runtime's longest path
LONG_TAG = "t" * 128


class FindsEverything:
    """A registry that has every image (no network), asked within what is left of a budget
    of CPU seconds started with it, less the server's margin for the answer."""

    def __init__(self, budget: float) -> None:
        self.deadline = time.process_time() + budget - ANSWER_MARGIN_SECONDS
        self.asked: list[Question] = []

    def ask(
        self, questions: Sequence[Question], budget: float, tenant: str = ""
    ) -> Mapping[Question, Answer]:
        if time.process_time() >= self.deadline:
            spent = Answer(Outcome.NOT_ASKED, "the review's time budget was spent")
            return dict.fromkeys(questions, spent)
        self.asked.extend(questions)
        return {q: Answer(Outcome.FOUND, "HTTP 200") for q in questions}


def decide(obj: dict[str, Any], config: Any = ENFORCE, **kwargs: Any) -> Decision:
    review = request(obj, **kwargs)  # the builder's deep copy is not the review's work
    registry = FindsEverything(config.registry.timeout_seconds)
    return validate(review, config, InMemoryCluster(), registry=registry)


def volumes(reference: Callable[[int], str]) -> list[dict[str, Any]]:
    return [image_volume(f"v{n}", reference(n)) for n in range(N)]


VARIANTS: dict[str, Callable[[], dict[str, Any]]] = {
    "20000 identical image volumes, typo-like host": lambda: pod_spec(
        container("app", "nginx:1.25"), volumes=volumes(lambda n: f"{TYPO_HOST}/pause:3.9")
    ),
    "20000 distinct image volumes, typo-like host": lambda: pod_spec(
        container("app", "nginx:1.25"), volumes=volumes(lambda n: f"{TYPO_HOST}/m{n}:1.0")
    ),
    "20000 distinct hosts": lambda: pod_spec(
        container("app", "nginx:1.25"),
        volumes=volumes(lambda n: f"registry.k8s.{n % 36:c}{n // 36 % 36:c}/m:1".translate(_ALNUM)),
    ),
    "20000 identical containers": lambda: pod_spec(
        *[container(f"c{n}", f"{TYPO_HOST}/app:1.0") for n in range(N)]
    ),
    "20000 distinct init containers": lambda: pod_spec(
        container("app", "nginx:1.25"),
        init=[container(f"i{n}", f"{TYPO_HOST}/init{n}:1.0") for n in range(N)],
    ),
    "20000 long references near the limits": lambda: pod_spec(
        container("app", "nginx:1.25"),
        volumes=volumes(lambda n: f"{TYPO_HOST}/{LONG_PATH}:{LONG_TAG[:-5]}{n:05d}"),
    ),
}
#: chr(0..35) -> a-z0-9, for the distinct-hosts variant.
_ALNUM = {n: "abcdefghijklmnopqrstuvwxyz0123456789"[n] for n in range(36)}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_pod_with_20000_image_entries_is_decided_and_denied_under_enforce(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It once spent 3-7 s in the typo guess (``suggest_registry``, once per entry), so the
    registry got "the review's time budget was spent" and the pod was admitted not checked."""
    guesses = []
    real = hosts.edit_distance

    def counted(a: str, b: str, limit: int) -> int:
        guesses.append(a)
        return real(a, b, limit)

    monkeypatch.setattr(hosts, "edit_distance", counted)
    decision = decide(pod(VARIANTS[variant]()))
    # Only the 64-question cap's "not asked" (itself a denial), never a spent budget.
    spent = [n for n in decision.not_checked if "budget" in n[1]]
    assert spent == [], spent[:3]
    assert all("more than 64 distinct images" in why for _, why in decision.not_checked)
    assert not decision.allowed, decision.warnings
    message = decision.message or ""
    assert f"pullguard checks at most {MAX_IMAGE_ENTRIES} per object" in message, message[:600]
    # The typo guess runs for a bounded number of entries, not for each of 20,000.
    assert len(guesses) <= 16 * MAX_IMAGE_ENTRIES, len(guesses)
    assert len(message) < 20_000


def test_a_malformed_reference_past_the_cap_still_denies() -> None:
    """Grammar is checked for every entry: one bad reference at the end denies even where
    the registry check is off."""
    config = load_config_text("checks: {registry: off, reference: enforce}\n")
    spec = pod_spec(
        container("app", "nginx:1.25"),
        volumes=[*volumes(lambda n: "ghcr.io/acme/models:1.0")[:-1], image_volume("bad", "Bad/X")],
    )
    decision = decide(pod(spec), config)
    assert not decision.allowed
    assert 'image volume "bad"' in (decision.message or ""), (decision.message or "")[:600]
    assert "Bad/X" in (decision.message or "")


def test_many_malformed_references_deny_with_a_bounded_message() -> None:
    spec = pod_spec(
        container("app", "nginx:1.25"), volumes=volumes(lambda n: f"ghcr.io/Acme/M{n}:1.0")
    )
    decision = decide(pod(spec))
    assert not decision.allowed
    message = decision.message or ""
    assert "'ghcr.io/Acme/M0:1.0' can never be pulled" in message, message[:600]
    assert len(message) < 20_000, len(message)


def test_a_real_pod_is_judged_in_full_and_admitted() -> None:
    """40 containers, 10 init containers and 20 image volumes: far inside the cap."""
    spec = pod_spec(
        *[container(f"c{n}", f"ghcr.io/acme/app{n % 8}:1.0") for n in range(40)],
        init=[container(f"i{n}", "ghcr.io/acme/init:1.0") for n in range(10)],
        volumes=[image_volume(f"v{n}", f"ghcr.io/acme/model{n}:1.0") for n in range(20)],
    )
    decision = decide(pod(spec))
    assert decision.allowed, decision.message
    assert decision.not_checked == ()
    assert not any("per object" in w for w in decision.warnings), decision.warnings


def test_a_controllers_pod_past_the_cap_is_warned_not_denied() -> None:
    """Like the 64-image cap: the template was judged when a person applied it."""
    config = load_config_text(
        "checks: {registry: enforce, reference: enforce}\n"
        "controllerUsers: ['system:serviceaccount:kube-system:replicaset-controller']\n"
    )
    obj = pod(VARIANTS["20000 identical image volumes, typo-like host"]())
    obj["metadata"]["ownerReferences"] = [
        {"kind": "ReplicaSet", "name": "web-1", "controller": True, "uid": "u", "apiVersion": "v1"}
    ]
    decision = decide(obj, config, user="system:serviceaccount:kube-system:replicaset-controller")
    assert decision.allowed, decision.message
    assert any(f"at most {MAX_IMAGE_ENTRIES}" in w for w in decision.warnings), decision.warnings


def test_a_template_with_20000_image_volumes_is_decided() -> None:
    spec = VARIANTS["20000 identical image volumes, typo-like host"]()
    decision = decide(deployment(spec))
    assert decision.not_checked == ()
    assert not decision.allowed
    assert f"at most {MAX_IMAGE_ENTRIES} per object" in (decision.message or "")
