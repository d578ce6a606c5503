"""The controller that writes and owns the MutatingAdmissionPolicy (issue 25).

A leader task (one worker per pod, :class:`webhook.edge.workers.Leadership`), every
``interval`` seconds (2 s):

1. asks discovery whether the API server serves ``admissionregistration.k8s.io/v1``
   ``mutatingadmissionpolicies`` (the answer cached :data:`DISCOVERY_SECONDS`: an upgraded
   API server starts serving it, and a failed question keeps the last answer);
2. chooses the mode (:func:`webhook.core.mutationmode.choose_mode`, ``serve --mutation-mode``);
3. takes or renews the Lease :data:`~webhook.core.mutationmode.LEASE_NAME` in pullguard's
   namespace: only its holder writes, so replicas whose views differ for a moment (a
   ConfigMap watch behind, a mirror probe that failed on one) do not take turns;
4. renders the policy, the binding and the webhook's matchCondition from the configuration
   in force (the store keeps the last good one: an invalid ConfigMap changes nothing) and the
   mirrors this worker sees answering, and applies :func:`webhook.core.mutationmode.plan`:
   the policy and the binding are created with "create" (409: another replica won, re-read
   and judge theirs) and updated only when they are not in step, with the resourceVersion
   read (409: re-read, re-render); the matchCondition is removed before the policy changes
   and set after it, with :attr:`PolicyController.settle` seconds between (the API server
   loads both through informers), so no pod is left to neither.

It touches only the policy and binding named ``pullguard-mirrors``, the Lease, and the
``mutate.pullguard.io`` entries of pullguard's own MutatingWebhookConfigurations (found by
label and by a client config pointing at pullguard, as :mod:`webhook.edge.selfcerts`), of
whose matchConditions only its own (``pullguard-needs-webhook``).

Must not: log the rendered CEL (long, and the configuration's business), or write anything
while the configuration has not been loaded or the mirrors not probed yet.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Protocol

from webhook.core.config import Config
from webhook.core.mutationmode import (
    BINDING_NAME,
    CONDITION_NAME,
    DELETE_BINDING,
    DELETE_POLICY,
    LEASE_NAME,
    LEASE_SECONDS,
    POLICY,
    REMOVE_CONDITION,
    SET_CONDITION,
    WEBHOOK,
    WEBHOOK_ENTRY,
    WRITE_BINDING,
    WRITE_POLICY,
    Desired,
    LeaseRecord,
    Observed,
    choose_mode,
    desired,
    effective,
    may_lead,
    mode_in_force,
    plan,
)
from webhook.core.mutationpolicy import POLICY_NAME

log = logging.getLogger("pullguard.mutationpolicy")

DISCOVERY_SECONDS = 60.0
RENEW_SECONDS = 5.0
SETTLE_SECONDS = 2.0
GROUP, VERSION = "admissionregistration.k8s.io", "v1"
POLICIES, BINDINGS = "mutatingadmissionpolicies", "mutatingadmissionpolicybindings"


class Conflict(Exception):
    """Another writer changed the object since it was read: re-read and judge again."""


class PolicyApi(Protocol):
    """The API calls the controller makes (a fake implements it in tests)."""

    def served(self) -> bool:
        """Does discovery list ``mutatingadmissionpolicies`` in admissionregistration/v1?"""
        ...

    def read(self, kind: str) -> dict[str, Any] | None:
        """The stored policy (``kind`` :data:`POLICIES`) or binding (:data:`BINDINGS`)."""
        ...

    def create(self, kind: str, body: dict[str, Any]) -> None:
        """:class:`Conflict` when it exists already."""
        ...

    def update(self, kind: str, body: dict[str, Any], resource_version: str) -> None:
        """:class:`Conflict` on a resourceVersion conflict."""
        ...

    def delete(self, kind: str) -> None:
        """Gone already is fine."""
        ...

    def read_condition(self) -> tuple[bool, str | None, dict[str, str] | None]:
        """(does pullguard's mutating entry exist, the expression of its matchCondition,
        the webhook configuration holding it as an ownerReference)."""
        ...

    def set_condition(self, expression: str | None) -> None:
        """Set (``None``: remove) pullguard's matchCondition on its entries; :class:`Conflict`
        when a configuration changed since it was read."""
        ...

    def read_lease(self) -> LeaseRecord | None: ...

    def write_lease(self, holder: str, version: str | None) -> None:
        """Create (``version`` None) or take/renew the Lease; :class:`Conflict` if another
        replica wrote it first."""
        ...


class PolicyController:
    def __init__(
        self,
        api: PolicyApi,
        *,
        config: Callable[[], Config | None],
        mirrors_down: Callable[[], Collection[str]],
        own_namespace: str,
        identity: str,
        requested: str = "auto",
        settle: float = SETTLE_SECONDS,
        lease_seconds: float = LEASE_SECONDS,
        renew_seconds: float = RENEW_SECONDS,
        discovery_seconds: float = DISCOVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_mode: Callable[[str, str], None] | None = None,
    ) -> None:
        self.api = api
        self.config = config
        self.mirrors_down = mirrors_down
        self.own_namespace = own_namespace
        self.identity = identity
        self.requested = requested
        self.settle = settle
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.discovery_seconds = discovery_seconds
        self.clock = clock
        self.sleep = sleep
        self.on_mode = on_mode
        self._served: bool | None = None
        self._asked_at = -float("inf")
        self._seen: tuple[str, str] | None = None
        self._seen_at = 0.0
        self._renewed_at = -float("inf")
        self.mode: tuple[str, str] | None = None
        """The mode in force and why, as last reported."""
        self._why = ""
        self.writes: list[str] = []
        """Every step this controller carried out (for tests and the log)."""

    # -- discovery and the Lease ---------------------------------------------------------

    def served(self) -> bool | None:
        now = self.clock()
        if self._served is None or now - self._asked_at >= self.discovery_seconds:
            try:
                served = self.api.served()
            except Exception as error:
                log.warning("discovery failed (keeping the last answer): %s", type(error).__name__)
            else:
                if self._served is not None and served != self._served:
                    log.info(
                        "the API server %s MutatingAdmissionPolicy v1 now",
                        "serves" if served else "no longer serves",
                    )
                self._served = served
                self._asked_at = now
        return self._served

    def leads(self) -> tuple[bool, str]:
        """Take or renew the Lease; (leading, holder)."""
        record = self.api.read_lease()
        key = (record.holder, record.renewed) if record else ("", "")
        now = self.clock()
        if key != self._seen:
            self._seen, self._seen_at = key, now
        if not may_lead(record, self.identity, now - self._seen_at, self.lease_seconds):
            assert record is not None
            return False, record.holder
        ours = record is not None and record.holder == self.identity
        if ours and now - self._renewed_at < self.renew_seconds:
            return True, self.identity
        try:
            self.api.write_lease(self.identity, record.version if record else None)
        except Conflict:
            return False, record.holder if record else "another replica"
        if not ours:
            log.info("Lease %s taken: this process writes the mutation policy", LEASE_NAME)
        self._renewed_at = now
        return True, self.identity

    # -- one pass -------------------------------------------------------------------------

    def observe(self) -> Observed:
        entry, condition, owner = self.api.read_condition()
        return Observed(self.api.read(POLICIES), self.api.read(BINDINGS), condition, entry, owner)

    def sync(self) -> tuple[str, str]:
        """One pass; returns the mode in force and why."""
        served = self.served()
        if served is None:
            return self._report(self.mode or (WEBHOOK, "discovery has not answered yet"))
        choice = choose_mode(self.requested, served)
        leading, holder = self.leads()
        if not leading:
            observed = self.observe() if served else Observed(None, None, None)
            mode = mode_in_force(observed) if served else WEBHOOK
            return self._report(
                (mode, f"the policy is written by {holder}, holder of Lease {LEASE_NAME}")
            )
        config: Config | None = None
        down: list[str] = []
        if choice.mode == POLICY:
            config = self.config()
            if config is None:  # not loaded, or mirrors not probed yet: write nothing
                observed = self.observe()
                return self._report((mode_in_force(observed), "waiting for the configuration"))
            down = sorted(self.mirrors_down())
            self._why = f"mirrors left to /mutate: {', '.join(down) or 'none'}"
        else:
            self._why = choice.why
        for _ in range(5):
            observed = self.observe() if served else self._observe_old_server()
            want: Desired | None = None
            if config is not None:
                want = desired(
                    config,
                    mirrors_down=down,
                    own_namespace=self.own_namespace,
                    owner=observed.owner,
                )
            acting = effective(choice, observed)
            if acting != choice:
                self._why = acting.why
            try:
                self._carry_out(plan(acting.mode, observed, want), observed, want)
            except Conflict:
                continue
            return self._report((acting.mode, acting.why))
        raise RuntimeError("could not bring the mutation policy in step after 5 attempts")

    def _observe_old_server(self) -> Observed:
        entry, condition, _ = self.api.read_condition()
        return Observed(None, None, condition, entry)

    def _carry_out(self, steps: list[str], observed: Observed, want: Desired | None) -> None:
        wrote = False
        for step in steps:
            if step == SET_CONDITION and wrote:
                self.sleep(self.settle)  # the API server's informers load the new policy
            log.info("mutation policy: %s (%s)", step, self._why)
            if step == REMOVE_CONDITION:
                self.api.set_condition(None)
                self.sleep(self.settle)  # ... and the webhook without its condition
            elif step == SET_CONDITION:
                assert want is not None
                self.api.set_condition(want.condition)
            elif step in (WRITE_POLICY, WRITE_BINDING):
                assert want is not None
                kind, body, stored = (
                    (POLICIES, want.policy, observed.policy)
                    if step == WRITE_POLICY
                    else (BINDINGS, want.binding, observed.binding)
                )
                if stored is None:
                    self.api.create(kind, body)
                else:
                    self.api.update(kind, body, str(stored["metadata"]["resourceVersion"]))
                wrote = True
            elif step == DELETE_BINDING:
                self.api.delete(BINDINGS)
            elif step == DELETE_POLICY:
                self.api.delete(POLICIES)
            self.writes.append(step)

    def _report(self, mode: tuple[str, str]) -> tuple[str, str]:
        if mode != self.mode:
            log.info("mutation mode: %s (%s)", mode[0], mode[1])
            self.mode = mode
            if self.on_mode is not None:
                self.on_mode(*mode)
        return mode

    def run(self, interval: float = 2.0, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        while True:
            try:
                self.sync()
            except Exception as error:
                log.error(
                    "mutation policy sync failed (will retry): %s: %s",
                    type(error).__name__,
                    str(error)[:200],
                )
            if stop.wait(interval):
                return


class ModeFile:
    """The mode in force, as the leader worker last reported it, for every worker's /readyz
    (one line: ``MODE (why)``; written by rename, so never read half-written)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, mode: str, why: str) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(f"{mode} ({why})\n")
        temporary.replace(self.path)

    def read(self) -> str:
        try:
            return self.path.read_text().strip()
        except OSError:
            return "not decided yet (the leader worker has not run its first pass)"


def _now_micro() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KubePolicyApi:
    """:class:`PolicyApi` through the kubernetes client (plain dicts, CustomObjectsApi)."""

    def __init__(
        self, namespace: str, service: str, *, url: str | None = None, api_client: Any = None
    ) -> None:
        from kubernetes import client

        self.custom: Any = client.CustomObjectsApi(api_client)
        self.admission: Any = client.AdmissionregistrationV1Api(api_client)
        self.namespace = namespace
        self.service = service
        self.url_base = url.rstrip("/") + "/" if url else None

    def served(self) -> bool:
        resources = self.admission.get_api_resources().resources or []
        return any(r.name == POLICIES for r in resources)

    @staticmethod
    def _status(error: Exception) -> int | None:
        return getattr(error, "status", None)

    def read(self, kind: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        name = POLICY_NAME if kind == POLICIES else BINDING_NAME
        try:
            found: dict[str, Any] = self.custom.get_cluster_custom_object(
                GROUP, VERSION, kind, name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return found

    def create(self, kind: str, body: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        try:
            self.custom.create_cluster_custom_object(GROUP, VERSION, kind, body)
        except ApiException as error:
            if error.status == 409:
                raise Conflict(kind) from None
            raise

    def update(self, kind: str, body: dict[str, Any], resource_version: str) -> None:
        from kubernetes.client.exceptions import ApiException

        body = {**body, "metadata": {**body["metadata"], "resourceVersion": resource_version}}
        try:
            self.custom.replace_cluster_custom_object(
                GROUP, VERSION, kind, body["metadata"]["name"], body
            )
        except ApiException as error:
            if error.status in (404, 409):
                raise Conflict(kind) from None
            raise

    def delete(self, kind: str) -> None:
        from kubernetes.client.exceptions import ApiException

        name = POLICY_NAME if kind == POLICIES else BINDING_NAME
        try:
            self.custom.delete_cluster_custom_object(GROUP, VERSION, kind, name)
        except ApiException as error:
            if error.status != 404:
                raise

    def _is_ours(self, client_config: dict[str, Any]) -> bool:
        service = client_config.get("service")
        if service is not None:
            return bool(
                (service.get("name"), service.get("namespace")) == (self.service, self.namespace)
            )
        url = str(client_config.get("url") or "")
        return self.url_base is not None and url.startswith(self.url_base)

    def _entries(self) -> list[tuple[str, str, int, list[dict[str, Any]], str]]:
        """(configuration name, resourceVersion, index, matchConditions, uid) of each entry
        ``mutate.pullguard.io`` pointing at pullguard."""
        listed = self.custom.list_cluster_custom_object(
            GROUP,
            VERSION,
            "mutatingwebhookconfigurations",
            label_selector="app.kubernetes.io/name=pullguard",
        )
        entries = []
        for configuration in listed.get("items") or []:
            meta = configuration["metadata"]
            for index, hook in enumerate(configuration.get("webhooks") or []):
                if hook.get("name") == WEBHOOK_ENTRY and self._is_ours(
                    hook.get("clientConfig") or {}
                ):
                    entries.append(
                        (
                            meta["name"],
                            meta["resourceVersion"],
                            index,
                            list(hook.get("matchConditions") or []),
                            meta["uid"],
                        )
                    )
        return entries

    def read_condition(self) -> tuple[bool, str | None, dict[str, str] | None]:
        expressions = set()
        entries = self._entries()
        for _, _, _, conditions, _ in entries:
            ours = [c for c in conditions if c.get("name") == CONDITION_NAME]
            expressions.add(ours[0].get("expression", "") if ours else None)
        owner = None
        if entries:
            owner = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "MutatingWebhookConfiguration",
                "name": entries[0][0],
                "uid": entries[0][4],
            }
        if not entries or expressions == {None}:
            return bool(entries), None, owner
        if len(expressions) == 1:
            return True, expressions.pop(), owner
        return True, "", owner  # the entries differ: not the expression wanted, whatever it is

    def set_condition(self, expression: str | None) -> None:
        from kubernetes.client.exceptions import ApiException

        for name, version, index, conditions, _ in self._entries():
            others = [c for c in conditions if c.get("name") != CONDITION_NAME]
            wanted = others + (
                [{"name": CONDITION_NAME, "expression": expression}] if expression else []
            )
            if wanted == conditions:
                continue
            path = f"/webhooks/{index}/matchConditions"
            patch: list[dict[str, Any]] = [
                {"op": "test", "path": "/metadata/resourceVersion", "value": version},
                {"op": "test", "path": f"/webhooks/{index}/name", "value": WEBHOOK_ENTRY},
                {"op": "remove", "path": path}
                if not wanted
                else {"op": "add", "path": path, "value": wanted},
            ]
            try:
                self.custom.patch_cluster_custom_object(
                    GROUP,
                    VERSION,
                    "mutatingwebhookconfigurations",
                    name,
                    patch,
                    _content_type="application/json-patch+json",
                )
            except ApiException as error:
                if error.status in (404, 409, 422, 500):  # a failed "test": changed since read
                    raise Conflict(name) from None
                raise

    def read_lease(self) -> LeaseRecord | None:
        from kubernetes.client.exceptions import ApiException

        try:
            lease = self.custom.get_namespaced_custom_object(
                "coordination.k8s.io", "v1", self.namespace, "leases", LEASE_NAME
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        spec = lease.get("spec") or {}
        return LeaseRecord(
            str(spec.get("holderIdentity") or ""),
            str(spec.get("renewTime") or ""),
            str(lease["metadata"]["resourceVersion"]),
        )

    def write_lease(self, holder: str, version: str | None) -> None:
        from kubernetes.client.exceptions import ApiException

        now = _now_micro()
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": LEASE_NAME,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/name": "pullguard"},
            },
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": int(LEASE_SECONDS),
                "renewTime": now,
            },
        }
        try:
            if version is None:
                body["spec"]["acquireTime"] = now
                self.custom.create_namespaced_custom_object(
                    "coordination.k8s.io", "v1", self.namespace, "leases", body
                )
            else:
                body["metadata"]["resourceVersion"] = version
                self.custom.replace_namespaced_custom_object(
                    "coordination.k8s.io", "v1", self.namespace, "leases", LEASE_NAME, body
                )
        except ApiException as error:
            if error.status == 409:
                raise Conflict(LEASE_NAME) from None
            raise
