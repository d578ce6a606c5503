"""Image references, parsed exactly as the container runtime parses them.

This is a port of ``ParseNormalizedNamed`` from the Go package ``distribution/reference``
(v0.6), which containerd, CRI-O and the kubelet use to read ``spec.containers[].image``.
Anything this module accepts, the runtime accepts with the same domain, path, tag and
digest; anything it rejects, the runtime rejects. The grammar, from that package::

    reference        := name [ ":" tag ] [ "@" digest ]
    name             := [domain '/'] remote-name
    domain           := host [':' port-number]
    host             := domain-name | IPv4address | \\[ IPv6address \\]
    domain-name      := domain-component ['.' domain-component]*
    domain-component := /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
    port-number      := /[0-9]+/
    path-component   := alpha-numeric [separator alpha-numeric]*
    remote-name      := path-component ['/' path-component]*
    alpha-numeric    := /[a-z0-9]+/
    separator        := /[_.]|__|[-]+/
    tag              := /[\\w][\\w.-]{0,127}/
    digest           := algorithm ":" hex     (sha256: 64, sha384: 96, sha512: 128 lower-case hex)

Two traps of a Python port, both pinned by tests: ``\\w`` must be ASCII (``re.ASCII``), and
``$`` matches before a trailing newline, so every match is a ``fullmatch``.

When a reference is invalid, :func:`diagnose` explains which part is wrong in words a person
can act on, with a corrected reference when one is plain. Validity itself is decided only
by the runtime's grammar; the diagnosis never changes a verdict.

This module must stay pure: no I/O, no clock, no imports beyond the standard library.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = [
    "DEFAULT_DOMAIN",
    "InvalidReference",
    "Reference",
    "parse",
    "parse_or_none",
]

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
LOCALHOST = "localhost"
#: Longest repository path the runtime accepts; the domain is not counted.
PATH_MAX = 255
#: Hex digits each supported digest algorithm needs (go-digest's registered algorithms).
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}

# The building blocks, spelled as in distribution/reference's regexp.go.
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_AND_PORT = r"(?:" + _DOMAIN_NAME + "|" + _IPV6 + r")(?::[0-9]+)?"
_PATH_COMPONENT = _ALNUM + r"(?:" + _SEPARATOR + _ALNUM + r")*"
_REMOTE_NAME = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9a-fA-F]{32,}"

# The fast path uses the same languages written with possessive quantifiers: every part of a
# reference ends at a character the next part cannot start with (a path component ends before
# "/", ":", "@" or the end; a host label before ".", ":", "/" or "]"), so giving characters
# back can never produce another match, and forbidding it removes all backtracking. The
# differential test against a literal transcription of the Go code pins the equivalence.
_FAST_DOMAIN_COMPONENT = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*+(?<!-))?"
_FAST_DOMAIN_AND_PORT = (
    r"(?:" + _FAST_DOMAIN_COMPONENT + r"(?:\." + _FAST_DOMAIN_COMPONENT + r")*+"
    r"|\[[a-fA-F0-9:]++\])(?::[0-9]++)?"
)
_FAST_PATH_COMPONENT = r"[a-z0-9]++(?:(?:[._]|__|-++)[a-z0-9]++)*+"
_FAST_REMOTE_NAME = _FAST_PATH_COMPONENT + r"(?:/" + _FAST_PATH_COMPONENT + r")*+"

_TAIL = r"(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?"
# "remote[:tag][@digest]" and "component[:tag][@digest]": with a host split off first, these
# decide what the runtime's referenceRegexp decides about the whole string.
_REMOTE_AND_TAIL_RE = re.compile(r"(" + _FAST_REMOTE_NAME + r")" + _TAIL, re.ASCII)
_COMPONENT_AND_TAIL_RE = re.compile(r"(" + _FAST_PATH_COMPONENT + r")" + _TAIL, re.ASCII)
_FAST_DOMAIN_RE = re.compile(_FAST_DOMAIN_AND_PORT, re.ASCII)
_IDENTIFIER_RE = re.compile(r"[a-f0-9]{64}", re.ASCII)
_DIGEST_HEX_RE = {
    algorithm: re.compile(f"[a-f0-9]{{{n}}}", re.ASCII)
    for algorithm, n in DIGEST_HEX_LENGTHS.items()
}
_TAG_RE = re.compile(_TAG, re.ASCII)
_PATH_COMPONENT_RE = re.compile(_PATH_COMPONENT, re.ASCII)
_DOMAIN_AND_PORT_RE = re.compile(_DOMAIN_AND_PORT, re.ASCII)
_DIGEST_RE = re.compile(_DIGEST, re.ASCII)


class InvalidReference(ValueError):
    """The runtime would refuse this image reference.

    ``reason`` says which part is wrong; ``suggestion`` is a corrected reference that does
    parse, or ``None`` when no correction is plain.
    """

    def __init__(self, value: str, reason: str, suggestion: str | None = None) -> None:
        super().__init__(reason)
        self.value = value
        self.reason = reason
        self.suggestion = suggestion

    def __str__(self) -> str:
        if self.suggestion is not None:
            return f"{self.reason}; did you mean {self.suggestion!r}?"
        return self.reason


class Reference(NamedTuple):
    """A parsed image reference, normalized as the runtime normalizes it.

    ``domain`` is empty only in the runtime's own corner case where the first path
    component was taken for a host but is not a valid one (``a_b.c/app``).
    """

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    # A NamedTuple rather than a frozen dataclass: it is built once per container per
    # admission, and a frozen dataclass costs four times as much to construct.

    @property
    def name(self) -> str:
        """The fully qualified repository, e.g. ``docker.io/library/nginx``."""
        return f"{self.domain}/{self.path}" if self.domain else self.path

    @property
    def familiar_name(self) -> str:
        """The repository as a person types it: ``nginx``, ``bitnami/redis``, ``ghcr.io/x/y``."""
        domain, path, _, _ = self
        if domain != DEFAULT_DOMAIN:
            return domain + "/" + path if domain else path
        if path.startswith(OFFICIAL_REPO_PREFIX) and path.count("/") == 1:
            return path[8:]  # len("library/")
        return path

    @property
    def familiar(self) -> str:
        """The short form of the whole reference, e.g. ``nginx:1.25``."""
        name = self.familiar_name
        _, _, tag, digest = self
        if tag is not None:
            name += ":" + tag
        if digest is not None:
            name += "@" + digest
        return name

    def __str__(self) -> str:
        """The fully qualified reference, e.g. ``docker.io/library/nginx:1.25``."""
        domain, name, tag, digest = self
        if domain:
            name = domain + "/" + name
        if tag is not None:
            name += ":" + tag
        if digest is not None:
            name += "@" + digest
        return name

    def with_name(self, domain: str, path: str) -> Reference:
        """The same tag and digest under another repository (used to point at a mirror)."""
        return Reference(domain=domain, path=path, tag=self.tag, digest=self.digest)

    @property
    def is_latest(self) -> bool:
        """True for ``:latest`` or no tag at all, when no digest pins the content."""
        return self.digest is None and self.tag in (None, "latest")


def split_docker_domain(name: str) -> tuple[str, str]:
    """Split ``name`` into (domain, rest) the way the runtime decides what a host is.

    The first component is a host only if it contains "." or ":", is ``localhost``, or has
    an upper-case letter; otherwise the image is on Docker Hub, and a single-component name
    there gets the ``library/`` prefix of official images.
    """
    maybe_domain, slash, maybe_rest = name.partition("/")
    if not slash:
        return DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + name
    if maybe_domain == LOCALHOST:
        domain, rest = maybe_domain, maybe_rest
    elif maybe_domain == LEGACY_DEFAULT_DOMAIN:
        domain, rest = DEFAULT_DOMAIN, maybe_rest
    elif "." in maybe_domain or ":" in maybe_domain or maybe_domain.lower() != maybe_domain:
        domain, rest = maybe_domain, maybe_rest
    else:
        domain, rest = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in rest:
        rest = OFFICIAL_REPO_PREFIX + rest
    return domain, rest


def parse_or_none(value: str) -> Reference | None:
    """Parse like :func:`parse` but return ``None`` for an invalid reference, quickly.

    This is the hot path. It follows ``splitDockerDomain`` and then ``Parse`` of the runtime,
    matching the parts of ``value`` in place instead of re-joining "domain/rest":

    - no "/": a Docker Hub official image, ``component[:tag][@digest]``;
    - a first component that looks like a host: if it is a valid host, the rest is
      ``remote[:tag][@digest]``; if not, the runtime's grammar falls back to reading the whole
      string as a path with no domain at all;
    - otherwise: a Docker Hub image whose whole string is ``remote[:tag][@digest]``.

    The runtime's separate "repository name must be lowercase" test needs no step here: with
    the host split off, the grammar already refuses upper case in the path, and the digest
    check refuses it in the algorithm, so it only changes which error is reported.
    """
    first, slash, rest = value.partition("/")
    if not slash:
        if len(value) == 64 and _IDENTIFIER_RE.fullmatch(value):
            return None
        match = _COMPONENT_AND_TAIL_RE.fullmatch(value)
        if match is None:
            return None
        component, tag, digest = match.groups()
        domain, path = DEFAULT_DOMAIN, OFFICIAL_REPO_PREFIX + component
    elif first == LOCALHOST or "." in first or ":" in first or first.lower() != first:
        if first == LEGACY_DEFAULT_DOMAIN or _FAST_DOMAIN_RE.fullmatch(first):
            match = _REMOTE_AND_TAIL_RE.fullmatch(rest)
            domain = DEFAULT_DOMAIN if first == LEGACY_DEFAULT_DOMAIN else first
        else:
            match = _REMOTE_AND_TAIL_RE.fullmatch(value)
            domain = ""
        if match is None:
            return None
        path, tag, digest = match.groups()
        if domain == DEFAULT_DOMAIN and "/" not in path:
            path = OFFICIAL_REPO_PREFIX + path
    else:
        match = _REMOTE_AND_TAIL_RE.fullmatch(value)
        if match is None:
            return None
        path, tag, digest = match.groups()
        domain = DEFAULT_DOMAIN
    if len(path) > PATH_MAX:
        return None
    if digest is not None:
        algorithm, _, hex_part = digest.partition(":")
        hex_re = _DIGEST_HEX_RE.get(algorithm)
        if hex_re is None or not hex_re.fullmatch(hex_part):
            return None
    return Reference(domain, path, tag, digest)


def parse(value: str) -> Reference:
    """Parse an image reference as the runtime does, or raise :class:`InvalidReference`.

    Never raises anything else, whatever the input.
    """
    ref = parse_or_none(value)
    if ref is None:
        reason, suggestion = diagnose(value)
        raise InvalidReference(value, reason, suggestion)
    return ref


# --- Diagnosis: why a reference is invalid, and what it probably meant ------------------------

_URL_PREFIXES = ("https://", "http://", "docker://", "oci://")
_COMMAND_PREFIXES = (
    "docker pull ",
    "podman pull ",
    "crictl pull ",
    "ctr image pull ",
    "nerdctl pull ",
)


def _digest_problem(digest: str) -> str | None:
    """What go-digest's ``Parse`` would object to in ``algorithm:hex``, or ``None``."""
    algorithm, _, hex_part = digest.partition(":")
    expected = DIGEST_HEX_LENGTHS.get(algorithm)
    if expected is None:
        return f"digest algorithm {algorithm!r} is not supported (use sha256, sha384 or sha512)"
    if len(hex_part) != expected:
        return f"digest {algorithm} needs {expected} hex digits, got {len(hex_part)}"
    if not _DIGEST_HEX_RE[algorithm].fullmatch(hex_part):
        if _DIGEST_HEX_RE[algorithm].fullmatch(hex_part.lower()):
            return f"digest {algorithm} must be lower-case hex"
        return f"digest {algorithm} must be hex digits 0-9 and a-f"
    return None


def _suggest(candidate: str, original: str) -> str | None:
    """``candidate`` if it is a valid reference different from ``original``."""
    if candidate != original and parse_or_none(candidate) is not None:
        return candidate
    return None


def _ascii_lower_suggestion(value: str) -> str | None:
    """Lower-case the repository part (the host and tag may keep their case)."""
    domain_part, slash, rest = value.partition("/")
    looks_like_host = bool(slash) and (
        "." in domain_part or ":" in domain_part or domain_part == LOCALHOST
    )
    head = domain_part + "/" if looks_like_host else ""
    body = rest if looks_like_host else value
    name, at, digest = body.partition("@")
    repo, colon, tag = name.rpartition(":") if ":" in name else (name, "", "")
    if not colon:
        repo, tag = name, ""
    lowered = head + repo.lower() + (":" + tag if colon else "") + (at + digest)
    return _suggest(lowered, value) or _suggest(value.lower(), value)


def diagnose(value: str) -> tuple[str, str | None]:
    """Explain why ``value`` is not a valid reference: (reason, suggested correction).

    Only called for references :func:`parse_or_none` has already rejected; the checks run
    from the most obvious mistake (empty, whitespace, a pasted command or URL) to the finest
    (one bad path component), and the first that applies is reported.
    """
    if value == "":
        return "image reference is empty", None
    stripped = value.strip()
    if stripped != value:
        return "image reference has leading or trailing whitespace", _suggest(stripped, value)
    if any(ch.isspace() for ch in value):
        return "image reference contains whitespace", _suggest(
            "".join(value.split()), value
        ) if not any(value.startswith(p) for p in _COMMAND_PREFIXES) else _command_fix(value)
    lowered_value = value.lower()
    for prefix in _URL_PREFIXES:
        if lowered_value.startswith(prefix):
            return (
                f"image reference must not start with {prefix!r}: it names a registry host, "
                "not a URL",
                _suggest(value[len(prefix) :].rstrip("/"), value),
            )
    if _IDENTIFIER_RE.fullmatch(value):
        return (
            "a bare 64-character hex id is not a repository name; write REPOSITORY@sha256:<id>",
            None,
        )
    if not value.isascii():
        bad = next(ch for ch in value if not ch.isascii())
        ascii_value = _asciify(value)
        return (
            f"image reference contains the non-ASCII character {bad!r}; "
            "only ASCII letters, digits and . _ - : / @ are allowed",
            _suggest(ascii_value, value) if ascii_value is not None else None,
        )

    if "/" not in value and value.startswith("["):
        return (
            f"{value!r} names only a registry host; add the repository, e.g. {value}/app:1.0",
            None,
        )
    name_and_tag, at, digest = value.partition("@")
    if at:
        if "@" in digest:
            return "image reference has more than one '@'", None
        if not digest:
            return "empty digest after '@'", _suggest(name_and_tag, value)
        if ":" not in digest:
            return (
                f"digest {digest!r} needs the form algorithm:hex, e.g. sha256:<64 hex digits>",
                None,
            )
        if not _DIGEST_RE.fullmatch(digest):
            algorithm, _, _hex_part = digest.partition(":")
            if algorithm in DIGEST_HEX_LENGTHS:
                problem = _digest_problem(digest)
                if problem is not None:
                    return problem, _suggest(name_and_tag + "@" + digest.lower(), value)
            return f"digest {digest!r} is not of the form algorithm:hex", None
        problem = _digest_problem(digest)
        if problem is not None:
            return problem, _suggest(name_and_tag + "@" + digest.lower(), value)

    # The tag is after the last ':' that follows the last '/'.
    last_slash = name_and_tag.rfind("/")
    colon = name_and_tag.rfind(":")
    name, tag = name_and_tag, None
    if colon > last_slash:
        name, tag = name_and_tag[:colon], name_and_tag[colon + 1 :]
        if ":" in name[last_slash + 1 :]:
            return "image reference has more than one ':' after the last '/'", None
    if tag is not None:
        reason = _tag_problem(tag)
        if reason is not None:
            # Only an empty tag has a plain correction; shortening or rewriting a tag would
            # name a different image.
            fix = _suggest(name + (at + digest if at else ""), value) if tag == "" else None
            return reason, fix

    reason, fix = _name_problem(name)
    if reason == _LOWERCASE:
        return reason, _ascii_lower_suggestion(value)
    if fix is not None:
        fix = _suggest(
            fix + (":" + tag if tag is not None else "") + (at + digest if at else ""), value
        )
    return reason, fix


def _command_fix(value: str) -> str | None:
    for prefix in _COMMAND_PREFIXES:
        if value.startswith(prefix):
            return _suggest(value[len(prefix) :].strip(), value)
    return None


def _asciify(value: str) -> str | None:
    """Replace look-alike punctuation pasted from documents; ``None`` if anything else is left."""
    table = {
        "\u2010": "-",
        "\u2011": "-",
        "\u2012": "-",
        "\u2013": "-",
        "\u2014": "-",
        "\u2212": "-",
        "\uff1a": ":",
        "\uff0f": "/",
        "\uff20": "@",
        "\u3002": ".",
    }
    if any(not ch.isascii() and ch not in table for ch in value):
        return None
    return "".join(table.get(ch, ch) for ch in value)


def _tag_problem(tag: str) -> str | None:
    if tag == "":
        return "empty tag after ':'"
    if len(tag) > 128:
        return f"tag longer than 128 characters (got {len(tag)})"
    if _TAG_RE.fullmatch(tag):
        return None
    if tag[0] in ".-":
        return f"tag {tag!r} must start with a letter, digit or underscore"
    bad = next(ch for ch in tag if not (ch.isascii() and (ch.isalnum() or ch in "_.-")))
    return f"tag {tag!r} contains {bad!r}; tags allow only letters, digits, '_', '.' and '-'"


_LOWERCASE = "repository name must be lowercase"


def _name_problem(name: str) -> tuple[str, str | None]:
    """(reason, corrected name or None) for a repository name the grammar rejects."""
    if name.endswith("/"):
        return "repository name ends with '/'", name.rstrip("/")
    if name.startswith("/"):
        return "repository name starts with '/'", name.lstrip("/")
    if "//" in name:
        return "repository name has an empty component ('//')", re.sub("/+", "/", name)
    domain, rest = split_docker_domain(name)
    if domain != DEFAULT_DOMAIN or name.startswith(
        (DEFAULT_DOMAIN + "/", LEGACY_DEFAULT_DOMAIN + "/")
    ):
        host = name.partition("/")[0]
        # The runtime falls back to reading a bad host as a path component; if that also
        # fails, the host is what the person got wrong.
        if (
            not _DOMAIN_AND_PORT_RE.fullmatch(host)
            and host.lower() == host
            and not _PATH_COMPONENT_RE.fullmatch(host)
        ):
            return _host_problem(host), None
    if rest.lower() != rest:
        return _LOWERCASE, None
    path = rest
    if len(path) > PATH_MAX:
        return (
            f"repository path is {len(path)} characters long; at most {PATH_MAX} are allowed",
            None,
        )
    for component in path.split("/"):
        if not _PATH_COMPONENT_RE.fullmatch(component):
            return _component_problem(component), None
    return "invalid reference format", None


def _host_problem(host: str) -> str:
    hostname, port = host, ""
    if ":" in host and not host.endswith("]"):
        hostname, _, port = host.rpartition(":")
    if port and not port.isdigit():
        return f"registry port {port!r} in {host!r} must be digits"
    if hostname.count(":") > 0 and not hostname.startswith("["):
        return f"IPv6 registry host {hostname!r} must be in brackets, e.g. [{hostname}]:5000"
    if hostname.startswith("["):
        return f"IPv6 registry host {hostname!r} may hold only hex digits and ':'"
    return (
        f"registry host {host!r} is invalid: labels are letters, digits and inner '-', "
        "separated by single dots"
    )


def _component_problem(component: str) -> str:
    if component == "":
        return "repository name has an empty component"
    if not component[0].isalnum() or not component[-1].isalnum():
        return f"path component {component!r} must start and end with a lower-case letter or digit"
    bad = next((ch for ch in component if not (ch.islower() or ch.isdigit() or ch in "._-")), None)
    if bad is not None:
        return (
            f"path component {component!r} contains {bad!r}; only a-z, 0-9 and the "
            "separators '.', '_', '__' and '-' are allowed"
        )
    return (
        f"path component {component!r} has a bad separator: use one '.', one or two '_', "
        "or dashes between letters and digits"
    )
