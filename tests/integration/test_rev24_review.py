"""Outside review rev24 of issue 24 (kubelet credential providers): findings still open,
with real plugin executables run through the edge as the kubelet runs them.

Each test marked open_finding fails until its finding is fixed (``pytest -m open_finding``);
a fixed one loses its marker.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from pathlib import Path

import pytest

from webhook.core.credprovider import EnvVar, Provider, ProviderConfig, ProviderConfigError
from webhook.edge.credproviders import CredentialProviders, LiveProviders, read_provider_config

V1 = "credentialprovider.kubelet.k8s.io/v1"
REGISTRY = "111122223333.dkr.ecr.us-east-1.amazonaws.com"
IMAGE = f"{REGISTRY}/team/app"
BUDGET = 3.0
#: An htpasswd password, as the distribution registry standing in for ECR takes it.
SHORT_PASSWORD = "Tr0ub4dor&3"

GOOD = f"""#!{sys.executable}
import json, sys
sys.stdin.read()
print(json.dumps({{"kind": "CredentialProviderResponse", "apiVersion": "{V1}",
                  "cacheKeyType": "Registry",
                  "auth": {{"{REGISTRY}": {{"username": "AWS", "password": "x" * 40}}}}}}))
"""

# A plugin that logs the answer it got from its cloud (JSON, as Go's klog and most SDK
# debug output print it) and then fails: the password is on stderr.
LEAKS_THEN_FAILS = f"""#!{sys.executable}
import json, sys
sys.stdin.read()
sys.stderr.write("decoded answer " + json.dumps({{"username": "robot",
                                                 "password": "{SHORT_PASSWORD}"}}) + "\\n")
sys.exit(1)
"""


def _write(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    _write(folder, "good", GOOD)
    _write(folder, "leaks", LEAKS_THEN_FAILS)
    return folder


def _provider(name: str, **overrides: object) -> Provider:
    fields: dict[str, object] = {
        "name": name,
        "match_images": ("*.dkr.ecr.*.amazonaws.com",),
        "default_cache_seconds": 600.0,
        "api_version": V1,
    }
    fields.update(overrides)
    return Provider(**fields)  # type: ignore[arg-type]


def _engine(bin_dir: Path, *providers: Provider) -> CredentialProviders:
    return CredentialProviders(
        ProviderConfig(tuple(providers)),
        str(bin_dir),
        environ=lambda: {"PATH": os.environ["PATH"]},
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"env": (EnvVar("AWS_PROFILE=x", "default"),)},  # the kubelet passes it on as it is
        {"env": (EnvVar("AWS_PROFILE", "a\x00b"),)},  # YAML "\0" in a value
        {
            "args": ("get-credentials", "a\x00b"),
        },  # YAML "\0" in an argument
    ],
)
def test_rev24_a_provider_that_cannot_be_started_is_a_failed_answer_not_an_exception(
    bin_dir: Path, overrides: dict[str, object]
) -> None:
    """Finding 2. Every one of these documents passes pullguard's (and the kubelet's)
    validation. ``subprocess.Popen`` then raises ``ValueError`` (not ``OSError``), which
    ``CredentialProviders._run`` does not catch: ``provide`` raises, ``validate`` raises,
    and every admission of an image the provider matches is a 500 (failurePolicy Ignore:
    admitted unchecked). The next provider is never asked. Expected: that provider's
    answer is an error naming it, and the following provider still answers."""
    engine = _engine(bin_dir, _provider("good", **overrides), _provider("good2"))
    _write(bin_dir, "good2", GOOD)
    failed, served = engine.provide(IMAGE, BUDGET)
    assert failed.provider == "good"
    assert failed.error == (
        "cannot start it: an env name holds '=', or an env value or an argument holds a NUL byte"
    )
    assert served.provider == "good2" and served.credentials


def test_rev24_a_provider_name_with_nul_is_refused_not_raised(
    bin_dir: Path, tmp_path: Path
) -> None:
    """Finding 3. ``name: "good\\0"`` passes the name checks (no ``/``, no space, not
    ``.``/``..``); the bin-dir check's ``Path.stat()`` raises ``ValueError: embedded null
    byte``, which ``_executable_problem`` does not catch. ``read_provider_config`` raises
    it instead of a ProviderConfigError, so ``LiveProviders.start()`` (called bare by
    ``serving.credential_providers`` at start) raises: the webhook does not start, every
    replica crash-loops on the next rollout, instead of "refused, every problem listed".
    (The kubelet refuses such a document: its LookPath of the name fails.)"""
    path = tmp_path / "providers.yaml"
    path.write_text(
        "apiVersion: kubelet.config.k8s.io/v1\n"
        "kind: CredentialProviderConfig\n"
        "providers:\n"
        '  - name: "good\\0"\n'
        '    matchImages: ["*.dkr.ecr.*.amazonaws.com"]\n'
        '    defaultCacheDuration: "12h"\n'
        f"    apiVersion: {V1}\n"
    )
    with pytest.raises(ProviderConfigError):
        read_provider_config(str(path), str(bin_dir))
    with pytest.raises(ProviderConfigError) as refused:
        read_provider_config(str(path), str(bin_dir), (str(bin_dir),))
    assert refused.value.problems == [
        "providers[0].name: 'good\\x00': a NUL character in a name (no executable can have it)"
    ]
    live = LiveProviders(lambda: (str(path), str(bin_dir)), allowed_bin_dirs=(str(bin_dir),))
    live.start()  # what serve does: must not raise
    live.stop()
    assert live.last_problems == refused.value.problems
    assert live.current is None
    (answer,) = live.provide(IMAGE, BUDGET)  # not in force: a failed answer, no exception
    assert answer.error and "not in force" in answer.error


def test_live_providers_start_never_raises_out_of_serve() -> None:
    """Whatever reading the document raises, serve starts: the document is not in force."""

    def broken() -> tuple[str | None, str | None]:
        raise RuntimeError("unexpected")

    live = LiveProviders(broken)
    live.start()
    live.stop()
    assert live.last_problems == ["reading it failed (RuntimeError)"]
    assert live.current is None


def test_rev24_a_password_in_json_on_stderr_is_redacted(
    bin_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding 4. A plugin that fails after writing its cloud's answer as JSON on stderr:
    ``redact`` knows no secret on the failure path (only the env values), its labelled
    rule needs ``password`` right before ``:``/``=``/a space (JSON has a quote there), and
    its token rule needs 24 characters. The password reaches pullguard's log verbatim:
    ``... failed: it exited with status 1; stderr: decoded answer {"username": "robot",
    "password": "Tr0ub4dor&3"}``."""
    caplog.set_level(logging.INFO, "pullguard.credproviders")
    (answer,) = _engine(bin_dir, _provider("leaks")).provide(IMAGE, BUDGET)
    assert answer.error == "it exited with status 1"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "credential provider leaks" in logged
    assert SHORT_PASSWORD not in logged, logged


HANG = f"""#!{sys.executable}
import sys, time
sys.stdin.read()
time.sleep(60)
"""


@pytest.mark.open_finding
def test_rev24_the_cli_providers_are_bounded_per_object_as_at_admission(tmp_path: Path) -> None:
    """Finding 7. At admission ``_DeadlineProviders`` (webhook/edge/app.py) bounds every
    plugin run of one review by one ``registry.timeoutSeconds``. ``check``, ``diagnose``
    and ``audit`` (``livecheck.live_providers``) hand ``validate`` the bare LiveProviders:
    ``ask_providers`` gives each distinct repository a fresh full budget, one after the
    other, and a failure is never cached. A plugin that hangs costs one object of three
    ECR images 3 budgets, and ``audit`` pays that again for every workload."""
    import time

    from webhook.compose.livecheck import live_providers
    from webhook.core.config import load_config_text
    from webhook.core.nodecreds import ask_providers

    folder = tmp_path / "bin"
    folder.mkdir()
    _write(folder, "hang", HANG)
    document = tmp_path / "credential-providers.yaml"
    document.write_text(
        "apiVersion: kubelet.config.k8s.io/v1\n"
        "kind: CredentialProviderConfig\n"
        "providers:\n"
        "  - name: hang\n"
        '    matchImages: ["*.dkr.ecr.*.amazonaws.com"]\n'
        '    defaultCacheDuration: "12h"\n'
        f"    apiVersion: {V1}\n"
    )
    config = load_config_text(
        "registry:\n"
        "  timeoutSeconds: 1\n"
        f"  imageCredentialProviderConfig: {document}\n"
        f"  imageCredentialProviderBinDir: {folder}\n"
    )
    view = live_providers(config)
    assert view is not None
    images = [(f"{REGISTRY}/team/app-{n}", REGISTRY) for n in range(3)]
    started = time.monotonic()
    ask_providers(images, view, config.registry.timeout_seconds)
    elapsed = time.monotonic() - started
    assert elapsed < config.registry.timeout_seconds + 1.5, f"{elapsed:.1f} s for one object"
