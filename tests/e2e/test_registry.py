"""The registry and platform checks through the real API server: ``kubectl apply`` of real
manifests whose images live on real registries (docker-registry on loopback, TLS, one with
htpasswd), judged with the pod's own secrets as the API server hands them over."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.e2e.cluster import ControlPlane, wait_for
from tests.e2e.conftest import E2ERegistries, pod, pull_secret
from tests.e2e.test_decisions import run_fix
from tests.e2e.test_kubectl import deployment
from tests.integration.registries import push_image, push_index

pytestmark = pytest.mark.e2e

GOOD = base64.b64encode(b"user:pass").decode()
BAD = base64.b64encode(b"user:wrong").decode()


def test_a_tag_never_pushed_is_denied_and_a_fresh_push_admitted_at_once(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    host = registries.public.host
    push_image(registries.public, "team/web", "1.0")
    manifest = deployment("web", ns, f"{host}/team/web:1.1")
    denied = plane.apply(manifest)
    assert not denied.ok
    assert (
        f"image '{host}/team/web:1.1' does not exist: repository {host}/team/web has no "
        "tag '1.1' (tags there include '1.0')" in denied.stderr
    )
    assert "Fix: use tag '1.0' if that was meant, or push '1.1' first" in denied.stderr
    # Issue 22 review item 3: on an existing workload (an UPDATE) the fix is a command, and it
    # runs as printed.
    assert plane.apply(deployment("web-set", ns, f"{host}/team/web:1.0")).ok
    updated = plane.kubectl(
        "set", "image", "deployment/web-set", f"web={host}/team/web:1.1", "-n", ns
    )
    assert not updated.ok
    command = f"kubectl set image deployment/web-set web={host}/team/web:1.0 -n {ns}"
    assert f"Fix: push '1.1' first, or use tag '1.0' if that was meant: {command}" in (
        updated.stderr
    ), updated.stderr
    assert plane.kubectl(*command.split()[1:]).ok
    # A pipeline pushes, then deploys within a second: a "not found" is never reused.
    push_image(registries.public, "team/web", "1.1")
    assert plane.apply(manifest).ok


def test_a_private_image_needs_working_credentials(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    host = registries.private.host
    push_image(registries.private, "team/api", "2.0")
    image = f"{host}/team/api:2.0"
    anonymous = plane.apply(pod("anon", ns, image))
    assert not anonymous.ok
    assert f"registry {host} refused to serve '{image}' anonymously" in anonymous.stderr

    plane.apply(pull_secret("stale", ns, host, BAD), check=True)
    wrong = plane.apply(pod("wrong", ns, image, ("stale",)))
    assert not wrong.ok
    assert f'with imagePullSecret "{ns}/stale"' in wrong.stderr

    plane.apply(pull_secret("regcred", ns, host, GOOD), check=True)
    assert plane.apply(pod("right", ns, image, ("regcred",))).ok

    # rev22 F10: a refused secret that holds another registry's login too: the fix sets its
    # one entry (jq, kubectl replace), run as printed with the login, and keeps the other.
    both = json.loads(pull_secret("shared", ns, host, BAD))
    document = {"auths": {host: {"auth": BAD}, "other.example.com": {"auth": GOOD}}}
    both["data"][".dockerconfigjson"] = base64.b64encode(json.dumps(document).encode()).decode()
    plane.apply(json.dumps(both), check=True)
    refused = plane.apply(pod("shared", ns, image, ("shared",)))
    assert not refused.ok
    (fix,) = [line.split("Fix: ", 1)[1] for line in refused.stderr.splitlines() if "Fix: " in line]
    assert "the secret also holds other.example.com" in fix, fix
    run_fix(
        plane,
        fix.replace(
            "--arg user USER --arg password PASSWORD", "--arg user user --arg password pass"
        ),
    )
    stored = plane.get_json("secret", "shared", "-n", ns)
    auths = json.loads(base64.b64decode(stored["data"][".dockerconfigjson"]))["auths"]
    assert auths["other.example.com"] == {"auth": GOOD}
    assert plane.apply(pod("shared", ns, image, ("shared",))).ok

    # A missing secret denies here: the registry refuses the pull without it.
    missing = plane.apply(pod("missing", ns, image, ("nope",)))
    assert not missing.ok
    assert f'imagePullSecret "nope" does not exist in namespace "{ns}"' in missing.stderr


def test_a_missing_secret_for_a_public_image_only_warns(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    image = f"{registries.public.host}/team/open:1.0"
    push_image(registries.public, "team/open", "1.0")
    result = plane.apply(pod("open", ns, image, ("nope",)))
    assert result.ok, result.stderr
    assert 'imagePullSecret "nope" does not exist' in result.stderr
    assert "(the image is public, so the pod runs)" in result.stderr


def test_a_deployment_is_judged_with_its_service_accounts_secret(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    host = registries.private.host
    push_image(registries.private, "team/worker", "1.0")
    plane.apply(pull_secret("regcred", ns, host, GOOD), check=True)
    plane.kubectl(
        "patch",
        "serviceaccount",
        "default",
        "-n",
        ns,
        "-p",
        json.dumps({"imagePullSecrets": [{"name": "regcred"}]}),
        check=True,
    )
    wait_for(
        lambda: (
            plane.apply(deployment("worker", ns, f"{host}/team/worker:1.0"), "--dry-run=server").ok
        ),
        30,
        "the ServiceAccount's secret in pullguard's cache",
    )
    assert plane.apply(deployment("worker", ns, f"{host}/team/worker:1.0")).ok


def test_an_image_without_a_build_for_the_nodes(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    push_index(registries.public, "team/arm-only", "1.0", [("linux", "arm64"), ("linux", "s390x")])
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": "e2e-amd64-node",
            "labels": {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"},
        },
    }
    plane.apply(json.dumps(node), check=True)
    try:
        manifest = deployment("arm", ns, f"{registries.public.host}/team/arm-only:1.0")
        expected = "has linux/arm64 and linux/s390x only; the pod can only run on linux/amd64"
        # The Node reaches pullguard's cache by watch.
        wait_for(
            lambda: expected in plane.apply(manifest, "--dry-run=server").stderr,
            30,
            "the platform warning",
        )
        result = plane.apply(manifest)
        assert result.ok  # platform: warn by default
        assert expected in result.stderr
    finally:
        plane.kubectl("delete", "node", "e2e-amd64-node", "--wait=false")


def node_manifest(name: str, os_name: str, arch: str, taints: list[dict[str, str]]) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/os": os_name, "kubernetes.io/arch": arch},
            },
            "spec": {"taints": taints},
        }
    )


def test_a_windows_image_fix_carries_the_toleration_the_windows_node_needs(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Issue 22 review (a): the fix named the nodeSelector only, and the pod, so fixed,
    still did not schedule: every Windows node was tainted against it."""
    from tests.unit.test_platform_placement import applied, schedulable, snippet
    from webhook.core.cluster import Taint

    image = f"{registries.public.host}/team/win-only:1.0"
    push_index(registries.public, "team/win-only", "1.0", [("windows", "amd64")])
    windows_taint = {"key": "os", "value": "windows", "effect": "NoSchedule"}
    plane.apply(node_manifest("e2e-linux-node", "linux", "amd64", []), check=True)
    plane.apply(node_manifest("e2e-win-node", "windows", "amd64", [windows_taint]), check=True)
    try:
        manifest = pod("win", ns, image)
        # The Nodes (with the taint) reach pullguard's cache by watch.
        wait_for(
            lambda: '"tolerations"' in plane.apply(manifest, "--dry-run=server").stderr,
            30,
            "the platform warning with the toleration",
        )
        result = plane.apply(manifest, "--dry-run=server")
        assert result.ok  # platform: warn by default
        (fix,) = [line for line in result.stderr.splitlines() if "pullguard: fix: " in line]
        fields = snippet(fix)
        # The fix applied, judged by the scheduler's rule against the Nodes as stored.
        spec = applied(json.loads(manifest)["spec"], fields)
        for name, runs in (("e2e-win-node", True), ("e2e-linux-node", False)):
            stored = plane.get_json("node", name)
            # No kubelet here: the API server's TaintNodesByCondition plugin taints each new
            # Node node.kubernetes.io/not-ready, which a Ready node does not carry (and which
            # no fix should tolerate; see ready_node for Nodes made Ready).
            taints = [
                Taint(t["key"], t.get("value", ""), t["effect"])
                for t in stored["spec"].get("taints") or []
                if not t["key"].startswith("node.kubernetes.io/")
            ]
            assert runs is (Taint("os", "windows", "NoSchedule") in taints)
            assert schedulable(spec, stored["metadata"]["labels"], taints) is runs, (name, fix)
        # And pullguard has nothing more to say about the fixed pod.
        fixed = json.loads(manifest) | {"spec": spec}
        again = plane.apply(json.dumps(fixed), "--dry-run=server")
        assert again.ok and "pullguard" not in again.stderr, again.stderr
    finally:
        for name in ("e2e-linux-node", "e2e-win-node"):
            plane.kubectl("delete", "node", name, "--wait=false")


# -- issue 22, second review: the platform fix schedules as printed -----------------------


def ready_node(
    plane: ControlPlane, name: str, os_name: str, arch: str, taints: list[dict[str, str]]
) -> None:
    """A Node as a kubelet leaves a Ready one: the API server's TaintNodesByCondition
    plugin taints every new Node ``node.kubernetes.io/not-ready`` (no kubelet runs here to
    report Ready, and no node lifecycle controller to lift it), so the taints are set to
    ``taints`` alone and the status says Ready."""
    plane.apply(node_manifest(name, os_name, arch, taints), check=True)
    plane.kubectl(
        "patch",
        "node",
        name,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"taints": taints}}),
        check=True,
    )
    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady"}
    plane.kubectl(
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"conditions": [ready]}}),
        check=True,
    )


def schedules_on(plane: ControlPlane, spec: dict[str, Any], *names: str) -> dict[str, bool]:
    """Per Node as the API server stores it (labels, taints, ``spec.unschedulable``): would
    the scheduler put a pod of ``spec`` there (the rules written out independently of
    pullguard's, in tests.unit.test_platform_placement)? Every taint the Node has counts."""
    from tests.unit.test_platform_placement import schedulable
    from webhook.core.cluster import Taint

    verdicts: dict[str, bool] = {}
    for name in names:
        stored = plane.get_json("node", name)
        taints = [
            Taint(t["key"], t.get("value", ""), t["effect"])
            for t in stored["spec"].get("taints") or []
        ]
        verdicts[name] = schedulable(
            spec,
            stored["metadata"]["labels"],
            taints,
            unschedulable=bool(stored["spec"].get("unschedulable")),
        )
    return verdicts


def the_fix(result: Any) -> str:
    (fix,) = [line for line in result.stderr.splitlines() if "pullguard: fix: " in line]
    return str(fix)


def admitted_quietly(plane: ControlPlane, manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` created for real: admitted, and pullguard has nothing to say of it (its
    re-check of the fixed pod is clean); the Pod's spec as stored."""
    created = plane.apply(json.dumps(manifest))
    assert created.ok and "pullguard" not in created.stderr, created.stderr
    spec = plane.get_json(
        "pod", manifest["metadata"]["name"], "-n", manifest["metadata"]["namespace"]
    )
    return dict(spec["spec"])


def test_a_windows_node_with_two_taints_gets_its_whole_fix_through_the_api_server(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """The fix with two tolerations passed 256 characters and was dropped without a word;
    it is sent whole (WARNING_FIX_MAX), kubectl prints it whole, and it schedules as
    printed on the node with both taints."""
    from tests.unit.test_platform_placement import applied, snippet

    image = f"{registries.public.host}/team/win-two:1.0"
    push_index(registries.public, "team/win-two", "1.0", [("windows", "amd64")])
    taints = [
        {"key": "os", "value": "windows", "effect": "NoSchedule"},
        {"key": "node.example.com/pool", "value": "windows-ltsc2022", "effect": "NoExecute"},
    ]
    ready_node(plane, "e2e-two-linux", "linux", "amd64", [])
    ready_node(plane, "e2e-two-win", "windows", "amd64", taints)
    try:
        manifest = pod("two", ns, image)
        # The Nodes reach pullguard's cache by watch (an earlier test's may still be there).
        wait_for(
            lambda: "windows-ltsc2022" in plane.apply(manifest, "--dry-run=server").stderr,
            30,
            "the platform fix with both tolerations",
        )
        result = plane.apply(manifest, "--dry-run=server")
        assert result.ok, result.stderr  # platform: warn by default
        fix = the_fix(result)
        assert len(fix) > 256, fix
        assert "no node of the cluster is Ready" not in fix, fix
        fields = snippet(fix)
        assert fields["nodeSelector"] == {"kubernetes.io/os": "windows"}
        spec = applied(json.loads(manifest)["spec"], fields)
        assert schedules_on(plane, spec, "e2e-two-win", "e2e-two-linux") == {
            "e2e-two-win": True,
            "e2e-two-linux": False,
        }, fix
        fixed = json.loads(manifest) | {"spec": spec}
        stored = admitted_quietly(plane, fixed)
        assert schedules_on(plane, stored, "e2e-two-win", "e2e-two-linux")["e2e-two-win"]
    finally:
        for name in ("e2e-two-linux", "e2e-two-win"):
            plane.kubectl("delete", "node", name, "--wait=false")


def required_arch(operator: str, *values: str) -> dict[str, Any]:
    """A required node affinity of one term: ``kubernetes.io/arch`` ``operator`` ``values``."""
    expression = {"key": "kubernetes.io/arch", "operator": operator, "values": list(values)}
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [expression]}]
            }
        }
    }


def test_a_pods_required_node_affinity_is_kept_by_the_fix_or_named_in_it(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """The scheduler ANDs the pod's required node affinity with any nodeSelector: a fix
    that ignored it printed a selector no node matched. Where the affinity allows a node
    with a build the fix stays within it; where it excludes all, the fix names its term."""
    from tests.unit.test_platform_placement import applied, snippet

    image = f"{registries.public.host}/team/arm-s390x:1.0"
    push_index(registries.public, "team/arm-s390x", "1.0", [("linux", "arm64"), ("linux", "s390x")])
    nodes = {"e2e-aff-amd64": "amd64", "e2e-aff-arm64": "arm64", "e2e-aff-s390x": "s390x"}
    for name, arch in nodes.items():
        ready_node(plane, name, "linux", arch, [])
    try:
        # Allowed by the affinity: amd64 (no build) and s390x. The fix keeps to s390x.
        within = json.loads(pod("within", ns, image, affinity=required_arch("NotIn", "arm64")))
        wait_for(
            lambda: (
                '"kubernetes.io/arch":"s390x"'
                in plane.apply(json.dumps(within), "--dry-run=server").stderr
            ),
            30,
            "the nodes in pullguard's cache",
        )
        fix = the_fix(plane.apply(json.dumps(within), "--dry-run=server"))
        assert snippet(fix) == {"nodeSelector": {"kubernetes.io/arch": "s390x"}}, fix
        spec = applied(within["spec"], snippet(fix))
        assert schedules_on(plane, spec, *nodes) == {
            "e2e-aff-amd64": False,
            "e2e-aff-arm64": False,
            "e2e-aff-s390x": True,
        }
        admitted_quietly(plane, within | {"spec": spec})
        # Allowed by the affinity: amd64 only. No selector can help; the term is named.
        only = json.loads(pod("only", ns, image, affinity=required_arch("In", "amd64")))
        result = plane.apply(json.dumps(only), "--dry-run=server")
        assert result.ok, result.stderr
        fix = the_fix(result)
        assert "set in the pod spec" not in fix and "nodeSelector" not in fix, fix
        assert (
            "the pod's own required node affinity (its kubernetes.io/arch term in "
            "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution) "
            "excludes every node with a build (linux/arm64 and linux/s390x): to run there, "
            "change that term to allow one"
        ) in fix, fix
        # Done as said: the term allows arm64. Scheduled there, and pullguard is quiet.
        changed = only | {"spec": only["spec"] | {"affinity": required_arch("In", "arm64")}}
        assert schedules_on(plane, changed["spec"], *nodes) == {
            "e2e-aff-amd64": False,
            "e2e-aff-arm64": True,
            "e2e-aff-s390x": False,
        }
        admitted_quietly(plane, changed)
    finally:
        for name in nodes:
            plane.kubectl("delete", "node", name, "--wait=false")
