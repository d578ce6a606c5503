"""A worker's memory under the registry memory attacks of issue 20 (item 3), measured.

An attacker's registry on loopback (tests.integration.faults.ScriptedServer) answers every
repository through a Bearer challenge with a 60 KiB token, and serves an index for each one
(its own digest) whose platform names are ``--platform-kib`` KiB long. Dry-run pods of 32
images each, four at a time (each from its own namespace), go through ``pullguard serve --dev`` (one worker, the real
gunicorn over TLS); the worker's RSS is read from /proc before and after.

Prints figures; asserts nothing. The target: the worker stays under 200 MiB (the pod limit
is 384 MiB; before the fix four pods of this took a worker from 101 to 610 MiB).

Run: python benchmarks/registry_memory.py [--rounds N] [--platform-kib K]
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import REVIEWS, load_review, start_server, stop_server  # noqa: E402
from tests.integration.faults import Request, ScriptedServer  # noqa: E402
from tests.integration.registries import loopback_tls  # noqa: E402

INDEX = "application/vnd.oci.image.index.v1+json"
TOKEN = "t" * 60_000


def attacker(tls: dict[str, Path], platform_bytes: int) -> ScriptedServer:
    def index(repository: str) -> bytes:
        entry = {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": "sha256:" + hashlib.sha256(repository.encode()).hexdigest(),
            "size": 1,
            "platform": {"os": "linux" + "x" * platform_bytes, "architecture": "amd64"},
        }
        body = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [entry]}
        return json.dumps(body).encode()

    def serve(request: Request) -> tuple[int, dict[str, str], bytes]:
        if request.path.startswith("/token"):
            return 200, {}, json.dumps({"token": TOKEN, "expires_in": 300}).encode()
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            challenge = f'Bearer realm="https://{server.host}/token",service="s"'
            return 401, {"WWW-Authenticate": challenge}, b""
        repository = request.path.split("/manifests/")[0].removeprefix("/v2/")
        body = index(repository)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        return 200, {"Content-Type": INDEX, "Docker-Content-Digest": digest}, body

    server = ScriptedServer(tls, serve)
    return server


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def worker_pid(master: int) -> int:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            return int(stat.parent.name)
    raise RuntimeError("no worker process")


def pod(host: str, round_: int, number: int) -> dict[str, object]:
    review = load_review(REVIEWS / "pod-create-plain.json")["body"]
    request = review["request"]
    request["dryRun"] = True
    # Four namespaces: the per-namespace share of the registry client would otherwise turn
    # three of the four pods away at once, and this measures the caches, not the share.
    request["namespace"] = request["object"]["metadata"]["namespace"] = f"attacker-{number}"
    spec = request["object"]["spec"]
    spec["containers"] = [
        {"name": f"c{i}", "image": f"{host}/r{round_}-{number}-{i}/app:1"} for i in range(32)
    ]
    spec.pop("initContainers", None)
    spec.pop("imagePullSecrets", None)
    return review


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--platform-kib", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        base = Path(folder)
        tls = loopback_tls(base / "tls")
        registry = attacker(tls, args.platform_kib * 1024)
        (base / "config.yaml").write_text(
            f"registry:\n  allowedPrivateRegistries: ['{registry.host}']\n  timeoutSeconds: 4\n"
        )
        server = start_server(
            base,
            "--config",
            str(base / "config.yaml"),
            "--workers",
            "1",
            env={"SSL_CERT_FILE": str(tls["ca"])},
        )
        try:
            time.sleep(2)
            worker = worker_pid(server.process.pid)
            before = rss_mib(worker)
            peak = before
            unchecked = 0
            started = time.monotonic()
            for round_ in range(args.rounds):
                warnings: list[str] = []

                def send(number: int, round_: int = round_, into: list[str] = warnings) -> None:
                    with server.client() as http:
                        answer = http.post("/validate", json=pod(registry.host, round_, number))
                        into.extend(answer.json()["response"].get("warnings", []))

                threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                unchecked += sum("could not run" in w for w in warnings)
                peak = max(peak, rss_mib(worker))
            after = rss_mib(worker)
            elapsed = time.monotonic() - started
        finally:
            stop_server(server)
            registry.stop()
    questions = args.rounds * 4 * 32
    print(
        f"{questions} image questions ({args.rounds} rounds of 4 dry-run pods x 32 images), "
        f"60 KiB tokens, {args.platform_kib} KiB platform names, in {elapsed:.0f} s"
    )
    print(f"worker RSS: before {before:.1f} MiB, after {after:.1f} MiB, peak {peak:.1f} MiB")
    kinds = collections.Counter(
        (
            r.method,
            "token"
            if r.path.startswith("/token")
            else "authorized"
            if "authorization" in r.headers
            else "anonymous",
        )
        for r in registry.requests
    )
    print(
        f"requests the attacker's registry served: {len(registry.requests)}; pods with images "
        f"not checked: {unchecked}; {dict(kinds)}"
    )


if __name__ == "__main__":
    main()
