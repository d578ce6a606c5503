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


def _held_and_peak(body: bytes) -> tuple[int, int]:
    """What decoding ``body`` holds once it returns and at its peak (orjson holds its own
    parse of the body while it builds the objects), by tracemalloc: the larger of orjson
    and the standard library."""
    import gc
    import tracemalloc

    import orjson

    held = peak = 0
    for loads in (orjson.loads, json.loads):
        gc.collect()
        tracemalloc.start()
        document = loads(body)
        current, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        del document
        held, peak = max(held, current), max(peak, top)
    return held, peak


def _list_of(element: bytes) -> bytes:
    return b"[" + b",".join([element] * (256 * 1024 // len(element))) + b"]"


@pytest.mark.parametrize(
    "body",
    [
        _list_of(b"999"),  # int objects past the small-int cache: 36 held vs 33 estimated
        _list_of(b"[1e1]"),  # a one-float list
        b"{" + b",".join(b'"%d":1e1' % i for i in range(30_000)) + b"}",  # unique keys
    ],
    ids=["ints", "one-float lists", "unique keys of floats"],
)
def test_what_a_decode_holds_is_never_over_the_estimate(body: bytes) -> None:
    from webhook.core.review import decoded_cost

    held, _ = _held_and_peak(body)
    assert decoded_cost(body) >= held, (decoded_cost(body), held)


@pytest.mark.parametrize("element", [b"999", b"1e1", b"1000000", b"9223372036854775807", b"true"])
def test_a_decodes_peak_is_never_over_the_estimate(element: bytes) -> None:
    from webhook.core.review import decoded_cost

    # The budget is reserved for the decode itself: its peak is what the worker must have.
    body = _list_of(element)
    _, peak = _held_and_peak(body)
    assert decoded_cost(body) >= peak, (decoded_cost(body), peak)


def test_one_character_past_ascii_widens_its_own_string_only() -> None:
    # Priced 4 times a byte once one byte was past ASCII: a real 3 MiB UPDATE with "café"
    # in an annotation got 413 (rev20). Latin-1 stays a byte a character; wider strings
    # are priced at their width, each on its own.
    from webhook.core.review import decoded_cost

    plain = json.dumps({"env": ["v" * 40] * 20_000, "d": "cafe"}).encode()
    latin = json.dumps({"env": ["v" * 40] * 20_000, "d": "café"}, ensure_ascii=False).encode()
    assert decoded_cost(latin) - decoded_cost(plain) < 1024
    for wide in ("中", "😀", "\\u4e2d", "\\ud83d\\ude00"):
        text = '{"env": ["' + "v" * 100_000 + wide + '"], "d": "' + "w" * 100_000 + '"}'
        body, ascii_body = text.encode(), text.replace(wide, "x").encode()
        assert _held_and_peak(body)[1] <= decoded_cost(body), wide
        # the first string priced at its width (up to 4 bytes a character), not the second
        assert decoded_cost(body) - decoded_cost(ascii_body) < 3 * 100_100 + 12 * 16, wide


def test_long_decodes_wait_for_their_share_of_time_and_short_ones_never() -> None:
    # The time four connections' 3 MiB [{},...] bodies held the event loop kept every real
    # review past 5 s (rev20): long decodes take a quarter of the worker's time at most.
    from webhook.edge.app import TIMED_DECODE_BYTES, DecodeTime

    now = [100.0]
    budget = DecodeTime(share=0.25, burst=2.0, clock=lambda: now[0])
    long, short = TIMED_DECODE_BYTES + 1, TIMED_DECODE_BYTES
    assert budget.may_start(long)
    budget.paid(1.5)
    assert budget.may_start(long)  # within the burst
    budget.paid(1.5)
    assert not budget.may_start(long)  # 1 s in debt
    assert budget.may_start(short)  # never shed for what long ones took
    now[0] += 3.9
    assert not budget.may_start(long)
    now[0] += 0.2
    assert budget.may_start(long)  # paid back at a quarter of a second a second
    now[0] += 1000
    budget.paid(0.0)
    assert budget.credit == 2.0  # never more than the burst


def test_the_credit_refilled_goes_to_the_peer_that_waited_and_spent_less() -> None:
    # rev20 F5: one client took every grain of the worker's credit as it refilled (asking
    # again at once), and the API server's 3 MiB UPDATE, retried after its Retry-After, got
    # 429 until its timeout. The credit stays the worker's (a total cap); its turns go to
    # the peer that was refused and has spent less.
    from webhook.edge.app import DECODE_WAIT_SECONDS, TIMED_DECODE_BYTES, DecodeTime

    now = [100.0]
    budget = DecodeTime(share=0.25, burst=1.5, clock=lambda: now[0])
    long = TIMED_DECODE_BYTES + 1
    assert budget.may_start(long, "attacker")
    budget.paid(2.0, "attacker")  # 0.5 s in debt
    assert not budget.may_start(long, "api-server")  # refused: its turn is next
    now[0] += 2.5  # the credit is positive again
    assert not budget.may_start(long, "attacker")  # spent more than one that waits
    assert not budget.may_start(long, "attacker")
    assert budget.may_start(long, "api-server")  # its retry gets the credit
    budget.paid(0.5, "api-server")
    assert not budget.may_start(long, "api-server")  # the total is spent for both
    now[0] += DECODE_WAIT_SECONDS + 0.1
    assert budget.may_start(long, "attacker")  # no one that spent less waits now
    # A wait is remembered only so long; and a new address never takes a turn from a
    # waiting peer that spent less than it.
    budget.paid(1.0, "attacker")
    assert not budget.may_start(long, "api-server")
    now[0] += DECODE_WAIT_SECONDS + 0.1
    assert budget.may_start(long, "attacker")
