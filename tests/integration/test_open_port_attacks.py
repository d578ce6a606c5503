"""Open findings of issue 20 (outside review rev20, not fixed yet): attacks on the webhook
port that the request deadline, the near-the-bound cuts and the body and decoding budgets
miss. Marked ``open_finding``: deselected by default (each takes tens of seconds, and each
fails today); run them with ``pytest -m open_finding``. docs/reliability.md lists them under
"Open findings". A fix removes the marker from the test it makes pass.

Each test is an attack through the real server (``pullguard serve`` under gunicorn, over
TLS) and asserts what must hold: the API server's reviews answered in time (deploy/'s
``timeoutSeconds`` is 5), and the decoding budget's estimate neither under the real decode
nor so far over it that a review the API server sends is refused.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REVIEWS, Server, load_review, start_server, stop_server

pytestmark = pytest.mark.open_finding

#: deploy/base/webhooks.yaml: ``timeoutSeconds: 5``.
WEBHOOK_TIMEOUT = 5.0
BOUND = 20


def _context(server: Server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.ca))


def _review_as_the_api_server_sends_it(server: Server) -> tuple[Any, float, int]:
    """One review on a new connection, retrying a 429 after its ``Retry-After`` within the
    webhook timeout (client-go's rest.Request): (final status or error name, seconds, tries)."""
    body = load_review(REVIEWS / "pod-create-plain.json")["body"]
    started = time.monotonic()
    tries = 0
    status: Any = None
    while time.monotonic() - started < WEBHOOK_TIMEOUT:
        tries += 1
        left = WEBHOOK_TIMEOUT - (time.monotonic() - started)
        try:
            with httpx.Client(base_url=server.url, verify=_context(server), timeout=left) as c:
                reply = c.post("/validate", json=body)
        except httpx.HTTPError as error:
            status = type(error).__name__
            break
        status = reply.status_code
        if status != 429:
            break
        time.sleep(float(reply.headers.get("Retry-After", "1")))
    return status, time.monotonic() - started, tries


class _Attack:
    """``count`` threads, each running ``one`` (one attacking connection) again and again
    until stopped: a closed connection is opened again at once, as a determined attacker."""

    def __init__(self, count: int, one: Any) -> None:
        self.stop = threading.Event()
        self.opened = 0
        self._one = one
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def _run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(OSError):
                self._one(self)

    def __enter__(self) -> _Attack:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)


def test_tls_handshake_tricklers_never_lock_out_real_reviews(tmp_path: Path) -> None:
    """The trickling fix cuts requests still arriving near the bound, but a connection in
    its TLS handshake is not among ``IdleConnections.connections`` (added after the
    handshake): 40 connections that send a ClientHello a byte every 0.5 s hold all 20 slots
    for the whole HANDSHAKE_SECONDS (5 s), reconnecting when closed. Before a fix: 0 of 7
    real reviews answered within 5 s (each a ConnectTimeout: its handshake waited in the
    listen backlog)."""
    server = start_server(tmp_path, "--workers", "1", "--connections", str(BOUND))
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 10

    def trickle_handshake(attack: _Attack) -> None:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            attack.opened += 1
            for byte in hello:
                if attack.stop.wait(0.5):
                    return
                raw.sendall(bytes([byte]))

    try:
        with _Attack(2 * BOUND, trickle_handshake) as attack:
            time.sleep(2.0)  # the attack takes every slot
            results = [_review_as_the_api_server_sends_it(server) for _ in range(5)]
            opened = attack.opened
        print(f"\n{2 * BOUND} handshake tricklers ({opened} opened): {results}")
        late = [r for r in results if r[0] != 200 or r[1] >= WEBHOOK_TIMEOUT]
        assert not late, f"{len(late)} of {len(results)} real reviews not answered in time"
    finally:
        stop_server(server)


def test_slow_bodies_far_below_the_connection_bound_never_shed_real_reviews(
    tmp_path: Path,
) -> None:
    """The body budget (32 MiB per worker) is reserved by Content-Length before a byte of
    the body is read, and a slow body holds it for the whole REQUEST_SECONDS (5 s): no
    connection pressure, so nothing cuts it sooner. 45 connections (against the default
    bound of 1,000) that each declare a 1 MiB body and send a byte every 0.3 s hold all of
    it, and the API server's reviews get 429 until its timeout. Before a fix: 7 of 10 real
    reviews not answered within 5 s, retrying each 429 after Retry-After as client-go does."""
    server = start_server(tmp_path, "--workers", "1")
    head = (
        b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1048576\r\n\r\n"
    )
    context = _context(server)

    def slow_body(attack: _Attack) -> None:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=3)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            attack.opened += 1
            tls.sendall(head)
            while not attack.stop.wait(0.3):
                tls.sendall(b" ")
                tls.settimeout(0.0)
                with contextlib.suppress(ssl.SSLWantReadError, BlockingIOError):
                    tls.recv(200)  # an answer (429, or 400 at the deadline): open another
                    return
                tls.settimeout(3)

    try:
        with _Attack(45, slow_body) as attack:
            time.sleep(1.0)
            results = [_review_as_the_api_server_sends_it(server) for _ in range(6)]
            opened = attack.opened
        print(f"\n45 slow 1 MiB bodies ({opened} opened): {results}")
        late = [r for r in results if r[0] != 200 or r[1] >= WEBHOOK_TIMEOUT]
        assert not late, f"{len(late)} of {len(results)} real reviews not answered in time"
    finally:
        stop_server(server)


def test_clients_that_complete_requests_quickly_never_lock_out_the_api_server(
    tmp_path: Path,
) -> None:
    """Keep-alive connections between requests are closed under pressure idle longest
    first and only once idle 0.1 s (``MIN_KEPT_ALIVE_SECONDS``): 40 connections that each
    send ``GET /healthz`` every 0.05 s (400 cheap requests a second) against
    ``--connections 20`` are never idle that long, so the one connection closed is the real
    client's pooled one (idle longest), and new connections wait in the listen backlog.
    docs/reliability.md calls this a residual of "about a second" in the backlog. Before a
    fix: the real client's keep-alive connection closed, and 0 of 5 reviews on new
    connections answered within 5 s (ConnectTimeout)."""
    server = start_server(tmp_path, "--workers", "1", "--connections", str(BOUND))
    context = _context(server)
    body = json.dumps(load_review(REVIEWS / "pod-create-plain.json")["body"]).encode()
    request = (
        b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )

    def busy_keep_alive(attack: _Attack) -> None:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            attack.opened += 1
            while not attack.stop.wait(0.05):
                tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                if not tls.recv(4096):
                    return

    try:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as pooled:
            pooled.sendall(request)
            assert pooled.recv(65536).startswith(b"HTTP/1.1 200")
            with _Attack(2 * BOUND, busy_keep_alive):
                time.sleep(2.0)
                results = [_review_as_the_api_server_sends_it(server) for _ in range(3)]
                try:
                    pooled.sendall(request)
                    kept = pooled.recv(65536).startswith(b"HTTP/1.1 200")
                except OSError:
                    kept = False
        print(f"\nbusy keep-alive attackers: new connections {results}; pooled kept: {kept}")
        late = [r for r in results if r[0] != 200 or r[1] >= WEBHOOK_TIMEOUT]
        assert not late, f"{len(late)} of {len(results)} real reviews not answered in time"
        assert kept, "the real client's pooled keep-alive connection was closed"
    finally:
        stop_server(server)


def test_a_pipelined_partial_request_ends_at_its_deadline(tmp_path: Path) -> None:
    """ "A whole request within 5 s of its first byte": bytes of a second request sent with
    the first (pipelined) are in gunicorn's buffer when the first answer is out, and the
    connection is marked idle (no deadline) until more bytes come, so the second request
    waits the keep-alive time (120 s). Before a fix: still open 12 s after its first bytes,
    then answered 200 when its last bytes came."""
    from webhook.edge.server import REQUEST_SECONDS

    server = start_server(tmp_path, "--workers", "1")
    try:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        with _context(server).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHo")
            assert tls.recv(4096).startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            tls.settimeout(REQUEST_SECONDS + 7)
            try:
                ended = tls.recv(4096)  # an end of file (or a 400) at the deadline
            except TimeoutError:
                ended = None
            waited = time.monotonic() - started
        print(f"\npipelined partial request: {ended!r} after {waited:.1f}s")
        assert ended is not None and waited <= REQUEST_SECONDS + 2, waited
    finally:
        stop_server(server)
