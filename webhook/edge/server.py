"""``pullguard serve``: the Flask app under gunicorn over TLS.

One gunicorn worker process with threads (``gthread``): the list+watch caches, the config
watch and the secret sync live once per process and are shared by every request thread, and
nothing starts before the fork (the app is built in the worker's ``load``).

TLS: gunicorn's ``gthread`` worker asks the ``ssl_context`` hook for a context on every new
connection. :class:`ReloadingTLS` answers with one context per process, and when the
certificate files change on disk (a renewal, a mounted Secret's update) it loads them into
that same context, so new handshakes get the new certificate without a restart and without a
context built per connection.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

log = logging.getLogger("pullguard.server")


class ReloadingTLS:
    """One SSLContext per process, refreshed in place when the certificate files change."""

    def __init__(self, certfile: str, keyfile: str, check_interval: float = 5.0) -> None:
        self.certfile = certfile
        self.keyfile = keyfile
        self.check_interval = check_interval
        self._context: ssl.SSLContext | None = None
        self._stamp: tuple[float, float] = (0.0, 0.0)
        self._checked = 0.0
        self._lock = threading.Lock()

    def _files_stamp(self) -> tuple[float, float]:
        return (Path(self.certfile).stat().st_mtime, Path(self.keyfile).stat().st_mtime)

    def context(self, factory: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
        now = time.monotonic()
        with self._lock:
            if self._context is None:
                self._context = factory()
                self._context.minimum_version = ssl.TLSVersion.TLSv1_2
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


@dataclass
class ServeOptions:
    host: str
    port: int
    certfile: str
    keyfile: str
    threads: int = 8
    graceful_timeout: int = 25


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: ServeOptions, app_factory: Callable[[], Flask]) -> None:
        self.options = options
        self.app_factory = app_factory
        self.tls = ReloadingTLS(options.certfile, options.keyfile)
        super().__init__()

    def load_config(self) -> None:
        tls = self.tls
        settings: dict[str, Any] = {
            "bind": [
                f"[{self.options.host}]:{self.options.port}"
                if ":" in self.options.host
                else f"{self.options.host}:{self.options.port}"
            ],
            "workers": 1,
            "worker_class": "gthread",
            "threads": self.options.threads,
            "certfile": self.options.certfile,
            "keyfile": self.options.keyfile,
            "ssl_context": lambda _conf, factory: tls.context(factory),
            # In-flight reviews get this long to finish on SIGTERM; keep it under the Pod's
            # terminationGracePeriodSeconds.
            "graceful_timeout": self.options.graceful_timeout,
            "timeout": 60,
            "keepalive": 30,  # the API server reuses connections
            "accesslog": None,
            "errorlog": "-",
            "loglevel": "info",
            "preload_app": False,
            "proc_name": "pullguard",
            # gunicorn >= 24 opens a control socket under $HOME; the container's root
            # filesystem is read-only and nothing uses it.
            "control_socket_disable": True,
        }
        for key, value in settings.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.app_factory()


def run(options: ServeOptions, app_factory: Callable[[], Flask]) -> int:
    """Serve until stopped. Blocks."""
    if not Path(options.certfile).exists() or not Path(options.keyfile).exists():
        raise SystemExit(f"certificate {options.certfile} or key {options.keyfile} not found")
    _Gunicorn(options, app_factory).run()
    return 0
