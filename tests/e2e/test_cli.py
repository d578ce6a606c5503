"""Commands against the real API server: ``pullguard export-state`` feeding ``pullguard check``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import checkout_env
from tests.e2e.cluster import ControlPlane
from tests.e2e.conftest import CONFIG, pod, pull_secret, service_account

pytestmark = pytest.mark.e2e


def pullguard(
    plane: ControlPlane,
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``python -m webhook ARGS`` as the cluster's admin; ``env``: extra variables."""
    return subprocess.run(
        [sys.executable, "-m", "webhook", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=checkout_env(KUBECONFIG=str(plane.kubeconfig), **(env or {})),
        check=False,
    )


def offline_check(
    plane: ControlPlane, config: Path, state: Path, manifests: str
) -> subprocess.CompletedProcess[str]:
    """``pullguard check -f -`` of ``manifests`` against an exported cluster state."""
    return pullguard(
        plane, "check", "-f", "-", "--config", str(config), "--cluster-state", str(state),
        stdin=manifests,
    )  # fmt: skip


def test_exported_state_has_no_credentials_and_check_agrees_with_the_cluster(
    plane: ControlPlane, ns: str, tmp_path: Path
) -> None:
    plane.apply(
        pull_secret("regcred", ns, "registry.example.com", auth="cm9ib3Q6U3VwM3I="), check=True
    )
    plane.apply(service_account("builder", ns, ("regcred",)), check=True)
    exported = pullguard(plane, "export-state", "-n", ns)
    assert exported.returncode == 0, exported.stderr
    assert "U3VwM3I" not in exported.stdout and "Sup3r" not in exported.stdout
    state = tmp_path / "state.yaml"
    state.write_text(exported.stdout)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)

    covered = pod("covered", ns, "registry.example.com/team/app:1", ("regcred",))
    uncovered = pod("uncovered", ns, "registry.example.com/team/app:1", ("absent",))
    for manifest in (covered, uncovered):
        in_cluster = plane.apply(manifest, "--dry-run=server").ok
        offline = offline_check(plane, config, state, manifest)
        assert (offline.returncode == 0) == in_cluster, offline.stdout + offline.stderr
    assert plane.apply(covered, "--dry-run=server").ok
    assert not plane.apply(uncovered, "--dry-run=server").ok


def test_the_readmes_audit_pipeline_runs_against_a_live_cluster(
    plane: ControlPlane, ns: str, tmp_path: Path
) -> None:
    # README, "Before you enforce": export-state, then every workload through check.
    plane.apply(pod("bad", ns, "nginx:1.25", ("absent",)), check=True)  # a warning, not needed
    state = tmp_path / "state.yaml"
    state.write_text(pullguard(plane, "export-state", "-A").stdout)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    listed = plane.kubectl(
        "get", "deploy,sts,ds,cronjob,job,pod", "-A", "-o", "yaml", check=True
    ).stdout
    result = offline_check(plane, config, state, listed)
    assert result.returncode in (0, 1), result.stderr
    assert f"Pod {ns}/bad" in result.stdout
    assert 'imagePullSecret "absent" does not exist' in result.stdout
    assert "Traceback" not in result.stderr
