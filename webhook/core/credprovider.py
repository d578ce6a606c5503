"""The kubelet's credential providers, as data: their configuration, matching, and answers.

A node's kubelet gets registry credentials from exec plugins (``ecr-credential-provider``,
``auth-provider-gcp``, ``acr-credential-provider``) named in a ``CredentialProviderConfig``
(``kubelet.config.k8s.io/v1``). This module reads that document with the kubelet's own
validation (every problem listed), matches ``matchImages`` as the kubelet's ``URLsMatchStr``
does (Go's ``url.Parse`` of ``https://`` + the pattern, then the same number of DNS labels,
``filepath.Match`` per label, the same port, the pattern's path a prefix of the image's),
builds the ``CredentialProviderRequest`` and reads the ``CredentialProviderResponse``
(strict and case-sensitive, as the kubelet's decoder), its ``auth`` keys matched like a
keyring (:func:`webhook.core.keyring.lookup`) and its cache key and duration.

Pure: no files, no processes, no clock. Running a plugin and caching its answer belong to
``webhook.edge.credproviders``. Secret material (passwords, env values, plugin output)
never appears in a problem or error text: :class:`ResponseError` names fields, never values.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import yaml

from webhook.core.keyring import Credential, lookup
from webhook.core.nodecreds import PROVIDER_SOURCE_PREFIX

CONFIG_KIND = "CredentialProviderConfig"
#: The ``CredentialProviderConfig`` versions the kubelet decodes.
CONFIG_API_VERSIONS = (
    "kubelet.config.k8s.io/v1",
    "kubelet.config.k8s.io/v1beta1",
    "kubelet.config.k8s.io/v1alpha1",
)
#: The exec protocol versions a provider may name (the kubelet's ``apiVersions``).
PROVIDER_API_VERSIONS = (
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
)
PROVIDER_V1 = "credentialprovider.kubelet.k8s.io/v1"
TOKEN_CACHE_TYPES = ("ServiceAccount", "Token")

CACHE_IMAGE = "Image"
CACHE_REGISTRY = "Registry"
CACHE_GLOBAL = "Global"
CACHE_KEY_TYPES = (CACHE_IMAGE, CACHE_REGISTRY, CACHE_GLOBAL)
#: The kubelet's key for a ``Global`` answer.
GLOBAL_CACHE_KEY = "global"


#: Bounds pullguard puts on a configuration (the kubelet has none; real documents name a
#: handful of providers): whoever can write the file could otherwise cost every replica
#: memory. A document past them is refused, with the bound named.
MAX_CONFIG_BYTES = 256 * 1024
MAX_PROVIDERS = 64
MAX_LIST_ITEMS = 256
#: Bounds on a plugin's answer. Real answers are a few KiB (an ECR token is about 2 KiB).
MAX_RESPONSE_BYTES = 1024 * 1024
MAX_AUTH_ENTRIES = 256
MAX_CREDENTIAL_CHARS = 64 * 1024
#: The longest cache duration taken (Go's ``time.Duration`` tops out near 292 years).
MAX_DURATION_SECONDS = 9_223_372_036.854775807


class ProviderConfigError(ValueError):
    """An invalid ``CredentialProviderConfig``; ``problems`` lists every one by field path."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems

    def __str__(self) -> str:
        count = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        return (
            f"invalid credential provider configuration "
            f"({count} problem{'s' if count != 1 else ''}):\n{lines}"
        )


class ResponseError(ValueError):
    """A plugin answer the kubelet would not use. The text names what is wrong, never a
    value from the answer (it may hold a token)."""


@dataclass(frozen=True, slots=True)
class EnvVar:
    """One ``env`` entry; ``value`` may be secret and never appears in ``repr``."""

    name: str
    value: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class TokenAttributes:
    """``tokenAttributes`` (KEP-4412): the provider wants the pod's ServiceAccount token."""

    service_account_token_audience: str
    require_service_account: bool
    cache_type: str
    required_annotation_keys: tuple[str, ...] = ()
    optional_annotation_keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Provider:
    """One ``providers[]`` entry: the executable ``name`` in the bin dir and how to run it."""

    name: str
    match_images: tuple[str, ...]
    default_cache_seconds: float
    api_version: str
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
    token_attributes: TokenAttributes | None = None
    globs: tuple[_Glob | None, ...] = field(init=False, repr=False, compare=False)
    """``match_images`` parsed once, when the document is read (``None``: one that matches
    nothing): matching an image then parses only the image (rev24b F4: 6,912 patterns
    parsed again for every image cost 0.38 s of the worker's loop per image)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "globs", tuple(_glob(p) for p in self.match_images))

    def matches(self, image: str) -> bool:
        """Would the kubelet ask this provider for ``image`` (its ``isImageAllowed``)?"""
        return self._matches(_target(image))

    def _matches(self, target: _Target | None) -> bool:
        return target is not None and any(
            glob is not None and glob.matches(target) for glob in self.globs
        )


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """The providers in the kubelet's order (earlier providers' credentials first)."""

    providers: tuple[Provider, ...]

    def matching(self, image: str) -> list[Provider]:
        """The providers the kubelet runs for ``image``, in order."""
        target = _target(image)
        return [p for p in self.providers if p._matches(target)]


# --- Go's time.ParseDuration -------------------------------------------------------------

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,
    "\u03bcs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([a-z\u00b5\u03bc]+)")


def parse_go_duration(text: str) -> float | None:
    """Seconds of a Go duration (``"12h"``, ``"1h30m"``, ``"-1.5s"``, ``"0"``), or ``None``
    where ``time.ParseDuration`` fails (no unit, an unknown unit, an empty string)."""
    rest = text
    sign = 1.0
    if rest[:1] in ("+", "-"):
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        return None
    total = 0.0
    position = 0
    while position < len(rest):
        part = _DURATION_PART.match(rest, position)
        if part is None or part.group(1) in ("", "."):
            return None
        unit = _UNIT_SECONDS.get(part.group(2))
        if unit is None:
            return None
        total += float(part.group(1)) * unit
        position = part.end()
    if total > MAX_DURATION_SECONDS:
        return None
    return sign * total


# --- Go's url.Parse, as far as the kubelet's matching depends on it -----------------------

#: ASCII bytes Go's ``url.Parse`` refuses in a host (``shouldEscape`` in host mode).
_HOST_OK = set("!$&'()*+,;=:[]<>\"-_.~")
_USERINFO_OK = set("-._:~!$&'()*+,;=%@")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _unescape_host(text: str, *, zone: bool) -> tuple[str, str]:
    """(decoded, "") or ("", why) for Go's ``unescape(text, encodeHost)`` (``zone``:
    ``encodeZone``, the part of an IPv6 literal from its ``%25``). In a host an escape may
    only stand for a non-ASCII byte, or be ``%25`` (RFC 3986 page 21, RFC 6874); in a zone
    it may stand for ``%``, a space, or any byte a host may hold unescaped."""
    if "%" not in text:
        return text, ""
    for index in range(len(text)):
        if text[index] != "%":
            continue
        escape = text[index : index + 3]
        if _BAD_ESCAPE.match(text, index):
            return "", f'invalid URL escape "{escape}"'
        value = int(escape[1:], 16)
        if escape == "%25":
            continue
        if zone:
            byte = chr(value)
            if value != 0x20 and not (value < 0x80 and (byte.isalnum() or byte in _HOST_OK)):
                return "", f'invalid URL escape "{escape}"'
        elif value < 0x80:
            return "", f'invalid URL escape "{escape}"'
    return unquote(text, errors="surrogateescape"), ""


def _parse_host(host: str) -> tuple[str, str]:
    """(host, "") or ("", why) as Go's ``parseHost`` (go1.26, with the CVE-2025-47912 rule:
    brackets, from the last ``[``, must hold an IPv6 address, never an IPv4 one)."""
    open_at = host.rfind("[")
    if open_at > 0:  # go1.26.1 (CVE-2026-25679): an IP literal starts the host
        return "", "invalid IP-literal"
    if open_at == -1:
        colon = host.rfind(":")
        if colon != -1:
            port = host[colon + 1 :]
            if port and not (port.isascii() and port.isdigit()):
                return "", f"invalid port {host[colon:]!r} after host"
        problem = _host_characters(host)
        return ("", problem) if problem else _unescape_host(host, zone=False)
    end = host.rfind("]")
    if end == -1:
        return "", "missing ']' in host"
    port_part = host[end + 1 :]
    digits = port_part[1:]
    valid = port_part in ("", ":") or (
        port_part[0] == ":" and digits.isascii() and digits.isdigit()
    )
    if not valid:
        return "", f"invalid port {port_part!r} after host"
    name = host[open_at + 1 : end]
    problem = _host_characters(name)
    if problem:
        return "", problem
    zone = name.find("%25")
    pieces = [(name, False)] if zone == -1 else [(name[:zone], False), (name[zone:], True)]
    decoded = []
    for piece, in_zone in pieces:
        text, why = _unescape_host(piece, zone=in_zone)
        if why:
            return "", why
        decoded.append(text)
    address = "".join(decoded)
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return "", f"invalid host: ParseAddr({address!r}): not an IP address"
    if parsed.version == 4:
        return "", "invalid IP-literal"
    return f"[{address}]{port_part}", ""


def _host_characters(host: str) -> str:
    for char in host:
        if char == "%" or ord(char) >= 0x80 or char.isalnum() or char in _HOST_OK:
            continue
        return f"invalid character {char!r} in host name"
    return ""


def _parse_schemeless(text: str) -> tuple[str, str] | str:
    """(host, path) of ``url.Parse("https://" + text)`` (the kubelet's
    ``ParseSchemelessURL``), or why Go refuses it. The path is decoded as Go decodes it."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return "net/url: invalid control character in URL"
    rest, _, fragment = text.partition("#")
    if _BAD_ESCAPE.search(fragment):
        return "invalid URL escape in fragment"
    rest = rest.partition("?")[0]
    authority, slash, path = rest.partition("/")
    path = slash + path
    userinfo, at, host = authority.rpartition("@")
    if at and any(not (c.isascii() and (c.isalnum() or c in _USERINFO_OK)) for c in userinfo):
        return "net/url: invalid userinfo"
    if at and _BAD_ESCAPE.search(userinfo):
        return "invalid URL escape in user information"
    parsed_host = _parse_host(host)
    if parsed_host[1]:
        return parsed_host[1]
    host = parsed_host[0]
    if _BAD_ESCAPE.search(path):
        return "invalid URL escape in path"
    return host, unquote(path, errors="surrogateescape") if "%" in path else path


def match_image_problem(pattern: str) -> str | None:
    """Why the kubelet refuses ``pattern`` as a ``matchImages`` entry, or ``None``."""
    parsed = _parse_schemeless(pattern)
    return parsed if isinstance(parsed, str) else None


def _go_split_host_port(hostport: str) -> tuple[str, str] | None:
    """Go's ``net.SplitHostPort``, or ``None`` where it fails (then the kubelet takes the
    host whole with no port)."""
    colon = hostport.rfind(":")
    if colon == -1:
        return None
    if hostport.startswith("["):
        end = hostport.find("]")
        if end == -1 or end + 1 != colon:
            return None
        host = hostport[1:end]
        if "[" in host or "]" in host:
            return None
        return host, hostport[colon + 1 :]
    host = hostport[:colon]
    if ":" in host or "[" in host or "]" in host or "]" in hostport[colon:]:
        return None
    return host, hostport[colon + 1 :]


def _split_url(host: str) -> tuple[list[str], str]:
    split = _go_split_host_port(host)
    name, port = split if split is not None else (host, "")
    return name.split("."), port


@functools.lru_cache(maxsize=1024)
def _glob_regex(pattern: str) -> re.Pattern[str] | None:
    """Go's ``filepath.Match`` pattern as a regular expression, or ``None`` where Go
    reports ``ErrBadPattern`` (the kubelet then counts no match)."""
    out: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "\\":
            index += 1
            if index >= len(pattern):
                return None
            out.append(re.escape(pattern[index]))
        elif char == "[":
            index += 1
            negated = index < len(pattern) and pattern[index] == "^"
            if negated:
                index += 1
            ranges: list[str] = []
            while True:
                if index < len(pattern) and pattern[index] == "]" and ranges:
                    break
                low, index = _class_char(pattern, index)
                if low is None:
                    return None
                high: str | None = low
                if index < len(pattern) and pattern[index] == "-":
                    high, index = _class_char(pattern, index + 1)
                if high is None:
                    return None
                ranges.append(f"{re.escape(low)}-{re.escape(high)}")
            out.append(("[^" if negated else "[") + "".join(ranges) + "]")
        else:
            out.append(re.escape(char))
        index += 1
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error:
        return None  # a reversed range (z-a): Go matches nothing with it either


def _class_char(pattern: str, index: int) -> tuple[str | None, int]:
    if index >= len(pattern) or pattern[index] in "-]":
        return None, index
    if pattern[index] == "\\":
        index += 1
        if index >= len(pattern):
            return None, index
    return pattern[index], index + 1


@dataclass(frozen=True, slots=True)
class _Target:
    """An image as ``URLsMatchStr`` compares it: its host's labels, port and path."""

    labels: tuple[str, ...]
    port: str
    path: str


def _target(text: str) -> _Target | None:
    parsed = _parse_schemeless(text)
    if isinstance(parsed, str):
        return None
    labels, port = _split_url(parsed[0])
    return _Target(tuple(labels), port, parsed[1])


@dataclass(frozen=True, slots=True)
class _Glob:
    """A ``matchImages`` entry, parsed, each label's ``filepath.Match`` glob compiled."""

    port: str
    path: str
    labels: tuple[re.Pattern[str], ...]

    def matches(self, target: _Target) -> bool:
        if self.port != target.port or len(self.labels) != len(target.labels):
            return False
        if not target.path.startswith(self.path):
            return False
        return all(
            regex.fullmatch(label) is not None
            for regex, label in zip(self.labels, target.labels, strict=True)
        )


def _glob(pattern: str) -> _Glob | None:
    """``pattern`` parsed for matching, or ``None`` where it matches nothing (Go refuses
    the URL, or a label is a bad pattern: ``ErrBadPattern``)."""
    parsed = _target(pattern)
    if parsed is None:
        return None
    regexes = []
    for label in parsed.labels:
        regex = _glob_regex(label)
        if regex is None:
            return None
        regexes.append(regex)
    return _Glob(parsed.port, parsed.path, tuple(regexes))


def match_image(pattern: str, image: str) -> bool:
    """The kubelet's ``URLsMatchStr(pattern, image)``: both parsed as schemeless URLs, the
    same port, the same number of DNS labels, each label a ``filepath.Match`` glob, and the
    pattern's path a prefix of the image's. ``*.io`` does not match ``a.b.io``; a pattern
    without a port does not match an image with one."""
    glob, target = _glob(pattern), _target(image)
    return glob is not None and target is not None and glob.matches(target)


# --- the configuration document ----------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys, as the kubelet's strict decoder does."""


def _strict_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate field {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _strict_mapping,
)


def load_provider_config_documents(texts: Iterable[tuple[str, str]]) -> ProviderConfig:
    """Parse one or more documents (``(where, text)``; the kubelet merges a folder's files
    in name order) into one :class:`ProviderConfig`, or raise :class:`ProviderConfigError`
    listing every problem."""
    problems: list[str] = []
    providers: list[Any] = []
    where_of: list[str] = []
    for where, text in texts:
        document = _load_document(where, text, problems)
        if document is None:
            continue
        for item in document:
            providers.append(item)
            where_of.append(where)
    if not problems:
        config = _validate(providers, where_of, problems)
        if not problems:
            return config
    raise ProviderConfigError(problems)


def load_provider_config_text(text: str, where: str = "(document)") -> ProviderConfig:
    """Parse one ``CredentialProviderConfig`` document (YAML or JSON)."""
    return load_provider_config_documents([(where, text)])


def _load_document(where: str, text: str, problems: list[str]) -> list[Any] | None:
    size = len(text.encode("utf-8", "surrogateescape"))
    if size > MAX_CONFIG_BYTES:
        problems.append(f"{where}: {size} bytes; pullguard reads at most {MAX_CONFIG_BYTES}")
        return None
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent):
                problems.append(f"{where}: YAML aliases (*name) are not accepted")
                return None
        document = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "not valid YAML"
        problems.append(f"{where}: not valid YAML or JSON{at}: {problem}")
        return None
    if not isinstance(document, dict):
        problems.append(f"{where}: must be a CredentialProviderConfig object")
        return None
    before = len(problems)
    kind = document.get("kind")
    api_version = document.get("apiVersion")
    if kind != CONFIG_KIND:
        problems.append(f"{where}: kind must be {CONFIG_KIND}, got {_shown(kind)}")
    if api_version not in CONFIG_API_VERSIONS:
        problems.append(
            f"{where}: apiVersion must be one of {', '.join(CONFIG_API_VERSIONS)}, "
            f"got {_shown(api_version)}"
        )
    _unknown(document, {"kind", "apiVersion", "providers"}, where, problems)
    raw = document.get("providers")
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        problems.append(f"{where}: providers must be a list")
        return None
    if len(raw) > MAX_PROVIDERS:
        problems.append(f"{where}: {len(raw)} providers; pullguard reads at most {MAX_PROVIDERS}")
        return None
    return raw if len(problems) == before else None


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value[:60])
    return "nothing" if value is None else type(value).__name__


def _unknown(document: Mapping[Any, Any], known: set[str], path: str, problems: list[str]) -> None:
    for key in document:
        if key not in known:
            shown = key if isinstance(key, str) and len(key) <= 60 else _shown(key)
            problems.append(f'{path}: unknown field "{shown}"')


_PROVIDER_FIELDS = {
    "name",
    "matchImages",
    "defaultCacheDuration",
    "apiVersion",
    "args",
    "env",
    "tokenAttributes",
}
_TOKEN_FIELDS = {
    "serviceAccountTokenAudience",
    "cacheType",
    "requireServiceAccount",
    "requiredServiceAccountAnnotationKeys",
    "optionalServiceAccountAnnotationKeys",
}
_QUALIFIED_NAME = re.compile(r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                             r"[a-z0-9]([-a-z0-9_.]*[a-z0-9])?")  # fmt: skip


def _validate(raw: list[Any], where_of: list[str], problems: list[str]) -> ProviderConfig:
    """The kubelet's ``validateCredentialProviderConfig`` (with the service-account token
    feature on, its default since 1.34), plus the decoder's type checks."""
    if not raw:
        problems.append("providers: Required value: at least 1 item in plugins is required")
    providers: list[Provider] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        path = f"providers[{index}]"
        if len(set(where_of)) > 1:
            path = f"{where_of[index]}: {path}"
        if not isinstance(item, dict):
            problems.append(f"{path}: must be an object")
            continue
        _unknown(item, _PROVIDER_FIELDS, path, problems)
        name = _string(item.get("name"), f"{path}.name", problems)
        if "/" in name:
            problems.append(
                f"{path}.name: Invalid value {name!r}: provider name cannot contain '/'"
            )
        if " " in name:
            problems.append(
                f"{path}.name: Invalid value {name!r}: provider name cannot contain spaces"
            )
        if name in (".", ".."):
            problems.append(
                f"{path}.name: Invalid value {name!r}: provider name cannot be {name!r}"
            )
        if name in seen:
            problems.append(f"{path}.name: Duplicate value: {name!r}")
        seen.add(name)
        api_version = _string(item.get("apiVersion"), f"{path}.apiVersion", problems)
        if not api_version:
            problems.append(f"{path}.apiVersion: Required value")
        elif api_version not in PROVIDER_API_VERSIONS:
            problems.append(
                f"{path}.apiVersion: Unsupported value: {api_version[:80]!r}: supported values: "
                + ", ".join(sorted(PROVIDER_API_VERSIONS))
            )
        match_images = _strings(item.get("matchImages"), f"{path}.matchImages", problems)
        if not match_images:
            problems.append(
                f"{path}.matchImages: Required value: at least 1 item in matchImages is required"
            )
        for image_index, pattern in enumerate(match_images):
            problem = match_image_problem(pattern)
            if problem:
                problems.append(
                    f"{path}.matchImages[{image_index}]: Invalid value {pattern[:120]!r}: "
                    f"match image is invalid: {problem}"
                )
        cache_seconds = 0.0
        raw_duration = item.get("defaultCacheDuration")
        if raw_duration is None:
            problems.append(f"{path}.defaultCacheDuration: Required value")
        elif not isinstance(raw_duration, str):
            problems.append(f'{path}.defaultCacheDuration: must be a duration string such as "12h"')
        else:
            parsed = parse_go_duration(raw_duration)
            if parsed is None:
                problems.append(
                    f"{path}.defaultCacheDuration: invalid duration {raw_duration[:40]!r} "
                    '(a Go duration such as "12h", "30m", "0")'
                )
            elif parsed < 0:
                problems.append(
                    f"{path}.defaultCacheDuration: Invalid value {raw_duration!r}: "
                    "defaultCacheDuration must be greater than or equal to 0"
                )
            else:
                cache_seconds = parsed
        args = _strings(item.get("args"), f"{path}.args", problems)
        env = _env(item.get("env"), f"{path}.env", problems)
        token = None
        if "tokenAttributes" in item and item["tokenAttributes"] is not None:
            token = _token_attributes(item["tokenAttributes"], api_version, path, problems)
        providers.append(
            Provider(
                name=name,
                match_images=tuple(match_images),
                default_cache_seconds=cache_seconds,
                api_version=api_version,
                args=tuple(args),
                env=tuple(env),
                token_attributes=token,
            )
        )
    return ProviderConfig(tuple(providers))


def _string(value: Any, path: str, problems: list[str]) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        problems.append(f"{path}: must be a string, got {_shown(value)}")
        return ""
    return value


def _strings(value: Any, path: str, problems: list[str]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{path}: must be a list of strings, got {_shown(value)}")
        return []
    if len(value) > MAX_LIST_ITEMS:
        problems.append(f"{path}: {len(value)} items; pullguard reads at most {MAX_LIST_ITEMS}")
        return []
    out = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            problems.append(f"{path}[{index}]: must be a string, got {_shown(item)}")
        else:
            out.append(item)
    return out


def _env(value: Any, path: str, problems: list[str]) -> list[EnvVar]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_LIST_ITEMS:
        problems.append(f"{path}: must be a list of at most {MAX_LIST_ITEMS} {{name, value}}")
        return []
    out = []
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: must be an object with name and value")
            continue
        _unknown(item, {"name", "value"}, where, problems)
        name = _string(item.get("name"), f"{where}.name", problems)
        raw_value = item.get("value")
        # the value is never shown: it is often a secret
        if raw_value is not None and not isinstance(raw_value, str):
            problems.append(f"{where}.value: must be a string")
            raw_value = ""
        out.append(EnvVar(name, raw_value or ""))
    return out


def _token_attributes(
    value: Any, api_version: str, path: str, problems: list[str]
) -> TokenAttributes | None:
    where = f"{path}.tokenAttributes"
    if not isinstance(value, dict):
        problems.append(f"{where}: must be an object")
        return None
    _unknown(value, _TOKEN_FIELDS, where, problems)
    audience = _string(
        value.get("serviceAccountTokenAudience"), f"{where}.serviceAccountTokenAudience", problems
    )
    if not audience:
        problems.append(f"{where}.serviceAccountTokenAudience: Required value")
    require = value.get("requireServiceAccount")
    if require is None:
        problems.append(f"{where}.requireServiceAccount: Required value")
    elif not isinstance(require, bool):
        problems.append(f"{where}.requireServiceAccount: must be true or false")
        require = None
    if api_version != PROVIDER_V1:
        problems.append(
            f"{where}: Forbidden: tokenAttributes is only supported for {PROVIDER_V1} API version"
        )
    required = _strings(
        value.get("requiredServiceAccountAnnotationKeys"),
        f"{where}.requiredServiceAccountAnnotationKeys",
        problems,
    )
    optional = _strings(
        value.get("optionalServiceAccountAnnotationKeys"),
        f"{where}.optionalServiceAccountAnnotationKeys",
        problems,
    )
    if require is False and required:
        problems.append(
            f"{where}.requiredServiceAccountAnnotationKeys: Forbidden: requireServiceAccount "
            "cannot be false when requiredServiceAccountAnnotationKeys is set"
        )
    for list_name, keys in (
        ("requiredServiceAccountAnnotationKeys", required),
        ("optionalServiceAccountAnnotationKeys", optional),
    ):
        seen: set[str] = set()
        for key in keys:
            if not _is_qualified_name(key.lower()):
                problems.append(
                    f"{where}.{list_name}: Invalid value {key[:80]!r}: not a qualified name"
                )
            if key in seen:
                problems.append(f"{where}.{list_name}: Duplicate value: {key[:80]!r}")
            seen.add(key)
    both = sorted(set(required) & set(optional))
    if both:
        problems.append(
            f"{where}: Invalid value {both!r}: annotation keys cannot be both required and optional"
        )
    cache_type = _string(value.get("cacheType"), f"{where}.cacheType", problems)
    if not cache_type:
        problems.append(
            f"{where}.cacheType: Required value: cacheType is required to be set when "
            f"tokenAttributes is specified. Supported values are: {', '.join(TOKEN_CACHE_TYPES)}"
        )
    elif cache_type not in TOKEN_CACHE_TYPES:
        problems.append(
            f"{where}.cacheType: Unsupported value: {cache_type[:40]!r}: supported values: "
            + ", ".join(TOKEN_CACHE_TYPES)
        )
    return TokenAttributes(audience, bool(require), cache_type, tuple(required), tuple(optional))


def _is_qualified_name(key: str) -> bool:
    """Kubernetes' ``IsQualifiedName``: an optional DNS-subdomain prefix and ``/``, then a
    name of at most 63 characters."""
    if _QUALIFIED_NAME.fullmatch(key) is None:
        return False
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253):
        return False
    return 0 < len(name) <= 63


# --- the exec protocol ---------------------------------------------------------------------


def request_bytes(provider: Provider, image: str) -> bytes:
    """The ``CredentialProviderRequest`` the kubelet writes to the plugin's stdin. ``image``
    is what the kubelet asks about: the repository without tag or digest
    (``123.dkr.ecr.us-east-1.amazonaws.com/app``)."""
    request = {
        "kind": "CredentialProviderRequest",
        "apiVersion": provider.api_version,
        "image": image,
    }
    return json.dumps(request, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class ProviderResponse:
    """A plugin's answer: its credentials by keyring key, and how long to keep them."""

    cache_key_type: str
    cache_seconds: float | None
    """``None``: the provider's ``defaultCacheDuration``; 0 or less: not cached."""
    auth: tuple[Credential, ...] = ()

    def credentials_for(self, image: str) -> list[Credential]:
        """The answer's credentials that cover ``image``, most specific key first, as the
        kubelet's keyring picks them."""
        return lookup(self.auth, image)

    def cache_seconds_with(self, default_seconds: float) -> float:
        """How long the kubelet keeps this answer (0: not at all)."""
        seconds = default_seconds if self.cache_seconds is None else self.cache_seconds
        return max(seconds, 0.0)

    def size(self) -> int:
        """About how many bytes this answer holds (for the cache's bound)."""
        return 64 + sum(len(c.key) + len(c.username) + len(c.password) + 96 for c in self.auth)


_RESPONSE_FIELDS = {"kind", "apiVersion", "cacheKeyType", "cacheDuration", "auth"}


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ResponseError("the answer repeats a field")
        out[key] = value
    return out


def parse_response(data: bytes, provider: Provider) -> ProviderResponse:
    """Read a plugin's stdout as the kubelet does, or raise :class:`ResponseError`.

    The apiVersion must be the provider's; fields are matched case-sensitively and an
    unknown or repeated one is refused (the kubelet's strict decoder); ``cacheKeyType`` must
    be Image, Registry or Global. The error text never quotes the answer.
    """
    if len(data) > MAX_RESPONSE_BYTES:
        raise ResponseError(f"the answer has more than {MAX_RESPONSE_BYTES} bytes")
    try:
        document = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except ResponseError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ResponseError("the answer on stdout is not JSON") from None
    if not isinstance(document, dict):
        raise ResponseError("the answer on stdout is not a JSON object")
    api_version = document.get("apiVersion")
    if api_version != provider.api_version:
        raise ResponseError(
            f"the answer's apiVersion is not {provider.api_version}, the provider's apiVersion"
        )
    if document.get("kind") != "CredentialProviderResponse":
        raise ResponseError("the answer's kind is not CredentialProviderResponse")
    unknown = [key for key in document if key not in _RESPONSE_FIELDS]
    if unknown:
        raise ResponseError(f"the answer has {len(unknown)} unknown field(s)")
    cache_key_type = document.get("cacheKeyType")
    if cache_key_type not in CACHE_KEY_TYPES:
        raise ResponseError("the answer's cacheKeyType is not Image, Registry or Global")
    raw_duration = document.get("cacheDuration")
    cache_seconds: float | None = None
    if raw_duration is not None:
        if not isinstance(raw_duration, str):
            raise ResponseError("the answer's cacheDuration is not a duration string")
        cache_seconds = parse_go_duration(raw_duration)
        if cache_seconds is None:
            raise ResponseError("the answer's cacheDuration is not a Go duration")
    raw_auth = document.get("auth")
    if raw_auth is None:
        raw_auth = {}
    if not isinstance(raw_auth, dict):
        raise ResponseError("the answer's auth is not an object")
    if len(raw_auth) > MAX_AUTH_ENTRIES:
        raise ResponseError(f"the answer has more than {MAX_AUTH_ENTRIES} auth entries")
    auth: list[Credential] = []
    for key, entry in raw_auth.items():
        if not isinstance(entry, dict):
            raise ResponseError("an auth entry is not an object")
        if any(field_name not in ("username", "password") for field_name in entry):
            raise ResponseError("an auth entry has an unknown field")
        username = entry.get("username", "")
        password = entry.get("password", "")
        if not isinstance(username, str) or not isinstance(password, str):
            raise ResponseError("an auth entry's username or password is not a string")
        if max(len(key), len(username), len(password)) > MAX_CREDENTIAL_CHARS:
            raise ResponseError(f"an auth entry is longer than {MAX_CREDENTIAL_CHARS} characters")
        auth.append(
            Credential(
                key=key,
                username=username,
                password=password,
                source=PROVIDER_SOURCE_PREFIX + provider.name,
            )
        )
    return ProviderResponse(str(cache_key_type), cache_seconds, tuple(auth))


def registry_of(image: str) -> str:
    """The kubelet's ``parseRegistry``: everything before the first ``/``."""
    return image.split("/", 1)[0]


def cache_key(cache_key_type: str, image: str) -> str:
    """Where the kubelet files an answer: the image, its registry, or one global slot."""
    if cache_key_type == CACHE_IMAGE:
        return image
    if cache_key_type == CACHE_REGISTRY:
        return registry_of(image)
    return GLOBAL_CACHE_KEY


def cache_lookup_keys(image: str) -> tuple[str, str, str]:
    """The keys the kubelet looks an image up under, in its order: image, registry, global."""
    return (image, registry_of(image), GLOBAL_CACHE_KEY)


#: Runs of characters that look like a token, a key or a password in free text.
_TOKENISH = re.compile(r"[A-Za-z0-9+/=_\-.~:]{24,}")
#: Long runs that are no secret and that an admin needs to read (rev24c F3): an ARN (the
#: role that was refused), an IAM action (``ecr:GetAuthorizationToken``), a host name of
#: lowercase labels with an optional port (the endpoint that did not resolve).
_NOT_A_SECRET = re.compile(
    r"arn:[a-z0-9-]+:[a-z0-9-]*:[a-z0-9-]*:[0-9]*:[A-Za-z0-9+=,.@_/:-]+"
    r"|(?:ecr|ecr-public|sts|iam|kms|s3):[A-Z][A-Za-z]+"
    r"|(?:[a-z]+://)?[a-z0-9-]+(?:\.[a-z0-9-]+)+(?::[0-9]+)?/?"
    # an API call's name (AssumeRoleWithWebIdentity), an absolute path of lowercase parts
    # (the token file that was not found: rev24d)
    r"|(?:[A-Z][a-z]+){2,}"
    r"|(?:/[a-z0-9._-]+)+/?"
)
#: Words a Go error's next step starts with ("get credentials: failed to refresh ...",
#: "credentials: no valid providers"): after a label and followed by more of the sentence,
#: they are the cause, not a value (rev24e).
_CAUSE_WORDS = (
    r"(?:failed|failure|no|not|none|unable|could|cannot|can't|invalid|missing|empty|unknown"
    r"|expired|error|unauthorized|forbidden|denied|refused|timeout|timed|context|the|a|an"
    r"|get|getting|retrieve|retrieving|refresh|refreshing|request|requesting|acquire)"
)
_LABELLED = re.compile(
    # the label's closing quote (JSON: "password": "...", also escaped: \"password\":) may
    # come before the ':'; in a sentence the value may follow "is" ("the password is X"); a
    # label may be plural or longer ("secrets=", "passphrase:", "credentials:")
    # also at the end of a camelCase name (dbPassword=, aadClientSecret:) or after "_"/"-"
    # (AWS_SECRET_ACCESS_KEY=, x-auth-token:); not after "/" (a path's .../token: no such file)
    r"(?<!/)((?i:passphrase|password|passwd|pass|pwd|secret|token|authorization"
    r"|auth|credential|key|session|cookie)(?i:s|es)?)"
    # a separator, or "is"/"was" in a sentence; never a bare space ("token expired", "auth
    # failed" are the cause an admin needs: rev24d), and the value on the same line
    r"(\\?[\"']?[ \t]*[:=][ \t]*|[ \t]+(?:is|was)[ \t]+)"
    r"(\\?\"(?:[^\"\\]|\\.)*\\?\"|'[^']*'|\S+)"
)
#: "the password is a horse battery staple": a password-like label in a sentence hides the
#: rest of its line (a passphrase is words: rev24g F3).
_PASSWORD_SENTENCE = re.compile(
    r"(?i)\b((?:passphrase|password|passwd|secret)s?[ \t]+(?:is|was)[ \t]+)[^\n]+"
)
#: Labels a Go error chain names as a step ("get credentials: failed to refresh ...",
#: "acquire token: ManagedIdentityCredential: ..."): only after these, and a ':', may the
#: value be the chain's next step (rev24e); never after password-like labels (rev24g F3).
_CHAIN_LABELS = frozenset({"credential", "credentials", "token", "tokens", "auth"})
_TYPE_STEP = re.compile(r"(?:[A-Z][a-z]+){2,}:")
_CAUSE_WORD = re.compile(_CAUSE_WORDS)
_MORE_WORDS = re.compile(r"[ \t]+[a-z]")


def _labelled_redacted(match: re.Match[str]) -> str:
    label, separator, value = match.group(1), match.group(2), match.group(3)
    if ":" in separator and label.lower() in _CHAIN_LABELS:
        rest = match.string[match.end() :]
        if _TYPE_STEP.fullmatch(value) and (not rest or rest[0].isspace()):
            return match.group(0)
        if _CAUSE_WORD.fullmatch(value) and _MORE_WORDS.match(rest):
            return match.group(0)
    return f"{label}{separator}[redacted]"


#: ``-p VALUE`` (docker login's, most CLIs' password flag), ``-u USER:PASSWORD`` (curl's),
#: ``--password``/``--user`` alike, echoed in a plugin's stderr (``set -x``).
_PASSWORD_FLAG = re.compile(
    r"(?<!\S)(-p|-u|--password|--pass|--user|--[a-z-]*creds|--[a-z-]*-password|--[a-z-]*-token)"
    r"(\s+|=)('[^']*'|\"[^\"]*\"|\S+)"
    # attached, as curl's -uUSER:PASS and docker's -pPASS are documented (rev24d)
    r"|(?<!\S)(-[pu])()([^\s=-]\S*)"
)
#: A URL's user information (``https://user:PASSWORD@host``), up to the authority's *last*
#: ``@`` as URL parsers read it (a password may hold ``@``).
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^/\s@:]*):([^/\s]*)@")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+\S+")
MAX_LOGGED_STDERR = 2048


#: A part of 16 or more hex digits, or of 24 or more letters and digits with a digit: a
#: token even inside what looks like a path or a host name (rev24e).
_SECRET_PART = re.compile(r"[0-9a-f]{16,}|(?=[a-z0-9]*[0-9])[a-z0-9]{24,}")


#: A host name of a cloud registry (``NAME.azurecr.io``, ECR's, Artifact Registry's,...): a
#: registry's name, in every image reference of the pod, no secret, whatever its first label
#: holds (rev24f F4: ACR names of 24+ letters and digits); a 16+ hex-digit part is still
#: one. Only known registry domains: any host-shaped run with a letters-only last label let a
#: token followed by ".token" through (rev24g F2).
_HOST_NAME = re.compile(
    r"(?:[a-z]+://)?(?:[a-z0-9-]+\.)+(?:azurecr\.(?:io|cn|us)|amazonaws\.com(?:\.cn)?"
    r"|pkg\.dev|gcr\.io|docker\.io|ghcr\.io|quay\.io)(?::[0-9]+)?/?"
)
_HEX_PART = re.compile(r"[0-9a-f]{16,}")


def _tokenish_redacted(match: re.Match[str]) -> str:
    run = match.group(0)
    if _HOST_NAME.fullmatch(run.rstrip(":.")) and not _HEX_PART.search(run):
        return run
    if _NOT_A_SECRET.fullmatch(run.rstrip(":.")) and not _SECRET_PART.search(run):
        return run
    return "[redacted]"


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` (a plugin's stderr) fit for a log: every known secret (an env value, a
    password) and every token-like run replaced by ``[redacted]``, a labelled value
    (``password=...``, ``pass: ...``, ``the password is ...``, ``Authorization: ...``,
    JSON's ``"password": "..."``, ``-p ...``, ``-u user:...``) and a URL's user information
    too, cut to :data:`MAX_LOGGED_STDERR`."""
    for secret in sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True):
        text = text.replace(secret, "[redacted]")
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{m.group(2)}:[redacted]@", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} [redacted]", text)
    text = _PASSWORD_SENTENCE.sub(lambda m: f"{m.group(1)}[redacted]", text)
    text = _LABELLED.sub(_labelled_redacted, text)
    text = _PASSWORD_FLAG.sub(
        lambda m: f"{m.group(1) or m.group(4)}{m.group(2) or m.group(5) or ''}[redacted]", text
    )
    text = _TOKENISH.sub(_tokenish_redacted, text)
    if len(text) > MAX_LOGGED_STDERR:
        text = text[:MAX_LOGGED_STDERR] + " [cut]"
    return text
