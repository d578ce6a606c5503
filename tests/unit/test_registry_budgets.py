"""The registry client's per-process bounds that are not caches (rev20d): the bytes of answer
bodies in flight (:class:`~webhook.edge.registry.BodyBudget`, F5) and the pull quota the
platform check leaves to the nodes (:class:`~webhook.edge.registry.PullQuota`, F4)."""

from __future__ import annotations

from webhook.edge.registry import (
    PULL_QUOTA_FRESH_SECONDS,
    BodyBudget,
    PullQuota,
    _quota_value,
)

MIB = 1 << 20


def test_a_namespace_holds_at_most_its_share_of_the_body_budget() -> None:
    refused: list[str] = []
    budget = BodyBudget(32 * MIB, 8 * MIB, 8 * MIB, on_refused=refused.append)
    assert budget.take("a", 4 * MIB) and budget.take("a", 4 * MIB)
    assert not budget.take("a", 1)  # its 8 MiB are held
    assert refused == ["memory"]
    budget.give("a", 4 * MIB)
    assert budget.take("a", 4 * MIB)
    assert budget.held == 8 * MIB and budget.held_by["a"] == 8 * MIB


def test_the_last_of_the_body_budget_is_shared_by_the_namespaces_reading() -> None:
    """Three namespaces holding their 8 MiB leave the reserve (8 MiB) to be shared: a fourth
    holds at most 8 / 4 = 2 MiB of it, a fifth then 8 / 5, and the total never passes 32."""
    budget = BodyBudget(32 * MIB, 8 * MIB, 8 * MIB)
    for tenant in "abc":
        assert budget.take(tenant, 8 * MIB)
    assert not budget.take("d", 3 * MIB)
    assert budget.take("d", 2 * MIB)
    assert not budget.take("d", 1)
    assert budget.take("e", 8 * MIB // 5)
    for i in range(100):
        budget.take(f"n{i}", MIB // 4)
        assert budget.held <= 32 * MIB
    assert budget.peak <= 32 * MIB


def test_the_quota_header_is_read_as_docker_hub_sends_it() -> None:
    assert _quota_value("100;w=21600") == (100, 21600.0)
    assert _quota_value(" 76 ; w=3600") == (76, 3600.0)
    assert _quota_value("5") == (5, 21600.0)
    assert _quota_value("") is None and _quota_value("-1;w=1") is None
    assert _quota_value("1" * 40) is None  # not a number a registry really has
    assert _quota_value("10;w=1") == (10, 60.0)  # windows under a minute are a minute


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def hub(remaining: int, limit: int = 100) -> dict[str, str]:
    return {
        "ratelimit-limit": f"{limit};w=21600",
        "ratelimit-remaining": f"{remaining};w=21600",
    }


KEY = ("registry-1.docker.io", "")


def test_no_get_once_the_remaining_pulls_reach_the_reserve() -> None:
    quota = PullQuota(lambda: 50, clock=Clock())
    quota.observe(KEY, hub(51))
    assert quota.spend(KEY, "a") == (True, "")  # 51 - 1 = 50: the reserve is still whole
    allowed, why = quota.spend(KEY, "b")  # the GET in flight may have been counted
    assert not allowed
    assert "51 of its 100 pulls are left" in why, why
    assert "registry.pullQuotaReservePercent" in why, why
    quota.done(KEY)
    quota.observe(KEY, hub(50))
    assert not quota.spend(KEY, "b")[0]


def test_a_registry_without_a_quota_header_is_not_limited() -> None:
    quota = PullQuota(lambda: 50, clock=Clock())
    quota.observe(KEY, {"content-type": "application/json"})
    assert quota.spend(KEY, "a") == (False, "")  # not counted, not refused: no quota known


def test_one_namespace_spends_a_quarter_of_what_the_reserve_leaves() -> None:
    clock = Clock()
    quota = PullQuota(lambda: 20, clock=clock)
    quota.observe(KEY, hub(100))
    for _ in range(20):  # (100 - 20) / 4
        assert quota.spend(KEY, "a")[0]
        quota.done(KEY)
    allowed, why = quota.spend(KEY, "a")
    assert not allowed and "20 manifest GETs per 6 h" in why, why
    assert "namespace a" not in why  # a follower from another namespace may read it
    assert quota.spend(KEY, "b")[0]  # another namespace has its own share
    quota.done(KEY)
    clock.now += 21600
    quota.observe(KEY, hub(100))
    assert quota.spend(KEY, "a")[0]  # the window moved on


def test_a_higher_remaining_is_believed_only_once_the_lower_one_is_old() -> None:
    """Answers arrive out of order: a HEAD answered before a GET was counted may come after
    it. A lower figure is believed at once, a higher one (the window moved on) only once the
    last lower one is older than PULL_QUOTA_FRESH_SECONDS."""
    clock = Clock()
    quota = PullQuota(lambda: 50, clock=clock)
    quota.observe(KEY, hub(50))
    quota.observe(KEY, hub(90))
    assert not quota.spend(KEY, "a")[0]
    clock.now += PULL_QUOTA_FRESH_SECONDS + 1
    quota.observe(KEY, hub(90))
    assert quota.spend(KEY, "a")[0]


def test_each_account_has_its_own_quota() -> None:
    quota = PullQuota(lambda: 50, clock=Clock())
    quota.observe(KEY, hub(10))
    other = ("registry-1.docker.io", "identity-of-a-login")
    quota.observe(other, hub(150, limit=200))
    assert not quota.spend(KEY, "a")[0]
    assert quota.spend(other, "a")[0]


def test_a_reserve_of_0_gets_until_nothing_is_left() -> None:
    quota = PullQuota(lambda: 0, clock=Clock())
    quota.observe(KEY, hub(1))
    assert quota.spend(KEY, "a")[0]
    assert not quota.spend(KEY, "b")[0]  # the one left is in flight
