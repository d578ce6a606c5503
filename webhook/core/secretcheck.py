"""The ``pullSecrets`` check of a pod: its pull secrets read once, and judged over its pulls.

:func:`read_pod_secrets` reads the secrets the pod will use (its own list, a template's
ServiceAccount's, pullguard's default copies) once per admission, into a :class:`PodSecrets`
whose share of the review's one :class:`~webhook.core.keyring.Keyring`
(``SecretReads.keyring``) gives each :class:`~webhook.core.pullplan.ImagePull` its
credentials. :func:`pull_secret_findings` judges them: a secret the kubelet cannot parse
fails every pull; a missing or skipped one denies only when an image that needs credentials
is left uncovered; coverage is read from each pull's credentials.

Pure: the cluster is reached only through :class:`~webhook.core.cluster.ClusterView`; it
returns findings and never decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from webhook.core.checks import (
    PodOwner,
    ReadSecret,
    SecretReads,
    SecretSet,
    create_secret_command,
    needs_credentials,
    read_secrets,
    secret_name_for,
    what_the_pod_has,
)
from webhook.core.cluster import ClusterUnavailable, ClusterView
from webhook.core.config import Config
from webhook.core.findings import Finding
from webhook.core.hosts import any_host_matches
from webhook.core.keyring import HeldCredentials
from webhook.core.nodecreds import NodeCredentials
from webhook.core.podspec import PodSpecView
from webhook.core.pullplan import CredentialOrigin, ImagePull, origins, subject
from webhook.core.registry import Answer, Outcome, words_list


@dataclass
class PodSecrets:
    """The pull secrets a pod will use, read once per admission, and what is wrong with them."""

    secrets: SecretSet
    findings: list[Finding]
    hidden: str = ""
    """A note when a template's own list hides its ServiceAccount's secrets."""
    configured_needing: list[ImagePull] = field(default_factory=list)
    """Judged images whose registry the configuration says always needs credentials."""
    pending_account: str = ""
    """A template's ServiceAccount that does not exist yet (``kubectl apply -f dir/`` applies
    files in name order): its pull secrets, which its pods will get, are not known."""
    over_cap: list[Finding] = field(default_factory=list)
    """More pull secrets listed than pullguard reads: never softened (an unread secret
    that does not parse fails every pull of the pod, FACTS.md)."""
    keyring: HeldCredentials = field(default_factory=HeldCredentials)
    """The secrets' credentials, asked through the review's keyring: what each pull is
    given."""
    origin_of: Mapping[str, CredentialOrigin] = field(default_factory=dict)
    """Where each secret (``namespace/name``) came from."""
    hidden_credentials: HeldCredentials = field(default_factory=HeldCredentials)
    """The ServiceAccount's secrets the pod's own list hides: never given to a pull (the
    kubelet does not get them), only named in a fix that covers."""

    def hidden_cover(self, image: str) -> str | None:
        """A hidden ServiceAccount secret that covers ``image`` (its name), if one does."""
        for credential in self.hidden_credentials.lookup(image):
            return credential.source.rpartition("/")[2] or None
        return None

    def with_credentials(
        self, pulls: list[ImagePull], node: NodeCredentials | None = None
    ) -> list[ImagePull]:
        """``pulls``, each with the credentials the kubelet will try for it: the pod's
        secrets first, then ``node``'s (the credential providers')."""
        return [
            p.with_credentials(
                self.keyring,
                self.origin_of,
                node=node.credentials(p.ref.name) if node is not None and p.ref else (),
            )
            for p in pulls
        ]


def read_pod_secrets(
    view: PodSpecView,
    pulls: list[ImagePull],
    *,
    config: Config,
    cluster: ClusterView,
    namespace: str,
    lists_own_secrets: bool,
    existing: bool = False,
    reads: SecretReads | None = None,
) -> PodSecrets:
    """``lists_own_secrets``: the object as written lists imagePullSecrets (``view`` may be
    the preview, with default secrets added); ``existing``: the object is in the cluster
    already (no apply in progress to create a missing secret later). ``reads``: the
    admission's secrets as read and parsed once (shared with the mutation's preview)."""
    reads = reads or SecretReads(cluster)
    names, origin, hidden, pending = view.pull_secret_names, "", "", ""
    hidden_names: list[str] = []
    over_cap = _too_many_secrets(names, "the pod spec", subject(view.containers))
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
                    over_cap = _too_many_secrets(names, origin, subject(view.containers))
                    names = names[:MAX_PULL_SECRETS]
            else:
                hidden_names = list(account.image_pull_secrets)
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
            hidden_names = extra
            listed = ", ".join(f'"{n}"' for n in extra)
            hidden = (
                f"; the pod's own imagePullSecrets hide ServiceAccount \"{account.name}\"'s "
                f"({listed}), which the API server adds only to a pod that lists none"
            )
    needing = [p for p in pulls if p.ref is not None and needs_credentials(p.ref, config)]
    affected = (
        needing or [p for p in pulls if p.ref is not None and p.ref.domain != "docker.io"] or pulls
    )
    copied_from = {
        d.secret: d.source_namespace
        for d in config.default_pull_secrets
        if d.source_namespace is not None
    }
    secrets, findings = read_secrets(
        names,
        origin,
        namespace,
        cluster,
        subject=subject([p.container for p in affected] or view.containers),
        needing_registries=[p.ref.domain for p in affected if p.ref is not None],
        # A default secret pullguard copies into the namespace is judged by its source's
        # contents where the copy has not happened yet: on a dry-run (copies are skipped),
        # for a template (its pods get the copy when they are created), and for a Pod whose
        # review did not come with proof (webhook.edge.secretsync: the copy is made once the
        # API server has the Pod, right after this admission).
        copied_from=copied_from,
        existing=existing,
        reads=reads,
    )
    return PodSecrets(
        secrets,
        findings,
        hidden,
        needing,
        pending,
        over_cap,
        hidden_credentials=_hidden_credentials(hidden_names, namespace, reads),
        keyring=reads.keyring.held(secrets.credentials),
        origin_of=origins(
            secrets.credentials,
            account=bool(origin),
            copies=secrets.copies,
        ),
    )


def _hidden_credentials(names: list[str], namespace: str, reads: SecretReads) -> HeldCredentials:
    """The hidden ServiceAccount secrets (at most :data:`MAX_PULL_SECRETS`), so a fix can
    name one that covers an image; a secret that cannot be read or parsed is left out (it
    is no finding: the pod does not use it)."""
    return reads.keyring.held(reads.credentials(namespace, names[:MAX_PULL_SECRETS]))


@dataclass(frozen=True, slots=True)
class PodCredentials:
    """The pull secrets a pod (or a template's pods) will present, as the mutation asks
    about them: read through the same :class:`~webhook.core.checks.SecretReads` as the
    ``pullSecrets`` check, from the pod as written."""

    names: list[str]
    """The secret names, in order: the pod's own, or its ServiceAccount's for a template
    without any."""
    prepend: list[str]
    """The ServiceAccount's secrets a template must copy before adding one of its own."""
    keyring: HeldCredentials
    """Their credentials, asked through the review's keyring (a secret that cannot parse
    holds none: the validating webhook denies it)."""
    certain: bool
    """False when a secret or the ServiceAccount could not be read, or a named secret does not
    exist yet: the pod may hold credentials not seen here."""
    listed: int = 0
    """How many secrets the pod lists, when more than :data:`MAX_PULL_SECRETS`: none of
    them was read (the pod is left as written)."""


def pod_credentials(
    view: PodSpecView, cluster: ClusterView, namespace: str, reads: SecretReads | None = None
) -> PodCredentials:
    """The credentials the kubelet will hold for pods of ``view`` (as written). A Pod's list
    was already filled from its ServiceAccount by the API server; a template's pods get the
    account's list only when the template names none."""
    names, prepend, certain = list(view.pull_secret_names), [], True
    if view.is_template and not view.lists_pull_secrets:
        try:
            account = cluster.get_service_account(namespace, view.service_account)
        except ClusterUnavailable:
            account, certain = None, False  # the validating webhook reports the account
        if account is not None:
            prepend = list(account.image_pull_secrets)
            names = list(account.image_pull_secrets)
    if len(names) > MAX_PULL_SECRETS:
        # Each secret the cache lacks is a direct read (3,000 made-up names once cost 3,001
        # GETs per mutation): past the cap none is read, and the pod is left as written.
        return PodCredentials(names, prepend, HeldCredentials(), certain=False, listed=len(names))
    reads = reads or SecretReads(cluster)
    held: list[ReadSecret] = []
    for name in names:
        try:
            read = reads.read(namespace, name)
        except ClusterUnavailable:
            certain = False
            continue
        if read.secret is None:
            # The kubelet skips it today, but it is named to be created (``kubectl apply -f
            # dir/`` creates it after the template): for the rewrite it may cover the image,
            # so the decision does not depend on which was applied first.
            certain = False
            continue
        held.append(read)
    return PodCredentials(
        names, prepend, reads.keyring.held(c for read in held for c in read.credentials), certain
    )


def pending_account_finding(account: str, pulls: list[ImagePull]) -> Finding | None:
    """What is known when a template's ServiceAccount does not exist yet: the pull secrets
    its pods will get are not, so credentials are not judged (an advisory finding that says
    so and what to do; ``None`` when nothing is pulled: no credentials to judge, now or
    later). The policy (``validate.decide``) sets the credential findings aside for it."""
    if not pulls:
        return None
    registries = words_list(
        list(dict.fromkeys(p.ref.domain for p in pulls if p.ref is not None)), limit=3
    )
    return Finding(
        check="pullSecrets",
        subject=subject([p.container for p in pulls]),
        problem=f'ServiceAccount "{account}" does not exist yet, so the pull secrets its '
        f"pods will get are not known and credentials for {registries or 'its images'} "
        "are not judged; its pods are judged when they are created",
        short=f'ServiceAccount "{account}" does not exist yet: credentials are judged '
        "when its pods are created",
        fix=f"create ServiceAccount {account} before the workload (kubectl apply -f DIR "
        "applies files in name order)",
        advisory=True,
    )


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


def pull_secret_findings(
    view: PodSpecView,
    pulls: list[ImagePull],
    pod: PodSecrets,
    *,
    answers: Mapping[str, Answer],
    config: Config,
    namespace: str,
    operation: str,
    owner: PodOwner | None = None,
) -> list[Finding]:
    """The ``pullSecrets`` findings over ``pulls`` (the images the kubelet pulls, each with
    its credentials); ``answers``: the registry's, by container pointer."""
    secrets, findings = pod.secrets, pod.findings
    if secrets.unavailable is not None:
        return findings
    # A secret the kubelet cannot parse fails every pull of the pod: certain wherever an
    # image is pulled at all (imagePullPolicy Never never builds the keyring).
    fatal = [f for f in findings if any(f is u for u in secrets.unparseable)]
    rest = [f for f in findings if not any(f is u for u in secrets.unparseable)]
    if fatal and any(p.ref is not None for p in pulls):
        # Certain (its evidence says so); the policy puts its fix first, the rest after.
        return fatal + rest
    fatal = [
        f.as_advisory("; but no image of the pod is pulled (imagePullPolicy Never)") for f in fatal
    ]
    # A running pod (kubectl debug on it): its imagePullSecrets cannot change.
    running_pod = (not view.is_template and operation == "UPDATE") or owner is not None
    node_registries = config.registry.node_credential_registries
    return fatal + _usable_secret_findings(
        pulls, pod, rest, answers, node_registries, namespace, running_pod, owner
    )


def _usable_secret_findings(  # noqa: PLR0917 - one call site, just above
    pulls: list[ImagePull],
    pod: PodSecrets,
    findings: list[Finding],
    answers: Mapping[str, Answer],
    node_registries: Sequence[str],
    namespace: str,
    running_pod: bool,
    owner: PodOwner | None,
) -> list[Finding]:
    """Missing and skipped secrets, and coverage: what depends on the registry's answer.
    ``node_registries``: registries the nodes bring their own credentials for."""
    # An image needs credentials when the configuration says its registry always does, or
    # when the registry refused to serve it with what the pod has (and the nodes cannot
    # bring their own).
    refused = {
        p.container.pointer
        for p in pulls
        if (a := answers.get(p.container.pointer)) is not None
        and a.outcome is Outcome.UNAUTHORIZED
        and p.ref is not None
        and not any_host_matches(node_registries, p.ref.domain)
    }
    needed = {p.container.pointer for p in pod.configured_needing} | refused
    needing = [p for p in pulls if p.container.pointer in needed]
    uncovered = [p for p in needing if p.container.pointer in refused or not p.credentials]
    if findings and not uncovered:
        # Not needed: every image that needs credentials is covered by what the pod can read
        # (or none does), so the kubelet pulls without these and the pod runs.
        served = [
            p
            for p in pulls
            if (a := answers.get(p.container.pointer)) and a.outcome is Outcome.FOUND
        ]
        if needing:
            why = "the pod's other imagePullSecrets cover the images that need credentials"
        elif not pulls:
            why = "the kubelet pulls none of its images (pull policy Never)"
        elif len(served) == len(pulls):
            why = "the registry serves its images with the credentials the pod has"
        else:
            why = "none of its images is on a registry known to need credentials"
        unanswered = not needing and any(
            (a := answers.get(p.container.pointer)) is not None and a.outcome is Outcome.UNREACHABLE
            for p in pulls
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
    for pull in uncovered:
        if pull.container.pointer in refused:
            continue  # the registry check says who refused and with which secret
        findings.extend(
            check_coverage(
                pull,
                pod.secrets,
                namespace,
                note=pod.hidden,
                running_pod=running_pod,
                owner=owner,
            )
        )
    return findings


def check_coverage(
    pull: ImagePull,
    secrets: SecretSet,
    namespace: str,
    *,
    note: str = "",
    running_pod: bool = False,
    owner: PodOwner | None = None,
) -> list[Finding]:
    """An image from a registry needing credentials must be covered by one of the secrets
    (the pull has credentials to try). ``owner``: the running pod's controller, whose
    template the secret goes to."""
    ref, container = pull.ref, pull.container
    if ref is None or pull.credentials:
        return []
    have = what_the_pod_has(secrets, ref)
    name = secret_name_for(ref.domain)
    if running_pod and owner is not None:
        where_to_add = owner.where_to_add(name)
    elif running_pod:
        # A running Pod's imagePullSecrets cannot change (kubectl debug on it, say).
        where_to_add = (
            f"recreate the pod with {{name: {name}}} in spec.imagePullSecrets, or use an "
            "image from a registry its secrets cover"
        )
    else:
        where_to_add = f"add {{name: {name}}} to the manifest's imagePullSecrets and apply it again"
    return [
        Finding.for_container(
            "pullSecrets",
            container,
            problem=f"image {container.shown_image!r} is on {ref.domain}, which needs credentials, "
            f"but {have}{note}",
            short=f"no imagePullSecret covers {ref.domain} (needed by {ref.familiar})",
            fix=create_secret_command(name, namespace, ref.domain) + f", then {where_to_add}",
        )
    ]
