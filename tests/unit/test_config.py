"""Configuration: every problem by key path; the shipped default is valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from webhook.core.config import Action, ConfigError, load_config_text
from webhook.edge.configsource import default_config_text


def test_embedded_default_is_valid_and_matches_the_contract() -> None:
    config = load_config_text(default_config_text())
    assert config.checks.reference is Action.ENFORCE
    assert config.checks.pullSecrets is Action.ENFORCE
    assert config.checks.pullPolicy is Action.WARN
    assert config.checks.registry is Action.ENFORCE  # CONTRACT.md: only definite answers deny
    assert config.checks.platform is Action.WARN
    assert "*.dkr.ecr.*.amazonaws.com" in config.registry.node_credential_registries
    assert "*.azurecr.io" in config.registry.node_credential_registries
    assert config.exempt_namespaces == {"kube-system"}
    assert config.namespace_mode_label == "pullguard.io/mode"
    assert config.registry.timeout_seconds == 2
    assert config.registry.cache_ttl_seconds == 5  # issue 21, item 5: seconds, not minutes
    assert config.registry.pull_quota_reserve_percent == 50  # rev20d F4: half to the nodes


def test_the_pull_quota_reserve_is_a_percent() -> None:
    """``registry.pullQuotaReservePercent``: the share of a registry's announced pull quota
    the platform check leaves to the nodes (0 to 100)."""
    config = load_config_text("registry: {pullQuotaReservePercent: 0}")
    assert config.registry.pull_quota_reserve_percent == 0
    config = load_config_text("registry: {pullQuotaReservePercent: 100}")
    assert config.registry.pull_quota_reserve_percent == 100
    for bad, words in [
        ("101", "must be between 0 and 100, got 101"),
        ("-1", "must be between 0 and 100, got -1"),
        ("half", "must be a number, got the string 'half'"),
    ]:
        with pytest.raises(ConfigError) as raised:
            load_config_text(f"registry: {{pullQuotaReservePercent: {bad}}}")
        assert f"registry.pullQuotaReservePercent: {words}" in str(raised.value)


def test_contract_example_parses() -> None:
    text = """
checks: {reference: enforce, pullSecrets: enforce, pullPolicy: warn, registry: warn, platform: warn}
exemptNamespaces: [kube-system]
namespaceModeLabel: pullguard.io/mode
privateRegistries: ["*.dkr.ecr.us-east-1.amazonaws.com", "registry.local:5000"]
registry: {timeoutSeconds: 2, cacheTTLSeconds: 300, allowPrivateNetworks: false,
           allowedPrivateRegistries: [], insecureRegistries: []}
defaultPullSecrets:
  - secret: my-registry-secret
    registries: [my-registry.example.com]
    sourceNamespace: pullguard
mirrors:
  - registry: docker.io
    mirror: mirror.example.com/dockerhub
    exclude: [docker.io/library/busybox, busybox]
"""
    config = load_config_text(text)
    assert config.mirrors[0].mirror_host == "mirror.example.com"
    assert config.mirrors[0].mirror_prefix == "dockerhub"
    assert config.mirrors[0].exclude == ("docker.io/library/busybox", "docker.io/library/busybox")
    assert config.default_pull_secrets[0].source_namespace == "pullguard"


def test_every_problem_is_listed_by_key_path() -> None:
    text = """
checks: {reference: deny, pullPolicy: 3}
exemptNamespace: [x]
privateRegistries: ["https://registry.example.com/v2"]
registry: {timeoutSeconds: 99, allowPrivateNetworks: "yes"}
defaultPullSecrets:
  - registries: []
mirrors:
  - registry: docker.io
    mirror: "https://mirror"
  - registry: docker.io
    mirror: docker.io/x
mutation: {podTemplates: 1}
"""
    with pytest.raises(ConfigError) as caught:
        load_config_text(text)
    problems = caught.value.problems
    expected = [
        "exemptNamespace: unknown key (did you mean 'exemptNamespaces'?)",
        "checks.reference: must be one of enforce, warn, off, got the string 'deny'",
        "checks.pullPolicy: must be one of enforce, warn, off, got a number",
        "privateRegistries[0]: 'https://registry.example.com/v2' must be a host[:port], "
        "without scheme or path",
        "registry.timeoutSeconds: must be between 0.1 and 4, got 99",
        "registry.allowPrivateNetworks: must be true or false, got the string 'yes'",
        "defaultPullSecrets[0].secret: must be a non-empty string, got nothing",
        "defaultPullSecrets[0].registries: must name at least one registry",
        "mirrors[0].mirror: 'https://mirror' must be host[:port] with an optional path prefix, "
        "e.g. mirror.example.com/dockerhub",
        "mirrors[1].registry: 'docker.io' already has a mirror at mirrors[0]",
        "mirrors[1].mirror: must differ from the registry it mirrors",
        "mutation.podTemplates: must be true or false, got a number",
    ]
    assert problems == expected
    assert str(caught.value).startswith("invalid configuration (12 problems):")


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text("checks:\n  reference: [enforce\n")
    assert caught.value.problems[0].startswith("(document): not valid YAML at line")


def test_deploy_ships_the_embedded_default_document() -> None:
    shipped = Path(__file__).resolve().parents[2] / "deploy" / "base" / "config.yaml"
    assert shipped.read_text() == default_config_text()


def test_unquoted_off_is_read_as_off() -> None:
    # YAML 1.1 reads an unquoted off as false; the docs write it that way.
    config = load_config_text("checks:\n  registry: off\n  pullPolicy: off\n")
    assert config.checks.registry is Action.OFF
    assert config.checks.pullPolicy is Action.OFF


#: Billion laughs: nine levels of ten references each, 10^9 strings if expanded.
ALIAS_BOMB = (
    "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    + "exemptNamespaces: *i\n"
)
HOSTILE = {
    "an alias bomb": ALIAS_BOMB,
    "500-deep nesting": "checks: " + "[" * 500 + "]" * 500 + "\n",
    "a 1 MiB document": "exemptNamespaces: [" + ", ".join(["ns"] * 350_000) + "]\n",
    "a 1 MiB string": "namespaceModeLabel: " + "x" * (1 << 20) + "\n",
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_document_is_refused_with_a_bounded_error(text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text)
    assert 0 < len(caught.value.problems) <= 51
    assert len(str(caught.value)) < 4096


def test_thousands_of_problems_are_listed_up_to_a_bound() -> None:
    text = "exemptNamespaces: [" + ", ".join(["1"] * 5000) + "]\n"
    with pytest.raises(ConfigError) as caught:
        load_config_text(text)
    problems = caught.value.problems
    assert len(problems) == 51
    assert problems[-1] == "(document): and 4950 more problems"


@pytest.mark.parametrize("written", ["2001:db8::1", "2001:DB8::1", "[2001:db8::1]"])
def test_a_mirrored_registry_may_be_a_bare_ipv6_address_as_other_host_lists(written: str) -> None:
    # As allowedPrivateRegistries accepts it: normalized to the form references use.
    config = load_config_text(f"mirrors: [{{registry: '{written}', mirror: mirror.example.com}}]\n")
    (mirror,) = config.mirrors
    assert mirror.registry == "[2001:db8::1]"
