"""Review of issue 23 (rev23): ways around tests/unit/test_layering.py, each an import (or I/O
in the core) the guard does not see at fb97a5e. docs/architecture.md says dynamic imports
count as imports and the core is free of files. Strict xfail: a guard that learns to see one
turns its probe into a failure to remove."""

from __future__ import annotations

import ast

import pytest

from tests.unit.test_layering import _imports_in, _io_imports, _modules, _upward

OPEN = pytest.mark.xfail(strict=True, reason="rev23: the layering guard does not see this")


def _upward_of(name: str, text: str) -> list[str]:
    known = set(_modules())
    graph = {name: {t: line for line, t in _imports_in(name, ast.parse(text), known)}}
    return _upward(graph)


@OPEN
@pytest.mark.parametrize(
    "text",
    [
        # import_module under another name
        "from importlib import import_module as load\nload('webhook.cli.audit')",
        # bound to a name first
        "import importlib\nload = importlib.import_module\nload('webhook.cli.audit')",
        # a relative name with package=
        "import importlib\nimportlib.import_module('.audit', package='webhook.cli')",
    ],
)
def test_an_upward_dynamic_import_from_edge_is_seen(text: str) -> None:
    assert _upward_of("webhook.edge.kube", text) != []


@OPEN
@pytest.mark.parametrize(
    "text",
    [
        "def f():\n    with open('/etc/hosts') as fh:\n        return fh.read()",
        "def f():\n    print('decided')",
        "def f():\n    exec('import os')",
    ],
)
def test_io_in_the_core_without_an_import_is_seen(text: str) -> None:
    assert list(_io_imports(ast.parse(text))) != []
