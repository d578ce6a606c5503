"""Attacks by a tenant, on a real API server with RBAC: each must fail.

The tenant is a ServiceAccount with full rights over Secrets in its own namespace and nothing
else, acting through its own token, as a namespace user would.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e.cluster import ControlPlane, wait_for
from tests.e2e.conftest import (
    NAMESPACE,
    E2ERegistries,
    Installation,
    namespace,
    pod,
    pull_secret,
    spawn_pullguard,
)
from tests.integration.registries import push_image

pytestmark = pytest.mark.e2e

TENANT = "tenant"


@pytest.fixture(scope="module")
def tenant(installed: Installation) -> Path:
    """A kubeconfig for ServiceAccount tenant/app, allowed everything on Secrets in ``tenant``."""
    plane = installed.plane
    namespace(plane, TENANT)
    plane.apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "List",
                "items": [
                    {
                        "apiVersion": "v1",
                        "kind": "ServiceAccount",
                        "metadata": {"name": "app", "namespace": TENANT},
                    },
                    {
                        "apiVersion": "rbac.authorization.k8s.io/v1",
                        "kind": "Role",
                        "metadata": {"name": "secrets", "namespace": TENANT},
                        "rules": [
                            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]},
                            {"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]},
                        ],
                    },
                    {
                        "apiVersion": "rbac.authorization.k8s.io/v1",
                        "kind": "RoleBinding",
                        "metadata": {"name": "secrets", "namespace": TENANT},
                        "roleRef": {
                            "apiGroup": "rbac.authorization.k8s.io",
                            "kind": "Role",
                            "name": "secrets",
                        },
                        "subjects": [
                            {"kind": "ServiceAccount", "name": "app", "namespace": TENANT}
                        ],
                    },
                ],
            }
        ),
        check=True,
    )
    return plane.service_account_kubeconfig(TENANT, "app")


def forged_copy(name: str, source: str) -> str:
    """What a tenant can write: pullguard's label and source annotation, any proof."""
    document = json.dumps({"auths": {"tenant.example.com": {"auth": "dDpw"}}})
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": TENANT,
                "labels": {"app.kubernetes.io/managed-by": "pullguard"},
                "annotations": {
                    "pullguard.io/source": source,
                    "pullguard.io/copy-proof": "0" * 64,
                },
            },
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": base64.b64encode(document.encode()).decode()},
        }
    )


def secret_hosts(plane: ControlPlane, ns: str, name: str) -> str:
    data = plane.get_json("secret", name, "-n", ns)["data"]
    key = ".dockerconfigjson" if ".dockerconfigjson" in data else next(iter(data))
    return base64.b64decode(data[key]).decode()


def test_a_forged_copy_never_receives_another_namespaces_secret(
    installed: Installation, tenant: Path, tmp_path: Path
) -> None:
    plane = installed.plane
    # A secret the tenant may not read, and the configured default secret.
    plane.kubectl(
        "create", "secret", "generic", "victim", "-n", "kube-system", "--from-literal=token=XYZ"
    )
    assert not plane.kubectl("get", "secret", "victim", "-n", "kube-system", kubeconfig=tenant).ok
    for name, source in (("victim", "kube-system/victim"), ("corp-pull", f"{NAMESPACE}/corp-pull")):
        result = plane.kubectl(
            "apply", "-f", "-", stdin=forged_copy(name, source), kubeconfig=tenant
        )
        assert result.ok, result.stderr

    # Positive control: a genuine copy in another namespace, which the sync must keep up to date.
    namespace(plane, "genuine")
    assert plane.apply(pod("corp", "genuine", "corp.example.com/a:1")).ok
    # (Made once the API server has the Pod: copies follow real objects.)
    wait_for(
        lambda: plane.kubectl("get", "secret", "corp-pull", "-n", "genuine").ok, 15, "the copy"
    )
    assert "corp.example.com" in secret_hosts(plane, "genuine", "corp-pull")

    # A replica started now adopts what it finds at start-up, then syncs every 2 s.
    port = free_port()
    fresh = spawn_pullguard(
        plane,
        tmp_path,
        kubeconfig=installed.kubeconfig,
        port=port,
        webhook_url=installed.webhook_url,
        name="restarted",
    )
    try:
        wait_for(fresh.ready, 60, "the restarted replica")
        plane.apply(pull_secret("corp-pull", NAMESPACE, "rotated.example.com"), check=True)
        wait_for(
            lambda: "rotated.example.com" in secret_hosts(plane, "genuine", "corp-pull"),
            30,
            "the genuine copy to follow its source",
        )
        time.sleep(5)  # two more sync passes
        for name in ("victim", "corp-pull"):
            held = secret_hosts(plane, TENANT, name)
            assert held == '{"auths": {"tenant.example.com": {"auth": "dDpw"}}}', held
        log = fresh.log_text()
        assert "XYZ" not in log
    finally:
        fresh.stop()
        plane.apply(pull_secret("corp-pull", NAMESPACE, "corp.example.com"), check=True)


def _secret(name: str, ns: str, secret_type: str, labelled: bool) -> str:
    metadata: dict[str, object] = {"name": name, "namespace": ns}
    if labelled:
        metadata["labels"] = {"app.kubernetes.io/managed-by": "pullguard"}
        metadata["annotations"] = {"pullguard.io/copy-proof": "p" * 64}
    data = {".dockerconfigjson": base64.b64encode(b'{"auths": {}}').decode()}
    if secret_type == "Opaque":
        data = {"token": base64.b64encode(b"planted").decode()}
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata,
            "type": secret_type,
            "data": data,
        }
    )


def test_pullguards_own_rights_cannot_plant_or_rewrite_other_secrets(
    installed: Installation, tenant: Path
) -> None:
    # Even pullguard's own token, with the opt-in copy rights, can only write labelled pull
    # secrets, and only patch or delete the configured names.
    plane, sa = installed.plane, installed.kubeconfig
    planted = plane.kubectl(
        "create", "-f", "-", stdin=_secret("planted", TENANT, "Opaque", True), kubeconfig=sa
    )
    assert not planted.ok
    assert "pullguard may only write pull secrets that are its own labelled copies" in (
        planted.stderr
    )
    unlabelled = plane.kubectl(
        "create",
        "-f",
        "-",
        stdin=_secret("corp-pull", TENANT, "kubernetes.io/dockerconfigjson", False),
        kubeconfig=sa,
    )
    assert not unlabelled.ok and "its own labelled copies" in unlabelled.stderr
    plane.kubectl(
        "create", "secret", "generic", "app-config", "-n", TENANT, "--from-literal=a=b", check=True
    )
    patched = plane.kubectl(
        "patch", "secret", "app-config", "-n", TENANT, "-p", '{"data":{"a":"Yw=="}}', kubeconfig=sa
    )
    assert not patched.ok and "forbidden" in patched.stderr.lower()
    deleted = plane.kubectl("delete", "secret", "app-config", "-n", TENANT, kubeconfig=sa)
    assert not deleted.ok and "forbidden" in deleted.stderr.lower()
    made = plane.kubectl(
        "create",
        "-f",
        "-",
        stdin=_secret("corp-pull", "e2e", "kubernetes.io/dockerconfigjson", True),
        kubeconfig=sa,
    )
    assert made.ok or "already exists" in made.stderr, made.stderr


def test_a_password_in_a_secret_key_never_reaches_a_denial_or_an_event(
    installed: Installation, tenant: Path
) -> None:
    plane = installed.plane
    leaky = {"auths": {"https://robot:Sup3rS3cret@registry.example.com/v1/": {"auth": "dTpw"}}}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "leaky", "namespace": TENANT},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(json.dumps(leaky).encode()).decode()},
    }
    assert plane.kubectl("apply", "-f", "-", stdin=json.dumps(secret), kubeconfig=tenant).ok
    # The key covers registry.example.com: that pod runs (matched on host and path only) ...
    covered = pod("covered", TENANT, "registry.example.com/team/app:1", ("leaky",))
    result = plane.kubectl("apply", "--dry-run=server", "-f", "-", stdin=covered, kubeconfig=tenant)
    assert result.ok, result.stderr
    # ... and a denial (registry.example.com needs credentials; "leaky" is unreadable for
    # this one) never repeats the key as written.
    broken = dict(secret)
    broken["metadata"] = {"name": "broken", "namespace": TENANT}
    bad = {"auths": {"https://robot:Sup3rS3cret@registry.example.com/v1/": "not an object"}}
    broken["data"] = {".dockerconfigjson": base64.b64encode(json.dumps(bad).encode()).decode()}
    assert plane.kubectl("apply", "-f", "-", stdin=json.dumps(broken), kubeconfig=tenant).ok
    denied = plane.kubectl(
        "apply",
        "-f",
        "-",
        stdin=pod("denied", TENANT, "registry.example.com/team/app:1", ("broken",)),
        kubeconfig=tenant,
    )
    assert not denied.ok
    assert 'imagePullSecret "broken"' in denied.stderr
    assert "Sup3rS3cret" not in denied.stderr and "robot" not in denied.stderr
    events = plane.kubectl("get", "events", "-n", TENANT, "-o", "json", check=True).stdout
    assert "Sup3rS3cret" not in events


def test_a_made_up_controller_owner_does_not_soften_a_tenants_pod(
    installed: Installation, tenant: Path, registries: E2ERegistries
) -> None:
    """A bare Pod with ``ownerReferences[].controller: true`` pointing nowhere used to be
    judged as a controller's pod, where an image that does not exist only warns."""
    plane = installed.plane
    host = registries.public.host
    push_image(registries.public, "team/owned", "1.0")
    forged = json.loads(pod("owned", TENANT, f"{host}/team/owned:9.9"))
    forged["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "made-up",
            "uid": "00000000-0000-0000-0000-000000000000",
            "controller": True,
        }
    ]
    result = plane.kubectl("apply", "-f", "-", stdin=json.dumps(forged), kubeconfig=tenant)
    assert not result.ok, result.stdout
    assert "has no tag '9.9'" in result.stderr, result.stderr


def test_where_a_secret_exists_is_said_only_to_who_may_read_it(
    installed: Installation, tenant: Path
) -> None:
    """ "it exists in namespace project-falcon" told any tenant which namespaces hold a
    secret of that name. With ``--client-ca`` the API server's authorizer (a
    SubjectAccessReview for the request's user) decides whether that is said
    (tests/unit/test_validate.py, tests/integration/test_port_attacks.py); this install has
    none, so it is said to nobody, through the real API server."""
    plane = installed.plane
    namespace(plane, "project-falcon")
    plane.apply(pull_secret("falcon-cred", "project-falcon", "registry.example.com"), check=True)
    manifest = pod("probe", TENANT, "registry.example.com/falcon/app:1", ("falcon-cred",))
    as_tenant = plane.kubectl(
        "apply", "--dry-run=server", "-f", "-", stdin=manifest, kubeconfig=tenant
    )
    assert not as_tenant.ok
    assert 'imagePullSecret "falcon-cred" does not exist in namespace "tenant"' in as_tenant.stderr
    assert "project-falcon" not in as_tenant.stderr, as_tenant.stderr
    # This install has no --client-ca: the review's user is nobody's word, so even the admin
    # is not told (anyone at the port could claim system:masters: the next test).
    as_admin = plane.apply(manifest, "--dry-run=server")
    assert not as_admin.ok
    assert "project-falcon" not in as_admin.stderr, as_admin.stderr


def test_a_review_forged_at_the_port_as_system_masters_learns_no_namespace(
    installed: Installation,
) -> None:
    """Anyone in the cluster network could POST a review to the webhook port claiming
    ``groups: [system:masters]``: the SubjectAccessReview said yes and the denial said
    "it exists in project-falcon". Without --client-ca the user is not believed."""
    plane = installed.plane
    namespace(plane, "project-falcon")
    plane.apply(pull_secret("falcon-cred", "project-falcon", "registry.example.com"), check=True)
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "forged-masters",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": TENANT,
            "operation": "CREATE",
            "userInfo": {"username": "x", "groups": ["system:masters"]},
            "object": json.loads(
                pod("probe", TENANT, "registry.example.com/falcon/app:1", ("falcon-cred",))
            ),
        },
    }
    with httpx.Client(verify=False, timeout=10) as anyone:  # the attacker trusts nothing
        reply = anyone.post(f"https://127.0.0.1:{installed.primary.port}/validate", json=review)
    response = reply.json()["response"]
    assert response["allowed"] is False
    message = response["status"]["message"]
    assert f'imagePullSecret "falcon-cred" does not exist in namespace "{TENANT}"' in message
    assert "project-falcon" not in message, message


def test_a_flood_of_forged_bare_pod_reviews_leaves_a_real_bare_pod_its_copy(
    installed: Installation, ns: str
) -> None:
    """Forged ``/mutate`` reviews for bare Pods (named, no owner) in one namespace held all
    16 waiting-copy slots of a worker for 20 s each, so a real bare Pod created through the
    API server in a namespace without a copy yet got none. A namespace now holds at most
    ``MAX_DEFERRED_PER_NAMESPACE`` of them, and the refusals are counted."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import metric_value

    plane = installed.plane
    namespace(plane, "noisy")
    url = f"https://127.0.0.1:{installed.primary.port}/mutate"

    def forged(n: int) -> dict[str, object]:
        return {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": f"forged-{n}",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "noisy",
                "name": f"never-{n}",
                "operation": "CREATE",
                "userInfo": {"username": "x"},
                "object": json.loads(pod(f"never-{n}", "noisy", "corp.example.com/a:1")),
            },
        }

    def send(numbers: range) -> list[str]:
        with httpx.Client(verify=False, timeout=10) as anyone:  # the attacker trusts nothing
            return [
                "".join(anyone.post(url, json=forged(n)).json()["response"].get("warnings", []))
                for n in numbers
            ]

    with ThreadPoolExecutor(4) as pool:
        said = [w for part in pool.map(send, [range(i, 400, 4) for i in range(4)]) for w in part]
    assert sum("not copied" in w for w in said) > 300, said[:3]  # refused, and said so
    # A real bare Pod right after, in a namespace without a copy: it gets its copy.
    result = plane.apply(pod("real", ns, "corp.example.com/a:1"))
    assert result.returncode == 0, result.stderr
    assert "not copied" not in result.stderr, result.stderr
    wait_for(lambda: plane.kubectl("get", "secret", "corp-pull", "-n", ns).ok, 15, "the copy")
    with httpx.Client(verify=False, timeout=10) as client:
        metrics = client.get(f"https://127.0.0.1:{installed.primary.port}/metrics").text
    unproven = 'pullguard_secret_copies_total{result="unproven"}'
    assert metric_value(metrics, unproven) >= 300, metrics[-2000:]
