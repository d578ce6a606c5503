"""Outside review rev22d of issue 22 (the words), the findings that are words alone: what
``diagnose`` prints next to a command, on the engine (the commands themselves are run
against the real API server in tests/e2e/test_rev22d_review.py)."""

from __future__ import annotations

import pytest

from tests.unit.test_diagnosis import _fix_for
from webhook.core.diagnosis import Workload


@pytest.mark.open_finding
def test_rev22d_diagnose_says_that_its_job_fix_deletes_the_job_and_runs_it_again() -> None:
    """Seen: ``diagnose`` of a refused pod of Job ``migrate`` prints "Fix: kubectl create
    secret docker-registry regcred-... | kubectl apply -f - && kubectl patch job/migrate ...
    --dry-run=client -o yaml -p '...' | kubectl replace --force -f -" and nothing else:
    not one word says that ``replace --force`` deletes Job migrate (its pods, its history of
    completions) and runs it again from the start, which for a migration or a half-done
    batch is a decision the person must make. The same cause at admission (``kubectl debug``
    of the Job's pod) says it: "(a Job's pod template cannot change: the Job is deleted and
    created again with it, and its pods run again from the start)". diagnose and admission
    disagree on what the person is told.
    Expected: diagnose's Job fix says, before its command, that the Job is deleted and
    created again and its pods run again from the start."""
    fix = _fix_for(Workload("Job", "migrate"))
    assert "kubectl replace --force -f -" in fix, fix
    # No command of the fix has these words: only a sentence can.
    assert "deleted" in fix and "again" in fix, (
        f"diagnose's fix deletes and reruns Job migrate without saying so:\n{fix}"
    )
