"""The test runtime harness itself (tests/runtime.py): its hand-made protobuf is what a
generated CRI client would send, and it says why it cannot run instead of passing."""

from __future__ import annotations

import pytest

from tests import runtime
from tests.runtime import _strings, pull_image_request


def test_pull_image_request_is_the_cri_wire_format() -> None:
    # PullImageRequest{image: ImageSpec{image: "a/b:1"}}: field 1, length 7, holding
    # ImageSpec's field 1, length 5, "a/b:1". No auth field at all when anonymous.
    assert pull_image_request("a/b:1") == b"\x0a\x07\x0a\x05a/b:1"
    # auth (field 2) = AuthConfig{username (1), password (2)}.
    assert pull_image_request("a/b:1", "u", "pw") == (
        b"\x0a\x07\x0a\x05a/b:1" + b"\x12\x07" + b"\x0a\x01u" + b"\x12\x02pw"
    )


def test_long_fields_use_multi_byte_lengths() -> None:
    image = "r.io/" + "x" * 300 + ":1"
    encoded = pull_image_request(image)
    spec = _strings(encoded)[1]
    assert _strings(spec)[1] == image.encode()


def test_without_root_the_harness_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime.os, "geteuid", lambda: 1000)
    assert "needs root" in (runtime.runtime_missing() or "")
    monkeypatch.setattr(runtime, "CONTAINERD", None)
    assert "not installed" in (runtime.runtime_missing() or "")
