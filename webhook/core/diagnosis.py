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

import json
import re
import shlex
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from webhook.core.checks import create_secret_command, secret_name_for
from webhook.core.cloudlogin import NOTHING_TO_DO, cloud_registry, node_access_fix, secret_command
from webhook.core.findings import Finding
from webhook.core.fixcommands import (
    BUILT_IN_OWNERS,
    recreate_job,
    recreate_pod,
    remake_stuck_pods,
    replace_if_taken,
)
from webhook.core.keyring import Credential, lookup
from webhook.core.mutate import recorded_originals
from webhook.core.placement import platform_selector
from webhook.core.podspec import Container, pod_spec
from webhook.core.pullfailure import CAUSE_WORDS, PULL_REASONS, Cause, Classified, classify
from webhook.core.reference import parse_or_none
from webhook.core.registry import Platform, normalized, serves, words_list

q = shlex.quote

#: For findings that do not name their cause (``Finding.cause``; the registry and platform
#: checks always do): the causes a finding of each check stands for, to tell "confirmed"
#: from "corrected". A missing secret confirms a 401 too: that is how the kubelet meets it.
_FINDING_CAUSES = {
    "reference": {Cause.INVALID_NAME},
    "pullSecrets": {Cause.SECRET_MISSING, Cause.UNAUTHORIZED},
    "pullPolicy": {Cause.NEVER_PULL},
}


#: Causes the kubelet met before the registry answered it (the node's own DNS, network and
#: trust store): a live finding, made from pullguard's network and trust store, tells what
#: the registry will answer once the node reaches it, a second step, never the cause.
_BEFORE_AN_ANSWER = frozenset({Cause.TLS, Cause.DNS, Cause.CONNECTION_REFUSED, Cause.TIMEOUT})
#: Causes the registry gave the kubelet after its login passed (a 404 or a platform list
#: comes after the token exchange): a live refusal then only shows that pullguard lacks
#: credentials the kubelet has (a node's credential provider or config.json).
_PAST_THE_LOGIN = frozenset({Cause.NOT_FOUND, Cause.PLATFORM, Cause.RATE_LIMITED, Cause.DISK_FULL})
#: Causes a live refusal stands for.
_REFUSALS = frozenset({Cause.UNAUTHORIZED, Cause.SECRET_MISSING})


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


#: C0 controls, DEL and C1 controls: what a terminal may run as a command (ESC, CSI, OSC).
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def cluster_text(value: object) -> str:
    """A text from the cluster about a pull (a waiting message, an Event's message) as it may
    be shown: the kubelet passes the runtime's error on, and the runtime a registry's status
    line and body as they came, so a tenant's registry can put escape sequences there
    (rev20d F9). Control characters become one space; other Unicode is kept."""
    return _CONTROLS.sub(" ", str(value or ""))


def _events_for(container: Container, events: Sequence[Mapping[str, Any]]) -> list[str]:
    """Messages of the pull events about ``container``: by field path, else by image."""
    path = f"spec.{container.list_name}{{{container.name}}}"
    found = []
    for event in events:
        involved = event.get("involvedObject") or {}
        message = cluster_text(event.get("message"))
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
                texts = [cluster_text(waiting.get("message") or waiting["reason"])]
                texts += _events_for(container, events)
        if texts:
            out.append((container, texts))
    return out


def secret_events(events: Sequence[Mapping[str, Any]]) -> list[str]:
    return [
        cluster_text(e.get("message"))
        for e in events
        if e.get("reason") == "FailedToRetrieveImagePullSecret"
    ]


@dataclass(frozen=True, slots=True)
class Workload:
    """What a fix must change for a pod: its controlling owner (a Deployment, not its
    ReplicaSet: the Deployment would put the ReplicaSet back), or the pod itself when it has
    none; and the pod's ServiceAccount with its pull secrets (for a rate limit's fix)."""

    kind: str = "Pod"
    name: str = ""
    service_account: str = "default"
    account_secrets: tuple[str, ...] = ()
    paused: bool = False
    """A Deployment under ``kubectl rollout pause`` (``spec.paused``): it rolls out no
    change of its template until resumed, so a fix that changes it resumes it (rev22b F6)."""

    @property
    def bare(self) -> bool:
        return self.kind == "Pod"

    @property
    def template_path(self) -> tuple[str, ...]:
        """Where the pod template's spec is, under the owner's ``spec``."""
        if self.kind == "CronJob":
            return ("jobTemplate", "spec", "template", "spec")
        return ("template", "spec")


def diagnose(
    pod: Mapping[str, Any],
    events: Sequence[Mapping[str, Any]],
    live: Sequence[Finding],
    *,
    live_note: str = "",
    workload: Workload | None = None,
    namespace_credentials: Sequence[Credential] = (),
    image_platforms: Mapping[str, Sequence[str]] | None = None,
    node_platforms: Collection[tuple[str, str]] | None = None,
) -> list[ContainerDiagnosis]:
    """One diagnosis per failing image. ``live``: findings of the checks re-run now;
    ``live_note``: why they could not all run (shown when nothing confirms); ``workload``:
    the pod's owner, so the fixes change what will make the next pod;
    ``namespace_credentials``: the pull secrets of the pod's namespace (a secret there that
    already covers the image is patched in, not created again); ``image_platforms``: per
    container label, the builds the registry listed for its image (the live check's
    ``Decision.image_platforms``), which fill a platform fix no live finding brought;
    ``node_platforms``: the cluster's node platforms when known (a build no node would
    pull is not offered).

    The kubelet's evidence comes first: a live finding that is only advice (the registry
    cannot be reached from here now, a typo guess, ``:latest`` advice) never replaces the
    cause the kubelet reported nor its fix; it is shown as evidence. Only a definite live
    finding (not found, refused, a secret missing, a reference that cannot parse) corrects.
    """
    metadata = pod.get("metadata") or {}
    name, namespace = str(metadata.get("name", "")), str(metadata.get("namespace", ""))
    spec = pod.get("spec") or {}
    node = str(spec.get("nodeName") or "")
    if workload is None:
        workload = Workload("Pod", name, str(spec.get("serviceAccountName") or "default"))
    fixer = _Fixer(pod, namespace, workload, namespace_credentials)
    originals = recorded_originals(pod)
    out = []
    for found, texts in failing_containers(pod, events):
        if workload.paused and workload.kind == "Deployment":
            paused_note = (
                f"Deployment {workload.name} is paused (spec.paused): it rolls out no change "
                "of its template until resumed, so each fix that changes it resumes it"
            )
        else:
            paused_note = ""
        container = _as_written(found, originals.get(found.annotation_key))
        classified = _classify(texts, secret_events(events))
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
        definite = [f for f in mine if _definite(f) and f not in confirming]
        # The kubelet's cause stands where pullguard's answer comes from further along the
        # pull than the kubelet got (TLS), or from less far (a refusal, where the kubelet's
        # login passed and the registry answered 404).
        after = definite if not confirming and cause in _BEFORE_AN_ANSWER else []
        beside = [
            f
            for f in definite
            if not confirming and cause in _PAST_THE_LOGIN and _settled_cause(f) in _REFUSALS
        ]
        definite = [f for f in definite if f not in after and f not in beside]
        advice = [f for f in mine if f not in confirming and f not in definite]
        advice = [f for f in advice if f not in after and f not in beside]
        if confirming:
            diagnosis.verdict = "confirmed"
            _use(diagnosis, confirming, fixer, container)
        elif after:
            diagnosis.verdict = "not confirmed"
            diagnosis.fixes.extend(_fixes_for(cause, container, fixer, node))
            first = len(diagnosis.fixes)
            _use(
                diagnosis,
                after,
                fixer,
                container,
                said="pullguard now, from its own network and trust store (it reached the "
                "registry)",
            )
            diagnosis.fixes[first:] = [
                f"then, for what the registry answers once the nodes reach it: {fix}"
                for fix in diagnosis.fixes[first:]
            ]
        elif beside:
            diagnosis.verdict = "not confirmed"
            diagnosis.evidence.extend(
                "pullguard now (without the credentials the kubelet used): "
                + f.problem.removesuffix("; the kubelet will get the same answer")
                for f in beside
            )
            diagnosis.evidence.append(
                "the registry answered the kubelet after its login passed, so the kubelet "
                "has credentials pullguard cannot see (a node's credential provider or "
                "config.json); a new secret would not change its answer"
            )
        elif definite or (advice and cause is Cause.UNKNOWN):
            correcting = definite or advice
            diagnosis.verdict = "corrected"
            _use(diagnosis, correcting, fixer, container)
            settled = _settled_cause(correcting[0])
            diagnosis.summary = (
                f"{correcting[0].problem} (the kubelet's text suggested: {CAUSE_WORDS[cause]})"
            )
            if settled is not None:
                diagnosis.cause = settled
            advice = [f for f in advice if f not in correcting]
        elif (
            cause in (Cause.NOT_FOUND, Cause.UNAUTHORIZED, Cause.SECRET_MISSING)
            and not live_note
            and not any(f.check == "registry" for f in advice)
        ):
            # Asked now, and the registry served the image: fixed (or pushed) since.
            diagnosis.verdict = "not confirmed"
            diagnosis.evidence.append(
                "pullguard now: the image exists and the pod's credentials may read it "
                "(pushed or fixed since the last attempt)"
            )
            diagnosis.fixes.append(
                f"the kubelet retries with a back-off of up to 5 minutes; {fixer.retry()}"
            )
        else:
            diagnosis.verdict = "not checked" if live_note else "not confirmed"
            if live_note:
                diagnosis.evidence.append(f"pullguard could not re-check: {live_note}")
        diagnosis.evidence.extend(f"pullguard now (advice): {f.problem}" for f in advice)
        if not diagnosis.fixes:
            builds = (image_platforms or {}).get(container.label, ())
            diagnosis.fixes.extend(
                _fixes_for(
                    diagnosis.cause, container, fixer, node, builds=builds, nodes=node_platforms
                )
            )
        if paused_note and any(_RESUME in fix for fix in diagnosis.fixes):
            diagnosis.evidence.append(paused_note)
        if workload.kind == "Job":
            diagnosis.fixes = [
                _say_the_job_is_recreated(fix, workload.name) for fix in diagnosis.fixes
            ]
        out.append(diagnosis)
    return out


def _say_the_job_is_recreated(fix: str, job: str) -> str:
    """``fix`` with the words admission gives the same recreate (rev22d F10) before it, when
    it recreates Job ``job`` (:func:`~webhook.core.fixcommands.recreate_job`): ``replace
    --force`` deletes the Job, its pods and its record of completions, and its pods run
    again from the start, which for a migration or a half-done batch is the person's
    decision. The words hold no "kubectl": the command still starts at the first one."""
    patched = f"kubectl patch job/{shlex.quote(job)} "
    if patched not in fix or "kubectl replace --force -f -" not in fix:
        return fix
    return (
        f"Job {job} is deleted and created again with the change (a Job's pod template "
        "cannot change), and its pods run again from the start: " + fix
    )


def _as_written(container: Container, original: str | None) -> Container:
    """``container`` carrying the image as the user wrote it when pullguard's mirror rewrite
    replaced it (``pullguard.io/original-images``): a fix that sets an image on the owner
    starts from it, or the template would name the mirror itself (no fallback to the
    registry when the mirror is down, and no longer the manifest in git). Only an original
    the image is a mirror of (the same repository path at its end, the same tag and
    digest, another host) counts: an annotation anyone edited is ignored."""
    if not original or original == container.image:
        return container
    before, now = parse_or_none(original), parse_or_none(container.image)
    if (
        before is None
        or now is None
        or before.domain == now.domain
        or (before.tag, before.digest) != (now.tag, now.digest)
        or not ("/" + now.path).endswith("/" + before.path)
    ):
        return container
    return replace(container, written=original)


def _classify(texts: Sequence[str], secret_texts: Sequence[str]) -> Classified:
    """The container's own texts decide; a "Unable to retrieve some image pull secrets"
    event (about the pod, whichever image) explains only a refusal, or a failure the
    runtime's text does not name: it must not hide a not-found, a TLS or a DNS failure."""
    own = classify(*texts)
    if secret_texts and own.cause in (Cause.UNAUTHORIZED, Cause.UNKNOWN):
        missing = classify(*secret_texts)
        if missing.cause is Cause.SECRET_MISSING:
            return missing
    return own


def _definite(finding: Finding) -> bool:
    """A live finding that states a pull failure rather than advice."""
    return not finding.advisory and finding.check != "pullPolicy"


def _settled_cause(finding: Finding) -> Cause | None:
    """The cause a correcting finding stands for (``--all`` groups by it)."""
    if finding.cause is not None:
        try:
            return Cause(finding.cause)
        except ValueError:
            return None
    causes = _FINDING_CAUSES.get(finding.check, set())
    return (
        next(iter(sorted(causes)))
        if len(causes) == 1
        else (Cause.UNAUTHORIZED if finding.check == "pullSecrets" else None)
    )


def _predicts(finding: Finding, cause: Cause) -> bool:
    """Does a live finding stand for the same failure as the kubelet's text?"""
    if finding.cause is not None:
        return finding.cause == cause.value
    return cause in _FINDING_CAUSES.get(finding.check, set())


_SECRET_TO_ADD = re.compile(r", then (?:add|recreate the pod with) \{name: ([a-z0-9.-]+)\}")
_TAG_MEANT = re.compile(r"^use tag '([^']+)' if that was meant")
_SET_IMAGE = re.compile(r"kubectl set image \S+ [a-z0-9-]+=(\S+) -n \S+$")
_IMAGE_MEANT = re.compile(r"^use image '([^']+)'(?: if that was meant)?")


def _use(
    diagnosis: ContainerDiagnosis,
    findings: Sequence[Finding],
    fixer: _Fixer,
    container: Container,
    *,
    said: str = "pullguard now",
) -> None:
    """Evidence and fixes from live findings, with each fix made runnable on the pod that
    exists: a secret to add goes to the owner's template (a Pod's list cannot change: it is
    recreated), an image to use is set on the owner. ``said``: how the evidence is
    introduced."""
    for finding in findings:
        diagnosis.evidence.append(f"{said}: {finding.problem}")
        if not finding.fix:
            continue
        fix = finding.fix
        if finding.cause == "unauthorized" and fix.startswith(NOTHING_TO_DO):
            # A registry the nodes log in to themselves: they did not, since the pod fails.
            fix = fixer.node_access(container)
        elif added := _SECRET_TO_ADD.search(fix):
            fix = fixer.secret_for(container, fix[: added.start()], added.group(1))
        elif "kubectl set image" in fix:
            # The finding's own command (an existing workload); an ephemeral container's
            # image cannot be set, so for one it becomes another `kubectl debug`.
            command = _SET_IMAGE.search(fix)
            if command and container.list_name == "ephemeralContainers":
                image = shlex.split(command.group(1))[0]
                fix = fix[: command.start()] + fixer.set_image(container, image)
        elif (tag := _TAG_MEANT.match(fix)) and "@" not in container.shown_image:
            head, slash, last = container.shown_image.rpartition("/")
            retagged = f"{head}{slash}{last.partition(':')[0]}:{tag.group(1)}"
            fix = f"{fix}: {fixer.set_image(container, retagged)}"
        elif meant := _IMAGE_MEANT.match(fix):
            fix = f"use image {meant.group(1)!r}: {fixer.set_image(container, meant.group(1))}"
        elif finding.check == "pullPolicy" and " Never " in finding.problem:
            fix = f"{fix}: {fixer.set_pull_policy(container)}"
        elif finding.cause == Cause.RATE_LIMITED.value:
            # The check's words name no registry and no command (admission's warning).
            fix = fixer.rate_limit(container)
        elif finding.cause == "platform" and finding.placement is not None:
            fix = f"{fix}; to keep the pods on nodes with a build of it: "
            fix += fixer.place(finding.placement.fields())
        diagnosis.fixes.append(fix)


class _Fixer:
    """kubectl commands on what makes the pod: the owner's template, or the bare pod
    (whose ``imagePullSecrets`` and ``nodeSelector`` cannot change: it is recreated with
    ``kubectl patch --dry-run=client -o yaml ... | kubectl replace --force -f -``)."""

    def __init__(
        self,
        pod: Mapping[str, Any],
        namespace: str,
        workload: Workload,
        credentials: Sequence[Credential] = (),
    ) -> None:
        self.pod = pod
        self.namespace = namespace
        self.workload = workload
        self.credentials = credentials
        spec = pod.get("spec") or {}
        self.secrets = [
            str(s.get("name"))
            for s in spec.get("imagePullSecrets") or []
            if isinstance(s, Mapping) and s.get("name")
        ]
        #: Secrets earlier fixes add (:meth:`add_secret`).
        self.added: list[str] = []
        #: The pod's ephemeral containers (``kubectl debug``), by name.
        self.ephemeral = {
            str(c.get("name")): c
            for c in spec.get("ephemeralContainers") or []
            if isinstance(c, Mapping) and c.get("name")
        }

    @property
    def pod_name(self) -> str:
        return str((self.pod.get("metadata") or {}).get("name", ""))

    def _spec_patch(self, fields: Mapping[str, Any], patch_type: str = "merge") -> str:
        """The command that sets ``fields`` of the pod spec where the next pod comes from.
        ``patch_type``: ``strategic`` for a field inside a container (the list is merged by
        container name: a sidecar injected into the pods is not in the template)."""
        ns = self.namespace
        if self.workload.bare:
            return recreate_pod(self.pod, fields, patch_type=patch_type)
        kind, name = self.workload.kind, self.workload.name
        if kind not in BUILT_IN_OWNERS:
            # A custom resource (Tekton's TaskRun, an operator's kind): kubectl may not know
            # the kind, and its pod template, if it has one, is not at spec.template.
            shown = json.dumps(fields, separators=(",", ":"))
            return (
                f"set {shown} in the pod spec that {kind} {name} makes its pods from (a "
                f"custom resource: pullguard gives no kubectl command for a {kind})"
            )
        document: dict[str, Any] = dict(fields)
        for key in reversed(self.workload.template_path):
            document = {key: document}
        target = f"{kind.lower()}/{q(name)}"
        if kind == "Job":
            # A Job's spec.template is immutable: the Job is recreated with the change (its
            # pods run again), without the selector and labels the API server generated
            # for the old one (it refuses them on a create: "selector not auto-generated").
            return recreate_job(name, ns, document)
        body = json.dumps({"spec": document}, separators=(",", ":"))
        return (
            f"kubectl patch {target} -n {q(ns)} --type={patch_type} -p {q(body)}" + self._remake()
        )

    def _remake(self) -> str:
        """`` && kubectl delete pod ...`` for an owner that never replaces the pods it has when
        its template changes (a ReplicaSet or ReplicationController with no Deployment; a
        StatefulSet whose pod never became ready: Kubernetes' "forced rollback"). For a
        CronJob, its Job that made the pod: a Job keeps its template and never replaces a
        Pending pod, and under ``concurrencyPolicy: Forbid`` the CronJob starts no run while
        it is active; so it is deleted and run again from the changed CronJob."""
        if self.workload.kind == "CronJob" and (job := self._job()):
            ns, cronjob = self.namespace, self.workload.name
            return (
                f" && kubectl delete job {q(job)} -n {q(ns)} && kubectl create job {q(job)} "
                f"--from=cronjob/{q(cronjob)} -n {q(ns)}"
            )
        if self._paused():
            return f" && {self._resume()}"
        return remake_stuck_pods(
            self.workload.kind, [self.pod_name], self.namespace, owner=self.workload.name
        )

    def _paused(self) -> bool:
        return self.workload.paused and self.workload.kind == "Deployment"

    def _resume(self) -> str:
        """A paused Deployment resumed, so that the template's change rolls out."""
        return f"{_RESUME} deployment/{q(self.workload.name)} -n {q(self.namespace)}"

    def _job(self) -> str:
        """The Job controlling the pod (a CronJob's run), from its owner references."""
        for owner in (self.pod.get("metadata") or {}).get("ownerReferences") or []:
            if isinstance(owner, Mapping) and owner.get("kind") == "Job" and owner.get("name"):
                return str(owner["name"])
        return ""

    def covering_secret(self, image: str) -> str | None:
        """A pull secret of the namespace, not yet on the pod, that covers ``image``."""
        ref = parse_or_none(image)
        if ref is None:
            return None
        for credential in lookup(self.credentials, ref.name):
            name = credential.source.rpartition("/")[2]
            if name and name not in self.secrets:
                return name
        return None

    def secret_for(self, container: Container, create: str, name: str) -> str:
        """The secret's fix: only the patch when a secret of the namespace already covers
        the image (made for another workload, say); else the create, made idempotent, then
        the patch (a plain ``kubectl create`` fails on a name that exists, and ``&&`` would
        skip the patch)."""
        if existing := self.covering_secret(container.image):
            return (
                f'imagePullSecret "{existing}" in namespace {self.namespace} already covers '
                f"{container.image}: {self.add_secret(existing)}"
            ) + self._debug_after(container)
        return f"{idempotent(create)} && {self.add_secret(name)}" + self._debug_after(container)

    def _debug_after(self, container: Container) -> str:
        """For an ephemeral container of a bare pod, recreated with a new secret (which
        drops its ephemeral containers): `` && kubectl debug ...`` again, as it was."""
        if container.list_name != "ephemeralContainers" or not self.workload.bare:
            return ""
        return " && " + self.debug_again(container, container.image, name=container.name)

    def node_access(self, container: Container) -> str:
        """For a registry whose nodes log in themselves (a cloud's): the nodes' pull rights
        first, a secret with the registry's real login only as a last resort."""
        host = _host(container.image)
        name = secret_name_for(host)
        secret = self.secret_for(container, secret_command(name, self.namespace, host), name)
        return node_access_fix(host, secret, nodes_may_pull=False)

    def add_secret(self, secret: str) -> str:
        """The patch that adds the pod's list plus ``secret``, and plus every secret an
        earlier fix of this diagnosis added, to where the next pod comes from. A strategic
        merge patch merges ``imagePullSecrets`` by name into the template's list as it is
        now: a merge patch set it whole from the pod's, and dropped a secret the template
        gained since (a paused Deployment's, rev22d F2). The pod's own list goes with it: a
        template that lists none had the ServiceAccount's copied into the pod, and one
        secret added alone would switch those off."""
        self.added = [*dict.fromkeys([*self.added, secret])]
        names = [*dict.fromkeys([*self.secrets, *self.added])]
        # A bare pod is recreated from its own list: either type gives the same list.
        patch_type = "merge" if self.workload.bare else "strategic"
        return self._spec_patch({"imagePullSecrets": [{"name": n} for n in names]}, patch_type)

    def place(self, fields: Mapping[str, Any]) -> str:
        """The patch that makes the pod's nodeSelector the placement's whole one (a key of
        the pod's it drops set to ``null``: a merge patch merges maps) and adds its
        tolerations to the pod's own (a merge patch replaces a list whole). A bare pod is
        recreated without its ``spec.nodeName``: the node it is bound to has no build, and
        the kubelet there would reject the new selector."""
        spec = self.pod.get("spec") or {}
        selector: dict[str, Any] = dict(fields.get("nodeSelector") or {})
        own_selector = spec.get("nodeSelector")
        if isinstance(own_selector, Mapping):
            selector |= {str(k): None for k in own_selector if k not in selector}
        patch: dict[str, Any] = {"nodeSelector": selector}
        added = list(fields.get("tolerations") or [])
        if added:
            own = [t for t in spec.get("tolerations") or [] if isinstance(t, Mapping)]
            patch["tolerations"] = [*own, *(t for t in added if t not in own)]
        if self.workload.bare and (self.pod.get("spec") or {}).get("nodeName"):
            patch["nodeName"] = None
        return self._spec_patch(patch)

    def debug_again(self, container: Container, image: str, *, name: str = "") -> str:
        """``kubectl debug`` of the pod with ``image``, as ``container`` (an ephemeral
        container) was added: an ephemeral container can never be changed nor removed
        (not by an update of the pod, not through its subresource), so the fix is another
        one, under ``name`` (a new name unless the pod was recreated without it)."""
        entry = self.ephemeral.get(container.name) or {}
        target = entry.get("targetContainerName")
        targeted = f" --target={q(str(target))}" if target else ""
        if not name:
            spec = self.pod.get("spec") or {}
            taken = {
                str(c.get("name"))
                for key in ("containers", "initContainers", "ephemeralContainers")
                for c in spec.get(key) or []
                if isinstance(c, Mapping)
            }
            number = 2
            while f"{container.name}-{number}" in taken:
                number += 1
            name = f"{container.name}-{number}"
        return (
            f"kubectl debug {q(self.pod_name)} -n {q(self.namespace)} --image={q(image)}{targeted} "
            f"-c {q(name)}"
        )

    def set_image(self, container: Container, image: str) -> str:
        if container.is_volume:
            return "change the image volume's reference in the manifest and apply it again"
        if container.list_name == "ephemeralContainers":
            again = self.debug_again(container, image)
            return (
                "an ephemeral container's image cannot change (ephemeral container "
                f"{container.name} stays, failing): debug again: {again}"
            )
        kind, name = self.workload.kind, self.workload.name
        if not self.workload.bare and kind not in BUILT_IN_OWNERS:
            return (
                f"set the image of container {container.name} to {image} in {kind} {name} "
                f"(a custom resource: pullguard gives no kubectl command for a {kind})"
            )
        if self.workload.bare or kind == "Job":
            # A Pod's image can change in place; a Job's template cannot.
            target = f"pod/{q(self.pod_name)}"
            remake = ""
        else:
            target = f"{kind.lower()}/{q(name)}"
            remake = self._remake()
        command = (
            f"kubectl set image {target} {q(container.name)}={q(image)} -n {q(self.namespace)}"
        )
        return command + remake

    def set_pull_policy(self, container: Container) -> str:
        """``imagePullPolicy: IfNotPresent`` on the pod template, or on a recreated bare pod
        (a Pod's policy cannot change), by the container's name (a strategic merge): the
        pod's index may not be the template's (a sidecar injector adds containers)."""
        entry: dict[str, Any] = {"name": container.name}
        inner = entry
        for key in container.policy_path[:-1]:
            inner = inner.setdefault(key, {})
        inner[container.policy_path[-1]] = "IfNotPresent"
        return self._spec_patch({container.list_name: [entry]}, patch_type="strategic")

    def retry(self) -> str:
        """``to retry now (why it works): COMMAND``: the words before the colon, so that
        the command, from its first ``kubectl`` to the end, runs as printed."""
        if self.workload.bare:
            return f"to retry now: {self.retry_command()}"
        made = "makes" if self.workload.kind in BUILT_IN_OWNERS else "may make"
        return f"to retry now (its {self.workload.kind} {made} a new one): {self.retry_command()}"

    def retry_command(self) -> str:
        """The command alone that makes the kubelet pull again now: the owned pod deleted
        (its owner makes a new one), a bare pod recreated as it is."""
        if self.workload.bare:
            if self.ephemeral:
                return recreate_pod(self.pod, {})
            return replace_if_taken(
                f"kubectl get pod {q(self.pod_name)} -n {q(self.namespace)} -o yaml"
            )
        return f"kubectl delete pod {q(self.pod_name)} -n {q(self.namespace)}"

    def rate_limit(self, container: Container) -> str:
        """A rate limit's fix, for the registry that answered 429: Docker Hub's login
        (``dockerhub``, on the ServiceAccount) only for a Docker Hub image; for another
        registry a secret with a login of that registry (the kubelet sends a secret only to
        the registry its key names), or, when the pod already presents one, the retry."""
        mirror = "pull through a mirror (mirrors in the pullguard configuration)"
        host = _host(container.image)
        if host == "docker.io":
            return (
                f"{mirror}, or authenticate the pulls (Docker Hub allows more to a login): "
                f"{self.docker_hub_login()}"
            )
        ref = parse_or_none(container.image)
        logged_in = ref is not None and any(
            credential.source.rpartition("/")[2] in self.secrets
            for credential in lookup(self.credentials, ref.name)
        )
        if logged_in or cloud_registry(host) is not None:
            return (
                f"the registry {host} limits the pulls of the login the pods present: {mirror}, "
                "or raise the limit there; the kubelet retries with a back-off of up to 5 "
                f"minutes; {self.retry()}"
            )
        name = secret_name_for(host)
        secret = self.secret_for(container, create_secret_command(name, self.namespace, host), name)
        return (
            f"{mirror}, or authenticate the pulls to {host} (a registry limits anonymous "
            f"pulls first; a Docker Hub login is never sent to {host}): {secret}"
        )

    def docker_hub_login(self) -> str:
        """A ``dockerhub`` secret, and where the next pods get it: the ServiceAccount when
        the pod's list is its account's (the API server copies the account's secrets only
        into a pod that lists none), then the pods recreated; else the pod's own list (the
        owner's template, which rolls out new pods; a bare pod recreated with it)."""
        create = idempotent(
            create_secret_command("dockerhub", self.namespace, "https://index.docker.io/v1/")
        )
        account = self.workload.service_account
        if self.secrets and (
            self.workload.bare or self.secrets != list(self.workload.account_secrets)
        ):
            # A bare pod recreated as it is keeps its list, which the account's never joins.
            return f"{create} && {self.add_secret('dockerhub')}"
        names = [*dict.fromkeys([*self.workload.account_secrets, "dockerhub"])]
        body = json.dumps({"imagePullSecrets": [{"name": n} for n in names]}, separators=(",", ":"))
        kind = self.workload.kind
        if kind in ("Deployment", "StatefulSet", "DaemonSet"):
            again = (
                f"kubectl rollout restart {kind.lower()}/{q(self.workload.name)} "
                f"-n {q(self.namespace)}"
            )
            if self._paused():
                # kubectl refuses to restart a paused Deployment.
                again = f"{self._resume()} && {again}"
        else:
            again = self.retry_command()
        return (
            f"{create} && kubectl patch serviceaccount {q(account)} "
            f"-n {q(self.namespace)} --type=merge -p {q(body)} && {again}"
        )


#: The command that resumes a paused Deployment (its fixes end with it).
_RESUME = "kubectl rollout resume"


def _host(image: str) -> str:
    """The registry host of an image as the fixes name it, as the runtime reads it
    (:mod:`webhook.core.reference`): ``acme/app`` and ``nginx`` are on ``docker.io``, not
    on a registry "acme" (the kubelet would match no secret for "acme" to a Docker Hub
    pull). A reference that does not parse keeps its text before the first ``/``."""
    ref = parse_or_none(image)
    if ref is not None and ref.domain:
        return ref.domain
    return image.split("/", 1)[0] if "/" in image else "docker.io"


def idempotent(create: str) -> str:
    """``kubectl create ...`` as a command that also succeeds when the object exists (its
    own output applied), so a command chained behind it with ``&&`` runs."""
    if not create.startswith("kubectl create "):
        return create
    return f"{create} --dry-run=client -o yaml | kubectl apply -f -"


def _fixes_for(
    cause: Cause,
    container: Container,
    fixer: _Fixer,
    node: str,
    *,
    builds: Sequence[str] = (),
    nodes: Collection[tuple[str, str]] | None = None,
) -> list[str]:
    """Fixes from the cause alone (when no live finding brought one), each ending with the
    command that makes it where one exists. ``builds``: the image's platforms as the
    registry listed them (``linux/amd64``), for a platform fix; ``nodes``: the cluster's
    node platforms, when known."""
    if cause is Cause.PLATFORM and (placed := _build_selectors(builds, fixer, nodes)):
        return [placed]
    namespace, pod = fixer.namespace, fixer.pod_name
    host = _host(container.image)
    described = q(node) if node else "NODE"
    on_node = f" on node {node}" if node else " on the node"
    name = secret_name_for(host)
    # Built lazily: a fix that adds a secret remembers it for the fixes after it.
    chosen: dict[Cause, Callable[[], list[str]]] = {
        Cause.NOT_FOUND: lambda: [
            f"push {container.image}, or use an image that exists: "
            + fixer.set_image(container, "IMAGE")
        ],
        Cause.UNAUTHORIZED: lambda: [
            fixer.node_access(container)
            if cloud_registry(host) is not None
            else fixer.secret_for(container, create_secret_command(name, namespace, host), name)
        ],
        Cause.SECRET_MISSING: lambda: [
            f"kubectl get pod {q(pod)} -n {q(namespace)} -o "
            "jsonpath='{.spec.imagePullSecrets}', then create each one missing "
            f"in namespace {namespace}: {create_secret_command('NAME', namespace, host)}"
        ],
        Cause.INVALID_NAME: lambda: [
            f"correct the reference: {fixer.set_image(container, 'IMAGE')}"
        ],
        Cause.RATE_LIMITED: lambda: [fixer.rate_limit(container)],
        Cause.DNS: lambda: [
            f"check the registry host {host!r} for a typo, and set the image meant: "
            f"{fixer.set_image(container, 'IMAGE')}; or resolve it{on_node}"
        ],
        Cause.CONNECTION_REFUSED: lambda: [f"check that the registry {host} is up and listening"],
        Cause.TIMEOUT: lambda: [
            f"check the network path (egress, proxy, firewall) from the node to {host}"
        ],
        Cause.TLS: lambda: [
            f"give the nodes the registry's CA (containerd: /etc/containerd/certs.d/{host}/"
            f"ca.crt; CRI-O: /etc/containers/certs.d/{host}/ca.crt)"
        ],
        Cause.REGISTRY_ERROR: lambda: [
            f"the registry {host} is failing; the kubelet retries on its own"
        ],
        Cause.PLATFORM: lambda: [
            # No placeholder command: kubectl accepts "ARCH" and the pods never schedule.
            "use a multi-platform build, or set nodeSelector kubernetes.io/arch (and "
            f"kubernetes.io/os) {'on the pod' if fixer.workload.bare else 'in the pod template'}"
            " to a platform the image has a build for (pullguard could not learn which)"
        ],
        Cause.DISK_FULL: lambda: [
            f"free disk space{on_node}: kubectl describe node {described}; remove unused "
            "images there (crictl rmi --prune)"
        ],
        Cause.NEVER_PULL: lambda: [
            "set imagePullPolicy: IfNotPresent where the pod comes from, or preload the image "
            "on every node: " + fixer.set_pull_policy(container)
        ],
        Cause.UNKNOWN: lambda: [f"kubectl describe pod {q(pod)} -n {q(namespace)}"],
    }
    return chosen[cause]()


#: At most this many builds get a command of their own in a platform fix.
_MAX_BUILD_COMMANDS = 4


def _build_selectors(
    builds: Sequence[str], fixer: _Fixer, nodes: Collection[tuple[str, str]] | None = None
) -> str:
    """ "this image has builds for linux/amd64 and linux/arm64: ..." with the patch that
    keeps the pods on nodes of each (os/arch, the selector of
    :func:`webhook.core.placement.platform_selector`), offered only for node platforms
    whose runtime would pull the build (:func:`webhook.core.registry.serves`: an amd64 node
    takes no ``amd64/v3``), and, when the cluster's ``nodes`` are known, only for theirs;
    empty when the registry listed none."""
    parsed = [
        Platform(*parts[:3]) if len(parts) >= 3 else Platform(parts[0], parts[1])
        for b in builds
        if len(parts := b.split("/")) >= 2
    ]
    if not parsed:
        return ""
    has = words_list(list(builds))
    where = "on the pod" if fixer.workload.bare else "in the pod template"
    offered = list(
        dict.fromkeys(
            key
            for p in parsed
            if serves(p, key := normalized(p).node_key) and (nodes is None or key in nodes)
        )
    )
    if not offered:
        if nodes is not None:
            shown = words_list([f"{o}/{a}" for o, a in sorted(nodes)])
            return (
                f"this image has builds for {has} only, and no node of the cluster would pull "
                f"one (its nodes are {shown}): use a multi-platform build with one for them"
            )
        return (
            f"this image has builds for {has} only, which no node's runtime pulls (an amd64 "
            "node takes no variant but v1): use a build without a variant"
        )
    spec = fixer.pod.get("spec") or {}
    commands = [
        fixer.place({"nodeSelector": platform_selector([platform], None, spec)})
        for platform in offered[:_MAX_BUILD_COMMANDS]
    ]
    return (
        f"this image has builds for {has}: select nodes of one of them {where} (the node it "
        "failed on has none): " + "; or ".join(commands)
    )


def render_text(pod_name: str, namespace: str, diagnoses: Sequence[ContainerDiagnosis]) -> str:
    """The report for people, in the style of the admission messages. Each line is shown
    through :func:`cluster_text`: the pod's image, its secrets' and owner's names are any
    string a tenant wrote (rev20e F4, F5), and a terminal runs their escape sequences."""
    count = len(diagnoses)
    lines = [
        f"pullguard diagnosed Pod {namespace}/{pod_name}: {count} image"
        f"{'s' if count != 1 else ''} failing to pull"
    ]
    for d in diagnoses:
        lines.append(f"- {d.container} ({d.image}): {d.summary} [{d.cause.value}, {d.verdict}]")
        lines.extend(f"  Evidence: {e}" for e in d.evidence)
        lines.extend(f"  Fix: {f}" for f in d.fixes)
    return "\n".join(cluster_text(line) for line in lines)
