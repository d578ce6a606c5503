"""The server's log: one JSON object per line on standard error, written in batches.

Every review logs one INFO line (operators need it), so the log is in the hot path. A
``StreamHandler`` writes and flushes each line on its own: a system call per review, and the
handler's lock held across it. Here, in a process that started a flusher (each server worker
does, after the fork), INFO lines are appended to a buffer and written together at most
:data:`FLUSH_SECONDS` later (or at :data:`FLUSH_BYTES`); a WARNING or worse is written at once
with everything before it, so a problem is never waiting in memory, and the buffer is written
on exit (``logging.shutdown``). At most :data:`FLUSH_SECONDS` of INFO lines can be lost if the
process is killed outright. Elsewhere (gunicorn's master, commands) every line is written at
once.

It never reads or shapes what is logged: callers do (and never log secret data).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import TextIO

import orjson

FLUSH_SECONDS = 0.2
FLUSH_BYTES = 64 * 1024


class JsonLineFormatter(logging.Formatter):
    """``{"time","level","logger","message"}``, the message JSON-encoded (so a value a
    tenant chose cannot break the line or forge another)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        line = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        try:
            return orjson.dumps(line).decode()
        except TypeError:  # a lone surrogate (valid in JSON input, not in UTF-8): escaped
            return json.dumps(line)


class BatchingHandler(logging.Handler):
    """Lines of INFO and below wait up to :data:`FLUSH_SECONDS`; others go out at once."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream or sys.stderr
        self._lines: list[str] = []
        self._size = 0
        self._flusher_pid = 0  # the process whose flusher runs: only there are lines held

    def start_flusher(self) -> None:
        """Hold INFO lines in this process from now on, written every :data:`FLUSH_SECONDS`
        by a daemon thread. Call it after the fork, in the process that serves."""
        if self._flusher_pid == os.getpid():
            return
        self.flush()
        self._flusher_pid = os.getpid()

        def flush_forever() -> None:
            while True:
                time.sleep(FLUSH_SECONDS)
                self.flush()

        threading.Thread(target=flush_forever, name="log-flusher", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        # emit runs under the handler's lock (Handler.handle takes it).
        self._lines.append(line)
        self._size += len(line)
        held = self._flusher_pid == os.getpid()
        if not held or record.levelno > logging.INFO or self._size >= FLUSH_BYTES:
            self._write()

    def _write(self) -> None:
        if not self._lines:
            return
        text, self._lines, self._size = "".join(self._lines), [], 0
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass  # standard error is gone: nothing else to tell

    def flush(self) -> None:
        with self.lock or threading.Lock():
            self._write()


def setup() -> BatchingHandler:
    """Route the root logger through one :class:`BatchingHandler` at INFO."""
    handler = BatchingHandler()
    handler.setFormatter(JsonLineFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    return handler
