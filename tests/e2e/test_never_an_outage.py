"""Issue 19, "never the cause of an outage": kubectl on the real API server, with pullguard's
pod webhooks at ``failurePolicy: Fail`` (a crash or a wrong denial cannot hide behind Ignore),
against real registries on loopback.

- item 2: a default pull secret that cannot be copied into a namespace never denies a pod
  whose registry serves it anonymously (by hand, a Deployment's pods, a scale-up);
- item 3: images with pull policy ``Never`` (container or image volume) are not asked about;
- item 5: ``kubectl apply -f dir/`` where the Deployment sorts before its ServiceAccount;
- item 7: ``kubectl debug`` of a controller's pod is judged as the person's change it is;
- item 8: an IPv6 registry in ``registry.allowedPrivateRegistries``, bracketed or not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import ControlPlane, wait_for
from tests.e2e.conftest import (
    CONFIG,
    NAMESPACE,
    E2ERegistries,
    Installation,
    pod,
    pull_secret,
    service_account,
    set_config,
)
from tests.integration.registries import push_image, start_registry

pytestmark = pytest.mark.e2e


def _dry_run_says(plane: ControlPlane, ns: str, image: str, text: str) -> bool:
    """Several dry-runs in a row (the API server may call any worker of the replica) print
    ``text``: the configuration that makes them say so is in force everywhere."""
    for _ in range(4):
        said = plane.apply(pod("probe", ns, image), "--dry-run=server").stderr
        if text not in said:
            print(f"dry-run of {image} said: {said}")
            return False
    return True


def _configured(plane: ControlPlane, text: str, ns: str, image: str, says: str) -> None:
    set_config(plane, text)
    wait_for(lambda: _dry_run_says(plane, ns, image, says), 30, "the test's configuration")


def _restore(plane: ControlPlane, ns: str, image: str, gone: str) -> None:
    set_config(plane, CONFIG)
    wait_for(
        lambda: all(
            gone not in plane.apply(pod("probe", ns, image), "--dry-run=server").stderr
            for _ in range(4)
        ),
        30,
        "the suite's configuration again",
    )


def workload(name: str, ns: str, image: str, *, replicas: int = 1, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": image}], **spec},
            },
        },
    }


def pods_of(plane: ControlPlane, ns: str, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = plane.get_json("pods", "-n", ns, "-l", f"app={app}")["items"]
    return items


def failed_creates(plane: ControlPlane, ns: str) -> str:
    events = plane.get_json("events", "-n", ns)["items"]
    return "\n".join(e.get("message", "") for e in events if e.get("reason") == "FailedCreate")


# -- item 2 -----------------------------------------------------------------------------


@pytest.fixture
def hub_default(fail_closed: ControlPlane, ns: str, registries: E2ERegistries) -> Iterator[str]:
    """A ``defaultPullSecrets`` entry for the anonymous registry (Docker Hub's part here),
    whose copy into ``ns`` fails: a ResourceQuota there allows no Secret at all."""
    plane = fail_closed
    host = registries.public.host
    push_image(registries.public, "library/hub", "1.0")
    plane.apply(pull_secret("hub-pull", NAMESPACE, host), check=True)
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-secrets", "namespace": ns},
        "spec": {"hard": {"secrets": "0"}},
    }
    plane.apply(json.dumps(quota), check=True)
    wait_for(
        lambda: plane.get_json("resourcequota", "no-secrets", "-n", ns)["status"]["hard"],
        30,
        "the quota's status",
    )
    entry = f"  - secret: hub-pull\n    registries: ['{host}']\n    sourceNamespace: {NAMESPACE}\n"
    image = f"{host}/library/hub:1.0"
    _configured(
        plane,
        CONFIG.replace("mirrors:\n", entry + "mirrors:\n"),
        ns,
        image,
        'imagePullSecret "hub-pull" added',
    )
    try:
        yield image
    finally:
        _restore(plane, ns, image, "hub-pull")
        plane.kubectl("delete", "secret", "hub-pull", "-n", NAMESPACE)


def test_a_default_secret_that_cannot_be_copied_never_denies_an_anonymous_pull(
    fail_closed: ControlPlane, installed: Installation, ns: str, hub_default: str
) -> None:
    plane = fail_closed
    result = plane.apply(pod("by-hand", ns, hub_default))
    assert result.ok, result.stderr
    assert 'imagePullSecret "hub-pull" added' in result.stderr
    # The scenario is real: the secret was injected and its copy, which follows the real
    # Pod (issue 20), refused by the quota; the Pod, judged by the copy's source, was admitted.
    stored = plane.get_json("pod", "by-hand", "-n", ns)
    assert stored["spec"]["imagePullSecrets"] == [{"name": "hub-pull"}]
    wait_for(
        lambda: (
            "copying secret hub-pull into " + ns + " failed: "
            in "".join(r.log_text() for r in installed.replicas)
        ),
        30,
        "the copy refused by the quota, in the log",
    )
    assert plane.kubectl("get", "secret", "hub-pull", "-n", ns).returncode == 1

    # A Deployment's pods, made by its ReplicaSet, and a scale-up of it.
    assert plane.apply(json.dumps(workload("web", ns, hub_default, replicas=2))).ok
    wait_for(lambda: len(pods_of(plane, ns, "web")) == 2, 60, "the Deployment's 2 pods")
    plane.kubectl("scale", "deployment", "web", "-n", ns, "--replicas=3", check=True)
    wait_for(lambda: len(pods_of(plane, ns, "web")) == 3, 60, "the scale-up to 3 pods")
    assert "pullguard" not in failed_creates(plane, ns)


# -- item 3 -----------------------------------------------------------------------------


def test_images_the_kubelet_never_pulls_are_not_asked_about(
    fail_closed: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    plane = fail_closed
    # Preloaded on the nodes only (kind load, an air-gapped cache): the registries have
    # neither the public tag nor an anonymous read of the private image.
    public = f"{registries.public.host}/team/preloaded:1"
    private = f"{registries.private.host}/team/preloaded:1"
    for name, image in (("public", public), ("private", private)):
        body = json.loads(pod(name, ns, image))
        body["spec"]["containers"][0]["imagePullPolicy"] = "Never"
        result = plane.apply(json.dumps(body))
        assert result.ok, result.stderr
        # The pull-policy advice about Never stays; nothing about the registry.
        assert "imagePullPolicy Never" in result.stderr
        assert "does not exist" not in result.stderr and "refused" not in result.stderr

    volume = json.loads(pod("volume", ns, "registry.k8s.io/pause:3.10"))
    volume["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    volume["spec"]["volumes"] = [
        {"name": "models", "image": {"reference": public, "pullPolicy": "Never"}}
    ]
    volume["spec"]["containers"][0]["volumeMounts"] = [{"name": "models", "mountPath": "/m"}]
    result = plane.apply(json.dumps(volume))
    assert result.ok, result.stderr
    assert "pullPolicy Never" in result.stderr and "does not exist" not in result.stderr

    # A template too, and its pods.
    deployment = workload("cached", ns, private)
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    assert plane.apply(json.dumps(deployment)).ok
    wait_for(lambda: len(pods_of(plane, ns, "cached")) == 1, 60, "the Deployment's pod")

    # Control: pulled images are still asked about.
    asked = plane.apply(pod("pulled", ns, public))
    assert not asked.ok
    assert "does not exist" in asked.stderr


# -- item 5 -----------------------------------------------------------------------------


def test_apply_of_a_folder_does_not_depend_on_the_order_of_its_files(
    fail_closed: ControlPlane, ns: str, registries: E2ERegistries, tmp_path: Path
) -> None:
    plane = fail_closed
    host = registries.private.host
    push_image(registries.private, "team/builder", "1.0")
    # kubectl apply -f DIR applies in file-name order: the Deployment before its account.
    (tmp_path / "10-secret.json").write_text(pull_secret("regcred", ns, host))
    deployment = workload("builder", ns, f"{host}/team/builder:1.0", serviceAccountName="builder")
    (tmp_path / "20-deployment.json").write_text(json.dumps(deployment))
    (tmp_path / "30-serviceaccount.json").write_text(service_account("builder", ns, ("regcred",)))
    result = plane.kubectl("apply", "-f", str(tmp_path))
    assert result.ok, result.stderr
    assert 'ServiceAccount "builder" does not exist yet' in result.stderr
    assert "create secret" not in result.stderr  # it needs none: the account brings regcred
    # Its pods come once the account exists, with the account's secret, and are admitted.
    wait_for(lambda: len(pods_of(plane, ns, "builder")) == 1, 60, "the Deployment's pod")
    (made,) = pods_of(plane, ns, "builder")
    assert made["spec"]["imagePullSecrets"] == [{"name": "regcred"}]

    # Control: applied again, with its account in place, a template it cannot pull is denied.
    deployment["spec"]["template"]["spec"]["serviceAccountName"] = "default"
    denied = plane.apply(json.dumps(deployment))
    assert not denied.ok
    assert f"registry {host} refused" in denied.stderr


# -- item 7 -----------------------------------------------------------------------------


def test_kubectl_debug_of_a_controllers_pod_is_judged_as_a_persons_change(
    fail_closed: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    plane = fail_closed
    host = registries.public.host
    push_image(registries.public, "team/app", "1.0")
    assert plane.apply(json.dumps(workload("app", ns, f"{host}/team/app:1.0"))).ok
    wait_for(lambda: len(pods_of(plane, ns, "app")) == 1, 60, "the Deployment's pod")
    (target,) = pods_of(plane, ns, "app")
    assert target["metadata"]["ownerReferences"][0]["controller"] is True
    name = target["metadata"]["name"]

    debug = plane.kubectl(
        "debug", name, "-n", ns, f"--image={host}/team/debugger:1.0", "-c", "debugger"
    )
    assert not debug.ok, debug.stderr
    assert "pullguard denied Pod" in debug.stderr
    assert f"ephemeral container \"debugger\": image '{host}/team/debugger:1.0' does not exist" in (
        debug.stderr
    )
    # Control: one that exists is added.
    push_image(registries.public, "team/debugger", "1.0")
    added = plane.kubectl(
        "debug", name, "-n", ns, f"--image={host}/team/debugger:1.0", "-c", "debugger"
    )
    assert added.ok, added.stderr


# -- item 8 -----------------------------------------------------------------------------


@pytest.fixture
def ipv6_registry(registries: E2ERegistries, tmp_path: Path) -> Iterator[str]:
    tls = registries.tls
    registry = start_registry(
        tmp_path / "v6", cert=tls["cert"], key=tls["key"], ca=tls["ca"], address="[::1]"
    )
    try:
        push_image(registry, "team/v6", "1.0")
        yield registry.host
    finally:
        registry.stop()


def test_an_ipv6_registry_allowed_as_private_is_asked(
    fail_closed: ControlPlane, ns: str, registries: E2ERegistries, ipv6_registry: str
) -> None:
    plane = fail_closed
    host = ipv6_registry  # [::1]:PORT
    strict = CONFIG.replace(
        "  allowPrivateNetworks: true\n",
        f"  allowPrivateNetworks: false\n  allowedPrivateRegistries: ['{host}']\n",
    )
    # In force once the suite's loopback registry (not listed) is no longer asked. By the
    # name localhost: the registry client pools connections, and one to 127.0.0.1 left open
    # by an earlier test would be reused without the address being judged again.
    probe = f"localhost:{registries.public.host.rpartition(':')[2]}/team/probe:1"
    _configured(plane, strict, ns, probe, "loopback address")
    try:
        missing = f"{host}/team/v6:2.0"
        denied = plane.apply(pod("missing", ns, missing))
        assert not denied.ok, denied.stderr
        assert f"image '{missing}' does not exist" in denied.stderr
        good = plane.apply(pod("good", ns, f"{host}/team/v6:1.0"))
        assert good.ok, good.stderr
        assert "could not run" not in good.stderr and "loopback" not in good.stderr

        # The form users write, without brackets, is accepted (it cannot carry a port).
        bare = strict.replace(f"['{host}']", "['::1']")
        accepted = set_config(plane, bare, check=False)
        assert accepted.ok, accepted.stderr
    finally:
        _restore(plane, ns, probe, "loopback address")
