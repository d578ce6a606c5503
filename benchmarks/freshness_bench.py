"""What freshness costs (issue 21, item 5): how old may a positive registry answer be to admit?

Against a real distribution registry (Debian ``docker-registry``) on loopback, for several
values of ``registry.cacheTTLSeconds`` (the window), this prints:

- the registry client alone (``HttpRegistry.ask``): p50/p99 of one admission's question,
  and the HEADs the registry received per 1,000 admissions of the same image, at a steady
  rate (``--rate`` admissions per second, the pace of a large rollout) and in a burst (all
  at once from ``--threads`` threads, where identical questions in flight share one request);
- the real server (gunicorn over TLS, ``/validate``): p50/p99 of an admission and HEADs per
  1,000 admissions at the same steady rate.

HEADs are counted in the registry's own access log. Prints figures; asserts nothing.
docs/reference.md ("How fresh an answer is") quotes a run.

Run: python benchmarks/freshness_bench.py [--admissions 1000] [--rate 100] [--threads 32]
     [--windows 0,1,5,30,300] [--server-windows 0,5,300]
"""

from __future__ import annotations

import argparse
import ssl
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import REVIEWS, load_review, start_server, stop_server  # noqa: E402
from tests.integration.registries import (  # noqa: E402
    Registry,
    loopback_tls,
    push_image,
    start_registry,
)
from webhook.core.config import RegistrySettings  # noqa: E402
from webhook.core.registry import Question  # noqa: E402
from webhook.edge.registry import HttpRegistry  # noqa: E402

REPOSITORY = "team/web"


def heads(registry: Registry) -> int:
    """HEADs of the benchmark's manifest so far, from the registry's access log."""
    marker = f'"HEAD /v2/{REPOSITORY}/manifests/'
    return sum(1 for line in registry.log.read_text().splitlines() if marker in line)


def figures(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"p50 {p50 * 1000:7.2f} ms  p99 {p99 * 1000:7.2f} ms"


def paced(count: int, rate: float, once: object) -> list[float]:
    """Call ``once()`` ``count`` times at ``rate`` per second; each call's latency."""
    latencies = []
    start = time.perf_counter()
    for i in range(count):
        due = start + i / rate
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        began = time.perf_counter()
        once()  # type: ignore[operator]
        latencies.append(time.perf_counter() - began)
    return latencies


def client_run(
    registry: Registry, context: ssl.SSLContext, window: int, args: argparse.Namespace
) -> None:
    settings = RegistrySettings(allow_private_networks=True, cache_ttl_seconds=window)
    client = HttpRegistry(lambda: settings, ssl_context=context)
    question = Question(registry.host, REPOSITORY, "1.0")
    try:
        client.ask([question], 2.0)  # warm: the connection, as in a running replica
        before = heads(registry)
        latencies = paced(args.admissions, args.rate, lambda: client.ask([question], 2.0))
        time.sleep(0.3)  # the access log is written after the answer
        steady = (heads(registry) - before) * 1000 / args.admissions
        client.cache.clear()
        before = heads(registry)
        per_thread = args.admissions // args.threads

        def burst() -> None:
            for _ in range(per_thread):
                client.ask([question], 2.0)

        threads = [threading.Thread(target=burst) for _ in range(args.threads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(0.3)
        burst_heads = (heads(registry) - before) * 1000 / (per_thread * args.threads)
    finally:
        client.close()
    print(
        f"client  window {window:>4} s  {figures(latencies)}  HEADs/1000: "
        f"{steady:7.1f} at {args.rate:g}/s, {burst_heads:7.1f} in a burst of {args.threads}"
    )


def server_run(
    registry: Registry, ca: Path, workdir: Path, window: int, args: argparse.Namespace
) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yaml"
    config.write_text(
        "checks: {platform: off}\n"
        "registry:\n"
        f"  cacheTTLSeconds: {window}\n"
        f"  allowedPrivateRegistries: ['{registry.host}']\n"
    )
    server = start_server(workdir, "--config", str(config), env={"SSL_CERT_FILE": str(ca)})
    review = load_review(REVIEWS / "pod-create-plain.json")["body"]
    spec = review["request"]["object"]["spec"]
    spec["containers"][0]["image"] = f"{registry.host}/{REPOSITORY}:1.0"
    spec.pop("initContainers", None)
    spec.pop("imagePullSecrets", None)
    try:
        with server.client() as http:
            for _ in range(20):  # warm every worker's connection
                answer = http.post("/validate", json=review).json()["response"]
            assert answer["allowed"], answer
            before = heads(registry)
            latencies = paced(
                args.admissions, args.rate, lambda: http.post("/validate", json=review)
            )
            time.sleep(0.3)
            steady = (heads(registry) - before) * 1000 / args.admissions
    finally:
        stop_server(server)
    print(
        f"server  window {window:>4} s  {figures(latencies)}  HEADs/1000: "
        f"{steady:7.1f} at {args.rate:g}/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--admissions", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--windows", default="0,1,5,30,300")
    parser.add_argument("--server-windows", default="0,5,300")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        tls = loopback_tls(base / "tls")
        registry = start_registry(base / "registry", **tls)
        context = ssl.create_default_context(cafile=str(tls["ca"]))
        try:
            push_image(registry, REPOSITORY, "1.0")
            print(
                f"{args.admissions} admissions of one image, {args.rate:g}/s "
                f"({args.admissions / args.rate:g} s per run); registry on loopback"
            )
            for window in (int(w) for w in args.windows.split(",") if w):
                client_run(registry, context, window, args)
            for window in (int(w) for w in args.server_windows.split(",") if w):
                server_run(registry, tls["ca"], base / f"server-{window}", window, args)
        finally:
            registry.stop()


if __name__ == "__main__":
    main()
