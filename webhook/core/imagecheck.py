"""The ``registry`` and ``platform`` checks: from registry answers to findings.

``registry``: the manifest the kubelet will ask for exists and the pod's own credentials
may read it. Only definite answers (a live "not found", credentials refused) are findings
that can deny; a rate limit, an unreachable or failing registry admit with a warning, since
the nodes may see another network. A refusal from a registry the nodes authenticate to
themselves (``registry.nodeCredentialRegistries``) is a warning too: pullguard cannot see
node credentials.

A mirror's answer is not its upstream's: when the image on a pull-through mirror is "not
found", the mirror may only be failing to reach the registry it mirrors (distribution in
proxy mode answers 404 then). :func:`mirror_not_found_finding` judges such an image by the
answer for the image as written: denied only when the registry itself says it does not
exist, else a warning.

``platform``: the image has a build for the node platforms (os/arch) the pod may be
scheduled on, from the cluster's Node labels and the pod's own node selector and required
node affinity.

Fixes are ones a person can run as printed: an anonymous refusal names the secrets the pod
has and why each missed; a pod that exists (``kubectl debug``) is told to be recreated, never
to edit its ``imagePullSecrets``; a refused default secret is replaced at its source (the copy
follows it); a Windows-only image is kept on Windows nodes by ``kubernetes.io/os``, with a
toleration, not by an arch that Linux nodes share.

Pure: answers come in as :class:`~webhook.core.registry.Answer` values.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import replace

from webhook.core.checks import (
    PodOwner,
    SecretSet,
    WorkloadRef,
    entry_key,
    secret_name_for,
    set_entry_command,
    what_the_pod_has,
)
from webhook.core.cloudlogin import node_access_fix, secret_command
from webhook.core.findings import Finding
from webhook.core.hosts import any_host_matches, edit_distance
from webhook.core.keyring import Credential, covered_registries, keyring_key, lookup
from webhook.core.nodecreds import provider_of
from webhook.core.placement import Placement, Unplaced
from webhook.core.podspec import Container
from webhook.core.reference import Reference
from webhook.core.registry import (
    Answer,
    Outcome,
    Platform,
    PlatformFit,
    Question,
    words_list,
)


def question_for(ref: Reference, credentials: Sequence[Credential], platforms: bool) -> Question:
    """What the kubelet will ask for ``ref``: by digest when it has one, else by tag."""
    return Question(
        registry=ref.domain,
        repository=ref.path,
        reference=ref.digest or ref.tag or "latest",
        credentials=tuple(credentials),
        platforms=platforms,
    )


def _said(answer: Answer) -> str:
    return f" (registry says: {answer.registry_says})" if answer.registry_says else ""


def _tried(answer: Answer) -> str:
    """How the refused pull was made: ``with imagePullSecret "ns/name"`` or ``anonymously``."""
    if not answer.tried:
        return "anonymously"
    secrets = [f'"{t}"' for t in answer.tried if provider_of(t) is None]
    providers = [name for t in answer.tried if (name := provider_of(t)) is not None]
    parts = []
    if secrets:
        parts.append(f"with imagePullSecret {words_list(secrets)}")
    if providers:
        parts.append(f"with the credentials of credential provider {words_list(providers)}")
    return ", then ".join(parts)


#: How a refusal's problem ends where the kubelet has no credentials pullguard lacks.
_SAME_ANSWER = "; the kubelet will get the same answer"

#: Why an anonymous refusal is worth a denial, said after :func:`_tried` in the full text.
_ANONYMOUS_NOTE = " (the pod has no imagePullSecret for it; the image is private or does not exist)"


def _anonymous_note(secrets: SecretSet | None, ref: Reference, hidden: str) -> str:
    """Why the pull was anonymous: no secret at all, or the secrets the pod has and why
    each misses the image (a key without the port, a path prefix that misses); ``hidden``:
    a ServiceAccount's secrets the pod's own list hides."""
    if secrets is None or not secrets.names:
        return _ANONYMOUS_NOTE
    return f" ({what_the_pod_has(secrets, ref)}{hidden}; the image is private or does not exist)"


def closest_tag(wanted: str, tags: Sequence[str]) -> str | None:
    """A tag one or two edits from ``wanted`` (``1.25`` for ``1.52``), if there is one."""
    best: tuple[int, str] | None = None
    for tag in tags:
        distance = edit_distance(wanted, tag, 2)
        if distance <= 2 and (best is None or distance < best[0]):
            best = (distance, tag)
    return best[1] if best else None


def _replacement(
    name: str, namespace: str, tried: str, ref: Reference, secrets: SecretSet | None
) -> tuple[str, str]:
    """How to replace the refused login of secret ``name`` in ``namespace`` (the pod's
    ``tried``, ``namespace/name``, is its copy or itself): the entry replaced, in words
    (empty when the secret is recreated whole), and the command. A secret that holds
    logins for other registries too keeps them: its one entry is set (jq), since
    ``kubectl create secret docker-registry`` makes a secret of one registry; one that
    holds only this registry's is recreated."""
    held = [c for c in (secrets.credentials if secrets else []) if c.source == tried]
    matched = lookup(held, ref.name)
    others = covered_registries(c for c in held if c not in matched)
    if not matched or not others:
        return "", (
            f"kubectl delete secret {shlex.quote(name)} -n {shlex.quote(namespace)} && "
            f"{secret_command(name, namespace, ref.domain)}"
        )
    key = entry_key(matched[0].key)
    secret_type = secrets.types.get(tried, "") if secrets else ""
    return (
        f"{keyring_key(key)} entry only (the secret also holds {words_list(others)}, which "
        "recreating it would drop)",
        set_entry_command(name, namespace, secret_type, key),
    )


def registry_finding(
    container: Container,
    ref: Reference,
    answer: Answer,
    *,
    namespace: str,
    node_credential_registries: Sequence[str],
    secrets_unreadable: bool = False,
    secrets: SecretSet | None = None,
    running_pod: bool = False,
    hidden: str = "",
    hidden_cover: str | None = None,
    workload: WorkloadRef | None = None,
    owner: PodOwner | None = None,
) -> Finding | None:
    """The finding for one image's answer, or ``None`` (found, or not asked).

    ``secrets``: what the pod has, named when none of it matched the image. ``running_pod``:
    the pod exists (``kubectl debug``), and its ``imagePullSecrets`` cannot change.
    A refused secret that is pullguard's copy of a default pull secret
    (``secrets.copies``) is fixed at its source (the sync overwrites the copy)."""
    outcome = answer.outcome
    shown = container.shown_image
    where = ref.domain
    if outcome in (Outcome.FOUND, Outcome.NOT_ASKED):
        return None
    if outcome is Outcome.NOT_FOUND:
        return _not_found(container, ref, answer, workload)
    if outcome is Outcome.NOT_A_MANIFEST:
        return Finding.for_container(
            "registry",
            container,
            cause="not_found",
            problem=f"image {shown!r} names digest {ref.digest}, which on {where} is a blob "
            "(a layer or an image config), not a manifest: the runtime fails the pull on its "
            "media type. An image ID (the config's digest) is not a pull digest",
            short=f"{ref.familiar}: the digest is a blob (an image ID?), not a manifest",
            fix="use the digest of the image's manifest or index (the registry's "
            "Docker-Content-Digest, as `docker buildx imagetools inspect` prints it)",
        )
    if outcome is Outcome.UNAUTHORIZED:
        if any(provider_of(t) is not None for t in answer.tried):
            return _provider_refused(container, ref, answer)
        if answer.tried:
            stale = answer.tried[0].rpartition("/")[2]
            # A copy only by pullguard's marks on it (or judged by its source, no copy
            # made yet); a tenant's own secret of the same name is theirs to fix.
            source = secrets.copies.get(answer.tried[0]) if secrets is not None else None
            if source and source != namespace:
                entry, command = _replacement(stale, source, answer.tried[0], ref, secrets)
                fix = (
                    f'imagePullSecret "{stale}" is pullguard\'s copy of {source}/{stale} '
                    "(defaultPullSecrets), which pullguard keeps in step: replace the "
                    + (f"source's {entry}" if entry else "source")
                    + f": {command}"
                )
            else:
                entry, command = _replacement(stale, namespace, answer.tried[0], ref, secrets)
                fix = (
                    f"check that the credentials in imagePullSecret {answer.tried[0]} may pull "
                    f"{ref.familiar_name}; to replace {'its ' + entry if entry else 'them'}: "
                    f"{command}"
                )
        else:
            # A secret of the ServiceAccount's that the pod's own list hides already covers
            # the image: that one is added, not a second copy of its credentials made.
            name = hidden_cover or secret_name_for(ref.domain)
            if running_pod and owner is not None:
                then = f"then {owner.where_to_add(name)}"
            elif running_pod:
                # A Pod's imagePullSecrets cannot change once it exists (kubectl debug).
                then = f"then recreate the pod with {{name: {name}}} in spec.imagePullSecrets"
            else:
                then = f"then add {{name: {name}}} to the imagePullSecrets in the manifest"
            fix = f"{secret_command(name, namespace, where)}, {then}"
            if hidden_cover:
                fix = (
                    f"imagePullSecret \"{name}\" (the ServiceAccount's, which the pod's own list "
                    f"hides) already covers {where}: no new secret, {then}"
                )
            if any_host_matches(node_credential_registries, ref.domain):
                fix = node_access_fix(where, fix)
        finding = Finding.for_container(
            "registry",
            container,
            cause="unauthorized",
            problem=f"registry {where} refused to serve {shown!r} {_tried(answer)}"
            f"{'' if answer.tried else _anonymous_note(secrets, ref, hidden)}{_said(answer)}; "
            "the kubelet will get the same answer",
            short=f"{where} refused {ref.familiar} {_tried(answer)}",
            fix=fix,
        )
        if any_host_matches(node_credential_registries, ref.domain):
            # Not "the same answer": the kubelet tries the nodes' own credentials too.
            return replace(finding, problem=finding.problem.removesuffix(_SAME_ANSWER)).as_advisory(
                "; the kubelet gets the same answer only if the nodes do not authenticate to "
                "this registry themselves (a kubelet credential provider), which pullguard "
                "cannot see",
                " (the nodes' own credentials may work)",
            )
        if secrets_unreadable:
            return finding.as_advisory(
                "; pullguard could not read the pod's pull secrets, so this is not certain",
                " (pull secrets unreadable: not certain)",
            )
        return finding
    if outcome is Outcome.RATE_LIMITED:
        remaining = (
            f", ratelimit-remaining {answer.ratelimit_remaining}"
            if answer.ratelimit_remaining
            else ""
        )
        return Finding.for_container(
            "registry",
            container,
            cause="rate_limited",
            problem=f"registry {where} is rate limiting pulls (HTTP 429{remaining})"
            f"{_said(answer)}: nodes pulling now may get ImagePullBackOff until the limit resets",
            short=f"{where} is rate limiting pulls (429{remaining}); {ref.familiar} may not pull",
            fix="pull through a mirror (mirrors in the pullguard config), or authenticate the "
            "pulls with an imagePullSecret",
            advisory=True,
        )
    if outcome is Outcome.UNREACHABLE:
        meant = f"; did you mean {answer.suggestion}?" if answer.suggestion else ""
        return Finding.for_container(
            "registry",
            container,
            cause=_unreachable_cause(answer.detail),
            problem=f"pullguard could not reach registry {where}: {answer.detail}{meant} "
            "(the nodes may see another network: a warning, not a denial)",
            short=f"could not reach {where} to check {ref.familiar}: {answer.detail}{meant}",
            fix=f"use image {str(ref.with_name(answer.suggestion, ref.path))!r} if that was meant"
            if answer.suggestion
            else None,
            advisory=True,
        )
    return Finding.for_container(
        "registry",
        container,
        cause="registry_error",
        problem=f"registry {where} failed to answer for {shown!r}: {answer.detail}"
        f"{_said(answer)}; pulls may fail until it recovers",
        short=f"{where} failed to answer for {ref.familiar}: {answer.detail}{_said(answer)}",
        advisory=True,
    )


def _provider_refused(container: Container, ref: Reference, answer: Answer) -> Finding:
    """A refusal of what a credential provider gave pullguard: a warning, never a denial.
    The plugin answers for the identity it runs as (pullguard's ServiceAccount's cloud
    role), which is not the node's: the nodes may well be served."""
    where = ref.domain
    return Finding.for_container(
        "registry",
        container,
        cause="unauthorized",
        problem=f"registry {where} refused to serve {container.shown_image!r} {_tried(answer)}"
        f"{_said(answer)}; a credential provider answers for pullguard's own identity (its "
        "ServiceAccount's cloud role), not the node's, so the nodes may still be served",
        short=f"{where} refused {ref.familiar} with pullguard's node credentials "
        "(the nodes' own may work)",
        fix="give pullguard's identity read access to the repository, so it sees what "
        "the nodes see",
        advisory=True,
    )


def provider_failed_finding(
    container: Container,
    ref: Reference,
    provider: str,
    why: str,
    *,
    not_asked: str = "",
    not_found: bool = False,
) -> Finding:
    """A credential provider that gave no credentials for an image: a warning naming it and
    why (the nodes run their own; pullguard cannot tell what they get). ``not_asked``: why
    the registry was then not asked at all (a plugin that hung spent the review's budget);
    ``not_found``: without the provider's credentials the registry said 404 (which it also
    says to a login that may not read a private repository); else the registry refused the
    pull without them."""
    if not_asked:
        registry = f"the registry was not asked ({not_asked})"
    elif not_found:
        registry = (
            f"without them {ref.domain} said the image is not there (HTTP 404, which a "
            "registry also says to a login that may not read the repository)"
        )
    else:
        registry = f"without them {ref.domain} refused the pull"
    short = f"credential provider {provider} failed for {ref.familiar}: {why}"
    fix = (
        f"see pullguard's log for the provider's stderr, and check that {provider} runs "
        "in pullguard's pod as on the nodes"
    )
    if why.startswith(NOT_RUN):
        # Not started (capacity, preempted, no budget left, no such namespace): there is
        # no plugin failure and no stderr to read (rev24h F4).
        short = f"credential provider {provider} could not run for {ref.familiar}: {why}"
        fix = _not_run_fix(provider, why)
    return Finding.for_container(
        "registry",
        container,
        cause="unknown" if not_asked or not_found else "unauthorized",
        problem=f"credential provider {provider} gave pullguard no credentials for "
        f"{container.shown_image!r}: {why}; {registry}, and the nodes run the provider "
        "themselves, so pullguard cannot tell whether they can pull it",
        short=short,
        fix=fix,
        advisory=True,
    )


#: How a credential provider's answer starts when pullguard did not start the plugin at all
#: (``webhook.edge.credproviders``): capacity, preemption, the budget, the namespace.
NOT_RUN = "not run: "


def _not_run_fix(provider: str, why: str) -> str:
    """The fix for a provider pullguard did not start: nothing in the plugin is wrong."""
    reason = why[len(NOT_RUN) :]
    if reason.startswith("namespace ") and reason.endswith(" does not exist"):
        return (
            "none: the API server sends reviews only for namespaces that exist, so this "
            "review did not come from it"
        )
    if reason.startswith("the review's time budget was spent"):
        return (
            f"nothing to fix in {provider}: the review's registry budget "
            "(registry.timeoutSeconds) was spent before it could start; send the request "
            "again to check the image, or raise registry.timeoutSeconds"
        )
    return (
        f"nothing to fix in {provider}: pullguard's plugin runs were in use, so the image "
        "was not checked; send the request again to check it, and if this is frequent run "
        "more pullguard replicas or workers"
    )


def _not_found(
    container: Container, ref: Reference, answer: Answer, workload: WorkloadRef | None
) -> Finding:
    shown = container.shown_image
    repository = f"{ref.domain}/{ref.path}"
    said = _said(answer)
    if answer.repository_exists is False:
        return Finding.for_container(
            "registry",
            container,
            cause="not_found",
            problem=f"image {shown!r} does not exist: {ref.domain} has no repository "
            f"{ref.path!r}{said}",
            short=f"{ref.familiar}: no repository {ref.path!r} on {ref.domain}",
            fix="correct the repository name, or push the image first",
        )
    wanted = ref.digest or ref.tag or "latest"
    what = f"manifest {wanted}" if ref.digest else f"tag {wanted!r}"
    near = closest_tag(wanted, answer.tags) if not ref.digest else None
    some = (
        f" (tags there include {words_list([repr(t) for t in answer.tags[:5]])})"
        if answer.tags
        else ""
    )
    if answer.repository_exists:
        problem = f"image {shown!r} does not exist: repository {repository} has no {what}{some}"
    else:
        problem = f"image {shown!r} does not exist: {repository} has no {what}{said}"
    fix = (
        f"use tag {near!r} if that was meant, or push {wanted!r} first"
        if near
        else f"use a {('digest' if ref.digest else 'tag')} that exists, or push it first"
    )
    # An existing workload (an UPDATE) gets the command that sets the near tag.
    retagged = str(Reference(domain=ref.domain, path=ref.path, tag=near))
    command = (
        workload.set_image_command(container.name, retagged)
        if near and workload is not None and not container.is_volume
        else None
    )
    if command:
        fix = f"push {wanted!r} first, or use tag {near!r} if that was meant: {command}"
    return Finding.for_container(
        "registry",
        container,
        cause="not_found",
        problem=problem,
        short=f"{ref.familiar} does not exist: no {what} in {repository}",
        fix=fix,
    )


def _unreachable_cause(detail: str) -> str:
    if detail.startswith("DNS"):
        return "dns"
    if detail.startswith("TLS"):
        return "tls"
    if detail == "connection refused":
        return "connection_refused"
    if detail == "timed out":
        return "timeout"
    return "unknown"


def platform_finding(
    container: Container,
    ref: Reference,
    image: Sequence[Platform],
    fit: PlatformFit,
    *,
    single_image: bool = False,
    node_name: str = "",
    untolerated: Sequence[tuple[str, str]] = (),
    placement: Placement | Unplaced | None = None,
) -> Finding | None:
    """The image lacks a build for some (or all) of the node platforms the pod may use.

    How the runtime picks a build decides the words (FACTS, checked on containerd 1.6):

    - an index without an entry for the node fails the pull: "no match for platform in
      manifest" (ImagePullBackOff); an amd64 node takes no variant but v1, so an index
      whose only amd64 entry is ``amd64/v3`` fails there;
    - an index with a ``linux/386`` build and no amd64 one runs on containerd's amd64 nodes
      and fails on CRI-O's: a runtime difference, so a warning that says so;
    - a single-platform image (no index) is pulled anywhere; its container then dies with
      "exec format error" (CrashLoopBackOff): a warning, since a node may emulate the
      architecture. An image volume executes nothing, so it is no finding at all.

    ``node_name``: the pod's ``spec.nodeName``, which alone decides its node; the fix then
    never suggests a nodeSelector (the kubelet rejects a pod its node does not match).
    ``untolerated``: node platforms with a build the pod may select but whose nodes' taints
    it does not tolerate, when no node it tolerates has one: said, and only a warning (the
    fix adds the tolerations; a template's pods may get them from an admission plugin).
    ``placement``: the selector and tolerations that put the pod on nodes with a build
    (:func:`webhook.core.placement.placement_for`); the fix prints them, filled in, or,
    :class:`~webhook.core.placement.Unplaced`, says why no fields would do; ``None``: the
    nodes could not be read.
    """
    placed = placement if isinstance(placement, Placement) else None
    has = words_list([str(p) for p in image])
    lacking = words_list([f"{os_name}/{arch}" for os_name, arch in fit.missing])
    shown = container.shown_image
    where = f"node {node_name}" if node_name else f"{lacking} nodes"
    if single_image:
        if container.is_volume or not fit.missing:
            return None
        return Finding.for_container(
            "platform",
            container,
            cause="platform",
            problem=f"image {shown!r} is a single-platform {has} image (no index): the "
            f"runtime pulls it on {where} too, and the container then fails with "
            '"exec format error" (CrashLoopBackOff, not ImagePullBackOff), unless the node '
            "emulates that architecture",
            short=f"{ref.familiar} is {has} only: on {where} it fails with exec format error",
            fix="use a multi-platform build, or one built for the node's platform",
            advisory=True,
            placement=placed,
        )
    if not fit.missing:
        fallback = words_list([f"{os_name}/{arch}" for os_name, arch in fit.containerd_only])
        return Finding.for_container(
            "platform",
            container,
            cause="platform",
            problem=f"image {shown!r} has {has} only: containerd runs its linux/386 build on "
            f"{fallback} nodes, but CRI-O (containers/image) takes no 386 build for amd64 "
            'and fails there with "no image found in manifest list"',
            short=f"{ref.familiar} has {has} only: runs on containerd {fallback} nodes, "
            "fails on CRI-O ones",
            fix="add a linux/amd64 build to the image",
            advisory=True,
        )
    variants = sorted(
        {str(p) for p in image if p.variant and any(p.architecture == a for _, a in fit.missing)}
    )
    why = (
        f"; the runtime's {lacking} takes no variant but v1, and the image has "
        f"{words_list(variants)} only"
        if variants
        else ""
    )
    if fit.fits_none and untolerated:
        built = words_list([f"{os_name}/{arch}" for os_name, arch in untolerated])
        return Finding.for_container(
            "platform",
            container,
            cause="platform",
            problem=f"image {shown!r} has {has} only; this pod can be scheduled on {where} "
            f'only, where it fails with "no matching manifest"{why}; the {built} '
            "nodes, which have a build, have taints it does not tolerate",
            short=f"{ref.familiar} has {has} only; the pod does not tolerate the taints of "
            f"the {built} nodes",
            fix=_place("use a multi-platform build", placement, first=True),
            advisory=True,
            placement=placed,
        )
    if fit.fits_none:
        # The build to make first, in plain words (rev22d F11): the image lacks a build for
        # the nodes' platform, not the nodes a build.
        plural = "s" if len(fit.missing) > 1 else ""
        if node_name:
            fix = (
                f"push a build of the image for {lacking} (the platform of node {node_name}), "
                "or use an image that has one (a multi-platform build), or set spec.nodeName "
                "to a node the image supports"
            )
        else:
            fix = _place(
                f"push a build of the image for {lacking} (the platform{plural} of the nodes "
                "it can run on), or use an image that has one (a multi-platform build)",
                placement,
            )
        return Finding.for_container(
            "platform",
            container,
            cause="platform",
            problem=f"image {shown!r} has {has} only; this pod can only run on "
            f'{where}, where it fails with "no matching manifest"{why}',
            short=f"{ref.familiar} has {has} only; the pod can only run on {where}",
            fix=fix,
            placement=placed,
        )
    return Finding.for_container(
        "platform",
        container,
        cause="platform",
        problem=f"image {shown!r} has {has} only; on the cluster's {lacking} "
        f'nodes it fails with "no matching manifest"{why}',
        short=f"{ref.familiar} has {has} only; it fails on {lacking} nodes",
        fix=_place("use a multi-platform build", placement, first=True),
        advisory=True,
        placement=placed,
    )


def _place(build: str, placement: Placement | Unplaced | None, *, first: bool = False) -> str:
    """The fix: ``build`` (a multi-platform build), and the pod-spec fields that keep the pod
    on nodes with one (``first``: those first), or why no fields would do."""
    if isinstance(placement, Placement):
        if first:
            return f"{placement.instruction()}, or {build}"
        return f"{build}, or {placement.instruction()}"
    if isinstance(placement, Unplaced):
        return f"{build}; {placement.why}"
    return (
        f"{build}, or keep the pod on nodes it has a build for (their platforms and taints: "
        "kubectl get nodes -L kubernetes.io/os,kubernetes.io/arch -o custom-columns="
        "NAME:.metadata.name,TAINTS:.spec.taints)"
    )


def mirror_not_found_finding(
    container: Container,
    mirrored: Reference,
    original: Reference,
    answer: Answer,
    *,
    namespace: str,
    node_credential_registries: Sequence[str],
    secrets_unreadable: bool = False,
    mirror_has_credentials: bool = False,
    template: bool = False,
) -> Finding | None:
    """The finding for an image the mirror ``mirrored.domain`` says does not exist, from
    ``answer``, the registry's own answer for the image as written (``original``).

    Not found there too, or refused there with what the pod has (a mirror without
    credentials of its own is refused the same way): the usual finding about the image as
    written, which may deny. Found there: the mirror cannot serve what exists (its upstream
    is down or refuses it), a warning. Any other answer: neither says for certain, a
    warning."""
    mirror = mirrored.domain
    refused = answer.outcome is Outcome.UNAUTHORIZED and not mirror_has_credentials
    if answer.outcome is Outcome.NOT_FOUND or refused:
        return registry_finding(
            container,
            original,
            answer,
            namespace=namespace,
            node_credential_registries=node_credential_registries,
            secrets_unreadable=secrets_unreadable,
        )
    shown = container.shown_image
    if answer.outcome is Outcome.FOUND:
        # The pod as stored pulls from the mirror, which said not found (asked fresh): it
        # certainly fails, so it is denied like any image that does not exist. The edge
        # marks the mirror as not serving (cause "mirror_lacks"), so the retry a controller
        # makes by itself, or a person's, is left as written and runs. A template only
        # warns: its pods are judged, and left as written, one by one.
        return Finding.for_container(
            "registry",
            container,
            cause="mirror_lacks",
            mirror=mirror,
            problem=f"mirror {mirror} says {shown!r} does not exist, but {original.domain} "
            f"has it: the mirror is not reaching {original.domain} (or is refused there), so "
            f"the pod as rewritten would fail to pull; pods made from now on are pulled as "
            f"written from {original.domain} for a while",
            short=f"mirror {mirror} lacks {original.familiar}, which {original.domain} has: "
            "the next try is pulled as written",
            fix="create the pod again (a controller retries by itself): it is pulled as "
            f"written; and check the mirror's connection to {original.domain}, or add "
            f"{original.name} to the mirror's exclude list",
            advisory=template,
        )
    why = answer.detail or answer.outcome.value
    return Finding.for_container(
        "registry",
        container,
        cause="mirror_not_found",
        problem=f"mirror {mirror} says {shown!r} does not exist, and {original.domain} could "
        f"not confirm it ({why}): a mirror's 'not found' may only mean it cannot reach "
        f"{original.domain}: a warning, not a denial",
        short=f"mirror {mirror} lacks {original.familiar}; {original.domain} could not "
        f"confirm ({why})",
        advisory=True,
    )


def mirror_down_finding(container: Container, ref: Reference) -> Finding:
    """A Pod rewritten to a mirror that has stopped answering its probe since."""
    return Finding.for_container(
        "registry",
        container,
        cause="mirror_down",
        problem=f"the pod was rewritten to mirror {ref.domain}, which has stopped answering "
        f"its /v2/ probe: pulling {ref} may fail",
        short=f"mirror {ref.domain} stopped answering; {container.shown_image} may not pull",
        fix="delete the pod if it does not start: made again while the mirror is down, it "
        "pulls as written (pullguard rewrites only to a mirror that answers)",
        advisory=True,
    )
