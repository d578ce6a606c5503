"""Issue 22: what pullguard says sends the person the right way. Each test pins a message
the outside probe found misleading, on the engine with a registry that answers from a table
(the printed fixes are run against the real API server in tests/e2e/test_decisions.py)."""

from __future__ import annotations

import base64
import copy
import json
import shlex
import subprocess
from dataclasses import replace

import pytest

from tests.unit.builders import (
    as_copy,
    cluster_with,
    container,
    pod,
    pod_spec,
    pull_secret,
    request,
)
from webhook.core.checks import cronjob_of
from webhook.core.cluster import SecretInfo, ServiceAccountInfo
from webhook.core.config import load_config_text, parse_config
from webhook.core.fixcommands import lower_partition, remake_stuck_pods, replace_if_taken
from webhook.core.keyring import DOCKER_CFG, miss_reason, parse_pull_secret
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


def test_an_entry_that_misses_on_port_and_path_says_both() -> None:
    # rev22 F17 (issue 22 item 1): 'registry.example.com/other' for
    # registry.example.com:5000/team/app misses on the port and on the path. Said with the
    # port only, the person adds the port to the key, applies, and is denied again:
    # 'registry.example.com:5000/other' covers only the path /other.
    reason = miss_reason("registry.example.com/other", "registry.example.com:5000/team/app")
    assert reason == (
        "entry 'registry.example.com/other' has no port, and the kubelet matches the port "
        "(5000); and it covers only the path /other, not /team/app"
    )
    assert miss_reason("registry.example.com:5001/other", "registry.example.com:5000/team/app") == (
        "entry 'registry.example.com:5001/other' is for port 5001, not 5000; and it covers "
        "only the path /other, not /team/app"
    )


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
    pod only; a Deployment's pod is fixed in the Deployment (named by pod-template-hash).
    rev22b F3: admission reads neither the ReplicaSet nor the Deployment, which may be gone
    (--cascade=orphan): the fix patches the Deployment, else the ReplicaSet and deletes the
    pod (a ReplicaSet keeps the pods it has)."""
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
    body = (
        '\'{"spec":{"template":{"spec":{"imagePullSecrets":[{"name":"other"},'
        '{"name":"regcred-registry-example-com-5000"}]}}}}\''
    )
    assert (
        ", then add {name: regcred-registry-example-com-5000} to the imagePullSecrets of "
        "the pod template of the pod's ReplicaSet web-5d8f7c (owned by a Deployment web, if "
        "one still exists) (it makes the pod; " in fix
    ), fix
    # rev22c F2: a paused Deployment rolls out nothing; its patch resumes it (a no-op when
    # it is not paused), and the words say so.
    resumed = body.replace('{"spec":{"template"', '{"spec":{"paused":false,"template"')
    assert 'the Deployment\'s patch also resumes it if it is paused ("paused":false' in fix
    assert fix.endswith(
        f": kubectl patch deployment/web -n team-a --type=strategic -p {resumed} || "
        f"{{ kubectl patch replicaset/web-5d8f7c -n team-a --type=strategic -p {body} && "
        f"kubectl delete pod {new['metadata']['name']} -n team-a; }}"
    ), fix


def _debug_of_owned_pod(kind: str, name: str) -> str:
    """The registry finding's fix for ``kubectl debug`` of a pod controlled by ``kind``
    ``name``, with an image that needs a secret."""
    old = pod(pod_spec(container("app", "nginx:1.25"), secrets=["other"]))
    old["metadata"]["ownerReferences"] = [
        {"apiVersion": "batch/v1", "kind": kind, "name": name, "controller": True}
    ]
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": PORTED}]
    review = request(new, operation="UPDATE", old=old, sub_resource="ephemeralcontainers")
    registry = FixedRegistry({PORTED: Answer(Outcome.UNAUTHORIZED, "HTTP 401")})
    cluster = cluster_with(pull_secret("team-a", "other", "ghcr.io"))
    decision = validate(review, DEFAULT, cluster, registry=registry)
    assert not decision.allowed
    (finding,) = [f for f in decision.findings if f.check == "registry"]
    return finding.fix or ""


_SECRETS = '[{"name":"other"},{"name":"regcred-registry-example-com-5000"}]'
_OWN_MIG = f'{{"spec":{{"template":{{"spec":{{"imagePullSecrets":{_SECRETS}}}}}}}}}'
_STRIPPED_MIG = (
    f'{{"spec":{{"template":{{"spec":{{"imagePullSecrets":{_SECRETS}}},'
    '"metadata":{"labels":{"controller-uid":null,"batch.kubernetes.io/controller-uid":null,'
    '"job-name":null,"batch.kubernetes.io/job-name":null}}},"selector":null}}'
)
#: rev22d F1: the generated selector and labels are dropped only for a Job without
#: manualSelector: true (read when the command runs); such a Job keeps its own.
_EDIT_MIG = (
    "kubectl patch job/mig -n team-a --type=strategic --dry-run=client -o yaml -p "
    '"$([ "$(kubectl get job/mig -n team-a -o jsonpath=\'{.spec.manualSelector}\')" = true ] '
    f"&& echo '{_OWN_MIG}' || echo '{_STRIPPED_MIG}')\""
)
#: rev22d: a server-side dry run of the create first: a Job the API server would refuse is
#: never deleted.
_RECREATE_MIG = (
    f"{_EDIT_MIG} | kubectl create --dry-run=server -f - 2>&1 | grep -q '(AlreadyExists)' && "
    f"{_EDIT_MIG} | kubectl replace --force -f -"
)


def test_kubectl_debug_of_a_jobs_pod_recreates_the_job() -> None:
    """rev22c F1: a Job's pod template is immutable ("field is immutable"): the fix said to
    add the secret to it, with no command. The Job is recreated with it, as diagnose does
    (the generated selector and labels dropped), and the words say its pods run again."""
    fix = _debug_of_owned_pod("Job", "mig")
    assert (
        ", then recreate Job mig with {name: regcred-registry-example-com-5000} in its pod "
        "template's imagePullSecrets (a Job's pod template cannot change: the Job is deleted "
        "and created again with it, and its pods run again from the start): "
    ) in fix, fix
    assert fix.endswith(f": {_RECREATE_MIG}"), fix


def test_kubectl_debug_of_a_cronjobs_run_patches_the_cronjob_else_recreates_the_job() -> None:
    """A scheduled run is named CRONJOB-MINUTES: the CronJob (patchable) takes the secret
    and the run is made again from it; where no such CronJob exists, the Job is recreated."""
    fix = _debug_of_owned_pod("Job", "backup-29412000")
    cron = (
        '\'{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"imagePullSecrets":'
        + _SECRETS
        + "}}}}}}'"
    )
    recreate = _RECREATE_MIG.replace("job/mig", "job/backup-29412000")
    assert (
        ", then add {name: regcred-registry-example-com-5000} to the imagePullSecrets of "
        "the pod template of CronJob backup, if Job backup-29412000's ownerReferences say it "
        "made it, as its name suggests"
    ) in fix, fix
    # rev22d F3: the CronJob branch only where the Job's ownerReferences name the CronJob.
    owner = (
        "kubectl get job/backup-29412000 -n team-a -o "
        """jsonpath='{.metadata.ownerReferences[?(@.kind=="CronJob")].name}'"""
    )
    assert fix.endswith(
        f": {owner} | grep -qx backup && "
        f"kubectl patch cronjob/backup -n team-a --type=strategic -p {cron} && "
        "kubectl delete job backup-29412000 -n team-a && kubectl create job backup-29412000 "
        f"--from=cronjob/backup -n team-a || {{ {recreate}; }}"
    ), fix


@pytest.mark.parametrize("job", ["mig", "mig-2", "backup-2941200", "backup-29412000x"])
def test_a_job_not_named_like_a_run_is_no_cronjobs(job: str) -> None:
    assert cronjob_of(job) == ""
    assert cronjob_of(f"{job}-29412000") == job


def test_kubectl_debug_of_a_bare_pod_gives_the_command_that_recreates_it() -> None:
    """A bare pod's fix said "then recreate the pod with ..." and gave no command: it is the
    recreate (its ephemeral containers, which a create refuses, dropped)."""
    old = pod(pod_spec(container("app", "nginx:1.25")))
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": PORTED}]
    review = request(new, operation="UPDATE", old=old, sub_resource="ephemeralcontainers")
    registry = FixedRegistry({PORTED: Answer(Outcome.UNAUTHORIZED, "HTTP 401")})
    decision = validate(review, DEFAULT, cluster_with(), registry=registry)
    (finding,) = [f for f in decision.findings if f.check == "registry"]
    edit = (
        f"kubectl patch pod {new['metadata']['name']} -n team-a --type=merge --dry-run=client "
        '-o yaml -p \'{"spec":{"imagePullSecrets":[{"name":'
        '"regcred-registry-example-com-5000"}],"ephemeralContainers":null}}\''
    )
    # A server-side dry run of the create first: a pod the API server would refuse is
    # never deleted.
    assert (finding.fix or "").endswith(f": {replace_if_taken(edit)}"), finding.fix


def test_kubectl_debug_of_a_bare_replicasets_pod_deletes_the_pod_after_the_patch() -> None:
    """rev22b F4: a ReplicaSet with no Deployment keeps the pods it has when its template
    changes: the patch alone left the pod without the secret, and the same kubectl debug
    was denied again."""
    old = pod(pod_spec(container("app", "nginx:1.25")))
    old["metadata"]["labels"] = {"app": "web"}
    old["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "controller": True}
    ]
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": PORTED}]
    review = request(new, operation="UPDATE", old=old, sub_resource="ephemeralcontainers")
    registry = FixedRegistry({PORTED: Answer(Outcome.UNAUTHORIZED, "HTTP 401")})
    decision = validate(review, DEFAULT, cluster_with(), registry=registry)
    assert not decision.allowed
    (finding,) = [f for f in decision.findings if f.check == "registry"]
    fix = finding.fix or ""
    assert "deployment" not in fix, fix
    assert fix.endswith(
        "kubectl patch replicaset/web -n team-a --type=strategic -p "
        '\'{"spec":{"template":{"spec":{"imagePullSecrets":'
        '[{"name":"regcred-registry-example-com-5000"}]}}}}\' && '
        f"kubectl delete pod {new['metadata']['name']} -n team-a"
    ), fix


def test_a_refused_default_secret_is_fixed_at_its_source() -> None:
    config = load_config_text(
        "defaultPullSecrets:\n"
        "  - {secret: hub, registries: [registry.example.com], sourceNamespace: pullguard}\n"
    )
    # pullguard's copy carries its marks (rev22b: a name alone made a copy).
    cluster = cluster_with(as_copy(pull_secret("team-a", "hub", "registry.example.com")))
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


def test_a_refused_default_secret_not_copied_yet_is_fixed_at_its_source() -> None:
    """No copy in team-a yet (a dry-run): the pod is judged by the source's login, which
    the copy will hold."""
    config = load_config_text(
        "defaultPullSecrets:\n"
        "  - {secret: hub, registries: [registry.example.com], sourceNamespace: pullguard}\n"
    )
    cluster = cluster_with(pull_secret("pullguard", "hub", "registry.example.com"))
    image = "registry.example.com/team/app:1"
    registry = FixedRegistry({image: Answer(Outcome.UNAUTHORIZED, tried=("team-a/hub",))})
    spec = pod_spec(container("web", image), secrets=["hub"])
    decision = validate(request(pod(spec)), config, cluster, registry=registry)
    (finding,) = [f for f in decision.findings if f.check == "registry"]
    fix = finding.fix or ""
    assert "pullguard's copy of pullguard/hub" in fix
    assert "kubectl delete secret hub -n pullguard && " in fix, fix


@pytest.mark.parametrize(
    "marks",
    [{}, {"labels": {"app.kubernetes.io/managed-by": "pullguard"}}],
    ids=["no-marks", "label-only"],
)
def test_a_tenants_own_secret_named_like_a_default_secret_is_its_own(
    marks: dict[str, dict[str, str]],
) -> None:
    """rev22b: a tenant's own secret named like a default pull secret, without pullguard's
    marks on a copy (its label, the source annotated, a proof), was called "pullguard's
    copy of pullguard/hub" and the fix deleted and recreated the admin's source (which
    holds other registries' logins), leaving the tenant's wrong secret as it was."""
    config = load_config_text(
        "defaultPullSecrets:\n"
        "  - {secret: hub, registries: [corp.example.com], sourceNamespace: pullguard}\n"
    )
    own = replace(pull_secret("team-a", "hub", "registry.example.com"), **marks)
    cluster = cluster_with(own, pull_secret("pullguard", "hub", "corp.example.com"))
    image = "registry.example.com/team/app:1"
    registry = FixedRegistry({image: Answer(Outcome.UNAUTHORIZED, tried=("team-a/hub",))})
    spec = pod_spec(container("web", image), secrets=["hub"])
    decision = validate(request(pod(spec)), config, cluster, registry=registry)
    (finding,) = [f for f in decision.findings if f.check == "registry"]
    fix = finding.fix or ""
    assert "copy of" not in fix and "-n pullguard" not in fix, fix
    assert "check that the credentials in imagePullSecret team-a/hub" in fix, fix
    assert "kubectl delete secret hub -n team-a && kubectl create secret docker-registry hub" in fix


MULTI_DEFAULT = (
    "defaultPullSecrets:\n"
    "  - {secret: hub, registries: [registry.example.com, other.example.com], "
    "sourceNamespace: pullguard}\n"
)
SECRET_TYPES = {".dockerconfigjson": "kubernetes.io/dockerconfigjson", ".dockercfg": DOCKER_CFG}


def two_registry_secret(data_key: str, key: str = "registry.example.com") -> SecretInfo:
    """team-a/hub with logins for ``key`` (the image's registry) and other.example.com."""
    auth = base64.b64encode(b"user:stale").decode()
    entries = {key: {"auth": auth}, "other.example.com": {"auth": auth, "email": "x@y"}}
    document = entries if data_key == ".dockercfg" else {"auths": entries}
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    return SecretInfo("team-a", "hub", SECRET_TYPES[data_key], {data_key: encoded})


def edited_as_printed(fix: str, secret: SecretInfo, user: str, password: str) -> SecretInfo:
    """The fix's ``kubectl get secret -o json | jq ... | kubectl replace -f -`` run as
    printed, with the real jq, on the Secret as ``kubectl get -o json`` prints it (the API
    server's side is run in tests/e2e/test_registry.py)."""
    command = fix[fix.index("kubectl get secret ") :]
    jq = command[command.index("| jq ") + 2 : command.rindex(" | kubectl replace -f -")]
    # USER and PASSWORD replaced as a person does, quoted for the shell.
    login = f"--arg user {shlex.quote(user)} --arg password {shlex.quote(password)}"
    jq = jq.replace("--arg user USER --arg password PASSWORD", login)
    stored = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret.name, "namespace": secret.namespace},
        "type": secret.type,
        "data": dict(secret.data),
    }
    done = subprocess.run(
        ["bash", "-c", jq], input=json.dumps(stored), capture_output=True, text=True, check=True
    )
    edited = json.loads(done.stdout)
    assert edited["metadata"] == stored["metadata"] and edited["type"] == secret.type
    return SecretInfo(secret.namespace, secret.name, secret.type, edited["data"])


@pytest.mark.parametrize("data_key", [".dockerconfigjson", ".dockercfg"])
@pytest.mark.parametrize("config_text", [MULTI_DEFAULT, "{}"], ids=["default-secret", "own-secret"])
def test_replacing_a_refused_secret_keeps_its_other_registries(
    config_text: str, data_key: str
) -> None:
    """rev22 F10: the fix recreated the secret with ``kubectl create secret docker-registry
    --docker-server=<the refusing registry>``: run as printed, every pod pulling from the
    secret's other registries lost its credentials. It now names them and sets the one
    entry; run as printed, the other entries are kept as they were."""
    secret = two_registry_secret(data_key)
    # The default secret's case: pullguard's copy, with its marks.
    cluster = cluster_with(as_copy(secret) if config_text == MULTI_DEFAULT else secret)
    image = "registry.example.com/team/app:1"
    registry = FixedRegistry({image: Answer(Outcome.UNAUTHORIZED, tried=("team-a/hub",))})
    spec = pod_spec(container("web", image), secrets=["hub"])
    decision = validate(
        request(pod(spec)), load_config_text(config_text), cluster, registry=registry
    )
    assert not decision.allowed
    (finding,) = [f for f in decision.findings if f.check == "registry"]
    fix = finding.fix or ""
    assert "delete secret" not in fix, fix
    assert "the secret also holds other.example.com, which recreating it would drop" in fix
    namespace = "pullguard" if config_text == MULTI_DEFAULT else "team-a"
    assert f"kubectl get secret hub -n {namespace} -o json | jq " in fix
    before = {c.key: c for c in parse_pull_secret(secret.type, secret.data)}
    edited = edited_as_printed(fix, secret, "alice", "n3w'pass")
    after = {c.key: c for c in parse_pull_secret(edited.type, edited.data)}
    assert after.keys() == before.keys()
    assert after["other.example.com"] == before["other.example.com"]
    new = after["registry.example.com"]
    assert (new.username, new.password) == ("alice", "n3w'pass")


def test_the_refused_entry_is_replaced_under_its_own_key() -> None:
    """A key written as a URL (``https://registry.example.com/v1/``) is replaced as such:
    a second entry for the same registry would leave the stale login to be tried first."""
    secret = two_registry_secret(".dockerconfigjson", "https://registry.example.com/v1/")
    image = "registry.example.com/team/app:1"
    registry = FixedRegistry({image: Answer(Outcome.UNAUTHORIZED, tried=("team-a/hub",))})
    spec = pod_spec(container("web", image), secrets=["hub"])
    decision = validate(request(pod(spec)), DEFAULT, cluster_with(secret), registry=registry)
    (finding,) = [f for f in decision.findings if f.check == "registry"]
    assert "to replace its registry.example.com entry only" in (finding.fix or "")
    edited = edited_as_printed(finding.fix or "", secret, "alice", "pw")
    keys = [c.key for c in parse_pull_secret(edited.type, edited.data)]
    assert sorted(keys) == ["https://registry.example.com/v1/", "other.example.com"]


def test_a_secret_of_one_registry_is_still_recreated_whole() -> None:
    cluster = cluster_with(pull_secret("team-a", "hub", "registry.example.com"))
    image = "registry.example.com/team/app:1"
    registry = FixedRegistry({image: Answer(Outcome.UNAUTHORIZED, tried=("team-a/hub",))})
    spec = pod_spec(container("web", image), secrets=["hub"])
    decision = validate(request(pod(spec)), DEFAULT, cluster, registry=registry)
    (finding,) = [f for f in decision.findings if f.check == "registry"]
    assert (finding.fix or "").endswith(
        "to replace them: kubectl delete secret hub -n team-a && kubectl create secret "
        "docker-registry hub -n team-a --docker-server=registry.example.com "
        "--docker-username=USER --docker-password=PASSWORD"
    )


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


def test_no_typo_guess_for_a_registry_that_just_served_an_image_of_the_pod() -> None:
    # rev22 F9: icr.io (IBM Cloud Container Registry) is two edits from gcr.io. The pod's
    # first image was served by icr.io in this very review, its second is a tag icr.io says
    # it lacks (listing the tags it has): the registry is real, yet the warning said it
    # "looks like a typo of 'gcr.io'" and its fix moved the image to gcr.io.
    served, missing = "icr.io/team/app:1.0", "icr.io/team/app:1.1"
    registry = FixedRegistry(
        {
            served: Answer(Outcome.FOUND),
            missing: Answer(Outcome.NOT_FOUND, tags=("1.0",), repository_exists=True),
        }
    )
    obj = pod(pod_spec(container("a", served), container("b", missing)))
    decision = validate(request(obj), DEFAULT, cluster_with(), registry=registry)
    assert not any("looks like a typo" in w for w in decision.warnings), decision.warnings
    # The not-found with the registry's tag list proves it alone, without the served image.
    alone = validate(
        request(pod(pod_spec(container("b", missing)))), DEFAULT, cluster_with(), registry=registry
    )
    assert not alone.allowed
    assert not any("looks like a typo" in w for w in alone.warnings), alone.warnings
    # A bare 404 (no tag list, no NAME_UNKNOWN: any web server says that) proves nothing.
    # (icr.io itself is never guessed any more: it is in REAL_REGISTRY_DOMAINS.)
    typo = "qauy.io/team/app:1.1"
    bare = FixedRegistry({typo: Answer(Outcome.NOT_FOUND, "HTTP 404")})
    unproven = validate(
        request(pod(pod_spec(container("b", typo)))), DEFAULT, cluster_with(), registry=bare
    )
    assert any("looks like a typo of 'quay.io'" in w for w in unproven.warnings)


def test_no_typo_guess_for_a_registry_that_answered_with_a_refusal() -> None:
    # rev22 F10: a 401 comes from a registry that resolved, spoke the registry API and
    # asked for a login: the denial said to create a secret for icr.io, and the warning
    # beside it to move the image to gcr.io. Two fixes that contradict each other.
    image = "icr.io/team/app:1.0"
    registry = FixedRegistry({image: Answer(Outcome.UNAUTHORIZED, "HTTP 401")})
    obj = pod(pod_spec(container("a", image)))
    decision = validate(request(obj), DEFAULT, cluster_with(), registry=registry)
    assert "--docker-server=icr.io" in (decision.message or "")
    assert not any("gcr.io" in w for w in decision.warnings), decision.warnings


def test_a_statefulsets_stuck_pod_below_its_partition_gets_the_partition_lowered() -> None:
    """rev22d F4: a pod below a StatefulSet's rollingUpdate partition is made again from the
    old revision; the delete is preceded by the partition lowered to its ordinal, only when
    it is above it (read when the command runs)."""
    read = (
        "kubectl get statefulset/db -n team-a -o "
        "jsonpath='{.spec.updateStrategy.rollingUpdate.partition}'"
    )
    assert remake_stuck_pods("StatefulSet", ["db-2", "db-0"], "team-a", owner="db") == (
        f' && if [ "$({read})" -gt 0 ] 2>/dev/null; then kubectl patch statefulset/db '
        "-n team-a --type=merge -p "
        '\'{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}\'; fi'
        " && kubectl delete pod db-2 db-0 -n team-a"
    )
    # No ordinal of this StatefulSet in the pods' names: no partition step.
    assert lower_partition("db", ["web-0", "db-x"], "team-a") == ""
    assert "partition" not in remake_stuck_pods("ReplicaSet", ["web-0"], "team-a", owner="web")


@pytest.mark.parametrize("manager", ["kubectl-run", "kubectl-client-side-apply"])
def test_a_pod_kubectl_run_makes_gets_a_kubectl_run_with_the_secret(manager: str) -> None:
    """rev22d F5: a Pod made by ``kubectl run`` (its create's field manager) has no manifest:
    its fix is that ``kubectl run`` again with the secret, its args, env, labels and restart
    policy kept (and nothing the API server added, like the token's volumeMount). Any other
    client keeps the manifest's words."""
    made = pod(pod_spec(container("tmp", PORTED)))
    made["metadata"].update(name="tmp", labels={"run": "tmp"})
    app = made["spec"]["containers"][0]
    app.update(
        args=["sleep", "3600"],
        env=[{"name": "MODE", "value": "check"}],
        volumeMounts=[{"name": "kube-api-access-x", "mountPath": "/var/run/secrets"}],
        terminationMessagePath="/dev/termination-log",
    )
    made["spec"]["restartPolicy"] = "Never"
    review = replace(request(made), field_manager=manager)
    registry = FixedRegistry({PORTED: Answer(Outcome.UNAUTHORIZED, "HTTP 401")})
    decision = validate(review, DEFAULT, cluster_with(), registry=registry)
    assert not decision.allowed
    (finding,) = [f for f in decision.findings if f.check == "registry"]
    fix = finding.fix or ""
    if manager != "kubectl-run":
        assert fix.endswith("to the imagePullSecrets in the manifest"), fix
        return
    overrides = {
        "apiVersion": "v1",
        "spec": {
            "containers": [
                {
                    "name": "tmp",
                    "image": PORTED,
                    "args": ["sleep", "3600"],
                    "env": [{"name": "MODE", "value": "check"}],
                }
            ],
            "restartPolicy": "Never",
            "imagePullSecrets": [{"name": "regcred-registry-example-com-5000"}],
        },
    }
    text = json.dumps(overrides, separators=(",", ":"))
    assert fix.endswith(
        "(it was made by a command, with no manifest to edit; its other flags kept as "
        f"overrides): kubectl run tmp -n team-a --image={PORTED} --labels=run=tmp "
        f"--overrides={shlex.quote(text)}"
    ), fix
