"""Pull-secret parsing and the kubelet's keyring matching."""

from __future__ import annotations

import base64
import json

import pytest

from webhook.core.keyring import (
    DOCKER_CONFIG_JSON,
    Credential,
    SecretFormatError,
    covered_registries,
    keyring_key,
    lookup,
    parse_pull_secret,
    url_matches,
)


def b64(value: str | bytes) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return base64.b64encode(raw).decode()


def test_dockerconfigjson_and_dockercfg_both_parse() -> None:
    auth = b64("alice:s3cret")
    new = parse_pull_secret(
        "kubernetes.io/dockerconfigjson",
        {".dockerconfigjson": b64(json.dumps({"auths": {"r.io": {"auth": auth}}}))},
    )
    old = parse_pull_secret(
        "kubernetes.io/dockercfg",
        {".dockercfg": b64(json.dumps({"r.io": {"username": "alice", "password": "s3cret"}}))},
    )
    assert [(c.key, c.username, c.password) for c in new] == [("r.io", "alice", "s3cret")]
    assert [(c.key, c.username, c.password) for c in old] == [("r.io", "alice", "s3cret")]
    assert "s3cret" not in repr(new[0])


def config_json(document: object) -> dict[str, str]:
    text = document if isinstance(document, str) else json.dumps(document)
    return {".dockerconfigjson": b64(text)}


@pytest.mark.parametrize(
    ("secret_type", "data", "words", "fatal"),
    [
        # What the kubelet skips silently (secrets.go: only these two types, a present and
        # non-empty key): the pod's other credentials still work.
        ("Opaque", {}, "has type 'Opaque'", False),
        ("kubernetes.io/dockerconfigjson", {}, "no '.dockerconfigjson' key", False),
        ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": ""}, "an empty", False),
        # What it cannot parse: MakeDockerKeyring fails, and with it every pull of the pod.
        ("kubernetes.io/dockerconfigjson", {".dockerconfigjson": "%%%"}, "not valid base64", True),
        ("kubernetes.io/dockerconfigjson", config_json("[]"), "not an object", True),
        ("kubernetes.io/dockerconfigjson", config_json({"auths": []}), "not an object", True),
        ("kubernetes.io/dockerconfigjson", config_json('{"auths": {}, "x": NaN}'), "JSON", True),
        ("kubernetes.io/dockercfg", {".dockercfg": b64('"text"')}, "not an object", True),
        ("kubernetes.io/dockerconfigjson", config_json({"auths": {"r": "x"}}), "object", True),
        (
            "kubernetes.io/dockerconfigjson",
            config_json({"auths": {"r": {"auth": b64("nocolon")}}}),
            "not user:password",
            True,
        ),
        (
            "kubernetes.io/dockerconfigjson",
            config_json({"auths": {"r": {"auth": "!!not-base64!!"}}}),
            '"auth" that is not base64',
            True,
        ),
        (
            "kubernetes.io/dockerconfigjson",
            config_json({"auths": {"r": {"username": "u", "password": 5}}}),
            '"password" that is not a string',
            True,
        ),
    ],
)
def test_broken_secrets_say_what_is_wrong_and_whether_the_kubelet_gives_up(
    secret_type: str, data: dict[str, str], words: str, fatal: bool
) -> None:
    with pytest.raises(SecretFormatError) as caught:
        parse_pull_secret(secret_type, data)
    assert words in str(caught.value)
    assert caught.value.fatal is fatal


@pytest.mark.parametrize(
    "document",
    [{}, {"auths": None}, {"auths": {}}, "null", {"HttpHeaders": {"X": "y"}}],
)
def test_a_config_without_entries_is_read_as_no_credentials(document: object) -> None:
    """Go's decoder leaves the map empty: no error, the kubelet pulls anonymously."""
    assert parse_pull_secret(DOCKER_CONFIG_JSON, config_json(document)) == []


@pytest.mark.parametrize(
    "auth",
    [
        "cm9ib3Q6czNjcmV0IQ==",  # robot:s3cret!, padded (StdEncoding)
        "cm9ib3Q6czNjcmV0IQ",  # the same, unpadded (RawStdEncoding): the kubelet pulls with it
        "cm9ib3Q6\nczNjcmV0IQ==",  # Go's decoder skips line breaks
    ],
)
def test_auth_is_decoded_padded_or_unpadded_as_the_kubelet_does(auth: str) -> None:
    [credential] = parse_pull_secret(
        DOCKER_CONFIG_JSON, config_json({"auths": {"r.io": {"auth": auth}}})
    )
    assert (credential.username, credential.password) == ("robot", "s3cret!")


@pytest.mark.parametrize(
    "auth",
    [
        "cm9ib3Q6czNjcmV0IQ=",  # ends in "=": padded, and padded wrongly
        "cm9ib3Q6czNjcmV0I",  # unpadded, one character too many for a whole byte
        "cm9i=b3Q6czNjcmV0IQ",  # "=" inside an unpadded value
        " cm9ib3Q6czNjcmV0IQ==",  # a space is outside the alphabet
        "cm9ib3Q6czNjcmV0IQ-_",  # URL-safe characters are not StdEncoding
    ],
)
def test_auth_the_kubelet_cannot_decode_is_fatal(auth: str) -> None:
    with pytest.raises(SecretFormatError) as caught:
        parse_pull_secret(DOCKER_CONFIG_JSON, config_json({"auths": {"r.io": {"auth": auth}}}))
    assert caught.value.fatal


def test_field_names_match_in_any_case_and_repeats_keep_the_last() -> None:
    """Go's encoding/json: keys fold to struct fields case-insensitively; a repeated key
    overwrites; every spelling of "auths" fills the same map; null changes nothing."""
    text = (
        '{"Auths": {"a.io": {"Username": "u1", "PASSWORD": "p1", "password": null}},'
        ' "auths": {"b.io": {"AUTH": "'
        + b64("u2:p2")
        + '"}, "b.io": {"auth": "'
        + b64("u3:p3")
        + '"}, "c.io": null}}'
    )
    credentials = parse_pull_secret(DOCKER_CONFIG_JSON, config_json(text))
    assert [(c.key, c.username, c.password) for c in credentials] == [
        ("a.io", "u1", "p1"),
        ("b.io", "u3", "p3"),
        ("c.io", "", ""),
    ]


def test_redaction_keeps_an_unparseable_secret_unparseable() -> None:
    from webhook.core.keyring import redacted_pull_secret

    data = config_json({"auths": {"r.io": {"auth": "!!", "password": "hunter2"}}})
    redacted = redacted_pull_secret(DOCKER_CONFIG_JSON, data)
    assert "hunter2" not in base64.b64decode(redacted[".dockerconfigjson"]).decode()
    with pytest.raises(SecretFormatError) as caught:
        parse_pull_secret(DOCKER_CONFIG_JSON, redacted)
    assert caught.value.fatal


@pytest.mark.parametrize(
    ("location", "key"),
    [
        ("https://index.docker.io/v1/", "index.docker.io"),
        ("registry.example.com", "registry.example.com"),
        ("https://registry.example.com/v2/", "registry.example.com"),
        ("registry.example.com:5000/team", "registry.example.com:5000/team"),
        ("http://quay.io/org/", "quay.io/org/"),
    ],
)
def test_keys_are_normalized_like_the_kubelet(location: str, key: str) -> None:
    assert keyring_key(location) == key


def test_most_specific_key_is_tried_first_and_docker_hub_key_serves_hub() -> None:
    creds = [
        Credential("quay.io", "a"),
        Credential("quay.io/coreos", "b"),
        Credential("https://index.docker.io/v1/", "hub"),
    ]
    assert [c.username for c in lookup(creds, "quay.io/coreos/etcd")] == ["b", "a"]
    assert [c.username for c in lookup(creds, "docker.io/library/nginx")] == ["hub"]
    assert lookup(creds, "ghcr.io/x/y") == []


def test_globs_match_one_label_only() -> None:
    assert url_matches(
        "*.dkr.ecr.us-east-1.amazonaws.com", "1234.dkr.ecr.us-east-1.amazonaws.com/a"
    )
    assert not url_matches("*.example.com", "a.b.example.com/x")
    assert not url_matches("example.com", "example.com:443/x")


LEAKY = "https://robot:Sup3rS3cret@registry.example.com/v1/"


def _secret_data(auths: dict[str, object]) -> dict[str, str]:
    raw = json.dumps({"auths": auths}).encode()
    return {".dockerconfigjson": base64.b64encode(raw).decode()}


def test_a_key_with_user_info_matches_on_host_and_path_only() -> None:
    # The kubelet parses the key as a URL and matches its host[:port] and path: user info in
    # the key is not part of what it matches (and must never be shown).
    entry = {"auth": base64.b64encode(b"u:p").decode()}
    credentials = parse_pull_secret(DOCKER_CONFIG_JSON, _secret_data({LEAKY: entry}))
    assert keyring_key(LEAKY) == "registry.example.com"
    assert lookup(credentials, "registry.example.com/team/app")
    assert covered_registries(credentials) == ["registry.example.com"]


def test_format_errors_never_repeat_a_raw_key() -> None:
    for entry in ("not an object", {"auth": "!!!"}, {"auth": base64.b64encode(b"x").decode()}):
        try:
            parse_pull_secret(DOCKER_CONFIG_JSON, _secret_data({LEAKY: entry}))
        except SecretFormatError as error:
            assert "Sup3rS3cret" not in str(error)
            assert "robot" not in str(error)
            assert "registry.example.com" in str(error)
        else:
            raise AssertionError(f"{entry!r} was accepted")


def test_denial_and_warnings_never_carry_credentials_from_a_key() -> None:
    from tests.unit.builders import cluster_with, container, pod, pod_spec, request
    from webhook.core.cluster import SecretInfo
    from webhook.core.config import load_config_text
    from webhook.core.validate import validate

    config = load_config_text("privateRegistries: [registry.example.com, other.example.com]\n")
    good = {"auth": base64.b64encode(b"u:p").decode()}
    for auths in ({LEAKY: good}, {LEAKY: "broken"}):
        secret = SecretInfo("team-a", "leaky", DOCKER_CONFIG_JSON, _secret_data(auths))
        obj = pod(pod_spec(container("app", "other.example.com/a:1"), secrets=["leaky"]))
        decision = validate(request(obj), config, cluster_with(secret))
        text = (decision.message or "") + "\n".join(decision.warnings)
        assert not decision.allowed
        assert "Sup3rS3cret" not in text and "robot" not in text, text


def test_redaction_keeps_what_is_matched_and_nothing_secret() -> None:
    from webhook.core.keyring import redacted_pull_secret

    entries = {LEAKY: {"auth": base64.b64encode(b"robot:Sup3rS3cret").decode()}}
    redacted = redacted_pull_secret(DOCKER_CONFIG_JSON, _secret_data(entries))
    text = base64.b64decode(redacted[".dockerconfigjson"]).decode()
    assert "Sup3rS3cret" not in text and "robot" not in text
    credentials = parse_pull_secret(DOCKER_CONFIG_JSON, redacted)
    assert lookup(credentials, "registry.example.com/team/app")
    # One the kubelet skips stays skipped (no data); one it cannot parse stays unparseable.
    assert redacted_pull_secret("Opaque", {"x": "!!"}) == {}
    broken = redacted_pull_secret(DOCKER_CONFIG_JSON, {".dockerconfigjson": "!!"})
    with pytest.raises(SecretFormatError) as caught:
        parse_pull_secret(DOCKER_CONFIG_JSON, broken)
    assert caught.value.fatal


def test_an_identity_token_is_ignored_as_the_kubelet_ignores_it() -> None:
    """The kubelet's entry has username, password, email and auth only: a registry login
    that needs the identity token fails on the node, so pullguard must not use it."""
    text = json.dumps({"auths": {"r.io": {"username": "0000", "identitytoken": "refresh-me"}}})
    [credential] = parse_pull_secret(DOCKER_CONFIG_JSON, config_json(text))
    assert (credential.username, credential.password, credential.identity_token) == (
        "0000",
        "",
        "",
    )
    # Nor does its type matter: an unknown key is never decoded.
    weird = json.dumps({"auths": {"r.io": {"auth": b64("u:p"), "identitytoken": 5}}})
    assert parse_pull_secret(DOCKER_CONFIG_JSON, config_json(weird))[0].username == "u"


@pytest.mark.parametrize("headers", ["x", 7, ["x"], {"User-Agent": 1}, {"X": {"y": "z"}}])
def test_httpheaders_that_go_cannot_unmarshal_fail_the_keyring(headers: object) -> None:
    """The kubelet's ``DockerConfigJSON.HTTPHeaders`` is a ``map[string]string``: anything
    else fails ``json.Unmarshal``, so ``MakeDockerKeyring`` fails and every pull of the pod
    fails, a public image's too (review of issue 21, finding 3). The name matches in any
    case, as Go's decoder matches field names."""
    entry = {"r.example.com": {"auth": b64("u:p")}}
    for name in ("HttpHeaders", "httpheaders"):
        doc = {"auths": entry, name: headers}
        with pytest.raises(SecretFormatError) as error:
            parse_pull_secret(DOCKER_CONFIG_JSON, {".dockerconfigjson": b64(json.dumps(doc))})
        assert error.value.fatal
        assert "HttpHeaders" in str(error.value)


@pytest.mark.parametrize("headers", [None, {}, {"User-Agent": "x", "X-Empty": None}])
def test_httpheaders_go_can_unmarshal_leave_the_keyring_as_it_is(headers: object) -> None:
    doc = {"auths": {"r.example.com": {"auth": b64("u:p")}}, "HttpHeaders": headers}
    credentials = parse_pull_secret(DOCKER_CONFIG_JSON, {".dockerconfigjson": b64(json.dumps(doc))})
    assert [(c.key, c.username) for c in credentials] == [("r.example.com", "u")]


def test_a_percent_encoded_key_path_matches_as_go_decodes_it() -> None:
    """Go's ``url.Parse`` decodes ``URL.Path`` (``/te%61m`` is ``/team``), and the kubelet's
    key is ``Host + Path``; ``URLsMatchStr`` parses the key once more (review of issue 21,
    finding 7a). A bad escape fails ``url.Parse``: the kubelet skips that entry."""
    creds = [Credential(key="r.example.com/te%61m", username="u", password="p")]
    assert keyring_key("r.example.com/te%61m") == "r.example.com/team"
    assert lookup(creds, "r.example.com/team/api") == creds
    assert not lookup(creds, "r.example.com/other/api")
    twice = [Credential(key="r.example.com/te%2561m", username="u")]
    assert lookup(twice, "r.example.com/team/api") == twice  # decoded at Add, then at match
    bad = [Credential(key="r.example.com/te%zzm", username="u")]
    assert lookup(bad, "r.example.com/te%zzm/api") == []
    assert lookup(bad + creds, "r.example.com/team/api") == creds


@pytest.mark.parametrize("key", ["[2001:db8::1]", "[2001:db8::1]/team"])
def test_a_bracketed_ipv6_key_without_port_matches_nothing(key: str) -> None:
    """The kubelet's ``splitURL``: ``net.SplitHostPort("[2001:db8::1]")`` fails without a
    port, so the host keeps its brackets, and ``filepath.Match`` reads them as a character
    class: no image matches, and the kubelet pulls anonymously (review of issue 21, 7b)."""
    creds = [Credential(key=key, username="u", password="p")]
    assert lookup(creds, "[2001:db8::1]/team/api") == []
    with_port = [Credential(key="[2001:db8::1]:5000", username="u")]
    assert lookup(with_port, "[2001:db8::1]:5000/team/api") == with_port
    assert lookup(with_port, "[2001:db8::1]/team/api") == []


@pytest.mark.parametrize(
    "key",
    [
        "https://robot:Sup3r/S3cret@registry.example.com",
        "robot:Sup3r?S3cret@registry.example.com",
        "https://robot:Sup3r#S3cret@registry.example.com/v1/",
        "https://robot:1234/S3cret@registry.example.com",  # a port-like password: still a key
        # rev20d F3: urlsplit deletes tabs, CR and LF before parsing, so the netloc it gave
        # was not in the key as written and the '@' check passed; Go's url.Parse refuses
        # any control character ("invalid control character in URL").
        "https://robot:Su\tp3r/S3cret@registry.example.com",
        "https://robot:Su\np3r/S3cret@registry.example.com",
        "robot:Su\rp3r/S3cret@registry.example.com",
        "https://robot:Sup3r\x7f/S3cret@registry.example.com",
        "https://robot:Sup3r\x00S3cret@registry.example.com",
    ],
)
def test_a_password_with_a_url_delimiter_is_never_shown_or_exported(key: str) -> None:
    """``/``, ``?`` or ``#`` in the password end the URL's authority before the ``@``: the
    password used to reach messages and ``export-state``'s output as host and path."""
    from tests.unit.builders import cluster_with, container, pod, pod_spec, request
    from webhook.core.cluster import SecretInfo
    from webhook.core.config import load_config_text
    from webhook.core.keyring import UNPARSABLE_KEY, redacted_pull_secret
    from webhook.core.validate import validate

    entry = {"auth": base64.b64encode(b"robot:Sup3r/S3cret").decode()}
    data = _secret_data({key: entry})
    assert keyring_key(key) == UNPARSABLE_KEY
    credentials = parse_pull_secret(DOCKER_CONFIG_JSON, data)
    # Go's url.Parse refuses the key, so the kubelet ignores the entry: it covers nothing.
    assert lookup(credentials, "registry.example.com/team/app") == []

    config = load_config_text("privateRegistries: [registry.example.com]\n")
    secret = SecretInfo("team-a", "leaky", DOCKER_CONFIG_JSON, data)
    obj = pod(pod_spec(container("app", "registry.example.com/a:1"), secrets=["leaky"]))
    decision = validate(request(obj), config, cluster_with(secret))
    text = (decision.message or "") + "\n".join(decision.warnings)
    assert not decision.allowed  # nothing covers the private registry
    for piece in ("Sup3r", "S3cret", "robot", "1234"):
        assert piece not in text, text

    exported = base64.b64decode(redacted_pull_secret(DOCKER_CONFIG_JSON, data)[".dockerconfigjson"])
    for piece in ("Sup3r", "S3cret", "robot", "1234"):
        assert piece.encode() not in exported, exported


@pytest.mark.parametrize("key", ["", "//", "https://", "https:///", "http://", "https://@"])
def test_a_key_without_a_host_matches_nothing_and_breaks_nothing(key: str) -> None:
    """rev20d F1: a key with no host (Go's url.Parse takes it: the kubelet indexes an entry
    that matches no image) crashed the keyring (``partition('')``: "empty separator"), so
    the review answered 500 and, under failurePolicy Ignore, the pod went unchecked; the
    same key stopped ``audit -A`` and ``export-state -A``. It covers nothing; the secret's
    other entries still count."""
    from webhook.core.keyring import redacted_pull_secret

    entry = {"auth": base64.b64encode(b"robot:pw").decode()}
    data = _secret_data({key: entry, "registry.example.com": entry})
    credentials = parse_pull_secret(DOCKER_CONFIG_JSON, data)
    assert [c.key for c in lookup(credentials, "registry.example.com/team/app")] == [
        "registry.example.com"
    ]
    assert lookup(credentials, "localhost/team/app") == []
    keyring_key(key)  # no exception
    exported = redacted_pull_secret(DOCKER_CONFIG_JSON, data)[".dockerconfigjson"]
    assert b"robot" not in base64.b64decode(exported)
