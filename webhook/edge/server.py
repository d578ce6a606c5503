"""``pullguard serve``: the Flask app under gunicorn over TLS.

One gunicorn worker process per usable core (``ServeOptions.workers``), each running
:class:`PullguardWorker`, gunicorn's gevent worker with pullguard's own TLS edge: every
connection is a greenlet. Each worker builds its own app after the fork (the list+watch
caches, the config watch), so nothing starts before it; what the workers share and what only
one of them runs is in :mod:`webhook.edge.workers`.

Why gevent and not threads: the API server is not the only one who can reach the port. With
a pool of request threads (gunicorn's ``gthread``), the TLS handshake and the request read
happen on those threads, so eight clients that send one byte each held every thread,
``/healthz`` failed, and with ``failurePolicy: Ignore`` the API server admitted everything
unchecked. A greenlet per connection makes a slow client cost a socket and a few KiB, never
the capacity to answer the API server; and each connection still has deadlines:

- :data:`HANDSHAKE_SECONDS` for the TLS handshake, as a whole;
- :data:`REQUEST_SECONDS` for a whole request, headers and body, from its first byte (a
  client that sends a byte every few seconds is never idle: only this ends it), and
  :data:`READ_SECONDS` for each read and write;
- the keep-alive time (120 s, longer than the API server keeps idle connections) for an idle
  connection, before its first request and between two;
- at most ``worker_connections`` connections at once, those in their TLS handshake
  included; past that, new ones wait in the listen backlog instead of costing memory. Near
  that bound each new connection makes room (:class:`IdleConnections`): connections that
  are certainly not the API server's (they asked for another path than /validate and
  /mutate, or, with ``--client-ca``, are unverified) and a peer address's past its fair
  share are closed once answered, and a new one from a peer already at its allowance is
  refused before its handshake; handshakes and requests still arriving after a second
  (a handshake: or waiting a second in all on its peer past its ClientHello) are cut,
  connections that finish the handshake and send nothing are closed, and only then,
  and only as many as they alone are past the bound, idle keep-alive connections of clients
  that complete requests (docs/reliability.md says what this defends and what it does not).
- a request pipelined behind another, or the rest of a body the app did not read, is held
  to the request deadline too, not to the keep-alive time;
- on SIGTERM, every idle connection is closed at once (nginx's graceful shutdown): the
  requests in flight are answered, and the worker does not wait out the graceful timeout
  for the connections the API server keeps idle in its pool.

Client certificates (``serve --client-ca``): the handshake asks for one and verifies any
that is presented against that CA (a certificate from another CA fails the handshake); a
connection that presented a verified one is marked ``client_verified``, which the app
requires on /validate and /mutate. Probes and scrapers connect without one.

TLS: :class:`ReloadingTLS` keeps one SSLContext per process, consulted on every new
connection, and when the certificate files change on disk (a renewal, a mounted Secret's
update) it loads them into that same context, so new handshakes get the new certificate
without a restart.

Per request, two things the stock worker does not do (both measured, see docs/performance.md):

- the response's header block is held and sent with the first body write, in one TLS record
  and one system call (:class:`_CoalescingSocket`), instead of two;
- after each response the greenlet yields, so connections that have a request waiting are
  served in turn: without it, one busy keep-alive connection is served again and again while
  the others wait, which is what a p99 of 100 ms at 16 connections looked like.
"""

from __future__ import annotations

import _socket
import logging
import os
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

log = logging.getLogger("pullguard.server")

HANDSHAKE_SECONDS = 5.0
READ_SECONDS = 10.0
#: A request's headers and body must all have arrived this long after its first byte: a
#: client that sends a byte every few seconds is never idle and no single read waits long,
#: so only a deadline for the whole request ends it. The API server sends a review at once.
REQUEST_SECONDS = 5.0
#: Under pressure, a TLS handshake whose ClientHello is in and that has waited this long in
#: all for its peer's replies to the server's flights is cut: a real client answers within a
#: round trip (a 2,000-connection burst's slowest: 1.3 s, docs/reliability.md); one that
#: sends a whole ClientHello and then nothing held its slot for :data:`HANDSHAKE_SECONDS`.
HANDSHAKE_PEER_SECONDS = 1.0
MAX_CONNECTIONS = 1000


class ReloadingTLS:
    """One SSLContext per process, refreshed in place when the certificate files change."""

    def __init__(
        self,
        certfile: str,
        keyfile: str,
        check_interval: float = 5.0,
        *,
        client_ca: str | None = None,
    ) -> None:
        self.certfile = certfile
        self.keyfile = keyfile
        self.client_ca = client_ca
        self.check_interval = check_interval
        self._context: ssl.SSLContext | None = None
        self._stamp: tuple[float, float] = (0.0, 0.0)
        self._checked = 0.0
        self._lock = threading.Lock()

    def _files_stamp(self) -> tuple[float, float]:
        return (Path(self.certfile).stat().st_mtime, Path(self.keyfile).stat().st_mtime)

    def context(self) -> ssl.SSLContext:
        """The context for a new connection, reloaded first when the files have changed."""
        now = time.monotonic()
        with self._lock:
            if self._context is None:
                self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                self._context.minimum_version = ssl.TLSVersion.TLSv1_2
                self._context.load_cert_chain(self.certfile, self.keyfile)
                if self.client_ca:
                    # Asked for, not required, in the handshake: the kubelet's probes and a
                    # scraper connect without one. The app requires it on /validate and
                    # /mutate; a certificate that is presented must verify, or the
                    # handshake fails.
                    self._context.verify_mode = ssl.CERT_OPTIONAL
                    self._context.load_verify_locations(cafile=self.client_ca)
                self._stamp = self._files_stamp()
                self._checked = now
            elif now - self._checked >= self.check_interval:
                self._checked = now
                self._maybe_reload()
            return self._context

    def _maybe_reload(self) -> None:
        try:
            stamp = self._files_stamp()
            if stamp == self._stamp or self._context is None:
                return
            self._context.load_cert_chain(self.certfile, self.keyfile)
        except (OSError, ssl.SSLError) as error:
            # A half-written pair during a renewal: keep serving the old one, retry later.
            log.warning("certificate reload postponed: %s", error)
            return
        self._stamp = stamp
        log.info("serving certificate reloaded from %s", self.certfile)


def _nothing_waiting(sock: Any) -> bool:
    """No bytes (nor the peer's close) waiting in the kernel's buffer of ``sock``: checked on
    a duplicate of the descriptor, with the C socket module (no greenlet switch)."""
    try:
        dup = _socket.socket(fileno=os.dup(sock.fileno()))
    except (OSError, ValueError):
        return False
    try:
        dup.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        return False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        dup.close()


def _wake(sock: Any) -> None:
    """Wake the greenlet parked in a read of ``sock`` (at an end of file), without a switch."""
    try:
        dup = _socket.socket(fileno=os.dup(sock.fileno()))
    except (OSError, ValueError):
        return
    try:
        dup.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already gone: the read has ended, or will at its deadline
    finally:
        dup.close()


def _discard_unread(sock: Any) -> None:
    """Read and drop what waits in ``sock``'s buffer, so that closing it ends the
    connection quietly (a close with unread bytes sends a reset instead)."""
    try:
        dup = _socket.socket(fileno=os.dup(sock.fileno()))
    except (OSError, ValueError):
        return
    try:
        while dup.recv(65536, socket.MSG_DONTWAIT):
            pass
    except OSError:
        pass  # nothing more waiting (or the peer is gone)
    finally:
        dup.close()


def _wake_to_reset(sock: Any) -> None:
    """Wake the greenlet parked in a read of ``sock`` (at an end of file, sending the peer
    nothing yet), its close to be abortive: a reset, as nginx's
    ``reset_timedout_connection``. For a handshake cut under pressure past its ClientHello:
    its peer learns the connection is gone as a reset (``ECONNRESET``) rather than an end of
    file, after which a client that finished its side of a TLS 1.3 handshake late would write
    its request into a closed connection (``EPIPE``)."""
    try:
        dup = _socket.socket(fileno=os.dup(sock.fileno()))
    except (OSError, ValueError):
        return
    try:
        dup.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        dup.shutdown(socket.SHUT_RD)  # no FIN: the read ends, the close then resets
    except OSError:
        pass  # already gone: the read has ended, or will at its deadline
    finally:
        dup.close()


#: The paths the API server sends: a connection that asked for anything else (``/healthz``
#: is the kubelet's, which opens a connection per probe) is not the API server's.
ADMISSION_PATHS = frozenset({"/validate", "/mutate"})


@dataclass(frozen=True)
class _Descriptor:
    """A descriptor's number, as :func:`_nothing_waiting` and :func:`_wake` take a socket."""

    number: int

    def fileno(self) -> int:
        return self.number


#: How much of a ClientHello is peeked at most: a real one is a few KiB (one record of
#: at most 16 KiB); past this the handshake starts and its own deadline holds.
_HELLO_PEEK_BYTES = 4 * (5 + 16384)


def _hello_whole(data: bytes) -> bool:
    """The ClientHello handshake message is whole in ``data``: its 4-byte handshake header's
    length counted across TLS records (RFC 8446 5.1 lets a message span records, so a first
    record of one byte is not a ClientHello), or ``data`` is no handshake record, or it
    fills the peek (let the handshake read it and fail or go on under its deadline)."""
    message = bytearray()
    at = 0
    while len(data) >= at + 5:
        if data[at] != 0x16:
            return True  # not a handshake record: the handshake fails on it at once
        length = int.from_bytes(data[at + 3 : at + 5], "big")
        if len(data) < at + 5 + length:
            break
        message += data[at + 5 : at + 5 + length]
        at += 5 + length
        if len(message) >= 4 and len(message) >= 4 + int.from_bytes(message[1:4], "big"):
            return True
    return len(data) >= _HELLO_PEEK_BYTES


class _Handshake:
    """A connection in its TLS handshake, as :class:`IdleConnections` sees it: it holds a
    slot like any other, and under pressure it is cut when it waits on its peer: once it
    has taken :attr:`IdleConnections.PRESSURE_REQUEST_SECONDS` without its ClientHello
    message whole (:func:`_hello_whole`; a client that trickles it; a real client sends it
    in one packet as it connects, so it is there when the connection is accepted, even in a
    burst of thousands, when the rest of a handshake can take seconds), or, past the
    ClientHello, once its waits for the peer's replies to the server's flights add up to
    :data:`HANDSHAKE_PEER_SECONDS` with no reply in the kernel's buffer (a client that sends
    a whole ClientHello and nothing more, or trickles its reply; a real one answers a flight
    within a round trip). The time the
    worker takes to get to a handshake (a loaded worker, a burst) is never counted: the
    bytes it has not read are still waiting."""

    client_verified = False  # not known before the handshake's end
    responses = -1
    closed_idle = False
    close_after_response = False
    asked_other = False

    def __init__(self, sock: Any, peer: str) -> None:
        # The descriptor's number, not the socket: the handshake's SSLSocket takes the
        # descriptor over from it (it is discarded from the pool before that one closes).
        self._sock = _Descriptor(sock.fileno())
        self.peer = peer
        self.request_started = self.idle_since = time.monotonic()
        self.cut = False
        #: The ClientHello message is whole: from now on only a wait on the peer is cut.
        self.hello_whole = False
        #: Since when the server's part of the handshake is out and it waits for the
        #: peer's reply (``None`` while the server has work to do, or before the hello).
        self.peer_since: float | None = None
        #: Seconds of the earlier waits on the peer (a reply trickled a byte at a time is
        #: many short waits: their sum is what the peer has taken).
        self.peer_waited = 0.0

    @property
    def part_way(self) -> bool:
        return not self.cut and (not self.hello_whole or self.peer_since is not None)

    def eviction_order(self) -> tuple[int, float]:
        return (0, self.request_started)

    def cut_if_part_way(self, now: float, least: float) -> bool:
        if not self.part_way:
            return False
        if not self.hello_whole:
            if now - self.request_started < least:
                return False
        elif (
            self.peer_since is None
            or self.peer_waited + now - self.peer_since < HANDSHAKE_PEER_SECONDS
            or not _nothing_waiting(self._sock)
        ):
            return False  # the reply is in, not yet read (a loaded worker): let it be read
        self.cut = True
        if self.hello_whole:
            _wake_to_reset(self._sock)
        else:
            _wake(self._sock)  # the wait for the hello ends at an end of file: it fails
        return True

    def await_hello(self, sock: Any) -> None:
        """Until the ClientHello message is whole in the kernel's buffer (peeked,
        not read: the handshake reads it), or the peer's end of file (or a cut)."""
        import gevent

        while not self.cut:
            data = sock.recv(_HELLO_PEEK_BYTES, socket.MSG_PEEK)
            if not data:
                return  # the peer's close, or the cut: the handshake fails at once
            if _hello_whole(data):
                self.hello_whole = True
                return
            gevent.sleep(0.05)  # part of it: look again (a peek returns at once)

    def complete(self, secure: Any) -> None:
        """The handshake of ``secure`` (wrapped without it), each wait for the peer's bytes
        stamped in :attr:`peer_since` and summed in :attr:`peer_waited`
        (:meth:`cut_if_part_way` ends a wait at an end of file)."""
        from gevent.socket import wait_read, wait_write

        secure.settimeout(0.0)  # gevent's SSLSocket raises the wants instead of waiting
        while True:
            try:
                secure.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.peer_since = time.monotonic()
                wait_read(secure.fileno())
            except ssl.SSLWantWriteError:
                self.peer_since = time.monotonic()
                wait_write(secure.fileno())
            finally:
                if self.peer_since is not None:
                    self.peer_waited += time.monotonic() - self.peer_since
                self.peer_since = None
        secure.settimeout(READ_SECONDS)

    def close_if_idle(self) -> bool:
        return False

    def idle_under(self, now: float, seconds: float) -> bool:
        return False


class _CoalescingSocket:
    """A connection whose response header block waits for the body's first write.

    gunicorn writes a response's headers and its body with two ``sendall`` calls: over TLS
    that is two records, two system calls and, for the peer, two reads. The header block (it
    starts with ``HTTP/`` and ends with an empty line) is held here and goes out with the next
    write; anything that could wait on the peer (a read, closing) sends it first, so a response
    without a body is never held back.
    """

    #: The peer presented a certificate signed by ``--client-ca`` (the app reads it from
    #: ``environ["gunicorn.socket"]``).
    client_verified = False

    def __init__(self, sock: Any, idle_seconds: float) -> None:
        self._sock = sock
        self._held = b""
        self._idle_seconds = idle_seconds
        self._idle = False
        #: Parked in a read: while idle with nothing of a request received, the connection
        #: may be closed under pressure; while part-way through a request, once that
        #: request has taken :attr:`IdleConnections.PRESSURE_REQUEST_SECONDS`.
        self._waiting = False
        self.closed_idle = False
        #: Chosen under pressure while busy: closed once its answer is out (``Connection:
        #: close`` when chosen before the answer started).
        self.close_after_response = False
        #: It asked for a path the API server never sends (see :data:`ADMISSION_PATHS`).
        self.asked_other = False
        #: The peer's address (``IdleConnections`` gives each a fair share under pressure).
        self.peer = ""
        #: The request's deadline passed, or it was cut under pressure: every read from now
        #: on is an end of file, and gunicorn ends the connection.
        self.cut = False
        self.idle_since = time.monotonic()
        #: When the first byte of the request being read arrived.
        self.request_started = self.idle_since
        self.responses = -1  # ``between_requests`` is called once before the first request
        #: The request being answered (gunicorn's), for :meth:`close_after_answer`.
        self.request: Any = None
        #: The app refused the body without reading it all: closed after the answer, not
        #: drained.
        self.closing_unread = False

    def between_requests(self) -> None:
        """The response is out: until the next request's first bytes, the connection is
        idle, and may stay so for the keep-alive time rather than the read timeout."""
        self.flush()
        self._idle = True
        self.idle_since = time.monotonic()
        self.responses += 1
        self._sock.settimeout(self._idle_seconds)

    def request_continues(self, *, pipelined: bool) -> None:
        """The response is out but a request is still being read: the rest of this one's
        body (never read by the app), or the next one's first bytes, sent with this one
        (pipelined) and already in gunicorn's buffer. Not idle: the request deadline holds,
        counted from now for a pipelined one (its first bytes came with the previous one)."""
        self.flush()
        self.responses += 1
        if pipelined:
            self.request_started = time.monotonic()
        self._sock.settimeout(READ_SECONDS)

    @property
    def part_way(self) -> bool:
        """A request's first bytes are in and the greenlet waits in a read for more: the
        request is still arriving (a request being judged or answered reads nothing)."""
        return not self._idle and self._waiting and not self.cut

    def eviction_order(self) -> tuple[int, float]:
        """Sorts, within one rank of :meth:`IdleConnections.make_room`, the connections
        closed first under pressure first: requests still arriving, then connections before
        their first request, then between two (a client that completes requests is kept
        longest); within each, the longest waiting first."""
        if self.part_way:
            return (0, self.request_started)
        return (1 if self.responses <= 0 else 2, self.idle_since)

    def cut_if_part_way(self, now: float, least: float) -> bool:
        """Under pressure: end a request that has been arriving for ``least`` seconds or
        more while its greenlet waits in a read for the rest (a client that trickles it).
        The read wakes at once with an end of file, and gunicorn ends the connection."""
        if not self.part_way or now - self.request_started < least:
            return False
        if self._sock.pending() or not _nothing_waiting(self._sock):
            return False  # bytes are in, not yet read (a loaded worker): let them be read
        self.cut = True
        _wake(self._sock)
        return True

    def idle_under(self, now: float, seconds: float) -> bool:
        """Idle between two requests for less than ``seconds``: its client may be writing
        its next request on it right now (never shut under pressure then)."""
        return self._idle and now - self.idle_since < seconds

    def close_if_idle(self) -> bool:
        """Under pressure: close the connection if it is idle, its greenlet parked in a read
        that has received nothing (what every server does at keep-alive expiry). The read
        wakes with an end of file, and gunicorn ends the connection quietly. Never a
        connection with a request's bytes waiting or being read."""
        if not (self._idle and self._waiting) or self.closed_idle:
            return False
        if self._sock.pending():
            return False  # a TLS record's bytes already received: let them be read
        try:
            # The C socket module, on a duplicate of the descriptor: no greenlet switch
            # between the check and the close, no select() limit on descriptor numbers, and
            # the TLS object stays whole for the greenlet parked in its read.
            dup = _socket.socket(fileno=os.dup(self._sock.fileno()))
        except (OSError, ValueError):
            return False
        try:
            dup.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            return False  # bytes (or the peer's own close) are waiting: let them be read
        except BlockingIOError:
            dup.shutdown(socket.SHUT_RDWR)  # nothing waiting: the parked read wakes at EOF
        except OSError:
            return False
        finally:
            dup.close()
        self.closed_idle = True
        return True

    def _before_read(self) -> bool:
        """Set the read's timeout; ``False`` when the request's deadline has passed."""
        if self._idle:
            return True  # waits up to the keep-alive time
        left = self.request_started + REQUEST_SECONDS - time.monotonic()
        if left <= 0:
            self.cut = True
            return False
        self._sock.settimeout(min(READ_SECONDS, left))
        return True

    def _after_read(self) -> None:
        """The read has ended: writes (the answer) get the whole read timeout again."""
        if not self._idle:
            self._sock.settimeout(READ_SECONDS)

    def _reading(self) -> None:
        if self._idle:
            self._idle = False
            self.request_started = time.monotonic()
            self._sock.settimeout(READ_SECONDS)

    def sendall(self, data: bytes) -> None:
        if not self._held and data.startswith(b"HTTP/") and data.endswith(b"\r\n\r\n"):
            self._held = bytes(data)
            return
        if self._held:
            data, self._held = self._held + bytes(data), b""
        self._sock.sendall(data)

    def flush(self) -> None:
        if self._held:
            held, self._held = self._held, b""
            self._sock.sendall(held)

    def recv(self, size: int) -> bytes:
        self.flush()
        if self.cut or not self._before_read():
            return b""
        self._waiting = True
        try:
            data: bytes = self._sock.recv(size)
        except OSError:
            if self.cut or not self._idle:
                self.cut = True  # the deadline (or the cut) ends the request: EOF
                return b""
            raise
        finally:
            self._waiting = False
            self._after_read()
        if self.cut:
            return b""
        self._reading()
        return data

    def recv_into(self, buffer: Any, size: int = 0) -> int:
        self.flush()
        if self.cut or not self._before_read():
            return 0
        self._waiting = True
        try:
            count: int = self._sock.recv_into(buffer, size)
        except OSError:
            if self.cut or not self._idle:
                self.cut = True
                return 0
            raise
        finally:
            self._waiting = False
            self._after_read()
        if self.cut:
            return 0
        self._reading()
        return count

    def close_after_answer(self) -> None:
        """The app answers without reading the rest of the body (a 413 or 429): the answer
        says ``Connection: close`` and the connection ends after it. gunicorn drops a
        ``Connection`` header the app sets (hop-by-hop) and, kept alive, read the whole
        unread body to reach the next request: a client posting 3.3 MiB bodies answered
        429 unread in a loop had the worker receive them all, some 45 a second, and real
        reviews waited 2.4 to 3.9 s (``test_port_attacks.py``, bodies that decode slowly)."""
        self.closing_unread = True
        if self.request is not None:
            self.request.force_close()

    def close(self) -> None:
        try:
            self.flush()
        except OSError:
            pass  # the peer is gone: nothing left to tell it
        finally:
            if self.closing_unread:
                # What waits in the kernel's buffer (not decrypted): a close with unread
                # bytes resets at once, and may drop the answer not yet sent.
                _discard_unread(self._sock)
            self._sock.close()

    def shutdown(self, how: int) -> None:
        self.flush()
        self._sock.shutdown(how)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _gevent_worker_class() -> type:
    """:class:`PullguardWorker`, built on first use: importing gevent's worker imports gevent,
    which must not happen in commands that never serve."""
    from gunicorn.workers.base_async import AsyncWorker
    from gunicorn.workers.ggevent import GeventWorker

    class PullguardWorker(GeventWorker):  # type: ignore[misc]
        """gunicorn's gevent worker, with TLS done here under deadlines (see the module)."""

        def handle(self, listener: Any, client: Any, addr: Any) -> None:
            app: _Gunicorn = self.app  # gunicorn hands each worker its application
            client.settimeout(READ_SECONDS)
            if listener.getsockname()[1] in app.plain_ports:
                # The metrics port: plain HTTP, and the app serves nothing else there.
                AsyncWorker.handle(self, listener, client, addr)
                return
            if not hasattr(self, "idle_pool"):
                self.idle_pool = IdleConnections(
                    self.worker_connections, client_ca=bool(app.options.client_ca)
                )
            peer = str(addr[0]) if isinstance(addr, tuple) and addr else str(addr)
            try:
                if self.idle_pool.opened(peer):
                    self._handle_tls(listener, client, addr)
                else:
                    client.close()  # its ClientHello unread: a reset, before any handshake
            finally:
                self.idle_pool.ended()

        def _handle_tls(self, listener: Any, client: Any, addr: Any) -> None:
            import gevent

            app: _Gunicorn = self.app
            peer = str(addr[0]) if isinstance(addr, tuple) and addr else str(addr)
            # Counted among the connections, and cut under pressure if it dawdles.
            handshake = _Handshake(client, peer)
            self.idle_pool.add(handshake)
            secure: Any = None
            try:
                with gevent.Timeout(HANDSHAKE_SECONDS):
                    handshake.await_hello(client)
                    secure = app.tls.context().wrap_socket(
                        client, server_side=True, do_handshake_on_connect=False
                    )
                    handshake.complete(secure)
            except (gevent.Timeout, ssl.SSLError, OSError) as error:
                log.debug("TLS handshake from %s failed: %s", addr, type(error).__name__)
                # The wrapped socket took the descriptor over from ``client``, if it was made.
                unfinished = client if secure is None else secure
                if not (handshake.cut and handshake.hello_whole):
                    # Unread bytes: closed with them, a reset (one cut past its ClientHello
                    # is to reset: ``_wake_to_reset``).
                    _discard_unread(unfinished)
                unfinished.close()
                return
            finally:
                self.idle_pool.discard(handshake)
            secure.settimeout(READ_SECONDS)
            # With --client-ca, a certificate the CA signed was verified in the handshake.
            verified = bool(app.options.client_ca) and bool(secure.getpeercert())
            try:
                # AsyncWorker.handle, not GeventWorker.handle: that one would make the socket
                # blocking again, without the read timeout.
                # Idle until the first request, too: the API server dials connections ahead
                # and may leave one unused in its pool for a while. The socket's idle timeout
                # is a little past gunicorn's keep-alive, so gunicorn ends an idle connection
                # quietly first.
                connection = _CoalescingSocket(secure, idle_seconds=app.options.keepalive + 5)
                connection.client_verified = verified
                connection.peer = peer
                connection.between_requests()
                self.idle_pool.add(connection)
                try:
                    AsyncWorker.handle(self, listener, connection, addr)
                finally:
                    self.idle_pool.discard(connection)
            finally:
                secure.close()

        def handle_exit(self, sig: Any, frame: Any) -> None:
            """SIGTERM: stop as gunicorn does, and close idle connections (see
            :meth:`IdleConnections.close_idle_for_exit`). Only a flag here, in the signal
            handler; the worker's sweep greenlet does the closing."""
            super().handle_exit(sig, frame)
            if hasattr(self, "idle_pool"):
                self.idle_pool.stopping = True

        def run(self) -> None:
            """gunicorn's gevent worker loop (serve each listener, beat, drain on SIGTERM), but
            its flag and its drain are looked at every 0.1 s, not every second: a stop with
            nothing in flight takes a tenth of a second, not one or two (a rollout of three
            replicas, and every server a test starts). The drain is unchanged: connections
            in flight are answered until ``graceful_timeout``, then stopped."""
            import functools

            import gevent
            from gevent.pool import Pool
            from gevent.server import StreamServer

            servers = []
            for listener in self.sockets:
                listener.setblocking(1)
                server = StreamServer(
                    listener,
                    handle=functools.partial(self.handle, listener),
                    spawn=Pool(self.worker_connections),
                )
                if self.cfg.workers > 1:
                    server.max_accept = 1  # as gunicorn: accepted connections spread
                server.start()
                servers.append(server)
            beat = 0.0
            while self.alive:
                if time.monotonic() - beat >= 1.0:
                    self.notify()
                    beat = time.monotonic()
                gevent.sleep(0.1)
            for server in servers:
                server.close()  # accept no more
            deadline = time.monotonic() + self.cfg.graceful_timeout
            while any(server.pool.free_count() != server.pool.size for server in servers):
                if time.monotonic() >= deadline:
                    self.log.warning("Worker graceful timeout (pid:%s)", self.pid)
                    for server in servers:
                        server.stop(timeout=1)
                    return
                if time.monotonic() - beat >= 1.0:
                    self.notify()
                    beat = time.monotonic()
                gevent.sleep(0.1)

        def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> bool:
            import gevent

            if isinstance(sock, _CoalescingSocket):
                sock.request = req
                if req.path not in ADMISSION_PATHS:
                    sock.asked_other = True
                if sock.close_after_response:
                    req.force_close()  # chosen under pressure: "Connection: close"
            keep_alive: bool = super().handle_request(listener_name, req, sock, addr)
            if isinstance(sock, _CoalescingSocket):
                if sock.close_after_response:
                    raise StopIteration  # chosen while answering: closed now it is out
                pipelined = _buffered(req) > 0
                if pipelined or not _body_read(req):
                    sock.request_continues(pipelined=pipelined)
                else:
                    sock.between_requests()  # the response is out before others get a turn
            gevent.sleep(0)  # let the other connections with a request waiting go first
            return keep_alive

    return PullguardWorker


def _buffered(req: Any) -> int:
    """Bytes gunicorn has received on the connection past the request ``req``: the start of
    the next one, pipelined."""
    buf = getattr(getattr(req, "unreader", None), "buf", None)
    if buf is None:
        return 0
    buf.seek(0, os.SEEK_END)  # where gunicorn's reads put it anyway
    return int(buf.tell())


def _body_read(req: Any) -> bool:
    """``req``'s body has been read to its end (the app may answer without reading it: the
    rest is read, and thrown away, before the next request)."""
    from gunicorn.http.body import ChunkedReader, EOFReader, LengthReader

    body = getattr(req, "body", None)
    reader = getattr(body, "reader", None)
    if isinstance(reader, LengthReader):
        return bool(reader.length <= 0)
    if isinstance(reader, ChunkedReader):
        return reader.parser is None
    if isinstance(reader, EOFReader):
        return bool(reader.finished)
    return True


_Evictable = _CoalescingSocket | _Handshake
"""What :class:`IdleConnections` holds: a connection after its TLS handshake, or in it."""


class IdleConnections:
    """One worker's TLS connections, and room for a new one kept by closing idle ones.

    ``worker_connections`` bounds a worker's connections; past it, new ones wait in the
    listen backlog. Connections that finished the handshake and then sent nothing, or that
    send a request a byte every few seconds (anyone who reaches the port can open a
    thousand), would keep the API server's own connections waiting there, its reviews timing
    out. So when the connections reach the bound less :attr:`reserve`, each new one makes
    room (nginx's reuse of keep-alive connections under pressure), in
    :meth:`_CoalescingSocket.eviction_order`: requests still arriving after
    :attr:`PRESSURE_REQUEST_SECONDS` are cut, connections idle before their first request
    are closed, longest first; with ``--client-ca``, unverified ones before verified ones.
    Those all end within seconds anyway; the connections that stay are keep-alive ones
    between two requests, and those are closed (idle longest first) only as far as they alone
    are past the bound, so a real client's pooled connection outlives a flood of the others.
    Without pressure nothing is closed before the keep-alive time (the API server dials
    connections ahead and may leave one unused in its pool for a while) or cut before
    :data:`REQUEST_SECONDS`, and a request that has arrived whole (being judged or answered)
    is never cut.
    """

    #: Seconds between two log lines about connections closed under pressure.
    LOG_EVERY = 60.0
    #: A connection idle for less than this before its first request is not closed: a
    #: client that has just finished the handshake is about to write its request (in a
    #: burst of 2,000 new connections, closing those idle for 0.1 s failed 865 of them; 1 s
    #: still failed some on a loaded machine). An attacker's connections wait this long at
    #: most before they are closed: well within the API server's webhook timeout.
    MIN_IDLE_SECONDS = 3.0
    #: The same between two requests: the idle longest go first, the client's last
    #: answer is out.
    MIN_KEPT_ALIVE_SECONDS = 0.1
    #: Near the bound, a request still arriving this long after its first byte is cut
    #: (before its :data:`REQUEST_SECONDS` deadline): the API server sends a review at once,
    #: in milliseconds; a client that trickles one holds a connection for nothing.
    PRESSURE_REQUEST_SECONDS = 1.0
    #: While near the bound, room is also made this often (when the bound is reached, no
    #: connection is accepted to make it).
    SWEEP_SECONDS = 0.25

    def __init__(self, bound: int, *, client_ca: bool = False) -> None:
        self.bound = bound
        #: ``serve --client-ca``: the API server's connections present a certificate.
        self.client_ca = client_ca
        self.reserve = max(1, bound // 10)
        self.open = 0
        self.connections: set[_Evictable] = set()
        self.closed = 0
        self.cut = 0
        #: New connections refused before their handshake (:meth:`refuses`).
        self.refused = 0
        self._logged = 0.0
        self._sweeping = False
        #: Per peer, the API-server-like connections it held when the pressure began (at
        #: most half the target): its fair share never takes it below those (``None``
        #: without pressure). Many addresses that join under pressure make the share
        #: small, but cannot shrink a peer that was there before them.
        self._floors: dict[str, int] | None = None
        #: Set on SIGTERM: the sweep closes idle connections (:meth:`close_idle_for_exit`).
        self.stopping = False

    def opened(self, peer: str = "") -> bool:
        """A new connection from ``peer`` was accepted: make room while the worker is near
        its bound. ``False``: it is refused, to be closed at once, before its handshake
        (:meth:`refuses`)."""
        self.open += 1
        if not self._sweeping:
            import gevent

            self._sweeping = True
            gevent.spawn(self._sweep)
        if self.refuses(peer):
            self.refused += 1
            return False
        self.make_room()
        return True

    def refuses(self, peer: str) -> bool:
        """Near the bound, a new connection from a peer that already holds its allowance
        (its fair share, or its floor: :meth:`_allowance`) in connections that look like
        the API server's, counted with its connections still in their handshake or before
        their first answer, and not being closed: once answered it would be past its share
        and closed after one answer anyway (:meth:`make_room`). Accepted, each such
        connection of a peer that reconnects at once took a slot, a handshake and an answer,
        and the freed slots went to its connections queued in the listen backlog ahead of
        the API server's new one (FIFO): 5 s in the backlog while every slot was busy with
        an answer that took 1.85 s (a registry question at its deadline). Refused, it costs
        an accept and a close (a reset: its ClientHello is unread), and the backlog drains
        down to the other peers' connections at once. Only with two peers or more (one peer
        alone has no one to share with), and only a peer already among them: a kubelet's
        probe, a scraper or a new address is never refused here."""
        if self.open <= self.bound - self.reserve:
            return False
        peers = self._peers()
        if len(peers) < 2 or not peers[peer]:
            return False
        held = peers[peer] + sum(
            1
            for c in self.connections
            if c.peer == peer
            and not (c.closed_idle or c.cut or c.close_after_response)
            and c.responses <= 0
            and not self._not_the_api_servers(c)
        )
        return held >= self._allowance(peer, self._share(self.bound - self.reserve, peers))

    def _sweep(self) -> None:
        import gevent

        while True:
            gevent.sleep(self.SWEEP_SECONDS)
            try:
                if self.stopping:
                    self.close_idle_for_exit()
                self.make_room()
            except Exception:  # never let the sweep die; the next accept tries again
                log.exception("closing idle connections failed")

    def close_idle_for_exit(self) -> None:
        """The worker is stopping (SIGTERM): close every idle connection, before its first
        request or between two, as nginx does at a graceful shutdown, and (called by the
        sweep) each one that goes idle after its answer. Without it the worker waited for
        them until the graceful timeout (25 s): the API server keeps idle connections in its
        pool. A request under way, or whose bytes are in, is never closed: it is answered,
        with ``Connection: close``, and gunicorn ends the connection after it."""
        for connection in list(self.connections):
            connection.close_if_idle()

    def make_room(self) -> None:
        """Make room while near the bound. First, every connection that has had an answer
        and is certainly not the API server's (:meth:`_not_the_api_servers`), and those of a
        peer address past its fair share (the target over the peers, when there are two or
        more: nginx's ``limit_conn`` per address; peers as :meth:`_peers` counts them; never
        below what the peer held when the pressure began, :attr:`_floors`) down to that
        share, is closed: at once if idle for :attr:`MIN_KEPT_ALIVE_SECONDS` or
        more, else once its answer is out (they reopen at once, and would wait in the
        backlog before the API server's new connections). Then, down to the bound less the
        reserve, in the order of :meth:`_ranked`: requests (and TLS handshakes) still
        arriving after :attr:`PRESSURE_REQUEST_SECONDS` are cut, connections idle before
        their first request closed, and only then idle ones between two requests, only as
        many as they alone are past the bound, those past their peer's floor first (every
        other connection ends by itself within
        seconds under pressure: a real client's keep-alive connection is kept)."""
        if self.open <= self.bound - self.reserve:
            self._floors = None  # the pressure is over: the next one takes its own count
            return  # no pressure: the usual case, and the sweep's every quarter second
        target = self.bound - self.reserve
        peers = self._peers()
        if self._floors is None:
            # Pressure begins: each peer keeps the API-server-like connections it holds
            # now (at most half the target), whatever the number of peers to come.
            self._floors = {peer: min(count, target // 2) for peer, count in peers.items()}
        share = self._share(target, peers)
        now = time.monotonic()
        for connection in self.connections:
            # Never shut one idle for less than the keep-alive rule's least: its client may
            # be writing its next request on it (a POST already written is not retried).
            # Chosen, it answers that request with "Connection: close" instead.
            young = connection.idle_under(now, self.MIN_KEPT_ALIVE_SECONDS)
            if connection.close_after_response:
                if not young:
                    connection.close_if_idle()  # chosen while busy, idle now: closed
            elif connection.responses > 0 and (
                self._not_the_api_servers(connection)
                or peers[connection.peer] > self._allowance(connection.peer, share)
            ):
                # Every one (of a peer, down to its share), not only as many as are past
                # the bound: they are reopened at once and would wait in the backlog before
                # the API server's new connections.
                peers[connection.peer] -= 1
                if young or not connection.close_if_idle():
                    connection.close_after_response = True
        closing = sum(
            1 for c in self.connections if c.closed_idle or c.cut or c.close_after_response
        )
        excess = self.open - closing - target
        if excess <= 0:
            return
        ordered = self._ranked(target)
        kept_alive = sum(
            1
            for _, c, _ in ordered
            if c.responses > 0
            and not (c.part_way or c.closed_idle or c.cut or c.close_after_response)
        )
        kept_alive_excess = kept_alive - target
        closed = cut = 0
        unverified_kept = past_floor_kept = False
        for suspect, connection, past_floor in ordered:
            if closed + cut >= excess or (connection.client_verified and unverified_kept):
                break  # a verified connection only once no unverified one is left
            if connection.closed_idle or connection.cut or connection.close_after_response:
                continue
            if connection.part_way:
                if connection.cut_if_part_way(now, self.PRESSURE_REQUEST_SECONDS):
                    cut += 1
                    continue
            elif connection.responses <= 0:
                if now - connection.idle_since >= self.MIN_IDLE_SECONDS and (
                    connection.close_if_idle()
                ):
                    closed += 1
                    continue
            elif suspect:
                young = connection.idle_under(now, self.MIN_KEPT_ALIVE_SECONDS)
                if young or not connection.close_if_idle():
                    connection.close_after_response = True
                closed += 1
                continue
            elif kept_alive_excess > 0 and not past_floor and past_floor_kept:
                # One past its peer's floor is kept for now (idle for less than the least,
                # or busy): it goes at the next sweep, before any its peer held before.
                kept_alive_excess = 0
            elif (
                kept_alive_excess > 0
                and now - connection.idle_since >= self.MIN_KEPT_ALIVE_SECONDS
                and connection.close_if_idle()
            ):
                closed += 1
                kept_alive_excess -= 1
                continue
            elif past_floor:
                past_floor_kept = True
            if not connection.client_verified:
                unverified_kept = True
        self.closed += closed
        self.cut += cut
        if (closed or cut) and now - self._logged >= self.LOG_EVERY:
            self._logged = now
            log.warning(
                "%d connections open in this worker (bound %d): idle connections closed and "
                "requests still arriving after %.0fs cut, to keep room for new ones (%d closed, "
                "%d cut and %d refused before their handshake so far)",
                self.open,
                self.bound,
                self.PRESSURE_REQUEST_SECONDS,
                self.closed,
                self.cut,
                self.refused,
            )

    def _not_the_api_servers(self, connection: _Evictable) -> bool:
        """Certainly not one of the API server's connections: it asked for a path the API
        server never sends, or, with ``--client-ca``, it presented no certificate the CA
        signed."""
        return connection.asked_other or (self.client_ca and not connection.client_verified)

    def _peers(self) -> Counter[str]:
        """The fair share's peers: per address, its connections that look like the API
        server's (past the TLS handshake, answered, only ever asked ``/validate`` or
        ``/mutate``, and with ``--client-ca`` verified) and are not being closed. A probe,
        a scraper or a handshake in progress is no peer: each is closed by its own rule, and
        counting it would halve the API server's share (a kubelet probe from the node's
        address cut the API server's own pool)."""
        return Counter(c.peer for c in self.connections if self._api_server_like(c))

    def _api_server_like(self, c: _Evictable) -> bool:
        """Counted among its peer's connections by :meth:`_peers`."""
        return (
            isinstance(c, _CoalescingSocket)
            and c.responses > 0
            and not self._not_the_api_servers(c)
            and not (c.closed_idle or c.cut or c.close_after_response)
        )

    def _share(self, target: int, peers: Counter[str]) -> int:
        # One peer alone has no one to share with: it is never past its share.
        return target // len(peers) if len(peers) > 1 else self.bound

    def _floor(self, peer: str) -> int:
        return (self._floors or {}).get(peer, 0)

    def _allowance(self, peer: str, share: int) -> int:
        """The connections ``peer`` may keep under pressure: its fair share, or what it
        held when the pressure began (:attr:`_floors`), whichever is more."""
        return max(share, self._floor(peer))

    def _ranked(self, target: int) -> list[tuple[bool, _Evictable, bool]]:
        """The connections, each with whether it is not the API server's kind, closed
        first first: unverified before verified (``--client-ca``: nothing else tells the
        API server's connections apart for certain); then those that asked for a path the
        API server never sends; then those of a peer address holding more than its fair
        share (the target over the peers of :meth:`_peers`, as nginx's ``limit_conn`` per
        address, when there are two peers or more); then the rest; within each,
        :meth:`_CoalescingSocket.eviction_order`."""
        peers = self._peers()
        share = self._share(target, peers)
        # Within a peer, its API-server-like connections past what it held when the
        # pressure began (the first in eviction order) go before those it held: 16
        # addresses that each joined with one connection lose theirs before the API
        # server's pool, though its connections are the longest idle.
        past_floor: set[int] = set()
        mine: dict[str, list[_Evictable]] = {}
        for c in self.connections:
            if peers[c.peer] and self._api_server_like(c):
                mine.setdefault(c.peer, []).append(c)
        for peer, held in mine.items():
            held.sort(key=lambda c: c.eviction_order())
            past_floor.update(id(c) for c in held[: max(0, len(held) - self._floor(peer))])
        ranked = []
        for c in self.connections:
            if self._not_the_api_servers(c):
                rank = 0
            else:
                rank = 1 if peers[c.peer] > self._allowance(c.peer, share) else 2
            kind, since = c.eviction_order()
            kept = 0 if id(c) in past_floor else 1
            ranked.append(((c.client_verified, rank, kind, kept, since), rank < 2, c))
        ranked.sort(key=lambda item: item[0])
        return [(suspect, c, id(c) in past_floor) for _, suspect, c in ranked]

    def ended(self) -> None:
        self.open -= 1

    def add(self, connection: _Evictable) -> None:
        self.connections.add(connection)

    def discard(self, connection: _Evictable) -> None:
        self.connections.discard(connection)


@dataclass
class ServeOptions:
    host: str
    port: int
    certfile: str
    keyfile: str
    connections: int = MAX_CONNECTIONS
    graceful_timeout: int = 25
    metrics_port: int | None = None
    """A plain-HTTP port serving only /metrics and /healthz, for a scraper a NetworkPolicy
    can tell apart from the API server."""
    workers: int = 1
    """Worker processes; each is a whole pullguard (see :mod:`webhook.edge.workers`)."""
    keepalive: int = 120
    """Seconds an idle keep-alive connection is kept open: longer than the API server keeps
    its idle webhook connections (90 s), so the server never closes one the API server is
    about to reuse (a request sent into a closing connection is a stalled admission)."""
    on_worker_exit: Callable[[int], None] | None = None
    """Called in the master with the pid of each worker that exits."""
    client_ca: str | None = None
    """PEM bundle of the CA that signs the API server's client certificate: a connection
    that presents one it signed is marked verified (``serve --client-ca``)."""


class _HttpsListening(logging.Filter):
    """gunicorn's arbiter logs "Listening at: http://HOST:PORT": it does not know the worker
    does TLS. The line is given the scheme each listener really serves (the metrics port
    stays http://), so an operator is not sent to a plain-HTTP URL that cannot answer."""

    def __init__(self, tls_binds: list[str]) -> None:
        super().__init__()
        self.tls_binds = tls_binds

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Listening at:") and record.args:
            args = list(record.args) if isinstance(record.args, tuple) else [record.args]
            text = str(args[0])
            for bind in self.tls_binds:
                text = text.replace(f"http://{bind}", f"https://{bind}")
            record.args = (text, *args[1:])
        return True


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: ServeOptions, app_factory: Callable[[], Flask]) -> None:
        self.options = options
        self.app_factory = app_factory
        self.tls = ReloadingTLS(options.certfile, options.keyfile, client_ca=options.client_ca)
        #: Listeners served without TLS (the metrics port).
        self.plain_ports = frozenset({options.metrics_port} if options.metrics_port else set())
        super().__init__()

    def load_config(self) -> None:
        host = f"[{self.options.host}]" if ":" in self.options.host else self.options.host
        ports = [self.options.port] + (
            [self.options.metrics_port] if self.options.metrics_port else []
        )
        logging.getLogger("gunicorn.error").addFilter(
            _HttpsListening([f"{host}:{self.options.port}"])
        )
        settings: dict[str, Any] = {
            "bind": [f"{host}:{port}" for port in ports],
            "workers": self.options.workers,
            "worker_class": _gevent_worker_class(),
            "worker_connections": self.options.connections,
            # No certfile/keyfile for gunicorn itself: the worker does TLS (see the module).
            # In-flight reviews get this long to finish on SIGTERM; keep it under the Pod's
            # terminationGracePeriodSeconds.
            "graceful_timeout": self.options.graceful_timeout,
            "timeout": 60,
            # The API server reuses connections; this is also the headers' deadline.
            "keepalive": self.options.keepalive,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "info",
            "preload_app": False,
            "proc_name": "pullguard",
            # gunicorn >= 24 opens a control socket under $HOME; the container's root
            # filesystem is read-only and nothing uses it.
            "control_socket_disable": True,
        }
        if self.options.on_worker_exit is not None:
            on_worker_exit = self.options.on_worker_exit
            settings["child_exit"] = lambda _server, worker: on_worker_exit(worker.pid)
        for key, value in settings.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> Flask:
        # pullguard's own line, with the deadlines (gunicorn's "Listening at" is mended above).
        log.info(
            "serving HTTPS on %s:%s (TLS handshake deadline %.0fs, request deadline %.0fs, "
            "read timeout %.0fs)",
            self.options.host,
            self.options.port,
            HANDSHAKE_SECONDS,
            REQUEST_SECONDS,
            READ_SECONDS,
        )
        return self.app_factory()


def run(options: ServeOptions, app_factory: Callable[[], Flask]) -> int:
    """Serve until stopped. Blocks."""
    if not Path(options.certfile).exists() or not Path(options.keyfile).exists():
        raise SystemExit(f"certificate {options.certfile} or key {options.keyfile} not found")
    _Gunicorn(options, app_factory).run()
    return 0
