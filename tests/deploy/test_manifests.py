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


def render(path: str) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "kustomize", str(ROOT / path)],
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
    assert container["resources"]["requests"] and container["resources"]["limits"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert pod["terminationGracePeriodSeconds"] > 25  # gunicorn's graceful timeout


def test_webhooks_follow_the_api_servers_good_practices() -> None:
    objects = render("deploy")
    budget = DEFAULT_CONFIG.registry.timeout_seconds
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        (hook,) = by_kind(objects, kind)["webhooks"]
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


def test_every_rbac_rule_is_commented() -> None:
    text = (ROOT / "deploy" / "base" / "rbac.yaml").read_text().splitlines()
    for index, line in enumerate(text):
        if line.strip().startswith("- apiGroups:"):
            assert text[index - 1].strip().startswith("#"), (
                f"rule at line {index + 1} has no comment"
            )


def test_network_policy_component_renders_and_validates(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    base = os.path.relpath(ROOT / "deploy" / "base", overlay)
    component = os.path.relpath(ROOT / "deploy" / "components" / "network-policy", overlay)
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{base}]\ncomponents: [{component}]\n"
    )
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "kustomize", "--load-restrictor=LoadRestrictionsNone", str(overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    objects = [d for d in yaml.safe_load_all(out) if d]
    policy = by_kind(objects, "NetworkPolicy")
    kubernetes_validate.validate(policy, SCHEMA_VERSION, strict=True)
    assert policy["metadata"]["namespace"] == "pullguard"
    ports = {rule["ports"][0]["port"] for rule in policy["spec"]["ingress"]}
    container = by_kind(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert ports == {p["name"] for p in container["ports"]} == {"https", "metrics"}
    assert "--metrics-port" in container["args"]


def _with_component(tmp_path: Path, component: str) -> list[dict[str, Any]]:
    overlay = tmp_path / "overlay"
    overlay.mkdir(exist_ok=True)
    base = os.path.relpath(ROOT / "deploy", overlay)
    path = os.path.relpath(ROOT / "deploy" / "components" / component, overlay)
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{base}]\ncomponents: [{path}]\n"
    )
    assert KUBECTL is not None
    out = subprocess.run(
        [KUBECTL, "kustomize", "--load-restrictor=LoadRestrictionsNone", str(overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


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
