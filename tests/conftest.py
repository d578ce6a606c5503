"""Shared fixtures: the captured AdmissionReviews, and a real pullguard server (gunicorn over TLS).

Every input lives in this repository: a user's clone has nothing beside it.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from webhook.edge.logs import FLUSH_SECONDS

ROOT = Path(__file__).resolve().parent.parent
#: Real requests captured from a kube-apiserver (see the README in that folder).
REVIEWS = ROOT / "tests" / "fixtures" / "admission-reviews"


def review_files() -> list[Path]:
    return sorted(REVIEWS.glob("*.json"))


def load_review(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def metric_value(text: str, series: str) -> float:
    """The value of one series (name and labels, as exposed) in a /metrics text; 0 if absent.
    Several workers' values are already summed in the text."""
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def checkout_env(**extra: str) -> dict[str, str]:
    """The environment for a ``python -m webhook`` child: this checkout's code first, whatever
    ``pip install -e`` last pointed at (children run in temporary folders)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1", **extra)


@dataclass
class Server:
    url: str
    ca: Path
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def client(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.ca))
        return httpx.Client(base_url=self.url, verify=context, timeout=10)

    def log_text(self) -> str:
        """The server's log so far, INFO lines included: those are written in batches at
        most FLUSH_SECONDS old (webhook/edge/logs.py), so this waits that long first."""
        time.sleep(FLUSH_SECONDS + 0.1)
        return self.log.read_text(errors="replace")


def start_server(
    workdir: Path, *args: str, ca: Path | None = None, env: dict[str, str] | None = None
) -> Server:
    """``pullguard serve --dev`` in ``workdir`` (its certs/ go there), ready on return.
    ``env``: extra environment (``SSL_CERT_FILE`` for registries with a test CA)."""
    port = free_port()
    log = workdir / "server.log"
    env = checkout_env(**(env or {}))
    process = subprocess.Popen(
        [sys.executable, "-m", "webhook", "serve", "--dev", "--port", str(port), *args],
        cwd=workdir,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    server = Server(f"https://127.0.0.1:{port}", ca or workdir / "certs" / "ca.crt", process, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pullguard exited early:\n{server.log_text()}")
        try:
            if server.ca.exists():
                with server.client() as client:
                    if client.get("/readyz").status_code == 200:
                        return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"pullguard not ready in 30s:\n{server.log_text()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="session")
def golden_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = ROOT / "tests" / "integration" / "data"
    workdir = tmp_path_factory.mktemp("golden-server")
    server = start_server(
        workdir,
        "--config",
        str(data / "config.yaml"),
        "--cluster-state",
        str(data / "cluster-state.yaml"),
        "--namespace",
        "pullguard",
    )
    yield server
    stop_server(server)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Soak tests and the tests of open findings run only when asked for (``-m soak``,
    ``-m open_finding``): deselected, not skipped, otherwise."""
    asked = config.getoption("markexpr") or ""
    for marker in ("soak", "open_finding"):
        if marker in asked:
            continue
        left = [item for item in items if item.get_closest_marker(marker)]
        if left:
            config.hook.pytest_deselected(items=left)
            items[:] = [item for item in items if not item.get_closest_marker(marker)]


# -- skips that must not happen -----------------------------------------------------------


def skips_forbidden(item: pytest.Item) -> str | None:
    """Why a skip of ``item`` is a failure here, or ``None`` when a skip is acceptable.

    - ``KUBEBUILDER_ASSETS`` set (``.ci/run`` sets it): the control plane is expected, so an
      end-to-end test that skips is a failure, not a pass.
    - ``CI`` set: CI installs every real server the tests use; no test may skip there.
    """
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        return "CI is set: every test must run"
    if item.get_closest_marker("e2e") and os.environ.get("KUBEBUILDER_ASSETS"):
        return "KUBEBUILDER_ASSETS is set: the end-to-end suite must run"
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and not hasattr(report, "wasxfail"):
        why = skips_forbidden(item)
        if why is not None:
            skipped = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
            report.outcome = "failed"
            report.longrepr = f"skipped where it must run ({why}): {skipped}"
