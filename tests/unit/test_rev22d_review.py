"""Outside review rev22d of issue 22 (the words), the findings that are words alone: what
``diagnose`` prints next to a command, on the engine (the commands themselves are run
against the real API server in tests/e2e/test_rev22d_review.py)."""

from __future__ import annotations

from tests.unit.builders import cluster_with, container, deployment, pod_spec, request
from tests.unit.test_diagnosis import _fix_for
from webhook.core.config import load_config_text
from webhook.core.diagnosis import Workload
from webhook.core.registry import Answer, FixedRegistry, Outcome, Platform
from webhook.core.validate import validate


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


def test_rev22d_a_platform_denial_says_which_build_to_make_in_plain_words() -> None:
    """Seen: an image built for linux/arm64 only, on a cluster of linux/amd64 nodes
    (``checks.platform: enforce``), is denied with "Fix: use an image built for those
    platforms (a multi-platform build); no node of the cluster has a build of it (its nodes
    are linux/amd64)". "no node of the cluster has a build of it" says it the wrong way
    round (nodes have no builds; the image has none for the nodes), and the fix names the
    platform to build for only in a parenthesis after it, as the nodes'.
    Expected: the fix says to build (or use) the image for linux/amd64 in its first words,
    and not that a node lacks a build."""
    config = load_config_text("checks: {platform: enforce}\n")
    cluster = cluster_with()
    cluster.nodes.update({("linux", "amd64")})
    image = "registry.example.com/team/app:1.2"
    answer = Answer(Outcome.FOUND, platforms=(Platform("linux", "arm64"),))
    decision = validate(
        request(deployment(pod_spec(container("web", image)))),
        config,
        cluster,
        registry=FixedRegistry({image: answer}),
    )
    assert not decision.allowed
    (finding,) = [f for f in decision.findings if f.check == "platform"]
    fix = finding.fix or ""
    first = fix.split(";", 1)[0]
    assert "linux/amd64" in first, f"the fix's instruction does not name the build to make: {fix}"
    assert "no node of the cluster has a build" not in fix, fix
