"""Real OCI registries for tests: the CNCF distribution registry (Debian ``docker-registry``)
started on loopback with TLS and htpasswd, optionally in proxy (pull-through mirror) mode.
Images are pushed with the registry's own HTTP API."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

REGISTRY_BINARY = shutil.which("docker-registry") or shutil.which("registry")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


#: Marks for a module whose tests start real registries.
NEEDS_REGISTRY = [
    pytest.mark.registry,
    pytest.mark.skipif(
        REGISTRY_BINARY is None,
        reason="docker-registry not installed (tests/run installs it as root)",
    ),
]


def loopback_tls(folder: Path) -> dict[str, Path]:
    """A CA and a serving certificate for 127.0.0.1, ::1 and localhost: ``cert``, ``key``,
    ``ca``."""
    from webhook.edge.certs import make_bundle

    paths = make_bundle(["localhost"], ["127.0.0.1", "::1"]).write(folder)
    return {"cert": paths["tls.crt"], "key": paths["tls.key"], "ca": paths["ca.crt"]}


@dataclass
class Registry:
    host: str  # 127.0.0.1:PORT, or [::1]:PORT
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
    token: TokenServer | None = None,
    storage: Path | None = None,
    address: str = "127.0.0.1",
    delete: bool = False,
) -> Registry:
    """``token``: Bearer auth through that token server (the registry's own token
    configuration); ``storage``: another registry's data folder, shared (push through one,
    read through the other); ``address``: where it listens (``[::1]`` for IPv6 loopback);
    ``delete``: manifests may be deleted through the API (the registry's
    ``storage.delete.enabled``, off by default: :func:`delete_manifest`)."""
    assert REGISTRY_BINARY, "docker-registry is not installed"
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    lines = [
        "version: 0.1",
        "log: {level: warn}",
        f"storage: {{filesystem: {{rootdirectory: {storage or workdir / 'data'}}}"
        + (", delete: {enabled: true}" if delete else "")
        + "}",
        f"http: {{addr: '{address}:{port}', tls: {{certificate: {cert}, key: {key}}}}}",
    ]
    if auth is not None:
        htpasswd = workdir / "htpasswd"
        out = subprocess.run(
            ["htpasswd", "-Bbn", auth[0], auth[1]], check=True, capture_output=True
        ).stdout
        htpasswd.write_bytes(out)
        lines.append(f"auth: {{htpasswd: {{realm: test-registry, path: {htpasswd}}}}}")
    if token is not None:
        lines.append(
            f"auth: {{token: {{realm: '{token.url}/token', service: '{token.service}', "
            f"issuer: '{token.issuer}', rootcertbundle: {token.certfile}}}}}"
        )
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
    registry = Registry(f"{address}:{port}", process, ca, log, auth)
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


class TokenServer:
    """A Bearer token realm for the distribution registry's ``auth: token``: Basic auth
    against ``users`` (user -> (password, repository prefixes it may pull)); anonymous
    callers get a token granting nothing. Tokens are RS256 JWTs carrying their certificate
    (``x5c``), which the registry checks against ``certfile``."""

    service = "pullguard-test-registry"
    issuer = "pullguard-test-issuer"

    def __init__(
        self, workdir: Path, users: dict[str, tuple[str, tuple[str, ...]]], tls: dict[str, Path]
    ) -> None:
        import datetime
        import http.server
        import threading

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        workdir.mkdir(parents=True, exist_ok=True)
        self.users = users
        self.requests: list[dict[str, str]] = []
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.issuer)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.certfile = workdir / "token-issuer.crt"
        self.certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issuer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                from urllib.parse import parse_qs, urlsplit

                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                header = self.headers.get("Authorization", "")
                issuer.requests.append({**query, "authorization": header})
                user = password = ""
                if header.startswith("Basic "):
                    raw = base64.b64decode(header[6:]).decode()
                    user, _, password = raw.partition(":")
                self.answer(user, password, query, header.startswith("Basic "), "token")

            def do_POST(self) -> None:
                """OAuth2's password grant, which containerd tries first when it has
                credentials (form fields instead of Basic auth; ``access_token``)."""
                from urllib.parse import parse_qs

                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                issuer.requests.append({**form, "password": "***", "method": "POST"})
                user, password = form.get("username", ""), form.get("password", "")
                self.answer(user, password, form, bool(user), "access_token")

            def answer(
                self, user: str, password: str, query: dict[str, str], login: bool, field: str
            ) -> None:
                if login and (issuer.users.get(user, ("",))[0] != password or not password):
                    self.send_response(401)
                    self.send_header("Content-Type", "application/json")
                    body = b'{"details":"incorrect username or password"}'
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                token = issuer.issue(user, query.get("scope", ""))
                body = json.dumps({field: token, "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(tls["cert"]), str(tls["key"]))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def issue(self, user: str, scope: str) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        access = []
        kind, _, rest = scope.partition(":")
        repository, _, _actions = rest.rpartition(":")
        prefixes = self.users.get(user, ("", ()))[1] if user else ()
        if kind == "repository" and any(repository.startswith(p) for p in prefixes):
            access.append({"type": "repository", "name": repository, "actions": ["pull"]})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert_der).decode()]}

        def part(document: dict[str, object]) -> str:
            raw = json.dumps(document, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        signing_input = f"{part(header)}.{part(claims)}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()

    def stop(self) -> None:
        self.server.shutdown()


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
    variant: str = "",
    diff_id: str | None = None,
) -> str:
    """Push a one-layer OCI image; return its manifest digest.

    A runtime unpacks it: the config's ``diff_ids`` are digests of the *uncompressed*
    layers, which containerd checks while unpacking. ``diff_id`` replaces that digest, for
    tests that need an image the runtime refuses to unpack."""
    layer = _layer(content)
    config = json.dumps(
        {
            "architecture": architecture,
            "os": os_name,
            "rootfs": {
                "type": "layers",
                "diff_ids": [diff_id or _digest(gzip.decompress(layer))],
            },
            "config": {},
        }
        | ({"variant": variant} if variant else {}),
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


def push_index(
    registry: Registry,
    repository: str,
    tag: str,
    platforms: list[tuple[str, str]] | list[tuple[str, str, str]],
) -> str:
    """Push one image per (os, architecture[, variant]) and an OCI index of them under
    ``tag``; return the index's digest. The index also lists an attestation entry
    (``unknown/unknown``), as buildx writes one."""
    entries = []
    for os_name, architecture, *rest in platforms:
        variant = rest[0] if rest else ""
        content = f"{os_name}/{architecture}/{variant}\n".encode()
        digest = push_image(
            registry,
            repository,
            f"build-{os_name}-{architecture}{variant}",
            content=content,
            os_name=os_name,
            architecture=architecture,
            variant=variant,
        )
        with registry.client() as client:
            size = len(
                client.get(
                    f"/v2/{repository}/manifests/{digest}", headers={"Accept": ACCEPT}
                ).content
            )
        entries.append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": size,
                "platform": {"os": os_name, "architecture": architecture}
                | ({"variant": variant} if variant else {}),
            }
        )
    entries.append(
        {
            "mediaType": OCI_MANIFEST,
            "digest": entries[0]["digest"],
            "size": entries[0]["size"],
            "platform": {"os": "unknown", "architecture": "unknown"},
        }
    )
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, sort_keys=True
    ).encode()
    with registry.client() as client:
        put = client.put(
            f"/v2/{repository}/manifests/{tag}",
            content=index,
            headers={"Content-Type": OCI_INDEX},
        )
        assert put.status_code == 201, put.text
        return str(put.headers["docker-content-digest"])


def manifest_digest(registry: Registry, repository: str, reference: str) -> tuple[int, str]:
    with registry.client() as client:
        reply = client.get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": ACCEPT})
    return reply.status_code, reply.headers.get("docker-content-digest", "")


def delete_manifest(registry: Registry, repository: str, digest: str) -> None:
    """Delete a manifest by digest (``DELETE /v2/NAME/manifests/DIGEST``; the registry must be
    started with ``delete=True``). The distribution registry removes every tag naming it: a
    HEAD by tag or by digest then answers 404, as the next pull does."""
    with registry.client() as client:
        reply = client.delete(f"/v2/{repository}/manifests/{digest}")
    assert reply.status_code == 202, reply.text


class SilentServer:
    """A TCP port that accepts connections and never answers: a mirror that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.host = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()
