"""The AdmissionReview wire format (``admission.k8s.io/v1``): reading requests, writing responses.

Requests are read defensively: a body that is not a usable AdmissionReview raises
:class:`MalformedReview` with a reason a person can act on and whatever ``uid`` could be
recovered, so the HTTP edge can answer 400 and still name the request. That includes objects
shaped as the API server never sends them (it decodes every object into its Go type first):
``podspec.shape_problem`` names the field, so no check meets a number where a list belongs.

Responses' warnings are bounded as the API server keeps them (:func:`bounded_warnings`):
every webhook's warnings on a request go into one recorder (kube-apiserver,
``endpoints/filters/warning.go``), which keeps them whole up to 4096 runes in all; past that
it cuts every warning to 256 runes and drops the rest, so the line that says how many were
left out would be dropped too. pullguard's two webhooks share those 4096 runes.

Pure: JSON-shaped data in, JSON-shaped data out; encoding and HTTP belong to the edge.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

import orjson

from webhook.core.podspec import shape_problem
from webhook.core.registry import is_namespace_name

API_VERSION = "admission.k8s.io/v1"

#: The API server keeps a request's warnings whole up to this many runes in all (over every
#: webhook and its own); past it, each is cut to 256 runes and the rest are dropped.
API_SERVER_WARNING_RUNES = 4096
#: pullguard's shares of them, which together fit: the mutating webhook runs first, and its
#: warnings (rewrites, mostly) must never crowd out the validating webhook's findings.
MUTATE_WARNING_RUNES = 1024
VALIDATE_WARNING_RUNES = API_SERVER_WARNING_RUNES - MUTATE_WARNING_RUNES
#: Room kept for the line that says how many warnings were left out.
_MORE_RESERVE = 48


class StatusDict(TypedDict, total=False):
    code: int
    message: str
    reason: str


class ResponseDict(TypedDict):
    uid: str
    allowed: bool
    status: NotRequired[StatusDict]
    warnings: NotRequired[list[str]]
    patch: NotRequired[str]
    patchType: NotRequired[Literal["JSONPatch"]]


class ReviewResponseDict(TypedDict):
    apiVersion: str
    kind: Literal["AdmissionReview"]
    response: ResponseDict


class MalformedReview(ValueError):
    """The body is not an AdmissionReview pullguard can answer."""

    def __init__(self, reason: str, uid: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.uid = uid


@dataclass(frozen=True, slots=True)
class UserInfo:
    """``request.userInfo``: who made the request, as the API server authenticated them.
    Only the API server's word when the review came from it (``serve --client-ca``): on a
    port anyone can reach, a review may claim any user."""

    username: str = ""
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AdmissionRequest:
    """The parts of ``request`` pullguard uses."""

    uid: str
    kind: str
    namespace: str
    name: str
    operation: str
    sub_resource: str
    object: Mapping[str, Any] | None
    old_object: Mapping[str, Any] | None
    dry_run: bool
    api_version: str = "v1"
    user: UserInfo = UserInfo()
    field_manager: str = ""
    """``request.options.fieldManager`` (the CreateOptions' or UpdateOptions'): the client
    that wrote the object, ``kubectl-run`` for a pod made by ``kubectl run`` (no manifest
    exists to edit). Only a hint for the words of a fix, never for a decision: any client
    may send any name."""

    @property
    def generate_name(self) -> str:
        metadata = (self.object or {}).get("metadata") or {}
        value = metadata.get("generateName") if isinstance(metadata, Mapping) else None
        return value if isinstance(value, str) else ""

    @property
    def object_name(self) -> str:
        """The name, from the request or the object's metadata (controllers omit the former)."""
        if self.name:
            return self.name
        metadata = (self.object or {}).get("metadata") or {}
        value = metadata.get("name") if isinstance(metadata, Mapping) else None
        return value if isinstance(value, str) else ""


#: ``"request": {"uid": "..."`` at the start of the request, as the API server writes it:
#: how a body that cannot be decoded still gets its uid back (a 400 must name the request).
_UID_PREFIX = re.compile(rb'"request"\s*:\s*\{\s*"uid"\s*:\s*"([A-Za-z0-9._:-]{1,128})"')
NESTED_TOO_DEEPLY = "nested deeper than any object the API server stores"


def uid_from_bytes(body: bytes) -> str:
    """The request's uid read from the raw body, or "" (only the first 64 KiB are looked at)."""
    found = _UID_PREFIX.search(body[: 64 * 1024])
    return found.group(1).decode("ascii") if found else ""


#: Bodies with at most this many ``{`` and ``[`` together cannot nest deeper than Python's
#: recursion limit, so orjson may decode them; others go to the standard library, whose
#: RecursionError on deep nesting is how a forged, too-deep review is told apart.
_ORJSON_MAX_OPENINGS = 900
#: orjson parses into a buffer of its own 12 times the body's size (measured with
#: tracemalloc, orjson 3.13: 12.0 bytes a byte whatever the shape), beside the objects it
#: builds; past this size a body goes to the standard library, whose only such copy is the
#: body as a ``str``: a 7 MiB body of numbers took 84 MiB more than its objects in orjson.
_ORJSON_MAX_BYTES = 1024 * 1024
_ORJSON_BUFFER_PER_BYTE = 12
#: orjson reads integers past 64 bits as floats, silently: bodies with such a run of digits
#: (anywhere, strings included: a cheap over-approximation) go to the standard library.
_LONG_DIGITS = re.compile(rb"[0-9]{20}")


def _orjson_decodes(body: bytes) -> bool:
    """Whether :func:`decode_json` gives ``body`` to orjson (it may still fall back)."""
    return (
        len(body) <= _ORJSON_MAX_BYTES
        and body.count(b"{") + body.count(b"[") <= _ORJSON_MAX_OPENINGS
        and not _LONG_DIGITS.search(body)
    )


def decode_json(body: bytes) -> Any:
    """JSON bytes to Python values, as the standard library decodes them, faster.

    orjson takes a tenth of the standard library's time on a review; it is used only where it
    cannot change the outcome: bodies that cannot nest deeper than the standard library's
    limit (a deep body must still be told apart as one) and hold no integer past 64 bits
    (orjson would read it as a float), and only up to 1 MiB (its parse buffer is 12 times
    the body). The standard library decodes everything else, and whatever orjson refuses
    but JSON allows (other UTF encodings, a lone surrogate).
    """
    if _orjson_decodes(body):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return json.loads(body)


#: Bytes of Python objects per JSON token, as measured on CPython 3.11 with orjson and the
#: standard library (the larger of the two; figures in ``decoded_cost``): each value a
#: separator introduces (``,``) a slot and a float or an int (8 + 24 to 32), a string two
#: quotes of 26 (its header: 49 bytes for ASCII, 73 to 80 wider), a dict 150 more than its
#: entries (an empty one 40 in all: ``{}`` takes back the difference), each entry (``:``) 16
#: (its slot in the table; a key repeated is shared, a new one is a string), a list 96 (a
#: list of one float: 145 bytes with its slot and the float).
#: Other tokens inside strings are counted too: an over-estimate.
_COST_PER_TOKEN = (
    (b"{", 150),
    (b"{}", -110),
    (b"[", 96),
    (b",", 40),
    (b":", 16),
    (b'"', 26),
    # Inside strings (the ``k:{\"name\":...}`` keys of managedFields): an escaped quote
    # is one character, not a string (``\\`` puts back a closing quote after an escaped
    # backslash), and a ``{`` before one is no dict. Outside a string either is no JSON:
    # decoding stops there, and what these take back was counted in the same bytes.
    (b'\\"', -26),
    (b"\\\\", 26),
    (b'{\\"', -150),
)
#: What may make a string wider than 1 byte a character: a byte past ASCII (UTF-8), or a
#: ``\u`` escape of a character past U+00FF. Latin-1 (U+0080 to U+00FF, lead bytes C2 and
#: C3, or ``\u00XX``) stays 1 byte a character; up to U+FFFF is 2; past it 4.
_WIDE_RUN = re.compile(rb"[\x80-\xff]+|\\u(?!00)[0-9a-fA-F]{4}")
_TWO_BYTES = re.compile(rb"[\xc4-\xef]|\\u(?!00)")
_FOUR_BYTES = re.compile(rb"[\xf0-\xf7]|\\u[dD][89abAB]")
#: Strings with such characters priced one by one, at most this many; past them, every
#: byte of the rest of the body is priced as in a string 4 bytes a character.
_WIDE_STRINGS_PRICED = 2048
#: A non-ASCII string's header is larger than an ASCII one's (73 to 80 bytes, not 49).
_WIDE_HEADER = 40


def _escaped(body: bytes, index: int) -> bool:
    """Whether the character at ``index`` follows an odd run of backslashes (is escaped)."""
    before = index
    while before > 0 and body[before - 1] == 0x5C:
        before -= 1
    return (index - before) % 2 == 1


def _string_end(body: bytes, start: int) -> int:
    """The index of the quote that closes the string running at ``start`` (an escaped
    quote does not), or the body's length."""
    while True:
        end = body.find(b'"', start)
        if end < 0:
            return len(body)
        if not _escaped(body, end):
            return end
        start = end + 1


def _string_start(body: bytes, end: int) -> int:
    """The index of the quote that opens the string holding index ``end`` (or 0)."""
    while True:
        start = body.rfind(b'"', 0, end)
        if start <= 0:
            return 0
        if not _escaped(body, start):
            return start
        end = start


def _widening(body: bytes) -> int:
    """Bytes the strings holding characters past ASCII take beyond 1 byte a character: each
    such string's length times its width less one, priced string by string (a body of ASCII
    and one ``é`` is no wider than its one string)."""
    extra = 0
    priced_to = 0  # strings are priced once, however many runs they hold
    for count, run in enumerate(_WIDE_RUN.finditer(body)):
        if run.start() < priced_to:
            continue
        if count >= _WIDE_STRINGS_PRICED:
            return extra + 3 * (len(body) - run.start())
        start = _string_start(body, run.start())
        end = _string_end(body, run.end())
        text = body[start:end]
        width = 4 if _FOUR_BYTES.search(text) else 2 if _TWO_BYTES.search(text) else 1
        extra += (width - 1) * len(text) + _WIDE_HEADER
        priced_to = end + 1
    return extra


def _decoder_buffer(body: bytes) -> int:
    """What the decoder holds beside the objects while it builds them: orjson's parse buffer,
    or the standard library's ``str`` of the whole body (1, 2 or 4 bytes a character, by its
    widest one)."""
    if _orjson_decodes(body):
        return _ORJSON_BUFFER_PER_BYTE * len(body) + 4096
    if body.isascii():
        return len(body)
    return len(body) * (4 if _FOUR_BYTES.search(body) else 2 if _TWO_BYTES.search(body) else 1)


def decoded_cost(body: bytes) -> int:
    """About how many bytes a worker needs to decode ``body``, at most (counted at C speed,
    before decoding): the objects it decodes to (its length, plus a price per ``{``, ``[``,
    ``,``, ``:`` and ``"``, plus what strings past ASCII take beyond a byte a character)
    and what the decoder holds beside them meanwhile (its peak: orjson's parse buffer, or
    the standard library's copy of the body as a ``str``).

    Measured against tracemalloc (issue 20's figures; the larger of orjson's and the
    standard library's), per element of a 2 MiB list: ``{}`` decodes to 72 bytes (estimate
    73), ``[]`` 64 (97), ``"a"`` 58 (86), ``"é"`` 82 (102), ``1.5`` 33 (34), ``{"a":1}`` 193
    (256), ``[[]]`` 153 (163), ``[1]`` 97 (98), a dict of unique keys 105 per entry (109);
    an UPDATE of two 3 MiB Pods of env entries and their managedFields 38 to 52 MiB
    (estimate 1.6 to 1.7 times that). Never under the figure for the shapes measured (dicts
    and lists of 1 to 100 entries among them); the peak of a decode (objects and buffer)
    neither, for lists of numbers and literals (``tests/unit/test_review_codec.py``).
    """
    objects = len(body) + sum(body.count(token) * price for token, price in _COST_PER_TOKEN)
    if not body.isascii() or b"\\u" in body:
        objects += _widening(body)
    # 1 KiB for what a decode holds whatever the body (a wide string's header, a buffer).
    return 1024 + objects + _decoder_buffer(body)


def encode_json(document: Any) -> bytes:
    """Python values to compact JSON bytes: orjson, or the standard library (which escapes
    them) for strings orjson refuses, such as a lone surrogate a review's JSON may carry."""
    try:
        return orjson.dumps(document)
    except TypeError:
        return json.dumps(document, separators=(",", ":")).encode("ascii")


def parse_review_bytes(body: bytes) -> AdmissionRequest:
    """Decode and read an AdmissionReview body."""
    try:
        document = decode_json(body)
    except RecursionError:
        raise MalformedReview(f"body is {NESTED_TOO_DEEPLY}", uid_from_bytes(body)) from None
    except (ValueError, UnicodeDecodeError) as error:
        raise MalformedReview(
            f"body is not valid JSON: {str(error)[:200]}", uid_from_bytes(body)
        ) from None
    return parse_review(document)


def _uid_of(document: Any) -> str:
    if isinstance(document, Mapping):
        request = document.get("request")
        if isinstance(request, Mapping) and isinstance(request.get("uid"), str):
            return str(request["uid"])
    return ""


def parse_review(document: Any) -> AdmissionRequest:
    """Read a decoded AdmissionReview, or raise :class:`MalformedReview`."""
    uid = _uid_of(document)
    if not isinstance(document, Mapping):
        raise MalformedReview("body is not a JSON object")
    if document.get("kind") != "AdmissionReview":
        raise MalformedReview(f"kind must be AdmissionReview, got {document.get('kind')!r}", uid)
    if document.get("apiVersion") != API_VERSION:
        raise MalformedReview(
            f"apiVersion must be {API_VERSION} (set admissionReviewVersions: [v1]), "
            f"got {document.get('apiVersion')!r}",
            uid,
        )
    request = document.get("request")
    if not isinstance(request, Mapping):
        raise MalformedReview("request is missing", uid)
    if not uid:
        raise MalformedReview("request.uid is missing", uid)
    kind = request.get("kind")
    if not isinstance(kind, Mapping) or not isinstance(kind.get("kind"), str):
        raise MalformedReview("request.kind.kind is missing", uid)
    problem = _envelope_problem(request)
    if problem is not None:
        raise MalformedReview(problem, uid)
    operation = request.get("operation")
    if operation not in ("CREATE", "UPDATE", "DELETE", "CONNECT"):
        raise MalformedReview(f"request.operation {operation!r} is not an admission operation", uid)
    obj = request.get("object")
    old = request.get("oldObject")
    for field_name, value in (("object", obj), ("oldObject", old)):
        if value is not None and not isinstance(value, Mapping):
            raise MalformedReview(f"request.{field_name} must be an object", uid)
    if operation in ("CREATE", "UPDATE") and obj is None:
        raise MalformedReview(f"request.object is missing for {operation}", uid)
    for field_name, value in (("object", obj), ("oldObject", old)):
        problem = (
            shape_problem(str(kind["kind"]), value, f"request.{field_name}") if value else None
        )
        if problem is not None:
            raise MalformedReview(problem, uid)
    namespace = request.get("namespace") or ""
    if not isinstance(namespace, str):
        raise MalformedReview("request.namespace must be a string", uid)
    if namespace and not is_namespace_name(namespace):
        # The API server sends only names it accepted; another is a forged review, and one
        # must not name pullguard's own tenants (rev20e F9).
        raise MalformedReview(
            f"request.namespace {namespace[:80]!r} is not a namespace name (a DNS-1123 label)",
            uid,
        )
    return AdmissionRequest(
        uid=uid,
        user=_user_info(request.get("userInfo"), uid),
        kind=str(kind["kind"]),
        api_version=str(kind.get("version") or ""),
        namespace=namespace,
        name=str(request.get("name") or ""),
        operation=str(operation),
        sub_resource=str(request.get("subResource") or ""),
        object=obj,
        old_object=old,
        dry_run=bool(request.get("dryRun")),
        field_manager=_field_manager(request.get("options")),
    )


def _field_manager(options: Any) -> str:
    """``options.fieldManager`` when it is a string, else ``""``."""
    value = options.get("fieldManager") if isinstance(options, Mapping) else None
    return value if isinstance(value, str) else ""


#: ``request`` fields of Go type ``GroupVersionKind``/``GroupVersionResource`` (each field a
#: string), ``string`` and ``*bool``: the API server sends each absent, null or so typed.
_ENVELOPE_GROUPS = {
    "kind": ("group", "version", "kind"),
    "requestKind": ("group", "version", "kind"),
    "resource": ("group", "version", "resource"),
    "requestResource": ("group", "version", "resource"),
}
_ENVELOPE_STRINGS = ("name", "subResource", "requestSubResource")


def _envelope_problem(request: Mapping[str, Any]) -> str | None:
    """Why the fields of ``request`` around the objects are not shaped as the API server
    sends them; ``None`` when they are."""
    for field_name, keys in _ENVELOPE_GROUPS.items():
        value = request.get(field_name)
        if value is None:
            continue
        if not isinstance(value, Mapping):
            return f"request.{field_name} must be an object"
        for key in keys:
            if value.get(key) is not None and not isinstance(value[key], str):
                return f"request.{field_name}.{key} must be a string"
    for field_name in _ENVELOPE_STRINGS:
        value = request.get(field_name)
        if value is not None and not isinstance(value, str):
            return f"request.{field_name} must be a string"
    dry_run = request.get("dryRun")
    if dry_run is not None and not isinstance(dry_run, bool):
        return "request.dryRun must be a boolean"
    return None


def _user_info(value: Any, uid: str) -> UserInfo:
    """``request.userInfo`` read strictly: the API server always sends strings there."""
    if value is None:
        return UserInfo()
    if not isinstance(value, Mapping):
        raise MalformedReview("request.userInfo must be an object", uid)
    username, user_uid = value.get("username") or "", value.get("uid") or ""
    if not isinstance(username, str) or not isinstance(user_uid, str):
        raise MalformedReview("request.userInfo.username and uid must be strings", uid)
    groups = value.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise MalformedReview("request.userInfo.groups must be a list of strings", uid)
    extra = value.get("extra") or {}
    if not isinstance(extra, Mapping) or not all(
        isinstance(v, list) and all(isinstance(i, str) for i in v) for v in extra.values()
    ):
        raise MalformedReview("request.userInfo.extra must map keys to lists of strings", uid)
    return UserInfo(
        username=username,
        uid=user_uid,
        groups=tuple(groups),
        extra={str(k): tuple(v) for k, v in extra.items()},
    )


def review_response(
    uid: str,
    *,
    allowed: bool,
    message: str | None = None,
    code: int | None = None,
    warnings: Sequence[str] = (),
    warning_runes: int = VALIDATE_WARNING_RUNES,
    patch: list[dict[str, Any]] | None = None,
) -> ReviewResponseDict:
    """An AdmissionReview response. A denial carries ``status.code`` (403 unless given);
    ``warnings`` are kept to ``warning_runes`` (:func:`bounded_warnings`)."""
    response: ResponseDict = {"uid": uid, "allowed": allowed}
    if not allowed or message:
        status: StatusDict = {"code": code or (200 if allowed else 403)}
        if message:
            status["message"] = message
        if not allowed:
            status["reason"] = "Forbidden" if (code or 403) == 403 else "BadRequest"
        response["status"] = status
    if warnings:
        response["warnings"] = bounded_warnings(warnings, warning_runes)
    if patch:
        response["patchType"] = "JSONPatch"
        response["patch"] = base64.b64encode(encode_json(patch)).decode("ascii")
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


def _printable(line: str) -> str:
    """``line`` with every control character a space: the API server drops a warning that
    holds one (``NewWarningHeader``: Go's ``unicode.IsControl``, C0, DEL and C1)."""
    if all(" " <= ch < "\x7f" or ch > "\x9f" for ch in line):
        return line
    return "".join(" " if ch < " " or "\x7f" <= ch <= "\x9f" else ch for ch in line)


def bounded_warnings(lines: Sequence[str], runes: int) -> list[str]:
    """``lines`` as the API server will keep them, within ``runes`` in all (it counts runes:
    code points): whole lines in order while they fit, then ``pullguard: N more warnings not
    shown``, itself within the bound. Lines that fit already are returned as they are, so
    bounding twice changes nothing."""
    lines = [_printable(line) for line in lines]
    if sum(len(line) for line in lines) <= runes:
        return lines
    out: list[str] = []
    used = 0
    for line in lines:
        if used + len(line) + _MORE_RESERVE > runes:
            break
        out.append(line)
        used += len(line)
    out.append(f"pullguard: {len(lines) - len(out)} more warnings not shown")
    return out
