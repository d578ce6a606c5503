"""The ``pullguard`` command: the parser, and one module per sub-command.

Each module here parses its arguments and prints; what it runs comes from the floors below
(``webhook.compose`` for what several entry points share, ``webhook.edge`` for I/O,
``webhook.core`` for decisions). Heavy imports happen inside the sub-command that needs them,
so ``pullguard ref`` starts fast and never loads flask or the kubernetes client.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from webhook import __version__
from webhook.cli import audit, certs, check, diagnose, exportstate, ref, serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pullguard",
        description="Admission webhook that stops ImagePullBackOff before a pod exists.",
    )
    parser.add_argument("--version", action="version", version=f"pullguard {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (ref, check, exportstate, diagnose, audit, serve, certs):
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
