"""End-to-end fixtures: a real control plane with ``deploy/`` installed and pullguard serving it.

- ``control_plane``: etcd, kube-apiserver and kube-controller-manager
  (see :mod:`tests.e2e.cluster`).
- ``installed``: ``deploy/`` rendered by ``kubectl kustomize`` and applied server-side, as an
  admin would, with one change: the webhook configurations reach pullguard by URL on loopback
  instead of through the Service (there is no kubelet to run its pods). Two pullguard processes
  are then started at once as the ``pullguard`` ServiceAccount, so they hold exactly the RBAC of
  ``deploy/``, manage their own certificate, and inject its CA into both configurations.

When ``KUBEBUILDER_ASSETS`` does not name the binaries these fixtures skip; wherever the
assets are expected (CI, or the variable set), the root conftest turns that skip into a failure.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ROOT, checkout_env, free_port
from tests.e2e.cluster import ControlPlane, Result, assets_folder, missing_assets_reason, wait_for
from tests.integration.registries import Registry, loopback_tls, start_registry
from tests.runtime import Containerd, runtime_missing
from webhook.edge.logs import FLUSH_SECONDS

NAMESPACE = "pullguard"
REGISTRY_AUTH = base64.b64encode(b"user:pass").decode()

#: The configuration the admission tests run with (applied over deploy/'s ConfigMap).
CONFIG = """
checks: {reference: enforce, pullSecrets: enforce, pullPolicy: warn}
exemptNamespaces: [kube-system]
privateRegistries: [registry.example.com]
defaultPullSecrets:
  - secret: corp-pull
    registries: [corp.example.com]
    sourceNamespace: pullguard
mirrors:
  - registry: docker.io
    mirror: mirror.example.com/dockerhub
    probe: false  # a fictional mirror: rewrite without asking whether it answers
registry:
  # The tests' registries run on loopback (the private-address rules have their own tests).
  allowPrivateNetworks: true
"""


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    assets = assets_folder()
    if assets is None:
        pytest.skip(missing_assets_reason())
    plane = ControlPlane(assets, tmp_path_factory.mktemp("control-plane")).start()
    try:
        yield plane
    finally:
        plane.stop()


# -- manifests ----------------------------------------------------------------------------


def namespace(plane: ControlPlane, name: str, labels: dict[str, str] | None = None) -> None:
    """Create (or relabel) a namespace and wait for its ``default`` ServiceAccount."""
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    if labels:
        body["metadata"]["labels"] = labels  # type: ignore[index]
    plane.apply(json.dumps(body), check=True)
    wait_for(
        lambda: plane.kubectl("get", "serviceaccount", "default", "-n", name).ok,
        30,
        f"ServiceAccount {name}/default",
    )


def service_account(name: str, namespace: str, pull_secrets: tuple[str, ...] = ()) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace},
            "imagePullSecrets": [{"name": secret} for secret in pull_secrets],
        }
    )


def pull_secret(name: str, namespace: str, host: str, auth: str = REGISTRY_AUTH) -> str:
    document = json.dumps({"auths": {host: {"auth": auth}}})
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(document.encode()).decode()},
        }
    )


def pod(
    name: str,
    namespace: str,
    image: str,
    secrets: tuple[str, ...] = (),
    **spec: Any,
) -> str:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"containers": [{"name": "app", "image": image}], **spec},
    }
    if secrets:
        body["spec"]["imagePullSecrets"] = [{"name": s} for s in secrets]
    return json.dumps(body)


def configmap(text: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "pullguard-config", "namespace": NAMESPACE},
            "data": {"config.yaml": text},
        }
    )


def set_config(plane: ControlPlane, text: str, *, check: bool = True) -> Result:
    """Replace pullguard's configuration the way an admin would (server-side apply).

    Under a field manager of its own: applied as the manager that installed ``deploy/``, the
    ConfigMap's labels (which this document does not name) would be removed.
    """
    return plane.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=e2e-config-editor",
        "-f",
        "-",
        stdin=configmap(text),
        check=check,
    )


# -- deploy/ ------------------------------------------------------------------------------


#: The admin's overlay the tests install: deploy/ with secret copying switched on, for the
#: default secret the test configuration names.
OVERLAY = """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [{deploy}]
components: [{component}]
patches:
  - target: {{kind: ClusterRole, name: pullguard-secret-copies}}
    patch: |-
      - op: replace
        path: /rules/1/resourceNames
        value: [corp-pull]
"""


def rendered_deploy(plane: ControlPlane) -> list[dict[str, Any]]:
    overlay = plane.workdir / "overlay"
    overlay.mkdir(exist_ok=True)
    (overlay / "kustomization.yaml").write_text(
        OVERLAY.format(
            deploy=os.path.relpath(ROOT / "deploy", overlay),
            component=os.path.relpath(
                ROOT / "deploy" / "components" / "default-pull-secrets", overlay
            ),
        )
    )
    text = plane.kubectl(
        "kustomize", "--load-restrictor=LoadRestrictionsNone", str(overlay), check=True
    ).stdout
    return [d for d in yaml.safe_load_all(text) if d]


def by_url(documents: list[dict[str, Any]], base_url: str) -> list[dict[str, Any]]:
    """``deploy/`` with each webhook's ``clientConfig.service`` replaced by a URL on
    ``base_url`` (same path). Nothing else changes."""
    out = []
    for original in documents:
        document = json.loads(json.dumps(original))
        if document["kind"] in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            for hook in document["webhooks"]:
                service = hook["clientConfig"].pop("service")
                hook["clientConfig"]["url"] = base_url + service["path"]
        out.append(document)
    return out


def server_side_apply(plane: ControlPlane, documents: list[dict[str, Any]]) -> None:
    body = {"apiVersion": "v1", "kind": "List", "items": documents}
    plane.kubectl(
        "apply",
        "--server-side",
        "--field-manager=e2e-admin",
        "-f",
        "-",
        stdin=json.dumps(body),
        check=True,
    )


# -- pullguard processes ------------------------------------------------------------------


@dataclass
class Pullguard:
    """One ``pullguard serve`` process on loopback, with self-managed certificates."""

    process: subprocess.Popen[bytes]
    port: int
    cert_dir: Path
    log: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        """The server's log so far, INFO lines included: those are written in batches at
        most FLUSH_SECONDS old (webhook/edge/logs.py), so this waits that long first."""
        time.sleep(FLUSH_SECONDS + 0.1)
        return self.log.read_text(errors="replace")

    def client(self) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.cert_dir / "ca.crt"))
        return httpx.Client(base_url=self.url, verify=context, timeout=10)

    def served_certificate(self) -> bytes:
        """The DER certificate this process presents in a TLS handshake right now."""
        context = ssl.create_default_context(cafile=str(self.cert_dir / "ca.crt"))
        import socket

        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return der

    def ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"pullguard exited:\n{self.log_text()[-4000:]}")
        if not (self.cert_dir / "ca.crt").exists():
            return False
        with self.client() as client:
            return client.get("/readyz").status_code == 200

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def spawn_pullguard(
    plane: ControlPlane,
    workdir: Path,
    *,
    kubeconfig: Path,
    port: int,
    webhook_url: str,
    name: str,
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Pullguard:
    cert_dir = workdir / f"{name}-certs"
    log = workdir / f"{name}.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "webhook",
            "serve",
            "--namespace",
            NAMESPACE,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webhook-url",
            webhook_url,
            "--cert-dir",
            str(cert_dir),
            "--cert-check-interval",
            "2",
            "--sync-interval",
            "2",
            # The suite's tests judge /mutate (its warnings, its metrics) on an API server
            # that serves MutatingAdmissionPolicy: keep every pod on /mutate unless a test
            # (tests/e2e/test_policy_controller.py) asks for the policy.
            *([] if "--mutation-mode" in extra else ["--mutation-mode", "webhook"]),
            *extra,
        ],
        env=checkout_env(KUBECONFIG=str(kubeconfig), **(env or {})),
        cwd=workdir,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return Pullguard(process, port, cert_dir, log)


@dataclass
class Installation:
    plane: ControlPlane
    replicas: list[Pullguard]
    webhook_url: str
    kubeconfig: Path
    credential_provider_bin_dir: Path
    """The folder the replicas were started to run credential providers from (serve's
    --credential-provider-bin-dir): a test's plugins go there, or under it."""

    @property
    def primary(self) -> Pullguard:
        """The replica the webhook configurations point at."""
        return self.replicas[0]


@dataclass
class E2ERegistries:
    """Real registries on loopback for the registry check: one with htpasswd, one anonymous."""

    private: Registry
    public: Registry
    ca: Path
    tls: dict[str, Path]
    """The CA, certificate and key they serve with (127.0.0.1, ::1 and localhost), for a
    registry a test starts of its own."""


@pytest.fixture(scope="session")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2ERegistries]:
    base = tmp_path_factory.mktemp("e2e-registries")
    tls = loopback_tls(base / "tls")
    private = start_registry(base / "private", auth=("user", "pass"), **tls)
    public = start_registry(base / "public", **tls)
    yield E2ERegistries(private, public, tls["ca"], tls)
    private.stop()
    public.stop()


@pytest.fixture(scope="session")
def runtime(
    registries: E2ERegistries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Containerd]:
    """One private containerd for the session (see :mod:`tests.runtime`), trusting the
    test registries' CA. Skips where it cannot run; the root conftest fails that skip
    wherever the suite must run."""
    why = runtime_missing()
    if why is not None:
        pytest.skip(why)
    daemon = Containerd(tmp_path_factory.mktemp("containerd"))
    for registry in (registries.public, registries.private):
        daemon.trust(registry.host, registries.ca)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def installed(
    control_plane: ControlPlane,
    registries: E2ERegistries,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Installation]:
    plane = control_plane
    workdir = tmp_path_factory.mktemp("pullguard")
    port = free_port()
    webhook_url = f"https://127.0.0.1:{port}"
    server_side_apply(plane, by_url(rendered_deploy(plane), webhook_url))
    set_config(plane, CONFIG)
    plane.apply(pull_secret("corp-pull", NAMESPACE, "corp.example.com"), check=True)
    for name in ("e2e", "other"):
        namespace(plane, name)
    kubeconfig = plane.service_account_kubeconfig(NAMESPACE, "pullguard")
    provider_bin = workdir / "credential-provider-bin"
    provider_bin.mkdir()
    # Two replicas started at the same moment must agree on one certificate.
    replicas = [
        spawn_pullguard(
            plane,
            workdir,
            kubeconfig=kubeconfig,
            port=replica_port,
            webhook_url=webhook_url,
            name=f"replica-{index}",
            extra=("--credential-provider-bin-dir", str(provider_bin)),
            env={"SSL_CERT_FILE": str(registries.ca)},
        )
        for index, replica_port in enumerate((port, free_port()))
    ]
    try:
        for replica in replicas:
            wait_for(replica.ready, 60, f"pullguard on port {replica.port}")
        # The API server loads webhook configurations (and their caBundle) asynchronously.
        wait_for(
            lambda: (
                "denied the request"
                in plane.apply(pod("probe", "e2e", "Probe:Image"), "--dry-run=server").stderr
            ),
            30,
            "the API server calling pullguard",
        )
        yield Installation(plane, replicas, webhook_url, kubeconfig, provider_bin)
    finally:
        for replica in replicas:
            replica.stop()


# -- per-test fixtures on the installed control plane --------------------------------------


@pytest.fixture
def plane(installed: Installation) -> ControlPlane:
    return installed.plane


@pytest.fixture
def ns(plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of the test's own (named after it), deleted afterwards."""
    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower().removeprefix("test_"))[:50]
    name = name.strip("-")
    namespace(plane, name)
    yield name
    plane.kubectl("delete", "namespace", name, "--wait=false")


#: The webhooks that judge and mutate pods, by configuration: (resource, webhook name).
POD_WEBHOOKS = (
    ("validatingwebhookconfiguration", "validate.pullguard.io"),
    ("mutatingwebhookconfiguration", "mutate.pullguard.io"),
)


def set_failure_policy(plane: ControlPlane, policy: str) -> None:
    """Set ``failurePolicy`` of pullguard's pod webhooks (the ones ``deploy/`` installs with
    Ignore). A JSON patch with a ``test`` of the entry's name, so it never edits another."""
    for resource, hook in POD_WEBHOOKS:
        hooks = plane.get_json(resource, "pullguard")["webhooks"]
        index = next(i for i, h in enumerate(hooks) if h["name"] == hook)
        patch = [
            {"op": "test", "path": f"/webhooks/{index}/name", "value": hook},
            {"op": "replace", "path": f"/webhooks/{index}/failurePolicy", "value": policy},
        ]
        plane.kubectl(
            "patch", resource, "pullguard", "--type=json", "-p", json.dumps(patch), check=True
        )


#: The probe webhooks of :func:`webhook_configurations_in_force`, one of each kind.
INFORMER_PROBES = (
    ("ValidatingWebhookConfiguration", "validating"),
    ("MutatingWebhookConfiguration", "mutating"),
)
_probe_generations = iter(range(1, 1_000_000))


def webhook_configurations_in_force(plane: ControlPlane, timeout: float = 30) -> None:
    """Return once the API server admits with every webhook configuration change made before
    the call. It reads them from one informer per kind, whose events arrive in order: a probe
    configuration written after the changes, matching only ConfigMaps labelled with a new
    generation and calling a closed port with ``failurePolicy: Fail``, denies such a dry-run
    ConfigMap once the informer has reached it, and so the changes before it too. (A fixed
    2 s sleep stood here, in about 40 tests.)"""
    generation = str(next(_probe_generations))
    for kind, word in INFORMER_PROBES:
        probe = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": f"pullguard-e2e-informer-probe-{word}"},
            "webhooks": [
                {
                    "name": f"informer-probe-{word}.e2e.pullguard.io",
                    "clientConfig": {"url": "https://127.0.0.1:1/probe"},
                    "rules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["configmaps"],
                        }
                    ],
                    "objectSelector": {
                        "matchLabels": {f"pullguard-e2e-informer-probe-{word}": generation}
                    },
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 1,
                }
            ],
        }
        plane.apply(json.dumps(probe), check=True)
    for _kind, word in INFORMER_PROBES:
        config_map = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": f"informer-probe-{generation}",
                "namespace": "default",
                "labels": {f"pullguard-e2e-informer-probe-{word}": generation},
            },
        }

        def denied(config_map: dict[str, Any] = config_map, word: str = word) -> bool:
            result = plane.kubectl(
                "create", "--dry-run=server", "-f", "-", stdin=json.dumps(config_map)
            )
            return not result.ok and f"informer-probe-{word}.e2e.pullguard.io" in result.stderr

        wait_for(denied, timeout, f"the API server's {word} webhook informer", interval=0.1)


@pytest.fixture
def fail_closed(installed: Installation) -> Iterator[ControlPlane]:
    """The control plane with pullguard's pod webhooks at ``failurePolicy: Fail`` for one
    test: a crash or a timeout of pullguard then denies, so a test that expects an admission
    sees pullguard's own answer, never Ignore's. Put back to Ignore afterwards."""
    plane = installed.plane
    set_failure_policy(plane, "Fail")
    webhook_configurations_in_force(plane)
    try:
        yield plane
    finally:
        set_failure_policy(plane, "Ignore")
