"""Outside review of issue 22 (rev22), item 3: "advisory findings ... never overwrite a definite
cause the kubelet reported (not found, TLS, 401)".

A live refusal (pullguard, asking anonymously or with the pod's secrets from its own network
and trust store, got 401) is "definite" in webhook/core/diagnosis.py and replaces *any*
kubelet cause. But the kubelet's TLS failure came before any question of credentials (the
node never finished the handshake): a pull secret does not make that pod pull, the nodes'
CA does. And containerd's "not found" is the registry's 404 to a request that passed its
auth (with credentials pullguard cannot see: a node's config.json or credential provider):
the tag is missing, a new secret will not create it. Reproduced on the real API server by
/tmp/rev22 scripts (see the report): `diagnose` printed [unauthorized, corrected] with a
"kubectl create secret ..." fix, and no word of the CA.
"""

from __future__ import annotations

from tests.unit.test_diagnosis import IMAGE, NOT_FOUND_TEXT, failing
from webhook.core.diagnosis import diagnose
from webhook.core.findings import Finding
from webhook.core.pullfailure import Cause

TLS_TEXT = (
    f'rpc error: code = Unknown desc = failed to pull and unpack image "{IMAGE}": failed to '
    f'resolve reference "{IMAGE}": failed to do request: Head '
    '"https://registry.example.com/v2/team/app/manifests/1.0": tls: failed to verify '
    "certificate: x509: certificate signed by unknown authority"
)

#: What the live registry check says when pullguard (trusting the CA) is refused anonymously.
REFUSED = Finding(
    "registry",
    'container "web"',
    "registry registry.example.com refused to serve 'registry.example.com/team/app:1.0' "
    "anonymously (the pod has no imagePullSecret for it; the image is private or does not "
    "exist); the kubelet will get the same answer",
    fix="kubectl create secret docker-registry regcred-registry-example-com -n team-a ...",
    cause="unauthorized",
)


def test_a_live_refusal_does_not_replace_the_kubelets_tls_failure() -> None:
    (found,) = diagnose(failing(TLS_TEXT), [], [REFUSED])
    assert found.cause is Cause.TLS, found.summary
    # The CA fix is what makes the pull get past the handshake; the refusal may follow it.
    assert any("CA" in fix for fix in found.fixes), found.fixes


def test_a_live_refusal_does_not_replace_the_kubelets_not_found() -> None:
    # The registry answered the kubelet 404: it got past the registry's auth.
    (found,) = diagnose(failing(NOT_FOUND_TEXT), [], [REFUSED])
    assert found.cause is Cause.NOT_FOUND, found.summary
    assert not any("create secret" in fix for fix in found.fixes), found.fixes
