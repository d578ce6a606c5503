"""Fourth outside review (rev24d) of issue 24 (kubelet credential providers): findings still
open that need real files and plugin processes (``webhook.edge.credproviders``).

Each test marked open_finding fails until its finding is fixed (``pytest -m open_finding``);
a fixed one loses its marker.
"""

from __future__ import annotations

import json
from pathlib import Path

from webhook.edge.credproviders import LiveProviders

V1 = "credentialprovider.kubelet.k8s.io/v1"

#: A plugin that, like ``acr-credential-provider /etc/kubernetes/azure.json``, takes the
#: cloud configuration it logs in with from its first argument, and says which it used.
CONFIG_PLUGIN = f"""#!/bin/bash
read -r request
config=$(cat "$1")
echo "$config" > "$(dirname "$0")/../loaded-config"
echo '{{"kind": "CredentialProviderResponse", "apiVersion": "{V1}", "cacheKeyType": "Image"}}'
"""


def test_rev24d_serve_lets_the_configmap_choose_the_config_file_a_plugin_loads_by_args(
    tmp_path: Path,
) -> None:
    """Seen: rev24b F6's fix refuses, under ``serve``, a provider ``env`` other than
    SERVE_PROVIDER_ENV, "since a file beside the document, in the same ConfigMap, would
    then be run" (docs/node-credentials.md: "a ConfigMap edit must not choose what the
    plugin loads or runs", the refusal's own text). ``args`` are passed as written, so the
    same edit reaches the same place through them: ``acr-credential-provider`` (the AKS
    plugin the docs install) takes its cloud configuration file as its argument
    (``/etc/kubernetes/azure.json`` on nodes), and a document naming a file of the same
    ConfigMap there makes pullguard's plugin log in with, and call the endpoints of, a
    configuration the editor wrote (azure.json chooses the identity, the tenant, the
    cloud and, through ``resourceManagerEndpoint``, where the token requests go; from the
    cloud-provider-azure documentation, not run against the real binary here). Shown with a
    plugin that reads its configuration from ``$1`` as that one does: the ConfigMap's file
    is what it loaded, and the document is accepted with no problem. Expected: under
    ``serve``, an ``args`` entry naming a file in the provider configuration's folder (the
    ConfigMap's mount) is refused as the env names are; an argument naming a file outside
    it (the nodes' ``/etc/kubernetes/azure.json``, mounted by the admin) still passes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    plugin = bin_dir / "acr-credential-provider"
    plugin.write_text(CONFIG_PLUGIN)
    plugin.chmod(0o755)
    mounted = tmp_path / "credential-providers"  # the ConfigMap's mount: every key a file
    mounted.mkdir()
    chosen = mounted / "azure.json"
    chosen.write_text(json.dumps({"tenantId": "the-editors-tenant", "aadClientId": "x"}))
    document = mounted / "credential-providers.yaml"
    document.write_text(
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"
        '  - name: acr-credential-provider\n    matchImages: ["*.azurecr.io"]\n'
        '    defaultCacheDuration: "10m"\n'
        f"    apiVersion: {V1}\n"
        f"    args: [{chosen}]\n"
    )
    live = LiveProviders(lambda: (str(document), str(bin_dir)), allowed_bin_dirs=[str(bin_dir)])
    live.poll_once()
    live.provide("team.azurecr.io/app", 5.0)
    loaded = tmp_path / "loaded-config"
    assert not loaded.exists() or "the-editors-tenant" not in loaded.read_text(), (
        "the plugin logged in with a configuration the ConfigMap chose"
    )
    assert any("args[0]" in p for p in live.last_problems), live.last_problems
    # The nodes' own document, with the configuration the admin mounted outside the
    # ConfigMap, is still served as is.
    node_config = tmp_path / "etc-kubernetes" / "azure.json"
    node_config.parent.mkdir()
    node_config.write_text(json.dumps({"tenantId": "the-admins-tenant"}))
    document.write_text(document.read_text().replace(str(chosen), str(node_config)))
    live.poll_once()
    assert live.current is not None and not live.last_problems, live.last_problems
