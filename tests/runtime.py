"""A real container runtime for tests: a private containerd (Debian package ``containerd``,
1.6) with its CRI plugin, asked over its unix socket the way the kubelet asks it.

What it is for: pullguard predicts what the kubelet's ``PullImage`` will do; these tests ask
the runtime itself. Everything the daemon owns lives under the test's temporary folder: its
config, root, state, socket and the ``hosts.toml`` per registry host that gives it the test
registries' CA (``config_path`` of the CRI registry configuration). It never touches the
machine's own containerd: no default socket, no ``/var/lib/containerd``, no
``/etc/containerd``. The ``native`` snapshotter unpacks layers by copying, so no overlay
mount is needed; no container is ever started.

The client (:class:`CriClient`) is the kubelet's call and nothing more: gRPC over HTTP/2 on
the unix socket, ``runtime.v1.ImageService/PullImage`` with ``auth`` {username, password}
exactly as the kubelet fills it from a pull secret. The three protobuf messages it needs are
encoded by hand (:func:`_message`), which avoids a code-generation step and a dependency:
HTTP/2 comes from ``h2``, a test dependency.

Where the runtime cannot run (not root, or the binary missing) :func:`runtime_missing`
says why; the fixture skips with that reason, and the root conftest turns the skip into a
failure wherever the suite must run (``CI``, ``KUBEBUILDER_ASSETS``).
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CONTAINERD = shutil.which("containerd")
CTR = shutil.which("ctr")
PULL_IMAGE = "/runtime.v1.ImageService/PullImage"
REMOVE_IMAGE = "/runtime.v1.ImageService/RemoveImage"
IMAGE_STATUS = "/runtime.v1.ImageService/ImageStatus"
VERSION = "/runtime.v1.RuntimeService/Version"


def runtime_missing() -> str | None:
    """Why a private containerd cannot run here, or ``None``."""
    if CONTAINERD is None or CTR is None:
        return "containerd is not installed (tests/run installs the Debian package as root)"
    if os.geteuid() != 0:
        return "containerd needs root (it mounts, chowns and owns its state), and this is not root"
    return None


# -- protobuf, by hand: varints and length-delimited fields are all these messages use ------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): strings and embedded messages."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _message(*fields: tuple[int, str | bytes]) -> bytes:
    """Fields in number order; empty values are left out, as proto3 does."""
    out = b""
    for number, value in fields:
        payload = value.encode() if isinstance(value, str) else value
        if payload:
            out += _field(number, payload)
    return out


def _strings(data: bytes) -> dict[int, bytes]:
    """The length-delimited fields of a message (the last of each number), skipping others."""
    found: dict[int, bytes] = {}
    position = 0
    while position < len(data):
        key, position = _read_varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, position = _read_varint(data, position)
        elif wire == 2:
            length, position = _read_varint(data, position)
            found[number] = data[position : position + length]
            position += length
        elif wire == 1:
            position += 8
        elif wire == 5:
            position += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return found


def _read_varint(data: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, position


def pull_image_request(image: str, username: str = "", password: str = "") -> bytes:
    """``PullImageRequest{image: ImageSpec{image}, auth: AuthConfig{username, password}}``.

    Field numbers from cri-api ``runtime/v1/api.proto``: PullImageRequest image=1, auth=2;
    ImageSpec image=1; AuthConfig username=1, password=2, auth=3, server_address=4,
    identity_token=5, registry_token=6. The kubelet fills username and password from a pull
    secret's entry (an ``auth`` field is decoded into them) and sends no ``auth`` at all
    when nothing in its keyring matched."""
    spec = _message((1, image))
    auth = _message((1, username), (2, password))
    fields: list[tuple[int, str | bytes]] = [(1, spec)]
    if username or password:
        fields.append((2, auth))
    return _message(*fields)


# -- gRPC over HTTP/2 on a unix socket -------------------------------------------------------


@dataclass(frozen=True)
class GrpcReply:
    status: int  # grpc-status: 0 OK, 2 UNKNOWN, 5 NOT_FOUND, ...
    message: str  # grpc-message, percent-decoded
    body: bytes  # the response message, without the 5-byte gRPC prefix

    @property
    def ok(self) -> bool:
        return self.status == 0


class CriClient:
    """One unary gRPC call per connection (the tests make few, in sequence)."""

    def __init__(self, socket_path: Path, timeout: float = 60) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    def call(self, method: str, request: bytes) -> GrpcReply:
        from urllib.parse import unquote

        import h2.config
        import h2.connection
        import h2.events

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self.socket_path))
        try:
            connection = h2.connection.H2Connection(
                h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
            )
            connection.initiate_connection()
            stream = connection.get_next_available_stream_id()
            connection.send_headers(
                stream,
                [
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", method),
                    (":authority", "localhost"),
                    ("content-type", "application/grpc"),
                    ("te", "trailers"),
                    ("grpc-timeout", f"{int(self.timeout)}S"),
                ],
            )
            connection.send_data(
                stream, b"\x00" + struct.pack(">I", len(request)) + request, end_stream=True
            )
            sock.sendall(connection.data_to_send())
            headers: dict[str, str] = {}
            body = b""
            done = False
            while not done:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the runtime closed the connection mid-call")
                for event in connection.receive_data(chunk):
                    if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                        headers.update({str(k): str(v) for k, v in event.headers})
                    elif isinstance(event, h2.events.DataReceived):
                        body += event.data
                        connection.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                        done = True
                sock.sendall(connection.data_to_send())
        finally:
            sock.close()
        message = body[5:] if len(body) >= 5 else b""
        return GrpcReply(
            int(headers.get("grpc-status", "2")), unquote(headers.get("grpc-message", "")), message
        )


@dataclass(frozen=True)
class PullResult:
    ok: bool
    image_ref: str = ""  # the image's id (config digest) on success
    error: str = ""  # the runtime's words on failure, as the kubelet logs them


class Containerd:
    """A private containerd under ``workdir``; :meth:`pull` is the kubelet's call."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.socket = workdir / "containerd.sock"
        self.hosts_dir = workdir / "certs.d"
        self.log = workdir / "containerd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def trust(self, host: str, ca: Path) -> None:
        """Pull from ``host`` (``127.0.0.1:PORT``) over TLS trusting ``ca``, through a
        ``hosts.toml`` in the directory containerd reads per pull."""
        folder = self.hosts_dir / host
        folder.mkdir(parents=True, exist_ok=True)
        # The CA on the host entry and on the server both: containerd tries the entry,
        # then the server, and reports the last error; without the CA there a 404 would
        # end in a TLS error and hide the registry's answer.
        (folder / "hosts.toml").write_text(
            f'server = "https://{host}"\nca = "{ca}"\n\n'
            f'[host."https://{host}"]\n  capabilities = ["pull", "resolve"]\n  ca = "{ca}"\n'
        )

    def start(self) -> Containerd:
        assert CONTAINERD is not None
        work = self.workdir
        work.mkdir(parents=True, exist_ok=True)
        self.hosts_dir.mkdir(exist_ok=True)
        config = work / "config.toml"
        config.write_text(
            _CONFIG.format(
                root=work / "root",
                state=work / "state",
                socket=self.socket,
                opt=work / "opt",
                cni=work / "cni",
                hosts=self.hosts_dir,
            )
        )
        self.process = subprocess.Popen(
            [CONTAINERD, "--config", str(config)],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"containerd exited:\n{self.log.read_text()[-3000:]}")
            if self.socket.exists():
                try:
                    if CriClient(self.socket, timeout=5).call(VERSION, b"").ok:
                        return self
                except OSError:
                    pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"containerd not ready in 30s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)

    def pull(self, image: str, username: str = "", password: str = "") -> PullResult:
        reply = CriClient(self.socket).call(
            PULL_IMAGE, pull_image_request(image, username, password)
        )
        if reply.ok:
            return PullResult(True, image_ref=_strings(reply.body).get(1, b"").decode())
        return PullResult(False, error=reply.message or f"grpc-status {reply.status}")

    def pull_as_kubelet(self, image: str, credentials: list[tuple[str, str]]) -> PullResult:
        """What the kubelet does with the credentials its keyring found for ``image``, in
        order: each is tried until one pulls; none found: one anonymous pull. After a refused
        credential there is no anonymous retry (FACTS: kubelet credentials)."""
        if not credentials:
            return self.pull(image)
        errors = []
        for username, password in credentials:
            result = self.pull(image, username, password)
            if result.ok:
                return result
            errors.append(result.error)
        return PullResult(False, error="; ".join(errors))

    def pull_for_platform(
        self, image: str, platform: str, credentials: list[tuple[str, str]]
    ) -> PullResult:
        """What a node of another platform (``linux/arm64``) would pull, with the same
        credential order: ``ctr images pull --platform`` against this daemon (the CRI pulls
        for the daemon's own platform only)."""
        assert CTR is not None
        errors = []
        for credential in credentials or [None]:
            command = [
                CTR,
                "--address",
                str(self.socket),
                "--namespace",
                "k8s.io",
                "images",
                "pull",
                "--hosts-dir",
                str(self.hosts_dir),
                "--platform",
                platform,
                "--snapshotter",
                "native",
            ]
            if credential is not None:
                command += ["--user", f"{credential[0]}:{credential[1]}"]
            done = subprocess.run(
                [*command, image], capture_output=True, text=True, timeout=120, check=False
            )
            if done.returncode == 0:
                return PullResult(True)
            errors.append(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "?")
        return PullResult(False, error="; ".join(errors))

    def image_present(self, image: str) -> bool:
        """Is ``image`` on this node (CRI ``ImageStatus``: an empty answer means no)?"""
        reply = CriClient(self.socket).call(IMAGE_STATUS, _message((1, _message((1, image)))))
        return reply.ok and bool(_strings(reply.body).get(1))

    def remove(self, image: str) -> bool:
        return CriClient(self.socket).call(REMOVE_IMAGE, _message((1, _message((1, image))))).ok


#: containerd's own configuration, version 2 (containerd 1.6). Every path is the test's.
_CONFIG = """version = 2
root = "{root}"
state = "{state}"
# Only what a pull needs: no snapshotter that wants a special filesystem.
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.overlayfs",
]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni}/bin"
    conf_dir = "{cni}/conf"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{hosts}"
"""
