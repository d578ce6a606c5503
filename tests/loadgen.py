"""Load generators for the tests and the benchmarks: raw HTTP/1.1 over TLS with asyncio.

- :func:`open_loop`: requests sent on a fixed schedule over keep-alive connections; each
  latency counts from when its request was due (a stall is not hidden by the client waiting
  for it, as a closed-loop client would).
- :func:`burst`: many new connections at once, each sending one request.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

_LENGTH = re.compile(rb"(?i)content-length:\s*(\d+)")


def _request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> int:
    writer.write(request)
    await writer.drain()
    headers = await reader.readuntil(b"\r\n\r\n")
    found = _LENGTH.search(headers)
    await reader.readexactly(int(found.group(1)) if found else 0)
    return int(headers.split(b" ", 2)[1])


@dataclass
class Outcome:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)

    def count(self, status: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def error(self, error: BaseException) -> None:
        name = type(error).__name__
        self.errors[name] = self.errors.get(name, 0) + 1


async def _open_loop(
    port: int,
    ca: Path,
    requests: list[bytes],
    rate: float,
    seconds: float,
    connections: int,
) -> Outcome:
    context = ssl.create_default_context(cafile=str(ca))
    due: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
    outcome = Outcome()

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        while (item := await due.get()) is not None:
            when, request = item
            try:
                outcome.count(await _exchange(reader, writer, request))
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                outcome.error(error)
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
            outcome.latencies.append(time.perf_counter() - when)
        writer.close()

    tasks = [asyncio.create_task(connection()) for _ in range(connections)]
    await asyncio.sleep(0.5)  # connections and handshakes are not part of the figures
    start = time.perf_counter()
    for n in range(int(rate * seconds)):
        when = start + n / rate
        pause = when - time.perf_counter()
        if pause > 0:
            await asyncio.sleep(pause)
        due.put_nowait((when, requests[n % len(requests)]))
    for _ in tasks:
        due.put_nowait(None)
    await asyncio.gather(*tasks)
    return outcome


def open_loop(
    port: int,
    ca: Path,
    requests: list[tuple[str, bytes]],
    rate: float,
    seconds: float,
    connections: int = 16,
) -> Outcome:
    """``rate`` requests per second for ``seconds``, cycling through ``requests`` (path,
    body), over ``connections`` keep-alive connections."""
    raw = [_request(path, body) for path, body in requests]
    return asyncio.run(_open_loop(port, ca, raw, rate, seconds, connections))


async def _burst(port: int, ca: Path, request: bytes, count: int, timeout: float) -> Outcome:
    context = ssl.create_default_context(cafile=str(ca))
    outcome = Outcome()

    async def one() -> None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
                try:
                    outcome.count(await _exchange(reader, writer, request))
                finally:
                    writer.close()
            outcome.latencies.append(time.perf_counter() - started)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as error:
            outcome.error(error)

    await asyncio.gather(*(one() for _ in range(count)))
    return outcome


def burst(port: int, ca: Path, path: str, body: bytes, count: int, timeout: float) -> Outcome:
    """``count`` new connections at once, each sending one request; a request not answered
    within ``timeout`` (the API server's webhook timeout) is counted as shed."""
    return asyncio.run(_burst(port, ca, _request(path, body), count, timeout))
