"""Outside review rev22e of issue 22 (fifth, on merge 5c5f537's rewritten fixes).

Each test is a finding: a fix pullguard prints, run exactly as printed (placeholders USER and
PASSWORD filled in) against the real API server with kube-controller-manager, that does not
give the pod what it needs, says nothing of why, or loses what the person had. There is no
kubelet: pods are marked as a kubelet would (see tests/e2e/test_diagnose_audit.py)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.e2e.cluster import ControlPlane, wait_for
from tests.e2e.conftest import E2ERegistries
from tests.e2e.test_decisions import wait_for_mode
from tests.e2e.test_diagnose_audit import (
    CONTAINERD_AMBIGUOUS,
    _fix,
    _owned_pod,
    failing_pod,
    fix_lines,
    mark_failing,
    off,
    pullguard,
    run_printed,
)
from tests.e2e.test_rev22c_review import secret_of
from tests.e2e.test_rev22d_review import _job
from tests.integration.registries import push_image

pytestmark = pytest.mark.e2e


def _run(plane: ControlPlane, fix: str, shell: str = "bash") -> subprocess.CompletedProcess[str]:
    """``fix`` from its first kubectl, USER/PASSWORD filled in, in ``shell``; not asserted."""
    command = fix[fix.index("kubectl") :].replace("USER", "user").replace("PASSWORD", "pass")
    return subprocess.run(
        [shell, "-c", command],
        env={**os.environ, "KUBECONFIG": str(plane.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _quota(plane: ControlPlane, ns: str, resource: str) -> None:
    """ResourceQuota ``q`` of ``resource: 1`` in ``ns``, once the quota controller counts one
    in use (the namespace is at its quota, as a team's often is)."""
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "q", "namespace": ns},
        "spec": {"hard": {resource: "1"}},
    }
    plane.apply(json.dumps(quota), check=True)
    wait_for(
        lambda: (
            (plane.get_json("resourcequota", "q", "-n", ns).get("status") or {})
            .get("used", {})
            .get(resource)
            == "1"
        ),
        30,
        f"quota q counting one {resource}",
    )


@pytest.mark.open_finding
def test_rev22e_bare_pod_recreate_at_the_pod_quota_does_nothing_and_says_nothing(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: a bare pod ``bare`` of a private image, no secret, in a namespace with a
    ResourceQuota ``pods: 1`` (the stuck Pending pod is the one counted). ``diagnose``
    prints the secret's create and the recreate guarded by ``kubectl create --dry-run=server
    -f - 2>&1 | grep -q '(AlreadyExists)' && ... | kubectl replace --force -f -``. The
    dry run of a second pod is refused by quota admission ("exceeded quota: q, requested:
    pods=1, used: pods=1, limited: pods=1"), which comes before the name's check, so grep
    finds no AlreadyExists: run as printed the command exits 1 and prints nothing at all
    (``grep -q`` swallowed the refusal), and the pod keeps no secret. The person is told
    neither that nothing happened nor why.
    Expected: after the printed fix the pod lists the secret (a recreate replaces the pod, it
    needs no second pod's room), or what the command prints names the refusal."""
    off(plane, ns)
    push_image(registries.private, "team/r22e-bare", "1.0")
    image = f"{registries.private.host}/team/r22e-bare:1.0"
    failing_pod(plane, ns, "bare", image, CONTAINERD_AMBIGUOUS.format(image=image))
    _quota(plane, ns, "pods")
    fix = _fix(plane, registries, ns, "bare")
    assert "kubectl replace --force -f -" in fix, fix
    done = _run(plane, fix)
    said = done.stdout + done.stderr
    listed = plane.get_json("pod", "bare", "-n", ns)["spec"].get("imagePullSecrets") or []
    asked = _run(plane, fix[: fix.index(" 2>&1 | grep -q")])
    assert listed or "quota" in said, (
        f"the printed fix exited {done.returncode}, left pod bare without a secret and said "
        f"only {said!r} (its dry run answered {asked.stderr.strip()!r}):\n{fix}"
    )


@pytest.mark.open_finding
def test_rev22e_job_recreate_at_the_job_quota_does_nothing_and_says_nothing(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: Job ``mig`` of a private image, no secret, in a namespace with a ResourceQuota
    ``count/jobs.batch: 1`` (Job mig is the one counted). ``diagnose`` of its pod prints the
    secret's create and the recreate (fixcommands.recreate_job through replace_if_taken).
    The server-side dry run of the create is refused by quota ("exceeded quota"), not
    AlreadyExists: run as printed, the secret is made, then the command exits 1 printing
    nothing, and no pod of mig ever lists the secret.
    Expected: after the printed fix a pod of Job mig lists the secret, or what the command
    prints names the refusal (and what to do: the Job needs no second Job's room)."""
    off(plane, ns)
    push_image(registries.private, "team/r22e-job", "1.0")
    image = f"{registries.private.host}/team/r22e-job:1.0"
    plane.apply(_job("mig", ns, image), check=True)
    name = _owned_pod(plane, ns, "job-name=mig")
    mark_failing(plane, ns, name, image, CONTAINERD_AMBIGUOUS.format(image=image))
    _quota(plane, ns, "count/jobs.batch")
    fix = _fix(plane, registries, ns, name)
    assert "kubectl replace --force -f -" in fix, fix
    done = _run(plane, fix)
    said = done.stdout + done.stderr
    template = plane.get_json("job", "mig", "-n", ns)["spec"]["template"]["spec"]
    assert template.get("imagePullSecrets") or "quota" in said, (
        f"the printed fix exited {done.returncode}, left Job mig without the secret and said "
        f"only {said!r}:\n{fix}"
    )


@pytest.mark.open_finding
def test_rev22e_refused_recreate_says_why_it_did_nothing(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: the held case of rev22d (a bare pod's recreate, the password mistyped, admission
    on): the dry run is refused by pullguard itself, which says exactly what is wrong
    (the registry refused those credentials). ``2>&1 | grep -q '(AlreadyExists)'`` throws
    that answer away: the person sees exit status 1 and no word, after the secret's create
    said "created", and cannot tell that the pod was left as it was, or why.
    Expected: a refused recreate prints the API server's refusal (pullguard's denial)."""
    off(plane, ns)
    push_image(registries.private, "team/r22e-typo", "1.0")
    image = f"{registries.private.host}/team/r22e-typo:1.0"
    failing_pod(plane, ns, "bare", image, CONTAINERD_AMBIGUOUS.format(image=image))
    fix = _fix(plane, registries, ns, "bare")
    plane.kubectl("label", "namespace", ns, "pullguard.io/mode-", check=True)
    wait_for_mode(plane, ns, "enforce")
    done = _run(plane, fix.replace("PASSWORD", "typo"))
    assert done.returncode != 0, f"the recreate pullguard refuses succeeded:\n{fix}"
    said = done.stdout + done.stderr
    assert "denied" in said, (
        f"the refused recreate exited {done.returncode} and said only {said!r}:\n{fix}"
    )


@pytest.mark.open_finding
def test_rev22e_kubectl_run_fix_keeps_annotations_and_overrides(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: ``kubectl run tmp --image=PRIVATE --annotations=owner=alice
    --override-type=strategic --overrides='{"spec":{"nodeSelector":{"disk":"ssd"},
    "containers":[{"name":"tmp","securityContext":{"runAsNonRoot":true}}]}}'`` (kubectl
    run's own ``--annotations``, and the overrides people use for placement and hardening)
    is denied with a fix ``kubectl run tmp -n NS --image=... --overrides='{"apiVersion":"v1",
    "spec":{"containers":[{...}],"imagePullSecrets":[...]}}'``. fixcommands.rerun_pod keeps
    only RUN_CONTAINER_FIELDS (no ``securityContext``, ``resources``, ``volumeMounts``), no
    annotations and no pod spec field but the restart policy: run as printed, the pod made
    again is unannotated, may run as root, and is off the ssd nodes. (``--privileged``, the
    other flag whose field is dropped, is refused by this API server: no
    ``--allow-privileged``.)
    Expected: the pod the printed ``kubectl run`` makes keeps what the refused one asked
    for (annotation owner=alice, runAsNonRoot, nodeSelector disk=ssd) and lists the
    secret."""
    push_image(registries.private, "team/r22e-run", "1.0")
    private = f"{registries.private.host}/team/r22e-run:1.0"
    wait_for_mode(plane, ns, "enforce")
    result = plane.kubectl(
        "run",
        "tmp",
        "-n",
        ns,
        f"--image={private}",
        "--annotations=owner=alice",
        "--override-type=strategic",
        "--overrides="
        + json.dumps(
            {
                "spec": {
                    "nodeSelector": {"disk": "ssd"},
                    "containers": [{"name": "tmp", "securityContext": {"runAsNonRoot": True}}],
                }
            }
        ),
    )
    assert "denied the request" in result.stderr, result.stdout + result.stderr
    (fix,) = fix_lines(result.stderr)
    create, then = fix.split(", then ", 1)
    run_printed(plane, create, USER="user", PASSWORD="pass")
    run_printed(plane, then)
    made = plane.get_json("pod", "tmp", "-n", ns)
    (app,) = made["spec"]["containers"]
    assert {"name": secret_of(fix)} in (made["spec"].get("imagePullSecrets") or []), fix
    lost = [
        what
        for what, kept in (
            ("runAsNonRoot", (app.get("securityContext") or {}).get("runAsNonRoot") is True),
            (
                "annotation owner=alice",
                (made["metadata"].get("annotations") or {}).get("owner") == "alice",
            ),
            ("nodeSelector disk=ssd", made["spec"].get("nodeSelector") == {"disk": "ssd"}),
        )
        if not kept
    ]
    assert not lost, f"the printed kubectl run lost {lost}:\n{then}"


def test_rev22e_held_cronjob_runs_remake_is_refused_before_its_delete(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Held: the one remake with no server-side dry run (a CronJob's run: ``kubectl patch
    cronjob/nightly ... && kubectl delete job RUN && kubectl create job RUN
    --from=cronjob/nightly``) did not lose the run where its create would be refused:
    CronJob ``nightly`` (made while admission was off) has a second container ``side`` whose
    tag was never pushed; with admission on, the CronJob's patch (an UPDATE changing only
    the secrets) is judged in full and denied for ``side``, so the delete never runs and Job
    ``nightly-29412000`` stays."""
    off(plane, ns)
    push_image(registries.private, "team/r22e-cron", "1.0")
    private = f"{registries.private.host}/team/r22e-cron:1.0"
    missing = f"{registries.public.host}/team/r22e-never-pushed:1.0"
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": ns},
        "spec": {
            "schedule": "0 0 1 1 *",
            "suspend": True,
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {"name": "app", "image": private},
                                {"name": "side", "image": missing},
                            ],
                        }
                    }
                }
            },
        },
    }
    plane.apply(json.dumps(cronjob), check=True)
    run = "nightly-29412000"
    plane.kubectl("create", "job", run, "--from=cronjob/nightly", "-n", ns, check=True)
    name = _owned_pod(plane, ns, f"job-name={run}")
    mark_failing(plane, ns, name, private, CONTAINERD_AMBIGUOUS.format(image=private))
    result = plane_diagnose(plane, registries, ns, name)
    fixes = [f for f in fix_lines(result) if "cronjob/nightly" in f and "imagePullSecrets" in f]
    assert fixes, result
    fix = fixes[0]
    plane.kubectl("label", "namespace", ns, "pullguard.io/mode-", check=True)
    wait_for_mode(plane, ns, "enforce")
    done = _run(plane, fix)
    assert plane.kubectl("get", "job", run, "-n", ns).ok, (
        f"the printed fix (exit {done.returncode}: {done.stderr.strip()!r}) deleted Job {run} "
        f"and did not create it again:\n{fix}"
    )


def plane_diagnose(plane: ControlPlane, registries: E2ERegistries, ns: str, name: str) -> str:
    """``pullguard diagnose NAME -n NS``'s output (it may hold several fixes)."""
    result = pullguard(plane, registries, "diagnose", name, "-n", ns)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_rev22e_held_job_recreate_runs_in_posix_sh(
    plane: ControlPlane, ns: str, registries: E2ERegistries, shell: str
) -> None:
    """Held: the Job recreate (``$(...)`` reading manualSelector, ``[ = ]``, the dry run's
    ``grep -q``) runs in dash as in bash: a pod of Job mig lists the secret after it."""
    off(plane, ns)
    push_image(registries.private, "team/r22e-sh", "1.0")
    image = f"{registries.private.host}/team/r22e-sh:1.0"
    plane.apply(_job("mig", ns, image), check=True)
    name = _owned_pod(plane, ns, "job-name=mig")
    mark_failing(plane, ns, name, image, CONTAINERD_AMBIGUOUS.format(image=image))
    fix = _fix(plane, registries, ns, name)
    done = _run(plane, fix, shell)
    assert done.returncode == 0, f"{shell}: {done.stderr}\n{fix}"
    template = plane.get_json("job", "mig", "-n", ns)["spec"]["template"]["spec"]
    assert {"name": secret_of(fix)} in (template.get("imagePullSecrets") or []), fix


@pytest.mark.open_finding
def test_rev22e_bare_pod_diagnose_says_before_the_command_that_it_deletes_it(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: ``diagnose`` of a bare pod ``bare`` (private image, no secret) prints "Fix:
    kubectl create secret docker-registry ... && kubectl patch pod bare ... --dry-run=client
    -o yaml ... | kubectl create --dry-run=server ... && ... | kubectl replace --force -f -":
    nothing before the command says that pod bare is deleted and created again (its
    containers killed, its emptyDir lost, a new uid), where a Job's recreate says "Job mig is
    deleted and created again" and audit's bare-pod fix says "recreate it". A reader of
    "Fix:" runs a delete they were not told of.
    Expected: the words before the first kubectl of the Fix say the pod is deleted (or
    recreated)."""
    off(plane, ns)
    push_image(registries.private, "team/r22e-words", "1.0")
    image = f"{registries.private.host}/team/r22e-words:1.0"
    failing_pod(plane, ns, "bare", image, CONTAINERD_AMBIGUOUS.format(image=image))
    out = plane_diagnose(plane, registries, ns, "bare")
    (fix,) = fix_lines(out)
    assert "kubectl replace --force" in fix, fix
    before = out[: out.index(fix) + fix.index("kubectl")].lower()
    assert "delete" in before or "recreat" in before or "created again" in before, (
        f"diagnose's fix deletes pod bare and says so nowhere before its command:\n{out}"
    )


@pytest.mark.open_finding
def test_rev22e_cronjob_run_diagnose_says_before_the_command_that_it_deletes_it(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: ``diagnose`` of the pod of CronJob ``nightly``'s run ``nightly-29412000``
    (private image, no secret) prints "Fix: kubectl create secret ... && kubectl patch
    cronjob/nightly ... && kubectl delete job nightly-29412000 -n NS && kubectl create job
    nightly-29412000 --from=cronjob/nightly -n NS" with no word that the run is deleted and
    run again from the start (``kubectl debug``'s denial and audit's fix for the same Job
    say so: "this run is deleted and made again from it, its pods running again from the
    start").
    Expected: the words before the first kubectl say the Job is deleted and run again."""
    off(plane, ns)
    push_image(registries.private, "team/r22e-cronw", "1.0")
    private = f"{registries.private.host}/team/r22e-cronw:1.0"
    cronjob = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "nightly", "namespace": ns},
        "spec": {
            "schedule": "0 0 1 1 *",
            "suspend": True,
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [{"name": "app", "image": private}],
                        }
                    }
                }
            },
        },
    }
    plane.apply(json.dumps(cronjob), check=True)
    run = "nightly-29412000"
    plane.kubectl("create", "job", run, "--from=cronjob/nightly", "-n", ns, check=True)
    name = _owned_pod(plane, ns, f"job-name={run}")
    mark_failing(plane, ns, name, private, CONTAINERD_AMBIGUOUS.format(image=private))
    out = plane_diagnose(plane, registries, ns, name)
    (fix,) = fix_lines(out)
    assert f"kubectl delete job {run}" in fix, fix
    before = out[: out.index(fix) + fix.index("kubectl")].lower()
    assert "delete" in before or "recreat" in before or "run again" in before, (
        f"diagnose's fix deletes Job {run} and says so nowhere before its command:\n{out}"
    )


@pytest.mark.parametrize(
    "strategy",
    [{"type": "OnDelete"}, {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}],
    ids=["ondelete", "partition-0"],
)
def test_rev22e_held_sts_set_image(
    plane: ControlPlane, ns: str, registries: E2ERegistries, strategy: dict[str, object]
) -> None:
    """Held: audit's set image on a StatefulSet under ``OnDelete`` or a partition of 0 (the
    partition's ``[ "$(...)" -gt 0 ]`` is false or fails quietly on an empty value) runs as
    printed and the stuck pod is made again with the tag meant."""
    from tests.e2e.test_diagnose_audit import audit_fix

    off(plane, ns)
    push_image(registries.public, "team/r22e-sts", "1.0")
    missing = f"{registries.public.host}/team/r22e-sts:1.1"
    sts = {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": ns},
        "spec": {
            "serviceName": "web",
            "updateStrategy": strategy,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": missing}]},
            },
        },
    }
    plane.apply(json.dumps(sts), check=True)
    wait_for(lambda: plane.get_json("pods", "-n", ns, "-l", "app=web")["items"] or None, 60, "pod")
    plane.kubectl("label", "namespace", ns, "pullguard.io/mode-", check=True)
    fix = audit_fix(plane, registries, ns, f"DENY StatefulSet {ns}/web")
    done = _run(plane, fix, "sh")
    assert done.returncode == 0, f"{done.stderr}\n{fix}"
    meant = f"{registries.public.host}/team/r22e-sts:1.0"
    wait_for(
        lambda: (
            [
                p["spec"]["containers"][0]["image"]
                for p in plane.get_json("pods", "-n", ns, "-l", "app=web")["items"]
            ]
            == [meant]
        ),
        30,
        f"pod web-0 made again with {meant} after:\n{fix}\n{done.stdout}{done.stderr}",
    )


def test_rev22e_held_kubectl_run_fix_keeps_command_port_and_pull_policy(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Held: ``kubectl run tmp --image=PRIVATE --port=8080 --image-pull-policy=Always
    --command -- sleep 3600`` is refused; its printed ``kubectl run`` (run in dash) makes the
    pod with the command, the port, the pull policy and the secret."""
    push_image(registries.private, "team/r22e-run2", "1.0")
    private = f"{registries.private.host}/team/r22e-run2:1.0"
    wait_for_mode(plane, ns, "enforce")
    result = plane.kubectl(
        "run",
        "tmp",
        "-n",
        ns,
        f"--image={private}",
        "--port=8080",
        "--image-pull-policy=Always",
        "--command",
        "--",
        "sleep",
        "3600",
    )
    assert "denied the request" in result.stderr, result.stdout + result.stderr
    (fix,) = fix_lines(result.stderr)
    create, then = fix.split(", then ", 1)
    run_printed(plane, create, USER="user", PASSWORD="pass")
    done = _run(plane, then, "sh")
    assert done.returncode == 0, f"{done.stderr}\n{then}"
    made = plane.get_json("pod", "tmp", "-n", ns)
    (app,) = made["spec"]["containers"]
    assert app["command"] == ["sleep", "3600"] and "args" not in app, app
    assert app["ports"] == [{"containerPort": 8080, "protocol": "TCP"}], app
    assert app["imagePullPolicy"] == "Always", app
    assert {"name": secret_of(fix)} in made["spec"]["imagePullSecrets"], fix


@pytest.mark.open_finding
def test_rev22e_kubectl_run_of_a_missing_tag_gets_a_command_that_runs(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Seen: ``kubectl run tmp --image=PUBLIC:1.1 -- sleep 1`` (1.1 never pushed, 1.0 is) is
    refused with "Fix: use tag '1.0' if that was meant, or push '1.1' first": no command.
    There is no manifest and no pod (rev22d F5 taught the secret's fix that a ``kubectl
    run`` pod gets that ``kubectl run`` again; the tag's fix did not learn it), and the
    command exists: ``kubectl run tmp -n NS --image=PUBLIC:1.0 ... -- sleep 1``.
    Expected: the fix holds a kubectl command that, run as printed, makes pod tmp with
    tag 1.0."""
    push_image(registries.public, "team/r22e-tag", "1.0")
    missing = f"{registries.public.host}/team/r22e-tag:1.1"
    wait_for_mode(plane, ns, "enforce")
    result = plane.kubectl("run", "tmp", "-n", ns, f"--image={missing}", "--", "sleep", "1")
    assert "denied the request" in result.stderr, result.stdout + result.stderr
    (fix,) = fix_lines(result.stderr)
    assert "kubectl" in fix, f"no command in the fix of a kubectl run's missing tag:\n{fix}"
    done = _run(plane, fix)
    got = plane.kubectl("get", "pod", "tmp", "-n", ns, "-o", "jsonpath={.spec.containers[0].image}")
    assert done.returncode == 0 and got.ok and got.stdout.endswith(":1.0"), (
        f"the printed fix (exit {done.returncode}: {done.stderr.strip()!r}) made no pod tmp "
        f"with tag 1.0:\n{fix}"
    )


def test_rev22e_held_generate_name_job_and_limitrange_pod_recreates(
    plane: ControlPlane, ns: str, registries: E2ERegistries
) -> None:
    """Held: in a namespace with a LimitRange (default cpu requests and limits), a Job made
    with ``generateName: mig-`` and a bare pod, both of a private image with no secret: each
    of diagnose's recreates runs as printed (the dry run answers AlreadyExists: the
    generated name is the object's name) and the object made again lists the secret."""
    off(plane, ns)
    limits = {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": "lr", "namespace": ns},
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "default": {"cpu": "200m"},
                    "defaultRequest": {"cpu": "100m"},
                    "max": {"cpu": "1"},
                }
            ]
        },
    }
    plane.apply(json.dumps(limits), check=True)
    push_image(registries.private, "team/r22e-gen", "1.0")
    image = f"{registries.private.host}/team/r22e-gen:1.0"
    job = json.loads(_job("x", ns, image))
    del job["metadata"]["name"]
    job["metadata"]["generateName"] = "mig-"
    made = plane.kubectl("create", "-f", "-", "-o", "name", stdin=json.dumps(job), check=True)
    job_name = made.stdout.strip().split("/", 1)[1]
    pod = _owned_pod(plane, ns, f"job-name={job_name}")
    mark_failing(plane, ns, pod, image, CONTAINERD_AMBIGUOUS.format(image=image))
    fix = _fix(plane, registries, ns, pod)
    done = _run(plane, fix, "sh")
    assert done.returncode == 0, f"{done.stderr}\n{fix}"
    secret = secret_of(fix)
    spec = plane.get_json("job", job_name, "-n", ns)["spec"]["template"]["spec"]
    assert {"name": secret} in (spec.get("imagePullSecrets") or []), fix
    failing_pod(plane, ns, "bare", image, CONTAINERD_AMBIGUOUS.format(image=image))
    fix = _fix(plane, registries, ns, "bare")
    done = _run(plane, fix, "sh")
    assert done.returncode == 0, f"{done.stderr}\n{fix}"
    again = plane.get_json("pod", "bare", "-n", ns)["spec"]
    assert {"name": secret} in (again.get("imagePullSecrets") or []), fix
