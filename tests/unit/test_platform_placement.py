"""The platform fix schedules the pod as printed (issue 22, review findings a and b).

(a) An image whose builds match only nodes behind a taint (a Windows image, Windows nodes
tainted ``os=windows:NoSchedule``): a nodeSelector alone still does not schedule, so the fix
carries the toleration, with the taint's exact key, value and effect from the nodes.
(b) ``diagnose`` where no node says its platform: the fix names the builds the registry
listed for the image, with a ``kubectl patch`` per build, not words alone.

The toleration rule below is the scheduler's (``v1.Toleration.ToleratesTaint``), written
out here independently of pullguard's, so the test judges the fix, not pullguard's reading.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from tests.unit.builders import cluster_with, container, pod, pod_spec, request
from webhook.core.cluster import Taint
from webhook.core.config import load_config_text
from webhook.core.diagnosis import Workload, diagnose
from webhook.core.registry import Answer, FixedRegistry, Outcome, Platform
from webhook.core.validate import validate

IMAGE = "registry.example.com/team/win:1"
WINDOWS_TAINT = Taint("os", "windows", "NoSchedule")
ENFORCE = load_config_text("checks: {platform: enforce}\n")


def scheduler_tolerates(toleration: Mapping[str, Any], taint: Taint) -> bool:
    """k8s.io/api/core/v1 Toleration.ToleratesTaint."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.effect:
        return False
    key = toleration.get("key") or ""
    if key and key != taint.key:
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == taint.value


def affinity_allows(spec: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """The pod's requiredDuringSchedulingIgnoredDuringExecution node affinity: its terms
    ORed, each term's expressions ANDed (k8s.io/component-helpers nodeaffinity)."""
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if not terms:
        return True

    def holds(e: Mapping[str, Any]) -> bool:
        key, operator, values = e["key"], e["operator"], e.get("values") or []
        if operator == "In":
            return key in labels and labels[key] in values
        if operator == "NotIn":
            return key not in labels or labels[key] not in values
        if operator == "Exists":
            return key in labels
        if operator == "DoesNotExist":
            return key not in labels
        raise AssertionError(operator)

    return any(all(holds(e) for e in t.get("matchExpressions") or []) for t in terms)


def schedulable(
    spec: Mapping[str, Any],
    labels: Mapping[str, str],
    taints: Sequence[Taint],
    *,
    unschedulable: bool = False,
) -> bool:
    """Would the scheduler put a pod of ``spec`` on a node of ``labels`` and ``taints``:
    its whole nodeSelector, its required node affinity, the NoSchedule/NoExecute taints, and
    a cordoned node (``unschedulable``, the NodeUnschedulable plugin: as the
    ``node.kubernetes.io/unschedulable:NoSchedule`` taint)?"""
    selector = spec.get("nodeSelector") or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    if not affinity_allows(spec, labels):
        return False
    if unschedulable:
        taints = [*taints, Taint("node.kubernetes.io/unschedulable", "", "NoSchedule")]
    tolerations = spec.get("tolerations") or []
    return all(
        any(scheduler_tolerates(t, taint) for t in tolerations)
        for taint in taints
        if taint.effect in ("NoSchedule", "NoExecute")
    )


FIELDS_SAID = "set in the pod spec: "


def snippet(fix: str) -> dict[str, Any]:
    """The pod-spec snippet the fix prints (the JSON after "set in the pod spec: ")."""
    start = fix.index(FIELDS_SAID) + len(FIELDS_SAID)
    document, _ = json.JSONDecoder().raw_decode(fix[start:])
    assert isinstance(document, dict)
    return document


def applied(spec: dict[str, Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` set in ``spec`` exactly as the fix says: each field replaces the pod's."""
    return {**spec, **fields}


def windows_cluster(*windows_taints: Taint):  # type: ignore[no-untyped-def]
    cluster = cluster_with()
    cluster.add_node("linux-1", "linux", "amd64")
    cluster.add_node("win-1", "windows", "amd64", taints=windows_taints)
    return cluster


def platform_fix(cluster, spec: dict[str, Any], image: Answer, config=ENFORCE) -> str:  # type: ignore[no-untyped-def]
    decision = validate(request(pod(spec)), config, cluster, registry=FixedRegistry({IMAGE: image}))
    (finding,) = [f for f in decision.findings if f.check == "platform"]
    return finding.fix or ""


WINDOWS_ONLY = Answer(Outcome.FOUND, platforms=(Platform("windows", "amd64"),))
WINDOWS_LABELS = {"kubernetes.io/os": "windows", "kubernetes.io/arch": "amd64"}


def test_a_windows_image_fix_tolerates_the_windows_nodes_taint() -> None:
    spec = pod_spec(container("web", IMAGE))
    fix = platform_fix(windows_cluster(WINDOWS_TAINT), spec, WINDOWS_ONLY)
    fields = snippet(fix)
    assert fields["tolerations"] == [
        {"key": "os", "operator": "Equal", "value": "windows", "effect": "NoSchedule"}
    ]
    fixed = applied(spec, fields)
    assert schedulable(fixed, WINDOWS_LABELS, [WINDOWS_TAINT])
    linux = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
    assert not schedulable(fixed, linux, [])  # kept off the nodes without a build
    assert "kubectl get nodes" not in fix  # filled from the nodes, nothing left to look up


def test_the_fix_of_a_pod_that_can_only_run_elsewhere_tolerates_too() -> None:
    """The pod selects Linux: it can run nowhere; the fix moves it to the Windows nodes."""
    spec = pod_spec(container("web", IMAGE)) | {"nodeSelector": {"kubernetes.io/os": "linux"}}
    valueless = Taint("node-role.example.com/windows", "", "NoExecute")
    fix = platform_fix(windows_cluster(WINDOWS_TAINT, valueless), spec, WINDOWS_ONLY)
    fixed = applied(spec, snippet(fix))
    assert schedulable(fixed, WINDOWS_LABELS, [WINDOWS_TAINT, valueless])
    assert {"key": valueless.key, "operator": "Exists", "effect": "NoExecute"} in (
        fixed["tolerations"]
    )


def test_a_taint_the_pod_tolerates_already_is_not_repeated_and_prefer_no_schedule_is_no_bar() -> (
    None
):
    tolerated = [{"key": "os", "operator": "Exists"}]
    spec = pod_spec(container("web", IMAGE)) | {"tolerations": tolerated}
    soft = Taint("spot", "true", "PreferNoSchedule")
    fix = platform_fix(windows_cluster(WINDOWS_TAINT, soft), spec, WINDOWS_ONLY)
    assert "tolerations" not in snippet(fix)
    assert snippet(fix)["nodeSelector"] == {"kubernetes.io/os": "windows"}


def test_untainted_nodes_for_the_build_need_no_toleration() -> None:
    cluster = cluster_with()
    cluster.add_node("amd", "linux", "amd64", taints=(Taint("gpu", "yes", "NoSchedule"),))
    cluster.add_node("arm", "linux", "arm64")
    arm_only = Answer(Outcome.FOUND, platforms=(Platform("linux", "arm64"),))
    # The pod tolerates the amd64 node's taint (else it never goes there: no warning).
    spec = pod_spec(container("web", IMAGE)) | {
        "tolerations": [{"key": "gpu", "operator": "Exists"}]
    }
    fix = platform_fix(cluster, spec, arm_only)
    assert snippet(fix) == {"nodeSelector": {"kubernetes.io/arch": "arm64"}}


def test_of_several_tainted_nodes_the_fix_tolerates_one_whole_set() -> None:
    cluster = cluster_with()
    cluster.add_node("linux-1", "linux", "amd64")
    cluster.add_node("win-a", "windows", "amd64", taints=(WINDOWS_TAINT,))
    other = (Taint("os", "windows", "NoSchedule"), Taint("team", "b", "NoSchedule"))
    cluster.add_node("win-b", "windows", "amd64", taints=other)
    spec = pod_spec(container("web", IMAGE))
    fixed = applied(spec, snippet(platform_fix(cluster, spec, WINDOWS_ONLY)))
    assert schedulable(fixed, WINDOWS_LABELS, [WINDOWS_TAINT])


def test_nodes_whose_taints_were_not_kept_get_the_command_that_lists_them() -> None:
    """Over the cap the taints are unknown: no snippet that might not schedule."""
    cluster = cluster_with()
    cluster.add_node("linux-1", "linux", "amd64")
    cluster.add_node("win-1", "windows", "amd64", taints=None)
    fix = platform_fix(cluster, pod_spec(container("web", IMAGE)), WINDOWS_ONLY)
    assert FIELDS_SAID not in fix
    assert "kubectl get nodes -l kubernetes.io/os=windows" in fix


def failing(spec: dict[str, Any]) -> dict[str, Any]:
    """The pod of ``spec``, as the kubelet left it when its image had no build for the node."""
    out = pod(spec, name="web-1")
    out["status"] = {
        "containerStatuses": [
            {
                "name": "web",
                "state": {
                    "waiting": {
                        "reason": "ErrImagePull",
                        "message": "no match for platform in manifest: not found",
                    }
                },
            }
        ]
    }
    return out


def test_diagnose_patches_the_owner_with_the_selector_and_the_toleration() -> None:
    cluster = windows_cluster(WINDOWS_TAINT)
    spec = pod_spec(container("web", IMAGE)) | {
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists"}]
    }
    decision = validate(
        request(pod(spec)), ENFORCE, cluster, registry=FixedRegistry({IMAGE: WINDOWS_ONLY})
    )
    web = Workload("Deployment", "web")
    (found,) = diagnose(failing(spec), [], decision.findings, workload=web)
    patch = [f for f in found.fixes if "kubectl patch deployment/web" in f]
    assert patch, found.fixes
    body = json.loads(shlex.split(patch[0][patch[0].index("kubectl patch") :])[-1])
    template = body["spec"]["template"]["spec"]
    assert schedulable(template, WINDOWS_LABELS, [WINDOWS_TAINT])
    # The pod's own tolerations stay (a merge patch replaces the whole list).
    assert {"key": "node.kubernetes.io/not-ready", "operator": "Exists"} in template["tolerations"]


# -- (b) diagnose with no node platform known: the image's builds, from the registry ----


def test_the_decision_carries_the_image_platforms_when_no_node_says_its_own() -> None:
    both = Answer(Outcome.FOUND, platforms=(Platform("linux", "amd64"), Platform("linux", "arm64")))
    decision = validate(
        request(pod(pod_spec(container("web", IMAGE)))),
        ENFORCE,
        cluster_with(),  # no Node objects
        registry=FixedRegistry({IMAGE: both}),
    )
    assert dict(decision.image_platforms) == {'container "web"': ("linux/amd64", "linux/arm64")}


def test_diagnose_with_no_node_known_fills_the_fix_from_the_image_platforms() -> None:
    failing = pod(pod_spec(container("web", IMAGE)), name="web-1")
    failing["status"] = {
        "containerStatuses": [
            {
                "name": "web",
                "state": {
                    "waiting": {
                        "reason": "ErrImagePull",
                        "message": "no match for platform in manifest: not found",
                    }
                },
            }
        ]
    }
    (found,) = diagnose(
        failing,
        [],
        [],
        live_note="platform: unavailable",
        workload=Workload("Deployment", "web"),
        image_platforms={'container "web"': ("linux/amd64", "linux/arm64")},
    )
    (fix,) = found.fixes
    assert "this image has builds for linux/amd64 and linux/arm64" in fix
    assert "could not learn" not in fix
    for arch in ("amd64", "arm64"):
        selector = {"kubernetes.io/os": "linux", "kubernetes.io/arch": arch}
        body = {"spec": {"template": {"spec": {"nodeSelector": selector}}}}
        command = "kubectl patch deployment/web -n team-a --type=merge -p " + shlex.quote(
            json.dumps(body, separators=(",", ":"))
        )
        assert command in fix, fix


def test_the_node_cache_keeps_barring_taints_only_and_within_bounds() -> None:
    from kubernetes import client

    from webhook.core.cluster import MAX_TAINTS_PER_NODE
    from webhook.edge.kube import node_facts_of

    def node(*taints: client.V1Taint) -> client.V1Node:
        labels = {"kubernetes.io/os": "windows", "kubernetes.io/arch": "amd64"}
        return client.V1Node(
            metadata=client.V1ObjectMeta(name="n", labels=labels),
            spec=client.V1NodeSpec(taints=list(taints)),
        )

    kept = node_facts_of(
        node(
            client.V1Taint(key="os", value="windows", effect="NoSchedule"),
            client.V1Taint(key="spot", value="true", effect="PreferNoSchedule"),
            client.V1Taint(key="drain", effect="NoExecute"),
            # A condition's taint is kept: it tells the node's health (never tolerated).
            client.V1Taint(key="node.kubernetes.io/not-ready", effect="NoSchedule"),
        )
    )
    not_ready = Taint("node.kubernetes.io/not-ready", "", "NoSchedule")
    assert kept == (
        ("windows", "amd64"),
        (Taint("drain", "", "NoExecute"), not_ready, WINDOWS_TAINT),
    )
    many = [
        client.V1Taint(key=f"k{i}", value="v", effect="NoSchedule")
        for i in range(MAX_TAINTS_PER_NODE + 1)
    ]
    assert node_facts_of(node(*many))[1] is None  # over the cap: unknown, not cut
    long_key = client.V1Taint(key="k" * 400, value="v", effect="NoSchedule")
    assert node_facts_of(node(long_key))[1] is None
    assert node_facts_of(client.V1Node(metadata=client.V1ObjectMeta(name="bare"))) == (None, ())


def test_a_bare_pod_bound_to_a_node_without_a_build_is_recreated_unbound() -> None:
    """The recreated pod kept ``spec.nodeName``: bound to the same node, where the kubelet
    rejects the new selector (and the image still has no build)."""
    cluster = windows_cluster(WINDOWS_TAINT)
    spec = pod_spec(container("web", IMAGE)) | {"nodeName": "linux-1"}
    decision = validate(
        request(pod(spec)), ENFORCE, cluster, registry=FixedRegistry({IMAGE: WINDOWS_ONLY})
    )
    failing = pod(spec, name="web-1")
    failing["status"] = {
        "containerStatuses": [
            {
                "name": "web",
                "state": {
                    "waiting": {"reason": "ErrImagePull", "message": "no match for platform"}
                },
            }
        ]
    }
    (found,) = diagnose(failing, [], decision.findings)
    (fix,) = found.fixes
    command = fix[fix.index("kubectl patch pod web-1") :]
    assert command.endswith("| kubectl replace --force -f -")
    body = json.loads(shlex.split(command.split(" | ")[0])[-1])
    assert body["spec"]["nodeName"] is None
    assert schedulable(body["spec"], WINDOWS_LABELS, [WINDOWS_TAINT])
