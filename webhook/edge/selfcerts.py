"""Certificates that manage themselves: no cert-manager needed.

At start, pullguard creates (or reuses) a CA and a serving certificate in the Secret
``pullguard-tls`` of its namespace, writes them where gunicorn reads them, and puts the CA
bundle into its two webhook configurations. A loop then:

- re-reads the Secret, so a certificate renewed by another replica is picked up;
- renews the serving certificate when less than a third of its life is left (months ahead),
  signed by the same CA, so the webhook configurations' CA bundle does not change;
- re-asserts the CA bundle (someone may have re-applied the manifests with an empty one).

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

from webhook.edge.certs import CertBundle, make_bundle, not_after, service_dns_names

log = logging.getLogger("pullguard.certs")

SECRET_NAME = "pullguard-tls"  # noqa: S105 - a name, not a password
KEYS = ("ca.crt", "ca.key", "tls.crt", "tls.key")


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

    def _bundle(self, data: Mapping[str, bytes]) -> CertBundle | None:
        if not all(key in data for key in KEYS):
            return None
        return CertBundle(data["ca.crt"], data["ca.key"], data["tls.crt"], data["tls.key"])

    def _needs_renewal(self, bundle: CertBundle) -> bool:
        expiry = not_after(bundle.cert)
        if expiry - self.now() < self.validity / 3:
            return True
        dns, ips = subject_alt_names(bundle.cert)
        return not (set(self.dns_names) <= dns and set(self.ip_addresses) <= ips)

    def _renew(self, old: CertBundle | None) -> CertBundle:
        if old is None:
            return make_bundle(
                self.dns_names, self.ip_addresses, now=self.now(), validity=self.validity
            )
        return make_bundle(
            self.dns_names,
            self.ip_addresses,
            now=self.now(),
            ca_cert_pem=old.ca_cert,
            ca_key_pem=old.ca_key,
            validity=self.validity,
        )

    def sync(self) -> CertBundle:
        """One pass: agree on a certificate, write it out, fix the CA bundles."""
        for _ in range(5):
            current = self.api.read_secret()
            if current is None:
                bundle = self._renew(None)
                if not self.api.create_secret(_as_data(bundle)):
                    continue  # another replica created it first: adopt theirs
                log.info("created CA and serving certificate in Secret %s", SECRET_NAME)
            else:
                data, version = current
                existing = self._bundle(data)
                if existing is not None and not self._needs_renewal(existing):
                    bundle = existing
                else:
                    bundle = self._renew(existing)
                    if not self.api.update_secret(_as_data(bundle), version):
                        continue  # another replica renewed first: re-read
                    log.info(
                        "serving certificate renewed; valid until %s",
                        not_after(bundle.cert).isoformat(),
                    )
            self._write(bundle)
            changed = self.api.ensure_ca_bundle(bundle.ca_cert)
            if changed:
                log.info("CA bundle set on %d webhook entries", changed)
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
    return {
        "ca.crt": bundle.ca_cert,
        "ca.key": bundle.ca_key,
        "tls.crt": bundle.cert,
        "tls.key": bundle.key,
    }


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
