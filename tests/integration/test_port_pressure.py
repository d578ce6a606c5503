"""Attacks on the webhook port that hold its connections or its body budget without ever
breaking a deadline (issue 20, outside review rev20): each through the real server
(``pullguard serve`` under gunicorn, over TLS), each asserting what the API server needs: its
reviews answered within its webhook timeout (deploy/'s ``timeoutSeconds``, 5 s), on new
connections and on the one it keeps pooled.

The attacks that need connection pressure share one server bound to :data:`BOUND`
connections (each attack ends, and its connections close, before the next test); the slow
bodies need the opposite, no connection pressure, and have a server of their own.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REVIEWS, Server, load_review, start_server, stop_server
from webhook.edge.server import REQUEST_SECONDS

#: deploy/base/webhooks.yaml: ``timeoutSeconds: 5``: a review the API server has not had
#: its answer to by then has failed (and, with ``failurePolicy: Ignore``, was admitted
#: unchecked). The bound the tests assert: what the API server needs, not how fast it is.
WEBHOOK_TIMEOUT = 5.0
BOUND = 20


def _context(server: Server) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(server.ca))


def _review_body() -> bytes:
    return json.dumps(load_review(REVIEWS / "pod-create-plain.json")["body"]).encode()


def _review_as_the_api_server_sends_it(
    server: Server, local_address: str | None = None
) -> tuple[Any, float, int]:
    """One review on a new connection, retrying a 429 after its ``Retry-After`` within the
    webhook timeout (client-go's rest.Request): (final status or error name, seconds, tries).
    ``local_address``: the address it connects from (another peer than the attackers')."""
    body = _review_body()
    started = time.monotonic()
    tries = 0
    status: Any = None
    while time.monotonic() - started < WEBHOOK_TIMEOUT:
        tries += 1
        left = WEBHOOK_TIMEOUT - (time.monotonic() - started)
        transport = httpx.HTTPTransport(verify=_context(server), local_address=local_address)
        try:
            with httpx.Client(base_url=server.url, transport=transport, timeout=left) as c:
                reply = c.post(
                    "/validate", content=body, headers={"Content-Type": "application/json"}
                )
        except httpx.HTTPError as error:
            status = type(error).__name__
            break
        status = reply.status_code
        if status != 429:
            break
        time.sleep(float(reply.headers.get("Retry-After", "1")))
    return status, time.monotonic() - started, tries


def _late(results: list[tuple[Any, float, int]]) -> list[tuple[Any, float, int]]:
    return [r for r in results if r[0] != 200 or r[1] >= WEBHOOK_TIMEOUT]


class _Attack:
    """``count`` threads, each running ``one`` (one attacking connection) again and again
    until stopped: a closed connection is opened again at once, as a determined attacker."""

    def __init__(self, count: int, one: Callable[[_Attack], None]) -> None:
        self.stop = threading.Event()
        self.opened = 0
        self.answered = 0
        self._lock = threading.Lock()
        self._one = one
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def count_opened(self) -> None:
        with self._lock:
            self.opened += 1

    def count_answered(self) -> None:
        with self._lock:
            self.answered += 1

    def _run(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(OSError):
                self._one(self)

    def wait_until(self, holds: Callable[[], bool], timeout: float = 10.0) -> None:
        """Until the attack is in place (``holds``), rather than a fixed sleep."""
        deadline = time.monotonic() + timeout
        while not holds():
            assert time.monotonic() < deadline, "the attack never got in place"
            time.sleep(0.05)

    def __enter__(self) -> _Attack:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One worker bound to :data:`BOUND` connections, shared by the tests that press it."""
    server = start_server(
        tmp_path_factory.mktemp("bounded"), "--workers", "1", "--connections", str(BOUND)
    )
    try:
        yield server
    finally:
        stop_server(server)


def test_tls_handshake_tricklers_never_lock_out_real_reviews(bounded: Server) -> None:
    """40 connections that send a ClientHello a byte every 0.5 s, reconnecting when closed,
    against ``--connections 20``: each held its slot for the whole handshake deadline (5 s)
    and the real reviews' connections waited in the listen backlog (before the fix: 0 of 5
    answered within 5 s, each a ConnectTimeout). Near the bound a handshake still arriving
    after a second is cut, as a trickled request is."""
    hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" * 10

    def trickle_handshake(attack: _Attack) -> None:
        with socket.create_connection(("127.0.0.1", bounded.port), timeout=10) as raw:
            attack.count_opened()
            for byte in hello:
                if attack.stop.wait(0.5):
                    return
                raw.sendall(bytes([byte]))

    with _Attack(2 * BOUND, trickle_handshake) as attack:
        attack.wait_until(lambda: attack.opened >= 2 * BOUND)  # every slot, and the backlog
        results = [_review_as_the_api_server_sends_it(bounded) for _ in range(3)]
        opened = attack.opened
    print(f"\n{2 * BOUND} handshake tricklers ({opened} opened): {results}")
    assert opened > 2 * BOUND, "no trickled handshake was cut: the attack did not press"
    late = _late(results)
    assert not late, f"{len(late)} of {len(results)} real reviews not answered in time"


def _busy_keep_alive(server: Server, request: bytes) -> Callable[[_Attack], None]:
    """An attacker that completes ``request`` every 0.05 s on one keep-alive connection."""
    context = _context(server)

    def one(attack: _Attack) -> None:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            attack.count_opened()
            while not attack.stop.wait(0.05):
                tls.sendall(request)
                if not tls.recv(65536):
                    return
                attack.count_answered()

    return one


def _post(body: bytes) -> bytes:
    return (
        b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )


def _pooled_answers(pooled: ssl.SSLSocket, request: bytes) -> bool:
    """The pooled connection still answers (it was not closed under pressure)."""
    try:
        pooled.sendall(request)
        return pooled.recv(65536).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def test_clients_that_complete_requests_quickly_never_lock_out_the_api_server(
    bounded: Server,
) -> None:
    """40 connections that each complete ``GET /healthz`` every 0.05 s against
    ``--connections 20`` are never idle, so the connection closed under pressure used to be
    the API server's pooled one (idle longest), and its new connections waited in the
    backlog behind the attackers (before the fix: pooled connection closed, 0 of 3 new ones
    answered within 5 s). /healthz is the kubelet's, which opens a connection per probe: near
    the bound, a connection that asked for a path the API server never sends is closed once
    its answer is out, and the API server's are kept."""
    request = _post(_review_body())
    raw = socket.create_connection(("127.0.0.1", bounded.port), timeout=5)
    with _context(bounded).wrap_socket(raw, server_hostname="127.0.0.1") as pooled:
        assert _pooled_answers(pooled, request)
        one = _busy_keep_alive(bounded, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        with _Attack(2 * BOUND, one) as attack:
            attack.wait_until(lambda: attack.opened >= 2 * BOUND and attack.answered >= 100)
            results = [_review_as_the_api_server_sends_it(bounded) for _ in range(3)]
            kept = _pooled_answers(pooled, request)
            answered = attack.answered
    print(f"\nbusy /healthz attackers ({answered} answered): new {results}; pooled kept: {kept}")
    late = _late(results)
    assert not late, f"{len(late)} of {len(results)} real reviews not answered in time"
    assert kept, "the API server's pooled keep-alive connection was closed"


def test_another_peer_that_completes_reviews_quickly_never_locks_out_the_api_server(
    bounded: Server,
) -> None:
    """The same attack with real reviews (``POST /validate``, answered 200), which no path
    tells apart, from another address than the API server's: near the bound, a peer holding
    more than its fair share of the connections (the bound over the peers) has its
    connections closed first, each once its answer is out (nginx's ``limit_conn`` per
    address). Here the attacker connects from 127.0.0.1 and the API server from 127.0.0.2."""
    request = _post(_review_body())
    raw = socket.create_connection(
        ("127.0.0.1", bounded.port), timeout=5, source_address=("127.0.0.2", 0)
    )
    with _context(bounded).wrap_socket(raw, server_hostname="127.0.0.1") as pooled:
        assert _pooled_answers(pooled, request)
        with _Attack(2 * BOUND, _busy_keep_alive(bounded, request)) as attack:
            attack.wait_until(lambda: attack.opened >= 2 * BOUND and attack.answered >= 100)
            results = [_review_as_the_api_server_sends_it(bounded, "127.0.0.2") for _ in range(3)]
            kept = _pooled_answers(pooled, request)
            answered = attack.answered
    print(f"\nbusy review attackers ({answered} answered): new {results}; pooled kept: {kept}")
    late = _late(results)
    assert not late, f"{len(late)} of {len(results)} real reviews not answered in time"
    assert kept, "the API server's pooled keep-alive connection was closed"


def test_a_pipelined_partial_request_ends_at_its_deadline(bounded: Server) -> None:
    """ "A whole request within 5 s of its first byte": bytes of a second request sent with
    the first (pipelined) are in gunicorn's buffer when the first answer is out; the
    connection was marked idle until more bytes came, so the second request waited the
    keep-alive time (120 s; before the fix: still open 12 s after its first bytes). The rest
    of a body the app never read is held to the same deadline."""
    requests = (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHo",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
    )
    with contextlib.ExitStack() as stack:
        started = time.monotonic()
        held = []
        for request in requests:  # both at once: their deadlines run together
            raw = socket.create_connection(("127.0.0.1", bounded.port), timeout=30)
            tls = stack.enter_context(
                _context(bounded).wrap_socket(raw, server_hostname="127.0.0.1")
            )
            tls.sendall(request)
            assert tls.recv(4096).startswith(b"HTTP/1.1 200")
            held.append(tls)
        for request, tls in zip(requests, held, strict=True):
            tls.settimeout(REQUEST_SECONDS + 7)
            try:
                ended = tls.recv(4096)  # an end of file (or a 400) at the deadline
            except TimeoutError:
                ended = None
            waited = time.monotonic() - started
            print(f"\n{request[-20:]!r}: {ended!r} after {waited:.1f}s")
            assert ended is not None and waited <= REQUEST_SECONDS + 2, waited


def test_slow_bodies_far_below_the_connection_bound_never_shed_real_reviews(
    tmp_path: Path,
) -> None:
    """45 connections (against the default bound of 1,000: no connection pressure) that each
    declare a 1 MiB body and send a byte every 0.3 s: the body budget (32 MiB per worker)
    was reserved by the declared length and held for the request deadline (5 s), and the API
    server's reviews got 429 until its timeout (before the fix: 2 of 6 not answered within
    5 s, retrying each 429 as client-go does). It is now reserved as the bytes arrive: a
    declared length alone holds 64 KiB."""
    server = start_server(tmp_path, "--workers", "1")
    head = (
        b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1048576\r\n\r\n"
    )
    context = _context(server)

    def slow_body(attack: _Attack) -> None:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=3)
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            attack.count_opened()
            tls.sendall(head)
            while not attack.stop.wait(0.3):
                tls.sendall(b" ")
                tls.settimeout(0.0)
                with contextlib.suppress(ssl.SSLWantReadError, BlockingIOError):
                    tls.recv(200)  # an answer (429, or 400 at the deadline): open another
                    attack.count_answered()
                    return
                tls.settimeout(3)

    try:
        with _Attack(45, slow_body) as attack:
            attack.wait_until(lambda: attack.opened >= 45)
            time.sleep(0.5)  # every body's head is in and being read
            results = [_review_as_the_api_server_sends_it(server) for _ in range(4)]
            answered = attack.answered
        print(f"\n45 slow 1 MiB bodies ({answered} answered early): {results}")
        late = _late(results)
        assert not late, f"{len(late)} of {len(results)} real reviews not answered in time"
        assert all(tries == 1 for _, _, tries in results), "a real review was shed (429)"
    finally:
        stop_server(server)
