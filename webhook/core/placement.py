"""Where a pod must go to find a build of its image, as pod-spec fields a fix can print.

The platform check says an image lacks a build for the nodes a pod may use; its fix must
schedule as printed. A nodeSelector alone does not when the nodes with a build are all
tainted against the pod (Windows nodes usually carry ``os=windows:NoSchedule`` so that Linux
pods stay off): the fix then adds the tolerations, with the taints' exact key, value and
effect, judged by the scheduler's own rule (``v1.Toleration.ToleratesTaint``).

Pure: node facts and a pod spec in, a :class:`Placement` out. It must not guess: nodes whose
taints are unknown (over the caps of :mod:`webhook.core.cluster`) give no placement.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from webhook.core.cluster import (
    BARRING_EFFECTS,
    CONDITION_TAINT_PREFIXES,
    ClusterUnavailable,
    ClusterView,
    NodeTaints,
    Taint,
)
from webhook.core.registry import Platform, executes_on, serves

OS_LABEL = "kubernetes.io/os"
ARCH_LABEL = "kubernetes.io/arch"


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


def toleration_for(taint: Taint) -> dict[str, str]:
    """The toleration of exactly ``taint`` (``Exists`` for a taint without a value)."""
    if not taint.value:
        return {"key": taint.key, "operator": "Exists", "effect": taint.effect}
    return {"key": taint.key, "operator": "Equal", "value": taint.value, "effect": taint.effect}


@dataclass(frozen=True, slots=True)
class Placement:
    """Pod-spec fields that put the pod on nodes with a build: os/arch selector keys to set,
    tolerations to add to those the pod has."""

    node_selector: tuple[tuple[str, str], ...]
    tolerations: tuple[tuple[tuple[str, str], ...], ...] = ()

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"nodeSelector": dict(self.node_selector)}
        if self.tolerations:
            out["tolerations"] = [dict(t) for t in self.tolerations]
        return out

    def snippet(self) -> str:
        """The fields as compact JSON (valid YAML, pasted into the pod spec as it is; short
        enough for a kubectl warning line with one or two tolerations)."""
        return json.dumps(self.fields(), separators=(",", ":"))


def _selector(
    targets: Sequence[tuple[str, str]], nodes: Sequence[tuple[str, str]]
) -> dict[str, str]:
    """The fewest os/arch labels that select only nodes of ``targets`` (and some)."""
    oses = {os_name for os_name, _ in targets}
    arches = {arch for _, arch in targets}
    if len(oses) == 1:
        (os_name,) = oses
        if all(n in targets for n in nodes if n[0] == os_name):
            return {OS_LABEL: os_name}
    if len(arches) == 1:
        (arch,) = arches
        if all(n in targets for n in nodes if n[1] == arch):
            return {ARCH_LABEL: arch}
    os_name, arch = targets[0]
    return {OS_LABEL: os_name, ARCH_LABEL: arch}


def placement_for(
    image: Sequence[Platform],
    nodes: NodeTaints,
    spec: Mapping[str, Any],
    *,
    single_image: bool = False,
) -> Placement | None:
    """The selector (and tolerations) that schedule a pod of ``spec`` onto nodes of the
    cluster with a build of ``image``; ``None`` when no node has one, or when the nodes it
    selects have unknown taints and none is known to take the pod."""
    fits = executes_on if single_image else serves
    platforms = sorted(nodes)
    targets = [n for n in platforms if any(fits(p, n) for p in image)]
    if not targets:
        return None
    selector = _selector(targets, platforms)
    chosen = [
        n
        for n in targets
        if all(selector.get(k) == v for k, v in _labels(n).items() if k in selector)
    ]
    raw = spec.get("tolerations")
    has = [t for t in raw if isinstance(t, Mapping)] if isinstance(raw, list) else []
    needed: list[tuple[Taint, ...]] = []
    for platform in chosen:
        for taints in nodes[platform]:
            if taints is None:
                continue
            needed.append(
                tuple(
                    t
                    for t in taints
                    if t.effect in BARRING_EFFECTS
                    and not t.key.startswith(CONDITION_TAINT_PREFIXES)
                    and not any(tolerates(h, t) for h in has)
                )
            )
    if not needed:
        return None  # every selected node's taints are unknown
    fewest = min(needed, key=lambda taints: (len(taints), taints))
    return Placement(
        node_selector=tuple(selector.items()),
        tolerations=tuple(tuple(toleration_for(t).items()) for t in fewest),
    )


def _labels(platform: tuple[str, str]) -> dict[str, str]:
    return {OS_LABEL: platform[0], ARCH_LABEL: platform[1]}


def cluster_placement(
    cluster: ClusterView,
    image: Sequence[Platform],
    spec: Mapping[str, Any],
    *,
    single_image: bool = False,
) -> Placement | None:
    """:func:`placement_for` against ``cluster``'s nodes (a
    :class:`webhook.core.cluster.ClusterView`); ``None`` when they cannot be read (the fix
    then says in words what to look up)."""
    try:
        nodes = cluster.node_taints()
    except ClusterUnavailable:
        return None
    return placement_for(image, nodes, spec, single_image=single_image)
