"""gunicorn serves a renewed certificate without a restart (same process, new handshakes)."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

from cryptography import x509

from tests.conftest import start_server, stop_server
from webhook.edge.certs import CertBundle, make_bundle


def served_serial(port: int, ca: Path) -> int:
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def renew_in_place(first: CertBundle, folder: Path) -> int:
    """Write a new serving certificate and key from ``first``'s CA over the pair in
    ``folder`` (as a renewal or a mounted Secret's update does); its serial number."""
    renewed = make_bundle(
        ["localhost"], ["127.0.0.1"], ca_cert_pem=first.ca_cert, ca_key_pem=first.ca_key
    )
    (folder / "tls.key").write_bytes(renewed.key)
    (folder / "tls.crt").write_bytes(renewed.cert)
    return int(x509.load_pem_x509_certificate(renewed.cert).serial_number)


def test_renewed_certificate_is_served_without_restart(tmp_path: Path) -> None:
    first = make_bundle(["localhost"], ["127.0.0.1"])
    paths = first.write(tmp_path / "tls")
    # One worker, so the handshake before the renewal and those after meet the same
    # context, and the reload (not a first load) is what serves the new certificate.
    server = start_server(
        tmp_path,
        "--cert",
        str(paths["tls.crt"]),
        "--key",
        str(paths["tls.key"]),
        "--workers",
        "1",
        ca=paths["ca.crt"],
    )
    port = server.port
    try:
        pid = server.process.pid
        before = served_serial(port, paths["ca.crt"])
        expected = renew_in_place(first, tmp_path / "tls")
        deadline = time.monotonic() + 20
        after = before
        while time.monotonic() < deadline and after != expected:
            time.sleep(0.5)
            after = served_serial(port, paths["ca.crt"])
        assert before != expected
        assert after == expected
        assert server.process.pid == pid and server.process.poll() is None
        # The line is written within the log's 0.2 s batching.
        deadline = time.monotonic() + 5
        while "serving certificate reloaded" not in server.log_text():
            assert time.monotonic() < deadline, server.log_text()[-2000:]
            time.sleep(0.1)
    finally:
        stop_server(server)
