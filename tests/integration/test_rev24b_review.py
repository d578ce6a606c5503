"""Second outside review (rev24b) of issue 24 (kubelet credential providers): findings
still open, with real plugin executables (speaking the real JSON), the real distribution
registry with htpasswd + TLS on loopback standing in for ECR, and the real CLI.

Each test marked open_finding fails until its finding is fixed (``pytest -m open_finding``);
a fixed one loses its marker.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import checkout_env
from tests.integration.registries import Registry, loopback_tls, push_image, start_registry
from webhook.edge import credproviders
from webhook.edge.credproviders import CredentialProviders, LiveProviders, read_provider_config

V1 = "credentialprovider.kubelet.k8s.io/v1"
#: The registry's htpasswd password: short, with a symbol, as people choose them.
PASSWORD = "Tr0ub4dor&3"

#: A plugin that serves the registry's login, except for repositories under ``fail/``: there
#: it exits 1 (a repository-scoped token it may not mint, say), after printing the URL it
#: tried, user info included, as Python's requests and many scripts print it.
PLUGIN = f"""#!{sys.executable}
import json, os, sys
request = json.load(sys.stdin)
image = request["image"]
registry = image.split("/")[0]
with open(os.environ["PLUGIN_LOG"], "a") as log:
    log.write(image + "\\n")
if "/fail/" in image:
    sys.stderr.write(f"error: GET https://user:{PASSWORD}@{{registry}}/v2/: 401 Unauthorized\\n")
    sys.exit(1)
print(json.dumps({{
    "kind": "CredentialProviderResponse",
    "apiVersion": "{V1}",
    "cacheKeyType": "Image",
    "auth": {{registry: {{"username": "user", "password": "{PASSWORD}"}}}},
}}))
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    base = tmp_path_factory.mktemp("rev24b-registry")
    private = start_registry(base / "private", auth=("user", PASSWORD), **loopback_tls(base))
    push_image(private, "team/app", "1.0")
    push_image(private, "fail/app", "1.0")
    yield private
    private.stop()


def _lab(tmp_path: Path, host: str) -> tuple[Path, Path]:
    """(config.yaml, plugin log): the plugin in a bin dir, a provider document for
    ``host``, pullguard's configuration naming both."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    plugin = bin_dir / "lab-provider"
    plugin.write_text(PLUGIN)
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    log = tmp_path / "plugin.log"
    log.touch()
    document = tmp_path / "providers.yaml"
    document.write_text(
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"
        f'  - name: lab-provider\n    matchImages: ["{host}"]\n'
        '    defaultCacheDuration: "1m"\n'
        f"    apiVersion: {V1}\n"
        f"    env: [{{name: PLUGIN_LOG, value: {log}}}]\n"
    )
    config = tmp_path / "config.yaml"
    config.write_text(
        "registry:\n  allowPrivateNetworks: true\n  timeoutSeconds: 3\n"
        f"  imageCredentialProviderConfig: {document}\n"
        f"  imageCredentialProviderBinDir: {bin_dir}\n"
    )
    return config, log


def _pod(name: str, image: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"containers": [{"name": name, "image": image}]},
    }


def _check(tmp_path: Path, registry: Registry, config: Path, *pods: dict[str, object]):  # type: ignore[no-untyped-def]
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("\n---\n".join(json.dumps(p) for p in pods))
    return subprocess.run(
        [
            *(sys.executable, "-m", "webhook", "check", "-f", str(manifest)),
            *("--config", str(config), "--registry"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=checkout_env(SSL_CERT_FILE=str(registry.ca)),
    )


def test_rev24b_a_provider_failure_for_one_repository_is_not_every_repositorys_in_a_cli_run(
    registry: Registry, tmp_path: Path
) -> None:
    """Seen (``pullguard check --registry`` of one file, real plugin, real registry): the
    plugin exits 1 for ``fail/app`` and serves ``team/app``. ``CredentialProviders(
    remember_failures=True)`` keeps the failure under (provider, *registry*), so the second
    Pod's ``team/app:9.9`` (a tag never pushed) is never asked with the provider's
    credentials: "ok" with "credential provider lab-provider failed ... exited with status
    1" and "registry not asked: ... wants credentials, and check has none", exit 0. The
    same Pod checked alone, and at admission (which never remembers a failure), is denied
    ("has no tag '9.9'"). The kubelet's cache and singleflight are keyed by the image, and
    a plugin's answer (or failure) for one repository says nothing of another's (item 6:
    "a CI pipeline with cloud credentials gets the same answer as admission"). Expected:
    the second Pod denied, exit 1, the plugin run for team/app."""
    config, log = _lab(tmp_path, registry.host)
    alone = _check(tmp_path, registry, config, _pod("b", f"{registry.host}/team/app:9.9"))
    assert alone.returncode == 1, alone.stdout + alone.stderr
    assert "has no tag '9.9'" in alone.stdout
    both = _check(
        tmp_path,
        registry,
        config,
        _pod("a", f"{registry.host}/fail/app:1.0"),
        _pod("b", f"{registry.host}/team/app:9.9"),
    )
    assert both.returncode == 1, both.stdout
    assert "has no tag '9.9'" in both.stdout, both.stdout
    assert log.read_text().splitlines().count(f"{registry.host}/team/app") == 2


def test_rev24b_a_url_with_user_info_on_a_failed_plugins_stderr_is_redacted(
    registry: Registry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Seen, with ``serve --dev`` and this plugin too: the log line
    ``credential provider lab-provider for HOST/fail/app failed: it exited with status 1;
    stderr: error: GET https://user:PASSWORD@HOST/v2/: 401`` carries the registry password.
    The plugin failed, so no password is known to replace, and ``redact``'s patterns miss
    URL user info (the key form keyring.py calls common). Item 2: "a credential never
    appears in a log". Expected: the password is not in any log record; the failure is
    still logged."""
    _lab(tmp_path, registry.host)
    document = tmp_path / "providers.yaml"
    engine = CredentialProviders(
        read_provider_config(str(document), str(tmp_path / "bin")),
        str(tmp_path / "bin"),
        environ=lambda: {"PATH": os.environ["PATH"]},
    )
    with caplog.at_level(logging.INFO, logger="pullguard.credproviders"):
        (answer,) = engine.provide(f"{registry.host}/fail/app", 3.0)
    assert answer.error == "it exited with status 1"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "lab-provider" in logged and "failed" in logged
    assert PASSWORD not in logged, logged


def test_rev24b_an_unchanged_provider_document_is_not_parsed_again_on_every_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen: ``LiveProviders.poll_once`` (every 2 s in each gunicorn worker, a greenlet on
    the worker's event loop) reads and fully parses the document each time, unchanged or
    not (YAML twice: once for aliases, once strict). For a document within pullguard's
    bounds (250 KB, 27 providers) that is ~0.7 s of CPU per poll on this machine; with
    ``serve --dev --workers 1`` and a cached image, 10 s of back-to-back reviews went from
    489 (p50 0.013 s, p99 0.146 s) with a one-provider document to 35 (p50 0.132 s, p99
    2.7 s) with that one. Expected: an unchanged document (same bytes) is not parsed
    again."""
    _lab(tmp_path, "127.0.0.1:5000")
    document = tmp_path / "providers.yaml"
    # serve passes no PLUGIN_LOG from the document (SERVE_PROVIDER_ENV, rev24b F6)
    kept = [line for line in document.read_text().splitlines() if "PLUGIN_LOG" not in line]
    document.write_text("\n".join(kept) + "\n")
    parses = 0
    real = credproviders.load_provider_config_documents

    def counting(texts):  # type: ignore[no-untyped-def]
        nonlocal parses
        parses += 1
        return real(texts)

    monkeypatch.setattr(credproviders, "load_provider_config_documents", counting)
    live = LiveProviders(
        lambda: (str(document), str(tmp_path / "bin")), allowed_bin_dirs=[str(tmp_path / "bin")]
    )
    assert live.poll_once() is True
    for _ in range(5):
        assert live.poll_once() is False
    assert live.current is not None
    assert parses == 1, f"the unchanged document was parsed {parses} times in 6 polls"


#: A plugin as many custom ones are: a shell script in the bin dir serve was started with.
SHELL_PLUGIN = f"""#!/bin/bash
read -r request
echo '{{"kind": "CredentialProviderResponse", "apiVersion": "{V1}", "cacheKeyType": "Image"}}'
"""


def test_rev24b_the_provider_documents_env_cannot_make_serve_run_a_program_outside_its_bin_dirs(
    tmp_path: Path,
) -> None:
    """Seen: rev24 F1's fix keeps the ConfigMap from choosing the bin dir or an executable
    out of it, but the hot-reloaded provider document still chooses each provider's
    ``env``, passed as is. The component mounts that document from a ConfigMap
    (``/etc/pullguard/credential-providers/``), so whoever may edit it can also add a
    file next to it (any key of the same ConfigMap) and name it in ``env``:
    ``BASH_ENV`` for a shell-script plugin (shown here: the script in the allowed bin dir
    runs ``BASH_ENV``'s commands first), ``LD_PRELOAD`` for a dynamically linked one,
    ``PYTHONPATH`` + ``sitecustomize.py`` for a Python one, ``AWS_PROFILE`` +
    ``AWS_CONFIG_FILE`` whose profile has ``credential_process`` for the AWS SDK's own
    chain in ``ecr-credential-provider`` (the SDK's documented behaviour; not run against
    the real binary here). Each runs a program of the editor's choosing in pullguard's
    pod, with its ServiceAccount (which reads every Secret): what
    ``--credential-provider-bin-dir`` exists to prevent (docs/node-credentials.md: "the
    ConfigMap never chooses which programs pullguard runs"). Expected: under ``serve``
    (allowed bin dirs fixed at start) a provider document whose ``env`` makes the plugin
    run or load other code is refused, or such variables are not passed; the plugin runs
    and nothing else does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    plugin = bin_dir / "script-provider"
    plugin.write_text(SHELL_PLUGIN)
    plugin.chmod(0o755)
    mounted = tmp_path / "credential-providers"  # the ConfigMap's mount: every key a file
    mounted.mkdir()
    proof = tmp_path / "ran-outside-the-bin-dir"
    (mounted / "startup.sh").write_text(f"touch {proof}\n")
    document = mounted / "credential-providers.yaml"
    document.write_text(
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"
        '  - name: script-provider\n    matchImages: ["*.dkr.ecr.*.amazonaws.com"]\n'
        '    defaultCacheDuration: "1m"\n'
        f"    apiVersion: {V1}\n"
        f"    env: [{{name: BASH_ENV, value: {mounted / 'startup.sh'}}}]\n"
    )
    live = LiveProviders(lambda: (str(document), str(bin_dir)), allowed_bin_dirs=[str(bin_dir)])
    live.poll_once()
    live.provide("111122223333.dkr.ecr.us-east-1.amazonaws.com/team/app", 5.0)
    assert not proof.exists(), "a file of the ConfigMap ran as a program in pullguard's pod"
    assert any("env[0].name: 'BASH_ENV'" in p for p in live.last_problems), live.last_problems
    # The same document in a person's own run (check, diagnose, audit) is theirs: it is used.
    mine = LiveProviders(lambda: (str(document), str(bin_dir)), allowed_bin_dirs=None)
    mine.poll_once()
    assert mine.current is not None and not mine.last_problems
