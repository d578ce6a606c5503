"""Per-registry tables are keyed by the host as DNS and TLS see it (rev20e F6)."""

from __future__ import annotations

import pytest

from webhook.core.hosts import normal_host
from webhook.core.registry import registry_host


@pytest.mark.parametrize(
    ("written", "key"),
    [
        ("localhost:5000", "localhost:5000"),
        ("LOCALHOST:5000", "localhost:5000"),
        ("LocalHost:05000", "localhost:5000"),
        ("Registry.Example.com:443", "registry.example.com"),
        ("registry.example.com", "registry.example.com"),
        ("registry.example.com:80", "registry.example.com:80"),
        ("[2001:DB8:0::1]:5000", "[2001:db8::1]:5000"),
        ("[2001:db8::1]", "[2001:db8::1]"),
    ],
)
def test_normal_host_folds_case_ipv6_and_the_tls_port(written: str, key: str) -> None:
    assert normal_host(written) == key


@pytest.mark.parametrize(
    "written", ["docker.io", "Docker.IO", "index.docker.io", "registry-1.docker.io:443"]
)
def test_every_spelling_of_docker_hub_is_one_registry(written: str) -> None:
    assert registry_host(written) == "registry-1.docker.io"
