"""What ``diagnose`` and ``audit`` share: the live configuration, the registry client, and
judging one object as the webhook would.

The configuration is ``--config FILE``, else the cluster's own ``pullguard-config``
(``--pullguard-namespace``), else the embedded default. ``audit`` judges with it as it is
(what admission would do today); ``diagnose`` with :func:`everything_on` (nothing hidden).
The registry client is the webhook's, with every answer remembered for the run, so each
distinct image is asked once however many objects use it. The kubelet's credential providers
the configuration names (``registry.imageCredentialProviderConfig``) are run as admission
runs them (:func:`live_providers`), with the caller's own cloud identity, so ``check``,
``diagnose`` and ``audit`` give admission's answer.

Composition only: I/O comes from ``webhook.edge`` (the API server through
:mod:`webhook.edge.kubereads`, the ``--config`` file through
:mod:`webhook.edge.configsource`), deciding stays in ``webhook.core``. Must not: parse arguments
(``webhook.cli.options`` declares the ones whose values :func:`live_config` takes), or call
the kubernetes client itself.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webhook.core.checks import SecretReads
from webhook.core.cluster import ClusterView
from webhook.core.config import CHECK_NAMES, Action, Checks, Config, load_config_text
from webhook.core.nodecreds import NodeCredentialView
from webhook.core.registry import Answer, Question, RegistryView
from webhook.core.review import AdmissionRequest
from webhook.core.validate import Decision, validate

if TYPE_CHECKING:
    from webhook.edge.kubereads import Kube

CONFIGMAP = "pullguard-config"
log = logging.getLogger("pullguard")


class ClusterUnreadable(Exception):
    """The cluster could not be reached or read (its text is the client's error)."""


class NamespaceMissing(Exception):
    """The namespace asked for does not exist (its text says so)."""


def live_config(
    kube: Kube, config_file: Path | None, pullguard_namespace: str
) -> tuple[Config, str]:
    """The configuration to judge with, and where it came from: ``config_file`` (``--config``),
    else the ConfigMap in ``pullguard_namespace``, else the embedded default."""
    from webhook.edge.configsource import default_config_text, load_config_file

    if config_file is not None:
        return load_config_file(config_file), str(config_file)
    try:
        text = kube.config_map_text(pullguard_namespace, CONFIGMAP, "config.yaml")
        if text:
            source = f"ConfigMap {pullguard_namespace}/{CONFIGMAP}"
            return load_config_text(text), source
    except Exception as error:  # not installed, or not readable by this user: said
        said = (
            f"pullguard: ConfigMap {pullguard_namespace}/{CONFIGMAP} not read "
            f"({type(error).__name__}); judging with the embedded default"
        )
        log.warning("%s", said)  # the cli's stderr, or the in-cluster audit's log
    return load_config_text(default_config_text()), "the embedded default"


def everything_on(config: Config) -> Config:
    """``config`` with every check at least warning, no namespace exempt and no namespace
    mode label read: a diagnosis wants the whole picture, whatever admission does there."""
    actions = {
        name: (
            Action.WARN if config.checks.action(name) is Action.OFF else config.checks.action(name)
        )
        for name in CHECK_NAMES
    }
    return replace(
        config,
        checks=Checks(**actions),
        exempt_namespaces=frozenset(),
        namespace_mode_label="",  # no label has an empty key
    )


class RunMemo:
    """A registry view remembering every answer for one CLI run (negative ones too: the
    run is minutes long at most, and each image must be asked once)."""

    def __init__(self, inner: RegistryView) -> None:
        self.inner = inner
        self.answers: dict[Question, Answer] = {}
        self.lock = threading.Lock()

    def ask(
        self, questions: Sequence[Question], budget: float, tenant: str = ""
    ) -> Mapping[Question, Answer]:
        with self.lock:
            missing = [q for q in questions if q not in self.answers]
        if missing:
            got = self.inner.ask(missing, budget, tenant)
            with self.lock:
                self.answers.update(got)
        with self.lock:
            return {q: self.answers[q] for q in questions}


def live_registry(config: Config) -> RunMemo:
    from webhook.edge.registry import HttpRegistry

    mirrors = [m.mirror_host for m in config.mirrors]
    return RunMemo(
        HttpRegistry(
            lambda: config.registry,
            known_registries=config.known_registries,
            trusted_private=lambda: mirrors,
        )
    )


def live_providers(config: Config) -> NodeCredentialView | None:
    """The credential providers ``config`` names, read once for the run (``None``: it names
    none). A document that cannot be used is logged with every problem, and every image then
    gets that provider failure (a refusal warns, as at admission before a good document)."""
    from webhook.edge.credproviders import CredentialProviders, LiveProviders

    settings = config.registry
    path = settings.image_credential_provider_config
    bin_dir = settings.image_credential_provider_bin_dir
    if path is None or bin_dir is None:
        return None
    # A person runs check/diagnose/audit on their own machine, with the folder they chose.
    providers = LiveProviders(
        lambda: (path, bin_dir),
        allowed_bin_dirs=None,
        make=functools.partial(CredentialProviders, remember_failures=True),
    )
    providers.poll_once()
    return providers


def per_object(node: NodeCredentialView | None, config: Config) -> NodeCredentialView | None:
    """``node`` bounded for one object as admission bounds one review: every plugin run
    for it ends within one ``registry.timeoutSeconds`` from now, less admission's answer
    margin (the same deadline for the same start, rev24c F5), counted under the audit's own
    share (:data:`~webhook.edge.credproviders.AUDIT_TENANT`): the in-cluster audit runs
    plugins in admission's process, and a run outside every share escaped the max-min rule
    (rev24h F2)."""
    if node is None:
        return None
    from webhook.edge.credproviders import ANSWER_MARGIN_SECONDS, AUDIT_TENANT, DeadlineProviders

    budget = config.registry.timeout_seconds - ANSWER_MARGIN_SECONDS
    return DeadlineProviders(node, time.perf_counter(), budget, AUDIT_TENANT)


def judge(
    kind: str,
    obj: Mapping[str, Any],
    config: Config,
    cluster: ClusterView,
    registry: RegistryView,
    *,
    own_namespace: str = "",
    node: NodeCredentialView | None = None,
    stuck_pods: Sequence[str] = (),
    recreate_bare_pod: bool = False,
    reads: SecretReads | None = None,
) -> Decision:
    """The validating decision on ``obj`` as if it were created now (``stuck_pods``,
    ``recreate_bare_pod``, ``reads``: :func:`~webhook.core.validate.validate`'s). ``own_namespace``:
    pullguard's own, exempt at admission as it is here. ``node``: the credential providers
    (:func:`live_providers`), tried after the pod's secrets as at admission."""
    metadata = obj.get("metadata") or {}
    request = AdmissionRequest(
        uid="pullguard-cli",
        kind=kind,
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        operation="CREATE",
        sub_resource="",
        object=dict(obj),
        old_object=None,
        dry_run=True,
    )
    return validate(
        request,
        config,
        cluster,
        registry=registry,
        own_namespace=own_namespace,
        user_verified=True,
        existing=True,
        node=per_object(node, config),
        stuck_pods=stuck_pods,
        recreate_bare_pod=recreate_bare_pod,
        reads=reads,
    )


def namespace_missing(kube: Kube, namespace: str) -> str:
    """Why a namespace with nothing in it cannot be looked at: it does not exist. Empty when
    it exists, or when this user may not read Namespaces (then it is only empty)."""
    if kube.namespace_exists(namespace) is False:
        return f'namespace "{namespace}" does not exist'
    return ""
