"""Which of the two mutations is in force, and the order of the writes that switch between them.

On an API server that serves ``admissionregistration.k8s.io/v1`` MutatingAdmissionPolicy,
pullguard's leader writes the policy and binding of :mod:`webhook.core.mutationpolicy` and
gives the mutating webhook entry ``mutate.pullguard.io`` a matchCondition
(:func:`webhook_condition`) so that ``/mutate`` is called only for the pods the policy leaves
alone (and for everything the policy does not handle: UPDATEs, subresources, workload kinds).
Elsewhere, or when an admin forces it, ``/mutate`` does all the work (no matchCondition, no
policy).

Each half is a no-op on the other's output (tests/e2e/test_mutation_policy.py), so a pod
mutated by both is safe; a pod mutated by neither is not. :func:`plan` orders the writes so
that there is never a gap: the webhook's matchCondition is removed before the policy or the
binding changes, and set only once both are in step with the configuration it was rendered
from; in webhook mode the matchCondition goes first, then the binding and the policy.

:func:`may_lead` decides the Lease between replicas: only its holder writes, so two replicas
whose views differ for a moment (a ConfigMap watch a second behind, a mirror probe that
failed on one of them) do not take turns rewriting the policy.

Pure: decisions on values handed in; no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from webhook.core.config import Config
from webhook.core.mutationpolicy import (
    POLICY_NAME,
    needs_webhook_expression,
    render_binding,
    render_policy,
)

MODES = ("auto", "policy", "webhook")
POLICY, WEBHOOK = "policy", "webhook"
BINDING_NAME = POLICY_NAME
#: The name of pullguard's matchCondition on its mutating webhook entry (others are kept).
CONDITION_NAME = "pullguard-needs-webhook"
WEBHOOK_ENTRY = "mutate.pullguard.io"
MANAGED_BY = ("app.kubernetes.io/managed-by", "pullguard")
LEASE_NAME = "pullguard-mutation-policy"
LEASE_SECONDS = 15.0

NOT_SERVED = (
    "the API server does not serve admissionregistration.k8s.io/v1 mutatingadmissionpolicies "
    "(Kubernetes before 1.36), so /mutate does all the work"
)

# Steps of a plan, executed in order.
REMOVE_CONDITION = "remove the matchCondition"
WRITE_POLICY = "write the policy"
WRITE_BINDING = "write the binding"
SET_CONDITION = "set the matchCondition"
DELETE_BINDING = "delete the binding"
DELETE_POLICY = "delete the policy"


@dataclass(frozen=True)
class ModeChoice:
    mode: str
    """``policy`` or ``webhook``."""
    why: str


def choose_mode(requested: str, served: bool) -> ModeChoice:
    """The mode to put in force for ``serve --mutation-mode requested``, given whether the
    API server serves MutatingAdmissionPolicy v1."""
    if requested == WEBHOOK:
        return ModeChoice(WEBHOOK, "forced with --mutation-mode webhook")
    if not served:
        forced = ": --mutation-mode policy cannot be honoured" if requested == POLICY else ""
        return ModeChoice(WEBHOOK, NOT_SERVED + forced)
    how = "forced with --mutation-mode policy" if requested == POLICY else "chosen automatically"
    return ModeChoice(POLICY, f"the API server serves MutatingAdmissionPolicy v1, {how}")


#: Requests the policy does not handle: the webhook sees all of them.
_NOT_A_POD_CREATE = (
    '!(request.resource.group == "" && request.resource.resource == "pods" && '
    '(!has(request.subResource) || request.subResource == "") && '
    'request.operation == "CREATE")'
)


def webhook_condition(config: Config, *, mirrors_down: Collection[str] = frozenset()) -> str:
    """The CEL of the webhook entry's matchCondition in policy mode: true for every request
    but a Pod CREATE, and for a Pod CREATE exactly when the policy leaves it to ``/mutate``."""
    needs = needs_webhook_expression(config, mirrors_down=mirrors_down)
    return f"{_NOT_A_POD_CREATE} || ({needs})"


@dataclass(frozen=True)
class Desired:
    policy: dict[str, Any]
    binding: dict[str, Any]
    condition: str


def desired(
    config: Config,
    *,
    mirrors_down: Collection[str],
    own_namespace: str,
    owner: Mapping[str, str] | None = None,
) -> Desired:
    """What policy mode renders from the configuration and the mirrors in force. ``owner``:
    the MutatingWebhookConfiguration holding pullguard's entry (apiVersion, kind, name,
    uid), made the owner of both objects, so that uninstalling pullguard (deleting its
    webhook configurations) has the garbage collector delete them too: a policy left behind
    would go on rewriting pods to mirrors nobody keeps in step."""
    down = frozenset(mirrors_down)
    policy = render_policy(config, mirrors_down=down)
    binding = render_binding(config, own_namespace=own_namespace)
    if owner is not None:
        for document in (policy, binding):
            document["metadata"]["ownerReferences"] = [dict(owner)]
    return Desired(policy, binding, webhook_condition(config, mirrors_down=down))


@dataclass(frozen=True)
class Observed:
    policy: Mapping[str, Any] | None
    """The stored policy named :data:`POLICY_NAME`, or ``None``."""
    binding: Mapping[str, Any] | None
    condition: str | None
    """The expression of :data:`CONDITION_NAME` on pullguard's webhook entry, or ``None``."""
    entry: bool = True
    """Does pullguard's mutating webhook entry exist (found by name and by its client)?"""
    owner: Mapping[str, str] | None = None
    """The webhook configuration holding that entry, as an ownerReference."""


def covers(rendered: Any, stored: Any) -> bool:
    """Is everything ``rendered`` says in ``stored``? Maps: each rendered key with a covered
    value (the API server adds defaults of its own); lists: the same length, item by item."""
    if isinstance(rendered, Mapping):
        return isinstance(stored, Mapping) and all(
            key in stored and covers(value, stored[key]) for key, value in rendered.items()
        )
    if isinstance(rendered, list):
        return (
            isinstance(stored, list)
            and len(rendered) == len(stored)
            and all(covers(a, b) for a, b in zip(rendered, stored, strict=True))
        )
    return bool(rendered == stored)


#: Spec fields pullguard never renders that would change what the stored object does.
_FOREIGN_SPEC = ("matchConditions", "paramKind", "paramRef")
#: ... and within ``matchConstraints`` (policy) or ``matchResources`` (binding). The API
#: server stores empty selectors there by default (checked on 1.36.2: ``namespaceSelector:
#: {}``, ``objectSelector: {}``, ``matchPolicy: Equivalent``, a rule's ``scope: "*"``).
_FOREIGN_MATCH = ("objectSelector", "excludeResourceRules")


def _narrowed(rendered: Mapping[str, Any], spec: Mapping[str, Any]) -> bool:
    """Has someone added what would make the stored object apply to fewer pods than the
    rendered one (a gap: the webhook's matchCondition counts on the policy)?"""
    if any(spec.get(field) for field in _FOREIGN_SPEC):
        return True
    for key in ("matchConstraints", "matchResources"):
        match = spec.get(key) or {}
        if any(match.get(field) for field in _FOREIGN_MATCH):
            return True
        # A selector we render must be exactly ours; one we do not render must be empty.
        ours = (rendered.get(key) or {}).get("namespaceSelector")
        if match.get("namespaceSelector") and match.get("namespaceSelector") != ours:
            return True
    return False


def in_step(rendered: Mapping[str, Any], stored: Mapping[str, Any] | None) -> bool:
    """Does the stored object do what ``rendered`` does (spec, labels, owner)? Defaults the
    API server adds are not a difference; someone's matchConditions, params, object
    selectors, exclusions or namespace selector are: they would narrow what it does."""
    if stored is None:
        return False
    spec = stored.get("spec") or {}
    if _narrowed(rendered["spec"], spec):
        return False
    metadata = stored.get("metadata") or {}
    owners = rendered["metadata"].get("ownerReferences")
    if owners is not None and not covers(owners, metadata.get("ownerReferences") or []):
        return False
    return covers(rendered["spec"], spec) and covers(
        rendered["metadata"]["labels"], metadata.get("labels") or {}
    )


def is_ours(stored: Mapping[str, Any] | None) -> bool:
    labels = ((stored or {}).get("metadata") or {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY[0]) == MANAGED_BY[1])


def plan(mode: str, observed: Observed, want: Desired | None) -> list[str]:
    """The writes that bring ``observed`` to ``mode``, in the order that leaves no gap.

    Policy mode (``want`` given): the matchCondition goes first whenever the policy or the
    binding must change (with it, pods the new policy leaves alone could skip the webhook),
    then the policy and the binding are written, then the matchCondition set. With both in
    step, a stale or missing matchCondition is set at once: it is exact for the stored policy.
    Webhook mode: the matchCondition first, then the binding and the policy (ours only).
    """
    steps: list[str] = []
    if mode == POLICY:
        assert want is not None
        policy_ok = in_step(want.policy, observed.policy)
        binding_ok = in_step(want.binding, observed.binding)
        if not (policy_ok and binding_ok):
            if observed.condition is not None:
                steps.append(REMOVE_CONDITION)
            if not policy_ok:
                steps.append(WRITE_POLICY)
            if not binding_ok:
                steps.append(WRITE_BINDING)
            if observed.entry:
                steps.append(SET_CONDITION)
        elif observed.entry and observed.condition != want.condition:
            steps.append(SET_CONDITION)
        return steps
    if observed.condition is not None:
        steps.append(REMOVE_CONDITION)
    if observed.binding is not None and is_ours(observed.binding):
        steps.append(DELETE_BINDING)
    if observed.policy is not None and is_ours(observed.policy):
        steps.append(DELETE_POLICY)
    return steps


def mode_in_force(observed: Observed) -> str:
    """``policy`` while the webhook skips pods for a policy that is there; else ``webhook``
    (every pod reaches ``/mutate``; a policy beside it only overlaps)."""
    if observed.policy is None or observed.binding is None:
        return WEBHOOK
    return POLICY if observed.condition is not None else WEBHOOK


@dataclass(frozen=True)
class LeaseRecord:
    holder: str
    renewed: str
    """The holder's renewTime as written (compared for change, never against a clock)."""
    version: str


def may_lead(
    record: LeaseRecord | None, me: str, unchanged_for: float, duration: float = LEASE_SECONDS
) -> bool:
    """May ``me`` write the policy? When nobody holds the Lease, ``me`` holds it, or its
    holder has not renewed it for ``duration`` seconds of this process's own clock (the
    time since it last saw the record change: no two clocks compared)."""
    if record is None or not record.holder or record.holder == me:
        return True
    return unchanged_for >= duration


NO_ENTRY = (
    f"pullguard's mutating webhook entry {WEBHOOK_ENTRY} was not found: there is no mutation "
    "to move into the API server (none is written, and pullguard's policy is removed)"
)


def effective(choice: ModeChoice, observed: Observed) -> ModeChoice:
    """The mode to act on: without pullguard's mutating webhook entry (not installed, or
    uninstalled) nothing is mutated today, and a policy must not start doing it."""
    if choice.mode == POLICY and not observed.entry:
        return ModeChoice(WEBHOOK, NO_ENTRY)
    return choice
