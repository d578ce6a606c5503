"""Registry hosts: matching them against patterns, and noticing when one is a typo.

Patterns are ``host[:port]`` with ``*`` standing for exactly one DNS label, as the kubelet's
credential keyring and the configuration's ``privateRegistries`` use them
(``*.dkr.ecr.us-east-1.amazonaws.com``). Matching is case-insensitive, as DNS is. An IPv6
host is bracketed, as image references write it (``[2001:db8::1]:5000``), and matches by
address: ``[2001:0db8::1]`` and ``[2001:db8::1]`` are one registry.

Pure: no DNS, no sockets.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

#: Registries so common that a host one or two edits away from one is almost surely a typo.
WELL_KNOWN_REGISTRIES = (
    "docker.io",
    "ghcr.io",
    "quay.io",
    "gcr.io",
    "registry.k8s.io",
    "mcr.microsoft.com",
    "public.ecr.aws",
)

#: Real registries (and the domains under which every host is one) that are not typo targets
#: but must never be "corrected" into one: ``icr.io`` (IBM Cloud) is one edit from ``gcr.io``.
REAL_REGISTRY_DOMAINS = (
    "icr.io",
    "nvcr.io",
    "lscr.io",
    "cgr.dev",
    "ocir.io",
    "gcr.io",
    "pkg.dev",
    "azurecr.io",
    "amazonaws.com",
    "registry.gitlab.com",
)


def split_host_port(hostport: str) -> tuple[str, str]:
    """``("example.com", "5000")`` from ``example.com:5000``; brackets of IPv6 are kept."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end != -1:
            rest = hostport[end + 1 :]
            return hostport[: end + 1], rest[1:] if rest.startswith(":") else ""
    host, colon, port = hostport.rpartition(":")
    if colon and port.isdigit():
        return host, port
    return hostport, ""


def ipv6_host(host: str) -> str | None:
    """``[2001:db8::1]`` (bracketed, compressed, lower case) when ``host`` is an IPv6
    address, bracketed or not; else ``None``. No zone (``%eth0``): image references have
    none."""
    inner = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if ":" not in inner or "%" in inner:
        return None
    try:
        return f"[{ipaddress.IPv6Address(inner).compressed}]"
    except ValueError:
        return None


def normal_host(hostport: str) -> str:
    """``hostport`` as DNS and TLS see it, for keying per-registry tables (rev20e F6): lower
    case, an IPv6 address compressed, the port as a number and the TLS default (443) folded
    (``LocalHost:05000`` -> ``localhost:5000``, ``Registry-1.Docker.io:443`` ->
    ``registry-1.docker.io``). A spelling is not another registry."""
    host, port = split_host_port(hostport.lower())
    host = ipv6_host(host) or host
    if port:
        port = str(int(port))
    return host if port in ("", "443") else f"{host}:{port}"


def host_matches(pattern: str, hostport: str) -> bool:
    """Does ``hostport`` match ``pattern`` (``*`` globs one label; ports must be equal)?

    A pattern without a port matches only a host without a port, as the kubelet does:
    a credential for ``registry.example.com`` is not sent to ``registry.example.com:5000``.
    """
    pattern_host, pattern_port = split_host_port(pattern.lower())
    host, port = split_host_port(hostport.lower())
    if pattern_port != port:
        return False
    if host.startswith("[") or pattern_host.startswith("["):
        address = ipv6_host(host)
        return address is not None and address == ipv6_host(pattern_host)
    pattern_labels = pattern_host.split(".")
    labels = host.split(".")
    if len(pattern_labels) != len(labels):
        return False
    return all(_label_matches(p, label) for p, label in zip(pattern_labels, labels, strict=True))


def _label_matches(pattern: str, label: str) -> bool:
    """One DNS label against one glob label (``*`` any run of characters, e.g. ``ecr-*``)."""
    if "*" not in pattern:
        return pattern == label
    parts = pattern.split("*")
    if not label.startswith(parts[0]) or not label.endswith(parts[-1]):
        return False
    position = len(parts[0])
    end = len(label) - len(parts[-1])
    for middle in parts[1:-1]:
        found = label.find(middle, position, end)
        if found == -1:
            return False
        position = found + len(middle)
    return position <= end


def any_host_matches(patterns: Iterable[str], hostport: str) -> bool:
    """True when one of ``patterns`` matches ``hostport``."""
    return any(host_matches(p, hostport) for p in patterns)


def edit_distance(a: str, b: str, limit: int) -> int:
    """Damerau-Levenshtein distance (adjacent swaps count once), or ``limit + 1`` if larger."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


def suggest_registry(hostport: str, known: Iterable[str] = ()) -> str | None:
    """The registry ``hostport`` was probably meant to be, or ``None``.

    Candidates are the configuration's registries (``known``) and the well-known ones. A host
    that is itself a candidate is never "corrected" (``gcr.io`` and ``ghcr.io`` are one edit
    apart and both real), nor is one of :data:`REAL_REGISTRY_DOMAINS` or a host under one.
    Short names allow one edit, longer ones two.
    """
    host = hostport.lower()
    candidates = [c.lower() for c in known if "*" not in c] + list(WELL_KNOWN_REGISTRIES)
    if host in candidates or host in {"docker.io", "index.docker.io"}:
        return None
    bare = split_host_port(host)[0]
    if any(bare == d or bare.endswith("." + d) for d in REAL_REGISTRY_DOMAINS):
        return None
    best: tuple[int, str] | None = None
    for candidate in candidates:
        limit = 1 if len(candidate) <= 7 else 2
        distance = edit_distance(host, candidate, limit)
        if distance <= limit and (best is None or distance < best[0]):
            best = (distance, candidate)
    return best[1] if best else None
