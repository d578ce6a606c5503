"""``pullguard certs``: a CA and a serving certificate, with extra names for running outside a
cluster (registered by URL)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import checkout_env
from webhook.edge.selfcerts import subject_alt_names


def certs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", "certs", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=checkout_env(),
        check=False,
    )


def test_extra_hosts_and_addresses_are_in_the_certificate(tmp_path: Path) -> None:
    result = certs(
        "--service",
        "pullguard",
        "--namespace",
        "pullguard",
        "--out",
        str(tmp_path),
        "--host",
        "dev.example.test",
        "--ip",
        "127.0.0.1",
        "--ip",
        "::1",
    )
    assert result.returncode == 0, result.stderr
    dns, ips = subject_alt_names((tmp_path / "tls.crt").read_bytes())
    assert {"pullguard.pullguard.svc", "dev.example.test"} <= dns
    assert ips == {"127.0.0.1", "::1"}


def test_a_bad_address_is_a_usage_error(tmp_path: Path) -> None:
    result = certs("--service", "a", "--namespace", "b", "--out", str(tmp_path), "--ip", "nope")
    assert result.returncode == 2
    assert "--ip 'nope' is not an IP address" in result.stderr
