"""``pullguard check``: manifests judged offline, exactly as the cluster would judge them.

Each object goes through what the API server does with it: the mutating webhook's changes
first (mirrors, default pull secrets), then the validating decision, on the same engine and
configuration. So a pod whose registry a ``defaultPullSecrets`` entry covers passes here as it
does in the cluster. Every result names its file and, in a multi-document file, the document;
a file that cannot be read or parsed is reported and the run goes on with the others.

The registry is not asked unless ``--registry`` is given: an "ok" then says so, since a tag
never pushed or a private image is judged only at admission. Without ``--cluster-state`` the
secrets are not read: the "could not run" warning says how to judge them (``pullguard
export-state``, then ``--cluster-state``). With ``--registry`` the
registries are asked anonymously (``--cluster-state`` credentials are redacted): a refusal
is reported as not judged, never as a denial, since the pod's real secrets may serve it.
When the configuration names kubelet credential providers
(``registry.imageCredentialProviderConfig``), ``--registry`` runs them as admission does,
with the caller's own cloud identity, and asks with their credentials.

Exit status: 1 when anything would be denied, else 2 when a file could not be read, else 0.
Must not: contact a cluster (state comes from ``--cluster-state``); send any credential but
the credential providers' (a state file's are redacted). Reading and judging are
:mod:`webhook.compose.offline`; this module parses the arguments and prints the results.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webhook.cli.options import SubParsers
from webhook.core.cluster import NoCluster

if TYPE_CHECKING:  # the offline judge, the configuration and yaml load in cmd_check
    from webhook.core.nodecreds import NodeCredentialView
    from webhook.core.registry import RegistryView

#: What an offline "ok" adds when the registry was not asked (issue 22: a bare "ok" for a
#: tag admission would deny sends the person the wrong way).
NOT_ASKED_NOTE = (
    "registry not asked (offline): tags, digests and access are judged at admission; "
    "to ask now: pullguard check --registry"
)


#: Why the pullSecrets check could not run when no ``--cluster-state`` is given, in check's
#: words (issue 22 item 5): not the server's "no cluster connection (pullguard runs with
#: --dev or offline)", but how to judge the secrets the manifests name.
NO_STATE_NOTE = (
    "no cluster state given (check runs offline and reads no Secrets or ServiceAccounts); "
    "to judge them: pullguard export-state > state.yaml (with access to the cluster), then "
    "pullguard check --cluster-state state.yaml"
)


class _NoStateGiven(NoCluster):
    """No cluster, as ``check`` without ``--cluster-state`` says it."""

    reason = NO_STATE_NOTE


def _print(text: str) -> None:
    """``text`` printed with every control character but its line breaks a space: the
    manifests (a tenant's, in CI) and the cluster state hold names nobody validated, and a
    terminal runs their escape sequences (rev20e F3); the JSON output is escaped by
    ``json.dumps``."""
    from webhook.core.diagnosis import cluster_text

    print("\n".join(cluster_text(line) for line in text.split("\n")))


def _not_asked_note(whys: Sequence[str]) -> str:
    """What an "ok" under ``--registry`` adds when the registry could not be asked about an
    image (it wants credentials check does not have, an address refused): not a pass."""
    why = "; ".join(w.removeprefix("not asked: ") for w in whys)
    return (
        f"registry not asked: {why}; those images are not judged here "
        "(admission asks with the pod's own credentials)"
    )


def register(sub: SubParsers) -> None:
    check = sub.add_parser("check", help="evaluate manifests offline with the same engine")
    check.add_argument(
        "-f",
        "--filename",
        dest="paths",
        action="append",
        required=True,
        metavar="PATH",
        help="file, folder or - for stdin (repeatable)",
    )
    check.add_argument("--config", type=Path, metavar="FILE")
    check.add_argument(
        "--namespace", default="default", help="namespace for objects that name none"
    )
    check.add_argument("--output", choices=("text", "json"), default="text")
    check.add_argument(
        "--cluster-state",
        type=Path,
        metavar="FILE",
        help="Secrets, ServiceAccounts and Namespaces to judge against "
        "(e.g. kubectl get secret,sa,ns -A -o yaml)",
    )
    check.add_argument(
        "--registry",
        action="store_true",
        help="also ask each image's registry (anonymously) whether the image exists",
    )
    check.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from webhook.compose.livecheck import live_providers
    from webhook.compose.offline import (
        anonymous_registry,
        documents,
        judge,
        offline_cluster,
        offline_config,
    )
    from webhook.core.config import ConfigError

    try:
        config = offline_config(args.config)
    except ConfigError as error:
        print(f"pullguard check: {args.config}: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"pullguard check: {error}", file=sys.stderr)
        return 2
    cluster = offline_cluster(args.cluster_state) if args.cluster_state else _NoStateGiven()
    registry: RegistryView | None = None
    node: NodeCredentialView | None = None
    if args.registry:
        registry = anonymous_registry(config)
        node = live_providers(config)
    errors: list[str] = []
    results: list[dict[str, Any]] = []
    for document in documents(args.paths, errors):
        metadata = document.obj.get("metadata") or {}
        decision = judge(document.obj, args.namespace, config, cluster, registry, node=node)
        if decision.reason == "unsupported":
            continue
        results.append(
            {
                "source": document.source,
                "document": document.index,
                "where": document.where,
                "kind": str(document.obj.get("kind") or ""),
                "namespace": str(metadata.get("namespace") or args.namespace),
                "name": str(metadata.get("name") or ""),
                "allowed": decision.allowed,
                "message": decision.message,
                "warnings": list(decision.warnings),
                "notAsked": list(dict.fromkeys(why for _, why in decision.not_checked))
                if registry is not None
                else [],
                "registry": "not asked (offline)"
                if registry is None and decision.outcomes.get("registry") == "unavailable"
                else decision.outcomes.get("registry", ""),
                "findings": [
                    {
                        "check": f.check,
                        "action": f.action.value,
                        "subject": f.subject,
                        "image": f.image,
                        "problem": f.problem,
                        "fix": f.fix,
                        "pointer": f.pointer,
                    }
                    for f in decision.findings
                ],
            }
        )
    for problem in errors:
        print(f"pullguard check: {problem}", file=sys.stderr)
    if args.output == "json":
        print(json.dumps(results, indent=2))
    else:
        for result in results:
            if result["message"]:
                _print(f"{result['where']}: {result['message']}")
            else:
                label = f"{result['kind']} {result['namespace']}/{result['name']}"
                note = f"; {NOT_ASKED_NOTE}" if result["registry"] == "not asked (offline)" else ""
                if result["notAsked"]:
                    note = f"; {_not_asked_note(result['notAsked'])}"
                _print(f"ok: {label} ({result['where']}){note}")
            for warning in result["warnings"]:
                _print(f"  warning: {warning}")
    if any(not r["allowed"] for r in results):
        return 1
    return 2 if errors else 0
