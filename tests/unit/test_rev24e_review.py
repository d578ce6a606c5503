"""Fifth outside review (rev24e) of issue 24 (kubelet credential providers): findings still
open in the pure parts (``webhook.core.credprovider``).

Each test marked open_finding fails until its finding is fixed (``pytest -m open_finding``);
a fixed one loses its marker.
"""

from __future__ import annotations

import pytest

from webhook.core.credprovider import match_image_problem, redact


@pytest.mark.parametrize(
    "text",
    [
        "connecting with dbPassword=hunter2",
        "registryPassword: hunter2",
        '{"secretKey": "minio123"}',
        "clientSecret=s3cr3t!",
        '{"aadClientSecret": "short~sec"}',
        "apiKey=abc123",
    ],
)
def test_rev24e_a_camel_case_label_no_longer_hides_its_value(text: str) -> None:
    """Seen: b53953e added ``(?<![a-z])`` before _LABELLED's label (so that
    'GetAuthorizationToken on' is no label), and since then a label that ends a camelCase
    name is no label either: ``redact('dbPassword=hunter2')`` is ``'dbPassword=hunter2'``,
    ``'{"aadClientSecret": "short~sec"}'`` (azure.json's field, which acr-credential-provider
    reads) is kept whole, as are ``secretKey``/``clientSecret``/``apiKey`` values shorter
    than _TOKENISH's 24 characters. Before b53953e each was ``...=[redacted]``. The case
    the lookbehind was for is now covered by 20b759a (a bare space is no separator), so
    the lookbehind only loses secrets. Expected: the value is redacted."""
    assert "[redacted]" in redact(text), redact(text)
    for value in ("hunter2", "minio123", "s3cr3t!", "short~sec", "abc123"):
        assert value not in redact(text), redact(text)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        # a lowercase hex token under a path (a URL path, a file named by its token)
        (
            "GET /v2/auth/0123456789abcdef0123456789abcdef01234567 failed",
            "0123456789abcdef0123456789abcdef01234567",
        ),
        # a lowercase hex token with a dot (id.secret forms)
        ("token ab12cd34ef56ab12cd34ef56.ab12cd34ef56ab12", "ab12cd34ef56ab12cd34ef56.ab12"),
    ],
)
def test_rev24e_lowercase_tokens_pass_as_paths_or_host_names(text: str, secret: str) -> None:
    """Seen: _NOT_A_SECRET (b53953e, 20b759a) keeps a token-like run whole when it fully
    matches a host name (``[a-z0-9-]+(\\.[a-z0-9-]+)+``) or an absolute path of lowercase
    parts (``(/[a-z0-9._-]+)+``). Neither shape asks for a word: a 40-character lowercase
    hex token after a '/' or one with a '.' in it is kept (both were ``[redacted]`` before
    b53953e). Expected: a run that is a hex (or similar) secret is redacted even in a
    path or with a dot; e.g. host labels and path parts of letters, but not one label or
    part of 24+ hex characters."""
    assert secret not in redact(text), redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "+ skopeo inspect --creds admin:hunter2 docker://reg.example.com/app",
        "+ skopeo copy --src-creds admin:hunter2 docker://a docker://b",
        "+ skopeo inspect --creds=me:pw docker://reg.example.com/app",
    ],
)
def test_rev24e_skopeo_creds_flag_leaks_the_password(text: str) -> None:
    """Seen: _PASSWORD_FLAG knows -p/-u/--password/--pass/--user, _LABELLED knows
    'credential' but not 'creds': skopeo's ``--creds USER:PASSWORD`` (and
    ``--src-creds``/``--dest-creds``), echoed by a plugin script run with ``set -x``, keep
    the password (``--src-creds=admin:hunter2`` is redacted only because it happens to be
    24 characters long: ``--creds=me:pw`` is kept). skopeo is the tool the docs and this
    project use against registries. Expected: the password after ``--creds``/``--*-creds``
    is redacted as after ``--user``."""
    out = redact(text)
    assert "hunter2" not in out and ":pw" not in out, out


#: matchImages entries go1.26.6's ``url.Parse`` refuses and pullguard accepts.
GO_126_REFUSES = {
    # CVE-2026-25679 (go.dev/issue/77578, fixed in Go 1.26.1 and 1.25.8, not behind a
    # GODEBUG): parseHost refuses a host whose last '[' is not its first character
    # ("invalid IP-literal"); pullguard's _parse_host drops the text before the '['.
    "registry.example.com[::1]:5000": "invalid IP-literal",
    "x[::1]": "invalid IP-literal",
    # validOptionalPort takes only ASCII '0'-'9'; the bracket branch of _parse_host uses
    # str.isdigit, which takes any Unicode digit (ARABIC-INDIC DIGIT THREE here).
    "[::1]:\u0663": 'invalid port ":\u0663" after host',
}


@pytest.mark.parametrize("pattern", sorted(GO_126_REFUSES))
def test_rev24e_match_images_go_1_26_refuses_are_refused(pattern: str) -> None:
    """Seen: ``match_image_problem(pattern)`` is ``None`` for each. b53953e says it models
    go1.26's parseHost (kubelet 1.36 is built with go1.26.6), but models the CVE-2025-47912
    form (brackets from the last '[' must hold an IPv6 address) without the later
    CVE-2026-25679 rule: in go1.26.1 and later ``parseHost`` starts with ``if
    openBracketIdx := strings.LastIndex(host, "["); openBracketIdx > 0 { return "",
    errors.New("invalid IP-literal") }``. The kubelet refuses the whole document (it does
    not start), and docs/node-credentials.md says pullguard refuses what the kubelet
    refuses. Expected: a problem for each."""
    assert match_image_problem(pattern) is not None, GO_126_REFUSES[pattern]


#: Error chains the SDKs the documented plugins are built with write (Go's ``%w``
#: wrapping: "what: why: why"), with no secret in them.
SDK_ERRORS = {
    # aws-sdk-go-v2, ecr-credential-provider on a pod whose role may not be assumed
    "aws": (
        "operation error ECR: GetAuthorizationToken, get identity: get credentials: "
        "failed to refresh cached credentials, failed to retrieve credentials, operation "
        "error STS: AssumeRoleWithWebIdentity, https response error StatusCode: 403"
    ),
    # azidentity, acr-credential-provider with no managed identity on the pod
    "azure": (
        "azure: DefaultAzureCredential: failed to acquire token: ManagedIdentityCredential: "
        "no default identity is assigned to this resource"
    ),
    "aws-chain": "Error: credentials: no valid providers in chain",
}


@pytest.mark.parametrize("name", sorted(SDK_ERRORS))
def test_rev24e_a_go_error_chain_after_a_label_word_stays_readable(name: str) -> None:
    """Seen: 20b759a stopped a bare space after a label word being a separator ("token
    expired" is kept), but ':' still is, and Go's wrapped errors put ': ' after every
    step: ``redact`` gives 'get credentials: [redacted] to refresh cached credentials'
    (the 'failed' gone), 'failed to acquire token: [redacted] no default identity ...'
    (which credential type failed, the one thing the admin needs for AKS, gone) and
    'Error: credentials: [redacted] valid providers in chain' (reads as if there were
    credentials). The next word is an English word, or a CamelCase type name ending in
    ':' (the next step of the chain). Expected: these messages, which hold no secret, are
    logged as written (a labelled value that is itself a step of the chain, or a plain
    word followed by more of the sentence, is no secret)."""
    assert redact(SDK_ERRORS[name]) == SDK_ERRORS[name], redact(SDK_ERRORS[name])


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        # a plain word as the value, at the end of the line, is still a value
        ("password: hunter", "hunter"),
        ("token: failed", "failed"),
        # a cause word followed by no more of the sentence is still a value
        ("credentials: no\n", "no"),
        # a value that is not a cause word, followed by more words, is still a value
        ("password: hunter for user bob", "hunter"),
    ],
)
def test_a_labelled_word_that_does_not_start_a_cause_is_still_redacted(
    text: str, secret: str
) -> None:
    """The Go error chain rule (the fix of the test above) spares only a cause word with the
    sentence going on, or a CamelCase type name ending in ':'."""
    assert secret not in redact(text).replace("password", "").replace("credentials", "")


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        # a long flag ending in -password, its value after a space (kubectl's, any CLI's)
        (
            "+ kubectl create secret docker-registry r --docker-password hunter2",
            "hunter2",
        ),
        # set -x quotes a value with a space: the quoted value is one argument
        ("+ curl -u 'admin:hunter two' https://reg.example.com/v2/", "two"),
        ("+ docker login -u admin -p 'hunter two' reg.example.com", "two"),
    ],
)
def test_rev24e_password_flag_forms_still_leak(text: str, secret: str) -> None:
    """Seen: _PASSWORD_FLAG takes ``\\S+`` after ``-u``/``-p`` and knows only the exact
    long flags ``--password``/``--pass``/``--user``; _LABELLED needs ':' or '=' since
    20b759a. So ``--docker-password hunter2`` is kept whole, and of a value bash's
    ``set -x`` prints quoted because it holds a space (``-u 'admin:hunter two'``), only
    the part before the space is redacted: ``-u [redacted] two'``. Expected: the whole
    value is redacted (a quoted value up to its closing quote; a flag whose name ends in
    -password/-pass/-token takes the next word)."""
    out = redact(text)
    assert secret not in out, out
