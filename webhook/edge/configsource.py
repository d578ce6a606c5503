"""Where the configuration comes from, and the store that keeps the last good one.

:class:`ConfigStore` is the only place a configuration is swapped: a new document is parsed
in full first, and only a valid one replaces the current configuration. An invalid one is
logged with every problem by key path, counted, and otherwise ignored.

Before any good document has been applied (the process has just started, or the first
document it saw was invalid), reviews are judged with the embedded default
(:func:`default_config_text`: checks at their defaults, no mirrors, no default pull secrets,
so nothing is rewritten) rather than failing with a 500, which ``failurePolicy: Fail`` would
turn into a denial of every pod. The process says so everywhere an admin looks: an ERROR in
the log, ``pullguard_config_embedded_default 1``, a Warning Event on the ConfigMap
(``webhook.edge.kube.ConfigMapSource``), and ``/readyz`` failing with the reason. Not ready
is deliberate: a rollout of pullguard stops there, so the replicas that hold the last good
configuration keep serving, and the Service sends them the reviews.

Sources feed it: :class:`FileConfigSource` polls a file (``--config FILE``; a ConfigMap
mounted as a volume works too), and ``webhook.edge.kube.ConfigMapSource`` watches the
ConfigMap. Must not: decide anything about admissions.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from importlib import resources
from pathlib import Path

from webhook.core.config import Config, ConfigError, load_config_text
from webhook.edge.metrics import Metrics

log = logging.getLogger("pullguard.config")


def default_config_text() -> str:
    """The embedded default document (``pullguard serve --dev`` runs on it)."""
    return resources.files("webhook").joinpath("defaults/config.yaml").read_text("utf-8")


def load_config_file(path: Path) -> Config:
    """The configuration document at ``path`` (``--config FILE`` of a command), parsed.
    Raises :class:`~webhook.core.config.ConfigError` for an invalid one and ``OSError`` for
    a file that cannot be read."""
    return load_config_text(path.read_text("utf-8"))


_EMBEDDED: list[Config] = []


def embedded_default() -> Config:
    """The embedded default document, parsed once per process."""
    if not _EMBEDDED:
        _EMBEDDED.append(load_config_text(default_config_text()))
    return _EMBEDDED[0]


class ConfigStore:
    """The configuration in force, swapped atomically, never replaced by an invalid one."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._lock = threading.Lock()
        self._config: Config | None = None
        self._digest = ""
        self.last_problems: list[str] = []
        self.refused_source = ""
        """Where the last refused document came from (empty once one is applied)."""
        self.source = ""
        metrics.config_embedded_default.set(1)

    @property
    def loaded(self) -> bool:
        """Has a good document been applied? Until then :attr:`current` is the embedded
        default, and the process is not ready."""
        return self._config is not None

    @property
    def current(self) -> Config:
        """The configuration to judge with: the last good one, else the embedded default."""
        config = self._config
        return config if config is not None else embedded_default()

    def not_ready(self) -> list[str]:
        """Why the configuration keeps the process from being ready (for /readyz)."""
        if self._config is not None:
            return []
        if self.last_problems:
            return [
                f"the configuration from {self.refused_source} was refused "
                f"({len(self.last_problems)} problem(s), see the log: "
                f"{self.last_problems[0]}); reviews are judged with the embedded default "
                "(no mirrors, no default pull secrets) until a valid one is applied"
            ]
        return ["configuration not loaded yet; reviews are judged with the embedded default"]

    def apply_text(self, text: str, source: str) -> bool:
        """Parse and, if valid, apply ``text``. Returns whether it is now in force."""
        digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
        if digest == self._digest and self._config is not None:
            self._metrics.config_reloads.labels("unchanged").inc()
            return True
        try:
            config = load_config_text(text)
        except ConfigError as error:
            self.last_problems = error.problems
            self.refused_source = source
            self._metrics.config_reloads.labels("invalid").inc()
            self._metrics.config_ok.set(0)
            kept = (
                "the last good configuration stays in force"
                if self._config
                else "no good configuration yet: reviews are judged with the EMBEDDED DEFAULT "
                "(no mirrors, no default pull secrets: nothing is rewritten) and /readyz "
                "fails until a valid one is applied"
            )
            log.error("configuration from %s refused; %s. %s", source, kept, error)
            return False
        with self._lock:
            self._config = config
            self._digest = digest
            self.source = source
        self.last_problems = []
        self.refused_source = ""
        self._metrics.config_reloads.labels("applied").inc()
        self._metrics.config_ok.set(1)
        self._metrics.config_embedded_default.set(0)
        log.info("configuration from %s applied", source)
        return True


class FileConfigSource:
    """Polls a file and applies it on change. A ConfigMap volume's symlink swap is a change."""

    def __init__(self, path: Path, store: ConfigStore, interval: float = 2.0) -> None:
        self.path = path
        self.store = store
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last = b""

    def poll_once(self) -> None:
        try:
            data = self.path.read_bytes()
        except OSError as error:
            if self._last != b"<missing>":
                log.error("cannot read configuration file %s: %s", self.path, error)
                self._last = b"<missing>"
            return
        if data != self._last:
            self._last = data
            self.store.apply_text(data.decode("utf-8", "replace"), f"file {self.path}")

    def start(self) -> None:
        self.poll_once()
        self._thread = threading.Thread(target=self._run, name="config-file", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll_once()

    def stop(self) -> None:
        self._stop.set()
