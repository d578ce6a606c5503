"""pullguard's verdict against a real runtime's pull: the agreement matrix (issue 21).

For every case a Pod is created through the real API server (pullguard installed from
``deploy/``, its pull secrets in the namespace), and the same image is pulled by a private
containerd (:mod:`tests.runtime`) over CRI ``PullImage`` with the credentials the kubelet
would choose: the pod's pull secrets in the keyring's order, each tried until one pulls,
anonymous only when none matched, nothing at all when a secret cannot be parsed
(``MakeDockerKeyring`` fails before any pull). Those credentials are written in each case
by hand from the kubelet's rules (FACTS.md), not computed by pullguard's own keyring.

Agreement, asserted for every case besides its expected verdict and pull:

- a denial only where the pull fails, for a reason certain at admission;
- no silent admission where the pull fails (a warning at least, saying why).

Where the runtime and the kubelet's credentials are not the whole story, the case says so
(``why``): CRI-O's platform choice, emulated architectures, ``imagePullPolicy: Never``.
The pods are bound with ``spec.nodeName`` to a Node object standing for this containerd's
node (linux/amd64); the cluster also has a linux/arm64 Node, pulled for with ``ctr
--platform linux/arm64`` against the same daemon. ``pytest -s`` prints the matrix.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.cluster import ADMIN_TOKEN, ControlPlane, wait_for
from tests.e2e.conftest import E2ERegistries, namespace
from tests.integration.faults import Request, ScriptedServer
from tests.integration.registries import (
    OCI_MANIFEST,
    Registry,
    TokenServer,
    push_image,
    push_index,
    start_registry,
)
from tests.runtime import Containerd, PullResult

pytestmark = pytest.mark.e2e

NS = "runtime-matrix"
AMD64_NODE, ARM64_NODE = "runtime-amd64", "runtime-arm64"
USER, PASSWORD = "robot", "s3cret!"  # base64 of "robot:s3cret!" needs padding
TOKEN_USER, TOKEN_PASSWORD = "tokbot", "tok-pw"
#: The kubelet cannot parse one of the pod's secrets: it pulls nothing.
KEYRING_FAILS = "keyring fails"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


PADDED = b64(f"{USER}:{PASSWORD}")
UNPADDED = PADDED.rstrip("=")
WRONG = b64(f"{USER}:wrong")


@dataclass
class Setup:
    pub: Registry  # anonymous
    priv: Registry  # htpasswd robot:s3cret!
    tok: Registry  # priv's storage behind Bearer tokens (tokbot may pull team/*)
    mirror: Registry  # a pull-through proxy of pub
    gone: Registry  # stopped before any case
    digests: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    name: str
    image: str
    verdict: str  # pullguard through the API server: deny | warn | admit
    pulls: bool  # the runtime's pull succeeds
    kubelet: tuple[tuple[str, str], ...] | str = ()  # credentials, in order; or KEYRING_FAILS
    secrets: tuple[str, ...] = ()
    node: str = AMD64_NODE
    policy: str | None = None
    volume: bool = False
    why: str = ""


# -- the registries and the images on them -------------------------------------------------


@pytest.fixture(scope="module")
def setup(
    registries: E2ERegistries, runtime: Containerd, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("runtime-matrix")
    tls = registries.tls
    priv = start_registry(base / "priv", auth=(USER, PASSWORD), **tls)
    tokens = TokenServer(base / "tokens", {TOKEN_USER: (TOKEN_PASSWORD, ("team/",))}, tls)
    tok = start_registry(base / "tok", token=tokens, storage=base / "priv" / "data", **tls)
    mirror = start_registry(base / "mirror", proxy_of=registries.public, **tls)
    gone = start_registry(base / "gone", **tls)
    started = [priv, tok, mirror, gone]
    try:
        for registry in started:
            runtime.trust(registry.host, registries.ca)
        pub = registries.public
        digests = {
            "web": push_image(pub, "matrix/web", "1.0"),
            "api": push_image(priv, "team/api", "1.0"),
        }
        push_image(priv, "other/app", "1.0")
        push_image(pub, "matrix/never", "1.0", content=b"never pulled\n")
        push_image(pub, "matrix/armsingle", "1.0", architecture="arm64")
        push_index(pub, "matrix/multi", "1.0", [("linux", "amd64"), ("linux", "arm64")])
        push_index(pub, "matrix/armonly", "1.0", [("linux", "arm64"), ("linux", "s390x")])
        push_index(pub, "matrix/i386", "1.0", [("linux", "386")])
        push_index(pub, "matrix/v3", "1.0", [("linux", "amd64", "v3"), ("linux", "arm64")])
        push_index(pub, "matrix/v3i386", "1.0", [("linux", "amd64", "v3"), ("linux", "386")])
        push_index(pub, "matrix/v1", "1.0", [("linux", "amd64", "v1")])
        with pub.client() as http:
            manifest = http.get(
                f"/v2/matrix/web/manifests/{digests['web']}", headers={"Accept": OCI_MANIFEST}
            ).json()
        digests["config"] = manifest["config"]["digest"]
        push_image(gone, "matrix/gone", "1.0")
        gone.stop()
        yield Setup(pub, priv, tok, mirror, gone, digests)
    finally:
        for registry in started:
            registry.stop()
        tokens.stop()


def dockerconfigjson(name: str, document: dict[str, Any] | str, kind: str = "") -> dict[str, Any]:
    text = document if isinstance(document, str) else json.dumps(document)
    secret_type = kind or "kubernetes.io/dockerconfigjson"
    key = ".dockercfg" if secret_type == "kubernetes.io/dockercfg" else ".dockerconfigjson"
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": NS},
        "type": secret_type,
        "data": {key: b64(text)},
    }


def secrets_for(s: Setup) -> list[dict[str, Any]]:
    priv, pub, tok = s.priv.host, s.pub.host, s.tok.host
    host, port = priv.split(":")
    auths = lambda entries: {"auths": entries}  # noqa: E731 - a table of one-liners
    return [
        dockerconfigjson("padded", auths({priv: {"auth": PADDED}})),
        dockerconfigjson("unpadded", auths({priv: {"auth": UNPADDED}})),
        dockerconfigjson("wrong", auths({priv: {"auth": WRONG}})),
        dockerconfigjson("wrong-unpadded", auths({priv: {"auth": WRONG.rstrip("=")}})),
        dockerconfigjson("fields", auths({priv: {"username": USER, "password": PASSWORD}})),
        dockerconfigjson("upper", auths({priv: {"Username": USER, "PASSWORD": PASSWORD}})),
        dockerconfigjson("no-port", auths({host: {"auth": PADDED}})),
        dockerconfigjson("url-v1", auths({f"https://{priv}/v1/": {"auth": PADDED}})),
        dockerconfigjson("http-url", auths({f"http://{priv}": {"auth": PADDED}})),
        dockerconfigjson("userinfo", auths({f"https://x:y@{priv}/": {"auth": PADDED}})),
        dockerconfigjson("path-team", auths({f"{priv}/team": {"auth": PADDED}})),
        dockerconfigjson("path-other", auths({f"{priv}/other": {"auth": PADDED}})),
        dockerconfigjson("glob-label", auths({f"*.0.0.1:{port}": {"auth": PADDED}})),
        dockerconfigjson("glob-last", auths({f"127.0.0.*:{port}": {"auth": PADDED}})),
        dockerconfigjson("glob-one", auths({f"*:{port}": {"auth": PADDED}})),
        dockerconfigjson(
            "specific-wrong",
            auths({f"{priv}/team/api": {"auth": WRONG}, priv: {"auth": PADDED}}),
        ),
        dockerconfigjson("other-host", auths({pub: {"auth": PADDED}})),
        dockerconfigjson("pub-creds", auths({pub: {"auth": PADDED}})),
        dockerconfigjson("empty", {}),
        dockerconfigjson("legacy", {priv: {"auth": PADDED}}, "kubernetes.io/dockercfg"),
        dockerconfigjson("bad-b64", auths({priv: {"auth": "!!not base64!!"}})),
        dockerconfigjson("no-colon", auths({priv: {"auth": b64("robot")}})),
        dockerconfigjson("auths-list", {"auths": []}),
        dockerconfigjson("number", auths({priv: {"username": USER, "password": 7}})),
        dockerconfigjson("tok", auths({tok: {"auth": b64(f"{TOKEN_USER}:{TOKEN_PASSWORD}")}})),
        dockerconfigjson("tok-wrong", auths({tok: {"auth": b64(f"{TOKEN_USER}:nope")}})),
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "opaque", "namespace": NS},
            "type": "Opaque",
            "data": {".dockerconfigjson": b64(json.dumps(auths({priv: {"auth": PADDED}})))},
        },
    ]


def cases(s: Setup) -> list[Case]:
    pub, priv, tok, mirror = s.pub.host, s.priv.host, s.tok.host, s.mirror.host
    good = ((USER, PASSWORD),)
    bad = ((USER, "wrong"),)
    api = f"{priv}/team/api:1.0"
    web = f"{pub}/matrix/web:1.0"
    missing_digest = "sha256:" + "0" * 64
    return [
        # A public registry: what exists, what does not.
        Case("pub: tag exists", web, "admit", True),
        Case("pub: tag never pushed", f"{pub}/matrix/web:9.9", "deny", False),
        Case("pub: repository missing", f"{pub}/matrix/nothing:1.0", "deny", False),
        Case("pub: digest exists", f"{pub}/matrix/web@{s.digests['web']}", "admit", True),
        Case("pub: digest missing", f"{pub}/matrix/web@{missing_digest}", "deny", False),
        Case(
            "pub: digest names a blob (image ID)",
            f"{pub}/matrix/web@{s.digests['config']}",
            "deny",
            False,
        ),
        Case(
            "pub: tag and digest, digest decides",
            f"{pub}/matrix/web:9.9@{s.digests['web']}",
            "admit",
            True,
        ),
        Case("pub: upper-case repository", f"{pub}/Matrix/web:1.0", "deny", False),
        # Secrets on a public image: only a secret the kubelet cannot parse matters.
        Case("pub: credentials it ignores", web, "admit", True, good, ("pub-creds",)),
        Case("pub: secret missing", web, "warn", True, (), ("absent",)),
        Case("pub: secret of type Opaque (skipped)", web, "warn", True, (), ("opaque",)),
        Case("pub: empty config (no entries)", web, "admit", True, (), ("empty",)),
        Case(
            "pub: unparseable auth",
            web,
            "deny",
            False,
            KEYRING_FAILS,
            ("bad-b64",),
            why="MakeDockerKeyring fails: no pull at all, even of a public image",
        ),
        Case("pub: auth without a colon", web, "deny", False, KEYRING_FAILS, ("no-colon",)),
        Case("pub: auths is a list", web, "deny", False, KEYRING_FAILS, ("auths-list",)),
        Case("pub: password is a number", web, "deny", False, KEYRING_FAILS, ("number",)),
        Case("pub: unpadded auth for another host", web, "admit", True, (), ("unpadded",)),
        # An htpasswd registry: the kubelet's keyring, key by key.
        Case("priv: no secret", api, "deny", False),
        Case("priv: auth padded", api, "admit", True, good, ("padded",)),
        Case(
            "priv: auth unpadded",
            api,
            "admit",
            True,
            good,
            ("unpadded",),
            why="RawStdEncoding: was denied as 'not base64'",
        ),
        Case("priv: wrong password", api, "deny", False, bad, ("wrong",)),
        Case("priv: wrong password, unpadded", api, "deny", False, bad, ("wrong-unpadded",)),
        Case("priv: username and password fields", api, "admit", True, good, ("fields",)),
        Case(
            "priv: field names in upper case",
            api,
            "admit",
            True,
            good,
            ("upper",),
            why="Go's encoding/json folds case",
        ),
        Case("priv: secret missing", api, "deny", False, (), ("absent",)),
        Case(
            "priv: secret of type Opaque",
            api,
            "deny",
            False,
            (),
            ("opaque",),
            why="skipped by the kubelet: anonymous, 401",
        ),
        Case("priv: legacy dockercfg", api, "admit", True, good, ("legacy",)),
        Case("priv: secret for another host", api, "deny", False, (), ("other-host",)),
        Case(
            "priv: key without the port",
            api,
            "deny",
            False,
            (),
            ("no-port",),
            why="the port must match",
        ),
        Case("priv: key https://host/v1/", api, "admit", True, good, ("url-v1",)),
        Case("priv: key http://host", api, "admit", True, good, ("http-url",)),
        Case("priv: key with user info", api, "admit", True, good, ("userinfo",)),
        Case("priv: key with the repository's path", api, "admit", True, good, ("path-team",)),
        Case("priv: key with another path", api, "deny", False, (), ("path-other",)),
        Case("priv: glob on the first label", api, "admit", True, good, ("glob-label",)),
        Case("priv: glob on the last label", api, "admit", True, good, ("glob-last",)),
        Case(
            "priv: glob of one label for four",
            api,
            "deny",
            False,
            (),
            ("glob-one",),
            why="a glob matches one label; the label count must be equal",
        ),
        Case(
            "priv: most specific key wrong, next right",
            api,
            "admit",
            True,
            (*bad, *good),
            ("specific-wrong",),
        ),
        Case(
            "priv: wrong secret, then a right one",
            api,
            "admit",
            True,
            (*bad, *good),
            ("wrong", "padded"),
        ),
        Case(
            "priv: right secret beside an unparseable one",
            api,
            "deny",
            False,
            KEYRING_FAILS,
            ("bad-b64", "padded"),
        ),
        Case(
            "priv: right secret beside a missing one", api, "warn", True, good, ("absent", "padded")
        ),
        Case(
            "priv: digest exists",
            f"{priv}/team/api@{s.digests['api']}",
            "admit",
            True,
            good,
            ("padded",),
        ),
        Case(
            "priv: digest missing",
            f"{priv}/team/api@{missing_digest}",
            "deny",
            False,
            good,
            ("padded",),
        ),
        Case("priv: tag never pushed", f"{priv}/team/api:9.9", "deny", False, good, ("padded",)),
        Case("priv: empty config", api, "deny", False, (), ("empty",)),
        # A Bearer-token registry.
        Case("tok: no secret", f"{tok}/team/api:1.0", "deny", False),
        Case(
            "tok: right",
            f"{tok}/team/api:1.0",
            "admit",
            True,
            ((TOKEN_USER, TOKEN_PASSWORD),),
            ("tok",),
        ),
        Case(
            "tok: wrong password",
            f"{tok}/team/api:1.0",
            "deny",
            False,
            ((TOKEN_USER, "nope"),),
            ("tok-wrong",),
        ),
        Case(
            "tok: repository outside the grant",
            f"{tok}/other/app:1.0",
            "deny",
            False,
            ((TOKEN_USER, TOKEN_PASSWORD),),
            ("tok",),
        ),
        Case(
            "tok: tag never pushed",
            f"{tok}/team/api:9.9",
            "deny",
            False,
            ((TOKEN_USER, TOKEN_PASSWORD),),
            ("tok",),
        ),
        # A pull-through mirror of the public registry.
        Case("mirror: upstream image", f"{mirror}/matrix/multi:1.0", "admit", True),
        Case("mirror: tag missing upstream", f"{mirror}/matrix/web:9.9", "deny", False),
        Case("mirror: repository missing upstream", f"{mirror}/matrix/none:1.0", "deny", False),
        # Platforms, on the linux/amd64 node (containerd 1.6).
        Case("platform: amd64 and arm64 index", f"{pub}/matrix/multi:1.0", "admit", True),
        Case(
            "platform: arm64 and s390x index",
            f"{pub}/matrix/armonly:1.0",
            "warn",
            False,
            why="platform is warn by default",
        ),
        Case(
            "platform: linux/386-only index",
            f"{pub}/matrix/i386:1.0",
            "warn",
            True,
            why="containerd takes 386 on amd64; CRI-O does not",
        ),
        Case(
            "platform: amd64/v3 and arm64 index",
            f"{pub}/matrix/v3:1.0",
            "warn",
            False,
            why="was admitted silently; platform is warn by default",
        ),
        Case(
            "platform: amd64/v3 and 386 index",
            f"{pub}/matrix/v3i386:1.0",
            "warn",
            True,
            why="containerd takes 386; CRI-O does not",
        ),
        Case("platform: amd64/v1 index", f"{pub}/matrix/v1:1.0", "admit", True),
        Case(
            "platform: single-platform arm64 image",
            f"{pub}/matrix/armsingle:1.0",
            "warn",
            True,
            why="pulled, then exec format error (CrashLoopBackOff)",
        ),
        Case(
            "platform: arm64-only index on the arm64 node",
            f"{pub}/matrix/armonly:1.0",
            "admit",
            True,
            node=ARM64_NODE,
            why="spec.nodeName decides the node",
        ),
        Case(
            "platform: 386-only index on the arm64 node",
            f"{pub}/matrix/i386:1.0",
            "warn",
            False,
            node=ARM64_NODE,
        ),
        Case(
            "platform: single amd64 image, either node",
            web,
            "warn",
            True,
            node="",
            why="pulled on the arm64 node too, then exec format error there",
        ),
        # Image volumes follow the same rules.
        Case(
            "volume: arm64 and s390x index", f"{pub}/matrix/armonly:1.0", "warn", False, volume=True
        ),
        Case("volume: tag never pushed", f"{pub}/matrix/web:9.9", "deny", False, volume=True),
        Case(
            "volume: single-platform arm64 image",
            f"{pub}/matrix/armsingle:1.0",
            "admit",
            True,
            volume=True,
            why="a volume executes nothing",
        ),
        # Where the runtime is not asked to pull.
        Case(
            "policy Never, image not on the node",
            f"{pub}/matrix/never:1.0",
            "warn",
            False,
            policy="Never",
            why="ErrImageNeverPull; no admission can know the node's cache",
        ),
        Case("policy Never, image on the node", web, "warn", True, policy="Never"),
        Case(
            "policy Never, unparseable secret",
            web,
            "warn",
            True,
            (),
            ("bad-b64",),
            policy="Never",
            why="no pull, so no keyring",
        ),
        # A registry that is down.
        Case(
            "registry stopped",
            f"{s.gone.host}/matrix/gone:1.0",
            "warn",
            False,
            why="the nodes may see it; not certain",
        ),
    ]


# -- the runtime's side, and pullguard's ------------------------------------------------------


def runtime_says(runtime: Containerd, case: Case) -> PullResult:
    """The kubelet's pull for ``case`` on its node: no keyring, no pull; ``Never``: only
    what the node already has; else each credential in order (anonymous when none)."""
    if case.policy == "Never":
        present = runtime.image_present(case.image)
        return PullResult(present, error="" if present else "ErrImageNeverPull: not on the node")
    if case.kubelet == KEYRING_FAILS:
        return PullResult(False, error="MakeDockerKeyring failed: the kubelet pulls nothing")
    credentials = list(case.kubelet)
    if case.node == ARM64_NODE:
        return runtime.pull_for_platform(case.image, "linux/arm64", credentials)
    return runtime.pull_as_kubelet(case.image, credentials)


def pod_for(index: int, case: Case, filler: str) -> dict[str, Any]:
    image = filler if case.volume else case.image
    container: dict[str, Any] = {"name": "app", "image": image}
    if case.policy:
        container["imagePullPolicy"] = case.policy
    spec: dict[str, Any] = {"containers": [container]}
    if case.volume:
        spec["volumes"] = [
            {"name": "data", "image": {"reference": case.image, "pullPolicy": "IfNotPresent"}}
        ]
    if case.node:
        spec["nodeName"] = case.node
    if case.secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in case.secrets]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"case-{index}", "namespace": NS},
        "spec": spec,
    }


def admission(
    http: httpx.Client, body: dict[str, Any], *, dry_run: bool = False
) -> tuple[str, str]:
    """pullguard's verdict on a Pod create through the API server, and its words."""
    query = "?dryRun=All" if dry_run else ""
    reply = http.post(f"/api/v1/namespaces/{NS}/pods{query}", json=body)
    warnings = [value.split(" ", 2)[2].strip('"') for value in reply.headers.get_list("warning")]
    if reply.status_code == 403 and "denied the request" in reply.text:
        return "deny", reply.json().get("message", "")
    assert reply.status_code == 201, reply.text
    return ("warn" if warnings else "admit"), " | ".join(warnings)


def agrees(verdict: str, pulled: bool) -> bool:
    """A denial only where the pull fails; no silent admission where it fails."""
    return not (verdict == "deny" and pulled) and not (verdict == "admit" and not pulled)


def node(name: str, arch: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "labels": {"kubernetes.io/os": "linux", "kubernetes.io/arch": arch},
            },
        }
    )


@pytest.fixture
def matrix_cluster(fail_closed: ControlPlane) -> Iterator[httpx.Client]:
    """The matrix namespace and the two Node objects, seen by pullguard; an admin client.
    pullguard's webhooks are at ``failurePolicy: Fail``: an admission is pullguard's own
    answer, never a crash or a timeout let through by Ignore."""
    plane = fail_closed
    # A test before this one deleted the namespace without waiting: let it go first.
    wait_for(lambda: not plane.kubectl("get", "namespace", NS).ok, 120, f"namespace {NS} deleted")
    namespace(plane, NS)
    for name, arch in ((AMD64_NODE, "amd64"), (ARM64_NODE, "arm64")):
        plane.apply(node(name, arch), check=True)
    http = httpx.Client(
        base_url=plane.server,
        verify=ssl.create_default_context(cafile=str(plane.ca)),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )
    try:
        yield http
    finally:
        http.close()
        # No kubelet confirms a pod's end: without --force the namespace waits for the pod
        # garbage collector (about a minute, which the next test spent waiting).
        plane.kubectl("delete", "pods", "--all", "-n", NS, "--force", "--grace-period=0")
        plane.kubectl("delete", "node", AMD64_NODE, ARM64_NODE, "--wait=false")
        plane.kubectl("delete", "namespace", NS, "--wait=false")


def test_pullguard_agrees_with_the_runtime(
    plane: ControlPlane, matrix_cluster: httpx.Client, setup: Setup, runtime: Containerd
) -> None:
    http = matrix_cluster
    items = secrets_for(setup)
    plane.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}), check=True)
    filler = f"{setup.pub.host}/matrix/web:1.0"
    # Both Nodes reach pullguard's cache by watch: an amd64 image without a nodeName then
    # warns about the arm64 node.
    probe = pod_for(0, Case("probe", filler, "", True, node=""), filler)
    wait_for(
        lambda: "linux/arm64 nodes" in admission(http, probe, dry_run=True)[1],
        30,
        "pullguard seeing both Nodes",
    )
    table = cases(setup)
    assert len(table) >= 60
    rows = []
    wrong = []
    started = time.monotonic()
    for index, case in enumerate(table, start=1):
        verdict, words = admission(http, pod_for(index, case, filler))
        pulled = runtime_says(runtime, case)
        agreement = agrees(verdict, pulled.ok)
        expected = verdict == case.verdict and pulled.ok == case.pulls
        rows.append((case, verdict, pulled, agreement, words))
        if not (agreement and expected):
            wrong.append(
                f"{case.name}: pullguard {verdict} (expected {case.verdict}), runtime "
                f"{'pulled' if pulled.ok else 'failed'} (expected "
                f"{'pulled' if case.pulls else 'failed'}): {words[:300]} / {pulled.error[:300]}"
            )
    agreed = sum(1 for row in rows if row[3])
    print(
        f"\nagreement matrix: {len(rows)} cases, {agreed} agree ({time.monotonic() - started:.1f}s)"
    )
    print(f"{'case':<52} {'pullguard':<9} {'runtime':<7} agree  why")
    for case, verdict, pulled, agreement, _words in rows:
        print(
            f"{case.name:<52} {verdict:<9} {'pulls' if pulled.ok else 'fails':<7} "
            f"{'yes' if agreement else 'NO':<6} {case.why}"
        )
        if not pulled.ok:
            # The runtime's own words, without the "failed to pull and unpack" preamble.
            said = pulled.error.rsplit('": ', 1)[-1]
            print(f"{'':<52} runtime: {said[:110]}")
    assert not wrong, "\n".join(wrong)


NAME_UNKNOWN = (
    b'{"errors":[{"code":"NAME_UNKNOWN","message":"repository name not known to registry"}]}'
)


def hiding_front(s: Setup, tls: dict[str, Path]) -> ScriptedServer:
    """A registry host that hides a repository from a login that may not read it behind
    ``404 NAME_UNKNOWN`` (as many registries do for private repositories), in front of the
    htpasswd registry: no login: a Basic challenge; the good login: the registry's answer;
    any other login: the 404."""
    good = "Basic " + PADDED

    def serve(request: Request) -> tuple[int, dict[str, str], bytes]:
        auth = request.headers.get("authorization", "")
        if not auth:
            return 401, {"WWW-Authenticate": 'Basic realm="hiding"'}, b""
        if request.path != "/v2/" and auth != good:
            return 404, {"Content-Type": "application/json"}, NAME_UNKNOWN
        with s.priv.client() as upstream:
            headers = {"Accept": request.headers.get("accept", "*/*"), "Authorization": good}
            reply = upstream.request("GET", request.path, headers=headers)
        keep = ("content-type", "docker-content-digest")
        return (
            reply.status_code,
            {k: v for k, v in reply.headers.items() if k.lower() in keep},
            reply.content,
        )

    return ScriptedServer(tls, serve)


def test_pullguard_agrees_with_the_runtime_where_the_review_found_it_did_not(
    plane: ControlPlane,
    matrix_cluster: httpx.Client,
    setup: Setup,
    runtime: Containerd,
    registries: E2ERegistries,
) -> None:
    """The outside review's cases (issues 20/21), through the real API server at
    ``failurePolicy: Fail`` and the real containerd, each with its expected verdict."""
    http = matrix_cluster
    hiding = hiding_front(setup, registries.tls)
    priv = setup.priv.host
    front = ScriptedServer(
        registries.tls, lambda r: (302, {"Location": f"https://{priv}{r.path}"}, b"")
    )
    for server in (hiding, front):
        runtime.trust(server.host, registries.ca)
    other = ("other", "pw")
    auths = lambda entries: {"auths": entries}  # noqa: E731 - a table of one-liners
    secrets = [
        # Two keys for the hiding host: the path key is the more specific, so tried first.
        dockerconfigjson(
            "rv-hide-other", auths({f"{hiding.host}/team": {"auth": b64("other:pw")}})
        ),
        dockerconfigjson("rv-hide-good", auths({hiding.host: {"auth": PADDED}})),
        dockerconfigjson("rv-front", auths({front.host: {"auth": PADDED}})),
        dockerconfigjson("rv-headers", {"auths": {priv: {"auth": PADDED}}, "HttpHeaders": "x"}),
        dockerconfigjson("rv-percent", auths({f"{priv}/te%61m": {"auth": PADDED}})),
    ]
    plane.apply(json.dumps({"apiVersion": "v1", "kind": "List", "items": secrets}), check=True)
    hidden = f"{hiding.host}/team/api:1.0"
    table = [
        Case(
            "a first login gets 404, the next pulls",
            hidden,
            "admit",
            True,
            (other, (USER, PASSWORD)),
            ("rv-hide-other", "rv-hide-good"),
            why="the kubelet tries the next credential after any failed pull",
        ),
        Case(
            "the only login gets 404",
            hidden,
            "deny",
            False,
            (other,),
            ("rv-hide-other",),
        ),
        Case(
            "a host redirecting to its authenticating backend",
            f"{front.host}/team/api:1.0",
            "warn",
            True,
            ((USER, PASSWORD),),
            ("rv-front",),
            why="containerd answers the backend's challenge with the pod's credentials; "
            "pullguard keeps them from a host the secret is not for, so it cannot know",
        ),
        Case(
            "HttpHeaders not an object of strings, public image",
            f"{setup.pub.host}/matrix/web:1.0",
            "deny",
            False,
            KEYRING_FAILS,
            ("rv-headers",),
            why="json.Unmarshal into map[string]string fails: MakeDockerKeyring fails",
        ),
        Case(
            "key path percent-encoded (/te%61m)",
            f"{priv}/team/api:1.0",
            "admit",
            True,
            ((USER, PASSWORD),),
            ("rv-percent",),
            why="Go's url.Parse decodes the key's path to /team",
        ),
    ]
    # What pullguard's words must say, by case.
    said = {
        "a host redirecting to its authenticating backend": f"{front.host} redirected to "
        f"{priv}, which asks for credentials (HTTP 401); pullguard does not send the pod's "
        "password to a host its secret is not for",
    }
    filler = f"{setup.pub.host}/matrix/web:1.0"
    wrong = []
    try:
        for index, case in enumerate(table, start=500):
            verdict, words = admission(http, pod_for(index, case, filler))
            pulled = runtime_says(runtime, case)
            ran = "pulls" if pulled.ok else "fails"
            print(f"\n{case.name}: pullguard {verdict}; runtime {ran}: {words[:300]}")
            expected = (verdict, pulled.ok) == (case.verdict, case.pulls)
            expected = expected and said.get(case.name, "") in words
            if not (agrees(verdict, pulled.ok) and expected):
                wrong.append(
                    f"{case.name}: pullguard {verdict} (expected {case.verdict}), runtime "
                    f"{'pulled' if pulled.ok else 'failed'}: {words[:300]} / {pulled.error[:300]}"
                )
    finally:
        hiding.stop()
        front.stop()
    assert not wrong, "\n".join(wrong)


def test_pushed_images_unpack_and_a_wrong_diff_id_does_not(
    registries: E2ERegistries, runtime: Containerd
) -> None:
    """The test images are real: containerd unpacks them (the config's diff_ids are the
    uncompressed layers' digests). One whose diff_id is the compressed digest is refused."""
    from tests.integration.registries import _digest, _layer

    pub = registries.public
    push_image(pub, "unpack/good", "1.0", content=b"unpack me\n")
    pulled = runtime.pull(f"{pub.host}/unpack/good:1.0")
    assert pulled.ok, pulled.error
    assert runtime.image_present(f"{pub.host}/unpack/good:1.0")
    compressed = _digest(_layer(b"unpack me too\n"))
    push_image(pub, "unpack/bad", "1.0", content=b"unpack me too\n", diff_id=compressed)
    refused = runtime.pull(f"{pub.host}/unpack/bad:1.0")
    assert not refused.ok
    assert "wrong diff id calculated on extraction" in refused.error
