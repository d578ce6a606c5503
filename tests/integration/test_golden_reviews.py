"""Every captured AdmissionReview through the real server (gunicorn, TLS), against goldens.

The goldens in ``golden/`` hold both responses (validate and mutate) with the patch decoded.
Regenerate after an intended change with ``PULLGUARD_UPDATE_GOLDEN=1 bash tests/run`` and
read the diff before committing it.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Server, load_review, review_files

GOLDEN = Path(__file__).parent / "golden"


def _call(server: Server, review: dict[str, Any], endpoint: str) -> dict[str, Any]:
    # The API server's own headers and query (?timeout=5s), only the endpoint swapped.
    query = review["path"].partition("?")[2]
    headers = {k: v for k, v in review["headers"].items() if k.lower() != "content-length"}
    with server.client() as client:
        reply = client.post(
            f"/{endpoint}?{query}", content=json.dumps(review["body"]), headers=headers
        )
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("application/json")
    document: dict[str, Any] = reply.json()
    assert document["apiVersion"] == "admission.k8s.io/v1"
    assert document["kind"] == "AdmissionReview"
    response = document["response"]
    assert response["uid"] == review["body"]["request"]["uid"]
    if "patch" in response:
        assert response["patchType"] == "JSONPatch"
        response["patch"] = json.loads(base64.b64decode(response["patch"]))
    return response


@pytest.mark.parametrize("path", review_files(), ids=lambda p: p.stem)
def test_review_matches_golden(golden_server: Server, path: Path) -> None:
    review = load_review(path)
    actual = {
        "validate": _call(golden_server, review, "validate"),
        "mutate": _call(golden_server, review, "mutate"),
    }
    golden_path = GOLDEN / f"{path.stem}.json"
    if os.environ.get("PULLGUARD_UPDATE_GOLDEN") == "1":
        golden_path.write_text(json.dumps(actual, indent=2, sort_keys=True) + "\n")
    assert golden_path.exists(), f"no golden for {path.name}; run with PULLGUARD_UPDATE_GOLDEN=1"
    assert actual == json.loads(golden_path.read_text())


def test_denial_is_a_403_with_the_contract_message(golden_server: Server) -> None:
    review = load_review(
        Path(review_files()[0]).parent / "pod-create-generatename-missing-secret.json"
    )
    response = _call(golden_server, review, "validate")
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    # This server has no --client-ca: the review's user is nobody's word, so where the
    # secret exists is not said (over the API server's certificate it is: "it exists in
    # "shared"", tests/integration/test_port_attacks.py::test_a_forged_user_learns_no_...).
    assert response["status"]["message"].splitlines() == [
        "pullguard denied Pod team-a/gen-*: 1 problem would cause ImagePullBackOff",
        '- container "app": imagePullSecret "missing-secret" does not exist in namespace '
        '"team-a" (yet).',
        "  Fix: if this apply creates it in a later file, apply again or apply the Secret "
        "first; otherwise: kubectl create secret docker-registry missing-secret -n team-a "
        "--docker-server=my-registry.example.com --docker-username=USER "
        "--docker-password=PASSWORD",
    ]


def test_mutation_is_idempotent_through_the_server(golden_server: Server) -> None:
    review = load_review(Path(review_files()[0]).parent / "pod-create-plain.json")
    first = _call(golden_server, review, "mutate")
    import jsonpatch

    patched = jsonpatch.apply_patch(review["body"]["request"]["object"], first["patch"])
    again = json.loads(json.dumps(review))
    again["body"]["request"]["object"] = patched
    second = _call(golden_server, again, "mutate")
    assert "patch" not in second
    assert patched["spec"]["containers"][0]["image"] == "mirror.example.com/dockerhub/library/nginx"
