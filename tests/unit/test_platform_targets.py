"""The platform fix schedules as printed, whatever state the nodes are in (issue 22, second
review).

Each fix is applied exactly as printed (each field it states replaces the pod's) and judged
by the scheduler's rules written out in :mod:`tests.unit.test_platform_placement`: the whole
nodeSelector, the required node affinity, the taints (``ToleratesTaint``) and cordoned nodes.
Nodes come through ``webhook.edge.kube.node_facts_of`` where the API server's shape matters
(``spec.unschedulable``, condition taints).
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from kubernetes import client

from tests.unit.builders import cluster_with, container, pod, pod_spec, request
from tests.unit.test_platform_placement import (
    ENFORCE,
    FIELDS_SAID,
    IMAGE,
    WINDOWS_LABELS,
    WINDOWS_ONLY,
    WINDOWS_TAINT,
    applied,
    failing,
    platform_fix,
    schedulable,
    snippet,
)
from webhook.core.cluster import MAX_TAINTS_PER_NODE, InMemoryCluster, Taint
from webhook.core.config import load_config_text
from webhook.core.diagnosis import Workload, diagnose
from webhook.core.findings import WARNING_FIX_MAX, Finding
from webhook.core.registry import Answer, FixedRegistry, Outcome, Platform
from webhook.core.validate import validate
from webhook.edge.kube import node_facts_of

LINUX_LABELS = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
NOT_READY = Taint("node.kubernetes.io/not-ready", "", "NoSchedule")
ARM_ONLY = Answer(Outcome.FOUND, platforms=(Platform("linux", "arm64"),))
ARM_LABELS = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "arm64"}
WARN = load_config_text("checks: {platform: warn}\n")


def stored(
    cluster: InMemoryCluster,
    name: str,
    labels: dict[str, str],
    taints: list[dict[str, str]],
    *,
    unschedulable: bool = False,
) -> None:
    """A Node as the API server stores it, through the Node cache's reading."""
    node = client.V1Node(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1NodeSpec(
            unschedulable=unschedulable, taints=[client.V1Taint(**t) for t in taints]
        ),
    )
    platform, kept = node_facts_of(node)
    assert platform is not None
    cluster.add_node(name, *platform, taints=kept)


def required_arch(operator: str, arch: str) -> dict[str, Any]:
    """A required node affinity of one ``kubernetes.io/arch`` expression."""
    expression = {"key": "kubernetes.io/arch", "operator": operator, "values": [arch]}
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [expression]}]
            }
        }
    }


def patch_body(fix: str) -> dict[str, Any]:
    command = fix[fix.index("kubectl patch") :].split(" | ", maxsplit=1)[0]
    body = json.loads(shlex.split(command)[-1])
    assert isinstance(body, dict)
    return body


# -- 1. node health: cordoned and not-ready nodes are no targets --------------------------


def test_a_cordoned_untainted_node_is_no_target_the_healthy_tainted_one_is() -> None:
    """Before: the cordoned node looked untainted (its condition taint dropped), won
    "fewest taints", and the fix carried no toleration: it scheduled nowhere."""
    cluster = cluster_with()
    stored(cluster, "linux-1", LINUX_LABELS, [])
    stored(
        cluster,
        "win-1",
        WINDOWS_LABELS,
        [{"key": "os", "value": "windows", "effect": "NoSchedule"}],
    )
    cordoned = [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]
    stored(cluster, "win-2", WINDOWS_LABELS, cordoned, unschedulable=True)
    spec = pod_spec(container("web", IMAGE))
    fixed = applied(spec, snippet(platform_fix(cluster, spec, WINDOWS_ONLY)))
    assert schedulable(fixed, WINDOWS_LABELS, [WINDOWS_TAINT])
    assert not schedulable(fixed, WINDOWS_LABELS, [], unschedulable=True)
    assert not schedulable(fixed, LINUX_LABELS, [])
    assert all(not t["key"].startswith("node.kubernetes.io/") for t in fixed["tolerations"])


def test_a_cordon_flag_alone_makes_the_node_no_target() -> None:
    """``kubectl cordon`` sets spec.unschedulable; the taint follows from a controller,
    later: the flag alone decides."""
    cluster = cluster_with()
    stored(cluster, "linux-1", LINUX_LABELS, [])
    stored(
        cluster,
        "win-1",
        WINDOWS_LABELS,
        [{"key": "os", "value": "windows", "effect": "NoSchedule"}],
    )
    stored(cluster, "win-2", WINDOWS_LABELS, [], unschedulable=True)
    spec = pod_spec(container("web", IMAGE))
    fixed = applied(spec, snippet(platform_fix(cluster, spec, WINDOWS_ONLY)))
    assert schedulable(fixed, WINDOWS_LABELS, [WINDOWS_TAINT])


def test_a_not_ready_node_is_no_target_while_a_ready_one_has_a_build() -> None:
    cluster = cluster_with()
    stored(cluster, "linux-1", LINUX_LABELS, [])
    stored(
        cluster,
        "win-1",
        WINDOWS_LABELS,
        [{"key": "os", "value": "windows", "effect": "NoSchedule"}],
    )
    stored(
        cluster,
        "win-2",
        WINDOWS_LABELS,
        [{"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}],
    )
    spec = pod_spec(container("web", IMAGE))
    fix = platform_fix(cluster, spec, WINDOWS_ONLY)
    fixed = applied(spec, snippet(fix))
    assert schedulable(fixed, WINDOWS_LABELS, [WINDOWS_TAINT])
    assert "Ready" not in fix


def test_when_only_unusable_nodes_have_a_build_the_fix_says_so_in_words() -> None:
    cluster = cluster_with()
    stored(cluster, "linux-1", LINUX_LABELS, [])
    stored(cluster, "win-1", WINDOWS_LABELS, [], unschedulable=True)
    stored(
        cluster,
        "win-2",
        WINDOWS_LABELS,
        [{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}],
    )
    fix = platform_fix(cluster, pod_spec(container("web", IMAGE)), WINDOWS_ONLY)
    assert FIELDS_SAID not in fix
    assert "every node with a build (windows/amd64) takes no new pods now" in fix
    assert "kubectl get nodes -l kubernetes.io/os=windows" in fix
    assert "node.kubernetes.io" not in fix  # no toleration of a condition's taint


def test_with_no_node_ready_a_not_ready_node_is_named_and_the_fix_says_so() -> None:
    """A control plane without kubelets (envtest): every node is not-ready. A cordoned node
    is still never a target."""
    not_ready = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
    cluster = cluster_with()
    stored(cluster, "linux-1", LINUX_LABELS, [not_ready])
    windows = {"key": "os", "value": "windows", "effect": "NoSchedule"}
    stored(cluster, "win-1", WINDOWS_LABELS, [not_ready, windows])
    stored(cluster, "win-2", WINDOWS_LABELS, [not_ready], unschedulable=True)
    spec = pod_spec(container("web", IMAGE))
    fix = platform_fix(cluster, spec, WINDOWS_ONLY)
    assert "no node of the cluster is Ready now" in fix
    fixed = applied(spec, snippet(fix))
    # Judged as a Ready node: the condition's taint is never tolerated.
    assert schedulable(fixed, WINDOWS_LABELS, [WINDOWS_TAINT])
    assert not schedulable(fixed, WINDOWS_LABELS, [NOT_READY])
    assert fixed["tolerations"] == [
        {"key": "os", "operator": "Equal", "value": "windows", "effect": "NoSchedule"}
    ]


# -- 2. autoscaler taints ---------------------------------------------------------------


def test_nodes_an_autoscaler_removes_are_no_targets_and_its_taints_never_tolerated() -> None:
    cluster = cluster_with()
    stored(cluster, "linux-1", LINUX_LABELS, [])
    windows = {"key": "os", "value": "windows", "effect": "NoSchedule"}
    stored(
        cluster,
        "win-1",
        WINDOWS_LABELS,
        [
            windows,
            {
                "key": "ToBeDeletedByClusterAutoscaler",
                "value": "1733100000",
                "effect": "NoSchedule",
            },
        ],
    )
    stored(
        cluster,
        "win-2",
        WINDOWS_LABELS,
        [windows, {"key": "karpenter.sh/disrupted", "effect": "NoSchedule"}],
    )
    stored(
        cluster,
        "win-3",
        WINDOWS_LABELS,
        [
            {
                "key": "DeletionCandidateOfClusterAutoscaler",
                "value": "1",
                "effect": "PreferNoSchedule",
            }
        ],
    )
    spec = pod_spec(container("web", IMAGE))
    fix = platform_fix(cluster, spec, WINDOWS_ONLY)
    assert "takes no new pods now" in fix and FIELDS_SAID not in fix
    for key in ("ToBeDeleted", "karpenter", "DeletionCandidate"):
        assert key not in fix
    stored(
        cluster,
        "win-4",
        WINDOWS_LABELS,
        [windows, {"key": "dedicated", "value": "win", "effect": "NoExecute"}],
    )
    fields = snippet(platform_fix(cluster, spec, WINDOWS_ONLY))
    assert fields["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "win", "effect": "NoExecute"},
        {"key": "os", "operator": "Equal", "value": "windows", "effect": "NoSchedule"},
    ]


# -- 3. a long fix is sent whole, or said to be too long --------------------------------


def test_a_fix_with_two_taints_is_sent_whole_in_the_warnings() -> None:
    """Before: the fix line passed 256 characters and was dropped without a word."""
    cluster = cluster_with()
    stored(cluster, "linux-1", LINUX_LABELS, [])
    taints = [
        {"key": "os", "value": "windows", "effect": "NoSchedule"},
        {"key": "node.example.com/pool", "value": "windows-ltsc2022", "effect": "NoSchedule"},
    ]
    stored(cluster, "win-1", WINDOWS_LABELS, taints)
    spec = pod_spec(container("web", IMAGE))
    decision = validate(
        request(pod(spec)), WARN, cluster, registry=FixedRegistry({IMAGE: WINDOWS_ONLY})
    )
    (fix,) = [w for w in decision.warnings if w.startswith("pullguard: fix: ")]
    assert len(fix) > 256
    fixed = applied(spec, snippet(fix))
    assert schedulable(
        fixed,
        WINDOWS_LABELS,
        [WINDOWS_TAINT, Taint("node.example.com/pool", "windows-ltsc2022", "NoSchedule")],
    )


def test_a_fix_too_long_for_a_warning_says_where_to_read_it() -> None:
    finding = Finding("platform", 'container "web"', "p", fix="x" * WARNING_FIX_MAX)
    _problem, fix = finding.warning_texts()
    assert fix.startswith("pullguard: fix: too long for a warning: run `pullguard check")
    short = Finding("platform", 'container "web"', "p", fix="y" * 900)
    assert short.warning_texts()[1] == "pullguard: fix: " + "y" * 900


def test_a_pods_own_huge_fields_are_not_repeated_past_the_snippet_bound() -> None:
    """The snippet states the pod's own selector and tolerations whole, and a tenant's are of
    any size: past MAX_SNIPPET the fix says in words what to set, remove and add, without
    the pod's own entries; the line stays within WARNING_FIX_MAX, and done as said it
    schedules."""
    from webhook.core.placement import MAX_SNIPPET

    cluster = cluster_with()
    stored(cluster, "linux-1", LINUX_LABELS, [])
    pool = {"key": "node.example.com/pool", "value": "windows-ltsc2022", "effect": "NoSchedule"}
    stored(
        cluster,
        "win-1",
        WINDOWS_LABELS,
        [{"key": "os", "value": "windows", "effect": "NoSchedule"}, pool],
    )
    own = [{"key": f"team.example.com/t{i}", "operator": "Exists"} for i in range(2000)]
    selector = {f"team.example.com/k{i}": "v" * 60 for i in range(200)}
    spec = pod_spec(container("web", IMAGE)) | {
        "tolerations": own,
        "nodeSelector": selector | {"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"},
    }
    fix = platform_fix(cluster, spec, WINDOWS_ONLY)
    assert FIELDS_SAID not in fix and "team.example.com" not in fix, fix[:300]
    words = 'set nodeSelector {"kubernetes.io/os":"windows"} and remove its kubernetes.io/arch'
    assert words in fix, fix
    start = fix.index("add to the pod's tolerations: ") + len("add to the pod's tolerations: ")
    added, _ = json.JSONDecoder().raw_decode(fix[start:])
    assert len(fix) < MAX_SNIPPET + 200
    decision = validate(
        request(pod(spec)), WARN, cluster, registry=FixedRegistry({IMAGE: WINDOWS_ONLY})
    )
    lines = [w for w in decision.warnings if w.startswith("pullguard: fix: ")]
    assert lines == [f"pullguard: fix: {fix}"] and len(lines[0]) <= WARNING_FIX_MAX
    # Done as the words say: the platform keys set and removed, the tolerations added.
    fixed = dict(spec)
    fixed["nodeSelector"] = {
        k: v for k, v in spec["nodeSelector"].items() if k != "kubernetes.io/arch"
    } | {"kubernetes.io/os": "windows"}
    fixed["tolerations"] = [*own, *added]
    windows_node = WINDOWS_LABELS | selector
    assert schedulable(
        fixed,
        windows_node,
        [WINDOWS_TAINT, Taint("node.example.com/pool", "windows-ltsc2022", "NoSchedule")],
    )
    assert not schedulable(fixed, LINUX_LABELS | selector, [])


# -- 4. the pod's own required node affinity -------------------------------------------


def test_a_pods_affinity_that_excludes_every_build_is_named_not_contradicted() -> None:
    cluster = cluster_with()
    cluster.add_node("a", "linux", "amd64")
    cluster.add_node("b", "linux", "arm64")
    affinity = required_arch("In", "amd64")
    spec = pod_spec(container("web", IMAGE)) | {"affinity": affinity}
    fix = platform_fix(cluster, spec, ARM_ONLY)
    assert FIELDS_SAID not in fix
    assert "the pod's own required node affinity (its kubernetes.io/arch term" in fix
    assert "(linux/arm64): to run there, change that term" in fix


def test_an_affinity_that_allows_some_builds_keeps_the_fix_within_it() -> None:
    cluster = cluster_with()
    for name, arch in (("a", "amd64"), ("b", "arm64"), ("c", "s390x")):
        cluster.add_node(name, "linux", arch)
    affinity = required_arch("NotIn", "arm64")
    spec = pod_spec(container("web", IMAGE)) | {"affinity": affinity}
    both = Answer(Outcome.FOUND, platforms=(Platform("linux", "arm64"), Platform("linux", "s390x")))
    spec["nodeSelector"] = {"kubernetes.io/arch": "amd64"}
    fixed = applied(spec, snippet(platform_fix(cluster, spec, both)))
    s390x = {"kubernetes.io/os": "linux", "kubernetes.io/arch": "s390x"}
    assert schedulable(fixed, s390x, [])


# -- 5. the whole nodeSelector: the pod's platform keys replaced ------------------------


def test_an_os_fix_replaces_the_pods_arch_key_and_keeps_its_own_keys() -> None:
    cluster = cluster_with()
    cluster.add_node("a", "linux", "arm64")
    cluster.add_node("w", "windows", "amd64", taints=(WINDOWS_TAINT,))
    spec = pod_spec(container("web", IMAGE)) | {
        "nodeSelector": {"kubernetes.io/arch": "arm64", "disktype": "ssd"}
    }
    fix = platform_fix(cluster, spec, WINDOWS_ONLY)
    assert "add to" not in fix
    fields = snippet(fix)
    assert fields["nodeSelector"] == {"disktype": "ssd", "kubernetes.io/os": "windows"}
    assert schedulable(applied(spec, fields), WINDOWS_LABELS | {"disktype": "ssd"}, [WINDOWS_TAINT])


def test_a_beta_platform_key_of_the_pod_is_replaced_too() -> None:
    cluster = cluster_with()
    cluster.add_node("a", "linux", "amd64")
    cluster.add_node("b", "linux", "arm64")
    spec = pod_spec(container("web", IMAGE)) | {
        "nodeSelector": {"beta.kubernetes.io/arch": "amd64"}
    }
    fields = snippet(platform_fix(cluster, spec, ARM_ONLY))
    assert fields == {"nodeSelector": {"kubernetes.io/arch": "arm64"}}
    beta = ARM_LABELS | {"beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "arm64"}
    assert schedulable(applied(spec, fields), beta, [])


def test_diagnoses_merge_patch_removes_the_pods_conflicting_platform_keys() -> None:
    cluster = cluster_with()
    cluster.add_node("a", "linux", "arm64")
    cluster.add_node("w", "windows", "amd64", taints=(WINDOWS_TAINT,))
    spec = pod_spec(container("web", IMAGE)) | {
        "nodeSelector": {
            "kubernetes.io/arch": "arm64",
            "beta.kubernetes.io/os": "linux",
            "disktype": "ssd",
        }
    }
    decision = validate(
        request(pod(spec)), ENFORCE, cluster, registry=FixedRegistry({IMAGE: WINDOWS_ONLY})
    )
    (found,) = diagnose(
        failing(spec), [], decision.findings, workload=Workload("Deployment", "web")
    )
    (fix,) = found.fixes
    selector = patch_body(fix)["spec"]["template"]["spec"]["nodeSelector"]
    assert selector == {
        "disktype": "ssd",
        "kubernetes.io/os": "windows",
        "kubernetes.io/arch": None,
        "beta.kubernetes.io/os": None,
    }
    # The merge patch applied (RFC 7386: null removes the key) schedules on the Windows node.
    merged = {k: v for k, v in ({**spec["nodeSelector"], **selector}).items() if v is not None}
    template = patch_body(fix)["spec"]["template"]["spec"]
    assert schedulable(
        {"nodeSelector": merged, "tolerations": template["tolerations"]},
        WINDOWS_LABELS | {"disktype": "ssd"},
        [WINDOWS_TAINT],
    )


# -- 6, 7. diagnose: only builds a node would pull, only platforms a node has ------------


def test_diagnose_offers_no_amd64_node_for_a_v3_only_build() -> None:
    builds = {'container "web"': ("linux/amd64/v3", "linux/arm64")}
    (found,) = diagnose(
        failing(pod_spec(container("web", IMAGE))),
        [],
        [],
        live_note="platform: unavailable",
        workload=Workload("Deployment", "web"),
        image_platforms=builds,
    )
    (fix,) = found.fixes
    assert "this image has builds for linux/amd64/v3 and linux/arm64" in fix
    assert '"kubernetes.io/arch":"arm64"' in fix
    assert '"kubernetes.io/arch":"amd64"' not in fix
    (only_v3,) = diagnose(
        failing(pod_spec(container("web", IMAGE))),
        [],
        [],
        live_note="platform: unavailable",
        workload=Workload("Deployment", "web"),
        image_platforms={'container "web"': ("linux/amd64/v3",)},
    )
    (words,) = only_v3.fixes
    assert "kubectl patch" not in words and "no variant but v1" in words


def test_diagnose_offers_no_patch_to_a_platform_no_node_has() -> None:
    cluster = cluster_with()
    cluster.add_node("a", "linux", "amd64")
    spec = pod_spec(container("web", IMAGE))
    decision = validate(
        request(pod(spec)), ENFORCE, cluster, registry=FixedRegistry({IMAGE: ARM_ONLY})
    )
    (found,) = diagnose(
        failing(spec),
        [],
        decision.findings,
        workload=Workload("Deployment", "web"),
        image_platforms=dict(decision.image_platforms),
    )
    (fix,) = found.fixes
    assert "kubectl patch" not in fix
    assert (
        "the image has a build for no platform of the cluster's nodes (they are linux/amd64)" in fix
    )
    # Nodes known, the live check could not judge (the pod's node says no platform): the
    # builds are offered only where a node of the cluster has their platform.
    (unjudged,) = diagnose(
        failing(spec),
        [],
        [],
        live_note="platform: unavailable",
        workload=Workload("Deployment", "web"),
        image_platforms={'container "web"': ("linux/arm64",)},
        node_platforms={("linux", "amd64")},
    )
    (words,) = unjudged.fixes
    assert "kubectl patch" not in words
    assert "no node of the cluster would pull one (its nodes are linux/amd64)" in words


# -- 8. unknown taints: words that fit the image ----------------------------------------


def test_a_pod_that_can_only_run_elsewhere_with_unknown_taints_gets_the_os_and_the_hint() -> None:
    cluster = cluster_with()
    cluster.add_node("a", "linux", "amd64")
    cluster.add_node("w", "windows", "amd64", taints=None)
    spec = pod_spec(container("web", IMAGE)) | {"nodeSelector": {"kubernetes.io/os": "linux"}}
    fix = platform_fix(cluster, spec, WINDOWS_ONLY)
    assert "kubernetes.io/arch nodeSelector" not in fix
    assert 'set the pod\'s nodeSelector to {"kubernetes.io/os":"windows"}' in fix
    assert "kubectl get nodes -l kubernetes.io/os=windows -o jsonpath=" in fix


def test_over_the_cap_a_node_has_unknown_taints() -> None:
    many = [
        {"key": f"k{i}", "value": "v", "effect": "NoSchedule"}
        for i in range(MAX_TAINTS_PER_NODE + 1)
    ]
    node = client.V1Node(
        metadata=client.V1ObjectMeta(name="w", labels=WINDOWS_LABELS),
        spec=client.V1NodeSpec(taints=[client.V1Taint(**t) for t in many]),
    )
    assert node_facts_of(node)[1] is None


# -- 9. the pod's own tolerations are in the snippet --------------------------------------


def test_the_snippet_keeps_the_pods_own_tolerations() -> None:
    cluster = cluster_with()
    cluster.add_node("linux-1", "linux", "amd64")
    gpu = Taint("dedicated", "gpu", "NoSchedule")
    cluster.add_node("win-1", "windows", "amd64", taints=(WINDOWS_TAINT, gpu))
    own = {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
    spec = pod_spec(container("web", IMAGE)) | {"tolerations": [own]}
    fields = snippet(platform_fix(cluster, spec, WINDOWS_ONLY))
    assert fields["tolerations"][0] == own
    assert schedulable(applied(spec, fields), WINDOWS_LABELS, [WINDOWS_TAINT, gpu])


# -- 10. the nodes a warning names are nodes the pod may be scheduled on (rev22 F13) ------
# GKE taints every Arm node kubernetes.io/arch=arm64:NoSchedule: a pod without the
# toleration never lands there, so "on linux/arm64 nodes it fails" was false.

ARCH_TAINT = Taint("kubernetes.io/arch", "arm64", "NoSchedule")
AMD_ONLY = Answer(Outcome.FOUND, platforms=(Platform("linux", "amd64"),))
AMD_IMAGE = "registry.example.com/team/app:1"


def arm_tainted(arm_taints: tuple[Taint, ...] | None = (ARCH_TAINT,)) -> InMemoryCluster:
    cluster = cluster_with()
    cluster.add_node("amd-1", "linux", "amd64")
    cluster.add_node("arm-1", "linux", "arm64", taints=arm_taints)
    return cluster


def amd_only_decision(cluster: InMemoryCluster, spec: dict[str, Any], config=ENFORCE):  # type: ignore[no-untyped-def]
    return validate(
        request(pod(spec)), config, cluster, registry=FixedRegistry({AMD_IMAGE: AMD_ONLY})
    )


def test_no_platform_warning_for_nodes_the_pod_cannot_be_scheduled_on() -> None:
    spec = pod_spec(container("web", AMD_IMAGE))
    assert not schedulable(spec, ARM_LABELS, [ARCH_TAINT])  # the claim would be false
    decision = amd_only_decision(arm_tainted(), spec)
    assert decision.allowed
    assert not [f for f in decision.findings if f.check == "platform"], decision.warnings
    assert not [w for w in decision.warnings if "arm64" in w], decision.warnings


def test_a_pod_that_tolerates_the_taint_is_warned_about_those_nodes() -> None:
    toleration = {"key": "kubernetes.io/arch", "operator": "Exists", "effect": "NoSchedule"}
    spec = pod_spec(container("web", AMD_IMAGE)) | {"tolerations": [toleration]}
    assert schedulable(spec, ARM_LABELS, [ARCH_TAINT])
    decision = amd_only_decision(arm_tainted(), spec)
    assert decision.allowed
    assert any("it fails on linux/arm64 nodes" in w for w in decision.warnings), decision.warnings


def test_when_only_untolerated_nodes_have_a_build_it_says_so_and_never_denies() -> None:
    """The amd64 nodes are tainted, the arm64 ones free: as written the pod goes to arm64
    and fails; it is said which nodes have a build and why the pod does not go there, and
    the fix's tolerations take it there. A warning: an admission plugin may add the
    toleration to a template's pods (PodTolerationRestriction), or the taint may go."""
    cluster = cluster_with()
    dedicated = Taint("dedicated", "x86", "NoSchedule")
    cluster.add_node("amd-1", "linux", "amd64", taints=(dedicated,))
    cluster.add_node("arm-1", "linux", "arm64")
    spec = pod_spec(container("web", AMD_IMAGE))
    assert schedulable(spec, ARM_LABELS, []) and not schedulable(spec, LINUX_LABELS, [dedicated])
    decision = amd_only_decision(cluster, spec)
    assert decision.allowed
    (finding,) = [f for f in decision.findings if f.check == "platform"]
    assert "can be scheduled on linux/arm64 nodes only" in finding.problem
    assert "the linux/amd64 nodes, which have a build, have taints it does not tolerate" in (
        finding.problem
    )
    assert "does not tolerate the taints of the linux/amd64 nodes" in decision.warnings[0]
    fixed = applied(spec, snippet(finding.fix or ""))
    assert schedulable(fixed, LINUX_LABELS, [dedicated])
    assert not schedulable(fixed, ARM_LABELS, [])


def test_a_cordoned_or_unknown_tainted_node_may_still_take_the_pod() -> None:
    """A cordon or a node condition's taint goes away (the node takes pods again), and
    taints past the cap are unknown: those nodes are still named."""
    cordoned = Taint("node.kubernetes.io/unschedulable", "", "NoSchedule")
    for taints in [(cordoned,), None]:
        decision = amd_only_decision(arm_tainted(taints), pod_spec(container("web", AMD_IMAGE)))
        assert any("it fails on linux/arm64 nodes" in w for w in decision.warnings), taints


def test_taints_never_move_a_pod_bound_to_a_node_nor_excuse_an_image_no_node_runs() -> None:
    """spec.nodeName bypasses the scheduler (and its taints); a pod no node tolerates,
    for an image no node it may select has a build of, still certainly fails there."""
    bound = pod_spec(container("web", AMD_IMAGE)) | {"nodeName": "arm-1"}
    assert not amd_only_decision(arm_tainted(), bound).allowed
    cluster = cluster_with()
    cluster.add_node("arm-1", "linux", "arm64", taints=(ARCH_TAINT,))
    assert not amd_only_decision(cluster, pod_spec(container("web", AMD_IMAGE))).allowed
