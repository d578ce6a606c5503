"""Admission through a real API server: ``kubectl`` in, the API server's own output asserted.

pullguard is installed from ``deploy/`` (see ``conftest.installed``); each test works in a
namespace of its own, so no test depends on another's leftovers.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.cluster import ControlPlane, wait_for
from tests.e2e.conftest import CONFIG, pod, pull_secret, set_config

pytestmark = pytest.mark.e2e


def jsonpath(plane: ControlPlane, *args: str, path: str) -> str:
    return plane.kubectl("get", *args, "-o", f"jsonpath={path}", check=True).stdout


def test_bad_reference_is_denied_with_the_fix(plane: ControlPlane, ns: str) -> None:
    result = plane.apply(pod("bad", ns, "docker.io/Library/Nginx:1.25"))
    assert result.returncode == 1
    assert (
        'Error from server (Forbidden): error when creating "STDIN": admission webhook '
        f'"validate.pullguard.io" denied the request: pullguard denied Pod {ns}/bad: 1 problem '
        "would cause ImagePullBackOff" in result.stderr
    )
    assert "repository name must be lowercase" in result.stderr
    assert "docker.io/library/nginx:1.25" in result.stderr


def test_missing_secret_is_denied(plane: ControlPlane, ns: str) -> None:
    result = plane.apply(pod("nosecret", ns, "registry.example.com/a:1", ("absent",)))
    assert result.returncode == 1
    assert f'imagePullSecret "absent" does not exist in namespace "{ns}"' in result.stderr
    assert f"kubectl create secret docker-registry absent -n {ns}" in result.stderr


def test_secret_in_another_namespace_is_not_named_without_client_ca(
    plane: ControlPlane, ns: str
) -> None:
    """This install has no ``serve --client-ca``: the review's user is nobody's word (anyone
    at the port could claim ``system:masters``), so where the secret exists is not said,
    even to the admin; the fix creates it here. (With ``--client-ca`` the copy command is
    given to a user who may read it there: tests/integration/test_port_attacks.py.)"""
    plane.apply(pull_secret("shared", "other", "registry.example.com"), check=True)
    result = plane.apply(pod("elsewhere", ns, "registry.example.com/a:1", ("shared",)))
    assert result.returncode == 1
    assert f'imagePullSecret "shared" does not exist in namespace "{ns}" (yet)' in result.stderr
    assert '"other"' not in result.stderr, result.stderr
    assert f"kubectl create secret docker-registry shared -n {ns}" in result.stderr


def test_secret_and_pod_in_one_apply_are_admitted(plane: ControlPlane, ns: str) -> None:
    items = [
        json.loads(pull_secret("fresh", ns, "registry.example.com")),
        json.loads(pod("fresh", ns, "registry.example.com/a:1", ("fresh",))),
    ]
    result = plane.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    assert result.returncode == 0, result.stderr


def test_docker_hub_image_is_rewritten_to_the_mirror(plane: ControlPlane, ns: str) -> None:
    result = plane.apply(pod("hub", ns, "nginx:1.25"))
    assert result.returncode == 0, result.stderr
    assert (
        'Warning: pullguard: container "app" image rewritten to mirror: '
        "mirror.example.com/dockerhub/library/nginx:1.25" in result.stderr
    )
    image = jsonpath(plane, "pod", "hub", "-n", ns, path="{.spec.containers[0].image}")
    assert image == "mirror.example.com/dockerhub/library/nginx:1.25"
    annotation = jsonpath(
        plane, "pod", "hub", "-n", ns, path="{.metadata.annotations.pullguard\\.io/original-images}"
    )
    assert json.loads(annotation) == {"app": "nginx:1.25"}


def test_dry_run_has_no_side_effects(plane: ControlPlane, ns: str) -> None:
    result = plane.apply(pod("dry", ns, "corp.example.com/a:1"), "--dry-run=server")
    assert result.returncode == 0, result.stderr
    assert plane.kubectl("get", "secret", "corp-pull", "-n", ns).returncode == 1
    assert plane.kubectl("get", "pod", "dry", "-n", ns).returncode == 1


def test_default_secret_is_injected_and_copied(plane: ControlPlane, ns: str) -> None:
    result = plane.apply(pod("corp", ns, "corp.example.com/a:1"))
    assert result.returncode == 0, result.stderr
    names = jsonpath(plane, "pod", "corp", "-n", ns, path="{.spec.imagePullSecrets[*].name}")
    assert names.split() == ["corp-pull"]
    # A bare Pod's review came without the API server's client certificate: the copy is
    # made once the API server has the Pod and it uses the secret (webhook/edge/secretsync.py).
    wait_for(lambda: plane.kubectl("get", "secret", "corp-pull", "-n", ns).ok, 15, "the copy")
    copied = jsonpath(
        plane,
        "secret",
        "corp-pull",
        "-n",
        ns,
        path="{.metadata.labels.app\\.kubernetes\\.io/managed-by}",
    )
    assert copied == "pullguard"


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      {secrets}
      containers: [{{name: web, image: "{image}"}}]
"""


def deployment(
    name: str, ns: str, image: str, *, replicas: int = 1, secrets: tuple[str, ...] = ()
) -> str:
    listed = f"imagePullSecrets: [{', '.join('{name: ' + s + '}' for s in secrets)}]"
    return DEPLOYMENT.format(
        name=name, ns=ns, image=image, replicas=replicas, secrets=listed if secrets else ""
    )


def test_deployment_is_denied_on_apply(plane: ControlPlane, ns: str) -> None:
    result = plane.apply(
        deployment("web", ns, "registry.example.com/team/web:2.0", secrets=("regcred",))
    )
    assert result.returncode == 1
    assert (
        f"pullguard denied Deployment {ns}/web: 1 problem would cause ImagePullBackOff"
        in result.stderr
    )
    assert '- container "web": imagePullSecret "regcred" does not exist' in result.stderr
    assert plane.kubectl("get", "deployment", "web", "-n", ns).returncode == 1


def test_pods_made_by_the_replicaset_controller_are_mutated(plane: ControlPlane, ns: str) -> None:
    result = plane.apply(deployment("hub", ns, "nginx:1.25", replicas=2))
    assert result.returncode == 0, result.stderr
    # The template is left as written (mutation.podTemplates is off): no GitOps drift.
    template = jsonpath(
        plane, "deployment", "hub", "-n", ns, path="{.spec.template.spec.containers[0].image}"
    )
    assert template == "nginx:1.25"

    def images() -> list[str] | None:
        found = jsonpath(
            plane, "pods", "-n", ns, "-l", "app=hub", path="{.items[*].spec.containers[0].image}"
        ).split()
        return found if len(found) == 2 else None

    assert (
        wait_for(images, 60, "two pods of Deployment hub")
        == ["mirror.example.com/dockerhub/library/nginx:1.25"] * 2
    )


def test_a_denied_pod_shows_on_the_replicaset_events(plane: ControlPlane, ns: str) -> None:
    # A Deployment admitted while its namespace only warned, then enforced: the pods the
    # ReplicaSet controller makes from then on meet the validating webhook on their own.
    plane.kubectl("label", "namespace", ns, "pullguard.io/mode=warn", check=True)
    result = plane.apply(deployment("web", ns, "Registry.example.com/Team/web:2.0", replicas=0))
    assert result.returncode == 0, result.stderr
    assert "Warning: " in result.stderr and "lowercase" in result.stderr
    plane.kubectl("label", "namespace", ns, "pullguard.io/mode=enforce", "--overwrite", check=True)
    wait_for(
        lambda: (
            "denied"
            in plane.apply(
                pod("probe", ns, "Registry.example.com/Team/web:2.0"), "--dry-run=server"
            ).stderr
        ),
        30,
        "the enforce label to reach pullguard's namespace cache",
    )
    plane.kubectl("scale", "deployment", "web", "-n", ns, "--replicas=1", check=True)

    def failed_create() -> str:
        events = plane.get_json("events", "-n", ns, "--field-selector", "reason=FailedCreate")
        messages = [
            e["message"] for e in events["items"] if e["involvedObject"]["kind"] == "ReplicaSet"
        ]
        return "\n".join(messages)

    message = wait_for(failed_create, 60, "a FailedCreate event on the ReplicaSet")
    assert 'admission webhook "validate.pullguard.io" denied the request' in message
    assert "pullguard denied Pod" in message
    assert "repository name must be lowercase" in message
    assert jsonpath(plane, "pods", "-n", ns, path="{.items[*].metadata.name}") == ""


def test_kubectl_debug_is_checked(plane: ControlPlane, ns: str) -> None:
    # kubectl checks --image's grammar itself, so the debug image here is well-formed but on
    # a private registry none of the pod's secrets covers: the ephemeralcontainers
    # subresource must meet pullguard.
    plane.apply(pod("target", ns, "nginx:1.25"), check=True)
    result = plane.kubectl(
        "debug", "target", "-n", ns, "--image=registry.example.com/tools/debug:1.0"
    )
    assert result.returncode != 0
    assert 'ephemeral container "debugger' in result.stderr
    assert "registry.example.com, which needs credentials" in result.stderr
    containers = jsonpath(plane, "pod", "target", "-n", ns, path="{.spec.ephemeralContainers}")
    assert containers == ""


def test_namespace_mode_warn_admits_with_the_problem_as_warning(
    plane: ControlPlane, ns: str
) -> None:
    plane.kubectl("label", "namespace", ns, "pullguard.io/mode=warn", check=True)
    result = wait_for(
        lambda: (r := plane.apply(pod("lenient", ns, "Nginx:1.25"))).ok and r, 30, "warn mode"
    )
    assert "Warning: " in result.stderr
    assert "lowercase" in result.stderr


def test_namespace_mode_off_neither_checks_nor_mutates(plane: ControlPlane, ns: str) -> None:
    plane.kubectl("label", "namespace", ns, "pullguard.io/mode=off", check=True)
    result = wait_for(
        lambda: (r := plane.apply(pod("free", ns, "Nginx:1.25"))).ok and r, 30, "off mode"
    )
    assert "pullguard" not in result.stderr
    hub = plane.apply(pod("hub", ns, "nginx:1.25"))
    assert hub.ok, hub.stderr
    assert jsonpath(plane, "pod", "hub", "-n", ns, path="{.spec.containers[0].image}") == (
        "nginx:1.25"
    )


def test_config_change_applies_without_restart(plane: ControlPlane, ns: str) -> None:
    relaxed = CONFIG.replace("reference: enforce", "reference: warn")
    set_config(plane, relaxed)
    try:
        result = wait_for(
            lambda: (r := plane.apply(pod("relaxed", ns, "Nginx"))).ok and r,
            30,
            "the relaxed configuration",
        )
        assert "Warning: " in result.stderr and "lowercase" in result.stderr
    finally:
        set_config(plane, CONFIG)
    # Every worker of every replica follows the ConfigMap on its own: several denials in a
    # row, not one, say the enforcing document is back everywhere the API server calls.
    wait_for(
        lambda: (
            not any(
                plane.apply(pod("strict", ns, "Nginx"), "--dry-run=server").ok for _ in range(4)
            )
        ),
        30,
        "the enforcing configuration again",
    )


def volume_pod(name: str, ns: str, reference: str) -> str:
    """A pod mounting an image volume (``spec.volumes[].image``, on by default since 1.35)."""
    body = json.loads(pod(name, ns, "registry.k8s.io/pause:3.10"))
    body["spec"]["volumes"] = [{"name": "models", "image": {"reference": reference}}]
    body["spec"]["containers"][0]["volumeMounts"] = [{"name": "models", "mountPath": "/models"}]
    return json.dumps(body)


def test_image_volume_with_a_bad_reference_is_denied(plane: ControlPlane, ns: str) -> None:
    result = plane.apply(volume_pod("vol", ns, "Acme/Models:1"))
    assert result.returncode == 1, result.stderr
    assert f"pullguard denied Pod {ns}/vol" in result.stderr
    assert "- image volume \"models\": image 'Acme/Models:1' can never be pulled" in result.stderr


def test_image_volume_is_rewritten_to_the_mirror(plane: ControlPlane, ns: str) -> None:
    result = plane.apply(volume_pod("vol", ns, "acme/models:1"))
    assert result.returncode == 0, result.stderr
    assert 'image volume "models" image rewritten to mirror' in result.stderr
    stored = plane.get_json("pod", "vol", "-n", ns)
    volume = next(v for v in stored["spec"]["volumes"] if v["name"] == "models")
    # The API server defaulted pullPolicy (IfNotPresent for a tag) and kept pullguard's rewrite.
    assert volume["image"] == {
        "reference": "mirror.example.com/dockerhub/acme/models:1",
        "pullPolicy": "IfNotPresent",
    }
    recorded = json.loads(stored["metadata"]["annotations"]["pullguard.io/original-images"])
    assert recorded == {"volume/models": "acme/models:1"}


def test_an_invalid_configuration_is_refused_by_kubectl_apply(plane: ControlPlane, ns: str) -> None:
    bad = CONFIG.replace("reference: enforce", "reference: maybe") + "mirrors: 3\n"
    result = set_config(plane, bad, check=False)
    assert not result.ok
    assert 'admission webhook "config.pullguard.io" denied the request' in result.stderr
    assert "checks.reference: must be one of enforce, warn, off" in result.stderr
    assert "pullguard check --config FILE" in result.stderr
    # Nothing changed: the configuration in force still enforces references.
    assert not plane.apply(pod("strict", ns, "Nginx"), "--dry-run=server").ok
