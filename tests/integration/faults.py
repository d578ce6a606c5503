"""Misbehaving registries for tests, on loopback over TLS: one that accepts and never
answers, one that drips its answer a byte at a time, one that answers a fixed status (429,
503...), one that redirects (to a private address, say), and a scripted attacker server
(:class:`ScriptedServer`) that answers each request as a test says."""

from __future__ import annotations

import contextlib
import http.server
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class FaultServer:
    """``mode``: hang | drip | status | redirect | big. ``status``/``headers`` for status mode;
    ``location`` for redirect mode; big: ``status`` with a 5 MiB body."""

    def __init__(
        self,
        mode: str,
        tls: dict[str, Path],
        *,
        status: int = 503,
        headers: dict[str, str] | None = None,
        location: str = "",
        delay: float = 0.0,
    ) -> None:
        self.mode = mode
        self.delay = delay
        self.status = status
        self.headers = headers or {}
        self.location = location
        self.requests: list[str] = []  # request lines
        self.raw: list[bytes] = []  # whole request heads
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(str(tls["cert"]), str(tls["key"]))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.host = f"127.0.0.1:{self.port}"
        self.stopping = threading.Event()
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(raw)
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            conn = self.context.wrap_socket(raw, server_side=True)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            self.requests.append(data.split(b"\r\n", 1)[0].decode())
            self.raw.append(data)
            if self.delay:
                time.sleep(self.delay)
            if self.mode == "hang":
                self.stopping.wait(60)
                return
            if self.mode == "drip":
                for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
                    if self.stopping.is_set():
                        return
                    conn.sendall(bytes([byte]))
                    time.sleep(0.1)
                return
            if self.mode == "big":
                size = 5 * 1024 * 1024
                conn.sendall(
                    f"HTTP/1.1 {self.status} Status\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {size}\r\nConnection: close\r\n\r\n".encode()
                )
                chunk = b" " * 65536
                for _ in range(size // len(chunk)):
                    if self.stopping.is_set():
                        return
                    conn.sendall(chunk)
                conn.close()
                return
            if self.mode == "redirect":
                head = f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {self.location}\r\n"
            else:
                head = f"HTTP/1.1 {self.status} Status\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in self.headers.items())
            conn.sendall((head + "Content-Length: 0\r\nConnection: close\r\n\r\n").encode())
            conn.close()
        except OSError:
            return

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.close()


Handler = Callable[["Request"], tuple[int, dict[str, str], bytes]]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased


class ScriptedServer:
    """An attacker's HTTPS server on loopback: ``handler`` answers each request (status,
    headers, body), every request is recorded. For what a real registry cannot be made to do:
    redirect a manifest to another host, challenge from there, serve hostile platforms."""

    def __init__(self, tls: dict[str, Path], handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        outer = self

        class _Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return

            def _answer(self) -> None:
                request = Request(
                    self.command, self.path, {k.lower(): v for k, v in self.headers.items()}
                )
                outer.requests.append(request)
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                status, headers, body = outer.handler(request)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = _answer

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(tls["cert"]), str(tls["key"]))
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def seen(self, method: str, path_start: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path.startswith(path_start)]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
