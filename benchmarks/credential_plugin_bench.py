"""What a kubelet credential-provider plugin costs pullguard's engine (issue 24, first step):
one ask with the plugin run (cold: ``cacheDuration: 0``) and one served from the cache
(warm), and plugin execs per 1,000 asks of one registry with ``cacheKeyType: Registry``.

The plugin is a small Python executable speaking the real JSON (its own start-up dominates
the cold figure; a Go plugin such as ecr-credential-provider starts faster, then spends its
time on the cloud's API). Not yet through /validate: admission does not use the engine yet.

Prints figures; asserts nothing. Run: python benchmarks/credential_plugin_bench.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from webhook.core.credprovider import EnvVar, Provider, ProviderConfig  # noqa: E402
from webhook.edge.credproviders import CredentialProviders  # noqa: E402

PLUGIN = f"""#!{sys.executable}
import json, os, sys
request = json.load(sys.stdin)
answer = {{"kind": "CredentialProviderResponse",
          "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
          "cacheKeyType": "Registry",
          "auth": {{request["image"].split("/")[0]: {{"username": "AWS", "password": "t" * 2048}}}}}}
if os.environ.get("CACHE_DURATION"):
    answer["cacheDuration"] = os.environ["CACHE_DURATION"]
print(json.dumps(answer))
"""
REGISTRY = "111122223333.dkr.ecr.us-east-1.amazonaws.com"


def engine(bin_dir: Path, duration: str | None) -> CredentialProviders:
    env = (EnvVar("CACHE_DURATION", duration),) if duration else ()
    provider = Provider("plugin", ("*.dkr.ecr.*.amazonaws.com",), 43200.0,
                        "credentialprovider.kubelet.k8s.io/v1", env=env)  # fmt: skip
    return CredentialProviders(ProviderConfig((provider,)), str(bin_dir))


def quantiles(samples: list[float]) -> str:
    cuts = statistics.quantiles(samples, n=100)
    return f"p50 {cuts[49] * 1000:.2f} ms, p99 {cuts[98] * 1000:.2f} ms (n={len(samples)})"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bin_dir = Path(tmp)
        (bin_dir / "plugin").write_text(PLUGIN)
        os.chmod(bin_dir / "plugin", 0o755)
        image = f"{REGISTRY}/team/app"

        cold = engine(bin_dir, "0")
        samples = []
        for _ in range(200):
            start = time.perf_counter()
            cold.provide(image, 4.0)
            samples.append(time.perf_counter() - start)
        print(f"cold (plugin runs every ask):  {quantiles(samples)}")

        warm = engine(bin_dir, None)
        warm.provide(image, 4.0)
        samples = []
        for _ in range(20_000):
            start = time.perf_counter()
            warm.provide(image, 4.0)
            samples.append(time.perf_counter() - start)
        print(f"warm (served from the cache): {quantiles(samples)}")

        counted = engine(bin_dir, None)
        for index in range(1000):
            counted.provide(f"{REGISTRY}/team/app{index % 10}", 4.0)
        print(f"plugin execs per 1,000 asks, 10 repositories of one registry, "
              f"cacheKeyType Registry: {counted.execs}")  # fmt: skip


if __name__ == "__main__":
    main()
