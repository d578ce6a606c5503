"""Fifth outside review (rev24e) of issue 24 (kubelet credential providers): findings still
open that need real files and plugin processes (``webhook.edge.credproviders``).

Each test marked open_finding fails until its finding is fixed (``pytest -m open_finding``);
a fixed one loses its marker.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from webhook.edge.credproviders import LiveProviders

V1 = "credentialprovider.kubelet.k8s.io/v1"

#: A plugin that, like ``acr-credential-provider /etc/kubernetes/azure.json``, takes the
#: cloud configuration it logs in with from an argument (its last one: a positional, or the
#: value of an attached short flag ``-c/path``), and says which it used.
CONFIG_PLUGIN = f"""#!/bin/bash
read -r request
arg="${{@: -1}}"
case "$arg" in -c*) arg="${{arg#-c}}";; esac
config=$(cat "$arg")
echo "$config" > "$(dirname "$0")/../loaded-config"
echo '{{"kind": "CredentialProviderResponse", "apiVersion": "{V1}", "cacheKeyType": "Image"}}'
"""


def _setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    plugin = bin_dir / "acr-credential-provider"
    plugin.write_text(CONFIG_PLUGIN)
    plugin.chmod(0o755)
    mounted = tmp_path / "credential-providers"  # the ConfigMap's mount: every key a file
    mounted.mkdir()
    chosen = mounted / "azure.json"
    chosen.write_text(json.dumps({"tenantId": "the-editors-tenant", "aadClientId": "x"}))
    return bin_dir, mounted, chosen


@pytest.mark.parametrize("form", ["relative", "attached-flag"])
def test_rev24e_serve_args_rule_is_passed_by_a_relative_path_or_an_attached_flag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    """Seen: rev24d's fix refuses, under ``serve``, an ``args`` entry naming a file in the
    provider configuration's folder, but ``_names_a_file_in`` looks only at entries (or
    ``--flag=`` values) that start with ``/``. The plugin runs in pullguard's working
    directory, which is ``/`` in the shipped image (the run stage of the Dockerfile has no
    WORKDIR), so ``etc/pullguard/credential-providers/azure.json`` names the same
    ConfigMap key as the refused absolute path; a pflag-style attached short flag
    (``-c/etc/pullguard/credential-providers/azure.json``) passes too. Shown here with the
    working directory at the mount's parent: the document is served with no problem and
    the plugin loaded the ConfigMap's file. Expected: refused as the absolute path is
    (a relative entry resolved against the working directory the plugin gets, and an
    attached short flag's value, checked alike)."""
    bin_dir, mounted, chosen = _setup(tmp_path)
    monkeypatch.chdir(tmp_path)
    arg = os.path.relpath(chosen, tmp_path) if form == "relative" else f"-c{chosen}"
    document = mounted / "credential-providers.yaml"
    document.write_text(
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"
        '  - name: acr-credential-provider\n    matchImages: ["*.azurecr.io"]\n'
        '    defaultCacheDuration: "10m"\n'
        f"    apiVersion: {V1}\n"
        f"    args: [{json.dumps(arg)}]\n"
    )
    live = LiveProviders(lambda: (str(document), str(bin_dir)), allowed_bin_dirs=[str(bin_dir)])
    live.poll_once()
    live.provide("team.azurecr.io/app", 5.0)
    loaded = tmp_path / "loaded-config"
    assert not loaded.exists() or "the-editors-tenant" not in loaded.read_text(), (
        f"the plugin logged in with a configuration the ConfigMap chose through {arg!r} "
        f"(problems: {live.last_problems})"
    )
    assert any("args[0]" in p for p in live.last_problems), live.last_problems


def test_rev24e_serve_refuses_an_arg_beside_a_configuration_folder_not_in_it(
    tmp_path: Path,
) -> None:
    """Seen: with ``registry.imageCredentialProviderConfig`` a folder (documented: "a file
    or a folder whose *.json, *.yaml, *.yml files are merged"), ``_configuration_folders``
    returns ``where.resolve().parent`` too, which for a folder is the folder's *parent*:
    every path beside the configuration folder is then refused. An admin who follows the
    refusal's own advice ("mount that file outside the configuration's folder") and
    mounts azure.json from its own Secret at ``/etc/pullguard/azure/azure.json``, beside
    ``/etc/pullguard/credential-providers/``, gets 'args[0]: ... names a file beside the
    provider configuration' and no provider in force (every image then only warned).
    Expected: refused only inside the configuration's folder (and its resolved form)."""
    bin_dir, mounted, _ = _setup(tmp_path)
    (mounted / "azure.json").unlink()
    admins = tmp_path / "azure" / "azure.json"  # the admin's own mount, beside the folder
    admins.parent.mkdir()
    admins.write_text(json.dumps({"tenantId": "the-admins-tenant"}))
    (mounted / "credential-providers.yaml").write_text(
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"
        '  - name: acr-credential-provider\n    matchImages: ["*.azurecr.io"]\n'
        '    defaultCacheDuration: "10m"\n'
        f"    apiVersion: {V1}\n"
        f"    args: [{admins}]\n"
    )
    live = LiveProviders(lambda: (str(mounted), str(bin_dir)), allowed_bin_dirs=[str(bin_dir)])
    live.poll_once()
    assert live.current is not None and not live.last_problems, live.last_problems
