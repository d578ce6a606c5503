"""The parts several workers share: core counting, the leader lock, the coalescing socket."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from webhook.edge.server import _CoalescingSocket
from webhook.edge.workers import Leadership, usable_cores


def test_usable_cores_follow_affinity_and_the_cgroup_quota(tmp_path: Path) -> None:
    assert usable_cores(tmp_path, affinity={0, 1, 2, 3}) == 4  # no cpu.max: affinity
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cores(tmp_path, affinity={0, 1, 2, 3}) == 4
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # a 1.5 CPU limit
    assert usable_cores(tmp_path, affinity={0, 1, 2, 3}) == 2
    (tmp_path / "cpu.max").write_text("20000 100000\n")  # 200m
    assert usable_cores(tmp_path, affinity={0, 1}) == 1
    (tmp_path / "cpu.max").write_text("garbage\n")
    assert usable_cores(tmp_path, affinity={0, 1}) == 2


def test_one_leader_runs_the_loops_and_another_takes_over_when_it_goes(tmp_path: Path) -> None:
    started: list[str] = []
    first, second = Leadership(tmp_path / "lock"), Leadership(tmp_path / "lock")
    first.add("sync", lambda: started.append("first"))
    second.add("sync", lambda: started.append("second"))
    assert first.try_lead()
    assert not second.try_lead()
    assert first.try_lead()  # leading already: nothing starts twice
    assert started == ["first"]
    assert first._fd is not None
    os.close(first._fd)  # what the kernel does when the leading worker dies
    assert second.try_lead()
    assert started == ["first", "second"]
    assert second.leading


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed = False
        self.timeouts: list[float] = []

    def sendall(self, data: bytes) -> None:
        self.sent.append(data)

    def recv(self, size: int) -> bytes:
        return b"next"

    def settimeout(self, value: float) -> None:
        self.timeouts.append(value)

    def close(self) -> None:
        self.closed = True


def test_headers_go_out_with_the_body_in_one_write() -> None:
    raw = _Recorder()
    sock = _CoalescingSocket(raw, idle_seconds=120)
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
    assert raw.sent == []
    sock.sendall(b"{}")
    assert raw.sent == [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"]


def test_a_response_without_body_is_sent_before_any_read_or_close() -> None:
    raw = _Recorder()
    sock = _CoalescingSocket(raw, idle_seconds=120)
    sock.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
    sock.between_requests()
    assert raw.sent == [b"HTTP/1.1 204 No Content\r\n\r\n"]
    assert raw.timeouts == [120]  # idle: the keep-alive time
    assert sock.recv(10) == b"next"
    assert raw.timeouts == [120, 10.0]  # a request began: the read timeout again
    sock.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
    sock.close()
    assert raw.sent[-1] == b"HTTP/1.1 204 No Content\r\n\r\n"
    assert raw.closed


def test_a_request_that_is_not_whole_by_its_deadline_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    # A byte at a time, each well within the read timeout: the deadline for the whole
    # request (from its first byte) is what ends it, as an end of file gunicorn ends quietly.
    from webhook.edge import server

    clock = [1000.0]
    monkeypatch.setattr(server.time, "monotonic", lambda: clock[0])
    raw = _Recorder()
    sock = _CoalescingSocket(raw, idle_seconds=120)
    sock.between_requests()
    assert sock.recv(1) == b"next"  # the request's first byte
    clock[0] += server.REQUEST_SECONDS - 1
    assert sock.recv(1) == b"next"
    assert raw.timeouts[-2:] == [1.0, server.READ_SECONDS]  # the read waits what is left
    clock[0] += 1
    assert sock.recv(1) == b""
    assert sock.cut
    assert sock.recv(1) == b""  # and every read after it
    sock.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
    sock.between_requests()  # a connection that was cut is never read again
    assert sock.recv(1) == b""
