"""Outside review rev22 of issue 22 (after the third review's fixes): printed fixes run as
printed against the real API server, and diagnose/audit on cases the suite did not cover
(a ``kubectl debug`` container on a bare pod, a CronJob's stuck Job, a pod with two private
registries, a namespace whose mode is ``off``). Each test fails today: marker
``open_finding``, run with ``pytest -m open_finding``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.cluster import ControlPlane, wait_for
from tests.e2e.conftest import E2ERegistries, pod
from tests.e2e.test_diagnose_audit import (
    CONTAINERD_AMBIGUOUS,
    CONTAINERD_NOT_FOUND,
    mark_failing,
    off,
    pullguard,
    run_printed,
)
from tests.e2e.test_kubectl import jsonpath
from tests.integration.registries import push_image

pytestmark = [pytest.mark.e2e, pytest.mark.open_finding]


def printed_fixes(out: str) -> list[str]:
    return [line.split("Fix: ", 1)[1] for line in out.splitlines() if "Fix: " in line]


def waiting(name: str, image: str, message: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": message}},
    }


def set_status(plane: ControlPlane, ns: str, name: str, status: dict[str, Any]) -> None:
    plane.kubectl(
        "patch",
        "pod",
        name,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Pending", **status}}),
        check=True,
    )


def debug_container(plane: ControlPlane, ns: str, name: str, image: str) -> None:
    """What ``kubectl debug POD --image=IMAGE --target=app -c debugger`` writes."""
    body = {
        "spec": {
            "ephemeralContainers": [
                {"name": "debugger", "image": image, "targetContainerName": "app"}
            ]
        }
    }
    plane.kubectl(
        "patch",
        "pod",
        name,
        "-n",
        ns,
        "--subresource=ephemeralcontainers",
        "--type=strategic",
        "-p",
        json.dumps(body),
        check=True,
    )


def test_rev22_a_bare_pods_debug_container_fix_does_not_delete_the_pod(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    # kubectl debug on a bare pod with an image from a private registry: the printed fix
    # recreates the pod with `kubectl patch --dry-run=client -o yaml | kubectl replace
    # --force -f -`. The yaml holds spec.ephemeralContainers, which a create refuses
    # ("cannot be set on create"): replace --force has already deleted the pod, so the
    # person's working pod is gone and nothing replaces it.
    off(plane, ns)
    push_image(registries.public, "team/r22-app", "1.0")
    plane.apply(pod("bare", ns, f"{registries.public.host}/team/r22-app:1.0"), check=True)
    private = f"{registries.private.host}/team/r22-debug:1.0"
    push_image(registries.private, "team/r22-debug", "1.0")
    debug_container(plane, ns, "bare", private)
    message = CONTAINERD_AMBIGUOUS.format(image=private)
    set_status(
        plane, ns, "bare", {"ephemeralContainerStatuses": [waiting("debugger", private, message)]}
    )
    result = pullguard(plane, registries, "diagnose", "bare", "-n", ns)
    assert result.returncode == 0, result.stderr
    (fix,) = printed_fixes(result.stdout)
    try:
        run_printed(plane, fix, USER="user", PASSWORD="pass")
    finally:
        still = plane.kubectl("get", "pod", "bare", "-n", ns)
        assert still.returncode == 0, f"the pod was deleted by the printed fix:\n{fix}"


def test_rev22_a_debug_containers_missing_tag_fix_runs_as_printed(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    # kubectl debug with a tag that was never pushed: the fix is `kubectl set image
    # pod/bare debugger=...`. An ephemeral container's image cannot be changed (not by
    # an update of the pod, not through the ephemeralcontainers subresource): the fix is
    # another `kubectl debug` with the tag meant.
    off(plane, ns)
    push_image(registries.public, "team/r22-tool", "1.0")
    plane.apply(pod("bare", ns, f"{registries.public.host}/team/r22-tool:1.0"), check=True)
    missing = f"{registries.public.host}/team/r22-tool:1.1"
    debug_container(plane, ns, "bare", missing)
    message = CONTAINERD_NOT_FOUND.format(image=missing)
    set_status(
        plane, ns, "bare", {"ephemeralContainerStatuses": [waiting("debugger", missing, message)]}
    )
    result = pullguard(plane, registries, "diagnose", "bare", "-n", ns)
    assert result.returncode == 0, result.stderr
    (fix,) = printed_fixes(result.stdout)
    run_printed(plane, fix)


def test_rev22_a_cronjobs_stuck_job_is_fixed_by_what_is_printed(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    # A CronJob's Job whose pod is stuck on a tag never pushed: the fix is `kubectl set
    # image cronjob/nightly ...` alone. The stuck Job keeps its template and its pod keeps
    # failing (a Job never replaces a Pending pod); with concurrencyPolicy Forbid the
    # CronJob starts no new Job while it is active, so the fix as printed fixes nothing
    # until someone deletes the Job.
    off(plane, ns)
    push_image(registries.public, "team/r22-nightly", "1.0")
    missing = f"{registries.public.host}/team/r22-nightly:1.1"
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": ns},
        "spec": {
            "schedule": "0 0 1 1 *",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "app", "image": missing}],
                        }
                    }
                }
            },
        },
    }
    plane.apply(json.dumps(cronjob), check=True)
    plane.kubectl("create", "job", "nightly-1", "--from=cronjob/nightly", "-n", ns, check=True)
    selector = "job-name=nightly-1"
    wait_for(
        lambda: jsonpath(plane, "pods", "-n", ns, "-l", selector, path="{.items[*].metadata.name}"),
        60,
        "the Job's pod",
    )
    name = jsonpath(plane, "pods", "-n", ns, "-l", selector, path="{.items[0].metadata.name}")
    mark_failing(plane, ns, name, missing, CONTAINERD_NOT_FOUND.format(image=missing))
    result = pullguard(plane, registries, "diagnose", name, "-n", ns)
    assert result.returncode == 0, result.stderr
    (fix,) = printed_fixes(result.stdout)
    run_printed(plane, fix)
    # What is stuck must be fixed: the Job that is running (or its pod), not only the next.
    jobs = plane.get_json("jobs", "-n", ns)["items"]
    stuck = [
        j["metadata"]["name"]
        for j in jobs
        if j["spec"]["template"]["spec"]["containers"][0]["image"] == missing
    ]
    pods = plane.get_json("pods", "-n", ns, "-l", selector)["items"]
    still = [p["metadata"]["name"] for p in pods if p["spec"]["containers"][0]["image"] == missing]
    assert not (stuck and still), (
        f"after the printed fix\n{fix}\nJob(s) {stuck} still run {missing} in pod(s) {still}"
    )


def test_rev22_two_private_registries_fixes_run_in_order_keep_both_secrets(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    # A pod with two containers on two registries that need credentials (here the same
    # registry under two names, 127.0.0.1:PORT and localhost:PORT): diagnose prints one fix
    # per container, each a merge patch of imagePullSecrets computed from the pod's list as
    # it is now. Run in the order printed, the second replaces the list the first wrote,
    # so the first container's secret is dropped and that container fails again.
    off(plane, ns)
    port = registries.private.host.rsplit(":", 1)[1]
    push_image(registries.private, "team/r22-a", "1.0")
    push_image(registries.private, "team/r22-b", "1.0")
    first = f"127.0.0.1:{port}/team/r22-a:1.0"
    second = f"localhost:{port}/team/r22-b:1.0"
    body = json.loads(pod("two", ns, first))
    body["spec"]["containers"].append({"name": "side", "image": second})
    plane.apply(json.dumps(body), check=True)
    set_status(
        plane,
        ns,
        "two",
        {
            "containerStatuses": [
                waiting("app", first, CONTAINERD_AMBIGUOUS.format(image=first)),
                waiting("side", second, CONTAINERD_AMBIGUOUS.format(image=second)),
            ]
        },
    )
    result = pullguard(plane, registries, "diagnose", "two", "-n", ns)
    assert result.returncode == 0, result.stderr
    fixes = printed_fixes(result.stdout)
    assert len(fixes) == 2, result.stdout
    for fix in fixes:
        run_printed(plane, fix, USER="user", PASSWORD="pass")
    listed = [s["name"] for s in plane.get_json("pod", "two", "-n", ns)["spec"]["imagePullSecrets"]]
    assert len(listed) == 2, f"after both fixes as printed the pod lists only {listed}:\n" + (
        "\n".join(fixes)
    )


def audit_fix(plane: ControlPlane, registries: E2ERegistries, ns: str, header: str) -> str:
    """The one Fix line under ``header`` (``DENY ReplicaSet NS/web``) of ``audit -n ns``."""
    audited = pullguard(plane, registries, "audit", "-n", ns)
    assert header in audited.stdout, audited.stdout
    section = audited.stdout.split(header, 1)[1].split("\nDENY ", 1)[0].split("\nWARN ", 1)[0]
    (fix,) = printed_fixes(section)
    return fix


def audit_set_image_on_an_owner_that_keeps_its_pods(
    plane: ControlPlane, ns: str, registries: E2ERegistries, kind: str
) -> None:
    # audit of a bare ReplicaSet (or a StatefulSet whose pod never became ready) on a tag
    # never pushed: the fix is `kubectl set image replicaset/web app=...:1.0` alone. It
    # changes the template, and the ReplicaSet keeps its stuck pod (diagnose learned to add
    # `&& kubectl delete pod ...`, review F4-F8; audit did not): the pod as printed-fixed
    # still pulls the missing tag.
    off(plane, ns)
    push_image(registries.public, "team/r22-keeps", "1.0")
    missing = f"{registries.public.host}/team/r22-keeps:1.1"
    owner: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": missing}]},
            },
        },
    }
    if kind == "StatefulSet":
        owner["spec"]["serviceName"] = "web"
    plane.apply(json.dumps(owner), check=True)
    wait_for(lambda: plane.get_json("pods", "-n", ns, "-l", "app=web")["items"] or None, 60, "pod")
    plane.kubectl("label", "namespace", ns, "pullguard.io/mode-", check=True)
    fix = audit_fix(plane, registries, ns, f"DENY {kind} {ns}/web")
    run_printed(plane, fix)
    meant = f"{registries.public.host}/team/r22-keeps:1.0"
    try:
        wait_for(
            lambda: all(
                p["spec"]["containers"][0]["image"] == meant
                for p in plane.get_json("pods", "-n", ns, "-l", "app=web")["items"]
            ),
            20,
            "the stuck pod remade with the tag meant",
        )
    except Exception as error:
        raise AssertionError(
            f"after the printed fix\n{fix}\nthe pod still pulls {missing}"
        ) from error


def test_rev22_rs_audits_set_image_on_a_bare_replicaset_replaces_its_stuck_pod(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    audit_set_image_on_an_owner_that_keeps_its_pods(plane, ns, registries, "ReplicaSet")


def test_rev22_sts_audits_set_image_on_a_statefulset_replaces_its_stuck_pod(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    audit_set_image_on_an_owner_that_keeps_its_pods(plane, ns, registries, "StatefulSet")


def test_rev22_audits_fix_for_a_running_bare_pod_does_not_edit_its_pull_secrets(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    # audit of a bare Pod (in the cluster, so running or stuck) on a private registry with
    # no secret: the fix says "then add {name: regcred-...} to the imagePullSecrets in the
    # manifest". A Pod's imagePullSecrets cannot change: the manifest edited and applied is
    # refused ("pod updates may not change fields other than ..."). Issue 22 item 2: say to
    # recreate it (as diagnose does).
    off(plane, ns)
    private = f"{registries.private.host}/team/r22-audited-bare:1.0"
    push_image(registries.private, "team/r22-audited-bare", "1.0")
    plane.apply(pod("bare", ns, private), check=True)
    plane.kubectl("label", "namespace", ns, "pullguard.io/mode-", check=True)
    fix = audit_fix(plane, registries, ns, f"DENY Pod {ns}/bare")
    create = fix.split(", then ", 1)[0]
    run_printed(plane, create, USER="user", PASSWORD="pass")  # the secret is created
    secret = fix.split("{name: ", 1)[1].split("}", 1)[0] if "{name: " in fix else "regcred"
    edited = json.loads(pod("bare", ns, private, secrets=(secret,)))
    applied = plane.apply(json.dumps(edited))  # "add it to the manifest", applied
    assert applied.returncode == 0, (
        f"{fix}\nthe manifest edited as told and applied:\n{applied.stderr}"
    )
