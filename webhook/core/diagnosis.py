"""Diagnosis of a pod already failing on an image: what the kubelet said, what the checks say
now, and the commands that fix it.

Input: the pod (as the API returns it, as a dict), its events, and the findings of the
validating checks re-run live on it (reference, secrets, registry with the pod's own
credentials, platform against the node it was scheduled on). The runtime's text gives the
cause (:mod:`webhook.core.pullfailure`); a live finding about the same container confirms it
or corrects it (containerd says "may require authorization" both for a private image and for
one that does not exist: the registry, asked with the pod's credentials, tells which).

Pure: dicts and findings in, :class:`ContainerDiagnosis` values out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from webhook.core.checks import create_secret_command
from webhook.core.findings import Finding
from webhook.core.podspec import Container, pod_spec
from webhook.core.pullfailure import CAUSE_WORDS, PULL_REASONS, Cause, classify

#: For findings that do not name their cause (``Finding.cause``; the registry and platform
#: checks always do): the causes a finding of each check stands for, to tell "confirmed"
#: from "corrected". A missing secret confirms a 401 too: that is how the kubelet meets it.
_FINDING_CAUSES = {
    "reference": {Cause.INVALID_NAME},
    "pullSecrets": {Cause.SECRET_MISSING, Cause.UNAUTHORIZED},
    "pullPolicy": {Cause.NEVER_PULL},
}


#: Event reasons the kubelet uses for a failing pull.
_PULL_EVENTS = frozenset({"Failed", "BackOff", "ErrImageNeverPull", "InspectFailed"})


@dataclass
class ContainerDiagnosis:
    container: str  # container "web"
    image: str
    cause: Cause
    summary: str
    evidence: list[str] = field(default_factory=list)
    verdict: str = ""  # confirmed | corrected | not confirmed | not checked
    fixes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "container": self.container,
            "image": self.image,
            "cause": self.cause.value,
            "summary": self.summary,
            "evidence": self.evidence,
            "verdict": self.verdict,
            "fixes": self.fixes,
        }


def _statuses(pod: Mapping[str, Any]) -> dict[tuple[str, str], Mapping[str, Any]]:
    status = pod.get("status") or {}
    out = {}
    for list_name, key in (
        ("initContainers", "initContainerStatuses"),
        ("containers", "containerStatuses"),
        ("ephemeralContainers", "ephemeralContainerStatuses"),
    ):
        for entry in status.get(key) or []:
            if isinstance(entry, Mapping) and entry.get("name"):
                out[(list_name, str(entry["name"]))] = entry
    return out


def _events_for(container: Container, events: Sequence[Mapping[str, Any]]) -> list[str]:
    """Messages of the pull events about ``container``: by field path, else by image."""
    path = f"spec.{container.list_name}{{{container.name}}}"
    found = []
    for event in events:
        involved = event.get("involvedObject") or {}
        message = str(event.get("message") or "")
        about = involved.get("fieldPath") == path or (
            container.image and f'"{container.image}"' in message
        )
        if about and event.get("reason") in _PULL_EVENTS:
            found.append(message)
    return found


def failing_containers(
    pod: Mapping[str, Any], events: Sequence[Mapping[str, Any]]
) -> list[tuple[Container, list[str]]]:
    """The pod's images stuck on their pull, each with the texts that say so."""
    view = pod_spec("Pod", pod)
    if view is None:
        return []
    statuses = _statuses(pod)
    out = []
    for container in view.containers:
        texts: list[str] = []
        if container.is_volume:
            texts = _events_for(container, events)
        else:
            state = (statuses.get((container.list_name, container.name)) or {}).get("state") or {}
            waiting = state.get("waiting") or {}
            if waiting.get("reason") in PULL_REASONS:
                texts = [str(waiting.get("message") or waiting["reason"])]
                texts += _events_for(container, events)
        if texts:
            out.append((container, texts))
    return out


def secret_events(events: Sequence[Mapping[str, Any]]) -> list[str]:
    return [
        str(e.get("message") or "")
        for e in events
        if e.get("reason") == "FailedToRetrieveImagePullSecret"
    ]


def diagnose(
    pod: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    live: Sequence[Finding],
    *,
    live_note: str = "",
) -> list[ContainerDiagnosis]:
    """One diagnosis per failing image. ``live``: findings of the checks re-run now;
    ``live_note``: why they could not all run (shown when nothing confirms)."""
    metadata = pod.get("metadata") or {}
    name, namespace = str(metadata.get("name", "")), str(metadata.get("namespace", ""))
    node = str((pod.get("spec") or {}).get("nodeName") or "")
    out = []
    for container, texts in failing_containers(pod, events):
        classified = classify(*texts, *secret_events(events))
        cause = classified.cause
        diagnosis = ContainerDiagnosis(
            container=container.label,
            image=container.image,
            cause=cause,
            summary=CAUSE_WORDS[cause],
            evidence=[f"kubelet: {classified.evidence}"],
        )
        mine = [f for f in live if f.subject == container.label or container.label in f.subject]
        confirming = [f for f in mine if _predicts(f, cause)]
        if confirming:
            diagnosis.verdict = "confirmed"
            _use(diagnosis, confirming)
        elif mine:
            diagnosis.verdict = "corrected"
            _use(diagnosis, mine)
            diagnosis.summary = (
                f"{mine[0].problem} (the kubelet's text suggested: {CAUSE_WORDS[cause]})"
            )
        elif cause in (Cause.NOT_FOUND, Cause.UNAUTHORIZED, Cause.SECRET_MISSING) and not live_note:
            diagnosis.verdict = "not confirmed"
            diagnosis.evidence.append(
                "pullguard now: the image exists and the pod's credentials may read it "
                "(pushed or fixed since the last attempt)"
            )
            diagnosis.fixes.append(
                f"the kubelet retries with a back-off of up to 5 minutes; to retry now: "
                f"kubectl delete pod {name} -n {namespace} (its controller makes a new one)"
            )
        else:
            diagnosis.verdict = "not checked" if live_note else "not confirmed"
            if live_note:
                diagnosis.evidence.append(f"pullguard could not re-check: {live_note}")
        if not diagnosis.fixes:
            diagnosis.fixes.extend(_fixes_for(cause, container, name, namespace, node))
        out.append(diagnosis)
    return out


def _predicts(finding: Finding, cause: Cause) -> bool:
    """Does a live finding stand for the same failure as the kubelet's text?"""
    if finding.cause is not None:
        return finding.cause == cause.value
    return cause in _FINDING_CAUSES.get(finding.check, set())


def _use(diagnosis: ContainerDiagnosis, findings: Sequence[Finding]) -> None:
    for finding in findings:
        diagnosis.evidence.append(f"pullguard now: {finding.problem}")
        if finding.fix:
            diagnosis.fixes.append(finding.fix)


def _fixes_for(
    cause: Cause, container: Container, pod: str, namespace: str, node: str
) -> list[str]:
    """Fixes from the cause alone (when no live finding brought one)."""
    host = container.image.split("/", 1)[0] if "/" in container.image else "docker.io"
    set_image = (
        f"kubectl set image pod/{pod} {container.name}=IMAGE -n {namespace}"
        if not container.is_volume
        else "change the image volume's reference in the manifest and apply it again"
    )
    on_node = f" on node {node}" if node else " on the node"
    return {
        Cause.NOT_FOUND: [f"push {container.image}, or use an image that exists: {set_image}"],
        Cause.UNAUTHORIZED: [
            f"{create_secret_command('regcred', namespace, host)}, then list it in the "
            "workload's imagePullSecrets (a Pod's list cannot change: recreate it)"
        ],
        Cause.SECRET_MISSING: [
            f"kubectl get pod {pod} -n {namespace} -o "
            "jsonpath='{.spec.imagePullSecrets}', then create each one missing "
            f"in namespace {namespace}"
        ],
        Cause.INVALID_NAME: [f"correct the reference: {set_image}"],
        Cause.RATE_LIMITED: [
            "pull through a mirror (mirrors in the pullguard configuration), or authenticate "
            "the pulls with an imagePullSecret"
        ],
        Cause.DNS: [f"check the registry host {host!r} for a typo; resolve it{on_node}"],
        Cause.CONNECTION_REFUSED: [f"check that the registry {host} is up and listening"],
        Cause.TIMEOUT: [
            f"check the network path (egress, proxy, firewall) from the node to {host}"
        ],
        Cause.TLS: [
            f"give the nodes the registry's CA (containerd: /etc/containerd/certs.d/{host}/"
            f"ca.crt; CRI-O: /etc/containers/certs.d/{host}/ca.crt)"
        ],
        Cause.REGISTRY_ERROR: [f"the registry {host} is failing; the kubelet retries on its own"],
        Cause.PLATFORM: [
            "use a multi-platform build, or add nodeSelector kubernetes.io/arch to the "
            "workload so its pods land on nodes the image supports"
        ],
        Cause.DISK_FULL: [
            f"free disk space{on_node}: kubectl describe node {node or 'NODE'}; remove unused "
            "images there (crictl rmi --prune)"
        ],
        Cause.NEVER_PULL: [
            "set imagePullPolicy: IfNotPresent in the workload (a Pod's policy cannot change: "
            "recreate it), or preload the image on every node"
        ],
        Cause.UNKNOWN: [f"kubectl describe pod {pod} -n {namespace}"],
    }[cause]


def render_text(pod_name: str, namespace: str, diagnoses: Sequence[ContainerDiagnosis]) -> str:
    """The report for people, in the style of the admission messages."""
    count = len(diagnoses)
    lines = [
        f"pullguard diagnosed Pod {namespace}/{pod_name}: {count} image"
        f"{'s' if count != 1 else ''} failing to pull"
    ]
    for d in diagnoses:
        lines.append(f"- {d.container} ({d.image}): {d.summary} [{d.cause.value}, {d.verdict}]")
        lines.extend(f"  Evidence: {e}" for e in d.evidence)
        lines.extend(f"  Fix: {f}" for f in d.fixes)
    return "\n".join(lines)
