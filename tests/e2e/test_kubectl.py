"""End to end: a real etcd and kube-apiserver, pullguard registered by URL, real ``kubectl``.

Runs when ``KUBEBUILDER_ASSETS`` names a folder holding ``kube-apiserver`` and ``etcd`` (the
envtest convention; ``setup-envtest use -p path`` prints one); skipped with one line
otherwise. No controller-manager or scheduler runs: admission is all that is exercised, so
each namespace gets its ``default`` ServiceAccount by hand (the ServiceAccount admission
plugin refuses pods without it).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from webhook.edge.certs import make_bundle

ASSETS = Path(os.environ.get("KUBEBUILDER_ASSETS", "/nonexistent"))
HAVE_ASSETS = (ASSETS / "kube-apiserver").exists() and (ASSETS / "etcd").exists()
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not HAVE_ASSETS,
        reason="e2e needs KUBEBUILDER_ASSETS with kube-apiserver and etcd (not set here)",
    ),
]

TOKEN = "pullguard-e2e-admin-token"
REGISTRY_AUTH = base64.b64encode(b"user:pass").decode()
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
"""


@dataclass
class ControlPlane:
    kubeconfig: Path
    kubectl: str
    workdir: Path

    def run(
        self, *args: str, stdin: str | None = None, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig))
        result = subprocess.run(
            [self.kubectl, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
        return result

    def apply(self, manifest: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "-f", "-", *extra, stdin=manifest)


def _wait(probe: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if probe():  # type: ignore[operator]
                return
        except Exception:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{what} not ready after {timeout}s")


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    work = tmp_path_factory.mktemp("e2e")
    processes: list[subprocess.Popen[bytes]] = []
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    processes.append(
        subprocess.Popen(
            [
                str(ASSETS / "etcd"),
                "--data-dir",
                str(work / "etcd"),
                "--listen-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--advertise-client-urls",
                f"http://127.0.0.1:{etcd_port}",
                "--listen-peer-urls",
                f"http://127.0.0.1:{peer_port}",
            ],
            stdout=(work / "etcd.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
    )
    tls = make_bundle(["localhost"], ["127.0.0.1"]).write(work / "apiserver-tls")
    sa = make_bundle(["service-accounts"]).write(work / "sa")
    (work / "tokens.csv").write_text(f'{TOKEN},admin,admin,"system:masters"\n')
    processes.append(
        subprocess.Popen(
            [
                str(ASSETS / "kube-apiserver"),
                "--etcd-servers",
                f"http://127.0.0.1:{etcd_port}",
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                str(api_port),
                "--tls-cert-file",
                str(tls["tls.crt"]),
                "--tls-private-key-file",
                str(tls["tls.key"]),
                "--token-auth-file",
                str(work / "tokens.csv"),
                "--authorization-mode",
                "RBAC",
                "--service-cluster-ip-range",
                "10.0.0.0/24",
                "--service-account-issuer",
                "https://kubernetes.default.svc",
                "--service-account-key-file",
                str(sa["tls.crt"]),
                "--service-account-signing-key-file",
                str(sa["tls.key"]),
                "--cert-dir",
                str(work / "apiserver-certs"),
            ],
            stdout=(work / "apiserver.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
    )
    kubeconfig = work / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "e2e",
                "clusters": [
                    {
                        "name": "e2e",
                        "cluster": {
                            "server": f"https://127.0.0.1:{api_port}",
                            "certificate-authority-data": base64.b64encode(
                                tls["ca.crt"].read_bytes()
                            ).decode(),
                        },
                    }
                ],
                "users": [{"name": "admin", "user": {"token": TOKEN}}],
                "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
            }
        )
    )
    kubectl = (
        str(ASSETS / "kubectl")
        if (ASSETS / "kubectl").exists()
        else shutil.which("kubectl") or "kubectl"
    )
    plane = ControlPlane(kubeconfig, kubectl, work)
    try:
        _wait(lambda: plane.run("get", "--raw", "/readyz").returncode == 0, 90, "kube-apiserver")
        yield plane
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=30)


def _namespace(name: str, labels: str = "") -> str:
    return f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {name}{", labels: {" + labels + "}" if labels else ""}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: default, namespace: {name}}}
"""


def _pull_secret(name: str, namespace: str, host: str) -> str:
    document = json.dumps({"auths": {host: {"auth": REGISTRY_AUTH}}})
    return f"""
apiVersion: v1
kind: Secret
metadata: {{name: {name}, namespace: {namespace}}}
type: kubernetes.io/dockerconfigjson
data: {{.dockerconfigjson: {base64.b64encode(document.encode()).decode()}}}
"""


def _pod(name: str, namespace: str, image: str, secrets: tuple[str, ...] = ()) -> str:
    pull = (
        f"\n  imagePullSecrets: [{', '.join('{name: ' + s + '}' for s in secrets)}]"
        if secrets
        else ""
    )
    return f"""
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: {namespace}}}
spec:{pull}
  containers: [{{name: app, image: "{image}"}}]
"""


@pytest.fixture(scope="module")
def pullguard(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    plane = control_plane
    plane.apply(_namespace("pullguard") + _namespace("e2e") + _namespace("other"), check=True)
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "pullguard-config", "namespace": "pullguard"},
        "data": {"config.yaml": CONFIG},
    }
    plane.apply(json.dumps(configmap))
    plane.apply(_pull_secret("corp-pull", "pullguard", "corp.example.com"))
    port = free_port()
    tls = make_bundle(["localhost"], ["127.0.0.1"]).write(plane.workdir / "pullguard-tls")
    log = plane.workdir / "pullguard.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "webhook",
            "serve",
            "--namespace",
            "pullguard",
            "--cert",
            str(tls["tls.crt"]),
            "--key",
            str(tls["tls.key"]),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=dict(os.environ, KUBECONFIG=str(plane.kubeconfig)),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    import ssl

    context = ssl.create_default_context(cafile=str(tls["ca.crt"]))
    _wait(
        lambda: (
            httpx.get(f"https://127.0.0.1:{port}/readyz", verify=context, timeout=2).status_code
            == 200
        ),
        60,
        "pullguard",
    )
    ca_bundle = base64.b64encode(tls["ca.crt"].read_bytes()).decode()
    rules = [
        {
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["pods", "pods/ephemeralcontainers", "replicationcontrollers"],
        },
        {
            "apiGroups": ["apps"],
            "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"],
        },
        {
            "apiGroups": ["batch"],
            "apiVersions": ["v1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["jobs", "cronjobs"],
        },
    ]
    selector = {
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "NotIn",
                "values": ["pullguard", "kube-system"],
            }
        ]
    }

    def hook(name: str, path: str, side_effects: str) -> dict[str, object]:
        return {
            "name": name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": side_effects,
            "failurePolicy": "Fail",
            "timeoutSeconds": 10,
            "rules": rules,
            "namespaceSelector": selector,
            "clientConfig": {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca_bundle},
        }

    mutating = hook("mutate.pullguard.io", "/mutate", "NoneOnDryRun")
    mutating["reinvocationPolicy"] = "IfNeeded"
    plane.apply(
        json.dumps(
            {
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": "List",
                "items": [
                    {
                        "apiVersion": "admissionregistration.k8s.io/v1",
                        "kind": "ValidatingWebhookConfiguration",
                        "metadata": {"name": "pullguard"},
                        "webhooks": [hook("validate.pullguard.io", "/validate", "None")],
                    },
                    {
                        "apiVersion": "admissionregistration.k8s.io/v1",
                        "kind": "MutatingWebhookConfiguration",
                        "metadata": {"name": "pullguard"},
                        "webhooks": [mutating],
                    },
                ],
            }
        ),
        check=True,
    )
    time.sleep(2)  # the API server picks up webhook configurations asynchronously
    try:
        yield plane
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_bad_reference_is_denied_with_the_fix(pullguard: ControlPlane) -> None:
    result = pullguard.apply(_pod("bad", "e2e", "docker.io/Library/Nginx:1.25"))
    assert result.returncode == 1
    assert (
        'Error from server (Forbidden): error when creating "STDIN": admission webhook '
        '"validate.pullguard.io" denied the request: pullguard denied Pod e2e/bad: 1 problem '
        "would cause ImagePullBackOff" in result.stderr
    )
    assert "repository name must be lowercase" in result.stderr
    assert "docker.io/library/nginx:1.25" in result.stderr


def test_missing_secret_is_denied(pullguard: ControlPlane) -> None:
    result = pullguard.apply(_pod("nosecret", "e2e", "registry.example.com/a:1", ("absent",)))
    assert result.returncode == 1
    assert 'imagePullSecret "absent" does not exist in namespace "e2e"' in result.stderr
    assert "kubectl create secret docker-registry absent -n e2e" in result.stderr


def test_secret_in_another_namespace_gets_the_copy_command(pullguard: ControlPlane) -> None:
    pullguard.apply(_pull_secret("shared", "other", "registry.example.com"), check=True)
    result = pullguard.apply(_pod("elsewhere", "e2e", "registry.example.com/a:1", ("shared",)))
    assert result.returncode == 1
    assert '(it exists in "other")' in result.stderr
    assert (
        "kubectl get secret shared -n other -o yaml | sed 's/namespace: other/namespace: "
        "e2e/' | kubectl apply -f -" in result.stderr
    )


def test_secret_and_pod_in_one_apply_are_admitted(pullguard: ControlPlane) -> None:
    manifest = (
        _pull_secret("fresh", "e2e", "registry.example.com")
        + "---"
        + _pod("fresh", "e2e", "registry.example.com/a:1", ("fresh",))
    )
    result = pullguard.apply(manifest)
    assert result.returncode == 0, result.stderr


def test_docker_hub_image_is_rewritten_to_the_mirror(pullguard: ControlPlane) -> None:
    result = pullguard.apply(_pod("hub", "e2e", "nginx:1.25"))
    assert result.returncode == 0, result.stderr
    assert (
        'Warning: pullguard: container "app" image rewritten to mirror: '
        "mirror.example.com/dockerhub/library/nginx:1.25" in result.stderr
    )
    image = pullguard.run(
        "get", "pod", "hub", "-n", "e2e", "-o", "jsonpath={.spec.containers[0].image}", check=True
    ).stdout
    assert image == "mirror.example.com/dockerhub/library/nginx:1.25"
    annotation = pullguard.run(
        "get",
        "pod",
        "hub",
        "-n",
        "e2e",
        "-o",
        "jsonpath={.metadata.annotations.pullguard\\.io/original-images}",
        check=True,
    ).stdout
    assert json.loads(annotation) == {"app": "nginx:1.25"}


def test_dry_run_has_no_side_effects(pullguard: ControlPlane) -> None:
    result = pullguard.apply(_pod("dry", "e2e", "corp.example.com/a:1"), "--dry-run=server")
    assert result.returncode == 0, result.stderr
    assert pullguard.run("get", "secret", "corp-pull", "-n", "e2e").returncode == 1


def test_default_secret_is_injected_and_copied(pullguard: ControlPlane) -> None:
    result = pullguard.apply(_pod("corp", "e2e", "corp.example.com/a:1"))
    assert result.returncode == 0, result.stderr
    names = pullguard.run(
        "get",
        "pod",
        "corp",
        "-n",
        "e2e",
        "-o",
        "jsonpath={.spec.imagePullSecrets[*].name}",
        check=True,
    ).stdout
    assert names.split() == ["corp-pull"]
    copied = pullguard.run(
        "get",
        "secret",
        "corp-pull",
        "-n",
        "e2e",
        "-o",
        "jsonpath={.metadata.labels.app\\.kubernetes\\.io/managed-by}",
    )
    assert copied.stdout == "pullguard"


def test_deployment_is_denied_on_apply(pullguard: ControlPlane) -> None:
    manifest = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: e2e}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      imagePullSecrets: [{name: regcred}]
      containers: [{name: web, image: registry.example.com/team/web:2.0}]
"""
    result = pullguard.apply(manifest)
    assert result.returncode == 1
    assert (
        "pullguard denied Deployment e2e/web: 1 problem would cause ImagePullBackOff"
        in result.stderr
    )
    assert '- container "web": imagePullSecret "regcred" does not exist' in result.stderr


def test_kubectl_debug_is_checked(pullguard: ControlPlane) -> None:
    pullguard.apply(_pod("target", "e2e", "nginx:1.25"), check=True)
    result = pullguard.run("debug", "target", "-n", "e2e", "--image=BusyBox:1.36")
    assert result.returncode != 0
    assert "ephemeral container" in result.stderr
    assert "repository name must be lowercase" in result.stderr


def test_config_change_applies_without_restart(pullguard: ControlPlane) -> None:
    relaxed = CONFIG.replace("reference: enforce", "reference: warn")
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "pullguard-config", "namespace": "pullguard"},
        "data": {"config.yaml": relaxed},
    }
    pullguard.apply(json.dumps(configmap), check=True)
    deadline = time.monotonic() + 30
    result = pullguard.apply(_pod("relaxed", "e2e", "Nginx"))
    while result.returncode != 0 and time.monotonic() < deadline:
        time.sleep(1)
        result = pullguard.apply(_pod("relaxed", "e2e", "Nginx"))
    assert result.returncode == 0, result.stderr
    assert "Warning: pullguard" in result.stderr or "Warning: container" in result.stderr
