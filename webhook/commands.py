"""Sub-commands that need the I/O edge: ``serve``, ``check`` and ``certs``.

Argument parsing and wiring only: the parts come from ``webhook.edge`` and ``webhook.core``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path
from typing import Any

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


def register(sub: Any) -> None:  # argparse's _SubParsersAction is private
    """Add the edge sub-commands to the ``pullguard`` parser."""
    from webhook import audit, check, diagnose, exportstate

    check.register(sub)
    exportstate.register(sub)
    diagnose.register(sub)
    audit.register(sub)
    serve = sub.add_parser("serve", help="run the webhook under gunicorn over TLS")
    serve.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="read the configuration from FILE (watched) instead of the ConfigMap",
    )
    serve.add_argument(
        "--namespace",
        metavar="NS",
        help="the webhook's own namespace (default: POD_NAMESPACE, else the "
        "in-cluster service account's)",
    )
    serve.add_argument(
        "--configmap",
        default="pullguard-config",
        metavar="NAME",
        help="the ConfigMap (key config.yaml) in the webhook's namespace to read and watch "
        "(default pullguard-config)",
    )
    serve.add_argument(
        "--audit-interval",
        type=float,
        default=0,
        metavar="SECONDS",
        help="run the audit in the cluster every SECONDS: metrics and Events on offending "
        "objects (needs deploy/components/in-cluster-audit; default 0: off)",
    )
    serve.add_argument(
        "--client-ca",
        metavar="FILE",
        help="PEM bundle of the CA that signs the API server's client certificate (its "
        "AdmissionConfiguration's kubeConfigFile): /validate and /mutate then answer only "
        "connections that present a certificate it signed (401 otherwise)",
    )
    serve.add_argument(
        "--credentials-need-client-ca",
        action="store_true",
        help="ask a registry with a namespace's pull secrets only for reviews over a "
        "certificate --client-ca verified (without --client-ca: never; such images are "
        "then not checked, with a warning)",
    )
    serve.add_argument("--cert", metavar="FILE", help="serving certificate (PEM)")
    serve.add_argument("--key", metavar="FILE", help="its private key (PEM)")
    serve.add_argument("--port", type=int, default=8443)
    serve.add_argument(
        "--host", default=None, help="address to bind (default 0.0.0.0; 127.0.0.1 with --dev)"
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        metavar="N",
        help="also serve /metrics and /healthz (only those) over plain HTTP on port N",
    )
    serve.add_argument(
        "--connections",
        type=int,
        default=1000,
        metavar="N",
        help="connections served at once (default 1000); more wait in the listen backlog",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="worker processes, each a whole pullguard (default 0: one per usable core, "
        "counting the container's CPU limit)",
    )
    serve.add_argument(
        "--dev",
        action="store_true",
        help="no cluster needed: a self-signed certificate under certs/ and the "
        "embedded default configuration",
    )
    serve.add_argument(
        "--service",
        default="pullguard",
        help="the webhook's Service, for self-managed certificates "
        "(used when neither --cert/--key nor --dev is given)",
    )
    serve.add_argument(
        "--webhook-url",
        metavar="URL",
        help="with self-managed certificates: the API server reaches pullguard at URL "
        "(https://HOST[:PORT], e.g. when it runs outside the cluster) instead of through "
        "the Service; HOST goes into the certificate, the CA bundle into the webhook entries "
        "whose clientConfig.url starts with URL",
    )
    serve.add_argument(
        "--cert-check-interval",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="how often self-managed certificates are re-read and renewed (default 3600)",
    )
    serve.add_argument(
        "--sync-interval",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how often default pull-secret copies are brought in line with their sources "
        "(default 30)",
    )
    serve.add_argument(
        "--cert-dir",
        type=Path,
        default=Path("/var/run/pullguard/certs"),
        help="where self-managed certificates are written for gunicorn",
    )
    serve.add_argument(
        "--cluster-state",
        type=Path,
        metavar="FILE",
        help="with --dev: judge against Secrets, ServiceAccounts and Namespaces "
        "from this YAML file instead of no cluster at all",
    )
    serve.set_defaults(func=cmd_serve)

    certs = sub.add_parser("certs", help="write a CA and a serving certificate")
    certs.add_argument("--service", required=True)
    certs.add_argument("--namespace", required=True)
    certs.add_argument("--out", type=Path, default=Path("certs"))
    certs.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="NAME",
        help="another DNS name the certificate is valid for (repeatable): pullguard run "
        "outside the cluster and registered by URL",
    )
    certs.add_argument(
        "--ip",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="an IP address the certificate is valid for (repeatable)",
    )
    certs.set_defaults(func=cmd_certs)


def cmd_serve(args: argparse.Namespace) -> int:
    # The server runs on gevent (see webhook.edge.server). Patch the standard library before
    # anything imports ssl or socket: the kubernetes client (urllib3) is used here, in
    # gunicorn's master, for self-managed certificates, and an SSLContext class from before
    # the patch makes every TLS call in the worker recurse without end.
    from gevent import monkey

    monkey.patch_all()
    # httpcore (the registry client) imports trio when it is installed, only to support
    # async callers; trio cannot be imported once gevent has removed select.epoll. Never
    # used here: make its import fail the way httpcore expects of a missing package.
    sys.modules.setdefault("trio", None)  # type: ignore[arg-type]

    from webhook.edge import workers

    # Before anything imports prometheus_client: the workers' metrics go to shared files.
    run_dir = workers.prepare_shared_dir()
    try:
        return _serve(args, workers.Leadership(run_dir / "leader.lock"))
    finally:
        workers.remove_shared_dir(run_dir)


def _serve(args: argparse.Namespace, leadership: Any) -> int:
    from webhook.edge import logs, server, workers
    from webhook.edge.app import Runtime, create_app
    from webhook.edge.certs import ensure_dev_certs
    from webhook.edge.configsource import ConfigStore, FileConfigSource, default_config_text
    from webhook.edge.metrics import Metrics

    log_handler = logs.setup()
    if args.dev and not (args.cert and args.key):
        certfile, keyfile, _ = ensure_dev_certs(Path("certs"))
        args.cert, args.key = str(certfile), str(keyfile)
        log.info("dev mode: self-signed certificate in certs/ (CA: certs/ca.crt)")
    cert_controller = None
    if not (args.cert and args.key):
        if args.cert or args.key:
            print("pullguard serve: give both --cert and --key, or neither", file=sys.stderr)
            return 2
        # Self-managed: agree on a certificate in a Secret before gunicorn binds.
        from webhook.edge.kube import load_kube_config, own_namespace_default
        from webhook.edge.selfcerts import CertController, KubeCertApi

        load_kube_config()
        args.namespace = args.namespace or own_namespace_default()
        if not args.namespace:
            print(
                "pullguard serve: cannot tell the webhook's namespace; pass --namespace",
                file=sys.stderr,
            )
            return 2
        extra_hosts: tuple[str, ...] = ()
        if args.webhook_url:
            from urllib.parse import urlsplit

            url = urlsplit(args.webhook_url)
            if url.scheme != "https" or not url.hostname:
                print("pullguard serve: --webhook-url must be https://HOST[:PORT]", file=sys.stderr)
                return 2
            extra_hosts = (url.hostname,)
        cert_controller = CertController(
            KubeCertApi(args.namespace, args.service, url=args.webhook_url),
            args.service,
            args.namespace,
            args.cert_dir,
            extra_hosts=extra_hosts,
        )
        cert_controller.sync()
        args.cert, args.key = str(cert_controller.certfile), str(cert_controller.keyfile)
    if args.client_ca and not Path(args.client_ca).is_file():
        print(f"pullguard serve: --client-ca {args.client_ca} not found", file=sys.stderr)
        return 2
    host = args.host or ("127.0.0.1" if args.dev else "0.0.0.0")  # noqa: S104 - a server

    def app_factory() -> Any:
        # Runs inside the gunicorn worker, after the fork (and after gevent patched the
        # standard library): background threads start here, as greenlets.
        log_handler.start_flusher()
        metrics = Metrics()
        store = ConfigStore(metrics)
        if args.config is not None:
            FileConfigSource(args.config, store).start()
        elif args.dev:
            store.apply_text(default_config_text(), "embedded default")
        registry, mirrors = registry_parts(store, metrics)
        offload = off_the_loop()
        if args.dev:
            runtime = Runtime(
                config=store,
                cluster=offline_cluster(args.cluster_state),
                metrics=metrics,
                own_namespace=args.namespace or "",
                metrics_port=args.metrics_port,
                configmap_name=args.configmap,
                notes=[*NOTES, *([] if args.cluster_state else [NO_CLUSTER])],
                registry=registry,
                mirrors_down=mirrors.down,
                mirror_lacks=mirrors.lacks,
                not_ready=mirrors.not_ready,
                require_client_cert=bool(args.client_ca),
                credentials_need_client_ca=args.credentials_need_client_ca,
                offload=offload,
            )
            return create_app(runtime)
        if cert_controller is not None:
            leadership.add(
                "certificate renewal",
                lambda: _in_background(cert_controller.run, args.cert_check_interval, "cert-sync"),
            )
        runtime = _cluster_runtime(args, store, metrics, leadership)
        runtime.registry, runtime.mirrors_down = registry, mirrors.down
        runtime.mirror_lacks = mirrors.lacks
        caches_not_ready = runtime.not_ready
        runtime.not_ready = lambda: caches_not_ready() + mirrors.not_ready()
        runtime.require_client_cert = bool(args.client_ca)
        runtime.credentials_need_client_ca = args.credentials_need_client_ca
        runtime.offload = offload
        if args.audit_interval > 0:
            from kubernetes import client

            from webhook.edge.inclusteraudit import InClusterAudit

            def audit_waits() -> list[str]:
                return store.not_ready() + list(runtime.not_ready())

            audit = InClusterAudit(
                client.ApiClient(),
                lambda: store.current,
                runtime.cluster,
                registry,
                metrics,
                not_ready=audit_waits,
                own_namespace=args.namespace or "",
            )
            leadership.add(
                "in-cluster audit",
                lambda: _in_background(audit.run, args.audit_interval, "in-cluster-audit"),
            )
        leadership.start()
        return create_app(runtime)

    return server.run(
        server.ServeOptions(
            host=host,
            port=args.port,
            certfile=args.cert,
            keyfile=args.key,
            connections=args.connections,
            metrics_port=args.metrics_port,
            workers=args.workers or workers.usable_cores(),
            on_worker_exit=workers.worker_exited,
            client_ca=args.client_ca,
        ),
        app_factory,
    )


def _cluster_runtime(args: argparse.Namespace, store: Any, metrics: Any, leadership: Any) -> Any:
    from kubernetes import client

    from webhook.edge.app import Runtime
    from webhook.edge.kube import (
        ConfigMapSource,
        KubeClusterView,
        KubeSecretWriter,
        load_kube_config,
        own_namespace_default,
        sync_key,
    )
    from webhook.edge.secretsync import SecretSyncer

    load_kube_config()
    api = client.CoreV1Api()
    namespace = args.namespace or own_namespace_default()
    cluster = KubeClusterView(api)
    cluster.start()
    if args.config is None:
        if not namespace:
            raise SystemExit(
                "pullguard serve: cannot tell the webhook's namespace; pass "
                "--namespace or set POD_NAMESPACE"
            )
        ConfigMapSource(api, namespace, store, args.configmap).start()
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
                lambda: _in_background(syncer.run, args.sync_interval, "secret-sync"),
            )
            copy_secret = syncer.copy
    return Runtime(
        config=store,
        cluster=cluster,
        metrics=metrics,
        own_namespace=namespace,
        not_ready=cluster.not_synced,
        copy_secret=copy_secret,
        metrics_port=args.metrics_port,
        configmap_name=args.configmap,
        notes=list(NOTES) + ([] if copy_secret else [NO_COPIES]),
    )


def registry_parts(store: Any, metrics: Any) -> tuple[Any, Any]:
    """The registry client and the mirror prober, both following the live configuration.
    Configured mirrors are an admin's choice, so they may sit on private addresses."""
    from webhook.core.hosts import WELL_KNOWN_REGISTRIES
    from webhook.edge.mirrors import MirrorHealth
    from webhook.edge.registry import HttpRegistry

    def settings() -> Any:
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

    def observe(question: Any, answer: Any, seconds: float) -> None:
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


def off_the_loop() -> Any:
    """Runs work in one real thread of the worker (gevent's thread pool), so the event loop
    keeps serving; one thread, so forged work queues behind itself, not in front of reviews."""
    from gevent.threadpool import ThreadPool

    pool = ThreadPool(1)

    def offload(work: Any) -> Any:
        return pool.apply(work)

    return offload


def _in_background(loop: Any, interval: float, name: str) -> None:
    """Run ``loop(interval=...)`` (a controller's reconcile loop) in a daemon thread."""
    threading.Thread(target=loop, kwargs={"interval": interval}, name=name, daemon=True).start()


def offline_cluster(state: Path | None) -> Any:
    """The cluster view for runs without a cluster: a state file's contents, or nothing."""
    from webhook.core.cluster import NoCluster

    if state is None:
        return NoCluster()
    from webhook.edge.statefile import load_cluster_state

    return load_cluster_state(state)


def cmd_certs(args: argparse.Namespace) -> int:
    import ipaddress

    from webhook.edge.certs import make_bundle, service_dns_names

    for address in args.ip:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            print(f"pullguard certs: --ip {address!r} is not an IP address", file=sys.stderr)
            return 2
    names = service_dns_names(args.service, args.namespace) + list(args.host)
    paths = make_bundle(names, list(args.ip)).write(args.out)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
