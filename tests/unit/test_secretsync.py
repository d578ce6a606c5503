"""Default pull-secret copies: created, kept in sync, recreated, and never fought over."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from tests.unit.builders import dockerconfigjson
from webhook.core.cluster import SecretInfo
from webhook.core.mutate import MANAGED_BY_LABEL, SecretCopy
from webhook.edge.secretsync import SOURCE_ANNOTATION, SecretSyncer


class FakeApi:
    """An API server's secret store with resourceVersions and conflicts."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], SecretInfo] = {}
        self.version = 0

    def put(self, secret: SecretInfo) -> None:
        self.version += 1
        self.secrets[(secret.namespace, secret.name)] = replace(
            secret, resource_version=str(self.version)
        )

    def read(self, namespace: str, name: str) -> SecretInfo | None:
        return self.secrets.get((namespace, name))

    def create(self, secret: SecretInfo) -> str:
        if (secret.namespace, secret.name) in self.secrets:
            return "exists"
        self.put(secret)
        return "created"

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


def source(data: dict[str, str]) -> SecretInfo:
    return SecretInfo("pullguard", "corp", "kubernetes.io/dockerconfigjson", data)


def test_copy_is_labelled_and_identical_to_its_source() -> None:
    api = FakeApi()
    api.put(source(dockerconfigjson("registry.example.com")))
    assert SecretSyncer(api).copy(SecretCopy("corp", "pullguard", "team-a")) == "created"
    copy = api.read("team-a", "corp")
    assert copy is not None
    assert copy.data == dockerconfigjson("registry.example.com")
    assert copy.labels == {MANAGED_BY_LABEL: "pullguard"}
    assert copy.annotations == {SOURCE_ANNOTATION: "pullguard/corp"}


def test_rotation_deletion_and_a_second_replica() -> None:
    api = FakeApi()
    api.put(source(dockerconfigjson("old.example.com")))
    first, second = SecretSyncer(api), SecretSyncer(api)
    assert first.copy(SecretCopy("corp", "pullguard", "team-a")) == "created"
    assert second.copy(SecretCopy("corp", "pullguard", "team-a")) == "exists"
    api.put(source(dockerconfigjson("new.example.com")))  # the source rotates
    assert first.reconcile_once() == {"updated": 1}
    assert second.reconcile_once() == {"in-sync": 1}  # converged, no fight
    del api.secrets[("team-a", "corp")]  # someone deletes the copy
    assert second.reconcile_once() == {"recreated": 1}
    copy = api.read("team-a", "corp")
    assert copy is not None and copy.data == dockerconfigjson("new.example.com")


def test_a_secret_not_managed_by_pullguard_is_never_touched() -> None:
    api = FakeApi()
    api.put(source(dockerconfigjson("a.example.com")))
    syncer = SecretSyncer(api)
    syncer.copy(SecretCopy("corp", "pullguard", "team-a"))
    theirs = SecretInfo(
        "team-a", "corp", "kubernetes.io/dockerconfigjson", dockerconfigjson("theirs.example.com")
    )
    api.put(theirs)
    assert syncer.reconcile_once() == {"not-managed": 1}
    stored = api.read("team-a", "corp")
    assert stored is not None and stored.data == theirs.data


def test_restart_adopts_existing_copies() -> None:
    api = FakeApi()
    api.put(source(dockerconfigjson("a.example.com")))
    SecretSyncer(api).copy(SecretCopy("corp", "pullguard", "team-b"))
    api.put(source(dockerconfigjson("b.example.com")))
    restarted = SecretSyncer(api)
    restarted.learn_existing()
    assert restarted.reconcile_once() == {"updated": 1}
