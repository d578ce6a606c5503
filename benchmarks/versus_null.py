"""pullguard against a null webhook on the same stack: reviews/s and latency, side by side.

Starts ``pullguard serve --dev`` (with the integration tests' configuration and cluster
state) and ``benchmarks/null_webhook.py`` with the same server settings, then drives each with
the same captured AdmissionReview over HTTPS keep-alive, with wrk (Debian package ``wrk``) at
several concurrencies. Prints, per endpoint and concurrency: reviews/s, p50/p95/p99, and
pullguard's throughput as a ratio of the null webhook's. Asserts nothing.

    python benchmarks/versus_null.py [--seconds 5] [--connections 1,4,16,64]

Both servers and wrk share this machine's cores: the figures compare the two servers under the
same conditions, not the capacity of a dedicated host.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import REVIEWS, free_port, start_server, stop_server  # noqa: E402

DATA = ROOT / "tests" / "integration" / "data"
REVIEW = REVIEWS / "pod-create-serviceaccount-pull-secrets.validate.json"

LUA = """
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


def drive(url: str, connections: int, seconds: int, work: Path) -> dict[str, float]:
    threads = min(2, connections)
    done = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "-s",
            str(work / "post.lua"),
            url,
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, REVIEW_BODY=str(work / "body.json")),
        check=True,
    )
    line = [x for x in done.stdout.splitlines() if x.startswith("{")][-1]
    result: dict[str, float] = json.loads(line)
    return result


def wait_ready(url: str, ca: Path) -> None:
    import ssl

    import httpx

    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            reply = httpx.post(url + "/validate", json={}, verify=context, timeout=2)
            if reply.status_code in (200, 400):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not come up")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", default="1,4,16,64")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("versus_null: needs wrk (apt-get install wrk)", file=sys.stderr)
        return 2
    levels = [int(c) for c in args.connections.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "post.lua").write_text(LUA)
        (work / "body.json").write_text(json.dumps(json.loads(REVIEW.read_text())["body"]))
        pullguard = start_server(
            work,
            "--config", str(DATA / "config.yaml"),
            "--cluster-state", str(DATA / "cluster-state.yaml"),
            "--namespace", "pullguard",
        )  # fmt: skip
        null_port = free_port()
        null = subprocess.Popen(
            [
                sys.executable, str(ROOT / "benchmarks" / "null_webhook.py"),
                "--port", str(null_port),
                "--cert", str(work / "certs" / "tls.crt"),
                "--key", str(work / "certs" / "tls.key"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            null_url = f"https://127.0.0.1:{null_port}"
            wait_ready(null_url, work / "certs" / "ca.crt")
            print(f"{'endpoint':<10}{'conns':>6}  {'server':<10}{'reviews/s':>10}"
                  f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}  ratio")  # fmt: skip
            for endpoint in ("validate", "mutate"):
                for connections in levels:
                    base = drive(f"{null_url}/{endpoint}", connections, args.seconds, work)
                    ours = drive(f"{pullguard.url}/{endpoint}", connections, args.seconds, work)
                    for name, figures in (("null", base), ("pullguard", ours)):
                        ratio = f"{ours['rps'] / base['rps']:.2f}x" if name == "pullguard" else ""
                        print(
                            f"/{endpoint:<9}{connections:>6}  {name:<10}{figures['rps']:>10,.0f}"
                            f"{figures['p50']:>9.2f}{figures['p95']:>9.2f}{figures['p99']:>9.2f}"
                            f"{int(figures['errors']):>8}  {ratio}"
                        )
        finally:
            stop_server(pullguard)
            null.terminate()
            null.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
