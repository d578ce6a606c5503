"""``pullguard export-state``: the cluster state ``pullguard check`` needs, without credentials.

Lists Namespaces (name, labels), ServiceAccounts (their imagePullSecrets) and the Secrets of
the two pull-secret types, and writes them as one YAML ``List`` that ``check --cluster-state``
reads. Each pull secret keeps its name, type and the registries its entries cover; every
credential is replaced (``keyring.redacted_pull_secret``), so the file can live in a CI system.
``kubectl get secret -o yaml`` instead would put every registry password there.

Reads with the caller's own credentials (KUBECONFIG); writes nothing to the cluster. The
listing is :mod:`webhook.compose.stateexport`; this module parses and prints.
Secrets of other types are not exported: a pod naming one is judged as naming a missing secret.
"""

from __future__ import annotations

import argparse
import sys

from webhook.cli.options import SubParsers


def register(sub: SubParsers) -> None:
    export = sub.add_parser(
        "export-state",
        help="write Namespaces, ServiceAccounts and pull secrets for check --cluster-state, "
        "with every credential redacted",
    )
    scope = export.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", help="only this namespace (default: all)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    export.set_defaults(func=cmd_export_state)


def cmd_export_state(args: argparse.Namespace) -> int:
    import yaml

    from webhook.compose.stateexport import export

    document = export(args.namespace)
    sys.stdout.write("# pullguard export-state: credentials redacted\n")
    yaml.safe_dump(document, sys.stdout, sort_keys=False)
    return 0
