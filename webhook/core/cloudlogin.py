"""The clouds' registries whose nodes log in themselves, and the fix for a refusal there.

On EKS, GKE and AKS the kubelet gets registry credentials from the node's own identity (a
kubelet credential provider: ``ecr-credential-provider``, ``auth-provider-gcp``,
``acr-credential-provider``, FACTS.md), which no admission webhook sees. So when pullguard,
asking anonymously, is refused by Amazon ECR, Artifact Registry (and ``gcr.io``, which it
serves) or Azure Container Registry, the fix a person acts on is, in this order:

1. nothing, when the pods on these nodes pull from that registry already;
2. pull rights for the nodes' identity (the node IAM role, the nodes' service account, the
   kubelet's managed identity);
3. only as a last resort a pull secret, with that registry's real login. A placeholder
   ``USER``/``PASSWORD`` cannot work there:

   - ECR: user ``AWS``, password from ``aws ecr get-login-password --region REGION``, which
     expires after 12 hours (the secret must be renewed before then);
   - Artifact Registry: user ``_json_key`` with a service-account key file (it does not
     expire), or ``oauth2accesstoken`` with ``gcloud auth print-access-token`` (one hour);
   - ACR: a service principal's application ID and password (or a repository-scoped token
     from ``az acr token create``), valid as long as that credential is.

Pure: strings in, strings out. It decides nothing: the ``registry`` check says when a
refusal is only a warning (``registry.nodeCredentialRegistries``).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from webhook.core.checks import create_secret_command


@dataclass(frozen=True, slots=True)
class CloudRegistry:
    """What gives a cloud's nodes pull rights on one registry, and its real login."""

    nodes_login: str
    """How the nodes log in (said when they may already)."""
    node_rights: str
    """What gives the nodes pull rights."""
    login: str
    """The ``--docker-username`` / ``--docker-password`` of a pull secret that works."""
    lasts: str
    """How long that secret works."""


_ECR = re.compile(r"^\d{12}\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
_ARTIFACT_REGISTRY = re.compile(r"^(?:[a-z0-9-]+-docker\.pkg\.dev|(?:[a-z]+\.)?gcr\.io)$")
_ACR = re.compile(r"^(?P<name>[a-z0-9]+)\.azurecr\.(?:io|cn|us)$")


def cloud_registry(host: str) -> CloudRegistry | None:
    """The cloud registry ``host`` is (ECR, Artifact Registry, ACR), or ``None``."""
    host = host.lower()
    if ecr := _ECR.match(host):
        return CloudRegistry(
            nodes_login="the node IAM role, through the kubelet's ECR credential provider",
            node_rights="give the node IAM role pull access to the repository (the "
            "AmazonEC2ContainerRegistryReadOnly policy; a repository of another account "
            "must also allow it in its repository policy)",
            login="--docker-username=AWS --docker-password="
            f'"$(aws ecr get-login-password --region {ecr.group("region")})"',
            lasts="its password expires after 12 hours, so the secret must be renewed before then",
        )
    if _ARTIFACT_REGISTRY.match(host):
        return CloudRegistry(
            nodes_login="the nodes' service account",
            node_rights="give the nodes' service account the Artifact Registry Reader role "
            "(roles/artifactregistry.reader) on the repository or its project",
            login='--docker-username=_json_key --docker-password="$(cat KEY.json)"',
            lasts="KEY.json: a key of a service account with that role, which does not "
            "expire; user oauth2accesstoken with the token of gcloud auth print-access-token "
            "works for one hour only",
        )
    if acr := _ACR.match(host):
        return CloudRegistry(
            nodes_login="the kubelet's managed identity",
            node_rights="give the kubelet's identity AcrPull on the registry: az aks update "
            f"--name CLUSTER --resource-group GROUP --attach-acr {acr.group('name')}",
            login="--docker-username=SP_APP_ID --docker-password=SP_PASSWORD",
            lasts="SP_APP_ID, SP_PASSWORD: a service principal with AcrPull on the registry, "
            "or a token of az acr token create; it works as long as that credential is valid",
        )
    return None


def secret_command(name: str, namespace: str, host: str) -> str:
    """``kubectl create secret docker-registry`` for ``host``: with the cloud registry's
    real login where it is one, else with placeholders."""
    cloud = cloud_registry(host)
    if cloud is None:
        return create_secret_command(name, namespace, host)
    return (
        f"kubectl create secret docker-registry {shlex.quote(name)} -n {shlex.quote(namespace)} "
        f"--docker-server={shlex.quote(host)} {cloud.login}"
    )


#: How the fix of :func:`node_access_fix` starts when the nodes may already pull.
NOTHING_TO_DO = "nothing to do if pods on these nodes already pull from "


def node_access_fix(host: str, secret_fix: str, *, nodes_may_pull: bool = True) -> str:
    """The fix for a refusal from a registry the nodes log in to themselves: nothing (when
    ``nodes_may_pull``: admission, where the nodes' answer is not known), else the nodes'
    pull rights, and ``secret_fix`` (the :func:`secret_command` and where the secret goes)
    only as a last resort."""
    cloud = cloud_registry(host)
    if cloud is None:
        how = "a kubelet credential provider or a node's config.json"
        rights = f"give the nodes credentials for {host}"
        lasts = "with the registry's login"
    else:
        how, rights, lasts = cloud.nodes_login, cloud.node_rights, cloud.lasts
    first = f"{NOTHING_TO_DO}{host}: the nodes log in themselves ({how}); if they do not, "
    return (
        f"{first if nodes_may_pull else ''}{rights}; only as a last resort, a pull secret "
        f"({lasts}): {secret_fix}"
    )
