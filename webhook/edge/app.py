"""The HTTP edge: a Flask app factory that translates AdmissionReviews to and from the core.

It owns what controller-runtime's ``http.go`` owns: the body-size cap, the content-type
check, decoding, encoding, and turning a crash into a 500 that still carries the uid. It
decides nothing: ``webhook.core.validate`` and ``webhook.core.mutate`` do.

Status codes: 200 with an AdmissionReview for every request that could be judged; 400 for a
body that is not a usable AdmissionReview (still an AdmissionReview, with the uid when it
could be read and the reason in ``status.message``); 413 past the size cap; 415 for a
content type other than JSON; 500 for an unexpected exception.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import RequestEntityTooLarge

from webhook.core.cluster import ClusterView
from webhook.core.configreview import review_config
from webhook.core.mutate import Mutation, SecretCopy, mutate
from webhook.core.registry import RegistryView
from webhook.core.review import (
    NESTED_TOO_DEEPLY,
    MalformedReview,
    parse_review_bytes,
    review_response,
)
from webhook.core.validate import Decision, validate
from webhook.edge.configsource import ConfigStore
from webhook.edge.metrics import Metrics, kind_label, operation_label

log = logging.getLogger("pullguard.admission")

#: The API server caps one object at 3 MiB (etcd's request limit, 1.5 MiB by default, is
#: usually lower); an UPDATE review carries the object twice, plus the request's envelope.
MAX_BODY_BYTES = 2 * 3 * 1024 * 1024 + 1024 * 1024


@dataclass
class Runtime:
    """What the app needs from the process: built by ``pullguard serve`` or by tests."""

    config: ConfigStore
    cluster: ClusterView
    metrics: Metrics
    own_namespace: str = ""
    not_ready: Callable[[], list[str]] = field(default=lambda: [])
    """Reasons the process is not ready yet (caches not synced...); empty when ready."""
    copy_secret: Callable[[SecretCopy], str] | None = None
    """Copies a default pull secret into a namespace; returns the outcome for metrics."""
    metrics_port: int | None = None
    """The plain-HTTP port: only /metrics and /healthz are served there."""
    configmap_name: str = "pullguard-config"
    """pullguard's own ConfigMap (in ``own_namespace``), judged when it is applied."""
    notes: list[str] = field(default_factory=list)
    """What cannot run in this process (no cluster, no registry client): logged once, and
    shown in /readyz."""
    registry: RegistryView | None = None
    """Answers the registry and platform checks' questions; ``None``: those checks report
    that they could not run."""
    mirrors_down: Callable[[], frozenset[str]] = field(default=frozenset)
    """Mirror hosts failing their probe now: images are not rewritten to them."""


def _json(document: Any, status: int = 200) -> Response:
    return Response(json.dumps(document), status=status, mimetype="application/json")


def _error_review(uid: str, code: int, message: str) -> Response:
    body = review_response(uid, allowed=False, message=message, code=code)
    return _json(body, status=code)


def create_app(runtime: Runtime) -> Flask:
    """Build the Flask app around ``runtime``. No state lives outside the returned app."""
    for note in runtime.notes:
        log.warning("%s", note)
    app = Flask("pullguard")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    metrics = runtime.metrics

    def read_review(webhook_name: str) -> tuple[Any, Response | None]:
        content_type = (request.mimetype or "").lower()
        if content_type != "application/json":
            metrics.requests.labels(webhook_name, "", "", "malformed").inc()
            return None, _error_review(
                "", 415, f"content type must be application/json, got {content_type or 'none'!r}"
            )
        try:
            body = request.get_data(cache=False)
        except RequestEntityTooLarge:
            metrics.requests.labels(webhook_name, "", "", "malformed").inc()
            return None, _error_review(
                "", 413, f"request body is larger than {MAX_BODY_BYTES} bytes"
            )
        try:
            return parse_review_bytes(body), None
        except MalformedReview as error:
            metrics.requests.labels(webhook_name, "", "", "malformed").inc()
            log.warning("malformed review (uid %r): %s", error.uid, _short(error.reason))
            return None, _error_review(error.uid, 400, f"malformed AdmissionReview: {error.reason}")

    def guarded(webhook_name: str, handle: Callable[[Any], Response]) -> Response:
        started = time.perf_counter()
        review, error_response = read_review(webhook_name)
        if error_response is not None:
            return error_response
        try:
            return handle(review)
        except RecursionError:
            # Decoded, but deeper than the API server stores any object: a forged review.
            metrics.requests.labels(webhook_name, "other", "other", "malformed").inc()
            log.warning("malformed review (uid %r): object %s", review.uid, NESTED_TOO_DEEPLY)
            return _error_review(
                review.uid, 400, f"malformed AdmissionReview: object is {NESTED_TOO_DEEPLY}"
            )
        except Exception:  # the 500 must still carry the uid
            log.exception("internal error on %s (uid %s)", webhook_name, review.uid)
            metrics.requests.labels(
                webhook_name, kind_label(review.kind), operation_label(review.operation), "error"
            ).inc()
            return _error_review(
                review.uid, 500, f"pullguard internal error while handling uid {review.uid}"
            )
        finally:
            metrics.duration.labels(webhook_name).observe(time.perf_counter() - started)

    def handle_validate(review: Any) -> Response:
        config = runtime.config.current
        if review.kind == "ConfigMap":
            decision = review_config(
                review, namespace=runtime.own_namespace, name=runtime.configmap_name
            )
        else:
            decision = validate(
                review,
                config,
                runtime.cluster,
                own_namespace=runtime.own_namespace,
                registry=runtime.registry,
                mirrors_down=runtime.mirrors_down(),
            )
        _record_validation(metrics, review, decision)
        body = review_response(
            review.uid,
            allowed=decision.allowed,
            message=decision.message,
            warnings=decision.warnings,
        )
        return _json(body)

    def handle_mutate(review: Any) -> Response:
        config = runtime.config.current
        result = mutate(
            review,
            config,
            runtime.cluster,
            own_namespace=runtime.own_namespace,
            mirrors_down=runtime.mirrors_down(),
        )
        warnings = list(result.warnings)
        for copy_request in result.secret_copies:
            if review.dry_run:
                # dryRun forbids side effects (the webhook declares sideEffects: NoneOnDryRun).
                metrics.secret_copies.labels("skipped_dry_run").inc()
            else:
                outcome = (
                    runtime.copy_secret(copy_request)
                    if runtime.copy_secret is not None
                    else "failed"  # copying is unavailable (no sync key): said in the log
                )
                metrics.secret_copies.labels(outcome).inc()
                if outcome not in ("created", "exists"):
                    warnings.append(
                        f'pullguard: could not copy secret "{copy_request.name}" into '
                        f'"{copy_request.namespace}" ({outcome}); see the pullguard logs'
                    )
        _record_mutation(metrics, review, result)
        body = review_response(review.uid, allowed=True, warnings=warnings, patch=result.patch)
        return _json(body)

    if runtime.metrics_port:
        metrics_only = {"/metrics", "/healthz"}
        metrics_port = str(runtime.metrics_port)

        @app.before_request
        def plain_port_serves_metrics_only() -> Response | None:
            if request.environ.get("SERVER_PORT") == metrics_port and (
                request.path not in metrics_only
            ):
                return Response("not found\n", status=404, mimetype="text/plain")
            return None

    @app.post("/validate")
    def validate_endpoint() -> Response:
        return guarded("validate", handle_validate)

    @app.post("/mutate")
    def mutate_endpoint() -> Response:
        return guarded("mutate", handle_mutate)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    @app.get("/readyz")
    def readyz() -> Response:
        reasons = [] if runtime.config.loaded else ["configuration not loaded"]
        reasons += runtime.not_ready()
        notes = "".join(f"note: {note}\n" for note in runtime.notes)
        if reasons:
            return Response(
                "not ready: " + "; ".join(reasons) + "\n" + notes,
                status=503,
                mimetype="text/plain",
            )
        return Response("ok\n" + notes, mimetype="text/plain")

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        return Response(metrics.render(), mimetype="text/plain; version=0.0.4")

    return app


def _record_validation(metrics: Metrics, review: Any, decision: Decision) -> None:
    if decision.reason in ("exempt", "unsupported", "unchanged", "mode-off"):
        outcome = "exempt" if decision.reason == "exempt" else "allowed"
    elif not decision.allowed:
        outcome = "denied"
    elif decision.warnings:
        outcome = "warned"
    else:
        outcome = "allowed"
    kind, operation = kind_label(review.kind), operation_label(review.operation)
    metrics.requests.labels("validate", kind, operation, outcome).inc()
    for check, result in decision.outcomes.items():
        metrics.check_results.labels("validate", kind, check, result).inc()
    for finding in decision.findings:
        metrics.findings.labels(finding.check, finding.action.value).inc()
    log.info(
        "validate uid=%s kind=%s ns=%s name=%s op=%s decision=%s findings=%s",
        _short(review.uid),
        _short(review.kind),
        _short(review.namespace),
        _short(review.object_name or review.generate_name),
        operation,
        outcome,
        ",".join(f"{f.check}:{f.action.value}" for f in decision.findings) or "-",
    )


def _record_mutation(metrics: Metrics, review: Any, result: Mutation) -> None:
    outcome = "patched" if result.patch else ("exempt" if result.reason == "exempt" else "allowed")
    kind = kind_label(review.kind)
    metrics.requests.labels("mutate", kind, operation_label(review.operation), outcome).inc()
    for rewrite in result.rewrites:
        metrics.mutations.labels(kind, "image_rewrite").inc()
        log.info(
            "mutate uid=%s ns=%s %s: %s -> %s%s",
            _short(review.uid),
            _short(review.namespace),
            _short(rewrite.container.label),
            _short(rewrite.original),
            _short(rewrite.rewritten),
            " (dry run)" if review.dry_run else "",
        )
    for skip in result.skipped:
        metrics.mirror_skips.labels(skip.mirror).inc()
        log.warning(
            "mutate uid=%s ns=%s %s: mirror %s is down, image left as written",
            _short(review.uid),
            _short(review.namespace),
            _short(skip.container.label),
            skip.mirror,
        )
    for name in result.injected_secrets:
        metrics.mutations.labels(kind, "secret_injection").inc()
        log.info(
            "mutate uid=%s ns=%s: imagePullSecret %s injected",
            _short(review.uid),
            _short(review.namespace),
            _short(name),
        )


def _short(value: str, limit: int = 256) -> str:
    """A caller-supplied value as it may appear in a log line: at most ``limit`` characters."""
    return value if len(value) <= limit else value[:limit] + f"...({len(value)} chars)"
