"""The plainest null webhook: a Flask app that answers every review "allowed" without looking.

Served by stock gunicorn from the command line (``gunicorn benchmarks.null_flask:app``), it is
the baseline of ``benchmarks/performance.py``: what a Python admission webhook costs on the
default stack, before it decides anything.
"""

from __future__ import annotations

import json

from flask import Flask, Response, request

app = Flask("null-webhook")


@app.post("/validate")
@app.post("/mutate")
def allowed() -> Response:
    uid = (request.get_json(silent=True) or {}).get("request", {}).get("uid", "")
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": True},
    }
    return Response(json.dumps(body), mimetype="application/json")
