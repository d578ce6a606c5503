"""kubectl commands that remake a pod whose spec cannot change in place, shared by every
fix that needs one (``diagnose``, ``audit``).

A Pod's ``imagePullSecrets``, ``nodeSelector``, pull policies and more cannot change after
its create, so a bare pod (no controller to make a new one) is recreated:
``kubectl patch pod ... --dry-run=client -o yaml -p ... | kubectl replace --force -f -``
(the patch applied locally, the result deleted and created again; a create ignores
``status``, and kubectl drops ``resourceVersion``). A create refuses
``spec.ephemeralContainers`` ("Forbidden: cannot be set on create", those come only
through the ``ephemeralcontainers`` subresource, ``kubectl debug``), and ``replace
--force`` has deleted the pod by then: the patch of a pod with any sets the field to
``null``, which a merge or strategic patch removes.

A Job's ``spec.template`` cannot change either: the Job is recreated the same way, without
the selector and the labels the API server generated for the old one (a create refuses
them: "selector not auto-generated"); its pods run again from the start.

An owner that keeps the pods it has when its template changes (a ReplicaSet or a
ReplicationController with no Deployment; a StatefulSet whose pod never became ready:
Kubernetes' "forced rollback") gets its stuck pods deleted after the template's patch.

Pure: strings from dicts, no I/O.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

q = shlex.quote

#: Owners that keep the pods they have when their template changes: a ReplicaSet or
#: ReplicationController always; a StatefulSet's pod that never became ready; a DaemonSet
#: under ``updateStrategy: OnDelete`` (rev22b: its stuck pod kept the missing tag after the
#: printed set image). A RollingUpdate DaemonSet replaces the pod itself, and may have done so
#: before the delete runs: for a DaemonSet the delete ignores a pod already gone.
KEEPS_ITS_PODS = frozenset({"ReplicaSet", "ReplicationController", "StatefulSet", "DaemonSet"})


def recreate_pod(
    pod: Mapping[str, Any], fields: Mapping[str, Any], *, patch_type: str = "merge"
) -> str:
    """The command that recreates bare Pod ``pod`` (as the API returns it, or its manifest:
    ``metadata.name`` and ``metadata.namespace`` are read) with ``fields`` of its spec set
    (``{"imagePullSecrets": [...]}``; ``{}`` recreates it as it is). ``patch_type``:
    ``merge`` (a list set whole) or ``strategic`` (containers merged by name). Its
    ephemeral containers, which a create refuses, are dropped (a ``kubectl debug`` session
    must be started again on the new pod)."""
    metadata = pod.get("metadata") or {}
    name, namespace = str(metadata.get("name", "")), str(metadata.get("namespace", ""))
    spec: dict[str, Any] = dict(fields)
    if (pod.get("spec") or {}).get("ephemeralContainers"):
        spec["ephemeralContainers"] = None
    body = json.dumps({"spec": spec}, separators=(",", ":"))
    return (
        f"kubectl patch pod {q(name)} -n {q(namespace)} --type={patch_type} "
        f"--dry-run=client -o yaml -p {q(body)} | kubectl replace --force -f -"
    )


#: Labels the API server puts on a Job's pod template (and its selector) when it creates it.
JOB_GENERATED_LABELS = (
    "controller-uid",
    "batch.kubernetes.io/controller-uid",
    "job-name",
    "batch.kubernetes.io/job-name",
)


def recreate_job(name: str, namespace: str, spec: Mapping[str, Any]) -> str:
    """The command that recreates Job ``name`` with ``spec`` merged into its spec
    (``{"template": {"spec": {"imagePullSecrets": [...]}}}``, a strategic merge: lists of
    the pod spec merged by their keys), since a Job's pod template is immutable: patched
    locally, the selector and generated labels set to ``null`` (a create with them is
    refused), deleted and created again (``replace --force``; its pods go with it)."""
    document = dict(spec)
    template = document.get("template")
    template = dict(template) if isinstance(template, Mapping) else {}
    document["template"] = {
        **template,
        "metadata": {"labels": dict.fromkeys(JOB_GENERATED_LABELS)},
    }
    document["selector"] = None
    body = json.dumps({"spec": document}, separators=(",", ":"))
    return (
        f"kubectl patch job/{q(name)} -n {q(namespace)} --type=strategic --dry-run=client -o yaml "
        f"-p {q(body)} | kubectl replace --force -f -"
    )


def remake_stuck_pods(owner_kind: str, pods: Sequence[str], namespace: str) -> str:
    """`` && kubectl delete pod POD... -n NS`` to follow a template's patch of an owner of
    ``owner_kind`` that keeps the pods it has (:data:`KEEPS_ITS_PODS`), so that it makes
    ``pods`` again from the changed template; empty for any other owner, or no pod."""
    if owner_kind not in KEEPS_ITS_PODS or not pods:
        return ""
    gone_is_fine = " --ignore-not-found" if owner_kind == "DaemonSet" else ""
    return f" && kubectl delete pod {' '.join(map(q, pods))} -n {q(namespace)}{gone_is_fine}"
