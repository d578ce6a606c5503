"""The audit scan that ``pullguard audit`` and the in-cluster audit (``serve
--audit-interval``) share: every object in scope that carries a pod template, judged as if it
were created now, the objects with findings kept, the images the registry check could not
settle collected, and the findings counted.

- :func:`in_scope` lists what is judged (objects a controller made are left out: their owner
  is judged instead); :func:`scan` judges it; :func:`tally` counts findings.
- What was not judged is kept apart, never counted as nothing found: objects in an exempt
  namespace or one whose mode is ``off``, images the registry check could not settle, and
  objects a check could not judge (secrets not readable, platforms unknown).
- :func:`audit_cluster` is the whole of ``pullguard audit``'s run: the cluster, its
  configuration, the scope, the scan.

Read-only: the listing is :mod:`webhook.edge.kubereads`, judging
:func:`webhook.compose.livecheck.judge`. Must not: print, or parse arguments.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webhook.compose import livecheck
from webhook.core.cluster import ClusterView
from webhook.core.config import Action, Config
from webhook.core.findings import Finding
from webhook.core.fixcommands import KEEPS_ITS_PODS
from webhook.core.nodecreds import NodeCredentialView
from webhook.core.podspec import controller_owner
from webhook.core.registry import RegistryView
from webhook.core.validate import Decision, made_by_controller

if TYPE_CHECKING:
    from webhook.edge.kubereads import Kube

#: (kind, object as the API returns it, its decision) of an object with findings
Judged = tuple[str, dict[str, Any], Decision]


@dataclass
class Scan:
    """What one scan saw."""

    scanned: int = 0
    judged: list[Judged] = field(default_factory=list)
    """The objects with findings, in the order met."""
    not_checked: dict[str, dict[str, None]] = field(default_factory=dict)
    """Why -> the images the registry check could not settle for that reason, in order met."""
    exempt: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Namespace -> (why, how many objects) not judged: the namespace is exempt
    (``exemptNamespaces``, or pullguard's own), as at admission. The audit says so rather
    than "nothing would be denied or warned". Why is the decision's own
    (``Decision.why``)."""
    mode_off: dict[str, tuple[str, int]] = field(default_factory=dict)
    """Namespace -> (why, how many objects) not judged because every check is off there
    (its ``pullguard.io/mode: off`` label, or the configuration), as at admission: "mode
    off, not judged", never "nothing would be denied or warned". Why is the decision's
    own (``Decision.why``), never read again: a second read could fail or differ."""
    checks_not_run: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    """(check, why) -> the objects (``Deployment team-a/web``) a check could not judge:
    the pullSecrets check when Secrets or ServiceAccounts are not readable, the platform
    check when the nodes' platforms (or an image's) are unknown. The registry check's are
    in :attr:`not_checked`, by image."""


def action_of(finding: Finding) -> str:
    """How the audit names a finding's action: ``deny`` (enforced) or ``warn``."""
    return "deny" if finding.action is Action.ENFORCE else "warn"


def tally(judged: Iterable[tuple[str, Decision]]) -> Counter[tuple[str, str, str]]:
    """Findings of (namespace, decision) pairs, counted by (namespace, check, action)."""
    return Counter(
        (namespace, finding.check, action_of(finding))
        for namespace, decision in judged
        for finding in decision.findings
    )


def in_scope(kube: Kube, namespace: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(kind, object as the API returns it) for every judged object in ``namespace`` (every
    namespace for ``None``)."""
    for kind, document in kube.pod_carriers(namespace):
        if not made_by_controller(document):
            yield kind, document


def scan(
    found: Iterable[tuple[str, dict[str, Any]]],
    config: Config,
    cluster: ClusterView,
    registry: RegistryView,
    *,
    own_namespace: str = "",
    progress: Callable[[int], None] | None = None,
    node: NodeCredentialView | None = None,
    pods: Iterable[dict[str, Any]] | None = None,
) -> Scan:
    """Each object of ``found`` judged; ``progress(n)`` before the n-th (1-based);
    ``node``: the credential providers, as at admission. ``pods``: the pods in scope
    (``pullguard audit``): an owner that keeps the pods it has gets its stuck ones deleted
    after a set image, and a bare Pod's pull-secret fix recreates it; ``None``: the fixes
    are the manifest's, as at admission."""
    result = Scan()
    stuck = _stuck_pods_by_owner(pods or [])
    for index, (kind, document) in enumerate(found, 1):
        if progress is not None:
            progress(index)
        result.scanned = index
        metadata = document.get("metadata") or {}
        decision = livecheck.judge(
            kind,
            document,
            config,
            cluster,
            registry,
            own_namespace=own_namespace,
            node=node,
            stuck_pods=stuck.get(str(metadata.get("uid") or ""), ()),
            recreate_bare_pod=pods is not None,
        )
        namespace = str(metadata.get("namespace") or "")
        unjudged = {"exempt": result.exempt, "mode-off": result.mode_off}.get(decision.reason)
        if unjudged is not None:
            why, count = unjudged.get(namespace) or (decision.why, 0)
            unjudged[namespace] = (why, count + 1)
        for image, why in decision.not_checked:
            result.not_checked.setdefault(why, {}).setdefault(image, None)
        registry_why = dict(decision.could_not_run).get("registry")
        for check, why in decision.could_not_run:
            # The registry check's (and a platform check that waits on it) are by image.
            if check == "registry" or why == registry_why:
                continue
            label = f"{kind} {namespace}/{metadata.get('name') or ''}"
            result.checks_not_run.setdefault((check, why), []).append(label)
        if decision.findings:
            result.judged.append((kind, document, decision))
    return result


def _stuck_pods_by_owner(pods: Iterable[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    """Controller uid -> the names of its pods of :data:`KEEPS_ITS_PODS` owners that are
    not ready (pending, pulling, failing): the ones it keeps through a template change.
    A ready pod is never among them."""
    stuck: dict[str, list[str]] = {}
    for pod in pods:
        metadata = pod.get("metadata") or {}
        conditions = (pod.get("status") or {}).get("conditions") or []
        ready = any(
            isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True"
            for c in conditions
        )
        name = str(metadata.get("name") or "")
        if ready or not name:
            continue
        owner = controller_owner(pod)
        if owner is not None and owner.get("kind") in KEEPS_ITS_PODS and owner.get("uid"):
            stuck.setdefault(str(owner["uid"]), []).append(name)
    return {uid: tuple(sorted(names)) for uid, names in stuck.items()}


def audit_cluster(
    config_file: Path | None,
    pullguard_namespace: str,
    namespace: str | None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[str, Scan]:
    """``pullguard audit``: (where the configuration came from, the scan) of ``namespace``
    (every namespace for ``None``), with the caller's credentials. ``progress(n, total)``
    before the n-th object. :class:`~webhook.compose.livecheck.ClusterUnreadable` when the
    cluster or its objects could not be read, or ``--config`` not loaded;
    :class:`~webhook.compose.livecheck.NamespaceMissing` when the namespace has nothing
    because it does not exist."""
    from webhook.edge.kubereads import connect

    try:
        kube = connect()
        config, source = livecheck.live_config(kube, config_file, pullguard_namespace)
        found = list(in_scope(kube, namespace))
        pods = _pods_in_scope(kube, namespace)
        missing = "" if found or namespace is None else livecheck.namespace_missing(kube, namespace)
    except Exception as error:
        raise livecheck.ClusterUnreadable(str(error)) from error
    if missing:
        raise livecheck.NamespaceMissing(missing)
    total = len(found)
    result = scan(
        found,
        config,
        kube.cluster_view(),
        livecheck.live_registry(config),
        own_namespace=pullguard_namespace,
        progress=None if progress is None else (lambda index: progress(index, total)),
        node=livecheck.live_providers(config),
        pods=pods,
    )
    return source, result


def _pods_in_scope(kube: Kube, namespace: str | None) -> list[dict[str, Any]]:
    """The pods in scope, none when this user may not list them (then no stuck pod is
    named)."""
    from webhook.edge.kubereads import ApiAnswered

    try:
        return kube.list_pods(namespace)
    except ApiAnswered:
        return []
