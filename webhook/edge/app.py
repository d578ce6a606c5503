"""The HTTP edge: a Flask app factory that translates AdmissionReviews to and from the core.

It owns what controller-runtime's ``http.go`` owns: the body-size cap, the content-type
check, decoding, encoding, and turning a crash into a 500 that still carries the uid. It
decides nothing: ``webhook.core.validate`` and ``webhook.core.mutate`` do.

Status codes: 200 with an AdmissionReview for every request that could be judged; 400 for a
body that is not a usable AdmissionReview (still an AdmissionReview, with the uid when it
could be read and the reason in ``status.message``); 401 without the API server's client
certificate under ``serve --client-ca``; 413 past the size cap, or for a body that would
decode to more objects than a worker decodes at once; 415 for a content type other than
JSON; 429 when the worker's body budget (or decoding budget, or its share of time for long
decodes) is taken; 500 for an unexpected exception.

Limits it owns, each against an attack from anything that can reach the port:

- :class:`BodyBudget`: the bytes of bodies in flight per worker, reserved as a body is read,
  a little ahead of the bytes received (40 unfinished 7 MiB bodies once grew a worker by
  330 MiB; reserving by the declared length let 45 bodies that declared 1 MiB and sent a
  byte every 0.3 s shed the API server's reviews);
- the second :class:`BodyBudget`, ``decoded``: the estimated bytes of the objects bodies
  decode to, reserved after a body is read and before it is decoded (a 6.8 MiB body of
  ``[{},{},...]`` decodes to 180 MiB);
- :class:`DecodeTime`: the event-loop time long decodes take, a quarter of the worker's on
  average (four connections posting 3 MiB of ``[{},{},...]``, each decode holding the loop
  most of a second, kept every real review past 5 s);
- with ``--client-ca``, a review is read only from a connection whose client certificate
  the CA signed (a forged review could name any namespace and user);
- :class:`_DeadlineRegistry`: a review's answer within ``registry.timeoutSeconds`` counted
  from its arrival (the registry used to get all of it, and the answer came after);
- a ConfigMap under review is parsed off the event loop (``Runtime.offload``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from flask import Flask, Response, request

from webhook.core.cluster import ClusterUnavailable, ClusterView, InMemoryCluster
from webhook.core.config import Config
from webhook.core.configreview import review_config
from webhook.core.mutate import Mutation, SecretCopy, mutate
from webhook.core.nodecreds import NodeCredentialView
from webhook.core.registry import Answer as RegistryAnswer
from webhook.core.registry import Outcome, Question, RegistryView
from webhook.core.review import (
    MUTATE_WARNING_RUNES,
    NESTED_TOO_DEEPLY,
    AdmissionRequest,
    MalformedReview,
    decoded_cost,
    encode_json,
    parse_review_bytes,
    review_response,
    uid_from_bytes,
)
from webhook.core.validate import Decision, validate
from webhook.edge.configsource import ConfigStore
from webhook.edge.credproviders import ANSWER_MARGIN_SECONDS, DeadlineProviders
from webhook.edge.metrics import Metrics, kind_label, operation_label
from webhook.edge.secretsync import CopyCause, copy_cause

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication

T = TypeVar("T")


class Offload(Protocol):
    """Runs ``work`` somewhere and gives back what it returned (:attr:`Runtime.offload`)."""

    def __call__(self, work: Callable[[], T], /) -> T: ...


def _in_place(work: Callable[[], T]) -> T:
    return work()


log = logging.getLogger("pullguard.admission")

#: The API server caps one object at 3 MiB (etcd's request limit, 1.5 MiB by default, is
#: usually lower); an UPDATE review carries the object twice, plus the request's envelope.
MAX_BODY_BYTES = 2 * 3 * 1024 * 1024 + 1024 * 1024
#: Bytes of request bodies one worker holds at once (reserved as a body is read, at most
#: the bytes received plus :data:`BODY_READ_BYTES`, released when its answer is
#: out): 40 unfinished 7 MiB bodies once grew a worker by 330 MiB. A real review is a few
#: KiB to a few hundred.
IN_FLIGHT_BODY_BYTES = 32 * 1024 * 1024
#: Bodies larger than this share at most :data:`LARGE_BODIES_SHARE` of the budget, so the
#: rest stays for the reviews the API server usually sends while large ones are in flight
#: (or held open by someone who never finishes them).
LARGE_BODY_BYTES = 1024 * 1024
LARGE_BODIES_SHARE = 24 * 1024 * 1024
#: Bytes of Python objects one worker's decoded bodies may take at once, by
#: ``core.review.decoded_cost``'s estimate, reserved after a body is read and before it is
#: decoded, released when its answer is out: a 6.8 MiB body of ``[{},{},...]`` decodes to
#: 180 MiB, and four at once once took a worker to 560 MiB (the pod's limit is 384).
IN_FLIGHT_DECODED_BYTES = 128 * 1024 * 1024
#: Estimates larger than this share at most :data:`LARGE_DECODED_SHARE`, so the rest stays
#: for the small reviews; a body whose estimate alone is past that share is answered 413.
#: A real review's estimate is about 10 times its size, up to about 14 for one made of env
#: entries and their managedFields (decoded: 6.4 to 8.6 times): an UPDATE of two 3 MiB
#: objects (the API server's limit, where an admin raised etcd's from 1.5 MiB) estimates
#: 78 to 89 MiB (``tests/integration/test_port_attacks.py::
#: test_an_update_of_two_3_mib_env_heavy_objects_is_decoded``).
LARGE_DECODED_BYTES = 4 * 1024 * 1024
LARGE_DECODED_SHARE = 96 * 1024 * 1024
#: Seconds the API server is asked to wait before it sends a review refused for lack of
#: room again: client-go's rest.Request retries a 429 that carries Retry-After, within the
#: webhook's timeout.
RETRY_AFTER_SECONDS = 1
#: A body is read in pieces of this size, each reserved before it is read, so a body holds
#: at most what it has sent plus one piece: a client that declares 1 MiB and trickles it
#: holds 64 KiB of the budget, not 1 MiB, until its bytes come; one that sends half of it
#: and stops holds 576 KiB (pieces as large as what had come held 1 MiB: 34 such bodies
#: took the whole budget, rev20 finding 7). gunicorn's body reads 1 KiB at a time whatever
#: the piece, so small pieces cost no more reads.
BODY_READ_BYTES = 64 * 1024


#: Estimates (``decoded_cost``) past this are decodes long enough to count: about 100 KiB of
#: body, 10 ms of the event loop; a real review is a few KiB.
TIMED_DECODE_BYTES = 1024 * 1024
#: The share of a worker's time its long decodes may take, on average: orjson and the
#: standard library's decoder hold the GIL, so a decode holds the worker's one event loop
#: (every connection's handshake, read and answer waits); a body whose estimate is under
#: the memory share still takes up to a second (a 3 MiB ``[{},{},...]``), and four
#: connections posting such bodies in a loop kept every real review past 5 s.
DECODE_TIME_SHARE = 0.25
#: Seconds of decoding a worker may spend at once before the share applies: the 6 MiB UPDATE
#: of a Pod at the API server's limit takes 0.6 to 1.2 s (a second one waits, answered 429).
DECODE_TIME_BURST = 1.5


#: A peer refused a long decode is waiting for its turn this long (the API server retries a
#: 429 after its ``Retry-After``, :data:`RETRY_AFTER_SECONDS`).
DECODE_WAIT_SECONDS = 3.0
#: Peers whose decoding time is remembered at once; past it the least recent are forgotten.
DECODE_PEERS = 1024


class DecodeTime:
    """The event-loop time long decodes take in this worker, measured and paid back.

    A credit of :data:`DECODE_TIME_BURST` seconds refills at :data:`DECODE_TIME_SHARE` of a
    second a second; every decode pays what it took (measured, so a loaded machine pays
    more); a long one (estimate past :data:`TIMED_DECODE_BYTES`) starts only while the
    credit is positive, else it is answered 429 with ``Retry-After`` (unread when its
    ``Content-Length`` alone is past that). Short ones always run:
    the reviews the API server usually sends are never shed for what long bodies took.

    The credit is the worker's, its turns are the peers' (the client's address): each
    peer's own decoding time is counted too (paid back at the same share), and while a peer
    that was refused within :data:`DECODE_WAIT_SECONDS` has spent less than the one asking,
    the one asking is refused, so the credit refilled goes to the peer that waited (rev20
    F5: a client posting a long body whenever the credit was positive, and asking with a
    long ``Content-Length``, answered 429 unread, the rest of the time, took every grain of
    it, and the API server's 3 MiB UPDATE got 429 until its timeout). ``clock`` is
    ``time.monotonic`` but for tests.
    """

    def __init__(
        self,
        share: float = DECODE_TIME_SHARE,
        burst: float = DECODE_TIME_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.share, self.burst, self._clock = share, burst, clock
        self.credit = burst
        self._stamp = clock()
        self._lock = threading.Lock()
        #: Per peer: [seconds spent, paid back at ``share``; when last refused, or None].
        self._peers: dict[str, list[Any]] = {}

    def _refill(self) -> float:
        now = self._clock()
        elapsed = now - self._stamp
        self.credit = min(self.burst, self.credit + elapsed * self.share)
        self._stamp = now
        if elapsed > 0:
            for peer, entry in list(self._peers.items()):
                entry[0] = max(0.0, entry[0] - elapsed * self.share)
                if entry[0] == 0.0 and (entry[1] is None or now - entry[1] > DECODE_WAIT_SECONDS):
                    del self._peers[peer]
        return now

    def _entry(self, peer: str) -> list[Any]:
        entry = self._peers.pop(peer, None) or [0.0, None]
        self._peers[peer] = entry  # the most recent last
        while len(self._peers) > DECODE_PEERS:
            del self._peers[next(iter(self._peers))]
        return entry

    def may_start(self, cost: int, peer: str = "") -> bool:
        """Whether a decode of estimate ``cost`` from ``peer`` may start now."""
        if cost <= TIMED_DECODE_BYTES:
            return True
        with self._lock:
            now = self._refill()
            entry = self._entry(peer)
            ahead = any(
                other != peer
                and waited is not None
                and now - waited <= DECODE_WAIT_SECONDS
                and spent < entry[0]
                for other, (spent, waited) in self._peers.items()
            )
            if self.credit > 0 and not ahead:
                entry[1] = None
                return True
            entry[1] = now
            return False

    def paid(self, seconds: float, peer: str = "") -> None:
        """A decode from ``peer`` took ``seconds`` of the event loop."""
        with self._lock:
            self._refill()
            self.credit -= seconds
            self._entry(peer)[0] += seconds


class BodyBudget:
    """The bytes of request bodies in flight in this worker, reserved before they are read.

    A body that does not fit is not read on: it is answered 429 with ``Retry-After`` (the
    API server retries it; holding the connection instead would keep its socket and, past
    its timeout, fail the call anyway) and the connection is closed. ``large`` says whether
    a reservation counts against the large bodies' share (by default: when it alone is
    larger than ``large``; a body read in pieces says so by its declared length).
    """

    def __init__(
        self,
        total: int = IN_FLIGHT_BODY_BYTES,
        *,
        large: int = LARGE_BODY_BYTES,
        large_share: int = LARGE_BODIES_SHARE,
    ) -> None:
        self.total, self.large, self.large_share = total, large, large_share
        self.used = self.used_large = 0
        self._lock = threading.Lock()

    def reserve(self, size: int, *, large: bool | None = None) -> bool:
        with self._lock:
            is_large = size > self.large if large is None else large
            if self.used + size > self.total or (
                is_large and self.used_large + size > self.large_share
            ):
                return False
            self.used += size
            if is_large:
                self.used_large += size
            return True

    def release(self, size: int, *, large: bool | None = None) -> None:
        with self._lock:
            self.used -= size
            if size > self.large if large is None else large:
                self.used_large -= size


@dataclass
class Runtime:
    """What the app needs from the process: built by ``pullguard serve`` or by tests."""

    config: ConfigStore
    cluster: ClusterView
    metrics: Metrics
    own_namespace: str = ""
    not_ready: Callable[[], list[str]] = field(default=lambda: [])
    """Reasons the process is not ready yet (caches not synced...); empty when ready."""
    copy_secret: Callable[[SecretCopy, CopyCause], str] | None = None
    """Copies a default pull secret into a namespace, once the cause is proven real
    (:mod:`webhook.edge.secretsync`); returns the outcome for metrics."""
    metrics_port: int | None = None
    """The plain-HTTP port: only /metrics and /healthz are served there."""
    configmap_name: str = "pullguard-config"
    """pullguard's own ConfigMap (in ``own_namespace``), judged when it is applied."""
    notes: list[str] = field(default_factory=list)
    """What cannot run in this process (no cluster, no registry client): logged once, and
    shown in /readyz."""
    registry: RegistryView | None = None
    """Answers the registry and platform checks' questions; ``None``: those checks report
    that they could not run."""
    mirrors_down: Callable[[], Mapping[str, str]] = field(default=dict)
    """Mirror hosts not seen answering their probe lately, each with why: images are not
    rewritten to them (``webhook.edge.mirrors``)."""
    mirror_lacks: Callable[[str, str], None] = field(default=lambda host, image: None)
    """Told of a mirror host that lacked an image its registry has (the validating
    webhook's finding ``mirror_lacks``): it is not rewritten to for a while."""
    offload: Offload = field(default=_in_place)
    mutation_mode: Callable[[], str] | None = None
    """The mutation mode in force and why (``webhook.edge.policycontroller``), for /readyz;
    ``None``: no controller runs (``--dev``)."""
    """Runs CPU-heavy work (parsing a configuration under review) away from the event loop,
    so the reviews waiting behind it are answered meanwhile; by default, in place."""
    node_credentials: NodeCredentialView | None = None
    """The kubelet's credential providers the configuration names
    (``registry.imageCredentialProviderConfig``): their credentials are tried after the
    pod's own; ``None``: no node credentials are seen."""
    require_client_cert: bool = False
    """``serve --client-ca``: /validate and /mutate answer only connections that presented
    a client certificate the CA signed (the API server's, through its
    AdmissionConfiguration's kubeConfigFile)."""
    credentials_need_client_ca: bool = False
    """``serve --credentials-need-client-ca``: a registry is asked with a namespace's pull
    secrets only for a review over a certificate ``--client-ca`` verified. Otherwise a forged
    review naming another tenant's namespace learns whether an image exists in that tenant's
    private registry (a yes/no per image)."""


#: A WSGI status line per status code the admission endpoints answer with.
_STATUS_LINES = {
    200: "200 OK",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    405: "405 Method Not Allowed",
    413: "413 Request Entity Too Large",
    415: "415 Unsupported Media Type",
    429: "429 Too Many Requests",
    500: "500 Internal Server Error",
}
Answer = tuple[int, bytes]
"""An admission endpoint's HTTP status and its JSON body."""


def _answer(document: Any, status: int = 200) -> Answer:
    return status, encode_json(document)


#: ``ANSWER_MARGIN_SECONDS`` (edge.credproviders): kept from a review's budget
#: (``registry.timeoutSeconds``) for what follows the registry's answers: findings, the
#: message, encoding, the write.


class _DeadlineRegistry:
    """A review's registry view: every question is asked within what is left of the
    review's budget, counted from when its request arrived (reading and decoding the body
    came out of it), so the answer is sent within ``registry.timeoutSeconds`` in all."""

    def __init__(self, registry: RegistryView, started: float, budget: float) -> None:
        self.registry = registry
        self.deadline = started + budget - ANSWER_MARGIN_SECONDS

    def ask(
        self, questions: Sequence[Question], budget: float, tenant: str = ""
    ) -> Mapping[Question, RegistryAnswer]:
        left = min(budget, self.deadline - time.perf_counter())
        if left <= 0:
            spent = RegistryAnswer(Outcome.NOT_ASKED, "the review's time budget was spent")
            return dict.fromkeys(questions, spent)
        return self.registry.ask(questions, left, tenant=tenant)


#: Why a question that needs a namespace's pull secrets was not asked for an unverified
#: review (``serve --credentials-need-client-ca``).
UNVERIFIED_CREDENTIALS_NOTE = (
    "pullguard asks a registry with a namespace's pull secrets only for reviews the API "
    "server sent over its client certificate (serve --credentials-need-client-ca)"
)


class _AnonymousOnly:
    """A registry view for an unverified review under ``--credentials-need-client-ca``:
    questions carrying credentials are not asked (``not asked``, never a denial), the others
    are: an anonymous answer is anyone's to learn."""

    def __init__(self, registry: RegistryView) -> None:
        self.registry = registry

    def ask(
        self, questions: Sequence[Question], budget: float, tenant: str = ""
    ) -> Mapping[Question, RegistryAnswer]:
        anonymous = [q for q in questions if not q.credentials]
        got = dict(self.registry.ask(anonymous, budget, tenant=tenant)) if anonymous else {}
        withheld = RegistryAnswer(Outcome.NOT_ASKED, UNVERIFIED_CREDENTIALS_NOTE)
        return {q: got.get(q, withheld) for q in questions}


def _error_review(uid: str, code: int, message: str) -> Answer:
    body = review_response(uid, allowed=False, message=message, code=code)
    return _answer(body, status=code)


class AdmissionEndpoints:
    """``POST /validate`` and ``POST /mutate`` as plain WSGI, in front of the Flask app.

    Every other path goes to Flask. The two endpoints every pod creation calls skip Flask's
    request context, routing and response objects: about a sixth of a review's CPU time in
    the profile (docs/performance.md). On the plain metrics port they are not served.
    """

    def __init__(
        self,
        flask_app: WSGIApplication,
        routes: dict[str, Callable[[dict[str, Any]], Answer]],
        metrics_port: int | None,
    ) -> None:
        self.flask_app = flask_app
        self.routes = routes
        self.metrics_port = str(metrics_port) if metrics_port else None

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        handle = self.routes.get(environ.get("PATH_INFO", ""))
        if handle is None or (
            self.metrics_port and environ.get("SERVER_PORT") == self.metrics_port
        ):
            return self.flask_app(environ, start_response)
        if environ.get("REQUEST_METHOD") != "POST":
            status, body = 405, b'{"error":"use POST"}\n'
        else:
            status, body = handle(environ)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        if status in (413, 429):
            # The rest of the body is not read: the connection ends after this answer
            # (gunicorn drops this hop-by-hop header: the server's edge says it instead).
            headers.append(("Connection", "close"))
            close_after_answer = getattr(environ.get("gunicorn.socket"), "close_after_answer", None)
            if close_after_answer is not None:
                close_after_answer()
        if status == 429:
            headers.append(("Retry-After", str(RETRY_AFTER_SECONDS)))
        start_response(_STATUS_LINES[status], headers)
        return [body]


def _declared_size(environ: dict[str, Any]) -> int:
    """The body's Content-Length; without one (chunked), the cap: that much may come."""
    try:
        declared = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        declared = -1
    return declared if declared >= 0 else MAX_BODY_BYTES


class _BodyHeld:
    """One request's share of the body budget, grown before each piece of its body is read
    (see :data:`BODY_READ_BYTES`) and released whole when its answer is out."""

    def __init__(self, budget: BodyBudget, declared: int) -> None:
        self.budget = budget
        self.large = declared > budget.large
        self.held = 0

    def grow(self, size: int) -> bool:
        if not self.budget.reserve(size, large=self.large):
            return False
        self.held += size
        return True

    def release(self) -> None:
        self.budget.release(self.held, large=self.large)
        self.held = 0


#: :func:`_read_body`'s answer when the body budget has no room for its next piece.
NO_ROOM = b"\0no room"


def _read_body(environ: dict[str, Any], held: _BodyHeld) -> bytes | None:
    """The request body, or ``None`` when it is larger than :data:`MAX_BODY_BYTES`, or
    :data:`NO_ROOM` when the body budget had no room for a piece of it. Each piece is
    reserved in ``held`` before it is read, so the budget follows the bytes received, not
    the length the client declared."""
    try:
        declared = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        declared = -1
    if declared > MAX_BODY_BYTES:
        return None
    stream = environ["wsgi.input"]
    wanted = declared if declared >= 0 else MAX_BODY_BYTES + 1
    pieces: list[bytes] = []
    received = 0
    while received < wanted:
        size = min(wanted - received, BODY_READ_BYTES)
        if received + size > held.held and not held.grow(received + size - held.held):
            return NO_ROOM
        piece: bytes = stream.read(size)
        if not piece:
            break  # the client's end of file, or the request deadline's
        pieces.append(piece)
        received += len(piece)
    body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
    return None if len(body) > MAX_BODY_BYTES else body


def _peer(environ: dict[str, Any]) -> str:
    """The client's address (gunicorn's ``REMOTE_ADDR``): whose turn a long decode is."""
    return str(environ.get("REMOTE_ADDR") or "")


def create_app(runtime: Runtime) -> Flask:
    """Build the Flask app around ``runtime``. No state lives outside the returned app."""
    for note in runtime.notes:
        log.warning("%s", note)
    app = Flask("pullguard")
    metrics = runtime.metrics
    bodies = BodyBudget()
    decoded = BodyBudget(
        IN_FLIGHT_DECODED_BYTES, large=LARGE_DECODED_BYTES, large_share=LARGE_DECODED_SHARE
    )
    decode_time = DecodeTime()

    def read_body(
        webhook_name: str, environ: dict[str, Any], held: _BodyHeld
    ) -> tuple[bytes, Answer | None]:
        content_type = str(environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            metrics.requests.labels(webhook_name, "", "", "malformed").inc()
            return b"", _error_review(
                "", 415, f"content type must be application/json, got {content_type or 'none'!r}"
            )
        body = _read_body(environ, held)
        if body is NO_ROOM:
            return b"", shed(
                webhook_name,
                "",
                f"pullguard is reading {bodies.used} bytes of request bodies already",
            )
        if body is None:
            metrics.requests.labels(webhook_name, "", "", "malformed").inc()
            return b"", _error_review(
                "", 413, f"request body is larger than {MAX_BODY_BYTES} bytes"
            )
        return body, None

    def shed(webhook_name: str, uid: str, why: str) -> Answer:
        """The 429 for a review shed because ``why`` (a budget has no room for it), counted
        as ``shed``; the client retries after :data:`RETRY_AFTER_SECONDS`."""
        metrics.requests.labels(webhook_name, "", "", "shed").inc()
        return _error_review(uid, 429, f"{why}; retry after {RETRY_AFTER_SECONDS}s")

    def decode_time_spent(webhook_name: str, uid: str, size: int) -> Answer:
        """The 429 for a long body while the worker's share of decoding time is spent."""
        return shed(
            webhook_name,
            uid,
            "pullguard spent its share of time decoding large reviews lately "
            f"({size >> 10} KiB here)",
        )

    def decoding_refusal(webhook_name: str, body: bytes, cost: int, peer: str) -> Answer | None:
        """Why ``body`` is not decoded now (its estimated decoded size does not fit), or
        ``None`` once that size is reserved in ``decoded``."""
        if cost > LARGE_DECODED_SHARE:
            metrics.requests.labels(webhook_name, "", "", "malformed").inc()
            log.warning("review of %d bytes refused: about %d MiB decoded", len(body), cost >> 20)
            return _error_review(
                uid_from_bytes(body),
                413,
                f"request body of {len(body) >> 20} MiB is too big to decode: it would take "
                f"about {(cost + (1 << 20) - 1) >> 20} MiB of objects, more than the "
                f"{LARGE_DECODED_SHARE >> 20} MiB pullguard decodes for one review (an UPDATE "
                "of two 3 MiB objects, the API server's limit, takes under 90): no review "
                "the API server sends is shaped so",
            )
        if not decode_time.may_start(cost, peer):
            return decode_time_spent(webhook_name, uid_from_bytes(body), len(body))
        if not decoded.reserve(cost):
            return shed(
                webhook_name,
                uid_from_bytes(body),
                f"pullguard is decoding about {decoded.used >> 20} MiB of reviews already",
            )
        return None

    def parse_body(webhook_name: str, body: bytes, peer: str) -> AdmissionRequest | Answer:
        """The review ``body`` holds, or the 400 answer saying why it holds none; the time
        its decode held the event loop is paid to ``decode_time``."""
        decoding = time.perf_counter()
        try:
            return parse_review_bytes(body)
        except MalformedReview as error:
            metrics.requests.labels(webhook_name, "", "", "malformed").inc()
            log.warning("malformed review (uid %r): %s", error.uid, _short(error.reason))
            return _error_review(error.uid, 400, f"malformed AdmissionReview: {error.reason}")
        finally:
            decode_time.paid(time.perf_counter() - decoding, peer)

    def guarded(
        webhook_name: str, handle: Callable[[AdmissionRequest, float, bool], Answer]
    ) -> Callable[[dict[str, Any]], Answer]:
        duration = metrics.duration.labels(webhook_name)

        def endpoint(environ: dict[str, Any]) -> Answer:
            started = time.perf_counter()
            # Set by the server's TLS edge (webhook.edge.server) for a certificate signed by
            # --client-ca; nothing a request carries can set it.
            verified = bool(getattr(environ.get("gunicorn.socket"), "client_verified", False))
            if runtime.require_client_cert and not verified:
                # Before the body is read: an unauthenticated caller costs no memory.
                metrics.requests.labels(webhook_name, "", "", "unauthenticated").inc()
                return _error_review(
                    "",
                    401,
                    "a client certificate signed by pullguard's --client-ca is required: "
                    "only the API server may send reviews",
                )
            size = min(_declared_size(environ), MAX_BODY_BYTES + 1)
            if not decode_time.may_start(size, _peer(environ)):
                # A body declared past TIMED_DECODE_BYTES decodes long (its estimate is past
                # its length): while the worker's share of time for those is spent, it is
                # not even read (may_start lets every shorter one through).
                return decode_time_spent(webhook_name, "", size)
            held = _BodyHeld(bodies, size)
            try:
                return judged(environ, started, verified, held)
            finally:
                held.release()

        def judged(
            environ: dict[str, Any], started: float, verified: bool, held: _BodyHeld
        ) -> Answer:
            body, error_answer = read_body(webhook_name, environ, held)
            if error_answer is not None:
                return error_answer
            # Before decoding: the objects a body decodes to can be 25 times its size.
            cost = decoded_cost(body)
            refusal = decoding_refusal(webhook_name, body, cost, _peer(environ))
            if refusal is not None:
                return refusal
            try:
                return decoded_and_judged(body, started, verified, _peer(environ))
            finally:
                decoded.release(cost)

        def decoded_and_judged(body: bytes, started: float, verified: bool, peer: str) -> Answer:
            review = parse_body(webhook_name, body, peer)
            if isinstance(review, tuple):
                return review  # the 400
            try:
                return handle(review, started, verified)
            except RecursionError:
                # Decoded, but deeper than the API server stores any object: a forged review.
                metrics.requests.labels(webhook_name, "other", "other", "malformed").inc()
                log.warning("malformed review (uid %r): object %s", review.uid, NESTED_TOO_DEEPLY)
                return _error_review(
                    review.uid, 400, f"malformed AdmissionReview: object is {NESTED_TOO_DEEPLY}"
                )
            except Exception:  # the 500 must still carry the uid
                log.exception("internal error on %s (uid %s)", webhook_name, review.uid)
                metrics.requests.labels(
                    webhook_name,
                    kind_label(review.kind),
                    operation_label(review.operation),
                    "error",
                ).inc()
                return _error_review(
                    review.uid, 500, f"pullguard internal error while handling uid {review.uid}"
                )
            finally:
                duration.observe(time.perf_counter() - started)

        return endpoint

    def handle_validate(review: AdmissionRequest, started: float, verified: bool) -> Answer:
        config = runtime.config.current
        if review.kind == "ConfigMap":
            # A forged ConfigMap review costs up to a 256 KiB YAML parse: never on the loop.
            decision = runtime.offload(
                lambda: review_config(
                    review, namespace=runtime.own_namespace, name=runtime.configmap_name
                )
            )
        else:
            decision = validate(
                review,
                config,
                runtime.cluster,
                own_namespace=runtime.own_namespace,
                registry=_review_registry(runtime, started, config, verified),
                node=_review_node_credentials(runtime, started, config, review.namespace),
                mirrors_down=runtime.mirrors_down(),
                # A review's userInfo is believed only from the API server (--client-ca):
                # anyone else could claim system:masters and be told where secrets are.
                user_verified=verified,
            )
        _record_validation(metrics, review, decision)
        for finding in decision.findings:
            if finding.cause == "mirror_lacks" and finding.mirror:
                runtime.mirror_lacks(finding.mirror, finding.image or "")
        body = review_response(
            review.uid,
            allowed=decision.allowed,
            message=decision.message,
            warnings=decision.warnings,
        )
        return _answer(body)

    def handle_mutate(review: AdmissionRequest, started: float, verified: bool) -> Answer:
        del started  # mutate asks no registry
        config = runtime.config.current
        result = mutate(
            review,
            config,
            runtime.cluster,
            own_namespace=runtime.own_namespace,
            mirrors_down=runtime.mirrors_down(),
        )
        warnings = list(result.warnings)
        for copy_request in result.secret_copies:
            if review.dry_run:
                # dryRun forbids side effects (the webhook declares sideEffects: NoneOnDryRun).
                metrics.secret_copies.labels("skipped_dry_run").inc()
            else:
                outcome = (
                    runtime.copy_secret(copy_request, copy_cause(review, verified))
                    if runtime.copy_secret is not None
                    else "failed"  # copying is unavailable (no sync key): said in the log
                )
                outcome, _, why = outcome.partition(": ")  # "failed: <the API server's words>"
                metrics.secret_copies.labels(outcome).inc()
                if outcome == "unproven":
                    warnings.append(
                        f'pullguard: secret "{copy_request.name}" not copied into '
                        f'"{copy_request.namespace}": the review is not proven to come from the '
                        "API server (serve --client-ca) and no existing object needs it"
                    )
                elif outcome not in ("created", "exists", "deferred"):
                    said = f": {why}" if why else ""
                    warnings.append(
                        f'pullguard: could not copy secret "{copy_request.name}" into '
                        f'"{copy_request.namespace}" ({outcome}{said}); see the pullguard logs'
                    )
        _record_mutation(metrics, review, result)
        body = review_response(
            review.uid,
            allowed=True,
            warnings=warnings,
            warning_runes=MUTATE_WARNING_RUNES,
            patch=result.patch,
        )
        return _answer(body)

    if runtime.metrics_port:
        metrics_only = {"/metrics", "/healthz"}
        metrics_port = str(runtime.metrics_port)

        @app.before_request
        def plain_port_serves_metrics_only() -> Response | None:
            if request.environ.get("SERVER_PORT") == metrics_port and (
                request.path not in metrics_only
            ):
                return Response("not found\n", status=404, mimetype="text/plain")
            return None

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    @app.get("/readyz")
    def readyz() -> Response:
        reasons = runtime.config.not_ready() + runtime.not_ready()
        notes = "".join(f"note: {note}\n" for note in runtime.notes)
        if runtime.mutation_mode is not None:
            notes += f"mutation mode: {runtime.mutation_mode()}\n"
        if reasons:
            return Response(
                "not ready: " + "; ".join(reasons) + "\n" + notes,
                status=503,
                mimetype="text/plain",
            )
        return Response("ok\n" + notes, mimetype="text/plain")

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        # On the webhook port under --client-ca, only the API server's certificate: the
        # in-cluster audit's gauges name namespaces and their findings (rev20d F10). The
        # scraper reads --metrics-port; /healthz and /readyz stay open for the kubelet.
        on_plain_port = bool(runtime.metrics_port) and (
            request.environ.get("SERVER_PORT") == str(runtime.metrics_port)
        )
        verified = bool(getattr(request.environ.get("gunicorn.socket"), "client_verified", False))
        if runtime.require_client_cert and not on_plain_port and not verified:
            return Response(
                "a client certificate signed by pullguard's --client-ca is required for "
                "/metrics on the webhook port; scrape --metrics-port instead\n",
                status=401,
                mimetype="text/plain",
            )
        return Response(metrics.render(), mimetype="text/plain; version=0.0.4")

    app.wsgi_app = AdmissionEndpoints(  # type: ignore[method-assign]
        app.wsgi_app,
        {
            "/validate": guarded("validate", handle_validate),
            "/mutate": guarded("mutate", handle_mutate),
        },
        runtime.metrics_port,
    )
    return app


def _review_registry(
    runtime: Runtime, started: float, config: Config, verified: bool
) -> RegistryView | None:
    """The registry view one review's questions go to: within its budget, and without
    pull secrets for an unverified review under ``--credentials-need-client-ca``."""
    if runtime.registry is None:
        return None
    view: RegistryView = runtime.registry
    if runtime.credentials_need_client_ca and not verified:
        view = _AnonymousOnly(view)
    return _DeadlineRegistry(view, started, config.registry.timeout_seconds)


def _review_node_credentials(
    runtime: Runtime, started: float, config: Config, namespace: str | None = None
) -> NodeCredentialView | None:
    """The credential providers one review asks, within its registry budget, its plugin
    runs counted against the review's namespace (its share, as for registry questions)."""
    if runtime.node_credentials is None:
        return None
    budget = config.registry.timeout_seconds - ANSWER_MARGIN_SECONDS
    cluster = getattr(runtime, "cluster", None)
    may_run = None
    if namespace is not None and cluster is not None:

        def may_run() -> str:
            return _namespace_missing(cluster, namespace)

    return DeadlineProviders(runtime.node_credentials, started, budget, namespace, may_run)


def _namespace_missing(cluster: ClusterView, namespace: str) -> str:
    """Why a review's namespace gets no plugin run: it does not exist (rev24h F3: forged
    reviews naming made-up namespaces, each a namespace's only run and so never preempted,
    held every slot). The API server sends no review for a Pod in a namespace that does not
    exist; a review naming one is forged. The cluster's Namespace cache answers, and a
    namespace not in it is read from the API server (one created a moment ago is there);
    ``""`` when it exists or the cluster cannot tell (unreachable, or a state file that
    lists no Namespaces): then the run is not held back."""
    if not namespace:
        return ""
    if isinstance(cluster, InMemoryCluster) and not cluster.namespaces:
        return ""  # a state file without Namespaces: it cannot tell
    try:
        labels = cluster.namespace_labels(namespace)
    except ClusterUnavailable:
        return ""
    return f"namespace {namespace} does not exist" if labels is None else ""


def _record_validation(metrics: Metrics, review: AdmissionRequest, decision: Decision) -> None:
    if decision.reason in ("exempt", "unsupported", "unchanged", "mode-off"):
        outcome = "exempt" if decision.reason == "exempt" else "allowed"
    elif not decision.allowed:
        outcome = "denied"
    elif decision.warnings:
        outcome = "warned"
    else:
        outcome = "allowed"
    kind, operation = kind_label(review.kind), operation_label(review.operation)
    metrics.requests.labels("validate", kind, operation, outcome).inc()
    for check, result in decision.outcomes.items():
        metrics.check_results.labels("validate", kind, check, result).inc()
    for finding in decision.findings:
        metrics.findings.labels(finding.check, finding.action.value).inc()
    log.info(
        "validate uid=%s kind=%s ns=%s name=%s op=%s decision=%s findings=%s",
        _short(review.uid),
        _short(review.kind),
        _short(review.namespace),
        _short(review.object_name or review.generate_name),
        operation,
        outcome,
        ",".join(f"{f.check}:{f.action.value}" for f in decision.findings) or "-",
    )


def _record_mutation(metrics: Metrics, review: AdmissionRequest, result: Mutation) -> None:
    """Metrics and one log line per review, with counts: a pod of 256 entries (the cap) is
    one line, not one per entry. Mirror hosts and default secrets come from the
    configuration, so naming them is bounded by it."""
    outcome = "patched" if result.patch else ("exempt" if result.reason == "exempt" else "allowed")
    kind = kind_label(review.kind)
    metrics.requests.labels("mutate", kind, operation_label(review.operation), outcome).inc()
    if result.rewrites:
        metrics.mutations.labels(kind, "image_rewrite").inc(len(result.rewrites))
    down = Counter(skip.mirror for skip in result.skipped)
    for mirror, count in down.items():
        metrics.mirror_skips.labels(mirror).inc(count)
    if result.withheld:
        metrics.mutations.labels(kind, "secret_withheld").inc(len(result.withheld))
    if result.injected_secrets:
        metrics.mutations.labels(kind, "secret_injection").inc(len(result.injected_secrets))
    loud = bool(result.skipped or result.withheld) or result.reason in (
        "too-many-images",
        "too-many-secrets",
    )
    if not (loud or result.rewrites or result.private or result.injected_secrets):
        return
    restored = sum(1 for r in result.rewrites if r.restored)
    (log.warning if loud else log.info)(
        "mutate uid=%s kind=%s ns=%s name=%s op=%s outcome=%s reason=%s rewrites=%d "
        "restored=%d mirror_down=%s private=%d injected=%s withheld=%s%s",
        _short(review.uid),
        _short(review.kind),
        _short(review.namespace),
        _short(review.object_name or review.generate_name),
        operation_label(review.operation),
        outcome,
        result.reason,
        len(result.rewrites) - restored,
        restored,
        ",".join(f"{mirror}:{count}" for mirror, count in sorted(down.items())) or "-",
        len(result.private),
        ",".join(_short(name) for name in result.injected_secrets) or "-",
        "; ".join(
            f"{_short(w.where)} for {_short(w.registry)}: it {_short(w.reason)}"
            for w in result.withheld
        )
        or "-",
        " (dry run)" if review.dry_run else "",
    )


def _short(value: str, limit: int = 256) -> str:
    """A caller-supplied value as it may appear in a log line: at most ``limit`` characters."""
    return value if len(value) <= limit else value[:limit] + f"...({len(value)} chars)"
