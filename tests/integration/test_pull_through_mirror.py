"""Mirror rewriting against real registries: an upstream with TLS and htpasswd, a second
distribution registry in proxy mode in front of it, and pullguard's rewrite in between."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REVIEWS, Server, load_review, metric_value, start_server, stop_server
from tests.integration.registries import (
    NEEDS_REGISTRY,
    Registry,
    SilentServer,
    loopback_tls,
    manifest_digest,
    push_image,
    start_registry,
)

pytestmark = NEEDS_REGISTRY


@dataclass
class Registries:
    private: Registry
    upstream: Registry
    mirror: Registry


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registries]:
    """A registry with htpasswd auth, and a mirror in front of another (anonymous) upstream.

    distribution 2.8 in proxy mode sends its upstream credentials only to a Bearer token
    realm it discovers from the upstream's challenge; an htpasswd (Basic) upstream is never
    sent them. So the mirror's upstream is anonymous, and auth is exercised on its own.
    """
    base = tmp_path_factory.mktemp("registries")
    tls = loopback_tls(base / "tls")
    private = start_registry(base / "private", auth=("pusher", "s3cret-pw"), **tls)
    upstream = start_registry(base / "upstream", **tls)
    mirror = start_registry(base / "mirror", proxy_of=upstream, **tls)
    yield Registries(private=private, upstream=upstream, mirror=mirror)
    for registry in (mirror, upstream, private):
        registry.stop()


def test_private_registry_requires_credentials(registries: Registries) -> None:
    private = registries.private
    anonymous = Registry(private.host, private.process, private.ca, private.log, None)
    with anonymous.client() as client:
        assert client.get("/v2/").status_code == 401
    digest = push_image(private, "team/secret-app", "1.0")
    assert manifest_digest(private, "team/secret-app", "1.0") == (200, digest)
    assert manifest_digest(anonymous, "team/secret-app", "1.0")[0] == 401


def test_rewritten_reference_resolves_through_the_mirror_to_the_same_digest(
    registries: Registries, tmp_path: Path
) -> None:
    upstream, mirror = registries.upstream, registries.mirror
    digest = push_image(upstream, "team/app", "1.0")
    config = tmp_path / "config.yaml"
    config.write_text(f"mirrors:\n  - registry: '{upstream.host}'\n    mirror: '{mirror.host}'\n")
    # pullguard probes the mirror before rewriting to it; it trusts the test CA as an admin
    # would have it trust a private one.
    server = start_server(
        tmp_path, "--config", str(config), env={"SSL_CERT_FILE": str(upstream.ca)}
    )
    try:
        review = load_review(REVIEWS / "pod-create-plain.json")
        request = review["body"]["request"]
        request["object"]["spec"]["containers"][0]["image"] = f"{upstream.host}/team/app:1.0"
        request["object"]["spec"]["initContainers"] = [
            {"name": "pinned", "image": f"{upstream.host}/team/app@{digest}"}
        ]
        # Rewritten once the worker asked has seen the mirror answer (at once here).
        response = _eventually_patched(server, review["body"])
    finally:
        stop_server(server)
    patch = json.loads(base64.b64decode(response["patch"]))
    images = {op["path"]: op["value"] for op in patch if op["path"].endswith("/image")}
    assert images == {
        "/spec/containers/0/image": f"{mirror.host}/team/app:1.0",
        "/spec/initContainers/0/image": f"{mirror.host}/team/app@{digest}",
    }
    # The mirror fetches from the upstream with its own credentials and serves the same bytes.
    assert manifest_digest(mirror, "team/app", "1.0") == (200, digest)
    assert manifest_digest(mirror, "team/app", digest) == (200, digest)
    assert manifest_digest(mirror, "team/never-pushed", "1.0")[0] == 404


# -- issue 19: mirrors fail safe, always ------------------------------------------------------

#: docs/reference.md: a mirror that stops answering is still rewritten to for at most one
#: probe period (2 s) plus one probe timeout (2 s).
BLIND_SECONDS = 4.0


def _eventually_patched(server: Server, body: dict[str, Any], timeout: float = 10) -> Any:
    """The /mutate response once it carries a patch (each worker probes the mirror itself)."""
    deadline = time.monotonic() + timeout
    with server.client() as client:
        while True:
            response = client.post("/mutate", json=body).json()["response"]
            if "patch" in response or time.monotonic() > deadline:
                return response
            time.sleep(0.2)


def _pod_review(image: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    review = load_review(REVIEWS / "pod-create-plain.json")["body"]
    obj = review["request"]["object"]
    obj["spec"]["containers"][0]["image"] = image
    obj["spec"].pop("initContainers", None)
    if annotations:
        obj["metadata"]["annotations"] = annotations
    return review


def test_a_mirror_is_not_rewritten_to_before_it_was_seen_answering(tmp_path: Path) -> None:
    # Right after start no probe has answered yet; a mirror that hangs keeps the first one
    # open for its whole timeout. Until it answers, nothing goes to it.
    silent = SilentServer()
    config = tmp_path / "config.yaml"
    config.write_text(f"mirrors:\n  - registry: docker.io\n    mirror: '{silent.host}/hub'\n")
    server = start_server(tmp_path, "--config", str(config))
    try:
        with server.client() as client:
            for _ in range(6):
                body = _pod_review("nginx:1.25")
                response = client.post("/mutate", json=body).json()["response"]
                assert "patch" not in response, response
                (warning,) = response["warnings"]
                assert f"mirror {silent.host} " in warning
                assert "so nginx:1.25 is pulled as written" in warning
            metrics = client.get("/metrics").text
        assert metric_value(metrics, f'pullguard_mirror_up{{mirror="{silent.host}"}}') == 0
    finally:
        stop_server(server)
        silent.close()


def test_a_mirror_that_dies_is_left_within_the_probe_window(
    registries: Registries, tmp_path: Path
) -> None:
    upstream = registries.upstream
    mirror = start_registry(
        tmp_path / "mirror",
        proxy_of=upstream,
        cert=upstream.ca.parent / "tls.crt",
        key=upstream.ca.parent / "tls.key",
        ca=upstream.ca,
    )
    config = tmp_path / "config.yaml"
    config.write_text(f"mirrors:\n  - registry: docker.io\n    mirror: '{mirror.host}/hub'\n")
    server = start_server(
        tmp_path, "--config", str(config), env={"SSL_CERT_FILE": str(upstream.ca)}
    )
    try:
        assert "patch" in _eventually_patched(server, _pod_review("nginx:1.25"))
        mirror.stop()
        died = time.monotonic()
        # Every worker must have let go: several answers in a row without a rewrite.
        in_a_row, left = 0, None
        with server.client() as client:
            while time.monotonic() - died < 30 and in_a_row < 8:
                response = client.post("/mutate", json=_pod_review("nginx:1.25")).json()
                in_a_row = 0 if "patch" in response["response"] else in_a_row + 1
                left = time.monotonic() - died if in_a_row == 1 else left
                time.sleep(0.05)
        assert in_a_row >= 8 and left is not None
        print(f"\nmirror left {left:.1f} s after it died (window {BLIND_SECONDS:g} s)")
        assert left <= BLIND_SECONDS + 1.0
        (warning,) = response["response"]["warnings"]
        assert "did not answer its last /v2/ probe (every 2 s)" in warning
    finally:
        stop_server(server)
        mirror.stop()


def test_an_image_the_mirror_cannot_fetch_is_asked_as_written_before_a_denial(
    tmp_path: Path,
) -> None:
    # The mirror answers /v2/, but its upstream is down: for an image it never cached it
    # answers 404 MANIFEST_UNKNOWN. That is not the upstream's "does not exist".
    tls = loopback_tls(tmp_path / "tls")
    upstream = start_registry(tmp_path / "upstream", **tls)
    mirror = start_registry(tmp_path / "mirror", proxy_of=upstream, **tls)
    push_image(upstream, "team/app", "1.0")
    config = tmp_path / "config.yaml"
    config.write_text(
        f"mirrors:\n  - registry: '{upstream.host}'\n    mirror: '{mirror.host}'\n"
        f"registry: {{allowedPrivateRegistries: ['{upstream.host}']}}\n"
    )
    server = start_server(tmp_path, "--config", str(config), env={"SSL_CERT_FILE": str(tls["ca"])})
    written = f"{upstream.host}/team/app:1.0"

    def validate(image: str) -> dict[str, Any]:
        # The Pod as the mutating webhook left it: on the mirror, the original recorded.
        review = _pod_review(
            image.replace(upstream.host, mirror.host),
            {"pullguard.io/original-images": json.dumps({"app": image})},
        )
        with server.client() as client:
            reply: dict[str, Any] = client.post("/validate", json=review).json()["response"]
        return reply

    try:
        # Upstream up, the image never pushed: the registry itself says so, and that denies.
        missing = validate(f"{upstream.host}/team/app:9.9")
        assert missing["allowed"] is False
        assert (
            f"image '{upstream.host}/team/app:9.9' does not exist" in missing["status"]["message"]
        )
        assert "tags there include '1.0'" in missing["status"]["message"]
        upstream.stop()
        existing = validate(written)
        assert existing["allowed"] is True, existing
        assert "correct the repository name" not in json.dumps(existing)
        (warning,) = [w for w in existing["warnings"] if "mirror" in w]
        assert f"mirror {mirror.host} lacks" in warning
        assert "could not confirm" in warning
    finally:
        stop_server(server)
        mirror.stop()
        upstream.stop()


def test_no_good_configuration_at_first_start_judges_with_the_embedded_default(
    tmp_path: Path,
) -> None:
    # An invalid document before any good one: reviews must still be answered (never a
    # 500, which failurePolicy: Fail turns into a denial of every pod), and loudly so.
    import subprocess
    import sys

    from tests.conftest import checkout_env, free_port

    config = tmp_path / "config.yaml"
    config.write_text("checks: {reference: maybe}\nmirrors: 3\n")
    port = free_port()
    log = tmp_path / "server.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "webhook",
            "serve",
            "--dev",
            "--port",
            str(port),
            "--config",
            str(config),
            "--workers",
            "1",  # the test follows one file watcher
        ],
        cwd=tmp_path,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=checkout_env(),
    )
    server = Server(f"https://127.0.0.1:{port}", tmp_path / "certs" / "ca.crt", process, log)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with server.client() as client:
                    ready = client.get("/readyz")
                    break
            except Exception:
                assert time.monotonic() < deadline, server.log_text()
                time.sleep(0.2)
        assert ready.status_code == 503
        assert "was refused (2 problem(s)" in ready.text
        assert "judged with the embedded default" in ready.text
        with server.client() as client:
            good = client.post("/validate", json=_pod_review("nginx:1.25"))
            bad = client.post("/validate", json=_pod_review("Not A Reference"))
            mutated = client.post("/mutate", json=_pod_review("nginx:1.25"))
            metrics = client.get("/metrics").text
        assert good.status_code == 200 and good.json()["response"]["allowed"] is True
        assert bad.status_code == 200 and bad.json()["response"]["allowed"] is False
        assert mutated.status_code == 200 and "patch" not in mutated.json()["response"]
        assert metric_value(metrics, "pullguard_config_embedded_default") == 1
        assert "EMBEDDED DEFAULT" in server.log_text()
        # A valid document then takes over, and the process becomes ready.
        config.write_text("checks: {reference: warn}\n")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with server.client() as client:
                if client.get("/readyz").status_code == 200:
                    break
            time.sleep(0.3)
        with server.client() as client:
            assert client.get("/readyz").status_code == 200
            warned = client.post("/validate", json=_pod_review("Not A Reference")).json()
            metrics = client.get("/metrics").text
        assert warned["response"]["allowed"] is True
        assert metric_value(metrics, "pullguard_config_embedded_default") == 0
    finally:
        stop_server(server)
