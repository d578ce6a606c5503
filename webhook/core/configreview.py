"""pullguard judging its own ConfigMap at admission, so ``kubectl apply`` of a broken one fails
with every problem by key path, instead of printing "configured" while the running webhook
refuses the document and keeps the last good one (visible only in its log and metrics).

The webhook entry that sends these reviews is scoped to pullguard's own namespace and labelled
objects (deploy/base/webhooks.yaml); this function also checks the name, and allows anything
else. Pure: the same parser the running webhook applies.
"""

from __future__ import annotations

from webhook.core.config import ConfigError, load_config_text
from webhook.core.review import AdmissionRequest
from webhook.core.validate import Decision, allow

CONFIG_KEY = "config.yaml"


def review_config(request: AdmissionRequest, *, namespace: str, name: str) -> Decision:
    """Deny a CREATE or UPDATE of ``namespace/name`` whose ``config.yaml`` would be refused."""
    if (
        request.kind != "ConfigMap"
        or request.operation not in ("CREATE", "UPDATE")
        or request.namespace != namespace
        or request.object_name != name
    ):
        return allow("unsupported")
    data = (request.object or {}).get("data")
    text = data.get(CONFIG_KEY) if isinstance(data, dict) else None
    where = f"ConfigMap {namespace}/{name}"
    if not isinstance(text, str):
        return _deny(f"{where} has no key {CONFIG_KEY!r}, which pullguard reads")
    try:
        load_config_text(text)
    except ConfigError as error:
        return _deny(f"{where}: {error}")
    return Decision(allowed=True, reason="judged")


def _deny(problem: str) -> Decision:
    return Decision(
        allowed=False,
        message=f"pullguard refused its configuration: {problem}\n"
        "The configuration in force stays as it is. Check a file offline with: "
        "pullguard check --config FILE -f any-manifest.yaml",
        reason="judged",
    )
