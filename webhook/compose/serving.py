"""The serving runtime of ``pullguard serve``: gunicorn's master and what each worker builds.

In the master: gevent's patch, the shared metrics folder, the leadership lock, self-managed
certificates, then :func:`webhook.edge.server.run`. In each worker (``app_factory``, after the
fork): the configuration store and its source, the registry client and the mirror prober, the
kubelet credential providers the configuration names, the cluster caches, the secret-copy
syncer, the in-cluster audit, all put into one :class:`webhook.edge.app.Runtime` and handed
to :func:`webhook.edge.app.create_app`.

Wiring only: the parts come from ``webhook.edge`` (I/O) and ``webhook.core`` (decisions).
Must not: parse or check arguments (``webhook.cli.serve`` does, before :func:`run`), print
(what keeps it from starting is :class:`ServeRefused`), or decide anything itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from webhook.compose.offline import offline_cluster
from webhook.core.nodecreds import DEFAULT_SERVE_BIN_DIRS

if TYPE_CHECKING:
    from flask import Flask

    from webhook.core.config import RegistrySettings
    from webhook.core.credprovider import ProviderConfig
    from webhook.core.registry import Answer, Question
    from webhook.edge.app import Runtime
    from webhook.edge.configsource import ConfigStore
    from webhook.edge.credproviders import CredentialProviders, LiveProviders
    from webhook.edge.metrics import Metrics
    from webhook.edge.mirrors import MirrorHealth
    from webhook.edge.registry import HttpRegistry
    from webhook.edge.workers import Leadership


log = logging.getLogger("pullguard")

#: What this build cannot do, said once in the log and in /readyz (not only in metrics).
NOTES: tuple[str, ...] = ()
NO_CLUSTER = (
    "no cluster (--dev): the pullSecrets and platform checks cannot run; give "
    "--cluster-state FILE to judge against a cluster's secrets and nodes"
)
NO_COPIES = (
    "default pull secrets are not copied into namespaces: pullguard-sync-key could not be "
    "read or created (see the log)"
)


@dataclass(frozen=True)
class ServeArguments:
    """What ``pullguard serve`` was asked for, checked by ``webhook.cli.serve`` (one field
    per argument, named as its ``dest``). Never changed: what the master works out (the
    certificate files are local values; the namespace a new value made with
    :func:`dataclasses.replace`)."""

    config: Path | None = None
    namespace: str | None = None
    configmap: str = "pullguard-config"
    audit_interval: float = 0.0
    client_ca: str | None = None
    credentials_need_client_ca: bool = False
    cert: str | None = None
    key: str | None = None
    port: int = 8443
    host: str | None = None
    metrics_port: int | None = None
    connections: int = 1000
    workers: int = 0
    dev: bool = False
    service: str = "pullguard"
    webhook_url: str | None = None
    cert_check_interval: float = 3600.0
    sync_interval: float = 30.0
    cert_dir: Path = Path("/var/run/pullguard/certs")
    cluster_state: Path | None = None
    #: The folders credential providers may run from; None: any the configuration names
    #: (``--config FILE`` without ``--credential-provider-bin-dir``: the file is the
    #: operator's, trusted like a flag; the ConfigMap never is).
    credential_provider_bin_dirs: tuple[str, ...] | None = DEFAULT_SERVE_BIN_DIRS
    #: ``--mutation-mode``: auto | policy | webhook (``webhook.core.mutationmode.MODES``).
    mutation_mode: str = "auto"


#: Why ``serve`` without ``--config`` does not start: the ConfigMap's namespace is unknown.
NO_NAMESPACE = "cannot tell the webhook's namespace; pass --namespace or set POD_NAMESPACE"


class ServeRefused(Exception):
    """What keeps ``serve`` from starting that only the environment tells (its text is the
    message ``webhook.cli.serve`` prints, with exit status 2)."""


def run(options: ServeArguments) -> int:
    """``pullguard serve`` with arguments ``webhook.cli.serve`` has checked: gunicorn over
    TLS, each worker a whole pullguard. :class:`ServeRefused` when it cannot start."""
    # The server runs on gevent (see webhook.edge.server): patch first, before anything
    # imports ssl or socket.
    from webhook.edge import workers

    workers.patch_for_gevent()
    # Before anything imports prometheus_client: the workers' metrics go to shared files.
    run_dir = workers.prepare_shared_dir()
    try:
        return _serve(options, workers.Leadership(run_dir / "leader.lock"))
    finally:
        workers.remove_shared_dir(run_dir)


def _serve(options: ServeArguments, leadership: Leadership) -> int:
    from webhook.edge import logs, server, workers
    from webhook.edge.app import Runtime, create_app
    from webhook.edge.certs import ensure_dev_certs
    from webhook.edge.configsource import ConfigStore, FileConfigSource, default_config_text
    from webhook.edge.metrics import Metrics

    certfile, keyfile = options.cert or "", options.key or ""
    if not options.dev and options.config is None and (certfile and keyfile):
        # The workers read the ConfigMap in pullguard's namespace: say it cannot be told
        # here, in the master, rather than in every worker gunicorn starts.
        from webhook.edge.kube import own_namespace_default

        if not (options.namespace or own_namespace_default()):
            raise ServeRefused(NO_NAMESPACE)
    log_handler = logs.setup()
    if options.dev and not (certfile and keyfile):
        dev_cert, dev_key, _ = ensure_dev_certs(Path("certs"))
        certfile, keyfile = str(dev_cert), str(dev_key)
        log.info("dev mode: self-signed certificate in certs/ (CA: certs/ca.crt)")
    cert_controller = None
    if not (certfile and keyfile):
        # Self-managed: agree on a certificate in a Secret before gunicorn binds.
        from webhook.edge.kube import load_kube_config, own_namespace_default
        from webhook.edge.selfcerts import CertController, KubeCertApi

        load_kube_config()
        options = replace(options, namespace=options.namespace or own_namespace_default())
        if not options.namespace:
            raise ServeRefused("cannot tell the webhook's namespace; pass --namespace")
        extra_hosts: tuple[str, ...] = ()
        if options.webhook_url:  # its form checked by webhook.cli.serve
            from urllib.parse import urlsplit

            extra_hosts = (str(urlsplit(options.webhook_url).hostname),)
        cert_controller = CertController(
            KubeCertApi(options.namespace, options.service, url=options.webhook_url),
            options.service,
            options.namespace,
            options.cert_dir,
            extra_hosts=extra_hosts,
        )
        cert_controller.sync()
        certfile, keyfile = str(cert_controller.certfile), str(cert_controller.keyfile)
    host = options.host or ("127.0.0.1" if options.dev else "0.0.0.0")  # noqa: S104 - a server
    _preload_worker_modules(cluster=not options.dev)

    def app_factory() -> Flask:
        # Runs inside the gunicorn worker, after the fork (and after gevent patched the
        # standard library): background threads start here, as greenlets.
        log_handler.start_flusher()
        metrics = Metrics()
        store = ConfigStore(metrics)
        if options.config is not None:
            FileConfigSource(options.config, store).start()
        elif options.dev:
            store.apply_text(default_config_text(), "embedded default")
        registry, mirrors = registry_parts(store, metrics)
        providers = credential_providers(store, options.credential_provider_bin_dirs, metrics)
        offload = workers.off_the_loop()
        if options.dev:
            runtime = Runtime(
                config=store,
                cluster=offline_cluster(options.cluster_state),
                metrics=metrics,
                own_namespace=options.namespace or "",
                metrics_port=options.metrics_port,
                configmap_name=options.configmap,
                notes=[*NOTES, *([] if options.cluster_state else [NO_CLUSTER])],
                registry=registry,
                mirrors_down=mirrors.down,
                mirror_lacks=mirrors.lacks,
                not_ready=lambda: mirrors.not_ready() + providers.not_ready(),
                node_credentials=providers,
                require_client_cert=bool(options.client_ca),
                credentials_need_client_ca=options.credentials_need_client_ca,
                offload=offload,
            )
            return create_app(runtime)
        if cert_controller is not None:
            leadership.add(
                "certificate renewal",
                lambda: _in_background(
                    cert_controller.run, options.cert_check_interval, "cert-sync"
                ),
            )
        runtime = _cluster_runtime(options, store, metrics, leadership)
        runtime.registry, runtime.mirrors_down = registry, mirrors.down
        runtime.mirror_lacks = mirrors.lacks
        caches_not_ready = runtime.not_ready
        runtime.not_ready = lambda: caches_not_ready() + mirrors.not_ready() + providers.not_ready()
        runtime.node_credentials = providers
        runtime.require_client_cert = bool(options.client_ca)
        runtime.credentials_need_client_ca = options.credentials_need_client_ca
        runtime.offload = offload
        if runtime.own_namespace:
            runtime.mutation_mode = mutation_policy(
                options,
                runtime.own_namespace,
                store=store,
                mirrors=mirrors,
                metrics=metrics,
                leadership=leadership,
            )
        if options.audit_interval > 0:
            from webhook.compose.inclusteraudit import InClusterAudit
            from webhook.edge.kubereads import configured

            def audit_waits() -> list[str]:
                return store.not_ready() + list(runtime.not_ready())

            audit = InClusterAudit(
                configured(),
                lambda: store.current,
                runtime.cluster,
                registry,
                metrics,
                not_ready=audit_waits,
                own_namespace=options.namespace or "",
                node=providers,
            )
            leadership.add(
                "in-cluster audit",
                lambda: _in_background(audit.run, options.audit_interval, "in-cluster-audit"),
            )
        leadership.start()
        return create_app(runtime)

    return server.run(
        server.ServeOptions(
            host=host,
            port=options.port,
            certfile=certfile,
            keyfile=keyfile,
            connections=options.connections,
            metrics_port=options.metrics_port,
            workers=options.workers or workers.usable_cores(),
            on_worker_exit=workers.worker_exited,
            client_ca=options.client_ca,
        ),
        app_factory,
    )


def _preload_worker_modules(*, cluster: bool) -> None:
    """Import, in the master before the fork, the modules each worker's ``app_factory``
    imports: every worker (and every worker gunicorn restarts) then starts with them loaded,
    in pages it shares with the master, instead of importing them once more each (httpcore
    and h2 alone take seconds of CPU on a loaded node, per worker, while readiness waits)."""
    import webhook.compose.inclusteraudit
    import webhook.edge.credproviders
    import webhook.edge.mirrors
    import webhook.edge.registry  # noqa: F401
    from webhook.edge.workers import preload_libraries

    preload_libraries(cluster=cluster)  # gevent's thread pool; the kubernetes client


def _cluster_runtime(
    options: ServeArguments, store: ConfigStore, metrics: Metrics, leadership: Leadership
) -> Runtime:
    from webhook.edge.app import Runtime
    from webhook.edge.kube import (
        ConfigMapSource,
        KubeClusterView,
        KubeSecretWriter,
        core_api,
        load_kube_config,
        own_namespace_default,
        sync_key,
    )
    from webhook.edge.secretsync import SecretSyncer

    load_kube_config()
    api = core_api()
    namespace = options.namespace or own_namespace_default()
    cluster = KubeClusterView(api)
    cluster.start()
    if options.config is None:
        if not namespace:
            raise ServeRefused(NO_NAMESPACE)  # checked in the master: not reached
        ConfigMapSource(api, namespace, store, options.configmap).start()
    copy_secret = None
    if namespace:
        try:
            key = sync_key(api, namespace)
        except Exception as error:  # no RBAC for it, or no API server yet
            log.error(
                "default pull secrets will not be copied: cannot read or create Secret "
                "%s/pullguard-sync-key (%s)",
                namespace,
                type(error).__name__,
            )
        else:

            def allowed() -> set[tuple[str, str]]:
                if not store.loaded:
                    return set()
                return {
                    (d.secret, d.source_namespace)
                    for d in store.current.default_pull_secrets
                    if d.source_namespace
                }

            syncer = SecretSyncer(
                KubeSecretWriter(api),
                key=key,
                allowed=allowed,
                record=lambda outcome: metrics.secret_syncs.labels(outcome).inc(),
            )
            leadership.add(
                "secret-copy sync",
                lambda: _in_background(syncer.run, options.sync_interval, "secret-sync"),
            )
            copy_secret = syncer.copy
    return Runtime(
        config=store,
        cluster=cluster,
        metrics=metrics,
        own_namespace=namespace,
        not_ready=cluster.not_synced,
        copy_secret=copy_secret,
        metrics_port=options.metrics_port,
        configmap_name=options.configmap,
        notes=list(NOTES) + ([] if copy_secret else [NO_COPIES]),
    )


def mutation_policy(
    options: ServeArguments,
    namespace: str,
    *,
    store: ConfigStore,
    mirrors: MirrorHealth,
    metrics: Metrics,
    leadership: Leadership,
) -> Callable[[], str]:
    """The leader task that writes and owns the MutatingAdmissionPolicy (or removes it), and
    what every worker's /readyz says of the mode in force (the leader writes it to a file
    beside the leadership lock)."""
    from webhook.edge.policycontroller import KubePolicyApi, ModeFile, PolicyController
    from webhook.edge.workers import process_identity

    mode_file = ModeFile(leadership.path.parent / "mutation-mode")

    def report(mode: str, why: str) -> None:
        for each in ("policy", "webhook"):
            metrics.mutation_mode.labels(each).set(1 if each == mode else 0)
        mode_file.write(mode, why)

    controller = PolicyController(
        KubePolicyApi(namespace, options.service, url=options.webhook_url),
        config=lambda: store.current if store.loaded and mirrors.probed() else None,
        mirrors_down=lambda: list(mirrors.down()),
        own_namespace=namespace,
        identity=process_identity(),
        requested=options.mutation_mode,
        on_mode=report,
    )
    leadership.add(
        "mutation policy",
        lambda: _in_background(controller.run, 2.0, "mutation-policy"),
    )
    return mode_file.read


def registry_parts(store: ConfigStore, metrics: Metrics) -> tuple[HttpRegistry, MirrorHealth]:
    """The registry client and the mirror prober, both following the live configuration.
    Configured mirrors are an admin's choice, so they may sit on private addresses."""
    from webhook.core.hosts import WELL_KNOWN_REGISTRIES
    from webhook.edge.mirrors import MirrorHealth
    from webhook.edge.registry import HttpRegistry

    def settings() -> RegistrySettings:
        return store.current.registry

    def mirror_hosts() -> list[str]:
        return [m.mirror_host for m in store.current.mirrors] if store.loaded else []

    def probed_mirrors() -> list[str]:
        mirrors = store.current.mirrors if store.loaded else ()
        return [m.mirror_host for m in mirrors if m.probe]

    def known() -> list[str]:
        return store.current.known_registries() if store.loaded else []

    def registry_label(name: str) -> str:
        labelled = {*WELL_KNOWN_REGISTRIES, *known()}
        return name if name in labelled else "other"

    def observe(question: Question, answer: Answer, seconds: float) -> None:
        label = registry_label(question.registry)
        metrics.registry_requests.labels(label, answer.outcome.value).inc()
        metrics.registry_seconds.labels(label).observe(seconds)

    registry = HttpRegistry(
        settings,
        known_registries=known,
        trusted_private=mirror_hosts,
        observe=observe,
        on_cache=lambda hit: metrics.registry_cache.labels("hit" if hit else "miss").inc(),
        on_refused=lambda reason: metrics.registry_refusals.labels(reason).inc(),
    )
    mirrors = MirrorHealth(probed_mirrors, registry.probe, metrics=metrics)
    mirrors.start()
    return registry, mirrors


def credential_providers(
    store: ConfigStore,
    allowed_bin_dirs: tuple[str, ...] | None = (),
    metrics: Metrics | None = None,
) -> LiveProviders:
    """The kubelet's credential providers the live configuration names
    (``registry.imageCredentialProviderConfig`` and ``...BinDir``), re-read as it or the
    document changes; an invalid document is refused (logged with every problem) and the
    last good one stays. The bin dir must be in ``allowed_bin_dirs`` (``serve``'s
    ``--credential-provider-bin-dir``): the ConfigMap never picks which programs run."""
    from webhook.edge.credproviders import CredentialProviders, LiveProviders

    def paths() -> tuple[str | None, str | None]:
        if not store.loaded:
            return None, None
        settings = store.current.registry
        return (
            settings.image_credential_provider_config,
            settings.image_credential_provider_bin_dir,
        )

    def make(config: ProviderConfig, bin_dir: str) -> CredentialProviders:
        # Each plugin run refused for a namespace's share is counted, as registry questions are.
        refused = None if metrics is None else metrics.provider_refusals
        return CredentialProviders(
            config,
            bin_dir,
            on_refused=None if refused is None else lambda reason: refused.labels(reason).inc(),
        )

    providers = LiveProviders(paths, allowed_bin_dirs=allowed_bin_dirs, make=make)
    providers.start()
    return providers


def _in_background(loop: Callable[..., None], interval: float, name: str) -> None:
    """Run ``loop(interval=...)`` (a controller's reconcile loop) in a daemon thread."""
    threading.Thread(target=loop, kwargs={"interval": interval}, name=name, daemon=True).start()
