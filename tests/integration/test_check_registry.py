"""``pullguard check`` says what it did not ask (issue 22 item 5): offline, an "ok" says the
registry was not asked and how to ask; ``--registry`` asks a real registry (distribution on
loopback) anonymously, so a tag never pushed is denied before the cluster sees it, and a
private image is reported as not judged rather than refused."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import checkout_env
from tests.integration.registries import Registry, loopback_tls, push_image, start_registry


@pytest.fixture(scope="module")
def registries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, Registry]]:
    base = tmp_path_factory.mktemp("check-registries")
    tls = loopback_tls(base / "tls")
    public = start_registry(base / "public", **tls)
    private = start_registry(base / "private", auth=("user", "pass"), **tls)
    yield public, private
    public.stop()
    private.stop()


def manifest(image: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "app", "namespace": "team-a"},
            "spec": {"containers": [{"name": "app", "image": image}]},
        }
    )


def check(
    tmp_path: Path, ca: Path, image: str, *args: str, private: bool = True
) -> subprocess.CompletedProcess[str]:
    (tmp_path / "pod.yaml").write_text(manifest(image))
    config = tmp_path / "config.yaml"
    config.write_text("registry: {allowPrivateNetworks: true}\n" if private else "{}\n")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "webhook",
            "check",
            "-f",
            str(tmp_path / "pod.yaml"),
            "--config",
            str(config),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=checkout_env(SSL_CERT_FILE=str(ca)),
    )


def test_an_offline_ok_says_the_registry_was_not_asked_and_registry_asks(
    registries: tuple[Registry, Registry], tmp_path: Path
) -> None:
    public, _ = registries
    push_image(public, "team/checked", "1.0")
    never_pushed = f"{public.host}/team/checked:9.9"
    offline = check(tmp_path, public.ca, never_pushed)
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout.startswith("ok: Pod team-a/app (")
    assert "registry not asked (offline)" in offline.stdout
    assert "to ask now: pullguard check --registry" in offline.stdout
    # Asked as printed: the tag admission would deny is denied here too.
    asked = check(tmp_path, public.ca, never_pushed, "--registry")
    assert asked.returncode == 1, asked.stdout + asked.stderr
    assert "has no tag '9.9' (tags there include '1.0')" in asked.stdout
    served = check(tmp_path, public.ca, f"{public.host}/team/checked:1.0", "--registry")
    assert served.returncode == 0, served.stdout
    assert served.stdout.startswith("ok: Pod team-a/app (") and "not asked" not in served.stdout


def test_check_with_the_registry_never_denies_for_credentials_it_does_not_have(
    registries: tuple[Registry, Registry], tmp_path: Path
) -> None:
    _, private = registries
    push_image(private, "team/private-check", "1.0")
    result = check(tmp_path, private.ca, f"{private.host}/team/private-check:1.0", "--registry")
    assert result.returncode == 0, result.stdout
    assert "wants credentials, and check has none" in result.stdout


def test_an_ok_under_registry_says_what_it_could_not_ask_and_why(
    registries: tuple[Registry, Registry], tmp_path: Path
) -> None:
    """Issue 22 review item 7: a registry not asked (it wants credentials check lacks, or its
    address is refused) is no bare "ok": the line says "registry not asked: WHY", and the
    refused address reads as a sentence."""
    public, private = registries
    push_image(private, "team/private-ok", "1.0")
    wanted = check(tmp_path, private.ca, f"{private.host}/team/private-ok:1.0", "--registry")
    assert wanted.returncode == 0, wanted.stdout
    (ok,) = [line for line in wanted.stdout.splitlines() if line.startswith("ok: ")]
    assert "; registry not asked: 127.0.0.1:" in ok, ok
    assert "wants credentials, and check has none; those images are not judged" in ok
    assert "those images are not judged here" in ok
    push_image(public, "team/loopback", "1.0")
    image = f"{public.host}/team/loopback:1.0"
    refused = check(tmp_path, public.ca, image, "--registry", private=False)
    assert refused.returncode == 0, refused.stdout
    (ok,) = [line for line in refused.stdout.splitlines() if line.startswith("ok: ")]
    assert "; registry not asked: 127.0.0.1 is a loopback address" in ok, ok
    assert "resolves to 127.0.0.1 is" not in refused.stdout


#: A kubelet credential provider plugin speaking the real JSON: the private registry's login.
PLUGIN = f"""#!{sys.executable}
import json, sys
request = json.load(sys.stdin)
print(json.dumps({{
    "kind": "CredentialProviderResponse",
    "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
    "cacheKeyType": "Registry",
    "auth": {{request["image"].split("/")[0]: {{"username": "user", "password": "pass"}}}},
}}))
"""


def test_check_asks_with_the_credential_providers_the_configuration_names(
    registries: tuple[Registry, Registry], tmp_path: Path
) -> None:
    """Issue 24 item 6: a CI pipeline with cloud credentials gets admission's answer. The
    providers' credentials are pullguard's own (the pipeline's identity), so check sends
    them: an image that exists is ok with nothing "not asked", a tag never pushed denies."""
    _, private = registries
    push_image(private, "team/node-check", "1.0")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    plugin = bin_dir / "fake-ecr-credential-provider"
    plugin.write_text(PLUGIN)
    plugin.chmod(0o755)
    (tmp_path / "providers.yaml").write_text(
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"
        f'  - name: fake-ecr-credential-provider\n    matchImages: ["{private.host}"]\n'
        '    defaultCacheDuration: "1m"\n'
        "    apiVersion: credentialprovider.kubelet.k8s.io/v1\n"
    )
    (tmp_path / "pod.yaml").write_text(manifest(f"{private.host}/team/node-check:1.0"))
    (tmp_path / "missing.yaml").write_text(manifest(f"{private.host}/team/node-check:9.9"))
    config = tmp_path / "config.yaml"
    config.write_text(
        "registry:\n  allowPrivateNetworks: true\n"
        f"  imageCredentialProviderConfig: {tmp_path / 'providers.yaml'}\n"
        f"  imageCredentialProviderBinDir: {bin_dir}\n"
    )

    def run(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *(sys.executable, "-m", "webhook", "check", "-f", str(tmp_path / name)),
                *("--config", str(config), "--registry"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=checkout_env(SSL_CERT_FILE=str(private.ca)),
        )

    served = run("pod.yaml")
    assert served.returncode == 0, served.stdout + served.stderr
    assert served.stdout.startswith("ok: Pod team-a/app (") and "not asked" not in served.stdout
    assert "warning" not in served.stdout, served.stdout
    missing = run("missing.yaml")
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert f"repository {private.host}/team/node-check has no tag '9.9'" in missing.stdout
