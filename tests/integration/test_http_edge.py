"""The HTTP edge of the real server: status codes, body cap, readiness, metrics, 500s."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    REVIEWS,
    Server,
    free_port,
    load_review,
    metric_value,
    start_server,
    stop_server,
)
from webhook.core.cluster import ClusterUnavailable, SecretInfo
from webhook.core.config import DEFAULT_CONFIG
from webhook.edge.app import MAX_BODY_BYTES, Runtime, create_app
from webhook.edge.configsource import ConfigStore, default_config_text
from webhook.edge.metrics import Metrics


def test_wrong_content_type_is_415(golden_server: Server) -> None:
    with golden_server.client() as client:
        reply = client.post("/validate", content=b"{}", headers={"Content-Type": "text/plain"})
    assert reply.status_code == 415
    assert "application/json" in reply.json()["response"]["status"]["message"]


def test_oversized_body_is_413(golden_server: Server) -> None:
    with golden_server.client() as client:
        reply = client.post(
            "/validate",
            content=b" " * (MAX_BODY_BYTES + 1),
            headers={"Content-Type": "application/json"},
        )
    assert reply.status_code == 413


@pytest.mark.parametrize(
    ("body", "uid", "words"),
    [
        (b"{not json", "", "not valid JSON"),
        (
            b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1",'
            b'"request":{"uid":"u-1"}}',
            "u-1",
            "admissionReviewVersions",
        ),
        (
            b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1",'
            b'"request":{"uid":"u-2","kind":{"kind":"Pod"},"operation":"CREATE"}}',
            "u-2",
            "request.object is missing",
        ),
    ],
)
def test_malformed_review_is_400_and_keeps_the_uid(
    golden_server: Server, body: bytes, uid: str, words: str
) -> None:
    with golden_server.client() as client:
        reply = client.post("/validate", content=body, headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    response = reply.json()["response"]
    assert response["uid"] == uid
    assert response["allowed"] is False
    assert words in response["status"]["message"]


def test_health_readiness_and_metrics(golden_server: Server) -> None:
    with golden_server.client() as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        review = load_review(REVIEWS / "pod-create-generatename-missing-secret.json")
        client.post("/validate", json=review["body"])
        metrics = client.get("/metrics").text
    assert (
        'pullguard_admission_requests_total{decision="denied",kind="Pod",operation="CREATE",'
        'webhook="validate"}' in metrics
    )
    assert 'pullguard_findings_total{action="enforce",check="pullSecrets"}' in metrics
    assert "pullguard_admission_duration_seconds_bucket" in metrics
    # Every worker applies the configuration once; /metrics sums the workers.
    assert metric_value(metrics, 'pullguard_config_reloads_total{result="applied"}') >= 1


def test_plain_http_is_refused(golden_server: Server) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(golden_server.url.replace("https://", "http://") + "/healthz", timeout=5)


class ExplodingCluster:
    def get_secret(self, namespace: str, name: str) -> SecretInfo | None:
        raise RuntimeError("boom")

    def namespaces_with_pull_secret(self, name: str) -> list[str]:
        raise ClusterUnavailable("x")

    def get_service_account(self, namespace: str, name: str) -> None:
        raise RuntimeError("boom")

    def namespace_labels(self, namespace: str) -> dict[str, str]:
        return {}


def test_unexpected_exception_is_500_that_names_the_uid() -> None:
    metrics = Metrics()
    store = ConfigStore(metrics)
    store.apply_text(default_config_text(), "test")
    app = create_app(Runtime(config=store, cluster=ExplodingCluster(), metrics=metrics))
    review = load_review(REVIEWS / "pod-create-generatename-missing-secret.json")
    reply = app.test_client().post("/validate", json=review["body"])
    assert reply.status_code == 500
    body = reply.get_json()["response"]
    assert body["uid"] == review["body"]["request"]["uid"]
    assert review["body"]["request"]["uid"] in body["status"]["message"]
    assert DEFAULT_CONFIG.checks.reference  # the config in force was the default


def test_config_file_changes_apply_without_restart(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("checks: {reference: enforce}\n")
    # One worker: each worker follows the file on its own, and this test follows one (the
    # ConfigMap flipped under load in tests/e2e/test_load.py covers every worker).
    server = start_server(tmp_path, "--config", str(config), "--workers", "1")
    try:
        review = load_review(REVIEWS / "pod-create-plain.json")
        review["body"]["request"]["object"]["spec"]["containers"][0]["image"] = "NGINX"

        def allowed() -> bool:
            with server.client() as client:
                result: bool = client.post("/validate", json=review["body"]).json()["response"][
                    "allowed"
                ]
                return result

        assert allowed() is False
        config.write_text("checks: {reference: warn}\n")
        assert _eventually(allowed, True)
        # An invalid document is refused as a whole; the last good one stays in force.
        config.write_text("checks: {reference: enforce, bogus: 1}\nexemptNamespaces: 3\n")
        time.sleep(3)
        assert allowed() is True
        log = server.log_text()
        assert "checks.bogus: unknown key" in log
        assert "exemptNamespaces: must be a list of strings, got a number" in log
        with server.client() as client:
            metrics = client.get("/metrics").text
            assert metric_value(metrics, 'pullguard_config_reloads_total{result="invalid"}') >= 1
    finally:
        stop_server(server)


def _eventually(probe: object, expected: object, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe() == expected:  # type: ignore[operator]
            return True
        time.sleep(0.25)
    return False


def test_reviews_are_never_logged_with_secret_data(golden_server: Server) -> None:
    log = golden_server.log_text()
    state = (Path(__file__).parent / "data" / "cluster-state.yaml").read_text()
    secret_values = [
        line.split(":", 1)[1].strip()
        for line in state.splitlines()
        if line.strip().startswith(".dockerconfigjson:")
    ]
    assert secret_values
    for value in secret_values:
        assert value not in log
    assert json.dumps(log)  # the log is text we could ship


def _review_with(obj: object, uid: str, kind: str = "Pod") -> bytes:
    prefix = (
        '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"'
        + uid
        + '","kind":{"group":"","version":"v1","kind":"'
        + kind
        + '"},"operation":"CREATE","namespace":"team-a","object":'
    )
    return prefix.encode() + (obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"}}"


@pytest.mark.parametrize("depth", [800, 100_000])
def test_deeply_nested_json_is_a_400_review_with_the_uid(golden_server: Server, depth: int) -> None:
    # 800 levels parse, and sit where neither webhook looks (/mutate copies and diffs only
    # what it writes): judged like any pod. 100,000 do not even parse: a 400 AdmissionReview
    # that names the request, never a 500 page.
    nested = b"[" * depth + b"]" * depth
    # nginx is rewritten to the mirror, so /mutate answers with a patch.
    obj = (
        b'{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":'
        b'[{"name":"a","image":"nginx:1.25"}],"x":' + nested + b"}}"
    )
    with golden_server.client() as client:
        for endpoint in ("/validate", "/mutate"):
            reply = client.post(
                endpoint,
                content=_review_with(obj, f"deep-{depth}"),
                headers={"Content-Type": "application/json"},
            )
            response = reply.json()["response"]
            assert response["uid"] == f"deep-{depth}"
            if depth == 800:
                assert reply.status_code == 200, reply.text[:300]
                continue
            assert reply.status_code == 400, reply.text[:300]
            assert "nested" in response["status"]["message"]


def test_caller_chosen_kinds_never_become_metric_labels(golden_server: Server) -> None:
    body = load_review(REVIEWS / "pod-create-plain.json")["body"]
    with golden_server.client() as client:
        for index in range(20):
            forged = json.loads(json.dumps(body))
            forged["request"]["uid"] = f"forged-{index}"
            forged["request"]["kind"]["kind"] = f"K{index}" + "x" * 100_000
            forged["request"]["name"] = "n" * 100_000
            for endpoint in ("/validate", "/mutate"):
                reply = client.post(endpoint, json=forged)
                assert reply.status_code == 200
        scrape = client.get("/metrics").text
    assert len(scrape) < 64 * 1024
    assert "xxxxxxxxxx" not in scrape
    assert 'kind="other"' in scrape
    assert len(golden_server.log_text()) < 2 * 1024 * 1024  # no 100 kB names in the log


def test_metrics_port_serves_metrics_only_over_plain_http(tmp_path: Path) -> None:
    from tests.conftest import free_port

    metrics_port = free_port()
    server = start_server(tmp_path, "--metrics-port", str(metrics_port))
    try:
        plain = f"http://127.0.0.1:{metrics_port}"
        scrape = httpx.get(f"{plain}/metrics", timeout=5)
        assert scrape.status_code == 200
        # Series appear once counted (the workers' shared files hold only what was counted).
        assert "pullguard_config_reloads_total" in scrape.text
        assert httpx.get(f"{plain}/healthz", timeout=5).status_code == 200
        review = load_review(REVIEWS / "pod-create-plain.json")["body"]
        for path in ("/validate", "/mutate"):
            assert httpx.post(f"{plain}{path}", json=review, timeout=5).status_code == 404
        assert httpx.get(f"{plain}/readyz", timeout=5).status_code == 404
        with server.client() as client:  # the webhook port is unchanged
            assert client.post("/validate", json=review).status_code == 200
            assert client.get("/metrics").status_code == 200
    finally:
        stop_server(server)


def test_readyz_says_which_checks_cannot_run(tmp_path: Path) -> None:
    # One worker: each worker says its notes once, in its own log lines.
    server = start_server(tmp_path, "--workers", "1")
    try:
        with server.client() as client:
            body = client.get("/readyz").text
        assert body.startswith("ok\n")
        # The registry check runs in --dev too; without a cluster there are no secrets and
        # no Node labels to judge by.
        assert "registry" not in body
        note = "no cluster (--dev): the pullSecrets and platform checks cannot run"
        assert f"note: {note}" in body
        assert server.log_text().count(note) == 1
    finally:
        stop_server(server)


def test_the_start_up_log_names_the_scheme_it_serves(tmp_path: Path) -> None:
    # gunicorn does not know the worker does TLS; its "Listening at" line must not say
    # http:// for the HTTPS port (issue 19 review F6d). The metrics port is plain HTTP.
    metrics = free_port()
    server = start_server(tmp_path, "--workers", "1", "--metrics-port", str(metrics))
    try:
        port = server.port
        log = server.log_text()
        listening = [line for line in log.splitlines() if "Listening at:" in line]
        assert listening, log
        assert f"https://127.0.0.1:{port}" in listening[0]
        assert f"http://127.0.0.1:{port}" not in log
        assert f"http://127.0.0.1:{metrics}" in listening[0]
    finally:
        stop_server(server)
