"""Outside review rev20d of issue 20, on the real API server with deploy/ installed: a
tenant (a ServiceAccount with rights over Secrets and Pods in its own namespace only, acting
through its own token) and pullguard's real registries. Each finding is an open finding
(``@pytest.mark.open_finding``) that fails today.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import checkout_env
from tests.e2e.cluster import ControlPlane
from tests.e2e.conftest import (
    REGISTRY_AUTH,
    E2ERegistries,
    Installation,
    namespace,
    pod,
)
from tests.integration.registries import push_image

pytestmark = pytest.mark.e2e

TENANT = "rev20d-tenant"


@pytest.fixture(scope="module")
def tenant(installed: Installation) -> Path:
    """A kubeconfig for ServiceAccount rev20d-tenant/app: Secrets and Pods in its namespace."""
    plane = installed.plane
    namespace(plane, TENANT)
    rules = [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]},
    ]
    items = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "app", "namespace": TENANT},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "tenant", "namespace": TENANT},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "tenant", "namespace": TENANT},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant"},
            "subjects": [{"kind": "ServiceAccount", "name": "app", "namespace": TENANT}],
        },
    ]
    plane.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}), check=True)
    return plane.service_account_kubeconfig(TENANT, "app")


def dockerconfig_secret(name: str, auths: dict[str, object], ns: str = TENANT) -> str:
    document = json.dumps({"auths": auths})
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(document.encode()).decode()},
        }
    )


@pytest.mark.parametrize("extra_key", ["", "//", "https:///"])
def test_a_pull_secret_key_without_a_host_does_not_switch_the_checks_off(
    installed: Installation, tenant: Path, registries: E2ERegistries, extra_key: str
) -> None:
    """Seen: a tenant's pull secret with one more entry whose key has no host (``""``,
    ``//``, ``https:///``: Go's ``url.Parse`` takes each, so the kubelet adds an entry that
    matches no image and pulls with the others) makes ``keyring._index_key`` raise
    ``ValueError: empty separator`` (``str.partition("")`` on the empty netloc) inside the
    review: pullguard answers 500 ("pullguard internal error"), and under deploy/'s
    ``failurePolicy: Ignore`` the API server admits the pod unchecked. Here a pod naming a
    tag that was never pushed to the private registry, with that secret, is admitted
    (``kubectl apply --dry-run=server`` exit 0) where the same pod with the same secret
    minus that entry is denied ("has no tag"). Any tenant can so switch every check off for
    its own pods on purpose (issue 20 items 5 and 12: a tenant-reachable shape must not
    turn enforcement off; no 500). ``pullguard export-state`` and ``audit`` parse the
    same keys (``keyring_key``) for every namespace they read.

    Expected: such an entry is skipped (it matches no image), the pod is judged and denied
    as without it; no 500."""
    plane = installed.plane
    host = registries.private.host
    image = f"{host}/team/never-pushed:9.9"
    good = {host: {"auth": REGISTRY_AUTH}}
    plane.apply(dockerconfig_secret("clean", good), check=True)
    plane.apply(dockerconfig_secret("odd", {extra_key: {}, **good}), check=True)
    control = plane.kubectl(
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        stdin=pod("control", TENANT, image, ("clean",)),
        kubeconfig=tenant,
    )
    assert not control.ok and "9.9" in control.stderr, (control.stdout, control.stderr)
    attack = plane.kubectl(
        "apply",
        "--dry-run=server",
        "-f",
        "-",
        stdin=pod("attack", TENANT, image, ("odd",)),
        kubeconfig=tenant,
    )
    assert not attack.ok, (
        f"with an entry keyed {extra_key!r} the pod was admitted: {attack.stdout!r} "
        f"{attack.stderr!r}"
    )
    assert "9.9" in attack.stderr, attack.stderr


def pullguard(
    plane: ControlPlane, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m webhook ARGS`` as the cluster's admin."""
    return subprocess.run(
        [sys.executable, "-m", "webhook", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=checkout_env(KUBECONFIG=str(plane.kubeconfig)),
        check=False,
    )


def test_one_tenants_hostless_key_does_not_stop_the_audit_of_every_namespace(
    installed: Installation, tenant: Path, registries: E2ERegistries
) -> None:
    """The same key as above, seen from the admin's side. Seen: the tenant's pod with that
    secret was admitted unchecked (the 500 above) and now exists; ``pullguard audit -A``
    and ``pullguard export-state -A`` (the admin's, for CI) both exit 1 with a traceback
    ending in ``ValueError: empty separator`` (audit in ``livecheck.judge``, export in
    ``keyring.redacted_pull_secret``) and say nothing of any other namespace, whose
    findings (here: a pod in a ``warn`` namespace naming a tag never pushed) go unreported.
    By the code, the in-cluster audit (deploy/components/in-cluster-audit) fails the same
    way on every pass (``run_once`` raises: "audit pass failed", nothing reported for any
    namespace; not run here). One tenant's Secret switches the cluster-wide audit off.

    Expected: the audit judges that pod like any other (its hostless entry matches no
    image) and reports every namespace; exit 1 for the denials, no traceback."""
    plane = installed.plane
    host = registries.private.host
    # Since the fix the never-pushed tag is denied at admission: the pod that exists (as
    # the one admitted unchecked did) names a pushed image, and its secret still carries
    # the hostless entry every audit pass parses.
    push_image(registries.private, "team/r20d-audited", "1.0")
    image = f"{host}/team/r20d-audited:1.0"
    plane.apply(
        dockerconfig_secret("odd-audit", {"": {}, host: {"auth": REGISTRY_AUTH}}), check=True
    )
    created = plane.kubectl(
        "apply", "-f", "-", stdin=pod("audited", TENANT, image, ("odd-audit",)),
        kubeconfig=tenant,
    )  # fmt: skip
    assert created.ok, created.stderr
    # Another namespace's pod the audit must report (admitted there with a warning only).
    namespace(plane, "rev20d-other", {"pullguard.io/mode": "warn"})
    plane.apply(pod("other", "rev20d-other", f"{registries.public.host}/team/gone:9.9"), check=True)
    exported = pullguard(plane, "export-state", "-A")
    audit = pullguard(plane, "audit", "-A")
    seen = (
        f"export-state -A: exit {exported.returncode}, {exported.stderr[-300:]!r}; "
        f"audit -A: exit {audit.returncode}, {audit.stderr[-300:]!r}"
    )
    assert exported.returncode == 0 and "Traceback" not in exported.stderr, seen
    assert "Traceback" not in audit.stderr and "empty separator" not in audit.stderr, seen
    assert "rev20d-other" in audit.stdout, audit.stdout[-1500:]


def test_a_password_with_a_tab_and_a_slash_stays_out_of_export_state_and_denials(
    installed: Installation, registries: E2ERegistries
) -> None:
    """Item 10 made ``https://robot:pa/ss@host`` an ``(unparsable key)``: ``_index_key``
    looks for an ``@`` after the netloc ``urlsplit`` found. But ``urlsplit`` first deletes
    every tab, CR and LF in the URL (Python's WHATWG-style sanitising), so with one of them
    in the password the netloc it returns is not in the key as written, ``partition`` finds
    nothing after it, and the check passes.

    Seen: a secret keyed ``https://robot:Su<TAB>p3r/Secret@HOST`` (Go's
    ``url.Parse`` refuses the control character: the kubelet ignores the entry) is exported
    by ``pullguard export-state -n NS`` (run by the admin for CI) under the key
    ``robot:Sup3r/Secret@HOST``: the password, less its tab, in the file meant to hold no
    credential; and a pod naming that secret for an image on HOST's registry is denied
    with ``entry 'robot:Sup3r/Secret@HOST' ...`` in the message (kubectl's output, the API
    server's audit log, CI logs).

    Expected: any key ``url.Parse`` refuses (control characters included) is
    ``(unparsable key)`` everywhere; no piece of the password is shown or exported."""
    plane = installed.plane
    host = registries.private.host
    ns = "rev20d-tab"  # apart from the tenant's namespace, whose hostless keys crash export
    namespace(plane, ns)
    key = f"https://robot:Su\tp3r/Secret@{host}"
    plane.apply(dockerconfig_secret("tabbed", {key: {"auth": REGISTRY_AUTH}}, ns), check=True)
    exported = pullguard(plane, "export-state", "-n", ns)
    assert exported.returncode == 0, exported.stderr
    items = yaml.safe_load(exported.stdout)["items"]
    data = next(i for i in items if i["kind"] == "Secret" and i["metadata"]["name"] == "tabbed")
    document = base64.b64decode(data["data"][".dockerconfigjson"]).decode()
    denied = plane.apply(pod("tabbed", ns, f"{host}/team/app:1.0", ("tabbed",)), "--dry-run=server")
    seen = f"exported: {document}; denial: {denied.stderr}"
    assert "Sup3r" not in document and "Secret@" not in document, seen
    assert "Sup3r" not in denied.stderr and "Sup3r" not in denied.stdout, seen


def test_under_client_ca_an_unauthenticated_caller_learns_no_other_namespace(
    installed: Installation, registries: E2ERegistries, tmp_path: Path
) -> None:
    """With ``--client-ca`` the review endpoints answer only the API server, and "it exists
    in namespace X" is said only to who may read Secrets there (item 8). But ``/metrics``
    on the same webhook port needs no certificate (docs/reference.md: "/healthz, /readyz,
    /metrics need none"), and with the in-cluster audit
    (deploy/components/in-cluster-audit) it carries
    ``pullguard_audit_findings{namespace=...}``.

    Seen: pullguard serve ``--client-ca`` ``--audit-interval 2``; a namespace
    ``rev20d-falcon`` holding a pod with a tag never pushed. A client with no certificate
    (any pod that reaches the Service: ``edit`` in one namespace may not list Namespaces)
    gets ``/metrics`` over the webhook port, 200, with
    ``pullguard_audit_findings{action="warn",check="registry",namespace="rev20d-falcon"} 1.0``
    (while ``POST /validate`` is 401). By the NetworkPolicy component's rules (not run
    here) its metrics port tells the same to every pod of the ``monitoring`` namespace.

    Expected: an unauthenticated caller on the webhook port learns no namespace it cannot
    read: ``/metrics`` there requires the client certificate under ``--client-ca`` (the
    scraper uses the metrics port), or the audit's gauges carry no namespace label."""
    from tests.conftest import ROOT, free_port
    from tests.e2e.cluster import wait_for
    from tests.e2e.conftest import spawn_pullguard
    from tests.integration.test_port_attacks import client_certificate
    from webhook.edge.certs import make_bundle

    plane = installed.plane
    secret_ns = "rev20d-falcon"
    namespace(plane, secret_ns, {"pullguard.io/mode": "warn"})
    plane.apply(
        pod("falcon", secret_ns, f"{registries.public.host}/falcon/never-pushed:1"), check=True
    )
    rbac = (ROOT / "deploy" / "components" / "in-cluster-audit" / "rbac.yaml").read_text()
    plane.apply(rbac, check=True)
    ca_files = make_bundle(["apiserver"], []).write(tmp_path / "client-ca")
    client_ca = ca_files["ca.crt"]
    cert = client_certificate(
        tmp_path / "client", "kube-apiserver", ca=client_ca, ca_key=ca_files["ca.key"]
    )
    auditor = spawn_pullguard(
        plane,
        tmp_path,
        kubeconfig=installed.kubeconfig,
        port=free_port(),
        webhook_url=installed.webhook_url,
        name="rev20d-auditor",
        extra=("--audit-interval", "2", "--client-ca", str(client_ca)),
        env={"SSL_CERT_FILE": str(registries.ca)},
    )
    try:
        wait_for(auditor.ready, 60, "the auditor")
        context = ssl.create_default_context(cafile=str(auditor.cert_dir / "ca.crt"))
        context.load_cert_chain(str(cert[0]), str(cert[1]))
        with (
            auditor.client() as anonymous,  # no client certificate
            httpx.Client(base_url=auditor.url, verify=context, timeout=10) as api_server,
        ):
            assert anonymous.post("/validate", json={}).status_code == 401  # --client-ca holds

            def audited() -> bool:  # seen by the certificate's holder: the pass ran
                return f'namespace="{secret_ns}"' in api_server.get("/metrics").text

            wait_for(audited, 30, "an audit pass")
            answer = anonymous.get("/metrics")
            lines = [line for line in answer.text.splitlines() if secret_ns in line]
        assert answer.status_code == 401, answer.status_code
        assert not lines, f"unauthenticated /metrics on the webhook port: {lines}"
    finally:
        auditor.stop()
