"""Outside review rev20e of issue 20 (the fifth, on the fixes of rev20d's findings), on the
real API server with deploy/ installed: a tenant (a ServiceAccount with rights over Secrets
and Pods in its own namespace only, acting through its own token), pullguard's real
registries, and the admin's ``pullguard audit``. Each finding is an open finding
(``@pytest.mark.open_finding``) that fails today.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

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

TENANT = "rev20e-tenant"


@pytest.fixture(scope="module")
def tenant(installed: Installation) -> Path:
    """A kubeconfig for ServiceAccount rev20e-tenant/app: Secrets and Pods in its namespace."""
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


def raw_secret(name: str, document: str, ns: str = TENANT) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(document.encode()).decode()},
        }
    )


def pullguard(
    plane: ControlPlane, registries: E2ERegistries, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m webhook ARGS`` as the cluster's admin, trusting the registries' CA."""
    return subprocess.run(
        [sys.executable, "-m", "webhook", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=checkout_env(KUBECONFIG=str(plane.kubeconfig), SSL_CERT_FILE=str(registries.ca)),
        check=False,
    )


# -- F1. A pull secret nested deeper than Python's recursion limit is a 500 ------------------


def nested_document(host: str, depth: int) -> str:
    """A valid docker config for ``host`` plus an unknown field holding ``depth`` nested
    arrays: Go's ``encoding/json`` (the kubelet's) ignores the field and parses up to 10,000
    levels; Python's ``json`` raises ``RecursionError`` past about 1,000."""
    return json.dumps({"auths": {host: {"auth": REGISTRY_AUTH}}})[:-1] + (
        ', "x": ' + "[" * depth + "]" * depth + "}"
    )


def test_a_deeply_nested_pull_secret_does_not_switch_the_checks_off(
    installed: Installation, tenant: Path, registries: E2ERegistries
) -> None:
    """Seen: a tenant's own pull secret whose JSON carries one unknown field of 1,500
    nested arrays (``{"auths": {HOST: {...}}, "x": [[[...]]]}``, 4.5 KB; the API server
    stores it, and the kubelet's Go decoder, whose depth limit is 10,000, ignores the field
    and pulls with the login) makes ``json.loads`` in ``keyring.parse_pull_secret`` raise
    ``RecursionError`` (not the ``ValueError`` it catches). The review answers 500 and,
    under deploy/'s ``failurePolicy: Ignore``, a pod naming a tag never pushed is admitted
    (``kubectl apply --dry-run=server`` exit 0) where the same pod with the same login
    without the field is denied ("9.9"). The rev20d F1 fix (hostless keys) closed one
    crash of the keyring; this is another, reachable by any tenant on purpose (issue 20
    items 5 and 12). ``audit -A`` and ``export-state -A`` parse every namespace's secrets
    the same way (``redacted_pull_secret`` raises too: tests/unit/test_rev20e_review.py).

    Expected: no 500: the secret is judged as the kubelet reads it (a depth Go parses is
    a good secret; past Go's 10,000 it is one the kubelet cannot parse), and the pod is
    denied as without the field."""
    plane = installed.plane
    host = registries.private.host
    image = f"{host}/team/never-pushed:9.9"
    plane.apply(raw_secret("flat", nested_document(host, 1)), check=True)
    plane.apply(raw_secret("deep", nested_document(host, 1500)), check=True)
    control = plane.kubectl(
        "apply", "--dry-run=server", "-f", "-",
        stdin=pod("control", TENANT, image, ("flat",)), kubeconfig=tenant,
    )  # fmt: skip
    assert not control.ok and "9.9" in control.stderr, (control.stdout, control.stderr)
    attack = plane.kubectl(
        "apply", "--dry-run=server", "-f", "-",
        stdin=pod("attack", TENANT, image, ("deep",)), kubeconfig=tenant,
    )  # fmt: skip
    assert not attack.ok, (
        f"with 1,500 nested arrays in its secret the pod was admitted: {attack.stdout!r} "
        f"{attack.stderr!r}"
    )
    assert "9.9" in attack.stderr, attack.stderr


# -- F2, F3. A pod's imagePullSecrets names reach the admin's audit as they are -----------

AUDITED = "rev20e-audited"


@pytest.fixture(scope="module")
def audited(
    installed: Installation, registries: E2ERegistries, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str, Path]:
    """A namespace in ``warn`` (the documented roll-out: warn first, audit, then enforce)
    whose pods name pull secrets the API server never validates (``imagePullSecrets[].name``
    of a Pod is any string): one with a shell command in its name, on an image that needs
    credentials; one with terminal escape sequences, on a public image. Then the namespace is
    switched to ``enforce`` and the admin runs ``pullguard audit -n``. Returns the audit's
    stdout, the injected command's marker path, and the marker."""
    plane = installed.plane
    namespace(plane, AUDITED, {"pullguard.io/mode": "warn"})
    push_image(registries.private, "team/r20e-private", "1.0")
    push_image(registries.public, "team/r20e-public", "1.0")
    marker = tmp_path_factory.mktemp("rev20e-marker") / "pwned"
    injected = f"x;touch${{IFS}}{marker};"
    escaped = "y\x1b]0;pwned\x07\x1b[2J"
    created = plane.apply(
        pod("shell", AUDITED, f"{registries.private.host}/team/r20e-private:1.0", (injected,))
    )
    assert created.ok, created.stderr
    created = plane.apply(
        pod("escape", AUDITED, f"{registries.public.host}/team/r20e-public:1.0", (escaped,))
    )
    assert created.ok, created.stderr
    namespace(plane, AUDITED, {"pullguard.io/mode": "enforce"})
    audit = pullguard(plane, registries, "audit", "-n", AUDITED)
    assert "Traceback" not in audit.stderr, audit.stderr[-2000:]
    return audit.stdout, injected, marker


def test_the_audit_fix_for_a_missing_secret_quotes_the_tenants_secret_name(
    audited: tuple[str, str, Path], tmp_path: Path
) -> None:
    """Seen: the tenant's pod lists ``imagePullSecrets: [{name: "x;touch${IFS}MARKER;"}]``
    (the API server validates no such name: only Secrets' own names are DNS subdomains) on
    an image of the private registry. ``pullguard audit -n`` (the admin's) prints
    ``DENY Pod ...`` and ``Fix: kubectl create secret docker-registry x;touch${IFS}MARKER;
    -n rev20e-audited --docker-server=...``: the name is not quoted
    (``checks.create_secret_command``, also ``cloudlogin.secret_command`` and the
    ``kubectl get secret NAME`` fixes), so the admin who pastes the fix runs the tenant's
    command. Here the printed line, run by ``bash`` with ``kubectl`` a stub that does
    nothing, created the marker file. Every fix "runs as printed", so a tenant chooses what
    runs in the admin's shell.

    Expected: every name from the cluster is shell-quoted in a command (``shlex.quote``, as
    ``set_entry_command`` quotes keys), or a name no Secret can have (not a DNS subdomain)
    gets a fix that renames the reference instead; running the printed fix never runs
    anything but kubectl."""
    stdout, injected, marker = audited
    fixes = [
        line.strip().removeprefix("Fix: ")
        for line in stdout.splitlines()
        if line.strip().startswith("Fix: kubectl create secret")
    ]
    assert fixes, stdout[-2000:]
    stub = tmp_path / "bin"
    stub.mkdir()
    kubectl = stub / "kubectl"
    kubectl.write_text("#!/bin/sh\nexit 0\n")
    kubectl.chmod(kubectl.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}"}
    for fix in fixes:
        subprocess.run(["bash", "-c", fix], env=env, capture_output=True, timeout=30, check=False)
    assert not marker.exists(), f"running the printed fix ran the tenant's command: {fixes}"
    assert injected not in "\n".join(fixes) or f"'{injected}'" in "\n".join(fixes), fixes


def test_the_audit_prints_no_terminal_escape_from_a_tenants_secret_name(
    audited: tuple[str, str, Path],
) -> None:
    """Seen: a pod (admitted with a warning: the image is public, the secret not needed)
    lists ``imagePullSecrets: [{name: "y ESC]0;pwned BEL ESC[2J"}]``. The admission
    warnings are cleaned (``review._printable``), but ``pullguard audit``'s text prints
    each finding's ``short`` and ``problem`` as they are (``cli/audit._text``): the admin's
    terminal got ESC ] 0 (set the window title) and ESC [ 2J (clear the screen) from a
    tenant. rev20d F9 cleaned the kubelet's words in ``diagnose`` (``cluster_text``);
    names a tenant writes into its objects go to ``audit`` (and ``check``'s
    ``--cluster-state`` output, ``diagnose``'s live findings) raw.

    Expected: no control character (C0, DEL, C1) in any text ``audit`` prints; the name
    shown escaped or replaced, as ``cluster_text`` does."""
    stdout, _, _ = audited
    assert "rev20e-audited/escape" in stdout, stdout[-2000:]
    controls = sorted({hex(ord(ch)) for ch in stdout if ord(ch) < 32 and ch != "\n"})
    assert not controls, f"control characters in audit's output: {controls}"
