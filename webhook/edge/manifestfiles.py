"""Manifest files read for ``pullguard check``: paths, folders (every ``.yaml``, ``.yml`` and
``.json`` under them, sorted) and ``-`` for stdin, each as its name and text.

Must not: parse or judge what it reads (that is :mod:`webhook.compose.offline`), or stop at
a file it cannot read: the file's error takes the place of its text.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path


def read_texts(paths: list[str]) -> Iterator[tuple[str, str | OSError]]:
    """(name, text or why it could not be read) for every file ``paths`` name."""
    for raw in paths:
        if raw == "-":
            yield "<stdin>", sys.stdin.read()
            continue
        path = Path(raw)
        files = (
            sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))
            if path.is_dir()
            else [path]
        )
        for file in files:
            try:
                yield str(file), file.read_text("utf-8")
            except (OSError, UnicodeDecodeError) as error:
                yield str(file), OSError(str(error))
