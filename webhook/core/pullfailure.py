"""Why a pod is failing to pull, read from what the kubelet and the runtime wrote.

The kubelet records a container stuck on its image as a waiting state (``ErrImagePull``,
``ImagePullBackOff``, ``ErrImageNeverPull``, ``InvalidImageName``) with the runtime's error
text, and as ``Failed`` / ``FailedToRetrieveImagePullSecret`` events. containerd and CRI-O
word the same failures differently; :func:`classify` maps both to one :class:`Cause`.
The texts matched here come from the runtimes' sources and from reports in their issue
trackers (tests/fixtures/pull-failures.yaml lists each with where it was seen).

Pure: strings in, a cause out. ``pullguard diagnose`` then confirms or corrects the cause by
re-running the checks live.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Cause(StrEnum):
    NOT_FOUND = "not_found"
    UNAUTHORIZED = "unauthorized"
    SECRET_MISSING = "secret_missing"  # noqa: S105 - a cause's name, not a password
    INVALID_NAME = "invalid_name"
    RATE_LIMITED = "rate_limited"
    DNS = "dns"
    CONNECTION_REFUSED = "connection_refused"
    TIMEOUT = "timeout"
    TLS = "tls"
    REGISTRY_ERROR = "registry_error"
    PLATFORM = "platform"
    DISK_FULL = "disk_full"
    NEVER_PULL = "never_pull"
    UNKNOWN = "unknown"


#: How each cause reads to a person.
CAUSE_WORDS = {
    Cause.NOT_FOUND: "the image does not exist (no such repository, tag or digest)",
    Cause.UNAUTHORIZED: "the registry refused the credentials the pod has (or the lack of them)",
    Cause.SECRET_MISSING: "an imagePullSecret the pod names cannot be read",
    Cause.INVALID_NAME: "the image reference cannot be parsed",
    Cause.RATE_LIMITED: "the registry is rate limiting pulls",
    Cause.DNS: "the registry's DNS name does not resolve from the node",
    Cause.CONNECTION_REFUSED: "the registry refused the node's connection",
    Cause.TIMEOUT: "the connection to the registry timed out",
    Cause.TLS: "the registry's TLS certificate is not trusted by the node",
    Cause.REGISTRY_ERROR: "the registry failed with a server error",
    Cause.PLATFORM: "the image has no build for the node's platform",
    Cause.DISK_FULL: "the node ran out of disk space while pulling",
    Cause.NEVER_PULL: "imagePullPolicy Never, and the image is not on the node",
    Cause.UNKNOWN: "the runtime's error does not say which",
}

#: Container waiting reasons that mean "stuck on the image".
PULL_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"}
)

# Order matters: the more specific texts first (a 429 body mentions "denied" too, a TLS
# failure mentions the host, a not-found may be wrapped in "failed to resolve reference").
_RULES: tuple[tuple[Cause, re.Pattern[str]], ...] = tuple(
    (cause, re.compile(pattern, re.IGNORECASE))
    for cause, pattern in (
        (Cause.NEVER_PULL, r"is not present with pull policy of Never|ErrImageNeverPull"),
        (
            Cause.INVALID_NAME,
            r"invalid reference format|couldn't parse image (name|reference)|InvalidImageName",
        ),
        (Cause.SECRET_MISSING, r"Unable to retrieve some image pull secrets"),
        (Cause.RATE_LIMITED, r"toomanyrequests|429 Too Many Requests|pull rate limit"),
        (Cause.DISK_FULL, r"no space left on device"),
        (
            Cause.PLATFORM,
            r"no match for platform|no matching manifest for|no image found in manifest list"
            r"|image architecture mismatch|choosing image instance",
        ),
        (Cause.TLS, r"x509:|tls: |certificate signed by unknown authority|remote error: tls"),
        (Cause.DNS, r"no such host|server misbehaving|Temporary failure in name resolution"),
        (Cause.CONNECTION_REFUSED, r"connection refused"),
        (
            Cause.TIMEOUT,
            r"i/o timeout|context deadline exceeded|Client\.Timeout|TLS handshake timeout",
        ),
        (
            Cause.UNAUTHORIZED,
            r"401 Unauthorized|403 Forbidden|unauthorized|insufficient_scope|access denied"
            r"|requested access to the resource is denied|authorization failed"
            r"|may require authorization|failed to authorize|denied: ",
        ),
        (
            Cause.NOT_FOUND,
            r": not found\b|manifest unknown|name unknown|MANIFEST_UNKNOWN|NAME_UNKNOWN"
            r"|repository does not exist|404 Not Found|code = NotFound",
        ),
        (
            Cause.REGISTRY_ERROR,
            r"\b50[0-9] [A-Z][a-z]|unexpected status code 5\d\d"
            r"|received unexpected HTTP status: 5\d\d",
        ),
    )
)


@dataclass(frozen=True, slots=True)
class Classified:
    cause: Cause
    evidence: str  # the text that showed it, cut to a readable length


def classify(*texts: str) -> Classified:
    """The cause the texts show (the first rule any of them matches), with the text."""
    for cause, pattern in _RULES:
        for text in texts:
            if text and pattern.search(text):
                return Classified(cause, _cut(text))
    first = next((t for t in texts if t), "")
    return Classified(Cause.UNKNOWN, _cut(first))


def _cut(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
