"""Bounded work per review through the real server (issue 20, security round two): a Pod
with 20,000 image volumes (the API server takes it: the object is under 1.5 MiB) is answered
well inside ``registry.timeoutSeconds``, decided, and denied under ``enforce``; it was
admitted "not checked" once the typo guess for each entry had spent the review's budget.

Real gunicorn over TLS, a real distribution registry on loopback that serves the images.
The configuration names three registries one edit from the registry's host (a port digit
apart), so each entry's typo guess costs three full edit-distance tables, as a host near a
well-known registry does (``registry.k8s.ix``) without this machine needing DNS for it."""

from __future__ import annotations

import copy
import json
import time
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
    yield Setup(registry, server)
    stop_server(server)
    registry.stop()


def _review(spec: dict[str, Any]) -> dict[str, Any]:
    review = copy.deepcopy(load_review(REVIEWS / "pod-create-plain.json")["body"])
    review["request"]["object"]["spec"] = spec
    return review


def _post(server: Server, review: dict[str, Any]) -> tuple[dict[str, Any], float]:
    body = json.dumps(review).encode()
    with server.client() as http:
        http.timeout = 60  # before the fix the answer took seconds: see it, do not time out
        http.get("/readyz")  # the connection is open before the clock starts
        started = time.perf_counter()
        reply = http.post("/validate", content=body, headers={"Content-Type": "application/json"})
        elapsed = time.perf_counter() - started
    return reply.json()["response"], elapsed


def test_a_pod_with_20000_image_volumes_is_denied_well_inside_the_budget(setup: Setup) -> None:
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
    response, elapsed = _post(setup.server, review)
    warnings = response.get("warnings") or []
    assert not any("could not run" in w for w in warnings), warnings[:4]
    assert response["allowed"] is False, (elapsed, warnings[:4])
    message = response["status"]["message"]
    assert f"the pod names {VOLUMES + 1} images" in message, message[:600]
    assert f"pullguard checks at most {MAX_IMAGE_ENTRIES} per object" in message
    assert elapsed < BUDGET / 2, elapsed


def test_a_real_pod_on_the_same_server_is_admitted(setup: Setup) -> None:
    """No false denial: 40 containers and 20 image volumes the registry serves."""
    host = setup.registry.host
    spec = {
        "containers": [{"name": f"c{n}", "image": f"{host}/team/app:1.0"} for n in range(40)],
        "volumes": [
            {"name": f"v{n}", "image": {"reference": f"{host}/team/models:1.0"}} for n in range(20)
        ],
    }
    response, elapsed = _post(setup.server, _review(spec))
    assert response["allowed"] is True, response.get("status")
    assert not any("could not run" in w for w in response.get("warnings") or [])
    assert elapsed < BUDGET, elapsed
