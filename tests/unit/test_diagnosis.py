"""The pure diagnosis: failing images found from status and events, the kubelet's cause
confirmed or corrected by live findings, and fixes when nothing live speaks."""

from __future__ import annotations

from typing import Any

from tests.unit.builders import container, image_volume, pod, pod_spec
from webhook.core.diagnosis import diagnose, failing_containers, render_text
from webhook.core.findings import Finding
from webhook.core.pullfailure import Cause

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
    assert "kubectl delete pod web-1 -n team-a" in found.fixes[0]


def test_when_the_checks_could_not_run_the_cause_stands_with_its_fix() -> None:
    text = "dial tcp 10.0.0.5:5000: connect: connection refused"
    (found,) = diagnose(failing(text), [], [], live_note="registry: unavailable")
    assert (found.cause, found.verdict) == (Cause.CONNECTION_REFUSED, "not checked")
    assert found.fixes == ["check that the registry registry.example.com is up and listening"]
    report = render_text("web-1", "team-a", [found])
    assert report.splitlines()[0] == "pullguard diagnosed Pod team-a/web-1: 1 image failing to pull"
    assert "  Evidence: pullguard could not re-check: registry: unavailable" in report
