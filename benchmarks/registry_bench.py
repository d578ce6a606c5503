"""Latency of /validate with the registry check off, on with a warm cache, and on with no
cache (every admission asks the registry live), against a real docker-registry on loopback.

Prints figures; asserts nothing. The target (issue 9): warm-cache latency within 10% of
latency with the check off.

Run: python benchmarks/registry_bench.py [--seconds N]   (needs the Debian docker-registry)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import REVIEWS, load_review, start_server, stop_server  # noqa: E402
from tests.integration.registries import loopback_tls, push_image, start_registry  # noqa: E402


def measure(workdir: Path, config: str, ca: Path, image: str, seconds: float) -> list[float]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(config)
    server = start_server(
        workdir, "--config", str(workdir / "config.yaml"), env={"SSL_CERT_FILE": str(ca)}
    )
    review = load_review(REVIEWS / "pod-create-plain.json")["body"]
    spec = review["request"]["object"]["spec"]
    spec["containers"][0]["image"] = image
    spec.pop("initContainers", None)
    spec.pop("imagePullSecrets", None)
    latencies = []
    try:
        with server.client() as client:
            for _ in range(50):  # warm up: connections, caches
                answer = client.post("/validate", json=review).json()["response"]
            assert answer["allowed"], answer
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                start = time.perf_counter()
                client.post("/validate", json=review)
                latencies.append(time.perf_counter() - start)
    finally:
        stop_server(server)
    return latencies


def describe(name: str, latencies: list[float]) -> float:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p95 = ordered[int(len(ordered) * 0.95)]
    p99 = ordered[int(len(ordered) * 0.99)]
    print(
        f"{name:<34} n={len(ordered):>6}  p50 {p50 * 1000:6.2f} ms  p95 {p95 * 1000:6.2f} ms  "
        f"p99 {p99 * 1000:6.2f} ms"
    )
    return p50


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        tls = loopback_tls(base / "tls")
        registry = start_registry(base / "registry", **tls)
        try:
            push_image(registry, "team/web", "1.0")
            image = f"{registry.host}/team/web:1.0"
            allowed = f"registry:\n  allowedPrivateRegistries: ['{registry.host}']\n"
            off = describe(
                "registry check off",
                measure(
                    base / "off",
                    "checks: {registry: off, platform: off}\n",
                    tls["ca"],
                    image,
                    args.seconds,
                ),
            )
            warm = describe(
                "registry check on, warm cache",
                measure(base / "warm", allowed, tls["ca"], image, args.seconds),
            )
            describe(
                "registry check on, no cache (live)",
                measure(
                    base / "live",
                    allowed + "  cacheTTLSeconds: 0\n",
                    tls["ca"],
                    image,
                    args.seconds,
                ),
            )
            print(f"warm cache vs off, p50: {warm / off:.2f}x (target: at most 1.10x)")
        finally:
            registry.stop()


if __name__ == "__main__":
    main()
