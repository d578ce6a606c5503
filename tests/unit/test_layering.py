"""The floors of ``webhook`` (docs/architecture.md), held by the ast of every module.

- The pure core imports no I/O: no flask, no kubernetes client, no sockets, no clock.
- Every module lives on a floor: ``webhook.cli`` (3) > ``webhook.compose`` (2) >
  ``webhook.edge`` (1) > ``webhook.core`` (0); none imports from a floor above its own.
- No two modules import each other, directly or around a longer circle.

Function-level imports count as much as the ones at the top: deferring an import changes
when a module loads, not what it depends on. So do dynamic ones: ``importlib.import_module``
and ``__import__`` (under any name they are bound to, a relative name read against a literal
``package=``) and ``sys.modules[...]`` with a string literal are read as the import they name;
one whose name is not a literal, or an import function handed on, cannot be checked and is an
offence of its own. The core also calls no builtin that does I/O or runs code made at run time
(``open``, ``print``, ``input``, ``exec``, ``eval``, ...), and imports nothing nondeterministic
(``random``, ``uuid``, ``secrets``): the same review always gets the same answer.
"""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest

import webhook
import webhook.core

FORBIDDEN = {
    "flask",
    "gunicorn",
    "gevent",
    "kubernetes",
    "httpx",
    "httpcore",
    "socket",
    "ssl",
    "select",
    "selectors",
    "asyncio",
    "requests",
    "urllib",  # but urllib.parse (ALLOWED): string work, no I/O
    "urllib3",
    "http",
    "os",
    "pathlib",
    "io",
    "sys",
    "shutil",
    "tempfile",
    "fcntl",
    "signal",
    "ctypes",
    "importlib",
    "time",
    "datetime",
    "threading",
    "multiprocessing",
    "subprocess",
    "prometheus_client",
    "webhook.edge",
    "webhook.compose",
    "webhook.cli",
    "logging",
    # More ways out of the process: files, databases, the host, the terminal.
    "builtins",
    "glob",
    "fileinput",
    "sqlite3",
    "dbm",
    "shelve",
    "mmap",
    "socketserver",
    "ftplib",
    "smtplib",
    "imaplib",
    "poplib",
    "xmlrpc",
    "webbrowser",
    "platform",
    "getpass",
    "pwd",
    "grp",
    "resource",
    "atexit",
    "faulthandler",
    "zipfile",
    "tarfile",
    # Nondeterminism: the same review must always get the same answer.
    "random",
    "secrets",
    "uuid",
}
#: Exceptions inside a forbidden package.
ALLOWED = {"urllib.parse"}
#: Calls that import the module their first argument names.
DYNAMIC_IMPORTS = {"import_module", "__import__"}
#: Builtins that reach outside the process (files, the terminal) or run code built at run time.
IO_BUILTINS = {"open", "print", "exec", "eval", "input", "compile", "breakpoint", "__import__"}

#: The floors, top to bottom. A module may import from its own floor and those below.
FLOORS = {"webhook.cli": 3, "webhook.compose": 2, "webhook.edge": 1, "webhook.core": 0}
#: Modules outside the floors: the entry point (above everything) and the package itself
#: (``__version__`` only, below everything).
OUTSIDE = {"webhook.__main__": 4, "webhook": 0}

PACKAGE = Path(webhook.__file__).parent


def _literal(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _importers(tree: ast.AST) -> set[str]:
    """Every local name bound to an import function: ``from importlib import import_module as
    load``, ``load = importlib.import_module``, ``again = load`` (to a fixed point)."""
    names = set(DYNAMIC_IMPORTS)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "importlib":
            names |= {a.asname for a in node.names if a.name == "import_module" and a.asname}
    while True:
        more = {
            target.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign) and _names_an_importer(node.value, names)
            for target in node.targets
            if isinstance(target, ast.Name)
        } - names
        if not more:
            return names
        names |= more


def _names_an_importer(node: ast.AST, importers: set[str]) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr in DYNAMIC_IMPORTS
    return isinstance(node, ast.Name) and node.id in importers


def _dynamic_imports(tree: ast.AST) -> Iterator[tuple[int, str | None]]:
    """(line, module) for every import made by a call rather than a statement:
    ``importlib.import_module`` and ``__import__`` under any name they are bound to (a relative
    name resolved against a literal ``package=``), and ``sys.modules[...]``. The module is
    ``None`` when it cannot be read from the source: a name that is no literal, or an import
    function handed on in a way other than a plain assignment or call."""
    importers = _importers(tree)
    handled: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "sys":
            if any(a.name == "modules" for a in node.names):
                yield node.lineno, None  # sys.modules under another name
        elif isinstance(node, ast.Call) and _names_an_importer(node.func, importers):
            handled.add(id(node.func))
            first = node.args[0] if node.args else None
            if first is None:
                first = next((k.value for k in node.keywords if k.arg == "name"), None)
            name = _literal(first)
            if name is not None and name.startswith("."):
                package = node.args[1] if len(node.args) > 1 else None
                if package is None:
                    package = next((k.value for k in node.keywords if k.arg == "package"), None)
                anchor = _literal(package)
                name = None if anchor is None else importlib.util.resolve_name(name, anchor)
            yield node.lineno, name
        elif isinstance(node, ast.Assign) and _names_an_importer(node.value, importers):
            if all(isinstance(t, ast.Name) for t in node.targets):
                handled.add(id(node.value))  # an alias: its calls are read above
        elif isinstance(node, ast.Subscript) and _is_sys_modules(node.value):
            handled.add(id(node.value))
            yield node.lineno, _literal(node.slice)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and _is_sys_modules(node.func.value)
        ):
            handled.add(id(node.func.value))
            yield node.lineno, _literal(node.args[0]) if node.args else None
    for node in ast.walk(tree):
        if id(node) in handled:
            continue
        if (isinstance(node, ast.Name | ast.Attribute) and _names_an_importer(node, importers)) or (
            _is_sys_modules(node)
        ):
            if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
                continue
            yield node.lineno, None  # handed on: what it imports cannot be read


def _is_sys_modules(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "modules"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    )


def _forbidden(name: str) -> bool:
    if any(name == a or name.startswith(a + ".") for a in ALLOWED):
        return False
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def _io_imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, what) for every import in ``tree`` that the core must not make, and every use
    of a builtin that does I/O or runs code built at run time (:data:`IO_BUILTINS`)."""
    for line, dynamic in _dynamic_imports(tree):
        if dynamic is None:
            yield line, "a module named at run time (not checkable)"
        elif _forbidden(dynamic):
            yield line, f"imports {dynamic}"
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif (
            isinstance(node, ast.Name) and node.id in IO_BUILTINS and node.id not in DYNAMIC_IMPORTS
        ):
            yield node.lineno, f"uses the builtin {node.id}"
        for name in names:
            if _forbidden(name):
                yield node.lineno, f"imports {name}"
                break


def test_core_imports_nothing_that_does_io() -> None:
    core = Path(webhook.core.__file__).parent
    offences = []
    for source in sorted(core.rglob("*.py")):
        tree = ast.parse(source.read_text(), filename=str(source))
        for line, what in _io_imports(tree):
            offences.append(f"{source.relative_to(core)}:{line} {what}")
    assert offences == []


@pytest.mark.parametrize(
    "text",
    [
        "import os",
        "from pathlib import Path",
        "import urllib.request",
        "from urllib import request",
        "from http import client",
        "import importlib\nimportlib.import_module('socket')",
        "from importlib import import_module\nimport_module('webhook.edge.kube')",
        "__import__('subprocess')",
        "__import__(name='os')",
        "def f(name):\n    return __import__(name)",
        "import sys, io, shutil, tempfile, select, asyncio",
        "import glob",
        "import sqlite3",
        "from random import choice",
        "import uuid",
        "import mmap",
        "import secrets",
        "import builtins",
        "import importlib\nf = importlib.import_module\nf('os')",
        "def f():\n    with open('/etc/hosts') as fh:\n        return fh.read()",
        "def f():\n    print('decided')",
        "def f():\n    exec('import os')",
        "def f(text):\n    return eval(text)",
        "def f():\n    return input()",
        "def f():\n    return map(open, ['/etc/hosts'])",
    ],
)
def test_the_purity_check_sees_io_however_it_is_imported(text: str) -> None:
    assert list(_io_imports(ast.parse(text))) != []


def test_the_purity_check_lets_string_work_through() -> None:
    text = "from urllib.parse import urlsplit\nimport urllib.parse\nimport json, re"
    assert list(_io_imports(ast.parse(text))) == []


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__``)."""
    out = {}
    for source in sorted(PACKAGE.rglob("*.py")):
        parts = ["webhook", *source.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = source
    return out


def _imports(name: str, source: Path, known: set[str]) -> Iterator[tuple[int, str]]:
    """(line, module of this package) for every import in ``source``, at any depth.
    ``from a import b`` names the module ``a.b`` when there is one, else ``a``. A dynamic
    import whose name is not a literal yields :data:`UNCHECKABLE`."""
    yield from _imports_in(
        name,
        ast.parse(source.read_text(), filename=str(source)),
        known,
        is_package=source.name == "__init__.py",
    )


#: What a dynamic import of a name known only at run time imports, for the floor check.
UNCHECKABLE = "<a module named at run time>"


def _imports_in(
    name: str, tree: ast.AST, known: set[str], *, is_package: bool = False
) -> Iterator[tuple[int, str]]:
    for line, dynamic in _dynamic_imports(tree):
        if dynamic is None:
            yield line, UNCHECKABLE
        elif dynamic == "webhook" or dynamic.startswith("webhook."):
            target = dynamic
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target != name:
                yield line, target
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.append(full if full in known else base)
        for dotted in targets:
            if dotted == "webhook" or dotted.startswith("webhook."):
                # The deepest module of the package that the dotted name lies in.
                target = dotted
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target != name:
                    yield node.lineno, target


def _floor(name: str) -> int | None:
    if name in OUTSIDE:
        return OUTSIDE[name]
    for prefix, floor in FLOORS.items():
        if name == prefix or name.startswith(prefix + "."):
            return floor
    return None


def _graph() -> dict[str, dict[str, int]]:
    """module -> {module it imports: first line}."""
    modules = _modules()
    known = set(modules)
    graph: dict[str, dict[str, int]] = {}
    for name, source in modules.items():
        edges: dict[str, int] = {}
        for line, target in _imports(name, source, known):
            edges.setdefault(target, line)
        graph[name] = edges
    return graph


def test_every_module_lives_on_a_floor() -> None:
    loose = [name for name in _modules() if _floor(name) is None]
    assert loose == [], "modules on no floor (cli, compose, edge, core): " + repr(loose)


def _upward(graph: dict[str, dict[str, int]]) -> list[str]:
    offences = []
    for name, edges in graph.items():
        floor = _floor(name)
        for target, line in edges.items():
            above = _floor(target)
            if floor is None or above is None or above > floor:
                offences.append(f"{name}:{line} imports {target}")
    return offences


def test_no_module_imports_from_a_floor_above_its_own() -> None:
    assert _upward(_graph()) == []


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("webhook.core.validate", "import importlib\nimportlib.import_module('webhook.cli')"),
        (
            "webhook.edge.app",
            "from importlib import import_module\nimport_module('webhook.cli.audit')",
        ),
        ("webhook.edge.kube", "def f():\n    __import__('webhook.compose.scan')"),
        ("webhook.compose.scan", "import importlib\nimportlib.import_module(name)"),
        # import_module under another name, bound to a name first, or handed on
        (
            "webhook.edge.kube",
            "from importlib import import_module as load\nload('webhook.cli.audit')",
        ),
        (
            "webhook.edge.kube",
            "import importlib\nload = importlib.import_module\nload('webhook.cli.audit')",
        ),
        (
            "webhook.edge.kube",
            "import importlib\na = importlib.import_module\nb = a\nb('webhook.cli')",
        ),
        ("webhook.edge.kube", "import importlib\nlist(map(importlib.import_module, ['x']))"),
        # a relative name with package=, literal or not
        (
            "webhook.edge.kube",
            "import importlib\nimportlib.import_module('.audit', package='webhook.cli')",
        ),
        ("webhook.edge.kube", "import importlib\nimportlib.import_module('.audit', 'webhook.cli')"),
        ("webhook.edge.kube", "import importlib\nimportlib.import_module('.audit', package=p)"),
        # the table of loaded modules
        ("webhook.edge.kube", "import sys\nsys.modules['webhook.cli.audit']"),
        ("webhook.edge.kube", "import sys\nsys.modules.get('webhook.compose.scan')"),
        ("webhook.edge.kube", "import sys\nsys.modules[name]"),
        ("webhook.edge.kube", "import sys\nm = sys.modules"),
        ("webhook.edge.kube", "from sys import modules"),
    ],
)
def test_the_floor_check_sees_dynamic_imports(name: str, text: str) -> None:
    known = set(_modules())
    graph = {name: {t: line for line, t in _imports_in(name, ast.parse(text), known)}}
    assert _upward(graph) != []


def test_the_floor_check_lets_dynamic_imports_downward_through() -> None:
    known = set(_modules())
    text = "import importlib\nimportlib.import_module('webhook.core.validate')"
    graph = {
        "webhook.cli.check": {
            t: n for n, t in _imports_in("webhook.cli.check", ast.parse(text), known)
        }
    }
    assert graph["webhook.cli.check"] == {"webhook.core.validate": 2}
    assert _upward(graph) == []


def test_the_floor_check_reads_sys_modules_downward_as_an_import() -> None:
    known = set(_modules())
    text = "import sys\nsys.modules.setdefault('trio', None)\nsys.modules['webhook.core.review']"
    edges = {t: n for n, t in _imports_in("webhook.compose.serving", ast.parse(text), known)}
    assert edges == {"webhook.core.review": 3}


def test_no_import_cycles() -> None:
    """Strongly connected components of the import graph (Tarjan), each a circle."""
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert circles == []
