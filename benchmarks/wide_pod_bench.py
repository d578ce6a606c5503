"""Decision time for pods with thousands of image entries (issue 20, bounded work per review).

A tenant may send a Pod with 20,000 image volumes (the API server takes it: the object stays
under 1.5 MiB), 20,000 containers or init containers, identical or distinct references, long
ones near the grammar's limits. Each is decided by the pure engine (validate, a registry
that finds everything, an in-memory cluster) and the CPU time of the decision is printed:
it must stay well inside ``registry.timeoutSeconds`` (2 s), or the registry is never asked
and the pod is admitted "not checked". Then /mutate of docker.io image volumes with a mirror
configured (``probe: false``): the CPU time of the decision, its patch and its warnings.

Prints figures; asserts nothing. Run: python benchmarks/wide_pod_bench.py [--entries N]
[--root CHECKOUT] (``--root`` another checkout's ``webhook``, to compare before and after).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

TYPO_HOST = "registry.k8s.ix"  # two edits from registry.k8s.io
LONG_PATH = "/".join(["a" * 63] * 4)  # 255 characters, the longest path the runtime takes


def variants(n: int) -> dict[str, dict[str, Any]]:
    app = {"name": "app", "image": "nginx:1.25"}

    def vols(ref: Callable[[int], str]) -> list[dict[str, Any]]:
        return [{"name": f"v{i}", "image": {"reference": ref(i)}} for i in range(n)]

    alnum = "abcdefghijklmnopqrstuvwxyz0123456789"
    return {
        "volumes, one reference": {"containers": [app], "volumes": vols(lambda i: "ghcr.io/a/m:1")},
        "volumes, one typo-like host": {
            "containers": [app],
            "volumes": vols(lambda i: f"{TYPO_HOST}/pause:3.9"),
        },
        "volumes, distinct references": {
            "containers": [app],
            "volumes": vols(lambda i: f"{TYPO_HOST}/m{i}:1.0"),
        },
        "volumes, distinct hosts": {
            "containers": [app],
            "volumes": vols(lambda i: f"registry.k8s.{alnum[i % 36]}{alnum[i // 36 % 36]}/m:1"),
        },
        "volumes, long references": {
            "containers": [app],
            "volumes": vols(lambda i: f"{TYPO_HOST}/{LONG_PATH}:{'t' * 123}{i:05d}"),
        },
        "volumes, malformed references": {
            "containers": [app],
            "volumes": vols(lambda i: f"ghcr.io/Acme/M{i}:1.0"),
        },
        "containers, one reference": {
            "containers": [{"name": f"c{i}", "image": f"{TYPO_HOST}/app:1"} for i in range(n)]
        },
        "init containers, distinct": {
            "containers": [app],
            "initContainers": [
                {"name": f"i{i}", "image": f"{TYPO_HOST}/init{i}:1"} for i in range(n)
            ],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = parser.parse_args()
    sys.path.insert(0, str(args.root.resolve()))

    from webhook.core.cluster import InMemoryCluster
    from webhook.core.config import load_config_text
    from webhook.core.mutate import mutate
    from webhook.core.registry import Answer, Outcome, Question
    from webhook.core.review import AdmissionRequest, UserInfo
    from webhook.core.validate import validate

    class FindsEverything:
        def ask(
            self, questions: Sequence[Question], budget: float, tenant: str = ""
        ) -> Mapping[Question, Answer]:
            return {q: Answer(Outcome.FOUND, "HTTP 200") for q in questions}

    config = load_config_text("checks: {registry: enforce, reference: enforce}\n")
    print(f"webhook from {args.root}; {args.entries} entries per pod; CPU seconds per decision")
    for name, spec in variants(args.entries).items():
        obj = {"kind": "Pod", "metadata": {"name": "p", "namespace": "t"}, "spec": spec}
        request = AdmissionRequest(
            user=UserInfo(username="alice", groups=("system:authenticated",)),
            uid="u",
            kind="Pod",
            operation="CREATE",
            namespace="t",
            name="p",
            object=copy.deepcopy(obj),
            old_object=None,
            sub_resource="",
            dry_run=False,
        )
        started = time.process_time()
        decision = validate(request, config, InMemoryCluster(), registry=FindsEverything())
        spent = time.process_time() - started
        verdict = "admitted" if decision.allowed else "denied"
        print(f"  {name:32s} {spent:7.3f} s  {verdict}, {len(decision.message or '')} B message")

    mirrored = load_config_text(
        "mirrors:\n  - registry: docker.io\n    mirror: mirror.example.com/hub\n    probe: false\n"
    )
    print("/mutate, mirror for docker.io; CPU seconds per decision")
    for count in (255, args.entries):
        spec = {
            "containers": [{"name": "app", "image": "nginx:1.25"}],
            "volumes": [
                {"name": f"v{i}", "image": {"reference": "docker.io/team/models:1.0"}}
                for i in range(count)
            ],
        }
        request = AdmissionRequest(
            user=UserInfo(username="alice", groups=("system:authenticated",)),
            uid="u",
            kind="Pod",
            operation="CREATE",
            namespace="t",
            name="p",
            object={"kind": "Pod", "metadata": {"name": "p", "namespace": "t"}, "spec": spec},
            old_object=None,
            sub_resource="",
            dry_run=False,
        )
        started = time.process_time()
        result = mutate(request, mirrored, InMemoryCluster())
        spent = time.process_time() - started
        runes = sum(len(w) for w in result.warnings)
        print(
            f"  {count + 1:6d} entries {spent:7.3f} s  {len(result.patch or [])} patch operations, "
            f"{len(result.warnings)} warnings ({runes} runes before the response's bound)"
        )


if __name__ == "__main__":
    main()
