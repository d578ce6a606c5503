"""Third outside review (rev24c) of issue 24 (kubelet credential providers): findings still
open in the pure parts (``webhook.core.credprovider``).

Each test marked open_finding fails until its finding is fixed (``pytest -m open_finding``);
a fixed one loses its marker.
"""

from __future__ import annotations

import json

import pytest

from webhook.core.credprovider import match_image_problem, redact


def test_rev24c_a_password_with_an_at_sign_in_a_url_on_stderr_is_redacted_whole() -> None:
    """Seen: ``redact('GET https://admin:P@ssw0rd@registry.example.com/v2/: 401')`` is
    ``'GET https://admin:[redacted]@ssw0rd@[redacted] 401'``: the user-information pattern
    stops the password at its first ``@``, and the rest of it ("ssw0rd") reaches the log.
    Go's ``url.Parse`` and every URL parser take the *last* ``@`` of the authority as the
    end of the user information, and ``@`` is among the symbols people put in passwords.
    Expected: nothing of the password is left."""
    text = redact("GET https://admin:P@ssw0rd@registry.example.com/v2/: 401 Unauthorized")
    assert "ssw0rd" not in text, text
    assert "P@ss" not in text, text


def test_rev24c_an_access_denied_on_stderr_keeps_the_role_and_the_missing_permission() -> None:
    """Seen: the ECR plugin's usual failure on a role without the permission,
    ``AccessDeniedException: User: arn:aws:sts::123456789012:assumed-role/pullguard/abc is
    not authorized to perform: ecr:GetAuthorizationToken on resource: *``, reaches the log as
    ``AccessDeniedException: User: [redacted] is not authorized to perform: [redacted]
    [redacted] resource: *``: the role ARN and the action are long runs (token-like), and
    "Token on" reads as a label "token" with the value "on". docs/node-credentials.md sends
    the admin to this log line to find why pullguard's role does not see what the nodes
    see; it no longer says which role or which permission. An ARN and an IAM action are no
    secret. Expected: the role ARN and ``ecr:GetAuthorizationToken`` kept (a password
    still redacted)."""
    stderr = (
        "operation error ECR: GetAuthorizationToken, AccessDeniedException: User: "
        "arn:aws:sts::123456789012:assumed-role/pullguard/abc is not authorized to perform: "
        "ecr:GetAuthorizationToken on resource: * because no identity-based policy allows it"
    )
    text = redact(stderr)
    assert "arn:aws:sts::123456789012:assumed-role/pullguard/abc" in text, text
    assert "perform: ecr:GetAuthorizationToken on resource" in text, text


def test_rev24c_a_dns_failure_on_stderr_keeps_the_endpoint_it_could_not_reach() -> None:
    """Seen: ``redact('... dial tcp: lookup api.ecr.us-east-1.amazonaws.com: no such
    host')`` is ``'... dial tcp: lookup [redacted] no such host'``: every run of 24 or more
    host-name characters counts as a token, so the endpoint the plugin could not resolve (a
    missing VPC endpoint or DNS rule, the usual reason pullguard's pod fails where nodes
    work) is gone from the only line that says it. Expected: the endpoint kept."""
    text = redact(
        "operation error ECR: GetAuthorizationToken, https response error: Post "
        '"https://api.ecr.us-east-1.amazonaws.com/": dial tcp: lookup '
        "api.ecr.us-east-1.amazonaws.com: no such host"
    )
    assert "lookup api.ecr.us-east-1.amazonaws.com: no such host" in text, text


#: Labelled forms ``redact`` lets through whole: a plural or longer label (the label words
#: must be followed by the separator at once), and JSON's escaped quote inside a value.
LABELLED_LEAKS = [
    "error: passphrase: Sesame99 refused",
    "using secrets=Sesame99 from the environment",
    "credentials: admin:Sesame99 rejected by 127.0.0.1:5000",
    "tokens: Sesame99",
    json.dumps({"username": "admin", "password": 'Ses"ame99'}),
]


@pytest.mark.parametrize("stderr", LABELLED_LEAKS)
def test_rev24c_more_labelled_forms_of_a_password_on_stderr_are_redacted(stderr: str) -> None:
    """Seen: each reaches the log with the password ("Sesame99", 8 characters: too short
    for the token-like rule); the JSON one keeps ``ame99`` after the escaped quote
    (``json.dumps`` writes a password holding ``"`` as ``\\"``). A failed plugin's stderr
    has no known password to replace (rev24b F2), so only these patterns stand in front of
    the log (issue 24 item 2: a credential never appears in a log). Expected: no
    ``ame99`` in the redacted text."""
    assert "ame99" not in redact(stderr), redact(stderr)


#: matchImages entries Go 1.26's ``url.Parse`` (the kubelet v1.36 is built with go1.26; the
#: kube-apiserver v1.36.2 here says go1.26.6) refuses, and pullguard accepts. Since the fix of
#: CVE-2025-47912 (Go 1.24.8, 1.25.2) ``parseHost`` takes brackets only at the start of the
#: host and around an IPv6 address (``netip.ParseAddr``, not IPv4); ``validUserinfo`` refuses
#: any rune outside its ASCII set, and the user information is unescaped (a bad escape fails).
GO_REFUSES = {
    "[1.2.3.4]:5000": "invalid IP-literal",
    "[registry.example.com]": 'invalid host: ParseAddr("registry.example.com")',
    "registry[12].example.com": "invalid IP-literal",
    "*.dkr.ecr.[a-z]*.amazonaws.com": "invalid IP-literal",
    "\u00fc@registry.example.com": "net/url: invalid userinfo",
    "a%zz@registry.example.com": 'invalid URL escape "%zz"',
}


@pytest.mark.parametrize("pattern", sorted(GO_REFUSES))
def test_rev24c_match_images_the_kubelet_refuses_are_refused(pattern: str) -> None:
    """Seen: ``match_image_problem(pattern)`` is ``None`` for each (and ``Provider.globs``
    compiles ``registry[12]`` into a character class that matches ``registry1...``). The
    kubelet refuses a document with any of them (``match image is invalid: ...``, the
    error in ``GO_REFUSES``) and does not start; issue 24 item 1 asks for the kubelet's own
    validation, and docs/node-credentials.md says pullguard refuses what the kubelet
    refuses. Expected: a problem for each."""
    assert match_image_problem(pattern) is not None, GO_REFUSES[pattern]


class _NoProviders:
    def provide(self, image: str, timeout: float, tenant: str | None = None) -> list[object]:
        return []


def test_rev24c_the_cli_bounds_an_objects_plugin_runs_as_admission_bounds_a_reviews(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Seen: ``livecheck.per_object`` (check, diagnose, audit) gives an object's plugin runs
    the whole ``registry.timeoutSeconds``; admission (``edge.app._review_node_credentials``)
    gives a review's ``registry.timeoutSeconds - ANSWER_MARGIN_SECONDS`` (0.15 s less). A
    plugin that answers in between (1.9 s of a 2 s budget: a cold ECR plugin on a busy
    node) is a warning at admission ("no answer within 1.8 s", the tag admitted) and an
    answer in ``check``, which then denies a tag never pushed: CI says deny where admission
    admits. rev24 F7's fix says compose uses "admission's own bound". Expected: the same
    deadline for the same start."""
    from types import SimpleNamespace

    from webhook.compose.livecheck import per_object
    from webhook.core.config import load_config_text
    from webhook.edge.app import _review_node_credentials

    config = load_config_text("registry:\n  timeoutSeconds: 2\n")
    monkeypatch.setattr("time.perf_counter", lambda: 1000.0)
    cli = per_object(_NoProviders(), config)
    admission = _review_node_credentials(
        SimpleNamespace(node_credentials=_NoProviders()),  # type: ignore[arg-type]
        1000.0,
        config,
    )
    assert cli is not None and admission is not None
    assert cli.deadline == admission.deadline, (cli.deadline, admission.deadline)  # type: ignore[attr-defined]
