"""The registry client against real registries on loopback: the CNCF distribution registry
with TLS and htpasswd (Basic), the same storage behind the registry's own token auth with a
token server (Bearer), and misbehaving servers (down, hanging, dripping, 429, 503,
redirecting). Every outcome the registry check classifies has a case here."""

from __future__ import annotations

import base64
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from tests.conftest import free_port, metric_value
from tests.integration.faults import FaultServer, Request, ScriptedServer
from tests.integration.registries import (
    NEEDS_REGISTRY,
    Registry,
    TokenServer,
    loopback_tls,
    push_image,
    push_index,
    start_registry,
)
from webhook.core.config import RegistrySettings
from webhook.core.keyring import Credential
from webhook.core.registry import Answer, Outcome, Platform, Question
from webhook.edge.registry import HttpRegistry

pytestmark = NEEDS_REGISTRY

PUSHER = ("pusher", "push-pw")
READER = Credential("ignored", "reader", "read-pw", source="team-a/regcred")
WRONG = Credential("ignored", "reader", "not-the-password", source="team-a/stale")
OUTSIDER = Credential("ignored", "outsider", "out-pw", source="team-a/other")


@dataclass
class Setup:
    tls: dict[str, Path]
    context: ssl.SSLContext
    public: Registry  # anonymous
    basic: Registry  # htpasswd: pusher / reader
    token: Registry  # the basic registry's storage behind Bearer auth
    tokens: TokenServer


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("registry-client")
    tls = loopback_tls(base / "tls")
    public = start_registry(base / "public", **tls)
    basic = start_registry(base / "basic", auth=PUSHER, **tls)
    # htpasswd holds one user per registry here; the reader logs in through the token realm.
    tokens = TokenServer(
        base / "tokens",
        {"reader": ("read-pw", ("team/",)), "outsider": ("out-pw", ("other/",))},
        tls,
    )
    token = start_registry(base / "token", token=tokens, storage=base / "basic" / "data", **tls)
    context = ssl.create_default_context(cafile=str(tls["ca"]))
    yield Setup(tls, context, public, basic, token, tokens)
    for registry in (token, basic, public):
        registry.stop()
    tokens.stop()


def client(setup: Setup, **settings: object) -> HttpRegistry:
    values: dict[str, object] = {"allow_private_networks": True}
    values.update(settings)
    current = RegistrySettings(**values)  # type: ignore[arg-type]
    return HttpRegistry(lambda: current, ssl_context=setup.context)


def ask(registry: HttpRegistry, question: Question, budget: float = 3.0) -> Answer:
    return registry.ask([question], budget)[question]


def q(registry: Registry | str, repository: str, reference: str, *creds: Credential) -> Question:
    host = registry if isinstance(registry, str) else registry.host
    return Question(host, repository, reference, tuple(creds))


def test_found_anonymously_with_its_digest(setup: Setup) -> None:
    digest = push_image(setup.public, "team/web", "1.0")
    answer = ask(client(setup), q(setup.public, "team/web", "1.0"))
    assert answer.outcome is Outcome.FOUND
    assert answer.digest == digest
    by_digest = ask(client(setup), q(setup.public, "team/web", digest))
    assert by_digest.outcome is Outcome.FOUND


def test_missing_tag_in_an_existing_repository_lists_its_tags(setup: Setup) -> None:
    push_image(setup.public, "team/api", "1.25")
    answer = ask(client(setup), q(setup.public, "team/api", "1.52"))
    assert answer.outcome is Outcome.NOT_FOUND
    assert answer.repository_exists is True
    assert "1.25" in answer.tags


def test_missing_repository_says_so_in_the_registrys_words(setup: Setup) -> None:
    answer = ask(client(setup), q(setup.public, "team/nope", "1.0"))
    assert answer.outcome is Outcome.NOT_FOUND
    assert answer.repository_exists is False
    assert answer.registry_says.startswith("NAME_UNKNOWN")


def test_an_image_pushed_after_a_not_found_is_found_at_once(setup: Setup) -> None:
    registry = client(setup)
    question = q(setup.public, "team/fresh", "2.0")
    assert ask(registry, question).outcome is Outcome.NOT_FOUND
    push_image(setup.public, "team/fresh", "2.0")
    assert ask(registry, question).outcome is Outcome.FOUND


def test_basic_auth_with_the_pods_credentials(setup: Setup) -> None:
    push_image(setup.basic, "team/private", "1.0")
    pusher = Credential("k", *PUSHER, source="team-a/pusher")
    registry = client(setup)
    assert ask(registry, q(setup.basic, "team/private", "1.0", pusher)).outcome is Outcome.FOUND
    wrong = ask(registry, q(setup.basic, "team/private", "1.0", replace(pusher, password="x")))
    assert (wrong.outcome, wrong.tried) == (Outcome.UNAUTHORIZED, ("team-a/pusher",))
    anonymous = ask(registry, q(setup.basic, "team/private", "1.0"))
    assert (anonymous.outcome, anonymous.tried) == (Outcome.UNAUTHORIZED, ())


def test_bearer_token_flow(setup: Setup) -> None:
    push_image(setup.basic, "team/tokened", "1.0")
    registry = client(setup)
    before = len(setup.tokens.requests)
    found = ask(registry, q(setup.token, "team/tokened", "1.0", READER))
    assert found.outcome is Outcome.FOUND, found
    asked = setup.tokens.requests[before:]
    assert asked and asked[0]["scope"] == "repository:team/tokened:pull"
    assert asked[0]["service"] == TokenServer.service
    assert asked[0]["authorization"].startswith("Basic ")
    # Refusals, each with what was tried.
    wrong = ask(registry, q(setup.token, "team/tokened", "1.0", WRONG))
    assert (wrong.outcome, wrong.tried) == (Outcome.UNAUTHORIZED, ("team-a/stale",))
    outsider = ask(registry, q(setup.token, "team/tokened", "1.0", OUTSIDER))
    assert outsider.outcome is Outcome.UNAUTHORIZED
    anonymous = ask(registry, q(setup.token, "team/tokened", "1.0"))
    assert (anonymous.outcome, anonymous.tried) == (Outcome.UNAUTHORIZED, ())


def test_most_specific_credential_first_then_the_next(setup: Setup) -> None:
    push_image(setup.basic, "team/two-creds", "1.0")
    answer = ask(client(setup), q(setup.token, "team/two-creds", "1.0", WRONG, READER))
    assert answer.outcome is Outcome.FOUND
    assert answer.tried == ("team-a/stale", "team-a/regcred")


NAME_UNKNOWN = (
    b'{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}'
)


def hiding_front(setup: Setup, readers: dict[str, int]) -> ScriptedServer:
    """A registry that hides repositories a login may not read behind ``404 NAME_UNKNOWN``
    (as many do for private repositories), in front of the real public registry: anonymous
    requests are challenged (Basic); a login in ``readers`` gets the real registry's answer
    or, if its value is an HTTP status, that status; any other login gets the 404."""
    allowed = {
        "Basic " + base64.b64encode(login.encode()).decode(): status
        for login, status in readers.items()
    }

    def serve(request: Request) -> tuple[int, dict[str, str], bytes]:
        auth = request.headers.get("authorization", "")
        if not auth:
            return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""
        status = allowed.get(auth)
        if request.path == "/v2/" or status == 200:
            with setup.public.client() as upstream:
                reply = upstream.request(
                    request.method,
                    request.path,
                    headers={"Accept": request.headers.get("accept", "*/*")},
                )
            keep = {
                k: v
                for k, v in reply.headers.items()
                if k.lower() in ("content-type", "docker-content-digest")
            }
            return reply.status_code, keep, reply.content
        if status is not None:
            return status, {}, b""
        return 404, {"Content-Type": "application/json"}, NAME_UNKNOWN

    return ScriptedServer(setup.tls, serve)


def test_a_credential_answered_not_found_goes_on_to_the_next(setup: Setup) -> None:
    """The kubelet's pull loop (kuberuntime ``pullImage``) tries the next matching
    credential after any failed pull, a 404 too: a first login the registry hides the
    repository from must not make pullguard stop there and deny (review of issue 20, 2)."""
    push_image(setup.public, "team/hidden", "1.0")
    front = hiding_front(setup, {"good:pw": 200})
    first = Credential("k", "other", "pw", source="ns/first")
    second = Credential("k", "good", "pw", source="ns/second")
    try:
        registry = client(setup)
        answer = ask(registry, q(front.host, "team/hidden", "1.0", first, second))
        assert answer.outcome is Outcome.FOUND, answer
        assert answer.tried == ("ns/first", "ns/second")
        # Not found only when every credential the kubelet would try answered not found.
        nowhere = ask(registry, q(front.host, "team/hidden", "9.9", first, second))
        assert nowhere.outcome is Outcome.NOT_FOUND, nowhere
        assert nowhere.tried == ("ns/first", "ns/second")
        hidden = ask(registry, q(front.host, "team/hidden", "1.0", first))
        assert (hidden.outcome, hidden.tried) == (Outcome.NOT_FOUND, ("ns/first",))
    finally:
        front.stop()


def test_after_a_not_found_an_uncertain_answer_is_not_a_denial(setup: Setup) -> None:
    """Not found with one login, a server error with the next: the kubelet's second pull
    may work, so the answer is not a definite one."""
    push_image(setup.public, "team/hidden", "1.0")
    front = hiding_front(setup, {"broken:pw": 503})
    first = Credential("k", "other", "pw", source="ns/first")
    second = Credential("k", "broken", "pw", source="ns/second")
    try:
        answer = ask(client(setup), q(front.host, "team/hidden", "1.0", first, second))
        assert answer.outcome is Outcome.REGISTRY_ERROR, answer
        assert answer.tried == ("ns/first", "ns/second")
    finally:
        front.stop()


def test_a_multi_platform_index_lists_its_platforms(setup: Setup) -> None:
    push_index(setup.public, "team/multi", "1.0", [("linux", "arm64"), ("linux", "s390x")])
    question = replace(q(setup.public, "team/multi", "1.0"), platforms=True)
    answer = ask(client(setup), question)
    assert answer.outcome is Outcome.FOUND
    assert answer.platforms == (Platform("linux", "arm64"), Platform("linux", "s390x"))
    assert not answer.single_image


def test_a_single_image_platform_comes_from_its_config(setup: Setup) -> None:
    push_image(setup.basic, "team/single", "1.0", architecture="arm64")
    question = replace(q(setup.token, "team/single", "1.0", READER), platforms=True)
    answer = ask(client(setup), question)
    assert answer.platforms == (Platform("linux", "arm64"),), answer
    # The runtime pulls a single image whatever its platform: the check must know, also
    # when the platforms come from the per-digest cache (another tag, the same manifest).
    assert answer.single_image
    push_image(setup.basic, "team/single", "1.1", architecture="arm64")
    registry = client(setup)
    assert ask(registry, question).single_image
    again = ask(registry, replace(question, reference="1.1"))
    assert again.platforms == (Platform("linux", "arm64"),) and again.single_image


def test_positive_answers_are_cached_and_negative_ones_never(setup: Setup) -> None:
    push_image(setup.public, "team/cached", "1.0")
    registry = client(setup)
    found = q(setup.public, "team/cached", "1.0")
    missing = q(setup.public, "team/cached", "9.9")
    assert not ask(registry, found).cached
    assert ask(registry, found).cached
    assert not ask(registry, missing).cached
    assert not ask(registry, missing).cached


def test_concurrent_admissions_share_one_request(setup: Setup) -> None:
    slow = FaultServer("status", setup.tls, status=503, delay=0.5)
    try:
        registry = client(setup)
        question = q(slow.host, "team/x", "1.0")
        answers: list[Answer] = []
        threads = [
            threading.Thread(target=lambda: answers.append(ask(registry, question)))
            for _ in range(5)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [a.outcome for a in answers] == [Outcome.REGISTRY_ERROR] * 5
        assert len(slow.requests) == 1
    finally:
        slow.stop()


def test_questions_asked_together_of_one_registry_each_get_its_answer(setup: Setup) -> None:
    """A pod's images on one registry are asked at once. Over one multiplexed HTTP/2
    connection the registry (Go's net/http) answered some of them with GOAWAY
    PROTOCOL_ERROR or a stream reset, and those images were "not checked" ("broken
    answer: RemoteProtocolError"): about one round in ten, with no attack. Each question
    needs its own answer, every round."""
    push_image(setup.public, "team/many", "1.0")
    for round_ in range(12):
        registry = client(setup)
        assert ask(registry, q(setup.public, "team/many", "1.0")).outcome is Outcome.FOUND
        several = [q(setup.public, "team/many", f"v{round_}-{i}") for i in range(6)]
        answers = registry.ask(several, 5.0)
        outcomes = {a.outcome.name + ": " + a.detail for a in answers.values()}
        assert outcomes == {"NOT_FOUND: HTTP 404"}, (round_, outcomes)


def test_a_registry_that_is_down(setup: Setup) -> None:
    answer = ask(client(setup), q(f"127.0.0.1:{free_port()}", "team/x", "1.0"))
    assert (answer.outcome, answer.detail) == (Outcome.UNREACHABLE, "connection refused")


@pytest.mark.parametrize("mode", ["hang", "drip"])
def test_a_registry_that_hangs_or_drips_is_cut_at_the_budget(setup: Setup, mode: str) -> None:
    fault = FaultServer(mode, setup.tls)
    try:
        registry = client(setup)
        started = time.monotonic()
        answer = ask(registry, q(fault.host, "team/x", "1.0"), budget=1.0)
        elapsed = time.monotonic() - started
        print(f"{mode}: {answer.outcome} {answer.detail!r} after {elapsed:.2f}s")
        assert elapsed < 1.5
        assert answer.outcome in (Outcome.UNREACHABLE, Outcome.NOT_ASKED)
        # The flight itself ends at its deadline too: no greenlet or socket is left behind.
        deadline = time.monotonic() + 2
        while registry.flights and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not registry.flights
    finally:
        fault.stop()


def test_rate_limited_with_the_remaining_count(setup: Setup) -> None:
    fault = FaultServer(
        "status",
        setup.tls,
        status=429,
        headers={"RateLimit-Limit": "100;w=21600", "RateLimit-Remaining": "0;w=21600"},
    )
    try:
        answer = ask(client(setup), q(fault.host, "library/nginx", "1.25"))
        assert answer.outcome is Outcome.RATE_LIMITED
        assert answer.ratelimit_remaining == "0;w=21600"
    finally:
        fault.stop()


def test_a_server_error(setup: Setup) -> None:
    fault = FaultServer("status", setup.tls, status=503)
    try:
        answer = ask(client(setup), q(fault.host, "team/x", "1.0"))
        assert (answer.outcome, answer.detail) == (Outcome.REGISTRY_ERROR, "HTTP 503")
    finally:
        fault.stop()


def test_tls_failure_is_named(setup: Setup) -> None:
    untrusting = HttpRegistry(
        lambda: RegistrySettings(allow_private_networks=True),
        ssl_context=ssl.create_default_context(),
    )
    answer = ask(untrusting, q(setup.public, "team/web", "1.0"))
    assert answer.outcome is Outcome.UNREACHABLE
    assert answer.detail.startswith("TLS failure"), answer.detail


def test_dns_name_not_found_suggests_the_registry_meant(setup: Setup) -> None:
    def resolver(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    registry = HttpRegistry(RegistrySettings, resolver=resolver)
    answer = ask(registry, q("ghrc.io", "team/x", "1.0"))
    assert answer.outcome is Outcome.UNREACHABLE
    assert answer.detail == "DNS name ghrc.io not found"
    assert answer.suggestion == "ghcr.io"


# -- Addresses: private networks, redirects, credentials ------------------------------------


def strict(setup: Setup, *allowed: str) -> HttpRegistry:
    return client(setup, allow_private_networks=False, allowed_private_registries=allowed)


@pytest.mark.parametrize(
    "host",
    [
        "169.254.169.254",
        "2852039166",
        "0xa9fea9fe",
        "0251.0376.0251.0376",
        "[::ffff:a9fe:a9fe]",
        "[::ffff:169.254.169.254]",
        "127.0.0.1",
        "localhost",  # a DNS name resolving to loopback
        "10.1.2.3",
        "[::1]",
    ],
)
def test_internal_addresses_are_never_contacted(setup: Setup, host: str) -> None:
    answer = ask(strict(setup), q(host, "team/x", "1.0"))
    assert answer.outcome is Outcome.NOT_ASKED, answer
    assert "allowedPrivateRegistries" in answer.detail


def test_an_allowed_private_registry_is_asked(setup: Setup) -> None:
    push_image(setup.public, "team/allowed", "1.0")
    answer = ask(strict(setup, setup.public.host), q(setup.public, "team/allowed", "1.0"))
    assert answer.outcome is Outcome.FOUND


@pytest.mark.parametrize(
    "target", ["https://169.254.169.254/v2/", "https://127.0.0.1:{port}/v2/x/manifests/1"]
)
def test_a_redirect_to_a_private_address_is_refused(setup: Setup, target: str) -> None:
    other = FaultServer("status", setup.tls, status=200)
    redirect = FaultServer("redirect", setup.tls, location=target.format(port=other.port))
    try:
        registry = strict(setup, redirect.host)
        answer = ask(registry, q(redirect.host, "team/x", "1.0"))
        assert answer.outcome is Outcome.NOT_ASKED, answer
        assert redirect.requests and not other.requests
    finally:
        redirect.stop()
        other.stop()


def test_credentials_never_follow_a_redirect_to_another_host(setup: Setup) -> None:
    other = FaultServer("status", setup.tls, status=200)
    redirect = FaultServer("redirect", setup.tls, location=f"https://{other.host}/v2/x")
    basic_challenge = FaultServer(
        "status", setup.tls, status=401, headers={"WWW-Authenticate": 'Basic realm="r"'}
    )
    try:
        # A Basic registry answers 401 first; pullguard retries with the credential, and the
        # redirect then points elsewhere.
        registry = client(setup)
        answer = ask(registry, q(redirect.host, "team/x", "1.0", READER))
        assert answer.outcome is Outcome.FOUND
        assert other.raw and b"authorization" not in other.raw[0].lower()
        ask(registry, q(basic_challenge.host, "team/x", "1.0", READER))
        assert any(b"authorization: basic" in r.lower() for r in basic_challenge.raw)
    finally:
        for server in (redirect, other, basic_challenge):
            server.stop()


@pytest.mark.parametrize("backend", ["basic", "token"])
def test_a_refusal_after_a_redirect_that_kept_the_password_back_is_not_certain(
    setup: Setup, backend: str
) -> None:
    """A registry host (the secret's entry is for it) redirects to its backend, which asks
    for credentials. pullguard keeps the password from a host the secret is not for; the
    kubelet's containerd answers any host's challenge with the pod's credentials and pulls.
    So the refusal pullguard gets is no denial: not checked, saying why (review of issue 20,
    1). Without a credential there is nothing kept back: the refusal stays certain."""
    target = setup.basic if backend == "basic" else setup.token
    push_image(setup.basic, "team/behind", "1.0")
    front = ScriptedServer(
        setup.tls, lambda r: (302, {"Location": f"https://{target.host}{r.path}"}, b"")
    )
    login = Credential("k", *PUSHER, source="ns/front") if backend == "basic" else READER
    try:
        registry = client(setup)
        answer = ask(registry, q(front.host, "team/behind", "1.0", login))
        assert answer.outcome is Outcome.NOT_ASKED, answer
        assert f"{front.host} redirected to {target.host}, which asks for credentials" in (
            answer.detail
        )
        assert "does not send the pod's password" in answer.detail
        anonymous = ask(registry, q(front.host, "team/behind", "1.0"))
        assert anonymous.outcome is Outcome.UNAUTHORIZED, anonymous
        # The same login straight at the backend is what the kubelet's pull does.
        straight = ask(registry, q(target, "team/behind", "1.0", login))
        assert straight.outcome is Outcome.FOUND, straight
    finally:
        front.stop()


def test_plain_http_only_for_insecure_registries(setup: Setup) -> None:
    redirect = FaultServer("redirect", setup.tls, location="http://127.0.0.1:1/v2/")
    try:
        answer = ask(client(setup), q(redirect.host, "team/x", "1.0"))
        assert answer.outcome is Outcome.REGISTRY_ERROR
        assert "plain HTTP" in answer.detail
    finally:
        redirect.stop()


def test_mirror_probe(setup: Setup) -> None:
    registry = client(setup)
    assert registry.probe(setup.public.host, 2.0)
    assert registry.probe(setup.basic.host, 2.0)  # 401 is a live registry
    assert not registry.probe(f"127.0.0.1:{free_port()}", 2.0)


# -- Through the server: gunicorn over TLS, pullguard serve --dev -------------------------


def _review(image: str, secrets: list[str] | None = None) -> dict[str, object]:
    from tests.conftest import REVIEWS, load_review

    review = load_review(REVIEWS / "pod-create-plain.json")["body"]
    spec = review["request"]["object"]["spec"]
    spec["containers"][0]["image"] = image
    spec.pop("initContainers", None)
    if secrets is not None:
        spec["imagePullSecrets"] = [{"name": s} for s in secrets]
    return review


def test_admission_through_the_server(setup: Setup, tmp_path: Path) -> None:
    from tests.conftest import start_server, stop_server

    push_image(setup.public, "team/served", "1.0")
    down = f"127.0.0.1:{free_port()}"
    config = tmp_path / "config.yaml"
    config.write_text(
        "registry:\n"
        f"  allowedPrivateRegistries: ['{setup.public.host}', '{setup.basic.host}']\n"
        f"mirrors:\n  - registry: docker.io\n    mirror: '{down}'\n"
    )
    # One worker: each worker probes the mirror on its own, and this test follows one prober.
    server = start_server(
        tmp_path,
        "--config",
        str(config),
        "--workers",
        "1",
        env={"SSL_CERT_FILE": str(setup.tls["ca"])},
    )
    try:
        with server.client() as http:

            def call(path: str, review: dict[str, object]) -> dict[str, object]:
                body = http.post(path, json=review).json()["response"]
                assert isinstance(body, dict)
                return body

            ok = call("/validate", _review(f"{setup.public.host}/team/served:1.0"))
            assert ok["allowed"] is True, ok
            missing = call("/validate", _review(f"{setup.public.host}/team/served:1.1"))
            assert missing["allowed"] is False
            message = missing["status"]["message"]  # type: ignore[index]
            assert "has no tag '1.1' (tags there include '1.0')" in message
            private = call("/validate", _review(f"{setup.basic.host}/team/private:1.0"))
            assert private["allowed"] is False
            assert "anonymously" in private["status"]["message"]  # type: ignore[index]
            # An internal address not allowed: never contacted, admitted with a warning.
            internal = call("/validate", _review("10.255.0.1:5000/team/x:1.0"))
            assert internal["allowed"] is True
            assert any("allowedPrivateRegistries" in w for w in internal["warnings"])  # type: ignore[union-attr]
            # The mirror is down: images stay as written, said in a warning and a metric.
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                metrics = http.get("/metrics").text
                if f'pullguard_mirror_up{{mirror="{down}"}} 0.0' in metrics:
                    break
                time.sleep(0.2)
            mutated = call("/mutate", _review("nginx:1.25"))
            assert "patch" not in mutated
            assert any("did not answer its last /v2/ probe" in w for w in mutated["warnings"])  # type: ignore[union-attr]
            metrics = http.get("/metrics").text
        skipped = f'pullguard_mirror_skipped_rewrites_total{{mirror="{down}"}}'
        assert metric_value(metrics, skipped) == 1
        assert 'pullguard_registry_requests_total{outcome="not_found",registry="other"}' in metrics
        assert 'pullguard_registry_cache_total{result="miss"}' in metrics
        log = server.log_text()
        assert f"registry {setup.public.host}/team/served:1.1 outcome=not_found" in log
    finally:
        stop_server(server)


def test_connections_are_pooled_one_request_at_a_time(setup: Setup) -> None:
    """HTTP/1.1, kept alive: HTTP/2's shared connection broke concurrent questions (see
    test_questions_asked_together_of_one_registry_each_get_its_answer)."""
    push_image(setup.public, "team/pooled", "1.0")
    registry = client(setup, cache_ttl_seconds=0)
    for _ in range(3):
        assert ask(registry, q(setup.public, "team/pooled", "1.0")).outcome is Outcome.FOUND
    connections = registry.http.pool.connections
    assert len(connections) == 1  # three questions, one connection
    assert "HTTP/1.1" in connections[0].info()


def test_a_digest_that_names_a_blob_is_reported_as_one(setup: Setup) -> None:
    """``image@<config digest>`` (an image ID taken for a pull digest): distribution answers
    the manifest HEAD with 500; the blob is read and is no manifest, so the answer says so
    (the runtime fails the pull on the media type; see tests/e2e/test_runtime.py)."""
    digest = push_image(setup.public, "team/blobbed", "1.0")
    with setup.public.client() as http:
        manifest = http.get(
            f"/v2/team/blobbed/manifests/{digest}",
            headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        ).json()
    config, layer = manifest["config"]["digest"], manifest["layers"][0]["digest"]
    registry = client(setup)
    for blob in (config, layer):
        answer = ask(registry, q(setup.public, "team/blobbed", blob))
        assert answer.outcome is Outcome.NOT_A_MANIFEST, answer
    # A manifest's digest read through blobs/ is a manifest: a 500 there stays an error.
    assert ask(registry, q(setup.public, "team/blobbed", digest)).outcome is Outcome.FOUND
