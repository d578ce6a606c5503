"""The review codec: orjson where it cannot change the outcome, the standard library else."""

from __future__ import annotations

import json

import pytest

from webhook.core.review import MalformedReview, decode_json, encode_json, parse_review_bytes


def test_an_answer_carrying_a_lone_surrogate_is_still_json() -> None:
    # "\ud800" is valid JSON input (an escape); echoed in a message it must encode.
    value = json.loads('"nginx\\ud800:1"')
    encoded = encode_json({"message": value})
    assert json.loads(encoded) == {"message": value}


@pytest.mark.parametrize(
    "text",
    [
        b'{"n": 123456789012345678901234567890}',  # past 64 bits: orjson refuses
        '{"a": "é"}'.encode("utf-16"),  # another UTF encoding
        b'{"a": NaN}',
    ],
)
def test_whatever_the_standard_library_reads_is_read_the_same(text: bytes) -> None:
    # (compared as JSON text: NaN is not equal to itself)
    assert json.dumps(decode_json(text)) == json.dumps(json.loads(text))


def test_deep_bodies_are_told_apart_as_before() -> None:
    body = b'{"request": {"uid": "u1"}, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(MalformedReview) as caught:
        parse_review_bytes(body)
    assert "nested deeper" in caught.value.reason
    assert caught.value.uid == "u1"
