"""Outside review rev22 of issue 22 (after the third review's fixes): words and fixes that
send the person the wrong way, on the pure decision and diagnosis. Each test fails today
(marker ``open_finding``, run with ``pytest -m open_finding``)."""

from __future__ import annotations

import ast
import re

import pytest

from tests.conftest import ROOT
from tests.unit.builders import cluster_with, container, pod, pod_spec, request
from webhook.core.config import load_config_text
from webhook.core.diagnosis import Workload, diagnose
from webhook.core.registry import Answer, FixedRegistry, Outcome
from webhook.core.validate import validate

pytestmark = pytest.mark.open_finding

DEFAULT = load_config_text("{}\n")


def failing(image: str, message: str) -> dict[str, object]:
    obj = pod(pod_spec(container("web", image)), name="web-1")
    obj["status"] = {
        "containerStatuses": [
            {
                "name": "web",
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": message}},
            }
        ]
    }
    return obj


RATE_LIMITED = (
    'failed to pull and unpack image "{image}": failed to copy: httpReadSeeker: failed open: '
    "unexpected status code https://{api}/v2/team/app/manifests/sha256:abc: 429 Too Many "
    "Requests - Server message: toomanyrequests: retry-after: 0"
)


def test_rev22_a_rate_limit_on_another_registry_gets_no_docker_hub_login() -> None:
    # ghcr.io (or quay.io, registry.k8s.io, public.ecr.aws, a company registry) answering
    # 429: the fix creates a Docker Hub secret (--docker-server=https://index.docker.io/v1/)
    # and attaches it to the ServiceAccount. The kubelet never sends it to ghcr.io: the
    # printed fix runs and changes nothing.
    image = "ghcr.io/team/app:1.0"
    obj = failing(image, RATE_LIMITED.format(image=image, api="ghcr.io"))
    (found,) = diagnose(obj, [], [], workload=Workload("Deployment", "web"))
    (fix,) = found.fixes
    assert "index.docker.io" not in fix, fix


def test_rev22_a_docker_hub_rate_limit_confirmed_live_still_ends_with_the_command() -> None:
    # Issue 22 item 3: a rate limit's fix is the Docker Hub secret attached to the
    # ServiceAccount (or a mirror). That is what diagnose prints when it could not re-check;
    # when pullguard's own HEAD is rate limited too (the usual case: one NAT address for
    # the cluster), the live finding confirms and its words replace the command:
    # "pull through a mirror (mirrors in the pullguard config), or authenticate the pulls
    # with an imagePullSecret". Nothing to run.
    image = "nginx:1.25"
    text = RATE_LIMITED.format(image="docker.io/library/nginx:1.25", api="registry-1.docker.io")
    obj = failing(image, text)
    registry = FixedRegistry({"docker.io/library/nginx:1.25": Answer(Outcome.RATE_LIMITED)})
    live = validate(request(obj), DEFAULT, cluster_with(), registry=registry).findings
    (found,) = diagnose(obj, [], live, workload=Workload("Deployment", "web"))
    assert found.verdict == "confirmed"
    assert any("kubectl " in fix for fix in found.fixes), found.fixes


def _appended_texts(module: str, method: str) -> list[str]:
    """The literal parts of every ``X.<method>(...)`` string in ``module``."""
    tree = ast.parse((ROOT / module).read_text())
    out = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == method
            and node.args
        ):
            arg = node.args[0]
            parts = [arg] if isinstance(arg, ast.Constant) else getattr(arg, "values", [])
            if isinstance(arg, ast.BinOp):
                parts = [arg.left, arg.right]
            for part in parts:
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    out.append(part.value)
                elif isinstance(part, ast.JoinedStr):
                    out += [
                        v.value
                        for v in part.values
                        if isinstance(v, ast.Constant) and isinstance(v.value, str)
                    ]
    return [t.strip() for t in out if len(t.strip()) > 25]


def test_rev22_the_reference_lists_what_diagnose_prints_as_evidence_and_fixes() -> None:
    # Issue 22 item 7: docs/reference.md lists every message pullguard can print, and a test
    # holds the list and the code together. test_message_reference reads findings, notes,
    # check's and audit's lines and CAUSE_WORDS, not the sentences diagnose appends itself:
    # "pullguard now: the image exists and the pod's credentials may read it (pushed or
    # fixed since the last attempt)", "pullguard could not re-check: ...", "the kubelet
    # retries with a back-off of up to 5 minutes; ...", "the registry answered the kubelet
    # after its login passed, so the kubelet has credentials pullguard cannot see ...; a new
    # secret would not change its answer" are printed and are nowhere in the reference.
    reference = re.sub(r"\s+", " ", (ROOT / "docs" / "reference.md").read_text())
    texts = _appended_texts("webhook/core/diagnosis.py", "append")
    missing = [t for t in texts if re.sub(r"\s+", " ", t) not in reference]
    assert not missing, missing


def test_rev22_a_mirrored_pods_set_image_fix_keeps_the_image_as_the_user_wrote_it() -> None:
    # A Deployment's pod of nginx:1.2, rewritten by the mutating webhook to the Docker Hub
    # mirror. The live finding names the image as written ('nginx:1.2', tags include
    # '1.25'), but the fix sets the mirror's reference on the Deployment:
    # `kubectl set image deployment/web web=mirror.example.com/library/nginx:1.25`. The
    # template then names the mirror itself: pullguard no longer falls back to docker.io
    # when the mirror is down (README "Mirrors"), a mirror removed from the configuration
    # still gets the pulls, and the manifest in git no longer matches. The tag meant is to
    # be set on the image as written: web=nginx:1.25 (the webhook rewrites it again).
    import jsonpatch

    from webhook.core.mutate import mutate

    config = load_config_text("mirrors: [{registry: docker.io, mirror: mirror.example.com}]\n")
    written = pod(pod_spec(container("web", "nginx:1.2")), name="web-1")
    patch = mutate(request(written), config, cluster_with()).patch
    obj = jsonpatch.apply_patch(written, patch)
    image = obj["spec"]["containers"][0]["image"]
    assert image == "mirror.example.com/library/nginx:1.2"
    obj["status"] = {
        "containerStatuses": [
            {
                "name": "web",
                "state": {
                    "waiting": {
                        "reason": "ImagePullBackOff",
                        "message": f"rpc error: code = NotFound desc = failed to pull and unpack "
                        f'image "{image}": failed to resolve reference "{image}": {image}: not '
                        "found",
                    }
                },
            }
        ]
    }
    missing = Answer(Outcome.NOT_FOUND, tags=("1.25",), repository_exists=True)
    registry = FixedRegistry({image: missing, "docker.io/library/nginx:1.2": missing})
    live = validate(request(obj), config, cluster_with(), registry=registry, existing=True).findings
    (found,) = diagnose(obj, [], live, workload=Workload("Deployment", "web"))
    assert any("nginx:1.25" in fix for fix in found.fixes), found.fixes
    assert not any("mirror.example.com" in fix for fix in found.fixes), found.fixes


def test_rev22_a_docker_hub_short_names_secret_fix_is_for_docker_hub() -> None:
    # A Deployment's pod of acme/private-app:1.0 (Docker Hub, org "acme") refused, and the
    # live re-check could not run (the registry not reachable from where diagnose runs):
    # the fix's host is the image's text before its first "/", so it prints
    # `kubectl create secret docker-registry regcred-acme --docker-server=acme ...` and
    # patches that in. The kubelet matches no registry "acme" for docker.io: run as
    # printed, the pod keeps failing. (The DNS, TLS and connection fixes take the same
    # host: "check the registry host 'acme' for a typo".)
    image = "acme/private-app:1.0"
    text = (
        'failed to pull and unpack image "docker.io/acme/private-app:1.0": failed to resolve '
        'reference "docker.io/acme/private-app:1.0": unexpected status from HEAD request to '
        "https://registry-1.docker.io/v2/acme/private-app/manifests/1.0: 401 Unauthorized"
    )
    (found,) = diagnose(
        failing(image, text),
        [],
        [],
        live_note="registry: unavailable",
        workload=Workload("Deployment", "web"),
    )
    (fix,) = found.fixes
    assert "--docker-server=acme " not in fix, fix
    assert "docker.io" in fix, fix
