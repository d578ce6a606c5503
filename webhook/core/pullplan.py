"""The spine of the validating decision: how the kubelet will pull each image of a pod.

One :class:`ImagePull` per image entry judged (a container's, or an image volume's): the
reference, where it sits in the object, the pull policy the kubelet applies, and the
credentials it will try, in its order, each with where it came from. It is made once per
admission (:func:`plan_pulls`, then :meth:`ImagePull.with_credentials` once the pod's pull
secrets are read); the checks (``secretcheck``, ``registrycheck``) read it and return
findings, and ``validate`` applies the policy to the findings.

Node credentials (a kubelet credential provider, issue 24) plug in at one place:
``with_credentials(keyring, node=...)``. The kubelet tries the pod's secrets first and a
credential provider's answer after them (its keyring is the union of the two, in that
order); none is known today, so ``node`` is empty.

Pure: no I/O, no cluster; it never decides and never makes a finding.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from webhook.core.keyring import Credential, CredentialLookup
from webhook.core.podspec import Container
from webhook.core.reference import Reference


class CredentialOrigin(enum.Enum):
    """Where a credential the kubelet tries came from."""

    POD = "the pod's imagePullSecrets"
    SERVICE_ACCOUNT = "the ServiceAccount's imagePullSecrets"
    DEFAULT_COPY = "pullguard's default pull secret"
    NODE = "the node's credential provider"


def default_pull_policy(ref: Reference) -> str:
    """What the API server fills in: Always for :latest or no tag (unless a digest), else
    IfNotPresent. Used when a manifest is checked offline, before any defaulting."""
    return "Always" if ref.digest is None and ref.tag in (None, "latest") else "IfNotPresent"


@dataclass(frozen=True, slots=True)
class PullCredential:
    """One credential the kubelet will try for an image, and where it came from."""

    credential: Credential
    origin: CredentialOrigin

    @property
    def secret(self) -> str:
        """``namespace/name`` of its pull secret ("" for a node's)."""
        return self.credential.source


@dataclass(frozen=True, slots=True)
class ImagePull:
    """How the kubelet will pull one image entry of the pod."""

    container: Container
    """Where the image sits: its kind (container, init, ephemeral, image volume), name and
    JSON pointer (``container.image_pointer``, ``container.policy_pointer``)."""
    ref: Reference | None
    """The reference, ``None`` when the runtime cannot parse it (the kubelet fails the pull
    with InvalidImageName; the reference check says why)."""
    policy: str
    """The pull policy the kubelet applies: as written, else the API server's default."""
    credentials: tuple[PullCredential, ...] = ()
    """What the kubelet tries, in its order (most specific key first); empty: anonymously."""

    @property
    def pulled(self) -> bool:
        """Does the kubelet pull it at all? (``Never`` runs the node's copy or fails.)"""
        return self.policy != "Never"

    @property
    def keyring_credentials(self) -> tuple[Credential, ...]:
        """The credentials alone, in the kubelet's order (what a registry is asked with)."""
        return tuple(c.credential for c in self.credentials)

    def with_credentials(
        self,
        keyring: CredentialLookup,
        origin_of: Mapping[str, CredentialOrigin],
        *,
        node: Sequence[Credential] = (),
    ) -> ImagePull:
        """This pull with the credentials the kubelet will try: the keyring's matches
        first (the pod's secrets, most specific key first), then ``node``'s (a credential
        provider's answer). ``origin_of``: by secret (``namespace/name``), where it came
        from (the pod's own list when not said)."""
        if self.ref is None:
            return self
        tried = [
            PullCredential(c, origin_of.get(c.source, CredentialOrigin.POD))
            for c in keyring.lookup(self.ref.name)
        ]
        tried.extend(PullCredential(c, CredentialOrigin.NODE) for c in node)
        return replace(self, credentials=tuple(tried))


def plan_pulls(containers: Sequence[Container], refs: Mapping[str, Reference]) -> list[ImagePull]:
    """One :class:`ImagePull` per entry of ``containers``, in order, without credentials
    (:meth:`ImagePull.with_credentials` adds them once the pod's secrets are read).
    ``refs``: the parsed references, by container pointer (absent: cannot be parsed)."""
    pulls = []
    for container in containers:
        ref = refs.get(container.pointer)
        policy = container.pull_policy or (default_pull_policy(ref) if ref is not None else "")
        pulls.append(ImagePull(container, ref, policy))
    return pulls


def origins(
    credentials: Sequence[Credential], *, account: bool, copies: Collection[str]
) -> dict[str, CredentialOrigin]:
    """Where each pull secret of ``credentials`` came from, by ``namespace/name``:
    pullguard's copy of a default secret (``copies``: the ``namespace/name`` of each secret
    that carries pullguard's marks or is judged by its source, as
    :attr:`~webhook.core.checks.SecretSet.copies`; never a tenant's own secret that only
    shares a default's name: rev23b F5), else the ServiceAccount's when ``account`` (a
    template judged with its account's list), else the pod's own list."""
    out: dict[str, CredentialOrigin] = {}
    for credential in credentials:
        if credential.source in copies:
            out[credential.source] = CredentialOrigin.DEFAULT_COPY
        elif account:
            out[credential.source] = CredentialOrigin.SERVICE_ACCOUNT
        else:
            out[credential.source] = CredentialOrigin.POD
    return out


def subject(containers: Sequence[Container]) -> str:
    """How a finding about several entries names them: ``container "web"``, or
    ``containers "a", "b" and 3 more``."""
    if len(containers) == 1:
        return containers[0].label
    names = ", ".join(f'"{c.name}"' for c in containers[:4])
    more = f" and {len(containers) - 4} more" if len(containers) > 4 else ""
    return f"containers {names}{more}"
