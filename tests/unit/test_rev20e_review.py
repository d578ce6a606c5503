"""Outside review rev20e of issue 20 (the fifth, on the fixes of rev20d's findings): the
keyring and diagnose's report, as pure code. Each finding is an open finding
(``@pytest.mark.open_finding``) that fails today; the fuzz test below it held (it passes).
The same findings on the real API server: tests/e2e/test_rev20e_review.py.
"""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhook.core.diagnosis import diagnose, render_text
from webhook.core.findings import Finding
from webhook.core.keyring import (
    DOCKER_CFG,
    DOCKER_CONFIG_JSON,
    PULL_SECRET_KEYS,
    Keyring,
    SecretFormatError,
    covered_registries,
    keyring_key,
    miss_reason,
    parse_pull_secret,
    redacted_pull_secret,
    shown_key,
)

AUTH = base64.b64encode(b"robot:s3cret").decode()


def nested(depth: int) -> dict[str, str]:
    """A dockerconfigjson for r.example.com with an unknown field of ``depth`` nested arrays."""
    entry = json.dumps({"auths": {"r.example.com": {"auth": AUTH}}})
    text = entry[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}"
    return {".dockerconfigjson": base64.b64encode(text.encode()).decode()}


# -- F1. RecursionError from a tenant's pull secret ------------------------------------------


@pytest.mark.parametrize("depth", [1_500, 9_000])
def test_a_pull_secret_nested_as_deep_as_go_reads_is_read(depth: int) -> None:
    """Seen: ``parse_pull_secret`` and ``redacted_pull_secret`` raise ``RecursionError``
    ("maximum recursion depth exceeded while decoding a JSON array") for an unknown field
    nested 1,500 or 9,000 deep; measured with depths 900 (parsed) and 1,500, 5,000, 20,000
    (all raise). It is not a :class:`SecretFormatError` nor a ``ValueError``: the review
    answers 500 (admitted unchecked under ``failurePolicy: Ignore``), and ``audit -A`` and
    ``export-state -A`` stop on it. Go's ``encoding/json`` (the kubelet's decoder) nests up
    to 10,000 levels and ignores unknown fields, so the kubelet pulls with this login.

    Expected: the credential is read (``robot`` for r.example.com), as the kubelet reads it."""
    (credential,) = parse_pull_secret(DOCKER_CONFIG_JSON, nested(depth))
    assert credential.username == "robot" and credential.password == "s3cret"
    redacted = redacted_pull_secret(DOCKER_CONFIG_JSON, nested(depth))
    document = json.loads(base64.b64decode(redacted[".dockerconfigjson"]))
    assert list(document["auths"]) == ["r.example.com"]


def test_a_pull_secret_nested_deeper_than_go_reads_is_a_format_error() -> None:
    """Seen: 20,000 nested arrays: ``RecursionError`` (a 500 in the review). Go refuses
    the document ("exceeded max depth"), so the kubelet fails to parse the secret and pulls
    nothing of the pod.

    Expected: :class:`SecretFormatError` (fatal), as for any JSON the kubelet cannot parse;
    ``redacted_pull_secret`` keeps it unreadable."""
    with pytest.raises(SecretFormatError) as raised:
        parse_pull_secret(DOCKER_CONFIG_JSON, nested(20_000))
    assert raised.value.fatal
    redacted = redacted_pull_secret(DOCKER_CONFIG_JSON, nested(20_000))
    with pytest.raises(SecretFormatError):
        parse_pull_secret(DOCKER_CONFIG_JSON, redacted)


# -- Held: the keyring under fuzzed keys and entries (4,000 examples run in review) ----------

_KEYS = st.one_of(
    st.text(max_size=30),
    st.builds(
        lambda a, b, c: a + b + c,
        st.sampled_from(["", "https://", "http://", "//", "u:p@", "[", "[::1]", "%", "*."]),
        st.text(alphabet="abc.:/@[]%*?#-_09 \u0130\u212a\uff0e\t", max_size=20),
        st.sampled_from(["", "/v1/", "/v2/", ":5000", "]"]),
    ),
)
_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_ENTRIES = st.one_of(
    _VALUES,
    st.fixed_dictionaries(
        {},
        optional={
            "auth": st.one_of(
                st.text(max_size=12),
                st.builds(lambda s: base64.b64encode(s.encode()).decode(), st.text(max_size=12)),
            ),
            "username": st.text(max_size=5),
            "password": st.text(max_size=5),
            "Auth": _VALUES,
        },
    ),
)
_IMAGES = st.builds(
    lambda a, b: a + b,
    st.sampled_from(["docker.io/library/", "r.io/", "r.io:5000/team/", "[::1]:5000/", "a.b/"]),
    st.text(alphabet="abc/.:-_", max_size=10),
)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.dictionaries(_KEYS, _ENTRIES, max_size=4),
    _IMAGES,
    st.sampled_from([DOCKER_CONFIG_JSON, DOCKER_CFG]),
    st.booleans(),
)
def test_the_keyring_never_raises_on_a_secret_of_json_shapes(
    auths: dict[str, object], image: str, kind: str, wrap: bool
) -> None:
    """Held: parse, lookup, redaction and the key texts raise nothing but
    :class:`SecretFormatError` on any JSON document of keys and entries."""
    document = {"auths": auths} if kind == DOCKER_CONFIG_JSON and wrap else auths
    data = {PULL_SECRET_KEYS[kind]: base64.b64encode(json.dumps(document).encode()).decode()}
    try:
        credentials = parse_pull_secret(kind, data, source="ns/s")
    except SecretFormatError:
        credentials = []
    redacted_pull_secret(kind, data)
    Keyring(credentials).lookup(image)
    for credential in credentials:
        keyring_key(credential.key)
        shown_key(credential.key)
        miss_reason(credential.key, image)
    covered_registries(credentials)


# -- F3 (unit). diagnose prints a pod's image and live findings with their escapes ------------


def _controls(text: str) -> list[str]:
    shown = {hex(ord(c)) for c in text if (ord(c) < 32 and c != "\n") or 127 <= ord(c) <= 159}
    return sorted(shown)


def test_diagnose_shows_no_escape_from_a_pods_image_or_a_secret_name() -> None:
    """Seen: rev20d F9's ``cluster_text`` cleans the kubelet's messages only. The pod's own
    image string (the API server refuses only leading and trailing whitespace: an image
    ``r.example.com/team/app ESC]0;pwned BEL ESC[2J :1.0`` is stored, e.g. in a ``warn``
    namespace, and fails InvalidImageName) is printed as it is in ``- container "web"
    (IMAGE): ...``; and a live finding naming the pod's ``imagePullSecrets`` entry
    (``s ESC[2J``: a Pod's secret names are never validated) is printed as it is in
    ``Evidence: pullguard now: ...``. Both reached ``render_text``: 0x1b and 0x7 in the
    report the admin's terminal runs.

    Expected: no C0, DEL or C1 character in the report, whatever the pod holds."""
    image = "r.example.com/team/app\x1b]0;pwned\x07\x1b[2J:1.0"
    pod = {
        "metadata": {"name": "web", "namespace": "team-a"},
        "spec": {"containers": [{"name": "web", "image": image}]},
        "status": {
            "containerStatuses": [
                {
                    "name": "web",
                    "state": {
                        "waiting": {
                            "reason": "InvalidImageName",
                            "message": "Failed to apply default image tag",
                        }
                    },
                }
            ]
        },
    }
    report = render_text("web", "team-a", diagnose(pod, [], []))
    assert not _controls(report), (_controls(report), report)

    clean = "r.example.com/team/app:1.0"
    pod["spec"] = {
        "containers": [{"name": "web", "image": clean}],
        "imagePullSecrets": [{"name": "s\x1b[2J"}],
    }
    pod["status"]["containerStatuses"][0]["state"]["waiting"] = {  # type: ignore[index]
        "reason": "ErrImagePull",
        "message": "pull access denied",
    }
    live = [
        Finding(
            check="pullSecrets",
            subject='container "web"',
            problem='imagePullSecret "s\x1b[2J" does not exist in namespace "team-a"',
            image=clean,
        )
    ]
    report = render_text("web", "team-a", diagnose(pod, [], live))
    assert not _controls(report), (_controls(report), report)


def test_diagnose_fixes_quote_the_owner_named_by_the_pods_owner_references() -> None:
    """Seen: ``livediagnose.workload_of`` takes the controller's kind and name from the
    pod's ``ownerReferences`` (and keeps them when the owner cannot be read); the API
    server checks only that they are not empty. ``diagnose`` then prints them as they are:
    a custom kind ``TaskRun ESC]0;pwned BEL`` (the garbage collector cannot map an unknown
    kind, so such a pod stays, as tests/e2e/test_diagnose_audit.py's TaskRun pod does)
    reached the report with 0x1b and 0x7 in "(its TaskRun... may make a new one)"; and a
    Deployment named ``x;touch${IFS}/tmp/...;`` gave ``Fix: ... && kubectl patch
    deployment/x;touch${IFS}/tmp/...; -n team-a ...``, unquoted (``_spec_patch``'s
    ``target``), a second command in the admin's shell.

    Expected: no control character in the report, and every name in a printed command
    shell-quoted (the fix runs kubectl only)."""
    from tests.unit.test_diagnosis import failing_image
    from webhook.core.diagnosis import Workload

    pod = failing_image("r.example.com/team/app:1.1", "rpc error: code = NotFound desc = not found")
    escaped = render_text(
        "web", "team-a", diagnose(pod, [], [], workload=Workload("TaskRun\x1b]0;pwned\x07", "b"))
    )
    assert not _controls(escaped), (_controls(escaped), escaped)

    image = "r.example.com/team/app:1.0"
    refused = failing_image(image, "pull access denied")
    live = [
        Finding(
            check="pullSecrets",
            subject='container "web"',
            problem="image needs credentials",
            image=image,
        )
    ]
    owner = Workload("Deployment", "x;touch${IFS}/tmp/rev20e-owner;")
    report = render_text("web", "team-a", diagnose(refused, [], live, workload=owner))
    fixes = [line for line in report.splitlines() if line.strip().startswith("Fix:")]
    assert fixes and not any("deployment/x;touch" in fix for fix in fixes), fixes
