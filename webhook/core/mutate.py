"""The mutating decision: rewrite images to pull-through mirrors, inject default pull secrets.

``mutate(request, config, cluster)`` edits a deep copy of the raw object and diffs it into a
JSONPatch, so the patch touches exactly what changed. Every change is idempotent: an image
already on its mirror is never rewritten again, a secret already listed is never added
again, and running the webhook on its own output gives no patch (the API server may call a
mutating webhook twice, ``reinvocationPolicy: IfNeeded``).

Rules that come from how the API server behaves (FACTS.md):

- A Pod's ``imagePullSecrets`` cannot change after creation, and changing an existing
  container's image restarts it: on UPDATE only images that this very request changed are
  rewritten, and secrets are injected only on CREATE.
- The ServiceAccount plugin copies the account's secrets into a Pod only when it has none, and
  never into templates. Adding a secret to a template that has none would switch the
  account's secrets off for its pods, so a template gets the account's list copied first.
- Mirrors need ``library/`` for official Docker Hub images (``mirror/library/nginx``);
  Harbor proxy projects add a path prefix. Tags and digests are kept exactly.
- Anything written into a pod is fully qualified (CRI-O may refuse short names).
- An image with pull policy ``Never`` is never rewritten: it was preloaded on the nodes under
  its own name (``kind load``, an air-gapped cache), and on the mirror's name the kubelet
  would fail it with ErrImageNeverPull.
- ``pullguard.io/original-images`` holds, per container, the image from before the latest
  rewrite: after ``kubectl set image`` (or another webhook's change) it is the new value, so
  anything restoring originals never rolls a version back.

Rules that keep a mirror from ever becoming the cause of an outage (issue 19):

- **Only to a mirror seen answering.** The edge passes ``mirrors_down``: every probed mirror
  that has not answered its ``/v2/`` probe within the probe's freshness window, including
  one that was never probed yet (just after start, or just after the ConfigMap added it).
  An image whose mirror is in it stays as written, with a warning. A mirror with
  ``probe: false`` is an admin's promise that the nodes reach it: always rewritten to.
- **Only what the mirror can serve with what the pod presents there.** A pull-through
  mirror pulls from its upstream with credentials of its own, or none; the kubelet sends
  the pod's credentials for the original registry only to that registry (keys match by
  host). So an image the pod's pull secrets cover on the original registry (a private
  repository, most likely) stays as written, unless the mirror entry says
  ``upstreamCredentials: true``. Pull secrets that cannot be read count as covering it:
  as written is the pull that cannot get worse. So does a named secret that does not exist
  yet: ``kubectl apply -f dir/`` may create it after the Deployment, and a template
  rewritten on the first apply would be put back on the second (an unplanned rollout).
- **A template does not follow the mirror's health.** With ``mutation.podTemplates`` a
  template is rewritten by the configuration and the pod's credentials alone, never by a
  probe: a mirror outage must not flip templates back and forth, or every GitOps re-sync
  would roll out every mirrored workload. The health decision is made per Pod: a Pod
  created from a rewritten template (its ``pullguard.io/original-images`` annotation maps
  through the mirrors to exactly its image) whose mirror is down now is given back the
  image as written, on CREATE, before it ever pulls.

- **Only a default secret that helps.** A ``defaultPullSecrets`` secret the kubelet cannot
  parse makes it pull no image of the pod at all, not even a public one: injected, it
  would fail every pod of its registry, scale-ups included, where pods without it run. So
  before injecting, the secret the pod would use (the copy already in the namespace, else
  the source) must exist, parse and hold credentials for the image's registry; otherwise
  it is not injected, and the warning names that secret (``pullguard/<source>``) and its
  fix. When the cluster cannot be asked it is injected, as the configuration says.

Bounded (issue 20): a pod with more than :data:`MAX_IMAGE_ENTRIES` image entries (the
validating side's cap) is left exactly as written, with one warning that says why: no
mirror rewrite and no pull secret, since a mutation of the first entries only would make a
half-rewritten pod, and judging every entry is the per-entry work the cap bounds. The
validating webhook denies such a pod under ``enforce`` (a warning on a controller's pod).
Warnings are bounded at the response (``review.bounded_warnings``), the patch by the cap.

Pod templates are left as written unless ``mutation.podTemplates`` is on, so GitOps tools see
no drift; :func:`preview_pod_spec` shows the validating webhook what the pods will become.

Pure: copying a secret into a namespace is a side effect the edge performs from
:attr:`Mutation.secret_copies`, and never on dry-run.
"""

from __future__ import annotations

import copy
import json
import shlex
from collections.abc import Collection, Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from typing import Any

import jsonpatch

from webhook.core import deepjson
from webhook.core.checks import SecretReads, create_secret_command, set_entry_command
from webhook.core.cluster import ClusterUnavailable, ClusterView, ReadOnce
from webhook.core.config import Config, DefaultPullSecret, Mirror
from webhook.core.hosts import any_host_matches
from webhook.core.podspec import (
    MAX_IMAGE_ENTRIES,
    Container,
    PodSpecView,
    changed_containers,
    pod_spec,
)
from webhook.core.reference import PATH_MAX, Reference, parse_or_none
from webhook.core.review import AdmissionRequest
from webhook.core.secretcheck import MAX_PULL_SECRETS, PodCredentials, pod_credentials

ORIGINAL_IMAGES_ANNOTATION = "pullguard.io/original-images"


@dataclass(frozen=True, slots=True)
class ImageRewrite:
    container: Container
    original: str
    rewritten: str
    restored: bool = False
    """A Pod given back the image as written (its template's mirror is down): not recorded
    in the annotation, whose entry already names that image."""


@dataclass(frozen=True, slots=True)
class MirrorSkip:
    """An image left as written because its mirror is not answering."""

    container: Container
    mirror: str  # the mirror's host[:port]
    image: str = ""
    """The image as written, which the pod pulls."""


@dataclass(frozen=True, slots=True)
class PrivateSkip:
    """An image left as written because the pod pulls it with its own credentials, which
    its mirror cannot use."""

    container: Container
    mirror: str


@dataclass(frozen=True, slots=True)
class SecretCopy:
    """Copy ``name`` from ``source_namespace`` into ``namespace`` (done by the edge)."""

    name: str
    source_namespace: str
    namespace: str


@dataclass(frozen=True, slots=True)
class WithheldSecret:
    """A default pull secret not injected: the one the pod would get (``where``, as
    ``namespace/name``) is missing, unparseable or for another registry."""

    secret: str
    where: str
    registry: str
    reason: str
    fix: str


@dataclass
class PodPlan:
    """What the mutating webhook will change in one pod spec."""

    rewrites: list[ImageRewrite] = field(default_factory=list)
    injected_secrets: list[str] = field(default_factory=list)
    secret_copies: list[SecretCopy] = field(default_factory=list)
    prepend_secrets: list[str] = field(default_factory=list)
    """The ServiceAccount's secrets, copied into a template before an injected one."""
    skipped: list[MirrorSkip] = field(default_factory=list)
    private: list[PrivateSkip] = field(default_factory=list)
    withheld: list[WithheldSecret] = field(default_factory=list)
    too_many_secrets: int = 0
    """The pod lists more pull secrets than pullguard reads: it is left as written."""


@dataclass(frozen=True, slots=True)
class Mutation:
    """The outcome of the mutating webhook for one request."""

    patch: list[dict[str, Any]] | None
    warnings: tuple[str, ...] = ()
    rewrites: tuple[ImageRewrite, ...] = ()
    injected_secrets: tuple[str, ...] = ()
    secret_copies: tuple[SecretCopy, ...] = ()
    reason: str = "mutated"
    skipped: tuple[MirrorSkip, ...] = ()
    """Images left as written because their mirror is down (a warning each, and a metric)."""
    private: tuple[PrivateSkip, ...] = ()
    """Images left as written because the pod's own credentials cover them."""
    withheld: tuple[WithheldSecret, ...] = ()
    """Default pull secrets not injected, because the pod would be worse off with them."""


def recorded_originals(obj: Mapping[str, Any] | None) -> dict[str, str]:
    """``pullguard.io/original-images`` of a Pod (or template) as a dict; empty when absent
    or not readable."""
    metadata = (obj or {}).get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, Mapping) else None
    recorded = _parse_recorded(annotations)
    return {str(k): v for k, v in recorded.items() if isinstance(v, str)}


def _parse_recorded(annotations: object) -> dict[str, Any]:
    """The original-images annotation of ``annotations`` decoded; empty when absent or not a
    JSON object (a value anyone may have edited)."""
    raw = annotations.get(ORIGINAL_IMAGES_ANNOTATION) if isinstance(annotations, Mapping) else None
    try:
        recorded = deepjson.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        return {}
    return recorded if isinstance(recorded, dict) else {}


def as_written(
    container: Container, original: str | None, mirrors: tuple[Mirror, ...]
) -> Container:
    """``container`` carrying the image the user wrote, when ``original`` is it: the
    configured mirrors rewrite ``original`` to exactly the container's image now. Anything
    else (an image changed since, a forged annotation) is ignored."""
    if not original or original == container.image:
        return container
    before = parse_or_none(original)
    rewritten = mirror_for(before, mirrors) if before is not None else None
    if rewritten is None or str(rewritten) != container.image:
        return container
    return replace(container, written=original)


def mirror_for(ref: Reference, mirrors: tuple[Mirror, ...]) -> Reference | None:
    """The reference on its mirror, or ``None`` when no mirror applies."""
    found = mirror_entry(ref, mirrors)
    return found[1] if found is not None else None


def mirror_entry(ref: Reference, mirrors: tuple[Mirror, ...]) -> tuple[Mirror, Reference] | None:
    """The mirror entry that applies to ``ref`` and the reference on it, or ``None``."""
    for mirror in mirrors:
        if ref.domain != mirror.registry or ref.name in mirror.exclude:
            continue
        if ref.domain == mirror.mirror_host:
            return None
        path = f"{mirror.mirror_prefix}/{ref.path}" if mirror.mirror_prefix else ref.path
        if len(path) > PATH_MAX:
            return None
        rewritten = ref.with_name(mirror.mirror_host, path)
        # Parse the result again: only a reference the runtime accepts is ever written.
        if parse_or_none(str(rewritten)) != rewritten:
            return None
        return mirror, rewritten
    return None


def recorded_for(view: PodSpecView, obj: Mapping[str, Any] | None) -> dict[str, str]:
    """``pullguard.io/original-images`` beside ``view``'s spec: the Pod's own metadata, or
    the template's (``spec.template.metadata``), where :func:`apply_plan` writes it."""
    node: Any = obj
    for token in _tokens(view.pointer)[:-1]:
        node = node.get(token) if isinstance(node, Mapping) else None
    return recorded_originals(node if isinstance(node, Mapping) else None)


def plan_pod(
    view: PodSpecView,
    containers: list[Container],
    config: Config,
    cluster: ClusterView,
    namespace: str,
    *,
    inject_secrets: bool,
    mirrors_down: Collection[str] = frozenset(),
    reads: SecretReads | None = None,
) -> PodPlan:
    """Plan the rewrites of ``containers`` and the secrets ``view`` should gain.

    Each container is planned from the image as written (``Container.written`` when the
    caller found a rewrite of pullguard's): to its mirror when the mirror may serve it
    (see the module's rules), else as written. When that differs from the image the
    request carries, it is rewritten; a rewrite back to the image as written is a restore.
    Images whose mirror host is in ``mirrors_down`` stay as written: an outage of the
    mirror must never become an outage of the cluster.

    The pod's secrets (``view`` as written) are read and parsed once, through ``reads``
    (the admission's: validate's preview shares them with its ``pullSecrets`` check), and
    both questions, may a mirror serve the image and would a default secret help, ask the
    one keyring they make (``secretcheck.pod_credentials``)."""
    plan = PodPlan()
    refs: list[Reference] = []
    held: PodCredentials | None = None
    reads = reads or SecretReads(cluster)
    if config.mirrors or (inject_secrets and config.default_pull_secrets):
        held = pod_credentials(view, cluster, namespace, reads)
        if held.listed:
            # Unread secrets: a mirror rewrite may lose the pod's own credentials, and a
            # default secret cannot be judged against them, so nothing is changed.
            return PodPlan(too_many_secrets=held.listed)
    for container in containers:
        source = container.written or container.image
        ref = parse_or_none(source)
        if ref is None:
            continue  # invalid references are the validating webhook's to report
        if container.pull_policy == "Never":
            refs.append(parse_or_none(container.image) or ref)  # preloaded: never rewritten
            continue
        target = None
        found = mirror_entry(ref, config.mirrors)
        if found is not None:
            mirror, target = found
            if (
                not mirror.upstream_credentials
                and held is not None
                and (not held.certain or held.keyring.lookup(ref.name))
            ):
                plan.private.append(PrivateSkip(container, mirror.mirror_host))
                target = None
            elif mirror.probe and target.domain in mirrors_down:
                plan.skipped.append(MirrorSkip(container, target.domain, source))
                target = None
        refs.append(target or ref)
        if target is not None and str(target) != container.image:
            plan.rewrites.append(ImageRewrite(container, container.image, str(target)))
        elif target is None and container.written:
            # Back to exactly what the user wrote (the annotation holds it as written).
            plan.rewrites.append(
                ImageRewrite(container, container.image, container.written, restored=True)
            )
    if inject_secrets and config.default_pull_secrets and held is not None:
        _plan_secrets(
            plan, refs, held, config=config, cluster=cluster, reads=reads, namespace=namespace
        )
    return plan


def _plan_secrets(
    plan: PodPlan,
    refs: list[Reference],
    held: PodCredentials,
    *,
    config: Config,
    cluster: ClusterView,
    reads: SecretReads,
    namespace: str,
) -> None:
    names = list(held.names)
    for default in config.default_pull_secrets:
        if default.secret in names:
            continue
        wanted = [
            r
            for r in refs
            if any_host_matches(default.registries, r.domain) and not held.keyring.lookup(r.name)
        ]
        if not wanted:
            continue
        withheld = _withheld(default, wanted, reads, namespace)
        if withheld is not None:
            plan.withheld.append(withheld)
            continue
        if not plan.injected_secrets:
            plan.prepend_secrets = list(held.prepend)
        plan.injected_secrets.append(default.secret)
        names.append(default.secret)
        _plan_copy(plan, default, cluster, namespace)


def _withheld(
    default: DefaultPullSecret, wanted: list[Reference], reads: SecretReads, namespace: str
) -> WithheldSecret | None:
    """Why injecting ``default`` would not help the pod, or ``None`` to inject it.

    Judged on the secret the pod would use: the copy already in the namespace (pullguard
    never overwrites it), else the source the edge copies from, read and parsed as the
    ``pullSecrets`` check reads it (``reads``). Unknown (the cluster cannot be asked):
    injected, as before."""
    registry = wanted[0].domain
    try:
        read = reads.read(namespace, default.secret, copied_from=default.source_namespace)
    except ClusterUnavailable:
        return None
    where, secret = read.namespace, read.secret
    create = create_secret_command(default.secret, where, registry)
    delete = f"kubectl delete secret {shlex.quote(default.secret)} -n {shlex.quote(where)}"
    recreate = f"{delete} && {create}"
    if secret is None:
        return WithheldSecret(
            default.secret, f"{where}/{default.secret}", registry, "does not exist", create
        )
    if read.error is not None:
        problem = read.error
        reason = (
            f"{problem}: the kubelet cannot parse it, and would pull no image of the pod"
            if problem.fatal
            else f"{problem}: the kubelet would skip it"
        )
        return WithheldSecret(
            default.secret,
            f"{where}/{default.secret}",
            registry,
            reason,
            recreate,
        )
    credentials = reads.keyring.held(read.credentials)
    if not any(credentials.lookup(r.name) for r in wanted):
        # Recreated, it would lose the registries it does hold (rev22 F10): add the entry.
        return WithheldSecret(
            default.secret,
            f"{where}/{default.secret}",
            registry,
            f"holds no credentials for {registry}",
            set_entry_command(default.secret, where, secret.type, registry)
            if read.credentials
            else recreate,
        )
    return None


def _plan_copy(
    plan: PodPlan, default: DefaultPullSecret, cluster: ClusterView, namespace: str
) -> None:
    if not default.source_namespace or default.source_namespace == namespace:
        return
    try:
        present = cluster.get_secret(namespace, default.secret) is not None
    except ClusterUnavailable:
        present = False
    if not present:
        plan.secret_copies.append(SecretCopy(default.secret, default.source_namespace, namespace))


def apply_plan(
    obj: MutableMapping[str, Any],
    view: PodSpecView,
    plan: PodPlan,
    *,
    annotate: bool,
    images: bool = True,
) -> None:
    """Write ``plan`` into ``obj`` (a copy of the request's object, deep where it writes);
    ``images=False``: all but the image rewrites."""
    spec = _resolve(obj, view.pointer)
    for rewrite in plan.rewrites if images else ():
        rewrite.container.set_image(spec, rewrite.rewritten)
    if plan.injected_secrets:
        secrets = spec.setdefault("imagePullSecrets", [])
        if not secrets:
            secrets.extend({"name": n} for n in plan.prepend_secrets)
        present = {s.get("name") for s in secrets if isinstance(s, Mapping)}
        secrets.extend({"name": n} for n in plan.injected_secrets if n not in present)
    if annotate and any(not r.restored for r in plan.rewrites):
        metadata_pointer = view.pointer.rsplit("/", 1)[0] + "/metadata"
        metadata = _resolve(obj, metadata_pointer, create=True)
        if not isinstance(metadata, MutableMapping):
            return  # metadata the API server would never send (a forged review): not annotated
        annotations = metadata.get("annotations")
        if not isinstance(annotations, dict):
            annotations = metadata["annotations"] = {}
        recorded = _parse_recorded(annotations)
        for rewrite in plan.rewrites:
            if not rewrite.restored:
                recorded[rewrite.container.annotation_key] = rewrite.original
        annotations[ORIGINAL_IMAGES_ANNOTATION] = json.dumps(
            recorded, sort_keys=True, separators=(",", ":")
        )


def _tokens(pointer: str) -> list[str]:
    """A JSON pointer's tokens (pullguard's pointers never need ``~`` escapes)."""
    return [t for t in pointer.split("/") if t]


def _resolve(obj: MutableMapping[str, Any], pointer: str, create: bool = False) -> Any:
    node: Any = obj
    for token in _tokens(pointer):
        if create and token not in node:
            node[token] = {}
        node = node[token]
    return node


def preview_pod_spec(
    view: PodSpecView,
    config: Config,
    cluster: ClusterView,
    namespace: str,
    *,
    mirrors_down: Collection[str] = frozenset(),
    reads: SecretReads | None = None,
) -> PodSpecView:
    """The pod spec as the mutating webhook will leave it in each pod made from ``view``
    (as written past :data:`MAX_IMAGE_ENTRIES`: :func:`mutate` leaves such a pod alone).
    ``reads``: the admission's secrets, shared with the ``pullSecrets`` check."""
    if len(view.containers) > MAX_IMAGE_ENTRIES:
        return view
    plan = plan_pod(
        view,
        view.containers,
        config,
        cluster,
        namespace,
        inject_secrets=True,
        mirrors_down=mirrors_down,
        reads=reads,
    )
    if not plan.rewrites and not plan.injected_secrets:
        return view
    wrapper: dict[str, Any] = {"spec": copy.deepcopy(dict(view.spec))}
    local = PodSpecView(
        kind=view.kind, spec=wrapper["spec"], pointer="/spec", is_template=view.is_template
    )
    rebased = PodPlan(
        rewrites=[
            ImageRewrite(
                replace(r.container, pointer=f"/spec/{r.container.list_name}/{r.container.index}"),
                r.original,
                r.rewritten,
            )
            for r in plan.rewrites
        ],
        injected_secrets=plan.injected_secrets,
        prepend_secrets=plan.prepend_secrets,
    )
    apply_plan(wrapper, local, rebased, annotate=False)
    return PodSpecView(
        kind=view.kind, spec=wrapper["spec"], pointer=view.pointer, is_template=view.is_template
    )


def _copy_along(obj: Mapping[str, Any], pointers: list[str]) -> dict[str, Any]:
    """``obj`` with every node on the way to each pointer copied, and the nodes the pointers
    name copied deeply: what :func:`apply_plan` writes, and nothing else, is a copy."""
    root = dict(obj)
    for pointer in pointers:
        node = root
        tokens = _tokens(pointer)
        for depth, token in enumerate(tokens):
            if token not in node:
                break  # missing here: apply_plan creates what it needs
            child = node[token]
            if depth == len(tokens) - 1:
                node[token] = copy.deepcopy(child)
            elif isinstance(child, Mapping):
                node[token] = node = dict(child)
            else:
                break  # missing here: apply_plan creates what it needs
    return root


def _diff_at(before: Mapping[str, Any], after: Mapping[str, Any], pointer: str) -> list[Any]:
    """The JSON patch from ``before`` to ``after`` inside ``pointer``, with full paths: an
    ``add`` of the first node on the way that ``before`` lacks, else jsonpatch's diff of the
    two nodes."""
    tokens = _tokens(pointer)
    old: Any = before
    new: Any = after
    for depth, token in enumerate(tokens):
        if not isinstance(new, Mapping) or token not in new:
            return []
        if not isinstance(old, Mapping) or token not in old:
            path = "/" + "/".join(tokens[: depth + 1])
            return [{"op": "add", "path": path, "value": new[token]}]
        old, new = old[token], new[token]
    operations = jsonpatch.make_patch(old, new).patch
    for operation in operations:
        for field_name in ("path", "from"):
            if field_name in operation:
                operation[field_name] = pointer + operation[field_name]
    return list(operations)


def _ordered(patch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The patch in a fixed order. jsonpatch emits operations in set-iteration order, which
    follows the process's hash seed, so two replicas would answer the same request with
    different bytes. pullguard only adds and replaces at independent paths (and appends to
    arrays by increasing index), so ordering by path, indices as numbers, keeps it valid."""

    def key(operation: dict[str, Any]) -> list[tuple[int, int | str]]:
        tokens = str(operation["path"]).split("/")[1:]
        return [(0, int(t)) if t.isdigit() else (1, t) for t in tokens]

    return sorted(patch, key=key)


def _too_many_warning(containers: list[Container]) -> str:
    return (
        f"pullguard: the pod names {len(containers)} images (containers and image volumes); "
        f"pullguard mutates at most {MAX_IMAGE_ENTRIES} per object, so it left the pod as "
        "written: no mirror rewrite, no pull secret added"
    )


def _too_many_secrets_warning(listed: int) -> str:
    return (
        f"pullguard: the pod lists {listed} imagePullSecrets; pullguard checks at most "
        f"{MAX_PULL_SECRETS} per pod, so it left the pod as written: no mirror rewrite, "
        "no pull secret added"
    )


def mutate(
    request: AdmissionRequest,
    config: Config,
    cluster: ClusterView,
    *,
    own_namespace: str = "",
    mirrors_down: Collection[str] = frozenset(),
) -> Mutation:
    """Decide the patch for one admission request. ``mirrors_down``: mirror hosts not seen
    answering their ``/v2/`` probe lately; images are not rewritten to them. A mapping says
    why, per host, for the warning ("did not answer its last /v2/ probe (every 2 s)")."""
    if request.operation not in ("CREATE", "UPDATE") or request.object is None:
        return Mutation(patch=None, reason="unsupported")
    namespace = request.namespace
    if namespace and (namespace == own_namespace or namespace in config.exempt_namespaces):
        return Mutation(patch=None, reason="exempt")
    view = pod_spec(request.kind, request.object)
    if view is None:
        return Mutation(patch=None, reason="unsupported")
    if view.is_template and not config.mutation.pod_templates:
        return Mutation(patch=None, reason="template")
    try:
        labels = cluster.namespace_labels(namespace) or {}
    except ClusterUnavailable:
        labels = {}
    if labels.get(config.namespace_mode_label) == "off":
        return Mutation(patch=None, reason="mode-off")

    cluster = ReadOnce(cluster)  # each secret read once per admission (rev23)
    old = pod_spec(request.kind, request.old_object) if request.operation == "UPDATE" else None
    # A Pod's imagePullSecrets are immutable after creation; templates may change any time.
    inject = request.operation == "CREATE" or view.is_template
    containers = changed_containers(view, old)
    if len(containers) > MAX_IMAGE_ENTRIES and (config.mirrors or config.default_pull_secrets):
        return Mutation(
            patch=None, reason="too-many-images", warnings=(_too_many_warning(containers),)
        )
    if not view.is_template:
        # A Pod made from a template pullguard rewrote carries the template's annotation:
        # planned from the image as written, so a mirror that is down now is undone.
        recorded = recorded_for(view, request.object)
        containers = [
            as_written(c, recorded.get(c.annotation_key), config.mirrors) for c in containers
        ]
    plan = plan_pod(
        view,
        containers,
        config,
        cluster,
        namespace,
        inject_secrets=inject,
        # A template is rewritten by the configuration alone (the module's rules).
        mirrors_down=frozenset() if view.is_template else mirrors_down,
    )
    if plan.too_many_secrets:
        return Mutation(
            patch=None,
            reason="too-many-secrets",
            warnings=(_too_many_secrets_warning(plan.too_many_secrets),),
        )
    why = mirrors_down if isinstance(mirrors_down, Mapping) else {}
    skip_warnings = tuple(
        f"pullguard: {skip.container.label}: mirror {skip.mirror} "
        f"{why.get(skip.mirror) or 'is not answering'}, so "
        f"{skip.image or skip.container.image} is pulled as written"
        for skip in plan.skipped
    )
    skip_warnings += tuple(
        f'pullguard: defaultPullSecret "{w.where}" not added for {w.registry}: it {w.reason}, '
        f"so the pod pulls without it. Fix: {w.fix}"
        for w in plan.withheld
    )
    if not plan.rewrites and not plan.injected_secrets:
        return Mutation(
            patch=None,
            reason="unchanged",
            warnings=skip_warnings,
            skipped=tuple(plan.skipped),
            private=tuple(plan.private),
            withheld=tuple(plan.withheld),
        )

    # The ephemeralcontainers subresource keeps only ephemeral-container changes; an
    # annotation written there would be dropped or refused, so it is not attempted.
    annotate = request.sub_resource != "ephemeralcontainers" and any(
        not r.restored for r in plan.rewrites
    )
    annotations = view.pointer.rsplit("/", 1)[0] + "/metadata/annotations"
    touched = [view.pointer + "/imagePullSecrets", *([annotations] if annotate else [])]
    # Only the nodes the plan writes are copied and compared, and an image rewrite is one
    # known replacement: the rest of the object (containers, managedFields, status) cannot
    # change, and copying and diffing it was most of a mutation's time.
    mutated = _copy_along(request.object, touched)
    apply_plan(mutated, view, plan, annotate=annotate, images=False)
    replaced = [
        {"op": "replace", "path": r.container.image_pointer, "value": r.rewritten}
        for r in plan.rewrites
    ]
    patch = _ordered(
        replaced + [op for at in touched for op in _diff_at(request.object, mutated, at)]
    )
    warnings: list[str] = list(skip_warnings)
    if config.mutation.warnings:
        for rewrite in plan.rewrites:
            if rewrite.restored:
                continue  # said by the skip warning above
            warnings.append(
                f"pullguard: {rewrite.container.label} image rewritten to mirror: "
                f"{rewrite.rewritten}"
            )
        for name in plan.injected_secrets:
            warnings.append(f'pullguard: imagePullSecret "{name}" added for its registry')
    return Mutation(
        patch=patch or None,
        warnings=tuple(warnings),
        rewrites=tuple(plan.rewrites),
        injected_secrets=tuple(plan.injected_secrets),
        secret_copies=tuple(plan.secret_copies),
        skipped=tuple(plan.skipped),
        private=tuple(plan.private),
        withheld=tuple(plan.withheld),
    )
