"""Mirrors fail safe, always (issue 19, item 4), through kubectl and the real API server.

A Docker Hub stand-in (an anonymous distribution registry) and a private registry
(htpasswd), each behind a real pull-through mirror (distribution in proxy mode, which pulls
from its upstream with credentials of its own: none here). The webhooks run at
``failurePolicy: Fail`` for this module, so a crash or a 500 shows as a denial instead of
hiding behind ``Ignore``; kube-controller-manager makes the Deployments' Pods, which go
through the webhooks as in a cluster.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.e2e.cluster import ControlPlane, wait_for
from tests.e2e.conftest import (
    CONFIG,
    NAMESPACE,
    E2ERegistries,
    Installation,
    configmap,
    pod,
    pull_secret,
    set_config,
    spawn_pullguard,
)
from tests.e2e.test_kubectl import deployment
from tests.integration.registries import (
    Registry,
    SilentServer,
    manifest_digest,
    push_image,
    start_registry,
)

pytestmark = pytest.mark.e2e

#: docs/reference.md: a mirror that stops answering is still rewritten to for at most one
#: probe period plus one probe timeout.
BLIND_SECONDS = 4.0
#: The configuration of conftest.CONFIG without its mirrors.
BASE = CONFIG[: CONFIG.index("mirrors:")]


def config_with(mirrors: list[dict[str, Any]], *, pod_templates: bool = False) -> str:
    text = BASE + f"mirrors: {json.dumps(mirrors)}\nregistry: {{allowPrivateNetworks: true}}\n"
    return text + ("mutation: {podTemplates: true}\n" if pod_templates else "")


@dataclass
class Mirrored:
    hub: Registry  # the Docker Hub stand-in: anonymous pulls of public images
    hub_mirror: Registry
    private: Registry  # htpasswd: only pods with credentials pull from it
    private_mirror: Registry
    tls: dict[str, Path]

    def mirror(self, name: str, upstream: Registry, workdir: Path) -> Registry:
        return start_registry(workdir / name, proxy_of=upstream, **self.tls)


@pytest.fixture(scope="module")
def mirrored(
    registries: E2ERegistries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Mirrored]:
    # The CA the installed replicas trust (SSL_CERT_FILE) signed these registries too.
    folder = registries.ca.parent
    tls = {"cert": folder / "tls.crt", "key": folder / "tls.key", "ca": registries.ca}
    base = tmp_path_factory.mktemp("mirrored")
    hub = start_registry(base / "hub", **tls)
    private = start_registry(base / "private", auth=("user", "pass"), **tls)
    hub_mirror = start_registry(base / "hub-mirror", proxy_of=hub, **tls)
    private_mirror = start_registry(
        base / "private-mirror",
        proxy_of=Registry(private.host, private.process, private.ca, private.log, None),
        **tls,
    )
    push_image(hub, "library/web", "1.0")
    push_image(private, "team/secret", "1.0")
    yield Mirrored(hub, hub_mirror, private, private_mirror, tls)
    for registry in (private_mirror, hub_mirror, private, hub):
        registry.stop()


def _set_failure_policy(plane: ControlPlane, policy: str) -> None:
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration"):
        hooks = plane.get_json(kind, "pullguard")["webhooks"]
        ops = [
            {"op": "replace", "path": f"/webhooks/{i}/failurePolicy", "value": policy}
            for i in range(len(hooks))
        ]
        plane.kubectl("patch", kind, "pullguard", "--type=json", "-p", json.dumps(ops), check=True)


@pytest.fixture(scope="module")
def fail_closed(installed: Installation) -> Iterator[None]:
    """The webhooks at failurePolicy: Fail, and conftest.CONFIG back afterwards."""
    _set_failure_policy(installed.plane, "Fail")
    try:
        yield
    finally:
        set_config(installed.plane, CONFIG)
        # Back in force on both replicas before the next module: its fictional mirror again.
        probe = pod("probe", "e2e", "nginx:1.25")
        wait_for(
            lambda: all(
                dry_run(installed.plane, probe)[0]
                == "mirror.example.com/dockerhub/library/nginx:1.25"
                for _ in range(4)
            ),
            30,
            "conftest.CONFIG back in force",
        )
        _set_failure_policy(installed.plane, "Ignore")


def dry_run(plane: ControlPlane, manifest: str) -> tuple[str, str]:
    """The first container's image after the webhooks (a server-side dry run), and what
    kubectl printed on stderr (the warnings)."""
    result = plane.apply(manifest, "--dry-run=server", "-o", "json")
    assert result.ok, result.stderr
    return json.loads(result.stdout)["spec"]["containers"][0]["image"], result.stderr


def use_mirrors(plane: ControlPlane, ns: str, mirrored: Mirrored, **kwargs: Any) -> None:
    """Configure the two mirrors and wait until every replica rewrites to them."""
    entries = [
        {"registry": mirrored.hub.host, "mirror": mirrored.hub_mirror.host},
        {"registry": mirrored.private.host, "mirror": mirrored.private_mirror.host},
    ]
    set_config(plane, config_with(entries, **kwargs))
    probe = pod("probe", ns, f"{mirrored.hub.host}/library/web:1.0")
    on_mirror = f"{mirrored.hub_mirror.host}/library/web:1.0"
    # Several in a row: the API server may call either replica.
    wait_for(
        lambda: all(dry_run(plane, probe)[0] == on_mirror for _ in range(4)),
        30,
        "both replicas rewriting to the mirrors",
    )


def test_a_mirror_the_configmap_adds_is_rewritten_to_only_after_it_answered(
    plane: ControlPlane, ns: str, mirrored: Mirrored, fail_closed: None
) -> None:
    silent = SilentServer()  # a mirror that hangs: its first probe takes the whole timeout
    written = f"{mirrored.hub.host}/library/web:1.0"
    try:
        set_config(plane, config_with([{"registry": mirrored.hub.host, "mirror": silent.host}]))
        changed = time.monotonic()
        seen_in_force = False
        while time.monotonic() - changed < 12:
            image, stderr = dry_run(plane, pod("web", ns, written))
            assert image == written, f"rewritten to a mirror that never answered: {image}"
            if f"mirror {silent.host} " in stderr:
                seen_in_force = True
                assert f"so {written} is pulled as written" in stderr
        assert seen_in_force, "the new configuration never reached the replicas"
        # Once it answers (here: another mirror that does), pods go to it.
        use_mirrors(plane, ns, mirrored)
        result = plane.apply(pod("web", ns, written))
        assert result.ok, result.stderr
        assert "image rewritten to mirror" in result.stderr
    finally:
        silent.close()


def test_a_private_image_the_pod_has_credentials_for_stays_as_written(
    plane: ControlPlane, ns: str, mirrored: Mirrored, fail_closed: None
) -> None:
    use_mirrors(plane, ns, mirrored)
    private = mirrored.private.host
    image = f"{private}/team/secret:1.0"
    plane.apply(pull_secret("regcred", ns, private), check=True)
    # The mirror pulls from its upstream anonymously: rewritten, this pod could never pull.
    result = plane.apply(pod("secret", ns, image, ("regcred",)))
    assert result.ok, result.stderr
    stored = plane.get_json("pod", "secret", "-n", ns)
    assert stored["spec"]["containers"][0]["image"] == image
    # Without credentials it goes to the mirror, which the registry refuses as it refuses
    # the pod: certain to fail either way, so denied, with the fix that makes it work.
    anonymous = plane.apply(pod("anonymous", ns, image))
    assert not anonymous.ok
    assert f"registry {private} refused to serve '{image}' anonymously" in anonymous.stderr
    assert "kubectl create secret docker-registry" in anonymous.stderr


def test_a_mirror_whose_upstream_is_down_does_not_deny_existing_images(
    plane: ControlPlane,
    ns: str,
    mirrored: Mirrored,
    fail_closed: None,
    tmp_path: Path,
) -> None:
    upstream = start_registry(tmp_path / "upstream", **mirrored.tls)
    mirror = mirrored.mirror("mirror", upstream, tmp_path)
    try:
        push_image(upstream, "team/app", "1.0")
        push_image(upstream, "team/warm", "1.0")  # asked through the mirror, so cached there
        set_config(plane, config_with([{"registry": upstream.host, "mirror": mirror.host}]))
        written = f"{upstream.host}/team/app:1.0"
        warm = f"{upstream.host}/team/warm:1.0"
        wait_for(
            lambda: all(
                dry_run(plane, pod("warm", ns, warm))[0] == f"{mirror.host}/team/warm:1.0"
                for _ in range(4)
            ),
            30,
            "both replicas rewriting to the mirror",
        )
        upstream.stop()
        assert manifest_digest(mirror, "team/app", "1.0")[0] == 404  # the mirror's "not found"
        result = plane.apply(pod("app", ns, written))
        assert result.ok, result.stderr
        assert "correct the repository name" not in result.stderr
        assert f"mirror {mirror.host} lacks" in result.stderr
        # An image the registry itself never had is still denied, by what it says.
        missing = plane.apply(pod("missing", ns, f"{mirrored.hub.host}/library/web:9.9"))
        assert not missing.ok
    finally:
        mirror.stop()
        upstream.stop()


def test_a_mirror_that_dies_is_left_within_the_probe_window(
    plane: ControlPlane,
    ns: str,
    mirrored: Mirrored,
    fail_closed: None,
    tmp_path: Path,
) -> None:
    mirror = mirrored.mirror("dying-mirror", mirrored.hub, tmp_path)
    written = f"{mirrored.hub.host}/library/web:1.0"
    try:
        set_config(plane, config_with([{"registry": mirrored.hub.host, "mirror": mirror.host}]))
        wait_for(
            lambda: all(
                dry_run(plane, pod("p", ns, written))[0] == f"{mirror.host}/library/web:1.0"
                for _ in range(4)
            ),
            30,
            "both replicas rewriting to the mirror",
        )
        mirror.stop()
        died = time.monotonic()
        # Left by both replicas (the API server may call either): four answers in a row.
        in_a_row, left, stderr = 0, 0.0, ""
        while in_a_row < 4 and time.monotonic() - died < 30:
            image, stderr = dry_run(plane, pod("p", ns, written))
            in_a_row = in_a_row + 1 if image == written else 0
            left = time.monotonic() - died if in_a_row == 1 else left
        print(f"\nboth replicas left the dead mirror {left:.1f} s after it died")
        assert in_a_row == 4 and left <= BLIND_SECONDS + 1.5
        assert f"mirror {mirror.host} did not answer its last /v2/ probe (every 2 s)" in stderr
    finally:
        mirror.stop()


def _template_image(plane: ControlPlane, ns: str) -> tuple[str, int]:
    stored = plane.get_json("deployment", "web", "-n", ns)
    return (
        stored["spec"]["template"]["spec"]["containers"][0]["image"],
        stored["metadata"]["generation"],
    )


def _pod_images(plane: ControlPlane, ns: str) -> list[str]:
    pods = plane.get_json("pods", "-n", ns, "-l", "app=web")["items"]
    return [
        p["spec"]["containers"][0]["image"]
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
    ]


def test_a_template_does_not_follow_the_mirrors_health(
    plane: ControlPlane,
    ns: str,
    mirrored: Mirrored,
    fail_closed: None,
    tmp_path: Path,
) -> None:
    mirror = mirrored.mirror("dying-mirror", mirrored.hub, tmp_path)
    written = f"{mirrored.hub.host}/library/web:1.0"
    on_mirror = f"{mirror.host}/library/web:1.0"
    manifest = deployment("web", ns, written)
    try:
        set_config(
            plane,
            config_with(
                [{"registry": mirrored.hub.host, "mirror": mirror.host}], pod_templates=True
            ),
        )
        wait_for(
            lambda: all(dry_run(plane, pod("p", ns, written))[0] == on_mirror for _ in range(4)),
            30,
            "both replicas rewriting to the mirror",
        )

        def gitops_sync() -> None:
            # A GitOps tool applies the manifest from Git, as written, server-side.
            plane.kubectl(
                "apply",
                "--server-side",
                "--field-manager=gitops",
                "-f",
                "-",
                stdin=manifest,
                check=True,
            )

        gitops_sync()
        assert _template_image(plane, ns) == (on_mirror, 1)
        wait_for(lambda: _pod_images(plane, ns) == [on_mirror], 60, "the Deployment's pod")

        mirror.stop()
        time.sleep(BLIND_SECONDS + 1)
        for _ in range(3):
            gitops_sync()
            # The template, and so the rollout, does not change with the mirror's health.
            assert _template_image(plane, ns) == (on_mirror, 1)
        # A pod made now (a rescheduled one, say) pulls as written while the mirror is down.
        plane.kubectl("delete", "pods", "-n", ns, "-l", "app=web", "--wait=false", check=True)
        wait_for(lambda: _pod_images(plane, ns) == [written], 60, "a new pod, as written")
    finally:
        mirror.stop()


def test_an_invalid_configmap_at_first_start_is_said_loudly_never_a_500(
    plane: ControlPlane, installed: Installation, fail_closed: None, tmp_path: Path
) -> None:
    # A replica started with no good configuration yet: its ConfigMap is invalid (here one
    # of its own name, which the installed replicas' config webhook does not judge).
    broken = json.loads(configmap("checks: {reference: maybe}\n"))
    broken["metadata"]["name"] = "pullguard-broken"
    plane.apply(json.dumps(broken), check=True)
    fresh = spawn_pullguard(
        plane,
        tmp_path,
        kubeconfig=installed.kubeconfig,
        port=free_port(),
        webhook_url=installed.webhook_url,
        name="broken-config",
        extra=("--configmap", "pullguard-broken"),
    )
    try:

        def serving() -> bool:
            with fresh.client() as http:
                return http.get("/readyz").status_code == 503

        wait_for(serving, 60, "the replica serving (not ready)")

        def refused_event() -> Any:
            events = plane.get_json(
                "events",
                "-n",
                NAMESPACE,
                "--field-selector",
                "involvedObject.name=pullguard-broken",
            )["items"]
            return [e for e in events if e["reason"] == "PullguardConfigRefused"]

        (event,) = wait_for(refused_event, 60, "the Event on the refused ConfigMap")
        assert event["type"] == "Warning"
        assert "checks.reference" in event["message"]
        assert "embedded default" in event["message"]
        with fresh.client() as http:
            ready = http.get("/readyz")
            review = json.loads(pod("p", "e2e", "nginx:1.25"))
            body = {
                "apiVersion": "admission.k8s.io/v1",
                "kind": "AdmissionReview",
                "request": {
                    "uid": "u-1",
                    "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": "e2e",
                    "operation": "CREATE",
                    "object": review,
                    "userInfo": {"username": "admin"},
                },
            }
            answered = http.post("/mutate", json=body)
        assert ready.status_code == 503 and "embedded default" in ready.text
        assert answered.status_code == 200, answered.text
        assert answered.json()["response"]["allowed"] is True
        assert "EMBEDDED DEFAULT" in fresh.log_text()
    finally:
        fresh.stop()
        plane.kubectl("delete", "configmap", "pullguard-broken", "-n", NAMESPACE)
