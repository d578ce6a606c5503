"""Bounded work and bounded answers on the mutating side (issue 20, security round two).

A Pod with 20,000 docker.io image volumes and a mirror configured was rewritten entry by
entry: 0.47 s of CPU, 20,001 warnings of no bounded total size, a JSON patch of 20,000
operations and a log line per entry. Past :data:`MAX_IMAGE_ENTRIES` (the validating side's
cap) the pod is now left exactly as written, with one warning saying why; and the warnings
of every response, /validate and /mutate alike, stay within what the API server keeps.
"""

from __future__ import annotations

from typing import Any

from tests.unit.builders import (
    cluster_with,
    container,
    deployment,
    image_volume,
    pod,
    pod_spec,
    pull_secret,
    request,
)
from webhook.core.config import load_config_text
from webhook.core.mutate import mutate, preview_pod_spec
from webhook.core.podspec import MAX_IMAGE_ENTRIES
from webhook.core.podspec import pod_spec as view_of
from webhook.core.review import (
    API_SERVER_WARNING_RUNES,
    MUTATE_WARNING_RUNES,
    VALIDATE_WARNING_RUNES,
    bounded_warnings,
    review_response,
)

CONFIG = load_config_text(
    "mirrors:\n"
    "  - registry: docker.io\n"
    "    mirror: mirror.example.com/dockerhub\n"
    "defaultPullSecrets:\n"
    "  - secret: corp\n"
    "    registries: [registry.example.com]\n"
    "    sourceNamespace: pullguard\n"
)
SOURCE = pull_secret("pullguard", "corp", "registry.example.com")
VOLUMES = 20_000


def wide(count: int, reference: str = "docker.io/team/models:1.0") -> dict[str, Any]:
    """A pod spec with one container and ``count`` image volumes of ``reference``."""
    return pod_spec(
        container("app", "nginx:1.25"),
        volumes=[image_volume(f"v{n}", reference) for n in range(count)],
    )


def test_a_pod_past_the_entry_cap_is_left_as_written_with_one_warning() -> None:
    review, cluster = request(pod(wide(VOLUMES))), cluster_with(SOURCE)
    result = mutate(review, CONFIG, cluster)
    assert result.patch is None, len(result.patch or [])
    assert result.rewrites == ()
    assert len(result.warnings) == 1, result.warnings[:3]
    (warning,) = result.warnings
    assert f"the pod names {VOLUMES + 1} images" in warning, warning
    assert f"at most {MAX_IMAGE_ENTRIES} per object" in warning, warning
    assert len(warning) <= 256, len(warning)
    # Its cost is counted in tests/integration/test_mutate_work.py (no reference parsed, no
    # mirror looked up past the cap) and timed in benchmarks/wide_pod_server_bench.py: a
    # wall-clock bound here failed CI under load (0.40 s against 0.2).


def test_past_the_cap_no_secret_is_injected_or_copied() -> None:
    """Half a pod is never mutated: not its images, not its pull secrets."""
    result = mutate(
        request(pod(wide(VOLUMES, "registry.example.com/team/models:1.0"))),
        CONFIG,
        cluster_with(SOURCE),
    )
    assert result.patch is None
    assert result.injected_secrets == ()
    assert result.secret_copies == ()


def test_at_the_cap_every_entry_is_still_rewritten() -> None:
    """No real pod is touched by the cap: 256 entries are all mutated, as before."""
    result = mutate(request(pod(wide(MAX_IMAGE_ENTRIES - 1))), CONFIG, cluster_with(SOURCE))
    assert len(result.rewrites) == MAX_IMAGE_ENTRIES
    assert not any("at most" in w for w in result.warnings)


def test_the_preview_of_a_template_past_the_cap_is_the_template_as_written() -> None:
    """The validating webhook judges a template as its pods will be: left as written."""
    view = view_of("Deployment", deployment(wide(VOLUMES)))
    assert view is not None
    preview = preview_pod_spec(view, CONFIG, cluster_with(SOURCE), "team-a")
    assert preview is view


def test_a_template_past_the_cap_is_not_rewritten_either() -> None:
    config = load_config_text(
        "mutation: {podTemplates: true}\n"
        "mirrors:\n  - registry: docker.io\n    mirror: mirror.example.com/dockerhub\n"
    )
    result = mutate(request(deployment(wide(VOLUMES))), config, cluster_with())
    assert result.patch is None
    assert len(result.warnings) == 1


def test_no_mutation_configured_no_cap_warning() -> None:
    """Nothing would have been changed: nothing to explain."""
    result = mutate(request(pod(wide(VOLUMES))), load_config_text("{}\n"), cluster_with())
    assert result.patch is None
    assert result.warnings == ()


def test_the_two_webhooks_together_stay_within_the_api_servers_total() -> None:
    """Both webhooks' warnings land in one recorder per request (kube-apiserver
    endpoints/filters/warning.go): past 4096 runes in all it cuts every warning to 256 runes
    and drops the rest, the line saying how many were left out among them."""
    assert MUTATE_WARNING_RUNES + VALIDATE_WARNING_RUNES <= API_SERVER_WARNING_RUNES


def test_warnings_are_bounded_in_runes_and_the_last_says_how_many_more() -> None:
    lines = [
        f'pullguard: container "c{n}" image rewritten to mirror: {"é" * 90}' for n in range(300)
    ]
    kept = bounded_warnings(lines, MUTATE_WARNING_RUNES)
    assert sum(len(line) for line in kept) <= MUTATE_WARNING_RUNES
    shown = len(kept) - 1
    assert kept[-1] == f"pullguard: {300 - shown} more warnings not shown"
    assert kept[:shown] == lines[:shown]


def test_bounding_is_idempotent_and_keeps_what_fits() -> None:
    lines = [f"pullguard: line {n}" for n in range(10)]
    assert bounded_warnings(lines, MUTATE_WARNING_RUNES) == lines
    kept = bounded_warnings([f"pullguard: {'x' * 200} {n}" for n in range(50)], 1024)
    assert bounded_warnings(kept, 1024) == kept


def test_a_control_character_does_not_drop_the_warning() -> None:
    """The API server drops a warning holding a control character (NewWarningHeader)."""
    (kept,) = bounded_warnings(['pullguard: could not copy secret "s": quota\nexceeded'], 1024)
    assert kept == 'pullguard: could not copy secret "s": quota exceeded'


def test_a_mutate_response_never_carries_more_than_its_share() -> None:
    """200 containers all rewritten (under the entry cap): the response is bounded."""
    containers = [container(f"c{n}", f"team/app-{n}:1.0") for n in range(200)]
    result = mutate(request(pod(pod_spec(*containers))), CONFIG, cluster_with(SOURCE))
    assert len(result.rewrites) == 200
    body = review_response(
        "u", allowed=True, warnings=result.warnings, warning_runes=MUTATE_WARNING_RUNES
    )
    warnings = body["response"].get("warnings") or []
    assert sum(len(w) for w in warnings) <= MUTATE_WARNING_RUNES
    assert warnings[-1].endswith("more warnings not shown"), warnings[-1]


SECRET_DEFAULTS = load_config_text(
    "privateRegistries: [registry.example.com]\n"
    "mirrors:\n"
    "  - registry: docker.io\n"
    "    mirror: mirror.example.com/dockerhub\n"
    "    probe: false\n"
    "defaultPullSecrets:\n  - secret: corp\n    registries: [registry.example.com]\n"
)


def test_mutating_a_pod_listing_3000_secrets_reads_a_bounded_number_and_says_so() -> None:
    """Each secret the cache lacks is a direct read: 3,000 made-up names cost 3,001 reads
    per mutation (review rev23). Past MAX_PULL_SECRETS none is read, and the pod is left as
    written (no rewrite that may lose its own credentials, no default secret judged against
    secrets unread), with a warning worded as the validating side's."""
    from tests.unit.test_validate import CountingCluster
    from webhook.core.secretcheck import MAX_PULL_SECRETS

    cluster = CountingCluster()
    cluster.add_namespace("team-a")
    spec = pod_spec(
        container("web", "registry.example.com/team/app:1.0"),
        container("proxy", "nginx:1.25"),
        secrets=[f"s{n}" for n in range(3000)],
    )
    result = mutate(request(pod(spec)), SECRET_DEFAULTS, cluster)
    assert cluster.secret_reads <= MAX_PULL_SECRETS, cluster.secret_reads
    assert result.patch is None
    assert result.reason == "too-many-secrets"
    assert result.warnings == (
        f"pullguard: the pod lists 3000 imagePullSecrets; pullguard checks at most "
        f"{MAX_PULL_SECRETS} per pod, so it left the pod as written: no mirror rewrite, "
        "no pull secret added",
    )
    # At the cap, it is read and mutated as before.
    at_cap = pod_spec(
        container("web", "registry.example.com/team/app:1.0"),
        secrets=[f"s{n}" for n in range(MAX_PULL_SECRETS)],
    )
    cluster.add_secret(pull_secret("team-a", "corp", "registry.example.com"))
    assert mutate(request(pod(at_cap)), SECRET_DEFAULTS, cluster).injected_secrets == ("corp",)
