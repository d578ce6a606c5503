"""Outside review of issue 22 (rev22), item 3: the rate-limit fix "create a Docker Hub secret and
attach it to the ServiceAccount".

When the pod (its template) lists imagePullSecrets of its own, the API server never adds the
ServiceAccount's to its pods (pullguard says so itself at admission: "the pod's own
imagePullSecrets hide ServiceAccount ..."). The printed fix patches the ServiceAccount only,
so the new pods still pull anonymously. Seen on the real API server: the fix run as printed,
then `kubectl rollout restart deployment/hub`: the new pod's imagePullSecrets are
[{"name":"noport"}], no "dockerhub". The fix must add the secret to the template's own list.
"""

from __future__ import annotations

from tests.unit.test_diagnosis import failing
from webhook.core.diagnosis import Workload, diagnose

RATE_LIMITED = (
    "429 Too Many Requests - Server message: toomanyrequests: You have reached your pull "
    "rate limit."
)


def test_a_rate_limit_fix_reaches_a_pod_that_lists_its_own_secrets() -> None:
    owned = Workload("Deployment", "web", "default", ())
    (found,) = diagnose(failing(RATE_LIMITED, secrets=["noport"]), [], [], workload=owned)
    (fix,) = found.fixes
    assert "kubectl patch deployment/web" in fix, fix
    assert '{"name":"noport"},{"name":"dockerhub"}' in fix, fix
