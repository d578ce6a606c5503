"""core.podspec.controller_owner: the one reading of a controller ownerReference that
pod_owner, made_by_controller, audit's stuck pods, diagnose's workload and the copy's
cause share."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.core.podspec import controller_owner

RS = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d4f", "uid": "u1"}


def _obj(owners: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p", "ownerReferences": owners}}


def test_the_controlling_owner_is_found_among_others() -> None:
    other = {"kind": "ConfigMap", "name": "c", "uid": "u0"}
    assert controller_owner(_obj([other, {**RS, "controller": True}])) == {
        **RS,
        "controller": True,
    }


@pytest.mark.parametrize(
    "obj",
    [
        None,
        {},
        {"metadata": None},
        {"metadata": "x"},
        _obj(None),
        _obj("x"),
        _obj({"controller": True}),  # a map, not a list (a forged review)
        _obj([RS]),  # an owner, not the controller
        _obj([{**RS, "controller": "true"}]),  # only the JSON true counts
        _obj(["x", 3, None]),
    ],
)
def test_no_controller_in_any_other_shape(obj: Any) -> None:
    assert controller_owner(obj) is None
