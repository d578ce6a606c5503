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
4c. Node credentials (``node``, the kubelet's credential providers): each image a provider
   matches is asked with the pod's secrets first, then the providers' credentials, as the
   kubelet pulls; its registry counts as a node-credential registry (a refusal only warns,
   pullguard's identity is not the node's), and a provider that fails is a warning naming it.
5. Enforced findings deny with the message of docs/reference.md; warned ones become
   kubectl warnings.

The spine: after the reference checks, each image the kubelet will pull is one
:class:`~webhook.core.pullplan.ImagePull` (reference, place, pull policy, and, once the pod's
secrets are read by ``secretcheck``, the credentials in the kubelet's order). ``secretcheck``
and ``registrycheck`` read those pulls and return findings (advisory when not certain, with
their evidence: a :class:`CheckFindings`); :func:`decide`, the one policy, turns them into
the decision (a certain failure's fix first, pending ServiceAccount, controller, each check's
action).

Pure: the cluster is reached only through :class:`~webhook.core.cluster.ClusterView`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from webhook.core.checks import (
    PodOwner,
    SecretReads,
    WorkloadRef,
    check_pull_policy,
    check_reference,
    listed_secret_names,
    pod_owner,
)
from webhook.core.cluster import (
    ClusterUnavailable,
    ClusterView,
    ClusterViewOver,
    ReadOnce,
)
from webhook.core.config import CHECK_NAMES, Action, Config
from webhook.core.findings import (
    UNPARSEABLE,
    Finding,
    denial_message,
    describe_object,
    warning_lines,
)
from webhook.core.fixcommands import BUILT_IN_OWNERS
from webhook.core.keyring import Credential
from webhook.core.mutate import as_written, preview_pod_spec, recorded_for
from webhook.core.nodecreds import NodeCredentials, NodeCredentialView, ask_providers
from webhook.core.podspec import (
    MAX_IMAGE_ENTRIES,
    Container,
    PodSpecView,
    changed_containers,
    controller_owner,
    pod_spec,
)
from webhook.core.pullplan import plan_pulls, subject
from webhook.core.reference import Reference, parse_or_none
from webhook.core.registry import Outcome, RegistryView
from webhook.core.registrycheck import (
    MAX_QUESTIONS,
    RegistryAnswers,
    ask_registry,
    image_platforms,
    not_checked,
    registry_findings,
    served_is_no_typo,
    too_many_images,
)
from webhook.core.review import AdmissionRequest, UserInfo
from webhook.core.secretcheck import (
    MAX_PULL_SECRETS,
    pending_account_finding,
    pull_secret_findings,
    read_pod_secrets,
)

__all__ = [
    "MAX_IMAGE_ENTRIES",
    "MAX_NAMESPACES_ASKED",
    "MAX_PULL_SECRETS",
    "MAX_QUESTIONS",
    "Decision",
    "allow",
    "made_by_controller",
    "validate",
]


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
    why: str = ""
    """For ``exempt`` and ``mode-off``, the policy that made it so, in the words ``audit``
    shows (:data:`OWN_NAMESPACE`, :data:`IN_EXEMPT_NAMESPACES`, ``labelled
    pullguard.io/mode=off``, :data:`OFF_IN_CONFIGURATION`): decided here, once, from the
    reads the decision made, never worked out again above the core."""
    not_checked: tuple[tuple[str, str], ...] = ()
    """(image as written, why) for each image the registry check could not settle: not
    asked, unreachable, rate limited or failing. ``audit`` counts and lists them: it must
    never say "nothing" where it could not look."""
    could_not_run: tuple[tuple[str, str], ...] = ()
    """(check, why) for each check that is on but could not run (outcome ``unavailable``):
    secrets not readable, nodes' platforms unknown. ``audit`` counts them as not checked."""
    image_platforms: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(container label, the builds its image's index lists: ``linux/amd64``...) as the
    registry answered, nodes known or not: ``diagnose`` fills a platform fix from them
    where no node says its platform (never asking the registry twice)."""


#: Checks whose (non-advisory) findings are certain pull failures, enforceable even on objects
#: a controller makes.
CERTAIN_CHECKS = frozenset({"reference", "pullSecrets"})


def _existing_bare_pod(request: AdmissionRequest, namespace: str) -> PodOwner | None:
    """A bare Pod in the cluster as its own "owner": its pull-secret fix recreates it."""
    if request.kind != "Pod" or made_by_controller(request.object):
        return None
    spec = (request.object or {}).get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    return PodOwner(
        "Pod",
        request.object_name,
        namespace,
        listed_secret_names(spec),
        ephemeral=bool(spec.get("ephemeralContainers")),
    )


def _existing_owner(workload: WorkloadRef) -> PodOwner | None:
    """An owner in the cluster judged itself (``audit``): its pull-secret fix is a command
    on its template (rev22d F6); the secrets its pods use are filled in once read."""
    if workload.kind not in BUILT_IN_OWNERS or not workload.name:
        return None
    return PodOwner(
        workload.kind,
        workload.name,
        workload.namespace,
        template=True,
        stuck_pods=workload.stuck_pods,
        paused=workload.paused,
    )


#: The field manager ``kubectl run`` sends with its create.
KUBECTL_RUN = "kubectl-run"


def _run_pod(request: AdmissionRequest, namespace: str) -> PodOwner | None:
    """A Pod ``kubectl run`` is creating (rev22d F5): there is no manifest, so a fix that
    adds a pull secret is that ``kubectl run`` again with it. Known by the create's field
    manager, which only words depend on (a client that sends another name gets the
    manifest's words)."""
    if (
        request.kind != "Pod"
        or request.operation != "CREATE"
        or request.field_manager != KUBECTL_RUN
        or not isinstance(request.object, Mapping)
        or made_by_controller(request.object)
    ):
        return None
    spec = request.object.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    metadata = request.object.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, Mapping) else {}
    metadata.setdefault("name", request.object_name)
    metadata["namespace"] = namespace
    return PodOwner(
        "Pod",
        request.object_name,
        namespace,
        listed_secret_names(spec),
        run={**request.object, "metadata": metadata},
    )


def _paused(obj: Mapping[str, object] | None) -> bool:
    """A Deployment under ``kubectl rollout pause`` (``spec.paused``)."""
    spec = (obj or {}).get("spec")
    return isinstance(spec, Mapping) and spec.get("paused") is True


def made_by_controller(obj: Mapping[str, object] | None) -> bool:
    """Does ``obj`` have a controlling owner (it was made from a template by a controller)?"""
    return controller_owner(obj) is not None


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


class ReadableTo(ClusterViewOver):
    """``cluster`` as ``user`` may see it in messages: :meth:`namespaces_with_pull_secret`
    keeps only namespaces whose Secrets ``user`` may read. Every other read is the cluster's.

    ``verified``: ``user`` is the API server's word (the review came over a connection whose
    client certificate ``serve --client-ca`` verified, or the caller built the request for
    itself). Otherwise anyone who reaches the webhook port wrote it (``system:masters`` made
    the SubjectAccessReview say yes): no namespace is named and no SubjectAccessReview is
    asked. At most :data:`MAX_NAMESPACES_ASKED` are asked per admission."""

    def __init__(self, cluster: ClusterView, user: UserInfo, *, verified: bool) -> None:
        super().__init__(cluster)
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


#: Why an object is not judged (:attr:`Decision.why`): where it is.
OWN_NAMESPACE = "pullguard's own namespace"
IN_EXEMPT_NAMESPACES = "in exemptNamespaces"
#: Why every check is off where no mode label turned them off.
OFF_IN_CONFIGURATION = "every check off in the configuration"


def allow(reason: str, why: str = "") -> Decision:
    return Decision(
        allowed=True,
        reason=reason,
        why=why,
        outcomes=dict.fromkeys(CHECK_NAMES, "not-judged"),
    )


@dataclass(frozen=True)
class NamespaceActions:
    """Each check's action in a namespace, and where it came from."""

    actions: dict[str, Action]
    unavailable: str | None = None
    """Why the namespace's labels could not be read (the configured actions apply)."""
    labelled: str | None = None
    """``labelled pullguard.io/mode=off`` where the namespace's mode label set the actions."""

    def why_off(self) -> str:
        """Why every check is off (when they all are): the label, or the configuration."""
        return self.labelled or OFF_IN_CONFIGURATION


def namespace_actions(config: Config, namespace: str, cluster: ClusterView) -> NamespaceActions:
    """Each check's action in ``namespace``, after its mode label (read once, here)."""
    actions = {name: config.checks.action(name) for name in CHECK_NAMES}
    try:
        labels = cluster.namespace_labels(namespace) or {}
    except ClusterUnavailable as error:
        return NamespaceActions(actions, unavailable=str(error))
    label = config.namespace_mode_label
    mode = labels.get(label) if label else None
    if mode in ("enforce", "warn", "off"):
        actions = dict.fromkeys(CHECK_NAMES, Action(mode))
        return NamespaceActions(actions, labelled=f"labelled {label}={mode}")
    return NamespaceActions(actions)


def with_node_registries(config: Config, hosts: Collection[str]) -> Config:
    """``config`` with ``hosts`` (registries a credential provider matched) counted as
    node-credential registries: the nodes authenticate to them themselves."""
    known = config.registry.node_credential_registries
    extra = tuple(h for h in hosts if h not in known)
    if not extra:
        return config
    return replace(
        config, registry=replace(config.registry, node_credential_registries=(*known, *extra))
    )


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
    node: NodeCredentialView | None = None,
    existing: bool = False,
    stuck_pods: Sequence[str] = (),
    recreate_bare_pod: bool = False,
    reads: SecretReads | None = None,
) -> Decision:
    """Judge one admission request. Without ``registry`` the registry and platform checks
    report that they could not run; ``mirrors_down`` are mirror hosts the mutating webhook
    is not rewriting to now. ``user_verified``: ``request.userInfo`` is the API server's
    word (``serve --client-ca`` verified the connection) or the caller's own (the CLI);
    only then is a namespace holding a missing secret named (:class:`ReadableTo`).
    ``node``: the kubelet's credential providers (``registry.imageCredentialProviderConfig``),
    asked for each image the registry check asks about; their credentials are tried after
    the pod's, and a host they match is a node-credential registry.
    ``existing``: the object is in the cluster already (``diagnose``, ``audit``): no words
    of an apply in progress, and a fix names the object with a command where it is not
    made by a controller (the audit judges the owner, diagnose rewrites fixes for it).
    ``stuck_pods`` (``audit``): the object's pods stuck now, deleted after a set image where
    it keeps the pods it has; ``recreate_bare_pod`` (``audit``): a bare Pod's pull-secret fix
    recreates it (its imagePullSecrets cannot change). ``reads``: the pull secrets as read
    and parsed already by a caller that reads more of them (``diagnose``: the namespace's),
    over the same cluster; else this admission's own."""
    if request.operation not in ("CREATE", "UPDATE"):
        return allow("unsupported")
    namespace = request.namespace
    if namespace and namespace == own_namespace:
        return allow("exempt", OWN_NAMESPACE)
    if namespace and namespace in config.exempt_namespaces:
        return allow("exempt", IN_EXEMPT_NAMESPACES)
    view = pod_spec(request.kind, request.object)
    if view is None:
        return allow("unsupported")
    old_view = pod_spec(request.kind, request.old_object) if request.operation == "UPDATE" else None

    judged = changed_containers(view, old_view, with_pull_policy=True)
    secrets_changed = _secrets_changed(view, old_view)
    if not judged and not secrets_changed:
        return allow("unchanged")

    # An unreadable namespace label is not worth a warning on every request: the configured
    # actions apply, and the reason is in the log and the "unavailable" metrics.
    in_namespace = namespace_actions(config, namespace, cluster)
    actions = in_namespace.actions
    if all(action is Action.OFF for action in actions.values()):
        return allow("mode-off", in_namespace.why_off())
    # The mutation's preview and the checks read the pod's secrets once (rev23), and parse
    # them once: the preview's questions and the pullSecrets check share one set (reads).
    cluster = ReadOnce(cluster)
    reads = reads or SecretReads(cluster)

    # Before the preview adds any default secret: does the template name its own?
    lists_own_secrets = view.lists_pull_secrets
    if view.is_template and not config.mutation.pod_templates:
        # Judge the template as its pods will be once the mutating webhook has run, and
        # name each image as the user wrote it.
        written = {c.pointer: c.image for c in view.containers}
        view = preview_pod_spec(
            view, config, cluster, namespace, mirrors_down=mirrors_down, reads=reads
        )
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
        request.kind,
        namespace,
        request.object_name,
        exists=request.operation == "UPDATE"
        or (existing and not made_by_controller(request.object)),
        stuck_pods=tuple(stuck_pods),
        paused=existing and request.kind == "Deployment" and _paused(request.object),
    )
    # A running pod's controller (kubectl debug on a Deployment's pod): its template, not
    # the pod, takes a pull secret. An existing bare pod (audit; kubectl debug of one) is
    # recreated with it: its imagePullSecrets cannot change (rev22c).
    owner = (
        (pod_owner(request.object, namespace) or _existing_bare_pod(request, namespace))
        if not view.is_template and request.operation == "UPDATE"
        else _existing_bare_pod(request, namespace)
        if recreate_bare_pod and existing and not view.is_template
        else _existing_owner(workload)
        if existing and view.is_template and workload.exists
        else _run_pod(request, namespace)
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

    # The spine: one value per image entry saying how the kubelet will pull it (reference,
    # place, pull policy; credentials once the secrets are read). The kubelet never pulls an
    # image whose pull policy is Never: it runs the node's copy or fails with
    # ErrImageNeverPull, and neither the registry nor credentials take part. Such images are
    # judged for their reference and the pull-policy advice only.
    planned = plan_pulls(judged, refs)
    for pull in planned:
        findings.extend(check_pull_policy(pull))
    pulls = [p for p in planned if p.pulled]

    wants_registry = registry is not None and (
        actions["registry"] is not Action.OFF or actions["platform"] is not Action.OFF
    )
    pod = None
    nodes: NodeCredentials | None = None
    if actions["pullSecrets"] is not Action.OFF or wants_registry:
        pod = read_pod_secrets(
            view,
            pulls,
            config=config,
            cluster=cluster,
            namespace=namespace,
            lists_own_secrets=lists_own_secrets,
            existing=existing,
            reads=reads,
        )
        if node is not None and wants_registry:
            nodes = ask_providers(
                ((p.ref.name, p.ref.domain) for p in pulls if p.ref is not None),
                node,
                config.registry.timeout_seconds,
            )
            config = with_node_registries(config, nodes.matched_hosts)
        pulls = pod.with_credentials(pulls, nodes)
    asked = RegistryAnswers()
    if wants_registry and registry is not None and pod is not None:
        node_hosts: list[str] = []
        budget = config.registry.timeout_seconds

        def node_for(ref: Reference) -> tuple[Credential, ...]:
            """The nodes' credentials for an image asked again as written (rev23b F4)."""
            assert node is not None
            got = ask_providers([(ref.name, ref.domain)], node, budget)
            node_hosts.extend(got.matched_hosts)
            return got.credentials(ref.name)

        asked = ask_registry(
            pulls,
            pod.keyring,
            registry,
            config,
            with_platforms=actions["platform"] is not Action.OFF,
            namespace=namespace,
            node_for=node_for if node is not None else None,
        )
        if node_hosts:
            config = with_node_registries(config, node_hosts)

    if owner is not None and owner.template and pod is not None:
        # The names its pods use: a patch adds them with the new one (a template that lists
        # none gets its ServiceAccount's too, which one secret alone would switch off).
        owner = replace(owner, secrets=tuple(pod.secrets.names))
    secret_findings: list[Finding] = []
    if actions["pullSecrets"] is not Action.OFF and pod is not None:
        if pod.secrets.unavailable is not None:
            unavailable["pullSecrets"] = pod.secrets.unavailable
        secret_findings = pull_secret_findings(
            view,
            pulls,
            pod,
            answers=asked.answers,
            config=config,
            namespace=namespace,
            operation=request.operation,
            owner=owner,
        )

    found_registry: list[Finding] = []
    if registry is None:
        for check in ("registry", "platform"):
            unavailable.setdefault(check, "no registry client in this engine run")
    else:
        found_registry = registry_findings(
            view,
            pulls,
            asked,
            pod,
            config,
            cluster,
            namespace,
            unavailable,
            running_pod=(not view.is_template and request.operation == "UPDATE")
            or owner is not None,
            workload=workload,
            owner=owner,
            mirrors_down=frozenset() if view.is_template else mirrors_down,
            providers=nodes,
        )
        findings = served_is_no_typo(findings, asked.answers, pulls)

    caps = too_many_images(pulls, view) if wants_registry and registry is not None else []
    account = pod.pending_account if pod is not None else ""
    found = CheckFindings(
        references=findings,
        secrets=secret_findings,
        secrets_cap=pod.over_cap
        if pod is not None and actions["pullSecrets"] is not Action.OFF
        else [],
        registry=found_registry,
        caps=[*caps, *over_entries],
        pending_account=account,
        pending=pending_account_finding(account, pulls) if account else None,
    )

    loud = frozenset({"reference", "pullSecrets", "pullPolicy"})
    if registry is not None:
        loud |= {"registry"}
    decision = decide(
        request,
        found,
        actions=actions,
        # An ephemeral container (kubectl debug) is added by a person, never by the
        # controller that made the pod: it is judged as a person's change, owner or not. An
        # owner is trusted only when the API server says a controller sent the request.
        by_controller=made_by_controller(request.object)
        and by_controller(request, config)
        and request.sub_resource != "ephemeralcontainers",
        unavailable=unavailable,
        loud=loud,
    )
    could_not_run = tuple((c, w) for c, w in unavailable.items() if actions[c] is not Action.OFF)
    decision = replace(decision, could_not_run=could_not_run)
    if actions["registry"] is Action.OFF:
        return decision
    return replace(
        decision,
        not_checked=not_checked(pulls, asked.answers),
        image_platforms=image_platforms(pulls, asked.answers),
    )


@dataclass(frozen=True, slots=True)
class CheckFindings:
    """What the checks found about one object, before any policy: each finding says what its
    check knows (advisory when not certain, its evidence). In the order a decision lists
    them."""

    references: list[Finding]
    """``reference`` and ``pullPolicy``."""
    secrets: list[Finding]
    """``pullSecrets`` over the pulls (``secretcheck.pull_secret_findings``)."""
    secrets_cap: list[Finding]
    """More pull secrets listed than pullguard reads: never set aside (an unread secret
    that does not parse fails every pull of the pod, FACTS.md)."""
    registry: list[Finding]
    """``registry`` and ``platform``, each with the registry's answer as evidence."""
    caps: list[Finding]
    """More images than pullguard asks about or judges."""
    pending_account: str = ""
    """A template's ServiceAccount that does not exist yet: its pull secrets are unknown."""
    pending: Finding | None = None
    """The finding that says so (``secretcheck.pending_account_finding``)."""


def decide(
    request: AdmissionRequest,
    found: CheckFindings,
    *,
    actions: Mapping[str, Action],
    by_controller: bool,
    unavailable: Mapping[str, str],
    loud: frozenset[str],
) -> Decision:
    """Policy over findings: which findings stand, and with which action.

    1. *A certain failure's fix first.* A pull secret the kubelet cannot parse fails every
       pull: the other pull-secret findings change nothing while it stays (warnings). A
       pull-secret finding that denies makes a refusal by the registry repeat it: set aside.
    2. *A pending ServiceAccount* (``kubectl apply -f dir/`` applies files in name order):
       credentials are not judged; one warning says so instead of the coverage findings
       (whose fix, a new secret, may not be needed), and refusals only warn (the account's
       secrets may serve the pull), without their fix. The rest stands.
    3. *A controller's object* (``by_controller``): only certain failures (``CERTAIN_CHECKS``)
       may deny; its template was judged when a person applied it.
    4. *Each check's action* (enforce, warn, off: the configuration or the namespace's mode
       label): enforced findings deny, warned ones become warnings (:func:`_decide`)."""
    secrets = found.secrets
    if any(f.evidence == UNPARSEABLE and not f.advisory for f in secrets):
        secrets = [f if f.evidence == UNPARSEABLE else f.as_advisory() for f in secrets]
    registry = found.registry
    if any(not f.advisory for f in (*secrets, *found.secrets_cap)):
        registry = [f for f in registry if f.evidence != Outcome.UNAUTHORIZED]
    findings = [*found.references, *secrets, *found.secrets_cap, *registry]
    if found.pending_account:
        findings = _pending_account(findings, found.pending_account)
        if found.pending is not None:
            findings.append(found.pending)
    findings += found.caps
    if by_controller:
        findings = [f if f.check in CERTAIN_CHECKS else f.as_advisory() for f in findings]
    return _decide(request, findings=findings, actions=actions, unavailable=unavailable, loud=loud)


def _pending_account(findings: list[Finding], account: str) -> list[Finding]:
    """``findings`` without the credential findings, and a refusal only a warning without
    its fix (the account's warning says what to do), while ``account`` does not exist."""
    return [
        replace(
            f.as_advisory(
                f'; ServiceAccount "{account}" does not exist yet, and its '
                "imagePullSecrets may serve the pull",
                f' (ServiceAccount "{account}" does not exist yet)',
            ),
            fix="",
        )
        if f.cause == "unauthorized"
        else f
        for f in findings
        if f.check != "pullSecrets"
    ]


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
    """The reference checks of ``judged``, into ``refs`` and ``findings``;
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
            subject=subject(judged),
            problem=f"the pod names {len(judged)} images (containers and image volumes); "
            f"pullguard checks at most {MAX_IMAGE_ENTRIES} per object, so it cannot tell "
            "whether the rest can be pulled",
            short=f"{len(judged)} images: pullguard checks at most {MAX_IMAGE_ENTRIES}",
            fix=f"use at most {MAX_IMAGE_ENTRIES} containers and image volumes per pod",
        )
    ]


def _decide(
    request: AdmissionRequest,
    *,
    findings: list[Finding],
    actions: Mapping[str, Action],
    unavailable: Mapping[str, str],
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
