"""Attacks on the webhook port by anything that can reach it, through the real server.

- 40 unfinished 7 MiB request bodies: each connection sends its headers and most of its
  body, then stalls. Without a bound, the worker buffered every byte (hundreds of MiB);
  the bytes of bodies in flight per worker are now reserved before they are read, and a
  body past the reservation is answered 429 with ``Retry-After`` without being read.

- A review from anything but the API server: with ``serve --client-ca``, /validate and
  /mutate answer 401 to a connection without a certificate that CA signed (before reading
  the body), a certificate from another CA fails the handshake, and /healthz still answers
  the kubelet's probes, which bring none.

The worker's RSS under the attack is printed (``-s``): the figure in docs/reliability.md.
"""

from __future__ import annotations

import collections
import datetime
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.conftest import REVIEWS, Server, load_review, start_server, stop_server
from tests.integration.test_load import _rss_kib, _workers
from tests.integration.test_port_pressure import WEBHOOK_TIMEOUT, _review_as_the_api_server_sends_it
from webhook.edge.app import IN_FLIGHT_BODY_BYTES, MAX_BODY_BYTES
from webhook.edge.certs import make_bundle

ATTACKERS = 40
RSS_LIMIT_MIB = 200


def _tls(server: Server) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(server.ca))
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def _unfinished_body(server: Server) -> ssl.SSLSocket:
    """Headers for a body just under the cap, then all of it but the last KiB."""
    tls = _tls(server)
    size = MAX_BODY_BYTES - 1024
    tls.sendall(
        b"POST /validate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {size}\r\n\r\n".encode()
    )
    chunk = b" " * (256 * 1024)
    sent = 0
    tls.settimeout(0.5)
    try:
        while sent < size - 1024 - len(chunk):
            tls.sendall(chunk)
            sent += len(chunk)
    except (TimeoutError, OSError):
        pass  # the server stopped reading (or answered and closed): it holds no more of it
    return tls


def test_unfinished_large_bodies_do_not_grow_a_worker(tmp_path: Path) -> None:
    server = start_server(tmp_path, "--workers", "1")
    held: list[ssl.SSLSocket] = []
    try:
        (worker,) = _workers(server)
        before = _rss_kib(worker) / 1024
        for _ in range(ATTACKERS):
            held.append(_unfinished_body(server))
        time.sleep(1.0)
        during = _rss_kib(worker) / 1024
        # A real review is still answered meanwhile.
        body = load_review(REVIEWS / "pod-create-plain.json")["body"]
        with server.client() as client:
            started = time.perf_counter()
            reply = client.post(
                "/validate",
                content=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            took = time.perf_counter() - started
        print(
            f"\n{ATTACKERS} unfinished {MAX_BODY_BYTES / 2**20:.0f} MiB bodies: worker RSS "
            f"{before:.0f} MiB before, {during:.0f} MiB during; a real review meanwhile: "
            f"{reply.status_code} in {took:.3f}s"
        )
        assert during < RSS_LIMIT_MIB, f"worker RSS {during:.0f} MiB under the attack"
        assert reply.status_code == 200, reply.text[:300]
        shed = still_read = 0
        for sock in held:
            try:
                head = sock.recv(4096)
            except (TimeoutError, OSError):
                still_read += 1  # one of the bodies that fit
                continue
            if head.startswith(b"HTTP/1.1 429"):
                assert b"Retry-After: 1" in head, head
                shed += 1
            # Else ended at its request deadline (edge.server.REQUEST_SECONDS): an end of
            # file or a 400 for the body cut short, its bytes released for the next one.
        print(
            f"{shed} of {ATTACKERS} answered 429 with Retry-After without being read, "
            f"{still_read} being read, the others ended at their deadline"
        )
        assert shed > 0
        assert still_read <= IN_FLIGHT_BODY_BYTES // (MAX_BODY_BYTES - 1024)
    finally:
        for sock in held:
            sock.close()
        stop_server(server)


def client_certificate(folder: Path, name: str, *, ca: Path, ca_key: Path) -> tuple[Path, Path]:
    """A client certificate (``clientAuth``) for ``name`` signed by the CA at ``ca``."""
    ca_cert = x509.load_pem_x509_certificate(ca.read_bytes())
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    assert isinstance(signer, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(signer, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _client(server: Server, cert: tuple[Path, Path] | None) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(server.ca))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return httpx.Client(base_url=server.url, verify=context, timeout=10)


def test_only_a_client_certificate_the_ca_signed_may_send_reviews(tmp_path: Path) -> None:
    """A pod anywhere in the cluster could POST a review with a forged namespace (and learn
    another tenant's tags through their pull secret, or have pullguard copy a secret)."""
    api_server_ca = make_bundle(["api-server-ca"]).write(tmp_path / "client-ca")
    other_ca = make_bundle(["other-ca"]).write(tmp_path / "other-ca")
    api_server = client_certificate(
        tmp_path / "certs-client",
        "kube-apiserver",
        ca=api_server_ca["ca.crt"],
        ca_key=api_server_ca["ca.key"],
    )
    stranger = client_certificate(
        tmp_path / "certs-client", "stranger", ca=other_ca["ca.crt"], ca_key=other_ca["ca.key"]
    )
    server = start_server(tmp_path, "--client-ca", str(api_server_ca["ca.crt"]))
    body = json.dumps(load_review(REVIEWS / "pod-create-plain.json")["body"]).encode()
    headers = {"Content-Type": "application/json"}
    try:
        with _client(server, None) as anyone:
            assert anyone.get("/healthz").status_code == 200  # the kubelet's probes
            for endpoint in ("/validate", "/mutate"):
                reply = anyone.post(endpoint, content=body, headers=headers)
                assert reply.status_code == 401, reply.text[:300]
                response = reply.json()["response"]
                assert response["allowed"] is False
                assert "client certificate" in response["status"]["message"]
        with _client(server, stranger) as forged, pytest.raises(httpx.HTTPError):
            forged.post("/validate", content=body, headers=headers)
        with _client(server, api_server) as trusted:
            for endpoint in ("/validate", "/mutate"):
                reply = trusted.post(endpoint, content=body, headers=headers)
                assert reply.status_code == 200, reply.text[:300]
    finally:
        stop_server(server)


def test_a_forged_user_learns_no_namespace_and_the_api_server_still_does(
    golden_server: Server, tmp_path: Path
) -> None:
    """Anyone who reaches the port (no ``--client-ca``) posted a review claiming
    ``system:masters`` and was told which namespace holds the secret ("it exists in
    shared"). Unverified, the user is not believed; over the API server's certificate
    (``--client-ca``) the answer is today's."""
    review = load_review(REVIEWS / "pod-create-generatename-missing-secret.json")["body"]
    review["request"]["userInfo"] = {"username": "x", "groups": ["system:masters"]}
    body = json.dumps(review).encode()
    headers = {"Content-Type": "application/json"}
    with golden_server.client() as anyone:
        forged = anyone.post("/validate", content=body, headers=headers).json()["response"]
    message = forged["status"]["message"]
    assert 'imagePullSecret "missing-secret" does not exist in namespace "team-a"' in message
    assert "shared" not in message, message
    ca = make_bundle(["api-server-ca"]).write(tmp_path / "client-ca")
    api_server = client_certificate(
        tmp_path / "certs-client", "kube-apiserver", ca=ca["ca.crt"], ca_key=ca["ca.key"]
    )
    data = Path(__file__).parent / "data"
    server = start_server(
        tmp_path,
        "--client-ca",
        str(ca["ca.crt"]),
        "--cluster-state",
        str(data / "cluster-state.yaml"),
        "--config",
        str(data / "config.yaml"),
        "--namespace",
        "pullguard",
    )
    try:
        with _client(server, api_server) as trusted:
            reply = trusted.post("/validate", content=body, headers=headers).json()["response"]
    finally:
        stop_server(server)
    assert '(it exists in "shared")' in reply["status"]["message"], reply


def _forged_configmap_review(uid: str) -> bytes:
    """pullguard's own ConfigMap with about the most expensive document the size and node
    caps let through (valid: 19,900 exempt namespaces)."""
    from webhook.core.config import MAX_DOCUMENT_BYTES

    doc = "exemptNamespaces:\n" + "".join(f"  - n{i}\n" for i in range(19_900))
    doc += "#" + "x" * (MAX_DOCUMENT_BYTES - len(doc.encode()) - 10) + "\n"
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "namespace": "pullguard",
            "name": "pullguard-config",
            "operation": "UPDATE",
            "object": {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "pullguard-config", "namespace": "pullguard"},
                "data": {"config.yaml": doc},
            },
        },
    }
    return json.dumps(review).encode()


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One worker, pullguard's namespace known (its ConfigMap's reviews are judged): shared
    by the tests below that send their requests one after another and wait for every answer,
    so none leaves work behind for the next (a server start and stop is seconds each)."""
    server = start_server(
        tmp_path_factory.mktemp("one-worker"), "--workers", "1", "--namespace", "pullguard"
    )
    yield server
    stop_server(server)


def test_forged_configmap_reviews_do_not_hold_up_real_ones(one_worker: Server) -> None:
    """Eight forged ConfigMap reviews in a loop used to keep real reviews waiting past the
    API server's 5 s: each cost the worker's event loop 1-2 s of YAML parsing."""
    import concurrent.futures
    import threading

    server = one_worker
    real = json.dumps(load_review(REVIEWS / "pod-create-plain.json")["body"]).encode()
    headers = {"Content-Type": "application/json"}
    stop = threading.Event()
    forged_answers: list[float] = []

    def forge(n: int) -> None:
        with server.client() as client:
            while not stop.is_set():
                started = time.perf_counter()
                reply = client.post(
                    "/validate", content=_forged_configmap_review(f"f-{n}"), headers=headers
                )
                assert reply.status_code == 200, reply.text[:300]
                forged_answers.append(time.perf_counter() - started)

    latencies = []
    try:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            forgers = [pool.submit(forge, n) for n in range(8)]
            time.sleep(1.0)
            with server.client() as client:
                for _ in range(20):
                    started = time.perf_counter()
                    reply = client.post("/validate", content=real, headers=headers)
                    latencies.append(time.perf_counter() - started)
                    assert reply.status_code == 200
            stop.set()
            for forger in forgers:
                forger.result()
    finally:
        stop.set()
    print(
        f"\n8 forgers ({len(forged_answers)} forged ConfigMap reviews, slowest "
        f"{max(forged_answers):.2f}s): real reviews slowest {max(latencies):.3f}s, "
        f"median {sorted(latencies)[10]:.3f}s"
    )
    assert forged_answers
    assert max(latencies) < 1.0, latencies


def _peak_rss_mib(pid: int) -> float:
    """The process's peak RSS so far (``VmHWM``), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for {pid}")


def _held_review(uid: str, image: str, filler: bytes, size: int) -> bytes:
    """A Pod review whose image is on a registry that never answers (so the review is held
    for ``registry.timeoutSeconds`` once decoded), padded to about ``size`` bytes with an
    unknown field made of ``filler`` repeated."""
    review = load_review(REVIEWS / "pod-create-plain.json")["body"]
    review["request"]["uid"] = uid
    spec = review["request"]["object"]["spec"]
    spec.pop("initContainers", None)
    spec["containers"][0]["image"] = image
    spec["x"] = []
    head, tail = json.dumps(review).encode().split(b'"x": []')
    count = (size - len(head) - len(tail)) // len(filler)
    return head + b'"x": [' + filler * count + filler.rstrip(b",") + b"]" + tail


@pytest.fixture(scope="module")
def decoding_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, str]]:
    """One worker, and an image on a registry that never answers (each decoded review is
    held for ``registry.timeoutSeconds``). Shared by the two decoding tests: each waits for
    every answer, so the reservations are all released when it ends."""
    from tests.integration.faults import FaultServer
    from tests.integration.registries import loopback_tls

    tmp_path = tmp_path_factory.mktemp("decoding")
    tls = loopback_tls(tmp_path / "tls")
    hang = FaultServer("hang", tls)
    config = tmp_path / "config.yaml"
    config.write_text(
        "registry:\n  allowPrivateNetworks: true\n  timeoutSeconds: 2\nchecks: {platform: off}\n"
    )
    try:
        server = start_server(
            tmp_path,
            "--workers",
            "1",
            "--config",
            str(config),
            env={"SSL_CERT_FILE": str(tls["ca"])},
        )
        try:
            yield server, f"{hang.host}/team/app:1.0"
        finally:
            stop_server(server)
    finally:
        hang.stop()


def _post_all(server: Server, bodies: list[bytes]) -> list[httpx.Response]:
    import concurrent.futures

    def post(body: bytes) -> httpx.Response:
        with server.client() as client:
            return client.post(
                "/validate", content=body, headers={"Content-Type": "application/json"}
            )

    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, bodies))


def test_bodies_that_decode_to_hundreds_of_mib_do_not_grow_a_worker(
    decoding_server: tuple[Server, str],
) -> None:
    """A 6.8 MiB body of ``[{},{},...]`` decodes to about 180 MiB of Python objects; four at
    once, each held while the registry is asked, took a worker to 560 MiB (limit 384)."""
    server, image = decoding_server
    (worker,) = _workers(server)
    before = _peak_rss_mib(worker)
    size = int(6.8 * 2**20)
    bodies = [_held_review(f"heavy-{n}", image, b"{},", size) for n in range(4)]
    replies = _post_all(server, bodies) + _post_all(server, bodies)
    peak = _peak_rss_mib(worker)
    real = load_review(REVIEWS / "pod-create-plain.json")["body"]
    with server.client() as client:
        reply = client.post("/validate", json=real)
    print(
        f"\n8 reviews of {size / 2**20:.1f} MiB of [{{}},...] (4 at once): worker peak RSS "
        f"{before:.0f} MiB before, {peak:.0f} MiB after; answers "
        f"{sorted({r.status_code for r in replies})}"
    )
    assert reply.status_code == 200, reply.text[:300]
    for answer in replies:
        assert answer.status_code == 413, answer.text[:300]
        response = answer.json()["response"]
        assert response["uid"].startswith("heavy-")
        assert "is too big to decode: it would take about" in response["status"]["message"]
    assert peak < RSS_LIMIT_MIB, f"worker peak RSS {peak:.0f} MiB under the attack"


def test_several_bodies_past_the_decoding_budget_at_once_get_429(
    decoding_server: tuple[Server, str],
) -> None:
    """Each fits alone (about 40 MiB decoded); held together past the worker's budget, the
    rest get 429 with Retry-After, and the ones that fit are judged."""
    server, image = decoding_server
    bodies = [_held_review(f"big-{n}", image, b'"ab",', 3 * 2**20) for n in range(5)]
    replies = _post_all(server, bodies)
    codes = sorted(r.status_code for r in replies)
    print(f"\n5 reviews of 3 MiB of strings at once: {codes}")
    assert set(codes) == {200, 429}, codes
    for answer in replies:
        if answer.status_code == 429:
            assert answer.headers["Retry-After"] == "1"
            assert "decoding about" in answer.json()["response"]["status"]["message"]
        assert answer.json()["response"]["uid"].startswith("big-")


def test_real_large_reviews_are_still_decoded(one_worker: Server) -> None:
    """What the API server sends fits the decoding budget: a 3 MiB Pod and its oldObject
    (env entries and their managedFields), pullguard's own ConfigMap whose document is JSON
    text, and every captured review."""
    from tests.conftest import review_files
    from webhook.core.config import MAX_DOCUMENT_BYTES

    server = one_worker
    review = load_review(REVIEWS / "pod-create-plain.json")["body"]
    pod = review["request"]["object"]
    count = 26_000
    pod["spec"]["containers"][0]["env"] = [
        {"name": f"VARIABLE_{i}", "value": f"value-{i}"} for i in range(count)
    ]
    pod["metadata"]["managedFields"] = [
        {
            "manager": "kubectl",
            "operation": "Update",
            "apiVersion": "v1",
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:spec": {
                    "f:containers": {
                        'k:{"name":"app"}': {
                            ".": {},
                            "f:env": {
                                f'k:{{"name":"VARIABLE_{i}"}}': {
                                    ".": {},
                                    "f:name": {},
                                    "f:value": {},
                                }
                                for i in range(count)
                            },
                        }
                    }
                }
            },
        }
    ]
    review["request"].update(operation="UPDATE", oldObject=pod)
    compact = (",", ":")  # as the API server writes it
    body = json.dumps(review, separators=compact).encode()
    pod_size = len(json.dumps(pod, separators=compact))
    assert 2.5 * 2**20 < pod_size <= 3 * 2**20, pod_size
    doc = json.dumps({"exemptNamespaces": [f"n{i}" for i in range(19_000)]})
    doc = doc[: MAX_DOCUMENT_BYTES - 400].rsplit(",", 1)[0] + "]}"
    configmap = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "cm",
            "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
            "namespace": "pullguard",
            "name": "pullguard-config",
            "operation": "UPDATE",
            "object": {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "pullguard-config", "namespace": "pullguard"},
                "data": {"config.yaml": doc, "previous.json": doc},
            },
        },
    }
    configmap["request"]["oldObject"] = configmap["request"]["object"]
    from webhook.core.review import decoded_cost

    print(
        f"\nestimates: {len(body) / 2**20:.1f} MiB Pod UPDATE "
        f"{decoded_cost(body) / 2**20:.0f} MiB, ConfigMap "
        f"{decoded_cost(json.dumps(configmap).encode()) / 2**20:.0f} MiB"
    )
    for endpoint in ("/validate", "/mutate"):  # each within the worker's decoding time
        reply = _post_as_the_api_server_does(server, body, endpoint)
        assert reply.status_code == 200, reply.text[:300]
    reply = _post_as_the_api_server_does(server, json.dumps(configmap).encode())
    assert reply.status_code == 200, reply.text[:300]
    assert reply.json()["response"]["allowed"] is True, reply.text[:300]
    with server.client() as client:
        for path in review_files():
            captured = load_review(path)
            reply = client.post(captured["path"], json=captured["body"])
            assert reply.status_code == 200, (path.name, reply.text[:300])


def _env_heavy_pod(count: int, *, managers: int, name: str, annotation: str = "") -> dict[str, Any]:
    """A Pod of ``count`` env entries, and the managedFields of ``managers`` managers that
    each set all of them (kubectl, a server-side apply, a controller): the shape that
    decodes to the most per byte among the objects the API server stores for pods."""
    pod = load_review(REVIEWS / "pod-create-plain.json")["body"]["request"]["object"]
    names = [name.format(i=i) for i in range(count)]
    pod["spec"]["containers"][0]["env"] = [
        {"name": n, "value": str(i)} for i, n in enumerate(names)
    ]
    fields = {f'k:{{"name":"{n}"}}': {".": {}, "f:name": {}, "f:value": {}} for n in names}
    pod["metadata"]["managedFields"] = [
        {
            "manager": f"manager-{m}",
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2026-12-01T00:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:containers": {'k:{"name":"app"}': {"f:env": fields}}}},
        }
        for m in range(managers)
    ]
    if annotation:
        pod["metadata"].setdefault("annotations", {})["description"] = annotation
    return pod


def _most_env_entries_within(limit: int, *, managers: int, name: str, annotation: str = "") -> int:
    """The most env entries that keep the Pod's compact JSON within ``limit`` bytes: the
    ``n`` with ``size(n) <= limit < size(n + 1)``, both encoded and checked. Each entry adds
    about the same bytes, so a step by the bytes per entry lands within a few entries: a
    handful of encodings of the full Pod (a bisection from 100 to 200,000 took 18, some of
    them of 8 MiB)."""
    compact = (",", ":")  # as the API server writes it

    def size(count: int) -> int:
        pod = _env_heavy_pod(count, managers=managers, name=name, annotation=annotation)
        return len(json.dumps(pod, separators=compact, ensure_ascii=False).encode())

    low, low_size = 100, size(100)  # invariant: size(low) <= limit < size(high)
    high: int | None = None
    per_entry = (size(1100) - low_size) / 1000
    guess = low + int((limit - low_size) / per_entry)
    while high is None or high - low > 1:
        guess = max(guess, low + 1) if high is None else min(max(guess, low + 1), high - 1)
        here = size(guess)
        if here <= limit:
            low, low_size = guess, here
            guess += max(1, int((limit - here) / per_entry))
            # Right below the limit: the next entry decides, so ask it at once.
            guess = min(guess, low + 1) if limit - here < 2 * per_entry else guess
        else:
            high = guess
            guess -= max(1, int((here - limit) / per_entry))
    return low


@pytest.fixture(scope="module")
def decoding_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server of one worker for the tests below: each posts one large body at a time
    and measures only its own answer (and the worker's peak RSS from where it is)."""
    server = start_server(tmp_path_factory.mktemp("decoding"), "--workers", "1")
    try:
        yield server
    finally:
        stop_server(server)


def _post_as_the_api_server_does(
    server: Server, body: bytes, endpoint: str = "/validate"
) -> httpx.Response:
    """``body`` posted to ``endpoint``, and again after ``Retry-After`` while answered 429 (as
    client-go does): a worker decodes long bodies only within its share of time, and the
    tests here post several in a row. 429 only if still refused after 30 s."""
    deadline = time.monotonic() + 30
    with server.client() as client:
        while True:
            reply = client.post(
                endpoint, content=body, headers={"Content-Type": "application/json"}
            )
            if reply.status_code != 429 or time.monotonic() > deadline:
                return reply
            time.sleep(float(reply.headers.get("Retry-After", "1")))


def test_a_body_of_numbers_does_not_decode_past_its_estimate(decoding_worker: Server) -> None:
    """``decoded_cost`` priced a number at its digits plus 30 for its comma, but orjson's
    decode of ``[999,999,...]`` holds an int object (28 bytes, 32 in pymalloc), its list slot
    and its own parse buffer (12 bytes a byte of body) at once: a 7 MiB body (under the
    cap, estimate 59.5 MiB, under the 96 MiB a review may take alone) raised the worker's
    peak RSS by 113 MiB. Measured: the peak rise, less the body's bytes, must stay within
    the estimate the budget reserved. First of the module's tests: the worker's RSS has not
    held a larger decode yet."""
    from webhook.core.review import decoded_cost

    server = decoding_worker
    count = (MAX_BODY_BYTES - 100) // 4
    body = b"[" + b",".join([b"999"] * count) + b"]"
    estimate = decoded_cost(body) / 2**20
    (worker,) = _workers(server)
    with server.client() as client:
        client.get("/healthz")
    Path(f"/proc/{worker}/clear_refs").write_text("5")  # reset VmHWM to the RSS now
    before = _peak_rss_mib(worker)
    reply = _post_as_the_api_server_does(server, body)
    rise = _peak_rss_mib(worker) - before
    print(
        f"\n{len(body) / 2**20:.1f} MiB of [999,...]: {reply.status_code}, estimate "
        f"{estimate:.1f} MiB, worker peak RSS rise {rise:.1f} MiB"
    )
    assert reply.status_code in (400, 413), reply.text[:300]
    assert rise - len(body) / 2**20 <= estimate, (rise, estimate)


def _env_heavy_update(managers: int, name: str, annotation: str = "") -> bytes:
    """An UPDATE of the largest env-heavy Pod within 3 MiB (as object and oldObject), as the
    API server writes it: compact, UTF-8 rather than ``\\u`` escapes (Go's encoding/json)."""
    compact = (",", ":")
    count = _most_env_entries_within(3 * 2**20, managers=managers, name=name, annotation=annotation)
    pod = _env_heavy_pod(count, managers=managers, name=name, annotation=annotation)
    review = load_review(REVIEWS / "pod-create-plain.json")["body"]
    review["request"].update(operation="UPDATE", object=pod, oldObject=pod)
    return json.dumps(review, separators=compact, ensure_ascii=False).encode()


@pytest.mark.parametrize(
    ("managers", "name", "annotation"),
    [(1, "V{i}", ""), (4, "V{i}", ""), (1, "VARIABLE_{i}", ""), (1, "V{i}", "café")],
    ids=["1 manager", "4 managers", "long names", "one non-ASCII character"],
)
def test_an_update_of_two_3_mib_env_heavy_objects_is_decoded(
    decoding_worker: Server, managers: int, name: str, annotation: str
) -> None:
    """Where an admin raised etcd's limit to 3 MiB, an UPDATE of such a Pod carries it twice:
    its estimate was about 112 MiB (19 times its size), past the 96 MiB a review may take
    alone, and the API server's own review got 413. With ``description: café`` in an
    annotation the estimate priced every byte 4 times (98 MiB, 413 again), though only the
    strings holding a character past ASCII decode wider, and ``é`` not even (Latin-1 is a
    byte a character)."""
    from webhook.core.review import decoded_cost

    body = _env_heavy_update(managers, name, annotation)
    reply = _post_as_the_api_server_does(decoding_worker, body)
    print(
        f"\n{len(body) / 2**20:.2f} MiB UPDATE ({managers} managers, env {name!r}, "
        f"annotation {annotation!r}): {reply.status_code}, estimate "
        f"{decoded_cost(body) / 2**20:.0f} MiB"
    )
    assert reply.status_code == 200, reply.text[:300]
    assert reply.json()["response"]["uid"] == json.loads(body)["request"]["uid"]


def test_bodies_that_decode_slowly_never_hold_up_real_reviews(tmp_path: Path) -> None:
    """The decoding budget bounds memory, not time: a body of ``[{},{},...]`` just under the
    96 MiB a review may take alone is decoded, and takes the worker's one event loop for
    most of a second (the decoder holds the GIL: a thread would not free the loop); every
    other connection waits meanwhile, its TLS handshake included. Four connections posting
    it in a loop (no pressure, no slow client) kept every real review past 5 s. Before the
    fix: 0 of 5 answered within 5 s (ConnectTimeout). Now a worker's long decodes take at
    most a quarter of its time (``edge.app.DecodeTime``; 8 decoded in 80 s, 99 answered 429),
    yet still 0 of 5 answered. The same attack with a 3.3 MiB string (decoded in
    milliseconds, no 429) also answered 0 of 5: what held the loop was receiving the four
    looping connections' bodies, not decoding them. gunicorn dropped the ``Connection:
    close`` of a 429 (a hop-by-hop header the app sets) and, keeping the connection, read
    the whole unread body to reach the next request: some 45 bodies of 3.3 MiB a second
    (fix20: 2 runs alone, 2.4 to 3.9 s, 3 runs beside other tests, 1 or 2 of 5 late, up to
    7.2 s). Now a 413 or 429 ends its connection (``_CoalescingSocket.close_after_answer``):
    about 50 answered 429 a run, real reviews 0.03 to 1.8 s."""
    from webhook.core.review import decoded_cost
    from webhook.edge.app import LARGE_DECODED_SHARE

    low, high = 1000, 3_000_000
    while low < high:  # the most {} whose estimate is within what one review may take
        middle = (low + high + 1) // 2
        fits = decoded_cost(b"[" + b",".join([b"{}"] * middle) + b"]") <= LARGE_DECODED_SHARE
        low, high = (middle, high) if fits else (low, middle - 1)
    bad = b"[" + b",".join([b"{}"] * low) + b"]"
    server = start_server(tmp_path, "--workers", "1")
    context = ssl.create_default_context(cafile=str(server.ca))
    answers: list[int | str] = []

    def decode_heavy(stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                with httpx.Client(base_url=server.url, verify=context, timeout=30) as client:
                    while not stop.is_set():
                        reply = client.post(
                            "/validate", content=bad, headers={"Content-Type": "application/json"}
                        )
                        answers.append(reply.status_code)
            except httpx.HTTPError:  # a 429 sent before the body was read, the rest unsent
                answers.append("cut")

    stop = threading.Event()
    attackers = [threading.Thread(target=decode_heavy, args=(stop,)) for _ in range(4)]
    try:
        for attacker in attackers:
            attacker.start()
        time.sleep(1.5)  # the attack holds the loop
        results = [_review_as_the_api_server_sends_it(server) for _ in range(5)]
        stop.set()
        for attacker in attackers:
            attacker.join(timeout=30)
        print(
            f"\n4 connections posting {len(bad) / 2**20:.1f} MiB of [{{}},...] (estimate "
            f"{decoded_cost(bad) / 2**20:.0f} MiB): real reviews {results}; the attack's "
            f"answers {collections.Counter(answers)}"
        )
        late = [r for r in results if r[0] != 200 or r[1] >= WEBHOOK_TIMEOUT]
        assert not late, f"{len(late)} of {len(results)} real reviews not answered in time"
        assert 400 in answers, "no attacking body was decoded: the test proves nothing"
        assert 429 in answers or "cut" in answers, answers
    finally:
        stop.set()
        stop_server(server)
