"""What ``pullguard check`` and ``serve --dev`` judge without a cluster: manifests read from
files, the cluster a state file describes (or none), the registry asked anonymously, and the
decision the cluster would reach for each object.

Each object goes through what the API server does with it: the mutating webhook's changes
first (mirrors, default pull secrets), then the validating decision, on the same engine and
configuration. A file that cannot be read or parsed is reported and the others go on.

Files are read by :mod:`webhook.edge.manifestfiles`, a state file by
:mod:`webhook.edge.statefile`, the ``--config`` file by :mod:`webhook.edge.configsource`,
the registry asked by :mod:`webhook.edge.registry`.
Must not: contact a cluster; send any credential of the pods' (a state file's are redacted,
and :class:`Anonymous` strips the rest). The credential providers the configuration names
run with the caller's own identity, and their credentials are sent, as admission sends
pullguard's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

from webhook.core.cluster import ClusterView
from webhook.core.config import DEFAULT_CONFIG, Config
from webhook.core.mutate import mutate
from webhook.core.nodecreds import NodeCredentialView, provider_of
from webhook.core.registry import Answer, Outcome, Question, RegistryView
from webhook.core.review import AdmissionRequest
from webhook.core.validate import Decision, validate


@dataclass(frozen=True)
class Document:
    source: str
    index: int  # 1-based, within its file
    count: int  # documents in its file
    obj: dict[str, Any]

    @property
    def where(self) -> str:
        return self.source if self.count == 1 else f"{self.source} (document {self.index})"


class Anonymous:
    """The registry asked without the pod's credentials (check has none: a state file's are
    redacted). A refusal is not a fact about the pod, whose real secrets may serve the
    image: it is reported as not judged. The credential providers' credentials stay: they
    are the run's own identity (the CI pipeline's cloud role), as at admission pullguard's;
    a refusal of those is the providers' warning, as at admission."""

    def __init__(self, inner: RegistryView) -> None:
        self.inner = inner

    def ask(
        self, questions: Sequence[Question], budget: float, tenant: str = ""
    ) -> Mapping[Question, Answer]:
        bare = {
            q: replace(
                q,
                credentials=tuple(c for c in q.credentials if provider_of(c.source) is not None),
            )
            for q in questions
        }
        got = self.inner.ask(list(dict.fromkeys(bare.values())), budget, tenant)
        out = {}
        for question, asked in bare.items():
            answer = got[asked]
            if answer.outcome is Outcome.UNAUTHORIZED and not asked.credentials:
                answer = Answer(
                    Outcome.NOT_ASKED,
                    f"{question.registry} wants credentials, and check has none",
                )
            out[question] = answer
        return out


def documents(paths: list[str], errors: list[str]) -> Iterator[Document]:
    """Every object of every file (``List`` kinds unpacked); problems go to ``errors``."""
    from webhook.edge.manifestfiles import read_texts

    for name, text in read_texts(paths):
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
    *,
    node: NodeCredentialView | None = None,
) -> Decision:
    """The decision the cluster would reach for a CREATE of ``obj``: mutated, then validated.
    A dry-run, as nothing is created: default secrets are judged by their source. ``node``:
    the credential providers the configuration names, as at admission."""
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
    from webhook.compose.livecheck import per_object

    node = per_object(node, config)
    return validate(request, config, cluster, registry=registry, user_verified=True, node=node)


def anonymous_registry(config: Config) -> Anonymous:
    """``check --registry``'s registry: the webhook's client, each answer remembered for the
    run, asked without credentials."""
    from webhook.compose.livecheck import live_registry

    return Anonymous(live_registry(config))


def offline_config(path: Path | None) -> Config:
    """The configuration of a run without a cluster: ``path``'s document, or the default.
    Raises :class:`~webhook.core.config.ConfigError` for an invalid one and ``OSError`` for
    a file that cannot be read."""
    if path is None:
        return DEFAULT_CONFIG
    from webhook.edge.configsource import load_config_file

    return load_config_file(path)


def offline_cluster(state: Path | None) -> ClusterView:
    """The cluster view for runs without a cluster: a state file's contents, or nothing."""
    from webhook.core.cluster import NoCluster

    if state is None:
        return NoCluster()
    from webhook.edge.statefile import load_cluster_state

    return load_cluster_state(state)
