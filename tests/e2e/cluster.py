"""A real control plane on loopback: etcd, kube-apiserver and kube-controller-manager.

Found through ``KUBEBUILDER_ASSETS`` (envtest's layout: a folder holding ``etcd``,
``kube-apiserver`` and ``kube-controller-manager``). ``.ci/run`` sets it for CI;
elsewhere ``setup-envtest use 1.36 -p path`` prints one.

What runs, and why:

- kube-apiserver with RBAC and its default admission chain (ServiceAccount among the plugins, so
  a Pod's ``imagePullSecrets`` are filled in from its ServiceAccount exactly as in a cluster),
  and a token file with one admin (``system:masters``) for the tests themselves. Tenants and
  pullguard get ServiceAccount tokens from the TokenRequest API, so RBAC applies to them.
- kube-controller-manager, so namespaces get their ``default`` ServiceAccount and Deployments
  become ReplicaSets and Pods, as in a cluster. Without it the ServiceAccount admission plugin
  refuses every pod ("serviceaccount "default" not found").
- No scheduler and no kubelet: pods are admitted and stored, never run.

:meth:`ControlPlane.restart_apiserver` stops and starts the API server on the same port
against the same etcd, to test what clients do across an outage.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import free_port
from webhook.edge.certs import make_bundle

ASSETS_VARIABLE = "KUBEBUILDER_ASSETS"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager")
ADMIN_TOKEN = "pullguard-e2e-admin-token"  # a throwaway test credential


def assets_folder() -> Path | None:
    """The envtest folder named by ``KUBEBUILDER_ASSETS``, if it holds every binary."""
    value = os.environ.get(ASSETS_VARIABLE)
    if not value:
        return None
    folder = Path(value)
    return folder if all((folder / name).exists() for name in BINARIES) else None


def missing_assets_reason() -> str:
    value = os.environ.get(ASSETS_VARIABLE)
    if not value:
        return (
            f"{ASSETS_VARIABLE} is not set (envtest layout: etcd, kube-apiserver, "
            "kube-controller-manager; `setup-envtest use 1.36 -p path` prints one)"
        )
    missing = [name for name in BINARIES if not (Path(value) / name).exists()]
    return f"{ASSETS_VARIABLE}={value} lacks {', '.join(missing)}"


def wait_for(probe: Callable[[], object], timeout: float, what: str, interval: float = 0.3) -> Any:
    """Call ``probe`` until it returns something truthy; its exceptions count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
            last = result
        except Exception as error:
            last = error
        time.sleep(interval)
    raise AssertionError(f"{what} not true after {timeout}s (last: {last!r})")


@dataclass
class ControlPlane:
    """A running control plane, and ``kubectl`` pointed at it as the admin."""

    assets: Path
    workdir: Path
    kubeconfig: Path = field(init=False)
    server: str = field(init=False)
    ca: Path = field(init=False)
    sa_key: Path = field(init=False)
    admission_config: Path | None = None
    """An ``AdmissionConfiguration`` for kube-apiserver's ``--admission-control-config-file``
    (its webhook plugins' ``kubeConfigFile`` gives the API server a client certificate for
    the webhooks); ``None``: the defaults, as every other test runs."""
    _processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _commands: dict[str, list[str]] = field(default_factory=dict)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        work = self.workdir
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        # etcd fsyncs every write; on tmpfs that costs nothing, and the data is throwaway.
        shm = Path("/dev/shm")
        etcd_dir = Path(
            tempfile.mkdtemp(prefix="pullguard-etcd-", dir=shm if shm.is_dir() else work)
        )
        self._etcd_dir = etcd_dir
        self._commands["etcd"] = [
            str(self.assets / "etcd"),
            "--data-dir",
            str(etcd_dir),
            "--listen-client-urls",
            f"http://127.0.0.1:{etcd_port}",
            "--advertise-client-urls",
            f"http://127.0.0.1:{etcd_port}",
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer_port}",
            "--initial-cluster",
            f"default=http://127.0.0.1:{peer_port}",
        ]
        tls = make_bundle(["localhost"], ["127.0.0.1"]).write(work / "apiserver-tls")
        sa = make_bundle(["service-accounts"]).write(work / "sa")
        self.ca, self.sa_key = tls["ca.crt"], sa["tls.key"]
        (work / "tokens.csv").write_text(f'{ADMIN_TOKEN},admin,admin,"system:masters"\n')
        self.server = f"https://127.0.0.1:{api_port}"
        self._commands["kube-apiserver"] = [
            str(self.assets / "kube-apiserver"),
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
            "--client-ca-file",
            str(tls["ca.crt"]),
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
        ]
        if self.admission_config is not None:
            self._commands["kube-apiserver"] += [
                "--admission-control-config-file",
                str(self.admission_config),
            ]
        self.kubeconfig = self.write_kubeconfig(work / "kubeconfig", token=ADMIN_TOKEN)
        self._commands["kube-controller-manager"] = [
            str(self.assets / "kube-controller-manager"),
            "--kubeconfig",
            str(self.kubeconfig),
            "--controllers",
            "*,-nodeipam,-nodelifecycle,-attachdetach,-persistentvolume-binder",
            "--service-account-private-key-file",
            str(sa["tls.key"]),
            "--root-ca-file",
            str(tls["ca.crt"]),
            "--leader-elect=false",
            # Each controller acts as its own ServiceAccount, as kubeadm and the managed
            # clouds run it: the API server names system:serviceaccount:kube-system:
            # replicaset-controller (not the admin) as the user who makes a ReplicaSet's Pods.
            "--use-service-account-credentials",
            "--secure-port=0",
            "--concurrent-deployment-syncs=2",
            "--concurrent-replicaset-syncs=2",
        ]
        try:
            self._spawn("etcd")
            self._spawn("kube-apiserver")
            self.wait_ready()
            self._spawn("kube-controller-manager")
            # The controller-manager is up once it has made the default ServiceAccount.
            wait_for(
                lambda: self.kubectl("get", "serviceaccount", "default", "-n", "default").ok,
                60,
                "kube-controller-manager (default ServiceAccount)",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str) -> None:
        log = (self.workdir / f"{name}.log").open("ab")
        self._processes[name] = subprocess.Popen(
            self._commands[name], stdout=log, stderr=subprocess.STDOUT
        )

    def _terminate(self, name: str) -> None:
        process = self._processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def stop(self) -> None:
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            self._terminate(name)
        shutil.rmtree(getattr(self, "_etcd_dir", ""), ignore_errors=True)

    def wait_ready(self, timeout: float = 90) -> None:
        def ready() -> bool:
            process = self._processes.get("kube-apiserver")
            if process is not None and process.poll() is not None:
                log = (self.workdir / "kube-apiserver.log").read_text(errors="replace")
                raise RuntimeError(f"kube-apiserver exited:\n{log[-3000:]}")
            return self.kubectl("get", "--raw", "/readyz").ok

        wait_for(ready, timeout, "kube-apiserver /readyz")

    def stop_apiserver(self) -> None:
        self._terminate("kube-apiserver")

    def start_apiserver(self) -> None:
        self._spawn("kube-apiserver")
        self.wait_ready()

    def restart_apiserver(self) -> None:
        self.stop_apiserver()
        self.start_apiserver()

    # -- clients ---------------------------------------------------------------------------

    def write_kubeconfig(self, path: Path, *, token: str, user: str = "user") -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "current-context": "e2e",
                    "clusters": [
                        {
                            "name": "e2e",
                            "cluster": {
                                "server": self.server,
                                "certificate-authority-data": base64.b64encode(
                                    self.ca.read_bytes()
                                ).decode(),
                            },
                        }
                    ],
                    "users": [{"name": user, "user": {"token": token}}],
                    "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": user}}],
                }
            )
        )
        return path

    def service_account_kubeconfig(self, namespace: str, name: str) -> Path:
        """A kubeconfig acting as ServiceAccount ``namespace/name`` (RBAC applies to it)."""
        token = self.kubectl(
            "create", "token", name, "-n", namespace, "--duration=2h", check=True
        ).stdout.strip()
        return self.write_kubeconfig(
            self.workdir / f"kubeconfig-{namespace}-{name}", token=token, user=name
        )

    def kubectl(
        self,
        *args: str,
        stdin: str | None = None,
        check: bool = False,
        kubeconfig: Path | None = None,
        timeout: float = 60,
    ) -> Result:
        env = dict(os.environ, KUBECONFIG=str(kubeconfig or self.kubeconfig))
        # envtest's folder carries a kubectl of the server's version; else the one on PATH.
        bundled = self.assets / "kubectl"
        binary = str(bundled) if bundled.exists() else shutil.which("kubectl") or "kubectl"
        done = subprocess.run(
            [binary, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        result = Result(args, done.returncode, done.stdout, done.stderr)
        if check and not result.ok:
            raise AssertionError(f"kubectl {' '.join(args)} failed:\n{done.stderr}")
        return result

    def apply(self, manifest: str, *extra: str, check: bool = False) -> Result:
        """``kubectl apply -f -`` of ``manifest`` (YAML or JSON)."""
        return self.kubectl("apply", "-f", "-", *extra, stdin=manifest, check=check)

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json", check=True).stdout)

    def post_many(
        self, requests: list[tuple[str, dict[str, Any]]], clients: int
    ) -> list[tuple[int, float]]:
        """POST each (path, object) as the admin from ``clients`` threads, each on its own
        keep-alive connection; (HTTP status, seconds) per request, in completion order."""
        context = ssl.create_default_context(cafile=str(self.ca))
        lock = threading.Lock()
        todo = iter(requests)
        results: list[tuple[int, float]] = []

        def client() -> None:
            with httpx.Client(
                base_url=self.server,
                verify=context,
                timeout=30,
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            ) as http:
                while True:
                    with lock:
                        request = next(todo, None)
                    if request is None:
                        return
                    started = time.perf_counter()
                    reply = http.post(request[0], json=request[1])
                    took = time.perf_counter() - started
                    with lock:
                        results.append((reply.status_code, took))

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    def create_pods(
        self, namespace: str, names: list[str], image: str, clients: int
    ) -> list[tuple[int, float]]:
        """A pod per name (one container, ``image``), created as :meth:`post_many` does."""
        pods = [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "app", "image": image}]},
            }
            for name in names
        ]
        return self.post_many(
            [(f"/api/v1/namespaces/{namespace}/pods", pod) for pod in pods], clients
        )

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """A ``kubernetes.client.ApiClient`` for this control plane (not the global one)."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))


@dataclass(frozen=True)
class Result:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0
