"""Outside review rev22b of issue 22 (the words: messages, fixes, diagnose, audit, check).

Each test is a finding: a fix pullguard prints, run exactly as printed (placeholders USER and
PASSWORD filled in) against the real API server, that does not make the pod pull; or words
that send the person the wrong way. There is no kubelet: failing pods get the status and
event a kubelet writes (see tests/e2e/test_diagnose_audit.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.cluster import ControlPlane, wait_for
from tests.e2e.conftest import E2ERegistries, pull_secret
from tests.e2e.test_decisions import wait_for_mode
from tests.e2e.test_diagnose_audit import (
    CONTAINERD_NOT_FOUND,
    _owned_pod,
    fix_lines,
    mark_failing,
    off,
    pullguard,
    run_printed,
)
from tests.e2e.test_registry import node_manifest
from tests.integration.registries import push_image

pytestmark = pytest.mark.e2e

DOCKER_HUB_RATE_LIMIT = (
    'failed to pull and unpack image "{image}": failed to copy: httpReadSeeker: failed open: '
    "unexpected status code https://registry-1.docker.io/v2/library/nginx/manifests/sha256:"
    "0f04e4f646a3f14bf31d8bc8d885b6c951fdcf42589d06845f64d18aec6a3c4d: 429 Too Many Requests - "
    "Server message: toomanyrequests: You have reached your pull rate limit. You may increase "
    "the limit by authenticating and upgrading: https://www.docker.com/increase-rate-limit"
)


def replicaset(name: str, ns: str, image: str) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "app", "image": image}]},
                },
            },
        }
    )


def debug_fix(plane: ControlPlane, ns: str, pod: str, image: str, target: str = "app") -> str:
    """``kubectl debug POD --image=IMAGE --target=TARGET -c dbg``, as a person runs it:
    denied, and the one Fix line of the denial."""
    result = plane.kubectl(
        "debug", pod, "-n", ns, f"--image={image}", f"--target={target}", "-c", "dbg"
    )
    assert "denied the request" in result.stderr, result.stdout + result.stderr
    (fix,) = fix_lines(result.stderr)
    return fix


def run_fix(plane: ControlPlane, fix: str) -> None:
    """A denial's "kubectl create secret ..., then ...: kubectl patch ..." run as a person
    does: the create (its placeholders filled in), then the command after "then"."""
    create, then = fix.split(", then ", 1)
    run_printed(plane, create, USER="user", PASSWORD="pass")
    run_printed(plane, then)


def test_rev22b_rate_limit_fix_for_a_replicasets_pod_runs_as_printed(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: diagnose of a ReplicaSet's (or a Job's) pod rate limited by Docker Hub prints
    ``... && kubectl patch serviceaccount default ... && kubectl delete pod web-xxxxx -n NS
    (its ReplicaSet makes a new one)``: _Fixer.docker_hub_login strips "to retry now: " from
    retry() but keeps its parenthesised words, so bash stops at a syntax error ("near
    unexpected token `('") and nothing runs, not even the secret's create.
    Expected: a command that runs as printed, after which the ServiceAccount lists the
    ``dockerhub`` secret (and the stuck pod is remade)."""
    off(plane, ns)
    image = "docker.io/library/nginx:1.25"
    plane.apply(replicaset("web", ns, image), check=True)
    name = _owned_pod(plane, ns, "app=web")
    mark_failing(plane, ns, name, image, DOCKER_HUB_RATE_LIMIT.format(image=image))
    result = pullguard(plane, registries, "diagnose", name, "-n", ns)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[rate_limited" in result.stdout, result.stdout
    (fix,) = fix_lines(result.stdout)
    run_printed(plane, fix, USER="user", PASSWORD="pass")
    account = plane.get_json("serviceaccount", "default", "-n", ns)
    assert {"name": "dockerhub"} in (account.get("imagePullSecrets") or []), fix


def test_rev22b_debug_fix_on_a_bare_replicasets_pod_gives_that_pod_the_secret(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: ``kubectl debug`` of a bare ReplicaSet's pod with an image from a private
    registry is denied with "... then add {name: regcred-...} to the imagePullSecrets of the
    pod template of ReplicaSet web (it makes the pod): kubectl patch replicaset/web ...".
    Run as printed, the ReplicaSet's template changes and its pod does not (a ReplicaSet keeps
    the pods it has: PodOwner.where_to_add has no remake_stuck_pods, which diagnose and audit
    add for KEEPS_ITS_PODS owners); the same ``kubectl debug`` is denied again, with the same
    fix, whose ``kubectl create secret`` now fails (AlreadyExists).
    Expected: after the printed fix the ReplicaSet's pods list the secret (the pod deleted so
    that it is remade from the patched template), and the debug is admitted on one of them."""
    push_image(registries.private, "team/r22b-debug", "1.0")
    private = f"{registries.private.host}/team/r22b-debug:1.0"
    push_image(registries.public, "team/r22b-app", "1.0")
    plane.apply(replicaset("web", ns, f"{registries.public.host}/team/r22b-app:1.0"), check=True)
    wait_for_mode(plane, ns, "enforce")
    name = _owned_pod(plane, ns, "app=web")
    fix = debug_fix(plane, ns, name, private)
    assert "kubectl patch replicaset/web" in fix, fix
    run_fix(plane, fix)
    try:
        wait_for(
            lambda: all(
                p["spec"].get("imagePullSecrets")
                for p in plane.get_json("pods", "-n", ns, "-l", "app=web")["items"]
            ),
            20,
            "the ReplicaSet's pod with the secret",
        )
    except Exception as error:
        raise AssertionError(
            f"after the printed fix\n{fix}\nthe ReplicaSet's pod {name} still lists no secret, "
            "so the same kubectl debug is denied again"
        ) from error


def test_rev22b_debug_fix_on_a_pod_whose_deployment_is_gone_names_what_exists(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: a Deployment deleted with ``--cascade=orphan`` leaves its ReplicaSet
    (web-HASH, no owner now) and pods (label pod-template-hash=HASH). ``kubectl debug`` of
    such a pod with a private image is denied with "... of the pod template of Deployment web
    (it makes the pod): kubectl patch deployment/web ...": pod_owner (core/checks.py) takes
    the Deployment's name from the ReplicaSet's name and the pod's pod-template-hash label,
    never asking whether the ReplicaSet has that owner. Run as printed: Error from server
    (NotFound): deployments.apps "web" not found.
    Expected: a fix on what makes the pod (the ReplicaSet web-HASH), that runs."""
    push_image(registries.private, "team/r22b-orphan", "1.0")
    private = f"{registries.private.host}/team/r22b-orphan:1.0"
    push_image(registries.public, "team/r22b-app", "1.0")
    plane.kubectl(
        "create",
        "deployment",
        "web",
        "-n",
        ns,
        f"--image={registries.public.host}/team/r22b-app:1.0",
        check=True,
    )
    name = _owned_pod(plane, ns, "app=web")
    plane.kubectl("delete", "deployment", "web", "-n", ns, "--cascade=orphan", check=True)
    wait_for(
        lambda: (
            not plane.get_json("replicasets", "-n", ns)["items"][0]["metadata"].get(
                "ownerReferences"
            )
        ),
        30,
        "the ReplicaSet orphaned",
    )
    fix = debug_fix(plane, ns, name, private, target="r22b-app")
    run_fix(plane, fix)


def test_rev22b_a_tenants_own_secret_named_like_a_default_secret_is_not_called_a_copy(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: with the e2e configuration (defaultPullSecrets: corp-pull from namespace
    pullguard, for corp.example.com), a tenant's own Secret that happens to be named
    corp-pull (no pullguard label, no proof annotation: pullguard never made nor synced it),
    with a wrong password for the private registry, is called "pullguard's copy of
    pullguard/corp-pull (defaultPullSecrets), which pullguard keeps in step: replace the
    source: kubectl delete secret corp-pull -n pullguard && kubectl create secret
    docker-registry corp-pull -n pullguard --docker-server=127.0.0.1:PORT ...". The copy is
    recognised by name alone (imagecheck: ``default_sources.get(stale)``). Run by an admin,
    it deletes the real source, holding corp.example.com's login, and replaces it with the
    private registry's only; the tenant's wrong secret stays wrong.
    Expected: the fix replaces the tenant's own secret in its namespace, never the source."""
    push_image(registries.private, "team/r22b-own", "1.0")
    image = f"{registries.private.host}/team/r22b-own:1.0"
    wrong = "dXNlcjp3cm9uZw=="  # user:wrong
    plane.apply(pull_secret("corp-pull", ns, registries.private.host, wrong), check=True)
    manifest = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p", "namespace": ns},
            "spec": {
                "containers": [{"name": "app", "image": image}],
                "imagePullSecrets": [{"name": "corp-pull"}],
            },
        }
    )
    result = plane.apply(manifest, "--dry-run=server")
    assert "denied the request" in result.stderr, result.stderr
    (fix,) = fix_lines(result.stderr)
    assert "-n pullguard" not in fix, fix
    assert "copy of" not in fix, fix


def daemonset(name: str, ns: str, image: str, strategy: str) -> str:
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "updateStrategy": {"type": strategy},
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {
                        "tolerations": [{"operator": "Exists"}],
                        "containers": [{"name": "app", "image": image}],
                    },
                },
            },
        }
    )


def pods_run(plane: ControlPlane, ns: str, selector: str, image: str, fix: str) -> None:
    try:
        wait_for(
            lambda: all(
                p["spec"]["containers"][0]["image"] == image
                for p in plane.get_json("pods", "-n", ns, "-l", selector)["items"]
            ),
            20,
            f"the pods remade with {image}",
        )
    except Exception as error:
        pods: list[Any] = plane.get_json("pods", "-n", ns, "-l", selector)["items"]
        shown = [(p["metadata"]["name"], p["spec"]["containers"][0]["image"]) for p in pods]
        raise AssertionError(f"after the printed fix\n{fix}\nthe pods are still {shown}") from error


def on_delete_daemonset_fixed_as_printed(
    plane: ControlPlane, ns: str, registries: E2ERegistries, command: str
) -> None:
    """Seen: a DaemonSet with ``updateStrategy: OnDelete`` on a tag never pushed. diagnose
    and audit print ``kubectl set image daemonset/agent app=...:1.0 -n NS`` alone: the
    template changes and the DaemonSet keeps its stuck pod (OnDelete replaces a pod only when
    it is deleted), which still pulls the missing tag. KEEPS_ITS_PODS
    (core/fixcommands.py) holds StatefulSet (whose OnDelete is the same) but no DaemonSet;
    a RollingUpdate DaemonSet does replace it (checked by hand).
    Expected: for an OnDelete DaemonSet (and an OnDelete StatefulSet, already there) the fix
    deletes the stuck pod after the patch."""
    node = f"r22b-node-{command}"
    plane.apply(node_manifest(node, "linux", "amd64", []), check=True)
    try:
        off(plane, ns)
        push_image(registries.public, "team/r22b-agent", "1.0")
        missing = f"{registries.public.host}/team/r22b-agent:1.1"
        meant = f"{registries.public.host}/team/r22b-agent:1.0"
        plane.apply(daemonset("agent", ns, missing, "OnDelete"), check=True)
        name = _owned_pod(plane, ns, "app=agent")
        plane.kubectl("label", "namespace", ns, "pullguard.io/mode-", check=True)
        mark_failing(plane, ns, name, missing, CONTAINERD_NOT_FOUND.format(image=missing))
        if command == "diagnose":
            result = pullguard(plane, registries, "diagnose", name, "-n", ns)
        else:
            result = pullguard(plane, registries, "audit", "-n", ns)
        (fix,) = fix_lines(result.stdout)
        run_printed(plane, fix)
        pods_run(plane, ns, "app=agent", meant, fix)
    finally:
        plane.kubectl("delete", "node", node, "--wait=false")


def test_rev22b_diagnose_of_an_on_delete_daemonsets_stuck_pod_is_fixed_as_printed(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    on_delete_daemonset_fixed_as_printed(plane, ns, registries, "diagnose")


def test_rev22b_audit_of_an_on_delete_daemonsets_stuck_pod_is_fixed_as_printed(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    on_delete_daemonset_fixed_as_printed(plane, ns, registries, "audit")


def test_rev22b_a_paused_deployments_stuck_pod_is_fixed_by_what_is_printed(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: a Deployment paused (``kubectl rollout pause``, as a careful rollout does) on a
    tag never pushed: diagnose prints ``kubectl set image deployment/web ...`` alone; a paused
    Deployment rolls nothing out, so its pod keeps pulling the missing tag until someone
    resumes it, which the fix does not say.
    Expected: the fix says the Deployment is paused and resumes it (``&& kubectl rollout
    resume deployment/web -n NS``), or says why it does not."""
    off(plane, ns)
    push_image(registries.public, "team/r22b-paused", "1.0")
    missing = f"{registries.public.host}/team/r22b-paused:1.1"
    meant = f"{registries.public.host}/team/r22b-paused:1.0"
    plane.kubectl("create", "deployment", "web", "-n", ns, f"--image={missing}", check=True)
    name = _owned_pod(plane, ns, "app=web")
    plane.kubectl("rollout", "pause", "deployment/web", "-n", ns, check=True)
    plane.kubectl("label", "namespace", ns, "pullguard.io/mode-", check=True)
    container = plane.get_json("pod", name, "-n", ns)["spec"]["containers"][0]["name"]
    mark_failing(plane, ns, name, missing, CONTAINERD_NOT_FOUND.format(image=missing), container)
    result = pullguard(plane, registries, "diagnose", name, "-n", ns)
    assert result.returncode == 0, result.stdout + result.stderr
    (fix,) = fix_lines(result.stdout)
    run_printed(plane, fix)
    # There is no kubelet: the rolled-out pod pulls the meant tag and becomes Ready as a
    # kubelet would report it, or the rolling update (maxUnavailable 0 for one replica)
    # keeps the stuck pod until it does. Paused, no such pod is ever made.
    new = wait_for(
        lambda: [
            p["metadata"]["name"]
            for p in plane.get_json("pods", "-n", ns, "-l", "app=web")["items"]
            if p["spec"]["containers"][0]["image"] == meant
        ],
        20,
        f"a pod rolled out with {meant}",
    )
    for ready in new:
        mark_ready(plane, ns, ready, meant, container)
    pods_run(plane, ns, "app=web", meant, fix)


def mark_ready(plane: ControlPlane, ns: str, name: str, image: str, container: str) -> None:
    """Pod ``name`` Running and Ready with ``image``, as the kubelet writes it."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": now}
                for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            "containerStatuses": [
                {
                    "name": container,
                    "image": image,
                    "imageID": "",
                    "ready": True,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": now}},
                }
            ],
        }
    }
    plane.kubectl(
        "patch",
        "pod",
        name,
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
        check=True,
    )
