"""Where the pod spec lives in each kind, and every container in it, with its JSON pointer.

One walk serves every check and every mutation: Pods and each kind that carries a pod
template, over ``initContainers``, ``containers`` and ``ephemeralContainers``. Each image is
carried with the JSON pointer of its container, so a finding can say exactly where it is and
a mutation can patch exactly that place.

Pure: reads plain dicts decoded from the request; never changes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Path from the object to its pod spec, per kind.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")


@dataclass(frozen=True, slots=True)
class Container:
    """One container of a pod spec, as the request has it."""

    list_name: str  # initContainers | containers | ephemeralContainers
    index: int
    name: str
    image: str
    pull_policy: str | None
    pointer: str  # JSON pointer of the container, e.g. /spec/template/spec/containers/0

    @property
    def image_pointer(self) -> str:
        return self.pointer + "/image"

    @property
    def label(self) -> str:
        """How messages name it: ``container "web"``, ``init container "setup"``."""
        kind = {
            "initContainers": "init container",
            "ephemeralContainers": "ephemeral container",
        }.get(self.list_name, "container")
        return f'{kind} "{self.name}"'


@dataclass(frozen=True, slots=True)
class PodSpecView:
    """The pod spec of an object, with where it lives."""

    kind: str
    spec: Mapping[str, Any]
    pointer: str  # JSON pointer of the pod spec, "" -> whole object
    is_template: bool

    @property
    def containers(self) -> list[Container]:
        return list_containers(self.spec, self.pointer)

    @property
    def service_account(self) -> str:
        """The ServiceAccount the pods will run as (``default`` when unset)."""
        name = self.spec.get("serviceAccountName") or self.spec.get("serviceAccount")
        return str(name) if name else "default"

    @property
    def pull_secret_names(self) -> list[str]:
        """Names in ``spec.imagePullSecrets``, in order, without duplicates or blanks."""
        names: list[str] = []
        for item in self.spec.get("imagePullSecrets") or []:
            name = item.get("name") if isinstance(item, Mapping) else None
            if isinstance(name, str) and name and name not in names:
                names.append(name)
        return names


def pod_spec(kind: str, obj: Mapping[str, Any] | None) -> PodSpecView | None:
    """The pod spec of ``obj`` if ``kind`` carries one and it is present, else ``None``."""
    path = POD_SPEC_PATHS.get(kind)
    if path is None or not isinstance(obj, Mapping):
        return None
    node: Any = obj
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    if not isinstance(node, Mapping):
        return None
    pointer = "/" + "/".join(path)
    return PodSpecView(kind=kind, spec=node, pointer=pointer, is_template=kind != "Pod")


def list_containers(spec: Mapping[str, Any], base_pointer: str) -> list[Container]:
    """Every container of ``spec`` in list order; entries without a string image are skipped
    (the API server's schema validation refuses those before any validating webhook)."""
    out: list[Container] = []
    for list_name in CONTAINER_LISTS:
        items = spec.get(list_name)
        if not isinstance(items, list):
            continue
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                continue
            image = item.get("image")
            if not isinstance(image, str):
                continue
            policy = item.get("imagePullPolicy")
            out.append(
                Container(
                    list_name=list_name,
                    index=index,
                    name=str(item.get("name") or f"{list_name}[{index}]"),
                    image=image,
                    pull_policy=policy if isinstance(policy, str) else None,
                    pointer=f"{base_pointer}/{list_name}/{index}",
                )
            )
    return out


def changed_containers(
    new: PodSpecView, old: PodSpecView | None, *, with_pull_policy: bool = False
) -> list[Container]:
    """Containers of ``new`` that ``old`` lacks or had with another image (and, if asked,
    another pull policy). Without ``old`` (a CREATE), every container."""
    containers = new.containers
    if old is None:
        return containers

    def key(c: Container) -> tuple[str, str | None]:
        return (c.image, c.pull_policy if with_pull_policy else None)

    before = {(c.list_name, c.name): key(c) for c in old.containers}
    return [c for c in containers if before.get((c.list_name, c.name)) != key(c)]
