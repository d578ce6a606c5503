"""``pullguard check``: manifests judged offline, exactly as the cluster would judge them.

Each object goes through what the API server does with it: the mutating webhook's changes
first (mirrors, default pull secrets), then the validating decision, on the same engine and
configuration. So a pod whose registry a ``defaultPullSecrets`` entry covers passes here as it
does in the cluster. Every result names its file and, in a multi-document file, the document;
a file that cannot be read or parsed is reported and the run goes on with the others.

The registry is not asked unless ``--registry`` is given: an "ok" then says so, since a tag
never pushed or a private image is judged only at admission. With ``--registry`` the
registries are asked anonymously (``--cluster-state`` credentials are redacted): a refusal
is reported as not judged, never as a denial, since the pod's real secrets may serve it.

Exit status: 1 when anything would be denied, else 2 when a file could not be read, else 0.
Must not: contact a cluster (state comes from ``--cluster-state``); send any credential
(it has none: a state file's are redacted).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

from webhook.core.cluster import ClusterView
from webhook.core.config import DEFAULT_CONFIG, Config, ConfigError, load_config_text
from webhook.core.mutate import mutate
from webhook.core.registry import Answer, Outcome, Question, RegistryView
from webhook.core.review import AdmissionRequest
from webhook.core.validate import Decision, validate

#: What an offline "ok" adds when the registry was not asked (issue 22: a bare "ok" for a
#: tag admission would deny sends the person the wrong way).
NOT_ASKED_NOTE = (
    "registry not asked (offline): tags, digests and access are judged at admission; "
    "to ask now: pullguard check --registry"
)


def _not_asked_note(whys: Sequence[str]) -> str:
    """What an "ok" under ``--registry`` adds when the registry could not be asked about an
    image (it wants credentials check does not have, an address refused): not a pass."""
    why = "; ".join(w.removeprefix("not asked: ") for w in whys)
    return (
        f"registry not asked: {why}; those images are not judged here "
        "(admission asks with the pod's own credentials)"
    )


@dataclass(frozen=True)
class Document:
    source: str
    index: int  # 1-based, within its file
    count: int  # documents in its file
    obj: dict[str, Any]

    @property
    def where(self) -> str:
        return self.source if self.count == 1 else f"{self.source} (document {self.index})"


def register(sub: Any) -> None:
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


class Anonymous:
    """The registry asked without credentials (check has none: a state file's are redacted).
    A refusal is not a fact about the pod, whose real secrets may serve the image: it is
    reported as not judged."""

    def __init__(self, inner: RegistryView) -> None:
        self.inner = inner

    def ask(
        self, questions: Sequence[Question], budget: float, tenant: str = ""
    ) -> Mapping[Question, Answer]:
        bare = {q: replace(q, credentials=()) for q in questions}
        got = self.inner.ask(list(dict.fromkeys(bare.values())), budget, tenant)
        out = {}
        for question, asked in bare.items():
            answer = got[asked]
            if answer.outcome is Outcome.UNAUTHORIZED:
                answer = Answer(
                    Outcome.NOT_ASKED,
                    f"{question.registry} wants credentials, and check has none",
                )
            out[question] = answer
        return out


def _files(paths: list[str]) -> Iterator[tuple[str, str | OSError]]:
    for raw in paths:
        if raw == "-":
            yield "<stdin>", sys.stdin.read()
            continue
        path = Path(raw)
        files = (
            sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
            if path.is_dir()
            else [path]
        )
        for file in files:
            try:
                yield str(file), file.read_text("utf-8")
            except (OSError, UnicodeDecodeError) as error:
                yield str(file), OSError(str(error))


def documents(paths: list[str], errors: list[str]) -> Iterator[Document]:
    """Every object of every file (``List`` kinds unpacked); problems go to ``errors``."""
    for name, text in _files(paths):
        if isinstance(text, OSError):
            errors.append(f"{name}: cannot read: {text}")
            continue
        try:
            parsed = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            at = f" at line {mark.line + 1}" if mark else ""
            errors.append(f"{name}: not valid YAML{at}: {getattr(error, 'problem', error)}")
            continue
        objects: list[dict[str, Any]] = []
        for document in parsed:
            if isinstance(document, dict) and str(document.get("kind", "")).endswith("List"):
                objects.extend(i for i in document.get("items") or [] if isinstance(i, dict))
            elif isinstance(document, dict):
                objects.append(document)
        for index, obj in enumerate(objects, 1):
            yield Document(name, index, len(objects), obj)


def judge(
    obj: dict[str, Any],
    namespace: str,
    config: Config,
    cluster: ClusterView,
    registry: RegistryView | None = None,
) -> Decision:
    """The decision the cluster would reach for a CREATE of ``obj``: mutated, then validated.
    A dry-run, as nothing is created: default secrets are judged by their source."""
    metadata = obj.get("metadata") or {}
    request = AdmissionRequest(
        uid="offline",
        kind=str(obj.get("kind") or ""),
        namespace=str(metadata.get("namespace") or namespace),
        name=str(metadata.get("name") or ""),
        operation="CREATE",
        sub_resource="",
        object=obj,
        old_object=None,
        dry_run=True,
    )
    mutation = mutate(request, config, cluster)
    if mutation.patch:
        request = replace(request, object=jsonpatch.apply_patch(obj, mutation.patch))
    return validate(request, config, cluster, registry=registry, user_verified=True)


def cmd_check(args: argparse.Namespace) -> int:
    from webhook.commands import offline_cluster

    try:
        config = load_config_text(args.config.read_text("utf-8")) if args.config else DEFAULT_CONFIG
    except ConfigError as error:
        print(f"pullguard check: {args.config}: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"pullguard check: {error}", file=sys.stderr)
        return 2
    cluster = offline_cluster(args.cluster_state)
    registry = None
    if args.registry:
        from webhook.livecheck import live_registry

        registry = Anonymous(live_registry(config))
    errors: list[str] = []
    results: list[dict[str, Any]] = []
    for document in documents(args.paths, errors):
        metadata = document.obj.get("metadata") or {}
        decision = judge(document.obj, args.namespace, config, cluster, registry)
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
                print(f"{result['where']}: {result['message']}")
            else:
                label = f"{result['kind']} {result['namespace']}/{result['name']}"
                note = f"; {NOT_ASKED_NOTE}" if result["registry"] == "not asked (offline)" else ""
                if result["notAsked"]:
                    note = f"; {_not_asked_note(result['notAsked'])}"
                print(f"ok: {label} ({result['where']}){note}")
            for warning in result["warnings"]:
                print(f"  warning: {warning}")
    if any(not r["allowed"] for r in results):
        return 1
    return 2 if errors else 0
