"""Slow clients cost a socket, never the capacity to answer the API server.

Anyone who reaches the port can open connections and then stall: before the TLS handshake,
half-way through it, after the request headers' first line, half-way through a body. With
request threads, eight such clients held every thread and the API server's reviews timed out
(with failurePolicy Ignore: everything admitted unchecked). Here 100 of them stay open while
real reviews are sent, and each real review must be answered well within the API server's
webhook timeout.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REVIEWS, Server, load_review, start_server, stop_server
from webhook.edge.server import HANDSHAKE_SECONDS, IdleConnections

SLOW_CLIENTS = 100
#: The default webhook timeoutSeconds is 10; deploy/ uses 5. Answers must come well within.
ANSWER_BUDGET = 2.0


def _port(server: Server) -> int:
    return server.port


def _tls(server: Server) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(server.ca))
    raw = socket.create_connection(("127.0.0.1", _port(server)), timeout=10)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _log_size(server: Server) -> int:
    """Where the server's log ends now: a test on a shared server reads its log from here."""
    return server.log.stat().st_size


def _log_since(server: Server, mark: int) -> str:
    """The server's log written since ``mark`` (after the batch flush ``log_text`` waits)."""
    server.log_text()
    with server.log.open("rb") as log:
        log.seek(mark)
        return log.read().decode(errors="replace")


def _stall(server: Server, kind: int) -> socket.socket:
    """One slow client, stalled at a different point depending on ``kind``."""
    if kind == 0:  # connects and sends nothing
        return socket.create_connection(("127.0.0.1", _port(server)), timeout=10)
    if kind == 1:  # sends the first byte of a TLS ClientHello, then stalls
        raw = socket.create_connection(("127.0.0.1", _port(server)), timeout=10)
        raw.sendall(b"\x16")
        return raw
    tls = _tls(server)
    if kind == 2:  # TLS done, one byte of the request line
        tls.sendall(b"P")
    else:  # headers done, half the body
        tls.sendall(
            b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n" + b"{" * 500
        )
    return tls


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shipped defaults, shared by the tests below that run one after another: each
    closes every connection it opened before it ends (a start and a stop is seconds each)."""
    started = start_server(tmp_path_factory.mktemp("slow-clients"))
    yield started
    stop_server(started)


#: ``--connections`` for the idle-connection tests: a small bound keeps them fast.
BOUND = 20


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One worker with ``--connections BOUND``, shared the same way."""
    started = start_server(
        tmp_path_factory.mktemp("bounded"), "--workers", "1", "--connections", str(BOUND)
    )
    yield started
    stop_server(started)


def test_real_reviews_are_answered_while_100_slow_clients_hang_on(server: Server) -> None:
    body = load_review(REVIEWS / "pod-create-plain.json")["body"]
    stalled = []
    try:
        for index in range(SLOW_CLIENTS):
            stalled.append(_stall(server, index % 4))
        slowest = 0.0
        with server.client() as client:
            for index in range(20):
                body["request"]["uid"] = f"real-{index}"
                started = time.monotonic()
                reply = client.post("/validate", json=body)
                slowest = max(slowest, time.monotonic() - started)
                assert reply.status_code == 200
                assert reply.json()["response"]["uid"] == f"real-{index}"
            started = time.monotonic()
            assert client.get("/healthz").status_code == 200
            slowest = max(slowest, time.monotonic() - started)
        print(f"\nslowest real answer with {SLOW_CLIENTS} slow clients: {slowest * 1000:.0f} ms")
        assert slowest < ANSWER_BUDGET, f"slowest answer took {slowest:.2f}s"
    finally:
        for sock in stalled:
            sock.close()


def test_a_stalled_handshake_is_dropped_after_its_deadline(server: Server) -> None:
    raw = socket.create_connection(("127.0.0.1", _port(server)), timeout=30)
    raw.sendall(b"\x16")
    started = time.monotonic()
    assert raw.recv(1) == b""  # closed by the server
    waited = time.monotonic() - started
    assert HANDSHAKE_SECONDS - 1 <= waited <= HANDSHAKE_SECONDS + 3, waited
    raw.close()
    # A stalled request body: dropped once a read has waited READ_SECONDS.
    tls = _tls(server)
    tls.sendall(
        b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{"
    )
    tls.settimeout(30)
    answer = tls.recv(65536)
    assert answer == b"" or b" 400 " in answer.split(b"\r\n", 1)[0], answer[:200]
    tls.close()
    with server.client() as client:
        assert client.get("/healthz").status_code == 200


def test_a_connection_idle_before_its_first_request_is_still_served(server: Server) -> None:
    # The API server dials connections ahead and may leave one unused in its pool past the
    # 10 s read timeout; closing it then races the request it will carry (found by
    # tests/e2e/test_load.py). A fresh connection may idle for the keep-alive time.
    import json

    from webhook.edge.server import READ_SECONDS

    mark = _log_size(server)
    port = server.port
    context = ssl.create_default_context(cafile=str(server.ca))
    body = json.dumps(load_review(REVIEWS / "pod-create-plain.json")["body"]).encode()
    request = (
        b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    with (
        socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as secure,
    ):
        time.sleep(READ_SECONDS + 1.5)
        secure.sendall(request)
        answer = secure.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert "Socket error" not in _log_since(server, mark)


def _review_request() -> bytes:
    import json

    body = json.dumps(load_review(REVIEWS / "pod-create-plain.json")["body"]).encode()
    return (
        b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _idle_tls(server: Server, cert: tuple[Path, Path] | None = None) -> socket.socket:
    """A connection that completes the TLS handshake (within 5 s) and then sends nothing;
    if the handshake does not finish, the raw connection, waiting in the listen backlog."""
    context = ssl.create_default_context(cafile=str(server.ca))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    raw = socket.create_connection(("127.0.0.1", _port(server)), timeout=5)
    try:
        return context.wrap_socket(raw, server_hostname="127.0.0.1")
    except (TimeoutError, OSError):
        return raw


def _answered_within(server: Server, budget: float, cert: tuple[Path, Path] | None = None) -> float:
    """A review on a new connection: how long its answer took (an error past ``budget``)."""
    import httpx

    context = ssl.create_default_context(cafile=str(server.ca))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    body = load_review(REVIEWS / "pod-create-plain.json")["body"]
    started = time.monotonic()
    with httpx.Client(base_url=server.url, verify=context, timeout=budget) as client:
        reply = client.post("/validate", json=body)
    took = time.monotonic() - started
    assert reply.status_code == 200, reply.text[:300]
    return took


def test_without_pressure_idle_connections_are_kept(bounded: Server) -> None:
    """Below the bound nothing idle is closed: a keep-alive client's connection (and
    connections before their first request) stay open between requests."""
    server = bounded
    request = _review_request()
    idle = [_idle_tls(server) for _ in range(BOUND // 2)]
    try:
        context = ssl.create_default_context(cafile=str(server.ca))
        with (
            socket.create_connection(("127.0.0.1", _port(server)), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as keep_alive,
        ):
            for _ in range(3):
                keep_alive.sendall(request)
                assert keep_alive.recv(65536).startswith(b"HTTP/1.1 200")
                for _ in range(5):  # new connections meanwhile, each with one review
                    _answered_within(server, 2.0)
                time.sleep(1.0)
        for sock in idle:
            assert isinstance(sock, ssl.SSLSocket)
            sock.settimeout(0.1)
            with pytest.raises(TimeoutError):
                sock.recv(1)  # still open: nothing to read, no end of file
    finally:
        for sock in idle:
            sock.close()


def test_idle_tls_connections_never_lock_out_a_real_review(bounded: Server) -> None:
    """Connections that finish the TLS handshake and send nothing were kept for the
    keep-alive time (125 s), so ``--connections`` of them per worker kept the API server's
    new connections in the listen backlog and its reviews timed out."""
    server = bounded
    mark = _log_size(server)
    held: list[socket.socket] = []
    try:
        slowest = 0.0
        for _ in range(3):
            held.extend(_idle_tls(server) for _ in range(2 * BOUND))
            # Held, as an attacker holds them: past the seconds a fresh connection is given
            # to write its first request.
            time.sleep(IdleConnections.MIN_IDLE_SECONDS + 0.5)
            slowest = max(slowest, _answered_within(server, 1.0))
        closed = 0
        for sock in held:
            with contextlib.suppress(TimeoutError, OSError):  # OSError: a failed handshake's
                sock.settimeout(0.1)
                closed += sock.recv(1) == b""
        print(
            f"\n{len(held)} idle TLS connections against a bound of {BOUND}: a real review "
            f"answered in {slowest * 1000:.0f} ms at worst; {closed} idle ones closed"
        )
        assert slowest < 1.0
        assert "Traceback" not in _log_since(server, mark)
    finally:
        for sock in held:
            sock.close()


def test_under_client_ca_unverified_idle_connections_go_first(tmp_path: Path) -> None:
    """With ``--client-ca`` anyone may still connect (the probes bring no certificate):
    idle unverified connections are closed before the API server's verified one."""
    from tests.integration.test_port_attacks import client_certificate
    from webhook.edge.certs import make_bundle

    api_server_ca = make_bundle(["api-server-ca"]).write(tmp_path / "client-ca")
    api_server = client_certificate(
        tmp_path / "certs-client",
        "kube-apiserver",
        ca=api_server_ca["ca.crt"],
        ca_key=api_server_ca["ca.key"],
    )
    server = start_server(
        tmp_path,
        "--workers",
        "1",
        "--connections",
        str(BOUND),
        "--client-ca",
        str(api_server_ca["ca.crt"]),
    )
    request = _review_request()
    held: list[socket.socket] = []
    try:
        trusted = _idle_tls(server, api_server)
        assert isinstance(trusted, ssl.SSLSocket)
        trusted.settimeout(10)
        trusted.sendall(request)
        assert trusted.recv(65536).startswith(b"HTTP/1.1 200")
        time.sleep(0.2)  # idle longer than the attackers' will be: still kept
        held.extend(_idle_tls(server) for _ in range(2 * BOUND))
        time.sleep(IdleConnections.MIN_IDLE_SECONDS + 0.5)
        took = _answered_within(server, 1.0, api_server)
        trusted.sendall(request)
        assert trusted.recv(65536).startswith(b"HTTP/1.1 200")
        print(f"\nunder {2 * BOUND} unverified idle connections: a new review in {took:.3f}s")
    finally:
        trusted.close()
        for sock in held:
            sock.close()
        stop_server(server)


#: Seconds between two bytes of a trickling client: every read gets a byte well within the
#: read timeout, so the connection is never idle (the outside review sent one every 2.9 s).
TRICKLE_SECONDS = 1.0
#: The headers variant stops in the headers; the body variant sends them whole and then
#: trickles a body that never ends.
_TRICKLE_PREFIX = {
    "headers": b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\n",
    "body": (
        b"POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n"
    ),
}


class _Tricklers:
    """``count`` connections that each send their request a byte at a time, forever: each
    one closed by the server is opened again at once (as a determined attacker does)."""

    def __init__(self, server: Server, count: int, variant: str) -> None:
        import threading

        self.server, self.variant = server, variant
        self.stop = threading.Event()
        self.opened = 0
        self.closed_by_server = 0
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def __enter__(self) -> _Tricklers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)

    def _run(self) -> None:
        context = ssl.create_default_context(cafile=str(self.server.ca))
        while not self.stop.is_set():
            try:
                raw = socket.create_connection(("127.0.0.1", _port(self.server)), timeout=2)
                sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
            except (TimeoutError, OSError):
                continue  # waited in the listen backlog: try again
            with self._lock:
                self.opened += 1
            try:
                sock.sendall(_TRICKLE_PREFIX[self.variant])
                while not self.stop.wait(TRICKLE_SECONDS):
                    sock.sendall(b"X" if self.variant == "headers" else b" ")
                    sock.settimeout(0.0)
                    with contextlib.suppress(ssl.SSLWantReadError, BlockingIOError):
                        sock.recv(1)  # an answer or the end: the server has closed it
                        raise ConnectionResetError
                    sock.settimeout(2)
            except OSError:
                with self._lock:
                    self.closed_by_server += 1
            finally:
                sock.close()


@pytest.mark.parametrize("variant", ["headers", "body"])
def test_trickling_clients_never_lock_out_real_reviews(bounded: Server, variant: str) -> None:
    """40 connections that each send a byte a second (never idle, never finished) against
    ``--connections 20``: they held every slot, and 7 of 7 real reviews timed out. Each
    request must arrive whole within its deadline, and near the bound a request that is
    still arriving is closed sooner; the real reviews must be answered in time, and a real
    client's keep-alive connection kept meanwhile."""
    server = bounded
    mark = _log_size(server)
    request = _review_request()
    context = ssl.create_default_context(cafile=str(server.ca))
    with (
        socket.create_connection(("127.0.0.1", _port(server)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as keep_alive,
    ):
        keep_alive.sendall(request)
        assert keep_alive.recv(65536).startswith(b"HTTP/1.1 200")
        with _Tricklers(server, 2 * BOUND, variant) as attack:
            time.sleep(1.5)  # the attack takes every slot
            slowest = 0.0
            for _ in range(7):
                # On a new connection, as the API server dials them; deploy/'s
                # timeoutSeconds is 5.
                slowest = max(slowest, _answered_within(server, 5.0))
                # And on the client's keep-alive connection: never closed meanwhile.
                started = time.monotonic()
                keep_alive.sendall(request)
                assert keep_alive.recv(65536).startswith(b"HTTP/1.1 200")
                slowest = max(slowest, time.monotonic() - started)
            opened, closed = attack.opened, attack.closed_by_server
    print(
        f"\n{2 * BOUND} trickling connections ({variant}) against a bound of {BOUND}: "
        f"7 real reviews answered in {slowest:.2f}s at worst; {opened} opened, "
        f"{closed} closed by the server"
    )
    assert slowest < 5.0
    assert "Traceback" not in _log_since(server, mark)
