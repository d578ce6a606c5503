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
them: "selector not auto-generated"), or with its own selector and labels when it has
``manualSelector: true`` (read when the command runs); its pods run again from the start.

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

#: Owners kubectl knows (their pod template at spec.template, a CronJob's under its
#: jobTemplate): fixes give commands for them; any other controller is a custom resource
#: and gets words (diagnose) or no template command (audit).
BUILT_IN_OWNERS = frozenset(
    {
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "ReplicaSet",
        "ReplicationController",
        "Job",
        "CronJob",
    }
)

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
    return replace_if_taken(
        f"kubectl patch pod {q(name)} -n {q(namespace)} --type={patch_type} "
        f"--dry-run=client -o yaml -p {q(body)}"
    )


#: The container fields ``kubectl run`` writes from its flags (``--image``, ``--command --``,
#: ``--env``, ``--port``, ``-i``/``-t``, ``--image-pull-policy``...), which the pod made again
#: keeps. The rest (``volumeMounts`` of the ServiceAccount token the API server adds, the
#: defaulted ``terminationMessagePath``...) is left to the API server to add again: a mount
#: of a volume the new pod does not list would be refused.
RUN_CONTAINER_FIELDS = (
    "name",
    "image",
    "command",
    "args",
    "env",
    "envFrom",
    "ports",
    "workingDir",
    "stdin",
    "stdinOnce",
    "tty",
    "imagePullPolicy",
)


def rerun_pod(pod: Mapping[str, Any], fields: Mapping[str, Any]) -> str:
    """The ``kubectl run`` that makes Pod ``pod`` (made by ``kubectl run``, refused at its
    create: there is no manifest to edit, and no pod to recreate) again with ``fields`` of
    its spec set (``{"imagePullSecrets": [...]}``): its name, its labels (``--labels``), its
    containers' fields that ``kubectl run`` writes (:data:`RUN_CONTAINER_FIELDS`) and its
    restart policy, as ``--overrides`` (whole containers: kubectl merges the overrides into
    the pod it builds, by JSON merge or strategic merge, and either keeps them)."""
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    name, namespace = str(metadata.get("name", "")), str(metadata.get("namespace", ""))
    containers = [
        {k: c[k] for k in RUN_CONTAINER_FIELDS if k in c}
        for c in spec.get("containers") or []
        if isinstance(c, Mapping)
    ]
    overrides: dict[str, Any] = {"apiVersion": "v1"}
    labels = metadata.get("labels")
    # As --labels, which replaces kubectl run's own run=NAME (overrides would merge into it).
    shown = ",".join(f"{k}={v}" for k, v in labels.items()) if isinstance(labels, Mapping) else ""
    body: dict[str, Any] = {"containers": containers}
    if spec.get("restartPolicy"):
        body["restartPolicy"] = spec["restartPolicy"]
    overrides["spec"] = {**body, **fields}
    image = str(containers[0].get("image", "")) if containers else ""
    text = json.dumps(overrides, separators=(",", ":"))
    flags = f" --labels={q(shown)}" if shown else ""
    return f"kubectl run {name} -n {namespace} --image={q(image)}{flags} --overrides={q(text)}"


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
    locally, deleted and created again (``replace --force``; its pods go with it), and
    only after a server-side dry run of the create said it would be taken (else the
    command fails and the Job stays).

    The selector and the labels the API server generated for the old Job are set to
    ``null`` (a create with them is refused: "selector not auto-generated"), but only for a
    Job without ``manualSelector: true``: such a Job's selector is its own and required (a
    create without it is refused, "spec.selector: Required value", after ``replace
    --force`` has deleted the Job: rev22d F1), and its labels are the person's, even one
    named ``controller-uid`` (the Job docs' adoption of another Job's pods). Which patch
    applies is read from the Job when the command runs (admission sees only its pod): the
    patch body is chosen by ``kubectl get job -o jsonpath='{.spec.manualSelector}'``."""
    document = dict(spec)
    own = json.dumps({"spec": document}, separators=(",", ":"))
    template = document.get("template")
    template = dict(template) if isinstance(template, Mapping) else {}
    generated = {
        **document,
        "template": {**template, "metadata": {"labels": dict.fromkeys(JOB_GENERATED_LABELS)}},
        "selector": None,
    }
    stripped = json.dumps({"spec": generated}, separators=(",", ":"))
    manual = f"kubectl get job/{q(name)} -n {q(namespace)} -o jsonpath='{{.spec.manualSelector}}'"
    body = f'"$([ "$({manual})" = true ] && echo {q(own)} || echo {q(stripped)})"'
    edited = (
        f"kubectl patch job/{q(name)} -n {q(namespace)} --type=strategic --dry-run=client -o yaml "
        f"-p {body}"
    )
    return replace_if_taken(edited)


def replace_if_taken(edited: str) -> str:
    """``EDITED | kubectl replace --force -f -`` (``edited``: the command that prints the
    object as it is to be created), asked first, deleting nothing: a create the API server
    would refuse (its validation, an admission webhook, pullguard itself on a new secret
    with a mistyped password) answers the server-side dry run of the create with that
    refusal; only an object it would take answers just "AlreadyExists" (measured on
    1.36.2: validation and admission come before the name's check; kubectl refuses
    ``--dry-run`` with ``replace --force``). Only then is it deleted and created again."""
    return (
        f"{edited} | kubectl create --dry-run=server -f - 2>&1 | grep -q '(AlreadyExists)' "
        f"&& {edited} | kubectl replace --force -f -"
    )


def remake_stuck_pods(
    owner_kind: str, pods: Sequence[str], namespace: str, *, owner: str = ""
) -> str:
    """`` && kubectl delete pod POD... -n NS`` to follow a template's patch of an owner of
    ``owner_kind`` that keeps the pods it has (:data:`KEEPS_ITS_PODS`), so that it makes
    ``pods`` again from the changed template; empty for any other owner, or no pod.

    A StatefulSet (named ``owner``) under a staged rollout (``updateStrategy.rollingUpdate.
    partition`` above a pod's ordinal) makes that pod again from its old revision, without
    the change (rev22d F4): the partition, read when the command runs, is first lowered to
    the lowest ordinal of ``pods`` (:func:`lower_partition`)."""
    if owner_kind not in KEEPS_ITS_PODS or not pods:
        return ""
    gone_is_fine = " --ignore-not-found" if owner_kind == "DaemonSet" else ""
    partition = lower_partition(owner, pods, namespace) if owner_kind == "StatefulSet" else ""
    return (
        f"{partition} && kubectl delete pod {' '.join(map(q, pods))} -n {q(namespace)}"
        f"{gone_is_fine}"
    )


def lower_partition(statefulset: str, pods: Sequence[str], namespace: str) -> str:
    """`` && if [ PARTITION -gt N ]; then kubectl patch ... partition N; fi`` for the pods
    ``STATEFULSET-N`` of StatefulSet ``statefulset``: a pod whose ordinal is below the
    partition is made from the current revision, never the updated one, so the change
    reaches it only with the partition at its ordinal (the StatefulSet's template, as it is
    then, rolls out to every pod from that ordinal up: the staged rollout goes on). No
    partition, or one at or below the ordinal (``[`` fails on an empty value, quietly):
    nothing changes. Empty when no pod is named ``STATEFULSET-N``."""
    prefix = f"{statefulset}-"
    ordinals = [
        int(p[len(prefix) :])
        for p in pods
        if statefulset
        and p.startswith(prefix)
        and p[len(prefix) :].isascii()
        and p[len(prefix) :].isdigit()
    ]
    if not ordinals:
        return ""
    lowest = min(ordinals)
    target = f"statefulset/{q(statefulset)} -n {q(namespace)}"
    read = f"kubectl get {target} -o jsonpath='{{.spec.updateStrategy.rollingUpdate.partition}}'"
    body = json.dumps(
        {"spec": {"updateStrategy": {"rollingUpdate": {"partition": lowest}}}},
        separators=(",", ":"),
    )
    return (
        f' && if [ "$({read})" -gt {lowest} ] 2>/dev/null; then '
        f"kubectl patch {target} --type=merge -p {q(body)}; fi"
    )
