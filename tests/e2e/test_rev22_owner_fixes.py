"""Outside review of issue 22 (rev22), item 2 "Fixes that can be run": `pullguard diagnose` of a
pod made by a Job, a ReplicaSet with no Deployment, or a custom resource, with the printed
fix run as printed on the real API server (the controller-manager runs: the Job and the
ReplicaSet make their pods).

- A Job's ``spec.template`` is immutable: ``kubectl patch job/NAME ...imagePullSecrets`` is
  refused ("field is immutable").
- A ReplicaSet never replaces its existing pods when its template changes: the patch succeeds
  and the failing pod keeps failing, unfixed.
- A pod made by a custom resource (Tekton's TaskRun here): ``kubectl set image taskrun/...``
  and ``kubectl patch taskrun/... spec.template`` name a resource kubectl cannot set images
  on, with a template shape it does not have.
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.cluster import ControlPlane, wait_for
from tests.e2e.conftest import E2ERegistries, pull_secret
from tests.e2e.test_diagnose_audit import (
    CONTAINERD_AMBIGUOUS,
    CONTAINERD_NOT_FOUND,
    mark_failing,
    off,
    pullguard,
    run_printed,
)
from tests.integration.registries import push_image

pytestmark = pytest.mark.e2e


def _owned_pod(plane: ControlPlane, ns: str, selector: str) -> str:
    return str(
        wait_for(
            lambda: (plane.get_json("pods", "-n", ns, "-l", selector)["items"] or [None])[0],
            30,
            f"a pod {selector}",
        )["metadata"]["name"]
    )


def _fix(plane: ControlPlane, registries: E2ERegistries, ns: str, name: str) -> str:
    result = pullguard(plane, registries, "diagnose", name, "-n", ns)
    assert result.returncode == 0, result.stdout + result.stderr
    (fix,) = [line.split("Fix: ", 1)[1] for line in result.stdout.splitlines() if "Fix: " in line]
    return fix


def _private_with_secret(plane: ControlPlane, ns: str, registries: E2ERegistries) -> str:
    push_image(registries.private, "team/rev22", "1.0")
    plane.apply(pull_secret("good", ns, registries.private.host), check=True)
    return f"{registries.private.host}/team/rev22:1.0"


def test_a_jobs_pod_refused_gets_a_fix_the_api_server_accepts(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    off(plane, ns)
    image = _private_with_secret(plane, ns, registries)
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "migrate", "namespace": ns},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "app", "image": image}],
                }
            }
        },
    }
    plane.apply(json.dumps(job), check=True)
    name = _owned_pod(plane, ns, "job-name=migrate")
    mark_failing(plane, ns, name, image, CONTAINERD_AMBIGUOUS.format(image=image))
    fix = _fix(plane, registries, ns, name)
    # Printed: kubectl patch job/migrate ... '{"spec":{"template":{"spec":{"imagePullSecrets":
    # [{"name":"good"}]}}}}', which the API server refuses: spec.template: field is immutable.
    run_printed(plane, fix)


def test_a_bare_replicasets_pod_is_fixed_by_what_is_printed(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    off(plane, ns)
    image = _private_with_secret(plane, ns, registries)
    replicaset = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }
    plane.apply(json.dumps(replicaset), check=True)
    name = _owned_pod(plane, ns, "app=web")
    mark_failing(plane, ns, name, image, CONTAINERD_AMBIGUOUS.format(image=image))
    run_printed(plane, _fix(plane, registries, ns, name))  # succeeds: the template changed
    # ... but a ReplicaSet never remakes a pod it has: the failing one keeps no secret.
    pods = wait_for(
        lambda: plane.get_json("pods", "-n", ns, "-l", "app=web")["items"] or None, 30, "pods"
    )
    assert all(p["spec"].get("imagePullSecrets") == [{"name": "good"}] for p in pods), [
        (p["metadata"]["name"], p["spec"].get("imagePullSecrets")) for p in pods
    ]


def test_a_custom_resources_pod_gets_no_command_on_a_kind_kubectl_cannot_set(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    off(plane, ns)
    push_image(registries.public, "team/rev22-step", "1.0")
    image = f"{registries.public.host}/team/rev22-step:1.1"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "build-1-pod",
            "namespace": ns,
            "ownerReferences": [
                {
                    "apiVersion": "tekton.dev/v1",
                    "kind": "TaskRun",
                    "name": "build-1",
                    "uid": "6b9f3c2e-0000-4000-8000-000000000001",
                    "controller": True,
                }
            ],
        },
        "spec": {"containers": [{"name": "step-build", "image": image}]},
    }
    plane.apply(json.dumps(pod), check=True)
    mark_failing(
        plane, ns, "build-1-pod", image, CONTAINERD_NOT_FOUND.format(image=image), "step-build"
    )
    fix = _fix(plane, registries, ns, "build-1-pod")
    # Printed: "... kubectl set image taskrun/build-1 step-build=...:1.0 -n NS":
    # error: the server doesn't have a resource type "taskrun" (and with Tekton installed,
    # kubectl set image does not know a TaskRun's shape either).
    assert "taskrun/" not in fix, fix


def test_a_statefulsets_stuck_pod_is_fixed_by_what_is_printed(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Kubernetes' "forced rollback": a StatefulSet (OrderedReady) whose pod never became
    Running and Ready does not replace it after its template is fixed; the pod must be
    deleted too. The printed template patch alone leaves web-0 failing."""
    off(plane, ns)
    image = _private_with_secret(plane, ns, registries)
    statefulset = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": image}]},
            },
        },
    }
    plane.apply(json.dumps(statefulset), check=True)
    name = _owned_pod(plane, ns, "app=web")
    mark_failing(plane, ns, name, image, CONTAINERD_AMBIGUOUS.format(image=image))
    run_printed(plane, _fix(plane, registries, ns, name))
    wait_for(
        lambda: all(
            p["spec"].get("imagePullSecrets") == [{"name": "good"}]
            for p in plane.get_json("pods", "-n", ns, "-l", "app=web")["items"]
        ),
        20,
        "web-0 remade with the secret",
    )


def test_a_never_pull_fix_names_the_container_not_the_pods_index(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """A sidecar injector (Linkerd puts its proxy first; Istio may too) makes the pod's
    containers differ from the template's. The never-pull fix is a JSON patch by the *pod's*
    index (/spec/template/spec/containers/1/...), which the Deployment's one-container
    template refuses ("the server rejected our request"). Here the ReplicaSet's template
    gets the injected container, as an injector would give the pods."""
    off(plane, ns)
    push_image(registries.public, "team/rev22-mesh", "1.0")
    image = f"{registries.public.host}/team/rev22-mesh:1.0"
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "mesh", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"app": "mesh"}},
            "template": {
                "metadata": {"labels": {"app": "mesh"}},
                "spec": {
                    "containers": [{"name": "web", "image": image, "imagePullPolicy": "Never"}]
                },
            },
        },
    }
    plane.apply(json.dumps(deployment), check=True)
    first = _owned_pod(plane, ns, "app=mesh")
    (replicaset,) = plane.get_json("rs", "-n", ns, "-l", "app=mesh")["items"]
    proxy = {"name": "linkerd-proxy", "image": image}
    inject = [{"op": "add", "path": "/spec/template/spec/containers/0", "value": proxy}]
    plane.kubectl(
        "patch", "rs", replicaset["metadata"]["name"], "-n", ns, "--type=json",
        "-p", json.dumps(inject),
        check=True,
    )  # fmt: skip
    plane.kubectl("delete", "pod", first, "-n", ns, "--wait=false", check=True)
    meshed = wait_for(
        lambda: next(
            (
                p["metadata"]["name"]
                for p in plane.get_json("pods", "-n", ns, "-l", "app=mesh")["items"]
                if len(p["spec"]["containers"]) == 2 and not p["metadata"].get("deletionTimestamp")
            ),
            None,
        ),
        30,
        "the meshed pod",
    )
    status = {
        "status": {
            "containerStatuses": [
                {"name": "linkerd-proxy", "image": image, "imageID": "", "ready": True,
                 "restartCount": 0, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}},
                {"name": "web", "image": image, "imageID": "", "ready": False, "restartCount": 0,
                 "state": {"waiting": {"reason": "ErrImageNeverPull", "message":
                     f'Container image "{image}" is not present with pull policy of Never'}}},
            ]
        }
    }  # fmt: skip
    plane.kubectl(
        "patch", "pod", meshed, "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps(status), check=True,
    )  # fmt: skip
    run_printed(plane, _fix(plane, registries, ns, meshed))
