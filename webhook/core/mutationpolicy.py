"""The mirror rewrite as a MutatingAdmissionPolicy: CEL the API server runs in-process.

:func:`render_policy` and :func:`render_binding` turn pullguard's configuration and the
mirrors in force into a ``MutatingAdmissionPolicy`` and its ``MutatingAdmissionPolicyBinding``
(``admissionregistration.k8s.io/v1``, Kubernetes 1.36+; issue 25). For a Pod CREATE, the
policy does exactly what :func:`webhook.core.mutate.mutate` does when that needs nothing but
the pod and the configuration: the mirror rewrite of every image entry (containers, init
containers, image volumes; the reference parsed as :mod:`webhook.core.reference` parses
it: short names, ``library/``, ``index.docker.io``, ports, digests, tag and digest, hosts
in upper case), excludes, ``imagePullPolicy: Never`` untouched, and the
``pullguard.io/original-images`` annotation, written as ``json.dumps(sort_keys=True)``
writes it. It is idempotent: on its own output no image is rewritten again.

Whatever needs outside data, the policy leaves entirely to ``/mutate``: it changes nothing
in such a pod, and :data:`NEEDS_WEBHOOK` (its CEL, :func:`needs_webhook_expression`) is
true of it, so a webhook with that matchCondition is called for exactly those pods. They are:

- a pod that lists pull secrets while one of its images would go to a mirror without
  ``upstreamCredentials``: whether the pod's secrets cover the image is in the secrets'
  contents (``mutate`` then keeps it as written);
- an image whose mirror is not in force (``mirrors_down``): ``mutate`` warns that it is
  pulled as written, and a policy cannot warn;
- a default pull secret that may be injected (one of its registries is an image's, and the
  pod does not list it): whether it helps is in the secrets' contents, and its copy into
  the namespace is a side effect;
- a pod that carries ``pullguard.io/original-images`` already and would change (a JSON
  merge CEL cannot do: it has no JSON decoder), or whose images are on a mirror that is
  down, or under a mirror without upstream credentials while it lists secrets (the
  restore to the image as written);
- more image entries than :data:`MAX_IMAGE_ENTRIES` or pull secrets than
  :data:`MAX_PULL_SECRETS` (``mutate`` leaves it as written, with a warning).

Not here (still ``/mutate``): UPDATEs, the ``ephemeralcontainers`` subresource, pod
templates, and every warning (``mutation.warnings``: a mutating policy has no messages).

Pure: builds dicts from the configuration; writes nothing and reads no clock.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from typing import Any

from webhook.core.config import Config, Mirror
from webhook.core.hosts import split_host_port
from webhook.core.mutate import ORIGINAL_IMAGES_ANNOTATION
from webhook.core.podspec import MAX_IMAGE_ENTRIES
from webhook.core.reference import (
    _DIGEST,
    _DOMAIN_AND_PORT,
    _PATH_COMPONENT,
    _TAG,
    PATH_MAX,
    Reference,
    parse_or_none,
)
from webhook.core.secretcheck import MAX_PULL_SECRETS

API_VERSION = "admissionregistration.k8s.io/v1"
POLICY_NAME = "pullguard-mirrors"
NEEDS_WEBHOOK = "needsWebhook"
"""The policy's variable that is true when ``/mutate`` must decide the pod."""

# The reference grammar of webhook.core.reference, for RE2 (CEL's ``matches``): the same
# languages without the possessive quantifiers RE2 lacks (RE2 never backtracks anyway).
_TAIL = r"(:" + _TAG + r")?(@" + _DIGEST + r")?"
_REMOTE = _PATH_COMPONENT + r"(/" + _PATH_COMPONENT + r")*"
_COMPONENT_TAIL_RE = "^" + _PATH_COMPONENT + _TAIL + "$"
_REMOTE_TAIL_RE = "^" + _REMOTE + _TAIL + "$"
_DOMAIN_RE = "^" + _DOMAIN_AND_PORT + "$"
_IDENTIFIER_RE = "^[a-f0-9]{64}$"
_DIGEST_OK_RE = "@(sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128})$"


def _lit(value: str) -> str:
    """A CEL string literal (JSON's escapes are CEL's, for these ASCII strings)."""
    return json.dumps(value)


def _list(values: Collection[str]) -> str:
    return "[" + ", ".join(_lit(v) for v in values) + "]"


def _entries() -> str:
    """Every image entry of the pod as ``[patch path, annotation key, image, pull policy]``,
    in :func:`webhook.core.podspec.list_containers` order."""
    parts = [
        f"object.spec.?{name}.orValue([]).transformList(i, c, has(c.image), "
        f'["/spec/{name}/" + string(i) + "/image", string(c.?name.orValue("")), string(c.image), '
        f'string(c.?imagePullPolicy.orValue(""))])'
        for name in ("initContainers", "containers", "ephemeralContainers")
    ]
    parts.append(
        "object.spec.?volumes.orValue([]).transformList(i, v, "
        "has(v.image) && has(v.image.reference), "
        '["/spec/volumes/" + string(i) + "/image/reference", '
        '"volume/" + string(v.?name.orValue("")), '
        'string(v.image.reference), string(v.image.?pullPolicy.orValue(""))])'
    )
    return " + ".join(parts)


# e = [path, key, image, policy]; the first component and whether the runtime reads it as
# a host (splitDockerDomain): "n" no "/", "h" a valid host, "x" host-like but invalid (no
# domain at all: no mirror applies), "d" Docker Hub.
_FIRST = 'e[2].substring(0, e[2].indexOf("/"))'
_SHAPES = (
    "variables.entries.map(e, e + ["
    f'!e[2].contains("/") ? "n" : '
    f'({_FIRST} == "localhost" || {_FIRST}.contains(".") || {_FIRST}.contains(":") || '
    f"{_FIRST}.lowerAscii() != {_FIRST}) ? "
    f'(({_FIRST} == "index.docker.io" || {_FIRST}.matches({_lit(_DOMAIN_RE)})) ? "h" : "x") '
    ': "d"])'
)
# s = [path, key, image, policy, shape] -> [path, key, image, policy, domain, body]; domain
# "" when the reference is invalid or has none.
_SPLIT = (
    'variables.shapes.map(s, s[4] == "h" ? [s[0], s[1], s[2], s[3], '
    's[2].startsWith("index.docker.io/") ? "docker.io" : '
    's[2].substring(0, s[2].indexOf("/")), s[2].substring(s[2].indexOf("/") + 1)] : '
    "[s[0], s[1], s[2], s[3], "
    f'(s[4] == "n" && s[2].matches({_lit(_COMPONENT_TAIL_RE)}) && '
    f"!s[2].matches({_lit(_IDENTIFIER_RE)})) || "
    f'(s[4] == "d" && s[2].matches({_lit(_REMOTE_TAIL_RE)})) ? "docker.io" : "", s[2]])'
)
# p -> [path, key, image, policy, domain, repository path, tail (":tag@digest" as written)]
_REPO = 'p[5].split("@")[0].split(":")[0]'
_PATH = f'(p[4] == "docker.io" && !{_REPO}.contains("/") ? "library/" + {_REPO} : {_REPO})'
_REFS = (
    "variables.split.map(p, [p[0], p[1], p[2], p[3], "
    f'p[4] != "" && p[5].matches({_lit(_REMOTE_TAIL_RE)}) && '
    f'(!p[5].contains("@") || p[5].matches({_lit(_DIGEST_OK_RE)})) && '
    f'size({_PATH}) <= {PATH_MAX} ? p[4] : "", {_PATH}, p[5].substring(size({_REPO}))])'
)


def _reparses(mirror: Mirror, path: str) -> bool:
    """Does ``mirror_host/prefix/path`` parse back to itself (``mutate.mirror_entry``'s
    last check)? Static per mirror, given whether the path has a ``/``."""
    full = f"{mirror.mirror_prefix}/{path}" if mirror.mirror_prefix else path
    ref = Reference(mirror.mirror_host, full, "t")
    return parse_or_none(str(ref)) == ref


def _mirror_arm(mirror: Mirror, down: Collection[str]) -> str:
    """The CEL for one mirror entry that applies to ``r``: its target, ``"?"`` when
    ``/mutate`` must decide, or ``""`` when it stays as written."""
    host = mirror.mirror_host
    if host == mirror.registry:
        return '""'
    prefix = mirror.mirror_prefix + "/" if mirror.mirror_prefix else ""
    single, multi = _reparses(mirror, "a"), _reparses(mirror, "a/b")
    if not single and not multi:
        return '""'
    target = f"{_lit(host + '/' + prefix)} + r[5] + r[6]"
    arm = f'(size({_lit(prefix)} + r[5]) > {PATH_MAX} ? "" : '
    if single != multi:
        arm += f'({"!" if multi else ""}r[5].contains("/") ? "" : '
    if mirror.probe and host in down:
        result = '"?"'
    elif not mirror.upstream_credentials:
        result = f'(variables.hasSecrets ? "?" : ({target} == r[2] ? "" : {target}))'
    else:
        result = f'({target} == r[2] ? "" : {target})'
    arm += result + (")" if single != multi else "") + ")"
    return arm


def _targets(config: Config, down: Collection[str]) -> str:
    chain = '""'
    for mirror in reversed(config.mirrors):
        applies = f"r[4] == {_lit(mirror.registry)}"
        if mirror.exclude:
            applies += f' && !(r[4] + "/" + r[5] in {_list(mirror.exclude)})'
        # A mirror whose entry is excluded falls through to the next one, as in mutate.
        chain = f"({applies} ? {_mirror_arm(mirror, down)} : {chain})"
    return (
        'variables.refs.map(r, [r[0], r[1], r[2], r[3] == "Never" || r[4] == "" ? "" : '
        f"{chain}, r[4]])"
    )


def _host_regex(pattern: str) -> str | None:
    """RE2 for ``hosts.host_matches(pattern, ...)``; ``None`` when CEL cannot say exactly
    (an IPv6 pattern: matched by address)."""
    host, port = split_host_port(pattern.lower())
    if host.startswith("["):
        return None
    labels = [
        "[^.:]*".join(re.escape(part) for part in label.split("*")) for label in host.split(".")
    ]
    return "(?i)^" + r"\.".join(labels) + (":" + port if port else "") + "$"


def _default_secrets(config: Config) -> str:
    """CEL: may a default pull secret be injected (so ``/mutate`` must decide)?"""
    if not config.default_pull_secrets:
        return "false"
    # The registry each entry is pulled from after the rewrite: the target's host, else its own.
    final = 't[3] != "" && t[3] != "?" ? t[3].substring(0, t[3].indexOf("/")) : t[4]'
    arms = []
    for default in config.default_pull_secrets:
        regexes = [_host_regex(p) for p in default.registries]
        if any(r is None for r in regexes):
            matches = f'({final}).startsWith("[") || ' + " || ".join(
                f"({final}).matches({_lit(r)})" for r in regexes if r is not None
            )
        else:
            matches = " || ".join(f"({final}).matches({_lit(r)})" for r in regexes if r)
        arms.append(
            f"(!({_lit(default.secret)} in variables.secretNames) && "
            f'variables.targets.exists(t, t[4] != "" && ({matches})))'
        )
    return " || ".join(arms)


def _hosts(mirrors: Collection[Mirror]) -> list[str]:
    return sorted({m.mirror_host for m in mirrors})


#: Does the original-images annotation name entry ``t`` (so ``mutate.as_written`` may give it
#: back its image as written)? A quoted key is enough to say "maybe": /mutate decides.
_RECORDED = 'variables.recorded.contains("\\"" + t[1] + "\\"")'


def policy_variables(
    config: Config, *, mirrors_down: Collection[str] = frozenset()
) -> list[dict[str, str]]:
    """The policy's variables, in order (each may use those before it)."""
    down_hosts = _hosts([m for m in config.mirrors if m.probe and m.mirror_host in mirrors_down])
    private_hosts = _hosts([m for m in config.mirrors if not m.upstream_credentials])
    secrets = "object.spec.?imagePullSecrets.orValue([])"
    annotated = (
        f"has(object.metadata.annotations) && {_lit(ORIGINAL_IMAGES_ANNOTATION)} in "
        "object.metadata.annotations"
    )
    needs = " || ".join(
        [
            f"size(variables.entries) > {MAX_IMAGE_ENTRIES}",
            f"size({secrets}) > {MAX_PULL_SECRETS}",
            'variables.targets.exists(t, t[3] == "?")',
            f'(variables.annotated && (variables.targets.exists(t, t[3] != "") || '
            f"variables.targets.exists(t, t[4] in {_list(down_hosts)} && {_RECORDED}) || "
            f"(variables.hasSecrets && variables.targets.exists(t, t[4] in "
            f"{_list(private_hosts)} && {_RECORDED}))))",
            f"({_default_secrets(config)})",
        ]
    )
    return [
        {"name": "entries", "expression": _entries()},
        {
            "name": "secretNames",
            "expression": f'{secrets}.map(s, s.?name.orValue("")).filter(n, n != "")',
        },
        {"name": "hasSecrets", "expression": "size(variables.secretNames) > 0"},
        {"name": "annotated", "expression": annotated},
        {
            "name": "recorded",
            "expression": "variables.annotated ? "
            f'string(object.metadata.annotations[{_lit(ORIGINAL_IMAGES_ANNOTATION)}]) : ""',
        },
        {"name": "shapes", "expression": _SHAPES},
        {"name": "split", "expression": _SPLIT},
        {"name": "refs", "expression": _REFS},
        {"name": "targets", "expression": _targets(config, mirrors_down)},
        {"name": "rewrites", "expression": 'variables.targets.filter(t, t[3] != "")'},
        {"name": NEEDS_WEBHOOK, "expression": needs},
    ]


_ANNOTATION_JSON = (
    '"{" + variables.rewrites.map(t, "\\"" + t[1] + "\\":\\"" + t[2] + "\\"").sort().join(",")'
    ' + "}"'
)
_PATCH = (
    "variables.needsWebhook || size(variables.rewrites) == 0 ? [] : "
    'variables.rewrites.map(t, JSONPatch{op: "replace", path: t[0], value: t[3]}) + '
    "(has(object.metadata.annotations) ? "
    '[JSONPatch{op: "add", path: "/metadata/annotations/" + '
    f"jsonpatch.escapeKey({_lit(ORIGINAL_IMAGES_ANNOTATION)}), value: {_ANNOTATION_JSON}}}] : "
    '[JSONPatch{op: "add", path: "/metadata/annotations", '
    f"value: {{{_lit(ORIGINAL_IMAGES_ANNOTATION)}: {_ANNOTATION_JSON}}}}}])"
)


def render_policy(
    config: Config, *, mirrors_down: Collection[str] = frozenset(), name: str = POLICY_NAME
) -> dict[str, Any]:
    """The ``MutatingAdmissionPolicy`` doing ``config``'s mirror rewrite of Pod CREATEs.
    ``mirrors_down``: as for :func:`webhook.core.mutate.mutate` (probed mirrors not seen
    answering): their images are left to ``/mutate``."""
    return {
        "apiVersion": API_VERSION,
        "kind": "MutatingAdmissionPolicy",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "pullguard"}},
        "spec": {
            # As /mutate: an error (a CEL cost limit) admits the pod as written.
            "failurePolicy": "Ignore",
            # Another mutation may add containers after the policy ran: run it again.
            "reinvocationPolicy": "IfNeeded",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                    }
                ]
            },
            "variables": policy_variables(config, mirrors_down=mirrors_down),
            "mutations": [{"patchType": "JSONPatch", "jsonPatch": {"expression": _PATCH}}],
        },
    }


def render_binding(
    config: Config, *, own_namespace: str, name: str = POLICY_NAME
) -> dict[str, Any]:
    """The binding: every namespace but pullguard's own, the exempt ones, and those whose
    mode label is ``off`` (``mutate``'s ``exempt`` and ``mode-off``)."""
    skipped = sorted({own_namespace, *config.exempt_namespaces} - {""})
    return {
        "apiVersion": API_VERSION,
        "kind": "MutatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "pullguard"}},
        "spec": {
            "policyName": name,
            "matchResources": {
                "namespaceSelector": {
                    "matchExpressions": [
                        {
                            "key": "kubernetes.io/metadata.name",
                            "operator": "NotIn",
                            "values": skipped,
                        },
                        {
                            "key": config.namespace_mode_label,
                            "operator": "NotIn",
                            "values": ["off"],
                        },
                    ]
                }
            },
        },
    }


def needs_webhook_expression(config: Config, *, mirrors_down: Collection[str] = frozenset()) -> str:
    """:data:`NEEDS_WEBHOOK` as one CEL expression without variables (a webhook's
    matchConditions have none): each ``variables.X`` replaced by its expression."""
    expressions: dict[str, str] = {}
    for variable in policy_variables(config, mirrors_down=mirrors_down):
        text = re.sub(
            r"variables\.([A-Za-z]+)\b",
            lambda m: f"({expressions[m.group(1)]})",
            variable["expression"],
        )
        expressions[variable["name"]] = text
    return expressions[NEEDS_WEBHOOK]
