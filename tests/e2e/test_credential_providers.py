"""Node credentials through the real API server (issue 24): a kubelet credential provider
plugin the test writes (speaking the real ``credentialprovider.kubelet.k8s.io/v1`` JSON), in
front of the real distribution registry with htpasswd on loopback standing in for ECR. The
pods carry no pull secret for it (or a stale one): only the provider's credentials serve.

The plugin's behaviour follows the repository asked about: ``fail/`` exits 3 (an expired
role, a broken binary), ``hang/`` never answers (with a grandchild holding its output open),
``refused/`` gives credentials the registry refuses (a node role pullguard's role is not);
anything else gets the registry's own login. Every request it gets is written to its log, so
a test counts its runs. A second provider, for ECR's hosts, must never run at all.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.cluster import ControlPlane, Result, wait_for
from tests.e2e.conftest import (
    CONFIG,
    E2ERegistries,
    Installation,
    pod,
    pull_secret,
    set_config,
)
from tests.e2e.test_diagnose_audit import (
    CONTAINERD_NOT_FOUND,
    admitted_while_off,
    failing_pod,
    off,
)
from tests.e2e.test_diagnose_audit import pullguard as audit_cli
from tests.integration.registries import push_image

pytestmark = pytest.mark.e2e

PROVIDER = "fake-ecr-credential-provider"
#: registry.timeoutSeconds here: a pod of two provider images runs the plugin twice in one
#: admission, and a Python plugin takes a second to start on a loaded machine.
BUDGET = 3
NEVER = "never-matching-credential-provider"

#: The plugin (see the module docstring). Its log and pid folder are written into it (@LOG@,
#: @PIDS@): under serve a provider document may only give env names that load no code
#: (SERVE_PROVIDER_ENV). The region it must be given, as the kubelet passes env, proves the
#: provider's env reaches it: without it, it serves nothing.
PLUGIN = f"""#!{sys.executable}
import json, os, subprocess, sys, time
request = json.load(sys.stdin)
image = request["image"]
if os.environ.get("AWS_REGION") != "pullguard-e2e-1":
    sys.exit(4)
with open("@LOG@", "a") as log:
    log.write(image + "\\n")
if "/fail/" in image:
    sys.stderr.write("AccessDenied: token password=hunter2 expired\\n")
    sys.exit(3)
if "/hang/" in image:
    child = subprocess.Popen(["sleep", "120"])
    with open(os.path.join("@PIDS@", str(os.getpid())), "w") as pids:
        pids.write(f"{{os.getpid()}} {{child.pid}}")
    time.sleep(120)
password = "refused-pw-7f3a" if "/refused/" in image else "pass"
print(json.dumps({{
    "kind": "CredentialProviderResponse",
    "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
    "cacheKeyType": "Image",
    "cacheDuration": "60s",
    "auth": {{image.split("/")[0]: {{"username": "user", "password": password}}}},
}}))
"""

#: A provider whose matchImages cover no image of these tests: it must never be run.
NEVER_PLUGIN = f"""#!{sys.executable}
with open("@LOG@", "a") as log:
    log.write("ran\\n")
raise SystemExit(1)
"""

PROVIDERS = """apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: {never}
    matchImages: ["*.dkr.ecr.*.amazonaws.com", "{host}/elsewhere"]
    defaultCacheDuration: "1m"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
  - name: {provider}
    matchImages: ["{host}"]
    defaultCacheDuration: "1m"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    env:
      - {{name: AWS_REGION, value: "pullguard-e2e-1"}}
"""


@dataclass
class Providers:
    host: str
    log: Path
    never_log: Path
    pids: Path

    def asked(self, marker: str) -> list[str]:
        """The images the plugin was asked about whose repository holds ``marker``."""
        if not self.log.exists():
            return []
        return [line for line in self.log.read_text().splitlines() if marker in line]


@pytest.fixture(scope="module")
def providers(
    installed: Installation, registries: E2ERegistries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Providers]:
    """pullguard with the two providers configured; the configuration put back afterwards."""
    plane = installed.plane
    host = registries.private.host
    for repository in ("node/app", "node/fail/app", "node/refused/app", "node/count/a"):
        push_image(registries.private, repository, "1.0")
    push_image(registries.private, "node/count/b", "1.0")
    for index in range(4):
        push_image(registries.private, f"node/hang/app{index}", "1.0")
    push_image(registries.public, "node/count/c", "1.0")
    folder = tmp_path_factory.mktemp("providers")
    # serve runs providers only from the folder it was started with (or under it)
    bin_dir = installed.credential_provider_bin_dir / "providers"
    bin_dir.mkdir()
    pids = folder / "pids"
    pids.mkdir()
    found = Providers(host, folder / "plugin.log", folder / "never.log", pids)
    for name, text, log in ((PROVIDER, PLUGIN, found.log), (NEVER, NEVER_PLUGIN, found.never_log)):
        plugin = bin_dir / name
        plugin.write_text(text.replace("@LOG@", str(log)).replace("@PIDS@", str(pids)))
        plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    config = folder / "providers.yaml"
    config.write_text(
        PROVIDERS.format(
            host=host,
            provider=PROVIDER,
            never=NEVER,
        )
    )
    image = f"{host}/node/app:1.0"
    # Without the providers the anonymous pull is refused: denied. (What the rest proves
    # depends on it.)
    before = plane.apply(pod("before", "e2e", image), "--dry-run=server")
    assert not before.ok, before.stdout
    set_config(
        plane,
        CONFIG
        + f"  timeoutSeconds: {BUDGET}\n"
        + f"  imageCredentialProviderConfig: {config}\n"
        + f"  imageCredentialProviderBinDir: {bin_dir}\n",
    )
    try:
        # The config map reaches the server, then the provider document is read (every 2 s).
        wait_for(
            lambda: plane.apply(pod("probe", "e2e", image), "--dry-run=server").ok,
            30,
            "pullguard using the credential provider",
        )
        yield found
    finally:
        set_config(plane, CONFIG)
        # Until the replicas have dropped the providers, the next module's private images
        # are admitted on node credentials (seen in CI: tests/e2e/test_debug_fixes.py's
        # denial came out admitted right after this module).
        wait_for(
            lambda: not plane.apply(pod("after", "e2e", image), "--dry-run=server").ok,
            30,
            "pullguard without the credential provider",
        )


def test_an_image_that_exists_is_admitted_without_a_warning(
    plane: ControlPlane, ns: str, providers: Providers
) -> None:
    exists = plane.apply(pod("exists", ns, f"{providers.host}/node/app:1.0"), "--dry-run=server")
    assert exists.ok, exists.stderr
    assert "Warning" not in exists.stderr, exists.stderr


def test_a_tag_never_pushed_is_denied(plane: ControlPlane, ns: str, providers: Providers) -> None:
    host = providers.host
    missing = plane.apply(pod("missing", ns, f"{host}/node/app:never-pushed"), "--dry-run=server")
    assert not missing.ok
    assert (
        f"image '{host}/node/app:never-pushed' does not exist: repository "
        f"{host}/node/app has no tag 'never-pushed'" in missing.stderr
    ), missing.stderr


def test_a_failing_plugin_warns_naming_the_provider_and_the_reason(
    plane: ControlPlane, ns: str, providers: Providers
) -> None:
    image = f"{providers.host}/node/fail/app:1.0"
    failing = plane.apply(pod("failing", ns, image), "--dry-run=server")
    assert failing.ok, failing.stderr
    assert (
        f"credential provider {PROVIDER} failed for {image}: it exited with status 3"
        in failing.stderr
    ), failing.stderr
    assert "hunter2" not in failing.stderr


def test_credentials_the_registry_refuses_warn_and_never_deny(
    plane: ControlPlane, ns: str, providers: Providers
) -> None:
    """pullguard's role is not the node's: a refusal of the provider's credentials is not
    what the kubelet will get, so it warns (registry: enforce here)."""
    image = f"{providers.host}/node/refused/app:1.0"
    refused = plane.apply(pod("refused", ns, image), "--dry-run=server")
    assert refused.ok, refused.stderr
    host = providers.host
    assert (
        f"{host} refused {image} with pullguard's node credentials (the nodes' own may work)"
        in refused.stderr
    ), refused.stderr
    assert "refused-pw-7f3a" not in refused.stderr, refused.stderr
    assert providers.asked("/node/refused/app") == [f"{providers.host}/node/refused/app"]


def test_a_stale_pod_secret_before_good_node_credentials_is_admitted(
    plane: ControlPlane, ns: str, providers: Providers
) -> None:
    """The kubelet's order: the pod's secrets first, then the providers'."""
    wrong = base64.b64encode(b"user:wrong").decode()
    plane.apply(pull_secret("stale", ns, providers.host, wrong), check=True)
    stale = plane.apply(
        pod("stale", ns, f"{providers.host}/node/app:1.0", ("stale",)), "--dry-run=server"
    )
    assert stale.ok, stale.stderr
    assert "Warning" not in stale.stderr, stale.stderr


def test_the_plugin_is_asked_only_for_the_images_it_matches(
    plane: ControlPlane, ns: str, providers: Providers, registries: E2ERegistries
) -> None:
    host, public = providers.host, registries.public.host
    body = json.loads(pod("count", ns, f"{host}/node/count/a:1.0"))
    body["spec"]["containers"] += [
        {"name": "b", "image": f"{host}/node/count/b:1.0"},
        {"name": "c", "image": f"{public}/node/count/c:1.0"},
        {"name": "a-again", "image": f"{host}/node/count/a:1.0"},
    ]
    counted = plane.apply(json.dumps(body), "--dry-run=server")
    assert counted.ok, counted.stderr
    assert "Warning" not in counted.stderr, counted.stderr
    # Once per repository it matches (as the kubelet asks: without the tag), never for the
    # anonymous registry's image, and the provider matching none of them never ran.
    assert providers.asked("/node/count/") == [f"{host}/node/count/a", f"{host}/node/count/b"]
    assert not providers.never_log.exists(), providers.never_log.read_text()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie waiting for its parent is gone for our purpose: it runs nothing
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split(") ", 1)[-1][:1] != "Z"


def test_a_hanging_plugin_is_bounded_by_the_registry_budget(
    fail_closed: ControlPlane, ns: str, providers: Providers
) -> None:
    """Four admissions at once whose plugin never answers: each is answered with a warning
    naming the provider, the plugin given at most registry.timeoutSeconds (3 s), inside the
    webhook's 5 s timeout (failurePolicy Fail here, so a timeout would deny); every plugin
    process and its grandchild is killed; and the worker goes on serving."""
    plane = fail_closed
    results: dict[int, Result] = {}

    def admit(index: int) -> None:
        image = f"{providers.host}/node/hang/app{index}:1.0"
        results[index] = plane.apply(pod(f"hang{index}", ns, image), "--dry-run=server")

    threads = [threading.Thread(target=admit, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 4
    for index, got in sorted(results.items()):
        image = f"{providers.host}/node/hang/app{index}:1.0"
        assert got.ok, got.stderr
        said = re.search(
            f"credential provider {re.escape(PROVIDER)} failed for {re.escape(image)}: "
            r"no answer within ([0-9.]+) s",
            got.stderr,
        )
        assert said is not None, got.stderr
        # The plugin got what was left of registry.timeoutSeconds, never more. That
        # the whole answer came in time is got.ok: under failurePolicy Fail, an answer past
        # the webhook's 5 s timeout is a denial.
        assert float(said.group(1)) <= BUDGET, got.stderr
    assert sorted(providers.asked("/node/hang/")) == [
        f"{providers.host}/node/hang/app{index}" for index in range(4)
    ]
    pids = [int(p) for f in providers.pids.iterdir() for p in f.read_text().split()]
    assert len(pids) == 8
    wait_for(lambda: not any(_alive(p) for p in pids), 10, "the hanging plugins killed")
    # No worker lost: the next admission is served, with no warning.
    after = plane.apply(pod("after", ns, f"{providers.host}/node/app:1.0"), "--dry-run=server")
    assert after.ok, after.stderr
    assert "Warning" not in after.stderr, after.stderr


def test_audit_and_diagnose_use_the_providers_the_configuration_names(
    plane: ControlPlane, ns: str, providers: Providers, registries: E2ERegistries
) -> None:
    """Issue 24 item 6: the CLI reads the cluster's configuration, which names the providers,
    and runs them with the caller's identity, so it gives admission's answer: a Deployment
    of an image that exists has no finding, one of a tag never pushed would be denied, and
    the kubelet's "not found" is confirmed by the live re-check (without the providers the
    registry refuses pullguard's anonymous ask and nothing is confirmed)."""
    host = providers.host
    admitted_while_off(plane, ns, "broken", f"{host}/node/app:9.9")
    admitted_while_off(plane, ns, "good", f"{host}/node/app:1.0")
    audit = audit_cli(plane, registries, "audit", "-n", ns)
    assert audit.returncode == 1, audit.stdout + audit.stderr
    assert f"DENY Deployment {ns}/broken" in audit.stdout, audit.stdout
    assert f"repository {host}/node/app has no tag '9.9'" in audit.stdout, audit.stdout
    # No finding for the image that exists (the good Deployment may still be listed as "not
    # checked by platform": the test cluster has no Node, rev22 F15).
    assert f"DENY Deployment {ns}/good" not in audit.stdout, audit.stdout
    assert f"WARN Deployment {ns}/good" not in audit.stdout, audit.stdout

    off(plane, ns)
    image = f"{host}/node/app:1.1"
    failing_pod(plane, ns, "web", image, CONTAINERD_NOT_FOUND.format(image=image))
    diagnosed = audit_cli(plane, registries, "diagnose", "web", "-n", ns)
    assert diagnosed.returncode == 0, diagnosed.stdout + diagnosed.stderr
    assert "[not_found, confirmed]" in diagnosed.stdout, diagnosed.stdout
