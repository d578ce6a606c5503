"""Faults around the server, each with the decision's budget and its documented fallback.

The registry check is on (``registry.timeoutSeconds: 2``) and the registry misbehaves: down,
black-holed, dripping its answer a byte at a time, answering with 5 MiB, redirecting to
itself, or sending the token request to a realm on another host that never answers. (A 5 MiB
error body: read up to the client's cap, never whole.) For
each, a burst of admissions arrives at once: every one is answered (none dropped), within the
budget plus the server's own time, and admitted with a warning that says the registry could
not be asked (pullguard cannot know, so it does not deny). Then a certificate rotated under
load. The fault table in docs/reliability.md is this file's.
"""

from __future__ import annotations

import concurrent.futures
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REVIEWS, Server, free_port, load_review, start_server, stop_server
from tests.integration.faults import FaultServer
from tests.integration.registries import loopback_tls
from tests.integration.test_tls_reload import renew_in_place, served_serial
from webhook.edge.certs import make_bundle

BUDGET = 2.0  # registry.timeoutSeconds below
SLACK = 1.5  # the server's own time, on a busy 2-core machine
BURST = 12


def review(image: str, uid: str) -> dict[str, Any]:
    body = load_review(REVIEWS / "pod-create-plain.json")["body"]
    body["request"]["uid"] = uid
    spec = body["request"]["object"]["spec"]
    spec["containers"][0]["image"] = image
    spec.pop("initContainers", None)
    spec.pop("imagePullSecrets", None)
    return body


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return loopback_tls(tmp_path_factory.mktemp("fault-tls"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tls: dict[str, Path]) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("fault-server")
    config = work / "config.yaml"
    config.write_text(
        f"registry:\n  allowPrivateNetworks: true\n  timeoutSeconds: {BUDGET:.0f}\n"
        "checks: {platform: off}\n"
    )
    running = start_server(work, "--config", str(config), env={"SSL_CERT_FILE": str(tls["ca"])})
    yield running
    stop_server(running)


def _burst(server: Server, image: str) -> list[tuple[float, dict[str, Any]]]:
    def one(n: int) -> tuple[float, dict[str, Any]]:
        with server.client() as client:
            started = time.perf_counter()
            reply = client.post("/validate", json=review(image, f"fault-{n}"))
            took = time.perf_counter() - started
            assert reply.status_code == 200, reply.text[:300]
            response: dict[str, Any] = reply.json()["response"]
            assert response["uid"] == f"fault-{n}"
            return took, response

    with concurrent.futures.ThreadPoolExecutor(BURST) as pool:
        return list(pool.map(one, range(BURST)))


def _assert_admitted_in_budget(answers: list[tuple[float, dict[str, Any]]], image: str) -> None:
    assert len(answers) == BURST  # none dropped
    for took, response in answers:
        assert took < BUDGET + SLACK, f"answered in {took:.2f}s"
        assert response["allowed"] is True, response
        warnings = " ".join(response.get("warnings", []))
        assert image in warnings, warnings


def _realm_elsewhere(tls: dict[str, Path]) -> tuple[list[FaultServer], str]:
    realm = FaultServer("hang", tls)  # another host:port, black-holed
    challenge = FaultServer(
        "status",
        tls,
        status=401,
        headers={
            "WWW-Authenticate": f'Bearer realm="https://{realm.host}/token",service="r"',
            "Docker-Distribution-Api-Version": "registry/2.0",
        },
    )
    return [realm, challenge], challenge.host


@pytest.mark.parametrize(
    "fault", ["down", "black-holed", "drip", "5 MiB body", "redirect loop", "token realm elsewhere"]
)
def test_registry_faults_admit_with_a_warning_within_budget(
    server: Server, tls: dict[str, Path], fault: str
) -> None:
    faults: list[FaultServer] = []
    if fault == "down":
        host = f"127.0.0.1:{free_port()}"
    elif fault == "token realm elsewhere":
        faults, host = _realm_elsewhere(tls)
    else:
        mode = {"black-holed": "hang", "drip": "drip", "5 MiB body": "big"}.get(fault, "redirect")
        faults = [FaultServer(mode, tls, status=500)]
        host = faults[0].host
        if fault == "redirect loop":
            faults[0].location = f"https://{host}/v2/team/app/manifests/again"
    image = f"{host}/team/app:1.0"
    try:
        answers = _burst(server, image)
    finally:
        for item in faults:
            item.stop()
    slowest = max(took for took, _ in answers)
    print(
        f"\n{fault}: {len(answers)} answered, slowest {slowest:.2f}s: {answers[0][1]['warnings']}"
    )
    _assert_admitted_in_budget(answers, image)
    # Still serving, and nothing crashed on the way.
    assert server.process.poll() is None
    assert "Traceback" not in server.log_text()


def test_a_certificate_rotated_under_load_drops_nothing(tmp_path: Path) -> None:
    first = make_bundle(["localhost"], ["127.0.0.1"])
    paths = first.write(tmp_path / "tls")
    server = start_server(
        tmp_path, "--cert", str(paths["tls.crt"]), "--key", str(paths["tls.key"]),
        ca=paths["ca.crt"],
    )  # fmt: skip
    port = server.port
    body = load_review(REVIEWS / "pod-create-plain.json")["body"]
    context = ssl.create_default_context(cafile=str(paths["ca.crt"]))
    stop = threading.Event()
    results: list[int | str] = []

    def load() -> None:
        while not stop.is_set():
            try:  # a new connection (and handshake) for every review
                with httpx.Client(base_url=server.url, verify=context, timeout=10) as client:
                    results.append(client.post("/validate", json=body).status_code)
            except httpx.HTTPError as error:
                results.append(type(error).__name__)

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(2)
        expected = renew_in_place(first, tmp_path / "tls")
        # Every worker serves the new one within its check interval (5 s), without a restart.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all(served_serial(port, paths["ca.crt"]) == expected for _ in range(8)):
                break
            time.sleep(0.5)
        assert all(served_serial(port, paths["ca.crt"]) == expected for _ in range(8))
        time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        stop_server(server)
    failures = [r for r in results if r != 200]
    print(
        f"\n{len(results)} reviews on new connections during the rotation, {len(failures)} failed"
    )
    assert len(results) > 50
    assert failures == [], failures[:10]
