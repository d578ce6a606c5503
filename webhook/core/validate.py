"""The validating decision: ``validate(request, config, cluster) -> Decision``.

Order of a decision:

1. Only CREATE and UPDATE of a kind with a pod spec are judged; the webhook's own namespace
   and the configured exempt namespaces never are.
2. The namespace's mode label (``pullguard.io/mode: enforce|warn|off``) overrides every check.
3. On UPDATE only what changed is judged (a container's image or pull policy, the pull
   secrets, the ServiceAccount), so an old workload is never blocked by a rule added after it
   was created, and ``kubectl scale`` never meets pullguard at all.
3b. An object a controller makes from a template (a Pod of a ReplicaSet, StatefulSet,
   DaemonSet or Job; a ReplicaSet of a Deployment; a Job of a CronJob: an ownerReference with
   ``controller: true``), when the request's user is a controller (``controllerUsers``),
   is denied only for a failure that is certain: a reference the runtime
   cannot parse, or credentials missing for a registry that needs them. Everything else about
   it is a warning. Its template was judged when a person applied it; a rollout restart, a
   scale-up or a node drain must never lose capacity to a rule added since, or to advice.
   An ephemeral container (``kubectl debug``, the ``pods/ephemeralcontainers``
   subresource) is always a person's change, never the controller's: judged in full.
3c. A missing or unreadable pull secret denies only when an image needs credentials that no
   secret the pod can read provides: the kubelet pulls with the credentials it has and only
   records a warning event for the rest (FACTS.md). An image needs credentials when its
   registry is in ``privateRegistries`` or refused the pull without them; a
   ``defaultPullSecrets`` registry as such does not (a default secret is an optimisation,
   and one whose copy failed must not deny what the registry serves anonymously).
3d. An image with pull policy ``Never`` is never pulled: only its reference and the
   pull-policy advice are judged; the registry is not asked and no credentials are needed.
4. A pod template is judged as its pods will be: with the ServiceAccount's pull secrets when
   the template has none (the API server adds them only to Pods), and with what the mutating
   webhook will change in each pod (mirrors, default secrets). When that ServiceAccount does
   not exist yet (``kubectl apply -f dir/`` applies files in name order), its secrets are
   unknown: credentials are not judged (a warning says so) and its pods, which cannot be
   created before the account exists, are judged when they come.
4b. An image on a mirror is named as the user wrote it, and a mirror's "not found" is asked
   again of the registry as written before it can deny (``imagecheck``): a pull-through
   mirror that cannot reach its upstream answers 404 for images that exist.
5. Enforced findings deny with the message of docs/reference.md; warned ones become
   kubectl warnings.

Pure: the cluster is reached only through :class:`~webhook.core.cluster.ClusterView`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace

from webhook.core.checks import (
    TYPO_WORDS,
    PodOwner,
    SecretSet,
    WorkloadRef,
    check_coverage,
    check_pull_policy,
    check_reference,
    default_pull_policy,
    needs_credentials,
    pod_owner,
    read_secrets,
)
from webhook.core.cluster import (
    ClusterUnavailable,
    ClusterView,
    NodeTaints,
    SecretInfo,
    ServiceAccountInfo,
)
from webhook.core.config import CHECK_NAMES, Action, Config
from webhook.core.findings import Finding, denial_message, describe_object, warning_lines
from webhook.core.hosts import any_host_matches
from webhook.core.imagecheck import (
    mirror_down_finding,
    mirror_not_found_finding,
    platform_finding,
    question_for,
    registry_finding,
)
from webhook.core.keyring import lookup
from webhook.core.mutate import as_written, mirror_entry, preview_pod_spec, recorded_for
from webhook.core.placement import cluster_placement
from webhook.core.podspec import (
    MAX_IMAGE_ENTRIES,
    Container,
    PodSpecView,
    changed_containers,
    pod_spec,
)
from webhook.core.reference import Reference, parse_or_none
from webhook.core.registry import (
    Answer,
    Outcome,
    Question,
    RegistryView,
    platform_fit,
    runnable_node_platforms,
    words_list,
)
from webhook.core.review import AdmissionRequest, UserInfo


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one admission; the edge turns it into an AdmissionReview response."""

    allowed: bool
    message: str | None = None
    warnings: tuple[str, ...] = ()
    findings: tuple[Finding, ...] = ()
    outcomes: Mapping[str, str] = field(default_factory=dict)
    """Per check: pass | warn | deny | off | unavailable | not-judged (for metrics)."""
    reason: str = "judged"
    """Why it was (not) judged: judged | exempt | unsupported | unchanged | mode-off."""
    not_checked: tuple[tuple[str, str], ...] = ()
    """(image as written, why) for each image the registry check could not settle: not
    asked, unreachable, rate limited or failing. ``audit`` counts and lists them: it must
    never say "nothing" where it could not look."""
    image_platforms: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(container label, the builds its image's index lists: ``linux/amd64``...) as the
    registry answered, nodes known or not: ``diagnose`` fills a platform fix from them
    where no node says its platform (never asking the registry twice)."""


#: Checks whose (non-advisory) findings are certain pull failures, enforceable even on objects
#: a controller makes.
CERTAIN_CHECKS = frozenset({"reference", "pullSecrets"})


def made_by_controller(obj: Mapping[str, object] | None) -> bool:
    """Does ``obj`` have a controlling owner (it was made from a template by a controller)?"""
    metadata = (obj or {}).get("metadata")
    owners = metadata.get("ownerReferences") if isinstance(metadata, Mapping) else None
    return isinstance(owners, list) and any(
        isinstance(o, Mapping) and o.get("controller") is True for o in owners
    )


def by_controller(request: AdmissionRequest, config: Config) -> bool:
    """Did a controller make the request (``request.userInfo``, said by the API server)?

    An ownerReference is written by whoever creates the object: a tenant's bare Pod with a
    made-up ``controller: true`` owner used to be judged as a controller's pod, where only
    certain failures deny (a self-bypass). The user is the API server's word when it is the
    caller (``serve --client-ca``); a forged review can claim anything, but then it only
    decides its own answer, never what the API server admits.
    """
    return any(fnmatch.fnmatchcase(request.user.username, u) for u in config.controller_users)


#: At most this many SubjectAccessReviews are asked per admission, over all its missing
#: secrets (a verified review listing 64 missing names once cost 8 per name: 512).
MAX_NAMESPACES_ASKED = 8


class ReadableTo:
    """``cluster`` as ``user`` may see it in messages: :meth:`namespaces_with_pull_secret`
    keeps only namespaces whose Secrets ``user`` may read. Every other read is the cluster's.

    ``verified``: ``user`` is the API server's word (the review came over a connection whose
    client certificate ``serve --client-ca`` verified, or the caller built the request for
    itself). Otherwise anyone who reaches the webhook port wrote it (``system:masters`` made
    the SubjectAccessReview say yes): no namespace is named and no SubjectAccessReview is
    asked. At most :data:`MAX_NAMESPACES_ASKED` are asked per admission."""

    def __init__(self, cluster: ClusterView, user: UserInfo, *, verified: bool) -> None:
        self._cluster = cluster
        self._user = user
        self._verified = verified
        self._asked = 0

    def namespaces_with_pull_secret(self, name: str) -> list[str]:
        if not self._verified:
            return []
        readable = []
        for ns in self._cluster.namespaces_with_pull_secret(name):
            if self._asked >= MAX_NAMESPACES_ASKED:
                break
            self._asked += 1
            if self._cluster.may_read_secrets(self._user, ns):
                readable.append(ns)
        return readable

    def may_read_secrets(self, user: UserInfo, namespace: str) -> bool:
        return self._cluster.may_read_secrets(user, namespace)

    def get_secret(self, namespace: str, name: str) -> SecretInfo | None:
        return self._cluster.get_secret(namespace, name)

    def get_service_account(self, namespace: str, name: str) -> ServiceAccountInfo | None:
        return self._cluster.get_service_account(namespace, name)

    def namespace_labels(self, namespace: str) -> Mapping[str, str] | None:
        return self._cluster.namespace_labels(namespace)

    def node_platforms(self) -> frozenset[tuple[str, str]]:
        return self._cluster.node_platforms()

    def node_platform(self, name: str) -> tuple[str, str] | None:
        return self._cluster.node_platform(name)

    def node_taints(self) -> NodeTaints:
        return self._cluster.node_taints()


def allow(reason: str) -> Decision:
    return Decision(allowed=True, reason=reason, outcomes=dict.fromkeys(CHECK_NAMES, "not-judged"))


def namespace_actions(
    config: Config, namespace: str, cluster: ClusterView
) -> tuple[dict[str, Action], str | None]:
    """Each check's action in ``namespace``, after its mode label; and an unavailability note."""
    actions = {name: config.checks.action(name) for name in CHECK_NAMES}
    try:
        labels = cluster.namespace_labels(namespace) or {}
    except ClusterUnavailable as error:
        return actions, str(error)
    mode = labels.get(config.namespace_mode_label)
    if mode in ("enforce", "warn", "off"):
        actions = dict.fromkeys(CHECK_NAMES, Action(mode))
    return actions, None


def _secrets_changed(new: PodSpecView, old: PodSpecView | None) -> bool:
    if old is None:
        return True
    return (new.pull_secret_names, new.service_account) != (
        old.pull_secret_names,
        old.service_account,
    )


def validate(
    request: AdmissionRequest,
    config: Config,
    cluster: ClusterView,
    *,
    own_namespace: str = "",
    registry: RegistryView | None = None,
    mirrors_down: Collection[str] = frozenset(),
    user_verified: bool = False,
) -> Decision:
    """Judge one admission request. Without ``registry`` the registry and platform checks
    report that they could not run; ``mirrors_down`` are mirror hosts the mutating webhook
    is not rewriting to now. ``user_verified``: ``request.userInfo`` is the API server's
    word (``serve --client-ca`` verified the connection) or the caller's own (the CLI);
    only then is a namespace holding a missing secret named (:class:`ReadableTo`)."""
    if request.operation not in ("CREATE", "UPDATE"):
        return allow("unsupported")
    namespace = request.namespace
    if namespace and (namespace == own_namespace or namespace in config.exempt_namespaces):
        return allow("exempt")
    view = pod_spec(request.kind, request.object)
    if view is None:
        return allow("unsupported")
    old_view = pod_spec(request.kind, request.old_object) if request.operation == "UPDATE" else None

    judged = changed_containers(view, old_view, with_pull_policy=True)
    secrets_changed = _secrets_changed(view, old_view)
    if not judged and not secrets_changed:
        return allow("unchanged")

    actions, labels_unavailable = namespace_actions(config, namespace, cluster)
    if all(action is Action.OFF for action in actions.values()):
        return allow("mode-off")

    # Before the preview adds any default secret: does the template name its own?
    lists_own_secrets = view.lists_pull_secrets
    if view.is_template and not config.mutation.pod_templates:
        # Judge the template as its pods will be once the mutating webhook has run, and
        # name each image as the user wrote it.
        written = {c.pointer: c.image for c in view.containers}
        view = preview_pod_spec(view, config, cluster, namespace, mirrors_down=mirrors_down)
        judged_keys = {(c.list_name, c.name) for c in judged}
        previewed = [as_written(c, written.get(c.pointer), config.mirrors) for c in view.containers]
        judged = [c for c in previewed if (c.list_name, c.name) in judged_keys]
        if secrets_changed:
            judged = previewed
    else:
        # A Pod (or, with mutation.podTemplates, a template) the mutating webhook rewrote:
        # its annotation says what the user wrote.
        recorded = recorded_for(view, request.object)
        judged = [as_written(c, recorded.get(c.annotation_key), config.mirrors) for c in judged]

    workload = WorkloadRef(
        request.kind, namespace, request.object_name, exists=request.operation == "UPDATE"
    )
    # A running pod's controller (kubectl debug on a Deployment's pod): its template, not
    # the pod, takes a pull secret.
    owner = (
        pod_owner(request.object, namespace)
        if not view.is_template and request.operation == "UPDATE"
        else None
    )
    findings: list[Finding] = []
    unavailable: dict[str, str] = {}
    refs: dict[str, Reference] = {}

    # Only namespaces whose Secrets the requesting user may read are ever named in "it
    # exists in ..." (it told any tenant which namespaces hold a secret of that name), and
    # only when the user is the API server's word (a forged system:masters was believed).
    cluster = ReadableTo(cluster, request.user, verified=user_verified)
    # Counted before any per-entry work: past MAX_IMAGE_ENTRIES only the grammar is checked,
    # and the rest of the decision sees the first MAX_IMAGE_ENTRIES entries.
    over_entries = _too_many_entries(judged)
    judged = _check_references(judged, config.known_registries(), workload, refs, findings)

    # The kubelet never pulls an image whose pull policy is Never: it runs the node's copy
    # or fails with ErrImageNeverPull, and neither the registry nor credentials take part.
    # Such images are judged for their reference and the pull-policy advice only.
    pulled = [c for c in judged if c.pull_policy != "Never"]

    wants_registry = registry is not None and (
        actions["registry"] is not Action.OFF or actions["platform"] is not Action.OFF
    )
    pod = None
    if actions["pullSecrets"] is not Action.OFF or wants_registry:
        pod = _read_pod_secrets(
            view,
            pulled,
            refs=refs,
            config=config,
            cluster=cluster,
            namespace=namespace,
            dry_run=request.dry_run,
            lists_own_secrets=lists_own_secrets,
        )
    answers: dict[str, Answer] = {}
    as_written_answers: dict[str, tuple[Reference, Answer]] = {}
    if wants_registry and registry is not None and pod is not None:
        answers = _ask_registry(
            pulled,
            refs,
            pod,
            registry,
            config,
            with_platforms=actions["platform"] is not Action.OFF,
            namespace=namespace,
        )
        as_written_answers = _ask_as_written(
            pulled, answers, pod, registry, config, namespace=namespace
        )

    if actions["pullSecrets"] is not Action.OFF and pod is not None:
        if pod.secrets.unavailable is not None:
            unavailable["pullSecrets"] = pod.secrets.unavailable
        findings.extend(
            _pull_secret_findings(
                view,
                pulled,
                pod,
                refs=refs,
                answers=answers,
                config=config,
                namespace=namespace,
                operation=request.operation,
                owner=owner,
            )
        )
        findings.extend(pod.over_cap)

    if registry is None:
        for check in ("registry", "platform"):
            unavailable.setdefault(check, "no registry client in this engine run")
    else:
        findings.extend(
            _registry_findings(
                view,
                pulled,
                refs,
                answers,
                pod,
                config,
                cluster,
                namespace,
                unavailable,
                blocked=any(f.check == "pullSecrets" and not f.advisory for f in findings),
                running_pod=not view.is_template and request.operation == "UPDATE",
                workload=workload,
                owner=owner,
                as_written=as_written_answers,
                mirrors_down=frozenset() if view.is_template else mirrors_down,
            )
        )
        findings = _served_is_no_typo(findings, answers, pulled)

    if pod is not None and pod.pending_account:
        findings = _pending_account(findings, pod.pending_account, pulled, refs)

    if wants_registry and registry is not None:
        findings.extend(_too_many_images(pulled, refs, view))
    findings.extend(over_entries)

    # An ephemeral container (kubectl debug) is added by a person, never by the controller
    # that made the pod: it is judged as a person's change, owner or not. An owner is
    # trusted only when the API server says a controller sent the request (by_controller).
    if (
        made_by_controller(request.object)
        and by_controller(request, config)
        and request.sub_resource != "ephemeralcontainers"
    ):
        findings = [f if f.check in CERTAIN_CHECKS else f.as_advisory() for f in findings]

    loud = frozenset({"reference", "pullSecrets", "pullPolicy"})
    if registry is not None:
        loud |= {"registry"}
    decision = _decide(
        request,
        findings=findings,
        actions=actions,
        unavailable=unavailable,
        labels_unavailable=labels_unavailable,
        loud=loud,
    )
    if actions["registry"] is Action.OFF:
        return decision
    return replace(
        decision,
        not_checked=_not_checked(pulled, answers),
        image_platforms=tuple(
            (c.label, tuple(str(p) for p in answer.platforms))
            for c in pulled
            if (answer := answers.get(c.pointer)) is not None and answer.platforms
        ),
    )


#: Answers that leave an image's existence and access unknown.
_UNSETTLED = frozenset(
    {Outcome.NOT_ASKED, Outcome.UNREACHABLE, Outcome.RATE_LIMITED, Outcome.REGISTRY_ERROR}
)


def _not_checked(
    pulled: list[Container], answers: Mapping[str, Answer]
) -> tuple[tuple[str, str], ...]:
    out: dict[str, str] = {}
    for container in pulled:
        answer = answers.get(container.pointer)
        if answer is not None and answer.outcome in _UNSETTLED:
            why = answer.outcome.value.replace("_", " ")
            out.setdefault(
                container.shown_image, f"{why}: {answer.detail}" if answer.detail else why
            )
    return tuple(out.items())


@dataclass
class PodSecrets:
    """The pull secrets a pod will use, read once per admission, and what is wrong with them."""

    secrets: SecretSet
    findings: list[Finding]
    hidden: str = ""
    """A note when a template's own list hides its ServiceAccount's secrets."""
    configured_needing: list[Container] = field(default_factory=list)
    """Judged images whose registry the configuration says always needs credentials."""
    pending_account: str = ""
    """A template's ServiceAccount that does not exist yet (``kubectl apply -f dir/`` applies
    files in name order): its pull secrets, which its pods will get, are not known."""
    over_cap: list[Finding] = field(default_factory=list)
    """More pull secrets listed than pullguard reads: never softened (an unread secret
    that does not parse fails every pull of the pod, FACTS.md)."""


def _read_pod_secrets(
    view: PodSpecView,
    judged: list[Container],
    *,
    refs: Mapping[str, Reference],
    config: Config,
    cluster: ClusterView,
    namespace: str,
    dry_run: bool,
    lists_own_secrets: bool,
) -> PodSecrets:
    """``lists_own_secrets``: the object as written lists imagePullSecrets (``view`` may be
    the preview, with default secrets added)."""
    names, origin, hidden, pending = view.pull_secret_names, "", "", ""
    over_cap = _too_many_secrets(names, "the pod spec", _subject(view.containers))
    names = names[:MAX_PULL_SECRETS]
    if view.is_template:
        # The ServiceAccount admission plugin fills imagePullSecrets only into Pods, and only
        # when the Pod's list is empty: a template must be judged with the account's list
        # when it has none, and told when its own list hides the account's.
        try:
            account = cluster.get_service_account(namespace, view.service_account)
        except ClusterUnavailable as error:
            return PodSecrets(SecretSet(names=[], origin="", unavailable=str(error)), [])
        if account is None and not lists_own_secrets:
            # Not created yet (a Deployment applied before its ServiceAccount): the pods,
            # which cannot be created before it exists, are judged with its secrets then.
            pending = view.service_account
        if account is not None and account.image_pull_secrets:
            listed = ", ".join(f'"{n}"' for n in account.image_pull_secrets)
            if not lists_own_secrets:
                if not view.lists_pull_secrets:  # the preview adds them with a default one
                    names = list(dict.fromkeys(account.image_pull_secrets))
                    origin = f'ServiceAccount "{account.name}"'
                    over_cap = _too_many_secrets(names, origin, _subject(view.containers))
                    names = names[:MAX_PULL_SECRETS]
            else:
                hidden = (
                    f"; the template's own imagePullSecrets hide ServiceAccount "
                    f'"{account.name}"\'s ({listed}), which its pods will not get'
                )
    elif lists_own_secrets:
        # A Pod that lists its own secrets gets none of its ServiceAccount's: the plugin
        # fills the list only when it is empty. Said, so the pod's list is not read as all.
        try:
            account = cluster.get_service_account(namespace, view.service_account)
        except ClusterUnavailable:
            account = None
        extra = [n for n in (account.image_pull_secrets if account else []) if n not in names]
        if account is not None and extra:
            listed = ", ".join(f'"{n}"' for n in extra)
            hidden = (
                f"; the pod's own imagePullSecrets hide ServiceAccount \"{account.name}\"'s "
                f"({listed}), which the API server adds only to a pod that lists none"
            )
    needing = [
        c for c in judged if c.pointer in refs and needs_credentials(refs[c.pointer], config)
    ]
    affected = (
        needing
        or [c for c in judged if c.pointer in refs and refs[c.pointer].domain != "docker.io"]
        or judged
        or view.containers
    )
    secrets, findings = read_secrets(
        names,
        origin,
        namespace,
        cluster,
        subject=_subject(affected),
        needing_registries=[refs[c.pointer].domain for c in needing]
        or [refs[c.pointer].domain for c in affected if c.pointer in refs],
        # A default secret pullguard copies into the namespace is judged by its source's
        # contents where the copy has not happened yet: on a dry-run (copies are skipped),
        # for a template (its pods get the copy when they are created), and for a Pod whose
        # review did not come with proof (webhook.edge.secretsync: the copy is made once the
        # API server has the Pod, right after this admission).
        copied_from={
            d.secret: d.source_namespace
            for d in config.default_pull_secrets
            if d.source_namespace is not None
        },
    )
    return PodSecrets(secrets, findings, hidden, needing, pending, over_cap)


def _pending_account(
    findings: list[Finding],
    account: str,
    pulled: list[Container],
    refs: Mapping[str, Reference],
) -> list[Finding]:
    """Findings about credentials, when the template's ServiceAccount does not exist yet:
    one warning that says so instead of coverage findings (whose fix, a new secret, may not
    be needed), and refusals only as warnings (the account's secrets may serve the pull)
    without their fix (a new secret, again), the account's warning saying what to do.
    Everything else (a reference that cannot parse, an image that does not exist) stands."""
    kept: list[Finding] = []
    for finding in findings:
        if finding.check == "pullSecrets":
            continue
        kept.append(
            replace(
                finding.as_advisory(
                    f'; ServiceAccount "{account}" does not exist yet, and its '
                    "imagePullSecrets may serve the pull",
                    f' (ServiceAccount "{account}" does not exist yet)',
                ),
                fix="",
            )
            if finding.cause == "unauthorized"
            else finding
        )
    if not pulled:
        return kept  # nothing is pulled: no credentials to judge, now or later
    registries = words_list(
        list(dict.fromkeys(refs[c.pointer].domain for c in pulled if c.pointer in refs)), limit=3
    )
    kept.append(
        Finding(
            check="pullSecrets",
            subject=_subject(pulled) if pulled else "pod template",
            problem=f'ServiceAccount "{account}" does not exist yet, so the pull secrets its '
            f"pods will get are not known and credentials for {registries or 'its images'} "
            "are not judged; its pods are judged when they are created",
            short=f'ServiceAccount "{account}" does not exist yet: credentials are judged '
            "when its pods are created",
            fix=f"create ServiceAccount {account} before the workload (kubectl apply -f DIR "
            "applies files in name order)",
            advisory=True,
        )
    )
    return kept


#: Pull secrets read per pod: each one pullguard cannot find costs a direct read, and a pod
#: listing 3,000 made-up names once cost the API server 6,020 GETs and outlived its
#: timeout, so the pod was admitted unchecked. A real pod lists a handful.
MAX_PULL_SECRETS = 64


def _too_many_secrets(names: list[str], origin: str, subject: str) -> list[Finding]:
    """A finding (enforced as the pullSecrets check is) when ``names`` is past the cap: past
    it pullguard cannot vouch for the pod, and a cap a tenant can reach on purpose must not
    switch the check off for that pod."""
    if len(names) <= MAX_PULL_SECRETS:
        return []
    return [
        Finding(
            check="pullSecrets",
            subject=subject,
            problem=f"{origin} lists {len(names)} imagePullSecrets; pullguard checks at most "
            f"{MAX_PULL_SECRETS} per pod, so it cannot tell whether this pod's pulls succeed",
            short=f"{len(names)} imagePullSecrets: pullguard checks at most {MAX_PULL_SECRETS}",
            fix=f"list at most {MAX_PULL_SECRETS} imagePullSecrets (the ones its registries need)",
        )
    ]


#: At most this many distinct manifests are asked about per admission. A pod naming more is
#: not "not checked" (under enforce that would switch the registry check off for any pod
#: that names a 65th image on purpose): it gets a registry finding saying it exceeds what
#: pullguard checks, enforced as the registry check is (a warning on a controller's pod,
#: whose template was judged). Real pods with 40 containers share far fewer images.
MAX_QUESTIONS = 64

# MAX_IMAGE_ENTRIES (podspec, shared with the mutating side): judging each entry (the typo
# guess, pull-policy advice, credentials, the registry) once spent the review's whole budget
# before the registry was asked, so the pod was admitted "not checked" under enforce. Past
# the cap every entry's grammar is still checked (a reference the runtime cannot parse
# denies wherever it is); the rest of the decision sees the first MAX_IMAGE_ENTRIES, and the
# pod gets a registry finding saying it exceeds what pullguard checks, enforced as the
# 64-image cap is.
#: Past the cap, at most this many malformed references get their own finding (one is
#: enough to deny; each is in the denial message).
MAX_INVALID_PAST_CAP = 8


def _check_references(
    judged: list[Container],
    known_registries: list[str],
    workload: WorkloadRef,
    refs: dict[str, Reference],
    findings: list[Finding],
) -> list[Container]:
    """The reference and pull-policy checks of ``judged``, into ``refs`` and ``findings``;
    returns the entries the rest of the decision judges (the first MAX_IMAGE_ENTRIES).

    Every entry's grammar is checked, once per distinct reference string; the costly steps
    (the registry-typo guess, once per host; the advice) run for the first entries only."""
    head, rest = judged[:MAX_IMAGE_ENTRIES], judged[MAX_IMAGE_ENTRIES:]
    typos: dict[str, str | None] = {}
    for container in head:
        ref, found = check_reference(container, known_registries, workload, typos=typos)
        findings.extend(found)
        if ref is None:
            continue
        refs[container.pointer] = ref
        findings.extend(check_pull_policy(container, ref))
    valid: dict[str, bool] = {}
    invalid = 0
    for container in rest:
        image = container.image
        ok = valid.get(image)
        if ok is None:
            ok = valid[image] = parse_or_none(image) is not None
        if not ok:
            invalid += 1
            if invalid <= MAX_INVALID_PAST_CAP:
                findings.extend(check_reference(container, (), workload)[1])
    return head


def _too_many_entries(judged: list[Container]) -> list[Finding]:
    """A registry finding (worded as the 64-image cap's) when ``judged`` is past
    MAX_IMAGE_ENTRIES: a cap a tenant can reach on purpose must not leave the rest
    unchecked and admitted."""
    if len(judged) <= MAX_IMAGE_ENTRIES:
        return []
    return [
        Finding(
            check="registry",
            subject=_subject(judged),
            problem=f"the pod names {len(judged)} images (containers and image volumes); "
            f"pullguard checks at most {MAX_IMAGE_ENTRIES} per object, so it cannot tell "
            "whether the rest can be pulled",
            short=f"{len(judged)} images: pullguard checks at most {MAX_IMAGE_ENTRIES}",
            fix=f"use at most {MAX_IMAGE_ENTRIES} containers and image volumes per pod",
        )
    ]


def _ask_registry(
    judged: list[Container],
    refs: Mapping[str, Reference],
    pod: PodSecrets,
    registry: RegistryView,
    config: Config,
    *,
    with_platforms: bool,
    namespace: str,
) -> dict[str, Answer]:
    """Each judged image's answer, by container pointer. Images are asked in parallel, with
    the credentials the kubelet would use for each."""
    questions: dict[str, Question] = {}
    for container in judged:
        ref = refs.get(container.pointer)
        if ref is None:
            continue
        credentials = lookup(pod.secrets.credentials, ref.name)
        questions[container.pointer] = question_for(ref, credentials, with_platforms)
    distinct = list(dict.fromkeys(questions.values()))
    asked = distinct[:MAX_QUESTIONS]
    budget = config.registry.timeout_seconds
    # The namespace is the tenant: it gets its share of the registry client, no more.
    got = _public_tags(registry.ask(asked, budget, tenant=namespace)) if asked else {}
    too_many = Answer(Outcome.NOT_ASKED, f"more than {MAX_QUESTIONS} distinct images in one object")
    return {pointer: got.get(question, too_many) for pointer, question in questions.items()}


def _ask_as_written(
    judged: list[Container],
    answers: Mapping[str, Answer],
    pod: PodSecrets,
    registry: RegistryView,
    config: Config,
    *,
    namespace: str,
) -> dict[str, tuple[Reference, Answer]]:
    """For each image rewritten to a mirror that says "not found": the registry's own answer
    for the image as written, asked with the credentials the pod has for it. A mirror's "not
    found" is not its upstream's (imagecheck), and only the upstream's may deny."""
    questions: dict[str, tuple[Reference, Question]] = {}
    for container in judged:
        answer = answers.get(container.pointer)
        if answer is None or answer.outcome is not Outcome.NOT_FOUND or not container.written:
            continue
        original = parse_or_none(container.written)
        if original is None:
            continue
        credentials = lookup(pod.secrets.credentials, original.name)
        questions[container.pointer] = (original, question_for(original, credentials, False))
    if not questions:
        return {}
    distinct = list(dict.fromkeys(q for _, q in questions.values()))[:MAX_QUESTIONS]
    got = _public_tags(registry.ask(distinct, config.registry.timeout_seconds, tenant=namespace))
    too_many = Answer(Outcome.NOT_ASKED, f"more than {MAX_QUESTIONS} distinct images in one object")
    return {
        pointer: (original, got.get(question, too_many))
        for pointer, (original, question) in questions.items()
    }


def _too_many_images(
    judged: list[Container], refs: Mapping[str, Reference], view: PodSpecView
) -> list[Finding]:
    distinct = list(dict.fromkeys(str(refs[c.pointer]) for c in judged if c.pointer in refs))
    if len(distinct) <= MAX_QUESTIONS:
        return []
    return [
        Finding(
            check="registry",
            subject=_subject(view.containers),
            problem=f"the pod names {len(distinct)} distinct images; pullguard asks the "
            f"registry about at most {MAX_QUESTIONS} per object, so it cannot tell whether "
            "the rest exist",
            short=f"{len(distinct)} distinct images: pullguard checks at most {MAX_QUESTIONS}",
            fix=f"use at most {MAX_QUESTIONS} distinct images per pod",
        )
    ]


def _public_tags(got: Mapping[Question, Answer]) -> dict[Question, Answer]:
    """The answers, without the tags read with a namespace's credentials: those are that
    tenant's (a forged review naming another namespace once printed "tags there include
    ..." from its private repository), so only tags anyone may list are ever shown."""
    return {q: replace(a, tags=()) if q.credentials and a.tags else a for q, a in got.items()}


def _pull_secret_findings(
    view: PodSpecView,
    judged: list[Container],
    pod: PodSecrets,
    *,
    refs: Mapping[str, Reference],
    answers: Mapping[str, Answer],
    config: Config,
    namespace: str,
    operation: str,
    owner: PodOwner | None = None,
) -> list[Finding]:
    secrets, findings = pod.secrets, pod.findings
    if secrets.unavailable is not None:
        return findings
    # A secret the kubelet cannot parse fails every pull of the pod: certain wherever an
    # image is pulled at all (imagePullPolicy Never never builds the keyring).
    fatal = [f for f in findings if any(f is u for u in secrets.unparseable)]
    pulled = [
        c
        for c in judged
        if c.pointer in refs and (c.pull_policy or default_pull_policy(refs[c.pointer])) != "Never"
    ]
    rest = [f for f in findings if not any(f is u for u in secrets.unparseable)]
    if fatal and pulled:
        # Its fix comes first; the other secrets change nothing while it stays.
        return fatal + [f.as_advisory() for f in rest]
    fatal = [
        f.as_advisory("; but no image of the pod is pulled (imagePullPolicy Never)") for f in fatal
    ]
    return fatal + _usable_secret_findings(
        view,
        judged,
        pod,
        rest,
        refs=refs,
        answers=answers,
        config=config,
        namespace=namespace,
        operation=operation,
        owner=owner,
    )


def _usable_secret_findings(
    view: PodSpecView,
    judged: list[Container],
    pod: PodSecrets,
    findings: list[Finding],
    *,
    refs: Mapping[str, Reference],
    answers: Mapping[str, Answer],
    config: Config,
    namespace: str,
    operation: str,
    owner: PodOwner | None = None,
) -> list[Finding]:
    """Missing and skipped secrets, and coverage: what depends on the registry's answer."""
    secrets = pod.secrets
    # An image needs credentials when the configuration says its registry always does, or
    # when the registry refused to serve it with what the pod has (and the nodes cannot
    # bring their own).
    refused = {
        c.pointer
        for c in judged
        if (a := answers.get(c.pointer)) is not None
        and a.outcome is Outcome.UNAUTHORIZED
        and not any_host_matches(config.registry.node_credential_registries, refs[c.pointer].domain)
    }
    configured = {c.pointer for c in pod.configured_needing}
    needing = [c for c in judged if c.pointer in configured or c.pointer in refused]
    uncovered = [
        c
        for c in needing
        if c.pointer in refused or not lookup(secrets.credentials, refs[c.pointer].name)
    ]
    if findings and not uncovered:
        # Not needed: every image that needs credentials is covered by what the pod can read
        # (or none does), so the kubelet pulls without these and the pod runs.
        served = [c for c in judged if (a := answers.get(c.pointer)) and a.outcome is Outcome.FOUND]
        if needing:
            why = "the pod's other imagePullSecrets cover the images that need credentials"
        elif not judged:
            why = "the kubelet pulls none of its images (pull policy Never)"
        elif judged and len(served) == len(judged):
            why = "the registry serves its images with the credentials the pod has"
        else:
            why = "none of its images is on a registry known to need credentials"
        unanswered = not needing and any(
            (a := answers.get(c.pointer)) is not None and a.outcome is Outcome.UNREACHABLE
            for c in judged
        )
        if served and not unanswered:
            short = " (the image is public, so the pod runs)"
        elif unanswered:
            # Not known to be unneeded: the registry did not say whether it serves without it.
            short = " (not checked: the registry could not be reached)"
        else:
            short = " (not needed)"
        return [f.as_advisory(f"; not needed, so the pod runs: {why}", short) for f in findings]
    if findings:
        # A missing or unreadable secret may well be the one that covers the registry:
        # its fix comes first, and a second finding about coverage would only add noise.
        return findings
    for container in needing:
        if container.pointer in refused:
            continue  # the registry check says who refused and with which secret
        findings.extend(
            check_coverage(
                container,
                refs[container.pointer],
                secrets,
                namespace,
                note=pod.hidden,
                running_pod=not view.is_template and operation == "UPDATE",
                owner=owner,
            )
        )
    return findings


def _registry_findings(  # noqa: PLR0917 - one call site, every argument named there
    view: PodSpecView,
    judged: list[Container],
    refs: Mapping[str, Reference],
    answers: Mapping[str, Answer],
    pod: PodSecrets | None,
    config: Config,
    cluster: ClusterView,
    namespace: str,
    unavailable: dict[str, str],
    *,
    blocked: bool,
    as_written: Mapping[str, tuple[Reference, Answer]],
    mirrors_down: Collection[str],
    running_pod: bool = False,
    workload: WorkloadRef | None = None,
    owner: PodOwner | None = None,
) -> list[Finding]:
    """Findings of the ``registry`` and ``platform`` checks. ``blocked``: a pull-secret
    finding already denies, and its fix comes first; a refusal would repeat it.
    ``as_written``: the registry's answer for the image as written, where its mirror said
    "not found"; ``mirrors_down``: mirrors a Pod's rewritten image may be on, which stopped
    answering since (a cached answer from the mirror would hide that). ``running_pod``: the
    pod exists already (``kubectl debug``), and its pull secrets cannot change."""
    findings: list[Finding] = []
    not_asked: list[str] = []
    unchecked: list[str] = []  # the images behind not_asked
    try:
        nodes: frozenset[tuple[str, str]] | None = cluster.node_platforms()
    except ClusterUnavailable as error:
        nodes = None
        unavailable["platform"] = str(error)
    node_name = view.spec.get("nodeName")
    node_name = node_name if isinstance(node_name, str) else ""
    named_node = None
    if node_name and nodes:
        try:
            named_node = cluster.node_platform(node_name)
        except ClusterUnavailable:
            named_node = None  # judged against every node, as without a nodeName
    runnable = runnable_node_platforms(view.spec, nodes, named_node) if nodes else set()
    if nodes is not None and not nodes:
        unavailable["platform"] = "no Node says its kubernetes.io/os and kubernetes.io/arch"
    secrets_unreadable = pod is None or pod.secrets.unavailable is not None
    for container in judged:
        ref = refs.get(container.pointer)
        answer = answers.get(container.pointer)
        if ref is None or answer is None:
            continue
        if answer.outcome is Outcome.NOT_ASKED:
            not_asked.append(answer.detail)
            unchecked.append(container.shown_image)
        if answer.outcome is Outcome.UNAUTHORIZED and blocked:
            continue
        if container.written and ref.domain in mirrors_down:
            findings.append(mirror_down_finding(container, ref))
            continue
        if container.pointer in as_written:
            original, original_answer = as_written[container.pointer]
            entry = mirror_entry(original, config.mirrors)
            finding = mirror_not_found_finding(
                container,
                ref,
                original,
                original_answer,
                namespace=namespace,
                node_credential_registries=config.registry.node_credential_registries,
                secrets_unreadable=secrets_unreadable,
                mirror_has_credentials=entry is not None and entry[0].upstream_credentials,
                template=view.is_template,
            )
            if finding is not None:
                findings.append(finding)
            continue
        finding = registry_finding(
            container,
            ref,
            answer,
            namespace=namespace,
            node_credential_registries=config.registry.node_credential_registries,
            secrets_unreadable=secrets_unreadable,
            secrets=pod.secrets if pod is not None else None,
            hidden=pod.hidden if pod is not None else "",
            running_pod=running_pod,
            workload=workload,
            owner=owner,
            default_sources={
                d.secret: d.source_namespace
                for d in config.default_pull_secrets
                if d.source_namespace is not None
            },
        )
        if finding is not None:
            findings.append(finding)
        if answer.platforms:
            fit = platform_fit(answer.platforms, runnable, single_image=answer.single_image)
            found = (
                platform_finding(
                    container,
                    ref,
                    answer.platforms,
                    fit,
                    single_image=answer.single_image,
                    node_name=node_name if named_node is not None else "",
                    placement=cluster_placement(
                        cluster, answer.platforms, view.spec, single_image=answer.single_image
                    ),
                )
                if fit is not None
                else None
            )
            if found is not None:
                findings.append(found)
        elif answer.outcome is Outcome.FOUND and answer.platforms_note:
            unavailable.setdefault("platform", answer.platforms_note)
    if not_asked:
        named = words_list(list(dict.fromkeys(unchecked)), limit=3)
        unavailable["registry"] = "; ".join(dict.fromkeys(not_asked)) + f"; not checked: {named}"
        unavailable.setdefault("platform", unavailable["registry"])
    return findings


def _served_is_no_typo(
    findings: list[Finding], answers: Mapping[str, Answer], pulled: list[Container]
) -> list[Finding]:
    """Drop the "looks like a typo of another registry" guess for an image its registry has
    just served: the host is the one meant (a real registry one edit from a well-known one,
    ``quay.io`` and ``quai.io`` say, is not a typo when it has the image)."""
    served = {
        c.image_pointer
        for c in pulled
        if (answer := answers.get(c.pointer)) is not None and answer.outcome is Outcome.FOUND
    }
    return [
        f
        for f in findings
        if not (
            f.check == "reference"
            and f.advisory
            and TYPO_WORDS in f.problem
            and f.pointer in served
        )
    ]


def _subject(containers: list[Container]) -> str:
    if len(containers) == 1:
        return containers[0].label
    names = ", ".join(f'"{c.name}"' for c in containers[:4])
    more = f" and {len(containers) - 4} more" if len(containers) > 4 else ""
    return f"containers {names}{more}"


def _decide(
    request: AdmissionRequest,
    *,
    findings: list[Finding],
    actions: Mapping[str, Action],
    unavailable: Mapping[str, str],
    labels_unavailable: str | None,
    loud: frozenset[str],
) -> Decision:
    """``loud``: the checks whose "could not run" is worth a warning on the request (not the
    platform check, whose usual reason, no node labels, is the admin's to see in metrics;
    not the registry check where this run has no registry client at all)."""
    acted = [
        f.with_action(actions[f.check]) for f in findings if actions[f.check] is not Action.OFF
    ]
    enforced = [f for f in acted if f.action is Action.ENFORCE]
    warned = [f for f in acted if f.action is Action.WARN]

    outcomes: dict[str, str] = {}
    for check in CHECK_NAMES:
        if actions[check] is Action.OFF:
            outcomes[check] = "off"
        elif any(f.check == check for f in enforced):
            outcomes[check] = "deny"
        elif any(f.check == check for f in warned):
            outcomes[check] = "warn"
        elif check in unavailable:
            outcomes[check] = "unavailable"
        else:
            outcomes[check] = "pass"

    extra = []
    for check, why in unavailable.items():
        if actions[check] is not Action.OFF and check in loud:
            extra.append(f"pullguard: {check} check could not run: {why}")
    # An unreadable namespace label is not worth a warning on every request: the configured
    # actions apply, and the reason is in the log and the "unavailable" metrics.
    del labels_unavailable

    subject = describe_object(
        request.kind, request.namespace, request.object_name, request.generate_name
    )
    warnings = tuple(warning_lines(warned, extra))
    if enforced:
        return Decision(
            allowed=False,
            message=denial_message(subject, enforced),
            warnings=warnings,
            findings=tuple(acted),
            outcomes=outcomes,
        )
    return Decision(allowed=True, warnings=warnings, findings=tuple(acted), outcomes=outcomes)
