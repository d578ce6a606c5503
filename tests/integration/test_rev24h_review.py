"""Eighth outside review (rev24h) of issue 24 as a whole: the max-min preemption of plugin
runs (merge 2e26ad5) attacked with real plugin executables speaking the real
``credentialprovider.kubelet.k8s.io/v1`` JSON, run through the edge as admission and the
in-cluster audit run them.

Each test marked open_finding fails until its finding is fixed (``pytest -m open_finding``);
a fixed one loses its marker.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.integration.test_credential_plugins import REGISTRY, provider, write_plugin
from webhook.core.config import parse_config
from webhook.core.credprovider import ProviderConfig
from webhook.edge.credproviders import CredentialProviders

IMAGE = f"{REGISTRY}/team/app"
PASSWORD = "ecr-token-rev24h"

#: The nodes' provider as ecr-credential-provider behaves on a cold start: it answers every
#: image of the account after ``PLUGIN_DELAY`` seconds (GetAuthorizationToken through STS
#: and the SDK's retries); an image under ``/hang-`` (a made-up account or region that does
#: not answer) never does.
SLOW = f"""#!{sys.executable}
import json, os, sys, time
request = json.load(sys.stdin)
image = request["image"]
if "/hang-" in image:
    time.sleep(60)
time.sleep(float(os.environ.get("PLUGIN_DELAY", "0")))
print(json.dumps({{
    "kind": "CredentialProviderResponse",
    "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
    "cacheKeyType": "Image",
    "cacheDuration": "0s",
    "auth": {{image.split("/")[0]: {{"username": "AWS", "password": "{PASSWORD}"}}}},
}}))
"""


def _engine(tmp_path: Path, delay: float, refused: list[str]) -> CredentialProviders:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write_plugin(bin_dir, "slow", SLOW)
    environ = {"PATH": os.environ["PATH"], "PLUGIN_DELAY": str(delay)}
    return CredentialProviders(
        ProviderConfig((provider("slow"),)),
        str(bin_dir),
        environ=lambda: environ,
        on_refused=refused.append,
    )


class _Asks:
    """Asks made in threads, each answer kept (error, seconds)."""

    def __init__(self, engine: CredentialProviders) -> None:
        self.engine = engine
        self.threads: list[threading.Thread] = []
        self.answers: dict[str, tuple[str | None, float]] = {}

    def ask(self, label: str, image: str, budget: float, tenant: str | None) -> None:
        thread = threading.Thread(target=self._ask, args=(label, image, budget, tenant))
        thread.start()
        self.threads.append(thread)

    def hang(self, tenant: str | None, count: int, budget: float = 4.0) -> None:
        for _ in range(count):
            index = len(self.threads)
            self.ask(f"{tenant}-{index}", f"{REGISTRY}/hang-{tenant}-{index}", budget, tenant)
        time.sleep(0.12)  # in this order: each namespace asks after the ones before it

    def _ask(self, label: str, image: str, budget: float, tenant: str | None) -> None:
        started = time.monotonic()
        (answer,) = self.engine.provide(image, budget, tenant=tenant)
        self.answers[label] = (answer.error, time.monotonic() - started)

    def join(self) -> None:
        for thread in self.threads:
            thread.join()


@pytest.mark.open_finding
def test_rev24h_a_followers_check_is_lost_to_the_leaders_short_budget(tmp_path: Path) -> None:
    """F1a. Seen: team-a's review asks for IMAGE (3 s of budget left) while tenant-b's review
    is already running the plugin for the same image with 0.3 s of its own budget left (its
    earlier images spent the rest: any review can be built so). team-a waits on tenant-b's
    flight, and gets tenant-b's failure: "no answer within 0.3 s"; IMAGE is "not checked" for
    team-a, a tag never pushed is admitted under enforce, while the plugin answers in 0.6 s,
    well within team-a's own budget. The flight is keyed by (provider, image) across
    namespaces, so a tenant that keeps short-budget flights going for another team's images
    (each a cache miss: cacheDuration 0, or a cold or expired cache) switches that team's
    check off, and it costs it one plugin run of its own share each. It bites while the
    image's answer is not cached: the first asks of a process, after each answer expires
    (ECR: every 12 h per registry), and always for a provider answering cacheDuration 0; a
    review's providers are asked one image after the other, so a pod with a few cold images
    before IMAGE leads IMAGE's flight with little budget left, hostile or not.

    Expected: a follower is held to its own deadline, not the leader's: a failure that says
    nothing of the follower's budget (the leader's deadline, the leader's namespace share,
    the leader preempted) is not the follower's answer; it runs the plugin itself (within its
    own namespace's share) or takes over the flight, and gets the credentials."""
    refused: list[str] = []
    engine = _engine(tmp_path, 0.6, refused)
    asks = _Asks(engine)
    asks.ask("tenant-b", IMAGE, 0.3, "tenant-b")
    time.sleep(0.08)
    (answer,) = engine.provide(IMAGE, 3.0, tenant="team-a")
    asks.join()
    assert asks.answers["tenant-b"][0] == "no answer within 0.3 s", asks.answers
    assert answer.error is None and answer.credentials, (
        f"team-a's check was lost to tenant-b's budget: {answer.error}"
    )


@pytest.mark.open_finding
def test_rev24h_a_follower_holding_no_run_is_preempted_with_the_leader(tmp_path: Path) -> None:
    """F1b. Seen: every slot held (tenant-b 3 hanging runs plus the run for IMAGE, its newest;
    tenant-c1..c4 one hanging run each). team-a, holding no run, asks for IMAGE and follows
    tenant-b's flight; then tenant-c5 (holding none) asks and preempts tenant-b's newest run,
    the one team-a waits on. team-a's answer is tenant-b's: "not run: preempted: ... this
    run's namespace held the most (4) ...", which names a count that is not team-a's (it
    holds none), and IMAGE is not checked for team-a. The preemption rule promises "a
    namespace holding no run gets one unless MAX_RUNNING other namespaces each hold exactly
    one"; team-a got none with five namespaces in the pool.

    Expected: a follower whose leader was preempted (or refused) is not answered with the
    leader's stop: it is a namespace holding no run, and gets a run as the rule says (here a
    slot of tenant-b's, whose newest run was stopped), so IMAGE is checked with the
    provider's credentials."""
    refused: list[str] = []
    engine = _engine(tmp_path, 2.5, refused)
    asks = _Asks(engine)
    try:
        asks.hang("tenant-b", 3)
        asks.ask("tenant-b-image", IMAGE, 4.0, "tenant-b")  # tenant-b's newest run
        time.sleep(0.12)
        for name in ("tenant-c1", "tenant-c2", "tenant-c3", "tenant-c4"):
            asks.hang(name, 1)
        assert engine.execs == 8, (engine.execs, refused)
        asks.ask("team-a", IMAGE, 4.0, "team-a")  # follows tenant-b's flight
        time.sleep(0.1)
        asks.hang("tenant-c5", 1)
    finally:
        asks.join()
    assert refused == ["preempted"], refused
    stopped = asks.answers["tenant-b-image"][0] or ""
    assert stopped.startswith("not run: preempted"), asks.answers
    error, _seconds = asks.answers["team-a"]
    assert error is None, f"team-a, holding no run, lost its check with tenant-b's: {error}"


@pytest.mark.open_finding
def test_rev24h_the_in_cluster_audit_holds_a_plugin_slot_outside_every_share(
    tmp_path: Path,
) -> None:
    """F2. Seen: serve's in-cluster audit (deploy/components/in-cluster-audit, serve
    --audit-interval) judges every pod with the same CredentialProviders as admission
    (compose/serving.py passes ``node=providers``), through livecheck.per_object, with no
    tenant: its runs take one of the MAX_RUNNING slots and count in no share. The audit
    judges the hostile tenant's own pods too, whose made-up ECR hosts hang, so it keeps
    holding a slot through a pass. With it: tenant-b holds 4 runs, tenant-c 2, tenant-d 1 (7
    counted, each within the rules), and team-a's first run finds "7 of 8 held", skips
    preemption, waits for a slot that never frees and answers "8 plugins already running in
    this process" after its whole budget: its tag never pushed is admitted "not checked".
    Three namespaces suffice where the rule (fair24) says eight are needed.

    Expected: the audit's runs count as a namespace's for the rule (e.g. a share of their
    own, or the judged object's namespace), so team-a, holding none, gets a slot (here:
    tenant-b's newest run is preempted) and its plugin runs."""
    from webhook.compose.livecheck import per_object

    refused: list[str] = []
    engine = _engine(tmp_path, 0.0, refused)
    config = parse_config({"registry": {"timeoutSeconds": 4}})
    audit_view = per_object(engine, config)  # what InClusterAudit.run_once asks through
    assert audit_view is not None
    audit = threading.Thread(target=audit_view.provide, args=(f"{REGISTRY}/hang-audit", 4.0))
    audit.start()
    asks = _Asks(engine)
    try:
        time.sleep(0.12)
        asks.hang("tenant-b", 4)
        asks.hang("tenant-c", 2)
        asks.hang("tenant-d", 1)
        assert engine.execs == 8, (engine.execs, refused)
        (answer,) = engine.provide(f"{REGISTRY}/hang-team-a", 0.8, tenant="team-a")
    finally:
        asks.join()
        audit.join()
    assert answer.error == "no answer within 0.8 s", f"team-a's plugin did not run: {answer.error}"
