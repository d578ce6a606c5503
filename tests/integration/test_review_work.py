"""Bounded work per review through the real server (issue 20, security round two): a Pod
with 20,000 image volumes (the API server takes it: the object is under 1.5 MiB) is answered
well inside ``registry.timeoutSeconds``, decided, and denied under ``enforce``; it was
admitted "not checked" once the typo guess for each entry had spent the review's budget.

Real gunicorn over TLS, a real distribution registry on loopback that serves the images.
The configuration names three registries one edit from the registry's host (a port digit
apart), so each entry's typo guess costs three full edit-distance tables, as a host near a
well-known registry does (``registry.k8s.ix``) without this machine needing DNS for it.

The work is counted, not timed (a wall-clock bound flaps on a loaded machine): the registry
requests the server made for the review (its ``/metrics``), and the typo guess's
edit-distance tables, counted for the same review through the same app in this process. The
wall-clock figures: ``python3 benchmarks/wide_pod_server_bench.py``."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import REVIEWS, Server, load_review, start_server, stop_server
from tests.integration.registries import (
    NEEDS_REGISTRY,
    Registry,
    loopback_tls,
    push_image,
    start_registry,
)
from webhook.core import hosts
from webhook.core.validate import MAX_IMAGE_ENTRIES

pytestmark = NEEDS_REGISTRY

#: The review's budget (``registry.timeoutSeconds``, the shipped default).
BUDGET = 2.0
VOLUMES = 20_000
#: The API server's default object limit (etcd's request size).
OBJECT_LIMIT = 1_572_864


@dataclass
class Setup:
    registry: Registry
    server: Server
    config: str


def _near(host: str) -> list[str]:
    """Three hosts one edit from ``host``: its port's last digit changed."""
    last = host[-1]
    return [host[:-1] + d for d in "0123456789" if d != last][:3]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("review-work")
    tls = loopback_tls(base / "tls")
    registry = start_registry(base / "registry", **tls)
    push_image(registry, "team/app", "1.0")
    push_image(registry, "team/models", "1.0", content=b"weights\n")
    config = base / "config.yaml"
    config.write_text(
        "checks: {registry: enforce, reference: enforce, pullSecrets: enforce}\n"
        f"registry: {{timeoutSeconds: {BUDGET}, allowedPrivateRegistries: ['{registry.host}']}}\n"
        f"privateRegistries: {json.dumps(_near(registry.host))}\n"
    )
    server = start_server(
        base, "--config", str(config), "--workers", "1", env={"SSL_CERT_FILE": str(tls["ca"])}
    )
    yield Setup(registry, server, config.read_text())
    stop_server(server)
    registry.stop()


def _review(spec: dict[str, Any]) -> dict[str, Any]:
    review = copy.deepcopy(load_review(REVIEWS / "pod-create-plain.json")["body"])
    review["request"]["object"]["spec"] = spec
    return review


def _registry_requests(http: Any) -> float:
    """Requests the server has made to registries so far (every registry, every outcome)."""
    text = http.get("/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("pullguard_registry_requests_total{")
    )


def _post(server: Server, review: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """The answer, and the registry requests the server made for it."""
    body = json.dumps(review).encode()
    with server.client() as http:
        http.timeout = 60  # before the fix the answer took seconds: see it, do not time out
        before = _registry_requests(http)
        reply = http.post("/validate", content=body, headers={"Content-Type": "application/json"})
        asked = _registry_requests(http) - before
    return reply.json()["response"], asked


def _typo_guesses(config: str, review: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> int:
    """Edit-distance tables the typo guess computes for ``review`` at /validate, through the
    app ``pullguard serve`` builds from ``config``, in this process (no registry client: the
    guess comes before any question)."""
    from webhook.core.cluster import InMemoryCluster
    from webhook.edge.app import Runtime, create_app
    from webhook.edge.configsource import ConfigStore
    from webhook.edge.metrics import Metrics

    metrics = Metrics()
    store = ConfigStore(metrics)
    store.apply_text(config, "test")
    app = create_app(Runtime(config=store, cluster=InMemoryCluster(), metrics=metrics))
    tables = []
    real = hosts.edit_distance

    def counted(a: str, b: str, limit: int) -> int:
        tables.append(a)
        return real(a, b, limit)

    monkeypatch.setattr(hosts, "edit_distance", counted)
    reply = app.test_client().post("/validate", json=review)
    assert reply.status_code == 200, reply.text[:300]
    return len(tables)


def test_a_pod_with_20000_image_volumes_is_denied_well_inside_the_budget(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = setup.registry.host
    spec = {
        "containers": [{"name": "app", "image": f"{host}/team/app:1.0"}],
        "volumes": [
            {"name": f"v{n}", "image": {"reference": f"{host}/team/models:1.0"}}
            for n in range(VOLUMES)
        ],
    }
    review = _review(spec)
    assert len(json.dumps(review["request"]["object"])) < OBJECT_LIMIT  # the API server takes it
    response, asked = _post(setup.server, review)
    warnings = response.get("warnings") or []
    assert not any("could not run" in w for w in warnings), warnings[:4]
    assert response["allowed"] is False, (asked, warnings[:4])
    message = response["status"]["message"]
    assert f"the pod names {VOLUMES + 1} images" in message, message[:600]
    assert f"pullguard checks at most {MAX_IMAGE_ENTRIES} per object" in message
    # Work in the distinct images, never in the 20,001 entries: two images, a couple of
    # registry requests each at most (2 measured); the typo guess (once per entry, it spent
    # the budget: 60,000 tables) for a bounded number of them (10 measured).
    assert asked <= 2 * 2, asked
    guesses = _typo_guesses(setup.config, review, monkeypatch)
    assert guesses <= 16 * MAX_IMAGE_ENTRIES, guesses
    print(f"\n{VOLUMES + 1} entries: {asked:.0f} registry requests, {guesses} edit distances")


def test_a_real_pod_on_the_same_server_is_admitted(setup: Setup) -> None:
    """No false denial: 40 containers and 20 image volumes the registry serves."""
    host = setup.registry.host
    spec = {
        "containers": [{"name": f"c{n}", "image": f"{host}/team/app:1.0"} for n in range(40)],
        "volumes": [
            {"name": f"v{n}", "image": {"reference": f"{host}/team/models:1.0"}} for n in range(20)
        ],
    }
    response, asked = _post(setup.server, _review(spec))
    assert response["allowed"] is True, response.get("status")
    assert not any("could not run" in w for w in response.get("warnings") or [])
    # Two distinct images: a couple of requests each at most (none when the review above
    # left them cached), never one per entry.
    assert asked <= 2 * 2, asked
