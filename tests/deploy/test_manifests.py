"""deploy/ renders with kustomize, validates against the Kubernetes schemas, and keeps the
webhook practices FACTS.md asks for."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from webhook.core.config import DEFAULT_CONFIG
from webhook.edge.server import HANDSHAKE_SECONDS, REQUEST_SECONDS

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = shutil.which("kubectl")
SCHEMA_VERSION = "1.32.0"
BUILT_IN_GROUPS = (
    "v1",
    "apps/",
    "rbac.authorization.k8s.io/",
    "policy/",
    "admissionregistration.k8s.io/",
)

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is needed to render kustomize")


def render(path: str | Path) -> list[dict[str, Any]]:
    """``kubectl kustomize`` of a folder (relative to the repository, or absolute)."""
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "kustomize", "--load-restrictor=LoadRestrictionsNone", str(ROOT / path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


@pytest.mark.parametrize("path", ["deploy", "deploy/cert-manager"])
def test_renders_and_validates_against_the_schemas(path: str) -> None:
    objects = render(path)
    checked = 0
    for obj in objects:
        if not obj["apiVersion"].startswith(BUILT_IN_GROUPS):
            continue  # cert-manager CRDs: no schema shipped for them
        kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
        checked += 1
    assert checked >= 12


def test_installs_everything() -> None:
    kinds = sorted(o["kind"] for o in render("deploy"))
    assert kinds == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
        ]
    )


def test_deployment_is_production_shaped() -> None:
    deployment = by_kind(render("deploy"), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    pod = spec["template"]["spec"]
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} >= {
        "kubernetes.io/hostname"
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # The probes share the webhook port: not the kubelet's 1 s default (under pressure a
    # new connection may wait in the backlog about a second), readiness the webhooks' own
    # timeout, liveness the handshake plus the request deadline.
    webhook_timeout = by_kind(render("deploy"), "ValidatingWebhookConfiguration")["webhooks"][0][
        "timeoutSeconds"
    ]
    assert container["readinessProbe"]["timeoutSeconds"] == webhook_timeout
    assert container["readinessProbe"]["failureThreshold"] >= 2
    assert container["livenessProbe"]["timeoutSeconds"] >= HANDSHAKE_SECONDS + REQUEST_SECONDS
    assert container["resources"]["requests"] and container["resources"]["limits"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert pod["terminationGracePeriodSeconds"] > 25  # gunicorn's graceful timeout


def test_webhooks_follow_the_api_servers_good_practices() -> None:
    objects = render("deploy")
    budget = DEFAULT_CONFIG.registry.timeout_seconds
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        hook = by_kind(objects, kind)["webhooks"][0]
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["failurePolicy"] == "Ignore"
        assert hook["timeoutSeconds"] > budget
        excluded = hook["namespaceSelector"]["matchExpressions"][0]
        assert excluded["operator"] == "NotIn"
        assert set(excluded["values"]) == {"pullguard", "kube-system"}
        resources = {r for rule in hook["rules"] for r in rule["resources"]}
        assert {
            "pods",
            "pods/ephemeralcontainers",
            "deployments",
            "statefulsets",
            "daemonsets",
            "replicasets",
            "jobs",
            "cronjobs",
            "replicationcontrollers",
        } <= resources
        if kind == "MutatingWebhookConfiguration":
            assert hook["sideEffects"] == "NoneOnDryRun"
            assert hook["reinvocationPolicy"] == "IfNeeded"
        else:
            assert hook["sideEffects"] in ("None", "NoneOnDryRun")


def test_own_configmap_is_judged_at_admission_and_only_it() -> None:
    validating = by_kind(render("deploy"), "ValidatingWebhookConfiguration")
    (hook,) = [h for h in validating["webhooks"] if h["name"] == "config.pullguard.io"]
    assert hook["failurePolicy"] == "Ignore"  # a broken pullguard never blocks fixing it
    assert hook["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["pullguard"]}
    ]
    assert hook["objectSelector"] == {"matchLabels": {"app.kubernetes.io/name": "pullguard"}}
    (rule,) = hook["rules"]
    assert rule["resources"] == ["configmaps"]
    configmap = by_kind(render("deploy"), "ConfigMap")
    assert configmap["metadata"]["labels"]["app.kubernetes.io/name"] == "pullguard"


def test_every_rbac_rule_is_commented() -> None:
    text = (ROOT / "deploy" / "base" / "rbac.yaml").read_text().splitlines()
    for index, line in enumerate(text):
        if line.strip().startswith("- apiGroups:"):
            assert text[index - 1].strip().startswith("#"), (
                f"rule at line {index + 1} has no comment"
            )


def _with_component(tmp_path: Path, component: str) -> list[dict[str, Any]]:
    overlay = tmp_path / "overlay"
    overlay.mkdir(exist_ok=True)
    base = os.path.relpath(ROOT / "deploy", overlay)
    path = os.path.relpath(ROOT / "deploy" / "components" / component, overlay)
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{base}]\ncomponents: [{path}]\n"
    )
    return render(overlay)


def test_network_policy_component_renders_and_validates(tmp_path: Path) -> None:
    objects = _with_component(tmp_path, "network-policy")
    policy = by_kind(objects, "NetworkPolicy")
    kubernetes_validate.validate(policy, SCHEMA_VERSION, strict=True)
    assert policy["metadata"]["namespace"] == "pullguard"
    ports = {rule["ports"][0]["port"] for rule in policy["spec"]["ingress"]}
    container = by_kind(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert ports == {p["name"] for p in container["ports"]} == {"https", "metrics"}
    assert "--metrics-port" in container["args"]


def test_by_default_pullguard_can_write_no_secret_outside_its_namespace() -> None:
    cluster_role = next(
        o
        for o in render("deploy")
        if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "pullguard"
    )
    for rule in cluster_role["rules"]:
        if "secrets" in rule["resources"]:
            assert set(rule["verbs"]) <= {"get", "list", "watch"}, rule


def test_secret_copy_component_is_narrow_and_valid(tmp_path: Path) -> None:
    objects = _with_component(tmp_path, "default-pull-secrets")
    role = next(
        o
        for o in objects
        if o["metadata"]["name"] == "pullguard-secret-copies" and o["kind"] == "ClusterRole"
    )
    create, modify = role["rules"]
    assert create["verbs"] == ["create"]
    assert modify["verbs"] == ["patch", "delete"] and modify["resourceNames"]
    for obj in objects:
        if obj["metadata"].get("name") == "pullguard-secret-copies":
            kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
            assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "pullguard"
    kinds = {o["kind"] for o in objects if o["metadata"].get("name") == "pullguard-secret-copies"}
    assert kinds == {
        "ClusterRole",
        "ClusterRoleBinding",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }


def _renamed(tmp_path: Path, top: str) -> list[dict[str, Any]]:
    """``top`` (deploy or deploy/cert-manager) with the secret-copy component, renamed the
    documented way: namespace and namePrefix set in the top kustomization itself."""
    copy = tmp_path / "deploy"
    shutil.copytree(ROOT / "deploy", copy)
    kustomization = copy / top.removeprefix("deploy").strip("/") / "kustomization.yaml"
    component = os.path.relpath(copy / "components" / "default-pull-secrets", kustomization.parent)
    text = kustomization.read_text().replace(
        "\nresources:",
        f"\nnamespace: guard\nnamePrefix: acme-\ncomponents: [{component}]\nresources:",
        1,
    )
    kustomization.write_text(text)
    return render(kustomization.parent)


@pytest.mark.parametrize("top", ["deploy", "deploy/cert-manager"])
def test_renaming_in_one_place_renames_every_reference(tmp_path: Path, top: str) -> None:
    objects = _renamed(tmp_path, top)

    def one(kind: str, name: str | None = None) -> dict[str, Any]:
        (found,) = [
            o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])
        ]
        return found

    namespace = one("Namespace")["metadata"]["name"]
    service = one("Service")["metadata"]["name"]
    account = one("ServiceAccount")["metadata"]["name"]
    configmap = one("ConfigMap")["metadata"]["name"]
    assert (namespace, service, account, configmap) == (
        "guard",
        "acme-pullguard",
        "acme-pullguard",
        "acme-pullguard-config",
    )
    pod = one("Deployment")["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--configmap") + 1] == configmap
    if "--service" in args:
        assert args[args.index("--service") + 1] == service
    assert pod["serviceAccountName"] == account
    hooks = [one("ValidatingWebhookConfiguration"), one("MutatingWebhookConfiguration")]
    for configuration in hooks:
        for hook in configuration["webhooks"]:
            assert hook["clientConfig"]["service"]["name"] == service
            assert hook["clientConfig"]["service"]["namespace"] == namespace
            selector = hook["namespaceSelector"]["matchExpressions"][0]
            if selector["operator"] == "In":  # the own-ConfigMap webhook: its namespace only
                assert selector["values"] == [namespace]
            else:
                assert namespace in selector["values"] and "kube-system" in selector["values"]
    for binding in [o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")]:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account, "namespace": namespace}
        ]
    names = [c["metadata"]["name"] for c in hooks]
    own_rule = one("ClusterRole", "acme-pullguard")["rules"][4]
    assert own_rule["resourceNames"] == names
    policy = one("ValidatingAdmissionPolicy")["spec"]["matchConditions"][0]["expression"]
    assert f"'serviceaccount', '{namespace}', '{account}']" in policy
    binding = one("ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0][
        "values"
    ] == [namespace]
    for obj in objects:
        if obj["apiVersion"].startswith(BUILT_IN_GROUPS):
            kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
    if top == "deploy/cert-manager":
        certificate = one("Certificate")
        assert f"{service}.{namespace}.svc" in certificate["spec"]["dnsNames"]
        for configuration in hooks:
            annotation = configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]
            assert annotation == f"{namespace}/{certificate['metadata']['name']}"


def test_both_tops_carry_the_same_name_replacements() -> None:
    # kustomize cannot share one replacements file between the two tops without loosening its
    # load restrictions, so each carries the block; the cert-manager top adds its own after it.
    def replacements(path: str) -> list[Any]:
        document = yaml.safe_load((ROOT / path / "kustomization.yaml").read_text())
        found: list[Any] = document["replacements"]
        return found

    shared = replacements("deploy")
    assert replacements("deploy/cert-manager")[: len(shared)] == shared


def test_service_monitor_component_scrapes_the_metrics_port(tmp_path: Path) -> None:
    objects = _with_component(tmp_path, "service-monitor")
    monitor = by_kind(objects, "ServiceMonitor")
    service = by_kind(objects, "Service")
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_in_cluster_audit_component_is_read_only_but_events(tmp_path: Path) -> None:
    objects = _with_component(tmp_path, "in-cluster-audit")
    role = next(
        o
        for o in objects
        if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "pullguard-audit"
    )
    verbs = {verb for rule in role["rules"] for verb in rule["verbs"]}
    assert verbs == {"list", "create"}
    (creates,) = [r for r in role["rules"] if "create" in r["verbs"]]
    assert creates["resources"] == ["events"]
    for obj in objects:
        if obj["metadata"].get("name") == "pullguard-audit":
            kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
            assert obj["metadata"]["labels"]["app.kubernetes.io/name"] == "pullguard"
    container = by_kind(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert "--audit-interval=3600" in container["args"]


def test_credential_providers_component_mounts_what_its_two_keys_name(tmp_path: Path) -> None:
    """Issue 24 item 7: the provider config (a ConfigMap) and the plugins (an emptyDir an
    initContainer fills from the image the admin names) are mounted read-only where the two
    config keys the component's comment gives point; those keys are valid configuration,
    and the sample document is one pullguard (and the kubelet) accepts."""
    import re

    from webhook.core.config import load_config_text
    from webhook.core.credprovider import load_provider_config_text

    component = ROOT / "deploy" / "components" / "credential-providers"
    objects = _with_component(tmp_path, "credential-providers")
    for obj in objects:
        if obj["apiVersion"].startswith(BUILT_IN_GROUPS):
            kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
    configmap = next(
        o
        for o in objects
        if o["kind"] == "ConfigMap"
        and o["metadata"]["name"].startswith("pullguard-credential-providers")
    )
    assert configmap["metadata"]["namespace"] == by_kind(objects, "Namespace")["metadata"]["name"]
    config = load_provider_config_text(configmap["data"]["credential-providers.yaml"])
    assert [p.name for p in config.providers] == ["ecr-credential-provider"]

    comment = (component / "kustomization.yaml").read_text()
    keys = dict(re.findall(r"#\s+(imageCredentialProvider\w+): (\S+)", comment))
    assert set(keys) == {"imageCredentialProviderConfig", "imageCredentialProviderBinDir"}
    document = yaml.safe_load((ROOT / "deploy" / "base" / "config.yaml").read_text())
    document["registry"].update(keys)
    settings = load_config_text(yaml.safe_dump(document)).registry
    assert settings.image_credential_provider_config == keys["imageCredentialProviderConfig"]

    pod = by_kind(objects, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    (main,) = [c for c in pod["containers"] if c["name"] == "pullguard"]
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    config_dir, config_file = keys["imageCredentialProviderConfig"].rsplit("/", 1)
    assert config_file in configmap["data"]
    assert mounts[config_dir]["readOnly"] is True
    assert (
        volumes[mounts[config_dir]["name"]]["configMap"]["name"] == (configmap["metadata"]["name"])
    )
    bin_dir = keys["imageCredentialProviderBinDir"]
    assert mounts[bin_dir]["readOnly"] is True
    assert "emptyDir" in volumes[mounts[bin_dir]["name"]]
    (init,) = pod["initContainers"]
    assert init["image"] == "credential-provider-binaries"  # the admin's images: entry
    assert init["command"][-1].rstrip("/") == bin_dir
    assert {m["mountPath"] for m in init["volumeMounts"]} == {bin_dir}
    assert not any("hostPath" in v for v in pod["volumes"])
