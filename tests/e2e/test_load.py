"""Load through the real API server, and the configuration flipped under load.

1. Thousands of pod creates from many clients, in phases whose idle gaps straddle the usual
   keep-alive times (2 s: gunicorn's default; 5 s; none): not one webhook call may reach the
   API server's timeout. The webhooks are installed with ``failurePolicy: Ignore``, so a
   timed-out call would pass silently: the API server's own counters
   (``apiserver_admission_webhook_fail_open_count``, and the rejections for calling errors)
   say whether any call failed, and no create may take the webhook timeout.
2. pullguard's ConfigMap replaced 100 times while reviews keep arriving: every review is
   answered, well-formed and in time; at the end the last document is in force in every
   worker.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import httpx

from tests.conftest import REVIEWS, load_review
from tests.e2e.cluster import ControlPlane, wait_for
from tests.e2e.conftest import CONFIG, NAMESPACE, E2ERegistries, Installation, configmap
from tests.integration.registries import push_image

WEBHOOK_TIMEOUT = 5.0  # deploy/base/webhooks.yaml


def _webhook_failures(plane: ControlPlane) -> float:
    """Calls to pullguard's webhooks the API server counted as failed (fail-open or error)."""
    text = plane.kubectl("get", "--raw", "/metrics").stdout
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(
            (
                "apiserver_admission_webhook_fail_open_count",
                "apiserver_admission_webhook_rejection_count",
            )
        ):
            continue
        if "pullguard" not in line:
            continue
        if "rejection_count" in line and 'error_type="calling_webhook_error"' not in line:
            continue  # pullguard's own denials are not failures
        total += float(line.rsplit(" ", 1)[1])
    return total


def test_thousands_of_pod_creates_and_no_webhook_call_times_out(
    installed: Installation, ns: str, registries: E2ERegistries
) -> None:
    plane = installed.plane
    push_image(registries.public, "team/load", "1.0")
    image = f"{registries.public.host}/team/load:1.0"
    failed_before = _webhook_failures(plane)
    results: list[tuple[int, float]] = []
    # (idle gap before the phase, pods, clients)
    phases = [(0.0, 600, 16), (2.2, 300, 8), (5.5, 300, 24), (2.0, 300, 4)]
    made = 0
    for gap, count, clients in phases:
        time.sleep(gap)
        names = [f"load-{n}" for n in range(made, made + count)]
        made += count
        results += plane.create_pods(ns, names, image, clients)
    statuses = [status for status, _ in results]
    slowest = max(took for _, took in results)
    print(f"{len(results)} creates, slowest {slowest:.2f}s")
    assert statuses.count(201) == len(results) == made, sorted(set(statuses))
    assert slowest < WEBHOOK_TIMEOUT, f"a create took {slowest:.1f}s"
    assert _webhook_failures(plane) == failed_before
    # pullguard judged them (the webhooks were called, not skipped).
    with installed.primary.client() as client:
        metrics = client.get("/metrics").text
    judged = re.findall(
        r'pullguard_admission_requests_total\{decision="\w+",kind="Pod",operation="CREATE",'
        r'webhook="validate"\} (\S+)',
        metrics,
    )
    assert sum(float(value) for value in judged) >= made


FLIPS = 100
WARN = CONFIG.replace("pullPolicy: warn", "pullPolicy: off")


def _review(uid: str) -> dict[str, Any]:
    body = load_review(REVIEWS / "pod-create-plain.json")["body"]
    body["request"]["uid"] = uid
    body["request"]["namespace"] = "e2e"
    body["request"]["object"]["spec"]["containers"][0]["image"] = "registry.example.com/a:latest"
    return body


def test_the_configmap_flipped_100_times_under_load(installed: Installation) -> None:
    import yaml
    from kubernetes import client as k8s

    plane = installed.plane
    api = k8s.CoreV1Api(plane.api_client())
    replica = installed.primary
    stop = threading.Event()
    answers: list[tuple[int, float, bool]] = []
    problems: list[str] = []

    def load(worker: int) -> None:
        n = 0
        with replica.client() as http:
            while not stop.is_set():
                n += 1
                started = time.perf_counter()
                try:
                    reply = http.post("/validate", json=_review(f"flip-{worker}-{n}"))
                except httpx.HTTPError as error:
                    problems.append(type(error).__name__)
                    continue
                took = time.perf_counter() - started
                response = reply.json()["response"]
                if response["uid"] != f"flip-{worker}-{n}":
                    problems.append(f"uid {response['uid']}")
                answers.append((reply.status_code, took, bool(response.get("warnings"))))

    threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    try:
        for flip in range(FLIPS):
            text = WARN if flip % 2 == 0 else CONFIG
            data = yaml.safe_load(configmap(text))["data"]
            api.patch_namespaced_config_map("pullguard-config", NAMESPACE, {"data": data})
            time.sleep(0.05)
    finally:
        time.sleep(1)
        stop.set()
        for thread in threads:
            thread.join()
    assert problems == []
    print(f"{len(answers)} reviews answered during {FLIPS} flips")
    assert len(answers) > 50
    assert all(status == 200 for status, _, _ in answers)
    slowest = max(took for _, took, _ in answers)
    assert slowest < WEBHOOK_TIMEOUT, f"slowest answer {slowest:.2f}s"
    # The last document (CONFIG: pullPolicy warns on a moving tag) is in force in every
    # worker: a run of answers in a row all carry the warning.
    with replica.client() as http:

        def settled() -> bool:
            replies = [http.post("/validate", json=_review(f"settled-{n}")) for n in range(12)]
            return all(r.json()["response"].get("warnings") for r in replies)

        wait_for(settled, 30, "the last configuration in every worker")
    assert "Traceback" not in replica.log_text()
