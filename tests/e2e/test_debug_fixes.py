"""``kubectl debug`` with a private debug image, denied: the fix, run as printed against the
real API server with kube-controller-manager, gives a pod the secret (issue 22 item 2; rev22c
F1 and F2 are in tests/e2e/test_rev22c_review.py). Admission reads no owner: these are the
owners it can only guess from the pod (a CronJob's run by its Job's name) or has none."""

from __future__ import annotations

import json

import pytest

from tests.e2e.cluster import ControlPlane, wait_for
from tests.e2e.conftest import E2ERegistries
from tests.e2e.test_decisions import wait_for_mode
from tests.e2e.test_diagnose_audit import _owned_pod, run_printed
from tests.e2e.test_rev22b_review import debug_fix
from tests.e2e.test_rev22c_review import pods_list_the_secret, secret_of
from tests.integration.registries import push_image

pytestmark = pytest.mark.e2e

#: A scheduled run's name: the CronJob's, then the scheduled time in minutes since 1970.
RUN = "29412000"


def _images(registries: E2ERegistries) -> tuple[str, str]:
    """(a private debug image, a public app image), both pushed."""
    push_image(registries.private, "team/w22-debug", "1.0")
    push_image(registries.public, "team/w22-app", "1.0")
    return (
        f"{registries.private.host}/team/w22-debug:1.0",
        f"{registries.public.host}/team/w22-app:1.0",
    )


def _cronjob(ns: str, image: str) -> dict[str, object]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "backup", "namespace": ns},
        "spec": {
            "schedule": "0 0 1 1 *",
            "suspend": True,
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "app", "image": image}],
                        }
                    }
                }
            },
        },
    }


def test_debug_fix_on_a_cronjobs_run_patches_the_cronjob_and_runs_it_again(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """A CronJob's run (Job ``backup-MINUTES``): the CronJob's template takes the secret (its
    next runs have it) and the run is made again from it, as diagnose does."""
    private, public = _images(registries)
    wait_for_mode(plane, ns, "enforce")
    plane.apply(json.dumps(_cronjob(ns, public)), check=True)
    job = f"backup-{RUN}"
    plane.kubectl("create", "job", job, "--from=cronjob/backup", "-n", ns, check=True)
    name = _owned_pod(plane, ns, f"job-name={job}")
    fix = debug_fix(plane, ns, name, private)
    create, then = fix.split(", then ", 1)
    assert "CronJob backup" in then, fix
    run_printed(plane, create, USER="user", PASSWORD="pass")
    run_printed(plane, then)
    secret = secret_of(fix)
    cronjob = plane.get_json("cronjob", "backup", "-n", ns)
    template = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert {"name": secret} in (template.get("imagePullSecrets") or []), fix
    wait_for(
        lambda: pods_list_the_secret(plane, ns, f"job-name={job}", secret),
        20,
        f"a pod of Job {job} that lists the secret",
    )
    owners = plane.get_json("job", job, "-n", ns)["metadata"].get("ownerReferences") or []
    assert [o["name"] for o in owners if o["kind"] == "CronJob"] == ["backup"], owners


def test_debug_fix_on_a_job_named_like_a_run_with_no_cronjob_recreates_the_job(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """The name is only a guess: with no such CronJob its patch answers NotFound, and the
    Job itself is recreated with the secret."""
    private, public = _images(registries)
    wait_for_mode(plane, ns, "enforce")
    job = f"backup-{RUN}"
    manifest = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job, "namespace": ns},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "app", "image": public}],
                }
            }
        },
    }
    plane.apply(json.dumps(manifest), check=True)
    name = _owned_pod(plane, ns, f"job-name={job}")
    fix = debug_fix(plane, ns, name, private)
    create, then = fix.split(", then ", 1)
    run_printed(plane, create, USER="user", PASSWORD="pass")
    run_printed(plane, then)
    wait_for(
        lambda: pods_list_the_secret(plane, ns, f"job-name={job}", secret_of(fix)),
        20,
        f"a pod of Job {job} that lists the secret",
    )


def test_debug_fix_on_a_bare_pod_recreates_it_with_the_secret(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """A bare pod's imagePullSecrets cannot change and nothing remakes it: the fix recreates
    it with the secret (it gave words only: "then recreate the pod with ...")."""
    private, public = _images(registries)
    wait_for_mode(plane, ns, "enforce")
    plane.kubectl("run", "solo", "-n", ns, f"--image={public}", "--labels=app=solo", check=True)
    fix = debug_fix(plane, ns, "solo", private, target="solo")
    create, then = fix.split(", then ", 1)
    run_printed(plane, create, USER="user", PASSWORD="pass")
    assert "kubectl" in then, fix
    run_printed(plane, then)
    wait_for(
        lambda: pods_list_the_secret(plane, ns, "app=solo", secret_of(fix)),
        20,
        "pod solo recreated with the secret",
    )
