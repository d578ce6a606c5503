"""Where the pod spec lives in each kind, and every image in it, with its JSON pointer.

One walk serves every check and every mutation: Pods and each kind that carries a pod
template, over ``initContainers``, ``containers``, ``ephemeralContainers`` and image volumes
(``volumes[].image.reference`` with its own ``pullPolicy``; on by default since Kubernetes
1.35: a volume image that cannot be pulled keeps the pod in ContainerCreating with
ImagePullBackOff, exactly like a container's). Each image is carried with the JSON pointer
of its container or volume, so a finding can say exactly where it is and a mutation can
patch exactly that place.

Pure: reads plain dicts decoded from the request; never changes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
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
VOLUMES = "volumes"
CONTAINER_FIELDS = (("image",), ("imagePullPolicy",))
VOLUME_FIELDS = (("image", "reference"), ("image", "pullPolicy"))

#: Image entries (containers, init and ephemeral containers, image volumes) judged in full
#: per object by the validating webhook, and mutated at all by the mutating one. The API
#: server takes a pod with 20,000 image volumes (the object limit is 1.5 MiB); judging or
#: rewriting each one spent a review's budget, and answered with a warning and a patch
#: operation per entry. No real pod comes near: a few containers, a sidecar or two, a
#: handful of image volumes. What each side does past the cap: ``validate`` and ``mutate``.
MAX_IMAGE_ENTRIES = 256


@dataclass(frozen=True, slots=True)
class Container:
    """One image a pod pulls, as the request has it: a container's, or an image volume's."""

    list_name: str  # initContainers | containers | ephemeralContainers | volumes
    index: int
    name: str
    image: str
    pull_policy: str | None
    pointer: str  # JSON pointer of the container or volume, e.g. /spec/containers/0
    image_path: tuple[str, ...] = CONTAINER_FIELDS[0]
    """Where the image is inside the container or volume."""
    policy_path: tuple[str, ...] = CONTAINER_FIELDS[1]
    """Where its pull policy is."""
    written: str | None = None
    """The image as the user wrote it, when pullguard's mirror rewrite replaced it."""

    @property
    def shown_image(self) -> str:
        """The image as messages name it: as the user wrote it."""
        return self.written or self.image

    @property
    def image_pointer(self) -> str:
        return self.pointer + "/" + "/".join(self.image_path)

    @property
    def policy_pointer(self) -> str:
        return self.pointer + "/" + "/".join(self.policy_path)

    @property
    def policy_field(self) -> str:
        """The pull policy's field name, as a manifest spells it."""
        return self.policy_path[-1]

    @property
    def is_volume(self) -> bool:
        return self.list_name == VOLUMES

    @property
    def annotation_key(self) -> str:
        """Its key in ``pullguard.io/original-images``: the container's name, or
        ``volume/NAME`` (container names are DNS labels, so the two never collide)."""
        return f"volume/{self.name}" if self.is_volume else self.name

    @property
    def label(self) -> str:
        """How messages name it: ``container "web"``, ``init container "setup"``,
        ``image volume "models"``."""
        kind = {
            "initContainers": "init container",
            "ephemeralContainers": "ephemeral container",
            VOLUMES: "image volume",
        }.get(self.list_name, "container")
        return f'{kind} "{self.name}"'

    def set_image(self, spec: Any, image: str) -> None:
        """Write ``image`` into ``spec`` (a mutable copy of the pod spec it came from)."""
        node = spec[self.list_name][self.index]
        for key in self.image_path[:-1]:
            node = node[key]
        node[self.image_path[-1]] = image


@dataclass(frozen=True, slots=True)
class PodSpecView:
    """The pod spec of an object, with where it lives."""

    kind: str
    spec: Mapping[str, Any]
    pointer: str  # JSON pointer of the pod spec, "" -> whole object
    is_template: bool
    _walked: list[list[Container]] = field(
        default_factory=list, init=False, repr=False, compare=False
    )
    """The walk, once: a decision asks for the containers several times, and a pod with
    20,000 image volumes made each walk cost a tenth of a second."""

    @property
    def containers(self) -> list[Container]:
        if not self._walked:
            self._walked.append(list_containers(self.spec, self.pointer))
        return list(self._walked[0])

    @property
    def service_account(self) -> str:
        """The ServiceAccount the pods will run as (``default`` when unset)."""
        name = self.spec.get("serviceAccountName") or self.spec.get("serviceAccount")
        return str(name) if name else "default"

    @property
    def lists_pull_secrets(self) -> bool:
        """Is ``spec.imagePullSecrets`` a non-empty list? The ServiceAccount plugin adds the
        account's secrets to a Pod only when it is not, even if every entry's name is blank
        (``[{name: ""}]``)."""
        listed = self.spec.get("imagePullSecrets")
        return isinstance(listed, list) and len(listed) > 0

    @property
    def pull_secret_names(self) -> list[str]:
        """Names in ``spec.imagePullSecrets``, in order, without duplicates or blanks."""
        listed = self.spec.get("imagePullSecrets")
        names: dict[str, None] = {}
        for item in listed if isinstance(listed, list) else []:
            name = item.get("name") if isinstance(item, Mapping) else None
            if isinstance(name, str) and name:
                names[name] = None
        return list(names)


def controller_owner(obj: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """The ``ownerReferences`` entry of ``obj`` with ``controller: true``, or ``None``.

    The API server lets at most one owner be the controller; in a forged review with
    several, the first is taken. Only the shape is checked: whether ``kind``, ``name`` and
    ``uid`` are there, and whether the owner is to be believed, is each caller's question.
    """
    metadata = obj.get("metadata") if isinstance(obj, Mapping) else None
    owners = metadata.get("ownerReferences") if isinstance(metadata, Mapping) else None
    if not isinstance(owners, list):
        return None
    for owner in owners:
        if isinstance(owner, Mapping) and owner.get("controller") is True:
            return owner
    return None


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
    """Every image of ``spec``: containers in list order, then image volumes. Entries without
    a string image are skipped (the API server's schema validation refuses those before any
    validating webhook)."""
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
    out.extend(_image_volumes(spec, base_pointer))
    return out


def _image_volumes(spec: Mapping[str, Any], base_pointer: str) -> list[Container]:
    volumes = spec.get(VOLUMES)
    if not isinstance(volumes, list):
        return []
    out = []
    for index, volume in enumerate(volumes):
        source = volume.get("image") if isinstance(volume, Mapping) else None
        if not isinstance(source, Mapping) or not isinstance(source.get("reference"), str):
            continue
        policy = source.get("pullPolicy")
        out.append(
            Container(
                list_name=VOLUMES,
                index=index,
                name=str(volume.get("name") or f"{VOLUMES}[{index}]"),
                image=source["reference"],
                pull_policy=policy if isinstance(policy, str) else None,
                pointer=f"{base_pointer}/{VOLUMES}/{index}",
                image_path=VOLUME_FIELDS[0],
                policy_path=VOLUME_FIELDS[1],
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


#: Per container or image volume: field -> the JSON types the API server's schema allows.
_CONTAINER_STRINGS = ("name", "image", "imagePullPolicy")
_POD_SPEC_LISTS = (*CONTAINER_LISTS, VOLUMES, "imagePullSecrets")


def shape_problem(kind: str, obj: Mapping[str, Any], where: str) -> str | None:
    """Why ``obj`` is not shaped like any object the API server sends, in the fields
    pullguard reads; ``None`` when it is.

    The API server decodes every object into its Go type before admission, so a list that
    is a number, a container that is a string, or an image that is not a string never
    comes from it: such a review is forged or broken, and gets a 400 that says which field
    (a fuzzed ``imagePullSecrets: 5`` once reached ``pull_secret_names`` and made a 500).
    ``where`` is the object's place in the review (``request.object``).
    """
    problem = _string_fields_problem(obj, ("apiVersion", "kind"), where)
    if problem is not None:
        return problem
    if kind == "ConfigMap":
        problem = _string_map_problem(obj.get("data"), f"{where}.data")
        if problem is not None:
            return problem
    metadata = obj.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            return f"{where}.metadata must be an object"
        for key in ("annotations", "labels"):
            value = metadata.get(key)
            if value is not None and not isinstance(value, Mapping):
                return f"{where}.metadata.{key} must be an object"
        owners = metadata.get("ownerReferences")
        if owners is not None and (
            not isinstance(owners, list) or not all(isinstance(o, Mapping) for o in owners)
        ):
            return f"{where}.metadata.ownerReferences must be a list of objects"
    path = POD_SPEC_PATHS.get(kind)
    if path is None:
        return None
    node: Any = obj
    pointer = where
    for key in path:
        node = node.get(key)
        pointer += "." + key
        if node is None:
            return None  # no pod spec: not judged
        if not isinstance(node, Mapping):
            return f"{pointer} must be an object"
    return _pod_spec_problem(node, pointer)


def _pod_spec_problem(spec: Mapping[str, Any], pointer: str) -> str | None:
    for list_name in _POD_SPEC_LISTS:
        items = spec.get(list_name)
        if items is None:
            continue
        if not isinstance(items, list):
            return f"{pointer}.{list_name} must be a list, got {_json_type(items)}"
        for index, item in enumerate(items):
            at = f"{pointer}.{list_name}[{index}]"
            if not isinstance(item, Mapping):
                return f"{at} must be an object, got {_json_type(item)}"
            fields: tuple[tuple[Any, str], ...]
            if list_name == VOLUMES:
                source = item.get("image")
                if source is None:
                    continue
                if not isinstance(source, Mapping):
                    return f"{at}.image must be an object, got {_json_type(source)}"
                fields = ((source.get("reference"), "image.reference"),)
                fields += ((source.get("pullPolicy"), "image.pullPolicy"),)
            elif list_name == "imagePullSecrets":
                fields = ((item.get("name"), "name"),)
            else:
                fields = tuple((item.get(key), key) for key in _CONTAINER_STRINGS)
            for value, name in fields:
                if value is not None and not isinstance(value, str):
                    return f"{at}.{name} must be a string, got {_json_type(value)}"
    problem = _string_fields_problem(
        spec, ("serviceAccountName", "serviceAccount", "nodeName"), pointer
    ) or _string_map_problem(spec.get("nodeSelector"), f"{pointer}.nodeSelector")
    return problem or _affinity_problem(spec.get("affinity"), f"{pointer}.affinity")


def _string_fields_problem(obj: Mapping[str, Any], keys: tuple[str, ...], at: str) -> str | None:
    """The first of ``keys`` whose value is present and not a string (absent and null pass)."""
    for key in keys:
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            return f"{at}.{key} must be a string, got {_json_type(value)}"
    return None


def _string_map_problem(value: Any, at: str) -> str | None:
    """A Go ``map[string]string`` (a nodeSelector, a ConfigMap's data): absent, null, or an
    object of strings."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        return f"{at} must be an object, got {_json_type(value)}"
    if not all(isinstance(item, str) for item in value.values()):
        return f"{at} values must be strings"
    return None


def _affinity_problem(affinity: Any, at: str) -> str | None:
    """The required node affinity, as far as the platform check reads it."""
    if affinity is None:
        return None
    if not isinstance(affinity, Mapping):
        return f"{at} must be an object, got {_json_type(affinity)}"
    node: Any = affinity
    for key in ("nodeAffinity", "requiredDuringSchedulingIgnoredDuringExecution"):
        node = node.get(key)
        at += "." + key
        if node is None:
            return None
        if not isinstance(node, Mapping):
            return f"{at} must be an object, got {_json_type(node)}"
    terms = node.get("nodeSelectorTerms")
    if terms is None:
        return None
    if not isinstance(terms, list):
        return f"{at}.nodeSelectorTerms must be a list, got {_json_type(terms)}"
    for index, term in enumerate(terms):
        where = f"{at}.nodeSelectorTerms[{index}]"
        if not isinstance(term, Mapping):
            return f"{where} must be an object, got {_json_type(term)}"
        expressions = term.get("matchExpressions")
        if expressions is None:
            continue
        if not isinstance(expressions, list):
            return f"{where}.matchExpressions must be a list, got {_json_type(expressions)}"
        for number, expression in enumerate(expressions):
            there = f"{where}.matchExpressions[{number}]"
            if not isinstance(expression, Mapping):
                return f"{there} must be an object, got {_json_type(expression)}"
            problem = _string_fields_problem(expression, ("key", "operator"), there)
            if problem is not None:
                return problem
            values = expression.get("values")
            if values is not None and (
                not isinstance(values, list) or not all(isinstance(v, str) for v in values)
            ):
                return f"{there}.values must be a list of strings"
    return None


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, Mapping) else "null"
