"""Outside review rev22e of issue 22 (the words), findings on the pure fix commands
(webhook/core/fixcommands.py); the commands that can be run are run against the real API
server in tests/e2e/test_rev22e_review.py."""

from __future__ import annotations

import shlex

import pytest

from tests.unit.test_diagnosis import _fix_for
from webhook.core.diagnosis import Workload
from webhook.core.fixcommands import rerun_pod


@pytest.mark.open_finding
def test_rev22e_rerun_of_an_interactive_kubectl_run_attaches_again() -> None:
    """Seen: ``kubectl run tmp -it --rm --restart=Never --image=PRIVATE -- sh`` (the
    throwaway shell people start with ``kubectl run``) is denied; the fix's ``kubectl run``
    carries ``"stdin":true,"stdinOnce":true,"tty":true`` in ``--overrides`` but no ``-i``
    or ``-t``: kubectl attaches only on its flags, so run as printed it answers "pod/tmp
    created" and returns, the shell waits on a terminal nobody holds, and the pod (no
    ``--rm``) stays behind.
    Expected: the printed ``kubectl run`` of a pod whose container has stdin and tty asks
    for them as flags (``-i``/``--stdin`` and ``-t``/``--tty``), so it attaches as the
    refused one would have."""
    pod = {
        "metadata": {"name": "tmp", "namespace": "team-a", "labels": {"run": "tmp"}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "tmp",
                    "image": "registry.example.com/team/tools:1.0",
                    "args": ["sh"],
                    "stdin": True,
                    "stdinOnce": True,
                    "tty": True,
                }
            ],
        },
    }
    command = rerun_pod(pod, {"imagePullSecrets": [{"name": "regcred"}]})
    words = shlex.split(command)
    assert words[:2] == ["kubectl", "run"], command
    flags = {w.split("=", 1)[0] for w in words}
    stdin = bool({"-i", "--stdin", "-it", "-ti"} & flags)
    tty = bool({"-t", "--tty", "-it", "-ti"} & flags)
    assert stdin and tty, f"the rerun of an interactive kubectl run does not attach:\n{command}"


@pytest.mark.open_finding
@pytest.mark.parametrize("kind", ["Pod", "ReplicaSet", "StatefulSet", "ReplicationController"])
def test_rev22e_diagnose_says_before_its_command_what_the_fix_deletes(kind: str) -> None:
    """Seen: rev22d made diagnose's Job fix say, before its command, that the Job is deleted
    and created again; the other fixes that delete did not get the words. A bare pod's
    ("Fix: kubectl patch pod web-1 ... | kubectl replace --force -f -"), and a ReplicaSet's,
    StatefulSet's or ReplicationController's ("Fix: kubectl patch replicaset/web ... &&
    kubectl delete pod web-1 -n team-a") are commands alone: the person is not told that
    pod web-1 (its containers, its emptyDir, its uid) goes, where ``kubectl debug``'s denial
    for the same owners says "the pod is deleted so that it makes a new one" and audit's
    "its stuck pods are deleted". (e2e: tests/e2e/test_rev22e_review.py, bare pod and a
    CronJob's run.)
    Expected: the text before the fix's first ``kubectl`` says the pod is deleted or
    recreated."""
    fix = _fix_for(Workload(kind, "web" if kind != "Pod" else ""))
    assert "replace --force" in fix or "kubectl delete pod" in fix, fix
    before = fix[: fix.index("kubectl")].lower()
    assert "delete" in before or "recreat" in before, (
        f"diagnose's fix for a {kind}'s pod deletes it and says so nowhere before:\n{fix}"
    )


@pytest.mark.open_finding
def test_rev22e_diagnose_says_that_its_statefulset_fix_lowers_the_partition() -> None:
    """Seen: diagnose's fix for a StatefulSet's stuck pod web-1 ends "&& if [ "$(kubectl get
    statefulset/web ... partition}')" -gt 1 ] 2>/dev/null; then kubectl patch statefulset/web
    ... '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":1}}}}'; fi && kubectl
    delete pod web-1": lowering a staged rollout's partition rolls the StatefulSet's template
    (the canary the person was holding back, not only the secret) out to every pod from
    ordinal 1 up. ``kubectl debug``'s denial and audit say so ("a rollingUpdate partition
    above their ordinal is first lowered to it"); diagnose prints the command alone.
    Expected: diagnose's words, before the command, say the partition may be lowered and
    what that rolls out."""
    fix = _fix_for(Workload("StatefulSet", "web"))
    assert '"partition":1' in fix, fix
    before = fix[: fix.index("kubectl")].lower()
    assert "partition" in before, f"diagnose lowers a partition and does not say so:\n{fix}"
