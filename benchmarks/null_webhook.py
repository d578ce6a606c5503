"""A null webhook: answers every review "allowed" without looking, on pullguard's own server
(the same gunicorn worker, TLS and settings as ``pullguard serve``). The baseline of
``performance.py``: what the stack costs before pullguard decides anything.

    python benchmarks/null_webhook.py --port 9443 --cert certs/tls.crt --key certs/tls.key
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    from gevent import monkey

    monkey.patch_all()  # as pullguard serve does, before anything imports ssl

    from flask import Flask

    from webhook.edge.server import ServeOptions, run

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    def app_factory() -> Flask:
        from benchmarks.null_flask import app  # imported after the patch, in the worker

        return app

    return run(
        ServeOptions(
            host="127.0.0.1",
            port=args.port,
            certfile=args.cert,
            keyfile=args.key,
            workers=args.workers,
        ),
        app_factory,
    )


if __name__ == "__main__":
    sys.exit(main())
