"""The kubelet's credential providers as data: config validation, matchImages, responses.

Table cases follow the kubelet's own tests (pkg/credentialprovider keyring_test.go
``TestURLsMatch``, plugin config_test.go ``Test_validateCredentialProviderConfig``,
plugin_test.go's cache-key cases) and its documented examples; they are written here
from the behaviour those tests check, not copied.
"""

from __future__ import annotations

import json

import pytest

from webhook.core.config import ConfigError, load_config_text
from webhook.core.credprovider import (
    GLOBAL_CACHE_KEY,
    Provider,
    ProviderConfigError,
    ResponseError,
    cache_key,
    cache_lookup_keys,
    load_provider_config_documents,
    load_provider_config_text,
    match_image,
    match_image_problem,
    parse_go_duration,
    parse_response,
    redact,
    request_bytes,
)

# --- matchImages: the kubelet's URLsMatchStr -----------------------------------------------

MATCHES = [
    # no path component
    ("*.kubernetes.io", "prefix.kubernetes.io", True),
    ("prefix.*.io", "prefix.kubernetes.io", True),
    ("prefix.kubernetes.*", "prefix.kubernetes.io", True),
    ("*-good.kubernetes.io", "prefix-good.kubernetes.io", True),
    # with path components: the pattern's path is a prefix
    ("*.kubernetes.io/blah", "prefix.kubernetes.io/blah", True),
    ("prefix.*.io/foo", "prefix.kubernetes.io/foo/bar", True),
    ("registry.io/foo", "registry.io/foobar", True),  # a string prefix, as HasPrefix
    ("registry.io/foo", "registry.io/bar", False),
    # with ports: the port must be the same
    ("*.kubernetes.io:1111/blah", "prefix.kubernetes.io:1111/blah", True),
    ("prefix.*.io:1111/foo", "prefix.kubernetes.io:1111/foo/bar", True),
    ("*.kubernetes.io:1234/blah", "prefix.kubernetes.io:1111/blah", False),
    ("prefix.*.io/foo", "prefix.kubernetes.io:1111/foo/bar", False),
    ("registry.io:8080/path", "registry.io:8080/path/app", True),
    ("registry.io:8080", "registry.io/app", False),
    # the number of labels must be equal: a glob is one label
    ("*.kubernetes.io", "kubernetes.io", False),
    ("*.*.kubernetes.io", "prefix.kubernetes.io", False),
    ("*.*.kubernetes.io", "kubernetes.io", False),
    ("*.io", "a.b.io", False),
    ("*.*.registry.io", "a.b.registry.io/app", True),
    # parts that differ
    ("kubernetes.io", "kubernetes.com", False),
    ("k*.io", "quay.io", False),
    # matching is case-sensitive, as filepath.Match
    ("GCR.io", "gcr.io/app", False),
    # the documented examples of the managed clouds
    ("*.dkr.ecr.*.amazonaws.com", "123456789012.dkr.ecr.us-east-1.amazonaws.com/app", True),
    ("*.dkr.ecr.*.amazonaws.com", "123456789012.dkr.ecr.us-east-1.amazonaws.com.cn/app", False),
    ("1234.dkr.ecr.us-east-1.amazonaws.com", "1234.dkr.ecr.us-east-1.amazonaws.com/a", True),
    ("*-docker.pkg.dev", "europe-west1-docker.pkg.dev/p/r/app", True),
    ("*.azurecr.io", "myregistry.azurecr.io/app", True),
    ("gcr.io", "gcr.io/project/app", True),
    ("gcr.io", "eu.gcr.io/project/app", False),
    # filepath.Match classes and escapes
    # a "[" in a host starts an IP literal for Go's url.Parse since go1.25.2 (CVE-2025-47912;
    # kubelet 1.36 is built with go1.26): "reg[0-9]" is refused, so it matches nothing
    ("reg[0-9].example.com", "reg7.example.com/app", False),
    ("reg[^0-9].example.com", "reg7.example.com/app", False),
    # a ? starts url.Parse's query: the host is "reg", which matches no image
    ("reg?.example.com", "reg7.example.com/app", False),
    # Go's url.Parse refuses a backslash in a host: no escapes in a host pattern
    ("reg\\*.example.com", "reg*.example.com", False),
    # a bad pattern (ErrBadPattern) matches nothing
    ("reg[.example.com", "reg[.example.com", False),
    ("reg\\", "reg\\", False),
    # IPv6 with a port
    ("[2001:db8::1]:5000", "[2001:db8::1]:5000/app", True),
    ("[2001:db8::1]:5000", "[2001:db8::1]:5001/app", False),
    # net/url's unescape(host, encodeHost) returns the host decoded: an escaped non-ASCII
    # byte in a pattern is that byte, so it matches the image that writes it plainly
    ("%C3%A9.example.com", "\u00e9.example.com/app", True),
    ("\u00e9.example.com", "%C3%A9.example.com/app", True),
    ("%C3%A9.example.com", "e.example.com/app", False),
    # an IPv6 zone (RFC 6874, introduced by %25) may escape any byte a host may hold
    ("[fe80::1%25en%30]:5000", "[fe80::1%25en0]:5000/app", True),
]  # fmt: skip


@pytest.mark.parametrize(("pattern", "image", "expected"), MATCHES)
def test_match_images_as_the_kubelet(pattern: str, image: str, expected: bool) -> None:
    assert match_image(pattern, image) is expected


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("registry.io:port", "invalid port"),
        ("*.io:*", "invalid port"),
        ("registry io", "invalid character"),
        ("registry.io/%zz", "invalid URL escape"),
        ("[2001:db8::1", "missing ']'"),
        ("registry\x7f.io", "control character"),
        ("reg{1}.io", "invalid character"),
        ("reg\\*.io", "invalid character"),
        # net/url unescape, encodeHost: "%-encoding can only be used for non-ASCII bytes"
        # (RFC 3986 page 21), %25 aside (RFC 6874)
        ("%41.dkr.ecr.us-east-1.amazonaws.com", 'invalid URL escape "%41"'),
        ("reg%2e.io", 'invalid URL escape "%2e"'),
        ("reg%7F.io", 'invalid URL escape "%7F"'),
        ("reg%4.io", 'invalid URL escape "%4."'),
        # encodeZone: an escape may not introduce a byte the host could not hold
        ("[fe80::1%25en%2F0]", 'invalid URL escape "%2F"'),
        ("[fe80::1%25en%C3%A9]", 'invalid URL escape "%C3"'),
    ],
)
def test_match_images_the_kubelet_refuses(pattern: str, problem: str) -> None:
    assert problem in (match_image_problem(pattern) or "")


@pytest.mark.parametrize(
    "pattern",
    [
        "*.azurecr.io",
        "registry.io:8080/path",
        "*.*.registry.io",
        "[::1]:5000",
        "",
        "a.io/x?y",
        "%C3%A9.example.com",
        "%25.example.com",
        "[fe80::1%25en0]:5000",
    ],
)
def test_match_images_the_kubelet_accepts(pattern: str) -> None:
    assert match_image_problem(pattern) is None


# --- Go durations ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("12h", 43200.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("300ms", 0.3),
        ("-1m", -60.0),
        ("+2s", 2.0),
        ("5", None),
        ("", None),
        ("1d", None),
        ("h", None),
        (".s", None),
        ("1h 30m", None),
        ("99999999999h", None),
    ],
)
def test_go_durations(text: str, seconds: float | None) -> None:
    got = parse_go_duration(text)
    assert got == pytest.approx(seconds) if seconds is not None else got is None


# --- CredentialProviderConfig ------------------------------------------------------------------

GOOD = """
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: ecr-credential-provider
    matchImages: ["*.dkr.ecr.*.amazonaws.com", "*.dkr.ecr.*.amazonaws.com.cn"]
    defaultCacheDuration: "12h"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    args: [get-credentials]
    env:
      - {name: AWS_PROFILE, value: node}
  - name: acr-credential-provider
    matchImages: ["*.azurecr.io"]
    defaultCacheDuration: "0"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
"""


def test_a_good_config_parses_in_order() -> None:
    config = load_provider_config_text(GOOD)
    ecr, acr = config.providers
    assert ecr.name == "ecr-credential-provider"
    assert ecr.default_cache_seconds == 43200
    assert ecr.args == ("get-credentials",)
    assert [(e.name, e.value) for e in ecr.env] == [("AWS_PROFILE", "node")]
    assert acr.default_cache_seconds == 0
    image = "111122223333.dkr.ecr.eu-west-1.amazonaws.com/app"
    assert [p.name for p in config.matching(image)] == ["ecr-credential-provider"]
    assert config.matching("docker.io/library/nginx") == []


def test_json_is_read_too() -> None:
    document = {
        "apiVersion": "kubelet.config.k8s.io/v1",
        "kind": "CredentialProviderConfig",
        "providers": [
            {
                "name": "p",
                "matchImages": ["r.io"],
                "defaultCacheDuration": "1m",
                "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            }
        ],
    }
    assert load_provider_config_text(json.dumps(document)).providers[0].name == "p"


def _problems(text: str) -> list[str]:
    with pytest.raises(ProviderConfigError) as caught:
        load_provider_config_text(text)
    return caught.value.problems


def test_every_problem_of_every_provider_is_listed() -> None:
    problems = _problems(
        """
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: a/b c
    matchImages: []
    apiVersion: credentialprovider.kubelet.k8s.io/v2
  - name: ".."
    matchImages: ["registry.io:port"]
    defaultCacheDuration: "-1m"
  - name: ok
    matchImages: [r.io]
    defaultCacheDuration: "1m"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
  - name: ok
    matchImages: [r.io]
    defaultCacheDuration: "10"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    matchImage: [typo]
"""
    )
    expected = [
        "providers[0].name: Invalid value 'a/b c': provider name cannot contain '/'",
        "providers[0].name: Invalid value 'a/b c': provider name cannot contain spaces",
        "providers[0].apiVersion: Unsupported value",
        "providers[0].matchImages: Required value: at least 1 item in matchImages is required",
        "providers[0].defaultCacheDuration: Required value",
        "providers[1].name: Invalid value '..': provider name cannot be '..'",
        "providers[1].apiVersion: Required value",
        "providers[1].matchImages[0]: Invalid value 'registry.io:port': match image is invalid",
        "providers[1].defaultCacheDuration: Invalid value '-1m': defaultCacheDuration must be "
        "greater than or equal to 0",
        'providers[3]: unknown field "matchImage"',
        "providers[3].name: Duplicate value: 'ok'",
        "providers[3].defaultCacheDuration: invalid duration '10'",
    ]
    for line in expected:
        assert any(p.startswith(line) for p in problems), (line, problems)
    assert len(problems) == len(expected)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: []\n",
         "providers: Required value: at least 1 item in plugins is required"),
        ("apiVersion: kubelet.config.k8s.io/v2\nkind: CredentialProviderConfig\n",
         "(document): apiVersion must be one of"),
        ("apiVersion: kubelet.config.k8s.io/v1\nkind: KubeletConfiguration\n",
         "(document): kind must be CredentialProviderConfig"),
        ("apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nprovider: []\n",
         '(document): unknown field "provider"'),
        ("kind: CredentialProviderConfig\nkind: CredentialProviderConfig\n",
         "(document): not valid YAML or JSON"),
        ("a: &x [1]\nb: *x\n", "(document): YAML aliases"),
        ("[1, 2]\n", "(document): must be a CredentialProviderConfig object"),
        ("x" * (256 * 1024 + 1), "(document): 262145 bytes"),
    ],
)  # fmt: skip
def test_document_problems(text: str, problem: str) -> None:
    assert any(p.startswith(problem) for p in _problems(text)), _problems(text)


def test_a_value_of_the_wrong_type_is_named_not_shown() -> None:
    problems = _problems(
        """
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: p
    matchImages: r.io
    defaultCacheDuration: 60
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    env: [{name: TOKEN, value: 12345}]
"""
    )
    assert "providers[0].matchImages: must be a list of strings, got 'r.io'" in problems
    assert any(
        p.startswith("providers[0].defaultCacheDuration: must be a duration") for p in problems
    )
    assert "providers[0].env[0].value: must be a string" in problems
    assert not any("12345" in p for p in problems)


TOKEN_PROVIDER = """
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: p
    matchImages: [r.io]
    defaultCacheDuration: "1m"
    apiVersion: {api}
    tokenAttributes:
{attrs}
"""


def test_token_attributes_validated_as_the_kubelet() -> None:
    good = TOKEN_PROVIDER.format(
        api="credentialprovider.kubelet.k8s.io/v1",
        attrs="      serviceAccountTokenAudience: sts.amazonaws.com\n"
        "      requireServiceAccount: true\n      cacheType: ServiceAccount\n"
        "      requiredServiceAccountAnnotationKeys: [eks.amazonaws.com/role-arn]\n",
    )
    token = load_provider_config_text(good).providers[0].token_attributes
    assert token is not None and token.service_account_token_audience == "sts.amazonaws.com"
    bad = TOKEN_PROVIDER.format(
        api="credentialprovider.kubelet.k8s.io/v1beta1",
        attrs="      requireServiceAccount: false\n      cacheType: Pod\n"
        "      requiredServiceAccountAnnotationKeys: [a/b/c, x]\n"
        "      optionalServiceAccountAnnotationKeys: [x, x]\n",
    )
    problems = _problems(bad)
    for line in [
        "providers[0].tokenAttributes.serviceAccountTokenAudience: Required value",
        "providers[0].tokenAttributes: Forbidden: tokenAttributes is only supported for "
        "credentialprovider.kubelet.k8s.io/v1 API version",
        "providers[0].tokenAttributes.requiredServiceAccountAnnotationKeys: Forbidden",
        "providers[0].tokenAttributes.requiredServiceAccountAnnotationKeys: Invalid value 'a/b/c'",
        "providers[0].tokenAttributes.optionalServiceAccountAnnotationKeys: Duplicate value: 'x'",
        "providers[0].tokenAttributes: Invalid value ['x']: annotation keys cannot be both",
        "providers[0].tokenAttributes.cacheType: Unsupported value: 'Pod'",
    ]:
        assert any(p.startswith(line) for p in problems), (line, problems)


def test_a_folder_merges_its_files_and_refuses_a_name_twice() -> None:
    one = GOOD
    two = GOOD.replace("acr-credential-provider", "gcp").replace("ecr-credential-provider", "ecr2")
    config = load_provider_config_documents([("/c/a.yaml", one), ("/c/b.yaml", two)])
    assert [p.name for p in config.providers] == [
        "ecr-credential-provider",
        "acr-credential-provider",
        "ecr2",
        "gcp",
    ]
    with pytest.raises(ProviderConfigError) as caught:
        load_provider_config_documents([("/c/a.yaml", one), ("/c/b.yaml", one)])
    assert any("Duplicate value: 'ecr-credential-provider'" in p for p in caught.value.problems)
    assert any(p.startswith("/c/b.yaml: providers[2]") for p in caught.value.problems)


# --- the exec protocol ---------------------------------------------------------------------------

PROVIDER = Provider(
    name="ecr",
    match_images=("*.dkr.ecr.*.amazonaws.com",),
    default_cache_seconds=600,
    api_version="credentialprovider.kubelet.k8s.io/v1",
)
IMAGE = "111122223333.dkr.ecr.us-east-1.amazonaws.com/team/app"


def _response(**fields: object) -> bytes:
    document: dict[str, object] = {
        "kind": "CredentialProviderResponse",
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "cacheKeyType": "Registry",
    }
    document.update(fields)
    return json.dumps(document).encode()


def test_the_request_is_the_kubelets() -> None:
    assert json.loads(request_bytes(PROVIDER, IMAGE)) == {
        "kind": "CredentialProviderRequest",
        "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
        "image": IMAGE,
    }


def test_auth_keys_are_matched_like_a_keyring() -> None:
    response = parse_response(
        _response(
            auth={
                "*.dkr.ecr.*.amazonaws.com": {"username": "AWS", "password": "tok-1"},
                "111122223333.dkr.ecr.us-east-1.amazonaws.com/team": {
                    "username": "AWS",
                    "password": "tok-2",
                },
                "other.example.com": {"username": "x", "password": "y"},
            },
            cacheDuration="5m",
        ),
        PROVIDER,
    )
    assert response.cache_seconds == 300
    # most specific first, the other registry's entry left out
    assert [c.password for c in response.credentials_for(IMAGE)] == ["tok-2", "tok-1"]
    assert "tok-1" not in repr(response)
    assert response.credentials_for("docker.io/library/nginx") == []


@pytest.mark.parametrize(
    ("cache_type", "expected"),
    [("Image", IMAGE), ("Registry", "111122223333.dkr.ecr.us-east-1.amazonaws.com"),
     ("Global", GLOBAL_CACHE_KEY)],
)  # fmt: skip
def test_cache_keys(cache_type: str, expected: str) -> None:
    assert cache_key(cache_type, IMAGE) == expected
    assert expected in cache_lookup_keys(IMAGE)


def test_cache_durations() -> None:
    unset = parse_response(_response(), PROVIDER)
    assert unset.cache_seconds is None and unset.cache_seconds_with(600) == 600
    zero = parse_response(_response(cacheDuration="0s"), PROVIDER)
    assert zero.cache_seconds_with(600) == 0  # explicitly 0: not cached
    assert parse_response(_response(cacheDuration="-5m"), PROVIDER).cache_seconds_with(600) == 0


SECRET = "s3cr3t-token-value-never-shown"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json " + SECRET.encode(), "not JSON"),
        (b"[]", "not a JSON object"),
        (_response(apiVersion="credentialprovider.kubelet.k8s.io/v1beta1"), "apiVersion"),
        (_response(kind="CredentialProviderRequest"), "kind"),
        (_response(cacheKeyType="Pod"), "cacheKeyType"),
        (_response(cacheKeyType=None), "cacheKeyType"),
        (_response(cacheDuration="10"), "cacheDuration"),
        (_response(Auth={"r.io": {"username": "u", "password": SECRET}}), "unknown field"),
        (_response(**{SECRET: 1}), "unknown field"),
        (_response(auth={"r.io": {"username": "u", "Password": SECRET}}), "unknown field"),
        (_response(auth={"r.io": {"username": "u", "password": 5}}), "not a string"),
        (_response(auth=[SECRET]), "not an object"),
        (b'{"kind": "a", "kind": "b"}', "repeats a field"),
        (_response(auth={f"r{i}.io": {} for i in range(257)}), "more than 256 auth entries"),
        (_response(auth={"r.io": {"password": "x" * 65537}}), "longer than"),
        (b" " * (1024 * 1024 + 1), "more than 1048576 bytes"),
    ],
)
def test_answers_the_kubelet_refuses(data: bytes, reason: str) -> None:
    with pytest.raises(ResponseError) as caught:
        parse_response(data, PROVIDER)
    assert reason in str(caught.value)
    assert SECRET not in str(caught.value)


def test_redaction() -> None:
    text = (
        "error: password=hunter2 and Authorization: Bearer abc; token "
        "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.payload.sig; env AKIAEXAMPLEKEY"
    )
    out = redact(text, ["AKIAEXAMPLEKEY"])
    for secret in ("hunter2", "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ", "AKIAEXAMPLEKEY"):
        assert secret not in out
    assert "abc" not in out
    assert out.startswith("error: password=[redacted]")
    assert redact("a b " * 3000).endswith("[cut]")
    assert len(redact("a b " * 3000)) < 2100


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            'answer {"username": "robot", "password": "Tr0ub4dor&3"}',
            'answer {"username": "robot", "password": [redacted]}',
        ),
        ('{"secret":"two words"}', '{"secret":[redacted]}'),
        ('log {\\"password\\": \\"Tr0ub4dor&3\\"}', 'log {\\"password\\": [redacted]}'),
        ("docker login -p Tr0ub4dor&3 registry", "docker login -p [redacted] registry"),
        ("login -p=Tr0ub4dor&3", "login -p=[redacted]"),
    ],
)
def test_redaction_of_a_password_written_as_json_or_a_flag(text: str, shown: str) -> None:
    """rev24 finding 4: JSON (a quote between the label and ':') and ``-p VALUE``."""
    assert redact(text) == shown


# --- pullguard's own configuration keys ----------------------------------------------------------


def test_the_provider_keys_parse() -> None:
    config = load_config_text(
        "registry:\n  imageCredentialProviderConfig: /etc/pullguard/providers.yaml\n"
        "  imageCredentialProviderBinDir: /opt/pullguard/providers\n"
    )
    assert config.registry.image_credential_provider_config == "/etc/pullguard/providers.yaml"
    assert config.registry.image_credential_provider_bin_dir == "/opt/pullguard/providers"
    default = load_config_text("")
    assert default.registry.image_credential_provider_config is None
    assert default.registry.image_credential_provider_bin_dir is None


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("registry: {imageCredentialProviderConfig: providers.yaml,"
         " imageCredentialProviderBinDir: 5}",
         ["registry.imageCredentialProviderConfig: must be an absolute path, got the string "
          "'providers.yaml'",
          "registry.imageCredentialProviderBinDir: must be a non-empty string, got a number"]),
        ("registry: {imageCredentialProviderConfig: /etc/p.yaml}",
         ["registry.imageCredentialProviderBinDir: is required with "
          "registry.imageCredentialProviderConfig (where the executables are)"]),
        ("registry: {imageCredentialProviderBinDir: /opt/p}",
         ["registry.imageCredentialProviderConfig: is required with "
          "registry.imageCredentialProviderBinDir (which providers to run)"]),
        ("registry: {imageCredentialProviderConfig: '', imageCredentialProviderBinDir: /opt/p,"
         " imageCredentialProviderBindir: /x}",
         ["registry.imageCredentialProviderBindir: unknown key (did you mean "
          "'imageCredentialProviderBinDir'?)",
          "registry.imageCredentialProviderConfig: must be a non-empty string, got the string ''"]),
    ],
)  # fmt: skip
def test_the_provider_keys_refused_with_every_problem(text: str, problems: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text)
    assert caught.value.problems == problems
