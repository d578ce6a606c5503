"""deepjson: JSON read past Python's recursion limit as Go's decoder reads it (rev20e F1)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook.core.deepjson import GO_MAX_DEPTH, KEPT_DEPTH, DeepJSONError, loads, shallow

_SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_VALUES, st.booleans())
def test_a_shallow_document_is_kept_as_it_is(value: object, spaced: bool) -> None:
    text = json.dumps(value, indent=1 if spaced else None)
    assert json.loads(shallow(text)) == value


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet='{}[]",:01 tfrueals\\n', max_size=24))
def test_shallow_accepts_exactly_what_json_accepts(text: str) -> None:
    try:
        json.loads(text)
        valid = True
    except ValueError:
        valid = False
    try:
        shallow(text)
        accepted = True
    except DeepJSONError:
        accepted = False
    assert accepted == valid, text


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", "[1,]", "{} {}", '{"a" 1}', "[}", ""])
def test_what_go_refuses_is_refused(text: str) -> None:
    with pytest.raises(DeepJSONError):
        shallow(text)


@pytest.mark.parametrize("depth", [KEPT_DEPTH + 1, 1_500, GO_MAX_DEPTH - 1])  # +1: the object
def test_deep_containers_are_cut_and_the_rest_kept(depth: int) -> None:
    text = '{"auths": {"h": {"auth": "x"}}, "x": ' + "[" * depth + "]" * depth + "}"
    assert loads(text)["auths"] == {"h": {"auth": "x"}}
    assert loads(text.encode())["auths"] == {"h": {"auth": "x"}}


def test_deeper_than_go_reads_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="deeper than 10000"):
        loads("[" * (GO_MAX_DEPTH + 1) + "]" * (GO_MAX_DEPTH + 1))


def test_a_deep_original_images_annotation_is_read_as_none_recorded() -> None:
    """A tenant writes the pod's annotations: one nested 5,000 deep raised RecursionError
    (not a ValueError) in every review that read it: a 500, admitted unchecked."""
    from webhook.core.mutate import ORIGINAL_IMAGES_ANNOTATION, recorded_originals

    deep = "[" * 5_000 + "]" * 5_000
    pod = {"metadata": {"annotations": {ORIGINAL_IMAGES_ANNOTATION: deep}}}
    assert recorded_originals(pod) == {}


def test_a_deep_registry_error_body_is_no_error_words() -> None:
    from webhook.core.registry import error_words, is_manifest

    deep = ("[" * 5_000 + "]" * 5_000).encode()
    assert error_words(deep) == ""
    assert is_manifest(deep) is False
