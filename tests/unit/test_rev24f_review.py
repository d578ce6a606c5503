"""Sixth outside review (rev24f) of issue 24 (kubelet credential providers): findings still
open in the pure parts (``webhook.core.credprovider``).

Each test marked open_finding fails until its finding is fixed (``pytest -m open_finding``);
a fixed one loses its marker.
"""

from __future__ import annotations

import pytest

from webhook.core.credprovider import redact


@pytest.mark.parametrize(
    "host",
    [
        # ACR login servers: 5-50 lowercase letters and digits, then .azurecr.io
        "myregistry2024prodwesteurope.azurecr.io",
        "contosoplatformregistry01.azurecr.io",
    ],
)
def test_rev24f_a_long_registry_label_with_a_digit_is_taken_for_a_token(host: str) -> None:
    """Seen: 9ca10d3's ``_SECRET_PART`` (24+ letters and digits with a digit, or 16+ hex
    digits, anywhere in a run) is checked before a host name is kept, so the DNS failure of
    acr-credential-provider for an ACR whose name is 24+ characters with a digit (Azure
    allows 5-50 alphanumerics, and 'team2024prod...' names are common) is logged as
    ``dial tcp: lookup [redacted] no such host``: the endpoint an admin needs, the one
    rev24c F3b made readable (b53953e), is gone again. A registry name is no secret: it is
    in every image reference of the pod. Expected: a host name of DNS labels stays, as for
    shorter names (``lookup api.ecr.us-east-1.amazonaws.com: no such host`` is kept)."""
    text = redact(f"dial tcp: lookup {host}: no such host")
    assert f"lookup {host}: no such host" in text, text
