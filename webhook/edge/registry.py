"""The registry client: answers the core's :class:`~webhook.core.registry.RegistryView` over HTTP.

It asks what the kubelet will ask (``HEAD /v2/<name>/manifests/<reference>``) with the
credentials the core chose, follows the Bearer token flow (``WWW-Authenticate`` realm, service,
scope) and Basic auth, and classifies the answer. Rules it keeps, each tested against real
registries on loopback:

- **Addresses.** Every connection, including redirects and token realms, resolves the host
  once, refuses loopback, link-local, private and other internal addresses (IPv4-mapped,
  6to4 and Teredo unwrapped) unless the configuration allows the host, and connects to the
  very address it checked: there is no second resolution to race.
- **Credentials** go only to the registry asked and to the token realm it names; a redirect to
  another host carries none. Plain HTTP only for ``registry.insecureRegistries``.
- **Bounded.** One deadline per question covers connect, TLS, every read and the token
  exchange (a registry dripping its answer byte by byte is cut at the deadline); bodies are
  capped; at most :data:`MAX_REDIRECTS` redirects; at most :data:`MAX_FLIGHTS` questions in
  flight per process.
- **Polite.** HEAD for existence (a GET counts against Docker Hub's rate limit); a GET only for
  a manifest's platforms, by digest, once per process; positive answers cached for
  ``cacheTTLSeconds`` (by digest: for the process's life), keyed by registry, repository,
  reference and credential identity (a keyed hash, never the secret); concurrent admissions
  asking the same question share one flight; connections pooled, HTTP/2 where offered.
- **Never stale on a denial.** "Not found" and refusals are never cached: a not-found is
  re-asked before it is reported, so an image pushed a second ago is admitted.

It must not decide anything (that is the core's), log secret contents, or keep a response body
beyond what the answer needs.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpcore

from webhook.core.config import RegistrySettings
from webhook.core.hosts import any_host_matches, split_host_port, suggest_registry
from webhook.core.keyring import Credential
from webhook.core.registry import (
    ACCEPT,
    INDEX_TYPES,
    Answer,
    Outcome,
    Platform,
    Question,
    address_refusal,
    api_host,
    classify_status,
    clean_words,
    error_code,
    error_words,
    is_manifest,
    parse_challenge,
    platform_of_config,
    platforms_of_index,
)

log = logging.getLogger("pullguard.registry")

MAX_REDIRECTS = 3
MAX_FLIGHTS = 64
MAX_CACHE_ENTRIES = 10_000
ERROR_BODY_MAX = 64 * 1024
TOKEN_BODY_MAX = 64 * 1024
TAGS_BODY_MAX = 256 * 1024
MANIFEST_BODY_MAX = 4 * 1024 * 1024  # the distribution registry's own limit
CONFIG_BODY_MAX = 1024 * 1024
TOKEN_TTL_MAX = 300.0
USER_AGENT = "pullguard (admission check; HEAD only)"


# -- Connections: the address guard and the deadline ----------------------------------------


class AddressRefused(httpcore.ConnectError):
    """The host resolves only to addresses the configuration does not allow."""


class NameNotFound(httpcore.ConnectError):
    """The host's DNS name does not exist."""


class DeadlinePassed(httpcore.ReadTimeout):
    """The question's deadline passed (connect, TLS, reads and writes all count)."""


_current = threading.local()


def _remaining(timeout: float | None) -> float:
    """The smaller of ``timeout`` and what is left of the current question's deadline."""
    deadline: float | None = getattr(_current, "deadline", None)
    if deadline is None:
        return timeout if timeout is not None else 10.0
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlinePassed("deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A stream whose every operation ends by the current question's deadline, however the
    peer paces its bytes."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self.inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, _remaining(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, _remaining(timeout))

    def close(self) -> None:
        self.inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(
            self.inner.start_tls(ssl_context, server_hostname, _remaining(timeout))
        )

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses, in the system's order (one lookup)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class GuardedBackend(httpcore.NetworkBackend):
    """Resolves once, checks each address against the policy, connects to the one checked."""

    def __init__(
        self,
        allows_private: Callable[[str], bool],
        *,
        resolver: Resolver = system_resolver,
        inner: httpcore.NetworkBackend | None = None,
    ) -> None:
        self.allows_private = allows_private
        self.resolver = resolver
        self.inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        # httpcore passes an IPv6 host without its brackets; the allow list names it as
        # image references do (``[::1]:5000``), so the brackets go back on before matching.
        hostport = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            addresses = self.resolver(host, port)
        except socket.gaierror as error:
            if error.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
                raise NameNotFound(f"DNS name {host} not found") from None
            raise httpcore.ConnectError(f"DNS lookup of {host} failed: {error.strerror}") from None
        allowed = self.allows_private(hostport)
        refusals: list[str] = []
        last: Exception | None = None
        for address in addresses:
            refusal = None if allowed else address_refusal(address)
            if refusal is not None:
                refusals.append(f"{address} is {refusal}")
                continue
            try:
                stream = self.inner.connect_tcp(
                    address,
                    port,
                    timeout=_remaining(timeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last = error
                continue
            return _DeadlineStream(stream)
        if last is not None:
            raise last
        if refusals:
            raise AddressRefused(f"{host} resolves to {refusals[0]}")
        raise httpcore.ConnectError(f"{host} has no address")


def trust_context() -> ssl.SSLContext:
    """The system store plus the PEM bundle named by ``SSL_CERT_FILE`` (a private CA)."""
    context = ssl.create_default_context()
    default = ssl.get_default_verify_paths().openssl_cafile
    if default and Path(default).exists():
        context.load_verify_locations(cafile=default)
    extra = os.environ.get("SSL_CERT_FILE")
    if extra and Path(extra).exists():
        context.load_verify_locations(cafile=extra)
    return context


# -- HTTP with redirects under the rules ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes = b""


class Blocked(Exception):
    """A request the rules forbid (plain HTTP to a registry not listed as insecure...)."""


class _Http:
    """One pooled client; every request under the current question's deadline."""

    def __init__(
        self,
        settings: Callable[[], RegistrySettings],
        *,
        trusted_private: Callable[[], Iterable[str]] = tuple,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.trusted_private = trusted_private
        self.pool = httpcore.ConnectionPool(
            ssl_context=ssl_context or trust_context(),
            max_connections=200,
            max_keepalive_connections=50,
            keepalive_expiry=60,
            http1=True,
            http2=_has_h2(),
            retries=0,
            network_backend=GuardedBackend(self.allows_private, resolver=resolver),
        )

    def allows_private(self, hostport: str) -> bool:
        current = self.settings()
        if current.allow_private_networks:
            return True
        host, port = split_host_port(hostport)
        default_port = port in ("443", "80")
        patterns = [*current.allowed_private_registries, *self.trusted_private()]
        return any_host_matches(patterns, hostport) or (
            default_port and any_host_matches(patterns, host)
        )

    def scheme_for(self, hostport: str) -> str:
        insecure = self.settings().insecure_registries
        return "http" if any_host_matches(insecure, hostport) else "https"

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        *,
        max_body: int,
        credentials_host: str,
        form: Mapping[str, str] | None = None,
    ) -> Reply:
        """Send, following at most :data:`MAX_REDIRECTS` redirects. ``Authorization`` goes
        only to ``credentials_host``; each hop's scheme and address are checked again."""
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            hostport = parts.netloc.rpartition("@")[2]
            if parts.scheme not in ("https", "http"):
                raise Blocked(f"refused a {parts.scheme or 'schemeless'} URL")
            if parts.scheme == "http" and self.scheme_for(hostport) != "http":
                raise Blocked(f"refused plain HTTP to {hostport} (not an insecure registry)")
            sent = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            if hostport == credentials_host:
                sent.update({k: v for k, v in headers.items() if k.lower() == "authorization"})
            sent["User-Agent"] = USER_AGENT
            content = b""
            if form is not None:
                content = urlencode(form).encode()
                sent["Content-Type"] = "application/x-www-form-urlencoded"
            timeout = _remaining(None)
            with self.pool.stream(
                method,
                url,
                headers=list(sent.items()),
                content=content or None,
                extensions={
                    "timeout": {
                        "connect": timeout,
                        "read": timeout,
                        "write": timeout,
                        "pool": timeout,
                    }
                },
            ) as response:
                reply_headers = {
                    k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers
                }
                status = response.status
                location = reply_headers.get("location")
                if status in (301, 302, 303, 307, 308) and location:
                    url = urljoin(url, location)
                    if status == 303:
                        method, form = "GET", None
                    continue
                body = b""
                if method != "HEAD":
                    chunks: list[bytes] = []
                    size = 0
                    for chunk in response.iter_stream():
                        size += len(chunk)
                        if size > max_body:
                            raise Blocked(f"answer larger than {max_body} bytes")
                        chunks.append(chunk)
                    body = b"".join(chunks)
                return Reply(status, reply_headers, body)
        raise Blocked(f"more than {MAX_REDIRECTS} redirects")


def _has_h2() -> bool:
    try:
        import h2  # noqa: F401
    except ImportError:  # pragma: no cover - a dependency; HTTP/1.1 still works
        return False
    return True


# -- Asking one question ---------------------------------------------------------------------


def _basic(credential: Credential) -> str:
    raw = f"{credential.username}:{credential.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    expires: float


class _Asker:
    """The HTTP conversation for one question (its token cache is shared)."""

    def __init__(self, http: _Http, identity: Callable[[Credential | None], str]) -> None:
        self.http = http
        self.identity = identity
        self.tokens: dict[tuple[str, str, str, str], _Token] = {}
        self.tokens_lock = threading.Lock()
        # A digest names its content for good: its platforms (and whether they are one
        # image's own, not an index's) are learned once per process.
        self.platforms: collections.OrderedDict[
            tuple[str, str, str], tuple[tuple[Platform, ...], bool]
        ] = collections.OrderedDict()

    def base(self, registry: str) -> tuple[str, str]:
        host = api_host(registry)
        return f"{self.http.scheme_for(host)}://{host}", host

    def authorized_get(
        self,
        method: str,
        registry: str,
        repository: str,
        path: str,
        credential: Credential | None,
        *,
        accept: str = ACCEPT,
        max_body: int = ERROR_BODY_MAX,
    ) -> Reply:
        """``method`` on ``/v2/<repository>/<path>``, answering one auth challenge."""
        base, host = self.base(registry)
        url = f"{base}/v2/{repository}/{path}"
        scope = f"repository:{repository}:pull"
        headers = {"Accept": accept}
        token = self._cached_token(host, scope, credential)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        reply = self.http.request(method, url, headers, max_body=max_body, credentials_host=host)
        if reply.status != 401:
            return reply
        scheme, params = parse_challenge(reply.headers.get("www-authenticate", ""))
        if scheme == "bearer" and params.get("realm"):
            fetched = self._fetch_token(host, params, scope, credential)
            if fetched is None:
                return reply
            if isinstance(fetched, Reply):
                return fetched  # the realm itself refused: that is the answer
            headers["Authorization"] = f"Bearer {fetched}"
        elif scheme == "basic" and credential is not None:
            headers["Authorization"] = _basic(credential)
        else:
            return reply
        return self.http.request(method, url, headers, max_body=max_body, credentials_host=host)

    def _token_key(
        self, host: str, scope: str, credential: Credential | None
    ) -> tuple[str, str, str, str]:
        return (host, scope, self.identity(credential), "")

    def _cached_token(self, host: str, scope: str, credential: Credential | None) -> str | None:
        with self.tokens_lock:
            token = self.tokens.get(self._token_key(host, scope, credential))
        if token is None or token.expires <= time.monotonic():
            return None
        return token.value

    def _fetch_token(
        self, host: str, params: Mapping[str, str], scope: str, credential: Credential | None
    ) -> str | Reply | None:
        realm = params["realm"]
        query = {"scope": params.get("scope") or scope}
        if params.get("service"):
            query["service"] = params["service"]
        realm_host = urlsplit(realm).netloc.rpartition("@")[2]
        headers: dict[str, str] = {}
        form = None
        method = "GET"
        if credential is not None and credential.identity_token:
            method = "POST"
            form = {
                "grant_type": "refresh_token",
                "refresh_token": credential.identity_token,
                "client_id": "pullguard",
                **query,
            }
            url = realm
        else:
            if credential is not None:
                headers["Authorization"] = _basic(credential)
            url = realm + ("&" if "?" in realm else "?") + urlencode(query)
        reply = self.http.request(
            method,
            url,
            headers,
            form=form,
            max_body=TOKEN_BODY_MAX,
            credentials_host=realm_host,
        )
        if reply.status in (401, 403):
            return reply
        if reply.status != 200:
            return None
        try:
            document = json.loads(reply.body)
            token = document.get("token") or document.get("access_token")
            lifetime = float(document.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            return None
        if not isinstance(token, str) or not token:
            return None
        expires = time.monotonic() + max(0.0, min(lifetime, TOKEN_TTL_MAX) - 5)
        with self.tokens_lock:
            if len(self.tokens) > MAX_CACHE_ENTRIES:
                self.tokens.clear()
            self.tokens[self._token_key(host, scope, credential)] = _Token(token, expires)
        return token

    # -- the question ------------------------------------------------------------------

    def answer(self, question: Question, known: Sequence[str]) -> Answer:
        candidates: list[Credential | None] = list(question.credentials) or [None]
        tried: list[str] = []
        answer = Answer(Outcome.NOT_ASKED, "no credential was tried")
        used: Credential | None = None  # the credential the final answer was given to
        for credential in candidates:
            used = credential
            if credential is not None:
                tried.append(credential.source or "(a pull secret)")
            answer = self._head(question, credential, known)
            answer = replace(answer, tried=tuple(tried))
            if answer.outcome is not Outcome.UNAUTHORIZED:
                break
        if answer.outcome is Outcome.NOT_FOUND:
            # Registries are eventually consistent and pipelines push then deploy within
            # seconds: ask again before the answer may deny.
            again = replace(self._head(question, used, known), tried=tuple(tried))
            if again.outcome is not Outcome.NOT_FOUND:
                return again
            answer = self._repository_facts(question, used, again)
        if answer.outcome is Outcome.REGISTRY_ERROR and question.by_digest:
            answer = self._blob_instead(question, used, answer)
        if answer.outcome is Outcome.FOUND and question.platforms:
            answer = self._platforms(question, used, answer)
        return answer

    def _blob_instead(
        self, question: Question, credential: Credential | None, answer: Answer
    ) -> Answer:
        """A digest that names a blob (a layer, or the config: an "image ID") instead of a
        manifest: distribution answers the manifest HEAD with 500, and the runtime falls
        back to ``blobs/`` and fails on the media type. Only a blob that is certainly no
        manifest (read, at most CONFIG_BODY_MAX bytes) changes the answer."""
        if answer.detail != "HTTP 500":
            return answer
        try:
            blob = self.authorized_get(
                "GET",
                question.registry,
                question.repository,
                f"blobs/{question.reference}",
                credential,
                accept="*/*",
                max_body=CONFIG_BODY_MAX,
            )
        except Exception:
            return answer
        if blob.status != 200 or is_manifest(blob.body):
            return answer
        return replace(answer, outcome=Outcome.NOT_A_MANIFEST, detail="a blob, not a manifest")

    def _head(
        self, question: Question, credential: Credential | None, known: Sequence[str]
    ) -> Answer:
        try:
            reply = self.authorized_get(
                "HEAD",
                question.registry,
                question.repository,
                f"manifests/{question.reference}",
                credential,
            )
        except Exception as error:  # every failure becomes an answer, never a crash
            return _failure(error, question.registry, known)
        outcome = classify_status(reply.status)
        detail = f"HTTP {reply.status}"
        return Answer(
            outcome,
            detail,
            registry_says=_header_words(reply),
            ratelimit_remaining=clean_words(reply.headers.get("ratelimit-remaining", ""), 40),
            digest=clean_words(reply.headers.get("docker-content-digest", ""), 100),
        )

    def _repository_facts(
        self, question: Question, credential: Credential | None, answer: Answer
    ) -> Answer:
        """Does the repository exist (the tag does not)? Its tags list says, without
        touching a manifest."""
        try:
            reply = self.authorized_get(
                "GET",
                question.registry,
                question.repository,
                "tags/list?n=100",
                credential,
                accept="application/json",
                max_body=TAGS_BODY_MAX,
            )
        except Exception:
            return answer
        if reply.status == 200:
            try:
                tags = json.loads(reply.body).get("tags") or []
            except (ValueError, AttributeError):
                tags = []
            cleaned = tuple(clean_words(str(t), 128) for t in tags if isinstance(t, str))[:100]
            return replace(answer, repository_exists=True, tags=cleaned)
        if reply.status == 404 and error_code(reply.body) == "NAME_UNKNOWN":
            return replace(answer, repository_exists=False, registry_says=error_words(reply.body))
        return answer

    def _platforms(
        self, question: Question, credential: Credential | None, answer: Answer
    ) -> Answer:
        reference = answer.digest or question.reference
        key = (question.registry, question.repository, reference)
        with self.tokens_lock:
            known = self.platforms.get(key) if ":" in reference else None
        if known is not None:
            return replace(answer, platforms=known[0], platforms_note="", single_image=known[1])
        learned = self._learn_platforms(question, credential, answer, reference)
        if learned.platforms and ":" in reference:
            with self.tokens_lock:
                self.platforms[key] = (learned.platforms, learned.single_image)
                while len(self.platforms) > MAX_CACHE_ENTRIES:
                    self.platforms.popitem(last=False)
        return learned

    def _learn_platforms(
        self, question: Question, credential: Credential | None, answer: Answer, reference: str
    ) -> Answer:
        try:
            manifest = self.authorized_get(
                "GET",
                question.registry,
                question.repository,
                f"manifests/{reference}",
                credential,
                max_body=MANIFEST_BODY_MAX,
            )
            if manifest.status != 200:
                return replace(answer, platforms_note=f"manifest GET answered {manifest.status}")
            document = json.loads(manifest.body)
            media = document.get("mediaType") or manifest.headers.get("content-type", "")
            if media in INDEX_TYPES or "manifests" in document:
                return replace(answer, platforms=platforms_of_index(document), platforms_note="")
            config_digest = (document.get("config") or {}).get("digest")
            if not isinstance(config_digest, str):
                return replace(answer, platforms_note="the manifest names no config")
            blob = self.authorized_get(
                "GET",
                question.registry,
                question.repository,
                f"blobs/{config_digest}",
                credential,
                accept="*/*",
                max_body=CONFIG_BODY_MAX,
            )
            if blob.status != 200:
                return replace(answer, platforms_note=f"config GET answered {blob.status}")
            platform = platform_of_config(json.loads(blob.body))
        except Exception as error:
            return replace(answer, platforms_note=f"platforms unknown: {type(error).__name__}")
        if platform is None:
            return replace(answer, platforms_note="the image config names no platform")
        return replace(answer, platforms=(platform,), platforms_note="", single_image=True)


def _header_words(reply: Reply) -> str:
    """What a HEAD answer says in words: HEAD has no body, so only an auth error's header."""
    challenge = reply.headers.get("www-authenticate", "")
    if reply.status in (401, 403) and "error=" in challenge:
        _, params = parse_challenge(challenge)
        return clean_words(params.get("error", ""), 60)
    return ""


def _failure(error: Exception, registry: str, known: Sequence[str]) -> Answer:
    """An exception from the conversation, as an answer a user can act on."""
    if isinstance(error, AddressRefused):
        return Answer(
            Outcome.NOT_ASKED,
            f"{error}; pullguard does not contact internal addresses unless "
            "registry.allowedPrivateRegistries lists the registry",
        )
    if isinstance(error, Blocked):
        return Answer(Outcome.REGISTRY_ERROR, clean_words(str(error)))
    if isinstance(error, NameNotFound):
        host = split_host_port(api_host(registry))[0]
        return Answer(
            Outcome.UNREACHABLE,
            f"DNS name {host} not found",
            suggestion=suggest_registry(registry, known) or "",
        )
    if isinstance(error, DeadlinePassed | httpcore.TimeoutException):
        return Answer(Outcome.UNREACHABLE, "timed out")
    cause = error.__cause__ or error.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = cause.verify_message or "certificate verify failed"
        return Answer(Outcome.UNREACHABLE, f"TLS failure: {clean_words(reason, 100)}")
    if isinstance(cause, ssl.SSLError) or "SSL" in type(cause).__name__:
        return Answer(Outcome.UNREACHABLE, f"TLS failure: {clean_words(str(cause), 100)}")
    if isinstance(cause, ConnectionRefusedError):
        return Answer(Outcome.UNREACHABLE, "connection refused")
    if isinstance(error, httpcore.ConnectError):
        return Answer(Outcome.UNREACHABLE, f"connection failed: {clean_words(str(error), 100)}")
    if isinstance(error, httpcore.ProtocolError | httpcore.ReadError | httpcore.WriteError):
        return Answer(Outcome.REGISTRY_ERROR, f"broken answer: {type(error).__name__}")
    return Answer(Outcome.REGISTRY_ERROR, f"unexpected error: {type(error).__name__}")


# -- The view: cache, flights, budget ------------------------------------------------------


class _Flight:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.answer: Answer | None = None


Observer = Callable[[Question, Answer, float], None]


class HttpRegistry:
    """The core's RegistryView over HTTP. Thread-safe; under gevent each flight is a greenlet."""

    def __init__(
        self,
        settings: Callable[[], RegistrySettings],
        *,
        known_registries: Callable[[], Sequence[str]] = list,
        trusted_private: Callable[[], Iterable[str]] = tuple,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
        observe: Observer | None = None,
        on_cache: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.known_registries = known_registries
        self.http = _Http(
            settings, trusted_private=trusted_private, resolver=resolver, ssl_context=ssl_context
        )
        self._key = secrets.token_bytes(32)
        self.asker = _Asker(self.http, self.identity)
        self.observe = observe
        self.on_cache = on_cache
        self.clock = clock
        self.cache: collections.OrderedDict[tuple[Any, ...], tuple[Answer, float]] = (
            collections.OrderedDict()
        )
        self.flights: dict[tuple[Any, ...], _Flight] = {}
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(MAX_FLIGHTS)

    def identity(self, credential: Credential | None) -> str:
        """A keyed hash of a credential: equal logins share cache entries and tokens, and
        nothing stored can be turned back into the password."""
        if credential is None:
            return ""
        material = "\0".join(
            [credential.username, credential.password, credential.identity_token]
        ).encode()
        return hmac.new(self._key, material, hashlib.sha256).hexdigest()[:32]

    def key(self, question: Question) -> tuple[Any, ...]:
        return (
            question.registry,
            question.repository,
            question.reference,
            tuple(self.identity(c) for c in question.credentials),
            question.platforms,
        )

    def _cached(self, key: tuple[Any, ...]) -> Answer | None:
        entry = self.cache.get(key)
        if entry is None:
            return None
        answer, expires = entry
        if expires < self.clock():
            del self.cache[key]
            return None
        self.cache.move_to_end(key)
        return replace(answer, cached=True)

    def _remember(self, key: tuple[Any, ...], question: Question, answer: Answer) -> None:
        if answer.outcome is not Outcome.FOUND:
            return  # only positive answers are reused; a denial always rests on a live one
        ttl = self.settings().cache_ttl_seconds
        if question.by_digest:
            expires = float("inf")
        elif ttl <= 0:
            return
        else:
            expires = self.clock() + ttl
        self.cache[key] = (answer, expires)
        self.cache.move_to_end(key)
        while len(self.cache) > MAX_CACHE_ENTRIES:
            self.cache.popitem(last=False)

    def ask(self, questions: Sequence[Question], budget: float) -> Mapping[Question, Answer]:
        deadline = time.monotonic() + budget
        answers: dict[Question, Answer] = {}
        waiting: dict[Question, _Flight] = {}
        with self.lock:
            for question in questions:
                key = self.key(question)
                cached = self._cached(key)
                if cached is not None:
                    answers[question] = cached
                    continue
                flight = self.flights.get(key)
                if flight is None:
                    if not self.slots.acquire(blocking=False):
                        answers[question] = Answer(
                            Outcome.NOT_ASKED, "too many registry questions in flight"
                        )
                        continue
                    flight = self.flights[key] = _Flight()
                    threading.Thread(
                        target=self._fly,
                        args=(key, question, flight, deadline),
                        name="registry-flight",
                        daemon=True,
                    ).start()
                waiting[question] = flight
        if self.on_cache is not None:
            for question in questions:
                self.on_cache(question in answers and answers[question].cached)
        for question, flight in waiting.items():
            left = deadline - time.monotonic()
            if left > 0:
                flight.done.wait(left)
            answers[question] = flight.answer or Answer(
                Outcome.NOT_ASKED, f"no answer within {budget:g} s (registry.timeoutSeconds)"
            )
        return answers

    def _fly(
        self, key: tuple[Any, ...], question: Question, flight: _Flight, deadline: float
    ) -> None:
        started = time.monotonic()
        _current.deadline = deadline
        try:
            answer = self.asker.answer(question, list(self.known_registries()))
        except Exception as error:  # never let a flight die without an answer
            answer = Answer(Outcome.REGISTRY_ERROR, f"unexpected error: {type(error).__name__}")
            log.exception("registry question failed: %s", question.image[:200])
        finally:
            _current.deadline = None
        elapsed = time.monotonic() - started
        with self.lock:
            self._remember(key, question, answer)
            flight.answer = answer
            self.flights.pop(key, None)
        flight.done.set()
        self.slots.release()
        log.info(
            "registry %s outcome=%s detail=%r tried=%s ms=%d",
            question.image[:300],
            answer.outcome.value,
            answer.detail[:200],
            ",".join(answer.tried) or "anonymous",
            elapsed * 1000,
        )
        if self.observe is not None:
            self.observe(question, answer, elapsed)

    def probe(self, hostport: str, timeout: float) -> bool:
        """Does a registry (a mirror) answer its ``/v2/`` probe? 200 or 401 mean it is up."""
        _current.deadline = time.monotonic() + timeout
        try:
            url = f"{self.http.scheme_for(hostport)}://{hostport}/v2/"
            reply = self.http.request("GET", url, {}, max_body=ERROR_BODY_MAX, credentials_host="")
        except Exception as error:
            log.info("mirror %s probe failed: %s", hostport, type(error).__name__)
            return False
        finally:
            _current.deadline = None
        return reply.status in (200, 401)

    def close(self) -> None:
        self.http.pool.close()


__all__ = [
    "AddressRefused",
    "GuardedBackend",
    "HttpRegistry",
    "NameNotFound",
    "Platform",
    "system_resolver",
    "trust_context",
]
