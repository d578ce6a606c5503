"""A TCP proxy on loopback that can turn its open connections into half-open ones.

``freeze()`` stops forwarding on every connection open at that moment, in both directions,
without closing them: what a client sees when a NAT or conntrack entry on the path is
dropped, or a peer vanishes behind a proxy that still ACKs. New connections are forwarded
normally. Used to show that a watch behind such a connection does not stay stale.
"""

from __future__ import annotations

import selectors
import socket
import threading


class FreezingProxy:
    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self._frozen: set[socket.socket] = set()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def freeze(self) -> int:
        """Freeze every connection open now; returns how many."""
        with self._lock:
            self._frozen |= self._open
            return len(self._open) // 2

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        with self._lock:
            for sock in self._open:
                sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._open |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        try:
            while not self._stop.is_set():
                ready = selector.select(timeout=0.5)
                with self._lock:  # checked after select: nothing slips through a freeze
                    frozen = a in self._frozen
                if frozen:
                    self._stop.wait(0.5)  # hold the sockets open, forward nothing
                    continue
                for key, _ in ready:
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            with self._lock:
                self._open -= {a, b}
            a.close()
            b.close()
