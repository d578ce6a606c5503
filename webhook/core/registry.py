"""What pullguard asks a registry, what an answer means, and the rules any registry call obeys.

The ``registry`` and ``platform`` checks ask, for each image a pod will pull, what the kubelet
will ask: ``HEAD /v2/<name>/manifests/<tag-or-digest>``, with the credentials the kubelet would
use (the pod's pull secrets matched the keyring way, most specific first; none: anonymous).
A :class:`Question` is that request; an :class:`Answer` is what came back, classified the
way a user thinks about it (:class:`Outcome`), with the registry's own words.

This module holds the pure parts: the protocol the engine asks through (:class:`RegistryView`,
implemented with HTTP in ``webhook.edge.registry``), the classification of status codes and
error bodies, ``WWW-Authenticate`` parsing, manifest platforms, pod platform constraints, and
the address policy (:func:`address_refusal`) every connection is held to.

Pure: no sockets, no DNS, no clock. Nothing here ever returns or formats a password.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from webhook.core import deepjson
from webhook.core.hosts import normal_host
from webhook.core.keyring import Credential

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
#: The manifest media types the kubelet's runtime accepts, in its order of preference.
ACCEPT = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})

#: Where Docker Hub's API lives: images say ``docker.io``, the API is on another host.
API_HOSTS = {"docker.io": "registry-1.docker.io", "index.docker.io": "registry-1.docker.io"}

#: Longest text of a registry's own words that reaches a message.
WORDS_MAX = 160


class Outcome(StrEnum):
    """What a registry's answer means for the pod."""

    FOUND = "found"  # the manifest exists and these credentials may read it
    NOT_FOUND = "not_found"  # 404: no such repository, tag or digest
    UNAUTHORIZED = "unauthorized"  # 401/403 with the credentials the pod has (or none)
    RATE_LIMITED = "rate_limited"  # 429
    UNREACHABLE = "unreachable"  # DNS, connection refused, timeout, TLS
    REGISTRY_ERROR = "registry_error"  # 5xx, or an answer no registry should give
    NOT_ASKED = "not_asked"  # refused by policy (private address), over budget, too many
    NOT_A_MANIFEST = "not_a_manifest"  # the digest names a blob (a layer or config)


#: Answers that are worth a denial: the kubelet will certainly get the same.
DEFINITE = frozenset({Outcome.NOT_FOUND, Outcome.UNAUTHORIZED, Outcome.NOT_A_MANIFEST})


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")

    @property
    def node_key(self) -> tuple[str, str]:
        """What a node's labels say: ``kubernetes.io/os`` and ``kubernetes.io/arch``."""
        return (self.os, self.architecture)


@dataclass(frozen=True, slots=True)
class Question:
    """One manifest to ask about, with the credentials to try (most specific first)."""

    registry: str  # host[:port] as the reference has it (docker.io, ghcr.io, 10.0.0.5:5000)
    repository: str  # library/nginx
    reference: str  # a tag or a digest
    credentials: tuple[Credential, ...] = ()
    platforms: bool = False
    """Also find the image's platforms (one GET of the manifest by digest, kept for good)."""

    @property
    def image(self) -> str:
        joiner = "@" if self.by_digest else ":"
        return f"{self.registry}/{self.repository}{joiner}{self.reference}"

    @property
    def by_digest(self) -> bool:
        return ":" in self.reference


@dataclass(frozen=True, slots=True)
class Answer:
    """A classified answer. ``detail`` says the cause in words ("HTTP 404", "DNS name not
    found", "timed out after 2 s"); ``registry_says`` is the registry's own error, cleaned."""

    outcome: Outcome
    detail: str = ""
    registry_says: str = ""
    repository_exists: bool | None = None
    """For NOT_FOUND: whether the repository itself exists, when the registry told."""
    tags: tuple[str, ...] = ()
    """For NOT_FOUND with an existing repository: some of its tags (for "did you mean")."""
    tried: tuple[str, ...] = ()
    """The sources ("namespace/secret") of the credentials tried; empty: anonymous."""
    ratelimit_remaining: str = ""
    digest: str = ""
    platforms: tuple[Platform, ...] | None = None
    """The image's platforms; ``None`` when not asked for or not learned."""
    platforms_note: str = ""
    """Why the platforms are unknown, when they were asked for."""
    single_image: bool = False
    """The platforms come from one image's config, not an index: the runtime pulls such an
    image whatever its platform (there is nothing to choose from)."""
    suggestion: str = ""
    """For an unknown DNS name: the registry host that was probably meant."""
    cached: bool = False


class RegistryView(Protocol):
    """Answers questions about manifests. The implementation guarantees what this promises:

    - a ``NOT_FOUND`` answer was fetched live during this call, never from a cache;
    - every question gets an answer within ``budget`` seconds (``NOT_ASKED`` past it);
    - credentials go only to the registry asked and the token realm it names;
    - ``tenant`` (the namespace asking) gets no more than its share of the capacity, so one
      namespace cannot leave the others unchecked.
    """

    def ask(
        self, questions: Sequence[Question], budget: float, tenant: str = ""
    ) -> Mapping[Question, Answer]: ...


class FixedRegistry:
    """A registry view answering from a table (tests and offline runs): image -> answer."""

    def __init__(self, answers: Mapping[str, Answer] | None = None) -> None:
        self.answers = dict(answers or {})
        self.asked: list[Question] = []

    def ask(
        self, questions: Sequence[Question], budget: float, tenant: str = ""
    ) -> Mapping[Question, Answer]:
        self.asked.extend(questions)
        return {
            q: self.answers.get(q.image, Answer(Outcome.NOT_ASKED, "not in the table"))
            for q in questions
        }


def api_host(registry: str) -> str:
    """The host[:port] that serves a registry's API."""
    return API_HOSTS.get(registry, registry)


#: The tenant pullguard's own registry work runs under (the mirror prober): not a DNS-1123
#: label, so no namespace is named so, and :func:`tenant_key` never returns it (rev20e F9).
MIRROR_PROBE_TENANT = "(mirror probe)"
#: The one tenant of every caller naming a namespace no Kubernetes namespace can be
#: (forged reviews): they share one namespace's shares, and never an internal tenant's.
NOT_A_NAMESPACE = "(not a namespace)"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def is_namespace_name(name: str) -> bool:
    """Can ``name`` be a Kubernetes namespace (a DNS-1123 label: at most 63 characters,
    lower case letters, digits and ``-``, starting and ending with a letter or digit)?"""
    return _DNS_LABEL.fullmatch(name) is not None


def tenant_key(namespace: str) -> str:
    """The tenant a caller naming ``namespace`` is counted as in the registry client's
    per-namespace shares: the namespace itself, ``""`` (no namespace: a cluster-scoped
    object, the CLI), else :data:`NOT_A_NAMESPACE`. Internal tenants are not namespace
    names, so no review can name one (rev20e F9: a review claiming namespace
    ``(mirror probe)`` held the prober's DNS lookups, and a healthy mirror counted as down)."""
    return namespace if not namespace or is_namespace_name(namespace) else NOT_A_NAMESPACE


def registry_host(registry: str) -> str:
    """The key of a registry in per-registry tables (pull quotas, cache shares, reads in
    progress): its API host as DNS and TLS see it (:func:`~webhook.core.hosts.normal_host`),
    so ``LOCALHOST:5000`` and ``localhost:5000`` share one quota (rev20e F6: one namespace
    took four shares by spelling one host four ways)."""
    host = normal_host(registry)
    return normal_host(API_HOSTS.get(host, host))


def classify_status(status: int) -> Outcome:
    """The outcome of a final HTTP status (after any token exchange)."""
    if 200 <= status < 300:
        return Outcome.FOUND
    if status == 404:
        return Outcome.NOT_FOUND
    if status in (401, 403):
        return Outcome.UNAUTHORIZED
    if status == 429:
        return Outcome.RATE_LIMITED
    return Outcome.REGISTRY_ERROR


_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")


def clean_words(text: str, limit: int = WORDS_MAX) -> str:
    """A registry's (untrusted) text as it may appear in a message or log: printable ASCII,
    one line, at most ``limit`` characters."""
    cleaned = _UNPRINTABLE.sub(" ", text).strip()
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def error_words(body: bytes) -> str:
    """``MANIFEST_UNKNOWN: manifest unknown`` from a distribution error body; ``""`` when
    the body is not one."""
    try:
        document = deepjson.loads(body)
    except ValueError:
        return ""
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return ""
    code, message = errors[0].get("code"), errors[0].get("message")
    words = ": ".join(str(part) for part in (code, message) if isinstance(part, str) and part)
    return clean_words(words)


def error_code(body: bytes) -> str:
    """The first error's ``code`` (``NAME_UNKNOWN``), or ``""``."""
    words = error_words(body)
    return words.partition(":")[0] if words else ""


_CHALLENGE_PARAM = re.compile(r'\s*([A-Za-z0-9_\-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))\s*,?')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``("bearer", {"realm": ..., "service": ..., "scope": ...})`` from a
    ``WWW-Authenticate`` value; the scheme is lower-cased, ``("", {})`` when unreadable."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    position = 0
    while position < len(rest):
        match = _CHALLENGE_PARAM.match(rest, position)
        if match is None or match.end() == position:
            break
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        params[match.group(1).lower()] = value
        position = match.end()
    return scheme.lower(), params


#: What an os, architecture or variant may be: a short identifier (``linux``, ``arm64``,
#: ``v8``, ``windows``). Anything else is refused, whole: a registry's megabyte "platform"
#: would otherwise be kept for the process's life, and its escape sequences printed in
#: warnings, denials and Events (issue 20, items 3 and 9).
PLATFORM_FIELD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}\Z")
#: More distinct platforms than any real index lists (the largest list about 10).
MAX_PLATFORMS = 64


class PlatformError(ValueError):
    """A manifest's platforms are not what any real image has: the platforms are unknown."""


def _platform(os_name: object, arch: object, variant: object) -> Platform | None:
    if not isinstance(os_name, str) or not isinstance(arch, str) or not os_name or not arch:
        return None
    variant = variant if isinstance(variant, str) else ""
    for value in (os_name, arch, variant):
        if value and not PLATFORM_FIELD.match(value):
            raise PlatformError(
                "the registry named a platform that is not a short identifier (os, "
                "architecture, variant: letters, digits, '.', '_', '-', at most 32)"
            )
    return Platform(os_name, arch, variant)


def platforms_of_index(document: Mapping[str, Any]) -> tuple[Platform, ...]:
    """The runnable platforms an index lists (attestation entries, ``unknown/unknown``,
    are not images and are left out). :class:`PlatformError` when an entry's platform is
    not made of short identifiers, or there are more than :data:`MAX_PLATFORMS`: one bad
    entry makes them all unknown (leaving it out could deny a pod its platform)."""
    found: dict[Platform, None] = {}
    entries = document.get("manifests")
    for entry in entries if isinstance(entries, list) else []:
        platform = entry.get("platform") if isinstance(entry, Mapping) else None
        if not isinstance(platform, Mapping):
            continue
        parsed = _platform(
            platform.get("os"), platform.get("architecture"), platform.get("variant")
        )
        if parsed is None or "unknown" in (parsed.os, parsed.architecture):
            continue
        found[parsed] = None
        if len(found) > MAX_PLATFORMS:
            raise PlatformError(f"the index lists more than {MAX_PLATFORMS} platforms")
    return tuple(found)


def is_manifest(body: bytes) -> bool:
    """Could ``body`` be a manifest or an index (what a digest must name to be pulled)? A
    JSON object with ``schemaVersion`` and ``layers``, ``manifests`` or ``fsLayers``."""
    try:
        document = deepjson.loads(body)
    except ValueError:
        return False
    return (
        isinstance(document, dict)
        and "schemaVersion" in document
        and any(key in document for key in ("layers", "manifests", "fsLayers"))
    )


def platform_of_config(document: Mapping[str, Any]) -> Platform | None:
    """A single image's platform, from its config blob (:class:`PlatformError` as above)."""
    return _platform(document.get("os"), document.get("architecture"), document.get("variant"))


_DIGEST = re.compile(r"(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})\Z")


def is_digest(text: str) -> bool:
    """A sha256 or sha512 digest, the only kinds pullguard can check."""
    return bool(_DIGEST.match(text))


def digest_matches(digest: str, body: bytes) -> bool:
    """Do ``body``'s bytes have this digest? (A manifest is cached by its digest only when
    they do: a registry serving other bytes under a digest poisons nothing.)"""
    if not is_digest(digest):
        return False
    algorithm, _, value = digest.partition(":")
    return hmac.compare_digest(hashlib.new(algorithm, body).hexdigest(), value)


def digest_of(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215, local use
_SIIT = ipaddress.IPv6Network("::ffff:0:0:0/96")  # IPv4-translated (RFC 2765)
_COMPATIBLE = ipaddress.IPv6Network("::/96")  # IPv4-compatible (deprecated)
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


def _rfc6052(ip: ipaddress.IPv6Address, prefix: int) -> ipaddress.IPv4Address:
    """The IPv4 address an RFC 6052 translator with a ``prefix``-bit prefix reads from
    ``ip`` (bits 64-71 are the reserved "u" octet, skipped)."""
    octets = ip.packed
    start = prefix // 8
    picked = [octets[i] for i in range(start, 16) if i != 8][:4]
    return ipaddress.IPv4Address(bytes(picked))


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address a packet to ``ip`` may reach: IPv4-mapped, SIIT, IPv4-compatible,
    6to4, Teredo, and NAT64 (the well-known ``64:ff9b::/96``; for the local-use
    ``64:ff9b:1::/48`` every prefix length RFC 6052 allows, since the translator's is not
    known here)."""
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip in _SIIT or ip in _NAT64_WELL_KNOWN or (ip in _COMPATIBLE and int(ip) > 1):
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip in _NAT64_LOCAL:
        # 0.0.0.0/8 is no destination a translator reaches: a reading that lands there is
        # the zero padding of another prefix length's form.
        readings = [_rfc6052(ip, prefix) for prefix in (48, 56, 64, 96)]
        routable = [r for r in readings if r not in _THIS_NETWORK]
        return routable or readings[-1:]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return [ip.teredo[1]]
    return []


#: IANA's special-purpose blocks that are not globally reachable (the IPv4 and IPv6
#: Special-Purpose Address Registries), refused whatever the interpreter's ``ipaddress``
#: tables say: CPython changed them in 2024 (gh-113171), and 3.11.7 calls most of
#: 192.0.0.0/24 global, Oracle Cloud's metadata address 192.0.0.192 among them (rev20d F8).
#: Whole blocks: the few globally reachable anycast addresses inside them are no registry.
NOT_GLOBAL = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "240.0.0.0/4",
        "255.255.255.255/32",
        "::/128",
        "::1/128",
        "100::/64",
        "2001::/23",
        "2001:db8::/32",
        "3fff::/20",
        "5f00::/16",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)


def _refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address (where cloud metadata services live)"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "a site-local address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global or any(ip in network for network in NOT_GLOBAL):
        return "an internal or reserved address"
    return None


def address_refusal(address: str) -> str | None:
    """Why a connection to IP ``address`` is refused by default, or ``None`` when it is a
    public address. An IPv6 address with an IPv4 address inside (IPv4-mapped
    ``::ffff:a9fe:a9fe``, SIIT ``::ffff:0:a9fe:a9fe``, IPv4-compatible ``::a9fe:a9fe``,
    NAT64 ``64:ff9b::a9fe:a9fe`` and ``64:ff9b:1::/48``, 6to4, Teredo) is judged by the
    IPv4 rules, so ``64:ff9b::8.8.8.8`` is public and ``64:ff9b::169.254.169.254`` is the
    metadata service a NAT64 gateway would connect to (issue 20, item 2); site-local
    ``fec0::/10`` is internal."""
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
            address.split("%", 1)[0].strip("[]")
        )
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        inner = embedded_ipv4(ip)
        for candidate in inner:
            refusal = _refusal(candidate)
            if refusal is not None:
                return f"{refusal} ({candidate} inside)"
        if inner:
            return None
    return _refusal(ip)


# -- Platforms the pod can run on --------------------------------------------------------

OS_LABELS = ("kubernetes.io/os", "beta.kubernetes.io/os")
ARCH_LABELS = ("kubernetes.io/arch", "beta.kubernetes.io/arch")


def _node_labels(node: tuple[str, str]) -> dict[str, str]:
    os_name, arch = node
    labels = dict.fromkeys(OS_LABELS, os_name)
    labels.update(dict.fromkeys(ARCH_LABELS, arch))
    return labels


def _expression_allows(expression: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """One ``matchExpressions`` entry against a node's os/arch labels. Expressions about any
    other label cannot be judged from platforms alone, so they allow every node."""
    key = expression.get("key")
    if not isinstance(key, str) or key not in labels:
        return True
    operator = expression.get("operator")
    values = expression.get("values") or []
    value = labels[key]
    if operator == "In":
        return value in values
    if operator == "NotIn":
        return value not in values
    # DoesNotExist fails on a labelled node; Exists, Gt and Lt (never about os/arch in
    # practice) allow it.
    return operator != "DoesNotExist"


def required_node_terms(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The ``nodeSelectorTerms`` of a pod spec's required node affinity (the well-formed
    ones; none when it has none)."""
    affinity = spec.get("affinity")
    node_affinity = affinity.get("nodeAffinity") if isinstance(affinity, Mapping) else None
    required = (
        node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution")
        if isinstance(node_affinity, Mapping)
        else None
    )
    terms = required.get("nodeSelectorTerms") if isinstance(required, Mapping) else None
    return [t for t in terms if isinstance(t, Mapping)] if isinstance(terms, list) else []


def runnable_node_platforms(
    spec: Mapping[str, Any],
    nodes: Iterable[tuple[str, str]],
    named_node: tuple[str, str] | None = None,
) -> set[tuple[str, str]]:
    """The cluster's (os, arch) node platforms this pod spec may be scheduled on, judging
    its ``nodeSelector`` and required node affinity on the os/arch labels only.

    ``named_node``: the platform of the node ``spec.nodeName`` names, when it is set and
    known. That node decides alone: the scheduler is bypassed, and the kubelet there
    rejects a pod whose selector does not match it (so no selector can move the pod)."""
    if named_node is not None:
        return {named_node}
    selector = spec.get("nodeSelector")
    selector = selector if isinstance(selector, Mapping) else {}
    terms = required_node_terms(spec)
    allowed = set()
    for node in nodes:
        labels = _node_labels(node)
        if any(key in labels and labels[key] != value for key, value in selector.items()):
            continue
        if terms and not any(
            all(
                _expression_allows(e, labels)
                for e in (term.get("matchExpressions") or [])
                if isinstance(e, Mapping)
            )
            for term in terms
        ):
            continue
        allowed.add(node)
    return allowed


# -- Which build a node's runtime takes ------------------------------------------------------

#: containerd's ``platforms.Normalize``: architecture aliases, and the variants that mean
#: the architecture's baseline (``amd64/v1``, ``arm64/v8``) read as no variant at all.
_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "i386": "386", "aarch64": "arm64"}
_BASELINE_VARIANTS = {"amd64": ("v1",), "arm64": ("8", "v8")}


def normalized(platform: Platform) -> Platform:
    """``platform`` as containerd compares it (``Linux/x86_64/v1`` is ``linux/amd64``)."""
    arch = platform.architecture.lower()
    arch = _ARCH_ALIASES.get(arch, arch)
    variant = platform.variant.lower()
    if variant in _BASELINE_VARIANTS.get(arch, ()):
        variant = ""
    return Platform(platform.os.lower(), arch, variant)


def serves(build: Platform, node: tuple[str, str]) -> bool:
    """Does every runtime take index entry ``build`` on a node of (os, arch)?

    An amd64 node wants ``linux/amd64`` with no variant: an index whose only amd64 entry is
    ``amd64/v3`` fails there with "no match for platform in manifest" (checked on containerd
    1.6: v2 and v3 fail, v1 and x86_64 match). Other architectures are compared by name
    only: their variants depend on the node's CPU, which no label tells.
    """
    build = normalized(build)
    node_os, node_arch = node[0].lower(), _ARCH_ALIASES.get(node[1].lower(), node[1].lower())
    if build.os != node_os or build.architecture != node_arch:
        return False
    return node_arch != "amd64" or build.variant == ""


def serves_on_containerd_only(build: Platform, node: tuple[str, str]) -> bool:
    """containerd's ``platforms.Only`` lets an amd64 node take a ``linux/386`` build when
    the index has no amd64 one; CRI-O's containers/image does not (FACTS)."""
    build = normalized(build)
    return (
        node[1].lower() == "amd64"
        and build.os == node[0].lower()
        and build.architecture == "386"
        and build.variant == ""
    )


def executes_on(build: Platform, node: tuple[str, str]) -> bool:
    """Can a node of (os, arch) execute a single image's binaries (no index, so no choice):
    the same architecture, any variant, or 386 binaries on an amd64 kernel."""
    build = normalized(build)
    node_arch = _ARCH_ALIASES.get(node[1].lower(), node[1].lower())
    return build.os == node[0].lower() and (
        build.architecture == node_arch or (node_arch == "amd64" and build.architecture == "386")
    )


@dataclass(frozen=True, slots=True)
class PlatformFit:
    """How an image's platforms fit the nodes a pod may run on."""

    fits_none: bool  # no node the pod may use can run the image
    missing: tuple[tuple[str, str], ...] = field(default=())  # node platforms it lacks
    containerd_only: tuple[tuple[str, str], ...] = field(default=())
    """Node platforms served only by containerd's 386 fallback (CRI-O fails there)."""


def platform_fit(
    image: Sequence[Platform], runnable: set[tuple[str, str]], *, single_image: bool = False
) -> PlatformFit | None:
    """``None`` when the image runs on every node platform the pod may use (or nothing is
    known), else which node platforms lack a build. ``single_image``: ``image`` is one
    image's own platform, pulled anywhere and then executed or not."""
    if not image or not runnable:
        return None
    if single_image:
        missing = tuple(sorted(n for n in runnable if not any(executes_on(p, n) for p in image)))
        fallback: tuple[tuple[str, str], ...] = ()
    else:
        served = {n for n in runnable if any(serves(p, n) for p in image)}
        fallback = tuple(
            sorted(
                n for n in runnable - served if any(serves_on_containerd_only(p, n) for p in image)
            )
        )
        missing = tuple(sorted(runnable - served - set(fallback)))
    if not missing and not fallback:
        return None
    return PlatformFit(
        fits_none=len(missing) == len(runnable), missing=missing, containerd_only=fallback
    )


def words_list(items: Sequence[str], limit: int = 4) -> str:
    """``a, b and c`` (then "and N more")."""
    shown = list(items[:limit])
    more = len(items) - len(shown)
    if more:
        return ", ".join(shown) + f" and {more} more"
    if len(shown) <= 1:
        return "".join(shown)
    return ", ".join(shown[:-1]) + " and " + shown[-1]
