"""The registry client: answers the core's :class:`~webhook.core.registry.RegistryView` over HTTP.

It asks what the kubelet will ask (``HEAD /v2/<name>/manifests/<reference>``) with the
credentials the core chose, follows the Bearer token flow (``WWW-Authenticate`` realm, service,
scope) and Basic auth, and classifies the answer. Rules it keeps, each tested against real
registries on loopback:

- **Addresses.** Every connection, including redirects and token realms, resolves the host
  once, refuses loopback, link-local, private, site-local and other internal addresses (every
  IPv6 form with an IPv4 address inside, NAT64 included, judged by the IPv4 rules: see
  :func:`~webhook.core.registry.address_refusal`) unless the configuration allows the host,
  and connects to the very address it checked: there is no second resolution to race. The
  rules in force judge every request: pooled connections serve only requests made under the
  rules they were opened under (:class:`_Http`), so narrowing the configuration applies to
  the next request, not a minute later.
- **Credentials** answer a challenge only from the host they are for: a registry redirecting
  a manifest, tag list or blob to another host that challenges with a realm of its choosing
  gets no password sent there; the conversation goes on anonymously (issue 20, item 1). A
  redirect to another host carries no ``Authorization``. Plain HTTP only for
  ``registry.insecureRegistries``.
- **Bounded in time.** One deadline per question covers DNS (run where it can be abandoned:
  :class:`Lookups`), connect, TLS, every read and the token exchange (a registry dripping its
  answer byte by byte is cut at the deadline); bodies are capped; at most
  :data:`MAX_REDIRECTS` redirects.
- **Fair.** At most :data:`MAX_FLIGHTS` questions in flight per process and
  :data:`FLIGHTS_PER_TENANT` per namespace, each slot free again at its question's deadline;
  a namespace holding none gets one unless :data:`MAX_FLIGHTS` other namespaces hold one each
  (the newest question of the namespace holding the most is stopped for it,
  :meth:`HttpRegistry._first_flight`), and within a namespace a review holding none gets one
  the same way unless its 32 are held by 32 reviews (:meth:`HttpRegistry._newer_review`:
  forged reviews naming a namespace held its slots, rev20d F7); DNS lookups, which cannot
  be stopped, bounded in native threads (:data:`MAX_LOOKUP_THREADS`), a namespace holding
  none getting one unless :data:`FIRST_LOOKUPS` other namespaces hold one each
  (:class:`Lookups`); every refusal counted (issue 20, item 4: names that never answer held
  every slot for a minute, and other tenants' pods were admitted unchecked).
- **Bounded in memory.** Answers, tokens and platforms live in caches with a byte budget, of
  which one registry fills at most a quarter (:class:`BudgetCache`); platforms are short
  identifiers, cached under the digest of the bytes received (issue 20, item 3: 64 KiB tokens
  and megabyte platform names grew a worker past its memory limit). Answer bodies in flight
  are bounded per process and per namespace past each one's first 64 KiB
  (:class:`BodyBudget`; rev20d F5: 128 questions of 4 MiB manifests held at once).
- **Registry text is data.** Every text of an answer is cleaned to printable ASCII here
  (:func:`clean_answer`), before it can reach a warning, denial, Event or CLI output
  (issue 20, item 9).
- **Polite.** HEAD for existence (a GET of a manifest counts as a pull on Docker Hub); the
  platform check GETs a manifest only by digest and once per digest per process, whatever
  the tag or repository (blob GETs are not pulls), and never past the share of the
  registry's announced pull quota (``ratelimit-remaining``) that
  ``registry.pullQuotaReservePercent`` leaves it, one namespace a quarter of that per window
  (:class:`PullQuota`; rev20d F4: one namespace's dry runs spent the nodes' pulls);
  connections pooled.
- **Fresh.** A positive answer admits for ``cacheTTLSeconds`` after it was asked, by tag and
  by digest alike (issue 21, item 5: the runtime resolves the reference on every pull, so a
  manifest deleted after pullguard saw it fails the next pull, and an answer kept for the
  process's life admitted such pods until a restart); keyed by registry, repository,
  reference and credential identity (a keyed hash, never the secret); concurrent admissions
  asking the same question share one flight, whatever the window.
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
import ipaddress
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
from typing import Any, Generic, TypeVar
from urllib.parse import urlencode, urljoin, urlsplit

import httpcore

from webhook.core import deepjson
from webhook.core.config import RegistrySettings
from webhook.core.hosts import any_host_matches, split_host_port, suggest_registry
from webhook.core.keyring import Credential
from webhook.core.nodecreds import provider_of
from webhook.core.registry import (
    ACCEPT,
    DEFINITE,
    INDEX_TYPES,
    MIRROR_PROBE_TENANT,
    Answer,
    Outcome,
    Platform,
    PlatformError,
    Question,
    address_refusal,
    api_host,
    classify_status,
    clean_words,
    digest_matches,
    digest_of,
    error_code,
    error_words,
    is_digest,
    is_manifest,
    parse_challenge,
    platform_of_config,
    platforms_of_index,
    registry_host,
    tenant_key,
)

log = logging.getLogger("pullguard.registry")

MAX_REDIRECTS = 3
#: Registry questions in flight per process, and the share one namespace may hold: a
#: namespace's pods (32 images each at most) cannot take the slots the others need.
MAX_FLIGHTS = 128
FLIGHTS_PER_TENANT = 32
#: The last slots of the pool: shared among the namespaces holding slots, each at most its
#: part of it (the reserve divided by their number), so namespaces that hold their 32 cannot
#: take them, and four namespaces together cannot take the whole pool (ten could: a
#: namespace's first question is therefore not bound by it, see HttpRegistry._first_flight).
FLIGHTS_RESERVE = 32
#: Flights stopped for a namespace holding none (:meth:`HttpRegistry._first_flight`) whose
#: threads have not ended yet (each ends by its deadline); past this none is stopped.
MAX_STOPPED = 32
#: DNS lookups outstanding per process and per namespace. A lookup that does not answer is
#: abandoned at the question's deadline but keeps its place (a native thread) until the
#: resolver gives up: 20 s for glibc's defaults and one nameserver that never answers, more
#: with more nameservers. Its last :data:`LOOKUPS_RESERVE` are shared as the flights' reserve
#: is, so namespaces of hanging names cost those namespaces only.
MAX_LOOKUPS = 64
LOOKUPS_PER_TENANT = 16
LOOKUPS_RESERVE = 16
#: Lookups a namespace holding none may start beyond the rules above (its first): a lookup
#: cannot be stopped, so instead of preempting one (as the flights do) the pool grows, each
#: namespace by one at most. A namespace holding no lookup gets one unless this many other
#: namespaces hold one each (:meth:`Lookups._refused`), the flights' guarantee.
FIRST_LOOKUPS = MAX_FLIGHTS
#: The hard bound on native lookup threads per process (192 threads blocked in
#: ``getaddrinfo`` cost 6 MiB of RSS, measured).
MAX_LOOKUP_THREADS = MAX_LOOKUPS + FIRST_LOOKUPS
MAX_CACHE_ENTRIES = 10_000
#: Byte budgets of the caches, and the share of each one registry may fill (issue 20,
#: item 3: an attacker's registry filled a worker with 64 KiB tokens and megabyte platforms).
ANSWER_CACHE_BYTES = 8 * 1024 * 1024
TOKEN_CACHE_BYTES = 8 * 1024 * 1024
PLATFORM_CACHE_BYTES = 2 * 1024 * 1024
REGISTRY_SHARE = 4  # one registry may fill a quarter of a cache
ERROR_BODY_MAX = 64 * 1024
TOKEN_BODY_MAX = 64 * 1024
TAGS_BODY_MAX = 256 * 1024
MANIFEST_BODY_MAX = 4 * 1024 * 1024  # the distribution registry's own limit
CONFIG_BODY_MAX = 1024 * 1024
#: Registry answer bodies in flight per process (issue 20, item 3; rev20d F5: 4 x 32
#: questions answered with 4 MiB manifests whose last byte was held back raised a process's
#: RSS by 235 to 303 MiB, every body bounded per question only). The first
#: :data:`BODY_FREE_BYTES` of each body are every question's own (real manifests, configs,
#: tokens and error bodies are smaller): at most ``(MAX_FLIGHTS + MAX_STOPPED)`` x 64 KiB,
#: 10 MiB. What a body holds past that is reserved, before it is read, from
#: :data:`BODY_BUDGET_BYTES`, of which a namespace holds at most
#: :data:`BODY_BYTES_PER_TENANT`, and the last :data:`BODY_BYTES_RESERVE` are shared as the
#: slots' reserve is (:meth:`BodyBudget._refused`).
BODY_FREE_BYTES = 64 * 1024
BODY_BUDGET_BYTES = 32 * 1024 * 1024
BODY_BYTES_PER_TENANT = 8 * 1024 * 1024
BODY_BYTES_RESERVE = 8 * 1024 * 1024
TOKEN_TTL_MAX = 300.0
#: Pull quotas (rev20d F4): one namespace may spend at most this fraction of the pulls a
#: registry's quota leaves pullguard (what ``registry.pullQuotaReservePercent`` does not keep
#: for the nodes) per the quota's window; a lower ``ratelimit-remaining`` is believed at
#: once, a higher one (the window moved on) once the last lower one is this old.
PULL_SHARE_PER_NAMESPACE = 4
PULL_QUOTA_FRESH_SECONDS = 30.0
PULL_QUOTA_WINDOW_SECONDS = 21600.0  # Docker Hub's: 6 h, when the header names none
PULL_QUOTA_ENTRIES = 4096
USER_AGENT = "pullguard (admission check; HEAD only)"


# -- Connections: the address guard and the deadline ----------------------------------------


class AddressRefused(httpcore.ConnectError):
    """The host resolves only to addresses the configuration does not allow."""


class NameNotFound(httpcore.ConnectError):
    """The host's DNS name does not exist."""


class DeadlinePassed(httpcore.ReadTimeout):
    """The question's deadline passed (DNS, connect, TLS, reads and writes all count)."""


class CapacityRefused(Exception):
    """Not asked: the process's or the namespace's share of slots or lookups is in use."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_current = threading.local()


def _unsettled() -> None:
    """The current question's answer rests on something that passes (a deadline, a budget,
    a registry error): its flight does not cache it (:meth:`HttpRegistry._remember`)."""
    _current.unsettled = True


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


def _blocking_getaddrinfo() -> Callable[..., Any]:
    """The C library's ``getaddrinfo``, also under gevent (whose patched one would run in
    the hub's small thread pool, where hanging lookups queue the others behind them)."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return socket.getaddrinfo
    if monkey.is_module_patched("socket"):
        return monkey.get_original("socket", "getaddrinfo")  # type: ignore[no-any-return]
    return socket.getaddrinfo


def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses, in the system's order (one lookup; it may block for as long
    as the system resolver retries: :class:`Lookups` runs it where it can be abandoned)."""
    infos = _blocking_getaddrinfo()(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


class _Lookup:
    """One lookup in its own native thread; waiters wait for it until their deadline."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.addresses: list[str] | None = None
        self.error: BaseException | None = None
        self.wait: Callable[[float], bool] = lambda timeout: False


class Lookups:
    """DNS under the question's deadline (issue 20, item 4: names whose nameservers never
    answer held every registry slot for a minute). Each lookup runs in a native thread
    (gevent's pool of real threads under gevent, a daemon thread otherwise) and is waited for
    only until the deadline; lookups of one host share one; at most :data:`LOOKUPS_PER_TENANT`
    are outstanding per namespace, counted until the resolver really returns.

    A lookup cannot be stopped (the C library's ``getaddrinfo`` has no cancel), so the pool is
    fair without preempting anything:

    - The first :data:`MAX_LOOKUPS` are shared, their last :data:`LOOKUPS_RESERVE` a reserve:
      once the rest is in use, a namespace already holding lookups may hold only the reserve
      divided by the namespaces holding lookups (itself counted). Three namespaces of 32
      never-answering names had held every lookup (3 x 16) long past their deadlines.
    - A namespace holding none may start one whatever those rules say, as long as fewer than
      :data:`MAX_LOOKUP_THREADS` are outstanding. Eleven namespaces of hanging names had held
      all 64 (16 + 16 + 16 + 4 + 3 + 2 + 2 + 2 + 1 + 1 + 1), and another namespace's registry
      named by host name was "not asked" until the resolver gave up.

    What is guaranteed: **a namespace holding no lookup gets one unless**
    :data:`FIRST_LOOKUPS` **other namespaces hold one each**. A lookup started for a namespace
    holding some needs fewer than :data:`MAX_LOOKUPS` outstanding, so at most that many are
    such; a namespace holds at most one started while it held none (it holds that one until
    it returns); so when all :data:`MAX_LOOKUP_THREADS` are outstanding, at least
    :data:`FIRST_LOOKUPS` of them are different namespaces' firsts. The threads stay bounded:
    at most :data:`MAX_LOOKUP_THREADS` per process."""

    def __init__(self, resolver: Resolver, on_refused: Callable[[str], None] | None = None) -> None:
        self.resolver = resolver
        self.on_refused = on_refused
        self.lock = threading.Lock()
        self.running: dict[tuple[str, int], _Lookup] = {}
        self.by_tenant: collections.Counter[str] = collections.Counter()
        self._pool: Any = None  # a gevent ThreadPool (empty ones are falsy: test for None)
        self._pool_checked = False

    def outstanding(self) -> int:
        with self.lock:
            return len(self.running)

    def __call__(self, host: str, port: int) -> list[str]:
        if _is_address(host):
            return self.resolver(host, port)  # a literal: nothing to look up, nothing waits
        tenant: str = getattr(_current, "tenant", "")
        key = (host, port)
        with self.lock:
            job = self.running.get(key)
            if job is None:
                refusal = self._refused(tenant)
                if refusal is not None:
                    if self.on_refused is not None:
                        self.on_refused("dns")
                    raise CapacityRefused("dns", refusal)
                job = self.running[key] = _Lookup(tenant)
                self.by_tenant[tenant] += 1
                self._start(key, job)  # never blocks: the pool has a thread for each
        if not job.wait(_remaining(None)):
            raise DeadlinePassed(f"DNS lookup of {host} did not answer in time")
        if job.error is not None:
            raise job.error
        return list(job.addresses or [])

    def _refused(self, tenant: str) -> str | None:
        """Why ``tenant`` may not start another lookup now, or ``None`` when it may (the lock
        is held). The rules and the guarantee they give: :class:`Lookups`."""
        held_here, held = self.by_tenant[tenant], len(self.running)
        if held_here == 0:  # its first: beyond the shared rules, up to the thread bound
            if held < MAX_LOOKUP_THREADS:
                return None
            return (
                f"too many DNS lookups outstanding (all {MAX_LOOKUP_THREADS} of this process "
                f"are held, at least {FIRST_LOOKUPS} of them by as many other namespaces, one "
                "each; a lookup cannot be stopped); the names asked for do not answer"
            )
        if held_here < LOOKUPS_PER_TENANT and held < MAX_LOOKUPS - LOOKUPS_RESERVE:
            return None
        active = len(self.by_tenant)  # held_here > 0: it is counted
        if (
            held_here < LOOKUPS_PER_TENANT
            and held < MAX_LOOKUPS
            and (held_here + 1) * active <= LOOKUPS_RESERVE
        ):
            return None
        return (
            f"too many DNS lookups outstanding (at most {LOOKUPS_PER_TENANT} per namespace, "
            f"of {MAX_LOOKUPS} shared per process, whose last {LOOKUPS_RESERVE} are divided "
            "among the namespaces holding lookups); the names asked for do not answer"
        )

    def _finish(self, key: tuple[str, int], job: _Lookup) -> None:
        with self.lock:
            if self.running.get(key) is job:
                del self.running[key]
            self.by_tenant[job.tenant] -= 1
            if self.by_tenant[job.tenant] <= 0:
                del self.by_tenant[job.tenant]

    def _run(self, key: tuple[str, int], job: _Lookup) -> None:
        try:
            job.addresses = self.resolver(*key)
        except BaseException as error:  # handed to the waiters, raised there
            job.error = error

    def _start(self, key: tuple[str, int], job: _Lookup) -> None:
        pool = self._gevent_pool()
        if pool is not None:
            result = pool.spawn(self._run, key, job)
            result.rawlink(lambda _: self._finish(key, job))

            def wait_gevent(timeout: float) -> bool:
                result.wait(timeout)
                return bool(result.ready())

            job.wait = wait_gevent
            return
        done = threading.Event()

        def run() -> None:
            try:
                self._run(key, job)
            finally:
                done.set()
                self._finish(key, job)

        job.wait = done.wait
        threading.Thread(target=run, name="registry-dns", daemon=True).start()

    def _gevent_pool(self) -> Any:
        """gevent's pool of native threads when the process runs on gevent (made on first
        use, in the worker after the fork), else ``None``."""
        if not self._pool_checked:
            self._pool_checked = True
            try:
                from gevent import monkey
            except ImportError:  # pragma: no cover - gevent is a dependency
                return None
            if monkey.is_module_patched("socket"):
                from gevent.threadpool import ThreadPool

                self._pool = ThreadPool(MAX_LOOKUP_THREADS)
        return self._pool


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
        self.resolver = resolver if isinstance(resolver, Lookups) else Lookups(resolver)
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
        except OSError as error:
            raise httpcore.ConnectError(f"DNS lookup of {host} failed: {error}") from None
        allowed = self.allows_private(hostport)
        refusals: list[tuple[str, str]] = []
        last: Exception | None = None
        for address in addresses:
            refusal = None if allowed else address_refusal(address)
            if refusal is not None:
                refusals.append((address, refusal))
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
            # "127.0.0.1 is a loopback address"; a name: "x resolves to 10.0.0.1, which is ...".
            address, refusal = refusals[0]
            if address == host:
                raise AddressRefused(f"{host} is {refusal}")
            raise AddressRefused(f"{host} resolves to {address}, which is {refusal}")
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
    host: str = ""
    """The host[:port] that gave this answer (after redirects)."""
    url: str = ""
    """The URL that gave it."""
    withheld_from: str = ""
    """The host a refused request kept the pod's credentials from (a redirect's target that
    challenged): the refusal is pullguard's own choice, not what the kubelet will get."""


class Blocked(Exception):
    """A request the rules forbid (plain HTTP to a registry not listed as insecure...)."""


class BodyBudget:
    """The bytes of registry answer bodies in flight in this process, past each body's first
    :data:`BODY_FREE_BYTES`: reserved before they are read (by ``Content-Length`` when the
    answer gives one, else a piece at a time as they come), released when the answer is
    read or abandoned. A namespace holds at most :data:`BODY_BYTES_PER_TENANT`; once the
    process holds all but :data:`BODY_BYTES_RESERVE`, a namespace may hold only the reserve
    divided by the namespaces holding bytes (itself counted), so namespaces reading large
    bodies cannot take what the others' need. No read is stopped for another (a body's own
    first 64 KiB need no reservation, so every question can read a real manifest whatever
    the budget holds); a body that gets no room is not read further: its question is
    answered "not asked" (or its platforms unknown), a warning, never a denial."""

    def __init__(
        self,
        total: int = BODY_BUDGET_BYTES,
        per_tenant: int = BODY_BYTES_PER_TENANT,
        reserve: int = BODY_BYTES_RESERVE,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.on_refused = on_refused
        self.total = total
        self.per_tenant = per_tenant
        self.reserve = reserve
        self.lock = threading.Lock()
        self.held = 0
        self.held_by: collections.Counter[str] = collections.Counter()
        self.peak = 0

    def take(self, tenant: str, size: int) -> bool:
        """Reserve ``size`` more bytes for ``tenant``; ``False`` (nothing reserved) if no room."""
        if size <= 0:
            return True
        with self.lock:
            refused = self._refused(tenant, size)
            if not refused:
                self.held += size
                self.held_by[tenant] += size
                self.peak = max(self.peak, self.held)
        if refused and self.on_refused is not None:
            self.on_refused("memory")
        return not refused

    def give(self, tenant: str, size: int) -> None:
        if size <= 0:
            return
        with self.lock:
            self.held -= size
            self.held_by[tenant] -= size
            if self.held_by[tenant] <= 0:
                del self.held_by[tenant]

    def _refused(self, tenant: str, size: int) -> bool:
        held_here = self.held_by[tenant]
        if held_here + size > self.per_tenant or self.held + size > self.total:
            return True
        if self.held + size <= self.total - self.reserve:
            return False
        active = len(self.held_by) + (0 if tenant in self.held_by else 1)
        return (held_here + size) * active > self.reserve

    def words(self, size: int) -> str:
        return (
            f"a registry answer of {size} bytes or more does not fit the memory set aside "
            f"for registry answers in flight ({self.total >> 20} MiB per process, at most "
            f"{self.per_tenant >> 20} MiB per namespace; the last {self.reserve >> 20} MiB "
            "shared by the namespaces reading large answers); not read"
        )


class _Held:
    """One body's reservation in a :class:`BodyBudget`, grown as its bytes come."""

    def __init__(self, budget: BodyBudget, tenant: str) -> None:
        self.budget = budget
        self.tenant = tenant
        self.held = 0

    def cover(self, size: int) -> None:
        """Hold room for a body of ``size`` bytes so far, or raise :class:`CapacityRefused`."""
        wanted = size - BODY_FREE_BYTES - self.held
        if wanted <= 0:
            return
        if not self.budget.take(self.tenant, wanted):
            raise CapacityRefused("memory", self.budget.words(size))
        self.held += wanted

    def release(self) -> None:
        self.budget.give(self.tenant, self.held)
        self.held = 0


@dataclass(frozen=True, slots=True)
class _Rules:
    """Which internal addresses may be reached: the part of the configuration a connection
    is judged by when it is made."""

    allow_all: bool
    patterns: tuple[str, ...]

    def allows(self, hostport: str) -> bool:
        if self.allow_all:
            return True
        host, port = split_host_port(hostport)
        default_port = port in ("443", "80")
        return any_host_matches(self.patterns, hostport) or (
            default_port and any_host_matches(self.patterns, host)
        )


class _Pool:
    """A connection pool whose every connection was judged by one set of :class:`_Rules`,
    and how many requests are using it now."""

    def __init__(self, pool: httpcore.ConnectionPool) -> None:
        self.pool = pool
        self.users = 0


class _Http:
    """Pooled clients; every request under the current question's deadline.

    **The rules in force judge every request, not only every connection.** A connection's
    address is checked when it is made; a pooled one lives up to 60 s. So the pool is keyed
    by the rules (``allowPrivateNetworks``, ``allowedPrivateRegistries``, the configured
    mirrors): when a configuration change narrows them, the next request takes a pool made
    under the new rules, whose connections are judged afresh, and the old pool is closed
    once the requests already using it end. Without that, an operator who removed an
    internal registry from the allow list (or turned ``allowPrivateNetworks`` off) left it
    reachable through the open connection for another minute, and tenants' images kept
    being fetched from an address the configuration now refuses."""

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
        self.resolver = resolver
        self.ssl_context = ssl_context or trust_context()
        self.lock = threading.Lock()
        self.current: tuple[_Rules, _Pool] | None = None
        self.retired: list[_Pool] = []
        self.bodies = BodyBudget()

    def rules(self) -> _Rules:
        current = self.settings()
        patterns = (*current.allowed_private_registries, *self.trusted_private())
        return _Rules(current.allow_private_networks, tuple(patterns))

    def allows_private(self, hostport: str) -> bool:
        """Whether the rules in force now allow ``hostport`` on an internal address."""
        return self.rules().allows(hostport)

    def _new_pool(self, rules: _Rules) -> _Pool:
        return _Pool(
            httpcore.ConnectionPool(
                ssl_context=self.ssl_context,
                max_connections=200,
                max_keepalive_connections=50,
                keepalive_expiry=60,
                # HTTP/1.1 only: one request per connection at a time, so each question's
                # deadline is its own. Over HTTP/2, the questions of a pod shared one
                # connection, and the registry (Go's net/http) answered about one round in
                # ten of concurrent streams with GOAWAY PROTOCOL_ERROR: those images were
                # "not checked" (tests/integration/test_registry_client.py::
                # test_questions_asked_together_of_one_registry_each_get_its_answer). A
                # stream read by one question under its own deadline could also break the
                # connection for another namespace's questions on it.
                http1=True,
                http2=False,
                retries=0,
                network_backend=GuardedBackend(rules.allows, resolver=self.resolver),
            )
        )

    @property
    def pool(self) -> httpcore.ConnectionPool:
        """The pool of the rules in force now."""
        pool = self._acquire()
        self._release(pool)
        return pool.pool

    def _acquire(self) -> _Pool:
        """The pool made under the rules in force now, counted as in use."""
        rules = self.rules()
        closing: list[_Pool] = []
        with self.lock:
            if self.current is None or self.current[0] != rules:
                if self.current is not None:
                    old = self.current[1]
                    (closing if old.users == 0 else self.retired).append(old)
                self.current = (rules, self._new_pool(rules))
            pool = self.current[1]
            pool.users += 1
        for old in closing:
            old.pool.close()
        return pool

    def _release(self, pool: _Pool) -> None:
        with self.lock:
            pool.users -= 1
            done = pool in self.retired and pool.users == 0
            if done:
                self.retired.remove(pool)
        if done:
            pool.pool.close()

    def close(self) -> None:
        with self.lock:
            pools = [*self.retired, *([self.current[1]] if self.current else [])]
            self.retired, self.current = [], None
        for pool in pools:
            pool.pool.close()

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
            pool = self._acquire()  # per request: the pool of the rules in force now
            try:
                with pool.pool.stream(
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
                        k.decode("latin-1").lower(): v.decode("latin-1")
                        for k, v in response.headers
                    }
                    status = response.status
                    location = reply_headers.get("location")
                    if status in (301, 302, 303, 307, 308) and location:
                        url = urljoin(url, location)
                        if status == 303:
                            method, form = "GET", None
                        continue
                    body = b""
                    if method == "HEAD":
                        # No body, but HTTP/1.1 keeps the connection only once the answer's
                        # end has been read.
                        for _ in response.iter_stream():
                            raise Blocked("a body in the answer to a HEAD request")
                    else:
                        body = self._read_body(response, reply_headers, max_body)
                    return Reply(status, reply_headers, body, hostport, url)
            finally:
                self._release(pool)
        raise Blocked(f"more than {MAX_REDIRECTS} redirects")

    def _read_body(
        self, response: httpcore.Response, headers: Mapping[str, str], max_body: int
    ) -> bytes:
        """The body, at most ``max_body`` bytes, its bytes past the first
        :data:`BODY_FREE_BYTES` reserved in :attr:`bodies` before they are read (by the
        declared length, else as each piece comes) and released once joined: the join's
        copy is the caller's, one body per question."""
        held = _Held(self.bodies, getattr(_current, "tenant", ""))
        try:
            try:
                declared = int(headers.get("content-length", "-1"))
            except ValueError:
                declared = -1
            if declared > max_body:
                raise Blocked(f"answer larger than {max_body} bytes")
            held.cover(declared)
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_stream():
                size += len(chunk)
                if size > max_body:
                    raise Blocked(f"answer larger than {max_body} bytes")
                held.cover(size)
                chunks.append(chunk)
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
        finally:
            held.release()


# -- Caches bounded in bytes ---------------------------------------------------------------

K = TypeVar("K")
V = TypeVar("V")


class BudgetCache(Generic[K, V]):
    """Least recently used entries within a byte budget, of which one registry may fill at
    most a share: a registry's oversized entries evict its own first and cannot grow the
    process (issue 20, item 3). Sizes are the caller's estimate of what an entry holds.
    Not thread-safe: callers hold their lock."""

    def __init__(self, budget: int, *, share: int | None = None) -> None:
        self.budget = budget
        self.share = share if share is not None else budget // REGISTRY_SHARE
        self.entries: collections.OrderedDict[K, tuple[V, int, str]] = collections.OrderedDict()
        self.bytes = 0
        self._by_registry: collections.Counter[str] = collections.Counter()

    def __len__(self) -> int:
        return len(self.entries)

    def used_by(self, registry: str) -> int:
        return self._by_registry[registry]

    def get(self, key: K) -> V | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        self.entries.move_to_end(key)
        return entry[0]

    def pop(self, key: K) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self._forget(entry)

    def put(self, key: K, value: V, size: int, registry: str) -> bool:
        """Keep ``value``; ``False`` (and nothing kept) when it alone exceeds the share."""
        self.pop(key)
        if size > self.share:
            return False
        while self._by_registry[registry] + size > self.share:
            oldest = next(k for k, e in self.entries.items() if e[2] == registry)
            self.pop(oldest)
        while self.bytes + size > self.budget or len(self.entries) >= MAX_CACHE_ENTRIES:
            _, entry = self.entries.popitem(last=False)
            self._forget(entry)
        self.entries[key] = (value, size, registry)
        self.bytes += size
        self._by_registry[registry] += size
        return True

    def clear(self) -> None:
        self.entries.clear()
        self._by_registry.clear()
        self.bytes = 0

    def _forget(self, entry: tuple[V, int, str]) -> None:
        _, size, registry = entry
        self.bytes -= size
        self._by_registry[registry] -= size
        if self._by_registry[registry] <= 0:
            del self._by_registry[registry]


#: What an entry costs beyond its text: the objects, the key, the dictionary slot.
_ENTRY_OVERHEAD = 512


def _size(*texts: str) -> int:
    return _ENTRY_OVERHEAD + sum(len(t) for t in texts)


def _answer_size(key: tuple[Any, ...], answer: Answer) -> int:
    platforms = answer.platforms or ()
    return _size(
        *(str(part) for part in key),
        answer.detail,
        answer.registry_says,
        answer.digest,
        answer.platforms_note,
        answer.ratelimit_remaining,
        *answer.tags,
        *answer.tried,
        *(str(p) for p in platforms),
    ) + 64 * len(platforms)


# -- Pull quotas -----------------------------------------------------------------------------


def _quota_value(header: str) -> tuple[int, float] | None:
    """``100;w=21600`` (Docker Hub's ``ratelimit-limit`` and ``ratelimit-remaining``): the
    number and the window in seconds (:data:`PULL_QUOTA_WINDOW_SECONDS` when not named)."""
    number, _, params = header.partition(";")
    number = number.strip()
    if not number.isdigit() or len(number) > 12:
        return None
    window = PULL_QUOTA_WINDOW_SECONDS
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "w" and value.strip().isdigit() and len(value) < 9:
            window = float(min(max(int(value.strip()), 60), 7 * 86400))
    return int(number), window


@dataclass(slots=True)
class _Quota:
    remaining: int
    limit: int
    window: float
    seen: float
    """When ``remaining`` was last believed."""
    in_flight: int = 0
    """Manifest GETs sent and not answered yet: the registry may have counted them already."""


class PullQuota:
    """What a registry says is left of its pull quota (``ratelimit-remaining`` on every
    answer, ``HEAD`` included: Docker Hub's, per egress address or per account, which the
    nodes behind the same NAT spend too), and the platform check's manifest ``GET``s (each
    a pull) held to it (rev20d F4: one namespace's 100 questions spent all 100 pulls and the
    next node's pull got 429). A ``GET`` is sent only while the registry's remaining pulls,
    less the ``GET``s in flight, stay at or above the reserve
    (``registry.pullQuotaReservePercent`` of its ``ratelimit-limit``), and one namespace
    spends at most :data:`PULL_SHARE_PER_NAMESPACE`-th of the rest per the quota's window.
    Registries that send no such header are not limited. Keyed by registry host and
    credential identity (an account's quota is its own). Thread-safe."""

    def __init__(
        self, reserve_percent: Callable[[], int], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.reserve_percent = reserve_percent
        self.clock = clock
        self.lock = threading.Lock()
        self.quotas: collections.OrderedDict[tuple[str, str], _Quota] = collections.OrderedDict()
        self.spent: collections.OrderedDict[tuple[str, str, str], tuple[float, int]] = (
            collections.OrderedDict()
        )

    def observe(self, key: tuple[str, str], headers: Mapping[str, str]) -> None:
        remaining = _quota_value(headers.get("ratelimit-remaining", ""))
        if remaining is None:
            return
        limit = _quota_value(headers.get("ratelimit-limit", ""))
        now = self.clock()
        with self.lock:
            quota = self.quotas.get(key)
            if quota is None or now - quota.seen > quota.window:
                quota = self.quotas[key] = _Quota(
                    remaining[0], limit[0] if limit else remaining[0], remaining[1], now
                )
                while len(self.quotas) > PULL_QUOTA_ENTRIES:
                    self.quotas.popitem(last=False)
            elif remaining[0] <= quota.remaining or now - quota.seen > PULL_QUOTA_FRESH_SECONDS:
                quota.remaining, quota.seen = remaining[0], now
            if limit is not None:
                quota.limit, quota.window = limit[0], limit[1]
            else:
                quota.limit = max(quota.limit, remaining[0])
            self.quotas.move_to_end(key)

    def spend(self, key: tuple[str, str], tenant: str) -> tuple[bool, str]:
        """May a manifest ``GET`` go to this registry for ``tenant`` now? ``(True, "")``
        (counted: :meth:`done` when answered), ``(False, "")`` (no quota known: not
        counted), or ``(False, why not)``."""
        percent = self.reserve_percent()
        now = self.clock()
        with self.lock:
            quota = self.quotas.get(key)
            if quota is None or now - quota.seen > quota.window:
                return False, ""
            reserve = -(-quota.limit * percent // 100)  # rounded up
            left = quota.remaining - quota.in_flight
            host = clean_words(key[0], 100)
            if left - 1 < reserve:
                return False, (
                    f"platform check not run: {host} says {max(quota.remaining, 0)} of its "
                    f"{quota.limit} pulls are left (ratelimit-remaining) and a manifest GET "
                    f"counts as one; pullguard leaves the last {percent}% to the nodes "
                    "(registry.pullQuotaReservePercent)"
                )
            share = max(1, (quota.limit - reserve) // PULL_SHARE_PER_NAMESPACE)
            spent_key = (*key, tenant)
            start, count = self.spent.get(spent_key, (now, 0))
            if now - start >= quota.window:
                start, count = now, 0
            if count >= share:
                hours = quota.window / 3600
                return False, (
                    f"platform check not run: this namespace's reviews have spent their share "
                    f"of {host}'s pulls ({share} manifest GETs per {hours:g} h, of the "
                    f"{quota.limit - reserve} that registry.pullQuotaReservePercent leaves "
                    "pullguard), so the nodes keep theirs"
                )
            self.spent[spent_key] = (start, count + 1)
            self.spent.move_to_end(spent_key)
            while len(self.spent) > PULL_QUOTA_ENTRIES:
                self.spent.popitem(last=False)
            quota.in_flight += 1
            return True, ""

    def done(self, key: tuple[str, str]) -> None:
        with self.lock:
            quota = self.quotas.get(key)
            if quota is not None and quota.in_flight > 0:
                quota.in_flight -= 1


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
        self.tokens: BudgetCache[tuple[str, str, str], _Token] = BudgetCache(TOKEN_CACHE_BYTES)
        self.tokens_lock = threading.Lock()
        # A digest names its content for good: its platforms are learned once per process,
        # under the digest of the bytes received (so any registry, repository or tag with
        # that digest shares them, and a registry lying about a digest poisons nothing).
        self.platforms: BudgetCache[str, tuple[tuple[Platform, ...], bool]] = BudgetCache(
            PLATFORM_CACHE_BYTES
        )
        # Digests being read now, by registry and repository: a question for a digest another
        # question is reading *there* waits for that read (one GET per digest, each a pull on
        # Docker Hub), under tokens_lock. Not across registries or repositories: a read in
        # progress is not verified yet, and the digest is whatever the HEAD claimed, so
        # another registry claiming a public image's digest and hanging its GET held every
        # tenant's question for that digest until its own deadline (rev20d F2). The cache
        # above is shared: its entries were verified over the bytes received.
        self.learning: dict[tuple[str, str, str], threading.Event] = {}
        self.quota = PullQuota(lambda: self.http.settings().pull_quota_reserve_percent)

    def quota_key(self, registry: str, credential: Credential | None) -> tuple[str, str]:
        return (registry_host(registry), self.identity(credential))

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
        """``method`` on ``/v2/<repository>/<path>``, answering one auth challenge.

        The credential is for the registry's host: a challenge is answered with it only when
        that host issued the challenge. A registry that redirects (a blob to a CDN, or an
        attacker's registry anywhere) to another host that answers ``401 Bearer realm=...``
        would otherwise have the pod's password sent to a realm of its choosing (issue 20,
        item 1); after a cross-host redirect pullguard goes on anonymously, at the URL that
        challenged. That is pullguard's own safety rule, not the runtime's: containerd's CRI
        answers whichever host challenges with the pod's credentials (the kubelet's
        AuthConfig names no host), so a refusal there is marked ``withheld_from`` and is no
        certain answer about the pull."""
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
        challenger = reply.host or host
        withheld = ""
        if challenger != host:
            withheld = challenger if credential is not None else ""
            credential, url = None, reply.url
            headers = {"Accept": accept}
        scheme, params = parse_challenge(reply.headers.get("www-authenticate", ""))
        if scheme == "bearer" and params.get("realm"):
            fetched = self._fetch_token(challenger, params, scope, credential)
            if fetched is None:
                return replace(reply, withheld_from=withheld)
            if isinstance(fetched, Reply):
                # The realm itself refused: that is the answer.
                return replace(fetched, withheld_from=withheld)
            headers["Authorization"] = f"Bearer {fetched}"
        elif scheme == "basic" and credential is not None:
            headers["Authorization"] = _basic(credential)
        else:
            return replace(reply, withheld_from=withheld)
        final = self.http.request(
            method, url, headers, max_body=max_body, credentials_host=challenger
        )
        return replace(final, withheld_from=withheld)

    def _token_key(
        self, host: str, scope: str, credential: Credential | None
    ) -> tuple[str, str, str]:
        return (host, scope, self.identity(credential))

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
            document = deepjson.loads(reply.body)
            token = document.get("token") or document.get("access_token")
            lifetime = float(document.get("expires_in") or 60)
        except (ValueError, AttributeError, TypeError):
            return None
        if not isinstance(token, str) or not token:
            return None
        expires = time.monotonic() + max(0.0, min(lifetime, TOKEN_TTL_MAX) - 5)
        key = self._token_key(host, scope, credential)
        with self.tokens_lock:
            self.tokens.put(key, _Token(token, expires), _size(token, *key), registry_host(host))
        return token

    # -- the question ------------------------------------------------------------------

    def answer(self, question: Question, known: Sequence[str]) -> Answer:
        """The answer the kubelet's pull would get. Its pull loop (kuberuntime
        ``pullImage``) tries the matching credentials in order and goes on to the next after
        *any* failed pull, a 404 too: registries hide a repository a login may not read
        behind ``404 NAME_UNKNOWN``, and the next login may pull it. So every credential is
        tried until one finds the image; a definite answer (not found, refused) stands only
        when every credential got one, and one uncertain answer (a server error, a timeout)
        makes the whole answer uncertain, since that pull may have worked."""
        candidates: list[Credential | None] = list(question.credentials) or [None]
        tried: list[str] = []
        failed: list[tuple[Credential | None, Answer]] = []
        for credential in candidates:
            if credential is not None:
                tried.append(credential.source or "(a pull secret)")
            answer = replace(self._head(question, credential, known), tried=tuple(tried))
            if answer.outcome is Outcome.FOUND:
                return self._found(question, credential, answer)
            failed.append((credential, answer))
        everyone = tuple(tried)
        if all(a.outcome in DEFINITE for _, a in failed):
            # Registries are eventually consistent and pipelines push then deploy within
            # seconds: ask again before a not found may deny.
            for index, (credential, answer) in enumerate(failed):
                if answer.outcome is not Outcome.NOT_FOUND:
                    continue
                again = replace(self._head(question, credential, known), tried=everyone)
                if again.outcome is Outcome.FOUND:
                    return self._found(question, credential, again)
                failed[index] = (credential, again)
        uncertain = [(c, a) for c, a in failed if a.outcome not in DEFINITE]
        missing = [(c, a) for c, a in failed if a.outcome is not Outcome.UNAUTHORIZED]
        used, answer = (uncertain or missing or failed)[0 if uncertain or missing else -1]
        answer = replace(answer, tried=everyone)
        if answer.outcome is Outcome.NOT_FOUND:
            answer = self._repository_facts(question, used, answer)
            refused = _refused_node_credentials(failed)
            if answer.repository_exists is not True and refused is not None:
                # The 404 may be a repository hidden from that login, and the provider's
                # credentials refused here are pullguard's own role's: the kubelet goes on to
                # the nodes' own, which may be served. Nothing is certain: the refusal (a
                # warning) is the answer, not the 404.
                answer = replace(refused, tried=everyone)
        if answer.outcome is Outcome.REGISTRY_ERROR and question.by_digest:
            answer = self._blob_instead(question, used, answer)
        return answer

    def _found(self, question: Question, credential: Credential | None, answer: Answer) -> Answer:
        if question.platforms:
            return self._platforms(question, credential, answer)
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
        self.quota.observe(self.quota_key(question.registry, credential), reply.headers)
        outcome = classify_status(reply.status)
        detail = f"HTTP {reply.status}"
        if outcome is Outcome.UNAUTHORIZED and reply.withheld_from:
            return Answer(Outcome.NOT_ASKED, withheld_words(question.registry, reply))
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
                tags = deepjson.loads(reply.body).get("tags") or []
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
        """The image's platforms: from the cache when the HEAD named a digest already read,
        else one GET of the manifest (by digest: a GET counts as a pull on Docker Hub, so
        each digest is read once per process), its bytes checked against the digest."""
        if question.by_digest:
            reference = question.reference
        else:
            reference = answer.digest if is_digest(answer.digest) else question.reference
        leading: threading.Event | None = None
        flight = (registry_host(question.registry), question.repository, reference)
        if is_digest(reference):
            with self.tokens_lock:
                known = self.platforms.get(reference)
                reading = self.learning.get(flight) if known is None else None
                if known is None and reading is None:
                    leading = self.learning[flight] = threading.Event()
            if reading is not None:
                # Another question reads this digest now: wait for it (within the deadline),
                # then read it alone only if that read learned nothing (other credentials).
                reading.wait(_remaining(None))
                with self.tokens_lock:
                    known = self.platforms.get(reference)
            if known is not None:
                return replace(answer, platforms=known[0], platforms_note="", single_image=known[1])
        quota = self.quota_key(question.registry, credential)
        counted, refusal = self.quota.spend(quota, getattr(_current, "tenant", ""))
        try:
            if refusal:
                _unsettled()
                return replace(answer, platforms_note=refusal)
            learned, digest = self._learn_platforms(question, credential, answer, reference)
            if learned.platforms and digest:
                size = _size(digest, *(str(p) for p in learned.platforms))
                with self.tokens_lock:
                    self.platforms.put(
                        digest,
                        (learned.platforms, learned.single_image),
                        size,
                        registry_host(question.registry),
                    )
        finally:
            if counted:
                self.quota.done(quota)
            if leading is not None:
                with self.tokens_lock:
                    if self.learning.get(flight) is leading:
                        del self.learning[flight]
                leading.set()
        return learned

    def _learn_platforms(
        self, question: Question, credential: Credential | None, answer: Answer, reference: str
    ) -> tuple[Answer, str]:
        """The platforms and the digest of the manifest bytes they came from."""
        try:
            manifest = self.authorized_get(
                "GET",
                question.registry,
                question.repository,
                f"manifests/{reference}",
                credential,
                max_body=MANIFEST_BODY_MAX,
            )
            self.quota.observe(self.quota_key(question.registry, credential), manifest.headers)
            if manifest.status != 200:
                _unsettled()
                return replace(
                    answer, platforms_note=f"manifest GET answered {manifest.status}"
                ), ""
            if is_digest(reference):
                if not digest_matches(reference, manifest.body):
                    return replace(
                        answer,
                        platforms_note="the manifest's bytes do not match its digest "
                        f"{reference[:80]} (a pull would fail there too)",
                    ), ""
                digest = reference
            else:
                digest = digest_of(manifest.body)
            document = bounded_json(manifest.body)
            if not isinstance(document, dict):
                return replace(answer, platforms_note="the manifest is not a JSON object"), ""
            media = document.get("mediaType") or manifest.headers.get("content-type", "")
            if media in INDEX_TYPES or "manifests" in document:
                platforms = platforms_of_index(document)
                return replace(answer, platforms=platforms, platforms_note=""), digest
            config = document.get("config")
            config_digest = config.get("digest") if isinstance(config, dict) else None
            # The manifest's bytes (up to 4 MiB, past the body budget's reach now) are not
            # kept while the config blob is read: a registry may hold that read open.
            del manifest, document, config
            if not isinstance(config_digest, str) or not is_digest(config_digest):
                return replace(answer, platforms_note="the manifest names no config"), ""
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
                _unsettled()
                return replace(answer, platforms_note=f"config GET answered {blob.status}"), ""
            if not digest_matches(config_digest, blob.body):
                return replace(
                    answer, platforms_note="the image config's bytes do not match its digest"
                ), ""
            document = bounded_json(blob.body)
            platform = platform_of_config(document) if isinstance(document, dict) else None
        except PlatformError as error:
            return replace(answer, platforms_note=str(error)), ""
        except CapacityRefused as error:
            _unsettled()
            return replace(answer, platforms_note=f"platforms unknown: {error}"), ""
        except Exception as error:
            _unsettled()
            return replace(answer, platforms_note=f"platforms unknown: {type(error).__name__}"), ""
        if platform is None:
            return replace(answer, platforms_note="the image config names no platform"), ""
        return replace(answer, platforms=(platform,), platforms_note="", single_image=True), digest


#: JSON values a manifest or config may hold before it is parsed: a real index of a thousand
#: manifests has some 10,000; a 4 MiB body of ``{}`` has 1.4 million, which ``json.loads``
#: builds as dicts (about 100 MB per question, on every thread reading one at once).
MAX_JSON_VALUES = 50_000


def bounded_json(body: bytes) -> Any:
    """``json.loads`` of a manifest or config, refused before any object is built when it
    holds more values than a real image has (each ``{``, ``[`` and ``,`` counted, inside
    strings too: only an over-count, never an under-count). The attack it stops: a registry
    serving 4 MiB of ``{}`` entries made eight questions at once cost 946 MiB."""
    values = body.count(b"{") + body.count(b"[") + body.count(b",")
    if values > MAX_JSON_VALUES:
        raise PlatformError(
            f"the manifest holds more JSON values than a real image has (over {MAX_JSON_VALUES})"
        )
    return deepjson.loads(body)


def clean_answer(answer: Answer) -> Answer:
    """Every text of an answer as printable, one-line ASCII (issue 20, item 9): a registry's
    words, tags, digests and headers reach warnings, denials, Events, ``audit``,
    ``diagnose`` and ``check``; escape sequences from a registry are data, never terminal
    commands. Platforms are short identifiers already (the core refuses anything else)."""
    return replace(
        answer,
        detail=clean_words(answer.detail, 600),
        registry_says=clean_words(answer.registry_says),
        tags=tuple(clean_words(t, 128) for t in answer.tags),
        tried=tuple(clean_words(t, 300) for t in answer.tried),
        ratelimit_remaining=clean_words(answer.ratelimit_remaining, 40),
        digest=clean_words(answer.digest, 140),
        platforms_note=clean_words(answer.platforms_note, 300),
        suggestion=clean_words(answer.suggestion, 100),
    )


def withheld_words(registry: str, reply: Reply) -> str:
    """Why a refusal after a cross-host redirect is not certain (the pod's password was kept
    from the host that asked for it; the kubelet's runtime sends it)."""
    return (
        f"{clean_words(api_host(registry), 100)} redirected to "
        f"{clean_words(reply.withheld_from, 100)}, which asks for credentials "
        f"(HTTP {reply.status}); pullguard does not send the pod's password to a host its "
        "secret is not for; the kubelet's pull will, so whether it may pull is not known"
    )


def _header_words(reply: Reply) -> str:
    """What a HEAD answer says in words: HEAD has no body, so only an auth error's header."""
    challenge = reply.headers.get("www-authenticate", "")
    if reply.status in (401, 403) and "error=" in challenge:
        _, params = parse_challenge(challenge)
        return clean_words(params.get("error", ""), 60)
    return ""


def _failure(error: Exception, registry: str, known: Sequence[str]) -> Answer:
    """An exception from the conversation, as an answer a user can act on."""
    if isinstance(error, CapacityRefused):
        return Answer(Outcome.NOT_ASKED, str(error))
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
    def __init__(self, tenant: str, deadline: float, review: int = 0) -> None:
        self.tenant = tenant
        self.review = review
        """The :meth:`HttpRegistry.ask` call (one review's questions) that started it."""
        self.deadline = deadline
        self.done = threading.Event()
        self.answer: Answer | None = None
        self.released = False
        self.stopped = False
        """Stopped for a namespace holding none (:meth:`HttpRegistry._first_flight`): its
        waiters were answered, its slot given away; its thread ends by its deadline."""


Observer = Callable[[Question, Answer, float], None]


class HttpRegistry:
    """The core's RegistryView over HTTP. Thread-safe; under gevent each flight is a greenlet.

    Capacity is shared fairly (issue 20, item 4): at most :data:`MAX_FLIGHTS` questions in
    flight, of which one namespace holds at most :data:`FLIGHTS_PER_TENANT`; a question's slot
    is free again when its deadline passes, whatever the registry (or its DNS) does; a
    namespace holding none gets one unless every slot is held by a different namespace
    (:meth:`_first_flight`); every question refused or stopped for capacity is reported to
    ``on_refused`` (``process``, ``namespace``, ``preempted`` or ``dns``: the
    ``pullguard_registry_capacity_refusals_total`` metric)."""

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
        on_refused: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.known_registries = known_registries
        self.on_refused = on_refused
        self.lookups = Lookups(resolver, on_refused)
        self.http = _Http(
            settings,
            trusted_private=trusted_private,
            resolver=self.lookups,
            ssl_context=ssl_context,
        )
        self.http.bodies.on_refused = on_refused
        self._key = secrets.token_bytes(32)
        self.asker = _Asker(self.http, self.identity)
        self.observe = observe
        self.on_cache = on_cache
        self.clock = clock
        self.cache: BudgetCache[tuple[Any, ...], tuple[Answer, float]] = BudgetCache(
            ANSWER_CACHE_BYTES
        )
        self.flights: dict[tuple[Any, ...], _Flight] = {}
        self.lock = threading.Lock()
        self.held = 0
        self.held_by: collections.Counter[str] = collections.Counter()
        self.flights_by: dict[str, dict[tuple[Any, ...], _Flight]] = {}
        """Each namespace's flights holding a slot, oldest first (the newest is stopped)."""
        self.reviews = 0
        """Numbers the ``ask`` calls: a flight's review (:meth:`_newer_review`)."""
        self.stopped = 0
        """Flights stopped for another namespace whose threads still run (each ends by its
        deadline): at most :data:`MAX_STOPPED`, so stopping never grows the threads past
        :data:`MAX_FLIGHTS` plus that."""

    def in_flight(self) -> int:
        """Slots held now (questions asked and not past their deadline)."""
        with self.lock:
            return self.held

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
        if expires <= self.clock():
            self.cache.pop(key)
            return None
        return replace(answer, cached=True)

    def _remember(
        self,
        key: tuple[Any, ...],
        question: Question,
        answer: Answer,
        asked: float,
        unsettled: bool = False,
    ) -> None:
        """Keep a positive answer until ``cacheTTLSeconds`` after it was ``asked`` for.

        By tag and by digest alike (issue 21, item 5): containerd resolves the reference on
        every pull, so a manifest deleted after pullguard saw it fails the next pull even by
        digest, and an answer kept for the process's life admitted such pods for good. A
        digest's *content* cannot change (its platforms stay cached, :class:`_Asker`); its
        *existence* can. The age counts from the question, not the answer: a registry that
        answers slowly does not lengthen the life of what it said."""
        if answer.outcome is not Outcome.FOUND:
            return  # only positive answers are reused; a denial always rests on a live one
        if unsettled:
            # Platforms not learned for a reason that passes (a deadline, the body budget,
            # the pull quota, a registry error): not kept as if complete, so the next review
            # asks again (rev20d F2). A manifest that names no platform is kept as usual: its
            # GET is a pull, not repeated on every review.
            return
        ttl = self.settings().cache_ttl_seconds
        if ttl <= 0:
            return
        expires = asked + ttl
        self.cache.put(
            key, (answer, expires), _answer_size(key, answer), registry_host(question.registry)
        )

    def _refusal(self, tenant: str) -> tuple[str, str] | None:
        """Why a new flight for ``tenant``, a namespace holding one already, may not start
        now (the lock is held; a namespace's first: :meth:`_first_flight`).

        A namespace holds at most :data:`FLIGHTS_PER_TENANT`. The attack this stops beyond
        that: a few namespaces (one tenant's, or tenants together) of 32 never-answering
        images each hold the whole pool until their deadline, and every other namespace's
        pods are admitted unchecked. So the last :data:`FLIGHTS_RESERVE` slots are shared:
        once the rest is in use, a namespace may hold only up to the reserve divided by the
        namespaces holding slots (itself counted); one holding its 32 gets none of it, and
        each newcomer leaves part of the reserve for the next."""
        held_here = self.held_by[tenant]
        if held_here >= FLIGHTS_PER_TENANT:
            where = f"namespace {tenant}" if tenant else "this caller"
            return (
                "namespace",
                f"too many registry questions in flight from {where} (at most "
                f"{FLIGHTS_PER_TENANT} at once, so other namespaces are still checked)",
            )
        if self.held < MAX_FLIGHTS - FLIGHTS_RESERVE:
            return None
        active = len(self.held_by) + (0 if tenant in self.held_by else 1)
        if self.held < MAX_FLIGHTS and (held_here + 1) * active <= FLIGHTS_RESERVE:
            return None
        return (
            "process",
            f"too many registry questions in flight ({self.held} of {MAX_FLIGHTS}; the last "
            f"{FLIGHTS_RESERVE} are shared by the {active} namespaces asking, and this one "
            "holds its part)",
        )

    def _first_flight(self, tenant: str) -> tuple[str, str] | None:
        """Make room for the first question of ``tenant``, a namespace holding none (the
        lock is held): a free slot, else the newest flight of the namespace holding the
        most, when it holds two or more, is stopped and its slot is ``tenant``'s (its
        waiters answered "not asked: ... preempted"; ``("preempted", "")``); else why not
        (``process``).

        So a namespace holding no question gets one unless :data:`MAX_FLIGHTS` other
        namespaces each hold exactly one (or :data:`MAX_STOPPED` stopped flights still
        run), and a namespace's only question is never stopped (fair24: ten namespaces of
        32 never-answering questions held all 128 slots past the reserve; 3 x 32 and 29
        namespaces of one left a 33rd refused with 3 slots free)."""
        if self.held < MAX_FLIGHTS:
            return None
        victims = [t for t, flights in self.flights_by.items() if len(flights) >= 2]
        if not victims:
            return (
                "process",
                f"too many registry questions in flight (all {MAX_FLIGHTS} are held, each by "
                "a different namespace; a namespace's only question is never stopped)",
            )
        if self.stopped >= MAX_STOPPED:
            return (
                "process",
                f"too many registry questions in flight (all {MAX_FLIGHTS} are held, and "
                f"{self.stopped} stopped for other namespaces have not ended yet)",
            )
        most = max(victims, key=lambda t: len(self.flights_by[t]))
        count = len(self.flights_by[most])
        key, flight = next(reversed(self.flights_by[most].items()))
        flight.answer = Answer(
            Outcome.NOT_ASKED,
            f"registry question stopped (preempted): all {MAX_FLIGHTS} in flight were held "
            f"and its namespace held the most ({count}), so its newest was stopped for a "
            "namespace holding none (every namespace keeps at least one)",
        )
        flight.stopped = True
        self.stopped += 1
        self._release(key, flight)
        flight.done.set()
        return ("preempted", "")

    def _newer_review(self, tenant: str) -> bool:
        """Make room for the first question of a review (an ``ask`` call) holding none of
        the slots of ``tenant``, a namespace holding some, when its question was refused
        (the lock is held): the newest flight of the namespace's review holding the most,
        when it holds two or more, is stopped and its slot is the new review's (its
        waiters answered "not asked: ... stopped for a newer review"). ``False``: nothing
        to stop (each review of the namespace holds one, or :data:`MAX_STOPPED` stopped
        flights still run).

        The namespace's count never grows, so no other namespace pays. Without
        ``--client-ca`` the namespace a review names is anyone's to claim (rev20d F7: four
        forged reviews of 32 never-answering images held a namespace's 32 slots, and its
        real pods were "not checked"); now that takes :data:`FLIGHTS_PER_TENANT` concurrent
        reviews, and each stops one flight at most, so exhausting :data:`MAX_STOPPED` costs
        as many."""
        counts: collections.Counter[int] = collections.Counter(
            f.review for f in self.flights_by.get(tenant, {}).values()
        )
        if not counts or self.stopped >= MAX_STOPPED:
            return False
        review, count = max(counts.items(), key=lambda item: item[1])
        if count < 2:
            return False
        key, flight = next(
            (k, f) for k, f in reversed(self.flights_by[tenant].items()) if f.review == review
        )
        flight.answer = Answer(
            Outcome.NOT_ASKED,
            f"registry question stopped (preempted): namespace {tenant}'s registry questions "
            f"in flight were at their limit and this one's review held the most ({count}), so "
            "its newest was stopped for a newer review of the same namespace (every review "
            "keeps at least one)",
        )
        flight.stopped = True
        self.stopped += 1
        self._release(key, flight)
        flight.done.set()
        return True

    def _release(self, key: tuple[Any, ...], flight: _Flight) -> None:
        """Free the flight's slot (once); the lock is held."""
        if self.flights.get(key) is flight:
            del self.flights[key]
        if flight.released:
            return
        flight.released = True
        self.held -= 1
        self.held_by[flight.tenant] -= 1
        if self.held_by[flight.tenant] <= 0:
            del self.held_by[flight.tenant]
        mine = self.flights_by.get(flight.tenant)
        if mine is not None and mine.get(key) is flight:
            del mine[key]
            if not mine:
                del self.flights_by[flight.tenant]

    def ask(
        self, questions: Sequence[Question], budget: float, tenant: str = ""
    ) -> Mapping[Question, Answer]:
        tenant = tenant_key(tenant)  # never an internal tenant (MIRROR_PROBE_TENANT)
        deadline = time.monotonic() + budget
        answers: dict[Question, Answer] = {}
        waiting: dict[Question, tuple[tuple[Any, ...], _Flight]] = {}
        refused: list[str] = []
        started = 0  # flights this review (this call) started and holds
        with self.lock:
            self.reviews += 1
            review = self.reviews
            for question in questions:
                key = self.key(question)
                cached = self._cached(key)
                if cached is not None:
                    answers[question] = cached
                    continue
                flight = self.flights.get(key)
                if flight is None:
                    if self.held_by[tenant] == 0:
                        refusal = self._first_flight(tenant)
                        if refusal is not None and refusal[0] == "preempted":
                            refused.append("preempted")
                            refusal = None
                    else:
                        refusal = self._refusal(tenant)
                        if refusal is not None and not started and self._newer_review(tenant):
                            refused.append("preempted")
                            refusal = None
                    if refusal is not None:
                        refused.append(refusal[0])
                        answers[question] = Answer(Outcome.NOT_ASKED, refusal[1])
                        continue
                    flight = self.flights[key] = _Flight(tenant, deadline, review)
                    started += 1
                    self.flights_by.setdefault(tenant, {})[key] = flight
                    self.held += 1
                    self.held_by[tenant] += 1
                    threading.Thread(
                        target=self._fly,
                        args=(key, question, flight, deadline),
                        name="registry-flight",
                        daemon=True,
                    ).start()
                waiting[question] = (key, flight)
        if self.on_refused is not None:
            for reason in refused:
                self.on_refused(reason)
        if self.on_cache is not None:
            for question in questions:
                self.on_cache(question in answers and answers[question].cached)
        for question, (key, flight) in waiting.items():
            left = deadline - time.monotonic()
            if left > 0:
                flight.done.wait(left)
            if not flight.done.is_set() and time.monotonic() >= flight.deadline:
                with self.lock:  # past its deadline: the slot is free, whatever the flight does
                    self._release(key, flight)
            answers[question] = flight.answer or Answer(
                Outcome.NOT_ASKED, f"no answer within {budget:g} s (registry.timeoutSeconds)"
            )
        return answers

    def _fly(
        self, key: tuple[Any, ...], question: Question, flight: _Flight, deadline: float
    ) -> None:
        started = time.monotonic()
        asked = self.clock()
        _current.deadline = deadline
        _current.tenant = flight.tenant
        _current.unsettled = False
        try:
            answer = clean_answer(self.asker.answer(question, list(self.known_registries())))
        except Exception as error:  # never let a flight die without an answer
            answer = Answer(Outcome.REGISTRY_ERROR, f"unexpected error: {type(error).__name__}")
            log.exception("registry question failed: %s", question.image[:200])
        finally:
            _current.deadline = None
            _current.tenant = ""
            unsettled = bool(getattr(_current, "unsettled", False))
            _current.unsettled = False
        elapsed = time.monotonic() - started
        with self.lock:
            if not flight.released:  # an answer after the deadline is nobody's to reuse
                self._remember(key, question, answer, asked, unsettled)
            if flight.stopped:
                self.stopped -= 1
            else:
                flight.answer = answer
            self._release(key, flight)
        flight.done.set()
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
        _current.tenant = MIRROR_PROBE_TENANT
        try:
            url = f"{self.http.scheme_for(hostport)}://{hostport}/v2/"
            reply = self.http.request("GET", url, {}, max_body=ERROR_BODY_MAX, credentials_host="")
        except Exception as error:
            log.info("mirror %s probe failed: %s", hostport, type(error).__name__)
            return False
        finally:
            _current.deadline = None
            _current.tenant = ""
        return reply.status in (200, 401)

    def close(self) -> None:
        self.http.close()


__all__ = [
    "AddressRefused",
    "BudgetCache",
    "GuardedBackend",
    "HttpRegistry",
    "Lookups",
    "NameNotFound",
    "Platform",
    "system_resolver",
    "trust_context",
]


def _refused_node_credentials(failed: Sequence[tuple[Credential | None, Answer]]) -> Answer | None:
    """The refusal of a credential provider's credentials among ``failed``, when no
    provider's credentials got a "not found" (that one is pullguard's answer with the
    nodes' kind of login, and stands)."""
    refused = None
    for credential, answer in failed:
        if credential is None or provider_of(credential.source) is None:
            continue
        if answer.outcome is Outcome.NOT_FOUND:
            return None
        if answer.outcome is Outcome.UNAUTHORIZED and refused is None:
            refused = answer
    return refused
