"""The pure diagnosis: failing images found from status and events, the kubelet's cause
confirmed or corrected by live findings, and fixes when nothing live speaks."""

from __future__ import annotations

import subprocess
from typing import Any

from tests.unit.builders import cluster_with, container, image_volume, pod, pod_spec, request
from webhook.core.config import load_config_text
from webhook.core.diagnosis import Workload, diagnose, failing_containers, render_text
from webhook.core.findings import Finding
from webhook.core.fixcommands import replace_if_taken
from webhook.core.keyring import Credential
from webhook.core.pullfailure import Cause
from webhook.core.registry import Answer, FixedRegistry, Outcome
from webhook.core.validate import validate

DEFAULT = load_config_text("{}\n")
IMAGE = "registry.example.com/team/app:1.0"
AMBIGUOUS = (
    'failed to pull and unpack image "registry.example.com/team/app:1.0": pull access denied, '
    "repository does not exist or may require authorization"
)


def failing(message: str, reason: str = "ImagePullBackOff", **extra: Any) -> dict[str, Any]:
    obj = pod(pod_spec(container("web", IMAGE), **extra), name="web-1")
    obj["status"] = {
        "containerStatuses": [
            {"name": "web", "state": {"waiting": {"reason": reason, "message": message}}}
        ]
    }
    return obj


def failing_image(image: str, message: str, **extra: Any) -> dict[str, Any]:
    """Pod web-1 whose container "web" of ``image`` is in ImagePullBackOff with ``message``."""
    obj = pod(pod_spec(container("web", image), **extra), name="web-1")
    obj["status"] = {
        "containerStatuses": [
            {
                "name": "web",
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": message}},
            }
        ]
    }
    return obj


def finding(cause: str, problem: str, check: str = "registry") -> Finding:
    return Finding(check, 'container "web"', problem, fix="the fix", cause=cause)


def test_only_images_stuck_on_their_pull_are_diagnosed() -> None:
    running = pod(pod_spec(container("web", IMAGE)))
    running["status"] = {"containerStatuses": [{"name": "web", "state": {"running": {}}}]}
    assert failing_containers(running, []) == []
    crash = failing("back-off restarting", reason="CrashLoopBackOff")
    assert failing_containers(crash, []) == []
    assert [c.name for c, _ in failing_containers(failing(AMBIGUOUS), [])] == ["web"]


def test_an_image_volume_fails_through_its_events() -> None:
    obj = pod(pod_spec(container("web", IMAGE), volumes=[image_volume("models", "m.io/x:1")]))
    events = [
        {
            "reason": "Failed",
            "message": 'Failed to pull image "m.io/x:1": ... m.io/x:1: not found',
            "involvedObject": {"kind": "Pod", "name": "p"},
        }
    ]
    (found,) = diagnose(obj, events, [])
    assert (found.container, found.cause) == ('image volume "models"', Cause.NOT_FOUND)


def test_a_live_finding_of_the_same_cause_confirms() -> None:
    (found,) = diagnose(failing(AMBIGUOUS), [], [finding("unauthorized", "refused")])
    assert (found.cause, found.verdict, found.fixes) == (
        Cause.UNAUTHORIZED,
        "confirmed",
        ["the fix"],
    )


def test_a_live_finding_of_another_cause_corrects() -> None:
    (found,) = diagnose(failing(AMBIGUOUS), [], [finding("not_found", "no repository")])
    assert found.verdict == "corrected"
    assert found.summary.startswith("no repository (the kubelet's text suggested:")


def test_nothing_wrong_now_says_to_retry() -> None:
    (found,) = diagnose(failing(AMBIGUOUS), [], [])
    assert found.verdict == "not confirmed"
    # A bare pod deleted is gone: it is recreated as it is.
    assert (
        "kubectl get pod web-1 -n team-a -o yaml | kubectl replace --force -f -" in found.fixes[0]
    )
    owned = Workload("Deployment", "web")
    (found,) = diagnose(failing(AMBIGUOUS), [], [], workload=owned)
    # The words before the command (after it, bash refuses the line: rev22b).
    assert found.fixes[0].endswith(
        "to retry now (its Deployment makes a new one): kubectl delete pod web-1 -n team-a"
    ), found.fixes


def test_when_the_checks_could_not_run_the_cause_stands_with_its_fix() -> None:
    text = "dial tcp 10.0.0.5:5000: connect: connection refused"
    (found,) = diagnose(failing(text), [], [], live_note="registry: unavailable")
    assert (found.cause, found.verdict) == (Cause.CONNECTION_REFUSED, "not checked")
    assert found.fixes == ["check that the registry registry.example.com is up and listening"]
    report = render_text("web-1", "team-a", [found])
    assert report.splitlines()[0] == "pullguard diagnosed Pod team-a/web-1: 1 image failing to pull"
    assert "  Evidence: pullguard could not re-check: registry: unavailable" in report


# -- issue 22: the kubelet's evidence first, and a command for every cause ------------------


NOT_FOUND_TEXT = (
    'failed to pull and unpack image "registry.example.com/team/app:1.0": failed to resolve '
    'reference "registry.example.com/team/app:1.0": registry.example.com/team/app:1.0: not found'
)
SECRET_EVENT = {
    "reason": "FailedToRetrieveImagePullSecret",
    "message": "Unable to retrieve some image pull secrets (legacy); attempting to pull the "
    "image may not succeed.",
    "involvedObject": {"kind": "Pod", "name": "web-1"},
}


def test_an_unrelated_missing_secret_event_does_not_hide_the_real_cause() -> None:
    (found,) = diagnose(failing(NOT_FOUND_TEXT), [SECRET_EVENT], [])
    assert found.cause is Cause.NOT_FOUND
    # With a refusal, the missing secret is the explanation.
    (refused,) = diagnose(failing("401 Unauthorized"), [SECRET_EVENT], [])
    assert refused.cause is Cause.SECRET_MISSING


def test_advice_never_overwrites_a_definite_cause_nor_its_fix() -> None:
    advice = Finding(
        "registry",
        'container "web"',
        "pullguard could not reach registry registry.example.com: timed out",
        cause="timeout",
        advisory=True,
    )
    latest = Finding("pullPolicy", 'container "web"', ":latest advice", fix="pin a tag")
    (found,) = diagnose(failing(NOT_FOUND_TEXT), [], [advice, latest])
    assert found.cause is Cause.NOT_FOUND
    assert found.verdict == "not confirmed"
    assert found.summary.startswith("the image does not exist")
    assert found.fixes == [
        "push registry.example.com/team/app:1.0, or use an image that exists: "
        "kubectl set image pod/web-1 web=IMAGE -n team-a"
    ]
    assert "pullguard now (advice): pullguard could not reach registry" in " ".join(found.evidence)


def test_a_correction_settles_the_cause_the_grouping_uses() -> None:
    (found,) = diagnose(failing(AMBIGUOUS), [], [finding("not_found", "no repository")])
    assert (found.verdict, found.cause) == ("corrected", Cause.NOT_FOUND)


def test_a_rate_limit_ends_with_the_login_on_the_service_account() -> None:
    owned = Workload("Deployment", "web", "builder", ("regcred",))
    hub = failing_image("nginx:1.25", "429 Too Many Requests: toomanyrequests")
    (found,) = diagnose(hub, [], [], workload=owned)
    (fix,) = found.fixes
    assert (
        "kubectl create secret docker-registry dockerhub -n team-a "
        "--docker-server=https://index.docker.io/v1/" in fix
    )
    assert (
        "kubectl patch serviceaccount builder -n team-a --type=merge "
        '-p \'{"imagePullSecrets":[{"name":"regcred"},{"name":"dockerhub"}]}\'' in fix
    )


def test_a_host_typo_sets_the_suggested_image_on_the_owner() -> None:
    typo = Finding(
        "registry",
        'container "web"',
        "pullguard could not reach registry registry.exmaple.com: DNS name not found",
        fix="use image 'registry.example.com/team/app:1.0' if that was meant",
        cause="dns",
        advisory=True,
    )
    owned = Workload("Deployment", "web")
    (found,) = diagnose(failing("dial tcp: lookup x: no such host"), [], [typo], workload=owned)
    assert found.fixes == [
        "use image 'registry.example.com/team/app:1.0': kubectl set image deployment/web "
        "web=registry.example.com/team/app:1.0 -n team-a"
    ]


def test_a_platform_finding_without_placement_gets_no_patch_parsed_from_its_words() -> None:
    """Issue 22 review 7: the platform was once parsed out of the problem text ("has
    linux/arm64"), and a patch to it printed, though no node of the cluster has that
    platform. The check's placement is the only source of a patch."""
    platform = Finding(
        "platform",
        'container "web"',
        "image 'x' has linux/arm64 only; this pod can only run on linux/amd64 nodes",
        fix="push a build of the image for linux/amd64 (the platform of the nodes it can run "
        "on), or use an image that has one (a multi-platform build); the image has a build "
        "for no platform of the cluster's nodes (they are linux/amd64)",
        cause="platform",
    )
    owned = Workload("Deployment", "web")
    (found,) = diagnose(
        failing("no match for platform in manifest"), [], [platform], workload=owned
    )
    assert found.fixes == [platform.fix]
    assert "kubectl patch" not in found.fixes[0]


def test_a_bare_pod_is_never_told_to_edit_its_pull_secrets() -> None:
    refused = Finding(
        "registry",
        'container "web"',
        "refused anonymously",
        fix="kubectl create secret docker-registry regcred-x -n team-a --docker-server=x "
        "--docker-username=USER --docker-password=PASSWORD, then add {name: regcred-x} to the "
        "imagePullSecrets in the manifest",
        cause="unauthorized",
    )
    (found,) = diagnose(failing("401 Unauthorized", secrets=["old"]), [], [refused])
    (fix,) = found.fixes
    edit = (
        "kubectl patch pod web-1 -n team-a --type=merge --dry-run=client -o yaml -p "
        '\'{"spec":{"imagePullSecrets":[{"name":"old"},{"name":"regcred-x"}]}}\''
    )
    assert fix.endswith(
        "--docker-password=PASSWORD --dry-run=client -o yaml | kubectl apply -f - "
        f"&& {replace_if_taken(edit)}"
    )


def test_a_near_tag_is_set_on_the_pod_as_a_command() -> None:
    near = Finding(
        "registry",
        'container "web"',
        "no tag",
        fix="use tag '1.1' if that was meant, or push '1.0' first",
        cause="not_found",
    )
    (found,) = diagnose(failing(NOT_FOUND_TEXT), [], [near], workload=Workload("Deployment", "web"))
    assert found.fixes == [
        "use tag '1.1' if that was meant, or push '1.0' first: kubectl set image deployment/web "
        "web=registry.example.com/team/app:1.1 -n team-a"
    ]


# -- the outside review of issue 22 -----------------------------------------------------------


REFUSED = Finding(
    "registry",
    'container "web"',
    "refused anonymously",
    fix="kubectl create secret docker-registry regcred-registry-example-com -n team-a "
    "--docker-server=registry.example.com --docker-username=USER --docker-password=PASSWORD, "
    "then add {name: regcred-registry-example-com} to the imagePullSecrets in the manifest",
    cause="unauthorized",
)


def test_a_secret_already_in_the_namespace_is_only_patched_in() -> None:
    """A secret of the generated name, made for another workload: ``kubectl create`` would
    fail with "already exists" and ``&&`` would skip the patch; only the patch is printed."""
    theirs = Credential(
        "registry.example.com", "u", "p", source="team-a/regcred-registry-example-com"
    )
    owned = Workload("Deployment", "web")
    for live, note in (([REFUSED], ""), ([], "registry: unavailable")):
        (found,) = diagnose(
            failing("401 Unauthorized"),
            [],
            live,
            live_note=note,
            workload=owned,
            namespace_credentials=[theirs],
        )
        (fix,) = found.fixes
        assert "kubectl create" not in fix
        assert fix == (
            'imagePullSecret "regcred-registry-example-com" in namespace team-a already covers '
            f"{IMAGE}: kubectl patch deployment/web -n team-a --type=strategic -p "
            '\'{"spec":{"template":{"spec":{"imagePullSecrets":'
            '[{"name":"regcred-registry-example-com"}]}}}}\''
        )


def test_a_create_chained_before_a_patch_succeeds_when_the_name_exists() -> None:
    """No secret covers the image: the create is idempotent, so the patch behind it runs."""
    other = Credential("other.example.com", "u", "p", source="team-a/other")
    for live, note in (([REFUSED], ""), ([], "registry: unavailable")):
        (found,) = diagnose(
            failing("401 Unauthorized"),
            [],
            live,
            live_note=note,
            workload=Workload("Deployment", "web"),
            namespace_credentials=[other],
        )
        (fix,) = found.fixes
        create, _, patch = fix.partition(" && ")
        assert create.startswith("kubectl create secret docker-registry regcred-registry")
        assert create.endswith("--dry-run=client -o yaml | kubectl apply -f -")
        assert patch.startswith("kubectl patch deployment/web -n team-a")


def test_a_platform_failure_with_nothing_known_prints_no_placeholder_command() -> None:
    """kubectl accepts ``"kubernetes.io/arch":"ARCH"``, and the pods never schedule."""
    for workload, where in (
        (None, "on the pod"),
        (Workload("Deployment", "web"), "in the pod template"),
    ):
        (found,) = diagnose(failing("no match for platform in manifest"), [], [], workload=workload)
        (fix,) = found.fixes
        assert "ARCH" not in fix and "kubectl" not in fix
        assert f"set nodeSelector kubernetes.io/arch (and kubernetes.io/os) {where}" in fix


# -- issue 22 review (rev22) item 2: each owner's fix as the API server takes it ------------


def _fix_for(workload: Workload, message: str = "401 Unauthorized", **extra: Any) -> str:
    (found,) = diagnose(
        failing(message, **extra), [], [], live_note="registry: unavailable", workload=workload
    )
    (fix,) = found.fixes
    return fix


def test_a_jobs_pod_recreates_the_job_its_template_being_immutable() -> None:
    fix = _fix_for(Workload("Job", "migrate"))
    assert "kubectl patch job/migrate -n team-a --type=strategic --dry-run=client" in fix
    assert fix.endswith("| kubectl replace --force -f -"), fix
    assert '"selector":null' in fix and '"controller-uid":null' in fix


def test_owners_that_keep_their_pods_get_the_pod_deleted_after_the_patch() -> None:
    for kind in ("ReplicaSet", "StatefulSet", "ReplicationController"):
        fix = _fix_for(Workload(kind, "web"))
        assert fix.endswith(" && kubectl delete pod web-1 -n team-a"), fix
    assert "kubectl delete pod" not in _fix_for(Workload("Deployment", "web"))


def test_a_custom_resources_pod_gets_words_and_no_kubectl_command() -> None:
    owner = Workload("TaskRun", "build-1")
    for message in ("401 Unauthorized", NOT_FOUND_TEXT):
        fix = _fix_for(owner, message)
        assert "taskrun/" not in fix and "TaskRun build-1" in fix, fix


def test_the_never_pull_fix_patches_the_container_by_its_name() -> None:
    message = f'Container image "{IMAGE}" is not present with pull policy of Never'
    fix = _fix_for(Workload("Deployment", "web"), message, reason="ErrImageNeverPull")
    assert "--type=strategic" in fix and "/containers/" not in fix, fix
    assert '{"containers":[{"name":"web","imagePullPolicy":"IfNotPresent"}]}' in fix, fix


# -- the third outside review of issue 22 (rev22): the kubelet's cause first ------------------


TLS_TEXT = (
    f'rpc error: code = Unknown desc = failed to pull and unpack image "{IMAGE}": failed to '
    f'resolve reference "{IMAGE}": failed to do request: Head '
    '"https://registry.example.com/v2/team/app/manifests/1.0": tls: failed to verify '
    "certificate: x509: certificate signed by unknown authority"
)

#: What the live registry check says when pullguard (trusting the CA) is refused anonymously.
REFUSED_ANONYMOUSLY = Finding(
    "registry",
    'container "web"',
    "registry registry.example.com refused to serve 'registry.example.com/team/app:1.0' "
    "anonymously (the pod has no imagePullSecret for it; the image is private or does not "
    "exist); the kubelet will get the same answer",
    fix="kubectl create secret docker-registry regcred-registry-example-com -n team-a ...",
    cause="unauthorized",
)


def test_a_live_refusal_does_not_replace_the_kubelets_tls_failure() -> None:
    """rev22 F1: the node never finished the handshake; pullguard (trusting the CA) was
    refused. A pull secret does not get the node past TLS: the CA fix comes first, the
    refusal's fix is the second step, and ``--all`` groups the pod under tls."""
    (found,) = diagnose(failing(TLS_TEXT), [], [REFUSED_ANONYMOUSLY])
    assert found.cause is Cause.TLS, found.summary
    assert found.summary == "the registry's TLS certificate is not trusted by the node"
    ca, then = found.fixes
    assert ca.startswith("give the nodes the registry's CA"), found.fixes
    assert then.startswith("then, ") and "kubectl create secret" in then, found.fixes


def test_a_live_refusal_does_not_replace_the_kubelets_not_found() -> None:
    """rev22 F2: containerd's "not found" is the registry's 404 to a request that passed its
    login (with credentials pullguard cannot see): the tag is missing, a secret will not
    create it. The refusal is evidence only."""
    (found,) = diagnose(failing(NOT_FOUND_TEXT), [], [REFUSED_ANONYMOUSLY])
    assert found.cause is Cause.NOT_FOUND, found.summary
    assert not any("create secret" in fix for fix in found.fixes), found.fixes
    assert found.fixes[0].startswith(f"push {IMAGE}, or use an image that exists")
    assert any("refused to serve" in e for e in found.evidence), found.evidence


RATE_LIMITED = (
    "429 Too Many Requests - Server message: toomanyrequests: You have reached your pull "
    "rate limit."
)


def test_a_rate_limit_fix_reaches_a_pod_that_lists_its_own_secrets() -> None:
    """rev22 F9: the API server adds a ServiceAccount's secrets only to a pod that lists
    none; a pod (template) with its own list gets ``dockerhub`` in that list."""
    owned = Workload("Deployment", "web", "default", ())
    hub = failing_image("nginx:1.25", RATE_LIMITED, secrets=["noport"])
    (found,) = diagnose(hub, [], [], workload=owned)
    (fix,) = found.fixes
    assert "kubectl patch serviceaccount" not in fix, fix
    assert (
        "kubectl patch deployment/web -n team-a --type=strategic -p "
        '\'{"spec":{"template":{"spec":{"imagePullSecrets":'
        '[{"name":"noport"},{"name":"dockerhub"}]}}}}\'' in fix
    ), fix
    # A bare pod's list came with it (its account's, copied at creation): recreated with it.
    (bare,) = diagnose(failing_image("nginx:1.25", RATE_LIMITED, secrets=["regcred"]), [], [])
    assert '"imagePullSecrets":[{"name":"regcred"},{"name":"dockerhub"}]' in bare.fixes[0]
    assert "| kubectl replace --force -f -" in bare.fixes[0]


def test_a_rate_limit_login_on_the_service_account_recreates_the_pods() -> None:
    """The account's list reaches only pods created after the patch."""
    owned = Workload("Deployment", "web", "builder", ("regcred",))
    hub = failing_image("nginx:1.25", RATE_LIMITED, secrets=["regcred"])
    (found,) = diagnose(hub, [], [], workload=owned)
    (fix,) = found.fixes
    assert "kubectl patch serviceaccount builder -n team-a" in fix, fix
    # Then the pods recreated, chained: words between two commands ("; then recreate the
    # pods: ...") made bash refuse the whole line (rev22 F12: a fix runs as printed).
    assert fix.endswith(
        """-p '{"imagePullSecrets":[{"name":"regcred"},{"name":"dockerhub"}]}' """
        "&& kubectl rollout restart deployment/web -n team-a"
    ), fix


def test_a_failing_pull_from_ecr_starts_with_the_nodes_pull_rights() -> None:
    """rev22 F3 in diagnose: the pod fails, so the nodes' own login did not serve it; the
    fix is the node role's rights, then a secret with ECR's real login."""
    image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:1.0"
    obj = pod(pod_spec(container("web", image)), name="web-1")
    obj["status"] = {
        "containerStatuses": [
            {
                "name": "web",
                "state": {"waiting": {"reason": "ErrImagePull", "message": "401 Unauthorized"}},
            }
        ]
    }
    (found,) = diagnose(
        obj, [], [], live_note="registry: unavailable", workload=Workload("Deployment", "web")
    )
    (fix,) = found.fixes
    assert fix.startswith("give the node IAM role pull access to the repository"), fix
    assert '--docker-username=AWS --docker-password="$(aws ecr get-login-password' in fix
    assert fix.endswith(
        "kubectl patch deployment/web -n team-a --type=strategic -p "
        + (
            '\'{"spec":{"template":{"spec":{"imagePullSecrets":'
            '[{"name":"regcred-123456789012-dkr-ecr-eu-west-1-amazonaws-com"}]}}}}\''
        )
    )


def test_a_docker_hub_short_names_secret_fix_is_for_docker_hub() -> None:
    # rev22 F13: a Deployment's pod of acme/private-app:1.0 (Docker Hub, org "acme")
    # refused, and the live re-check could not run. The fix's host was the image's text
    # before its first "/": `kubectl create secret docker-registry regcred-acme
    # --docker-server=acme ...`, a secret the kubelet never matches to a docker.io pull.
    # The host is the reference parser's (the DNS, TLS and connection fixes name it too).
    image = "acme/private-app:1.0"
    text = (
        'failed to pull and unpack image "docker.io/acme/private-app:1.0": failed to resolve '
        'reference "docker.io/acme/private-app:1.0": unexpected status from HEAD request to '
        "https://registry-1.docker.io/v2/acme/private-app/manifests/1.0: 401 Unauthorized"
    )
    (found,) = diagnose(
        failing_image(image, text),
        [],
        [],
        live_note="registry: unavailable",
        workload=Workload("Deployment", "web"),
    )
    (fix,) = found.fixes
    assert "--docker-server=acme " not in fix, fix
    assert "docker.io" in fix, fix


RATE_LIMITED_AT = (
    'failed to pull and unpack image "{image}": failed to copy: httpReadSeeker: failed open: '
    "unexpected status code https://{api}/v2/team/app/manifests/sha256:abc: 429 Too Many "
    "Requests - Server message: toomanyrequests: retry-after: 0"
)


def test_a_rate_limit_on_another_registry_gets_no_docker_hub_login() -> None:
    # rev22 F11: ghcr.io (or quay.io, registry.k8s.io, a company registry) answering 429:
    # the fix created a Docker Hub secret (--docker-server=https://index.docker.io/v1/) on
    # the ServiceAccount, which the kubelet never sends to ghcr.io. The login is ghcr.io's.
    image = "ghcr.io/team/app:1.0"
    obj = failing_image(image, RATE_LIMITED_AT.format(image=image, api="ghcr.io"))
    (found,) = diagnose(obj, [], [], workload=Workload("Deployment", "web"))
    (fix,) = found.fixes
    assert "index.docker.io" not in fix, fix
    assert "--docker-server=ghcr.io " in fix, fix
    assert fix.endswith(
        """-p '{"spec":{"template":{"spec":{"imagePullSecrets":[{"name":"regcred-ghcr-io"}]}}}}'"""
    ), fix


def test_a_docker_hub_rate_limit_confirmed_live_still_ends_with_the_command() -> None:
    # rev22 F12, issue 22 item 3: a rate limit's fix is the Docker Hub secret attached to the
    # ServiceAccount (or a mirror). That is what diagnose prints when it could not re-check;
    # when pullguard's own HEAD is rate limited too (the usual case: one NAT address for
    # the cluster), the live finding confirms and its words replace the command:
    # "pull through a mirror (mirrors in the pullguard config), or authenticate the pulls
    # with an imagePullSecret". Nothing to run.
    image = "nginx:1.25"
    text = RATE_LIMITED_AT.format(image="docker.io/library/nginx:1.25", api="registry-1.docker.io")
    obj = failing_image(image, text)
    registry = FixedRegistry({"docker.io/library/nginx:1.25": Answer(Outcome.RATE_LIMITED)})
    live = validate(request(obj), DEFAULT, cluster_with(), registry=registry).findings
    (found,) = diagnose(obj, [], live, workload=Workload("Deployment", "web"))
    assert found.verdict == "confirmed"
    (fix,) = found.fixes
    assert "--docker-server=https://index.docker.io/v1/" in fix, fix
    assert fix.endswith("&& kubectl rollout restart deployment/web -n team-a"), fix


def test_a_mirrored_pods_set_image_fix_keeps_the_image_as_the_user_wrote_it() -> None:
    # rev22 F14: a Deployment's pod of nginx:1.2, rewritten by the webhook to the Docker Hub
    # mirror. The live finding names the image as written ('nginx:1.2', tags include
    # '1.25'), but the fix sets the mirror's reference on the Deployment:
    # `kubectl set image deployment/web web=mirror.example.com/library/nginx:1.25`. The
    # template then names the mirror itself: pullguard no longer falls back to docker.io
    # when the mirror is down (README "Mirrors"), a mirror removed from the configuration
    # still gets the pulls, and the manifest in git no longer matches. The tag meant is to
    # be set on the image as written: web=nginx:1.25 (the webhook rewrites it again).
    import jsonpatch

    from webhook.core.mutate import mutate

    config = load_config_text("mirrors: [{registry: docker.io, mirror: mirror.example.com}]\n")
    written = pod(pod_spec(container("web", "nginx:1.2")), name="web-1")
    patch = mutate(request(written), config, cluster_with()).patch
    obj = jsonpatch.apply_patch(written, patch)
    image = obj["spec"]["containers"][0]["image"]
    assert image == "mirror.example.com/library/nginx:1.2"
    obj["status"] = {
        "containerStatuses": [
            {
                "name": "web",
                "state": {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": f"rpc error: code = NotFound desc = failed to pull and unpack "
                        f'image "{image}": failed to resolve reference "{image}": {image}: not '
                        "found",
                    }
                },
            }
        ]
    }
    missing = Answer(Outcome.NOT_FOUND, tags=("1.25",), repository_exists=True)
    registry = FixedRegistry({image: missing, "docker.io/library/nginx:1.2": missing})
    live = validate(request(obj), config, cluster_with(), registry=registry, existing=True).findings
    (found,) = diagnose(obj, [], live, workload=Workload("Deployment", "web"))
    assert any("nginx:1.25" in fix for fix in found.fixes), found.fixes
    assert not any("mirror.example.com" in fix for fix in found.fixes), found.fixes


def test_a_debugged_bare_pods_retry_drops_its_ephemeral_containers() -> None:
    # rev22 F1, the retry route: `kubectl get pod -o yaml | kubectl replace --force` of a
    # pod with a kubectl debug container deletes it, and the create is refused.
    obj = failing(AMBIGUOUS)
    obj["spec"]["ephemeralContainers"] = [{"name": "debugger", "image": "busybox"}]
    (found,) = diagnose(obj, [], [])
    edit = (
        "kubectl patch pod web-1 -n team-a --type=merge --dry-run=client -o "
        """yaml -p '{"spec":{"ephemeralContainers":null}}'"""
    )
    assert found.fixes[0].endswith(f"to retry now: {replace_if_taken(edit)}"), found.fixes


def _bash_parses(fix: str) -> str:
    """The fix from its first ``kubectl`` to the end, as a person pastes it: what ``bash -n``
    (parse only, nothing run) says of it, empty when it parses."""
    command = fix[fix.index("kubectl") :]
    done = subprocess.run(
        ["bash", "-n", "-c", command], capture_output=True, text=True, check=False
    )
    return done.stderr


def test_a_retry_runs_as_printed_for_every_owner() -> None:
    """rev22b: ``kubectl delete pod P -n NS (its ReplicaSet makes a new one)``, printed at the
    end of the Docker Hub rate limit's fix (and of the retry after "nothing wrong now") for an
    owner without a rollout, is a bash syntax error: nothing runs, not the secret's create.
    The words go before the colon, the command is runnable as printed."""
    for kind in ("ReplicaSet", "ReplicationController", "Job", "Deployment", "TaskRun"):
        owned = Workload(kind, "web")
        (limited,) = diagnose(failing_image("nginx:1.25", RATE_LIMITED), [], [], workload=owned)
        (retried,) = diagnose(failing(AMBIGUOUS), [], [], workload=owned)
        for fix in (*limited.fixes, *retried.fixes):
            assert not _bash_parses(fix), (kind, fix, _bash_parses(fix))
        assert retried.fixes[0].endswith("kubectl delete pod web-1 -n team-a"), retried.fixes
    (limited,) = diagnose(
        failing_image("nginx:1.25", RATE_LIMITED), [], [], workload=Workload("ReplicaSet", "web")
    )
    assert limited.fixes[0].endswith("&& kubectl delete pod web-1 -n team-a"), limited.fixes


def test_a_paused_deployments_fix_resumes_it() -> None:
    """rev22b F6: a paused Deployment rolls out no template change; the printed set image
    alone left its pod pulling the missing tag. The fix resumes it, and says why."""
    near = Finding(
        "registry",
        'container "web"',
        "no tag",
        fix="use tag '1.1' if that was meant, or push '1.0' first",
        cause="not_found",
    )
    paused = Workload("Deployment", "web", paused=True)
    (found,) = diagnose(failing(NOT_FOUND_TEXT), [], [near], workload=paused)
    assert found.fixes == [
        "use tag '1.1' if that was meant, or push '1.0' first: kubectl set image deployment/web "
        "web=registry.example.com/team/app:1.1 -n team-a "
        "&& kubectl rollout resume deployment/web -n team-a"
    ]
    assert any("Deployment web is paused" in e for e in found.evidence), found.evidence
    # A rate limit's account fix restarts the pods: a paused Deployment refuses a restart.
    limited = diagnose(
        failing_image("nginx:1.25", "429 Too Many Requests toomanyrequests"),
        [],
        [],
        workload=paused,
    )
    (fix,) = limited[0].fixes
    assert fix.endswith(
        "kubectl rollout resume deployment/web -n team-a "
        "&& kubectl rollout restart deployment/web -n team-a"
    ), fix


def test_escape_sequences_in_the_kubelets_words_are_never_shown() -> None:
    """rev20d F9: the runtime passes a registry's status line on, escape sequences and all,
    into the waiting message and the Events; the report shows them as spaces."""
    from webhook.core.diagnosis import render_text

    image = "r.example.com/team/app:1.0"
    evil = (
        f'Failed to pull image "{image}": 500 \x1b]0;pwned\x07 \x1b[2J\x1b[31mred \x9b31m ünïcode'
    )
    pod = {
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {"containers": [{"name": "web", "image": image}]},
        "status": {
            "containerStatuses": [
                {"name": "web", "state": {"waiting": {"reason": "ErrImagePull", "message": evil}}}
            ]
        },
    }
    events = [
        {
            "reason": "Failed",
            "message": evil,
            "involvedObject": {"fieldPath": "spec.containers{web}"},
        }
    ]
    report = render_text("web", "team-a", diagnose(pod, events, []))
    assert not [c for c in report if (ord(c) < 32 and c != "\n") or 127 <= ord(c) <= 159], report
    assert "pwned" in report and "ünïcode" in report
