"""The mutating decision: mirrors, default secrets, idempotence, and API-server rules."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import jsonpatch
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.builders import (
    cluster_with,
    container,
    deployment,
    image_volume,
    pod,
    pod_spec,
    pull_secret,
    request,
)
from webhook.core.cluster import SecretInfo, ServiceAccountInfo
from webhook.core.config import load_config_text
from webhook.core.mutate import ORIGINAL_IMAGES_ANNOTATION, mutate

CONFIG_TEXT = """
mirrors:
  - registry: docker.io
    mirror: mirror.example.com/dockerhub
    exclude: [docker.io/library/busybox]
  - registry: ghcr.io
    mirror: harbor.example.com:8443/ghcr-proxy
defaultPullSecrets:
  - secret: corp
    registries: [registry.example.com]
    sourceNamespace: pullguard
"""
CONFIG = load_config_text(CONFIG_TEXT)
#: The default secret's source, in pullguard's namespace.
SOURCE = pull_secret("pullguard", "corp", "registry.example.com")
DIGEST = "sha256:" + "ab" * 32


def patched(obj: dict[str, Any], patch: list[dict[str, Any]] | None) -> dict[str, Any]:
    return jsonpatch.apply_patch(obj, patch or []) if patch else obj


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("nginx", "mirror.example.com/dockerhub/library/nginx"),
        ("nginx:1.25", "mirror.example.com/dockerhub/library/nginx:1.25"),
        ("bitnami/redis:7", "mirror.example.com/dockerhub/bitnami/redis:7"),
        ("index.docker.io/library/nginx", "mirror.example.com/dockerhub/library/nginx"),
        (f"nginx@{DIGEST}", f"mirror.example.com/dockerhub/library/nginx@{DIGEST}"),
        (f"nginx:1.25@{DIGEST}", f"mirror.example.com/dockerhub/library/nginx:1.25@{DIGEST}"),
        ("ghcr.io/acme/app:v1", "harbor.example.com:8443/ghcr-proxy/acme/app:v1"),
        ("busybox:1.36", None),  # excluded
        ("quay.io/prometheus/node-exporter", None),  # no mirror for it
        ("mirror.example.com/dockerhub/library/nginx", None),  # already on the mirror
        ("Not A Reference", None),  # the validating webhook reports it
    ],
)
def test_mirror_rewrites(image: str, expected: str | None) -> None:
    obj = pod(pod_spec(container("app", image)))
    result = mutate(request(obj), CONFIG, cluster_with())
    if expected is None:
        assert result.patch is None
        return
    after = patched(obj, result.patch)
    assert after["spec"]["containers"][0]["image"] == expected
    annotation = json.loads(after["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION])
    assert annotation == {"app": image}
    assert result.warnings == (f'pullguard: container "app" image rewritten to mirror: {expected}',)


def test_default_secret_is_appended_never_replacing() -> None:
    obj = pod(pod_spec(container("app", "registry.example.com/team/app:1"), secrets=["mine"]))
    result = mutate(request(obj), CONFIG, cluster_with(SOURCE))
    after = patched(obj, result.patch)
    assert after["spec"]["imagePullSecrets"] == [{"name": "mine"}, {"name": "corp"}]
    assert [(c.name, c.source_namespace, c.namespace) for c in result.secret_copies] == [
        ("corp", "pullguard", "team-a")
    ]


def test_no_injection_when_the_pods_secrets_already_cover_the_registry() -> None:
    cluster = cluster_with(pull_secret("team-a", "mine", "registry.example.com"))
    obj = pod(pod_spec(container("app", "registry.example.com/team/app:1"), secrets=["mine"]))
    assert mutate(request(obj), CONFIG, cluster).patch is None


def test_no_copy_when_the_secret_is_already_in_the_namespace() -> None:
    cluster = cluster_with(pull_secret("team-a", "corp", "registry.example.com"))
    obj = pod(pod_spec(container("app", "registry.example.com/team/app:1")))
    result = mutate(request(obj), CONFIG, cluster)
    assert result.injected_secrets == ("corp",)
    assert result.secret_copies == ()


def test_pod_update_rewrites_only_changed_images_and_never_touches_secrets() -> None:
    # Rewriting an unchanged image would restart a running container; a Pod's
    # imagePullSecrets are immutable after creation.
    old = pod(pod_spec(container("a", "nginx:1.25"), container("b", "redis:7")))
    new = pod(
        pod_spec(container("a", "nginx:1.25"), container("b", "registry.example.com/x/redis:7"))
    )
    assert mutate(request(new, operation="UPDATE", old=old), CONFIG, cluster_with()).patch is None
    new = pod(pod_spec(container("a", "nginx:1.25"), container("b", "redis:8")))
    result = mutate(request(new, operation="UPDATE", old=old), CONFIG, cluster_with())
    after = patched(new, result.patch)
    assert after["spec"]["containers"][0]["image"] == "nginx:1.25"
    assert after["spec"]["containers"][1]["image"] == "mirror.example.com/dockerhub/library/redis:8"


def test_ephemeral_container_rewritten_without_annotation() -> None:
    old = pod(pod_spec(container("app", "mirror.example.com/dockerhub/library/nginx")))
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"] = [container("debugger", "busybox:1.37")]
    new["spec"]["ephemeralContainers"].append(container("dbg2", "alpine"))
    result = mutate(
        request(new, operation="UPDATE", old=old, sub_resource="ephemeralcontainers"),
        CONFIG,
        cluster_with(),
    )
    assert result.patch == [
        {
            "op": "replace",
            "path": "/spec/ephemeralContainers/1/image",
            "value": "mirror.example.com/dockerhub/library/alpine",
        }
    ]


def test_templates_are_left_alone_unless_configured() -> None:
    obj = deployment(pod_spec(container("web", "nginx:1.25")))
    assert mutate(request(obj), CONFIG, cluster_with()).patch is None
    config = load_config_text("""
mirrors: [{registry: docker.io, mirror: mirror.example.com}]
defaultPullSecrets: [{secret: corp, registries: [registry.example.com]}]
mutation: {podTemplates: true}
""")
    account = ServiceAccountInfo("team-a", "builder", ("sa-secret",))
    obj = deployment(
        pod_spec(
            container("web", "nginx:1.25"),
            container("app", "registry.example.com/a:1"),
            sa="builder",
        )
    )
    cluster = cluster_with(
        pull_secret("team-a", "sa-secret", "other.example.com"),
        pull_secret("team-a", "corp", "registry.example.com"),
        accounts=(account,),
    )
    after = patched(obj, mutate(request(obj), config, cluster).patch)
    template = after["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == "mirror.example.com/library/nginx:1.25"
    # The account's secrets are copied first: adding one to an empty template list would
    # otherwise switch them off for the pods.
    assert template["spec"]["imagePullSecrets"] == [{"name": "sa-secret"}, {"name": "corp"}]
    assert ORIGINAL_IMAGES_ANNOTATION in template["metadata"]["annotations"]


def test_dry_run_still_patches_but_the_edge_skips_copies() -> None:
    obj = pod(pod_spec(container("app", "registry.example.com/team/app:1")))
    result = mutate(request(obj, dry_run=True), CONFIG, cluster_with(SOURCE))
    assert result.patch is not None
    assert result.secret_copies  # the HTTP edge refuses to act on them when dryRun is set


images = st.sampled_from(
    [
        "nginx",
        "nginx:1.25",
        f"nginx@{DIGEST}",
        "bitnami/redis:7",
        "busybox",
        "ghcr.io/a/b:1",
        "quay.io/x/y",
        "registry.example.com/team/app:2",
        "mirror.example.com/dockerhub/library/x",
        "BAD ref",
        "localhost:5000/app",
        "harbor.example.com:8443/ghcr-proxy/a/b",
    ]
)


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 4))
    chosen = draw(st.lists(images, min_size=count, max_size=count))
    containers = [container(f"c{i}", image) for i, image in enumerate(chosen)]
    init = [container("init", draw(images))] if draw(st.booleans()) else None
    secrets = draw(st.sampled_from([None, [], ["mine"], ["corp"], ["mine", "corp"]]))
    volumes = [image_volume("data", draw(images))] if draw(st.booleans()) else None
    obj = pod(pod_spec(*containers, secrets=secrets, init=init, volumes=volumes))
    if draw(st.booleans()):
        obj["metadata"]["annotations"] = {"keep": "me"}
    return obj


@settings(max_examples=300, deadline=None)
@given(pods())
def test_mutating_its_own_output_gives_no_patch(obj: dict[str, Any]) -> None:
    cluster = cluster_with(pull_secret("team-a", "mine", "quay.io"))
    first = mutate(request(obj), CONFIG, cluster)
    once = patched(obj, first.patch)
    second = mutate(request(once), CONFIG, cluster)
    assert second.patch is None, second.patch
    # Digests and tags survive every rewrite, and nothing is rewritten twice.
    for before, after in zip(obj["spec"]["containers"], once["spec"]["containers"], strict=True):
        if before["image"] != after["image"]:
            assert after["image"].startswith(("mirror.example.com/", "harbor.example.com:8443/"))
            for part in ("@" + DIGEST, ":1.25", ":7", ":1"):
                if before["image"].endswith(part):
                    assert after["image"].endswith(part)


@st.composite
def shaped_objects(draw: st.DrawFn) -> dict[str, Any]:
    """Pods and Deployments whose pod metadata is there, lacks annotations, has them null,
    or is missing altogether."""
    obj = draw(pods())
    if draw(st.booleans()):
        obj = deployment(obj["spec"])
        owner = obj["spec"]["template"]
    else:
        obj["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled"}]}
        owner = obj
    shape = draw(st.sampled_from(["as-built", "absent", "no-annotations", "null-annotations"]))
    if shape == "absent":
        del owner["metadata"]
    elif shape == "no-annotations":
        owner["metadata"].pop("annotations", None)
    elif shape == "null-annotations":
        owner["metadata"]["annotations"] = None
    return obj


@settings(max_examples=300, deadline=None)
@given(shaped_objects())
def test_the_patch_is_what_a_diff_of_the_whole_object_gives(obj: dict[str, Any]) -> None:
    # mutate copies and diffs only the parts it writes; the patch must be the one a copy and
    # diff of the whole object gives, and the request's object must stay as it came.
    from webhook.core.mutate import _ordered, apply_plan, changed_containers, plan_pod
    from webhook.core.podspec import pod_spec as view_of
    from webhook.core.review import AdmissionRequest

    config = load_config_text(CONFIG_TEXT + "mutation: {podTemplates: true}\n")
    cluster = cluster_with(pull_secret("team-a", "mine", "quay.io"))
    before = copy.deepcopy(obj)
    review = AdmissionRequest(
        uid="u", kind=obj["kind"], namespace="team-a", name="", operation="CREATE",
        sub_resource="", object=obj, old_object=None, dry_run=False,
    )  # fmt: skip
    result = mutate(review, config, cluster)
    assert obj == before
    view = view_of(obj["kind"], obj)
    assert view is not None
    plan = plan_pod(view, changed_containers(view, None), config, cluster, "team-a",
                    inject_secrets=True)  # fmt: skip
    whole = copy.deepcopy(obj)
    apply_plan(whole, view, plan, annotate=bool(plan.rewrites))
    expected = _ordered(jsonpatch.make_patch(obj, whole).patch) or None
    assert result.patch == expected
    assert patched(obj, result.patch) == whole


def test_patch_is_the_same_in_every_process() -> None:
    # jsonpatch orders operations by set iteration, which follows the process's hash seed:
    # the same request must still get the same bytes from every replica.
    import subprocess
    import sys

    script = (
        "import json\n"
        "from tests.unit.builders import container, pod, pod_spec, request, cluster_with\n"
        "from tests.unit.test_mutate import CONFIG\n"
        "from webhook.core.mutate import mutate\n"
        "obj = pod(pod_spec(container('a', 'nginx:1'), container('b', 'redis'),"
        " container('c', 'registry.example.com/x:1'), init=[container('i', 'busybox:2')]))\n"
        "print(json.dumps(mutate(request(obj), CONFIG, cluster_with()).patch))\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": str(seed), "PATH": "/usr/bin"},
            cwd=str(__import__("pathlib").Path(__file__).parents[2]),
        ).stdout
        for seed in range(6)
    }
    assert len(outputs) == 1, outputs


def test_image_volume_is_rewritten_to_the_mirror_and_recorded() -> None:
    obj = pod(
        pod_spec(
            container("app", "nginx:1.25"),
            volumes=[{"name": "cache", "emptyDir": {}}, image_volume("models", "ghcr.io/a/m:1")],
        )
    )
    result = mutate(request(obj), CONFIG, cluster_with())
    after = patched(obj, result.patch)
    assert after["spec"]["volumes"][1]["image"] == {
        "reference": "harbor.example.com:8443/ghcr-proxy/a/m:1"
    }
    assert after["spec"]["volumes"][0] == {"name": "cache", "emptyDir": {}}
    annotation = json.loads(after["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION])
    assert annotation == {"app": "nginx:1.25", "volume/models": "ghcr.io/a/m:1"}
    assert (
        'pullguard: image volume "models" image rewritten to mirror: '
        "harbor.example.com:8443/ghcr-proxy/a/m:1" in result.warnings
    )
    assert mutate(request(after), CONFIG, cluster_with()).patch is None


def test_image_volume_alone_gets_the_default_secret() -> None:
    obj = pod(
        pod_spec(
            container("app", "quay.io/x/y:1"),
            volumes=[image_volume("data", "registry.example.com/team/data:3")],
        )
    )
    result = mutate(request(obj), CONFIG, cluster_with(SOURCE))
    assert result.injected_secrets == ("corp",)


def unparseable(namespace: str) -> SecretInfo:
    """Secret ``corp`` whose ``auth`` is not user:password: the kubelet cannot parse it."""
    raw = json.dumps({"auths": {"registry.example.com": {"auth": "bm9jb2xvbg=="}}}).encode()
    data = {".dockerconfigjson": base64.b64encode(raw).decode()}
    return SecretInfo(namespace, "corp", "kubernetes.io/dockerconfigjson", data)


@pytest.mark.parametrize(
    ("secrets", "where", "said"),
    [
        ((), "pullguard/corp", "does not exist"),
        ((unparseable("pullguard"),), "pullguard/corp", "the kubelet cannot parse it"),
        (
            (pull_secret("pullguard", "corp", "other.example.com"),),
            "pullguard/corp",
            "holds no credentials for registry.example.com",
        ),
        # A broken copy already in the namespace is what the pod would use.
        ((SOURCE, unparseable("team-a")), "team-a/corp", "the kubelet cannot parse it"),
    ],
)
def test_a_default_secret_that_would_not_help_the_pod_is_not_injected(
    secrets: tuple[SecretInfo, ...], where: str, said: str
) -> None:
    obj = pod(pod_spec(container("app", "registry.example.com/team/app:1")))
    result = mutate(request(obj), CONFIG, cluster_with(*secrets))
    assert result.patch is None and not result.injected_secrets and not result.secret_copies
    (withheld,) = result.withheld
    assert withheld.where == where and said in withheld.reason
    (warning,) = result.warnings
    assert f'defaultPullSecret "{where}" not added for registry.example.com' in warning
    namespace = where.split("/", maxsplit=1)[0]
    if "holds no credentials" in said:
        # Recreated, it would lose other.example.com: its entry is added instead (rev22 F10).
        assert "delete secret" not in warning, warning
        assert f"Fix: kubectl get secret corp -n {namespace} -o json | jq --arg key " in warning
        assert "registry.example.com" in warning.split("jq --arg key ", 1)[1]
    else:
        assert "Fix: " in warning and f"docker-registry corp -n {namespace}" in warning


def test_a_named_secret_that_does_not_exist_yet_keeps_the_template_as_written() -> None:
    config = load_config_text(
        "mirrors: [{registry: docker.io, mirror: mirror.example.com}]\n"
        "mutation: {podTemplates: true}\n"
    )
    obj = deployment(pod_spec(container("web", "nginx:1.25"), secrets=["hubcred"]))
    # Applied before its Secret, and after: the same answer, so no rollout.
    before = mutate(request(obj), config, cluster_with())
    after = mutate(
        request(obj), config, cluster_with(pull_secret("team-a", "hubcred", "docker.io"))
    )
    assert before.patch is None and after.patch is None
    # Control: a secret for another registry lets it go to the mirror.
    other = cluster_with(pull_secret("team-a", "hubcred", "quay.io"))
    assert mutate(request(obj), config, other).patch is not None


def test_an_image_pulled_never_is_left_as_written() -> None:
    # Preloaded on the nodes under its own name (kind load, say): on a mirror it would fail
    # with ErrImageNeverPull, a failure pullguard would have caused.
    obj = pod(
        pod_spec(container("app", "nginx:1.25", "Never")),
    )
    obj["spec"]["volumes"] = [
        {"name": "m", "image": {"reference": "acme/m:1", "pullPolicy": "Never"}}
    ]
    assert mutate(request(obj), CONFIG, cluster_with()).patch is None


def test_the_annotation_records_the_image_before_the_latest_rewrite() -> None:
    first = patched(
        pod(pod_spec(container("app", "nginx:1.25"))),
        mutate(
            request(pod(pod_spec(container("app", "nginx:1.25")))), CONFIG, cluster_with()
        ).patch,
    )
    # kubectl set image pod/p app=nginx:1.26: only that container's image changes.
    updated = copy.deepcopy(first)
    updated["spec"]["containers"][0]["image"] = "nginx:1.26"
    result = mutate(request(updated, operation="UPDATE", old=first), CONFIG, cluster_with())
    after = patched(updated, result.patch)
    recorded = json.loads(after["metadata"]["annotations"][ORIGINAL_IMAGES_ANNOTATION])
    assert recorded == {"app": "nginx:1.26"}
    assert (
        after["spec"]["containers"][0]["image"] == "mirror.example.com/dockerhub/library/nginx:1.26"
    )


@pytest.mark.parametrize("metadata", [[[]], "text", 3])
def test_metadata_that_is_not_an_object_gets_no_annotation_and_no_crash(metadata: Any) -> None:
    # Found by tests/integration/test_fuzz.py: a forged review whose pod metadata is a list.
    from webhook.core.review import AdmissionRequest

    obj = pod(pod_spec(container("app", "nginx:1.25")))
    obj["metadata"] = metadata
    review = AdmissionRequest(
        uid="u", kind="Pod", namespace="team-a", name="", operation="CREATE",
        sub_resource="", object=obj, old_object=None, dry_run=False,
    )  # fmt: skip
    result = mutate(review, CONFIG, cluster_with())
    assert result.patch == [
        {
            "op": "replace",
            "path": "/spec/containers/0/image",
            "value": "mirror.example.com/dockerhub/library/nginx:1.25",
        }
    ]


# -- issue 19: a mirror must never be the cause of an outage --------------------------------

HUB_MIRROR = load_config_text(
    "mirrors:\n  - registry: docker.io\n    mirror: mirror.example.com/dockerhub\n"
    "mutation: {podTemplates: true}\n"
)
HUB_KEY = "https://index.docker.io/v1/"
DOWN = frozenset({"mirror.example.com"})


def test_an_image_the_pods_own_credentials_cover_stays_as_written() -> None:
    # The pod pulls acme/private with its secret for Docker Hub; the mirror would be asked
    # anonymously (the kubelet sends that secret to Docker Hub only) and refuse it.
    secret = pull_secret("team-a", "hub", HUB_KEY)
    obj = pod(pod_spec(container("app", "acme/private:1"), secrets=["hub"]))
    result = mutate(request(obj), HUB_MIRROR, cluster_with(secret))
    assert result.patch is None
    assert [(p.container.name, p.mirror) for p in result.private] == [("app", "mirror.example.com")]
    # A public image in the same pod, on a registry the secret does not cover, still goes.
    other = pod(pod_spec(container("app", "quay.io/x/y:1"), container("web", "nginx:1")))
    assert mutate(request(other), HUB_MIRROR, cluster_with()).patch is not None
    # A template is judged with its ServiceAccount's secrets, as its pods will be.
    account = ServiceAccountInfo("team-a", "default", ("hub",))
    template = deployment(pod_spec(container("app", "acme/private:1")))
    with_account = cluster_with(secret, accounts=(account,))
    assert mutate(request(template), HUB_MIRROR, with_account).patch is None


def test_a_mirror_with_credentials_of_its_own_takes_private_images_too() -> None:
    config = load_config_text(
        "mirrors:\n  - registry: docker.io\n    mirror: mirror.example.com/dockerhub\n"
        "    upstreamCredentials: true\n"
    )
    secret = pull_secret("team-a", "hub", HUB_KEY)
    obj = pod(pod_spec(container("app", "acme/private:1"), secrets=["hub"]))
    after = patched(obj, mutate(request(obj), config, cluster_with(secret)).patch)
    assert after["spec"]["containers"][0]["image"] == "mirror.example.com/dockerhub/acme/private:1"


def test_unreadable_pull_secrets_leave_the_image_as_written() -> None:
    from webhook.core.cluster import NoCluster

    obj = pod(pod_spec(container("app", "nginx:1"), secrets=["maybe-hub"]))
    assert mutate(request(obj), HUB_MIRROR, NoCluster()).patch is None
    # Without any secret there is nothing to read: rewritten.
    bare = pod(pod_spec(container("app", "nginx:1")))
    assert mutate(request(bare), HUB_MIRROR, NoCluster()).patch is not None


def test_a_template_does_not_follow_the_mirrors_health() -> None:
    # With podTemplates, a mirror outage must not flip the template: each GitOps re-sync
    # would roll the workload out again.
    obj = deployment(pod_spec(container("web", "nginx:1.25")))
    up = mutate(request(obj), HUB_MIRROR, cluster_with())
    down = mutate(request(obj), HUB_MIRROR, cluster_with(), mirrors_down=DOWN)
    assert up.patch == down.patch and up.patch is not None
    after = patched(obj, down.patch)
    template = after["spec"]["template"]
    assert template["spec"]["containers"][0]["image"] == (
        "mirror.example.com/dockerhub/library/nginx:1.25"
    )
    # A re-sync of the manifest as written (an UPDATE back to the written image) comes out
    # the same, mirror up or down.
    resync = request(obj, operation="UPDATE", old=after)
    for mirrors_down in (frozenset(), DOWN):
        result = mutate(resync, HUB_MIRROR, cluster_with(), mirrors_down=mirrors_down)
        again = patched(obj, result.patch)
        assert again["spec"]["template"] == template


def test_a_pod_of_a_rewritten_template_gets_its_image_back_while_the_mirror_is_down() -> None:
    mirrored = "mirror.example.com/dockerhub/library/nginx:1.25"
    obj = pod(pod_spec(container("web", mirrored)))
    obj["metadata"]["annotations"] = {ORIGINAL_IMAGES_ANNOTATION: '{"web": "nginx:1.25"}'}
    assert mutate(request(obj), HUB_MIRROR, cluster_with()).patch is None  # mirror up: kept
    result = mutate(request(obj), HUB_MIRROR, cluster_with(), mirrors_down=DOWN)
    assert result.patch == [
        {"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:1.25"}
    ]
    assert result.warnings == (
        'pullguard: container "web": mirror mirror.example.com is not answering, so '
        "nginx:1.25 is pulled as written",
    )
    # Idempotent: the API server may call the webhook again on its own output.
    after = patched(obj, result.patch)
    assert mutate(request(after), HUB_MIRROR, cluster_with(), mirrors_down=DOWN).patch is None
    assert mutate(request(after), HUB_MIRROR, cluster_with()).patch is not None  # up again
    # An annotation that does not map to the image (forged, or stale) restores nothing.
    obj["metadata"]["annotations"] = {ORIGINAL_IMAGES_ANNOTATION: '{"web": "evil:1"}'}
    assert mutate(request(obj), HUB_MIRROR, cluster_with(), mirrors_down=DOWN).patch is None


def test_a_mirror_without_probe_is_rewritten_to_whatever_the_probe_says() -> None:
    config = load_config_text(
        "mirrors:\n  - registry: docker.io\n    mirror: mirror.example.com/dockerhub\n"
        "    probe: false\n"
    )
    obj = pod(pod_spec(container("app", "nginx:1")))
    assert mutate(request(obj), config, cluster_with(), mirrors_down=DOWN).patch is not None
