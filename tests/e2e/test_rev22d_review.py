"""Outside review rev22d of issue 22 (the words: messages, fixes, diagnose, audit, check).

Each test is a finding: a fix pullguard prints, run exactly as printed (placeholders USER and
PASSWORD filled in) against the real API server with kube-controller-manager, that does not
give the pod what it needs, or that destroys what the person had. There is no kubelet: pods
are marked as a kubelet would (see tests/e2e/test_diagnose_audit.py)."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

import pytest

from tests.e2e.cluster import ControlPlane, wait_for
from tests.e2e.conftest import E2ERegistries, pull_secret
from tests.e2e.test_decisions import wait_for_mode
from tests.e2e.test_diagnose_audit import (
    CONTAINERD_AMBIGUOUS,
    _fix,
    _owned_pod,
    audit_fix,
    failing_pod,
    fix_lines,
    mark_failing,
    off,
    run_printed,
)
from tests.e2e.test_rev22b_review import debug_fix
from tests.e2e.test_rev22c_review import pods_list_the_secret, secret_of
from tests.integration.registries import push_image

pytestmark = pytest.mark.e2e


def _images(registries: E2ERegistries) -> tuple[str, str]:
    """(a private debug image, a public app image), both pushed."""
    push_image(registries.private, "team/r22d-debug", "1.0")
    push_image(registries.public, "team/r22d-app", "1.0")
    return (
        f"{registries.private.host}/team/r22d-debug:1.0",
        f"{registries.public.host}/team/r22d-app:1.0",
    )


def _job(name: str, ns: str, image: str, **spec: Any) -> str:
    template: dict[str, Any] = {
        "spec": {"restartPolicy": "Never", "containers": [{"name": "app", "image": image}]}
    }
    if "labels" in spec:
        template["metadata"] = {"labels": spec.pop("labels")}
    return json.dumps(
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"template": template, **spec},
        }
    )


def test_rev22d_debug_fix_on_a_manual_selector_jobs_pod_keeps_the_job(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: ``kubectl debug`` of a pod of a Job with ``manualSelector: true`` (its own
    selector and labels, as the Job docs show for adopting pods) and a private debug image is
    denied with "recreate Job mig ...: kubectl patch job/mig ... -p
    '{"spec":{"template":{...,"metadata":{"labels":{"controller-uid":null,...}}},
    "selector":null}}' | kubectl replace --force -f -". fixcommands.recreate_job always sets
    ``selector`` to null; a Job with ``manualSelector: true`` must have one, so the create
    is refused ("spec.selector: Required value") after ``replace --force`` has deleted the
    Job: run as printed, Job mig is gone, with its pods, and nothing runs again.
    Expected: after the printed fix, Job mig exists and a pod of it lists the secret."""
    private, public = _images(registries)
    wait_for_mode(plane, ns, "enforce")
    plane.apply(
        _job(
            "mig",
            ns,
            public,
            manualSelector=True,
            selector={"matchLabels": {"run": "mig"}},
            labels={"run": "mig"},
        ),
        check=True,
    )
    name = _owned_pod(plane, ns, "run=mig")
    fix = debug_fix(plane, ns, name, private)
    create, then = fix.split(", then ", 1)
    run_printed(plane, create, USER="user", PASSWORD="pass")
    try:
        run_printed(plane, then)
    finally:
        assert plane.kubectl("get", "job", "mig", "-n", ns).ok, (
            f"the printed fix deleted Job mig and did not create it again:\n{fix}"
        )
    wait_for(
        lambda: pods_list_the_secret(plane, ns, "run=mig", secret_of(fix)),
        20,
        "a pod of Job mig that lists the secret",
    )


def test_rev22d_debug_fix_on_a_paused_deployment_keeps_the_templates_other_secrets(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: a Deployment paused (``kubectl rollout pause``) while its template is changed,
    as the pause is meant for: a second pull secret ``mirror-cred`` is added to the template
    (``kubectl patch deployment/web --type=strategic``). Its running pod still lists only
    what the old template had. ``kubectl debug`` of that pod with a private image is denied
    with "kubectl patch deployment/web -n NS --type=merge -p
    '{"spec":{"paused":false,"template":{"spec":{"imagePullSecrets":[...the pod's...]}}}}'":
    a merge patch sets the list whole, from the pod's list, so run as printed it drops
    ``mirror-cred`` from the template and resumes the rollout without it.
    Expected: after the printed fix the template lists both ``mirror-cred`` and the new
    secret (a strategic patch merges by name; or the words say what is removed)."""
    private, public = _images(registries)
    wait_for_mode(plane, ns, "enforce")
    plane.kubectl("create", "deployment", "web", "-n", ns, f"--image={public}", check=True)
    name = _owned_pod(plane, ns, "app=web")
    plane.kubectl("rollout", "pause", "deployment/web", "-n", ns, check=True)
    plane.kubectl(
        "create", "secret", "generic", "mirror-cred", "-n", ns, "--from-literal=a=b", check=True
    )
    added = {"spec": {"template": {"spec": {"imagePullSecrets": [{"name": "mirror-cred"}]}}}}
    plane.kubectl(
        "patch",
        "deployment/web",
        "-n",
        ns,
        "--type=strategic",
        "-p",
        json.dumps(added),
        check=True,
    )
    fix = debug_fix(plane, ns, name, private, target="r22d-app")
    create, then = fix.split(", then ", 1)
    run_printed(plane, create, USER="user", PASSWORD="pass")
    run_printed(plane, then)
    spec = plane.get_json("deployment", "web", "-n", ns)["spec"]["template"]["spec"]
    listed = spec.get("imagePullSecrets") or []
    assert {"name": secret_of(fix)} in listed, fix
    assert {"name": "mirror-cred"} in listed, (
        f"the printed fix removed secret mirror-cred from the paused Deployment's template "
        f"(now {listed}) and resumed it:\n{fix}"
    )


def test_rev22d_diagnose_fix_of_a_manual_selector_jobs_pod_keeps_the_job(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: ``pullguard diagnose`` of a refused pod of a Job with ``manualSelector: true``
    prints the same recreate (fixcommands.recreate_job, shared since c20a7c3): ``... "selector":
    null}}' | kubectl replace --force -f -``. Run as printed, the delete succeeds and the
    create is refused (the Job's selector is required when manualSelector is true): Job mig
    is gone.
    Expected: after the printed fix, Job mig exists and its pods list secret ``good``."""
    off(plane, ns)
    push_image(registries.private, "team/r22d-job", "1.0")
    plane.apply(pull_secret("good", ns, registries.private.host), check=True)
    image = f"{registries.private.host}/team/r22d-job:1.0"
    plane.apply(
        _job(
            "mig",
            ns,
            image,
            manualSelector=True,
            selector={"matchLabels": {"run": "mig"}},
            labels={"run": "mig"},
        ),
        check=True,
    )
    name = _owned_pod(plane, ns, "run=mig")
    mark_failing(plane, ns, name, image, CONTAINERD_AMBIGUOUS.format(image=image))
    fix = _fix(plane, registries, ns, name)
    try:
        run_printed(plane, fix)
    finally:
        assert plane.kubectl("get", "job", "mig", "-n", ns).ok, (
            f"diagnose's printed fix deleted Job mig and did not create it again:\n{fix}"
        )
    wait_for(
        lambda: pods_list_the_secret(plane, ns, "run=mig", "good"),
        20,
        "a pod of Job mig that lists secret good",
    )


def test_a_job_recreate_the_api_server_would_refuse_deletes_nothing(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """rev22d F1, held further: the Job's recreate asks a server-side dry run of the create
    first. ``diagnose`` of a refused pod of Job mig (private image, no secret, made while
    admission was off) prints the secret's create and the recreate; run with the password
    mistyped once admission is on again, pullguard refuses the new Job (the registry
    refuses those credentials): the command fails before its ``replace --force``, and Job
    mig is still the one it was (same uid)."""
    off(plane, ns)
    push_image(registries.private, "team/r22d-job", "1.0")
    image = f"{registries.private.host}/team/r22d-job:1.0"
    plane.apply(_job("mig", ns, image), check=True)
    name = _owned_pod(plane, ns, "job-name=mig")
    uid = plane.get_json("job", "mig", "-n", ns)["metadata"]["uid"]
    mark_failing(plane, ns, name, image, CONTAINERD_AMBIGUOUS.format(image=image))
    fix = _fix(plane, registries, ns, name)
    assert "USER" in fix and "PASSWORD" in fix, fix
    plane.kubectl("label", "namespace", ns, "pullguard.io/mode-", check=True)
    wait_for_mode(plane, ns, "enforce")
    command = fix[fix.index("kubectl") :].replace("USER", "user").replace("PASSWORD", "typo")
    done = subprocess.run(
        ["bash", "-c", command],
        env={**os.environ, "KUBECONFIG": str(plane.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0, f"the recreate of a Job pullguard refuses succeeded:\n{fix}"
    job = plane.kubectl("get", "job", "mig", "-n", ns, "-o", "jsonpath={.metadata.uid}")
    assert job.ok and job.stdout == uid, f"the printed fix deleted Job mig:\n{fix}"


def test_a_bare_pod_recreate_the_api_server_would_refuse_deletes_nothing(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """The same for a bare pod: ``diagnose``'s recreate with a mistyped password, once
    admission is on, is refused by the server-side dry run and the pod stays (same uid)."""
    off(plane, ns)
    push_image(registries.private, "team/r22d-bare", "1.0")
    image = f"{registries.private.host}/team/r22d-bare:1.0"
    failing_pod(plane, ns, "bare", image, CONTAINERD_AMBIGUOUS.format(image=image))
    uid = plane.get_json("pod", "bare", "-n", ns)["metadata"]["uid"]
    fix = _fix(plane, registries, ns, "bare")
    assert "kubectl replace --force -f -" in fix, fix
    plane.kubectl("label", "namespace", ns, "pullguard.io/mode-", check=True)
    wait_for_mode(plane, ns, "enforce")
    command = fix[fix.index("kubectl") :].replace("USER", "user").replace("PASSWORD", "typo")
    done = subprocess.run(
        ["bash", "-c", command],
        env={**os.environ, "KUBECONFIG": str(plane.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0, f"the recreate of a pod pullguard refuses succeeded:\n{fix}"
    kept = plane.kubectl("get", "pod", "bare", "-n", ns, "-o", "jsonpath={.metadata.uid}")
    assert kept.ok and kept.stdout == uid, f"the printed fix deleted pod bare:\n{fix}"


def _cronjob(name: str, ns: str, image: str, args: list[str]) -> str:
    return json.dumps(
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "schedule": "0 0 1 1 *",
                "suspend": True,
                "jobTemplate": {
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [{"name": "app", "image": image, "args": args}],
                            }
                        }
                    }
                },
            },
        }
    )


def test_rev22d_debug_fix_on_a_dated_job_does_not_replace_it_with_a_cronjobs_run(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: a person's one-off Job ``migrate-20261204`` (a date in its name: eight digits,
    args ``--to=v42``) in a namespace that also has a CronJob ``migrate`` (the nightly
    ``--check``). ``kubectl debug`` of its pod with a private image is denied with "add ... to
    the pod template of CronJob migrate, which Job migrate-20261204's name says made it ...:
    kubectl patch cronjob/migrate ... && kubectl delete job migrate-20261204 -n NS &&
    kubectl create job migrate-20261204 --from=cronjob/migrate -n NS || ...". cronjob_of
    guesses from the name alone; the Job's ownerReferences (no CronJob) are not consulted by
    the command. Run as printed: the person's Job is deleted and a Job of the CronJob's
    template (``--check``) is made under its name; the migration to v42 never runs again,
    and the CronJob's template was changed for a Job it never made.
    Expected: after the printed fix, Job migrate-20261204 still runs ``--to=v42`` and a pod
    of it lists the secret (the CronJob branch only for a Job a CronJob owns)."""
    private, public = _images(registries)
    wait_for_mode(plane, ns, "enforce")
    plane.apply(_cronjob("migrate", ns, public, ["--check"]), check=True)
    job = json.loads(_job("migrate-20261204", ns, public))
    job["spec"]["template"]["spec"]["containers"][0]["args"] = ["--to=v42"]
    plane.apply(json.dumps(job), check=True)
    name = _owned_pod(plane, ns, "job-name=migrate-20261204")
    fix = debug_fix(plane, ns, name, private)
    create, then = fix.split(", then ", 1)
    run_printed(plane, create, USER="user", PASSWORD="pass")
    run_printed(plane, then)
    made = plane.get_json("job", "migrate-20261204", "-n", ns)
    args = made["spec"]["template"]["spec"]["containers"][0].get("args")
    assert args == ["--to=v42"], (
        f"the printed fix replaced the person's Job migrate-20261204 (--to=v42) with a run "
        f"of CronJob migrate ({args}):\n{fix}"
    )
    wait_for(
        lambda: pods_list_the_secret(plane, ns, "job-name=migrate-20261204", secret_of(fix)),
        20,
        "a pod of Job migrate-20261204 that lists the secret",
    )


def test_rev22d_debug_fix_on_a_partitioned_statefulsets_pod_gives_it_the_secret(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: a StatefulSet ``db`` under a staged rollout (``updateStrategy.rollingUpdate.
    partition: 1``, replicas 1: the documented canary pattern). ``kubectl debug`` of pod
    db-0 with a private image is denied with "kubectl patch statefulset/db ... && kubectl
    delete pod db-0 -n NS". Run as printed: the template changes, but a pod below the
    partition is made again from the current revision, so the new db-0 lists no secret and
    the same debug is denied again.
    Expected: after the printed fix, a pod of db lists the secret (or the words say the
    partition holds it back and how to lower it)."""
    private, public = _images(registries)
    wait_for_mode(plane, ns, "enforce")
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": ns},
        "spec": {
            "replicas": 1,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 1}},
            "template": {
                "metadata": {"labels": {"app": "db"}},
                "spec": {"containers": [{"name": "app", "image": public}]},
            },
        },
    }
    plane.apply(json.dumps(sts), check=True)
    name = _owned_pod(plane, ns, "app=db")
    fix = debug_fix(plane, ns, name, private)
    create, then = fix.split(", then ", 1)
    run_printed(plane, create, USER="user", PASSWORD="pass")
    run_printed(plane, then)
    try:
        wait_for(
            lambda: pods_list_the_secret(plane, ns, "app=db", secret_of(fix)),
            20,
            "a pod of StatefulSet db that lists the secret",
        )
    except Exception as error:
        raise AssertionError(
            f"after the printed fix\n{fix}\nno pod of the partitioned StatefulSet lists the "
            "secret, so the same kubectl debug is denied again"
        ) from error


def test_rev22d_debug_fix_on_a_replication_controllers_pod_gives_it_the_secret(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Held: a ReplicationController's pod: its template is patched and the pod deleted,
    and the new pod lists the secret."""
    private, public = _images(registries)
    wait_for_mode(plane, ns, "enforce")
    rc = {
        "apiVersion": "v1",
        "kind": "ReplicationController",
        "metadata": {"name": "old", "namespace": ns},
        "spec": {
            "replicas": 1,
            "selector": {"app": "old"},
            "template": {
                "metadata": {"labels": {"app": "old"}},
                "spec": {"containers": [{"name": "app", "image": public}]},
            },
        },
    }
    plane.apply(json.dumps(rc), check=True)
    name = _owned_pod(plane, ns, "app=old")
    fix = debug_fix(plane, ns, name, private)
    create, then = fix.split(", then ", 1)
    run_printed(plane, create, USER="user", PASSWORD="pass")
    run_printed(plane, then)
    wait_for(
        lambda: pods_list_the_secret(plane, ns, "app=old", secret_of(fix)),
        20,
        "a pod of ReplicationController old that lists the secret",
    )


def test_rev22d_debug_fix_on_an_indexed_jobs_pod_gives_it_the_secret(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Held: an Indexed Job with a ttl and a backoff limit is recreated with the secret."""
    private, public = _images(registries)
    wait_for_mode(plane, ns, "enforce")
    plane.apply(
        _job(
            "shards",
            ns,
            public,
            completionMode="Indexed",
            completions=2,
            parallelism=2,
            backoffLimit=1,
            ttlSecondsAfterFinished=600,
        ),
        check=True,
    )
    name = _owned_pod(plane, ns, "job-name=shards")
    fix = debug_fix(plane, ns, name, private)
    create, then = fix.split(", then ", 1)
    run_printed(plane, create, USER="user", PASSWORD="pass")
    run_printed(plane, then)
    wait_for(
        lambda: pods_list_the_secret(plane, ns, "job-name=shards", secret_of(fix)),
        20,
        "a pod of Job shards that lists the secret",
    )
    assert plane.get_json("job", "shards", "-n", ns)["spec"]["completionMode"] == "Indexed"


def test_rev22d_diagnose_fix_of_a_paused_deployment_keeps_the_templates_other_secrets(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: the same paused Deployment as the kubectl debug case above (a second secret
    ``mirror-cred`` added to its template while paused; its pod, refused by the private
    registry, lists neither), diagnosed: ``pullguard diagnose`` reads the Deployment (it says
    it is paused and ends the fix with ``kubectl rollout resume``) but its patch is built from
    the pod's list (_Fixer.add_secret: "a merge patch replaces the list whole"): ``kubectl
    patch deployment/web --type=merge -p '{"spec":{"template":{"spec":{"imagePullSecrets":
    [{"name":"good"}]}}}}' && kubectl rollout resume ...``. Run as printed, ``mirror-cred``
    is gone from the template, and the resume rolls that out.
    Expected: after the printed fix the template lists both ``mirror-cred`` and ``good``."""
    off(plane, ns)
    push_image(registries.private, "team/r22d-web", "1.0")
    plane.apply(pull_secret("good", ns, registries.private.host), check=True)
    image = f"{registries.private.host}/team/r22d-web:1.0"
    plane.kubectl("create", "deployment", "web", "-n", ns, f"--image={image}", check=True)
    name = _owned_pod(plane, ns, "app=web")
    plane.kubectl("rollout", "pause", "deployment/web", "-n", ns, check=True)
    plane.kubectl(
        "create", "secret", "generic", "mirror-cred", "-n", ns, "--from-literal=a=b", check=True
    )
    added = {"spec": {"template": {"spec": {"imagePullSecrets": [{"name": "mirror-cred"}]}}}}
    plane.kubectl(
        "patch",
        "deployment/web",
        "-n",
        ns,
        "--type=strategic",
        "-p",
        json.dumps(added),
        check=True,
    )
    mark_failing(plane, ns, name, image, CONTAINERD_AMBIGUOUS.format(image=image), "r22d-web")
    fix = _fix(plane, registries, ns, name)
    run_printed(plane, fix)
    spec = plane.get_json("deployment", "web", "-n", ns)["spec"]["template"]["spec"]
    listed = spec.get("imagePullSecrets") or []
    assert {"name": "good"} in listed, fix
    assert {"name": "mirror-cred"} in listed, (
        f"diagnose's printed fix removed secret mirror-cred from the paused Deployment's "
        f"template (now {listed}):\n{fix}"
    )


def test_rev22d_kubectl_run_of_a_private_image_gets_a_fix_without_a_manifest(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: ``kubectl run tmp --image=PRIVATE`` (a developer's throwaway pod; ``kubectl debug
    POD --copy-to=web-dbg --image=PRIVATE`` prints the same) is denied with "Fix: kubectl
    create secret docker-registry regcred-... , then add {name: regcred-...} to the
    imagePullSecrets in the manifest". There is no manifest: the pod was made by a command
    (its create's field manager is ``kubectl-run``, or ``kubectl-debug``), and the second
    half gives no command. What would run: ``kubectl run tmp --image=PRIVATE
    --overrides='{"spec":{"imagePullSecrets":[{"name":"regcred-..."}]}}'`` (or the
    ServiceAccount's ``imagePullSecrets``, which a copy also gets).
    Expected: a kubectl command after "then" that, run as printed, makes pod tmp with the
    secret."""
    private, _ = _images(registries)
    wait_for_mode(plane, ns, "enforce")
    result = plane.kubectl("run", "tmp", "-n", ns, f"--image={private}")
    assert "denied the request" in result.stderr, result.stdout + result.stderr
    (fix,) = fix_lines(result.stderr)
    create, then = fix.split(", then ", 1)
    run_printed(plane, create, USER="user", PASSWORD="pass")
    assert "kubectl" in then, (
        f"kubectl run made the pod, but the fix sends the person to a manifest there is not, "
        f"with no command:\n{fix}"
    )
    run_printed(plane, then)
    listed = plane.get_json("pod", "tmp", "-n", ns)["spec"].get("imagePullSecrets") or []
    assert {"name": secret_of(fix)} in listed, fix


def test_kubectl_run_fix_keeps_the_runs_args_env_and_restart_policy(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """rev22d F5, held further: the ``kubectl run`` the fix prints keeps what the refused
    one gave the pod (its command's args, env, labels, restart policy), so the pod made
    again is the one the person asked for, with the secret."""
    private, _ = _images(registries)
    wait_for_mode(plane, ns, "enforce")
    result = plane.kubectl(
        "run",
        "tmp",
        "-n",
        ns,
        f"--image={private}",
        "--env=MODE=check",
        "--labels=team=a",
        "--restart=Never",
        "--",
        "sleep",
        "3600",
    )
    assert "denied the request" in result.stderr, result.stdout + result.stderr
    (fix,) = fix_lines(result.stderr)
    create, then = fix.split(", then ", 1)
    run_printed(plane, create, USER="user", PASSWORD="pass")
    run_printed(plane, then)
    made = plane.get_json("pod", "tmp", "-n", ns)
    (app,) = made["spec"]["containers"]
    assert app["image"] == private and app["args"] == ["sleep", "3600"], app
    assert app["env"] == [{"name": "MODE", "value": "check"}], app
    assert made["metadata"]["labels"] == {"team": "a"}, made["metadata"]
    assert made["spec"]["restartPolicy"] == "Never"
    assert {"name": secret_of(fix)} in made["spec"]["imagePullSecrets"], fix


def test_rev22d_debug_fix_on_a_long_named_cronjobs_run_holds(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Held: a CronJob may be named at most 52 characters (the API server refuses more), so
    its run's name (CRONJOB-MINUTES, 61) is never cut: cronjob_of finds the CronJob, and the
    printed fix gives the run's pods the secret."""
    private, public = _images(registries)
    wait_for_mode(plane, ns, "enforce")
    long = "nightly-" + "x" * 44
    assert len(long) == 52
    too_long = json.loads(_cronjob(long + "y", ns, public, ["--check"]))
    refused = plane.apply(json.dumps(too_long))
    assert not refused.ok and "52" in refused.stderr, refused.stderr
    plane.apply(_cronjob(long, ns, public, ["--check"]), check=True)
    job = f"{long}-29412000"
    plane.kubectl("create", "job", job, f"--from=cronjob/{long}", "-n", ns, check=True)
    name = _owned_pod(plane, ns, f"batch.kubernetes.io/job-name={job}")
    fix = debug_fix(plane, ns, name, private)
    assert f"CronJob {long}," in fix, fix
    create, then = fix.split(", then ", 1)
    run_printed(plane, create, USER="user", PASSWORD="pass")
    run_printed(plane, then)
    wait_for(
        lambda: pods_list_the_secret(
            plane, ns, f"batch.kubernetes.io/job-name={job}", secret_of(fix)
        ),
        20,
        f"a pod of Job {job} that lists the secret",
    )


def _private_owner(kind: str, ns: str, image: str) -> dict[str, Any]:
    """A ``kind`` (Job, StatefulSet, ReplicaSet) named ``web`` of one container ``app``."""
    spec: dict[str, Any] = {"containers": [{"name": "app", "image": image}]}
    if kind == "Job":
        manifest = json.loads(_job("web", ns, image))
        manifest["spec"]["template"]["spec"]["containers"] = spec["containers"]
        return dict(manifest)
    owner: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": spec},
        },
    }
    if kind == "StatefulSet":
        owner["spec"]["serviceName"] = "web"
    return owner


@pytest.mark.parametrize("kind", ["Job", "StatefulSet", "ReplicaSet"])
def test_rev22d_audit_secret_fix(
    plane: ControlPlane, ns: str, registries: E2ERegistries, kind: str
) -> None:
    """Seen: ``pullguard audit`` of an existing Job (StatefulSet, bare ReplicaSet) whose
    image is on a private registry, with no secret, prints "Fix: kubectl create secret
    docker-registry regcred-... , then add {name: regcred-...} to the imagePullSecrets in
    the manifest". Done as printed (the manifest edited, ``kubectl apply``): a Job's apply is
    refused ("spec.template: ... field is immutable"), while admission's kubectl debug fix
    and diagnose recreate the Job; a StatefulSet or ReplicaSet takes the template, and keeps
    its stuck pod without the secret (audit's own set image fix deletes it: ``&& kubectl
    delete pod``; diagnose's patch does too). audit and diagnose disagree on the same object.
    Expected: after the printed fix (a command, or the manifest edited and applied as the
    words say), a pod of it lists the secret."""
    private, _ = _images(registries)
    off(plane, ns)
    manifest = _private_owner(kind, ns, private)
    plane.apply(json.dumps(manifest), check=True)
    selector = "job-name=web" if kind == "Job" else "app=web"
    _owned_pod(plane, ns, selector)
    plane.kubectl("label", "namespace", ns, "pullguard.io/mode-", check=True)
    fix = audit_fix(plane, registries, ns, f"DENY {kind} {ns}/web")
    create, then = fix.split(", then ", 1)
    run_printed(plane, create, USER="user", PASSWORD="pass")
    secret = secret_of(fix)
    if "kubectl" in then:
        run_printed(plane, then)
    else:
        assert then.endswith("to the imagePullSecrets in the manifest"), fix
        manifest["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": secret}]
        applied = plane.apply(json.dumps(manifest))
        assert applied.ok, f"the manifest edited as printed is refused:\n{fix}\n{applied.stderr}"
    try:
        wait_for(
            lambda: pods_list_the_secret(plane, ns, selector, secret),
            20,
            f"a pod of {kind} web that lists the secret",
        )
    except Exception as error:
        pods = plane.get_json("pods", "-n", ns, "-l", selector)["items"]
        raise AssertionError(
            f"after audit's printed fix\n{fix}\nno pod of {kind} web lists the secret: "
            f"{[(p['metadata']['name'], p['spec'].get('imagePullSecrets')) for p in pods]}"
        ) from error


def test_rev22d_audits_missing_tag_fix_for_an_existing_job_runs(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: ``pullguard audit`` of an existing Job whose tag was never pushed (1.1; the
    registry has 1.0) prints "Fix: use tag '1.0' if that was meant, or push '1.1' first",
    words only, where the same audit gives a Pod, a ReplicaSet or a StatefulSet ``kubectl
    set image ...``; and a Job's image cannot be changed by an edit of its manifest (the
    apply is refused: "field is immutable"). diagnose of the Job's pod recreates the Job.
    Expected: a kubectl command that, run as printed, gives the Job a pod of tag 1.0."""
    _, public = _images(registries)
    off(plane, ns)
    plane.apply(_job("web", ns, public.replace(":1.0", ":1.1")), check=True)
    _owned_pod(plane, ns, "job-name=web")
    plane.kubectl("label", "namespace", ns, "pullguard.io/mode-", check=True)
    fix = audit_fix(plane, registries, ns, f"DENY Job {ns}/web")
    assert "kubectl" in fix, f"audit gives an existing Job's missing tag no command:\n{fix}"
    run_printed(plane, fix)
    wait_for(
        lambda: any(
            p["spec"]["containers"][0]["image"] == public
            for p in plane.get_json("pods", "-n", ns, "-l", "job-name=web")["items"]
        ),
        20,
        "a pod of Job web with tag 1.0",
    )
