"""Certificates that manage themselves: no cert-manager needed.

At start, pullguard creates (or reuses) a CA and a serving certificate in the Secret
``pullguard-tls`` of its namespace, writes them where gunicorn reads them, and puts the CA
bundle into its two webhook configurations. A loop then:

- re-reads the Secret, so a certificate renewed by another replica is picked up;
- renews the serving certificate when less than a third of its life is left (months ahead),
  signed by the same CA, so the webhook configurations' CA bundle does not change;
- re-asserts the CA bundle (someone may have re-applied the manifests with an empty one);
- repairs what is broken, whoever broke it: every pass validates the stored bundle (each
  part parses, each key matches its certificate, the serving certificate is issued by the CA
  and names what it must, both are inside their lifetimes) and regenerates only what fails.
  A bad serving certificate is re-issued by the same CA. A bad CA, or one with less than a
  third of its life left, is replaced; the old one, while still valid, stays in the CA
  bundle beside the new one (``ca-previous.crt``), and the bundle is published before the new
  certificate is served, so no API server ever holds a bundle that cannot verify it. A garbage
  ``tls.crt`` used to crash-loop every replica, a mismatched key to fail every handshake, and
  an expired CA to go on signing renewals.

Replicas agree on one certificate: the Secret is created with "create" (a second replica
gets 409 and adopts the winner's) and renewed with a resourceVersion precondition (a loser
re-reads). gunicorn picks up the new files without a restart (see ``server.ReloadingTLS``).

Reached by URL instead (``serve --webhook-url https://HOST:PORT``: pullguard outside the cluster,
or behind a load balancer), the serving certificate also names HOST, and the CA bundle goes into
the entries whose ``clientConfig.url`` is on that base. A stored certificate that lacks a name
pullguard needs (a renamed Service, a new URL) is re-issued by the same CA.

Must not: log key material; touch any webhook entry that does not point at pullguard's own
Service or URL.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from webhook.edge.certs import (
    CA_VALIDITY,
    CertBundle,
    make_bundle,
    not_after,
    service_dns_names,
)

log = logging.getLogger("pullguard.certs")

SECRET_NAME = "pullguard-tls"  # noqa: S105 - a name, not a password
PREVIOUS_CA = "ca-previous.crt"


class CertApi(Protocol):
    """The few API calls the controller makes (a fake implements it in tests)."""

    def read_secret(self) -> tuple[dict[str, bytes], str] | None:
        """(data, resourceVersion) of the TLS Secret, or None."""
        ...

    def create_secret(self, data: Mapping[str, bytes]) -> bool:
        """False when it already exists (another replica won)."""
        ...

    def update_secret(self, data: Mapping[str, bytes], resource_version: str) -> bool:
        """False on a resourceVersion conflict."""
        ...

    def ensure_ca_bundle(self, ca_pem: bytes) -> int:
        """Set the CA bundle on every webhook entry pointing at our Service; return how many
        entries changed."""
        ...


@dataclass
class CertController:
    api: CertApi
    service: str
    namespace: str
    directory: Path
    now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC)
    validity: datetime.timedelta = datetime.timedelta(days=365)
    extra_hosts: tuple[str, ...] = ()
    """Names or IP addresses the certificate must carry besides the Service's DNS names."""

    @property
    def dns_names(self) -> list[str]:
        names = service_dns_names(self.service, self.namespace)
        return names + [h for h in self.extra_hosts if not _is_ip(h) and h not in names]

    @property
    def ip_addresses(self) -> list[str]:
        return [h for h in self.extra_hosts if _is_ip(h)]

    @property
    def certfile(self) -> Path:
        return self.directory / "tls.crt"

    @property
    def keyfile(self) -> Path:
        return self.directory / "tls.key"

    def _valid(self, cert: x509.Certificate | None, lifetime: datetime.timedelta) -> bool:
        """Inside its lifetime, with more than a third of ``lifetime`` left."""
        if cert is None:
            return False
        now = self.now()
        return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - now > lifetime / 3

    def _serving_problem(self, data: Mapping[str, bytes], ca: x509.Certificate) -> str | None:
        """Why the stored serving certificate cannot be served, or ``None``."""
        cert = _load_pair(data.get("tls.crt"), data.get("tls.key"))
        if cert is None:
            return "the serving certificate or its key is unreadable, or they do not match"
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            return "the serving certificate is not issued by the CA"
        if not self._valid(cert, self.validity):
            return "the serving certificate expires within a third of its lifetime"
        dns, ips = subject_alt_names(data["tls.crt"])
        if not (set(self.dns_names) <= dns and set(self.ip_addresses) <= ips):
            return "the serving certificate lacks a name it must carry"
        return None

    def _desired(self, data: Mapping[str, bytes]) -> tuple[CertBundle, str | None]:
        """The bundle to serve, and why it differs from the stored one (``None``: it does not)."""
        now = self.now()
        ca = _load_pair(data.get("ca.crt"), data.get("ca.key"))
        if not self._valid(ca, CA_VALIDITY):
            # Keep trusting the old CA while it is still valid: API servers may hold it.
            old = ca or _load_cert(data.get("ca.crt"))
            keep = bool(old and old.not_valid_before_utc <= now < old.not_valid_after_utc)
            fresh = make_bundle(self.dns_names, self.ip_addresses, now=now, validity=self.validity)
            reason = "a new CA" + (" (the stored one is invalid or ageing)" if data else "")
            previous = data["ca.crt"] if keep else b""
            return CertBundle(fresh.ca_cert, fresh.ca_key, fresh.cert, fresh.key, previous), reason
        assert ca is not None
        previous = data.get(PREVIOUS_CA, b"")
        old = _load_cert(previous)
        if previous and not (old and now < old.not_valid_after_utc):
            previous = b""  # the replaced CA has expired: out of the bundle
        problem = self._serving_problem(data, ca)
        if problem is not None:
            fresh = make_bundle(
                self.dns_names,
                self.ip_addresses,
                now=now,
                ca_cert_pem=data["ca.crt"],
                ca_key_pem=data["ca.key"],
                validity=self.validity,
            )
            bundle = CertBundle(data["ca.crt"], data["ca.key"], fresh.cert, fresh.key, previous)
            return bundle, f"serving certificate re-issued: {problem}"
        bundle = CertBundle(
            data["ca.crt"], data["ca.key"], data["tls.crt"], data["tls.key"], previous
        )
        return bundle, None if previous == data.get(PREVIOUS_CA, b"") else "expired CA dropped"

    def sync(self) -> CertBundle:
        """One pass: agree on a valid certificate, publish its CA bundle, write it out."""
        for _ in range(5):
            current = self.api.read_secret()
            data, version = current if current is not None else ({}, None)
            bundle, reason = self._desired(data)
            if reason is not None:
                stored = (
                    self.api.create_secret(_as_data(bundle))
                    if version is None
                    else self.api.update_secret(_as_data(bundle), version)
                )
                if not stored:
                    continue  # another replica wrote first: re-read and judge theirs
                log.info(
                    "Secret %s: %s; serving certificate valid until %s",
                    SECRET_NAME,
                    reason,
                    not_after(bundle.cert).isoformat(),
                )
            # The bundle first: an API server must trust the CA before it meets its certificate.
            changed = self.api.ensure_ca_bundle(bundle.ca_cert + bundle.previous_ca)
            if changed:
                log.info("CA bundle set on %d webhook entries", changed)
            self._write(bundle)
            return bundle
        raise RuntimeError("could not agree on a certificate after 5 attempts")

    def _write(self, bundle: CertBundle) -> None:
        """Write atomically (rename), key before certificate, only when they changed."""
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.certfile.exists() and self.certfile.read_bytes() == bundle.cert:
            return
        for path, content in (
            (self.keyfile, bundle.key),
            (self.certfile, bundle.cert),
            (self.directory / "ca.crt", bundle.ca_cert),
        ):
            temporary = path.with_suffix(path.suffix + ".tmp")
            temporary.write_bytes(content)
            if path.name.endswith(".key"):
                temporary.chmod(0o600)
            temporary.replace(path)

    def run(self, interval: float = 3600.0, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        while not stop.wait(interval):
            try:
                self.sync()
            except Exception as error:
                log.error("certificate sync failed (will retry): %s", type(error).__name__)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def subject_alt_names(cert_pem: bytes) -> tuple[set[str], set[str]]:
    """The DNS names and IP addresses (as text) a certificate is valid for."""
    try:
        extension = x509.load_pem_x509_certificate(cert_pem).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except x509.ExtensionNotFound:
        return set(), set()
    names = extension.value
    return (
        set(names.get_values_for_type(x509.DNSName)),
        {str(ip) for ip in names.get_values_for_type(x509.IPAddress)},
    )


def _as_data(bundle: CertBundle) -> dict[str, bytes]:
    data = {
        "ca.crt": bundle.ca_cert,
        "ca.key": bundle.ca_key,
        "tls.crt": bundle.cert,
        "tls.key": bundle.key,
    }
    if bundle.previous_ca:
        data[PREVIOUS_CA] = bundle.previous_ca
    return data


def _load_pair(cert_pem: bytes | None, key_pem: bytes | None) -> x509.Certificate | None:
    """The certificate, if it and its key parse and belong together."""
    if not cert_pem or not key_pem:
        return None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if cert.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
        return None
    return cert


def _load_cert(pem: bytes | None) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificate(pem) if pem else None
    except ValueError:
        return None


class KubeCertApi:
    """:class:`CertApi` through the kubernetes client."""

    def __init__(
        self, namespace: str, service: str, *, url: str | None = None, api_client: Any = None
    ) -> None:
        from kubernetes import client

        # Typed as Any: the client's generated models are looser than the wire format we
        # send (plain dicts are accepted as bodies).
        self.core: Any = client.CoreV1Api(api_client)
        self.admission: Any = client.AdmissionregistrationV1Api(api_client)
        self.namespace = namespace
        self.service = service
        #: Entries whose clientConfig.url starts with this base are pullguard's too.
        self.url_base = url.rstrip("/") + "/" if url else None

    def _is_ours(self, client_config: Any) -> bool:
        service = client_config.service
        if service is not None:
            return bool((service.name, service.namespace) == (self.service, self.namespace))
        url = client_config.url or ""
        return self.url_base is not None and url.startswith(self.url_base)

    def read_secret(self) -> tuple[dict[str, bytes], str] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            secret = self.core.read_namespaced_secret(SECRET_NAME, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        return data, str(secret.metadata.resource_version)

    def _body(self, data: Mapping[str, bytes]) -> dict[str, object]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": SECRET_NAME,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/name": "pullguard"},
            },
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
        }

    def create_secret(self, data: Mapping[str, bytes]) -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            self.core.create_namespaced_secret(self.namespace, self._body(data))
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    def update_secret(self, data: Mapping[str, bytes], resource_version: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        body = self._body(data)
        body["metadata"]["resourceVersion"] = resource_version  # type: ignore[index]
        try:
            self.core.replace_namespaced_secret(SECRET_NAME, self.namespace, body)
        except ApiException as error:
            if error.status == 409:
                return False
            raise
        return True

    def ensure_ca_bundle(self, ca_pem: bytes) -> int:
        bundle = base64.b64encode(ca_pem).decode()
        changed = 0
        selector = "app.kubernetes.io/name=pullguard"
        for lister, patcher in (
            (
                self.admission.list_validating_webhook_configuration,
                self.admission.patch_validating_webhook_configuration,
            ),
            (
                self.admission.list_mutating_webhook_configuration,
                self.admission.patch_mutating_webhook_configuration,
            ),
        ):
            for configuration in lister(label_selector=selector).items:
                patch = []
                for index, hook in enumerate(configuration.webhooks or []):
                    if not self._is_ours(hook.client_config):
                        continue
                    if hook.client_config.ca_bundle != bundle:
                        patch.append(
                            {
                                "op": "replace" if hook.client_config.ca_bundle else "add",
                                "path": f"/webhooks/{index}/clientConfig/caBundle",
                                "value": bundle,
                            }
                        )
                if patch:
                    patcher(configuration.metadata.name, patch)
                    changed += len(patch)
        return changed
