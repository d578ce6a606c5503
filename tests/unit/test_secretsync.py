"""Default pull-secret copies: created, kept in sync, recreated, never fought over, and never
a way for a tenant to read another namespace's secrets."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from tests.unit.builders import dockerconfigjson
from webhook.core.cluster import MANAGED_BY_LABEL, SecretInfo
from webhook.core.mutate import SecretCopy
from webhook.edge.secretsync import (
    OUTCOMES,
    PROOF_ANNOTATION,
    SOURCE_ANNOTATION,
    CopyCause,
    SecretSyncer,
    copy_proof,
)


class FakeApi:
    """An API server's secret store with resourceVersions and conflicts."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], SecretInfo] = {}
        self.version = 0
        self.namespaces = {"pullguard", "team-a", "team-b", "kube-system", "tenant", "noisy"}
        self.namespaces |= {f"ns{n}" for n in range(40)}
        self.objects: dict[tuple[str, str, str], Mapping[str, Any]] = {}
        self.object_reads = 0

    def put(self, secret: SecretInfo) -> None:
        self.version += 1
        self.secrets[(secret.namespace, secret.name)] = replace(
            secret, resource_version=str(self.version)
        )

    def read(self, namespace: str, name: str) -> SecretInfo | None:
        return self.secrets.get((namespace, name))

    def create(self, secret: SecretInfo) -> str:
        if secret.namespace not in self.namespaces:
            return "namespace-gone"
        if (secret.namespace, secret.name) in self.secrets:
            return "exists"
        self.put(secret)
        return "created"

    def delete(self, secret: SecretInfo) -> bool:
        current = self.secrets.get((secret.namespace, secret.name))
        if current is None or current.resource_version != secret.resource_version:
            return False
        del self.secrets[(secret.namespace, secret.name)]
        return True

    def replace_data(
        self, secret: SecretInfo, data: Mapping[str, str], resource_version: str
    ) -> str:
        current = self.secrets[(secret.namespace, secret.name)]
        if current.resource_version != resource_version:
            return "conflict"
        self.put(replace(current, data=dict(data)))
        return "updated"

    def managed_copies(self) -> Iterable[SecretInfo]:
        return [s for s in self.secrets.values() if s.labels.get(MANAGED_BY_LABEL) == "pullguard"]

    def namespace_active(self, namespace: str) -> bool:
        return namespace in self.namespaces

    def read_object(
        self, api_version: str, kind: str, namespace: str, name: str
    ) -> Mapping[str, Any] | None:
        self.object_reads += 1
        return self.objects.get((kind, namespace, name))


KEY = b"k" * 32
CONFIGURED = {("corp", "pullguard")}


def source(data: dict[str, str], secret_type: str = "kubernetes.io/dockerconfigjson") -> SecretInfo:
    return SecretInfo("pullguard", "corp", secret_type, data)


def syncer(api: FakeApi, allowed: set[tuple[str, str]] | None = None) -> SecretSyncer:
    pairs = CONFIGURED if allowed is None else allowed
    return SecretSyncer(api, key=KEY, allowed=lambda: pairs)


def test_copy_is_labelled_proven_and_identical_to_its_source() -> None:
    api = FakeApi()
    api.put(source(dockerconfigjson("registry.example.com")))
    assert syncer(api).copy(SecretCopy("corp", "pullguard", "team-a")) == "created"
    copy = api.read("team-a", "corp")
    assert copy is not None
    assert copy.data == dockerconfigjson("registry.example.com")
    assert copy.labels == {MANAGED_BY_LABEL: "pullguard"}
    assert copy.annotations == {
        SOURCE_ANNOTATION: "pullguard/corp",
        PROOF_ANNOTATION: copy_proof(KEY, "team-a", "corp", "pullguard"),
    }


def test_rotation_deletion_and_a_second_replica() -> None:
    api = FakeApi()
    api.put(source(dockerconfigjson("old.example.com")))
    first, second = syncer(api), syncer(api)
    assert first.copy(SecretCopy("corp", "pullguard", "team-a")) == "created"
    assert second.copy(SecretCopy("corp", "pullguard", "team-a")) == "exists"
    api.put(source(dockerconfigjson("new.example.com")))  # the source rotates
    assert first.reconcile_once() == {"updated": 1}
    assert second.reconcile_once() == {"in-sync": 1}  # converged, no fight
    del api.secrets[("team-a", "corp")]  # someone deletes the copy
    assert second.reconcile_once() == {"recreated": 1}
    copy = api.read("team-a", "corp")
    assert copy is not None and copy.data == dockerconfigjson("new.example.com")


def test_a_secret_not_made_by_pullguard_is_never_touched() -> None:
    api = FakeApi()
    api.put(source(dockerconfigjson("a.example.com")))
    sync = syncer(api)
    sync.copy(SecretCopy("corp", "pullguard", "team-a"))
    theirs = SecretInfo(
        "team-a", "corp", "kubernetes.io/dockerconfigjson", dockerconfigjson("theirs.example.com")
    )
    api.put(theirs)
    assert sync.reconcile_once() == {"not-managed": 1}
    stored = api.read("team-a", "corp")
    assert stored is not None and stored.data == theirs.data
    assert sync.targets == set()  # and forgotten


def test_restart_adopts_its_own_copies() -> None:
    api = FakeApi()
    api.put(source(dockerconfigjson("a.example.com")))
    syncer(api).copy(SecretCopy("corp", "pullguard", "team-b"))
    api.put(source(dockerconfigjson("b.example.com")))
    restarted = syncer(api)
    restarted.learn_existing()
    assert restarted.reconcile_once() == {"updated": 1}


def test_the_sync_loop_follows_copies_another_worker_made_and_a_late_configuration() -> None:
    """Each worker of ``serve`` has its own syncer, and only the one holding the lock runs
    the loop: a copy the admission of another worker made, or one adopted before the
    configuration naming its source was loaded, must still follow its source (found by the
    e2e test that rotates a source under a restarted replica)."""
    import threading

    api = FakeApi()
    api.put(source(dockerconfigjson("a.example.com")))
    pairs: set[tuple[str, str]] = set()  # nothing configured yet when the loop starts
    leader = SecretSyncer(api, key=KEY, allowed=lambda: pairs)
    worker = syncer(api)
    loop = threading.Thread(target=leader.run, args=(0.05,), daemon=True)
    loop.start()
    try:
        pairs.update(CONFIGURED)  # the configuration arrives
        assert worker.copy(SecretCopy("corp", "pullguard", "team-b")) == "created"
        api.put(source(dockerconfigjson("rotated.example.com")))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            copy = api.read("team-b", "corp")
            if copy is not None and copy.data == dockerconfigjson("rotated.example.com"):
                break
            time.sleep(0.05)
        copy = api.read("team-b", "corp")
        assert copy is not None and copy.data == dockerconfigjson("rotated.example.com")
    finally:
        leader.stop()
        loop.join(5)


def forged(namespace: str, name: str, source_ref: str, proof: str = "") -> SecretInfo:
    """What a tenant can write in its own namespace: any label, any annotation."""
    return SecretInfo(
        namespace,
        name,
        "kubernetes.io/dockerconfigjson",
        dockerconfigjson("tenant.example.com"),
        labels={MANAGED_BY_LABEL: "pullguard"},
        annotations={SOURCE_ANNOTATION: source_ref, PROOF_ANNOTATION: proof},
    )


def test_a_forged_copy_of_a_kube_system_secret_is_never_filled() -> None:
    # The attack: label a secret of your own as pullguard's copy of kube-system/token and wait
    # for the sync to fill it with the token's data.
    api = FakeApi()
    api.put(
        SecretInfo("kube-system", "token", "kubernetes.io/service-account-token", {"t": "WA=="})
    )
    api.put(forged("tenant", "token", "kube-system/token", proof="0" * 64))
    sync = syncer(api)
    sync.learn_existing()
    assert sync.targets == set()
    assert sync.reconcile_once() == {}
    stored = api.read("tenant", "token")
    assert stored is not None and stored.data == dockerconfigjson("tenant.example.com")


def test_a_forged_copy_of_a_configured_secret_without_a_valid_proof_is_left_alone() -> None:
    api = FakeApi()
    api.put(source(dockerconfigjson("corp.example.com")))
    api.put(forged("tenant", "corp", "pullguard/corp", proof="0" * 64))
    sync = syncer(api)
    sync.learn_existing()
    assert sync.targets == set()
    # Asked to copy into that namespace, it finds a secret that is not its own: hands off.
    assert sync.copy(SecretCopy("corp", "pullguard", "tenant")) == "not-managed"
    assert sync.targets == set()
    stored = api.read("tenant", "corp")
    assert stored is not None and stored.data == dockerconfigjson("tenant.example.com")


def test_only_configured_pairs_of_pull_secret_type_are_copied() -> None:
    api = FakeApi()
    api.put(
        SecretInfo("kube-system", "token", "kubernetes.io/service-account-token", {"t": "WA=="})
    )
    api.put(source({"k": "dg=="}, secret_type="Opaque"))
    sync = syncer(api, allowed={("corp", "pullguard")})
    assert sync.copy(SecretCopy("token", "kube-system", "tenant")) == "refused"
    assert sync.copy(SecretCopy("corp", "pullguard", "tenant")) == "refused"  # not a pull type
    assert api.read("tenant", "token") is None and api.read("tenant", "corp") is None
    assert sync.targets == set()


def test_forged_reviews_for_namespaces_that_do_not_exist_never_grow_the_list() -> None:
    api = FakeApi()
    api.put(source(dockerconfigjson("corp.example.com")))
    sync = syncer(api)
    for index in range(300):
        assert sync.copy(SecretCopy("corp", "pullguard", f"ghost-{index}")) == "namespace-gone"
    assert sync.targets == set()


def test_a_namespace_that_went_away_is_forgotten() -> None:
    api = FakeApi()
    api.put(source(dockerconfigjson("corp.example.com")))
    sync = syncer(api)
    sync.copy(SecretCopy("corp", "pullguard", "team-a"))
    api.namespaces.discard("team-a")
    del api.secrets[("team-a", "corp")]
    assert sync.reconcile_once() == {"namespace-gone": 1}
    assert sync.targets == set()


def test_a_pair_removed_from_the_configuration_stops_being_synced() -> None:
    api = FakeApi()
    api.put(source(dockerconfigjson("corp.example.com")))
    pairs = set(CONFIGURED)
    sync = SecretSyncer(api, key=KEY, allowed=lambda: pairs)
    sync.copy(SecretCopy("corp", "pullguard", "team-a"))
    pairs.clear()
    assert sync.reconcile_once() == {}
    assert sync.targets == set()
    assert api.read("team-a", "corp") is not None  # left in place for the pods using it


def test_a_source_that_changes_type_gets_its_copy_recreated() -> None:
    api = FakeApi()
    api.put(source(dockerconfigjson("corp.example.com")))
    sync = syncer(api)
    sync.copy(SecretCopy("corp", "pullguard", "team-a"))
    raw = '{"corp.example.com": {"auth": "dTpw"}}'
    import base64

    api.put(
        source({".dockercfg": base64.b64encode(raw.encode()).decode()}, "kubernetes.io/dockercfg")
    )
    assert sync.reconcile_once() == {"recreated": 1}
    copy = api.read("team-a", "corp")
    assert copy is not None and copy.type == "kubernetes.io/dockercfg"


def test_every_failure_is_counted_with_a_known_outcome() -> None:
    class Broken(FakeApi):
        def read(self, namespace: str, name: str) -> SecretInfo | None:
            if namespace == "team-a":
                raise ConnectionError("API server unreachable")
            return super().read(namespace, name)

    api = Broken()
    api.put(source(dockerconfigjson("corp.example.com")))
    seen: list[str] = []
    sync = SecretSyncer(api, key=KEY, allowed=lambda: CONFIGURED, record=seen.append)
    assert sync.copy(SecretCopy("corp", "pullguard", "team-b")) == "created"
    sync._remember(("team-a", "corp", "pullguard"))
    assert sync.reconcile_once() == {"failed": 1, "in-sync": 1}
    assert sorted(seen) == ["failed", "in-sync"]
    assert set(seen) <= set(OUTCOMES)


def test_a_refused_copy_says_the_api_servers_words() -> None:
    # A ResourceQuota allowing no Secret (issue 19 review F6b): the same create by hand would
    # be refused too, so the warning says why.
    from kubernetes.client.exceptions import ApiException

    class Quota(FakeApi):
        def create(self, secret: SecretInfo) -> str:
            error = ApiException(status=403, reason="Forbidden")
            error.body = (
                '{"kind":"Status","message":"secrets \\"corp\\" is forbidden: exceeded quota: '
                'no-secrets, requested: secrets=1, used: secrets=0, limited: secrets=0"}'
            )
            raise error

    api = Quota()
    api.put(source(dockerconfigjson("corp.example.com")))
    sync = SecretSyncer(api, key=KEY, allowed=lambda: CONFIGURED)
    outcome = sync.copy(SecretCopy("corp", "pullguard", "team-b"))
    label, _, why = outcome.partition(": ")
    assert label == "failed" and label in OUTCOMES
    assert why.startswith('secrets "corp" is forbidden: exceeded quota: no-secrets')


def _pod_object(name: str, uid: str, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "uid": uid},
        "spec": {"imagePullSecrets": [{"name": n} for n in secrets]},
    }


def test_a_forged_review_alone_never_makes_a_copy(monkeypatch: Any) -> None:
    """Anything that reaches the port can POST a review: without the API server's client
    certificate, a copy needs a real object that needs it, checked by direct reads."""
    from webhook.edge import secretsync

    monkeypatch.setattr(secretsync, "DEFER_CHECKS", (0.05, 0.1, 0.2))
    api = FakeApi()
    api.put(source(dockerconfigjson("corp.example.com")))
    recorded: list[str] = []
    sync = SecretSyncer(api, key=KEY, allowed=lambda: CONFIGURED, record=recorded.append)
    wanted = SecretCopy("corp", "pullguard", "team-a")
    forged = secretsync.CopyCause(authenticated=False)
    # No name, no owner: nothing to wait for.
    assert sync.copy(wanted, forged) == "unproven"
    # An owner that does not exist, or exists with another uid.
    owner = secretsync.Owner("apps/v1", "ReplicaSet", "web-1", "u-1")
    claimed = secretsync.CopyCause(authenticated=False, owner=owner)
    assert sync.copy(wanted, claimed) == "unproven"
    api.objects[("ReplicaSet", "team-a", "web-1")] = _pod_object("web-1", "u-other")
    assert sync.copy(wanted, claimed) == "unproven"
    # A named pod that exists but does not use the secret.
    api.objects[("Pod", "team-a", "p")] = _pod_object("p", "u-p")
    assert sync.copy(wanted, secretsync.CopyCause(authenticated=False, name="p")) == "deferred"
    time.sleep(0.5)
    assert recorded == ["unproven"]
    assert api.read("team-a", "corp") is None
    # A namespace that does not exist, whatever the proof.
    assert sync.copy(SecretCopy("corp", "pullguard", "ghost"), CopyCause()) == "namespace-gone"


def test_copies_follow_real_objects() -> None:
    from webhook.edge import secretsync

    api = FakeApi()
    api.put(source(dockerconfigjson("corp.example.com")))
    sync = syncer(api)
    # The API server's own review (client certificate verified): the object is being made.
    assert sync.copy(SecretCopy("corp", "pullguard", "team-a"), CopyCause()) == "created"
    # A controller's pod: its owner exists with the uid the review names.
    api.objects[("ReplicaSet", "team-b", "web-1")] = _pod_object("web-1", "u-1")
    owner = secretsync.Owner("apps/v1", "ReplicaSet", "web-1", "u-1")
    cause = CopyCause(authenticated=False, owner=owner)
    assert sync.copy(SecretCopy("corp", "pullguard", "team-b"), cause) == "created"


def test_a_bare_pods_copy_is_made_once_the_api_server_has_the_pod(monkeypatch: Any) -> None:
    from webhook.edge import secretsync

    monkeypatch.setattr(secretsync, "DEFER_CHECKS", (0.05, 0.3, 1.0, 3.0))
    api = FakeApi()
    api.put(source(dockerconfigjson("corp.example.com")))
    recorded: list[str] = []
    sync = SecretSyncer(api, key=KEY, allowed=lambda: CONFIGURED, record=recorded.append)
    cause = CopyCause(authenticated=False, name="p")
    assert sync.copy(SecretCopy("corp", "pullguard", "team-a"), cause) == "deferred"
    time.sleep(0.2)
    assert api.read("team-a", "corp") is None  # no such pod yet
    api.objects[("Pod", "team-a", "p")] = _pod_object("p", "u-p", ("corp",))
    deadline = time.monotonic() + 5
    while not recorded and time.monotonic() < deadline:
        time.sleep(0.05)
    assert recorded == ["created"]
    assert api.read("team-a", "corp") is not None


def test_forged_reviews_cannot_multiply_the_waiting_copies(monkeypatch: Any) -> None:
    """Each waiting copy reads the API server: a flood of forged named-Pod reviews must not
    become a flood of reads, threads, or take every slot from one namespace."""
    from webhook.edge import secretsync

    monkeypatch.setattr(secretsync, "DEFER_CHECKS", (0.05, 0.1, 0.2, 0.4))
    api = FakeApi()
    api.put(source(dockerconfigjson("corp.example.com")))
    recorded: list[str] = []
    sync = SecretSyncer(api, key=KEY, allowed=lambda: CONFIGURED, record=recorded.append)
    threads = threading.active_count()
    outcomes, most = [], 0
    for n in range(1000):
        copy = SecretCopy("corp", "pullguard", f"ns{n % 40}")
        outcomes.append(sync.copy(copy, CopyCause(False, name=f"p{n}")))
        most = max(most, sync.waiting)
    # The bound is on copies waiting at once: on a loaded machine the first ones give up
    # (0.4 s) before the 1,000 reviews are through, and their slots are taken again (132 or
    # 220 deferred in all once, never more than 128 at once).
    assert most == secretsync.MAX_DEFERRED
    deferred = outcomes.count("deferred")
    assert deferred >= secretsync.MAX_DEFERRED
    assert outcomes.count("unproven") == 1000 - deferred
    assert threading.active_count() <= threads + 1  # one scheduler thread, not one per copy
    deadline = time.monotonic() + 5
    while sync.waiting and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sync.waiting == 0  # all gave up: room again
    # Four reads per waiting copy, not one every 0.25 s for 20 s.
    assert api.object_reads <= deferred * len(secretsync.DEFER_CHECKS)
    assert recorded.count("unproven") == deferred


def test_one_namespaces_flood_leaves_room_for_a_real_bare_pod_elsewhere(monkeypatch: Any) -> None:
    """16 forged named-Pod reviews for one namespace once took all 16 waiting slots, so a
    real bare Pod in a namespace without a copy yet got none. Now a namespace holds at most
    MAX_DEFERRED_PER_NAMESPACE, the same object waits once, and the real Pod's copy is made."""
    from webhook.edge import secretsync

    monkeypatch.setattr(secretsync, "DEFER_CHECKS", (0.05, 0.2, 0.5, 2.0))
    api = FakeApi()
    api.put(source(dockerconfigjson("corp.example.com")))
    sync = syncer(api)
    flood = [
        sync.copy(SecretCopy("corp", "pullguard", "noisy"), CopyCause(False, name=f"f{n}"))
        for n in range(500)
    ]
    assert flood.count("deferred") == secretsync.MAX_DEFERRED_PER_NAMESPACE
    again = SecretCopy("corp", "pullguard", "team-a"), CopyCause(False, name="web")
    assert sync.copy(*again) == "deferred"
    waiting = sync.waiting
    assert sync.copy(*again) == "deferred"  # the same (namespace, object, secret) waits once
    assert sync.waiting == waiting
    api.objects[("Pod", "team-a", "web")] = _pod_object("web", "u-web", ("corp",))
    deadline = time.monotonic() + 5
    while api.read("team-a", "corp") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert api.read("team-a", "corp") is not None


def test_a_bare_pod_in_a_namespace_with_a_synced_copy_waits_for_nothing() -> None:
    """Once a namespace has a copy this worker keeps in sync, a bare Pod's unproven review
    needs no waiting slot: a flood can only delay a namespace's first copy."""
    api = FakeApi()
    api.put(source(dockerconfigjson("corp.example.com")))
    sync = syncer(api)
    assert sync.copy(SecretCopy("corp", "pullguard", "team-a"), CopyCause()) == "created"
    reads = api.object_reads
    outcome = sync.copy(SecretCopy("corp", "pullguard", "team-a"), CopyCause(False, name="web"))
    assert outcome == "exists"
    assert sync.waiting == 0 and api.object_reads == reads
