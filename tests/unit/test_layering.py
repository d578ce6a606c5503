"""The floors of ``webhook`` (docs/architecture.md), held by the ast of every module.

- The pure core imports no I/O: no flask, no kubernetes client, no sockets, no clock.
- Every module lives on a floor: ``webhook.cli`` (3) > ``webhook.compose`` (2) >
  ``webhook.edge`` (1) > ``webhook.core`` (0); none imports from a floor above its own.
- No two modules import each other, directly or around a longer circle.

Function-level imports count as much as the ones at the top: deferring an import changes
when a module loads, not what it depends on.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import webhook
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
    "webhook.compose",
    "webhook.cli",
    "logging",
}

#: The floors, top to bottom. A module may import from its own floor and those below.
FLOORS = {"webhook.cli": 3, "webhook.compose": 2, "webhook.edge": 1, "webhook.core": 0}
#: Modules outside the floors: the entry point (above everything) and the package itself
#: (``__version__`` only, below everything).
OUTSIDE = {"webhook.__main__": 4, "webhook": 0}

PACKAGE = Path(webhook.__file__).parent


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
    ``from a import b`` names the module ``a.b`` when there is one, else ``a``."""
    is_package = source.name == "__init__.py"
    for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
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


def test_no_module_imports_from_a_floor_above_its_own() -> None:
    graph = _graph()
    offences = []
    for name, edges in graph.items():
        floor = _floor(name)
        for target, line in edges.items():
            above = _floor(target)
            if floor is None or above is None or above > floor:
                offences.append(f"{name}:{line} imports {target}")
    assert offences == []


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
