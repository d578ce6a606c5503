"""The API server goes away and comes back: caches must follow it again, with no restart.

Runs after the other end-to-end modules (it restarts the shared API server). Recovery times
are printed (``-s`` shows them); the bound asserted is the one pullguard documents, not a
benchmark.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from tests.conftest import REVIEWS, load_review
from tests.e2e.cluster import ADMIN_TOKEN, ControlPlane, wait_for
from tests.e2e.conftest import Installation, namespace, pod, pull_secret
from webhook.edge.kube import Reflector, secret_info

pytestmark = pytest.mark.e2e

#: Longest a watch may stay broken after the API server is back: the reconnect back-off
#: doubles up to 30 s, plus jitter.
RECOVERY_BOUND = 45


def test_cache_follows_the_api_server_across_a_restart(
    control_plane: ControlPlane, installed: Installation
) -> None:
    plane = control_plane
    namespace(plane, "outage")
    core: Any = client.CoreV1Api(plane.api_client())
    reflector = Reflector(
        "secrets-outage",
        core.list_secret_for_all_namespaces,
        secret_info,
        list_kwargs={"field_selector": "type=kubernetes.io/dockerconfigjson"},
    )
    reflector.start()
    try:
        assert reflector.synced.wait(10)
        plane.apply(pull_secret("before", "outage", "registry.example.com"), check=True)
        wait_for(lambda: reflector.get("outage", "before"), 10, "event before the outage")

        plane.stop_apiserver()
        try:
            # While the API server is away, reviews sent to pullguard are still answered in
            # time, judged on the caches (the secret the pod names is known to exist).
            review = load_review(REVIEWS / "pod-create-plain.json")["body"]
            review["request"]["namespace"] = "outage"
            spec = review["request"]["object"]["spec"]
            spec["containers"][0]["image"] = "registry.example.com/app:1"
            spec.pop("initContainers", None)
            spec["imagePullSecrets"] = [{"name": "before"}]
            for replica in installed.replicas:
                with replica.client() as http:
                    started = time.monotonic()
                    reply = http.post("/validate", json=review)
                    took = time.monotonic() - started
                print(f"\nanswered in {took * 1000:.0f} ms with the API server down")
                assert reply.status_code == 200
                assert reply.json()["response"]["allowed"] is True, reply.text
                assert took < 5
        finally:
            plane.start_apiserver()
        back = time.monotonic()
        plane.apply(pull_secret("after", "outage", "registry.example.com"), check=True)
        wait_for(lambda: reflector.get("outage", "after"), RECOVERY_BOUND, "event after restart")
        print(f"\nin-process cache caught up {time.monotonic() - back:.1f}s after the restart")
        assert reflector.get("outage", "before") is not None
    finally:
        reflector.stop()

    # The running replicas: a secret deleted after the restart must stop admitting pods that
    # need it, which only a re-established watch can tell them (a cached secret is trusted).
    secret_pod = pod("needs-it", "outage", "registry.example.com/app:1", ("before",))
    assert plane.apply(secret_pod, "--dry-run=server").ok
    plane.kubectl("delete", "secret", "before", "-n", "outage", check=True)
    deleted = time.monotonic()
    result = wait_for(
        lambda: (r := plane.apply(secret_pod, "--dry-run=server")).returncode == 1 and r,
        RECOVERY_BOUND,
        "pullguard's cache to see the deletion",
    )
    print(f"pullguard saw the deletion {time.monotonic() - deleted:.1f}s after it")
    assert 'imagePullSecret "before" does not exist' in result.stderr
    for replica in installed.replicas:
        assert replica.ready(), replica.log_text()[-2000:]


def test_a_watch_behind_a_half_open_connection_does_not_stay_stale(
    control_plane: ControlPlane,
) -> None:
    # The watch's connection goes half-open (open, silent). The cache must notice by its read
    # deadline, reconnect, and then reflect a deletion made meanwhile.
    from tests.e2e.proxy import FreezingProxy

    plane = control_plane
    namespace(plane, "half-open")
    proxy = FreezingProxy(int(plane.server.rsplit(":", 1)[1]))
    kubeconfig = plane.write_kubeconfig(
        plane.workdir / "kubeconfig-proxy", token=ADMIN_TOKEN, user="admin"
    )
    text = kubeconfig.read_text().replace(plane.server, f"https://127.0.0.1:{proxy.port}")
    kubeconfig.write_text(text)
    core: Any = client.CoreV1Api(plane.api_client(kubeconfig))
    read_timeout = 4
    reflector = Reflector(
        "secrets-half-open",
        core.list_secret_for_all_namespaces,
        secret_info,
        list_kwargs={"field_selector": "type=kubernetes.io/dockerconfigjson"},
        watch_timeout=300,  # the server would keep this watch for 5 minutes
        read_timeout=read_timeout,
    )
    reflector.start()
    try:
        assert reflector.synced.wait(10)
        plane.apply(pull_secret("doomed", "half-open", "registry.example.com"), check=True)
        wait_for(lambda: reflector.get("half-open", "doomed"), 10, "the secret in the cache")
        assert proxy.freeze() >= 1
        plane.kubectl("delete", "secret", "doomed", "-n", "half-open", check=True)
        frozen = time.monotonic()
        wait_for(
            lambda: reflector.get("half-open", "doomed") is None,
            read_timeout + 10,
            "the deletion, through a new connection",
        )
        print(f"\nhalf-open watch replaced; deletion seen {time.monotonic() - frozen:.1f}s later")
    finally:
        reflector.stop()
        proxy.close()
