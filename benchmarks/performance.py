"""pullguard against null webhooks, in one run: the figures behind docs/performance.md.

    python benchmarks/performance.py [--seconds 5] [--only http,fixed,apiserver,registry,size,memory]

Prints figures; asserts nothing. Every comparison is made by the same client, in the same run,
on the same cores (the servers and the clients share this machine: the figures compare
servers under the same conditions, not the capacity of a dedicated host).

Servers:

- ``null-2x4``: a Flask app that answers "allowed" without looking, under stock gunicorn
  (gthread, 2 workers x 4 threads, TLS): the reference the targets are ratios to;
- ``null-same``: the same null app on pullguard's own server and settings (gevent worker,
  pullguard's TLS edge, as many workers): what the stack costs;
- ``pullguard``: ``pullguard serve`` with the integration tests' configuration and cluster
  state (registry and platform checks off: they are measured on their own below).

Sections:

- ``http``: reviews/s and p50/p95/p99 over HTTPS keep-alive with wrk (Debian ``wrk``) at
  several concurrencies, for /validate and /mutate, and pullguard's ratio to each null;
- ``fixed``: p50/p99 at a fixed 500 reviews/s (an open-loop client: latency counts from when
  each request was due, so a stall is not hidden by the client waiting for it);
- ``apiserver``: pod-create latency through a real kube-apiserver (KUBEBUILDER_ASSETS: the
  envtest folder the README names): no webhook, the default null pair (two stock gunicorn apps, 1 worker x 4
  threads, 2 s keep-alive, RSA certificates), and pullguard's two webhooks; what each adds;
- ``registry``: /validate p50/p99 with the registry check off, on with a warm cache, and on
  with every check asked live (a real docker-registry on loopback, Debian ``docker-registry``);
- ``size``: /validate and /mutate latency for pods of 1, 10 and 50 containers;
- ``memory``: resident memory of each worker with 10,000 pull secrets in 5,000 namespaces in
  a real API server, after its caches synced and after load.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests import loadgen  # noqa: E402
from tests.conftest import REVIEWS, free_port  # noqa: E402
from webhook.edge.certs import make_bundle  # noqa: E402

DATA = ROOT / "tests" / "integration" / "data"
REVIEW = REVIEWS / "pod-create-serviceaccount-pull-secrets.validate.json"
SECTIONS = ("http", "fixed", "apiserver", "registry", "size", "memory")

WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("REVIEW_BODY")):read("*a")
done = function(summary, latency, requests)
  io.write(string.format('{"rps": %f, "p50": %f, "p95": %f, "p99": %f, "errors": %d}\\n',
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout))
end
"""


# -- servers ---------------------------------------------------------------------------------


@dataclass
class Running:
    name: str
    url: str
    ca: Path
    process: subprocess.Popen[bytes]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []


def rsa_bundle(folder: Path) -> dict[str, Path]:
    """A CA and a 127.0.0.1 serving certificate with RSA 2048 keys: what a default setup
    (cert-manager's default, openssl's habit) serves with."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, key: Any, issuer: str, issuer_key: Any, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            import ipaddress

            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_cert = build("null-ca", ca_key, "null-ca", ca_key, True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = build("127.0.0.1", key, "null-ca", ca_key, False)
    paths = {
        "ca.crt": folder / "ca.crt",
        "tls.crt": folder / "tls.crt",
        "tls.key": folder / "tls.key",
    }
    paths["ca.crt"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["tls.crt"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["tls.key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def wait_answering(server: Running, timeout: float = 60) -> Running:
    context = ssl.create_default_context(cafile=str(server.ca))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(f"{server.name} exited early")
        try:
            reply = httpx.post(server.url + "/validate", json={}, verify=context, timeout=2)
            if reply.status_code in (200, 400):
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{server.name} did not come up at {server.url}")


def start_null_gunicorn(
    name: str, certs: dict[str, Path], *, workers: int, threads: int, keepalive: int | None
) -> Running:
    """Stock gunicorn (gthread) serving benchmarks/null_flask.py over TLS."""
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "benchmarks.null_flask:app",
        "--worker-class", "gthread", "--workers", str(workers), "--threads", str(threads),
        "--certfile", str(certs["tls.crt"]), "--keyfile", str(certs["tls.key"]),
        "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
    ]  # fmt: skip
    if keepalive is not None:
        command += ["--keep-alive", str(keepalive)]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return wait_answering(Running(name, f"https://127.0.0.1:{port}", certs["ca.crt"], process))


def start_null_same(name: str, certs: dict[str, Path], workers: int) -> Running:
    """The null app on pullguard's own server and settings (benchmarks/null_webhook.py)."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable, str(ROOT / "benchmarks" / "null_webhook.py"), "--port", str(port),
            "--cert", str(certs["tls.crt"]), "--key", str(certs["tls.key"]),
            "--workers", str(workers),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return wait_answering(Running(name, f"https://127.0.0.1:{port}", certs["ca.crt"], process))


def start_pullguard(
    work: Path,
    certs: dict[str, Path],
    *args: str,
    env: dict[str, str] | None = None,
    name: str = "pullguard",
) -> Running:
    """``pullguard serve`` with the given certificate; ``args`` add to or replace the dev
    cluster state (give --cluster-state, or KUBECONFIG in ``env``)."""
    port = free_port()
    work.mkdir(parents=True, exist_ok=True)
    log = (work / f"{name}.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable, "-m", "webhook", "serve", "--host", "127.0.0.1",
            "--port", str(port), "--cert", str(certs["tls.crt"]), "--key", str(certs["tls.key"]),
            "--namespace", "pullguard", *args,
        ],
        cwd=work,
        env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})),
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    return wait_answering(Running(name, f"https://127.0.0.1:{port}", certs["ca.crt"], process))


def dev_pullguard(work: Path, certs: dict[str, Path], *extra: str) -> Running:
    return start_pullguard(
        work,
        certs,
        "--dev", "--config", str(DATA / "config.yaml"),
        "--cluster-state", str(DATA / "cluster-state.yaml"),
        *extra,
    )  # fmt: skip


# -- clients ---------------------------------------------------------------------------------


def wrk(url: str, body: Path, connections: int, seconds: float, work: Path) -> dict[str, float]:
    lua = work / "post.lua"
    if not lua.exists():
        lua.write_text(WRK_LUA)
    done = subprocess.run(
        [
            "wrk",
            f"-t{min(2, connections)}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "-s",
            str(lua),
            url,
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, REVIEW_BODY=str(body)),
        check=True,
    )
    line = [x for x in done.stdout.splitlines() if x.startswith("{")][-1]
    figures: dict[str, float] = json.loads(line)
    return figures


def open_loop(
    server: Running, path: str, body: bytes, rate: float, seconds: float, connections: int = 16
) -> tuple[list[float], int]:
    """Requests sent on a fixed schedule (tests/loadgen.py); latencies and failures."""
    outcome = loadgen.open_loop(server.port, server.ca, [(path, body)], rate, seconds, connections)
    failures = sum(outcome.errors.values()) + sum(
        n for status, n in outcome.statuses.items() if status != 200
    )
    return outcome.latencies, failures


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    if not ordered:
        return (float("nan"),) * 3
    pick = lambda q: ordered[min(len(ordered) - 1, int(len(ordered) * q))]  # noqa: E731
    return statistics.median(ordered), pick(0.95), pick(0.99)


def ms(value: float) -> str:
    return f"{value * 1000:8.2f}"


# -- sections --------------------------------------------------------------------------------


def section_http(
    work: Path, seconds: float, levels: list[int], workers: int, repeats: int = 3
) -> None:
    print(f"\n== http: reviews/s and latency (ms), wrk keep-alive, median of {repeats} "
          f"interleaved runs of {seconds:.0f} s per cell ==")  # fmt: skip
    body = work / "review.json"
    body.write_text(json.dumps(json.loads(REVIEW.read_text())["body"]))
    rsa = rsa_bundle(work / "rsa")
    ec = make_bundle(["localhost"], ["127.0.0.1"]).write(work / "ec")
    servers = [
        start_null_gunicorn("null-2x4", rsa, workers=2, threads=4, keepalive=None),
        start_null_same("null-same", ec, workers),
        dev_pullguard(work / "pullguard", ec, "--workers", str(workers)),
    ]
    try:
        print(f"{'endpoint':<10}{'conns':>6}  {'server':<11}{'reviews/s':>10}"
              f"{'p50':>9}{'p95':>9}{'p99':>9}{'errors':>8}  ratio to null-2x4 / null-same")  # fmt: skip
        for endpoint in ("validate", "mutate"):
            for connections in levels:
                # Interleaved repeats, the median of each figure: one run on a shared 2-core
                # machine can be off by a third (a worker that accepted most connections).
                runs: dict[str, list[dict[str, float]]] = {s.name: [] for s in servers}
                for _ in range(repeats):
                    for s in servers:
                        runs[s.name].append(
                            wrk(f"{s.url}/{endpoint}", body, connections, seconds, work)
                        )
                figures = {
                    name: {key: statistics.median(r[key] for r in results) for key in results[0]}
                    for name, results in runs.items()
                }
                ours = figures["pullguard"]["rps"]
                for name, f in figures.items():
                    ratio = ""
                    if name == "pullguard":
                        ratio = f"{ours / figures['null-2x4']['rps']:.2f}x / {ours / figures['null-same']['rps']:.2f}x"
                    print(f"/{endpoint:<9}{connections:>6}  {name:<11}{f['rps']:>10,.0f}"
                          f"{f['p50']:>9.2f}{f['p95']:>9.2f}{f['p99']:>9.2f}{int(f['errors']):>8}  {ratio}")  # fmt: skip
    finally:
        for server in servers:
            server.stop()


def section_fixed(work: Path, seconds: float, workers: int, rate: float = 500) -> None:
    print(f"\n== fixed rate: {rate:.0f} reviews/s for {seconds:.0f} s, 16 connections (ms) ==")
    body = json.dumps(json.loads(REVIEW.read_text())["body"]).encode()
    rsa = rsa_bundle(work / "rsa")
    ec = make_bundle(["localhost"], ["127.0.0.1"]).write(work / "ec")
    servers = [
        start_null_gunicorn("null-2x4", rsa, workers=2, threads=4, keepalive=None),
        dev_pullguard(work / "pullguard-fixed", ec, "--workers", str(workers)),
    ]
    try:
        results = {}
        for endpoint in ("validate", "mutate"):
            for server in servers:
                latencies, errors = open_loop(server, f"/{endpoint}", body, rate, seconds)
                p50, p95, p99 = percentiles(latencies)
                results[(endpoint, server.name)] = p99
                extra = ""
                if server.name == "pullguard":
                    extra = f"  p99 ratio {p99 / results[(endpoint, 'null-2x4')]:.2f}x"
                print(f"/{endpoint:<9} {server.name:<11} n={len(latencies):>6} p50 {ms(p50)} "
                      f"p95 {ms(p95)} p99 {ms(p99)} errors {errors}{extra}")  # fmt: skip
    finally:
        for server in servers:
            server.stop()


def assets() -> Path | None:
    from tests.e2e.cluster import assets_folder

    return assets_folder()


@contextlib.contextmanager
def control_plane(work: Path) -> Iterator[Any]:
    from tests.e2e.cluster import ControlPlane

    folder = assets()
    if folder is None:
        raise SystemExit("needs KUBEBUILDER_ASSETS (kube-apiserver, etcd): see the README")
    work.mkdir(parents=True, exist_ok=True)
    plane = ControlPlane(folder, work).start()
    try:
        yield plane
    finally:
        plane.stop()


def _webhooks(name: str, mutate_url: str, validate_url: str, ca: Path, namespace: str) -> str:
    import base64

    bundle = base64.b64encode(ca.read_bytes()).decode()
    common = {
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
        "failurePolicy": "Fail",
        "timeoutSeconds": 10,
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
            }
        ],
    }
    documents = [
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": f"{kind}WebhookConfiguration",
            "metadata": {"name": f"{name}-{kind.lower()}"},
            "webhooks": [
                {
                    "name": f"{kind.lower()}.{name}.bench",
                    "clientConfig": {"url": url, "caBundle": bundle},
                    **common,
                }
            ],
        }
        for kind, url in (("Mutating", mutate_url), ("Validating", validate_url))
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": documents})


def _create_pods(
    plane: Any, namespace: str, count: int, clients: int, prefix: str = "p"
) -> tuple[list[float], int]:
    """``count`` pod creates from ``clients`` threads: latencies, and how many failed."""
    names = [f"{prefix}{n}" for n in range(count)]
    results = plane.create_pods(namespace, names, "registry.example.com/team/app:1.0", clients)
    return [took for _, took in results], sum(status != 201 for status, _ in results)


def _decision_means(server: Running) -> str:
    """pullguard's mean time from a review's first byte read to its answer, per webhook."""
    text = httpx.get(
        server.url + "/metrics", verify=ssl.create_default_context(cafile=str(server.ca))
    ).text
    means = []
    for webhook in ("mutate", "validate"):
        total = re.search(
            rf'pullguard_admission_duration_seconds_sum{{webhook="{webhook}"}} (\S+)', text
        )
        count = re.search(
            rf'pullguard_admission_duration_seconds_count{{webhook="{webhook}"}} (\S+)', text
        )
        if total and count and float(count.group(1)) > 0:
            means.append(f"{webhook} {float(total.group(1)) / float(count.group(1)) * 1000:.2f} ms")
    return ", ".join(means)


def _webhook_seconds(plane: Any) -> dict[str, tuple[float, float]]:
    """The API server's own account of each webhook's calls: (seconds, calls) so far."""
    text = plane.kubectl("get", "--raw", "/metrics").stdout
    totals: dict[str, list[float]] = {}
    pattern = re.compile(
        r"^apiserver_admission_webhook_admission_duration_seconds_(sum|count)\{(.*)\} (\S+)$"
    )
    for line in text.splitlines():
        found = pattern.match(line)
        if not found:
            continue
        name = re.search(r'name="([^"]*)"', found.group(2))
        entry = totals.setdefault(name.group(1) if name else "?", [0.0, 0.0])
        entry[0 if found.group(1) == "sum" else 1] += float(found.group(3))
    return {name: (value[0], value[1]) for name, value in totals.items()}


def section_apiserver(work: Path, pods: int, clients: int, workers: int, rounds: int) -> None:
    print(f"\n== apiserver: pod-create latency, {pods} creates from {clients} clients, "
          f"{rounds} round(s) (ms) ==")  # fmt: skip
    with control_plane(work / "plane") as plane:
        plane.kubectl("create", "namespace", "pullguard", check=True)
        rsa = rsa_bundle(work / "rsa")
        ec = make_bundle(["localhost"], ["127.0.0.1"]).write(work / "ec-api")
        config = work / "apiserver-config.yaml"
        config.write_text("checks: {registry: off, platform: off}\n")
        kubeconfig = {"KUBECONFIG": str(plane.kubeconfig)}
        setups: list[tuple[str, Callable[[], tuple[list[Running], str, str, Path]]]] = [
            ("no webhook", lambda: ([], "", "", Path())),
        ]

        def null_pair() -> tuple[list[Running], str, str, Path]:
            # Two apps, as two teams would deploy them; both on stock gunicorn's defaults
            # but for 4 threads, and the same CA signs both certificates.
            m = start_null_gunicorn("null-mutate", rsa, workers=1, threads=4, keepalive=None)
            v = start_null_gunicorn("null-validate", rsa, workers=1, threads=4, keepalive=None)
            return [m, v], f"{m.url}/mutate", f"{v.url}/validate", rsa["ca.crt"]

        def pullguard() -> tuple[list[Running], str, str, Path]:
            p = start_pullguard(
                work / "pullguard-api", ec, "--config", str(config), "--workers", str(workers),
                env=kubeconfig,
            )  # fmt: skip
            return [p], f"{p.url}/mutate", f"{p.url}/validate", ec["ca.crt"]

        def null_same() -> tuple[list[Running], str, str, Path]:
            # The null app on pullguard's own server and settings: the stack without the engine.
            n = start_null_same("null-same", ec, workers)
            return [n], f"{n.url}/mutate", f"{n.url}/validate", ec["ca.crt"]

        setups += [
            ("default null pair", null_pair),
            ("null on our server", null_same),
            ("pullguard", pullguard),
        ]
        medians: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in setups}
        for round_number in range(rounds):
            for name, setup in setups:
                namespace = (
                    f"bench-{round_number}-{len(medians[name])}-{re.sub(r'[^a-z]', '', name)}"
                )
                plane.kubectl("create", "namespace", namespace, check=True)
                servers, mutate_url, validate_url, ca = setup()
                try:
                    if servers:
                        plane.apply(
                            _webhooks(namespace, mutate_url, validate_url, ca, namespace),
                            check=True,
                        )
                        time.sleep(2)  # the API server picks up new webhook configurations
                    _create_pods(plane, namespace, 20, clients, "warm")  # warm: connections, caches
                    before = _webhook_seconds(plane)
                    latencies, failures = _create_pods(plane, namespace, pods, clients)
                    after = _webhook_seconds(plane)
                    decided = ""
                    if name == "pullguard":
                        decided = _decision_means(servers[0])
                finally:
                    for server in servers:
                        server.stop()
                    for kind in ("mutating", "validating") if servers else ():
                        plane.kubectl(
                            "delete", f"{kind}webhookconfiguration", f"{namespace}-{kind}"
                        )
                p50, _, p99 = percentiles(latencies)
                stalls = sum(1 for x in latencies if x >= 9.5)
                medians[name].append((p50, p99))
                print(f"round {round_number + 1}  {name:<18} p50 {ms(p50)} p99 {ms(p99)} "
                      f"max {ms(max(latencies))}  failed {failures}  at the 10 s timeout {stalls}")  # fmt: skip
                if decided:
                    print(f"         pullguard's own mean time to decide: {decided}")
                for webhook, (seconds_after, calls_after) in sorted(after.items()):
                    seconds_before, calls_before = before.get(webhook, (0.0, 0.0))
                    calls = calls_after - calls_before
                    if calls > 0 and webhook.endswith(".bench"):
                        mean = (seconds_after - seconds_before) / calls
                        print(
                            f"         API server's mean for {webhook.split('.')[0]} calls: {mean * 1000:.2f} ms"
                        )
        base = medians["no webhook"]
        for name in ("default null pair", "pullguard"):
            added = [
                (p50 - b50, p99 - b99)
                for (p50, p99), (b50, b99) in zip(medians[name], base, strict=True)
            ]
            print(f"added by {name:<18}: p50 " + ", ".join(ms(a[0]).strip() for a in added)
                  + "  p99 " + ", ".join(ms(a[1]).strip() for a in added))  # fmt: skip
        null_added = [
            (p50 - b50, p99 - b99)
            for (p50, p99), (b50, b99) in zip(medians["default null pair"], base, strict=True)
        ]
        ours = [
            (p50 - b50, p99 - b99)
            for (p50, p99), (b50, b99) in zip(medians["pullguard"], base, strict=True)
        ]
        for index, ((o50, o99), (n50, n99)) in enumerate(zip(ours, null_added, strict=True)):
            print(f"round {index + 1}: pullguard adds {o50 / n50 if n50 > 0 else float('nan'):.2f}x "
                  f"the null pair's p50 and {o99 / n99 if n99 > 0 else float('nan'):.2f}x its p99 "
                  "(target: at most 0.5x)")  # fmt: skip


def section_registry(work: Path, seconds: float) -> None:
    print(f"\n== registry: /validate with the registry check, {seconds:.0f} s each, one client ==")
    if shutil.which("docker-registry") is None and not Path("/usr/bin/docker-registry").exists():
        print("skipped: needs the Debian package docker-registry")
        return
    from benchmarks.registry_bench import describe, measure
    from tests.integration.registries import loopback_tls, push_image, start_registry

    tls = loopback_tls(work / "tls")
    registry = start_registry(work / "registry", **tls)
    try:
        push_image(registry, "team/web", "1.0")
        image = f"{registry.host}/team/web:1.0"
        allowed = (
            f"registry:\n  allowedPrivateRegistries: ['{registry.host}']\n  timeoutSeconds: 2\n"
        )
        describe(
            "check off",
            measure(
                work / "off", "checks: {registry: off, platform: off}\n", tls["ca"], image, seconds
            ),
        )
        describe("check on, warm cache", measure(work / "warm", allowed, tls["ca"], image, seconds))
        describe(
            "check on, cold (asked live)",
            measure(work / "cold", allowed + "  cacheTTLSeconds: 0\n", tls["ca"], image, seconds),
        )
        print("budget: registry.timeoutSeconds 2 s here; a cold check never waits longer")
    finally:
        registry.stop()


def _sized_review(containers: int) -> dict[str, Any]:
    review = json.loads(REVIEW.read_text())["body"]
    spec = review["request"]["object"]["spec"]
    template = spec["containers"][0]
    spec["containers"] = []
    for n in range(containers):
        item = copy.deepcopy(template)
        item["name"] = f"c{n}"
        item["image"] = ["nginx:1.25", "ghcr.io/acme/app:v1", "quay.io/team/tool:2"][n % 3]
        spec["containers"].append(item)
    return review


def section_size(work: Path, seconds: float, workers: int) -> None:
    print(
        f"\n== size: latency against containers per pod, wrk 1 connection, {seconds:.0f} s (ms) =="
    )
    ec = make_bundle(["localhost"], ["127.0.0.1"]).write(work / "ec-size")
    server = dev_pullguard(work / "pullguard-size", ec, "--workers", str(workers))
    try:
        for count in (1, 10, 50):
            body = work / f"review-{count}.json"
            body.write_text(json.dumps(_sized_review(count)))
            for endpoint in ("validate", "mutate"):
                f = wrk(f"{server.url}/{endpoint}", body, 1, seconds, work)
                print(f"{count:>3} containers  /{endpoint:<9} {f['rps']:>8,.0f} reviews/s  "
                      f"p50 {f['p50']:6.2f}  p99 {f['p99']:6.2f}  errors {int(f['errors'])}")  # fmt: skip
    finally:
        server.stop()


def _memory(pid: int) -> str:
    """Resident, proportional (shared pages split among the processes sharing them) and
    private memory: workers are forks of the master and share its pages until written."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            fields[name] = int(rest.split()[0]) / 1024
    private = fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)
    return f"RSS {fields.get('Rss', 0):.0f} / PSS {fields.get('Pss', 0):.0f} / private {private:.0f} MiB"


def _populate(plane: Any, namespaces: int, secrets: int, clients: int = 8) -> float:
    """``namespaces`` namespaces holding ``secrets`` dockerconfigjson Secrets, made over the
    API from ``clients`` threads; returns the seconds it took."""
    import base64

    config = base64.b64encode(
        json.dumps(
            {"auths": {"registry.example.com": {"auth": base64.b64encode(b"u:p").decode()}}}
        ).encode()
    ).decode()
    started = time.perf_counter()

    def run(jobs: list[tuple[str, dict[str, Any]]]) -> None:
        # Checked here, not in the client threads: a SystemExit raised in a thread ends only
        # that thread, and a failed populate went unnoticed.
        failed = [
            status for status, _ in plane.post_many(jobs, clients) if status not in (201, 409)
        ]
        if failed:
            raise SystemExit(
                f"populating failed: {len(failed)} requests, statuses {sorted(set(failed))}"
            )

    run([("/api/v1/namespaces", {"metadata": {"name": f"tenant-{n}"}}) for n in range(namespaces)])
    run([
        (f"/api/v1/namespaces/tenant-{n % namespaces}/secrets",
         {"metadata": {"name": f"pull-{n}", "annotations": {
             # as `kubectl apply` leaves it: a second copy of the Secret, data included
             "kubectl.kubernetes.io/last-applied-configuration": json.dumps(
                 {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                  "metadata": {"name": f"pull-{n}", "namespace": f"tenant-{n % namespaces}"},
                  "data": {".dockerconfigjson": config}})}},
          "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": config}})
        for n in range(secrets)
    ])  # fmt: skip
    return time.perf_counter() - started


def section_memory(work: Path, workers: int, namespaces: int, secrets: int) -> None:
    print(f"\n== memory: {secrets:,} pull secrets in {namespaces:,} namespaces, real API server ==")
    with control_plane(work / "plane-memory") as plane:
        plane.kubectl("create", "namespace", "pullguard", check=True)
        took = _populate(plane, namespaces, secrets)
        print(f"populated in {took:.0f} s")
        ec = make_bundle(["localhost"], ["127.0.0.1"]).write(work / "ec-memory")
        config = work / "memory-config.yaml"
        config.write_text("checks: {registry: off, platform: off}\n")
        started = time.perf_counter()
        server = start_pullguard(
            work / "pullguard-memory", ec, "--config", str(config), "--workers", str(workers),
            env={"KUBECONFIG": str(plane.kubeconfig)},
        )  # fmt: skip
        try:
            context = ssl.create_default_context(cafile=str(server.ca))
            deadline = time.monotonic() + 300
            ready = 0
            while time.monotonic() < deadline and ready < 2 * workers:
                # /readyz is answered by whichever worker takes the connection: ready when
                # several answers in a row say so.
                ok = (
                    httpx.get(server.url + "/readyz", verify=context, timeout=10).status_code == 200
                )
                ready = ready + 1 if ok else 0
                time.sleep(0.2)
            print(f"caches synced in {time.perf_counter() - started:.1f} s")
            pids = server.worker_pids()
            print("after sync:  " + "; ".join(f"worker {pid}: {_memory(pid)}" for pid in pids)
                  + f";  master: {_memory(server.process.pid)}")  # fmt: skip
            body = work / "review-memory.json"
            review = json.loads(REVIEW.read_text())["body"]
            review["request"]["namespace"] = "tenant-7"
            body.write_text(json.dumps(review))
            wrk(f"{server.url}/validate", body, 16, 10, work)
            print("after load:  " + "; ".join(f"worker {pid}: {_memory(pid)}" for pid in pids)
                  + "  (target: under 100 MiB per worker)")  # fmt: skip
        finally:
            server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--repeats", type=int, default=3, help="runs per http cell (median)")
    parser.add_argument("--connections", default="1,4,16,64")
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--pods", type=int, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--namespaces", type=int, default=5000)
    parser.add_argument("--secrets", type=int, default=10000)
    args = parser.parse_args()
    chosen = [s for s in args.only.split(",") if s]
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    if {"http", "size", "memory"} & set(chosen) and shutil.which("wrk") is None:
        print("performance: needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    print(f"machine: {os.cpu_count()} cores, {os.uname().sysname} {os.uname().release}, "
          f"Python {sys.version.split()[0]}; pullguard workers: {args.workers}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for section in chosen:
            folder = work / section
            folder.mkdir()
            if section == "http":
                section_http(
                    folder,
                    args.seconds,
                    [int(c) for c in args.connections.split(",")],
                    args.workers,
                    args.repeats,
                )
            elif section == "fixed":
                section_fixed(folder, max(args.seconds, 10), args.workers)
            elif section == "apiserver":
                section_apiserver(folder, args.pods, args.clients, args.workers, args.rounds)
            elif section == "registry":
                section_registry(folder, args.seconds)
            elif section == "size":
                section_size(folder, args.seconds, args.workers)
            elif section == "memory":
                section_memory(folder, args.workers, args.namespaces, args.secrets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
