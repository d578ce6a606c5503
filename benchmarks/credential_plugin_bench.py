"""What a kubelet credential-provider plugin costs (issue 24).

The engine alone: one ask with the plugin run (cold: ``cacheDuration: 0``) and one served
from the cache (warm), and plugin execs per 1,000 asks of one registry with
``cacheKeyType: Registry``.

Through ``/validate`` of a real server (``serve --dev --workers 1``: gunicorn over TLS) in
front of the real distribution registry with htpasswd on loopback, the registry asked on
every admission (``cacheTTLSeconds: 0``): p50/p99 of an admission whose credentials come
from a pull secret (``--cluster-state``), from the plugin run every time (cold), and from
the plugin's cached answer (warm); and plugin execs per 1,000 admissions of the same image
with ``cacheKeyType: Registry``, counted in the plugin's own log.

The plugin is a small Python executable speaking the real JSON (its own start-up dominates
the cold figure; a Go plugin such as ecr-credential-provider starts faster, then spends its
time on the cloud's API).

Prints figures; asserts nothing. Run: python benchmarks/credential_plugin_bench.py
[--admissions 1000] [--cold-admissions 200]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import sys
import tempfile
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
from webhook.core.credprovider import EnvVar, Provider, ProviderConfig  # noqa: E402
from webhook.edge.credproviders import CredentialProviders  # noqa: E402

PLUGIN = f"""#!{sys.executable}
import json, os, sys
request = json.load(sys.stdin)
if os.environ.get("PLUGIN_LOG"):
    with open(os.environ["PLUGIN_LOG"], "a") as log:
        log.write(request["image"] + "\\n")
answer = {{"kind": "CredentialProviderResponse",
          "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
          "cacheKeyType": "Registry",
          "auth": {{request["image"].split("/")[0]: {{"username": os.environ.get("PLUGIN_USER", "AWS"),
                                                   "password": os.environ.get("PLUGIN_PASSWORD", "t" * 2048)}}}}}}
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


def engine_figures() -> None:
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


REPOSITORY = "team/app"
PROVIDERS = """apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: plugin
    matchImages: ["{host}"]
    defaultCacheDuration: "12h"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    env:
      - {{name: PLUGIN_LOG, value: "{log}"}}
      - {{name: PLUGIN_USER, value: user}}
      - {{name: PLUGIN_PASSWORD, value: pass}}
{extra}"""


def server_run(
    label: str, registry: Registry, ca: Path, workdir: Path, count: int, *, mode: str
) -> None:
    """``count`` admissions of one image through /validate; ``mode``: secret, cold, warm."""
    workdir.mkdir(parents=True)
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    (bin_dir / "plugin").write_text(PLUGIN)
    os.chmod(bin_dir / "plugin", 0o755)
    log = workdir / "plugin.log"
    extra = '      - {name: CACHE_DURATION, value: "0"}\n' if mode == "cold" else ""
    (workdir / "providers.yaml").write_text(
        PROVIDERS.format(host=registry.host, log=log, extra=extra)
    )
    config = workdir / "config.yaml"
    text = (
        "checks: {platform: off}\n"
        "registry:\n"
        "  cacheTTLSeconds: 0\n"
        f"  allowedPrivateRegistries: ['{registry.host}']\n"
    )
    if mode != "secret":
        text += (
            f"  imageCredentialProviderConfig: {workdir / 'providers.yaml'}\n"
            f"  imageCredentialProviderBinDir: {bin_dir}\n"
        )
    config.write_text(text)
    auth = base64.b64encode(b"user:pass").decode()
    docker = base64.b64encode(json.dumps({"auths": {registry.host: {"auth": auth}}}).encode())
    state = workdir / "state.yaml"
    state.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
        "metadata": {"name": "regcred", "namespace": "team-a"},
        "data": {".dockerconfigjson": docker.decode()},
    }))  # fmt: skip
    server = start_server(
        workdir,
        "--config", str(config), "--workers", "1", "--cluster-state", str(state),
        env={"SSL_CERT_FILE": str(ca)},
    )  # fmt: skip
    review = load_review(REVIEWS / "pod-create-plain.json")["body"]
    spec = review["request"]["object"]["spec"]
    spec["containers"][0]["image"] = f"{registry.host}/{REPOSITORY}:1.0"
    spec.pop("initContainers", None)
    spec.pop("imagePullSecrets", None)
    if mode == "secret":
        spec["imagePullSecrets"] = [{"name": "regcred"}]
    try:
        with server.client() as http:
            deadline = time.monotonic() + 20
            while True:  # the provider document is read a moment after start
                answer = http.post("/validate", json=review).json()["response"]
                if answer["allowed"] and not answer.get("warnings"):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{label}: not admitted cleanly: {answer}")
                time.sleep(0.2)
            before = len(log.read_text().splitlines()) if log.exists() else 0
            samples = []
            warned = 0  # a loaded machine: a registry or plugin past the budget warns
            for _ in range(count):
                start = time.perf_counter()
                answer = http.post("/validate", json=review).json()["response"]
                samples.append(time.perf_counter() - start)
                warned += bool(answer.get("warnings")) or not answer["allowed"]
            execs = (len(log.read_text().splitlines()) if log.exists() else 0) - before
    finally:
        stop_server(server)
    per_1000 = execs * 1000 / count
    print(
        f"/validate, {label}: {quantiles(samples)}; plugin execs per 1,000: {per_1000:g}; "
        f"not admitted cleanly: {warned}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--admissions", type=int, default=1000)
    parser.add_argument("--cold-admissions", type=int, default=200)
    args = parser.parse_args()
    engine_figures()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        tls = loopback_tls(base / "tls")
        registry = start_registry(base / "registry", auth=("user", "pass"), **tls)
        try:
            push_image(registry, REPOSITORY, "1.0")
            for label, mode, count in (
                ("pull secret", "secret", args.admissions),
                ("plugin cold (cacheDuration 0: runs every admission)", "cold", args.cold_admissions),
                ("plugin warm (cacheKeyType Registry, cached)", "warm", args.admissions),
            ):  # fmt: skip
                server_run(label, registry, tls["ca"], base / mode, count, mode=mode)
        finally:
            registry.stop()


if __name__ == "__main__":
    main()
