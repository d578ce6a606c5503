"""The configuration document, parsed once into frozen, typed objects.

:func:`parse_config` either returns a :class:`Config` or raises :class:`ConfigError` listing
*every* problem by key path (``checks.pullPolicy: must be one of enforce, warn, off``), so an
admin fixes a broken ConfigMap in one round. Unknown keys are problems too: a typo such as
``exemptNamespace`` must not silently do nothing.

Pure: parses text and values; reading files and watching ConfigMaps belong to the edge.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

import yaml

from webhook.core.hosts import ipv6_host, split_host_port
from webhook.core.reference import parse_or_none


class Action(enum.StrEnum):
    """What a check does with a problem it finds."""

    ENFORCE = "enforce"  # deny the request
    WARN = "warn"  # admit, with a kubectl warning
    OFF = "off"  # do not run the check


CHECK_NAMES = ("reference", "pullSecrets", "pullPolicy", "registry", "platform")


@dataclass(frozen=True, slots=True)
class Checks:
    """The action of each check."""

    reference: Action = Action.ENFORCE
    pullSecrets: Action = Action.ENFORCE
    pullPolicy: Action = Action.WARN
    registry: Action = Action.ENFORCE
    platform: Action = Action.WARN

    def action(self, check: str) -> Action:
        """The action configured for ``check`` (one of :data:`CHECK_NAMES`)."""
        value: Action = getattr(self, check)
        return value


#: The managed clouds' registries, whose pulls the kubelet's credential providers authenticate
#: with the node's own identity (FACTS.md): ECR, Artifact Registry / Container Registry, ACR.
NODE_CREDENTIAL_REGISTRIES = (
    "*.dkr.ecr.*.amazonaws.com",
    "*.dkr.ecr.*.amazonaws.com.cn",
    "*.dkr.ecr-fips.*.amazonaws.com",
    "*-docker.pkg.dev",
    "gcr.io",
    "*.gcr.io",
    "*.azurecr.io",
    "*.azurecr.cn",
    "*.azurecr.us",
)

#: The webhooks' ``timeoutSeconds`` in deploy/: the registry budget must end well before it,
#: or the API server gives up on the whole review first (and, failing open, admits silently).
WEBHOOK_TIMEOUT_SECONDS = 5.0
MAX_REGISTRY_BUDGET_SECONDS = 4.0


@dataclass(frozen=True, slots=True)
class RegistrySettings:
    """How the registry and platform checks may contact registries."""

    timeout_seconds: float = 2.0
    """Budget for all registry calls of one admission; past it the checks report "could not run"."""
    cache_ttl_seconds: int = 5
    """How long a positive answer (the image exists and is readable) is reused, by tag and by
    digest alike, counted from when the registry was asked (issue 21, item 5: the runtime
    resolves the reference on every pull, so a deleted image fails the next pull); 0: never.
    "Not found" and refusals are never reused."""
    pull_quota_reserve_percent: int = 50
    """The share of a registry's pull quota left to the nodes: once a registry's last
    ``ratelimit-remaining`` (Docker Hub's, per egress address or account, shared with the
    nodes) would fall below this percent of its ``ratelimit-limit``, the platform check
    sends it no manifest ``GET`` (a pull there) and its platforms are unknown; 0: ``GET``
    until the registry says no pull is left. ``HEAD``, which the registry check sends, is
    not a pull and is never held back."""
    allow_private_networks: bool = False
    """Contact registries that resolve to loopback, link-local or private addresses."""
    allowed_private_registries: tuple[str, ...] = ()
    """host[:port] patterns exempt from the line above (an in-cluster registry, say)."""
    insecure_registries: tuple[str, ...] = ()
    """host[:port] patterns reached over plain HTTP."""
    node_credential_registries: tuple[str, ...] = NODE_CREDENTIAL_REGISTRIES
    """Registries the nodes authenticate to themselves (kubelet credential providers): an
    "unauthorized" from one of these is not proof the node is refused, so it only warns."""
    image_credential_provider_config: str | None = None
    """The path of the kubelet's ``CredentialProviderConfig`` (a file, or a folder whose
    ``*.json``/``*.yaml``/``*.yml`` files are merged, as the kubelet's flag takes it)."""
    image_credential_provider_bin_dir: str | None = None
    """The folder holding the providers' executables (the kubelet's
    ``--image-credential-provider-bin-dir``)."""


@dataclass(frozen=True, slots=True)
class DefaultPullSecret:
    """A secret injected into pods pulling from ``registries`` without credentials for them."""

    secret: str
    registries: tuple[str, ...]
    source_namespace: str | None = None
    """Where the master copy lives; copied into a pod's namespace that lacks it."""


@dataclass(frozen=True, slots=True)
class Mirror:
    """Rewrite images of ``registry`` to ``mirror`` (host[/path prefix]), except ``exclude``."""

    registry: str
    mirror: str
    exclude: tuple[str, ...] = ()
    """Repositories left alone, fully qualified (``docker.io/library/busybox``)."""
    probe: bool = True
    """Rewrite only while the mirror answers its ``/v2/`` probe. Off for a mirror only the
    nodes can reach: then images are always rewritten to it."""
    upstream_credentials: bool = False
    """The mirror pulls from ``registry`` with credentials of its own (distribution's
    ``proxy.username``, a Harbor registry endpoint). Off: an image the pod pulls with its
    own credentials for ``registry`` stays as written, since a mirror never sees the pod's
    credentials for another host and would serve it anonymously or not at all."""

    @property
    def mirror_host(self) -> str:
        """The mirror's host[:port]."""
        return self.mirror.partition("/")[0]

    @property
    def mirror_prefix(self) -> str:
        """The path prefix on the mirror, without slashes at either end (may be empty)."""
        return self.mirror.partition("/")[2].strip("/")


@dataclass(frozen=True, slots=True)
class MutationSettings:
    """What the mutating webhook changes, and how loudly."""

    pod_templates: bool = False
    """Also rewrite pod templates (Deployments etc.). Off: GitOps tools see no drift."""
    warnings: bool = True
    """Announce each rewritten image or injected secret as a kubectl warning."""


#: The users the API server names for the built-in controllers: their own ServiceAccounts
#: (kube-controller-manager with --use-service-account-credentials, the default of kubeadm
#: and the managed clouds) or the controller manager's own identity.
DEFAULT_CONTROLLER_USERS = (
    "system:serviceaccount:kube-system:*-controller",
    "system:kube-controller-manager",
)


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration. Build it with :func:`parse_config`; never mutate it."""

    checks: Checks = field(default_factory=Checks)
    exempt_namespaces: frozenset[str] = frozenset({"kube-system"})
    namespace_mode_label: str = "pullguard.io/mode"
    private_registries: tuple[str, ...] = ()
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    default_pull_secrets: tuple[DefaultPullSecret, ...] = ()
    mirrors: tuple[Mirror, ...] = ()
    mutation: MutationSettings = field(default_factory=MutationSettings)
    controller_users: tuple[str, ...] = DEFAULT_CONTROLLER_USERS
    """Users (``*`` globs) whose objects with a controlling ownerReference are judged as a
    controller's (only certain failures deny); anyone else's are judged as a person's."""

    def known_registries(self) -> list[str]:
        """Registries this configuration names (for "did you mean" suggestions)."""
        names = list(self.private_registries)
        for default in self.default_pull_secrets:
            names.extend(default.registries)
        for mirror in self.mirrors:
            names.extend([mirror.registry, mirror.mirror_host])
        return names


#: Bounds on a configuration document. Whoever can edit the ConfigMap could otherwise make
#: every replica spend its memory and CPU on it (alias bombs, deep nesting, huge documents);
#: the real document is a few KiB.
MAX_DOCUMENT_BYTES = 256 * 1024
MAX_DEPTH = 20
MAX_NODES = 20_000
MAX_PROBLEMS = 50


class ConfigError(ValueError):
    """An invalid configuration document; ``problems`` lists each one by key path (at most
    :data:`MAX_PROBLEMS`, then how many more)."""

    def __init__(self, problems: list[str]) -> None:
        if len(problems) > MAX_PROBLEMS:
            more = len(problems) - MAX_PROBLEMS
            problems = [*problems[:MAX_PROBLEMS], f"(document): and {more} more problems"]
        super().__init__("; ".join(problems))
        self.problems = problems

    def __str__(self) -> str:
        count = len(self.problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        return f"invalid configuration ({count} problem{'s' if count != 1 else ''}):\n{lines}"


#: libyaml's safe loader when PyYAML was built with it (a tenth of the pure-Python one's
#: time: a forged ConfigMap review of 256 KiB cost a worker 0.7-2 s), else the pure one.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_config_text(text: str) -> Config:
    """Parse a YAML document into a :class:`Config`, or raise :class:`ConfigError`.

    The document's shape is checked from the parser's event stream before any object is
    built: no aliases, at most :data:`MAX_DEPTH` levels and :data:`MAX_NODES` nodes.
    """
    size = len(text.encode("utf-8", "surrogateescape"))
    if size > MAX_DOCUMENT_BYTES:
        raise ConfigError(
            [f"(document): {size} bytes; a configuration may have at most {MAX_DOCUMENT_BYTES}"]
        )
    try:
        _check_shape(text)
        document = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError([f"(document): not valid YAML{where}: {problem}"]) from None
    return parse_config({} if document is None else document)


def _check_shape(text: str) -> None:
    depth = nodes = 0
    for event in yaml.parse(text, Loader=_LOADER):
        if isinstance(event, yaml.AliasEvent):
            raise ConfigError(
                ["(document): YAML aliases (*name) are not accepted in a configuration"]
            )
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if nodes > MAX_NODES:
                raise ConfigError([f"(document): more than {MAX_NODES} values"])
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise ConfigError([f"(document): nested deeper than {MAX_DEPTH} levels"])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


class _Reader:
    """Collects problems by key path while reading a nested document."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def mapping(self, value: Any, path: str, known: set[str]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.problem(path, f"must be a mapping, got {_kind(value)}")
            return {}
        for key in value:
            if key not in known:
                hint = _closest(str(key), known)
                self.problem(
                    f"{path}.{key}" if path != "(document)" else str(key),
                    "unknown key" + (f" (did you mean {hint!r}?)" if hint else ""),
                )
        return value

    def string(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str) or not value:
            self.problem(path, f"must be a non-empty string, got {_kind(value)}")
            return None
        return value

    def strings(self, value: Any, path: str) -> tuple[str, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.problem(path, f"must be a list of strings, got {_kind(value)}")
            return ()
        out = []
        for index, item in enumerate(value):
            text = self.string(item, f"{path}[{index}]")
            if text is not None:
                out.append(text)
        return tuple(out)

    def boolean(self, value: Any, path: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(path, f"must be true or false, got {_kind(value)}")
            return default
        return value

    def number(self, value: Any, path: str, default: float, low: float, high: float) -> float:
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(path, f"must be a number, got {_kind(value)}")
            return default
        if not low <= value <= high:
            self.problem(path, f"must be between {low:g} and {high:g}, got {value:g}")
            return default
        return float(value)

    def hosts(self, value: Any, path: str) -> tuple[str, ...]:
        hosts = tuple(normal_host_pattern(h) for h in self.strings(value, path))
        for index, host in enumerate(hosts):
            problem = host_pattern_problem(host)
            if problem:
                self.problem(f"{path}[{index}]", problem)
        return hosts


def _kind(value: Any) -> str:
    """How a problem names a value: its kind, and a string's first 40 characters."""
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return f"the string {value[:40]!r}{'...' if len(value) > 40 else ''}"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def _closest(key: str, known: set[str]) -> str | None:
    lowered = key.lower()
    for candidate in sorted(known):
        c = candidate.lower()
        if c == lowered or c.rstrip("s") == lowered.rstrip("s") or (len(c) > 4 and c in lowered):
            return candidate
    return None


def normal_host_pattern(pattern: str) -> str:
    """``pattern`` in the form image references use: an IPv6 address bracketed and
    compressed (``2001:DB8::1`` -> ``[2001:db8::1]``, ``[::1]:5000`` kept). Users write
    IPv6 addresses both ways; an unbracketed one cannot carry a port (``::1:5000`` is itself
    an address), so with a port the brackets are required."""
    address = ipv6_host(pattern)
    if address is not None:
        return address
    if pattern.startswith("["):
        host, port = split_host_port(pattern)
        address = ipv6_host(host)
        if address is not None and port:
            return f"{address}:{port}"
    return pattern


def host_pattern_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a host[:port] (globs per label allowed), or ``None``."""
    if "/" in pattern or "://" in pattern:
        return f"{pattern!r} must be a host[:port], without scheme or path"
    probe = pattern.replace("*", "x")
    ref = parse_or_none(probe + "/probe")
    if ref is None or ref.domain != probe:
        return f"{pattern!r} is not a valid registry host[:port]"
    return None


def parse_config(document: Any) -> Config:
    """Validate a decoded document; return a :class:`Config` or raise :class:`ConfigError`."""
    r = _Reader()
    top = r.mapping(
        document,
        "(document)",
        {
            "checks",
            "exemptNamespaces",
            "namespaceModeLabel",
            "privateRegistries",
            "registry",
            "defaultPullSecrets",
            "mirrors",
            "mutation",
            "controllerUsers",
        },
    )

    checks_doc = r.mapping(top.get("checks") or {}, "checks", set(CHECK_NAMES))
    actions: dict[str, Action] = {}
    for name in CHECK_NAMES:
        raw = checks_doc.get(name)
        if raw is None:
            continue
        if raw is False:
            raw = "off"  # YAML 1.1 reads an unquoted off as false, as the docs write it
        try:
            actions[name] = Action(raw)
        except ValueError:
            r.problem(f"checks.{name}", f"must be one of enforce, warn, off, got {_kind(raw)}")
    checks = Checks(**actions)

    exempt = r.strings(top.get("exemptNamespaces", ["kube-system"]), "exemptNamespaces")
    label = top.get("namespaceModeLabel", "pullguard.io/mode")
    mode_label = r.string(label, "namespaceModeLabel") or "pullguard.io/mode"

    private = r.hosts(top.get("privateRegistries"), "privateRegistries")

    reg_doc = r.mapping(
        top.get("registry") or {},
        "registry",
        {
            "timeoutSeconds",
            "cacheTTLSeconds",
            "pullQuotaReservePercent",
            "allowPrivateNetworks",
            "allowedPrivateRegistries",
            "insecureRegistries",
            "nodeCredentialRegistries",
            "imageCredentialProviderConfig",
            "imageCredentialProviderBinDir",
        },
    )
    provider_config, provider_bin_dir = _provider_paths(r, reg_doc)
    registry = RegistrySettings(
        timeout_seconds=r.number(
            reg_doc.get("timeoutSeconds"),
            "registry.timeoutSeconds",
            2.0,
            0.1,
            MAX_REGISTRY_BUDGET_SECONDS,
        ),
        cache_ttl_seconds=int(
            r.number(reg_doc.get("cacheTTLSeconds"), "registry.cacheTTLSeconds", 5, 0, 86400)
        ),
        pull_quota_reserve_percent=int(
            r.number(
                reg_doc.get("pullQuotaReservePercent"),
                "registry.pullQuotaReservePercent",
                50,
                0,
                100,
            )
        ),
        allow_private_networks=r.boolean(
            reg_doc.get("allowPrivateNetworks"), "registry.allowPrivateNetworks", False
        ),
        allowed_private_registries=r.hosts(
            reg_doc.get("allowedPrivateRegistries"), "registry.allowedPrivateRegistries"
        ),
        insecure_registries=r.hosts(
            reg_doc.get("insecureRegistries"), "registry.insecureRegistries"
        ),
        node_credential_registries=r.hosts(
            reg_doc.get("nodeCredentialRegistries", list(NODE_CREDENTIAL_REGISTRIES)),
            "registry.nodeCredentialRegistries",
        ),
        image_credential_provider_config=provider_config,
        image_credential_provider_bin_dir=provider_bin_dir,
    )

    defaults: list[DefaultPullSecret] = []
    raw_defaults = top.get("defaultPullSecrets") or []
    if not isinstance(raw_defaults, list):
        r.problem("defaultPullSecrets", f"must be a list, got {_kind(raw_defaults)}")
        raw_defaults = []
    for index, item in enumerate(raw_defaults):
        path = f"defaultPullSecrets[{index}]"
        entry = r.mapping(item, path, {"secret", "registries", "sourceNamespace"})
        secret = r.string(entry.get("secret"), f"{path}.secret")
        registries = r.hosts(entry.get("registries"), f"{path}.registries")
        if entry and not registries and "registries" in entry:
            r.problem(f"{path}.registries", "must name at least one registry")
        elif entry and "registries" not in entry:
            r.problem(f"{path}.registries", "is required")
        source = entry.get("sourceNamespace")
        if source is not None:
            source = r.string(source, f"{path}.sourceNamespace")
        if secret and registries:
            defaults.append(DefaultPullSecret(secret, registries, source))

    mirrors: list[Mirror] = []
    raw_mirrors = top.get("mirrors") or []
    if not isinstance(raw_mirrors, list):
        r.problem("mirrors", f"must be a list, got {_kind(raw_mirrors)}")
        raw_mirrors = []
    seen_registries: dict[str, int] = {}
    for index, item in enumerate(raw_mirrors):
        path = f"mirrors[{index}]"
        entry = r.mapping(
            item, path, {"registry", "mirror", "exclude", "probe", "upstreamCredentials"}
        )
        # Bracketed and compressed as in every other host list: users write IPv6 both ways.
        source_registry = r.string(entry.get("registry"), f"{path}.registry")
        source_registry = normal_host_pattern(source_registry) if source_registry else None
        target = r.string(entry.get("mirror"), f"{path}.mirror")
        exclude = r.strings(entry.get("exclude"), f"{path}.exclude")
        if source_registry:
            problem = host_pattern_problem(source_registry)
            if problem or "*" in source_registry:
                r.problem(f"{path}.registry", problem or "must be a registry host, without *")
            elif source_registry in seen_registries:
                r.problem(
                    f"{path}.registry",
                    f"{source_registry!r} already has a mirror at "
                    f"mirrors[{seen_registries[source_registry]}]",
                )
            seen_registries.setdefault(source_registry, index)
        if target:
            probe = parse_or_none(target.rstrip("/") + "/probe")
            if "://" in target or probe is None or probe.domain != target.partition("/")[0]:
                r.problem(
                    f"{path}.mirror",
                    f"{target!r} must be host[:port] with an optional path prefix, "
                    "e.g. mirror.example.com/dockerhub",
                )
            elif source_registry and target.partition("/")[0] == source_registry:
                r.problem(f"{path}.mirror", "must differ from the registry it mirrors")
        normalized_exclude = []
        for ex_index, repo in enumerate(exclude):
            ref = parse_or_none(repo)
            if ref is None or ref.tag or ref.digest:
                r.problem(
                    f"{path}.exclude[{ex_index}]", f"{repo!r} must be a repository without tag"
                )
            else:
                normalized_exclude.append(ref.name)
        if source_registry and target:
            mirrors.append(
                Mirror(
                    registry=_canonical_registry(source_registry),
                    mirror=target.rstrip("/"),
                    exclude=tuple(normalized_exclude),
                    probe=r.boolean(entry.get("probe"), f"{path}.probe", True),
                    upstream_credentials=r.boolean(
                        entry.get("upstreamCredentials"), f"{path}.upstreamCredentials", False
                    ),
                )
            )

    mutation_doc = r.mapping(top.get("mutation") or {}, "mutation", {"podTemplates", "warnings"})
    mutation = MutationSettings(
        pod_templates=r.boolean(mutation_doc.get("podTemplates"), "mutation.podTemplates", False),
        warnings=r.boolean(mutation_doc.get("warnings"), "mutation.warnings", True),
    )

    controllers = r.strings(
        top.get("controllerUsers", list(DEFAULT_CONTROLLER_USERS)), "controllerUsers"
    )

    if r.problems:
        raise ConfigError(r.problems)
    return Config(
        controller_users=tuple(controllers),
        checks=checks,
        exempt_namespaces=frozenset(exempt),
        namespace_mode_label=mode_label,
        private_registries=private,
        registry=registry,
        default_pull_secrets=tuple(defaults),
        mirrors=tuple(mirrors),
        mutation=mutation,
    )


#: The longest path taken for the credential-provider keys (Linux's PATH_MAX).
MAX_PATH_CHARS = 4096


def _provider_paths(r: _Reader, reg_doc: dict[str, Any]) -> tuple[str | None, str | None]:
    """``registry.imageCredentialProviderConfig`` and ``...BinDir``: absolute paths, both
    or neither (the kubelet needs both flags). Only their form is checked here; the edge
    reads the document and looks for the executables."""
    paths: list[str | None] = []
    for key in ("imageCredentialProviderConfig", "imageCredentialProviderBinDir"):
        path = f"registry.{key}"
        raw = reg_doc.get(key)
        if raw is None:
            paths.append(None)
            continue
        value = r.string(raw, path)
        if value is None:
            paths.append(None)
        elif not value.startswith("/"):
            r.problem(path, f"must be an absolute path, got {_kind(value)}")
            paths.append(None)
        elif "\x00" in value or len(value) > MAX_PATH_CHARS:
            r.problem(path, f"must be a path of at most {MAX_PATH_CHARS} characters, without NUL")
            paths.append(None)
        else:
            paths.append(value)
    config_path, bin_dir = paths
    named = [
        key in reg_doc for key in ("imageCredentialProviderConfig", "imageCredentialProviderBinDir")
    ]
    if named[0] and not named[1]:
        r.problem(
            "registry.imageCredentialProviderBinDir",
            "is required with registry.imageCredentialProviderConfig (where the executables are)",
        )
    elif named[1] and not named[0]:
        r.problem(
            "registry.imageCredentialProviderConfig",
            "is required with registry.imageCredentialProviderBinDir (which providers to run)",
        )
    return config_path, bin_dir


def _canonical_registry(host: str) -> str:
    """``index.docker.io`` and ``docker.io`` are one registry to the runtime."""
    return "docker.io" if host in ("index.docker.io", "registry-1.docker.io") else host


DEFAULT_CONFIG = Config()
