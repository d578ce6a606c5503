"""Wall-clock answer times of wide pods through the real server (issue 20, bounded work).

The figures ``tests/integration/test_mutate_work.py`` and ``test_review_work.py`` once
asserted as wall-clock bounds (those flapped on a loaded machine; the tests now count the
work): ``pullguard serve --dev --workers 1`` over TLS, each review POSTed on an open
connection, the answer timed.

- /mutate, a mirror for docker.io (``probe: false``): a Pod with 20,000 docker.io image
  volumes (left as written, one warning), and one at the cap (256 entries, each rewritten).
- /validate, a real registry on loopback that serves the images, the registry check
  enforced and three private registries one edit from its host: a Pod with 20,000 image
  volumes (denied), and a real one with 40 containers and 20 volumes (admitted).

Prints figures; asserts nothing. Run: python3 benchmarks/wide_pod_server_bench.py [--rounds N]
(the budget is ``registry.timeoutSeconds``, 2 s; the tests once asked 1/4 and 1/2 of it for
the wide pods, the whole of it for the real one).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import REVIEWS, Server, load_review, start_server, stop_server  # noqa: E402
from tests.integration.registries import loopback_tls, push_image, start_registry  # noqa: E402

MIRROR = "mirror.example.com/dockerhub"


def review(spec: dict[str, Any], uid: str) -> bytes:
    body = copy.deepcopy(load_review(REVIEWS / "pod-create-plain.json")["body"])
    body["request"]["object"]["spec"] = spec
    body["request"]["uid"] = uid
    return json.dumps(body).encode()


def timed(server: Server, path: str, body: bytes, rounds: int) -> list[float]:
    took = []
    with server.client() as http:
        http.timeout = 60
        http.get("/readyz")  # the connection is open before the clock starts
        for _ in range(rounds):
            started = time.perf_counter()
            reply = http.post(path, content=body, headers={"Content-Type": "application/json"})
            took.append(time.perf_counter() - started)
            assert reply.status_code == 200, reply.text[:300]
    return took


def show(name: str, took: list[float]) -> None:
    print(
        f"{name:<58} median {statistics.median(took) * 1000:7.0f} ms   "
        f"max {max(took) * 1000:7.0f} ms"
    )


def mutate(work: Path, rounds: int) -> None:
    config = work / "mutate.yaml"
    config.write_text(
        "checks: {registry: off, pullPolicy: warn}\n"
        f"mirrors:\n  - registry: docker.io\n    mirror: {MIRROR}\n    probe: false\n"
    )
    (work / "mutate").mkdir()
    server = start_server(work / "mutate", "--config", str(config), "--workers", "1")
    app = {"name": "app", "image": "nginx:1.25"}
    try:
        wide = {
            "containers": [app],
            "volumes": [
                {"name": f"v{n}", "image": {"reference": "docker.io/team/models:1.0"}}
                for n in range(20_000)
            ],
        }
        show(
            "/mutate, 20,000 docker.io image volumes",
            timed(server, "/mutate", review(wide, "w"), rounds),
        )
        at_cap = {
            "containers": [app],
            "volumes": [
                {"name": f"v{n}", "image": {"reference": f"docker.io/team/models-{n}:1.0"}}
                for n in range(255)
            ],
        }
        show(
            "/mutate, 256 entries (the cap), each rewritten",
            timed(server, "/mutate", review(at_cap, "c"), rounds),
        )
    finally:
        stop_server(server)


def validate(work: Path, rounds: int) -> None:
    tls = loopback_tls(work / "tls")
    registry = start_registry(work / "registry", **tls)
    try:
        push_image(registry, "team/app", "1.0")
        push_image(registry, "team/models", "1.0", content=b"weights\n")
        host = registry.host
        near = [host[:-1] + d for d in "0123456789" if d != host[-1]][:3]
        config = work / "validate.yaml"
        config.write_text(
            "checks: {registry: enforce, reference: enforce, pullSecrets: enforce}\n"
            f"registry: {{timeoutSeconds: 2.0, allowedPrivateRegistries: ['{host}']}}\n"
            f"privateRegistries: {json.dumps(near)}\n"
        )
        (work / "validate").mkdir()
        server = start_server(
            work / "validate",
            "--config",
            str(config),
            "--workers",
            "1",
            env={"SSL_CERT_FILE": str(tls["ca"])},
        )
        try:
            wide = {
                "containers": [{"name": "app", "image": f"{host}/team/app:1.0"}],
                "volumes": [
                    {"name": f"v{n}", "image": {"reference": f"{host}/team/models:1.0"}}
                    for n in range(20_000)
                ],
            }
            show(
                "/validate, 20,000 image volumes (denied)",
                timed(server, "/validate", review(wide, "w"), rounds),
            )
            real = {
                "containers": [
                    {"name": f"c{n}", "image": f"{host}/team/app:1.0"} for n in range(40)
                ],
                "volumes": [
                    {"name": f"v{n}", "image": {"reference": f"{host}/team/models:1.0"}}
                    for n in range(20)
                ],
            }
            show(
                "/validate, 40 containers and 20 volumes (admitted)",
                timed(server, "/validate", review(real, "r"), rounds),
            )
        finally:
            stop_server(server)
    finally:
        registry.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="requests per figure (5)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wide-pod-server-") as folder:
        work = Path(folder)
        mutate(work, args.rounds)
        validate(work, args.rounds)


if __name__ == "__main__":
    main()
