"""Load on the real server: a burst far above capacity, and (opt-in) a soak.

- Burst: 2,000 new TLS connections at once, each with one review, against a server allowed
  20 connections per worker (the rest wait in the listen backlog, as designed). Each review is
  answered, or shed the way the API server sees a slow webhook (its timeout, 10 s here):
  never a 5xx, never a crashed worker; right after, a review is answered at once.
- Soak (``-m soak``, 10 minutes unless ``PULLGUARD_SOAK_SECONDS`` says otherwise): a steady
  rate of /validate and /mutate; zero errors, and each worker's memory flat after warm-up.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import loadgen
from tests.conftest import REVIEWS, Server, load_review, start_server, stop_server

WEBHOOK_TIMEOUT = 10.0
BODY = json.dumps(load_review(REVIEWS / "pod-create-serviceaccount-pull-secrets.json")["body"])
DATA = Path(__file__).parent / "data"


def _workers(server: Server) -> list[int]:
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sorted(int(child) for child in children)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = start_server(
        tmp_path,
        "--config", str(DATA / "config.yaml"),
        "--cluster-state", str(DATA / "cluster-state.yaml"),
        "--namespace", "pullguard",
        "--workers", "2",
        "--connections", "20",
    )  # fmt: skip
    yield running
    stop_server(running)


def test_a_burst_far_above_capacity_is_answered_or_shed_cleanly(server: Server) -> None:
    port = server.port
    workers = _workers(server)
    outcome = loadgen.burst(
        port, server.ca, "/validate", BODY.encode(), count=2000, timeout=WEBHOOK_TIMEOUT
    )
    answered = sum(outcome.statuses.values())
    shed = sum(outcome.errors.values())
    print(f"burst: {answered} answered {outcome.statuses}, {shed} shed {outcome.errors}")
    assert answered + shed == 2000
    assert set(outcome.statuses) <= {200}, outcome.statuses
    assert set(outcome.errors) <= {"TimeoutError", "ConnectionResetError"}, outcome.errors
    assert answered > 0
    assert _workers(server) == workers  # no worker crashed or was replaced
    # And at once afterwards, a review is answered within the API server's timeout: the
    # server recovered. (How fast is the benchmarks' to say: a 1 s bound here failed at
    # 1.07 s on a 2-core machine at load 12, and on the code before the change it guarded.)
    with server.client() as client:  # its timeout: 10 s, the API server's maximum
        reply = client.post("/validate", content=BODY, headers={"Content-Type": "application/json"})
        assert reply.status_code == 200
    assert "Traceback" not in server.log_text()


@pytest.mark.soak
def test_a_steady_rate_for_ten_minutes_without_errors_or_growth(server: Server) -> None:
    seconds = float(os.environ.get("PULLGUARD_SOAK_SECONDS", "600"))
    rate = float(os.environ.get("PULLGUARD_SOAK_RATE", "300"))
    port = server.port
    workers = _workers(server)
    requests = [("/validate", BODY.encode()), ("/mutate", BODY.encode())]
    # Warm-up: caches, allocator arenas, the first minute's growth is not a leak.
    loadgen.open_loop(port, server.ca, requests, rate, min(60.0, seconds / 5))
    before = {pid: _rss_kib(pid) for pid in workers}
    outcome = loadgen.open_loop(port, server.ca, requests, rate, seconds)
    after = {pid: _rss_kib(pid) for pid in workers}
    ordered = sorted(outcome.latencies)
    p99 = ordered[int(len(ordered) * 0.99)]
    print(
        f"soak: {len(ordered)} reviews in {seconds:.0f}s at {rate:.0f}/s, p50 "
        f"{ordered[len(ordered) // 2] * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, "
        f"statuses {outcome.statuses}, errors {outcome.errors}; RSS KiB before {before} "
        f"after {after}"
    )
    assert outcome.errors == {}
    assert set(outcome.statuses) == {200}
    assert p99 < 1.0
    assert _workers(server) == workers
    for pid in workers:
        assert after[pid] - before[pid] < 8 * 1024, f"worker {pid} grew {before[pid]}->{after[pid]}"
