"""Pull-secret contents, and which credential the kubelet would use for an image.

A port of the kubelet's ``BasicDockerKeyring``: a secret entry's key may be a URL or a host,
may carry a port and a path prefix, and may use globs per DNS label
(``*.dkr.ecr.us-east-1.amazonaws.com``). Keys are reverse-sorted so the most specific match
is tried first, ``/v1/`` and ``/v2/`` suffixes mean the bare host, and the Docker Hub key
``https://index.docker.io/v1/`` serves every Docker Hub image.

Pure: it reads the already-decoded bytes of a secret and never logs or returns a password
except inside :class:`Credential`, whose ``repr`` hides it. An entry's raw key is secret
material too (``https://robot:PASSWORD@registry/`` is a key people write): matching and every
text use :func:`keyring_key`, which keeps only host[:port] and path, as the kubelet does.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import unquote, urlsplit

from webhook.core import deepjson
from webhook.core.hosts import split_host_port

DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
DOCKER_CFG = "kubernetes.io/dockercfg"
#: Secret types the kubelet reads pull credentials from, and the data key of each.
PULL_SECRET_KEYS = {DOCKER_CONFIG_JSON: ".dockerconfigjson", DOCKER_CFG: ".dockercfg"}
DOCKER_HUB_KEY = "index.docker.io"


@dataclass(frozen=True, slots=True)
class Credential:
    """One registry login from a pull secret. ``password`` never appears in ``repr``."""

    key: str
    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    source: str = ""  # "namespace/secret", for messages


class SecretFormatError(ValueError):
    """A pull secret whose data the kubelet could not use; the message names the problem.

    ``fatal``: the kubelet fails to *parse* it, and then builds no keyring at all, so every
    pull of the pod fails, even of a public image (``MakeDockerKeyring`` returns the error
    before any pull). Not fatal: the kubelet skips it silently (the wrong type, no data key,
    an empty value) and pulls with the credentials it has, as for a missing secret.
    """

    def __init__(self, message: str, *, fatal: bool = True) -> None:
        super().__init__(message)
        self.fatal = fatal


#: The fields of the kubelet's ``dockerConfigEntryWithAuth``. Go's ``encoding/json`` matches
#: object keys to them case-insensitively (``"Auth"`` and ``"USERNAME"`` fill them as
#: ``"auth"`` and ``"username"`` do) and ignores every other key: ``identitytoken`` too, so
#: the kubelet never sends one, and neither may a prediction of its pull.
_ENTRY_FIELDS = ("username", "password", "email", "auth")


def parse_pull_secret(
    secret_type: str, data: Mapping[str, str], *, source: str = ""
) -> list[Credential]:
    """Credentials from a Secret's ``data`` (base64 values, as the API returns them), read
    the way the kubelet's ``MakeDockerKeyring`` reads them.

    Raises :class:`SecretFormatError`: not fatal for what the kubelet skips (the wrong type,
    no data key, an empty value), fatal for what it cannot parse (not JSON, ``auths`` or an
    entry of the wrong JSON type, a non-string field, an ``HttpHeaders`` that is not an
    object of strings, an ``auth`` that is not base64 of ``user:password``). The error
    text never contains secret material.
    """
    data_key = PULL_SECRET_KEYS.get(secret_type)
    if data_key is None:
        raise SecretFormatError(
            f"has type {secret_type!r}; a pull secret must be {DOCKER_CONFIG_JSON} or {DOCKER_CFG}",
            fatal=False,
        )
    encoded = data.get(data_key)
    if not encoded:
        what = "no" if encoded is None else "an empty"
        raise SecretFormatError(f"has type {secret_type} but {what} {data_key!r} key", fatal=False)
    try:
        raw = base64.b64decode(encoded, validate=True)
        # Go's decoder: bad UTF-8 becomes U+FFFD, and NaN or Infinity is not JSON.
        document = deepjson.loads(
            raw.decode("utf-8", errors="replace"),
            object_pairs_hook=_Pairs,
            parse_constant=_not_json,
        )
    except (binascii.Error, ValueError):
        raise SecretFormatError(f"key {data_key!r} is not valid base64-encoded JSON") from None
    if secret_type == DOCKER_CONFIG_JSON:
        if document is None:
            return []
        if not isinstance(document, _Pairs):
            raise SecretFormatError(f"key {data_key!r} holds JSON that is not an object")
        # The kubelet's DockerConfigJSON: {Auths DockerConfig `json:"auths"`; HTTPHeaders
        # map[string]string `json:"HttpHeaders"`}. Every key spelled "auths" in any case
        # fills the same map (Go merges into it); an "HttpHeaders" that is not an object of
        # strings fails json.Unmarshal, so MakeDockerKeyring fails and every pull does.
        auths = _Pairs()
        for name, value in document:
            if name.lower() == "httpheaders" and value is not None:
                _check_headers(value, data_key)
                continue
            if name.lower() != "auths" or value is None:
                continue
            if not isinstance(value, _Pairs):
                raise SecretFormatError(f'key {data_key!r} has an "auths" that is not an object')
            auths.extend(value)
    elif document is None:
        return []
    elif not isinstance(document, _Pairs):
        raise SecretFormatError(f"key {data_key!r} holds JSON that is not an object")
    else:
        auths = document
    entries: dict[str, Credential] = {}
    for key, entry in auths:
        # A repeated key: the last one wins, as in a Go map.
        entries.pop(key, None)
        entries[key] = _credential(key, entry, source)
    return list(entries.values())


def _check_headers(value: object, data_key: str) -> None:
    """``HttpHeaders`` as Go decodes it into ``map[string]string``: an object whose values
    are strings (or null); anything else is a secret the kubelet cannot parse."""
    if not isinstance(value, _Pairs):
        raise SecretFormatError(f'key {data_key!r} has an "HttpHeaders" that is not an object')
    if any(header is not None and not isinstance(header, str) for _, header in value):
        raise SecretFormatError(f'key {data_key!r} has an "HttpHeaders" value that is not a string')


def _not_json(word: str) -> object:
    raise ValueError(f"{word} is not JSON")


class _Pairs(list[tuple[str, object]]):
    """A JSON object as its (key, value) pairs, in order, repeats kept: Go's decoder sees
    every pair, and the rules for repeats and letter case need them all."""


def shown_key(key: str) -> str:
    """An entry's key as it may be shown: its keyring key (no scheme, user info, query or
    fragment), cut to a readable length."""
    shown = keyring_key(str(key))
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _credential(key: str, entry: object, source: str) -> Credential:
    if entry is None:
        return Credential(key=key, source=source)  # Go's decoder leaves a null entry empty
    if not isinstance(entry, _Pairs):
        raise SecretFormatError(f"entry {shown_key(key)!r} is not an object")
    fields: dict[str, str] = {}
    for name, value in entry:
        folded = name.lower()
        if folded not in _ENTRY_FIELDS or value is None:
            continue  # unknown keys are ignored; null leaves a field as it was
        if not isinstance(value, str):
            raise SecretFormatError(
                f'entry {shown_key(key)!r} has a "{folded}" that is not a string'
            )
        fields[folded] = value
    username, password = fields.get("username", ""), fields.get("password", "")
    auth = fields.get("auth", "")
    if auth:
        decoded = decode_auth(auth)
        if decoded is None:
            raise SecretFormatError(f'entry {shown_key(key)!r} has an "auth" that is not base64')
        user, colon, secret = decoded.partition(":")
        if not colon:
            raise SecretFormatError(
                f'entry {shown_key(key)!r} has an "auth" that is not user:password'
            )
        username, password = user, secret
    return Credential(
        key=key,
        username=username,
        password=password,
        source=source,
    )


def decode_auth(auth: str) -> str | None:
    """An entry's ``auth`` decoded as the kubelet decodes it, or ``None`` when it cannot be.

    Padded base64 when the value (spaces trimmed) ends in ``=``, else unpadded (Go's
    ``StdEncoding`` / ``RawStdEncoding``); both are strict about the alphabet and ignore only
    line breaks. So ``dXNlcjpwYXNzMQ`` and ``dXNlcjpwYXNzMQ==`` are both ``user:pass1``.
    """
    text = auth.replace("\r", "").replace("\n", "")
    if auth.strip().endswith("="):
        if len(text) % 4:
            return None
    else:
        if "=" in text or len(text) % 4 == 1:
            return None
        text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return None


UNPARSABLE_KEY = "(unparsable key)"

#: A ``%`` that does not start an escape of two hex digits: Go's ``url.Parse`` fails on it.
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _go_path(path: str) -> str | None:
    """``URL.Path`` as Go's ``url.Parse`` gives it: escapes decoded (``/te%61m`` is
    ``/team``); ``None`` where it fails on a bad escape."""
    if "%" not in path:
        return path
    if _BAD_ESCAPE.search(path):
        return None
    return unquote(path, errors="surrogateescape")


#: What Go's ``url.Parse`` refuses anywhere in a URL (``stringContainsCTLByte``).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _index_key(location: str) -> str | None:
    """The kubelet's index key, or ``None`` where ``url.Parse`` fails (``BasicDockerKeyring.Add``
    then skips the entry) or the key has no host (the kubelet indexes it, but it matches no
    image: skipping it predicts the same pulls, and nothing has to show an empty key).

    A password with ``/``, ``?`` or ``#`` (``https://robot:pa/ss@host``) ends the URL's
    authority early: Go's parser then reads ``robot:pa`` as host and port and refuses the
    key, so the kubelet ignores the entry. Such a key is refused here too: it matches no
    image, and no piece of it (``robot:pa``, ``ss@host``) is ever shown or exported (an
    ``@`` cannot be part of a registry's path: the reference grammar has none).
    """
    if _CONTROL.search(location):
        return None  # Go: "invalid control character in URL" (urlsplit would delete some)
    value = location if location.startswith(("https://", "http://")) else "https://" + location
    try:
        parsed = urlsplit(value)
        host = parsed.netloc.rpartition("@")[2]
    except ValueError:
        return None
    if not host:
        return None  # Go takes it, but a key with no host matches no image
    if "@" in value.partition("//")[2].partition(parsed.netloc)[2]:
        return None
    path = _go_path(parsed.path)
    if path is None:
        return None
    if path.startswith(("/v2/", "/v1/")):
        path = path[3:]
    return host + path if path and path != "/" else host


def keyring_key(location: str) -> str:
    """The kubelet's index key for a config entry: host[:port] plus path, the path decoded
    as Go decodes ``URL.Path``; no scheme, no ``/v1/``, and no user info (Go's
    ``url.URL.Host`` never includes it: matching a key that kept it would fail, and showing
    it would print a password)."""
    key = _index_key(location)
    return UNPARSABLE_KEY if key is None else key


def _split_target(target: str) -> tuple[str, str]:
    """(host[:port], /path) of a schemeless target or key."""
    host, slash, path = target.partition("/")
    return host, slash + path


def _split_url(hostport: str) -> tuple[str, str]:
    """The kubelet's ``splitURL``: ``net.SplitHostPort``, which fails without a port, and
    then the host is taken whole. So ``[2001:db8::1]:5000`` is ``2001:db8::1`` and port
    5000, but a portless ``[2001:db8::1]`` keeps its brackets, which ``filepath.Match``
    (and :func:`fnmatch.fnmatchcase`) reads as a character class: such a key matches no
    image, and the kubelet pulls anonymously. Stripping them would predict a pull with
    credentials the kubelet never sends."""
    name, port = split_host_port(hostport)
    if port and name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    return name, port


def url_matches(glob: str, target: str) -> bool:
    """The kubelet's ``URLsMatchStr``: same port, same label count, globbed labels, path
    prefix. It parses the key again (its path decoded once more, a bad escape: no match)."""
    glob_host, glob_path = _split_target(glob)
    target_host, target_path = _split_target(target)
    decoded = _go_path(glob_path)
    if decoded is None:
        return False
    glob_path = decoded
    glob_name, glob_port = _split_url(glob_host)
    target_name, target_port = _split_url(target_host)
    glob_labels, target_labels = glob_name.split("."), target_name.split(".")
    if glob_port != target_port or len(glob_labels) != len(target_labels):
        return False
    if not target_path.startswith(glob_path):
        return False
    return all(fnmatch.fnmatchcase(t, g) for g, t in zip(glob_labels, target_labels, strict=True))


def _is_default_registry(image_name: str) -> bool:
    first, slash, _ = image_name.partition("/")
    if not first:
        return False
    if not slash or first in ("docker.io", DOCKER_HUB_KEY):
        return True
    return not any(ch in first for ch in ".:")


def _index(credentials: Iterable[Credential]) -> tuple[dict[str, list[Credential]], list[str]]:
    """Each entry under its index key (an entry ``url.Parse`` refuses is skipped, as the
    kubelet does), and the keys most specific first."""
    by_key: dict[str, list[Credential]] = {}
    _add(by_key, credentials)
    return by_key, sorted(by_key, reverse=True)


def _add(by_key: dict[str, list[Credential]], credentials: Iterable[Credential]) -> list[str]:
    """``credentials`` into ``by_key`` under their index keys (``BasicDockerKeyring.Add``);
    the keys that are new."""
    new: list[str] = []
    for credential in credentials:
        key = _index_key(credential.key)
        if key is None:
            continue
        entries = by_key.get(key)
        if entries is None:
            entries = by_key[key] = []
            new.append(key)
        entries.append(credential)
    return new


def _match(
    by_key: Mapping[str, list[Credential]],
    matching: Iterable[str],
    image_name: str,
    rank: Mapping[str, int] | None = None,
) -> list[Credential]:
    """The kubelet's ``BasicDockerKeyring.Lookup``, given the keys that match ``image_name``
    (most specific first). ``rank``: only the credentials of these pull secrets
    (``namespace/name``), each key's in this order (the order the kubelet adds a pod's
    secrets in), as a keyring of those secrets alone would answer: the filter comes before
    the Docker Hub fallback, which a key held only by other secrets must not stop."""
    matched: list[Credential] = []
    for key in matching:
        matched.extend(_held(by_key[key], rank))
    if not matched and _is_default_registry(image_name):
        matched.extend(_held(by_key.get(DOCKER_HUB_KEY, []), rank))
    return matched


def _held(entries: list[Credential], rank: Mapping[str, int] | None) -> list[Credential]:
    """The entries of one key that ``rank``'s secrets hold, in its order (all: ``None``)."""
    if rank is None:
        return entries
    kept = [c for c in entries if c.source in rank]
    if len(kept) > 1:
        kept.sort(key=lambda c: rank[c.source])  # stable: each secret's entries in order
    return kept


class CredentialLookup(Protocol):
    """What gives an image the credentials the kubelet would try for it: a
    :class:`Keyring`, or one pod's share of a review's (:class:`HeldCredentials`)."""

    def lookup(self, image_name: str) -> list[Credential]: ...


class Keyring:
    """The kubelet's ``BasicDockerKeyring``, indexed as credentials are added and asked per
    image (:meth:`lookup`).

    One review builds one (``checks.SecretReads.keyring``) over every pull secret it reads:
    the pod as written (the mutation's questions), a default secret it may gain, the
    secrets its pods will hold (the ``pullSecrets`` check), a ServiceAccount's hidden ones.
    Each question names the secrets it is about (:meth:`held`, ``lookup(image, sources)``)
    and is answered as a keyring of those secrets alone would answer it. Which keys match
    an image is worked out once per image (the preview's, the check's and the registry's
    questions about it share it), and only for a key added since when one is."""

    __slots__ = ("_by_key", "_keys", "_matching")

    def __init__(self, credentials: Iterable[Credential] = ()) -> None:
        self._by_key: dict[str, list[Credential]] = {}
        self._keys: list[str] | None = None
        self._matching: dict[str, list[str]] = {}
        self.add(credentials)

    def add(self, credentials: Iterable[Credential]) -> None:
        """Index ``credentials`` too (``BasicDockerKeyring.Add``), after those it has."""
        new = _add(self._by_key, credentials)
        if not new:
            return
        self._keys = None
        for image_name, keys in self._matching.items():
            found = [k for k in new if url_matches(k, image_name)]
            if found:
                keys.extend(found)
                keys.sort(reverse=True)

    def _keys_matching(self, image_name: str) -> list[str]:
        keys = self._matching.get(image_name)
        if keys is None:
            if self._keys is None:
                self._keys = sorted(self._by_key, reverse=True)
            keys = self._matching[image_name] = [
                k for k in self._keys if url_matches(k, image_name)
            ]
        return keys

    def lookup(self, image_name: str, sources: Sequence[str] | None = None) -> list[Credential]:
        """The credentials the kubelet would try for ``image_name``
        (``docker.io/library/nginx``), most specific key first. Empty when no entry covers
        the image. ``sources``: only those of these pull secrets (``namespace/name``), in
        this order, the order a pod lists them in."""
        matching = self._keys_matching(image_name)
        if sources is None:
            return _match(self._by_key, matching, image_name)
        rank: dict[str, int] = {}
        for position, source in enumerate(sources):
            rank.setdefault(source, position)
        return _match(self._by_key, matching, image_name, rank)

    def held(self, credentials: Iterable[Credential]) -> HeldCredentials:
        """This keyring as a pod holding ``credentials`` (the parsed contents of its pull
        secrets, read into this keyring, in the pod's order) sees it: its lookups are
        answered from these secrets alone."""
        return HeldCredentials(self, tuple(dict.fromkeys(c.source for c in credentials)))


@dataclass(frozen=True, slots=True)
class HeldCredentials:
    """The pull secrets one pod holds (``sources``: ``namespace/name``, in its order), asked
    through a review's :class:`Keyring` (``None``: it holds none). Every credential of a
    source must be in the keyring (``SecretReads`` adds each secret it reads, once)."""

    keyring: Keyring | None = None
    sources: tuple[str, ...] = ()

    def lookup(self, image_name: str) -> list[Credential]:
        """The credentials the kubelet would try for ``image_name`` with these secrets."""
        if self.keyring is None or not self.sources:
            return []
        return self.keyring.lookup(image_name, self.sources)


def lookup(credentials: Iterable[Credential], image_name: str) -> list[Credential]:
    """The credentials the kubelet would try for ``image_name`` (``docker.io/library/nginx``),
    most specific key first (:meth:`Keyring.lookup`, for a one-off question)."""
    by_key, keys = _index(credentials)
    return _match(by_key, (k for k in keys if url_matches(k, image_name)), image_name)


def miss_reason(key: str, image_name: str) -> str:
    """Why the entry ``key`` does not cover ``image_name`` (``host[:port]/path``), in the
    kubelet's terms, so a denial can say what the pod's secret has instead of "no secret":
    the port must match (``registry.example.com`` never covers ``registry.example.com:5000``),
    a key's path is a prefix of the repository, and a glob covers one DNS label. An entry
    that misses on the port and on the path says both."""
    shown = shown_key(key)
    glob_host, glob_path = _split_target(keyring_key(key))
    target_host, target_path = _split_target(image_name)
    glob_name, glob_port = split_host_port(glob_host)
    target_name, target_port = split_host_port(target_host)
    same_name = url_matches(glob_name, target_name)
    path_misses = same_name and not target_path.startswith(glob_path)
    if same_name and glob_port != target_port:
        if not glob_port:
            said = f"entry {shown!r} has no port, and the kubelet matches the port ({target_port})"
        elif not target_port:
            said = f"entry {shown!r} is for port {glob_port}; the image names no port"
        else:
            said = f"entry {shown!r} is for port {glob_port}, not {target_port}"
        # Both reasons: an entry fixed for the port alone would still miss on the path.
        if path_misses:
            said += f"; and it covers only the path {glob_path}, not {target_path}"
        return said
    if path_misses:
        return f"entry {shown!r} covers only the path {glob_path}, not {target_path}"
    return f"entry {shown!r} is for another registry"


def covered_registries(credentials: Iterable[Credential]) -> list[str]:
    """The keys a set of credentials covers, as a person would read them, sorted."""
    return sorted({keyring_key(c.key) for c in credentials})


REDACTED_AUTH = base64.b64encode(b"redacted:redacted").decode()


def redacted_pull_secret(secret_type: str, data: Mapping[str, str]) -> dict[str, str]:
    """``data`` of a pull secret with every credential replaced, keeping what the checks
    match on: the entries' keys (host[:port] and path, never user info). A secret the
    kubelet cannot read stays unreadable (no data), so it is judged the same way."""
    try:
        credentials = parse_pull_secret(secret_type, data)
    except SecretFormatError as error:
        if not error.fatal or secret_type not in PULL_SECRET_KEYS:
            return {}
        # Still a document the kubelet cannot parse, and nothing of the original.
        broken = base64.b64encode(b'{"auths": "unreadable"}').decode()
        return {PULL_SECRET_KEYS[secret_type]: broken}
    entries = {keyring_key(c.key): {"auth": REDACTED_AUTH} for c in credentials}
    document = {"auths": entries} if secret_type == DOCKER_CONFIG_JSON else entries
    encoded = base64.b64encode(json.dumps(document, sort_keys=True).encode()).decode()
    return {PULL_SECRET_KEYS[secret_type]: encoded}
