"""A literal, slow transcription of distribution/reference's ParseNormalizedNamed, for tests.

It follows the Go code step by step (referenceRegexp, then anchoredNameRegexp over the name,
then go-digest's Parse), where ``webhook.core.reference`` folds them into one match. The
differential test checks the two agree on generated inputs; this file must not be "tidied"
into the production shape, or the comparison stops meaning anything.
"""

from __future__ import annotations

import re

alphanumeric = r"[a-z0-9]+"
separator = r"(?:[._]|__|[-]+)"
domainNameComponent = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
optionalPort = r"(?::[0-9]+)?"
tag = r"[\w][\w.-]{0,127}"
digestPat = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*[:][0-9A-Fa-f]{32,}"
identifier = r"([a-f0-9]{64})"
ipv6address = r"\[(?:[a-fA-F0-9:]+)\]"
domainName = domainNameComponent + r"(?:\." + domainNameComponent + r")*"
host = r"(?:" + domainName + "|" + ipv6address + ")"
domainAndPort = host + optionalPort
pathComponent = alphanumeric + "(?:" + separator + alphanumeric + ")*"
remoteName = pathComponent + "(?:/" + pathComponent + ")*"
namePat = "(?:" + domainAndPort + "/)?" + remoteName
anchoredNamePat = "(?:(" + domainAndPort + ")/)?(" + remoteName + ")"
referencePat = "(" + namePat + ")(?::(" + tag + "))?(?:@(" + digestPat + "))?"

referenceRegexp = re.compile(referencePat, re.ASCII)
anchoredNameRegexp = re.compile(anchoredNamePat, re.ASCII)
anchoredIdentifierRegexp = re.compile(identifier, re.ASCII)
encoded = {
    "sha256": re.compile(r"[a-f0-9]{64}"),
    "sha384": re.compile(r"[a-f0-9]{96}"),
    "sha512": re.compile(r"[a-f0-9]{128}"),
}


class GoError(Exception):
    pass


def _go_lower(s: str) -> str:
    return s.lower()


def digest_parse(d: str) -> str:
    i = d.find(":")
    if i <= 0 or i + 1 == len(d):
        raise GoError("invalid digest format")
    algorithm, enc = d[:i], d[i + 1 :]
    if algorithm not in encoded:
        raise GoError("unsupported digest algorithm")
    if len(enc) != {"sha256": 64, "sha384": 96, "sha512": 128}[algorithm]:
        raise GoError("invalid checksum digest length")
    if not encoded[algorithm].fullmatch(enc):
        raise GoError("invalid checksum digest format")
    return d


def split_docker_domain(name: str) -> tuple[str, str]:
    if "/" not in name:
        return "docker.io", "library/" + name
    maybe_domain, maybe_remote = name.split("/", 1)
    if maybe_domain == "localhost":
        domain, remote = maybe_domain, maybe_remote
    elif maybe_domain == "index.docker.io":
        domain, remote = "docker.io", maybe_remote
    elif any(c in maybe_domain for c in ".:"):
        domain, remote = maybe_domain, maybe_remote
    elif _go_lower(maybe_domain) != maybe_domain:
        domain, remote = maybe_domain, maybe_remote
    else:
        domain, remote = "docker.io", name
    if domain == "docker.io" and "/" not in remote:
        remote = "library/" + remote
    return domain, remote


def go_parse(s: str) -> tuple[str, str, str, str]:
    if s == "":
        raise GoError("repository name must have at least one component")
    matches = referenceRegexp.fullmatch(s)
    if matches is None:
        raise GoError("invalid reference format")
    name = matches.group(1)
    name_match = anchoredNameRegexp.fullmatch(name)
    assert name_match is not None
    domain = name_match.group(1) or ""
    path = name_match.group(2)
    if len(path) > 255:
        raise GoError("repository name must not be more than 255 characters")
    tag_value = matches.group(2) or ""
    digest_value = ""
    if matches.group(3):
        digest_value = digest_parse(matches.group(3))
    return domain, path, tag_value, digest_value


def parse_normalized_named(s: str) -> tuple[str, str, str, str]:
    """(domain, path, tag, digest) with "" for absent, or raise GoError."""
    if anchoredIdentifierRegexp.fullmatch(s):
        raise GoError("cannot specify 64-byte hexadecimal strings")
    domain, remainder = split_docker_domain(s)
    remote = remainder.split(":", 1)[0]
    if _go_lower(remote) != remote:
        raise GoError("repository name must be lowercase")
    return go_parse(domain + "/" + remainder)
