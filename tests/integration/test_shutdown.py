"""Graceful shutdown: SIGTERM while reviews are in flight, and every one is answered.

A Pod being deleted gets SIGTERM (after its preStop sleep) while the API server may be in the
middle of sending reviews: each request already under way must get its AdmissionReview, or
the API server applies the failurePolicy to it. Driven with raw TLS sockets so the requests
are provably in flight (headers and half the body sent) when the signal lands.

What it guards: gunicorn's master kills a worker that is still busy once ``graceful_timeout``
has passed; with a budget of 0 this test fails ("closed before the response headers"). And
the other way: idle keep-alive connections (the API server keeps some in its pool) are closed
at once on SIGTERM, as nginx does, so the pod exits as soon as the reviews in flight are
answered instead of when the graceful timeout runs out (they waited 25 s for it).
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import time
from pathlib import Path
from typing import Any

from tests.conftest import REVIEWS, Server, load_review, start_server

#: Reviews provably in flight when SIGTERM lands: headers and half of each body sent.
IN_FLIGHT = 16
#: ``ServeOptions.graceful_timeout``: what the worker may take at most.
GRACEFUL_SECONDS = 25
#: Well under that: idle connections are closed within the worker's quarter-second sweep
#: and it exits at its next check (every second), seconds more on a loaded machine.
CLOSED_WITHIN = 12


def _read_response(tls: ssl.SSLSocket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before the response headers: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(headers["content-length"])
    while len(body) < length:
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the middle of the response body")
        body += chunk
    return int(status_line.split()[1]), headers, body


def _open(server: Server) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(server.ca))
    port = server.port
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_sigterm_answers_every_review_in_flight(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    review: dict[str, Any] = load_review(REVIEWS / "pod-create-plain.json")["body"]
    connections = []
    connections_idle: list[ssl.SSLSocket] = []
    bodies = []
    try:
        for index in range(IN_FLIGHT):
            review["request"]["uid"] = f"in-flight-{index}"
            body = json.dumps(review).encode()
            tls = _open(server)
            head = (
                "POST /validate?timeout=5s HTTP/1.1\r\nHost: pullguard\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            tls.sendall(head + body[: len(body) // 2])
            connections.append(tls)
            bodies.append(body)
        # Idle when SIGTERM lands: a keep-alive connection between two requests, and one
        # that finished the handshake and sent nothing yet.
        kept_alive = _open(server)
        head = "GET /healthz HTTP/1.1\r\nHost: pullguard\r\n\r\n"
        kept_alive.sendall(head.encode())
        assert _read_response(kept_alive)[0] == 200
        connections_idle += [kept_alive, _open(server)]
        time.sleep(0.5)  # every request is now being read by the server
        server.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.5)  # the worker is stopping: no new connections, in-flight ones go on
        for tls, body in zip(connections, bodies, strict=True):
            tls.sendall(body[len(body) // 2 :])
        answered = []
        for index, tls in enumerate(connections):
            status, headers, payload = _read_response(tls)
            assert status == 200, payload
            assert headers["content-type"].startswith("application/json")
            assert json.loads(payload)["response"]["uid"] == f"in-flight-{index}"
            answered.append(index)
        assert answered == list(range(IN_FLIGHT))
        # Then every connection, answered or idle, is closed by the server (an end of file),
        # long before the graceful timeout, and the server exits.
        for tls in connections + connections_idle:
            tls.settimeout(max(0.1, signalled + CLOSED_WITHIN - time.monotonic()))
            assert tls.recv(1) == b""
        assert server.process.wait(timeout=30) == 0
        assert time.monotonic() - signalled < GRACEFUL_SECONDS
        # Stopped for good: new connections are refused.
        try:
            _open(server).close()
            raise AssertionError("pullguard still accepts connections after SIGTERM")
        except OSError:
            pass
    finally:
        for tls in connections + connections_idle:
            tls.close()
        if server.process.poll() is None:
            server.process.kill()
