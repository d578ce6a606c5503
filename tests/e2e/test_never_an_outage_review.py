"""Issue 19's outside review: pullguard is never the cause of an outage, checked with kubectl on
the real API server and pullguard's pod webhooks at ``failurePolicy: Fail``, against real
registries on loopback.

- F1: a ``defaultPullSecrets`` source the kubelet cannot parse is never injected (a pod of
  an anonymous registry runs, scale-ups included), and the warning names the source;
- F2: a mirror that answers ``/v2/`` but lacks an image its registry has: the pod is denied
  with the words that say so, and the next one stays as written;
- F4: ``kubectl apply -f dir/`` with a Deployment sorting before the Secret it names: the
  denial says the Secret may come later in the same apply;
- F5: with ``podTemplates``, a template naming a Secret that a later file creates keeps the
  image as written on every apply (no unplanned rollout).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.cluster import ControlPlane, wait_for
from tests.e2e.conftest import (
    CONFIG,
    NAMESPACE,
    E2ERegistries,
    Installation,
    pod,
    pull_secret,
    set_config,
)
from tests.e2e.test_mirrors import (
    Mirrored,
    config_with,
    mirrored,  # noqa: F401  (the module's registries and mirrors)
    use_mirrors,
)
from tests.e2e.test_never_an_outage import (  # noqa: F401  (its hub_default fixture)
    _configured,
    _restore,
    hub_default,
    pods_of,
    workload,
)
from tests.integration.registries import manifest_digest, push_image, start_registry

pytestmark = pytest.mark.e2e


# -- F1 -----------------------------------------------------------------------------------


@pytest.fixture
def unparseable_default(
    fail_closed: ControlPlane, ns: str, registries: E2ERegistries
) -> Iterator[str]:
    """A ``defaultPullSecrets`` entry for the anonymous registry whose source secret the
    kubelet cannot parse (``auth`` decodes to a value without ``:``)."""
    plane = fail_closed
    host = registries.public.host
    push_image(registries.public, "library/pub", "1.0")
    bad = base64.b64encode(b"nocolon").decode()
    plane.apply(pull_secret("bad-default", NAMESPACE, host, auth=bad), check=True)
    entry = (
        f"  - secret: bad-default\n    registries: ['{host}']\n    sourceNamespace: {NAMESPACE}\n"
    )
    image = f"{host}/library/pub:1.0"
    _configured(plane, CONFIG.replace("mirrors:\n", entry + "mirrors:\n"), ns, image, "bad-default")
    try:
        yield image
    finally:
        _restore(plane, ns, image, "bad-default")
        plane.kubectl("delete", "secret", "bad-default", "-n", NAMESPACE)


def test_a_default_secret_the_kubelet_cannot_parse_is_never_injected(
    fail_closed: ControlPlane, ns: str, unparseable_default: str
) -> None:
    plane = fail_closed
    image = unparseable_default
    result = plane.apply(pod("by-hand", ns, image))
    assert result.ok, result.stderr
    # The warning names the source, where the fix belongs.
    assert '"pullguard/bad-default"' in result.stderr
    assert "not added" in result.stderr
    assert f"kubectl delete secret bad-default -n {NAMESPACE}" in result.stderr
    stored = plane.get_json("pod", "by-hand", "-n", ns)
    assert "imagePullSecrets" not in stored["spec"]

    # A Deployment's pods, and a scale-up.
    assert plane.apply(json.dumps(workload("pub", ns, image, replicas=1))).ok
    wait_for(lambda: len(pods_of(plane, ns, "pub")) == 1, 60, "the Deployment's pod")
    plane.kubectl("scale", "deployment", "pub", "-n", ns, "--replicas=3", check=True)
    wait_for(lambda: len(pods_of(plane, ns, "pub")) == 3, 60, "the scale-up to 3 pods")
    assert all("imagePullSecrets" not in p["spec"] for p in pods_of(plane, ns, "pub"))


def test_a_broken_copy_in_the_namespace_is_never_injected(
    fail_closed: ControlPlane, ns: str, registries: E2ERegistries, unparseable_default: str
) -> None:
    plane = fail_closed
    # The source is mended, but the namespace still holds a copy the kubelet cannot parse.
    host = registries.public.host
    plane.apply(pull_secret("bad-default", NAMESPACE, host), check=True)
    bad = base64.b64encode(b"nocolon").decode()
    plane.apply(pull_secret("bad-default", ns, host, auth=bad), check=True)
    result = plane.apply(pod("by-hand", ns, unparseable_default))
    assert result.ok, result.stderr
    assert f'"{ns}/bad-default"' in result.stderr and "not added" in result.stderr
    assert "imagePullSecrets" not in plane.get_json("pod", "by-hand", "-n", ns)["spec"]


# -- F4 -----------------------------------------------------------------------------------


def test_a_secret_in_a_later_file_is_named_in_the_denial(
    fail_closed: ControlPlane, ns: str, registries: E2ERegistries, tmp_path: Path
) -> None:
    plane = fail_closed
    host = registries.private.host
    push_image(registries.private, "team/later", "1.0")
    deployment = workload(
        "later", ns, f"{host}/team/later:1.0", imagePullSecrets=[{"name": "regcred"}]
    )
    (tmp_path / "10-deployment.json").write_text(json.dumps(deployment))
    (tmp_path / "20-secret.json").write_text(pull_secret("regcred", ns, host))
    first = plane.kubectl("apply", "-f", str(tmp_path))
    assert not first.ok  # the Deployment is denied at once; the Secret is created
    assert f'imagePullSecret "regcred" does not exist in namespace "{ns}" (yet)' in first.stderr
    assert "apply again or apply the Secret first" in first.stderr
    assert f"kubectl create secret docker-registry regcred -n {ns}" in first.stderr
    # As the words say: applied again, the Deployment is admitted.
    again = plane.kubectl("apply", "-f", str(tmp_path))
    assert again.ok, again.stderr
    wait_for(lambda: len(pods_of(plane, ns, "later")) == 1, 60, "the Deployment's pod")


# -- F5 -----------------------------------------------------------------------------------


def test_a_template_naming_a_secret_a_later_file_creates_is_never_flipped(
    fail_closed: ControlPlane,
    ns: str,
    mirrored: Mirrored,  # noqa: F811
    tmp_path: Path,
) -> None:
    plane = fail_closed
    hub = mirrored.hub.host
    written = f"{hub}/library/web:1.0"
    try:
        use_mirrors(plane, ns, mirrored, pod_templates=True)
        deployment = workload("web", ns, written, imagePullSecrets=[{"name": "hubcred"}])
        (tmp_path / "10-deployment.json").write_text(json.dumps(deployment))
        (tmp_path / "20-secret.json").write_text(pull_secret("hubcred", ns, hub))

        def template() -> tuple[str, int]:
            stored = plane.get_json("deployment", "web", "-n", ns)
            image = stored["spec"]["template"]["spec"]["containers"][0]["image"]
            return image, stored["metadata"]["generation"]

        first = plane.kubectl("apply", "-f", str(tmp_path))
        # The missing secret is warned about (pullSecrets enforce denies only a Pod's, or
        # the Deployment is denied: either way the fix names the registry as written).
        assert "hubcred" in first.stderr
        assert f"--docker-server={mirrored.hub_mirror.host}" not in first.stderr
        if not first.ok:
            assert f"--docker-server={hub}" in first.stderr
        for _ in range(2):
            again = plane.kubectl("apply", "-f", str(tmp_path))
            assert again.ok, again.stderr
            assert template() == (written, 1)
    finally:
        _restore(plane, ns, f"{hub}/library/web:1.0", "mirror")


# -- F2 -----------------------------------------------------------------------------------


def test_a_mirror_cut_off_from_a_live_registry_is_not_the_cause_of_a_failed_pull(
    fail_closed: ControlPlane,
    ns: str,
    mirrored: Mirrored,  # noqa: F811
    tmp_path: Path,
) -> None:
    plane = fail_closed
    gone = start_registry(tmp_path / "gone", **mirrored.tls)
    cut = start_registry(tmp_path / "cut", proxy_of=gone, **mirrored.tls)
    gone.stop()  # the mirror answers /v2/, but its link upstream is cut
    written = f"{mirrored.hub.host}/library/web:1.0"
    try:
        set_config(plane, config_with([{"registry": mirrored.hub.host, "mirror": cut.host}]))
        # Waited on with an image neither has (denied as not existing, which teaches the
        # workers nothing): the mutating webhook's warning says it went to the mirror.
        nowhere = pod("p", ns, f"{mirrored.hub.host}/library/nope:1")
        rewritten = f"rewritten to mirror: {cut.host}/library/nope:1"

        def in_force() -> bool:
            tries = [plane.apply(nowhere, "--dry-run=server") for _ in range(4)]
            return all(rewritten in t.stderr and not t.ok for t in tries)

        wait_for(in_force, 30, "rewriting to the cut-off mirror")
        assert manifest_digest(mirrored.hub, "library/web", "1.0")[0] == 200
        assert manifest_digest(cut, "library/web", "1.0")[0] == 404
        first = plane.apply(pod("web", ns, written))
        assert not first.ok  # as stored it would certainly fail
        assert f"mirror {cut.host} says '{written}' does not exist" in first.stderr
        assert "pulled as written" in first.stderr and "create the pod again" in first.stderr
        # The retry (a controller's, or a person's) is left as written, and runs: each
        # worker that sees the mirror lack it stops rewriting to it, so retries converge.
        wait_for(lambda: plane.apply(pod("web", ns, written)).ok, 60, "a retry admitted")
        stored = plane.get_json("pod", "web", "-n", ns)
        assert stored["spec"]["containers"][0]["image"] == written
    finally:
        cut.stop()
        _restore(plane, ns, "nginx:1.25", "lacks")


# -- F6b ----------------------------------------------------------------------------------


def test_a_copy_refused_by_a_quota_says_so(
    fail_closed: ControlPlane,
    installed: Installation,
    ns: str,
    hub_default: str,  # noqa: F811
) -> None:
    # A bare Pod's copy follows the real Pod (issue 20), so the API server's words are in
    # the log; a review proven at admission gets them in its warning too (unit-tested).
    result = fail_closed.apply(pod("by-hand", ns, hub_default))
    assert result.ok, result.stderr

    def logged() -> bool:
        text = "".join(r.log_text() for r in installed.replicas)
        return f"copying secret hub-pull into {ns} failed: " in text and (
            "exceeded quota: no-secrets" in text
        )

    wait_for(logged, 30, "the copy's failure, in the API server's words, in the log")
