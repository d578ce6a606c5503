"""The typo guess (``suggest_registry``) never "corrects" a real registry into another one.

It once told every IBM Cloud user that ``icr.io`` "looks like a typo of 'gcr.io'" (one edit
apart, both real), and the fix it printed moved their image to Google's registry."""

from __future__ import annotations

import pytest

from webhook.core.hosts import suggest_registry


@pytest.mark.parametrize(
    "host",
    [
        "icr.io",  # IBM Cloud Container Registry
        "us.icr.io",
        "de.icr.io",
        "nvcr.io",  # NVIDIA NGC
        "lscr.io",  # LinuxServer
        "cgr.dev",  # Chainguard
        "ocir.io",  # Oracle
        "iad.ocir.io",
        "k8s.gcr.io",
        "us.gcr.io",
        "eu.gcr.io",
        "asia.gcr.io",
        "mirror.gcr.io",
        "registry.gitlab.com",
        "us-docker.pkg.dev",
        "europe-west1-docker.pkg.dev",
        "myregistry.azurecr.io",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "gcr.io",
        "ghcr.io",
        "quay.io",
    ],
)
def test_a_real_registry_is_never_called_a_typo(host: str) -> None:
    assert suggest_registry(host) is None


@pytest.mark.parametrize(
    ("host", "meant"),
    [
        ("ghrc.io", "ghcr.io"),
        ("qauy.io", "quay.io"),
        ("gcr.oi", "gcr.io"),
        ("registry.k8s.oi", "registry.k8s.io"),
        ("docker.com", "docker.io"),
    ],
)
def test_a_typo_of_a_real_registry_is_still_guessed(host: str, meant: str) -> None:
    assert suggest_registry(host) == meant
