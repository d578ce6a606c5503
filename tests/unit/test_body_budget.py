"""The body budget follows the bytes a body has sent, not the length it declares."""

from __future__ import annotations

import io
from typing import Any

from webhook.edge.app import (
    BODY_READ_BYTES,
    NO_ROOM,
    BodyBudget,
    _BodyHeld,
    _read_body,
)


class _Trickle(io.RawIOBase):
    """A body that has sent ``sent`` bytes and then stops (a read past them: an EOF, as at the
    request deadline), recording the budget held at each read."""

    def __init__(self, sent: bytes, held: list[int], budget: BodyBudget) -> None:
        self.data = io.BytesIO(sent)
        self.held, self.budget = held, budget

    def read(self, size: int = -1) -> bytes:
        self.held.append(self.budget.used)
        return self.data.read(size)


def _environ(declared: int, stream: Any) -> dict[str, Any]:
    return {"CONTENT_LENGTH": str(declared), "wsgi.input": stream}


def test_a_declared_length_alone_holds_one_first_piece() -> None:
    budget = BodyBudget()
    seen: list[int] = []
    held = _BodyHeld(budget, 1024 * 1024)
    body = _read_body(_environ(1024 * 1024, _Trickle(b"{", seen, budget)), held)
    assert body == b"{"
    assert max(seen) == BODY_READ_BYTES + 1  # a piece and the byte that came, not 1 MiB
    held.release()
    assert budget.used == budget.used_large == 0


def test_a_body_that_arrives_holds_at_most_twice_what_came_plus_a_piece() -> None:
    budget = BodyBudget()
    seen: list[int] = []
    whole = b"x" * (3 * 1024 * 1024 + 5)
    held = _BodyHeld(budget, len(whole))
    assert _read_body(_environ(len(whole), _Trickle(whole, seen, budget)), held) == whole
    assert held.held <= 2 * len(whole) + BODY_READ_BYTES
    assert budget.used_large == held.held  # declared over 1 MiB: the large bodies' share
    held.release()
    assert budget.used == budget.used_large == 0


def test_a_body_past_the_budget_stops_being_read() -> None:
    budget = BodyBudget(total=200 * 1024)
    seen: list[int] = []
    whole = b"x" * (1024 * 1024)
    held = _BodyHeld(budget, len(whole))
    assert _read_body(_environ(len(whole), _Trickle(whole, seen, budget)), held) is NO_ROOM
    assert held.held <= 200 * 1024
    held.release()
    assert budget.used == 0


def test_a_body_holds_at_most_what_came_plus_one_piece() -> None:
    """rev20 finding 7: the next piece was as large as what had come, so half of a 1 MiB
    body held 1 MiB and 34 such bodies took the 32 MiB budget."""
    budget = BodyBudget()
    seen: list[int] = []
    half = b" " * (512 * 1024 + 1)
    held = _BodyHeld(budget, 1024 * 1024)
    assert _read_body(_environ(1024 * 1024, _Trickle(half, seen, budget)), held) == half
    assert held.held <= len(half) + BODY_READ_BYTES
    held.release()
