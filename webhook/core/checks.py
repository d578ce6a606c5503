"""The checks: each looks at containers and pull secrets and returns findings, never decides.

- ``reference``: the image parses under the runtime's grammar (with the correction, if plain);
  a valid reference whose registry host looks like a typo gets an advisory finding.
- ``pullPolicy``: ``Never`` (works only where the image is already cached), and ``:latest`` or
  no tag with ``IfNotPresent`` (runs whatever each node happens to have).
- ``pullSecrets``: each secret the pod will use exists here, is of a pull-secret type and
  parses (:func:`read_secrets`); whether each image that needs credentials is covered is
  judged over the pod's pulls in ``secretcheck``.

The ``registry`` and ``platform`` checks (manifest exists and is readable with the pod's own
credentials; a build for the nodes' platforms) are ``registrycheck``'s, over the same pulls.

Pure: cluster facts come from a :class:`~webhook.core.cluster.ClusterView`.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from webhook.core.cluster import ClusterUnavailable, ClusterView, SecretInfo, marked_as_copy
from webhook.core.config import Config
from webhook.core.findings import UNPARSEABLE, Finding
from webhook.core.fixcommands import recreate_job, recreate_pod, remake_stuck_pods, rerun_pod
from webhook.core.hosts import any_host_matches, suggest_registry
from webhook.core.keyring import (
    DOCKER_CFG,
    DOCKER_CONFIG_JSON,
    PULL_SECRET_KEYS,
    Credential,
    Keyring,
    SecretFormatError,
    keyring_key,
    miss_reason,
    parse_pull_secret,
)
from webhook.core.podspec import Container, controller_owner
from webhook.core.pullplan import ImagePull
from webhook.core.reference import InvalidReference, Reference, parse, parse_or_none

q = shlex.quote

#: The words of the registry-host typo guess (an advisory finding), which a registry that
#: serves the image takes back.
TYPO_WORDS = "looks like a typo of"


@dataclass(frozen=True, slots=True)
class WorkloadRef:
    """How fixes name the object: ``kubectl set image deployment/web ...``."""

    kind: str
    namespace: str
    name: str
    exists: bool = False
    """Already in the cluster (an UPDATE): on a CREATE there is nothing to run a command on
    yet, and the fix is in the manifest."""
    stuck_pods: tuple[str, ...] = ()
    """Its pods stuck now (``audit`` of an existing owner that keeps the pods it has when its
    template changes): deleted after the set image, so that it makes them again."""
    paused: bool = False
    """An existing Deployment under ``kubectl rollout pause`` (``audit``): it rolls out no
    change of its template until resumed, so the set image is followed by the resume
    (rev22b F6)."""

    def set_image_command(self, container: str, image: str) -> str | None:
        if self.exists and self.name and self.kind == "Job":
            # A Job's template is immutable (set image and an edited manifest's apply are
            # refused): it is recreated with the image, as diagnose does (rev22d F6).
            change = {"template": {"spec": {"containers": [{"name": container, "image": image}]}}}
            return (
                f"Job {self.name} is deleted and created again with it (a Job's pod template "
                "cannot change), and its pods run again from the start: "
                + recreate_job(self.name, self.namespace, change)
            )
        if not self.exists or not self.name or self.kind not in _SET_IMAGE_KINDS:
            return None
        command = (
            f"kubectl set image {self.kind.lower()}/{q(self.name)} "
            f"{q(container)}={q(image)} -n {q(self.namespace)}"
        ) + remake_stuck_pods(self.kind, self.stuck_pods, self.namespace, owner=self.name)
        if self.paused and self.kind == "Deployment":
            command += (
                f" && kubectl rollout resume deployment/{q(self.name)} -n {q(self.namespace)}"
            )
        return command


#: Controllers whose pod template a merge patch at ``spec.template.spec`` changes in place.
_PATCHABLE_TEMPLATE_KINDS = {
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
}


@dataclass(frozen=True, slots=True)
class PodOwner:
    """The controller a running pod (``kubectl debug`` on it) is made by: its pull secrets
    are fixed in that template, since the controller remakes the pod from it. A pod's
    ReplicaSet named ``DEPLOYMENT-HASH`` (its ``pod-template-hash`` label) was made by a
    Deployment, which may since be gone (``--cascade=orphan``): admission reads neither, so
    the fix patches the Deployment if it exists, else the ReplicaSet (rev22b F3)."""

    kind: str
    name: str
    namespace: str
    secrets: tuple[str, ...] = ()
    ephemeral: bool = False
    """Kind ``Pod``: the existing bare pod itself (``audit``), recreated with the secret;
    ``ephemeral``: it has ephemeral containers (which a create refuses)."""
    pod: str = ""
    """The running pod's name: deleted after the patch of an owner that keeps the pods it
    has (:data:`~webhook.core.fixcommands.KEEPS_ITS_PODS`), so it is made again with the
    secret (rev22b F4)."""
    deployment: str = ""
    """Kind ``ReplicaSet``: the Deployment its name and the pod's ``pod-template-hash``
    suggest, which may no longer exist. It may be paused (``kubectl rollout pause``), which
    admission cannot see: its patch also sets ``spec.paused: false`` (what ``kubectl rollout
    resume`` does), a no-op on a Deployment that is not paused (rev22c F2)."""
    cronjob: str = ""
    """Kind ``Job``: the CronJob its name suggests (a scheduled run is named
    ``CRONJOB-MINUTES``, :func:`cronjob_of`), which may not exist or not be its owner."""
    template: bool = False
    """The owner itself is judged, in the cluster already (``audit`` of a Job, a
    StatefulSet, a Deployment...): its template takes the secret by a command, as
    ``diagnose`` gives it, not by the manifest's words (rev22d F6). ``secrets``: the names
    its pods use (the template's, or its ServiceAccount's when it lists none)."""
    stuck_pods: tuple[str, ...] = ()
    """``template``: its pods stuck now, deleted after the patch of an owner that keeps the
    pods it has."""
    paused: bool = False
    """``template``: a Deployment under ``kubectl rollout pause``, resumed by the patch."""
    run: Mapping[str, Any] | None = field(default=None, compare=False)
    """Kind ``Pod``: a pod ``kubectl run`` is making (its create's field manager
    ``kubectl-run``), refused: no manifest to edit, so its fix is the ``kubectl run`` that
    makes it again with the secret (rev22d F5)."""

    def where_to_add(self, secret: str) -> str:
        shown = f"{{name: {secret}}}"
        names = [*dict.fromkeys([*self.secrets, secret])]
        if self.template:
            return self._template_fix(shown, names)
        if self.kind == "Pod" and self.run is not None:
            listed = {"imagePullSecrets": [{"name": n} for n in names]}
            return (
                f"make the pod again with {shown} in spec.imagePullSecrets (it was made by a "
                "command, with no manifest to edit; its other flags kept as overrides): "
                f"{rerun_pod(self.run, listed)}"
            )
        if self.kind == "Pod":
            pod = {
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {"ephemeralContainers": [{}] if self.ephemeral else []},
            }
            listed = {"imagePullSecrets": [{"name": n} for n in names]}
            return (
                f"recreate the pod with {shown} in spec.imagePullSecrets (a Pod's cannot "
                f"change): {recreate_pod(pod, listed)}"
            )
        if self.kind == "Job":
            return self._job_fix(shown, names)
        if self.deployment:
            owner = (
                f"the pod's ReplicaSet {self.name} (owned by a Deployment {self.deployment}, "
                "if one still exists)"
            )
        else:
            owner = f"{self.kind} {self.name}"
        words = f"add {shown} to the imagePullSecrets of the pod template of {owner}"
        if self.kind not in _PATCHABLE_TEMPLATE_KINDS:
            return f"{words} (it makes the pod)"
        patch = self._patch(self.kind, self.name, names)
        remake = remake_stuck_pods(
            self.kind, [self.pod] if self.pod else [], self.namespace, owner=self.name
        )
        if self.deployment:
            return (
                f"{words} (it makes the pod; the Deployment's patch also resumes it if it is "
                'paused ("paused":false: a paused Deployment rolls out nothing, and resumed '
                "it also rolls out whatever else changed while it was paused); the patch "
                "answers NotFound when the Deployment is gone, and the ReplicaSet, which keeps "
                "the pods it has, is patched and the pod deleted so that it makes a new one, "
                "to debug again): "
                f"{self._patch('Deployment', self.deployment, names, resume=True)} || "
                f"{{ {patch}{remake}; }}"
            )
        if remake:
            staged = (
                "; a rollingUpdate partition above the pod's ordinal, which would make it "
                "again from the old revision, is first lowered to it, and the StatefulSet's "
                "template then rolls out to its pods from that ordinal up"
                if " partition" in remake
                else ""
            )
            return (
                f"{words} (it makes the pod, and keeps the pods it has: the pod is deleted so "
                f"that it makes a new one, to debug again{staged}): {patch}{remake}"
            )
        return f"{words} (it makes the pod): {patch}"

    def _template_fix(self, shown: str, names: Sequence[str]) -> str:
        """The command that gives an existing owner's template the secret (``audit``),
        as ``diagnose`` does for its pod: a Job recreated (its template is immutable: an
        edited manifest's apply is refused), a CronJob's job template patched, any other
        owner's template patched, its stuck pods deleted where it keeps the pods it has,
        a paused Deployment resumed."""
        kind, name, ns = self.kind, self.name, self.namespace
        listed = [{"name": n} for n in names]
        if kind == "Job":
            return self._job_fix(shown, names)
        if kind == "CronJob":
            body = {
                "spec": {
                    "jobTemplate": {"spec": {"template": {"spec": {"imagePullSecrets": listed}}}}
                }
            }
            text = json.dumps(body, separators=(",", ":"))
            return (
                f"add {shown} to the imagePullSecrets of CronJob {name}'s pod template (its "
                f"next runs get it): kubectl patch cronjob/{q(name)} -n {q(ns)} --type=strategic "
                f"-p {q(text)}"
            )
        words = f"add {shown} to the imagePullSecrets of {kind} {name}'s pod template"
        if kind not in _PATCHABLE_TEMPLATE_KINDS:
            return f"{words} in the manifest, then apply it again"
        paused = self.paused and kind == "Deployment"
        patch = self._patch(kind, name, names, resume=paused)
        remake = remake_stuck_pods(kind, self.stuck_pods, ns, owner=name)
        if paused:
            words += (
                " (it is paused: the patch resumes it, which also rolls out whatever else "
                "changed while it was paused)"
            )
        if remake:
            words += (
                " (it keeps the pods it has: its stuck pods are deleted so that it makes them "
                "again with it"
                + (
                    "; a rollingUpdate partition above their ordinal is first lowered to it"
                    if " partition" in remake
                    else ""
                )
                + ")"
            )
        return f"{words}: {patch}{remake}"

    def _job_fix(self, shown: str, names: Sequence[str]) -> str:
        """A Job's pod template is immutable (``kubectl patch job`` answers "field is
        immutable"): the Job is recreated with the secret, its pods run again (rev22c F1). A
        CronJob's run gets the secret in the CronJob's template, which is patchable, and is
        made again from it (as ``diagnose`` does), or, with no such CronJob, recreated."""
        template = {"template": {"spec": {"imagePullSecrets": [{"name": n} for n in names]}}}
        recreate = recreate_job(self.name, self.namespace, template)
        if not self.cronjob:
            return (
                f"recreate Job {self.name} with {shown} in its pod template's imagePullSecrets "
                "(a Job's pod template cannot change: the Job is deleted and created again "
                "with it, and its pods run again from the start): "
                f"{recreate}"
            )
        ns, job, cronjob = self.namespace, self.name, self.cronjob
        body = {"spec": {"jobTemplate": {"spec": template}}}
        text = json.dumps(body, separators=(",", ":"))
        # The name alone is a guess (a person's Job "migrate-20261204" beside a CronJob
        # "migrate": rev22d F3): the CronJob branch runs only where the Job's own
        # ownerReferences name that CronJob, read when the command runs.
        owner = (
            f"kubectl get job/{q(job)} -n {q(ns)} -o "
            """jsonpath='{.metadata.ownerReferences[?(@.kind=="CronJob")].name}'"""
        )
        return (
            f"add {shown} to the imagePullSecrets of the pod template of CronJob {cronjob}, "
            f"if Job {job}'s ownerReferences say it made it, as its name suggests (a Job's "
            "pod template cannot change; the CronJob's next runs get the secret, and this run "
            "is deleted and made again from it, its pods running again from the start); "
            f"else, or where the CronJob's patch answers NotFound, Job {job} is recreated "
            "with the secret (deleted and created again, its pods running again from the "
            f"start): {owner} | grep -qx {q(cronjob)} && "
            f"kubectl patch cronjob/{q(cronjob)} -n {q(ns)} --type=strategic -p {q(text)} && "
            f"kubectl delete job {q(job)} -n {q(ns)} && "
            f"kubectl create job {q(job)} --from=cronjob/{q(cronjob)} -n {q(ns)} || "
            f"{{ {recreate}; }}"
        )

    def _patch(self, kind: str, name: str, names: Sequence[str], *, resume: bool = False) -> str:
        spec: dict[str, Any] = {"paused": False} if resume else {}
        spec["template"] = {"spec": {"imagePullSecrets": [{"name": n} for n in names]}}
        text = json.dumps({"spec": spec}, separators=(",", ":"))
        # A strategic merge patch merges imagePullSecrets by name into the template's list
        # as it is now: a merge patch would set it whole from the pod's, and drop a secret
        # the template gained since (a paused Deployment's: rev22d F2).
        target = f"{kind.lower()}/{q(name)}"
        return f"kubectl patch {target} -n {q(self.namespace)} --type=strategic -p {q(text)}"


#: A CronJob names each scheduled run ``NAME-MINUTES`` (the scheduled time in minutes since
#: 1970: eight digits from 1989 to 2160; the CronJob controller's ``getJobName``).
_CRONJOB_RUN = re.compile(r"(.+)-[0-9]{8,}", re.ASCII)


def cronjob_of(job: str) -> str:
    """The CronJob a Job's name says made it (``backup-29412000`` -> ``backup``), or ``""``.
    Only a guess from the name: admission reads neither the Job nor the CronJob."""
    run = _CRONJOB_RUN.fullmatch(job)
    return run.group(1) if run else ""


def listed_secret_names(spec: object) -> tuple[str, ...]:
    """The names a pod spec lists in ``imagePullSecrets``, in order, as written (entries
    without a name left out): what a fix that sets the whole list must keep."""
    listed = spec.get("imagePullSecrets") if isinstance(spec, Mapping) else None
    return tuple(
        str(s["name"])
        for s in (listed if isinstance(listed, list) else [])
        if isinstance(s, Mapping) and isinstance(s.get("name"), str) and s["name"]
    )


def pod_owner(obj: Mapping[str, Any] | None, namespace: str) -> PodOwner | None:
    """The controller of a pod object, or ``None`` for a bare pod."""
    if not isinstance(obj, Mapping):
        return None
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        return None
    owner = controller_owner(obj)
    if owner is None:
        return None
    kind, name = owner.get("kind"), owner.get("name")
    if not isinstance(kind, str) or not isinstance(name, str) or not kind or not name:
        return None
    labels = metadata.get("labels")
    template_hash = labels.get("pod-template-hash") if isinstance(labels, Mapping) else None
    deployment = ""
    if (
        kind == "ReplicaSet"
        and isinstance(template_hash, str)
        and template_hash
        and name.endswith(f"-{template_hash}")
        and len(name) > len(template_hash) + 1
    ):
        deployment = name[: -len(template_hash) - 1]
    pod = metadata.get("name")
    return PodOwner(
        kind,
        name,
        namespace,
        listed_secret_names(obj.get("spec")),
        pod=pod if isinstance(pod, str) else "",
        deployment=deployment,
        cronjob=cronjob_of(name) if kind == "Job" else "",
    )


#: Kinds whose pod template ``kubectl set image`` can change in place (and a Pod, whose
#: containers' images can change). Not Job: a Job's template is immutable once created.
_SET_IMAGE_KINDS = {
    "Pod",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "ReplicationController",
    "CronJob",
}


def check_reference(
    container: Container,
    known_registries: Sequence[str],
    workload: WorkloadRef,
    *,
    typos: dict[str, str | None] | None = None,
) -> tuple[Reference | None, list[Finding]]:
    """Parse the image; findings for an invalid one, or a likely typo in a valid one's host.
    ``typos``: the review's guesses so far, by host (each guess costs an edit-distance table
    per known registry; a pod naming one host 20,000 times once paid it 20,000 times)."""
    try:
        ref = parse(container.image)
    except InvalidReference as error:
        fix = None
        if error.suggestion is not None:
            # kubectl set image knows containers only; a volume's image is fixed in the manifest.
            command = (
                None
                if container.is_volume
                else workload.set_image_command(container.name, error.suggestion)
            )
            fix = f"use image {error.suggestion!r}" + (
                f": {command}" if command else " in the manifest, then apply it again"
            )
        return None, [
            Finding.for_container(
                "reference",
                container,
                problem=f"image {container.shown_image!r} can never be pulled: {error.reason}",
                short=f"image {container.shown_image!r} is invalid: {error.reason}",
                fix=fix,
            )
        ]
    shouted = _single_label_host(ref)
    if shouted is not None:
        return ref, [shouted(container)]
    if typos is None or ref.domain not in typos:
        typo = suggest_registry(ref.domain, known_registries) if ref.domain else None
        if typos is not None:
            typos[ref.domain] = typo
    else:
        typo = typos[ref.domain]
    if typo is None:
        return ref, []
    corrected = str(ref.with_name(typo, ref.path))
    return ref, [
        Finding.for_container(
            "reference",
            container,
            problem=f"registry {ref.domain!r} of image {container.shown_image!r} {TYPO_WORDS} "
            f"{typo!r}",
            short=f"registry {ref.domain!r} {TYPO_WORDS} {typo!r}",
            fix=f"use image {corrected!r} if that was meant",
            advisory=True,
        )
    ]


def _single_label_host(ref: Reference) -> Callable[[Container], Finding] | None:
    """``Bitnami/os-shell:12``: an upper-case letter makes the runtime read the first
    component as a host, and a single-label host almost never resolves on a node. A guess
    (it might), so advisory; the Docker Hub name is the likely intent."""
    domain = ref.domain
    if "." in domain or ":" in domain or domain == "localhost" or domain == domain.lower():
        return None
    intended = ref.with_name("docker.io", f"{domain.lower()}/{ref.path}")
    if parse_or_none(str(intended)) != intended:
        return None
    suggestion = str(intended)

    def finding(container: Container) -> Finding:
        return Finding.for_container(
            "reference",
            container,
            problem=f"image {container.shown_image!r} names host {domain!r} (its first "
            "component has upper case), which the nodes will look up and most likely not find",
            short=f"{domain!r} is read as a registry host; did you mean {suggestion}?",
            fix=f"use image {suggestion!r} if Docker Hub was meant",
            advisory=True,
        )

    return finding


def check_pull_policy(pull: ImagePull) -> list[Finding]:
    """``Never``, or a moving tag with ``IfNotPresent``, in the pull policy the plan says the
    kubelet applies (:func:`~webhook.core.pullplan.plan_pulls` alone derives it)."""
    container, ref, policy = pull.container, pull.ref, pull.policy
    if ref is None:
        return []  # the reference check says why it cannot be pulled
    field_name = container.policy_field  # imagePullPolicy, or pullPolicy on an image volume
    if policy == "Never":
        return [
            Finding.for_container(
                "pullPolicy",
                container,
                pointer=container.policy_pointer,
                problem=f"{field_name} Never starts {container.shown_image!r} only on nodes that "
                "already have it; anywhere else the pod fails with ErrImageNeverPull",
                short=f"{field_name} Never: {ref.familiar} runs only where already cached",
                fix=f"set {field_name}: IfNotPresent, or preload the image on every node",
            )
        ]
    if policy == "IfNotPresent" and ref.is_latest:
        return [
            Finding.for_container(
                "pullPolicy",
                container,
                pointer=container.policy_pointer,
                problem=f"image {container.shown_image!r} "
                + (f"has the moving tag :{ref.tag}" if ref.tag else "has no tag")
                + f", and with {field_name} IfNotPresent each node runs whatever version it "
                "cached",
                short=f"{ref.familiar}{' (no tag)' if not ref.tag else ''} with IfNotPresent "
                "runs whatever each node cached",
                fix=f"pin a version tag or digest, or set {field_name}: Always",
            )
        ]
    return []


@dataclass
class SecretSet:
    """The pull secrets a pod will use, read from the cluster once per admission."""

    names: list[str]
    origin: str  # "" (the pod's own list) or 'ServiceAccount "builder"'
    credentials: list[Credential] = field(default_factory=list)
    unavailable: str | None = None  # why the cluster could not be asked
    unparseable: list[Finding] = field(default_factory=list)
    """Findings about secrets the kubelet cannot parse: it then builds no keyring, and every
    pull of the pod fails, whatever the other secrets hold (also in the findings list)."""
    types: dict[str, str] = field(default_factory=dict)
    """Each read secret's type, by ``namespace/name`` (a fix that edits one entry needs its
    data key)."""
    copies: dict[str, str] = field(default_factory=dict)
    """The source namespace of each secret, by ``namespace/name``, that is pullguard's copy
    of a default pull secret (it carries pullguard's marks: :func:`marked_as_copy`) or is
    judged by its source's contents (no copy made yet): a refused login of one is fixed at
    its source, which the copies follow. A secret that only shares a default secret's name
    is not here: it is the tenant's own."""


@dataclass(frozen=True, slots=True)
class ReadSecret:
    """One pull secret as one admission read it: where it was found and what the kubelet
    makes of it (its credentials, or why it cannot parse it)."""

    name: str
    namespace: str
    """Where it was read: the pod's namespace, or the source of a default secret that has
    not been copied there yet."""
    secret: SecretInfo | None
    """``None``: it exists in neither."""
    credentials: tuple[Credential, ...] = ()
    error: SecretFormatError | None = None


#: Bytes of pull secret data (decoded ``.dockerconfigjson`` / ``.dockercfg``) one admission
#: parses and indexes at most: two Secrets at the API server's 1 MiB limit. Parsing costs
#: the worker ~0.2 s per MB on its event loop, and nothing is kept between reviews, so a
#: namespace's pod listing 16 secrets of 849 KB held its worker 4-6 s and every other
#: namespace's review waited (rev20e F8). Past it, the pod's pull secrets are "could not be
#: read": its ``pullSecrets`` check does not run (a warning for that pod, never a denial),
#: and other namespaces' reviews go on.
PULL_SECRET_BYTES_PER_REVIEW = 2 << 20


class SecretsTooLarge(ClusterUnavailable):
    """The admission's pull secrets hold more than :data:`PULL_SECRET_BYTES_PER_REVIEW`."""


def _pull_secret_bytes(secret: SecretInfo) -> int:
    """The decoded size of the data a pull secret's parse reads (base64: 3 bytes per 4)."""
    return sum(len(secret.data.get(key) or "") for key in PULL_SECRET_KEYS.values()) * 3 // 4


class SecretReads:
    """The pull secrets one admission reads, each read and parsed once: the mutation's
    questions (may a mirror serve the image, would a default secret help), validate's
    preview of them and the ``pullSecrets`` check share one set of parsed credentials.
    Made per admission over its :class:`~webhook.core.cluster.ReadOnce` view and dropped
    after it. An unavailable read is not kept (asked again, as ``ReadOnce`` does)."""

    def __init__(self, cluster: ClusterView) -> None:
        self._cluster = cluster
        self._parsed: dict[tuple[str, str], ReadSecret] = {}
        self._indexed: set[tuple[str, str, str]] = set()
        self.parsed_bytes = 0
        """Pull secret data parsed so far (at most :data:`PULL_SECRET_BYTES_PER_REVIEW`)."""
        self.keyring = Keyring()
        """Every credential read, indexed once: the review's one keyring. Each question
        asks it about the secrets it holds (:meth:`Keyring.held`), as the kubelet's keyring
        of those secrets would answer."""

    def read(self, namespace: str, name: str, *, copied_from: str | None = None) -> ReadSecret:
        """Secret ``name`` of ``namespace``, else (``copied_from``: the source namespace of a
        default secret pullguard copies) the source's, which the copy will hold. Raises
        :class:`~webhook.core.cluster.ClusterUnavailable`.

        Each Secret is parsed once, keyed by where it lives, whoever asks and with or without
        ``copied_from`` (rev23: the preview's and the check's reads of one Secret parsed it
        twice); the provenance is attached after: credentials read from the source are
        labelled ``namespace/name``, the secret the pod will use."""
        read = self._secret(namespace, name)
        source = copied_from if copied_from and copied_from != namespace else ""
        if read.secret is not None or not source:
            return self._indexed_once(f"{namespace}/{name}", read)
        found = self._secret(source, name)
        label = f"{namespace}/{name}"
        return self._indexed_once(
            label,
            replace(found, credentials=tuple(replace(c, source=label) for c in found.credentials)),
        )

    def credentials(self, namespace: str, names: Sequence[str]) -> list[Credential]:
        """The credentials of the secrets ``names`` of ``namespace``, in order; one that is
        missing, cannot be parsed or cannot be read holds none (for questions about secrets
        the pod does not use: a finding is no business of theirs)."""
        out: list[Credential] = []
        for name in names:
            try:
                out += self.read(namespace, name).credentials
            except ClusterUnavailable:
                continue
        return out

    def _indexed_once(self, label: str, read: ReadSecret) -> ReadSecret:
        """``read`` (the secret ``label`` names, as read from ``read.namespace``), its
        credentials added to :attr:`keyring` the first time it is handed out."""
        key = (label, read.namespace, read.name)
        if read.credentials and key not in self._indexed:
            self._indexed.add(key)
            self.keyring.add(read.credentials)
        return read

    def _secret(self, namespace: str, name: str) -> ReadSecret:
        """Secret ``namespace/name`` as it is, read and parsed once (an unavailable read is
        not kept)."""
        key = (namespace, name)
        if key not in self._parsed:
            self._parsed[key] = self._fresh(namespace, name)
        return self._parsed[key]

    def _fresh(self, namespace: str, name: str) -> ReadSecret:
        secret = self._cluster.get_secret(namespace, name)
        if secret is None:
            return ReadSecret(name, namespace, None)
        size = _pull_secret_bytes(secret)
        if self.parsed_bytes + size > PULL_SECRET_BYTES_PER_REVIEW:
            # Not kept: every later read of it is refused the same way.
            raise SecretsTooLarge(
                f"pull secret {namespace}/{name} ({size} bytes) was not read: this review's "
                f"pull secrets hold more than the {PULL_SECRET_BYTES_PER_REVIEW >> 20} MiB "
                "pullguard parses per review; list only the imagePullSecrets the pod's "
                f"registries need (kubectl get secret -n {namespace} {name} -o "
                "jsonpath='{.data}' | wc -c shows its size)"
            )
        self.parsed_bytes += size
        try:
            credentials = parse_pull_secret(secret.type, secret.data, source=f"{namespace}/{name}")
        except SecretFormatError as error:
            return ReadSecret(name, namespace, secret, error=error)
        return ReadSecret(name, namespace, secret, tuple(credentials))


def read_secrets(
    names: Sequence[str],
    origin: str,
    namespace: str,
    cluster: ClusterView,
    *,
    subject: str,
    needing_registries: Sequence[str],
    copied_from: Mapping[str, str] | None = None,
    existing: bool = False,
    reads: SecretReads | None = None,
) -> tuple[SecretSet, list[Finding]]:
    """Read each named secret; findings for missing, mistyped and malformed ones.

    ``copied_from`` maps the default pull secrets pullguard copies into a namespace that lacks
    them to their source namespace: such a secret missing here is not missing (the mutating
    webhook copies it on the real create, and skips the copy on a dry-run), and it is judged
    by the source's contents, which the copy will hold. ``existing``: the object is in the
    cluster already (``diagnose``, ``audit``): a missing secret is not "(yet)" to come.
    ``reads``: the admission's secrets as already read and parsed (by the mutation's preview).
    """
    reads = reads or SecretReads(cluster)
    secrets = SecretSet(names=list(names), origin=origin)
    findings: list[Finding] = []
    where = f" (listed on {origin})" if origin else ""
    server = needing_registries[0] if needing_registries else "REGISTRY"
    for name in names:
        try:
            read = reads.read(namespace, name, copied_from=(copied_from or {}).get(name))
        except ClusterUnavailable as error:
            secrets.unavailable = str(error)
            return secrets, findings
        if read.secret is None:
            findings.append(
                _missing_secret(
                    name,
                    namespace,
                    where=where,
                    cluster=cluster,
                    subject=subject,
                    server=server,
                    existing=existing,
                )
            )
            continue
        if read.error is not None:
            fatal = read.error.fatal
            finding = _bad_secret(read.secret, str(read.error), where, subject, server, fatal=fatal)
            findings.append(finding)
            if fatal:
                secrets.unparseable.append(finding)
            continue
        secrets.credentials.extend(read.credentials)
        secrets.types[f"{namespace}/{name}"] = read.secret.type
        source = (copied_from or {}).get(name)
        if (
            source
            and source != namespace
            and (read.namespace == source or marked_as_copy(read.secret, source))
        ):
            secrets.copies[f"{namespace}/{name}"] = source
    return secrets, findings


def create_secret_command(name: str, namespace: str, server: str) -> str:
    """The kubectl command that creates pull secret ``name`` for ``server`` (placeholders
    for the login)."""
    return (
        f"kubectl create secret docker-registry {q(name)} -n {q(namespace)} "
        f"--docker-server={q(server)} --docker-username=USER --docker-password=PASSWORD"
    )


#: A secret entry's key printed in a command as it is, so the command replaces that very
#: entry: a host, port and path only (a key with user info, a query or odd characters is
#: shown as its keyring key: :func:`webhook.core.keyring.shown_key`).
_PLAIN_KEY = re.compile(r"[A-Za-z0-9._:/\[\]-]{1,300}", re.ASCII)


def entry_key(key: str) -> str:
    """The key a command that sets an entry of a pull secret names for entry ``key``: the
    key itself when it is plain (then that entry is replaced), else its keyring key."""
    return key if _PLAIN_KEY.fullmatch(key) else keyring_key(key)


def set_entry_command(name: str, namespace: str, secret_type: str, key: str) -> str:
    """The command that sets pull secret ``name``'s entry ``key`` to a new login (the
    placeholders USER and PASSWORD) and keeps every other entry: recreating the secret with
    ``kubectl create secret docker-registry`` would keep one registry only. The data is
    base64 JSON, so jq (1.6: ``@base64d``) edits it, and ``kubectl replace`` writes it back
    (refused if the secret changed since it was read)."""
    document = ".auths[$key]" if secret_type != DOCKER_CFG else ".[$key]"
    data_key = PULL_SECRET_KEYS.get(secret_type, PULL_SECRET_KEYS[DOCKER_CONFIG_JSON])
    program = (
        f'.data["{data_key}"] |= (@base64d | fromjson | {document} = '
        "{username: $user, password: $password} | tojson | @base64)"
    )
    return (
        f"kubectl get secret {q(name)} -n {q(namespace)} -o json | jq --arg key {q(key)} "
        f"--arg user USER --arg password PASSWORD {q(program)} | kubectl replace -f -"
    )


def _missing_secret(
    name: str,
    namespace: str,
    *,
    where: str,
    cluster: ClusterView,
    subject: str,
    server: str,
    existing: bool = False,
) -> Finding:
    try:
        elsewhere = [ns for ns in cluster.namespaces_with_pull_secret(name) if ns != namespace]
    except ClusterUnavailable:
        elsewhere = []
    if elsewhere:
        source = elsewhere[0]
        shown = ", ".join(f'"{ns}"' for ns in elsewhere[:3])
        more = f" and {len(elsewhere) - 3} more" if len(elsewhere) > 3 else ""
        return Finding(
            check="pullSecrets",
            subject=subject,
            problem=f'imagePullSecret "{name}"{where} does not exist in namespace "{namespace}" '
            f"(it exists in {shown}{more})",
            short=f'imagePullSecret "{name}" is missing here; it exists in "{source}"',
            fix=f"kubectl get secret {q(name)} -n {q(source)} -o yaml | "
            f"sed 's/namespace: {source}/namespace: {namespace}/' | kubectl apply -f -",
        )
    if existing:
        # An object in the cluster: no apply in progress will create the secret; the kubelet
        # retries the pull on its own once it exists.
        return Finding(
            check="pullSecrets",
            subject=subject,
            problem=f'imagePullSecret "{name}"{where} does not exist in namespace "{namespace}"',
            short=f'imagePullSecret "{name}" does not exist in namespace "{namespace}"',
            fix=create_secret_command(name, namespace, server),
        )
    # ``kubectl apply -f dir/`` applies in file-name order: a Deployment sorting before the
    # Secret it names is denied (its pods would fail), while the Secret is created after it.
    return Finding(
        check="pullSecrets",
        subject=subject,
        problem=f'imagePullSecret "{name}"{where} does not exist in namespace "{namespace}" (yet)',
        short=f'imagePullSecret "{name}" does not exist in namespace "{namespace}" (yet)',
        fix="if this apply creates it in a later file, apply again or apply the Secret "
        f"first; otherwise: {create_secret_command(name, namespace, server)}",
    )


def _bad_secret(
    secret: SecretInfo, reason: str, where: str, subject: str, server: str, *, fatal: bool
) -> Finding:
    if fatal:
        # The kubelet's MakeDockerKeyring returns the parse error before any pull.
        problem = (
            f'imagePullSecret "{secret.name}"{where} {reason}: the kubelet cannot parse it, '
            "and then pulls no image of this pod at all, not even a public one"
        )
        short = f'imagePullSecret "{secret.name}" {reason}: the kubelet pulls no image of the pod'
    else:
        problem = (
            f'imagePullSecret "{secret.name}"{where} {reason}: the kubelet skips it, '
            "and a pull that needs it fails"
        )
        short = f'imagePullSecret "{secret.name}" {reason}'
    return Finding(
        check="pullSecrets",
        subject=subject,
        problem=problem,
        short=short,
        fix=f"kubectl delete secret {q(secret.name)} -n {q(secret.namespace)} && "
        + create_secret_command(secret.name, secret.namespace, server),
        evidence=UNPARSEABLE if fatal else None,
    )


def needs_credentials(ref: Reference, config: Config) -> bool:
    """Does this image's registry always need credentials (``privateRegistries``)?

    Not a ``defaultPullSecrets`` registry as such: a default secret is an optimisation (Docker
    Hub's rate limit, say), and when its copy into a namespace fails, every pod there would
    be denied although the registry serves the image anonymously. Such a registry needs the
    secret only when it refuses the pull without it, which the registry check asks.
    """
    return any_host_matches(config.private_registries, ref.domain)


def secret_name_for(registry: str) -> str:
    """A valid Secret name (DNS-1123 subdomain label style) to suggest for ``registry``."""
    cleaned = re.sub(r"[^a-z0-9]+", "-", registry.lower()).strip("-")
    return ("regcred-" + cleaned)[:63].rstrip("-")


def what_the_pod_has(secrets: SecretSet, ref: Reference) -> str:
    """The pull secrets the pod has and why each misses ``ref``, in the kubelet's terms:
    ``the pod's imagePullSecrets "regcred" (entry 'registry.example.com' has no port, and
    the kubelet matches the port (5000)) do not cover registry.example.com:5000/team/app``.
    A denial must name what the pod has, not say it has nothing (issue 22)."""
    if not secrets.names:
        return "the pod has no imagePullSecrets"
    by_secret: dict[str, list[str]] = {}
    for credential in secrets.credentials:
        secret = credential.source.rpartition("/")[2]
        by_secret.setdefault(secret, []).append(miss_reason(credential.key, ref.name))
    described = []
    for secret in secrets.names[:3]:
        reasons = list(dict.fromkeys(by_secret.get(secret, [])))
        if not reasons:
            described.append(f'"{secret}" (no entries)')
            continue
        more = f"; {len(reasons) - 2} more entries" if len(reasons) > 2 else ""
        described.append(f'"{secret}" ({"; ".join(reasons[:2])}{more})')
    if len(secrets.names) > 3:
        described.append(f"{len(secrets.names) - 3} more")
    whose = f"{secrets.origin}'s" if secrets.origin else "the pod's"
    return f"{whose} imagePullSecrets {', '.join(described)} do not cover {ref.name}"
