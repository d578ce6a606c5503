"""rev24g: outside review of this session's issue-24 fixes (redaction)."""

from webhook.core.credprovider import redact


def test_a_token_shaped_as_a_host_name_is_still_redacted() -> None:
    # 6e1bb4a (rev24f F4) keeps any run that fullmatches a host name with a letters-only last
    # label, checking only for 16+ hex digits; before, a 24+ letters-and-digits part with a
    # digit (_SECRET_PART) was redacted. A lowercase token followed by ".token" now leaks.
    token = "x7k2m9p4q8r1s5t3v6w0y2z4a8b1q"
    out = redact(f"login as {token}.token ok")
    assert token not in out


def test_a_passphrase_starting_with_a_cause_word_is_redacted() -> None:
    # c66a8cd: a labelled value that is a cause word followed by more lowercase words is
    # kept as a Go error's next step; a passphrase of words ("no way in hell") is logged whole.
    # (Before c66a8cd only its first word was redacted, so the rest leaked already.)
    out = redact("password: no way in hell")
    assert "no way in hell" not in out
    out = redact("the password is a horse battery staple")
    assert "horse battery staple" not in out
