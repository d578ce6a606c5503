"""Answers do not outlive the registry (issue 21, item 5), against a real distribution registry
on loopback that allows deletes: containerd resolves a tag or digest on every pull, so a
manifest deleted after pullguard saw it fails the next pull, by tag and by digest alike.
A positive answer admits only while it is younger than ``registry.cacheTTLSeconds``, counted
from when the registry was asked; a "not found" is never reused and denies only when it is
live (asked twice). Within the window a deleted image is still admitted from the cache: the
window is the staleness an operator accepts, and docs/reference.md says so.

The client tests drive the cache with an injected clock (no sleeping, nothing timed); the
server test runs the real gunicorn over TLS with a one-second window."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tests.integration.faults import Request, ScriptedServer
from tests.integration.registries import (
    NEEDS_REGISTRY,
    Registry,
    delete_manifest,
    loopback_tls,
    push_image,
    start_registry,
)
from webhook.core.config import RegistrySettings
from webhook.core.registry import Answer, Outcome, Question
from webhook.edge.registry import HttpRegistry

pytestmark = NEEDS_REGISTRY

#: The window pullguard ships with (``registry.cacheTTLSeconds``).
WINDOW = RegistrySettings().cache_ttl_seconds


@dataclass
class Setup:
    tls: dict[str, Path]
    context: ssl.SSLContext
    registry: Registry  # anonymous, deletes allowed


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("registry-freshness")
    tls = loopback_tls(base / "tls")
    registry = start_registry(base / "registry", delete=True, **tls)
    yield Setup(tls, ssl.create_default_context(cafile=str(tls["ca"])), registry)
    registry.stop()


class Clock:
    """The cache's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def client(setup: Setup, clock: Clock, **settings: object) -> HttpRegistry:
    current = RegistrySettings(**{"allow_private_networks": True, **settings})  # type: ignore[arg-type]
    return HttpRegistry(lambda: current, ssl_context=setup.context, clock=clock)


def ask(registry: HttpRegistry, question: Question) -> Answer:
    return registry.ask([question], 3.0)[question]


def test_the_shipped_window_is_seconds_not_minutes() -> None:
    # A pod admitted on an answer older than the window may be one whose image is gone: the
    # shipped window keeps that to seconds (it was 300 s by tag, the process's life by digest).
    assert 0 < WINDOW <= 10


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_a_deleted_image_is_denied_once_the_window_has_passed(setup: Setup, by: str) -> None:
    repository = f"team/deleted-by-{by}"
    digest = push_image(setup.registry, repository, "1.0")
    clock = Clock()
    registry = client(setup, clock)
    question = Question(setup.registry.host, repository, "1.0" if by == "tag" else digest)
    first = ask(registry, question)
    assert (first.outcome, first.cached) == (Outcome.FOUND, False)
    delete_manifest(setup.registry, repository, digest)
    # Within the window the answer is reused: the deleted image is still admitted (the
    # staleness the window accepts; docs/reference.md, "The registry check").
    clock.now += WINDOW - 0.5
    within = ask(registry, question)
    assert (within.outcome, within.cached) == (Outcome.FOUND, True)
    # Past the window the registry is asked again, and its live "not found" denies.
    clock.now += 1.0
    after = ask(registry, question)
    assert (after.outcome, after.cached) == (Outcome.NOT_FOUND, False), after
    # Never reused: asked again, still live.
    assert not ask(registry, question).cached


def test_platforms_stay_cached_by_digest_while_existence_is_asked_again(setup: Setup) -> None:
    """A digest's content cannot change, so its platforms are kept; whether it still exists
    is asked again past the window (a HEAD, not a pull)."""
    repository = "team/platforms-kept"
    digest = push_image(setup.registry, repository, "1.0", architecture="arm64")
    clock = Clock()
    registry = client(setup, clock)
    question = replace(Question(setup.registry.host, repository, "1.0"), platforms=True)
    assert ask(registry, question).platforms
    kept = registry.asker.platforms.get(digest)  # (platforms, single image)
    assert kept is not None
    learned = kept[0]
    assert [str(p) for p in learned] == ["linux/arm64"]
    clock.now += WINDOW + 0.5
    again = ask(registry, question)
    assert (again.outcome, again.cached, again.platforms) == (Outcome.FOUND, False, learned)
    delete_manifest(setup.registry, repository, digest)
    clock.now += WINDOW + 0.5
    assert ask(registry, question).outcome is Outcome.NOT_FOUND


def test_the_window_counts_from_when_the_registry_was_asked(setup: Setup) -> None:
    """An answer is as old as its question: a registry that takes its time does not buy its
    answer a longer life."""
    clock = Clock()

    def slow(request: Request) -> tuple[int, dict[str, str], bytes]:
        clock.now += WINDOW  # the answer arrives a whole window after it was asked for
        return 200, {"Docker-Content-Digest": "sha256:" + "a" * 64}, b""

    server = ScriptedServer(setup.tls, slow)
    try:
        registry = client(setup, clock)
        question = Question(server.host, "team/slow", "1.0")
        assert ask(registry, question).outcome is Outcome.FOUND
        second = ask(registry, question)
        assert (second.outcome, second.cached) == (Outcome.FOUND, False)
        assert len(server.requests) == 2
    finally:
        server.stop()


def test_with_no_window_identical_questions_in_flight_still_share_one(setup: Setup) -> None:
    """``cacheTTLSeconds: 0`` reuses no answer, yet admissions asking the same question at
    the same moment share one request."""
    gate = threading.Event()

    def held(request: Request) -> tuple[int, dict[str, str], bytes]:
        gate.wait(5)
        return 200, {"Docker-Content-Digest": "sha256:" + "b" * 64}, b""

    server = ScriptedServer(setup.tls, held)
    joined = threading.Semaphore(0)  # released as each admission waits on its flight
    try:
        current = RegistrySettings(allow_private_networks=True, cache_ttl_seconds=0)
        registry = HttpRegistry(
            lambda: current, ssl_context=setup.context, on_cache=lambda hit: joined.release()
        )
        question = Question(server.host, "team/shared", "1.0")
        answers: list[Answer] = []
        threads = [
            threading.Thread(target=lambda: answers.append(ask(registry, question)))
            for _ in range(5)
        ]
        for thread in threads:
            thread.start()
        for _ in threads:  # all five are waiting (on one flight) before the registry answers
            assert joined.acquire(timeout=5)
        gate.set()
        for thread in threads:
            thread.join()
        assert [a.outcome for a in answers] == [Outcome.FOUND] * 5
        assert len(server.requests) == 1
        # And the next admission asks again: nothing was kept.
        assert not ask(registry, question).cached
        assert len(server.requests) == 2
    finally:
        server.stop()


def test_a_deleted_tag_is_denied_through_the_server_after_the_window(
    setup: Setup, tmp_path: Path
) -> None:
    from tests.conftest import REVIEWS, load_review, start_server, stop_server

    repository = "team/served-deleted"
    digest = push_image(setup.registry, repository, "1.0")
    push_image(setup.registry, repository, "1.1", content=b"another build\n")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"registry:\n  cacheTTLSeconds: 1\n  allowedPrivateRegistries: ['{setup.registry.host}']\n"
    )
    server = start_server(
        tmp_path,
        "--config",
        str(config),
        "--workers",
        "1",
        env={"SSL_CERT_FILE": str(setup.tls["ca"])},
    )
    review = load_review(REVIEWS / "pod-create-plain.json")["body"]
    spec = review["request"]["object"]["spec"]
    spec["containers"][0]["image"] = f"{setup.registry.host}/{repository}:1.0"
    spec.pop("initContainers", None)
    spec.pop("imagePullSecrets", None)
    try:
        with server.client() as http:
            admitted = http.post("/validate", json=review).json()["response"]
            assert admitted["allowed"] is True, admitted
            delete_manifest(setup.registry, repository, digest)
            time.sleep(1.2)  # the one-second window passes
            denied = http.post("/validate", json=review).json()["response"]
        assert denied["allowed"] is False, denied
        message = denied["status"]["message"]
        assert "has no tag '1.0' (tags there include '1.1')" in message, message
    finally:
        stop_server(server)
