"""Near the bound, a new connection from a peer already at its allowance is refused before
its handshake (``edge.server.IdleConnections.refuses``): the rule, on connections made up
here; ``tests/integration/test_port_pressure.py::
test_another_peer_that_completes_reviews_quickly_never_locks_out_the_api_server`` runs the
attack it stops through the real server."""

from __future__ import annotations

from typing import Any

from webhook.edge.server import IdleConnections, _CoalescingSocket, _Handshake

ATTACKER, API_SERVER = "127.0.0.1", "127.0.0.2"


class _Fd:
    def fileno(self) -> int:
        return -1


def _answered(peer: str, path_ok: bool = True) -> _CoalescingSocket:
    c = _CoalescingSocket(_Fd(), idle_seconds=125)
    c.peer = peer
    c.responses = 3
    c.asked_other = not path_ok
    return c


def _pool(attacker: int, api_server: int = 1, **more: Any) -> IdleConnections:
    """``--connections 20`` (the target 18), 19 open: under pressure."""
    pool = IdleConnections(20, **more)
    for _ in range(attacker):
        pool.add(_answered(ATTACKER))
    for _ in range(api_server):
        pool.add(_answered(API_SERVER))
    pool.open = 19
    return pool


def test_a_peer_at_its_share_is_refused_and_the_others_are_not() -> None:
    pool = _pool(attacker=9)  # two peers: the share is 18 // 2 = 9
    assert pool.refuses(ATTACKER)
    assert not pool.refuses(API_SERVER)
    assert not pool.refuses("10.0.0.9")  # a new address is no peer yet
    assert not _pool(attacker=8).refuses(ATTACKER)


def test_a_peers_handshakes_and_unanswered_connections_count_and_closing_ones_do_not() -> None:
    pool = _pool(attacker=8)
    pool.add(_Handshake(_Fd(), ATTACKER))
    assert pool.refuses(ATTACKER)
    pool = _pool(attacker=8)
    closing = _answered(ATTACKER)
    closing.close_after_response = True
    pool.add(closing)
    assert not pool.refuses(ATTACKER)
    pool = _pool(attacker=8)
    probe = _answered(ATTACKER, path_ok=False)  # asked /healthz: not the API server's kind
    pool.add(probe)
    assert not pool.refuses(ATTACKER)


def test_nothing_is_refused_without_pressure_or_with_one_peer() -> None:
    pool = _pool(attacker=12)
    pool.open = 18  # the bound less the reserve: no pressure
    assert not pool.refuses(ATTACKER)
    alone = _pool(attacker=18, api_server=0)  # one peer has no one to share with
    assert not alone.refuses(ATTACKER)
    kubelet = _pool(attacker=0, api_server=18)
    kubelet.add(_answered("10.0.0.1", path_ok=False))  # a probe is no peer
    assert not kubelet.refuses(API_SERVER)


def test_a_peers_floor_is_its_allowance() -> None:
    """What a peer held when the pressure began (at most half the target) it keeps, though
    a third peer makes the share 18 // 3 = 6."""
    pool = _pool(attacker=2, api_server=8)
    pool.add(_answered("10.0.0.9"))
    pool._floors = {API_SERVER: 9}
    assert not pool.refuses(API_SERVER)  # 8 of its floor of 9
    assert not pool.refuses(ATTACKER)  # 2 of the share of 6
    pool.add(_answered(API_SERVER))
    assert pool.refuses(API_SERVER)  # 9 of 9
    pool._floors = {}
    pool.discard(next(c for c in pool.connections if c.peer == API_SERVER))
    assert pool.refuses(API_SERVER)  # 8, past the share of 6 without a floor
