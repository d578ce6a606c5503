"""rev24g: outside review of this session's issue-24 fixes (a namespace's share of runs)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.integration.test_credential_plugins import REGISTRY, Plugins, _hang_engine


def test_one_tenant_with_four_namespaces_takes_every_slot(tmp_path: Path) -> None:
    """f05210d bounds a *namespace*, not a tenant: a tenant owning four namespaces (tenant-b1..
    b4, each under its share) holds all 8 slots (4 + 2 + 1 + 1), and team-a's plugin is then
    refused ("process"), so its never-pushed tag is admitted with "could not run"."""
    from webhook.edge.credproviders import MAX_RUNNING

    plugins = Plugins(tmp_path)
    refused: list[str] = []
    engine = _hang_engine(plugins, refused)
    held = []
    for name, count in (("tenant-b1", 4), ("tenant-b2", 2), ("tenant-b3", 1), ("tenant-b4", 1)):
        for i in range(count):  # each a new image (a new cache key), hanging to its 3 s budget
            thread = threading.Thread(
                target=engine.provide, args=(f"{REGISTRY}/{name}-{i}", 3.0), kwargs={"tenant": name}
            )
            thread.start()
            held.append(thread)
        time.sleep(0.15)  # in this order, so each namespace is under its share when it asks
    time.sleep(0.4)
    assert engine.execs == MAX_RUNNING, (engine.execs, refused)
    (other,) = engine.provide(f"{REGISTRY}/team-a", 0.5, tenant="team-a")
    try:
        assert other.error == "no answer within 0.5 s", (
            f"team-a's plugin did not run: {other.error}"
        )
    finally:
        for thread in held:
            thread.join()
