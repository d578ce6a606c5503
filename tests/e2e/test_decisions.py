"""Decisions a platform team can trust, on the real API server and controller-manager.

No denial of what would run, no failure caused by pullguard, and every fix a denial suggests
works when a user runs it exactly as printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.e2e.cluster import ControlPlane, Result, wait_for
from tests.e2e.conftest import pod, pull_secret, service_account
from tests.e2e.test_kubectl import deployment, jsonpath

pytestmark = pytest.mark.e2e


def wait_for_mode(plane: ControlPlane, ns: str, mode: str) -> None:
    """Label the namespace and wait until pullguard's namespace cache has it."""
    plane.kubectl("label", "namespace", ns, f"pullguard.io/mode={mode}", "--overwrite", check=True)
    probe = pod("probe", ns, "Probe:Image")
    wait_for(
        lambda: ("denied" in plane.apply(probe, "--dry-run=server").stderr) == (mode == "enforce"),
        30,
        f"mode {mode} in {ns}",
    )


def test_scaling_a_workload_never_loses_pods_to_advice(plane: ControlPlane, ns: str) -> None:
    # A Deployment admitted while its namespace only warned, whose image pullguard has advice
    # about (a moving tag with IfNotPresent). After the namespace is switched to enforce,
    # scaling it up must still create its pods: the advice is a warning on them.
    wait_for_mode(plane, ns, "warn")
    manifest = deployment("web", ns, "nginx:latest", replicas=0).replace(
        'image: "nginx:latest"}', 'image: "nginx:latest", imagePullPolicy: IfNotPresent}'
    )
    assert plane.apply(manifest).ok
    wait_for_mode(plane, ns, "enforce")
    # A Pod made by hand with that spec is denied now: the rule is enforced ...
    by_hand = json.loads(pod("manual", ns, "nginx:latest"))
    by_hand["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    assert not plane.apply(json.dumps(by_hand), "--dry-run=server").ok
    # ... but the ReplicaSet's pods are made.
    plane.kubectl("scale", "deployment", "web", "-n", ns, "--replicas=2", check=True)
    wait_for(
        lambda: (
            len(
                jsonpath(
                    plane, "pods", "-n", ns, "-l", "app=web", path="{.items[*].metadata.name}"
                ).split()
            )
            == 2
        ),
        60,
        "two pods of the scaled Deployment",
    )


def test_a_missing_secret_that_is_not_needed_does_not_deny(plane: ControlPlane, ns: str) -> None:
    plane.apply(pull_secret("regcred", ns, "registry.example.com"), check=True)
    result = plane.apply(pod("app", ns, "registry.example.com/team/app:1", ("regcred", "legacy")))
    assert result.ok, result.stderr
    assert 'imagePullSecret "legacy" does not exist' in result.stderr
    assert "(not needed)" in result.stderr
    # kubectl debug of a pod whose list names a missing secret: not blocked.
    assert plane.apply(pod("target", ns, "nginx:1.25", ("gone",))).ok
    debug = plane.kubectl("debug", "target", "-n", ns, "--image=busybox:1.36")
    assert debug.ok, debug.stderr


def test_an_image_pulled_never_is_not_rewritten(plane: ControlPlane, ns: str) -> None:
    body = json.loads(pod("preloaded", ns, "nginx:1.25"))
    body["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    assert plane.apply(json.dumps(body)).ok
    image = jsonpath(plane, "pod", "preloaded", "-n", ns, path="{.spec.containers[0].image}")
    assert image == "nginx:1.25"


def test_set_image_updates_the_recorded_original(plane: ControlPlane, ns: str) -> None:
    assert plane.apply(pod("web", ns, "nginx:1.25")).ok
    plane.kubectl("set", "image", "pod/web", "app=nginx:1.26", "-n", ns, check=True)
    stored = plane.get_json("pod", "web", "-n", ns)
    assert stored["spec"]["containers"][0]["image"] == (
        "mirror.example.com/dockerhub/library/nginx:1.26"
    )
    recorded = json.loads(stored["metadata"]["annotations"]["pullguard.io/original-images"])
    assert recorded == {"app": "nginx:1.26"}


def test_a_blank_secret_name_hides_the_service_accounts_secrets(
    plane: ControlPlane, ns: str
) -> None:
    plane.apply(pull_secret("regcred", ns, "registry.example.com"), check=True)
    plane.apply(service_account("builder", ns, ("regcred",)), check=True)
    manifest = deployment("web", ns, "registry.example.com/team/web:1").replace(
        "      containers:",
        "      serviceAccountName: builder\n"
        '      imagePullSecrets: [{name: ""}]\n'
        "      containers:",
    )
    result = plane.apply(manifest)
    assert not result.ok
    assert "the template's own imagePullSecrets hide ServiceAccount \"builder\"'s" in result.stderr
    # Without the blank entry the account's secret reaches the pods: admitted.
    assert plane.apply(manifest.replace('      imagePullSecrets: [{name: ""}]\n', "")).ok


def test_an_upper_case_single_label_host_warns(plane: ControlPlane, ns: str) -> None:
    result = plane.apply(pod("shell", ns, "Bitnami/os-shell:12"))
    assert result.ok, result.stderr
    assert "did you mean docker.io/bitnami/os-shell:12" in result.stderr


# -- every fix command works ----------------------------------------------------------------


def fixes(stderr: str) -> list[str]:
    return [line.split("Fix: ", 1)[1] for line in stderr.splitlines() if "  Fix: " in line]


def run_fix(plane: ControlPlane, fix: str) -> None:
    """Run the kubectl part of a fix exactly as printed (up to ', then ...')."""
    command = fix[fix.index("kubectl") :].split(", then ", maxsplit=1)[0]
    done = subprocess.run(
        ["bash", "-c", command],
        env=dict(os.environ, KUBECONFIG=str(plane.kubeconfig)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{command}\n{done.stderr}"


def denied(result: Result) -> str:
    assert not result.ok, result.stdout
    assert "pullguard denied" in result.stderr, result.stderr
    return result.stderr


def test_every_fix_command_works_when_run_as_printed(plane: ControlPlane, ns: str) -> None:
    image = "registry.example.com/team/app:1"
    ran = 0

    # A missing secret: the create command.
    missing = pod("missing", ns, image, ("absent",))
    (fix,) = fixes(denied(plane.apply(missing)))
    run_fix(plane, fix)
    ran += 1
    assert plane.apply(missing).ok

    # A secret in another namespace: the copy pipeline.
    plane.apply(pull_secret("shared", "other", "registry.example.com"), check=True)
    elsewhere = pod("elsewhere", ns, image, ("shared",))
    (fix,) = fixes(denied(plane.apply(elsewhere)))
    run_fix(plane, fix)
    ran += 1
    assert plane.apply(elsewhere).ok

    # No secret covers the registry: create it, add it to the manifest, apply again.
    uncovered = json.loads(pod("uncovered", ns, image))
    (fix,) = fixes(denied(plane.apply(json.dumps(uncovered))))
    run_fix(plane, fix)
    ran += 1
    name = re.search(r"add \{name: ([a-z0-9-]+)\} to the manifest", fix)
    assert name is not None, fix
    uncovered["spec"]["imagePullSecrets"] = [{"name": name.group(1)}]
    assert plane.apply(json.dumps(uncovered)).ok

    # A malformed secret: delete and recreate. (The API server refuses invalid JSON in a
    # dockerconfigjson secret itself; valid JSON the kubelet cannot use still gets through.)
    broken = json.loads(pull_secret("broken", ns, "registry.example.com", auth="not base64!"))
    plane.apply(json.dumps(broken), check=True)
    malformed = pod("malformed", ns, image, ("broken",))
    (fix,) = fixes(denied(plane.apply(malformed)))
    run_fix(plane, fix)
    ran += 1
    assert plane.apply(malformed).ok

    # A bad reference in a Pod being created: the manifest's image is replaced.
    bad = pod("bad", ns, "docker.io/Library/Nginx:1.25")
    (fix,) = fixes(denied(plane.apply(bad)))
    corrected = re.search(r"use image '([^']+)' in the manifest", fix)
    assert corrected is not None and "kubectl" not in fix, fix
    assert plane.apply(bad.replace("docker.io/Library/Nginx:1.25", corrected.group(1))).ok

    # A bad reference set on an existing Deployment: kubectl set image, as printed.
    assert plane.apply(
        deployment("web", ns, "registry.example.com/team/web:1", secrets=("absent",))
    ).ok
    bad_update = deployment("web", ns, "registry.example.com/Team/web:2", secrets=("absent",))
    (fix,) = fixes(denied(plane.apply(bad_update)))
    assert fix.startswith("use image 'registry.example.com/team/web:2': kubectl set image")
    run_fix(plane, fix)
    ran += 1
    assert jsonpath(
        plane, "deployment", "web", "-n", ns, path="{.spec.template.spec.containers[0].image}"
    ) == ("registry.example.com/team/web:2")
    assert ran == 5


def test_a_denial_names_the_secret_the_pod_has_and_its_fix_works(
    plane: ControlPlane, ns: str
) -> None:
    # Issue 22 item 1: the pod lists a secret whose entry is a path prefix that misses the
    # image; the denial names it and why, instead of "the pod has no imagePullSecrets".
    plane.apply(pull_secret("team-only", ns, "registry.example.com/other"), check=True)
    body = json.loads(pod("prefixed", ns, "registry.example.com/team/app:1", ("team-only",)))
    stderr = denied(plane.apply(json.dumps(body)))
    assert "has no imagePullSecrets" not in stderr
    assert (
        "the pod's imagePullSecrets \"team-only\" (entry 'registry.example.com/other' covers "
        "only the path /other, not /team/app) do not cover registry.example.com/team/app"
    ) in stderr
    (fix,) = fixes(stderr)
    run_fix(plane, fix)
    name = re.search(r"add \{name: ([a-z0-9-]+)\} to the manifest", fix)
    assert name is not None, fix
    body["spec"]["imagePullSecrets"].append({"name": name.group(1)})
    assert plane.apply(json.dumps(body)).ok
