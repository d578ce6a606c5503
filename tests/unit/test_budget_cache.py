"""The registry client's byte-budgeted cache (issue 20, item 3): one registry fills at most its
share, the whole stays within the budget, and an entry larger than the share is not kept."""

from __future__ import annotations

from webhook.edge.registry import BudgetCache


def test_one_registry_evicts_its_own_entries_first() -> None:
    cache: BudgetCache[str, str] = BudgetCache(1000, share=400)
    cache.put("honest", "x", 300, "honest.example")
    for i in range(10):
        assert cache.put(f"a{i}", "x", 150, "attacker.example")
    assert cache.used_by("attacker.example") <= 400
    assert cache.get("honest") == "x"  # the attacker's flood never evicted it
    assert cache.get("a9") == "x" and cache.get("a0") is None
    assert cache.bytes == 300 + cache.used_by("attacker.example")


def test_the_budget_holds_across_registries_and_oversized_entries_are_not_kept() -> None:
    cache: BudgetCache[str, str] = BudgetCache(1000, share=400)
    for i in range(50):
        cache.put(f"k{i}", "x", 100, f"registry-{i}.example")
        assert cache.bytes <= 1000
    assert len(cache) == 10
    assert not cache.put("huge", "x", 401, "registry-0.example")
    assert cache.get("huge") is None
    cache.put("k49", "y", 100, "registry-49.example")  # replacing counts once
    assert cache.bytes == 1000 and cache.get("k49") == "y"
