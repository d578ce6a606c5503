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


def _decoded_bytes(body: bytes) -> int:
    """What decoding ``body`` holds, by tracemalloc: the larger of orjson and the stdlib."""
    import gc
    import tracemalloc

    import orjson

    held = 0
    for loads in (orjson.loads, json.loads):
        gc.collect()
        tracemalloc.start()
        document = loads(body)
        held = max(held, tracemalloc.get_traced_memory()[0])
        tracemalloc.stop()
        del document
    return held


@pytest.mark.parametrize(
    "element",
    [
        b"{}",
        b"[]",
        b'"a"',
        b'"\\u00e9"',
        '"é"'.encode(),
        '"😀"'.encode(),
        b'"\\ud83d\\ude00"',
        b"1.5",
        b"100000",
        b'{"a":1}',
        b'{"a":{}}',
        b"[[]]",
        b"[1]",
        b'{"ab":"cd"}',
        b'"\\\\"',
        b'{"k:{\\"name\\":\\"V1\\"}":{".":{},"f:name":{},"f:value":{}}}',
    ],
)
def test_the_decoded_size_is_never_under_estimated(element: bytes) -> None:
    # The budget that keeps forged reviews from growing a worker (edge.app) trusts this.
    from webhook.core.review import decoded_cost

    body = b"[" + b",".join([element] * (256 * 1024 // len(element))) + b"]"
    assert decoded_cost(body) >= _decoded_bytes(body)


def test_a_string_wider_than_ascii_is_priced_so() -> None:
    from webhook.core.review import decoded_cost

    body = b'["' + b"a" * 1_000_000 + '😀"]'.encode()
    assert decoded_cost(body) >= _decoded_bytes(body) > 4_000_000
