"""JSON as deep as Go's ``encoding/json`` reads it, for documents past Python's recursion limit.

Python's ``json`` raises ``RecursionError`` about 1,000 levels down; Go's decoder reads up to
10,000 (``maxNestingDepth``) and refuses deeper documents ("exceeded max depth"). A tenant's
pull secret with an unknown field nested 1,500 deep is read by the kubelet, and made every
review that read it answer 500 (rev20e F1: admitted unchecked under ``failurePolicy: Ignore``).

:func:`shallow` checks a document iteratively (no recursion): valid JSON or not, and how deep;
then cuts every container deeper than :data:`KEPT_DEPTH` down to ``[]``. For the documents
pullguard decodes (a pull secret: known fields are at most three levels down and typed as
strings or objects), that keeps Go's outcome: a deep value inside an unknown field is ignored
either way, and one inside a known field is of the wrong type either way (its top, above the
cut, is unchanged).

Pure: text in, text out; no I/O.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: Go's ``encoding/json`` ``maxNestingDepth``.
GO_MAX_DEPTH = 10_000
#: Containers deeper than this are cut to ``[]`` (far above any field pullguard reads).
KEPT_DEPTH = 64

_STRING = re.compile(r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"')
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_LITERAL = re.compile(r"true|false|null")
_SPACE = re.compile(r"[ \t\n\r]*")


class DeepJSONError(ValueError):
    """Not JSON, or deeper than Go reads (the text says which)."""


def shallow(text: str) -> str:
    """``text`` with every container deeper than :data:`KEPT_DEPTH` replaced by ``[]``.

    Raises :class:`DeepJSONError` when ``text`` is not one JSON value, or nests deeper than
    :data:`GO_MAX_DEPTH`."""
    out: list[str] = []
    stack: list[str] = []  # "{" or "["
    # What may come next: "value", "key" (or "}" when first), "colon", "after" (a "," or a close)
    expect = "value"
    first = False  # just after an opening bracket (a close is allowed)
    cut_from: int | None = None  # stack depth at which the current cut began
    position = _SPACE.match(text, 0).end()  # type: ignore[union-attr]
    end = len(text)
    while position < end:
        char = text[position]
        keep = cut_from is None
        closes = (expect in ("value", "key") and first) or (expect == "after" and stack)
        if char in "]}" and closes:
            if (char == "]") != (stack[-1] == "["):
                raise DeepJSONError("not JSON: mismatched bracket")
            depth = len(stack)
            stack.pop()
            if keep:
                out.append(char)
            elif depth == cut_from:
                cut_from = None
            position += 1
            expect, first = "after", False
        elif expect == "value" and char in "[{":
            stack.append(char)
            if len(stack) > GO_MAX_DEPTH:
                raise DeepJSONError(f"nested deeper than {GO_MAX_DEPTH} levels")
            if keep and len(stack) > KEPT_DEPTH:
                cut_from = len(stack)
                out.append("[]")
            elif keep:
                out.append(char)
            position += 1
            expect, first = ("key" if char == "{" else "value"), True
        elif expect in ("value", "key") and char == '"':
            match = _STRING.match(text, position)
            if match is None:
                raise DeepJSONError("not JSON: a bad string")
            if keep:
                out.append(match.group())
            position = match.end()
            expect, first = ("colon" if expect == "key" else "after"), False
        elif expect == "value":
            match = _NUMBER.match(text, position) or _LITERAL.match(text, position)
            if match is None:
                raise DeepJSONError("not JSON: an unexpected character")
            if keep:
                out.append(match.group())
            position = match.end()
            expect, first = "after", False
        elif expect == "colon" and char == ":":
            if keep:
                out.append(char)
            position += 1
            expect = "value"
        elif expect == "after" and stack and char == ",":
            if keep:
                out.append(char)
            position += 1
            expect, first = ("key" if stack[-1] == "{" else "value"), False
        else:
            raise DeepJSONError("not JSON: an unexpected character")
        position = _SPACE.match(text, position).end()  # type: ignore[union-attr]
    if stack or expect != "after":
        raise DeepJSONError("not JSON: it ends early")
    return "".join(out)


def loads(data: str | bytes, **options: Any) -> Any:
    """``json.loads``, reading past Python's recursion limit as Go would (via :func:`shallow`);
    every failure is a :class:`ValueError` (never ``RecursionError``: a 500 in a review)."""
    try:
        return json.loads(data, **options)
    except RecursionError:
        pass
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    try:
        return json.loads(shallow(text), **options)
    except RecursionError:  # a hook or the C stack: still never past the caller
        raise DeepJSONError("nested too deep to read") from None
