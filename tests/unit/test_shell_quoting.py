"""Every name from the cluster a printed kubectl command holds is one shell word (rev20e F2,
F5): a Pod's ``imagePullSecrets`` names and its ``ownerReferences`` are any string, and the
admin runs the fix as printed. A DNS-1123 name prints as it is."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from webhook.core.checks import PodOwner, WorkloadRef, create_secret_command, set_entry_command
from webhook.core.cloudlogin import secret_command
from webhook.core.fixcommands import recreate_job, recreate_pod, remake_stuck_pods

HOSTILE = "x;touch${IFS}MARKER;$(touch${IFS}MARKER)`touch MARKER`'\"&"


def _commands(name: str) -> list[str]:
    owner = PodOwner("Deployment", name, "team-a", secrets=(name,), pod=name)
    set_image = WorkloadRef("Deployment", "team-a", name, exists=True, paused=True)
    return [
        create_secret_command(name, "team-a", "r.example.com"),
        secret_command(name, "team-a", "123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
        set_entry_command(name, "team-a", "kubernetes.io/dockerconfigjson", "r.example.com"),
        owner.where_to_add(name).partition("): ")[2],
        PodOwner("ReplicaSet", name, "team-a", pod=name, deployment=name)
        .where_to_add("s")
        .partition("): ")[2],
        PodOwner("Job", name, "team-a", cronjob=name).where_to_add("s").partition("): ")[2],
        set_image.set_image_command("web", "r.example.com/app:1") or "",
        recreate_pod({"metadata": {"name": name, "namespace": "team-a"}}, {}),
        recreate_job(name, "team-a", {}),
        "kubectl patch x" + remake_stuck_pods("ReplicaSet", [name], "team-a"),
    ]


def test_a_hostile_name_runs_nothing_but_kubectl(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    name = HOSTILE.replace("MARKER", str(marker))
    stub = tmp_path / "bin"
    stub.mkdir()
    for tool in ("kubectl", "jq", "aws", "sed"):
        (stub / tool).write_text("#!/bin/sh\nexit 0\n")
        (stub / tool).chmod(0o755)
    for command in _commands(name):
        assert command, command
        subprocess.run(
            ["bash", "-c", command],
            env={"PATH": f"{stub}:/usr/bin:/bin"},
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert not marker.exists(), command
        words = shlex.split(command)
        assert any(w == name or w.endswith(f"/{name}") for w in words), command


def test_a_dns_name_prints_as_it_is() -> None:
    for command in _commands("regcred-1.web"):
        assert "'regcred-1.web'" not in command, command
        assert "regcred-1.web" in command, command
