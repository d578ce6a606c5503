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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

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
    """A pull secret whose data the kubelet could not read; the message names the problem."""


def parse_pull_secret(
    secret_type: str, data: Mapping[str, str], *, source: str = ""
) -> list[Credential]:
    """Credentials from a Secret's ``data`` (base64 values, as the API returns them).

    Raises :class:`SecretFormatError` for the wrong type, a missing key, bad base64 or JSON
    that the kubelet would not read. The error text never contains secret material.
    """
    data_key = PULL_SECRET_KEYS.get(secret_type)
    if data_key is None:
        raise SecretFormatError(
            f"has type {secret_type!r}; a pull secret must be {DOCKER_CONFIG_JSON} or {DOCKER_CFG}"
        )
    encoded = data.get(data_key)
    if encoded is None:
        raise SecretFormatError(f"has type {secret_type} but no {data_key!r} key")
    try:
        raw = base64.b64decode(encoded, validate=True)
        document = json.loads(raw)
    except (binascii.Error, ValueError):
        raise SecretFormatError(f"key {data_key!r} is not valid base64-encoded JSON") from None
    if not isinstance(document, dict):
        raise SecretFormatError(f"key {data_key!r} holds JSON that is not an object")
    if secret_type == DOCKER_CONFIG_JSON:
        auths = document.get("auths")
        if not isinstance(auths, dict):
            raise SecretFormatError(f'key {data_key!r} has no "auths" object')
    else:
        auths = document
    credentials = []
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            raise SecretFormatError(f"entry {shown_key(key)!r} is not an object")
        credentials.append(_credential(key, entry, source))
    return credentials


def shown_key(key: str) -> str:
    """An entry's key as it may be shown: its keyring key (no scheme, user info, query or
    fragment), cut to a readable length."""
    shown = keyring_key(str(key))
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _credential(key: str, entry: Mapping[str, object], source: str) -> Credential:
    username = str(entry.get("username") or "")
    password = str(entry.get("password") or "")
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise SecretFormatError(
                f'entry {shown_key(key)!r} has an "auth" that is not base64'
            ) from None
        user, colon, secret = decoded.partition(":")
        if not colon:
            raise SecretFormatError(
                f'entry {shown_key(key)!r} has an "auth" that is not user:password'
            )
        username, password = user, secret
    token = str(entry.get("identitytoken") or "")
    return Credential(
        key=key, username=username, password=password, identity_token=token, source=source
    )


UNPARSABLE_KEY = "(unparsable key)"


def keyring_key(location: str) -> str:
    """The kubelet's index key for a config entry: host[:port] plus path; no scheme, no
    ``/v1/``, and no user info (Go's ``url.URL.Host`` never includes it: matching a key that
    kept it would fail, and showing it would print a password).

    A password with ``/``, ``?`` or ``#`` (``https://robot:pa/ss@host``) ends the URL's
    authority early: Go's parser then reads ``robot:pa`` as host and port and refuses the
    key, so the kubelet ignores the entry. Such a key is :data:`UNPARSABLE_KEY` here too:
    it matches no image, and no piece of it (``robot:pa``, ``ss@host``) is ever shown or
    exported (an ``@`` cannot be part of a registry's path: the reference grammar has none).
    """
    value = location if location.startswith(("https://", "http://")) else "https://" + location
    try:
        parsed = urlsplit(value)
        host = parsed.netloc.rpartition("@")[2]
    except ValueError:
        return UNPARSABLE_KEY
    if "@" in value.partition("//")[2].partition(parsed.netloc)[2]:
        return UNPARSABLE_KEY
    path = parsed.path
    if path.startswith(("/v2/", "/v1/")):
        path = path[3:]
    return host + path if path and path != "/" else host


def _split_target(target: str) -> tuple[str, str]:
    """(host[:port], /path) of a schemeless target or key."""
    host, slash, path = target.partition("/")
    return host, slash + path


def url_matches(glob: str, target: str) -> bool:
    """The kubelet's ``URLsMatchStr``: same port, same label count, globbed labels, path prefix."""
    glob_host, glob_path = _split_target(glob)
    target_host, target_path = _split_target(target)
    glob_name, glob_port = split_host_port(glob_host)
    target_name, target_port = split_host_port(target_host)
    # The kubelet compares url.Hostname(), without an IPv6 address's brackets (which
    # fnmatch would also read as a character class).
    glob_name, target_name = glob_name.strip("[]"), target_name.strip("[]")
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


def lookup(credentials: Iterable[Credential], image_name: str) -> list[Credential]:
    """The credentials the kubelet would try for ``image_name`` (``docker.io/library/nginx``),
    most specific key first. Empty when no entry covers the image.
    """
    by_key: dict[str, list[Credential]] = {}
    for credential in credentials:
        by_key.setdefault(keyring_key(credential.key), []).append(credential)
    matched: list[Credential] = []
    for key in sorted(by_key, reverse=True):
        if url_matches(key, image_name):
            matched.extend(by_key[key])
    if not matched and _is_default_registry(image_name):
        matched.extend(by_key.get(DOCKER_HUB_KEY, []))
    return matched


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
    except SecretFormatError:
        return {}
    entries = {keyring_key(c.key): {"auth": REDACTED_AUTH} for c in credentials}
    document = {"auths": entries} if secret_type == DOCKER_CONFIG_JSON else entries
    encoded = base64.b64encode(json.dumps(document, sort_keys=True).encode()).decode()
    return {PULL_SECRET_KEYS[secret_type]: encoded}
