"""Outside review rev24 of issue 24 (kubelet credential providers): findings still open,
with real plugin executables run through the edge as the kubelet runs them.

Each test marked open_finding fails until its finding is fixed (``pytest -m open_finding``);
a fixed one loses its marker.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from pathlib import Path

import pytest

from webhook.core.credprovider import EnvVar, Provider, ProviderConfig, ProviderConfigError
from webhook.edge.credproviders import CredentialProviders, LiveProviders, read_provider_config

V1 = "credentialprovider.kubelet.k8s.io/v1"
REGISTRY = "111122223333.dkr.ecr.us-east-1.amazonaws.com"
IMAGE = f"{REGISTRY}/team/app"
BUDGET = 3.0
#: An htpasswd password, as the distribution registry standing in for ECR takes it.
SHORT_PASSWORD = "Tr0ub4dor&3"

GOOD = f"""#!{sys.executable}
import json, sys
sys.stdin.read()
print(json.dumps({{"kind": "CredentialProviderResponse", "apiVersion": "{V1}",
                  "cacheKeyType": "Registry",
                  "auth": {{"{REGISTRY}": {{"username": "AWS", "password": "x" * 40}}}}}}))
"""

# A plugin that logs the answer it got from its cloud (JSON, as Go's klog and most SDK
# debug output print it) and then fails: the password is on stderr.
LEAKS_THEN_FAILS = f"""#!{sys.executable}
import json, sys
sys.stdin.read()
sys.stderr.write("decoded answer " + json.dumps({{"username": "robot",
                                                 "password": "{SHORT_PASSWORD}"}}) + "\\n")
sys.exit(1)
"""


def _write(folder: Path, name: str, text: str) -> None:
    path = folder / name
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    _write(folder, "good", GOOD)
    _write(folder, "leaks", LEAKS_THEN_FAILS)
    return folder


def _provider(name: str, **overrides: object) -> Provider:
    fields: dict[str, object] = {
        "name": name,
        "match_images": ("*.dkr.ecr.*.amazonaws.com",),
        "default_cache_seconds": 600.0,
        "api_version": V1,
    }
    fields.update(overrides)
    return Provider(**fields)  # type: ignore[arg-type]


def _engine(bin_dir: Path, *providers: Provider) -> CredentialProviders:
    return CredentialProviders(
        ProviderConfig(tuple(providers)),
        str(bin_dir),
        environ=lambda: {"PATH": os.environ["PATH"]},
    )


@pytest.mark.parametrize(
    "overrides",
    [
        {"env": (EnvVar("AWS_PROFILE=x", "default"),)},  # the kubelet passes it on as it is
        {"env": (EnvVar("AWS_PROFILE", "a\x00b"),)},  # YAML "\0" in a value
        {
            "args": ("get-credentials", "a\x00b"),
        },  # YAML "\0" in an argument
    ],
)
def test_rev24_a_provider_that_cannot_be_started_is_a_failed_answer_not_an_exception(
    bin_dir: Path, overrides: dict[str, object]
) -> None:
    """Finding 2. Every one of these documents passes pullguard's (and the kubelet's)
    validation. ``subprocess.Popen`` then raises ``ValueError`` (not ``OSError``), which
    ``CredentialProviders._run`` does not catch: ``provide`` raises, ``validate`` raises,
    and every admission of an image the provider matches is a 500 (failurePolicy Ignore:
    admitted unchecked). The next provider is never asked. Expected: that provider's
    answer is an error naming it, and the following provider still answers."""
    engine = _engine(bin_dir, _provider("good", **overrides), _provider("good2"))
    _write(bin_dir, "good2", GOOD)
    failed, served = engine.provide(IMAGE, BUDGET)
    assert failed.provider == "good"
    assert failed.error == (
        "cannot start it: an env name holds '=', or an env value or an argument holds a NUL byte"
    )
    assert served.provider == "good2" and served.credentials


def test_rev24_a_provider_name_with_nul_is_refused_not_raised(
    bin_dir: Path, tmp_path: Path
) -> None:
    """Finding 3. ``name: "good\\0"`` passes the name checks (no ``/``, no space, not
    ``.``/``..``); the bin-dir check's ``Path.stat()`` raises ``ValueError: embedded null
    byte``, which ``_executable_problem`` does not catch. ``read_provider_config`` raises
    it instead of a ProviderConfigError, so ``LiveProviders.start()`` (called bare by
    ``serving.credential_providers`` at start) raises: the webhook does not start, every
    replica crash-loops on the next rollout, instead of "refused, every problem listed".
    (The kubelet refuses such a document: its LookPath of the name fails.)"""
    path = tmp_path / "providers.yaml"
    path.write_text(
        "apiVersion: kubelet.config.k8s.io/v1\n"
        "kind: CredentialProviderConfig\n"
        "providers:\n"
        '  - name: "good\\0"\n'
        '    matchImages: ["*.dkr.ecr.*.amazonaws.com"]\n'
        '    defaultCacheDuration: "12h"\n'
        f"    apiVersion: {V1}\n"
    )
    with pytest.raises(ProviderConfigError):
        read_provider_config(str(path), str(bin_dir))
    with pytest.raises(ProviderConfigError) as refused:
        read_provider_config(str(path), str(bin_dir), (str(bin_dir),))
    assert refused.value.problems == [
        "providers[0].name: 'good\\x00': a NUL character in a name (no executable can have it)"
    ]
    live = LiveProviders(lambda: (str(path), str(bin_dir)), allowed_bin_dirs=(str(bin_dir),))
    live.start()  # what serve does: must not raise
    live.stop()
    assert live.last_problems == refused.value.problems
    assert live.current is None
    (answer,) = live.provide(IMAGE, BUDGET)  # not in force: a failed answer, no exception
    assert answer.error and "not in force" in answer.error


def test_live_providers_start_never_raises_out_of_serve() -> None:
    """Whatever reading the document raises, serve starts: the document is not in force."""

    def broken() -> tuple[str | None, str | None]:
        raise RuntimeError("unexpected")

    live = LiveProviders(broken)
    live.start()
    live.stop()
    assert live.last_problems == ["reading it failed (RuntimeError)"]
    assert live.current is None


def test_rev24_a_password_in_json_on_stderr_is_redacted(
    bin_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Finding 4. A plugin that fails after writing its cloud's answer as JSON on stderr:
    ``redact`` knows no secret on the failure path (only the env values), its labelled
    rule needs ``password`` right before ``:``/``=``/a space (JSON has a quote there), and
    its token rule needs 24 characters. The password reaches pullguard's log verbatim:
    ``... failed: it exited with status 1; stderr: decoded answer {"username": "robot",
    "password": "Tr0ub4dor&3"}``."""
    caplog.set_level(logging.INFO, "pullguard.credproviders")
    (answer,) = _engine(bin_dir, _provider("leaks")).provide(IMAGE, BUDGET)
    assert answer.error == "it exited with status 1"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "credential provider leaks" in logged
    assert SHORT_PASSWORD not in logged, logged


HANG = f"""#!{sys.executable}
import sys, time
sys.stdin.read()
time.sleep(60)
"""


def test_rev24_the_cli_providers_are_bounded_per_object_as_at_admission(tmp_path: Path) -> None:
    """Finding 7. At admission ``_DeadlineProviders`` (webhook/edge/app.py) bounds every
    plugin run of one review by one ``registry.timeoutSeconds``. ``check``, ``diagnose``
    and ``audit`` (``livecheck.live_providers``) hand ``validate`` the bare LiveProviders:
    ``ask_providers`` gives each distinct repository a fresh full budget, one after the
    other, and a failure is never cached. A plugin that hangs costs one object of three
    ECR images 3 budgets, and ``audit`` pays that again for every workload."""
    import time

    from webhook.compose.livecheck import live_providers, per_object
    from webhook.core.config import load_config_text
    from webhook.core.nodecreds import ask_providers

    folder = tmp_path / "bin"
    folder.mkdir()
    _write(folder, "hang", HANG)
    document = tmp_path / "credential-providers.yaml"
    document.write_text(
        "apiVersion: kubelet.config.k8s.io/v1\n"
        "kind: CredentialProviderConfig\n"
        "providers:\n"
        "  - name: hang\n"
        '    matchImages: ["*.dkr.ecr.*.amazonaws.com"]\n'
        '    defaultCacheDuration: "12h"\n'
        f"    apiVersion: {V1}\n"
    )
    config = load_config_text(
        "registry:\n"
        "  timeoutSeconds: 1\n"
        f"  imageCredentialProviderConfig: {document}\n"
        f"  imageCredentialProviderBinDir: {folder}\n"
    )
    view = live_providers(config)
    assert view is not None
    images = [(f"{REGISTRY}/team/app-{n}", REGISTRY) for n in range(3)]
    started = time.monotonic()
    # As livecheck.judge and offline.judge hand it to validate: bounded for the object.
    ask_providers(images, per_object(view, config), config.registry.timeout_seconds)
    elapsed = time.monotonic() - started
    assert elapsed < config.registry.timeout_seconds + 1.5, f"{elapsed:.1f} s for one object"


class _FoundEverywhere:
    """A registry that finds every manifest (the providers are what is measured)."""

    def ask(self, questions, budget, tenant=""):  # type: ignore[no-untyped-def]
        from webhook.core.registry import Answer, Outcome

        return {q: Answer(Outcome.FOUND) for q in questions}


class _RefusedEverywhere:
    """A registry that refuses every credential: a failed provider is then the warning's
    cause (the nodes' credentials might have been let in)."""

    def ask(self, questions, budget, tenant=""):  # type: ignore[no-untyped-def]
        from webhook.core.registry import Answer, Outcome

        return {q: Answer(Outcome.UNAUTHORIZED, detail="HTTP 401") for q in questions}


def _hanging_config(tmp_path: Path, hosts: dict[str, str]):  # type: ignore[no-untyped-def]
    from webhook.core.config import load_config_text

    folder = tmp_path / "bin"
    folder.mkdir()
    providers = []
    for name, pattern in hosts.items():
        _write(folder, name, HANG)
        providers.append(
            f"  - name: {name}\n"
            f'    matchImages: ["{pattern}"]\n'
            '    defaultCacheDuration: "12h"\n'
            f"    apiVersion: {V1}\n"
        )
    document = tmp_path / "credential-providers.yaml"
    document.write_text(
        "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders:\n"
        + "".join(providers)
    )
    return load_config_text(
        "registry:\n"
        "  timeoutSeconds: 1\n"
        f"  imageCredentialProviderConfig: {document}\n"
        f"  imageCredentialProviderBinDir: {folder}\n"
    )


def test_one_object_with_images_of_two_hanging_providers_costs_one_budget(
    tmp_path: Path,
) -> None:
    """As at admission (``DeadlineProviders``): every plugin run for one object ends within
    one ``registry.timeoutSeconds`` from when the object's judging began, however many
    providers its images need; and the object is still admitted with a warning naming each
    provider (no false denial)."""
    import time

    from tests.unit.builders import cluster_with, container, pod, pod_spec
    from webhook.compose.livecheck import judge, live_providers

    config = _hanging_config(
        tmp_path,
        {"hang-a": "1111.dkr.ecr.*.amazonaws.com", "hang-b": "2222.dkr.ecr.*.amazonaws.com"},
    )
    node = live_providers(config)
    assert node is not None
    images = [f"{n}.dkr.ecr.us-east-1.amazonaws.com/team/app:1" for n in ("1111", "2222")]
    obj = pod(pod_spec(*(container(f"c{i}", image) for i, image in enumerate(images))))
    started = time.monotonic()
    decision = judge("Pod", obj, config, cluster_with(), _FoundEverywhere(), node=node)
    elapsed = time.monotonic() - started
    assert decision.allowed, decision.message
    assert elapsed < config.registry.timeout_seconds + 1.0, f"{elapsed:.1f} s for one object"


def test_a_hanging_provider_runs_once_per_image_per_cli_run_not_once_per_object(
    tmp_path: Path,
) -> None:
    """``audit`` of many objects: a provider that gave no answer in time for an image is not
    run again for that image in the same run (as the registry's answers are kept in
    ``RunMemo``), and each object still gets the warning naming it. A failure for one
    repository says nothing of another's (rev24b F3, rev24c F1): each is asked."""
    import time

    from tests.unit.builders import cluster_with, container, pod, pod_spec
    from webhook.compose.livecheck import judge, live_providers

    config = _hanging_config(tmp_path, {"hang": "*.dkr.ecr.*.amazonaws.com"})
    node = live_providers(config)
    assert node is not None
    started = time.monotonic()
    decisions = []
    for n in range(8):
        image = f"1111.dkr.ecr.us-east-1.amazonaws.com/team/app-{n % 2}:1"
        obj = pod(pod_spec(container("c", image)), name=f"p{n}")
        decisions.append(judge("Pod", obj, config, cluster_with(), _RefusedEverywhere(), node=node))
    elapsed = time.monotonic() - started
    assert all(d.allowed for d in decisions)
    for decision in decisions:
        assert any("credential provider hang" in w for w in decision.warnings), decision.warnings
    budget = 2 * config.registry.timeout_seconds  # two repositories, each timed out once
    assert elapsed < budget + 1.5, f"{elapsed:.1f} s for 8 objects of 2 repositories"


SLOW_THEN_GOOD = GOOD.replace(
    "sys.stdin.read()\n", "sys.stdin.read()\nimport time\ntime.sleep(0.6)\n", 1
)


def test_a_remembered_failure_is_only_what_would_fail_again(bin_dir: Path) -> None:
    """A CLI run remembers a failure only as far as it holds: a plugin that did not answer
    in 0.2 s is run again when 5 s are offered (and answers); one that exited non-zero is
    not run again for that image; admission (no ``remember_failures``) runs it again."""
    _write(bin_dir, "slow", SLOW_THEN_GOOD)
    config = ProviderConfig((_provider("slow"),))
    engine = CredentialProviders(
        config, str(bin_dir), environ=lambda: {"PATH": os.environ["PATH"]}, remember_failures=True
    )
    (hurried,) = engine.provide(IMAGE, 0.2)
    assert hurried.error is not None and hurried.error.startswith("no answer within 0.2 s")
    (again,) = engine.provide(IMAGE, 0.2)
    assert again.error == hurried.error
    assert engine.execs == 1
    (patient,) = engine.provide(IMAGE, 5.0)
    assert patient.error is None and patient.credentials, patient
    assert engine.execs == 2

    failing = ProviderConfig((_provider("leaks"),))
    for remember, runs in ((True, 1), (False, 3)):
        engine = CredentialProviders(
            failing,
            str(bin_dir),
            environ=lambda: {"PATH": os.environ["PATH"]},
            remember_failures=remember,
        )
        answers = [engine.provide(f"{REGISTRY}/team/app", 5.0)[0] for n in range(3)]
        assert [a.error for a in answers] == ["it exited with status 1"] * 3
        assert engine.execs == runs, (remember, engine.execs)
