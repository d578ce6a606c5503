"""Bounded work and bounded answers on /mutate through the real server (issue 20, security
round two): a Pod with 20,000 docker.io image volumes and a mirror configured took 0.47 s of
CPU and was answered with 20,001 warnings (no bound on their total), a JSON patch of 20,002
operations and a log line per entry. Now it is left as written, with one warning; and the
warnings of every response, /mutate and /validate alike, stay within the share of the API
server's 4096 runes that each webhook has, the last kept one saying how many more there were.

Real gunicorn over TLS (``pullguard serve --dev``); the mirror has ``probe: false`` (an
admin's promise that the nodes reach it), so the decision does not wait on a probe. The work
per entry is counted, not timed (a wall-clock bound flaps on a loaded machine): the same
review through the same app in this process, with the parses of a reference and the mirror
look-ups counted. The wall-clock figures: ``python3 benchmarks/wide_pod_server_bench.py``."""

from __future__ import annotations

import base64
import collections
import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import REVIEWS, Server, load_review, start_server, stop_server
from webhook.core import mutate
from webhook.core.podspec import MAX_IMAGE_ENTRIES
from webhook.core.review import MUTATE_WARNING_RUNES, VALIDATE_WARNING_RUNES

VOLUMES = 20_000
#: The API server's default object limit (etcd's request size).
OBJECT_LIMIT = 1_572_864
MIRROR = "mirror.example.com/dockerhub"
CONFIG = (
    "checks: {registry: off, pullPolicy: warn}\n"
    f"mirrors:\n  - registry: docker.io\n    mirror: {MIRROR}\n    probe: false\n"
)
#: The per-entry work of /mutate: parsing an entry's reference, looking up its mirror.
COUNTED = ("parse_or_none", "mirror_entry")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("mutate-work")
    config = base / "config.yaml"
    config.write_text(CONFIG)
    started = start_server(base, "--config", str(config), "--workers", "1")
    yield started
    stop_server(started)


def _work(review: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """The per-entry work (``COUNTED``) of ``review`` at /mutate, through the app
    ``pullguard serve --dev`` builds from ``CONFIG``, in this process."""
    from webhook.core.cluster import InMemoryCluster
    from webhook.edge.app import Runtime, create_app
    from webhook.edge.configsource import ConfigStore
    from webhook.edge.metrics import Metrics

    metrics = Metrics()
    store = ConfigStore(metrics)
    store.apply_text(CONFIG, "test")
    app = create_app(Runtime(config=store, cluster=InMemoryCluster(), metrics=metrics))
    counts: collections.Counter[str] = collections.Counter()
    for name in COUNTED:
        real = getattr(mutate, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            counts[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(mutate, name, counted)
    reply = app.test_client().post("/mutate", json=review)
    assert reply.status_code == 200, reply.text[:400]
    return counts


def _review(spec: dict[str, Any], uid: str) -> dict[str, Any]:
    review = copy.deepcopy(load_review(REVIEWS / "pod-create-plain.json")["body"])
    review["request"]["object"]["spec"] = spec
    review["request"]["uid"] = uid
    return review


def _post(server: Server, path: str, review: dict[str, Any]) -> dict[str, Any]:
    body = json.dumps(review).encode()
    with server.client() as http:
        http.timeout = 60  # before the fix the answer took long: see it, do not time out
        reply = http.post(path, content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == 200, reply.text[:400]
    response: dict[str, Any] = reply.json()["response"]
    return response


def _patch(response: dict[str, Any]) -> list[dict[str, Any]]:
    raw = response.get("patch")
    return json.loads(base64.b64decode(raw)) if raw else []


def _mutate_lines(server: Server, uid: str) -> list[str]:
    return [line for line in server.log_text().splitlines() if f"mutate uid={uid}" in line]


def test_a_pod_with_20000_docker_hub_image_volumes_is_left_as_written(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = {
        "containers": [{"name": "app", "image": "nginx:1.25"}],
        "volumes": [
            {"name": f"v{n}", "image": {"reference": "docker.io/team/models:1.0"}}
            for n in range(VOLUMES)
        ],
    }
    review = _review(spec, "wide-20000")
    assert len(json.dumps(review["request"]["object"])) < OBJECT_LIMIT  # the API server takes it
    response = _post(server, "/mutate", review)
    warnings = response.get("warnings") or []
    assert response["allowed"] is True
    assert _patch(response) == [], len(_patch(response))
    assert len(warnings) == 1, (len(warnings), warnings[:3])
    assert f"the pod names {VOLUMES + 1} images" in warnings[0], warnings[0]
    assert f"at most {MAX_IMAGE_ENTRIES} per object" in warnings[0], warnings[0]
    # No entry's reference parsed, no mirror looked up: the cap is counted first (it took
    # 0.47 s of CPU when each of the 20,001 entries was rewritten).
    work = _work(review, monkeypatch)
    assert work == {}, work
    lines = _mutate_lines(server, "wide-20000")
    assert len(lines) == 1, lines[:3]
    assert "reason=too-many-images" in lines[0], lines[0]


def test_a_pod_at_the_cap_is_rewritten_whole_and_its_answer_is_bounded(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No real pod is touched by the cap; its warnings stay within the mutating share."""
    containers = [{"name": "app", "image": "nginx:1.25"}]
    volumes = [
        {"name": f"v{n}", "image": {"reference": f"docker.io/team/models-{n}:1.0"}}
        for n in range(MAX_IMAGE_ENTRIES - 1)
    ]
    review = _review({"containers": containers, "volumes": volumes}, "at-cap")
    response = _post(server, "/mutate", review)
    patch = _patch(response)
    rewritten = [op for op in patch if op["op"] == "replace"]
    assert len(rewritten) == MAX_IMAGE_ENTRIES
    assert all(op["value"].startswith(MIRROR + "/") for op in rewritten)
    assert len(patch) <= MAX_IMAGE_ENTRIES + 2  # and the annotation
    warnings = response.get("warnings") or []
    assert sum(len(w) for w in warnings) <= MUTATE_WARNING_RUNES
    shown = len(warnings) - 1
    assert warnings[-1] == f"pullguard: {MAX_IMAGE_ENTRIES - shown} more warnings not shown"
    # Each entry's mirror looked up once and its reference parsed at most twice: work in
    # proportion to the entries, and no more.
    work = _work(review, monkeypatch)
    assert work["mirror_entry"] == MAX_IMAGE_ENTRIES, work
    assert work["parse_or_none"] <= 2 * MAX_IMAGE_ENTRIES, work
    lines = _mutate_lines(server, "at-cap")
    assert len(lines) == 1, lines[:3]
    assert f"rewrites={MAX_IMAGE_ENTRIES} " in lines[0], lines[0]


def test_validate_warnings_stay_within_their_share(server: Server) -> None:
    """200 containers on ``:latest`` with IfNotPresent: a pull-policy warning each."""
    containers = [
        {"name": f"c{n}", "image": f"team/app-{n}:latest", "imagePullPolicy": "IfNotPresent"}
        for n in range(200)
    ]
    response = _post(server, "/validate", _review({"containers": containers}, "warned"))
    warnings = response.get("warnings") or []
    assert response["allowed"] is True
    assert sum(len(w) for w in warnings) <= VALIDATE_WARNING_RUNES
    assert warnings[-1].endswith("more warnings not shown"), warnings[-1]
    assert len(warnings) > 4  # the share is used, not wasted
