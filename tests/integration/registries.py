"""Real OCI registries for tests: the CNCF distribution registry (Debian ``docker-registry``)
started on loopback with TLS and htpasswd, optionally in proxy (pull-through mirror) mode.
Images are pushed with the registry's own HTTP API."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import ssl
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import free_port

REGISTRY_BINARY = shutil.which("docker-registry") or shutil.which("registry")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT
    process: subprocess.Popen[bytes]
    ca: Path
    log: Path
    auth: tuple[str, str] | None

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"https://{self.host}",
            auth=self.auth,
            verify=ssl.create_default_context(cafile=str(self.ca)),
            timeout=10,
        )

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_registry(
    workdir: Path,
    *,
    cert: Path,
    key: Path,
    ca: Path,
    auth: tuple[str, str] | None = None,
    proxy_of: Registry | None = None,
) -> Registry:
    assert REGISTRY_BINARY, "docker-registry is not installed"
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = [
        "version: 0.1",
        "log: {level: warn}",
        f"storage: {{filesystem: {{rootdirectory: {workdir / 'data'}}}}}",
        f"http: {{addr: '127.0.0.1:{port}', tls: {{certificate: {cert}, key: {key}}}}}",
    ]
    if auth is not None:
        htpasswd = workdir / "htpasswd"
        out = subprocess.run(
            ["htpasswd", "-Bbn", auth[0], auth[1]], check=True, capture_output=True
        ).stdout
        htpasswd.write_bytes(out)
        lines.append(f"auth: {{htpasswd: {{realm: test-registry, path: {htpasswd}}}}}")
    if proxy_of is not None:
        user, password = proxy_of.auth or ("", "")
        lines.append(
            f"proxy: {{remoteurl: 'https://{proxy_of.host}', username: '{user}', "
            f"password: '{password}'}}"
        )
    config = workdir / "config.yml"
    config.write_text("\n".join(lines) + "\n")
    log = workdir / "registry.log"
    # Go reads SSL_CERT_FILE: the mirror trusts the upstream's private CA through it.
    env = dict(os.environ, SSL_CERT_FILE=str(ca))
    process = subprocess.Popen(
        [REGISTRY_BINARY, "serve", str(config)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    registry = Registry(f"127.0.0.1:{port}", process, ca, log, auth)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"registry exited: {log.read_text()}")
        try:
            with registry.client() as client:
                if client.get("/v2/").status_code in (200, 401):
                    return registry
        except httpx.HTTPError:
            time.sleep(0.1)
    registry.stop()
    raise RuntimeError(f"registry not ready: {log.read_text()}")


def _layer(content: bytes) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = len(content)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_image(
    registry: Registry,
    repository: str,
    tag: str,
    *,
    content: bytes = b"hello\n",
    os_name: str = "linux",
    architecture: str = "amd64",
) -> str:
    """Push a one-layer OCI image; return its manifest digest."""
    layer = _layer(content)
    config = json.dumps(
        {
            "architecture": architecture,
            "os": os_name,
            "rootfs": {"type": "layers", "diff_ids": [_digest(gzip.decompress(layer))]},
            "config": {},
        },
        sort_keys=True,
    ).encode()
    with registry.client() as client:
        for blob in (layer, config):
            start = client.post(f"/v2/{repository}/blobs/uploads/")
            assert start.status_code == 202, start.text
            location = start.headers["location"]
            # Location carries the upload's state in its query: append, never replace.
            separator = "&" if "?" in location else "?"
            done = client.put(
                f"{location}{separator}digest={_digest(blob)}",
                content=blob,
                headers={"Content-Type": "application/octet-stream"},
            )
            assert done.status_code == 201, done.text
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": _digest(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": _digest(layer),
                        "size": len(layer),
                    }
                ],
            },
            sort_keys=True,
        ).encode()
        put = client.put(
            f"/v2/{repository}/manifests/{tag}",
            content=manifest,
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert put.status_code == 201, put.text
        return put.headers["docker-content-digest"]


def manifest_digest(registry: Registry, repository: str, reference: str) -> tuple[int, str]:
    with registry.client() as client:
        reply = client.get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT})
    return reply.status_code, reply.headers.get("docker-content-digest", "")
