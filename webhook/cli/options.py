"""What the sub-command modules share: the type of the parser they add themselves to, and
the arguments of the commands that judge a live cluster (``diagnose``, ``audit``).

Must not: import anything heavy (every ``pullguard`` run loads it).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Protocol


class SubParsers(Protocol):
    """What ``ArgumentParser.add_subparsers()`` returns, as the sub-commands use it (the
    standard library's class for it, ``_SubParsersAction``, is private)."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, ``--pullguard-namespace`` and ``--output``: what
    :func:`webhook.compose.livecheck.live_config` reads."""
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="judge with this configuration file"
    )
    parser.add_argument(
        "--pullguard-namespace",
        default="pullguard",
        metavar="NS",
        help="where pullguard's ConfigMap pullguard-config lives (default pullguard)",
    )
    parser.add_argument("--output", choices=("text", "json"), default="text")
