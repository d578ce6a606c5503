"""The image-reference engine against the runtime's grammar, case for case."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.unit import go_reference_oracle as go
from webhook.core.reference import (
    DEFAULT_DOMAIN,
    InvalidReference,
    Reference,
    parse,
    parse_or_none,
    split_docker_domain,
)

H64 = "0123456789abcdef" * 4
SHA = "sha256:" + H64

# input -> (domain, path, tag, digest, familiar)
VALID = [
    ("nginx", "docker.io", "library/nginx", None, None, "nginx"),
    ("nginx:1.25", "docker.io", "library/nginx", "1.25", None, "nginx:1.25"),
    ("bitnami/redis", "docker.io", "bitnami/redis", None, None, "bitnami/redis"),
    ("index.docker.io/x", "docker.io", "library/x", None, None, "x"),
    ("index.docker.io/library/debian", "docker.io", "library/debian", None, None, "debian"),
    ("docker.io/library/foo/bar", "docker.io", "library/foo/bar", None, None, "library/foo/bar"),
    ("library/ubuntu", "docker.io", "library/ubuntu", None, None, "ubuntu"),
    ("localhost/app", "localhost", "app", None, None, "localhost/app"),
    ("localhost:5000/a/b:c", "localhost:5000", "a/b", "c", None, "localhost:5000/a/b:c"),
    ("127.0.0.1:5000/debian", "127.0.0.1:5000", "debian", None, None, "127.0.0.1:5000/debian"),
    ("[2001:db8::1]:5000/app", "[2001:db8::1]:5000", "app", None, None, "[2001:db8::1]:5000/app"),
    ("[fc00::1]:5000/docker", "[fc00::1]:5000", "docker", None, None, "[fc00::1]:5000/docker"),
    ("test-com:8080/foo", "test-com:8080", "foo", None, None, "test-com:8080/foo"),
    ("xn--n3h.com/foo", "xn--n3h.com", "foo", None, None, "xn--n3h.com/foo"),
    ("test_com/foo", "docker.io", "test_com/foo", None, None, "test_com/foo"),
    # No slash: a host:port is read as name:tag, exactly as the runtime reads it.
    ("192.168.0.1:80", "docker.io", "library/192.168.0.1", "80", None, "192.168.0.1:80"),
    ("localhost:5000", "docker.io", "library/localhost", "5000", None, "localhost:5000"),
    # Upper case in the first component makes it a host (upstream normalize_test.go).
    ("Foo/bar", "Foo", "bar", None, None, "Foo/bar"),
    ("DOCKER/docker", "DOCKER", "docker", None, None, "DOCKER/docker"),
    # A first component taken for a host but not a valid one falls back to a path; the
    # runtime then has no domain at all.
    ("a_b.c/foo", "", "a_b.c/foo", None, None, "a_b.c/foo"),
    ("dock__er/docker", "docker.io", "dock__er/docker", None, None, "dock__er/docker"),
    (
        "docker---rules/docker",
        "docker.io",
        "docker---rules/docker",
        None,
        None,
        "docker---rules/docker",
    ),
    (f"ghcr.io/acme/app@{SHA}", "ghcr.io", "acme/app", None, SHA, f"ghcr.io/acme/app@{SHA}"),
    (
        f"busybox:latest@{SHA}",
        "docker.io",
        "library/busybox",
        "latest",
        SHA,
        f"busybox:latest@{SHA}",
    ),
    (
        "x@sha384:" + "a" * 96,
        "docker.io",
        "library/x",
        None,
        "sha384:" + "a" * 96,
        "x@sha384:" + "a" * 96,
    ),
    (
        "x@sha512:" + "b" * 128,
        "docker.io",
        "library/x",
        None,
        "sha512:" + "b" * 128,
        "x@sha512:" + "b" * 128,
    ),
    ("a:" + "T" * 128, "docker.io", "library/a", "T" * 128, None, "a:" + "T" * 128),
    ("a:_x.Y-z", "docker.io", "library/a", "_x.Y-z", None, "a:_x.Y-z"),
    ("ghcr.io/" + "a" * 255, "ghcr.io", "a" * 255, None, None, "ghcr.io/" + "a" * 255),
    ("docker.io/" + H64, "docker.io", "library/" + H64, None, None, H64),
    # The runtime's familiar form can read back as something else: "0.0/0" names host "0.0".
    # pullguard never writes familiar forms into pods, only fully qualified ones.
    ("index.docker.io/0.0/0", "docker.io", "0.0/0", None, None, "0.0/0"),
    (
        "quay.io/prometheus/node-exporter:v1.8.0",
        "quay.io",
        "prometheus/node-exporter",
        "v1.8.0",
        None,
        "quay.io/prometheus/node-exporter:v1.8.0",
    ),
]

# input -> words the error must contain
INVALID = [
    ("", "empty"),
    (" nginx", "whitespace"),
    ("nginx\n", "whitespace"),
    ("nginx\t", "whitespace"),
    ("docker.io/Library/Nginx:1.25", "must be lowercase"),
    ("docker/Docker", "must be lowercase"),
    ("NGINX", "must be lowercase"),
    ("nginx:", "empty tag"),
    ("nginx/", "ends with '/'"),
    ("docker///docker", "empty component"),
    ("-docker", "must start and end"),
    ("docker-/docker", "must start and end"),
    ("____/____", "must start and end"),
    ("dock..er/docker", "registry host"),  # a "." makes it a host
    ("dock..er/docker", "registry host"),  # a "." makes it a host
    ("[fc00::1]", "only a registry host"),
    ("[fc00::1]:5000", "only a registry host"),
    ("fc00::1:5000/debian", "brackets"),
    ("[fe80::1%eth0]:5000/debian", "IPv6"),
    ("[2001:db8:3:4::192.0.2.33]:5000/debian", "IPv6"),
    ("example.com:port/app", "port"),
    ("a:" + "t" * 129, "tag longer than 128 characters"),
    ("a:-x", "must start with"),
    ("a:x+y", "contains '+'"),
    ("a@sha256:" + H64[:-1], "digest sha256 needs 64 hex digits, got 63"),
    ("a@sha512:" + H64, "digest sha512 needs 128 hex digits, got 64"),
    ("a@sha256:" + H64.upper(), "lower-case hex"),
    ("a@md5:" + "a" * 32, "not supported"),
    ("a@sha256", "algorithm:hex"),
    ("a@", "empty digest"),
    ("a@b@c", "more than one '@'"),
    (H64, "64-character hex"),
    ("a" * 256, "at most 255"),
    ("ghcr.io/" + "a" * 256, "at most 255"),
    ("https://ghcr.io/acme/app", "'https://'"),
    ("docker pull nginx:1.25", "whitespace"),
    ("nginx:1.25\u2013alpine", "non-ASCII"),
    ("n\u00e9inx", "non-ASCII"),
    ("a:1:2", "more than one ':'"),
    ("https://github.com/docker/docker", "'https://'"),
]

SUGGESTIONS = [
    ("docker.io/Library/Nginx:1.25", "docker.io/library/nginx:1.25"),
    ("NGINX:Latest", "nginx:Latest"),
    ("MyReg.example.com/Team/App:V1", "MyReg.example.com/team/app:V1"),
    (" nginx:1.25 ", "nginx:1.25"),
    ("nginx:1.25\n", "nginx:1.25"),
    ("docker pull nginx:1.25", "nginx:1.25"),
    ("https://ghcr.io/acme/app:1", "ghcr.io/acme/app:1"),
    ("http://localhost:5000/app/", "localhost:5000/app"),
    ("nginx:", "nginx"),
    ("ghcr.io/acme/app/", "ghcr.io/acme/app"),
    ("ghcr.io/acme//app", "ghcr.io/acme/app"),
    ("nginx:1.25\u2013alpine", "nginx:1.25-alpine"),
    ("a@sha256:" + H64.upper(), "a@sha256:" + H64),
]


@pytest.mark.parametrize(("value", "domain", "path", "tag", "digest", "familiar"), VALID)
def test_valid_references(
    value: str, domain: str, path: str, tag: str | None, digest: str | None, familiar: str
) -> None:
    ref = parse(value)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert ref.familiar == familiar
    assert ref.name == (f"{domain}/{path}" if domain else path)
    assert go.parse_normalized_named(value) == (domain, path, tag or "", digest or "")


@pytest.mark.parametrize(("value", "words"), INVALID)
def test_invalid_references_say_what_is_wrong(value: str, words: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        parse(value)
    assert words in caught.value.reason
    assert parse_or_none(value) is None
    with pytest.raises(go.GoError):
        go.parse_normalized_named(value)


@pytest.mark.parametrize(("value", "suggestion"), SUGGESTIONS)
def test_suggestions_are_plain_corrections(value: str, suggestion: str) -> None:
    with pytest.raises(InvalidReference) as caught:
        parse(value)
    assert caught.value.suggestion == suggestion
    assert f"did you mean {suggestion!r}" in str(caught.value)


def test_no_suggestion_when_no_correction_is_plain() -> None:
    for value in ("a:" + "t" * 129, "a@md5:" + "a" * 32, "n\u00e9inx", "-docker"):
        with pytest.raises(InvalidReference) as caught:
            parse(value)
        assert caught.value.suggestion is None, value


# --- Properties ---------------------------------------------------------------------------

# Characters that exercise every rule of the grammar, plus a few that break it.
GRAMMAR_ALPHABET = "ab09AZ._-__/:@[]" + "x" * 4 + "/" * 2 + "\n \u00e9\u212a"
reference_like = st.text(alphabet=GRAMMAR_ALPHABET, max_size=40)


@st.composite
def structured_references(draw: st.DrawFn) -> str:
    """Mostly-valid references built from the grammar's parts, then lightly damaged."""
    label = st.text(alphabet="abcAB09-", min_size=1, max_size=6)
    host = draw(
        st.one_of(
            st.just(""),
            st.builds(lambda *ls: ".".join(ls) + "/", label, label),
            st.just("localhost/"),
            st.builds(lambda h, p: f"{h}:{p}/", label, st.integers(0, 99999)),
            st.just("[2001:db8::1]:5000/"),
            st.just("[::1]/"),
            st.just("index.docker.io/"),
            st.just("docker.io/"),
            label.map(lambda s: s + "/"),
        )
    )
    component = st.text(alphabet="ab09._-", min_size=1, max_size=8)
    path = "/".join(draw(st.lists(component, min_size=1, max_size=3)))
    tag = draw(
        st.one_of(
            st.just(""), st.text(alphabet="aZ09_.-", min_size=0, max_size=5).map(lambda t: ":" + t)
        )
    )
    digest = draw(
        st.one_of(
            st.just(""),
            st.just("@" + SHA),
            st.integers(60, 66).map(lambda n: "@sha256:" + ("ab" * 40)[:n]),
            st.just("@sha512:" + "c" * 128),
            st.just("@md5:" + "d" * 32),
        )
    )
    return host + path + tag + digest


def _agree(value: str) -> None:
    ours = parse_or_none(value)
    try:
        theirs: tuple[str, str, str, str] | None = go.parse_normalized_named(value)
    except go.GoError:
        theirs = None
    if theirs is None:
        assert ours is None, f"{value!r}: runtime rejects, we accept {ours}"
    else:
        assert ours is not None, f"{value!r}: runtime accepts {theirs}, we reject"
        assert (ours.domain, ours.path, ours.tag or "", ours.digest or "") == theirs


@settings(max_examples=3000, deadline=None)
@given(reference_like)
@example("a_b.c/foo")
@example("Foo/bar:Tag")
def test_agrees_with_runtime_on_arbitrary_strings(value: str) -> None:
    _agree(value)


@settings(max_examples=1500, deadline=None)
@given(structured_references())
def test_agrees_with_runtime_on_structured_references(value: str) -> None:
    _agree(value)


@settings(max_examples=500, deadline=None)
@given(structured_references())
@example("index.docker.io/0.0/0")
@example("docker.io/localhost/x:1")
def test_formatting_and_parsing_again_gives_the_same_reference(value: str) -> None:
    ref = parse_or_none(value)
    if ref is None:
        return
    assert parse(str(ref)) == ref
    assert parse(ref.name) == Reference(ref.domain, ref.path)
    # The familiar form round-trips unless its first component is read as a host, an
    # ambiguity of the runtime's own familiarizeName (see the "0.0/0" row above).
    if split_docker_domain(ref.familiar_name)[0] == ref.domain or ref.domain != DEFAULT_DOMAIN:
        assert parse(ref.familiar) == ref
    else:
        assert ref.familiar_name == ref.path


@settings(max_examples=1000, deadline=None)
@given(st.one_of(st.text(), reference_like, structured_references()))
@example("\udcff")
@example("a" * 100_000)
@example(":" * 1000)
@example("[" + ":" * 5000 + "]/a")
def test_never_raises_anything_but_its_own_error(value: str) -> None:
    try:
        parse(value)
    except InvalidReference as error:
        assert error.reason
        if error.suggestion is not None:
            assert parse_or_none(error.suggestion) is not None


def test_python_regex_traps_are_closed() -> None:
    # \w is Unicode in Python; $ matches before a trailing newline.
    assert parse_or_none("a:\u00e9") is None
    assert parse_or_none("a:t\n") is None
    assert parse_or_none("a\n") is None
    assert parse_or_none("a:\u0661") is None  # Arabic-Indic digit one
    assert parse_or_none("\u212aube/x") is None  # Kelvin sign lower-cases to ASCII "k"
