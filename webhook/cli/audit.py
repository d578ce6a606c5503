"""``pullguard audit``: what in a live cluster would be denied or warned today.

Read-only. Lists every pod template carrier (Deployment, StatefulSet, DaemonSet, ReplicaSet,
Job, CronJob) and every Pod, leaves out objects a controller made (their owner is judged
instead), and judges each with the webhook's checks as if it were created now: the
cluster's own configuration as it is (exempt namespaces, mode labels and ``off`` checks
included; pullguard's own namespace, ``--pullguard-namespace``, is exempt as at admission),
the registry asked with each object's own credentials, each distinct image once.

It never says "nothing" where it could not look: every image the registry check could not
settle (not asked, unreachable, rate limited, failing) is counted and listed with why.

Objects in an exempt namespace (``exemptNamespaces``, pullguard's own) or in one whose mode
is ``off`` (every check off: its ``pullguard.io/mode`` label, or the configuration) are
counted and said to be not judged, never "nothing would be denied or warned". They do not
change the exit status: admission admits them unjudged, so nothing there would be denied.
A check that could not run on an object (Secrets or ServiceAccounts this user may not read,
the nodes' platforms unknown) is counted with why, and the objects listed.

Exit status: 1 when anything would be denied; else 3 when some images could not be checked
or some check could not run; else 0. 2 when the cluster could not be read, or the namespace
asked for does not exist.

A progress line goes to a terminal's stderr for long scans; nothing when piped.

Arguments, printing and the exit status only: the scan is
:func:`webhook.compose.scan.audit_cluster`, judging :func:`webhook.compose.livecheck.judge`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from webhook.cli.options import SubParsers, add_live_arguments

if TYPE_CHECKING:  # the scan and the engine load in cmd_audit: pullguard ref stays light
    from webhook.compose.scan import Scan
    from webhook.core.validate import Decision

    #: (kind, metadata, decision) of each object with findings
    Judged = tuple[str, dict[str, Any], Decision]


def register(sub: SubParsers) -> None:
    parser = sub.add_parser(
        "audit", help="read-only scan: what in the cluster would be denied or warned today"
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", default="default", help="this namespace")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    add_live_arguments(parser)
    parser.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    from webhook.compose.livecheck import ClusterUnreadable, NamespaceMissing
    from webhook.compose.scan import action_of, audit_cluster, tally

    progress = sys.stderr.isatty()

    def say_progress(index: int, total: int) -> None:
        print(f"\rpullguard audit: {index}/{total} objects", end="", file=sys.stderr)

    try:
        source, audit = audit_cluster(
            args.config,
            args.pullguard_namespace,
            None if args.all_namespaces else args.namespace,
            progress=say_progress if progress else None,
        )
    except ClusterUnreadable as error:
        print(f"pullguard audit: cannot read the cluster: {error}", file=sys.stderr)
        return 2
    except NamespaceMissing as missing:
        # Not "0 objects scanned ... nothing would be denied": there was nothing to look at.
        print(f"pullguard audit: {missing}", file=sys.stderr)
        return 2
    if progress:
        print(file=sys.stderr)
    results = [(kind, document["metadata"], d) for kind, document, d in audit.judged]
    not_checked = audit.not_checked
    exempt = [(namespace, count, why) for namespace, (why, count) in audit.exempt.items()]
    mode_off = [(namespace, count, why) for namespace, (why, count) in audit.mode_off.items()]
    checks_not_run = audit.checks_not_run
    denied = any(not d.allowed for _, _, d in results)
    summary: dict[str, dict[str, dict[str, int]]] = defaultdict(
        lambda: defaultdict(lambda: {"deny": 0, "warn": 0})
    )
    counts = tally((meta.get("namespace", ""), decision) for _, meta, decision in results)
    for (namespace, check, action), count in counts.items():
        summary[namespace][check][action] = count
    if args.output == "json":
        print(
            json.dumps(
                {
                    "configuration": source,
                    "scanned": audit.scanned,
                    "objects": [
                        {
                            "kind": kind,
                            "namespace": meta.get("namespace", ""),
                            "name": meta.get("name", ""),
                            "decision": "denied" if not d.allowed else "warned",
                            "findings": [
                                {
                                    "check": f.check,
                                    "action": action_of(f),
                                    "subject": f.subject,
                                    "image": f.image,
                                    "problem": f.problem,
                                    "fix": f.fix,
                                }
                                for f in d.findings
                            ],
                        }
                        for kind, meta, d in results
                    ],
                    "summary": summary,
                    "exempt": [
                        {"namespace": namespace, "objects": count, "why": why}
                        for namespace, count, why in exempt
                    ],
                    "modeOff": [
                        {"namespace": namespace, "objects": count, "why": why}
                        for namespace, count, why in mode_off
                    ],
                    "notChecked": [
                        {"image": image, "why": why}
                        for why, images in not_checked.items()
                        for image in images
                    ],
                    "checksNotRun": [
                        {"check": check, "why": why, "object": label}
                        for (check, why), labels in checks_not_run.items()
                        for label in labels
                    ],
                },
                indent=2,
            )
        )
    else:
        print(
            _text(
                results,
                summary,
                audit.scanned,
                source,
                not_checked,
                exempt=exempt,
                mode_off=mode_off,
                checks_not_run=checks_not_run,
            )
        )
    return exit_status(denied, audit)


def exit_status(denied: bool, audit: Scan) -> int:
    """1 when anything would be denied; else 3 when an image or a check could not be
    checked; else 0."""
    if denied:
        return 1
    return 3 if audit.not_checked or audit.checks_not_run else 0


def _text(
    results: list[Judged],
    summary: dict[str, dict[str, dict[str, int]]],
    scanned: int,
    source: str,
    not_checked: dict[str, dict[str, None]],
    *,
    exempt: list[tuple[str, int, str]],
    mode_off: Sequence[tuple[str, int, str]] = (),
    checks_not_run: dict[tuple[str, str], list[str]] | None = None,
) -> str:
    """The report for people. Every line is shown through :func:`_shown`."""
    from webhook.compose.scan import action_of

    lines = [
        f"pullguard audit: {scanned} object{'' if scanned == 1 else 's'} scanned with {source}"
    ]
    lines.extend(_exempt_text(exempt))
    lines.extend(_mode_off_text(mode_off))
    for kind, meta, decision in results:
        verdict = "DENY" if not decision.allowed else "WARN"
        lines.append(f"{verdict} {kind} {meta.get('namespace', '')}/{meta.get('name', '')}")
        for f in decision.findings:
            action = action_of(f)
            text = f.short if action == "warn" and f.short else f.problem
            lines.append(f"  [{action} {f.check}] {f.subject}: {text}")
            if f.fix and action == "deny":
                lines.append(f"    Fix: {f.fix}")
    unchecked = _not_checked_text(not_checked) + _checks_not_run_text(checks_not_run or {})
    if not results:
        unjudged = [*exempt, *mode_off]
        if unjudged and scanned == sum(count for _, count, _ in unjudged):
            return _shown([*lines, *unchecked])  # nothing was judged: no "nothing"
        if checks_not_run:
            # A check that could not run looked at nothing: not "nothing would be denied".
            lines.append("no finding from the checks that could run; what could not is below")
            return _shown([*lines, *unchecked])
        among = [
            words
            for words, present in (
                ("the objects judged", unjudged),
                ("the images checked", unchecked),
            )
            if present
        ]
        lines.append(
            "nothing would be denied or warned" + (f" among {' and '.join(among)}" if among else "")
        )
        return _shown([*lines, *unchecked])
    lines.append("")
    lines.append(f"{'NAMESPACE':<24} {'CHECK':<12} {'DENY':>5} {'WARN':>5}")
    for namespace in sorted(summary):
        for check in sorted(summary[namespace]):
            counts = summary[namespace][check]
            lines.append(f"{namespace:<24} {check:<12} {counts['deny']:>5} {counts['warn']:>5}")
    return _shown([*lines, *unchecked])


def _shown(lines: Sequence[str]) -> str:
    """``lines`` as printed: every control character in each (C0, DEL, C1, a newline too) a
    space, since they quote what tenants write into their objects (a pod's
    ``imagePullSecrets`` names, images, owners' names: rev20e F3), and a terminal runs
    escape sequences; the JSON output is escaped by ``json.dumps``."""
    from webhook.core.diagnosis import cluster_text

    return "\n".join(cluster_text(line) for line in lines)


def _exempt_text(exempt: list[tuple[str, int, str]]) -> list[str]:
    """``3 objects in namespace kube-system (in exemptNamespaces): exempt, not judged``."""
    return [
        f"{n} object{'' if n == 1 else 's'} in namespace {namespace} ({why}): exempt, not judged"
        for namespace, n, why in exempt
    ]


def _mode_off_text(mode_off: Sequence[tuple[str, int, str]]) -> list[str]:
    """``2 objects in namespace team-x (labelled pullguard.io/mode=off): mode off, not
    judged``."""
    return [
        f"{n} object{'' if n == 1 else 's'} in namespace {namespace} ({why}): mode off, not judged"
        for namespace, n, why in mode_off
    ]


#: At most this many objects are named under each check that could not run (the JSON
#: output names them all).
MAX_OBJECTS_SHOWN = 10


def _checks_not_run_text(checks_not_run: dict[tuple[str, str], list[str]]) -> list[str]:
    """``1 object not checked by pullSecrets: serviceaccounts is forbidden``, then each
    object (at most :data:`MAX_OBJECTS_SHOWN`)."""
    lines: list[str] = []
    for (check, why), objects in checks_not_run.items():
        count = len(objects)
        lines.append(f"{count} object{'s' if count != 1 else ''} not checked by {check}: {why}")
        lines.extend(f"  {label}" for label in objects[:MAX_OBJECTS_SHOWN])
        if count > MAX_OBJECTS_SHOWN:
            more = f"and {count - MAX_OBJECTS_SHOWN} more (--output json lists them all)"
            lines.append("  " + more)
    return ["", *lines] if lines else []


def _not_checked_text(not_checked: dict[str, dict[str, None]]) -> list[str]:
    """``2 images not checked: unreachable: connection refused``, then each image."""
    lines: list[str] = []
    for why, images in not_checked.items():
        count = len(images)
        lines.append(f"{count} image{'s' if count != 1 else ''} not checked: {why}")
        lines.extend(f"  {image}" for image in images)
    return ["", *lines] if lines else []
