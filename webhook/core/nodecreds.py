"""Node credentials at admission: what the kubelet's credential providers give each pull.

The kubelet tries a credential provider's answer after the pod's own pull secrets (its
keyring is the union, in that order). The providers' part is one keyring: the kubelet
(``externalCredentialProviderKeyring.Lookup``, pkg/credentialprovider/plugin/plugins.go)
adds every matching provider's whole answer to one ``BasicDockerKeyring`` and looks the
image up once, so key matching, the order of keys (most specific first) and the Docker Hub
fallback run across all providers' answers (:meth:`NodeCredentials.credentials`).

:func:`ask_providers` asks a :class:`NodeCredentialView` (the edge runs the plugins behind
it, bounded and cached) for each distinct repository the pod pulls, as the kubelet asks
(the repository without tag or digest), and returns :class:`NodeCredentials`: per
repository, each matching provider's answer or why it gave none. ``validate`` hands the
credentials to :meth:`~webhook.core.pullplan.ImagePull.with_credentials` (``node=``),
counts every host a provider matched as a node-credential registry, and ``registrycheck``
words a provider that failed.

Pure: no processes, no files; the plugins are reached only through the view. It never
decides and never makes a finding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from webhook.core.keyring import Credential, lookup

#: At most this many distinct repositories are asked about per admission (as the registry
#: check asks about at most 64 manifests): a pod naming more gets no node credentials for
#: the rest, which then are judged as today (a warning on a node-credential registry).
MAX_ASKED = 64

#: Where a credential a provider gave says it came from (``Credential.source``).
PROVIDER_SOURCE_PREFIX = "credential provider "
#: The one folder ``serve`` runs credential providers from unless started with
#: ``--credential-provider-bin-dir``: where deploy/components/credential-providers mounts
#: the plugins. ``registry.imageCredentialProviderBinDir`` must be it (or under it): the
#: ConfigMap never chooses which programs pullguard runs. Here, not in core.credprovider
#: (which re-exports it), so that ``pullguard``'s parser reads it without loading yaml.
DEFAULT_SERVE_BIN_DIR = "/var/lib/pullguard/credential-provider-bin"
#: Every folder ``serve`` reading the ConfigMap may run them from without the flag: the
#: component's mount, and the folder CONTRACT.md's example configuration names. Both are
#: folders of the container image that only the pod's own volumes can fill.
DEFAULT_SERVE_BIN_DIRS = (DEFAULT_SERVE_BIN_DIR, "/etc/pullguard/credential-provider-bin")


@dataclass(frozen=True, slots=True)
class ProviderAnswer:
    """One provider's part for one image: every entry of its answer (``auth``, each with
    the provider as its ``source``), or ``error`` (why it gave none, for a warning). Which
    entries serve the image is decided across all providers' answers together
    (:meth:`NodeCredentials.credentials`), as the kubelet decides it."""

    provider: str
    credentials: tuple[Credential, ...] = ()
    error: str | None = None
    cached: bool = False


class NodeCredentialView(Protocol):
    """The configured credential providers, as the edge runs them."""

    def provide(
        self,
        image: str,
        timeout: float,
        tenant: str | None = None,
        *,
        may_run: Callable[[], str] | None = None,
    ) -> Sequence[ProviderAnswer]:
        """Each matching provider's answer for ``image`` (a repository without tag, as the
        kubelet asks), in the configuration's order, all within ``timeout`` seconds; empty
        when no provider matches. ``tenant``: the namespace whose share of plugin runs they
        count against (the edge's admission sets it from the review; ``None``: no share).
        ``may_run``: asked before a plugin is started for ``tenant`` (never for a cached
        answer): why it may not be (``""``: it may)."""
        ...


@dataclass(frozen=True, slots=True)
class NodeCredentials:
    """What the providers gave, by repository (``Reference.name``)."""

    answers: Mapping[str, tuple[ProviderAnswer, ...]] = field(default_factory=dict)
    matched_hosts: tuple[str, ...] = ()
    """The registry hosts (``host[:port]``) of repositories a provider matched: the nodes
    authenticate to them themselves, listed in ``nodeCredentialRegistries`` or not."""

    def credentials(self, image: str) -> tuple[Credential, ...]:
        """The providers' credentials for ``image``, as the kubelet picks them: every
        answer added to one keyring, in the configuration's order (a key two providers
        give keeps the earlier one's login first), looked up once: keys most specific first
        across all providers, and ``index.docker.io`` entries only when no key of any
        answer matched a Docker Hub image."""
        return tuple(lookup([c for a in self.answers.get(image, ()) for c in a.credentials], image))

    def failures(self, image: str) -> tuple[ProviderAnswer, ...]:
        """The matching providers that gave no answer for ``image``."""
        return tuple(a for a in self.answers.get(image, ()) if a.error is not None)


def ask_providers(
    images: Iterable[tuple[str, str]], view: NodeCredentialView, budget: float
) -> NodeCredentials:
    """Each distinct ``(repository, host)``'s provider answers, asked of ``view`` within
    ``budget`` seconds each (the view's own deadline bounds them all together)."""
    answers: dict[str, tuple[ProviderAnswer, ...]] = {}
    hosts: dict[str, None] = {}
    for image, host in list(dict.fromkeys(images))[:MAX_ASKED]:
        if image in answers:
            continue
        got = tuple(view.provide(image, budget))
        answers[image] = got
        if got:
            hosts[host] = None
    return NodeCredentials(answers, tuple(hosts))


def provider_of(source: str) -> str | None:
    """The provider's name when ``source`` (a ``Credential.source``) is a provider's."""
    if source.startswith(PROVIDER_SOURCE_PREFIX):
        return source[len(PROVIDER_SOURCE_PREFIX) :]
    return None
