"""The certificate files ``serve --dev`` and ``pullguard certs`` write: a reader never sees
one half-written, and a private key is never readable by others, not even for a moment."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

from webhook.edge.certs import make_bundle


def test_a_reader_never_sees_a_half_written_certificate(tmp_path: Path) -> None:
    """The test harness read certs/ca.crt as soon as it existed, while ``serve --dev`` was
    still writing it: ``NO_CERTIFICATE_OR_CRL_FOUND`` (CI, test_pull_through_mirror). Any
    tool that waits for the file does the same."""
    bundle = make_bundle(["localhost"], ["127.0.0.1"])
    bundle.write(tmp_path)
    seen: set[bytes] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.add((tmp_path / "ca.crt").read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(300):
            bundle.write(tmp_path)
    finally:
        done.set()
        reader.join()
    assert seen == {bundle.ca_cert}


def test_private_keys_are_created_private(tmp_path: Path, monkeypatch: object) -> None:
    old = os.umask(0)  # the most open umask: a key written then chmod-ed is 0o666 at first
    try:
        paths = make_bundle(["localhost"]).write(tmp_path)
    finally:
        os.umask(old)
    for name in ("ca.key", "tls.key"):
        assert stat.S_IMODE(paths[name].stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.crt", "ca.key", "tls.crt", "tls.key"]
