"""The pure core imports no I/O: no flask, no kubernetes client, no sockets, no clock."""

from __future__ import annotations

import ast
from pathlib import Path

import webhook.core

FORBIDDEN = {
    "flask",
    "gunicorn",
    "kubernetes",
    "httpx",
    "socket",
    "ssl",
    "requests",
    "urllib3",
    "time",
    "datetime",
    "threading",
    "subprocess",
    "prometheus_client",
    "webhook.edge",
    "webhook.cli",
    "logging",
}


def test_core_imports_nothing_that_does_io() -> None:
    core = Path(webhook.core.__file__).parent
    offences = []
    for source in sorted(core.rglob("*.py")):
        tree = ast.parse(source.read_text(), filename=str(source))
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                    offences.append(f"{source.relative_to(core)}:{node.lineno} imports {name}")
    assert offences == []
