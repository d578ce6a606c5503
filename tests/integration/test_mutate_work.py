"""Bounded work and bounded answers on /mutate through the real server (issue 20, security
round two): a Pod with 20,000 docker.io image volumes and a mirror configured took 0.47 s of
CPU and was answered with 20,001 warnings (no bound on their total), a JSON patch of 20,002
operations and a log line per entry. Now it is left as written, with one warning; and the
warnings of every response, /mutate and /validate alike, stay within the share of the API
server's 4096 runes that each webhook has, the last kept one saying how many more there were.

Real gunicorn over TLS (``pullguard serve --dev``); the mirror has ``probe: false`` (an
admin's promise that the nodes reach it), so the decision does not wait on a probe."""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REVIEWS, Server, load_review, start_server, stop_server
from webhook.core.podspec import MAX_IMAGE_ENTRIES
from webhook.core.review import MUTATE_WARNING_RUNES, VALIDATE_WARNING_RUNES

#: The review's budget (``registry.timeoutSeconds``, the shipped default).
BUDGET = 2.0
VOLUMES = 20_000
#: The API server's default object limit (etcd's request size).
OBJECT_LIMIT = 1_572_864
MIRROR = "mirror.example.com/dockerhub"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("mutate-work")
    config = base / "config.yaml"
    config.write_text(
        "checks: {registry: off, pullPolicy: warn}\n"
        f"mirrors:\n  - registry: docker.io\n    mirror: {MIRROR}\n    probe: false\n"
    )
    started = start_server(base, "--config", str(config), "--workers", "1")
    yield started
    stop_server(started)


def _review(spec: dict[str, Any], uid: str) -> dict[str, Any]:
    review = copy.deepcopy(load_review(REVIEWS / "pod-create-plain.json")["body"])
    review["request"]["object"]["spec"] = spec
    review["request"]["uid"] = uid
    return review


def _post(server: Server, path: str, review: dict[str, Any]) -> tuple[dict[str, Any], float]:
    body = json.dumps(review).encode()
    with server.client() as http:
        http.timeout = 60  # before the fix the answer took long: see it, do not time out
        http.get("/readyz")  # the connection is open before the clock starts
        started = time.perf_counter()
        reply = http.post(path, content=body, headers={"Content-Type": "application/json"})
        elapsed = time.perf_counter() - started
    assert reply.status_code == 200, reply.text[:400]
    return reply.json()["response"], elapsed


def _patch(response: dict[str, Any]) -> list[dict[str, Any]]:
    raw = response.get("patch")
    return json.loads(base64.b64decode(raw)) if raw else []


def _mutate_lines(server: Server, uid: str) -> list[str]:
    return [line for line in server.log_text().splitlines() if f"mutate uid={uid}" in line]


def test_a_pod_with_20000_docker_hub_image_volumes_is_left_as_written(server: Server) -> None:
    spec = {
        "containers": [{"name": "app", "image": "nginx:1.25"}],
        "volumes": [
            {"name": f"v{n}", "image": {"reference": "docker.io/team/models:1.0"}}
            for n in range(VOLUMES)
        ],
    }
    review = _review(spec, "wide-20000")
    assert len(json.dumps(review["request"]["object"])) < OBJECT_LIMIT  # the API server takes it
    response, elapsed = _post(server, "/mutate", review)
    warnings = response.get("warnings") or []
    assert response["allowed"] is True
    assert _patch(response) == [], len(_patch(response))
    assert len(warnings) == 1, (len(warnings), warnings[:3])
    assert f"the pod names {VOLUMES + 1} images" in warnings[0], warnings[0]
    assert f"at most {MAX_IMAGE_ENTRIES} per object" in warnings[0], warnings[0]
    assert elapsed < BUDGET / 4, elapsed
    lines = _mutate_lines(server, "wide-20000")
    assert len(lines) == 1, lines[:3]
    assert "reason=too-many-images" in lines[0], lines[0]


def test_a_pod_at_the_cap_is_rewritten_whole_and_its_answer_is_bounded(server: Server) -> None:
    """No real pod is touched by the cap; its warnings stay within the mutating share."""
    containers = [{"name": "app", "image": "nginx:1.25"}]
    volumes = [
        {"name": f"v{n}", "image": {"reference": f"docker.io/team/models-{n}:1.0"}}
        for n in range(MAX_IMAGE_ENTRIES - 1)
    ]
    response, elapsed = _post(
        server, "/mutate", _review({"containers": containers, "volumes": volumes}, "at-cap")
    )
    patch = _patch(response)
    rewritten = [op for op in patch if op["op"] == "replace"]
    assert len(rewritten) == MAX_IMAGE_ENTRIES
    assert all(op["value"].startswith(MIRROR + "/") for op in rewritten)
    assert len(patch) <= MAX_IMAGE_ENTRIES + 2  # and the annotation
    warnings = response.get("warnings") or []
    assert sum(len(w) for w in warnings) <= MUTATE_WARNING_RUNES
    shown = len(warnings) - 1
    assert warnings[-1] == f"pullguard: {MAX_IMAGE_ENTRIES - shown} more warnings not shown"
    assert elapsed < BUDGET / 2, elapsed
    lines = _mutate_lines(server, "at-cap")
    assert len(lines) == 1, lines[:3]
    assert f"rewrites={MAX_IMAGE_ENTRIES} " in lines[0], lines[0]


def test_validate_warnings_stay_within_their_share(server: Server) -> None:
    """200 containers on ``:latest`` with IfNotPresent: a pull-policy warning each."""
    containers = [
        {"name": f"c{n}", "image": f"team/app-{n}:latest", "imagePullPolicy": "IfNotPresent"}
        for n in range(200)
    ]
    response, _ = _post(server, "/validate", _review({"containers": containers}, "warned"))
    warnings = response.get("warnings") or []
    assert response["allowed"] is True
    assert sum(len(w) for w in warnings) <= VALIDATE_WARNING_RUNES
    assert warnings[-1].endswith("more warnings not shown"), warnings[-1]
    assert len(warnings) > 4  # the share is used, not wasted
