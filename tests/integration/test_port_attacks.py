"""Attacks on the webhook port by anything that can reach it, through the real server.

- 40 unfinished 7 MiB request bodies: each connection sends its headers and most of its
  body, then stalls. Without a bound, the worker buffered every byte (hundreds of MiB);
  the bytes of bodies in flight per worker are now reserved before they are read, and a
  body past the reservation is answered 429 with ``Retry-After`` without being read.

The worker's RSS under the attack is printed (``-s``): the figure in docs/reliability.md.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from pathlib import Path

from tests.conftest import REVIEWS, Server, load_review, start_server, stop_server
from tests.integration.test_load import _rss_kib, _workers
from webhook.edge.app import IN_FLIGHT_BODY_BYTES, MAX_BODY_BYTES

ATTACKERS = 40
RSS_LIMIT_MIB = 200


def _tls(server: Server) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(server.ca))
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _unfinished_body(server: Server) -> ssl.SSLSocket:
    """Headers for a body just under the cap, then all of it but the last KiB."""
    tls = _tls(server)
    size = MAX_BODY_BYTES - 1024
    tls.sendall(
        b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {size}\r\n\r\n".encode()
    )
    chunk = b" " * (256 * 1024)
    sent = 0
    tls.settimeout(0.5)
    try:
        while sent < size - 1024 - len(chunk):
            tls.sendall(chunk)
            sent += len(chunk)
    except (TimeoutError, OSError):
        pass  # the server stopped reading (or answered and closed): it holds no more of it
    return tls


def test_unfinished_large_bodies_do_not_grow_a_worker(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--workers", "1")
    held: list[ssl.SSLSocket] = []
    try:
        (worker,) = _workers(server)
        before = _rss_kib(worker) / 1024
        for _ in range(ATTACKERS):
            held.append(_unfinished_body(server))
        time.sleep(1.0)
        during = _rss_kib(worker) / 1024
        # A real review is still answered meanwhile.
        body = load_review(REVIEWS / "pod-create-plain.json")["body"]
        with server.client() as client:
            started = time.perf_counter()
            reply = client.post(
                "/validate",
                content=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            took = time.perf_counter() - started
        print(
            f"\n{ATTACKERS} unfinished {MAX_BODY_BYTES / 2**20:.0f} MiB bodies: worker RSS "
            f"{before:.0f} MiB before, {during:.0f} MiB during; a real review meanwhile: "
            f"{reply.status_code} in {took:.3f}s"
        )
        assert during < RSS_LIMIT_MIB, f"worker RSS {during:.0f} MiB under the attack"
        assert reply.status_code == 200, reply.text[:300]
        shed = 0
        for sock in held:
            try:
                head = sock.recv(4096)
            except (TimeoutError, OSError):
                continue  # still being read: one of the bodies that fit
            if head.startswith(b"HTTP/1.1 429"):
                assert b"Retry-After: 1" in head, head
                shed += 1
        print(f"{shed} of {ATTACKERS} answered 429 with Retry-After without being read")
        assert shed >= ATTACKERS - IN_FLIGHT_BODY_BYTES // (MAX_BODY_BYTES - 1024)
    finally:
        for sock in held:
            sock.close()
        stop_server(server)
