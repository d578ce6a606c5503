"""Eighth outside review (rev24h) of issue 24 as a whole: the max-min preemption of plugin
runs (merge 2e26ad5) attacked with real plugin executables speaking the real
``credentialprovider.kubelet.k8s.io/v1`` JSON, run through the edge as admission and the
in-cluster audit run them.

Each test marked open_finding fails until its finding is fixed (``pytest -m open_finding``);
a fixed one loses its marker.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import start_server, stop_server
from tests.integration import test_rev24f_review as rev24f
from tests.integration.registries import (
    REGISTRY_BINARY,
    loopback_tls,
    push_image,
    start_registry,
)
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
    # Two runs stopped, both tenant-b's: its newest (IMAGE's) for tenant-c5, then, when
    # team-a's flight ended with that preemption, its next newest for team-a's own first run
    # (the rule as it says: team-a holds none, tenant-b holds the most).
    assert refused == ["preempted", "preempted"], refused
    stopped = asks.answers["tenant-b-image"][0] or ""
    assert stopped.startswith("not run: preempted"), asks.answers
    hung = [asks.answers[f"tenant-b-{i}"][0] or "" for i in range(3)]
    assert sum(e.startswith("not run: preempted") for e in hung) == 1, asks.answers
    error, _seconds = asks.answers["team-a"]
    assert error is None, f"team-a, holding no run, lost its check with tenant-b's: {error}"


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
        # Uncounted, the audit let these 7 runs in beside its own (8 held). Counted as the
        # "(audit)" share, it is one of the namespaces the last slots are shared by:
        # tenant-b's fourth and tenant-c's second run are refused (6 held).
        assert (engine.execs, refused) == (6, ["process", "process"]), (engine.execs, refused)
        (answer,) = engine.provide(f"{REGISTRY}/hang-team-a", 0.8, tenant="team-a")
    finally:
        asks.join()
        audit.join()
    assert answer.error == "no answer within 0.8 s", f"team-a's plugin did not run: {answer.error}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[rev24f.Lab]:
    """rev24f's lab: ``pullguard serve --workers 1`` over TLS as deploy/ ships it (no
    --client-ca), the real distribution registry with htpasswd + TLS on loopback, and a
    real plugin that logs in to it and hangs for an ECR host."""
    base = tmp_path_factory.mktemp("rev24h")
    tls = loopback_tls(base / "tls")
    registry = start_registry(
        base / "registry",
        cert=tls["cert"],
        key=tls["key"],
        ca=tls["ca"],
        auth=("user", rev24f.PASSWORD),
    )
    push_image(registry, "team/app", "1.0")
    bin_dir = base / "bin"
    bin_dir.mkdir()
    write_plugin(bin_dir, "lab-provider", rev24f.PLUGIN)
    document = base / "providers" / "providers.yaml"
    document.parent.mkdir()
    document.write_text(
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"
        "  - name: lab-provider\n"
        f'    matchImages: ["{registry.host}", "*.dkr.ecr.*.amazonaws.com"]\n'
        '    defaultCacheDuration: "0s"\n'
        f"    apiVersion: {rev24f.V1}\n"
    )
    config = base / "config.yaml"
    config.write_text(
        "checks: {registry: enforce, reference: enforce, pullSecrets: enforce}\n"
        f"registry:\n  timeoutSeconds: {rev24f.BUDGET}\n"
        f"  allowedPrivateRegistries: ['{registry.host}']\n"
        f"  imageCredentialProviderConfig: {document}\n"
        f"  imageCredentialProviderBinDir: {bin_dir}\n"
    )
    state = base / "cluster-state.yaml"
    state.write_text(rev24f.CLUSTER)
    server = start_server(
        base,
        *("--config", str(config), "--cluster-state", str(state), "--workers", "1"),
        *("--credential-provider-bin-dir", str(bin_dir)),
        env={"SSL_CERT_FILE": str(tls["ca"])},
    )
    yield rev24f.Lab(registry, server)
    stop_server(server)
    registry.stop()


@pytest.mark.registry
@pytest.mark.skipif(REGISTRY_BINARY is None, reason="docker-registry not installed")
def test_rev24h_eight_reviews_naming_made_up_namespaces_switch_the_check_off(
    lab: rev24f.Lab,
) -> None:
    """F3. Seen (``pullguard serve --workers 1`` over TLS without --client-ca, as deploy/
    ships it; real plugin, real registry with htpasswd, timeoutSeconds 3): alone, team-a's
    ``team/app:never-pushed`` is denied ("has no tag"). Then 8 reviews are POSTed to the
    port, each naming a namespace that does not exist (``made-up-0`` .. ``made-up-7``: the
    cluster has team-a and tenant-b only) and one image on a made-up ECR host, sent again
    as each ends. Each is a namespace's only run, so none is ever preempted, and team-a's
    review meanwhile answers "not run: all 8 plugin runs in this process are held, each by a
    different namespace": the tag never pushed is admitted under enforce. The fair24 bound
    ("only from MAX_RUNNING namespaces of one hanging run each") counts namespaces as if
    they cost something; a review's namespace is any string its sender writes, and without
    --client-ca anyone reaching the Service sends reviews (reliability.md keeps forged
    reviews' oracle open by decision, not their power to switch the check off for all).

    Expected: a namespace the cluster does not have holds no plugin run (the API server
    never sends the review of a Pod in a namespace that does not exist), so made-up
    namespaces cannot fill the pool, and team-a's tag never pushed is still denied."""
    rev24f._wait_until_ready(lab)
    missing = f"{lab.registry.host}/team/app:never-pushed"
    alone = rev24f._post(lab.server, rev24f._review("team-a", "alone", missing))
    assert not alone["allowed"], json.dumps(alone)[:600]

    stop = time.monotonic() + 7
    forged: list[dict[str, Any]] = []

    def made_up(index: int) -> None:
        sent = 0
        while time.monotonic() < stop:
            sent += 1
            image = f"{300000000000 + index}.dkr.ecr.gone-{index}-{sent}.amazonaws.com/app:1"
            review = rev24f._review(f"made-up-{index}", f"m{index}-{sent}", image)
            forged.append(rev24f._post(lab.server, review))

    threads = [threading.Thread(target=made_up, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)
    during = [
        rev24f._post(lab.server, rev24f._review("team-a", f"during{k}", missing)) for k in range(3)
    ]
    for thread in threads:
        thread.join(60)
    assert forged, "the made-up namespaces' reviews were answered"
    admitted = [answer for answer in during if answer["allowed"]]
    assert not admitted, (
        f"{len(admitted)} of 3 team-a reviews of a never-pushed tag admitted while 8 made-up "
        "namespaces held the plugin slots: " + json.dumps(admitted[0].get("warnings"))[:800]
    )


@pytest.mark.registry
@pytest.mark.skipif(REGISTRY_BINARY is None, reason="docker-registry not installed")
def test_rev24h_a_plugin_not_run_for_capacity_is_not_called_failed(lab: rev24f.Lab) -> None:
    """F4. Seen (same server): tenant-b's fifth concurrent review (its share
    of 4 plugin runs held) is admitted with "credential provider lab-provider failed for
    ...: not run: namespace tenant-b already has 4 plugin runs running or waiting ..." and
    the fix "see pullguard's log for the provider's stderr, and check that lab-provider runs
    in pullguard's pod as on the nodes". The plugin did not fail and has no stderr: it was
    not started. The same words come for "not run: preempted: ..." and "not run: all 8
    plugin runs in this process are held ...". An admin follows the fix, finds the plugin
    healthy and nothing in the log, and learns neither that the image went unchecked for
    capacity nor what to do. The registry's own capacity refusals ("too many registry
    questions in flight ...") say "registry check could not run" instead.

    Expected: a provider not run (its refusals and its preemption, every "not run: ...")
    is worded as not run, not as failed, and its fix is not the broken-plugin fix: it says
    the image was not checked because pullguard's plugin runs were in use, and how to check
    it now (e.g. ``kubectl apply --dry-run=server -f ...`` again, or ``pullguard check``)."""
    rev24f._wait_until_ready(lab)
    held: list[dict[str, Any]] = []

    def one(index: int) -> None:
        image = f"{400000000000 + index}.dkr.ecr.cap-{index}.amazonaws.com/app:1"
        held.append(rev24f._post(lab.server, rev24f._review("tenant-b", f"c{index}", image)))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.8)  # tenant-b's 4 runs hang; its next is over its share
    image = f"{lab.registry.host}/team/app:1.0"  # pushed; the registry wants a login
    answer = rev24f._post(lab.server, rev24f._review("tenant-b", "fifth", image))
    for thread in threads:
        thread.join(60)
    text = "\n".join(answer.get("warnings", []))
    assert "not run: namespace tenant-b already has 4 plugin runs" in text, json.dumps(answer)
    assert "failed for" not in text and "provider's stderr" not in text, text


def test_rev24h_f3_a_namespace_that_does_not_exist_holds_no_plugin_run(tmp_path: Path) -> None:
    """F3's rule on the engine: a review whose namespace the cluster does not have starts
    no plugin ("not run: namespace X does not exist", counted as ``unknown-namespace``),
    while a namespace that exists runs it; a cluster that cannot tell (no Namespaces
    listed, unreachable) holds no run back."""
    from webhook.core.cluster import InMemoryCluster, NoCluster
    from webhook.edge.app import _namespace_missing

    cluster = InMemoryCluster()
    cluster.add_namespace("team-a", {})
    assert _namespace_missing(cluster, "team-a") == ""
    assert _namespace_missing(cluster, "made-up") == "namespace made-up does not exist"
    assert _namespace_missing(InMemoryCluster(), "made-up") == ""  # no Namespaces: unknown
    assert _namespace_missing(NoCluster(), "made-up") == ""  # unreachable: unknown

    refused: list[str] = []
    engine = _engine(tmp_path, 0.3, refused)

    def missing() -> str:
        return _namespace_missing(cluster, "made-up")

    (forged,) = engine.provide(IMAGE, 2.0, tenant="made-up", may_run=missing)
    assert forged.error == "not run: namespace made-up does not exist", forged
    assert (engine.execs, refused) == (0, ["unknown-namespace"])
    (real,) = engine.provide(IMAGE, 2.0, tenant="team-a", may_run=lambda: "")
    assert real.error is None and real.credentials, real
    assert engine.execs == 1
