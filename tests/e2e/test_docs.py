"""The documentation cannot rot: every shell snippet of the README and docs/ is run here,
against the real control plane, exactly as printed, or waived below with the reason.

A snippet that is neither (a new one, or an edited one) fails ``test_every_snippet_is_covered``.
"""

from __future__ import annotations

import json
import re
import signal
import ssl
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, checkout_env
from tests.e2e.cluster import ControlPlane, wait_for
from tests.e2e.conftest import (
    CONFIG,
    Installation,
    by_url,
    pod,
    rendered_deploy,
)
from webhook.edge.secretsync import DEFER_CHECKS

pytestmark = pytest.mark.e2e

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```sh\n(.*?)^```", re.DOTALL | re.MULTILINE)


def snippets() -> dict[str, str]:
    """Each ``sh`` block by its first line."""
    found = {}
    for path in DOCS:
        for block in FENCE.findall(path.read_text()):
            found[block.splitlines()[0].strip()] = block
    return found


#: Snippets no test here can run, and why.
WAIVED = {
    "bash tests/run": "it is the command running this suite",
    "python benchmarks/performance.py            # all sections, about 15 minutes": (
        "a 15-minute benchmark that asserts nothing; its clients and servers are the ones "
        "tests/loadgen.py, tests/integration/test_load.py and tests/e2e/test_load.py run"
    ),
    "export KUBEBUILDER_ASSETS=$(setup-envtest use 1.36 -p path)": (
        "setup-envtest downloads binaries; this machine reaches only package registries "
        "(CI gets the same binaries from the control-plane folder beside the checkout)"
    ),
}


def run(plane: ControlPlane, script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``script`` under bash (errexit, pipefail) as the admin, in ``cwd``."""
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd,
        env=checkout_env(KUBECONFIG=str(plane.kubeconfig)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def shell(plane: ControlPlane, script: str, cwd: Path) -> str:
    """``run``, which must succeed; its output."""
    done = run(plane, script, cwd)
    assert done.returncode == 0, f"{script}\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def run_serve_dev(plane: ControlPlane, block: str, tmp: Path) -> None:
    # "pip install . && pullguard serve --dev": the install is what tests/run did already;
    # the server part runs as printed, in the background, and must answer on 8443.
    assert block.strip() == "pip install . && pullguard serve --dev"
    process = subprocess.Popen(
        ["pullguard", "serve", "--dev"],
        cwd=tmp,
        env=checkout_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(
            lambda: (
                httpx.get(
                    "https://127.0.0.1:8443/readyz",
                    verify=ssl.create_default_context(cafile=str(tmp / "certs" / "ca.crt")),
                    timeout=2,
                ).status_code
                == 200
            ),
            30,
            "pullguard serve --dev on 8443",
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def run_apply(plane: ControlPlane, block: str, tmp: Path) -> None:
    # On a control plane of its own, as a new user would: the installation the other tests
    # use has its webhooks registered by URL, which an apply of deploy/ would fight over.
    lines = [line.split("#")[0].strip() for line in block.splitlines()]
    self_managed, cert_manager = lines
    assert self_managed == "kubectl apply -k deploy/"
    assert cert_manager == "kubectl apply -k deploy/cert-manager/"
    (tmp / "fresh").mkdir()
    fresh = ControlPlane(plane.assets, tmp / "fresh").start()
    try:
        output = shell(fresh, self_managed, ROOT)
        assert (
            "validatingwebhookconfiguration.admissionregistration.k8s.io/pullguard created"
            in output
        )
        assert fresh.get_json("deployment", "pullguard", "-n", "pullguard")["spec"]["replicas"] == 3
        # deploy/cert-manager/ needs cert-manager's CRDs, which this control plane lacks:
        # everything else in it must be accepted.
        done = run(fresh, cert_manager, ROOT)
        errors = [
            line
            for line in done.stderr.splitlines()
            if line.strip() and line.strip() != "ensure CRDs are installed first"
        ]
        assert errors and all("cert-manager.io" in line for line in errors), done.stderr
        assert "deployment.apps/pullguard configured" in done.stdout
    finally:
        fresh.stop()


def run_check(plane: ControlPlane, block: str, tmp: Path) -> None:
    (tmp / "k8s").mkdir()
    (tmp / "k8s" / "web.yaml").write_text(pod("web", "e2e", "nginx:1.25"))
    output = shell(plane, block, tmp)
    assert "ok: Pod e2e/web" in output


def run_audit(plane: ControlPlane, block: str, tmp: Path) -> None:
    (tmp / "config.yaml").write_text(CONFIG)
    done = run(plane, block, tmp)
    assert done.returncode in (0, 1), done.stderr  # 1: something would be denied
    assert "Traceback" not in done.stderr and done.stdout


def run_emergency_off(plane: ControlPlane, block: str, tmp: Path, installed: Installation) -> None:
    bad = pod("emergency", "e2e", "Bad:Ref")
    assert not plane.apply(bad, "--dry-run=server").ok
    shell(plane, block, tmp)
    try:
        wait_for(lambda: plane.apply(bad, "--dry-run=server").ok, 30, "pullguard switched off")
    finally:
        # "kubectl apply -k deploy/ brings them back": here, the by-URL form the tests use.
        plane.kubectl(
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=e2e-admin",
            "-f",
            "-",
            stdin=json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "List",
                    "items": [
                        d
                        for d in by_url(rendered_deploy(plane), installed.webhook_url)
                        if d["kind"].endswith("WebhookConfiguration")
                    ],
                }
            ),
            check=True,
        )
    wait_for(lambda: not plane.apply(bad, "--dry-run=server").ok, 60, "pullguard back")


def run_uninstall_copies(plane: ControlPlane, block: str, tmp: Path) -> None:
    assert plane.apply(pod("copied", "e2e", "corp.example.com/app:1")).ok
    # The copy follows the real Pod (webhook/edge/secretsync.py): made once the API server has it.
    wait_for(lambda: plane.kubectl("get", "secret", "corp-pull", "-n", "e2e").ok, 15, "the copy")
    # The README deletes the copies after pullguard is gone; here both replicas still run,
    # and the one that did not make the copy may still hold the same copy waiting for the
    # Pod: it looks DEFER_CHECKS after the review and, the Pod there, creates it. Deleted
    # before that look, the copy came back (CI: "corp-pull ... 0s" after the delete). Once
    # the second look is past, every copy waiting for this Pod has made its look.
    time.sleep(DEFER_CHECKS[1] + 0.5)
    output = shell(plane, block, tmp)
    assert "corp-pull" in output
    assert plane.kubectl("get", "secret", "corp-pull", "-n", "e2e").returncode == 1


#: Handlers by the start of a snippet's first line.
HANDLERS: dict[str, Callable[..., None]] = {
    "pip install . && pullguard serve --dev": run_serve_dev,
    "kubectl apply -k deploy/ ": run_apply,
    "pullguard export-state -A > state.yaml   # optional": run_check,
    "pullguard export-state -A > state.yaml        # credentials": run_audit,
    "kubectl delete validatingwebhookconfiguration pullguard": run_emergency_off,
    "kubectl get secret -A -l app.kubernetes.io/managed-by=pullguard": run_uninstall_copies,
}


def handler_for(first: str) -> str | None:
    matches = [prefix for prefix in HANDLERS if first.startswith(prefix)]
    assert len(matches) <= 1, matches
    return matches[0] if matches else None


def test_every_snippet_is_covered() -> None:
    uncovered = [f for f in snippets() if handler_for(f) is None and f not in WAIVED]
    assert uncovered == [], "documented commands no test runs: " + repr(uncovered)
    stale = [p for p in HANDLERS if not any(f.startswith(p) for f in snippets())]
    assert stale == [], "handlers for snippets the docs no longer have: " + repr(stale)


@pytest.mark.parametrize("prefix", sorted(HANDLERS))
def test_snippet_runs_as_printed(prefix: str, installed: Installation, tmp_path: Path) -> None:
    (block,) = [b for first, b in snippets().items() if first.startswith(prefix)]
    handler = HANDLERS[prefix]
    if handler is run_emergency_off:
        handler(installed.plane, block, tmp_path, installed)
    else:
        handler(installed.plane, block, tmp_path)


def test_the_ref_example_prints_what_the_readme_shows() -> None:
    text = (ROOT / "README.md").read_text()
    example = re.search(r"^\$ (pullguard ref .*)\n(.*)$", text, re.MULTILINE)
    assert example is not None
    done = subprocess.run(
        ["bash", "-c", example.group(1)],
        env=checkout_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.rstrip("\n") == example.group(2)
