"""How many distinct image references one core parses and normalizes per second.

Prints figures; asserts nothing (targets are read by people, not by the test suite).
Run: python benchmarks/reference_bench.py [--count N]
Target (issue 2): at least 200,000 distinct references per second on one core.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import time

from webhook.core.reference import parse_or_none

HOSTS = [
    "",
    "",
    "",
    "ghcr.io/",
    "quay.io/",
    "registry.k8s.io/",
    "my-registry.example.com:5000/",
    "123456789012.dkr.ecr.us-east-1.amazonaws.com/",
    "localhost:5000/",
    "[2001:db8::1]:5000/",
    "docker.io/",
    "index.docker.io/",
]
WORDS = [
    "nginx",
    "redis",
    "postgres",
    "app",
    "web-frontend",
    "team_a",
    "node-exporter",
    "library",
    "bitnami",
    "acme",
    "platform",
    "kube-state-metrics",
    "busybox",
]


def make_references(count: int, seed: int = 7) -> list[str]:
    """``count`` distinct, realistic references (tags, digests, ports, paths of 1-3 parts)."""
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < count:
        path = "/".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))
        kind = rng.random()
        if kind < 0.6:
            suffix = f":{rng.randint(0, 30)}.{rng.randint(0, 99)}.{rng.randint(0, 999)}"
        elif kind < 0.8:
            suffix = "@sha256:" + rng.getrandbits(256).to_bytes(32, "big").hex()
        elif kind < 0.9:
            suffix = (
                f":v{rng.randint(0, 9999)}@sha256:" + rng.getrandbits(256).to_bytes(32, "big").hex()
            )
        else:
            suffix = f"-{rng.randint(0, 10**9)}"
        out.add(rng.choice(HOSTS) + path + suffix)
    return list(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=300_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    refs = make_references(args.count)
    figures: dict[str, float] = {}
    for label, with_familiar in (
        ("parse + normalize", False),
        ("parse + normalize + familiar", True),
    ):
        best = 0.0
        for _ in range(args.rounds):
            gc.collect()
            start = time.perf_counter()
            valid = 0
            for value in refs:
                ref = parse_or_none(value)
                if ref is not None:
                    valid += 1
                    str(ref)  # normalize: the fully qualified form
                    if with_familiar:
                        ref.familiar  # noqa: B018 - the short form a person types
            best = max(best, len(refs) / (time.perf_counter() - start))
        figures[label] = best
        print(
            f"{label:30s} {len(refs):,} distinct references ({valid:,} valid): "
            f"best of {args.rounds} rounds {best:,.0f}/s on one core"
        )
    print(f"target: 200,000/s -> {'met' if figures['parse + normalize'] >= 200_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
