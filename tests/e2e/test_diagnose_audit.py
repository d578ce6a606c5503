"""``pullguard diagnose`` and ``pullguard audit`` against the real API server.

There is no kubelet here: pods are created where pullguard's admission is off, and their
status and events are written the way a kubelet writes them (the runtime's own texts, from
tests/fixtures/pull-failures.yaml). The images live on real registries on loopback, so the
live re-check asks them."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ROOT, free_port
from tests.e2e import test_cli as cli
from tests.e2e.cluster import ControlPlane, wait_for
from tests.e2e.conftest import E2ERegistries, Installation, pod, pull_secret, spawn_pullguard
from tests.e2e.test_decisions import wait_for_mode
from tests.e2e.test_kubectl import deployment, jsonpath
from tests.integration.registries import push_image, push_index

pytestmark = pytest.mark.e2e

CONTAINERD_NOT_FOUND = (
    'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": failed to '
    'resolve reference "{image}": {image}: not found'
)
CONTAINERD_AMBIGUOUS = (
    'failed to pull and unpack image "{image}": failed to resolve reference "{image}": pull '
    "access denied, repository does not exist or may require authorization: server message: "
    "insufficient_scope: authorization failed"
)


def pullguard(
    plane: ControlPlane, registries: E2ERegistries, *args: str
) -> subprocess.CompletedProcess[str]:
    """The CLI as the admin, trusting the test registries' CA."""
    return cli.pullguard(plane, *args, env={"SSL_CERT_FILE": str(registries.ca)}, timeout=120)


def off(plane: ControlPlane, ns: str) -> None:
    """pullguard's admission off in ``ns`` (and known to it): the failing pods must exist to
    be diagnosed."""
    wait_for_mode(plane, ns, "off")


def admitted_while_off(plane: ControlPlane, ns: str, name: str, image: str) -> None:
    """A Deployment of ``image`` created while admission was off in ``ns``; admission is on
    again when this returns (what an audit finds: objects older than a rule)."""
    off(plane, ns)
    plane.apply(deployment(name, ns, image), check=True)
    plane.kubectl("label", "namespace", ns, "pullguard.io/mode-", check=True)


def failing_pod(
    plane: ControlPlane, ns: str, name: str, image: str, message: str, **spec: Any
) -> None:
    """A pod whose container is in ImagePullBackOff, with the kubelet's Failed event."""
    plane.apply(pod(name, ns, image, **spec), check=True)
    mark_failing(plane, ns, name, image, message)


def mark_failing(
    plane: ControlPlane, ns: str, name: str, image: str, message: str, container: str = "app"
) -> None:
    """Pod ``name``'s ``container`` in ImagePullBackOff, as the kubelet writes it."""
    status = {
        "status": {
            "phase": "Pending",
            "containerStatuses": [
                {
                    "name": container,
                    "image": image,
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": "ImagePullBackOff", "message": message}},
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
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{name}.{uuid.uuid4().hex[:8]}", "namespace": ns},
        "involvedObject": {
            "kind": "Pod",
            "name": name,
            "namespace": ns,
            "fieldPath": f"spec.containers{{{container}}}",
        },
        "reason": "Failed",
        "type": "Warning",
        "message": f'Failed to pull image "{image}": {message}',
        "source": {"component": "kubelet"},
    }
    plane.apply(json.dumps(event), check=True)


def test_diagnose_confirms_a_missing_tag_with_the_registry(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    off(plane, ns)
    host = registries.public.host
    push_image(registries.public, "team/diag", "1.0")
    image = f"{host}/team/diag:1.1"
    failing_pod(plane, ns, "web", image, CONTAINERD_NOT_FOUND.format(image=image))
    result = pullguard(plane, registries, "diagnose", "web", "-n", ns)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    print(out)  # the README's session is this output
    assert out.startswith(f"pullguard diagnosed Pod {ns}/web: 1 image failing to pull")
    assert "[not_found, confirmed]" in out
    assert "Evidence: kubelet: rpc error: code = NotFound" in out
    assert "has no tag '1.1' (tags there include '1.0')" in out
    assert (
        f"Fix: push '1.1' first, or use tag '1.0' if that was meant: kubectl set image pod/web "
        f"app={host}/team/diag:1.0 -n {ns}" in out
    )


def test_diagnose_tells_private_from_missing_when_containerd_cannot(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    off(plane, ns)
    private = f"{registries.private.host}/team/secret-diag:1.0"
    push_image(registries.private, "team/secret-diag", "1.0")
    failing_pod(plane, ns, "private", private, CONTAINERD_AMBIGUOUS.format(image=private))
    missing = f"{registries.public.host}/team/never-pushed:1.0"
    failing_pod(plane, ns, "missing", missing, CONTAINERD_AMBIGUOUS.format(image=missing))

    result = pullguard(plane, registries, "diagnose", "--all", "-n", ns, "--output", "json")
    assert result.returncode == 0, result.stderr
    pods = {p["name"]: p["images"][0] for p in json.loads(result.stdout)["pods"]}
    assert pods["private"]["cause"] == "unauthorized"
    assert pods["private"]["verdict"] == "confirmed"
    assert any("anonymously" in e for e in pods["private"]["evidence"])
    assert any("kubectl create secret docker-registry" in f for f in pods["private"]["fixes"])
    # containerd said "may require authorization"; the registry says it does not exist.
    assert pods["missing"]["verdict"] == "corrected"
    assert "has no repository 'team/never-pushed'" in pods["missing"]["summary"]


def test_diagnose_a_pod_that_is_fine_or_missing(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    off(plane, ns)
    plane.apply(pod("fine", ns, "nginx:1.25"), check=True)
    fine = pullguard(plane, registries, "diagnose", "fine", "-n", ns)
    assert fine.returncode == 1
    assert f"pod {ns}/fine is not failing on an image" in fine.stdout
    nothing = pullguard(plane, registries, "diagnose", "nope", "-n", ns)
    assert nothing.returncode == 2
    assert f"pod {ns}/nope not found" in nothing.stderr
    assert pullguard(plane, registries, "diagnose", "-n", ns).returncode == 2
    # Issue 22 review items 5, 6: no double negative, and a namespace that does not exist
    # is said to be missing (exit 2), not an empty success.
    none = pullguard(plane, registries, "diagnose", "--all", "-n", ns)
    assert none.returncode == 1
    assert f"pullguard: no pod in namespace {ns} is failing on an image" in none.stdout
    for command in ("diagnose", "audit"):
        gone = pullguard(
            plane,
            registries,
            command,
            *(["--all"] * (command == "diagnose")),
            "-n",
            "no-such-ns-r22",
        )
        assert gone.returncode == 2, gone.stdout
        assert 'namespace "no-such-ns-r22" does not exist' in gone.stderr
        assert "scanned" not in gone.stdout


def test_audit_finds_what_would_be_denied_today(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    host = registries.public.host
    push_image(registries.public, "team/audited", "1.0")
    # The tag was never pushed; the audit says what admission would deny today.
    admitted_while_off(plane, ns, "broken", f"{host}/team/audited:9.9")
    assert plane.apply(deployment("good", ns, f"{host}/team/audited:1.0")).ok
    plane.apply(pull_secret("regcred", ns, "other.example.com"), check=True)
    text = pullguard(plane, registries, "audit", "-n", ns)
    assert text.returncode == 1, text.stderr
    print(text.stdout)  # the README's session is this output
    assert f"DENY Deployment {ns}/broken" in text.stdout
    assert "has no tag '9.9' (tags there include '1.0')" in text.stdout
    # No finding for the good one (this control plane has no Node, so it is listed under
    # "not checked by platform", with every object: the platform check could not run).
    assert f"DENY Deployment {ns}/good" not in text.stdout
    assert f"WARN Deployment {ns}/good" not in text.stdout
    assert "not checked by platform: no Node says its kubernetes.io/os" in text.stdout
    assert f"{ns:<24} registry         1     0" in text.stdout
    assert "\r" not in text.stderr  # piped: no progress line
    as_json = pullguard(plane, registries, "audit", "-n", ns, "--output", "json")
    document = json.loads(as_json.stdout)
    names = {(o["kind"], o["name"]) for o in document["objects"]}
    assert ("Deployment", "broken") in names
    # The ReplicaSets the Deployment controller made are judged through their owner.
    assert not any(kind == "ReplicaSet" for kind, _ in names)
    assert document["summary"][ns]["registry"] == {"deny": 1, "warn": 0}
    assert document["configuration"] == "ConfigMap pullguard/pullguard-config"


def test_in_cluster_audit_publishes_metrics_and_events(
    installed: Installation, ns: str, registries: E2ERegistries, tmp_path: Path
) -> None:
    plane = installed.plane
    push_image(registries.public, "team/in-cluster", "1.0")
    admitted_while_off(plane, ns, "stale", f"{registries.public.host}/team/in-cluster:0.9")
    # The component's RBAC, applied as an admin would; pullguard then runs as its account.
    rbac = (ROOT / "deploy" / "components" / "in-cluster-audit" / "rbac.yaml").read_text()
    plane.apply(rbac, check=True)
    metrics_port = free_port()
    auditor = spawn_pullguard(
        plane,
        tmp_path,
        kubeconfig=installed.kubeconfig,
        port=free_port(),
        webhook_url=installed.webhook_url,
        name="auditor",
        extra=("--audit-interval", "2", "--metrics-port", str(metrics_port)),
        env={"SSL_CERT_FILE": str(registries.ca)},
    )
    try:
        wanted = f'pullguard_audit_findings{{action="deny",check="registry",namespace="{ns}"}} 1.0'

        def scraped() -> bool:
            try:
                text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).text
            except httpx.HTTPError:
                return False
            return wanted in text

        wait_for(scraped, 60, "the audit metric")
        events = plane.get_json("events", "-n", ns, "--field-selector", "reason=PullguardAudit")
        (event,) = [e for e in events["items"] if e["involvedObject"]["name"] == "stale"]
        assert event["involvedObject"]["kind"] == "Deployment"
        assert event["type"] == "Warning"
        assert "would be denied today" in event["message"]
        assert "has no tag '0.9'" in event["message"]
        # A steady state makes no new events: two more passes, still one.
        time.sleep(5)
        again = plane.get_json("events", "-n", ns, "--field-selector", "reason=PullguardAudit")
        assert len(again["items"]) == 1
        assert "audit pass failed" not in auditor.log_text()
    finally:
        auditor.stop()


def run_printed(plane: ControlPlane, fix: str, **placeholders: str) -> None:
    """Run a diagnosis's fix from its first kubectl as printed, with only its placeholders
    (USER, PASSWORD) filled in, as the person would."""
    command = fix[fix.index("kubectl") :]
    for placeholder, value in placeholders.items():
        command = command.replace(placeholder, value)
    done = subprocess.run(
        ["bash", "-c", command],
        env={**os.environ, "KUBECONFIG": str(plane.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{command}\n{done.stderr}"


def test_diagnose_of_a_bare_pod_recreates_it_with_the_secret_as_printed(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    # Issue 22: a bare pod's imagePullSecrets cannot change; the fix recreates it.
    off(plane, ns)
    private = f"{registries.private.host}/team/bare-diag:1.0"
    push_image(registries.private, "team/bare-diag", "1.0")
    failing_pod(plane, ns, "bare", private, CONTAINERD_AMBIGUOUS.format(image=private))
    missing = f"{registries.public.host}/team/never-pushed-bare:1.0"
    failing_pod(plane, ns, "typo", missing, CONTAINERD_AMBIGUOUS.format(image=missing))
    result = pullguard(plane, registries, "diagnose", "bare", "-n", ns)
    assert result.returncode == 0, result.stderr
    (fix,) = [line.split("Fix: ", 1)[1] for line in result.stdout.splitlines() if "Fix: " in line]
    assert "kubectl replace --force -f -" in fix and "in the manifest" not in fix, fix
    uid = plane.get_json("pod", "bare", "-n", ns)["metadata"]["uid"]
    run_printed(plane, fix, USER="user", PASSWORD="pass")
    recreated = plane.get_json("pod", "bare", "-n", ns)
    assert recreated["metadata"]["uid"] != uid
    secret = recreated["spec"]["imagePullSecrets"][0]["name"]
    assert secret.startswith("regcred-")
    assert plane.kubectl("get", "secret", secret, "-n", ns).ok
    # A bare pod with pull policy Never, on a node without the image: recreated with
    # IfNotPresent (a Pod's policy cannot change in place).
    never = f"{registries.public.host}/team/never-diag:1.0"
    push_image(registries.public, "team/never-diag", "1.0")
    body = json.loads(pod("cached", ns, never))
    body["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    plane.apply(json.dumps(body), check=True)
    message = f'Container image "{never}" is not present with pull policy of Never'
    mark_failing(plane, ns, "cached", never, message)
    (fix,) = [
        line.split("Fix: ", 1)[1]
        for line in pullguard(plane, registries, "diagnose", "cached", "-n", ns).stdout.splitlines()
        if "Fix: " in line
    ]
    run_printed(plane, fix)
    policy = plane.get_json("pod", "cached", "-n", ns)["spec"]["containers"][0]
    assert policy["imagePullPolicy"] == "IfNotPresent", fix
    # --all groups each pod by the cause its diagnosis settled on: the "may require
    # authorization" of the missing image is corrected to not_found.
    grouped = pullguard(plane, registries, "diagnose", "--all", "-n", ns)
    assert "\nnot_found (1): " in grouped.stdout, grouped.stdout
    assert f"  {ns}/typo " in grouped.stdout.split("\nnot_found (1): ", 1)[1].split("\n\n")[0]


def test_audit_counts_what_it_could_not_check_and_skips_its_own_namespace(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    # Issue 22 item 4: an audit that could not look never says "nothing".
    closed = f"127.0.0.1:{free_port()}"  # nothing listens there: connection refused
    image = f"{closed}/team/unreachable:1.0"
    admitted_while_off(plane, ns, "unchecked", image)
    text = pullguard(plane, registries, "audit", "-n", ns)
    assert text.returncode == 3, text.stdout + text.stderr
    assert "nothing would be denied or warned\n" not in text.stdout + "\n"
    lines = text.stdout.splitlines()
    (counted,) = [line for line in lines if "image not checked: " in line]
    assert counted.startswith("1 image not checked: unreachable")
    assert lines[lines.index(counted) + 1] == f"  {image}"
    document = json.loads(
        pullguard(plane, registries, "audit", "-n", ns, "--output", "json").stdout
    )
    assert [entry["image"] for entry in document["notChecked"]] == [image]
    # pullguard's own namespace is exempt at admission; the audit does not judge it either.
    own = deployment("own-broken", "pullguard", f"{registries.public.host}/team/never:0")
    plane.apply(own, check=True)
    try:
        result = pullguard(plane, registries, "audit", "-n", "pullguard")
        assert "own-broken" not in result.stdout, result.stdout
        assert result.returncode == 0, result.stdout
        # Issue 22 review F14: not judged is said, never "nothing would be denied or
        # warned" (the exit status stays 0: admission denies nothing there either).
        assert "nothing would be denied or warned" not in result.stdout, result.stdout
        assert "in namespace pullguard (pullguard's own namespace): exempt, not judged" in (
            result.stdout
        )
        exempt = json.loads(
            pullguard(plane, registries, "audit", "-n", "pullguard", "--output", "json").stdout
        )["exempt"]
        assert [(e["namespace"], e["why"]) for e in exempt] == [
            ("pullguard", "pullguard's own namespace")
        ]
        assert exempt[0]["objects"] >= 1
    finally:
        plane.kubectl("delete", "deployment", "own-broken", "-n", "pullguard", check=True)


def test_audit_of_a_namespace_whose_mode_is_off_does_not_say_nothing(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    # rev22 F5: a namespace labelled pullguard.io/mode=off is not judged at admission, like
    # an exempt one. The audit said "1 object scanned ... nothing would be denied or warned"
    # for one holding a pod on a tag never pushed: the words an exempt namespace no longer
    # gets (review F14): "mode off, not judged".
    off(plane, ns)
    push_image(registries.public, "team/r22-off", "1.0")
    missing = f"{registries.public.host}/team/r22-off:1.1"
    plane.apply(pod("broken", ns, missing), check=True)
    result = pullguard(plane, registries, "audit", "-n", ns)
    assert result.returncode == 0, result.stdout + result.stderr  # admission denies nothing
    assert "nothing would be denied or warned" not in result.stdout, result.stdout
    assert (
        f"1 object in namespace {ns} (labelled pullguard.io/mode=off): mode off, not judged"
        in result.stdout
    ), result.stdout
    document = json.loads(
        pullguard(plane, registries, "audit", "-n", ns, "--output", "json").stdout
    )
    assert document["modeOff"] == [
        {"namespace": ns, "objects": 1, "why": "labelled pullguard.io/mode=off"}
    ]


def test_diagnose_and_audit_of_what_exists_print_no_admission_time_words(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    # Issue 22 review F15: a pod that exists was not made by an apply: no "(yet)", no "if
    # this apply creates it in a later file"; and the audit's fix for an image that does not
    # exist sets the tag meant on the pod, as printed.
    off(plane, ns)
    private = f"{registries.private.host}/team/existing-diag:1.0"
    push_image(registries.private, "team/existing-diag", "1.0")
    failing_pod(
        plane,
        ns,
        "orphan",
        private,
        CONTAINERD_AMBIGUOUS.format(image=private),
        imagePullSecrets=[{"name": "absent"}],
    )
    push_image(registries.public, "team/existing-pub", "1.0")
    missing = f"{registries.public.host}/team/existing-pub:1.1"
    plane.apply(pod("typo", ns, missing, secrets=("absent",)), check=True)
    plane.kubectl("label", "namespace", ns, "pullguard.io/mode-", check=True)
    diagnosed = pullguard(plane, registries, "diagnose", "orphan", "-n", ns)
    audited = pullguard(plane, registries, "audit", "-n", ns)
    for result in (diagnosed, audited):
        assert '"absent" does not exist in namespace' in result.stdout, result.stdout
        assert "(yet)" not in result.stdout and "later file" not in result.stdout, result.stdout
    plane.apply(pull_secret("absent", ns, registries.private.host), check=True)
    audited = pullguard(plane, registries, "audit", "-n", ns)
    (fix,) = [
        line.split("Fix: ", 1)[1]
        for line in audited.stdout.split(f"DENY Pod {ns}/typo", 1)[1].splitlines()
        if "Fix: " in line
    ]
    assert "kubectl set image pod/typo" in fix, audited.stdout
    run_printed(plane, fix)
    meant = f"{registries.public.host}/team/existing-pub:1.0"
    assert plane.get_json("pod", "typo", "-n", ns)["spec"]["containers"][0]["image"] == meant


def test_diagnose_of_a_deployments_pod_patches_the_deployment_as_printed(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    # Issue 22 items 2, 3: the fix changes what makes the next pod (the Deployment, not its
    # ReplicaSet, not the pod), and runs as printed.
    private = f"{registries.private.host}/team/owned-diag:1.0"
    push_image(registries.private, "team/owned-diag", "1.0")
    admitted_while_off(plane, ns, "owned", private)
    off(plane, ns)
    wait_for(
        lambda: jsonpath(
            plane, "pods", "-n", ns, "-l", "app=owned", path="{.items[*].metadata.name}"
        ),
        60,
        "the Deployment's pod",
    )
    name = jsonpath(plane, "pods", "-n", ns, "-l", "app=owned", path="{.items[0].metadata.name}")
    mark_failing(plane, ns, name, private, CONTAINERD_AMBIGUOUS.format(image=private), "web")
    result = pullguard(plane, registries, "diagnose", name, "-n", ns)
    assert result.returncode == 0, result.stderr
    (fix,) = [line.split("Fix: ", 1)[1] for line in result.stdout.splitlines() if "Fix: " in line]
    assert "kubectl patch deployment/owned" in fix, fix
    run_printed(plane, fix, USER="user", PASSWORD="pass")
    template = plane.get_json("deployment", "owned", "-n", ns)["spec"]["template"]["spec"]
    (secret,) = template["imagePullSecrets"]
    assert plane.kubectl("get", "secret", secret["name"], "-n", ns).ok
    # Issue 22 review item 1: the secret of that name exists now and covers the image: the
    # fix is the patch alone (a "kubectl create" would fail with "already exists", and the
    # "&&" behind it would skip the patch).
    again = pullguard(plane, registries, "diagnose", name, "-n", ns)
    assert again.returncode == 0, again.stderr
    (fix,) = [line.split("Fix: ", 1)[1] for line in again.stdout.splitlines() if "Fix: " in line]
    assert "kubectl create" not in fix and "kubectl patch deployment/owned" in fix, fix
    assert f'imagePullSecret "{secret["name"]}" in namespace {ns} already covers' in fix
    run_printed(plane, fix)


def test_diagnose_an_unrelated_missing_secret_event_does_not_hide_a_missing_tag(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    # Issue 22 item 3: the kubelet records "Unable to retrieve some image pull secrets" for
    # the pod whichever image fails; a tag that was never pushed stays the cause.
    off(plane, ns)
    push_image(registries.public, "team/evented", "1.0")
    image = f"{registries.public.host}/team/evented:2.0"
    failing_pod(
        plane,
        ns,
        "evented",
        image,
        CONTAINERD_NOT_FOUND.format(image=image),
        imagePullSecrets=[{"name": "legacy"}],
    )
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"evented.{uuid.uuid4().hex[:8]}", "namespace": ns},
        "involvedObject": {"kind": "Pod", "name": "evented", "namespace": ns},
        "reason": "FailedToRetrieveImagePullSecret",
        "type": "Warning",
        "message": "Unable to retrieve some image pull secrets (legacy); attempting to pull "
        "the image may not succeed.",
        "source": {"component": "kubelet"},
    }
    plane.apply(json.dumps(event), check=True)
    result = pullguard(plane, registries, "diagnose", "evented", "-n", ns, "--output", "json")
    assert result.returncode == 0, result.stderr
    (found,) = json.loads(result.stdout)["pods"][0]["images"]
    assert (found["cause"], found["verdict"]) == ("not_found", "confirmed"), found
    assert any("use tag '1.0' if that was meant" in f for f in found["fixes"])


CONTAINERD_NO_PLATFORM = (
    'failed to pull and unpack image "{image}": no match for platform in manifest: not found'
)


def fix_lines(output: str) -> list[str]:
    return [line.split("Fix: ", 1)[1] for line in output.splitlines() if "Fix: " in line]


def test_diagnose_with_no_node_known_fills_the_platform_fix_from_the_registry(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Issue 22 review (b): no Node says its platform, and the fix was words only; the
    registry's answer (the index's builds) is carried out of the live check."""
    wait_for(lambda: not plane.get_json("nodes")["items"], 60, "no Node objects")
    off(plane, ns)
    image = f"{registries.public.host}/team/multi-diag:1.0"
    push_index(
        registries.public, "team/multi-diag", "1.0", [("linux", "amd64"), ("linux", "s390x")]
    )
    failing_pod(plane, ns, "multi", image, CONTAINERD_NO_PLATFORM.format(image=image))
    result = pullguard(plane, registries, "diagnose", "multi", "-n", ns)
    assert result.returncode == 0, result.stderr
    assert "[platform, not checked]" in result.stdout, result.stdout
    (fix,) = fix_lines(result.stdout)
    assert fix.startswith("this image has builds for linux/amd64 and linux/s390x: "), fix
    assert "could not learn" not in fix
    first, second = fix.split("; or ")
    assert '"kubernetes.io/arch":"s390x"' in second
    run_printed(plane, first)
    recreated = plane.get_json("pod", "multi", "-n", ns)["spec"]
    assert recreated["nodeSelector"] == {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}


def test_diagnose_moves_a_windows_image_to_the_tainted_windows_node_as_printed(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Issue 22 review (a), in diagnose: the patch carries the toleration the Windows
    node's taint needs, and the recreated pod tolerates the Node as stored."""
    from tests.e2e.test_registry import node_manifest
    from tests.unit.test_platform_placement import schedulable
    from webhook.core.cluster import Taint

    off(plane, ns)
    image = f"{registries.public.host}/team/win-diag:1.0"
    push_index(registries.public, "team/win-diag", "1.0", [("windows", "amd64")])
    windows_taint = {"key": "os", "value": "windows", "effect": "NoSchedule"}
    plane.apply(node_manifest("e2e-diag-linux", "linux", "amd64", []), check=True)
    plane.apply(node_manifest("e2e-diag-win", "windows", "amd64", [windows_taint]), check=True)
    try:
        # Bound to the Linux node, as the scheduler left it; the kubelet there failed.
        failing_pod(
            plane,
            ns,
            "win",
            image,
            CONTAINERD_NO_PLATFORM.format(image=image),
            nodeName="e2e-diag-linux",
        )
        result = pullguard(plane, registries, "diagnose", "win", "-n", ns)
        assert result.returncode == 0, result.stderr
        assert "[platform, confirmed]" in result.stdout, result.stdout
        (fix,) = fix_lines(result.stdout)
        assert '{"key":"os","operator":"Equal","value":"windows","effect":"NoSchedule"}' in fix
        uid = plane.get_json("pod", "win", "-n", ns)["metadata"]["uid"]
        command = fix[fix.index("kubectl") :]
        running = subprocess.Popen(
            ["bash", "-c", command],
            env={**os.environ, "KUBECONFIG": str(plane.kubeconfig)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            # No kubelet here: a bound pod's graceful deletion waits for the kubelet's
            # confirmation (a delete with grace 0 once its containers stopped); given as
            # the kubelet gives it.
            wait_for(
                lambda: plane.get_json("pod", "win", "-n", ns)["metadata"].get("deletionTimestamp"),
                30,
                "the old pod's deletion",
            )
            plane.kubectl("delete", "pod", "win", "-n", ns, "--grace-period=0", "--force")
            _, stderr = running.communicate(timeout=60)
        finally:
            running.kill()
        assert running.returncode == 0, f"{command}\n{stderr}"
        recreated = plane.get_json("pod", "win", "-n", ns)
        assert recreated["metadata"]["uid"] != uid
        spec = recreated["spec"]
        assert "nodeName" not in spec  # recreated unbound: the scheduler places it
        stored = plane.get_json("node", "e2e-diag-win")
        taints = [
            Taint(t["key"], t.get("value", ""), t["effect"])
            for t in stored["spec"]["taints"]
            if not t["key"].startswith("node.kubernetes.io/")  # no kubelet: not-ready
        ]
        assert Taint("os", "windows", "NoSchedule") in taints
        assert schedulable(spec, stored["metadata"]["labels"], taints), spec
    finally:
        for name in ("e2e-diag-linux", "e2e-diag-win"):
            plane.kubectl("delete", "node", name, "--wait=false")


def test_diagnose_passes_over_a_cordoned_windows_node_and_its_patch_runs_as_printed(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Issue 22, second review: a cordoned Windows node (``kubectl cordon``: only
    spec.unschedulable, no taint) looked untainted, won "fewest taints", and the patch
    carried no toleration: the Deployment's pods scheduled nowhere. The cordoned node is no
    target; the patch tolerates the healthy Windows node's taint, runs as printed, and
    pullguard's admission of the patched template is clean."""
    from tests.e2e.test_registry import ready_node, schedules_on

    image = f"{registries.public.host}/team/win-cordon:1.0"
    push_index(registries.public, "team/win-cordon", "1.0", [("windows", "amd64")])
    windows_taint = {"key": "os", "value": "windows", "effect": "NoSchedule"}
    nodes = ("e2e-cordon-linux", "e2e-cordon-win", "e2e-cordon-win-off")
    ready_node(plane, nodes[0], "linux", "amd64", [])
    ready_node(plane, nodes[1], "windows", "amd64", [windows_taint])
    ready_node(plane, nodes[2], "windows", "amd64", [])
    plane.kubectl("cordon", nodes[2], check=True)
    try:
        off(plane, ns)  # the failing pod must exist to be diagnosed
        plane.apply(deployment("wincordon", ns, image), check=True)
        wait_for(
            lambda: jsonpath(
                plane, "pods", "-n", ns, "-l", "app=wincordon", path="{.items[*].metadata.name}"
            ),
            60,
            "the Deployment's pod",
        )
        name = jsonpath(
            plane, "pods", "-n", ns, "-l", "app=wincordon", path="{.items[0].metadata.name}"
        )
        mark_failing(plane, ns, name, image, CONTAINERD_NO_PLATFORM.format(image=image), "web")
        result = pullguard(plane, registries, "diagnose", name, "-n", ns)
        assert result.returncode == 0, result.stderr
        (fix,) = fix_lines(result.stdout)
        assert "kubectl patch deployment/wincordon" in fix, fix
        assert "unschedulable" not in fix, fix  # a cordon is never tolerated
        run_printed(plane, fix)
        template = plane.get_json("deployment", "wincordon", "-n", ns)["spec"]["template"]
        assert schedules_on(plane, template["spec"], *nodes) == {
            "e2e-cordon-linux": False,
            "e2e-cordon-win": True,
            "e2e-cordon-win-off": False,
        }, fix
        # pullguard's own re-check of the patched template, as a new Deployment: admitted
        # without a word (nothing left to fix), where the unpatched one is still warned.
        plane.kubectl("label", "namespace", ns, "pullguard.io/mode-", check=True)
        unpatched = deployment("wincordon-again", ns, image)
        wait_for(
            lambda: "pullguard: fix: " in plane.apply(unpatched, "--dry-run=server").stderr,
            30,
            "admission on again in the namespace",
        )
        again = yaml.safe_load(unpatched)
        again["spec"]["template"]["spec"] = template["spec"]
        checked = plane.apply(json.dumps(again))
        assert checked.ok and "pullguard" not in checked.stderr, checked.stderr
    finally:
        for node in nodes:
            plane.kubectl("delete", "node", node, "--wait=false")


# -- issue 22 review (rev22) item 2: the fix for each kind of owner runs as printed ---------
# A Job's spec.template is immutable (the Job is recreated); a ReplicaSet with no Deployment
# and a StatefulSet keep the pods they have (the pod is deleted after the patch); a custom
# resource's pod gets words, no command on a kind kubectl may not know; the never-pull fix
# patches by container name. The controller-manager makes the owners' pods.


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


def test_a_bare_pods_debug_container_fix_does_not_delete_the_pod(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    # rev22 F1: kubectl debug on a bare pod with an image from a private registry. The
    # printed fix recreated the pod with `kubectl patch --dry-run=client -o yaml | kubectl
    # replace --force -f -`, whose yaml held spec.ephemeralContainers, which a create
    # refuses ("cannot be set on create"): replace --force had already deleted the pod. The
    # recreate drops them (set to null in the patch), then debugs again with the secret.
    off(plane, ns)
    push_image(registries.public, "team/fx-app", "1.0")
    plane.apply(pod("bare", ns, f"{registries.public.host}/team/fx-app:1.0"), check=True)
    private = f"{registries.private.host}/team/fx-debug:1.0"
    push_image(registries.private, "team/fx-debug", "1.0")
    debug_container(plane, ns, "bare", private)
    message = CONTAINERD_AMBIGUOUS.format(image=private)
    set_status(
        plane, ns, "bare", {"ephemeralContainerStatuses": [waiting("debugger", private, message)]}
    )
    result = pullguard(plane, registries, "diagnose", "bare", "-n", ns)
    assert result.returncode == 0, result.stderr
    (fix,) = fix_lines(result.stdout)
    try:
        run_printed(plane, fix, USER="user", PASSWORD="pass")
    finally:
        still = plane.kubectl("get", "pod", "bare", "-n", ns)
        assert still.returncode == 0, f"the pod was deleted by the printed fix:\n{fix}"
    recreated = plane.get_json("pod", "bare", "-n", ns)["spec"]
    (secret,) = recreated["imagePullSecrets"]
    assert secret["name"].startswith("regcred-127-0-0-1-"), recreated
    (debugger,) = recreated["ephemeralContainers"]
    assert (debugger["name"], debugger["image"]) == ("debugger", private), debugger
    assert debugger.get("targetContainerName") == "app", debugger


def test_a_debug_containers_missing_tag_fix_runs_as_printed(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    # rev22 F2: kubectl debug with a tag that was never pushed: the fix was `kubectl set
    # image pod/bare debugger=...` ("unable to find container named debugger"). An
    # ephemeral container's image cannot be changed (not by an update of the pod, not
    # through the ephemeralcontainers subresource): the fix is another `kubectl debug`
    # with the tag meant, under a new name (the failing one stays).
    off(plane, ns)
    push_image(registries.public, "team/fx-tool", "1.0")
    plane.apply(pod("bare", ns, f"{registries.public.host}/team/fx-tool:1.0"), check=True)
    missing = f"{registries.public.host}/team/fx-tool:1.1"
    debug_container(plane, ns, "bare", missing)
    message = CONTAINERD_NOT_FOUND.format(image=missing)
    set_status(
        plane, ns, "bare", {"ephemeralContainerStatuses": [waiting("debugger", missing, message)]}
    )
    result = pullguard(plane, registries, "diagnose", "bare", "-n", ns)
    assert result.returncode == 0, result.stderr
    (fix,) = fix_lines(result.stdout)
    run_printed(plane, fix)
    added = plane.get_json("pod", "bare", "-n", ns)["spec"]["ephemeralContainers"]
    meant = f"{registries.public.host}/team/fx-tool:1.0"
    assert [(c["name"], c["image"]) for c in added] == [
        ("debugger", missing),
        ("debugger-2", meant),
    ], added


def test_a_cronjobs_stuck_job_is_fixed_by_what_is_printed(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    # rev22 F3: a CronJob's Job whose pod is stuck on a tag never pushed: the fix was
    # `kubectl set image cronjob/nightly ...` alone. The stuck Job keeps its template and
    # its pod keeps failing (a Job never replaces a Pending pod); with concurrencyPolicy Forbid the
    # CronJob starts no new Job while it is active, so the fix as printed fixed nothing
    # until someone deleted the Job. It now deletes the Job and runs it again.
    off(plane, ns)
    push_image(registries.public, "team/fx-nightly", "1.0")
    missing = f"{registries.public.host}/team/fx-nightly:1.1"
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
    (fix,) = fix_lines(result.stdout)
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
    (again,) = plane.get_json("job", "nightly-1", "-n", ns)["spec"]["template"]["spec"][
        "containers"
    ]
    assert again["image"] == f"{registries.public.host}/team/fx-nightly:1.0", again


def test_two_private_registries_fixes_run_in_order_keep_both_secrets(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    # rev22 F4: a pod with two containers on two registries that need credentials (here the same
    # registry under two names, 127.0.0.1:PORT and localhost:PORT): diagnose prints one fix
    # per container, each a merge patch of imagePullSecrets computed from the pod's list as
    # it is now. Run in the order printed, the second replaces the list the first wrote,
    # so the first container's secret is dropped and that container fails again.
    off(plane, ns)
    port = registries.private.host.rsplit(":", 1)[1]
    push_image(registries.private, "team/fx-a", "1.0")
    push_image(registries.private, "team/fx-b", "1.0")
    first = f"127.0.0.1:{port}/team/fx-a:1.0"
    second = f"localhost:{port}/team/fx-b:1.0"
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
    fixes = fix_lines(result.stdout)
    assert len(fixes) == 2, result.stdout
    for fix in fixes:
        run_printed(plane, fix, USER="user", PASSWORD="pass")
    listed = [s["name"] for s in plane.get_json("pod", "two", "-n", ns)["spec"]["imagePullSecrets"]]
    assert len(listed) == 2, f"after both fixes as printed the pod lists only {listed}:\n" + (
        "\n".join(fixes)
    )


# Outside review rev22 of issue 22, findings 6-8: audit's fixes for existing objects run as
# printed.


def rev22_printed_fixes(out: str) -> list[str]:
    return [line.split("Fix: ", 1)[1] for line in out.splitlines() if "Fix: " in line]


def audit_fix(plane: ControlPlane, registries: E2ERegistries, ns: str, header: str) -> str:
    """The one Fix line under ``header`` (``DENY ReplicaSet NS/web``) of ``audit -n ns``."""
    audited = pullguard(plane, registries, "audit", "-n", ns)
    assert header in audited.stdout, audited.stdout
    section = audited.stdout.split(header, 1)[1].split("\nDENY ", 1)[0].split("\nWARN ", 1)[0]
    (fix,) = rev22_printed_fixes(section)
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
    assert "in the manifest" not in fix, fix
    before = plane.get_json("pod", "bare", "-n", ns)
    create, then = fix.split(", then ", 1)
    run_printed(plane, create, USER="user", PASSWORD="pass")  # the secret is created
    run_printed(plane, then)  # the recreate, from its first kubectl, as printed
    after = plane.get_json("pod", "bare", "-n", ns)
    assert after["metadata"]["uid"] != before["metadata"]["uid"], fix
    (secret,) = [s["name"] for s in after["spec"].get("imagePullSecrets") or []]
    assert secret.startswith("regcred-") and plane.kubectl("get", "secret", secret, "-n", ns).ok
    assert after["spec"]["containers"] == before["spec"]["containers"], fix
