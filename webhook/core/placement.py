"""Where a pod must go to find a build of its image, as pod-spec fields a fix can print.

The platform check says an image lacks a build for the nodes a pod may use; its fix must
schedule as printed, under the scheduler's rules:

- the nodeSelector is stated whole: the pod's own keys kept, but its platform keys
  (``kubernetes.io/os``/``arch`` and the ``beta.kubernetes.io`` ones) replaced by the fewest
  labels that select nodes with a build (one builder, :func:`platform_selector`, for every
  platform fix: the check's and ``diagnose``'s);
- the pod's required node affinity is ANDed with any selector, so a pod whose own affinity
  excludes every node with a build is told which of its terms to change, never given a
  selector that matches nothing;
- nodes that take no new pods (cordoned, a node condition's taint, an autoscaler removing
  them: :func:`webhook.core.cluster.transient`) are no targets while a healthy node has a
  build, and their taints are never tolerated; a node only not Ready is named when no node
  of the cluster is Ready (a control plane without kubelets), and the fix says so;
- the tolerations are the pod's own plus those one target node's taints need (exact key,
  value and effect), judged by the scheduler's ``v1.Toleration.ToleratesTaint``.

Pure: node facts and a pod spec in, a :class:`Placement` (or :class:`Unplaced`, the words
for when no fields would do) out. It must not guess: nodes whose taints are unknown (over
the caps of :mod:`webhook.core.cluster`) give no fields.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.core.cluster import (
    BARRING_EFFECTS,
    ClusterUnavailable,
    ClusterView,
    NodeTaints,
    Taint,
    node_state,
    transient,
)
from webhook.core.registry import (
    ARCH_LABELS,
    OS_LABELS,
    Platform,
    executes_on,
    required_node_terms,
    runnable_node_platforms,
    serves,
    words_list,
)

OS_LABEL = "kubernetes.io/os"
ARCH_LABEL = "kubernetes.io/arch"
#: Every node label that names a node's platform; the selector a fix states replaces them.
PLATFORM_LABELS = (*OS_LABELS, *ARCH_LABELS)
#: Past this many characters the pod-spec fields are said in words (the pod's own selector
#: and tolerations are the tenant's, of any size): the platform keys to set and remove, and
#: the tolerations to add.
MAX_SNIPPET = 1024


def tolerates(toleration: Mapping[str, Any], taint: Taint) -> bool:
    """The scheduler's ``ToleratesTaint``: an empty effect matches every effect, an empty
    key (with ``Exists``) every key; ``Equal`` (the default) compares the value."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.effect:
        return False
    key = toleration.get("key") or ""
    if key and key != taint.key:
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and str(toleration.get("value") or "") == taint.value


def tolerated_platforms(nodes: NodeTaints, spec: Mapping[str, Any]) -> set[tuple[str, str]]:
    """The node platforms with a node whose taints do not keep a pod of ``spec`` off, as the
    scheduler's TaintToleration filter judges: every ``NoSchedule``/``NoExecute`` taint
    tolerated by one of the pod's tolerations. A node's health or removal taint
    (:func:`webhook.core.cluster.transient`) bars nothing here: the node takes pods again
    once it recovers. A node whose taints are unknown (``None``) may take the pod."""
    raw = spec.get("tolerations")
    has = [t for t in raw if isinstance(t, Mapping)] if isinstance(raw, list) else []
    return {
        platform
        for platform, sets in nodes.items()
        if any(
            taints is None
            or all(
                any(tolerates(h, t) for h in has)
                for t in taints
                if t.effect in BARRING_EFFECTS and not transient(t)
            )
            for taints in sets
        )
    }


def toleration_for(taint: Taint) -> dict[str, str]:
    """The toleration of exactly ``taint`` (``Exists`` for a taint without a value)."""
    if not taint.value:
        return {"key": taint.key, "operator": "Exists", "effect": taint.effect}
    return {"key": taint.key, "operator": "Equal", "value": taint.value, "effect": taint.effect}


def _own_selector(spec: Mapping[str, Any] | None) -> dict[str, str]:
    raw = (spec or {}).get("nodeSelector")
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}


def platform_selector(
    wanted: Sequence[tuple[str, str]],
    nodes: Collection[tuple[str, str]] | None = None,
    spec: Mapping[str, Any] | None = None,
    *,
    acceptable: Collection[tuple[str, str]] = (),
) -> dict[str, str]:
    """The whole nodeSelector that keeps a pod of ``spec`` on nodes of the platforms
    ``wanted`` (os, arch): the pod's own keys but its platform ones (:data:`PLATFORM_LABELS`),
    plus the fewest ``kubernetes.io/os``/``arch`` labels that select, among ``nodes``, only
    platforms of ``wanted`` or ``acceptable``; both labels of ``wanted[0]`` when the nodes
    are unknown (``None``) or no single label does."""
    ok = {*wanted, *acceptable}
    platform: dict[str, str] = {}
    if nodes is not None:
        oses = {os_name for os_name, _ in wanted}
        arches = {arch for _, arch in wanted}
        if len(oses) == 1 and all(n in ok for n in nodes if n[0] in oses):
            platform = {OS_LABEL: next(iter(oses))}
        elif len(arches) == 1 and all(n in ok for n in nodes if n[1] in arches):
            platform = {ARCH_LABEL: next(iter(arches))}
    if not platform:
        os_name, arch = wanted[0]
        platform = {OS_LABEL: os_name, ARCH_LABEL: arch}
    own = {k: v for k, v in _own_selector(spec).items() if k not in PLATFORM_LABELS}
    return own | platform


def selects(selector: Mapping[str, str], platform: tuple[str, str]) -> bool:
    """Does ``selector`` (its platform keys: the only labels pullguard knows) match a node
    of ``platform``?"""
    labels = dict.fromkeys(OS_LABELS, platform[0]) | dict.fromkeys(ARCH_LABELS, platform[1])
    return all(v == labels[k] for k, v in selector.items() if k in labels)


@dataclass(frozen=True, slots=True)
class Placement:
    """Pod-spec fields that put the pod on nodes with a build, each stated whole: the
    nodeSelector (the pod's own keys with its platform keys replaced) and, when the target
    nodes' taints need some, the tolerations (the pod's own, then those added). ``removed``:
    the pod's platform keys the selector drops (a merge patch sets them to ``null``);
    ``note``: what the fix must say with the fields (no node is Ready now)."""

    node_selector: tuple[tuple[str, str], ...]
    tolerations: tuple[tuple[tuple[str, Any], ...], ...] = ()
    added: tuple[tuple[tuple[str, str], ...], ...] = ()
    removed: tuple[str, ...] = ()
    note: str = ""

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"nodeSelector": dict(self.node_selector)}
        if self.added:
            out["tolerations"] = [dict(t) for t in self.tolerations]
        return out

    def snippet(self) -> str:
        """The fields as compact JSON (valid YAML; each field replaces the pod's own)."""
        return json.dumps(self.fields(), separators=(",", ":"))

    def instruction(self) -> str:
        """``set in the pod spec: {...}`` (each field whole), or, past :data:`MAX_SNIPPET`,
        the same in words that do not repeat the pod's own entries."""
        snippet = self.snippet()
        if len(snippet) <= MAX_SNIPPET:
            return f"set in the pod spec: {snippet}{self.note}"
        platform = {k: v for k, v in self.node_selector if k in PLATFORM_LABELS}
        words = f"set nodeSelector {json.dumps(platform, separators=(',', ':'))}"
        if self.removed:
            words += f" and remove its {words_list(list(self.removed))}"
        if self.added:
            added = json.dumps([dict(t) for t in self.added], separators=(",", ":"))
            words += f", and add to the pod's tolerations: {added}"
        return f"{words} in the pod spec{self.note}"


@dataclass(frozen=True, slots=True)
class Unplaced:
    """No fields would schedule the pod onto a node with a build: ``why``, in words that
    end in what to do (a fix clause)."""

    why: str


def _affinity_terms(spec: Mapping[str, Any]) -> list[str]:
    """The platform labels the pod's required node affinity names."""
    keys: dict[str, None] = {}
    for term in required_node_terms(spec):
        expressions = term.get("matchExpressions")
        for e in expressions if isinstance(expressions, list) else []:
            if isinstance(e, Mapping) and e.get("key") in PLATFORM_LABELS:
                keys[str(e["key"])] = None
    return list(keys)


def _platforms(platforms: Sequence[tuple[str, str]]) -> str:
    return words_list([f"{os_name}/{arch}" for os_name, arch in platforms])


def placement_for(
    image: Sequence[Platform],
    nodes: NodeTaints,
    spec: Mapping[str, Any],
    *,
    single_image: bool = False,
) -> Placement | Unplaced:
    """The fields that schedule a pod of ``spec`` onto a node of the cluster with a build
    of ``image`` (see the module's rules), or why none would."""
    fits = executes_on if single_image else serves
    platforms = sorted(nodes)
    built = [n for n in platforms if any(fits(p, n) for p in image)]
    if not built:
        return Unplaced(
            f"the image has a build for no platform of the cluster's nodes (they are "
            f"{_platforms(platforms)})"
        )
    # The selector is the fix's to state; the required affinity is the pod's and stays.
    unselected = {k: v for k, v in spec.items() if k not in ("nodeSelector", "nodeName")}
    allowed = runnable_node_platforms(unselected, platforms)
    targets = [n for n in built if n in allowed]
    if not targets:
        terms = words_list(_affinity_terms(spec)) or "platform"
        return Unplaced(
            f"the pod's own required node affinity (its {terms} term in spec.affinity."
            "nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution) excludes every node "
            f"with a build ({_platforms(built)}): to run there, change that term to allow one"
        )
    known = [t for sets in nodes.values() for t in sets if t is not None]
    any_ready = any(node_state(t) == "ready" for t in known)
    usable = "ready" if any_ready else "not-ready"
    candidates = {
        n: [t for t in nodes[n] if t is not None and node_state(t) == usable] for n in targets
    }
    wanted = [n for n in targets if candidates[n]]
    if not wanted:
        labels = shlex.quote(
            ",".join(f"{k}={v}" for k, v in platform_selector(targets, platforms).items())
        )
        if any(None in nodes[n] for n in targets):
            selector = platform_selector(targets, platforms, spec, acceptable=built)
            return Unplaced(
                f"or set the pod's nodeSelector to {json.dumps(selector, separators=(',', ':'))}"
                ", with tolerations for any taints of those nodes, which pullguard does not "
                f"know (list them: kubectl get nodes -l {labels} -o jsonpath='{{.items[*].spec."
                "taints}')"
            )
        return Unplaced(
            f"every node with a build ({_platforms(targets)}) takes no new pods now (cordoned, "
            "not Ready, under pressure or being removed by an autoscaler): uncordon or repair "
            f"one (kubectl get nodes -l {labels})"
        )
    selector = platform_selector(wanted, platforms, spec, acceptable=built)
    raw = spec.get("tolerations")
    has = [t for t in raw if isinstance(t, Mapping)] if isinstance(raw, list) else []
    needed = [
        tuple(
            t
            for t in taints
            if t.effect in BARRING_EFFECTS
            and not transient(t)
            and not any(tolerates(h, t) for h in has)
        )
        for n in wanted
        if selects(selector, n)
        for taints in candidates[n]
    ]
    fewest = min(needed, key=lambda taints: (len(taints), taints))
    added = tuple(tuple(toleration_for(t).items()) for t in fewest)
    own = _own_selector(spec)
    return Placement(
        node_selector=tuple(selector.items()),
        tolerations=tuple(tuple(t.items()) for t in has) + added if added else (),
        added=added,
        removed=tuple(k for k in own if k in PLATFORM_LABELS and k not in selector),
        note=""
        if any_ready
        else " (no node of the cluster is Ready now: the pod is scheduled once one is)",
    )


def cluster_placement(
    cluster: ClusterView,
    image: Sequence[Platform],
    spec: Mapping[str, Any],
    *,
    single_image: bool = False,
) -> Placement | Unplaced | None:
    """:func:`placement_for` against ``cluster``'s nodes (a
    :class:`webhook.core.cluster.ClusterView`); ``None`` when they cannot be read (the fix
    then says in words what to look up)."""
    try:
        nodes = cluster.node_taints()
    except ClusterUnavailable:
        return None
    if not nodes:
        return None
    return placement_for(image, nodes, spec, single_image=single_image)
