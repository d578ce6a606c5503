"""Misbehaving registries for tests, on loopback over TLS: one that accepts and never
answers, one that drips its answer a byte at a time, one that answers a fixed status (429,
503...), and one that redirects (to a private address, say)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
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
