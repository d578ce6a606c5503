"""Outside review rev22c of issue 22 (the words: messages, fixes, diagnose, audit, check).

Each test is a finding: a fix pullguard prints, run exactly as printed (placeholders USER and
PASSWORD filled in) against the real API server with kube-controller-manager, that does not
give the pod what it needs; or words that tell the person to do what the API server refuses.
There is no kubelet: pods are marked as a kubelet would (see tests/e2e/test_diagnose_audit.py)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.cluster import ControlPlane, wait_for
from tests.e2e.conftest import E2ERegistries
from tests.e2e.test_decisions import wait_for_mode
from tests.e2e.test_diagnose_audit import _owned_pod, run_printed
from tests.e2e.test_rev22b_review import debug_fix
from tests.integration.registries import push_image

pytestmark = pytest.mark.e2e


def pods_list_the_secret(plane: ControlPlane, ns: str, selector: str, secret: str) -> bool:
    """Is there a pod ``selector`` that lists pull secret ``secret`` (one the debug can now
    be run on)?"""
    pods = plane.get_json("pods", "-n", ns, "-l", selector)["items"]
    return any(
        {"name": secret} in (p["spec"].get("imagePullSecrets") or [])
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
    )


def secret_of(fix: str) -> str:
    """The secret a denial's fix creates: ``kubectl create secret docker-registry NAME``."""
    return fix.split("kubectl create secret docker-registry ", 1)[1].split(maxsplit=1)[0]


def test_rev22c_debug_fix_on_a_jobs_pod_is_one_the_api_server_accepts(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: ``kubectl debug`` of a Job's pod (a migration, a CronJob's run) with a debug
    image from a private registry is denied with "Fix: kubectl create secret docker-registry
    regcred-... , then add {name: regcred-...} to the imagePullSecrets of the pod template of
    Job mig (it makes the pod)". A Job's ``spec.template`` is immutable once created (the
    API server: "field is immutable"; checks.py's _SET_IMAGE_KINDS says so, and diagnose of
    the same pod recreates the Job), so the second half cannot be done, and it gives no
    command: PodOwner.where_to_add prints words only for any kind outside
    _PATCHABLE_TEMPLATE_KINDS. Issue 22 item 2: no fix tells a running pod to edit what
    cannot change. Run by hand: ``kubectl patch job/mig ... imagePullSecrets`` -> "The Job
    "mig" is invalid: spec.template: ... field is immutable".
    Expected: a fix after "then" that runs as printed (recreate the Job with the secret, or
    recreate its pod, or say how to debug without it), after which a pod of the Job lists
    the secret."""
    push_image(registries.private, "team/r22c-debug", "1.0")
    private = f"{registries.private.host}/team/r22c-debug:1.0"
    push_image(registries.public, "team/r22c-app", "1.0")
    public = f"{registries.public.host}/team/r22c-app:1.0"
    wait_for_mode(plane, ns, "enforce")
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "mig", "namespace": ns},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "app", "image": public}],
                }
            }
        },
    }
    plane.apply(json.dumps(job), check=True)
    name = _owned_pod(plane, ns, "job-name=mig")
    fix = debug_fix(plane, ns, name, private)
    create, then = fix.split(", then ", 1)
    run_printed(plane, create, USER="user", PASSWORD="pass")
    assert "kubectl" in then, (
        f"the fix's second half gives no command, and says to change what cannot change "
        f"(a Job's pod template is immutable):\n{fix}"
    )
    run_printed(plane, then)
    wait_for(
        lambda: pods_list_the_secret(plane, ns, "job-name=mig", secret_of(fix)),
        20,
        "a pod of Job mig that lists the secret",
    )


def test_rev22c_debug_fix_on_a_paused_deployments_pod_gives_a_pod_the_secret(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: ``kubectl debug`` of a pod of a Deployment under ``kubectl rollout pause`` (the
    case rev22b F6 fixed for diagnose and audit) with a private debug image is denied with
    "... kubectl patch deployment/web -n NS ... || { kubectl patch replicaset/web-HASH ...
    && kubectl delete pod POD -n NS; }". Run as printed: the Deployment's patch succeeds, so
    the ReplicaSet branch never runs, and a paused Deployment rolls out nothing: no pod ever
    lists the secret, and the same debug is denied again (its create now AlreadyExists).
    Admission reads no Deployment, but the command could resume it (or say that a paused
    Deployment must be resumed).
    Expected: after the printed fix, a pod of the Deployment lists the secret."""
    push_image(registries.private, "team/r22c-debug", "1.0")
    private = f"{registries.private.host}/team/r22c-debug:1.0"
    push_image(registries.public, "team/r22c-app", "1.0")
    public = f"{registries.public.host}/team/r22c-app:1.0"
    wait_for_mode(plane, ns, "enforce")
    plane.kubectl("create", "deployment", "web", "-n", ns, f"--image={public}", check=True)
    name = _owned_pod(plane, ns, "app=web")
    plane.kubectl("rollout", "pause", "deployment/web", "-n", ns, check=True)
    fix = debug_fix(plane, ns, name, private, target="r22c-app")
    create, then = fix.split(", then ", 1)
    run_printed(plane, create, USER="user", PASSWORD="pass")
    run_printed(plane, then)
    try:
        wait_for(
            lambda: pods_list_the_secret(plane, ns, "app=web", secret_of(fix)),
            20,
            "a pod of Deployment web that lists the secret",
        )
    except Exception as error:
        raise AssertionError(
            f"after the printed fix\n{fix}\nno pod of the paused Deployment lists the secret "
            "(a paused Deployment rolls out nothing), so the same kubectl debug is denied again"
        ) from error
