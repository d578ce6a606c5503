"""Configuration documents in bulk (hypothesis): every document is either applied or refused
with its problems listed, never anything else; a refused one leaves the last good in force."""

from __future__ import annotations

import os
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhook.core.config import Config, ConfigError, load_config_text
from webhook.edge.configsource import ConfigStore
from webhook.edge.metrics import Metrics

EXAMPLES = int(os.environ.get("PULLGUARD_FUZZ_EXAMPLES", "300"))

#: Every key the configuration knows, at its level, so generated documents reach the
#: validators behind them instead of stopping at "unknown key".
TOP = [
    "checks", "exemptNamespaces", "namespaceModeLabel", "privateRegistries", "mirrors",
    "defaultPullSecrets", "mutation", "registry",
]  # fmt: skip
CHECKS = ["reference", "pullSecrets", "pullPolicy", "registry", "platform"]
NESTED = {
    "checks": CHECKS,
    "mutation": ["podTemplates", "warnings"],
    "registry": [
        "timeoutSeconds", "cacheTTLSeconds", "pullQuotaReservePercent", "allowPrivateNetworks",
        "allowedPrivateRegistries",
        "nodeCredentialRegistries", "insecureRegistries", "imageCredentialProviderConfig",
        "imageCredentialProviderBinDir",
    ],
}  # fmt: skip
ITEM_KEYS = {
    "mirrors": ["registry", "mirror", "exclude", "probe"],
    "defaultPullSecrets": ["secret", "registries", "sourceNamespace"],
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["enforce", "warn", "off", "docker.io", "*.example.com", "", "ns", "1e3"]),
    st.text(max_size=40),
)
junk = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def keyed(keys: list[str], values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=12), values, max_size=len(keys))


@st.composite
def documents(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(junk)  # not even a mapping
    document = draw(keyed(TOP, junk))
    for key, inner in NESTED.items():
        if draw(st.booleans()):
            document[key] = draw(keyed(inner, junk))
    for key, inner in ITEM_KEYS.items():
        if draw(st.booleans()):
            document[key] = draw(st.lists(keyed(inner, junk), max_size=3))
    return document


def render(document: Any) -> str:
    try:
        return yaml.safe_dump(document, allow_unicode=True)
    except yaml.YAMLError:
        return repr(document)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents())
def test_every_document_is_applied_or_refused_with_reasons(document: Any) -> None:
    text = render(document)
    try:
        config = load_config_text(text)
    except ConfigError as error:
        assert error.problems, "a refusal lists its problems"
        assert all(isinstance(p, str) and p for p in error.problems)
        assert len(error.problems) <= 51
    else:
        assert isinstance(config, Config)


GOOD = ["checks: {reference: warn}\n", "checks: {reference: enforce}\n", "exemptNamespaces: [a]\n"]


@settings(max_examples=max(50, EXAMPLES // 3), deadline=None)
@given(st.lists(st.one_of(st.sampled_from(GOOD), documents().map(render)), min_size=1, max_size=8))
def test_a_refused_document_leaves_the_last_good_one_in_force(texts: list[str]) -> None:
    store = ConfigStore(Metrics())
    last_good: Config | None = None
    for text in texts:
        applied = store.apply_text(text, "fuzz")
        try:
            expected = load_config_text(text)
        except ConfigError:
            assert store.loaded == (last_good is not None)
            if last_good is not None:
                assert store.current == last_good
            assert not applied
            continue
        assert applied
        last_good = expected
        assert store.current == expected
