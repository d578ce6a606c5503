"""Issue 22: what pullguard says sends the person the right way. Each test pins a message
the outside probe found misleading, on the engine with a registry that answers from a table
(the printed fixes are run against the real API server in tests/e2e/test_decisions.py)."""

from __future__ import annotations

import copy

from tests.unit.builders import cluster_with, container, pod, pod_spec, pull_secret, request
from webhook.core.cluster import ServiceAccountInfo
from webhook.core.config import load_config_text, parse_config
from webhook.core.keyring import miss_reason
from webhook.core.registry import Answer, FixedRegistry, Outcome, Platform
from webhook.core.validate import validate

DEFAULT = parse_config({})
PORTED = "registry.example.com:5000/team/app:1"


def test_miss_reasons_say_what_the_kubelet_compares() -> None:
    image = "registry.example.com:5000/team/app"
    assert miss_reason("registry.example.com", image) == (
        "entry 'registry.example.com' has no port, and the kubelet matches the port (5000)"
    )
    assert miss_reason("https://registry.example.com:5001/v1/", image) == (
        "entry 'registry.example.com:5001' is for port 5001, not 5000"
    )
    assert miss_reason("registry.example.com:5000", "registry.example.com/team/app") == (
        "entry 'registry.example.com:5000' is for port 5000; the image names no port"
    )
    assert miss_reason("registry.example.com:5000/other", image) == (
        "entry 'registry.example.com:5000/other' covers only the path /other, not /team/app"
    )
    assert miss_reason("ghcr.io", image) == "entry 'ghcr.io' is for another registry"


def test_a_refusal_names_the_secrets_the_pod_has_and_why_each_misses() -> None:
    # The pod lists a secret whose key lacks the port: nothing matched, so the pull was
    # anonymous, but "the pod has no imagePullSecret" would send the person the wrong way.
    cluster = cluster_with(pull_secret("team-a", "regcred", "registry.example.com"))
    registry = FixedRegistry({PORTED: Answer(Outcome.UNAUTHORIZED, "HTTP 401")})
    spec = pod_spec(container("web", PORTED), secrets=["regcred"])
    decision = validate(request(pod(spec)), DEFAULT, cluster, registry=registry)
    assert not decision.allowed
    message = decision.message or ""
    assert "has no imagePullSecret" not in message
    assert (
        "anonymously (the pod's imagePullSecrets \"regcred\" (entry 'registry.example.com' has "
        "no port, and the kubelet matches the port (5000)) do not cover "
        "registry.example.com:5000/team/app; the image is private or does not exist)" in message
    )
    assert "--docker-server=registry.example.com:5000" in message


def test_a_pods_own_list_that_hides_the_service_accounts_secrets_is_said() -> None:
    cluster = cluster_with(
        pull_secret("team-a", "other", "ghcr.io"),
        pull_secret("team-a", "regcred", "registry.example.com"),
        accounts=(ServiceAccountInfo("team-a", "builder", ("regcred",)),),
    )
    registry = FixedRegistry({"registry.example.com/team/app:1": Answer(Outcome.UNAUTHORIZED)})
    spec = pod_spec(
        container("web", "registry.example.com/team/app:1"), secrets=["other"], sa="builder"
    )
    message = validate(request(pod(spec)), DEFAULT, cluster, registry=registry).message or ""
    assert (
        'the pod\'s own imagePullSecrets hide ServiceAccount "builder"\'s ("regcred"), which '
        "the API server adds only to a pod that lists none" in message
    )


def test_kubectl_debug_refused_anonymously_is_told_to_recreate_the_pod() -> None:
    old = pod(pod_spec(container("app", "nginx:1.25")))
    new = pod(pod_spec(container("app", "nginx:1.25")))
    new["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": PORTED}]
    review = request(new, operation="UPDATE", old=old, sub_resource="ephemeralcontainers")
    registry = FixedRegistry({PORTED: Answer(Outcome.UNAUTHORIZED, "HTTP 401")})
    decision = validate(review, DEFAULT, cluster_with(), registry=registry)
    assert not decision.allowed
    (finding,) = [f for f in decision.findings if f.check == "registry"]
    assert "then recreate the pod with {name: regcred-registry-example-com-5000}" in (
        finding.fix or ""
    )
    assert "in the manifest" not in (finding.fix or "")


def test_kubectl_debug_of_a_deployments_pod_patches_the_deployments_template() -> None:
    """The ReplicaSet remakes the pod from its template: "recreate the pod" is for a bare
    pod only; a Deployment's pod is fixed in the Deployment (named by pod-template-hash)."""
    old = pod(pod_spec(container("app", "nginx:1.25"), secrets=["other"]))
    old["metadata"]["labels"] = {"app": "web", "pod-template-hash": "5d8f7c"}
    old["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f7c", "controller": True}
    ]
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": PORTED}]
    review = request(new, operation="UPDATE", old=old, sub_resource="ephemeralcontainers")
    registry = FixedRegistry({PORTED: Answer(Outcome.UNAUTHORIZED, "HTTP 401")})
    cluster = cluster_with(pull_secret("team-a", "other", "ghcr.io"))
    decision = validate(review, DEFAULT, cluster, registry=registry)
    assert not decision.allowed
    (finding,) = [f for f in decision.findings if f.check == "registry"]
    fix = finding.fix or ""
    assert "recreate the pod" not in fix
    assert fix.endswith(
        ", then add {name: regcred-registry-example-com-5000} to the imagePullSecrets of the "
        "pod template of Deployment web (it makes the pod): kubectl patch deployment/web "
        "-n team-a --type=merge -p "
        '\'{"spec":{"template":{"spec":{"imagePullSecrets":[{"name":"other"},'
        '{"name":"regcred-registry-example-com-5000"}]}}}}\''
    )


def test_a_refused_default_secret_is_fixed_at_its_source() -> None:
    config = load_config_text(
        "defaultPullSecrets:\n"
        "  - {secret: hub, registries: [registry.example.com], sourceNamespace: pullguard}\n"
    )
    cluster = cluster_with(pull_secret("team-a", "hub", "registry.example.com"))
    image = "registry.example.com/team/app:1"
    registry = FixedRegistry({image: Answer(Outcome.UNAUTHORIZED, tried=("team-a/hub",))})
    spec = pod_spec(container("web", image), secrets=["hub"])
    decision = validate(request(pod(spec)), config, cluster, registry=registry)
    (finding,) = [f for f in decision.findings if f.check == "registry"]
    fix = finding.fix or ""
    assert "pullguard's copy of pullguard/hub" in fix
    assert (
        "kubectl delete secret hub -n pullguard && kubectl create secret docker-registry hub"
        in (fix)
    )
    assert "-n team-a" not in fix


def test_a_windows_image_is_scheduled_by_os_with_a_toleration() -> None:
    config = load_config_text("checks: {platform: enforce}\n")
    cluster = cluster_with()
    cluster.nodes.update({("linux", "amd64"), ("windows", "amd64")})
    image = "registry.example.com/team/win:1"
    answer = Answer(Outcome.FOUND, platforms=(Platform("windows", "amd64"),))
    decision = validate(
        request(pod(pod_spec(container("web", image)))),
        config,
        cluster,
        registry=FixedRegistry({image: answer}),
    )
    (finding,) = [f for f in decision.findings if f.check == "platform"]
    fix = finding.fix or ""
    # No node's taints are known (platforms only): the selector, and how to list the taints.
    assert 'set the pod\'s nodeSelector to {"kubernetes.io/os":"windows"}' in fix
    assert "tolerations for any taints of those nodes" in fix
    assert "kubectl get nodes -l kubernetes.io/os=windows -o jsonpath=" in fix
    assert "kubernetes.io/arch" not in fix


def test_no_typo_guess_for_a_registry_that_served_the_image() -> None:
    image = "quai.io/team/app:1"  # one edit from quay.io, and a registry of its own
    served = validate(
        request(pod(pod_spec(container("web", image)))),
        DEFAULT,
        cluster_with(),
        registry=FixedRegistry({image: Answer(Outcome.FOUND)}),
    )
    assert not [w for w in served.warnings if "typo" in w], served.warnings
    unreachable = validate(
        request(pod(pod_spec(container("web", image)))),
        DEFAULT,
        cluster_with(),
        registry=FixedRegistry({image: Answer(Outcome.UNREACHABLE, "DNS: no such host")}),
    )
    assert any("looks like a typo of 'quay.io'" in w for w in unreachable.warnings)
