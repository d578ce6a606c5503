"""Certificates: a CA and a serving certificate for the webhook, made with ``cryptography``.

Used by ``pullguard certs`` (files for a cluster), by ``pullguard serve --dev`` (a
self-signed pair under ``certs/``), and by the self-managed certificate controller.

Must not: talk to the cluster (the controller does that) or log private keys.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = datetime.timedelta(days=3650)
SERVING_VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True, slots=True)
class CertBundle:
    """PEM bytes of a CA and a serving certificate signed by it."""

    ca_cert: bytes
    ca_key: bytes
    cert: bytes
    key: bytes
    previous_ca: bytes = b""
    """The CA this one replaced, still trusted (in the CA bundle) until it expires."""

    def write(self, directory: Path) -> dict[str, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        paths = {
            "ca.crt": directory / "ca.crt",
            "ca.key": directory / "ca.key",
            "tls.crt": directory / "tls.crt",
            "tls.key": directory / "tls.key",
        }
        for name, content in (
            ("ca.crt", self.ca_cert),
            ("ca.key", self.ca_key),
            ("tls.crt", self.cert),
            ("tls.key", self.key),
        ):
            _write_whole(paths[name], content, 0o600 if name.endswith(".key") else 0o644)
        return paths


def _write_whole(path: Path, content: bytes, mode: int) -> None:
    """``content`` at ``path`` all at once: written to a file beside it, created with
    ``mode`` less the umask (a key is never readable by others, not for a moment; a file
    left there by a crash is removed, not reused with its mode), then renamed over it, so
    a reader sees the old file or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(content)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def service_dns_names(service: str, namespace: str) -> list[str]:
    """The names the API server may use to reach a webhook Service."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_bundle(
    dns_names: list[str],
    ip_addresses: list[str] | None = None,
    *,
    now: datetime.datetime | None = None,
    ca_cert_pem: bytes | None = None,
    ca_key_pem: bytes | None = None,
    validity: datetime.timedelta = SERVING_VALIDITY,
) -> CertBundle:
    """A serving certificate for ``dns_names``/``ip_addresses``, signed by the given CA or a
    new one. ``now`` is a parameter so renewal can be tested without waiting."""
    now = now or datetime.datetime.now(datetime.UTC)
    if ca_cert_pem is not None and ca_key_pem is not None:
        ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
        ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pullguard-ca")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses or []]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + validity)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return CertBundle(
        ca_cert=ca_cert.public_bytes(serialization.Encoding.PEM),
        ca_key=_key_pem(ca_key),
        cert=cert.public_bytes(serialization.Encoding.PEM),
        key=_key_pem(key),
    )


def not_after(cert_pem: bytes) -> datetime.datetime:
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc


def ensure_dev_certs(directory: Path) -> tuple[Path, Path, Path]:
    """Self-signed certificates for ``--dev`` under ``directory``, made once and reused."""
    cert, key, ca = directory / "tls.crt", directory / "tls.key", directory / "ca.crt"
    if not (cert.exists() and key.exists() and ca.exists()):
        make_bundle(["localhost"], ["127.0.0.1", "::1"]).write(directory)
    return cert, key, ca
