"""The ``registry`` and ``platform`` checks of a pod, over its pulls.

:func:`ask_registry` asks the registry about each :class:`~webhook.core.pullplan.ImagePull`
the kubelet will make, with the credentials that pull carries (the registry sees what the
kubelet will send); an image on a mirror that says "not found" is asked again as written.
:func:`registry_findings` turns the answers into findings (``imagecheck`` words each one).

Pure: the registry is reached only through :class:`~webhook.core.registry.RegistryView`, the
cluster only through :class:`~webhook.core.cluster.ClusterView`; it never decides.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace

from webhook.core.checks import TYPO_WORDS, PodOwner, WorkloadRef
from webhook.core.cluster import ClusterUnavailable, ClusterView
from webhook.core.config import Config
from webhook.core.findings import Finding
from webhook.core.imagecheck import (
    mirror_down_finding,
    mirror_not_found_finding,
    platform_finding,
    provider_failed_finding,
    question_for,
    registry_finding,
)
from webhook.core.keyring import Credential, CredentialLookup
from webhook.core.mutate import mirror_entry
from webhook.core.nodecreds import NodeCredentials
from webhook.core.placement import cluster_placement, tolerated_platforms
from webhook.core.podspec import PodSpecView
from webhook.core.pullplan import ImagePull, subject
from webhook.core.reference import Reference, parse_or_none
from webhook.core.registry import (
    Answer,
    Outcome,
    PlatformFit,
    Question,
    RegistryView,
    platform_fit,
    runnable_node_platforms,
    words_list,
)
from webhook.core.secretcheck import PodSecrets

#: At most this many distinct manifests are asked about per admission. A pod naming more is
#: not "not checked" (under enforce that would switch the registry check off for any pod
#: that names a 65th image on purpose): it gets a registry finding saying it exceeds what
#: pullguard checks, enforced as the registry check is (a warning on a controller's pod,
#: whose template was judged). Real pods with 40 containers share far fewer images.
MAX_QUESTIONS = 64


#: The nodes' credentials (a credential provider's answer) for an image, asked when needed:
#: the image as written, re-asked after a mirror's "not found" (rev23b F4).
NodeLookup = Callable[[Reference], Sequence[Credential]]


@dataclass(frozen=True, slots=True)
class RegistryAnswers:
    """What the registry said, by container pointer."""

    answers: Mapping[str, Answer] = field(default_factory=dict)
    as_written: Mapping[str, tuple[Reference, Answer]] = field(default_factory=dict)
    """For an image on a mirror that said "not found": the image as written, and the
    registry's own answer for it."""


def ask_registry(
    pulls: list[ImagePull],
    keyring: CredentialLookup,
    registry: RegistryView,
    config: Config,
    *,
    with_platforms: bool,
    namespace: str,
    node_for: NodeLookup | None = None,
) -> RegistryAnswers:
    """Each pull's answer. Images are asked in parallel, each with the credentials its pull
    carries; ``keyring``: the pod's, and ``node_for``: the nodes', for an image asked again
    as written."""
    answers = _ask(pulls, registry, config, with_platforms=with_platforms, namespace=namespace)
    return RegistryAnswers(
        answers,
        _ask_as_written(
            pulls, answers, keyring, registry, config, namespace=namespace, node_for=node_for
        ),
    )


def _ask(
    pulls: list[ImagePull],
    registry: RegistryView,
    config: Config,
    *,
    with_platforms: bool,
    namespace: str,
) -> dict[str, Answer]:
    questions: dict[str, Question] = {}
    for pull in pulls:
        if pull.ref is None:
            continue
        questions[pull.container.pointer] = question_for(
            pull.ref, pull.keyring_credentials, with_platforms
        )
    distinct = list(dict.fromkeys(questions.values()))
    asked = distinct[:MAX_QUESTIONS]
    budget = config.registry.timeout_seconds
    # The namespace is the tenant: it gets its share of the registry client, no more.
    got = _public_tags(registry.ask(asked, budget, tenant=namespace)) if asked else {}
    too_many = Answer(Outcome.NOT_ASKED, f"more than {MAX_QUESTIONS} distinct images in one object")
    return {pointer: got.get(question, too_many) for pointer, question in questions.items()}


def _ask_as_written(
    pulls: list[ImagePull],
    answers: Mapping[str, Answer],
    keyring: CredentialLookup,
    registry: RegistryView,
    config: Config,
    *,
    namespace: str,
    node_for: NodeLookup | None = None,
) -> dict[str, tuple[Reference, Answer]]:
    """For each image rewritten to a mirror that says "not found": the registry's own answer
    for the image as written, asked with the credentials the pod has for it. A mirror's "not
    found" is not its upstream's (imagecheck), and only the upstream's may deny."""
    questions: dict[str, tuple[Reference, Question]] = {}
    for pull in pulls:
        container = pull.container
        answer = answers.get(container.pointer)
        if answer is None or answer.outcome is not Outcome.NOT_FOUND or not container.written:
            continue
        original = parse_or_none(container.written)
        if original is None:
            continue
        # Through the one seam (ImagePull.with_credentials), where node credentials plug in:
        # the kubelet pulling the image as written tries the nodes' credentials for it too.
        node = node_for(original) if node_for is not None else ()
        again = replace(pull, ref=original, credentials=()).with_credentials(keyring, {}, node=node)
        questions[container.pointer] = (
            original,
            question_for(original, again.keyring_credentials, False),
        )
    if not questions:
        return {}
    distinct = list(dict.fromkeys(q for _, q in questions.values()))[:MAX_QUESTIONS]
    got = _public_tags(registry.ask(distinct, config.registry.timeout_seconds, tenant=namespace))
    too_many = Answer(Outcome.NOT_ASKED, f"more than {MAX_QUESTIONS} distinct images in one object")
    return {
        pointer: (original, got.get(question, too_many))
        for pointer, (original, question) in questions.items()
    }


def too_many_images(pulls: list[ImagePull], view: PodSpecView) -> list[Finding]:
    """A registry finding when the pulls name more distinct images than are asked about."""
    distinct = list(dict.fromkeys(str(p.ref) for p in pulls if p.ref is not None))
    if len(distinct) <= MAX_QUESTIONS:
        return []
    return [
        Finding(
            check="registry",
            subject=subject(view.containers),
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


def registry_findings(  # noqa: PLR0917 - one call site, every argument named there
    view: PodSpecView,
    pulls: list[ImagePull],
    asked: RegistryAnswers,
    pod: PodSecrets | None,
    config: Config,
    cluster: ClusterView,
    namespace: str,
    unavailable: dict[str, str],
    *,
    mirrors_down: Collection[str],
    running_pod: bool = False,
    workload: WorkloadRef | None = None,
    owner: PodOwner | None = None,
    providers: NodeCredentials | None = None,
) -> list[Finding]:
    """Findings of the ``registry`` and ``platform`` checks, each with its evidence (the
    registry's answer for the image: the policy sets a refusal aside when a pull-secret
    finding already denies). ``mirrors_down``: mirrors a Pod's rewritten image may be on,
    which stopped answering since (a cached answer from the mirror would hide that).
    ``running_pod``: the pod exists already (``kubectl debug``), and its pull secrets cannot
    change.
    ``providers``: what the credential providers gave; a provider that failed for an image the
    registry then refused is a warning naming the provider and why (not the refusal)."""
    answers, as_written = asked.answers, asked.as_written
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
    # A spec.nodeName bypasses the scheduler, and with it the taints.
    tolerated = runnable if named_node is not None else _tolerated(cluster, view, runnable)
    if nodes is not None and not nodes:
        unavailable["platform"] = "no Node says its kubernetes.io/os and kubernetes.io/arch"
    secrets_unreadable = pod is None or pod.secrets.unavailable is not None
    for pull in pulls:
        container, ref = pull.container, pull.ref
        answer = answers.get(container.pointer)
        mark = len(findings)
        try:
            if ref is None or answer is None:
                continue
            if answer.outcome is Outcome.NOT_ASKED:
                not_asked.append(answer.detail)
                unchecked.append(container.shown_image)
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
            failed = providers.failures(ref.name) if providers is not None else ()
            hidden_404 = (
                answer.outcome is Outcome.NOT_FOUND and answer.repository_exists is not True
            )
            if failed and (
                answer.outcome in (Outcome.UNAUTHORIZED, Outcome.NOT_ASKED) or hidden_404
            ):
                # A refusal without the provider's credentials, or no registry asked at all (a
                # hanging plugin spent the budget): the provider's failure is the cause to name.
                # A registry not asked stays "not checked" too (above): nothing was settled.
                # A 404 without them is no more certain: registries hide a repository behind
                # 404 from a login that may not read it, and the kubelet tries the provider's
                # credentials too. (A repository whose tags this login read: the tag is
                # missing for every login, judged below.)
                why_unasked = answer.detail if answer.outcome is Outcome.NOT_ASKED else ""
                findings.extend(
                    provider_failed_finding(
                        container,
                        ref,
                        f.provider,
                        f.error or "",
                        not_asked=why_unasked,
                        not_found=hidden_404,
                    )
                    for f in failed
                )
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
                hidden_cover=pod.hidden_cover(ref.name) if pod is not None else None,
                running_pod=running_pod,
                workload=workload,
                owner=owner,
            )
            if finding is not None:
                findings.append(finding)
            if answer.platforms:
                fit, untolerated = _fit(answer, runnable, tolerated)
                found = (
                    platform_finding(
                        container,
                        ref,
                        answer.platforms,
                        fit,
                        single_image=answer.single_image,
                        node_name=node_name if named_node is not None else "",
                        untolerated=untolerated,
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
        finally:
            # What the finding rests on: the registry's answer (findings[mark:] are this pull's).
            if answer is not None:
                findings[mark:] = [
                    replace(f, evidence=answer.outcome.value) for f in findings[mark:]
                ]
    if not_asked:
        named = words_list(list(dict.fromkeys(unchecked)), limit=3)
        unavailable["registry"] = "; ".join(dict.fromkeys(not_asked)) + f"; not checked: {named}"
        unavailable.setdefault("platform", unavailable["registry"])
    return findings


def _tolerated(
    cluster: ClusterView, view: PodSpecView, runnable: set[tuple[str, str]]
) -> set[tuple[str, str]]:
    """The platforms of ``runnable`` with a node whose taints the pod tolerates (a platform
    whose nodes' taints cannot be read stays: it may take the pod)."""
    try:
        nodes = cluster.node_taints()
    except ClusterUnavailable:
        return runnable
    allowed = tolerated_platforms(nodes, view.spec)
    return {n for n in runnable if n not in nodes or n in allowed}


def _fit(
    answer: Answer, runnable: set[tuple[str, str]], tolerated: set[tuple[str, str]]
) -> tuple[PlatformFit | None, tuple[tuple[str, str], ...]]:
    """How the image fits the platforms the pod may be scheduled on (its selector and
    affinity, ``runnable``; and its tolerations, ``tolerated``), and the platforms with a
    build that only the pod's tolerations keep it from.

    The taints decide which nodes the words name (a pod never goes to a node whose taint it
    does not tolerate), never a denial: when every node with a build is one the pod does not
    tolerate, the finding says so and is a warning (an admission plugin or webhook may add
    tolerations to a template's pods; the taints may be lifted). A pod that tolerates no
    node at all is judged by its selector alone."""
    image, single = answer.platforms or (), answer.single_image
    fit = platform_fit(image, runnable, single_image=single)
    if fit is None or tolerated == runnable:
        return fit, ()
    if not tolerated:
        # Scheduled nowhere as written: only "no node it may select has a build" is sure.
        return (fit if fit.fits_none else None), ()
    judged = platform_fit(image, tolerated, single_image=single)
    if judged is None or not judged.fits_none or fit.fits_none:
        return judged, ()
    return judged, tuple(sorted(runnable - tolerated - set(fit.missing)))


def served_is_no_typo(
    findings: list[Finding], answers: Mapping[str, Answer], pulls: list[ImagePull]
) -> list[Finding]:
    """Drop the "looks like a typo of another registry" guess for an image whose registry
    has just answered as a registry, for any image of the pod: it served an image (or a
    blob), said a tag is missing from a repository it described (its tag list, or its
    ``NAME_UNKNOWN``), or asked for a login (401/403). The host is the one meant (a real
    registry one or two edits from a well-known one, ``icr.io`` and ``gcr.io`` say, is not
    a typo), and a "move to gcr.io" beside "create a secret for icr.io" contradicts it."""
    served = set()
    domain_of: dict[str, str] = {}
    real: set[str] = set()
    for pull in pulls:
        if pull.ref is None:
            continue
        domain_of[pull.container.image_pointer] = pull.ref.domain
        answer = answers.get(pull.container.pointer)
        if answer is None:
            continue
        if answer.outcome is Outcome.FOUND:
            served.add(pull.container.image_pointer)
        if _answered_as_a_registry(answer):
            real.add(pull.ref.domain)
    return [
        f
        for f in findings
        if not (
            f.check == "reference"
            and f.advisory
            and TYPO_WORDS in f.problem
            and (f.pointer in served or domain_of.get(f.pointer or "") in real)
        )
    ]


def _answered_as_a_registry(answer: Answer) -> bool:
    """Does ``answer`` prove that a registry (not a mistyped host's web server, nor an
    unknown name) is there: a manifest or blob served, a 401/403 login challenge, or a
    not-found that came with what only the registry API gives (the repository's tags, or
    its ``NAME_UNKNOWN``)?"""
    if answer.outcome in (Outcome.FOUND, Outcome.NOT_A_MANIFEST, Outcome.UNAUTHORIZED):
        return True
    return answer.outcome is Outcome.NOT_FOUND and answer.repository_exists is not None


#: Answers that leave an image's existence and access unknown.
_UNSETTLED = frozenset(
    {Outcome.NOT_ASKED, Outcome.UNREACHABLE, Outcome.RATE_LIMITED, Outcome.REGISTRY_ERROR}
)


def not_checked(
    pulls: list[ImagePull], answers: Mapping[str, Answer]
) -> tuple[tuple[str, str], ...]:
    """(image as written, why) for each pull whose answer settles nothing."""
    out: dict[str, str] = {}
    for pull in pulls:
        answer = answers.get(pull.container.pointer)
        if answer is not None and answer.outcome in _UNSETTLED:
            why = answer.outcome.value.replace("_", " ")
            out.setdefault(
                pull.container.shown_image, f"{why}: {answer.detail}" if answer.detail else why
            )
    return tuple(out.items())


def image_platforms(
    pulls: list[ImagePull], answers: Mapping[str, Answer]
) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(container label, the builds its image's index lists) as the registry answered."""
    return tuple(
        (p.container.label, tuple(str(x) for x in answer.platforms))
        for p in pulls
        if (answer := answers.get(p.container.pointer)) is not None and answer.platforms
    )
