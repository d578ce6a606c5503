"""``pullguard ref``: parse and normalize image references, as the webhook reads them.

Pure: only ``webhook.core``; never loads flask or the kubernetes client.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import TextIO

from webhook.cli.options import SubParsers
from webhook.core.hosts import suggest_registry
from webhook.core.reference import InvalidReference, parse


def register(sub: SubParsers) -> None:
    ref = sub.add_parser("ref", help="parse and normalize image references")
    ref.add_argument("--json", action="store_true", help="one JSON object per input")
    ref.add_argument(
        "--registry",
        action="append",
        default=[],
        metavar="HOST",
        help="a registry of yours, so a host one or two edits away is flagged as a typo",
    )
    ref.add_argument("images", nargs="*", metavar="IMAGE", help="references (default: stdin)")
    ref.set_defaults(func=cmd_ref)


def _read_stdin_lines(stream: TextIO) -> list[str]:
    """Lines of stdin exactly as written, only the ``\\n`` removed.

    Read as bytes: text mode would also split on a lone ``\\r`` and translate ``\\r\\n``,
    changing what the user wrote. Undecodable bytes survive as surrogate escapes and are
    judged (invalid) like any other character.
    """
    data = stream.buffer.read() if hasattr(stream, "buffer") else stream.read().encode()
    text = data.decode("utf-8", errors="surrogateescape")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def ref_report(value: str, known_registries: Iterable[str] = ()) -> dict[str, object]:
    """The ``pullguard ref --json`` object for one input (see docs/reference.md)."""
    try:
        ref = parse(value)
    except InvalidReference as error:
        return {
            "input": value,
            "valid": False,
            "error": error.reason,
            "suggestion": error.suggestion,
        }
    typo = suggest_registry(ref.domain, known_registries) if ref.domain else None
    return {
        "input": value,
        "valid": True,
        "error": None,
        "name": ref.name,
        "domain": ref.domain,
        "path": ref.path,
        "tag": ref.tag,
        "digest": ref.digest,
        "familiar": ref.familiar,
        "suggestion": str(ref.with_name(typo, ref.path)) if typo else None,
    }


def _printable(value: str) -> str:
    """A value safe to print on a terminal: escapes shown as Python would show them."""
    return repr(value)[1:-1] if not value.isprintable() else value


def cmd_ref(args: argparse.Namespace) -> int:
    values: list[str] = args.images if args.images else _read_stdin_lines(sys.stdin)
    all_valid = True
    out = sys.stdout
    for value in values:
        report = ref_report(value, args.registry)
        all_valid = all_valid and bool(report["valid"])
        if args.json:
            out.write(json.dumps(report, ensure_ascii=True) + "\n")
        elif report["valid"]:
            line = f"{_printable(value)}\t{report['name']}"
            for field_name in ("tag", "digest"):
                if report[field_name]:
                    line += f"\t{field_name}={report[field_name]}"
            if report["suggestion"]:
                line += f"\t(registry looks like a typo: did you mean {report['suggestion']}?)"
            out.write(line + "\n")
        else:
            line = f"{_printable(value)}\tinvalid: {report['error']}"
            if report["suggestion"]:
                line += f"; did you mean {report['suggestion']}?"
            out.write(line + "\n")
    return 0 if all_valid else 1
