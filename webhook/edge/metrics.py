"""Prometheus metrics, on a registry owned by the app (no module-level global state).

Names and labels:

- ``pullguard_admission_requests_total{webhook,kind,operation,decision}``: decision is
  allowed | warned | denied | patched | exempt | malformed | error.
- ``pullguard_check_results_total{webhook,kind,check,result}``: per admission and check:
  pass | warn | deny | off | unavailable | not-judged.
- ``pullguard_findings_total{check,action}``: problems found, by what was done with them.
- ``pullguard_admission_duration_seconds{webhook}``: time to decide, histogram.
- ``pullguard_config_reloads_total{result}``: applied | invalid | unchanged.
- ``pullguard_config_last_reload_success``: 1 when the newest document was applied.
- ``pullguard_config_embedded_default``: 1 while no good document has been applied and
  reviews are judged with the embedded default.
- ``pullguard_mutations_total{kind,change}``: image_rewrite | secret_injection.
- ``pullguard_secret_copies_total{result}``: one of ``secretsync.OUTCOMES``, or skipped_dry_run.
- ``pullguard_mutation_mode{mode}``: 1 for the mode in force (policy | webhook), 0 for the other.
- ``pullguard_secret_syncs_total{result}``: the background sync, one of ``secretsync.OUTCOMES``;
  alert on ``failed`` and ``source-missing``.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from webhook.core.podspec import POD_SPEC_PATHS

#: Label values are never taken from a request as they are: whoever reaches the port chooses
#: them, and each new value is a new time series held for the life of the process.
KIND_LABELS = frozenset(POD_SPEC_PATHS)
OPERATION_LABELS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})


def kind_label(kind: str) -> str:
    """The ``kind`` label for a review: a kind pullguard judges, else ``other``."""
    return kind if kind in KIND_LABELS else "other"


def operation_label(operation: str) -> str:
    return operation if operation in OPERATION_LABELS else "other"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "pullguard_admission_requests",
            "Admission requests by outcome.",
            ["webhook", "kind", "operation", "decision"],
            registry=r,
        )
        self.check_results = Counter(
            "pullguard_check_results",
            "Check outcomes per admission.",
            ["webhook", "kind", "check", "result"],
            registry=r,
        )
        self.findings = Counter(
            "pullguard_findings",
            "Problems found, by check and action.",
            ["check", "action"],
            registry=r,
        )
        self.duration = Histogram(
            "pullguard_admission_duration_seconds",
            "Time to decide one admission.",
            ["webhook"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
        )
        self.config_reloads = Counter(
            "pullguard_config_reloads",
            "Configuration documents seen, by result.",
            ["result"],
            registry=r,
        )
        self.config_ok = Gauge(
            "pullguard_config_last_reload_success",
            "1 when the newest configuration document was applied, 0 when it was refused.",
            registry=r,
            multiprocess_mode="livemin",  # 0 while any worker holds a refused document
        )
        self.config_embedded_default = Gauge(
            "pullguard_config_embedded_default",
            "1 while no good configuration has been applied and reviews are judged with the "
            "embedded default (no mirrors, no default pull secrets).",
            registry=r,
            multiprocess_mode="livemax",  # 1 while any worker judges with it
        )
        self.mutations = Counter(
            "pullguard_mutations",
            "Changes made by the mutating webhook.",
            ["kind", "change"],
            registry=r,
        )
        self.secret_copies = Counter(
            "pullguard_secret_copies",
            "Default pull secrets copied into namespaces.",
            ["result"],
            registry=r,
        )
        self.secret_syncs = Counter(
            "pullguard_secret_syncs",
            "Outcomes of keeping default pull-secret copies in line with their sources.",
            ["result"],
            registry=r,
        )

        self.registry_requests = Counter(
            "pullguard_registry_requests",
            "Registry questions asked over the network, by registry and outcome. Registries "
            "outside the configuration and the well-known ones count as 'other'.",
            ["registry", "outcome"],
            registry=r,
        )
        self.registry_seconds = Histogram(
            "pullguard_registry_request_duration_seconds",
            "Time to answer one registry question over the network (token exchange included).",
            ["registry"],
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4),
        )
        self.registry_cache = Counter(
            "pullguard_registry_cache",
            "Registry questions answered from the cache (hit) or not (miss).",
            ["result"],
            registry=r,
        )
        self.registry_refusals = Counter(
            "pullguard_registry_capacity_refusals",
            "Registry questions not asked, or stopped, for lack of capacity, by reason: "
            "process (every slot in use), namespace (one namespace's share in use), "
            "preempted (the newest question of the namespace holding the most was stopped "
            "for a namespace holding none), dns (too many DNS lookups outstanding: the "
            "namespace's share of the 64 shared ones in use, or all 192 lookup threads held "
            "when it held none; a lookup cannot be stopped), memory (a registry answer past "
            "the bytes set aside for answers in flight: not read). Any increase means images "
            "were admitted unchecked: alert.",
            ["reason"],
            registry=r,
        )
        self.provider_refusals = Counter(
            "pullguard_credential_provider_capacity_refusals",
            "Credential provider plugin runs not started, or stopped, for lack of capacity, "
            "by reason: namespace (the review's namespace holds its share of runs), process "
            "(the last slots are shared and this namespace holds its part, or every slot is "
            "held by a different namespace), preempted (the newest run of the namespace "
            "holding the most was stopped for a namespace holding none), unknown-namespace "
            "(the review names a namespace the cluster does not have: a forged review). Each "
            "but unknown-namespace means an image "
            "on a node-credential registry was admitted unchecked: alert.",
            ["reason"],
            registry=r,
        )
        self.mirror_up = Gauge(
            "pullguard_mirror_up",
            "1 while a configured mirror answers its /v2/ probe; images are rewritten to it "
            "only then.",
            ["mirror"],
            registry=r,
            multiprocess_mode="livemin",  # 0 while any worker sees the mirror down
        )
        self.mirror_skips = Counter(
            "pullguard_mirror_skipped_rewrites",
            "Images left as written because their mirror was down.",
            ["mirror"],
            registry=r,
        )

        self.mutation_mode = Gauge(
            "pullguard_mutation_mode",
            "1 for the mutation mode in force: policy (a MutatingAdmissionPolicy pullguard "
            "writes; /mutate is called only for pods that need outside data) or webhook "
            "(/mutate for every pod).",
            ["mode"],
            registry=r,
            multiprocess_mode="livemax",  # one worker (the leader) runs the controller
        )
        self.audit_findings = Gauge(
            "pullguard_audit_findings",
            "Findings of the last in-cluster audit pass (serve --audit-interval).",
            ["namespace", "check", "action"],
            registry=r,
            multiprocess_mode="livemax",  # one worker runs the audit
        )
        self.audit_objects = Gauge(
            "pullguard_audit_objects",
            "Objects judged by the last audit pass.",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.audit_last_pass = Gauge(
            "pullguard_audit_last_pass_timestamp_seconds",
            "When the last audit pass ended (Unix time).",
            registry=r,
            multiprocess_mode="livemax",
        )

    def render(self) -> bytes:
        """The text exposition: this process's metrics, or, when the server's workers share
        a metrics directory (see :mod:`webhook.edge.workers`), all workers' together."""
        shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not shared:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=shared)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
