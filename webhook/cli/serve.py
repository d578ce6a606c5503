"""``pullguard serve``: its arguments, and the usage errors in them (exit status 2: both or
neither of ``--cert``/``--key``, the form of ``--webhook-url``, a ``--client-ca`` that is no
file). The serving runtime it starts is :mod:`webhook.compose.serving`.

Must not: import the server at module level (every ``pullguard`` run loads this module).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from webhook.cli.options import SubParsers
from webhook.core.nodecreds import DEFAULT_SERVE_BIN_DIR, DEFAULT_SERVE_BIN_DIRS

if TYPE_CHECKING:
    from webhook.compose.serving import ServeArguments


def register(sub: SubParsers) -> None:
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
    serve.add_argument(
        "--credential-provider-bin-dir",
        action="append",
        dest="credential_provider_bin_dirs",
        metavar="DIR",
        help="a folder pullguard may run kubelet credential providers from (repeatable; "
        f"default {DEFAULT_SERVE_BIN_DIR}, where deploy/components/credential-providers mounts "
        "them): registry.imageCredentialProviderBinDir must be one of them or under one, "
        "else the provider configuration is refused",
    )
    serve.add_argument(
        "--mutation-mode",
        choices=["auto", "policy", "webhook"],
        default="auto",
        help="who rewrites images to mirrors: auto (default: a MutatingAdmissionPolicy "
        "pullguard writes, where the API server serves admissionregistration.k8s.io/v1 "
        "mutatingadmissionpolicies, else /mutate), policy (the same, said to be forced), "
        "webhook (/mutate only: pullguard removes its policy)",
    )
    serve.set_defaults(func=cmd_serve)


def usage_error(args: argparse.Namespace) -> str:
    """What is wrong with the arguments themselves, or ''."""
    self_managed = not args.dev and not (args.cert and args.key)
    if self_managed and (args.cert or args.key):
        return "give both --cert and --key, or neither"
    if self_managed and args.webhook_url:
        url = urlsplit(args.webhook_url)
        if url.scheme != "https" or not url.hostname:
            return "--webhook-url must be https://HOST[:PORT]"
    for folder in args.credential_provider_bin_dirs or ():
        if not Path(folder).is_absolute():
            return f"--credential-provider-bin-dir {folder} must be an absolute path"
    if args.client_ca and not Path(args.client_ca).is_file():
        return f"--client-ca {args.client_ca} not found"
    return ""


def serve_options(args: argparse.Namespace) -> ServeArguments:
    """The typed, frozen value :mod:`webhook.compose.serving` takes, from parsed arguments."""
    from webhook.compose.serving import ServeArguments

    return ServeArguments(
        config=args.config,
        namespace=args.namespace,
        configmap=str(args.configmap),
        audit_interval=float(args.audit_interval),
        client_ca=args.client_ca,
        credentials_need_client_ca=bool(args.credentials_need_client_ca),
        cert=args.cert,
        key=args.key,
        port=int(args.port),
        host=args.host,
        metrics_port=args.metrics_port,
        connections=int(args.connections),
        workers=int(args.workers),
        dev=bool(args.dev),
        service=str(args.service),
        webhook_url=args.webhook_url,
        cert_check_interval=float(args.cert_check_interval),
        sync_interval=float(args.sync_interval),
        cert_dir=args.cert_dir,
        cluster_state=args.cluster_state,
        credential_provider_bin_dirs=_bin_dirs(args),
        mutation_mode=str(args.mutation_mode),
    )


def cmd_serve(args: argparse.Namespace) -> int:
    problem = usage_error(args)
    if problem:
        print(f"pullguard serve: {problem}", file=sys.stderr)
        return 2
    from webhook.compose import serving

    try:
        return serving.run(serve_options(args))
    except serving.ServeRefused as refused:
        print(f"pullguard serve: {refused}", file=sys.stderr)
        return 2


def _bin_dirs(args: argparse.Namespace) -> tuple[str, ...] | None:
    """The folders serve may run credential providers from: the flag's, else, with
    ``--config FILE`` (a file of the operator's, trusted like a flag), whatever it names
    (None), else (the ConfigMap, which namespace editors may write) the two fixed folders."""
    if args.credential_provider_bin_dirs:
        return tuple(args.credential_provider_bin_dirs)
    if args.config is not None:
        return None
    return DEFAULT_SERVE_BIN_DIRS
