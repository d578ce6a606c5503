"""Self-managed certificates: created once, shared by replicas, renewed well before expiry."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Mapping
from pathlib import Path

from cryptography import x509

from webhook.edge.certs import not_after
from webhook.edge.selfcerts import CertController

NOW = datetime.datetime(2026, 11, 21, tzinfo=datetime.UTC)


class FakeCertApi:
    def __init__(self) -> None:
        self.data: dict[str, bytes] | None = None
        self.version = 0
        self.bundles: dict[str, bytes] = {}
        self.lose_next_update = False

    def read_secret(self) -> tuple[dict[str, bytes], str] | None:
        return (dict(self.data), str(self.version)) if self.data is not None else None

    def create_secret(self, data: Mapping[str, bytes]) -> bool:
        if self.data is not None:
            return False
        self.data, self.version = dict(data), self.version + 1
        return True

    def update_secret(self, data: Mapping[str, bytes], resource_version: str) -> bool:
        if resource_version != str(self.version):
            return False
        self.data, self.version = dict(data), self.version + 1
        return True

    def ensure_ca_bundle(self, ca_pem: bytes) -> int:
        changed = sum(1 for name in ("validate", "mutate") if self.bundles.get(name) != ca_pem)
        self.bundles = {"validate": ca_pem, "mutate": ca_pem}
        return changed


def controller(api: FakeCertApi, directory: Path, now: datetime.datetime = NOW) -> CertController:
    return CertController(api, "pullguard", "pullguard", directory, now=lambda: now)


def test_replicas_agree_on_one_certificate(tmp_path: Path) -> None:
    api = FakeCertApi()
    first = controller(api, tmp_path / "a").sync()
    second = controller(api, tmp_path / "b").sync()
    assert first == second
    assert (tmp_path / "a" / "tls.crt").read_bytes() == (tmp_path / "b" / "tls.crt").read_bytes()
    assert api.bundles == {"validate": first.ca_cert, "mutate": first.ca_cert}
    cert = x509.load_pem_x509_certificate(first.cert)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [
        "pullguard",
        "pullguard.pullguard",
        "pullguard.pullguard.svc",
        "pullguard.pullguard.svc.cluster.local",
    ]
    # The files form a pair a TLS server can load.
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "a" / "tls.crt", tmp_path / "a" / "tls.key")


def test_renewal_keeps_the_ca_and_happens_well_before_expiry(tmp_path: Path) -> None:
    api = FakeCertApi()
    original = controller(api, tmp_path).sync()
    expiry = not_after(original.cert)
    # Two thirds of the way through its life nothing changes ...
    assert controller(api, tmp_path, NOW + datetime.timedelta(days=240)).sync() == original
    # ... past that it is renewed, signed by the same CA, so no CA bundle changes.
    later = NOW + datetime.timedelta(days=250)
    renewed = controller(api, tmp_path, later).sync()
    assert renewed.cert != original.cert
    assert renewed.ca_cert == original.ca_cert
    assert not_after(renewed.cert) > expiry
    assert api.bundles["validate"] == original.ca_cert
    assert (tmp_path / "tls.crt").read_bytes() == renewed.cert


def test_a_replica_that_loses_the_renewal_race_adopts_the_winner(tmp_path: Path) -> None:
    api = FakeCertApi()
    controller(api, tmp_path / "x").sync()
    later = NOW + datetime.timedelta(days=300)
    winner = controller(api, tmp_path / "w", later)
    loser = controller(api, tmp_path / "l", later)
    stale = api.read_secret()
    assert stale is not None
    renewed = winner.sync()
    # The loser read before the winner wrote; its update conflicts and it re-reads.
    original_read = api.read_secret
    calls = iter([stale, None])

    def read_once_stale() -> tuple[dict[str, bytes], str] | None:
        value = next(calls, None)
        return value if value is not None else original_read()

    api.read_secret = read_once_stale  # type: ignore[method-assign]
    assert loser.sync() == renewed
