"""``pullguard serve``: usage errors in its arguments are said and end with exit status 2,
before anything starts (no kubeconfig is read, no certificate written, no server bound)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import checkout_env


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cert", "tls.crt"], "pullguard serve: give both --cert and --key, or neither\n"),
        (["--key", "tls.key"], "pullguard serve: give both --cert and --key, or neither\n"),
        (
            ["--webhook-url", "http://pullguard.example:8443"],
            "pullguard serve: --webhook-url must be https://HOST[:PORT]\n",
        ),
        (
            ["--dev", "--client-ca", "missing-ca.pem"],
            "pullguard serve: --client-ca missing-ca.pem not found\n",
        ),
        (
            ["--dev", "--credential-provider-bin-dir", "plugins"],
            "pullguard serve: --credential-provider-bin-dir plugins must be an absolute path\n",
        ),
    ],
)
def test_a_usage_error_is_said_with_exit_status_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "webhook", "serve", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=checkout_env(KUBECONFIG=str(tmp_path / "no-such-kubeconfig")),
        check=False,
    )
    assert (result.returncode, result.stderr, result.stdout) == (2, message, "")
    assert list(tmp_path.iterdir()) == []  # no dev certificate, nothing written


def test_no_namespace_for_the_configmap_is_refused_before_gunicorn_starts(tmp_path: Path) -> None:
    """rev23: without ``--config`` the workers read the ConfigMap in pullguard's namespace.
    When that namespace cannot be told, ``serve`` says so and ends with 2 before any
    kubeconfig is read or gunicorn starts (it was a SystemExit inside each worker)."""
    result = subprocess.run(
        [sys.executable, "-m", "webhook", "serve", "--cert", "tls.crt", "--key", "tls.key"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=checkout_env(KUBECONFIG=str(tmp_path / "no-such-kubeconfig"), POD_NAMESPACE=""),
        check=False,
    )
    assert (result.returncode, result.stderr, result.stdout) == (
        2,
        "pullguard serve: cannot tell the webhook's namespace; pass --namespace or set "
        "POD_NAMESPACE\n",
        "",
    )
    assert list(tmp_path.iterdir()) == []


def test_serve_hands_compose_a_typed_frozen_options_value() -> None:
    """rev23: compose takes :class:`ServeArguments`, not the untyped ``argparse.Namespace``;
    every argument of ``serve`` is one of its fields, and nothing writes back into it."""
    import dataclasses

    from webhook.cli import build_parser
    from webhook.cli.serve import serve_options
    from webhook.compose.serving import ServeArguments

    args = build_parser().parse_args(["serve", "--dev", "--port", "9443", "--workers", "2"])
    options = serve_options(args)
    assert isinstance(options, ServeArguments)
    dests = set(vars(args)) - {"func", "command"}
    assert dests == {f.name for f in dataclasses.fields(ServeArguments)}
    assert (options.dev, options.port, options.workers, options.config) == (True, 9443, 2, None)
    assert options.cert_dir == Path("/var/run/pullguard/certs")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.cert = "tls.crt"  # type: ignore[misc]


def test_the_credential_provider_folders_are_fixed_at_start() -> None:
    """rev24 finding 6: the folders serve may run plugins from are its flag (repeatable),
    by default the component's mount and CONTRACT.md's example folder, never what the
    ConfigMap names; ``--config FILE`` (the operator's file, trusted like a flag) may name
    any folder unless the flag is given."""
    from webhook.cli import build_parser
    from webhook.cli.serve import serve_options
    from webhook.core.nodecreds import DEFAULT_SERVE_BIN_DIRS

    parse = build_parser().parse_args
    assert serve_options(parse(["serve", "--dev"])).credential_provider_bin_dirs == (
        DEFAULT_SERVE_BIN_DIRS
    )
    assert DEFAULT_SERVE_BIN_DIRS == (
        "/var/lib/pullguard/credential-provider-bin",
        "/etc/pullguard/credential-provider-bin",
    )
    from_file = parse(["serve", "--config", "/etc/pullguard/config.yaml"])
    assert serve_options(from_file).credential_provider_bin_dirs is None
    pinned = parse(["serve", "--config", "c.yaml", "--credential-provider-bin-dir", "/a"])
    assert serve_options(pinned).credential_provider_bin_dirs == ("/a",)
    given = parse(
        [
            "serve",
            "--dev",
            *("--credential-provider-bin-dir", "/a"),
            *("--credential-provider-bin-dir", "/b"),
        ]
    )
    assert serve_options(given).credential_provider_bin_dirs == ("/a", "/b")
