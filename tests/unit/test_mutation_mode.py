"""The controller of the MutatingAdmissionPolicy (issue 25 items 1, 2, 7): the mode chosen,
the writes ordered so no pod is left to neither mutation, replicas agreeing through a Lease.

A fake API server keeps the policy, the binding, the webhook's matchCondition and the Lease,
checks resourceVersions like the real one, and after every write checks the invariant that
matters: while the matchCondition is set, the stored policy and binding are the ones it was
rendered with (else pods the policy leaves alone would skip the webhook). An older API server
cannot be started here: it is this fake with discovery answering "not served".
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from webhook.core.config import Config, load_config_text
from webhook.core.mutationmode import (
    DELETE_BINDING,
    DELETE_POLICY,
    NO_ENTRY,
    NOT_SERVED,
    POLICY,
    REMOVE_CONDITION,
    SET_CONDITION,
    WEBHOOK,
    WRITE_BINDING,
    WRITE_POLICY,
    LeaseRecord,
    Observed,
    choose_mode,
    covers,
    desired,
    may_lead,
    mode_in_force,
    plan,
    webhook_condition,
)
from webhook.core.mutationpolicy import needs_webhook_expression
from webhook.edge.policycontroller import BINDINGS, POLICIES, Conflict, PolicyController

ONE = load_config_text(
    "mirrors:\n  - registry: docker.io\n    mirror: mirror.example.com/hub\n"
    "  - registry: quay.io\n    mirror: quay-mirror.example.com\n"
)
TWO = load_config_text(
    "mirrors:\n  - registry: docker.io\n    mirror: other.example.com/hub\n    probe: false\n"
)


OWNER = {
    "apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "MutatingWebhookConfiguration",
    "name": "pullguard",
    "uid": "u-1",
}


class FakeApi:
    def __init__(self, *, served: bool = True, entry: bool = True) -> None:
        self.is_served = served
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 0
        self.entry = entry
        self.condition: str | None = None
        self.lease: LeaseRecord | None = None
        self.log: list[str] = []
        self.discovery_calls = 0
        self.allowed: list[tuple[dict[str, Any], dict[str, Any], str]] = []
        """(policy, binding, condition) triples that belong together (the test's renders)."""
        self.gaps: list[str] = []

    def allow(self, config: Config, down: frozenset[str] = frozenset()) -> None:
        want = desired(config, mirrors_down=down, own_namespace="pullguard", owner=OWNER)
        self.allowed.append((want.policy, want.binding, want.condition))

    def _check(self, what: str) -> None:
        if self.condition is None:
            return
        policy, binding = self.objects.get(POLICIES), self.objects.get(BINDINGS)
        for p, b, c in self.allowed:
            if (
                c == self.condition
                and policy
                and binding
                and covers(p["spec"], policy["spec"])
                and covers(b["spec"], binding["spec"])
            ):
                return
        self.gaps.append(what)

    def _bump(self) -> str:
        self.version += 1
        return str(self.version)

    def served(self) -> bool:
        self.discovery_calls += 1
        return self.is_served

    def read(self, kind: str) -> dict[str, Any] | None:
        assert self.is_served, "an older server has no such resource"
        stored = self.objects.get(kind)
        return copy.deepcopy(stored) if stored else None

    def create(self, kind: str, body: dict[str, Any]) -> None:
        if kind in self.objects:
            raise Conflict(kind)
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = self._bump()
        stored["spec"]["matchPolicy"] = "Equivalent"  # a default the API server adds
        self.objects[kind] = stored
        self.log.append(f"create {kind}")
        self._check(f"create {kind}")

    def update(self, kind: str, body: dict[str, Any], resource_version: str) -> None:
        if self.objects.get(kind, {}).get("metadata", {}).get("resourceVersion") != (
            resource_version
        ):
            raise Conflict(kind)
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = self._bump()
        self.objects[kind] = stored
        self.log.append(f"update {kind}")
        self._check(f"update {kind}")

    def delete(self, kind: str) -> None:
        self.objects.pop(kind, None)
        self.log.append(f"delete {kind}")
        self._check(f"delete {kind}")

    def read_condition(self) -> tuple[bool, str | None, dict[str, str] | None]:
        return self.entry, self.condition, dict(OWNER) if self.entry else None

    def set_condition(self, expression: str | None) -> None:
        self.condition = expression
        self.log.append("set condition" if expression else "remove condition")
        self._check("set condition")

    def read_lease(self) -> LeaseRecord | None:
        return self.lease

    def write_lease(self, holder: str, version: str | None) -> None:
        current = self.lease.version if self.lease else None
        if version != current:
            raise Conflict("lease")
        self.lease = LeaseRecord(holder, self._bump(), str(self.version))


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def controller(
    api: FakeApi,
    holder: dict[str, Any],
    *,
    identity: str = "a",
    requested: str = "auto",
    clock: Clock | None = None,
    modes: list[tuple[str, str]] | None = None,
) -> PolicyController:
    """``holder``: {"config": Config | None, "down": set}, read on each pass."""
    clock = clock or Clock()
    return PolicyController(
        api,
        config=lambda: holder["config"],
        mirrors_down=lambda: holder.get("down", frozenset()),
        own_namespace="pullguard",
        identity=identity,
        requested=requested,
        clock=clock,
        sleep=clock.sleep,
        on_mode=None if modes is None else (lambda mode, why: modes.append((mode, why))),
    )


def test_choose_mode() -> None:
    assert choose_mode("auto", True).mode == POLICY
    assert choose_mode("auto", False) == choose_mode("auto", False)
    assert choose_mode("auto", False).mode == WEBHOOK
    assert NOT_SERVED in choose_mode("auto", False).why
    assert choose_mode("policy", False).mode == WEBHOOK  # cannot be honoured
    assert "cannot be honoured" in choose_mode("policy", False).why
    assert choose_mode("webhook", True).mode == WEBHOOK
    assert "forced" in choose_mode("webhook", True).why


def test_the_condition_lets_everything_but_pod_creates_through() -> None:
    condition = webhook_condition(ONE)
    assert condition.startswith('!(request.resource.group == ""')
    assert condition.endswith("(" + needs_webhook_expression(ONE) + ")")
    assert "variables." not in condition


def test_covers_ignores_defaults_but_not_changes() -> None:
    assert covers({"a": [1, {"b": 2}]}, {"a": [1, {"b": 2, "c": 3}], "d": 4})
    assert not covers({"a": [1, {"b": 2}]}, {"a": [1, {"b": 3}]})
    assert not covers({"a": [1]}, {"a": [1, 2]})
    assert not covers({"a": 1}, {})


def test_the_plan_removes_the_condition_before_the_policy_changes() -> None:
    old, new = (desired(c, mirrors_down=(), own_namespace="pullguard") for c in (ONE, TWO))
    stored = Observed(old.policy, old.binding, old.condition)
    assert plan(POLICY, stored, new) == [REMOVE_CONDITION, WRITE_POLICY, SET_CONDITION]
    assert plan(POLICY, Observed(None, None, None), new) == [
        WRITE_POLICY,
        WRITE_BINDING,
        SET_CONDITION,
    ]
    assert plan(POLICY, Observed(new.policy, new.binding, new.condition), new) == []
    # In step, condition stale or missing: set it at once (it is exact for the stored policy).
    assert plan(POLICY, Observed(new.policy, new.binding, None), new) == [SET_CONDITION]
    assert plan(WEBHOOK, stored, None) == [REMOVE_CONDITION, DELETE_BINDING, DELETE_POLICY]
    # Objects of that name without pullguard's label are not deleted.
    foreign = copy.deepcopy(old.policy)
    foreign["metadata"]["labels"] = {}
    assert plan(WEBHOOK, Observed(foreign, None, None), None) == []


def test_someones_match_conditions_on_the_policy_are_a_difference() -> None:
    want = desired(ONE, mirrors_down=(), own_namespace="pullguard")
    narrowed = copy.deepcopy(want.policy)
    narrowed["spec"]["matchConditions"] = [{"name": "x", "expression": "false"}]
    assert plan(POLICY, Observed(narrowed, want.binding, want.condition), want)[:2] == [
        REMOVE_CONDITION,
        WRITE_POLICY,
    ]


@pytest.mark.parametrize(
    ("kind", "path", "value"),
    [
        ("policy", ("matchConstraints", "objectSelector"), {"matchLabels": {"a": "b"}}),
        ("policy", ("matchConstraints", "namespaceSelector"), {"matchLabels": {"a": "b"}}),
        ("policy", ("matchConstraints", "excludeResourceRules"), [{"resources": ["pods"]}]),
        ("binding", ("matchResources", "objectSelector"), {"matchLabels": {"a": "b"}}),
        ("binding", ("matchResources", "namespaceSelector", "matchLabels"), {"a": "b"}),
        ("binding", ("paramRef",), {"name": "x"}),
    ],
)
def test_anything_that_narrows_the_stored_objects_is_rewritten(
    kind: str, path: tuple[str, ...], value: object
) -> None:
    want = desired(ONE, mirrors_down=(), own_namespace="pullguard")
    stored = {"policy": copy.deepcopy(want.policy), "binding": copy.deepcopy(want.binding)}
    # The defaults the API server stores (1.36.2) are no difference ...
    stored["policy"]["spec"]["matchConstraints"].update(
        matchPolicy="Equivalent", namespaceSelector={}, objectSelector={}
    )
    stored["binding"]["spec"]["matchResources"].update(matchPolicy="Equivalent", objectSelector={})
    observed = Observed(stored["policy"], stored["binding"], want.condition)
    assert plan(POLICY, observed, want) == []
    # ... what would apply the policy to fewer pods is.
    target = stored[kind]["spec"]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    steps = plan(POLICY, Observed(stored["policy"], stored["binding"], want.condition), want)
    assert steps[0] == REMOVE_CONDITION
    assert (WRITE_POLICY if kind == "policy" else WRITE_BINDING) in steps


def test_mode_in_force() -> None:
    want = desired(ONE, mirrors_down=(), own_namespace="pullguard")
    assert mode_in_force(Observed(want.policy, want.binding, want.condition)) == POLICY
    assert mode_in_force(Observed(want.policy, want.binding, None)) == WEBHOOK  # overlap
    assert mode_in_force(Observed(None, None, want.condition)) == WEBHOOK


def test_may_lead() -> None:
    assert may_lead(None, "a", 0)
    assert may_lead(LeaseRecord("a", "t", "1"), "a", 0)
    assert not may_lead(LeaseRecord("b", "t", "1"), "a", 14.9)
    assert may_lead(LeaseRecord("b", "t", "1"), "a", 15)


def test_policy_mode_writes_policy_then_condition_and_is_idempotent() -> None:
    api = FakeApi()
    api.allow(ONE)
    modes: list[tuple[str, str]] = []
    c = controller(api, {"config": ONE}, modes=modes)
    assert c.sync()[0] == POLICY
    assert api.log == [
        f"create {POLICIES}",
        f"create {BINDINGS}",
        "set condition",
    ]
    assert api.condition == webhook_condition(ONE)
    assert api.objects[POLICIES]["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "pullguard"
    }
    # Owned by the webhook configuration: uninstalling pullguard deletes them (the GC).
    for kind in (POLICIES, BINDINGS):
        assert api.objects[kind]["metadata"]["ownerReferences"] == [OWNER]
    for _ in range(5):
        c.sync()
    assert len(api.log) == 3  # nothing rewritten: the stored object (with defaults) is in step
    assert modes == [
        (POLICY, "the API server serves MutatingAdmissionPolicy v1, chosen automatically")
    ]
    assert api.gaps == []


def test_a_config_change_and_a_mirror_going_down_leave_no_gap() -> None:
    api = FakeApi()
    holder: dict[str, Any] = {"config": ONE}
    for config, down in (
        (ONE, frozenset()),
        (TWO, frozenset()),
        (ONE, frozenset({"quay-mirror.example.com"})),
    ):
        api.allow(config, down)
    c = controller(api, holder)
    c.sync()
    holder["config"] = TWO
    c.sync()
    assert api.log[3:] == ["remove condition", f"update {POLICIES}", "set condition"]
    assert api.condition == webhook_condition(TWO)
    holder["config"], holder["down"] = ONE, frozenset({"quay-mirror.example.com"})
    c.sync()
    assert api.condition == webhook_condition(ONE, mirrors_down={"quay-mirror.example.com"})
    assert '"?"' in str(api.objects[POLICIES]["spec"])  # quay.io left to /mutate
    holder["down"] = frozenset()  # it answers again: put back
    api.allow(ONE)
    c.sync()
    assert api.condition == webhook_condition(ONE)
    assert api.gaps == []


def test_no_configuration_yet_writes_nothing() -> None:
    api = FakeApi()
    mode = controller(api, {"config": None}).sync()
    assert api.log == []
    assert mode == (WEBHOOK, "waiting for the configuration")


def test_forcing_webhook_mode_removes_the_condition_before_the_policy() -> None:
    api = FakeApi()
    api.allow(ONE)
    holder: dict[str, Any] = {"config": ONE}
    controller(api, holder).sync()
    api.log.clear()
    modes: list[tuple[str, str]] = []
    assert controller(api, holder, requested="webhook", modes=modes).sync()[0] == WEBHOOK
    assert api.log == ["remove condition", f"delete {BINDINGS}", f"delete {POLICIES}"]
    assert api.condition is None and not api.objects
    assert modes == [(WEBHOOK, "forced with --mutation-mode webhook")]
    assert api.gaps == []


def test_an_older_server_keeps_the_webhook_and_an_upgrade_switches() -> None:
    """An older API server (simulated: discovery says "not served", and reading the
    resource would fail) gets no policy and no condition; once it serves the resource
    (re-asked every discovery_seconds), the policy is written."""
    api = FakeApi(served=False)
    api.allow(ONE)
    clock = Clock()
    modes: list[tuple[str, str]] = []
    c = controller(api, {"config": ONE}, clock=clock, modes=modes)
    assert c.sync() == (WEBHOOK, NOT_SERVED)
    c.sync()
    assert api.log == [] and api.discovery_calls == 1  # cached
    api.is_served = True
    clock.now += 61
    assert c.sync()[0] == POLICY
    assert api.discovery_calls == 2
    assert [m for m, _ in modes] == [WEBHOOK, POLICY]
    assert api.gaps == []


def test_forced_policy_on_an_older_server_says_why_and_writes_nothing() -> None:
    api = FakeApi(served=False)
    mode, why = controller(api, {"config": ONE}, requested="policy").sync()
    assert mode == WEBHOOK and "cannot be honoured" in why
    assert api.log == []


def test_discovery_failing_keeps_the_last_answer() -> None:
    api = FakeApi()
    api.allow(ONE)
    clock = Clock()
    c = controller(api, {"config": ONE}, clock=clock)
    c.sync()

    def broken() -> bool:
        raise OSError("down")

    api.served = broken  # type: ignore[method-assign]
    clock.now += 61
    assert c.sync()[0] == POLICY
    assert len(api.log) == 3


def test_two_replicas_with_different_views_do_not_take_turns() -> None:
    """Replica b sees another configuration (its watch is behind) and a mirror down: it does
    not lead, so it writes nothing; when a stops renewing, b takes over after the Lease."""
    api = FakeApi()
    api.allow(ONE)
    api.allow(TWO)
    clock = Clock()
    a = controller(api, {"config": ONE}, identity="a", clock=clock)
    b = controller(api, {"config": TWO}, identity="b", clock=clock)
    for _ in range(10):
        a.sync()
        b.sync()
        clock.now += 2
    writes = [
        entry for entry in api.log if "condition" in entry or "create" in entry or "update" in entry
    ]
    assert writes == [f"create {POLICIES}", f"create {BINDINGS}", "set condition"]
    assert b.mode is not None and b.mode[0] == POLICY and "written by a" in b.mode[1]
    for _ in range(10):  # a is gone
        b.sync()
        clock.now += 2
    assert api.lease is not None and api.lease.holder == "b"
    assert api.condition == webhook_condition(TWO)
    assert api.gaps == []


def test_a_conflict_rereads_and_rerenders() -> None:
    api = FakeApi()
    api.allow(ONE)
    api.allow(TWO)
    controller(api, {"config": TWO}).sync()
    original = api.update
    raced = []

    def racing_update(kind: str, body: dict[str, Any], version: str) -> None:
        if not raced:  # someone wrote between our read and our write
            raced.append(kind)
            api.objects[kind]["metadata"]["resourceVersion"] = api._bump()
        original(kind, body, version)

    api.update = racing_update  # type: ignore[method-assign]
    c = controller(api, {"config": ONE})
    assert c.sync()[0] == POLICY
    assert raced == [POLICIES]
    assert api.condition == webhook_condition(ONE)
    assert api.gaps == []


@pytest.mark.parametrize("requested", ["auto", "policy"])
def test_without_the_webhook_entry_no_policy_is_written_and_ours_is_removed(
    requested: str,
) -> None:
    """Not installed, or uninstalled (the GC deletes the owned policy; the controller must
    not make it again): nothing is mutated today, so no policy starts doing it."""
    api = FakeApi(entry=False)
    mode, why = controller(api, {"config": ONE}, requested=requested).sync()
    assert (mode, why) == (WEBHOOK, NO_ENTRY)
    assert api.log == []
    api.allow(ONE)
    api.entry = True
    controller(api, {"config": ONE}).sync()
    api.entry = False
    controller(api, {"config": ONE}, requested=requested).sync()
    assert api.objects == {}
    assert api.gaps == []


def test_a_stored_policy_without_its_owner_is_rewritten_with_it() -> None:
    """A policy made by an earlier version (or by hand) without the owner gets it."""
    api = FakeApi()
    api.allow(ONE)
    holder: dict[str, Any] = {"config": ONE}
    want = desired(ONE, mirrors_down=(), own_namespace="pullguard")
    api.create(POLICIES, want.policy)
    api.create(BINDINGS, want.binding)
    assert "ownerReferences" not in api.objects[POLICIES]["metadata"]
    controller(api, holder).sync()
    assert api.objects[POLICIES]["metadata"]["ownerReferences"] == [OWNER]
    assert api.condition == webhook_condition(ONE)
