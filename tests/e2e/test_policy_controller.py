"""The controller that writes and owns the MutatingAdmissionPolicy, on a real kube-apiserver
1.36.2 (issue 25 items 1, 2 and the mode of 7).

``deploy/`` is installed on a control plane of this module's own (the session's keeps every
pod on ``/mutate``: tests/e2e/conftest.py starts its replicas with ``--mutation-mode
webhook``), and two replicas are started at the same moment as the ``pullguard``
ServiceAccount with the default ``--mutation-mode auto``. /mutate's calls are counted in the
primary replica's metrics (the webhook URL points at it).

An older API server cannot be started here: tests/unit/test_mutation_mode.py simulates it
with a fake discovery.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e.cluster import ADMIN_TOKEN, ControlPlane, assets_folder, missing_assets_reason
from tests.e2e.cluster import wait_for as wait
from tests.e2e.conftest import (
    NAMESPACE,
    E2ERegistries,
    Pullguard,
    by_url,
    namespace,
    pod,
    pull_secret,
    rendered_deploy,
    server_side_apply,
    set_config,
    spawn_pullguard,
)
from tests.integration.registries import REGISTRY_BINARY, Registry, start_registry
from webhook.core.mutate import ORIGINAL_IMAGES_ANNOTATION
from webhook.core.mutationmode import CONDITION_NAME, LEASE_NAME

pytestmark = pytest.mark.e2e

NS = "pc"
CONFIG = """
exemptNamespaces: [kube-system]
mirrors:
  - registry: docker.io
    mirror: {hub}
    probe: false
  - registry: quay.io
    mirror: {quay}/quay
registry:
  allowPrivateNetworks: true
"""
POLICIES = "/apis/admissionregistration.k8s.io/v1/mutatingadmissionpolicies/pullguard-mirrors"
BINDINGS = "/apis/admissionregistration.k8s.io/v1/mutatingadmissionpolicybindings/pullguard-mirrors"
WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/pullguard"


@dataclass
class Setup:
    plane: ControlPlane
    replicas: list[Pullguard]
    webhook_url: str
    kubeconfig: Path
    mirror: Registry
    api: httpx.Client
    workdir: Path
    ca: Path

    def config(self, hub: str = "mirror.example.com/dockerhub") -> str:
        return CONFIG.format(hub=hub, quay=self.mirror.host)

    def get(self, path: str) -> dict[str, Any] | None:
        answer = self.api.get(path)
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        found: dict[str, Any] = answer.json()
        return found

    def condition(self) -> str | None:
        configuration = self.get(WEBHOOKS) or {}
        for hook in configuration.get("webhooks", []):
            if hook["name"] == "mutate.pullguard.io":
                for condition in hook.get("matchConditions") or []:
                    if condition["name"] == CONDITION_NAME:
                        return str(condition["expression"])
        return None

    def dry_run(self, image: str) -> dict[str, Any]:
        result = self.plane.apply(pod("p", NS, image), "--dry-run=server", "-o", "json")
        assert result.ok, result.stderr
        created: dict[str, Any] = json.loads(result.stdout)
        return created

    def image(self, image: str) -> str:
        return str(self.dry_run(image)["spec"]["containers"][0]["image"])

    def by_the_policy(self, image: str, expected: str) -> bool:
        """Is ``image`` made ``expected`` with the policy in force and /mutate not called?"""
        if not in_force(self):
            return False
        before = self.mutate_calls()
        if self.image(image) != expected:
            return False
        time.sleep(0.5)
        return in_force(self) and self.mutate_calls() == before

    def mutate_calls(self) -> float:
        """/mutate's reviews of Pod CREATEs, as the primary replica counted them."""
        with self.replicas[0].client() as http:
            text = http.get("/metrics").text
        total = 0.0
        for line in text.splitlines():
            if (
                line.startswith("pullguard_admission_requests_total{")
                and 'webhook="mutate"' in line
                and 'kind="Pod"' in line
                and 'operation="CREATE"' in line
            ):
                total += float(line.rsplit(" ", 1)[1])
        return total


def spawn(
    how: tuple[ControlPlane, Path, Path, str, Path], port: int, name: str, mode: str = "auto"
) -> Pullguard:
    """A replica as the ``pullguard`` ServiceAccount, trusting the test registries' CA."""
    plane, workdir, kubeconfig, webhook_url, ca = how
    return spawn_pullguard(
        plane,
        workdir,
        kubeconfig=kubeconfig,
        port=port,
        webhook_url=webhook_url,
        name=name,
        extra=("--mutation-mode", mode),
        env={"SSL_CERT_FILE": str(ca)},
    )


@pytest.fixture(scope="module")
def setup(registries: E2ERegistries, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    assets = assets_folder()
    if assets is None:
        pytest.skip(missing_assets_reason())
    workdir = tmp_path_factory.mktemp("policy-controller")
    plane = ControlPlane(assets, workdir / "plane").start()
    mirror = start_registry(workdir / "mirror", **registries.tls)
    replicas: list[Pullguard] = []
    api = httpx.Client(
        base_url=plane.server,
        verify=ssl.create_default_context(cafile=str(plane.ca)),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )
    try:
        port = free_port()
        webhook_url = f"https://127.0.0.1:{port}"
        server_side_apply(plane, by_url(rendered_deploy(plane), webhook_url))
        namespace(plane, NS)
        plane.apply(pull_secret("regcred", NS, "docker.io"), check=True)
        kubeconfig = plane.service_account_kubeconfig(NAMESPACE, "pullguard")
        state = Setup(plane, replicas, webhook_url, kubeconfig, mirror, api, workdir, registries.ca)
        set_config(plane, state.config())
        how = (plane, workdir, kubeconfig, webhook_url, registries.ca)
        # Two replicas started at the same moment.
        replicas.extend(
            spawn(how, replica_port, f"replica-{i}")
            for i, replica_port in enumerate((port, free_port()))
        )
        for replica in replicas:
            wait(replica.ready, 90, f"pullguard on port {replica.port}")
        yield state
    finally:
        for replica in replicas:
            replica.stop()
        mirror.stop()
        api.close()
        plane.stop()


def in_force(setup: Setup) -> bool:
    return bool(setup.get(POLICIES) and setup.get(BINDINGS) and setup.condition() is not None)


def test_replicas_write_one_policy_under_their_service_account_and_do_not_flap(
    setup: Setup,
) -> None:
    started = time.monotonic()
    wait(lambda: in_force(setup), 60, "the policy, its binding and the matchCondition")
    print(f"policy in force {time.monotonic() - started:.1f} s after both replicas were ready")
    policy, binding = setup.get(POLICIES), setup.get(BINDINGS)
    assert policy is not None and binding is not None
    for stored in (policy, binding):
        assert stored["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "pullguard"
        assert stored["metadata"].get("generation") == 1  # created once, never rewritten
        (owner,) = stored["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"]) == ("MutatingWebhookConfiguration", "pullguard")
    versions = (
        policy["metadata"]["resourceVersion"],
        binding["metadata"]["resourceVersion"],
        (setup.get(WEBHOOKS) or {})["metadata"]["resourceVersion"],
    )
    time.sleep(10)  # five passes of each replica
    assert (
        (setup.get(POLICIES) or {})["metadata"]["resourceVersion"],
        (setup.get(BINDINGS) or {})["metadata"]["resourceVersion"],
        (setup.get(WEBHOOKS) or {})["metadata"]["resourceVersion"],
    ) == versions
    lease = setup.get(f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases/{LEASE_NAME}")
    assert lease is not None
    holder = lease["spec"]["holderIdentity"]
    texts = []
    for replica in setup.replicas:
        with replica.client() as http:
            texts.append(http.get("/readyz").text)
            assert 'pullguard_mutation_mode{mode="policy"} 1.0' in http.get("/metrics").text
    assert all("mutation mode: policy (" in text for text in texts), texts
    assert sum(f"written by {holder}" in text for text in texts) == 1, texts
    writers = [r for r in setup.replicas if "mutation policy: write the policy" in r.log_text()]
    assert len(writers) == 1


def test_a_mirrored_pod_is_rewritten_without_calling_mutate(setup: Setup) -> None:
    wait(lambda: in_force(setup), 60, "the policy in force")
    wait(lambda: setup.image("nginx:1.25") != "nginx:1.25", 30, "the policy rewriting")
    before = setup.mutate_calls()
    created = setup.dry_run("nginx:1.25")
    assert created["spec"]["containers"][0]["image"] == (
        "mirror.example.com/dockerhub/library/nginx:1.25"
    )
    assert json.loads(created["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION]) == {
        "app": "nginx:1.25"
    }
    assert setup.image(f"quay.io/org/app@sha256:{'a' * 64}") == (
        f"{setup.mirror.host}/quay/org/app@sha256:{'a' * 64}"
    )
    time.sleep(1)
    assert setup.mutate_calls() == before  # neither pod reached /mutate
    # A pod the policy leaves alone (its pull secret may cover the image: the secret's
    # contents decide) reaches /mutate.
    result = setup.plane.apply(
        pod("s", NS, "nginx:1.25", secrets=["regcred"]), "--dry-run=server", "-o", "json"
    )
    assert result.ok, result.stderr
    wait(lambda: setup.mutate_calls() == before + 1, 10, "/mutate counting the pod")


def test_a_configmap_change_reaches_the_policy_within_seconds(setup: Setup) -> None:
    wait(lambda: in_force(setup), 60, "the policy in force")
    set_config(setup.plane, setup.config(hub="hub-two.example.com/cache"))
    started = time.monotonic()
    wait(
        lambda: setup.image("nginx:1.25") == "hub-two.example.com/cache/library/nginx:1.25",
        20,
        "the new mirror in dry-run pods",
    )
    seconds = time.monotonic() - started
    print(f"ConfigMap change in dry-run pods after {seconds:.1f} s")
    wait(lambda: in_force(setup), 20, "the matchCondition set again")
    assert seconds < 15


def test_an_invalid_configmap_changes_nothing(setup: Setup) -> None:
    wait(lambda: in_force(setup), 60, "the policy in force")
    versions = ((setup.get(POLICIES) or {})["metadata"]["resourceVersion"], setup.condition())
    image = setup.image("nginx:1.25")
    # kubectl apply is refused by the config webhook; an admin who drops the ConfigMap's
    # label gets past it (the webhook judges labelled ConfigMaps only), and pullguard's
    # store refuses the document.
    setup.plane.kubectl(
        "label",
        "configmap",
        "pullguard-config",
        "-n",
        NAMESPACE,
        "app.kubernetes.io/name-",
        check=True,
    )
    try:
        set_config(setup.plane, "checks: {reference: maybe}\nmirrors: 3\n")
        wait(
            lambda: "refused" in setup.replicas[0].log_text().rsplit("applied", 1)[-1],
            20,
            "the replica refusing the document",
        )
        time.sleep(6)  # three passes
        assert (
            (setup.get(POLICIES) or {})["metadata"]["resourceVersion"],
            setup.condition(),
        ) == versions
        assert setup.image("nginx:1.25") == image
    finally:
        set_config(setup.plane, setup.config(hub="hub-two.example.com/cache"))
        setup.plane.kubectl(
            "label",
            "configmap",
            "pullguard-config",
            "-n",
            NAMESPACE,
            "app.kubernetes.io/name=pullguard",
            "--overwrite",
        )


def restart(registry: Registry) -> None:
    """Start ``registry`` again on its port (its config file is kept)."""
    config = Path(registry.log).parent / "config.yml"
    registry.process = subprocess.Popen(
        [str(REGISTRY_BINARY), "serve", str(config)],
        stdout=registry.log.open("ab"),
        stderr=subprocess.STDOUT,
    )

    def answers() -> bool:
        try:
            with registry.client() as client:
                return client.get("/v2/").status_code == 200
        except httpx.HTTPError:
            return False

    wait(answers, 20, "the mirror answering again")


def test_a_mirror_that_goes_down_is_taken_out_and_put_back(setup: Setup) -> None:
    wait(lambda: in_force(setup), 60, "the policy in force")
    image = "quay.io/org/app:1"
    on_mirror = f"{setup.mirror.host}/quay/org/app:1"
    wait(lambda: setup.image(image) == on_mirror, 20, "the policy rewriting to the mirror")
    setup.mirror.stop()
    try:
        started = time.monotonic()
        wait(lambda: setup.image(image) == image, 20, "the down mirror out of the policy")
        print(f"a mirror that went down out of the policy after {time.monotonic() - started:.1f} s")
        wait(lambda: in_force(setup), 20, "the matchCondition set again")
        before = setup.mutate_calls()
        assert setup.image(image) == image  # /mutate decides it, and says why (a warning)
        wait(lambda: setup.mutate_calls() == before + 1, 10, "/mutate counting the pod")
    finally:
        restart(setup.mirror)
    started = time.monotonic()
    wait(lambda: setup.by_the_policy(image, on_mirror), 20, "the mirror back in the policy")
    print(f"a mirror that answers again back in after {time.monotonic() - started:.1f} s")


def test_forcing_webhook_mode_removes_the_condition_before_the_policy(setup: Setup) -> None:
    hub = "hub-two.example.com/cache/library/nginx:1.25"
    wait(lambda: setup.by_the_policy("nginx:1.25", hub), 60, "the policy in force")
    gaps: list[str] = []
    seen: list[tuple[bool, bool]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            condition = setup.condition() is not None
            policy = setup.get(POLICIES) is not None and setup.get(BINDINGS) is not None
            if not seen or seen[-1] != (condition, policy):
                seen.append((condition, policy))
            if condition and not policy:
                gaps.append("matchCondition without the policy")
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    for replica in setup.replicas:
        replica.stop()
    port = setup.replicas[0].port
    how = (setup.plane, setup.workdir, setup.kubeconfig, setup.webhook_url, setup.ca)
    forced = spawn(how, port, "forced-webhook", mode="webhook")
    setup.replicas[:] = [forced]
    try:
        wait(forced.ready, 90, "the replica in webhook mode")
        wait(lambda: setup.get(POLICIES) is None, 60, "the policy deleted")
        done.set()
        watcher.join(5)
        assert gaps == []
        assert seen[0] == (True, True) and seen[-1] == (False, False)
        assert (False, True) in seen  # the overlap: both halves, every pod to /mutate
        log = forced.log_text()
        assert log.index("mutation policy: remove the matchCondition") < log.index(
            "mutation policy: delete the policy"
        )
        with forced.client() as http:
            assert "mutation mode: webhook (forced with --mutation-mode webhook)" in (
                http.get("/readyz").text
            )
            assert 'pullguard_mutation_mode{mode="webhook"} 1.0' in http.get("/metrics").text
        before = setup.mutate_calls()
        assert setup.image("nginx:1.25") == "hub-two.example.com/cache/library/nginx:1.25"
        wait(lambda: setup.mutate_calls() == before + 1, 10, "/mutate rewriting the pod")
    finally:
        done.set()


def test_uninstalling_pullguard_deletes_the_policy(setup: Setup) -> None:
    """The policy and binding are owned by the MutatingWebhookConfiguration: deleting it
    (``kubectl delete -k deploy/``) has the garbage collector delete them (no pullguard
    running meanwhile: the collector alone), and a replica started after does not make them
    again (no mutating webhook entry: nothing to move into the API server)."""
    for replica in setup.replicas:
        replica.stop()
    port = setup.replicas[0].port
    how = (setup.plane, setup.workdir, setup.kubeconfig, setup.webhook_url, setup.ca)
    setup.replicas[:] = [spawn(how, port, "after-forced")]
    wait(setup.replicas[0].ready, 90, "the replica in auto mode")
    wait(lambda: in_force(setup), 60, "the policy back in force")
    setup.replicas[0].stop()
    setup.plane.kubectl("delete", "mutatingwebhookconfiguration", "pullguard", check=True)
    started = time.monotonic()
    wait(
        lambda: setup.get(POLICIES) is None and setup.get(BINDINGS) is None,
        60,
        "the garbage collector deleting the policy and binding",
    )
    print(f"policy and binding gone {time.monotonic() - started:.1f} s after the uninstall")
    setup.replicas[:] = [spawn(how, port, "uninstalled")]
    wait(setup.replicas[0].ready, 90, "a replica with no mutating webhook")
    with setup.replicas[0].client() as http:
        wait(lambda: "was not found" in http.get("/readyz").text, 30, "the mode said")
    time.sleep(6)  # three passes
    assert setup.get(POLICIES) is None and setup.get(BINDINGS) is None
