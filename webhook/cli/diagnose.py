"""``pullguard diagnose``: explain pods already failing to pull their images.

Reads each pod's container statuses and events, classifies the failure from the kubelet's
and the runtime's texts, re-runs the checks live (with the pod's own credentials, and the
platform check against the node the pod was scheduled on), and prints per image the cause,
the evidence and the commands that fix it. Exit 0 when a cause was found, 1 when no pod is
failing on an image, 2 on usage errors (no such pod, no cluster).

Arguments, printing and exit codes only: what is read and judged is
:func:`webhook.compose.livediagnose.diagnose_pods`, whose typed errors become the messages;
classification and wording are in ``webhook.core.pullfailure`` and ``webhook.core.diagnosis``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from typing import TYPE_CHECKING

from webhook.cli.options import SubParsers, add_live_arguments
from webhook.core.pullfailure import CAUSE_WORDS, Cause

if TYPE_CHECKING:  # the live reads and the diagnosis load in cmd_diagnose
    from webhook.core.diagnosis import ContainerDiagnosis


def register(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "diagnose", help="explain pods failing to pull their images, with the fix"
    )
    parser.add_argument("pod", nargs="?", metavar="POD", help="the pod (omit with --all)")
    parser.add_argument("-n", "--namespace", default="default", help="the pod's namespace")
    parser.add_argument("--all", action="store_true", help="every pod failing on an image")
    parser.add_argument(
        "-A", "--all-namespaces", action="store_true", help="with --all: in every namespace"
    )
    add_live_arguments(parser)
    parser.set_defaults(func=cmd_diagnose)


def cmd_diagnose(args: argparse.Namespace) -> int:
    from webhook.compose.livecheck import ClusterUnreadable, NamespaceMissing
    from webhook.compose.livediagnose import PodNotFound, PodsUnreadable, diagnose_pods
    from webhook.core.diagnosis import render_text

    if bool(args.pod) == bool(args.all):
        print("pullguard diagnose: give a POD, or --all", file=sys.stderr)
        return 2
    try:
        results = diagnose_pods(
            args.config,
            args.pullguard_namespace,
            pod=args.pod,
            namespace=args.namespace,
            all_namespaces=args.all_namespaces,
        )
    except ClusterUnreadable as error:
        print(f"pullguard diagnose: no cluster: {error}", file=sys.stderr)
        return 2
    except PodNotFound:
        print(f"pullguard diagnose: pod {args.namespace}/{args.pod} not found", file=sys.stderr)
        return 2
    except PodsUnreadable as error:
        print(f"pullguard diagnose: the API server answered {error.status}", file=sys.stderr)
        return 2
    except NamespaceMissing as missing:
        print(f"pullguard diagnose: {missing}", file=sys.stderr)
        return 2
    if args.output == "json":
        document = {
            "pods": [
                {"namespace": ns, "name": name, "images": [d.as_json() for d in found]}
                for ns, name, found in results
            ]
        }
        print(json.dumps(document, indent=2))
    elif not results:
        if args.pod:
            print(f"pullguard: pod {args.namespace}/{args.pod} is not failing on an image")
        else:
            where = "" if args.all_namespaces else f" in namespace {args.namespace}"
            print(f"pullguard: no pod{where} is failing on an image")
    elif args.all:
        print(_grouped(results))
    else:
        ns, name, found = results[0]
        print(render_text(name, ns, found))
    return 0 if results else 1


def _grouped(results: list[tuple[str, str, list[ContainerDiagnosis]]]) -> str:
    from webhook.core.diagnosis import cluster_text, render_text

    by_cause: dict[Cause, list[str]] = defaultdict(list)
    for ns, name, found in results:
        for d in found:
            by_cause[d.cause].append(cluster_text(f"{ns}/{name} {d.container} ({d.image})"))
    plural = "s" if len(results) != 1 else ""
    lines = [f"pullguard diagnosed {len(results)} pod{plural} failing on an image"]
    for cause, entries in sorted(by_cause.items(), key=lambda item: -len(item[1])):
        lines.append(f"\n{cause.value} ({len(entries)}): {CAUSE_WORDS[cause]}")
        lines.extend(f"  {entry}" for entry in entries)
    lines.append("")
    for ns, name, found in results:
        lines.append(render_text(name, ns, found))
    return "\n".join(lines)
