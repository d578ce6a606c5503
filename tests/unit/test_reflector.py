"""The list+watch cache: list, apply events, relist after 410 Gone, confirm absence directly."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from kubernetes.client.exceptions import ApiException

from webhook.core.cluster import SecretInfo, marked_as_copy
from webhook.edge.kube import KubeClusterView, Reflector, secret_info
from webhook.edge.secretsync import copy_of


def obj(namespace: str, name: str, version: str, **fields: Any) -> SimpleNamespace:
    meta = SimpleNamespace(
        namespace=namespace,
        name=name,
        resource_version=version,
        labels=fields.pop("labels", None),
        annotations=None,
    )
    return SimpleNamespace(metadata=meta, **fields)


def listing(items: list[Any], version: str) -> SimpleNamespace:
    return SimpleNamespace(items=items, metadata=SimpleNamespace(resource_version=version))


class ScriptedWatch:
    """Plays scripted event batches, one per stream() call, then blocks until stopped."""

    def __init__(self, script: list[Any], done: threading.Event) -> None:
        self.script = script
        self.done = done

    def __call__(self) -> ScriptedWatch:
        return self

    def stream(self, *_: Any, **kwargs: Any) -> Any:
        self.versions_seen = kwargs.get("resource_version")
        if not self.script:
            self.done.set()
            threading.Event().wait(0.05)
            return
        batch = self.script.pop(0)
        if isinstance(batch, Exception):
            raise batch
        yield from batch

    def stop(self) -> None:
        pass


def test_events_update_the_cache_and_410_triggers_a_relist() -> None:
    lists = [listing([obj("a", "s1", "1")], "10"), listing([obj("a", "s3", "30")], "30")]
    calls: list[dict[str, Any]] = []

    def list_func(**kwargs: Any) -> Any:
        calls.append(kwargs)
        return lists.pop(0) if len(lists) > 1 else lists[0]

    done = threading.Event()
    script: list[Any] = [
        [
            {"type": "ADDED", "object": obj("a", "s2", "11")},
            {"type": "DELETED", "object": obj("a", "s1", "12")},
        ],
        ApiException(status=410),
    ]
    reflector = Reflector(
        "test",
        list_func,
        lambda o: o.metadata.name,
        list_kwargs={"field_selector": "type=x"},
        watch_factory=ScriptedWatch(script, done),
    )
    reflector.start()
    assert done.wait(5)
    reflector.stop()
    assert reflector.synced.is_set()
    assert sorted(reflector.items()) == ["s3"]  # the relist replaced everything
    assert all(c.get("field_selector") == "type=x" for c in calls)
    assert len(calls) == 2


def test_a_relist_reads_pages_and_keeps_every_item() -> None:
    from types import SimpleNamespace

    from webhook.edge.kube import LIST_PAGE

    pages = {
        None: ([obj("a", f"s{n}", "1") for n in range(3)], "p2"),
        "p2": ([obj("b", f"t{n}", "1") for n in range(2)], "p3"),
        "p3": ([obj("c", "u0", "1")], None),
    }
    calls: list[dict[str, Any]] = []

    def list_func(**kwargs: Any) -> Any:
        calls.append(kwargs)
        items, token = pages[kwargs.get("_continue")]
        meta = SimpleNamespace(resource_version="40", _continue=token)
        return SimpleNamespace(items=items, metadata=meta)

    added: list[str] = []
    reflector = Reflector(
        "paged",
        list_func,
        lambda o: o.metadata.name,
        list_kwargs={"field_selector": "type=x"},
        on_event=lambda kind, item: added.append(item.metadata.name),
    )
    assert reflector.relist() == "40"
    assert sorted(reflector.items()) == ["s0", "s1", "s2", "t0", "t1", "u0"]
    assert sorted(added) == sorted(reflector.items())
    assert [c.get("_continue") for c in calls] == [None, "p2", "p3"]
    assert all(c["limit"] == LIST_PAGE and c["field_selector"] == "type=x" for c in calls)


class FakeCoreApi:
    def __init__(self) -> None:
        self.direct_reads: list[tuple[str, str]] = []
        self.secrets: dict[tuple[str, str], Any] = {}

    def list_secret_for_all_namespaces(self, **_: Any) -> Any:
        return listing([], "1")

    def list_service_account_for_all_namespaces(self, **_: Any) -> Any:
        return listing([], "1")

    def list_namespace(self, **_: Any) -> Any:
        return listing([], "1")

    def list_node(self, **_: Any) -> Any:
        return listing([], "1")

    def read_namespaced_secret(self, name: str, namespace: str, **_: Any) -> Any:
        self.direct_reads.append((namespace, name))
        if (namespace, name) not in self.secrets:
            raise ApiException(status=404)
        return self.secrets[(namespace, name)]


def test_absence_is_confirmed_by_a_direct_read() -> None:
    # kubectl apply of a Secret and a Deployment in one file: the watch has not delivered
    # the Secret yet when the Deployment is reviewed.
    api = FakeCoreApi()
    view = KubeClusterView(api)
    fresh = obj("team-a", "regcred", "5", type="Opaque", data={"k": "dg=="})
    api.secrets[("team-a", "regcred")] = fresh
    found = view.get_secret("team-a", "regcred")
    assert found is not None and found.type == "Opaque"
    assert view.get_secret("team-a", "nope") is None
    assert api.direct_reads == [("team-a", "regcred"), ("team-a", "nope")]


def test_secret_info_keeps_data_base64_and_out_of_repr() -> None:
    info = secret_info(obj("ns", "s", "3", type="kubernetes.io/dockercfg", data={"x": "c2VjcmV0"}))
    assert info.data == {"x": "c2VjcmV0"}
    assert "c2VjcmV0" not in repr(info)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_back_off_resets_once_the_api_server_answers_and_errors_resume_without_relist() -> None:
    # Three failed watches (an outage), then the API server answers again: the next failure
    # must wait the shortest delay again, not the long one the outage built up.
    lists: list[dict[str, Any]] = []

    def list_func(**kwargs: Any) -> Any:
        lists.append(kwargs)
        return listing([obj("a", "s1", "1")], "10")

    done = threading.Event()
    outage = ConnectionError("API server unreachable")
    script: list[Any] = [
        outage,
        outage,
        outage,
        [{"type": "ADDED", "object": obj("a", "s2", "11")}],
    ]
    script.append(outage)
    waits: list[float] = []
    reflector = Reflector(
        "test",
        list_func,
        lambda o: o.metadata.name,
        watch_factory=ScriptedWatch(script, done),
        sleep=lambda seconds: waits.append(seconds) or False,
        jitter=lambda: 0.0,
    )
    reflector.start()
    assert done.wait(5)
    reflector.stop()
    assert waits == [0.5, 1.0, 2.0, 0.5]
    assert len(lists) == 1  # network errors resume from the resourceVersion: no relist
    assert sorted(reflector.items()) == ["s1", "s2"]


def test_back_off_is_capped() -> None:
    from webhook.edge.kube import MAX_BACKOFF

    done = threading.Event()
    script: list[Any] = [ConnectionError("down")] * 12
    waits: list[float] = []
    reflector = Reflector(
        "test",
        lambda **_: listing([], "1"),
        lambda o: o,
        watch_factory=ScriptedWatch(script, done),
        sleep=lambda seconds: waits.append(seconds) or False,
        jitter=lambda: 0.0,
    )
    reflector.start()
    assert done.wait(5)
    reflector.stop()
    assert max(waits) == MAX_BACKOFF <= 8


def test_a_cache_that_has_not_heard_from_the_api_server_is_not_ready() -> None:
    clock = Clock()
    reflector = Reflector("secrets-x", lambda **_: listing([], "1"), lambda o: o, clock=clock)
    assert reflector.silence() is None  # never synced: "not synced" says it already
    reflector.relist()
    assert reflector.silence() == 0.0
    clock.now += 200
    assert reflector.silence() == 200.0

    api = FakeCoreApi()
    view = KubeClusterView(api, clock=clock, max_silence=150)
    for cache in view.reflectors():
        cache.relist()
    assert view.not_synced() == []
    clock.now += 151
    problems = view.not_synced()
    assert len(problems) == len(view.reflectors())
    assert (
        problems[0] == "secrets-dockerconfigjson cache has not heard from the API server for 151s"
    )


def test_pullguards_copy_read_back_keeps_the_marks_that_make_it_a_copy() -> None:
    """rev22b: a refused secret is fixed at its source only if it is pullguard's copy; the
    core knows one by the marks secretsync writes, so what the reflector and a direct read
    keep of a Secret (secret_info) must keep them, and a lookalike without them is not one."""
    source = SecretInfo("pullguard", "corp-pull", "kubernetes.io/dockerconfigjson", {})
    made = copy_of(source, "team-a", b"k" * 32)
    meta = SimpleNamespace(
        namespace="team-a",
        name="corp-pull",
        resource_version="7",
        labels={**made.labels, "app": "x"},
        annotations={**made.annotations, "kubectl.kubernetes.io/last-applied-configuration": "{}"},
    )
    read = secret_info(SimpleNamespace(metadata=meta, type=made.type, data={}))
    assert marked_as_copy(read, "pullguard")
    assert not marked_as_copy(read, "elsewhere")
    lookalike = secret_info(obj("team-a", "corp-pull", "8", type=made.type, data={}))
    assert not marked_as_copy(lookalike, "pullguard")
