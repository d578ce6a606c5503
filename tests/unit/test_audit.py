"""``pullguard audit``'s scan and words, on the pure decision: it never says "nothing" when
it could not look (issue 22 item 4). The live runs are tests/e2e/test_diagnose_audit.py."""

from __future__ import annotations

from tests.unit.builders import container, deployment, pod, pod_spec, pull_secret
from webhook.cli.audit import _text, exit_status
from webhook.compose.scan import Scan, _stuck_pods_by_owner, scan
from webhook.core.cluster import ClusterUnavailable, InMemoryCluster, SecretInfo
from webhook.core.cluster import ServiceAccountInfo as Account
from webhook.core.config import load_config_text
from webhook.core.registry import Answer, FixedRegistry, Outcome

DEFAULT = load_config_text("{}\n")
IMAGE = "registry.example.com/team/app:1.0"
SOURCE = "ConfigMap pullguard/pullguard-config"


class SecretsForbidden(InMemoryCluster):
    """What a developer's kubeconfig reads: no Secrets, no ServiceAccounts."""

    def get_secret(self, namespace: str, name: str) -> SecretInfo | None:
        raise ClusterUnavailable("secrets is forbidden")

    def get_service_account(self, namespace: str, name: str) -> Account | None:
        raise ClusterUnavailable("serviceaccounts is forbidden")


def text_of(result: Scan) -> str:
    judged = [(kind, document["metadata"], d) for kind, document, d in result.judged]
    mode_off = [(ns, count, why) for ns, (why, count) in result.mode_off.items()]
    return _text(
        judged,
        {},
        result.scanned,
        SOURCE,
        result.not_checked,
        exempt=[],
        mode_off=mode_off,
        checks_not_run=result.checks_not_run,
    )


def test_audit_that_could_not_read_secrets_does_not_say_nothing() -> None:
    # rev22 F15: run by a user who may not read Secrets and ServiceAccounts, every object's
    # pullSecrets check is "unavailable" (the decision's own warning: "pullSecrets check
    # could not run: serviceaccounts is forbidden"); the audit counted only the registry's
    # unsettled answers, so it printed "nothing would be denied or warned" and exited 0,
    # though a listed secret that is missing or that the kubelet cannot parse (then no
    # image of the pod pulls at all) is exactly what it did not look at.
    cluster = SecretsForbidden()
    cluster.add_namespace("team-a")
    cluster.add_node("n1", "linux", "amd64")
    workload = deployment(pod_spec(container("web", IMAGE), secrets=["regcred"]))
    registry = FixedRegistry({IMAGE: Answer(Outcome.FOUND)})
    result = scan([("Deployment", workload)], DEFAULT, cluster, registry)
    text = text_of(result)
    assert "nothing would be denied or warned" not in text, text
    assert result.checks_not_run == {
        ("pullSecrets", "serviceaccounts is forbidden"): ["Deployment team-a/web"]
    }, result.checks_not_run
    assert (
        "1 object not checked by pullSecrets: serviceaccounts is forbidden\n  Deployment team-a/web"
        in (text)
    )
    assert exit_status(False, result) == 3
    # Readable: judged, nothing counted, exit 0.
    readable = InMemoryCluster()
    readable.add_namespace("team-a")
    readable.add_node("n1", "linux", "amd64")
    readable.add_secret(pull_secret("team-a", "regcred", "registry.example.com"))
    fine = scan([("Deployment", workload)], DEFAULT, readable, registry)
    assert not fine.checks_not_run and exit_status(False, fine) == 0, fine


def test_an_audit_that_could_not_learn_the_nodes_platforms_says_so() -> None:
    # rev22 F15, the platform check: with no Node saying its os/arch (or Nodes not
    # readable), the platform check could not run on any object.
    cluster = InMemoryCluster()
    cluster.add_namespace("team-a")
    registry = FixedRegistry({"nginx:1.25": Answer(Outcome.FOUND)})
    result = scan(
        [("Pod", pod(pod_spec(container("web", "nginx:1.25"))))], DEFAULT, cluster, registry
    )
    assert result.checks_not_run == {
        ("platform", "no Node says its kubernetes.io/os and kubernetes.io/arch"): ["Pod team-a/p"]
    }, result.checks_not_run
    assert "nothing would be denied or warned" not in text_of(result)
    assert exit_status(False, result) == 3


def test_a_namespace_whose_mode_is_off_is_not_judged_and_said_so() -> None:
    # rev22 F5: a namespace labelled pullguard.io/mode=off is not judged at admission,
    # like an exempt one: "mode off, not judged", never "nothing would be denied or
    # warned"; the exit status stays 0 (admission denies nothing there).
    cluster = InMemoryCluster()
    cluster.add_namespace("team-a", {"pullguard.io/mode": "off"})
    missing = "registry.example.com/team/app:1.1"
    registry = FixedRegistry({missing: Answer(Outcome.NOT_FOUND, "HTTP 404")})
    found = [("Pod", pod(pod_spec(container("web", missing)), name=f"p{i}")) for i in (1, 2)]
    result = scan(found, DEFAULT, cluster, registry)
    assert result.mode_off == {"team-a": ("labelled pullguard.io/mode=off", 2)}
    text = text_of(result)
    assert "nothing" not in text, text
    assert (
        "2 objects in namespace team-a (labelled pullguard.io/mode=off): mode off, not judged"
        in text
    )
    assert exit_status(False, result) == 0
    # Every check off in the configuration says that instead.
    off = load_config_text(
        "checks: {reference: off, pullSecrets: off, registry: off, pullPolicy: off, "
        "platform: off}\n"
    )
    plain = InMemoryCluster()
    plain.add_namespace("team-a")
    assert scan(found[:1], off, plain, registry).mode_off == {
        "team-a": ("every check off in the configuration", 1)
    }


def test_an_exempt_namespace_says_why_as_the_decision_did() -> None:
    # rev23d F4: why a namespace is exempt comes with the decision (Decision.why), not
    # from a second rule in the cli: pullguard's own namespace, or exemptNamespaces.
    config = load_config_text("exemptNamespaces: [kube-system]\n")
    cluster = InMemoryCluster()
    found = [
        ("Pod", pod(pod_spec(container("web", IMAGE)), name="p", namespace=namespace))
        for namespace in ("kube-system", "pullguard", "pullguard")
    ]
    result = scan(found, config, cluster, FixedRegistry({}), own_namespace="pullguard")
    assert result.exempt == {
        "kube-system": ("in exemptNamespaces", 1),
        "pullguard": ("pullguard's own namespace", 2),
    }
    assert result.judged == []


def test_an_owners_stuck_pods_are_named_and_its_ready_ones_never() -> None:
    # rev22 F6/F7: audit's set image on a ReplicaSet (or a StatefulSet whose pod never became
    # ready) deletes the pods it keeps through a template change; a ready pod is left alone.
    def owned(name: str, kind: str, uid: str, ready: str | None) -> dict[str, object]:
        status = {"conditions": [{"type": "Ready", "status": ready}]} if ready else {}
        ref = {"kind": kind, "name": "web", "uid": uid, "controller": True}
        return {"metadata": {"name": name, "ownerReferences": [ref]}, "status": status}

    pods = [
        owned("web-b", "ReplicaSet", "rs-1", "False"),
        owned("web-a", "ReplicaSet", "rs-1", None),
        owned("web-ok", "ReplicaSet", "rs-1", "True"),
        owned("web-0", "StatefulSet", "sts-1", "False"),
        owned("api-x", "Deployment", "dep-1", "False"),
    ]
    assert _stuck_pods_by_owner(pods) == {"rs-1": ("web-a", "web-b"), "sts-1": ("web-0",)}


def test_a_paused_deployments_set_image_resumes_it() -> None:
    """rev22b F6: a paused Deployment (``kubectl rollout pause``) rolls out no template
    change: audit's ``kubectl set image`` alone left its pod on the missing tag."""
    cluster = InMemoryCluster()
    cluster.add_namespace("team-a")
    cluster.add_node("n1", "linux", "amd64")
    missing = "registry.example.com/team/app:1.1"
    answer = Answer(Outcome.NOT_FOUND, repository_exists=True, tags=("1.0",))
    registry = FixedRegistry({missing: answer})
    workload = deployment(pod_spec(container("web", missing)))
    running = scan([("Deployment", workload)], DEFAULT, cluster, registry)
    ((_, _, decision),) = running.judged
    (fix,) = [f.fix for f in decision.findings if f.check == "registry"]
    assert fix is not None and fix.endswith("web=registry.example.com/team/app:1.0 -n team-a"), fix
    workload["spec"]["paused"] = True
    paused = scan([("Deployment", workload)], DEFAULT, cluster, registry)
    ((_, _, decision),) = paused.judged
    (fix,) = [f.fix for f in decision.findings if f.check == "registry"]
    assert fix is not None and fix.endswith(
        "kubectl set image deployment/web web=registry.example.com/team/app:1.0 -n team-a "
        "&& kubectl rollout resume deployment/web -n team-a"
    ), fix


def test_audits_secret_fix_for_an_existing_owner_is_a_command_that_keeps_the_accounts() -> None:
    """rev22d F6: audit of an existing Deployment whose image needs a secret said "add ... to
    the imagePullSecrets in the manifest"; it now gives the patch diagnose gives, with the
    names its pods use (a template that lists none has its ServiceAccount's, which one
    secret added alone would switch off)."""
    cluster = InMemoryCluster()
    cluster.add_namespace("team-a")
    cluster.add_node("n1", "linux", "amd64")
    cluster.add_service_account(Account("team-a", "default", ("mirror-cred",)))
    cluster.add_secret(pull_secret("team-a", "mirror-cred", "mirror.example.com"))
    registry = FixedRegistry({IMAGE: Answer(Outcome.UNAUTHORIZED, "HTTP 401")})
    workload = deployment(pod_spec(container("web", IMAGE)))
    result = scan([("Deployment", workload)], DEFAULT, cluster, registry)
    ((_, _, decision),) = result.judged
    (fix,) = [f.fix for f in decision.findings if f.check == "registry"]
    assert fix is not None and fix.endswith(
        ", then add {name: regcred-registry-example-com} to the imagePullSecrets of "
        "Deployment web's pod template: kubectl patch deployment/web -n team-a "
        '--type=strategic -p \'{"spec":{"template":{"spec":{"imagePullSecrets":'
        '[{"name":"mirror-cred"},{"name":"regcred-registry-example-com"}]}}}}\''
    ), fix
