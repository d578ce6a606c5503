"""Outside review rev22e of issue 22 (the words), findings on the pure fix commands
(webhook/core/fixcommands.py); the commands that can be run are run against the real API
server in tests/e2e/test_rev22e_review.py."""

from __future__ import annotations

import shlex

import pytest

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
