"""``pullguard ref`` as a user runs it: a real subprocess, argv and stdin."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", "ref", *args],
        input=stdin,
        capture_output=True,
        check=False,
        timeout=60,
    )


def test_json_fields_and_exit_zero_when_all_valid() -> None:
    result = run("--json", "nginx:1.25", "ghcr.io/acme/app@sha256:" + "a" * 64)
    assert result.returncode == 0, result.stderr
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert first == {
        "input": "nginx:1.25",
        "valid": True,
        "error": None,
        "name": "docker.io/library/nginx",
        "domain": "docker.io",
        "path": "library/nginx",
        "tag": "1.25",
        "digest": None,
        "familiar": "nginx:1.25",
        "suggestion": None,
    }
    assert second["digest"] == "sha256:" + "a" * 64
    assert second["tag"] is None


def test_exit_one_when_any_is_invalid_and_order_is_kept() -> None:
    result = run("--json", "nginx", "Nginx", "busybox")
    assert result.returncode == 1
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["input"] for r in reports] == ["nginx", "Nginx", "busybox"]
    assert [r["valid"] for r in reports] == [True, False, True]
    assert "lowercase" in reports[1]["error"]
    assert reports[1]["suggestion"] == "nginx"


def test_stdin_lines_are_taken_exactly_as_written() -> None:
    # Only "\n" ends a line: a "\r" before it, or a lone "\r", belongs to the reference.
    stdin = b"nginx\nalpine\r\n\nquay.io/a/b\rc\nlast-without-newline"
    result = run("--json", stdin=stdin)
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["input"] for r in reports] == [
        "nginx",
        "alpine\r",
        "",
        "quay.io/a/b\rc",
        "last-without-newline",
    ]
    assert [r["valid"] for r in reports] == [True, False, False, False, True]
    assert result.returncode == 1


def test_undecodable_bytes_are_judged_not_crashed_on() -> None:
    result = run("--json", stdin=b"ngi\xffnx\n")
    assert result.returncode == 1
    (report,) = (json.loads(line) for line in result.stdout.splitlines())
    assert report["valid"] is False
    assert report["error"]


def test_text_output_names_problem_and_fix() -> None:
    result = run("docker.io/Library/Nginx:1.25")
    assert result.returncode == 1
    out = result.stdout.decode()
    assert "repository name must be lowercase" in out
    assert "docker.io/library/nginx:1.25" in out


@pytest.mark.parametrize(
    ("image", "registry", "expected"),
    [
        ("my-regisry.com/team/app:1", "my-registry.com", "my-registry.com/team/app:1"),
        ("ghrc.io/acme/app", None, "ghcr.io/acme/app"),
        ("docker.com/library/nginx", None, "docker.io/library/nginx"),
    ],
)
def test_registry_typos_are_flagged_but_stay_valid(
    image: str, registry: str | None, expected: str
) -> None:
    args = ["--json", image] + (["--registry", registry] if registry else [])
    result = run(*args)
    assert result.returncode == 0  # the runtime accepts it; only the host looks wrong
    report = json.loads(result.stdout)
    assert report["valid"] is True
    assert report["suggestion"] == expected
