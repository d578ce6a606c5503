"""Self-managed certificates: created once, shared by replicas, renewed well before expiry."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Mapping
from pathlib import Path

from cryptography import x509

from webhook.edge.certs import make_bundle, not_after, service_dns_names
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


def _served_pair_is_valid(directory: Path, ca_pem: bytes) -> None:
    """The files gunicorn serves load as a pair and verify against ``ca_pem``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
    cert = x509.load_pem_x509_certificate((directory / "tls.crt").read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem))


def test_garbage_serving_certificate_is_reissued_by_the_same_ca(tmp_path: Path) -> None:
    api = FakeCertApi()
    original = controller(api, tmp_path / "a").sync()
    assert api.data is not None
    api.data["tls.crt"] = b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"
    repaired = controller(api, tmp_path / "b").sync()  # a replica starting now: no crash
    assert repaired.ca_cert == original.ca_cert
    assert repaired.cert != original.cert
    _served_pair_is_valid(tmp_path / "b", original.ca_cert)


def test_a_certificate_with_the_wrong_key_is_reissued(tmp_path: Path) -> None:
    api = FakeCertApi()
    original = controller(api, tmp_path / "a").sync()
    other = make_bundle(["x"])
    assert api.data is not None
    api.data["tls.key"] = other.key  # handshakes would fail forever with this pair
    repaired = controller(api, tmp_path / "b").sync()
    assert repaired.ca_cert == original.ca_cert
    _served_pair_is_valid(tmp_path / "b", original.ca_cert)


def test_a_serving_certificate_from_another_ca_is_reissued(tmp_path: Path) -> None:
    api = FakeCertApi()
    original = controller(api, tmp_path / "a").sync()
    foreign = make_bundle(service_dns_names("pullguard", "pullguard"))
    assert api.data is not None
    api.data["tls.crt"], api.data["tls.key"] = foreign.cert, foreign.key
    controller(api, tmp_path / "b").sync()
    _served_pair_is_valid(tmp_path / "b", original.ca_cert)


def test_garbage_ca_is_replaced_and_published(tmp_path: Path) -> None:
    api = FakeCertApi()
    controller(api, tmp_path / "a").sync()
    assert api.data is not None
    api.data["ca.key"] = b"not a key"
    repaired = controller(api, tmp_path / "b").sync()
    assert api.bundles["validate"].startswith(repaired.ca_cert)
    _served_pair_is_valid(tmp_path / "b", repaired.ca_cert)


def test_an_ageing_ca_is_rotated_with_both_cas_in_the_bundle(tmp_path: Path) -> None:
    api = FakeCertApi()
    original = controller(api, tmp_path / "a").sync()
    # Seven years on: the CA (ten years) has less than a third of its life left.
    later = NOW + datetime.timedelta(days=7 * 365)
    rotated = controller(api, tmp_path / "b", later).sync()
    assert rotated.ca_cert != original.ca_cert
    assert not_after(rotated.cert) <= not_after(rotated.ca_cert)
    # API servers that still hold the old bundle keep trusting until they get the new one.
    assert api.bundles["validate"] == rotated.ca_cert + original.ca_cert
    _served_pair_is_valid(tmp_path / "b", rotated.ca_cert)
    # Once the old CA has expired it leaves the bundle.
    much_later = NOW + datetime.timedelta(days=10 * 365 + 30)
    controller(api, tmp_path / "c", much_later).sync()
    assert api.bundles["validate"].count(b"BEGIN CERTIFICATE") == 1


def test_replicas_repairing_at_once_converge(tmp_path: Path) -> None:
    api = FakeCertApi()
    controller(api, tmp_path / "x").sync()
    assert api.data is not None
    api.data["tls.crt"] = b"garbage"
    first = controller(api, tmp_path / "a")
    second = controller(api, tmp_path / "b")
    stale = api.read_secret()
    first_result = first.sync()
    calls = iter([stale])
    original_read = api.read_secret
    api.read_secret = lambda: next(calls, None) or original_read()  # type: ignore[method-assign]
    assert second.sync() == first_result
    assert (tmp_path / "a" / "tls.crt").read_bytes() == (tmp_path / "b" / "tls.crt").read_bytes()
