"""``pullguard check``: manifests judged offline with the same engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

GOOD = """
apiVersion: v1
kind: Pod
metadata: {name: ok, namespace: team-a}
spec:
  containers: [{name: app, image: "nginx:1.25"}]
"""
BAD_LIST = """
apiVersion: v1
kind: List
items:
  - apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web, namespace: team-a}
    spec:
      template:
        spec:
          containers: [{name: web, image: "docker.io/Library/Web:2"}]
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: ignored}
"""
STATE = """
apiVersion: v1
kind: Secret
metadata: {name: regcred, namespace: other}
type: kubernetes.io/dockerconfigjson
data: {.dockerconfigjson: eyJhdXRocyI6IHt9fQ==}
"""


def check(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", "check", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_folder_with_multi_document_yaml_and_lists(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD + "---\n" + BAD_LIST)
    result = check("-f", str(tmp_path))
    assert result.returncode == 1, result.stderr
    assert "ok: Pod team-a/ok" in result.stdout
    assert (
        "pullguard denied Deployment team-a/web: 1 problem would cause ImagePullBackOff"
        in result.stdout
    )
    # A manifest checked before it is applied: the fix is in the file, not a kubectl command.
    assert "use image 'docker.io/library/web:2' in the manifest" in result.stdout
    assert "kubectl set image" not in result.stdout


def test_stdin_and_json_output() -> None:
    result = check("-f", "-", "--output", "json", stdin=GOOD)
    assert result.returncode == 0, result.stderr
    (report,) = json.loads(result.stdout)
    assert report["kind"] == "Pod" and report["allowed"] is True


def test_cluster_state_file_judges_secrets(tmp_path: Path) -> None:
    state = tmp_path / "state.yaml"
    state.write_text(STATE)
    config = tmp_path / "config.yaml"
    config.write_text("privateRegistries: [registry.example.com]\n")
    pod = GOOD.replace("spec:\n", "spec:\n  imagePullSecrets: [{name: regcred}]\n")
    private = pod.replace("nginx:1.25", "registry.example.com/app:1")
    result = check("-f", "-", "--cluster-state", str(state), "--config", str(config), stdin=private)
    assert result.returncode == 1
    assert '(it exists in "other")' in result.stdout
    # A public image runs without it: a warning, not a failure.
    public = check("-f", "-", "--cluster-state", str(state), "--config", str(config), stdin=pod)
    assert public.returncode == 0, public.stdout
    assert "(not needed)" in public.stdout


def test_check_says_how_to_judge_the_secrets_it_could_not_read(tmp_path: Path) -> None:
    # rev22 F16 (issue 22 item 5: check says what it did not ask, and how to ask). A Pod
    # naming a pull secret was "ok" with "pullSecrets check could not run: no cluster
    # connection (pullguard runs with --dev or offline)": the server's words, which name
    # neither --cluster-state nor `pullguard export-state`, though admission would deny the
    # Pod if regcred is missing.
    manifest = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: team-a}\nspec:\n"
        "  imagePullSecrets: [{name: regcred}]\n"
        "  containers: [{name: web, image: registry.example.com/team/app:1.0}]\n"
    )
    result = check("-f", "-", stdin=manifest)
    assert result.returncode == 0, result.stderr
    assert (
        "pullguard: pullSecrets check could not run: no cluster state given (check runs "
        "offline and reads no Secrets or ServiceAccounts); to judge them: pullguard "
        "export-state > state.yaml (with access to the cluster), then pullguard check "
        "--cluster-state state.yaml" in result.stdout
    ), result.stdout
    assert "--dev" not in result.stdout
    # As told: with a state file the secrets are judged (regcred is not in team-a).
    state = tmp_path / "state.yaml"
    state.write_text(STATE)
    told = check("-f", "-", "--cluster-state", str(state), stdin=manifest)
    assert "could not run" not in told.stdout, told.stdout
    assert 'imagePullSecret "regcred" is missing here' in told.stdout, told.stdout


def test_invalid_config_is_refused_with_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("checks: {reference: maybe}\nmirrors: 3\n")
    result = check("-f", "-", "--config", str(config), stdin=GOOD)
    assert result.returncode == 2
    assert "checks.reference: must be one of enforce, warn, off" in result.stderr
    assert "mirrors: must be a list, got a number" in result.stderr


def test_check_agrees_with_the_cluster_on_default_pull_secrets(tmp_path: Path) -> None:
    # In the cluster the mutating webhook injects the default secret before validation:
    # check must judge the pod the same way, not deny what the cluster admits.
    config = tmp_path / "config.yaml"
    config.write_text(
        "privateRegistries: [corp.example.com]\n"
        "defaultPullSecrets:\n  - secret: corp\n    registries: [corp.example.com]\n"
    )
    state = tmp_path / "state.yaml"
    state.write_text(
        STATE.replace("regcred", "corp")
        .replace("namespace: other", "namespace: team-a")
        .replace(
            "eyJhdXRocyI6IHt9fQ==",
            "eyJhdXRocyI6IHsiY29ycC5leGFtcGxlLmNvbSI6IHsiYXV0aCI6ICJkVHB3In19fQ==",
        )
    )
    pod = GOOD.replace("nginx:1.25", "corp.example.com/app:1")
    result = check("-f", "-", "--config", str(config), "--cluster-state", str(state), stdin=pod)
    assert result.returncode == 0, result.stdout


def test_findings_name_their_file_and_document_and_bad_yaml_does_not_stop_the_run(
    tmp_path: Path,
) -> None:
    (tmp_path / "a.yaml").write_text(GOOD + "---\n" + BAD_LIST)
    (tmp_path / "broken.yaml").write_text("kind: Pod\nmetadata: {name: [unclosed\n")
    result = check("-f", str(tmp_path))
    assert result.returncode == 1, result.stdout  # something is denied
    assert f"{tmp_path / 'a.yaml'} (document 2): pullguard denied Deployment team-a/web" in (
        result.stdout
    )
    assert f"{tmp_path / 'broken.yaml'}: not valid YAML" in result.stderr
    assert "ok: Pod team-a/ok" in result.stdout  # the other files were still judged
    alone = check("-f", str(tmp_path / "broken.yaml"))
    assert alone.returncode == 2


def test_the_configuration_file_is_read_in_compose_not_in_the_cli(tmp_path: Path) -> None:
    """rev23: the cli floor parses arguments and prints; reading files is compose's (or the
    edge's). ``offline_config`` reads ``--config`` (the default without one)."""
    import ast

    import webhook.cli.check
    from webhook.compose.offline import offline_config
    from webhook.core.config import DEFAULT_CONFIG, ConfigError

    source = Path(webhook.cli.check.__file__).read_text()
    reads = [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute) and node.attr in ("read_text", "read_bytes", "open")
    ]
    assert reads == []
    assert offline_config(None) is DEFAULT_CONFIG
    path = tmp_path / "config.yaml"
    path.write_text("exemptNamespaces: [ops]\n")
    assert offline_config(path).exempt_namespaces == frozenset({"ops"})
    path.write_text("exemptNamespaces: 3\n")
    try:
        offline_config(path)
    except ConfigError:
        pass
    else:
        raise AssertionError("an invalid configuration was accepted")


def test_check_prints_no_terminal_escape_from_a_manifest_or_the_cluster_state(
    tmp_path: Path,
) -> None:
    # rev20e F3, as check prints it: check judges manifests from anyone (a tenant's pull
    # request in CI) against a state that holds what tenants wrote, and a Pod's
    # imagePullSecrets names are never validated. A name with ESC ] 0 (set the window
    # title) and ESC [ 2J (clear the screen) reached check's denial text raw.
    state = tmp_path / "state.yaml"
    state.write_text(STATE)
    config = tmp_path / "config.yaml"
    config.write_text("privateRegistries: [registry.example.com]\n")
    pod = GOOD.replace("spec:\n", 'spec:\n  imagePullSecrets: [{name: "s\\e]0;pwned\\a\\e[2J"}]\n')
    private = pod.replace("nginx:1.25", "registry.example.com/app:1")
    result = check("-f", "-", "--cluster-state", str(state), "--config", str(config), stdin=private)
    assert "s ]0;pwned" in result.stdout, result.stdout
    controls = sorted({hex(ord(c)) for c in result.stdout if ord(c) < 32 and c != "\n"})
    assert not controls, (controls, result.stdout)
    assert result.returncode == 1, result.stdout
