"""The pull plan: one value per image saying how the kubelet will pull it, made once."""

from __future__ import annotations

from tests.unit.builders import (
    cluster_with,
    container,
    deployment,
    pod,
    pod_spec,
    pull_secret,
)
from webhook.core.cluster import ServiceAccountInfo
from webhook.core.config import load_config_text
from webhook.core.keyring import Credential, Keyring, lookup
from webhook.core.nodecreds import NodeCredentials, ProviderAnswer
from webhook.core.podspec import pod_spec as view_of
from webhook.core.pullplan import CredentialOrigin, ImagePull, origins, plan_pulls
from webhook.core.reference import parse_or_none
from webhook.core.secretcheck import read_pod_secrets


def _plan(obj: dict[str, object]) -> list[ImagePull]:
    view = view_of(str(obj["kind"]), obj)
    assert view is not None
    refs = {c.pointer: ref for c in view.containers if (ref := parse_or_none(c.image)) is not None}
    return plan_pulls(view.containers, refs)


def test_each_entry_says_where_it_sits_and_the_policy_the_kubelet_applies() -> None:
    spec = pod_spec(
        container("latest", "nginx"),
        container("pinned", "nginx:1.27"),
        container("cached", "nginx:1.27", "Never"),
        container("bad", "Nginx:::"),
        init=[container("setup", "busybox:1.36", "Always")],
    )
    pulls = _plan(pod(spec))
    got = [(p.container.label, p.container.image_pointer, p.policy, p.pulled) for p in pulls]
    assert got == [
        ('init container "setup"', "/spec/initContainers/0/image", "Always", True),
        ('container "latest"', "/spec/containers/0/image", "Always", True),
        ('container "pinned"', "/spec/containers/1/image", "IfNotPresent", True),
        ('container "cached"', "/spec/containers/2/image", "Never", False),
        ('container "bad"', "/spec/containers/3/image", "", True),
    ]
    assert pulls[1].ref is not None
    assert pulls[1].ref.name == "docker.io/library/nginx"
    assert pulls[4].ref is None  # the kubelet fails it with InvalidImageName
    assert all(p.credentials == () for p in pulls)  # none until the secrets are read


def test_credentials_come_in_the_kubelets_order_with_their_origin() -> None:
    broad = Credential(key="registry.example.com", username="a", source="team-a/broad")
    team = Credential(key="registry.example.com/team", username="b", source="team-a/team")
    hub = Credential(key="https://index.docker.io/v1/", username="c", source="team-a/hub")
    keyring = Keyring([broad, team, hub])
    origin_of = {"team-a/hub": CredentialOrigin.DEFAULT_COPY}
    private, public = _plan(
        pod(pod_spec(container("app", "registry.example.com/team/app:1"), container("h", "redis")))
    )

    private = private.with_credentials(keyring, origin_of)
    assert private.keyring_credentials == (team, broad)  # most specific key first
    assert [c.origin for c in private.credentials] == [CredentialOrigin.POD] * 2
    public = public.with_credentials(keyring, origin_of)
    assert public.keyring_credentials == (hub,)
    assert public.credentials[0].origin is CredentialOrigin.DEFAULT_COPY
    assert public.credentials[0].secret == "team-a/hub"


def test_node_credentials_come_after_the_pods_secrets() -> None:
    # The seam of the node's credential providers. The kubelet's keyring is the union of
    # the pod's secrets, then the node's (MakeDockerKeyring: passed secrets, then the
    # default keyring; the shared FACTS): a stale pod secret is tried first, and the
    # node's credential after it.
    node = Credential(key="registry.example.com", username="node")
    pod_credential = Credential(key="registry.example.com", username="p", source="team-a/r")
    (pull,) = _plan(pod(pod_spec(container("app", "registry.example.com/app:1"))))
    pull = pull.with_credentials(Keyring([pod_credential]), {}, node=[node])
    assert [(c.credential, c.origin) for c in pull.credentials] == [
        (pod_credential, CredentialOrigin.POD),
        (node, CredentialOrigin.NODE),
    ]


def test_an_entry_that_cannot_be_parsed_gets_no_credentials() -> None:
    (pull,) = _plan(pod(pod_spec(container("bad", "Nginx:::"))))
    anything = Credential(key="*", source="team-a/r")
    assert pull.with_credentials(Keyring([anything]), {}).credentials == ()


def test_the_keyring_answers_as_lookup_does() -> None:
    credentials = [
        Credential(key="https://index.docker.io/v1/", source="a/hub"),
        Credential(key="*.example.com:5000", source="a/glob"),
        Credential(key="https://robot:pa/ss@host.example.com", source="a/broken"),
    ]
    keyring = Keyring(credentials)
    for image in (
        "docker.io/library/nginx",
        "registry.example.com:5000/app",
        "registry.example.com/app",
        "host.example.com/app",
    ):
        assert keyring.lookup(image) == lookup(credentials, image)
    assert keyring.lookup("docker.io/library/nginx") == [credentials[0]]
    assert keyring.lookup("registry.example.com:5000/app") == [credentials[1]]
    assert keyring.lookup("host.example.com/app") == []  # a key url.Parse refuses


def test_origins_name_defaults_and_the_service_accounts_secrets() -> None:
    own = Credential(key="r", source="team-a/own")
    # judged by its source's contents, labelled as the secret the pod will use
    default = Credential(key="r", source="team-a/hub")
    assert origins([own, default], account=False, copies={"team-a/hub": "pullguard"}) == {
        "team-a/own": CredentialOrigin.POD,
        "team-a/hub": CredentialOrigin.DEFAULT_COPY,
    }
    assert origins([own], account=True, copies={}) == {
        "team-a/own": CredentialOrigin.SERVICE_ACCOUNT
    }


def test_a_templates_pulls_carry_its_service_accounts_credentials() -> None:
    # The API server adds the account's secrets only to Pods: a template is judged with them,
    # and its pulls say so.
    config = load_config_text("privateRegistries: [registry.example.com]\n")
    account = ServiceAccountInfo("team-a", "builder", ("regcred",))
    cluster = cluster_with(
        pull_secret("team-a", "regcred", "registry.example.com"), accounts=(account,)
    )
    obj = deployment(pod_spec(container("web", "registry.example.com/team/web:1"), sa="builder"))
    view = view_of("Deployment", obj)
    assert view is not None
    pulls = _plan(obj)
    secrets = read_pod_secrets(
        view, pulls, config=config, cluster=cluster, namespace="team-a", lists_own_secrets=False
    )
    assert [p.container.name for p in secrets.configured_needing] == ["web"]
    (pull,) = secrets.with_credentials(pulls)
    assert [(c.secret, c.origin) for c in pull.credentials] == [
        ("team-a/regcred", CredentialOrigin.SERVICE_ACCOUNT)
    ]


def test_the_pods_secrets_pass_node_credentials_through_the_one_seam() -> None:
    # PodSecrets.with_credentials is how validate gives pulls their credentials: node
    # credentials (issue 24) go through it to ImagePull.with_credentials, after the pod's.
    config = load_config_text("privateRegistries: [registry.example.com]\n")
    cluster = cluster_with(pull_secret("team-a", "regcred", "registry.example.com"))
    obj = pod(pod_spec(container("web", "registry.example.com/team/web:1"), secrets=["regcred"]))
    view = view_of("Pod", obj)
    assert view is not None
    pulls = _plan(obj)
    secrets = read_pod_secrets(
        view, pulls, config=config, cluster=cluster, namespace="team-a", lists_own_secrets=True
    )
    node = Credential(key="registry.example.com", username="node")
    answers = {"registry.example.com/team/web": (ProviderAnswer("ecr", (node,)),)}
    (pull,) = secrets.with_credentials(pulls, NodeCredentials(answers))
    assert [(c.secret, c.origin) for c in pull.credentials] == [
        ("team-a/regcred", CredentialOrigin.POD),
        ("", CredentialOrigin.NODE),
    ]


def test_a_reviews_keyring_asked_about_some_secrets_answers_as_theirs_alone() -> None:
    # One keyring per review (rev23): every secret the review reads is indexed once, and
    # each question names the secrets it is about. The answer must be the one a keyring
    # of those secrets alone gives, in the pod's order: a key held only by another
    # secret must neither match nor stop the Docker Hub fallback.
    a = [
        Credential(key="registry.example.com", username="a1", source="ns/a"),
        Credential(key="https://registry.example.com/v2/", username="a2", source="ns/a"),
        Credential(key="*.example.com", username="a3", source="ns/a"),
    ]
    b = [
        Credential(key="registry.example.com", username="b1", source="ns/b"),
        Credential(key="registry.example.com/team", username="b2", source="ns/b"),
        Credential(key="docker.io", username="b3", source="ns/b"),
    ]
    hub = [Credential(key="https://index.docker.io/v1/", username="h", source="ns/hub")]
    by_source = {"ns/a": a, "ns/b": b, "ns/hub": hub}
    images = (
        "registry.example.com/team/app",
        "registry.example.com/other",
        "mirror.example.com/app",
        "docker.io/library/nginx",
        "registry.example.com:5000/app",
    )
    review = Keyring()
    read: list[Credential] = []
    for secret in (b, hub, a):  # read in another order than any pod lists them
        review.add(secret)
        read += secret
        for image in images:  # asked between reads, as the preview asks before the check's
            assert review.lookup(image) == Keyring(read).lookup(image), image
    orders = (["ns/a", "ns/b"], ["ns/b", "ns/a"], ["ns/hub"], ["ns/b", "ns/hub"], ["ns/a"], [])
    for sources in orders:
        alone = Keyring(c for s in sources for c in by_source[s])
        held = review.held(c for s in sources for c in by_source[s])
        assert held.sources == tuple(sources)
        for image in images:
            want = alone.lookup(image)
            assert review.lookup(image, sources) == want, (sources, image)
            assert held.lookup(image) == want, (sources, image)
    # The kubelet's order within a key: the pod's secrets in its order, each's entries in
    # theirs (a2 is a1's key once /v2/ is dropped).
    assert [c.username for c in review.lookup("registry.example.com/x", ["ns/b", "ns/a"])] == [
        "b1",
        "a1",
        "a2",
        "a3",
    ]
    # docker.io's key is b's, which this pod does not hold: the fallback still serves hub.
    assert [c.username for c in review.lookup("docker.io/library/nginx", ["ns/hub"])] == ["h"]
