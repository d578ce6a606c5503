"""Admission decisions per second and the memory they use, on the captured reviews.

Prints figures; asserts nothing. Two measurements:

1. The pure engine in-process (validate + mutate of every file in tests/fixtures/admission-reviews
   against an in-memory cluster): decisions per second on one core, and peak Python memory
   (tracemalloc) for a batch.
2. The real server (gunicorn over TLS, one worker): requests per second and latency
   percentiles from one keep-alive client, and the worker's resident memory after the run.

Run: python benchmarks/admission_bench.py [--seconds N]
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.conftest import REVIEWS, start_server, stop_server  # noqa: E402
from webhook.core.config import load_config_text  # noqa: E402
from webhook.core.mutate import mutate  # noqa: E402
from webhook.core.review import parse_review  # noqa: E402
from webhook.core.validate import validate  # noqa: E402
from webhook.edge.statefile import load_cluster_state  # noqa: E402

DATA = ROOT / "tests" / "integration" / "data"


def engine(seconds: float) -> None:
    config = load_config_text((DATA / "config.yaml").read_text())
    cluster = load_cluster_state(DATA / "cluster-state.yaml")
    bodies = [json.loads(p.read_text())["body"] for p in sorted(REVIEWS.glob("*.json"))]
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for body in bodies:
            request = parse_review(body)
            validate(request, config, cluster)
            mutate(request, config, cluster)
            count += 1
    elapsed = time.perf_counter() - start
    tracemalloc.start()
    for body in bodies * 10:
        request = parse_review(body)
        validate(request, config, cluster)
        mutate(request, config, cluster)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"engine: {count / elapsed:,.0f} reviews/s (validate+mutate, one core), "
        f"{elapsed / count * 1e6:,.0f} us each; peak {peak / 1024:,.0f} KiB for "
        f"{len(bodies) * 10} reviews"
    )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def server(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as work:
        running = start_server(
            Path(work),
            "--config",
            str(DATA / "config.yaml"),
            "--cluster-state",
            str(DATA / "cluster-state.yaml"),
        )
        try:
            bodies = [json.loads(p.read_text())["body"] for p in sorted(REVIEWS.glob("*.json"))]
            context = ssl.create_default_context(cafile=str(running.ca))
            latencies: list[float] = []
            with httpx.Client(base_url=running.url, verify=context, timeout=10) as client:
                start = time.perf_counter()
                while time.perf_counter() - start < seconds:
                    for body in bodies:
                        t0 = time.perf_counter()
                        reply = client.post("/validate", json=body)
                        latencies.append(time.perf_counter() - t0)
                        assert reply.status_code == 200
                elapsed = time.perf_counter() - start
            workers = [
                int(p)
                for p in os.listdir("/proc")
                if p.isdigit() and _parent(int(p)) == running.process.pid
            ]
            rss = sum(rss_kib(p) for p in workers)
        finally:
            stop_server(running)
    quantiles = statistics.quantiles(latencies, n=100)
    print(
        f"server: {len(latencies) / elapsed:,.0f} requests/s from one keep-alive client; "
        f"latency p50 {quantiles[49] * 1000:.1f} ms, p99 {quantiles[98] * 1000:.1f} ms; "
        f"worker RSS {rss / 1024:.0f} MiB"
    )


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    engine(args.seconds)
    server(args.seconds)


if __name__ == "__main__":
    main()
