"""The floors of ``webhook`` (docs/architecture.md), held by the ast of every module.

- The pure core imports no I/O: no flask, no kubernetes client, no sockets, no clock. It
  imports only what :data:`CORE_MAY_IMPORT` allows (standard-library modules that do no I/O,
  yaml, orjson, jsonpatch, the core), and of yaml and shlex only the names
  :data:`CORE_MAY_USE` lists (yaml's loads with a safe loader only).
- Every module lives on a floor: ``webhook.cli`` (3) > ``webhook.compose`` (2) >
  ``webhook.edge`` (1) > ``webhook.core`` (0); none imports from a floor above its own.
- No two modules import each other, directly or around a longer circle.
- The composition floor does no raw I/O (:func:`test_no_compose_module_does_io_itself`): it
  imports nothing on :data:`COMPOSE_MAY_NOT_IMPORT` (os, socket, subprocess, the kubernetes
  client, HTTP clients, gevent, flask, ...) except under ``if TYPE_CHECKING:``, calls no
  builtin of :data:`IO_BUILTINS` (``open``, ``print``, ``input``, ...) and no file-system
  method of a path (:data:`COMPOSE_PATH_IO`).

Function-level imports count as much as the ones at the top: deferring an import changes
when a module loads, not what it depends on. So do dynamic ones: ``importlib.import_module``
(under any name it is bound to, a relative name read against a literal ``package=``) and
``sys.modules[...]`` with a string literal are read as the import they name; one whose name
is not a literal, or an import function handed on, cannot be checked and is an offence of its
own (``__import__`` is refused outright, by rule 1 below). Every other use of the import
machinery is an offence on every floor (outside :data:`MACHINERY_ALLOWED`): ``importlib``
used for anything but ``import_module`` (``getattr(importlib, ...)``, ``importlib.util``),
``pkgutil``, ``runpy``, ``builtins``, ``inspect``, ``gc``, ``ctypes``, ``help`` (pydoc
imports the module its string names), ``sys`` handed on, its import hooks or its private
attributes (``sys._getframe``), ``exec``/``eval``/``compile``, and the builtins reached without
being named (``__builtins__``, ``globals()``, ``vars()``). A module of the package reached
through an attribute (``webhook.cli.audit`` after ``import webhook.core.config``) counts as an
import of it, and so does ``sys`` or a module of the machinery reached through another module
(``os.sys.modules``, ``logging.config`` after ``import logging``), a module's ``__dict__``, and
the standard library's loaders of a dotted string (``pydoc.locate``, ``logging.config``,
``pickle``, ``marshal``, ``shelve``, ``copyreg``, ``unittest.mock``, on :data:`MACHINERY`).
:func:`test_importing_a_module_loads_nothing_from_a_floor_above_it` imports every module in a
fresh interpreter, lowest floor first, as the run-time twin. In the core, a module reached
through an attribute of another (``fnmatch.os``, ``enum.bltns``, ``typing.sys``,
``getattr(fnmatch, "os")``, ``from fnmatch import os``) is refused unless it is a submodule on
the allowed list (``collections.abc``, ``urllib.parse``): each allowed module is imported to
read what its attributes are. The core also calls no builtin that does I/O or runs code made
at run time (``open``, ``print``, ``input``, ``exec``, ``eval``, ...), and imports nothing
nondeterministic (``random``, ``uuid``, ``secrets`` are off the list): the same review always
gets the same answer.

Two rules close the ways to the builtins (and so to ``open`` and ``__import__``) that name no
module, on every floor (:func:`_introspection`, :func:`_attributes_by_name`):

1. No dunder but the few on :data:`READABLE_DUNDERS` (``__name__``, ``__init__``, an
   exception's ``__cause__``, ...), and no attribute of a frame, a code object, a generator, a
   coroutine or a traceback (:data:`INTROSPECTION_PREFIXES`: ``f_``, ``gi_``, ``cr_``, ``ag_``,
   ``tb_``, ``co_``), written anywhere: as an attribute, a name read, a name imported, a class
   pattern's keyword, or a word of any string constant that is not a docstring (so
   ``getattr(len, "__self__")``, ``operator.attrgetter("__self__")``, ``frame["f_builtins"]``
   and ``"{0.__self__}"`` are refused with ``len.__self__``).
2. No attribute read, written or tested by a name that is not a string literal
   (:data:`BY_NAME`: ``getattr``, ``setattr``, ``delattr``, ``hasattr``, ``attrgetter``,
   ``methodcaller``, ``Formatter.get_field``, ``object.__setattr__``), and none of those handed
   on (``map(getattr, ...)``, ``functools.reduce(getattr, ...)``) or imported under another
   name. The exemptions are named, function by function: one core function
   (:data:`CORE_BY_NAME_ALLOWED`) and five edge ones (:data:`BY_NAME_ALLOWED`), each reading
   names from a table of its own;
   :func:`test_every_exemption_from_the_by_name_rule_is_still_needed` drops a stale one.

Code written as a string is read as code: besides ``exec``, ``eval`` and ``compile``, typing's
evaluators (:data:`EVALUATORS`: ``get_type_hints``, ``ForwardRef``) are refused on every floor,
and an annotation written as a string (``def f(x: "open('/x')")``, which
``functools.singledispatch``'s ``register`` evaluates) is checked as the expression it is.

What this guarantees: a module of the package that reaches a floor above its own, the
builtins or (in the core) I/O with code written plainly, or with any of the casual bypasses
the reviews found (rev23, rev23b, rev23c: a module behind an allowed one, a dunder through
``getattr`` or ``attrgetter``, a frame's ``f_builtins``), fails the test. What it does not:
Python cannot be sandboxed by reading its ast. Code that means to can still get through, for
example with a name built at run time inside a function of :data:`BY_NAME_ALLOWED`
(``getattr(getattr(len, a), b)``), a third-party library that reads attributes by name for it
(the kubernetes client, yaml's constructors on a loader the check takes for safe), or the
interpreter's own bugs. The check is against accidents and casual bypass, done in review; the
run-time import guard (the twin above) is the second line, and it sees only what importing a
module loads, not what its functions import when called.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

import webhook
import webhook.core

#: Everything the core may import: standard-library modules that do no I/O, read no clock
#: and draw no random numbers, three libraries that parse or build data, and the core itself
#: (a module and everything under it). Anything else is refused, so a module that reaches
#: out under another name (``posix``, ``_io``, ``codecs``, ``email.utils``) is refused too.
CORE_MAY_IMPORT = {
    "__future__",
    "abc",
    "base64",
    "binascii",
    "collections",
    "collections.abc",
    "copy",
    "dataclasses",
    "enum",
    "fnmatch",
    "functools",
    "hashlib",
    "hmac",
    "ipaddress",
    "itertools",
    "json",
    "math",
    "re",
    "shlex",
    "textwrap",
    "typing",
    "unicodedata",
    "urllib.parse",
    "jsonpatch",
    "orjson",
    "yaml",
}
#: Packages the core may import with everything under them.
CORE_MAY_IMPORT_UNDER = {"webhook.core"}
#: Modules of which the core may use only these names (dotted paths under the module): the
#: rest of yaml constructs arbitrary objects (``unsafe_load``, ``full_load``, ``Loader``,
#: ``UnsafeConstructor``), and a ``shlex.shlex`` without a stream reads standard input.
#: ``yaml.load``, ``yaml.load_all`` and ``yaml.parse`` are allowed with a safe loader only
#: (:func:`_safe_loaders`).
CORE_MAY_USE = {
    "yaml": {
        "safe_load",
        "safe_load_all",
        "load",
        "load_all",
        "parse",
        "SafeLoader",
        "CSafeLoader",
        "YAMLError",
        "MarkedYAMLError",
        "AliasEvent",
        "NodeEvent",
        "CollectionStartEvent",
        "CollectionEndEvent",
        "MappingNode",
        "constructor.ConstructorError",
        "resolver.BaseResolver.DEFAULT_MAPPING_TAG",
    },
    "shlex": {"quote", "join", "split"},
}
#: yaml's functions that construct objects with the loader they are given.
YAML_LOADS = {"load", "load_all", "parse"}
#: yaml's loaders that build only plain data.
YAML_SAFE_LOADERS = {"SafeLoader", "CSafeLoader"}
#: Calls that import the module their first argument names.
DYNAMIC_IMPORTS = {"import_module", "__import__"}
#: The import machinery: modules (and, for a package, everything under it) that load a module
#: by a name known only at run time (``importlib.util.find_spec``, ``pkgutil.resolve_name``,
#: ``runpy.run_module``, ``importlib.resources.files``, an interactive interpreter). Outside
#: :data:`MACHINERY_ALLOWED` the one form a module may use is ``importlib.import_module``
#: named as such (``import importlib`` then ``importlib.import_module(...)``, or ``from
#: importlib import import_module``), which :func:`_dynamic_imports` reads as the import it
#: names; every other reference to these modules is an offence.
MACHINERY = {
    "importlib",
    "pkgutil",
    "runpy",
    "zipimport",
    "imp",
    "builtins",
    "code",
    "codeop",
    "_imp",
    "_frozen_importlib",
    "_frozen_importlib_external",
    # loaders of a dotted string: pydoc.locate, logging.config's "()" and "ext://",
    # unpickling (a pickle names the module and the callable it imports), mock.patch
    "pydoc",
    "logging.config",
    "pickle",
    "_pickle",
    "marshal",
    "shelve",
    "copyreg",
    "unittest.mock",
    # introspection: attributes read by a name made at run time (inspect.getmembers,
    # inspect.getattr_static), frames (inspect.currentframe, inspect.stack), every live object
    # (gc.get_objects, gc.get_referrers: a module's globals), the interpreter's memory (ctypes)
    "inspect",
    "gc",
    "ctypes",
    "_ctypes",
}
#: Module -> the machinery modules it may use however it likes: configsource reads the default
#: configuration that ships in the package (``importlib.resources.files("webhook")``).
MACHINERY_ALLOWED = {"webhook.edge.configsource": {"importlib.resources"}}
#: Builtins that run code built at run time (whose imports cannot be read) or reach the
#: builtins (``__import__`` among them) without naming them: refused on every floor.
#: ``help`` imports the module its string names (pydoc: ``help("webhook.cli.audit")``), and
#: ``breakpoint`` the hook that ``PYTHONBREAKPOINT`` names.
MACHINERY_BUILTINS = {
    "exec",
    "eval",
    "compile",
    "__builtins__",
    "globals",
    "locals",
    "vars",
    "help",
    "breakpoint",
}
#: What evaluates a string as code, as ``eval`` does: typing's readers of annotations written
#: as strings (``inspect.get_annotations`` too, though inspect is on :data:`MACHINERY`). Refused
#: on every floor, as a name, an attribute or a name imported. An annotation written as a string
#: (which ``functools.singledispatch`` evaluates) is read as the code it is
#: (:func:`_with_string_annotations`).
EVALUATORS = {"get_type_hints", "ForwardRef", "get_annotations"}
#: Attributes of ``sys`` that are the import machinery itself; every private one (``_``...:
#: ``sys._getframe``, ``sys._current_frames``) is refused as well.
SYS_MACHINERY = {"meta_path", "path_hooks", "path_importer_cache"}
#: Builtins that reach outside the process (files, the terminal) or run code built at run time,
#: and the names through which any builtin is reached without being named.
IO_BUILTINS = {
    "open",
    "print",
    "exec",
    "eval",
    "input",
    "compile",
    "breakpoint",
    "help",  # the interactive builtins of site: they read and write the terminal
    "exit",
    "quit",
    "license",
    "copyright",
    "credits",
    "__import__",
    "__builtins__",
    "globals",
    "locals",
    "vars",
}
#: The dunders any module may name, as an attribute, a name read or a word of a string: each
#: gives a name (``type(error).__name__``, ``__name__ == "__main__"``, ``__version__``), a
#: constructor to chain up to (``super().__init__``), an exception's cause, or sets a field of a
#: frozen dataclass (``object.__setattr__(self, "globs", ...)``, its name read as ``setattr``'s).
#: Every other dunder is refused on every floor, whatever object it is read from and however it
#: is written: ``__self__`` (a builtin's module: the builtins), ``__globals__``, ``__dict__``,
#: ``__class__``, ``__subclasses__``, ``__code__``, ``__traceback__``, ``__getattribute__``,
#: ``__import__``, ``__builtins__``, ``__loader__``, ``__spec__``, ...
READABLE_DUNDERS = {
    "__init__",
    "__name__",
    "__main__",
    "__version__",
    "__cause__",
    "__context__",
    "__setattr__",
}
#: How the attributes of frames (``f_builtins``, ``f_globals``, ``f_back``), generators
#: (``gi_frame``), coroutines (``cr_frame``), async generators (``ag_frame``), tracebacks
#: (``tb_frame``) and code objects (``co_consts``) begin: refused on every floor, read off any
#: object, as :data:`READABLE_DUNDERS` says.
INTROSPECTION_PREFIXES = ("f_", "gi_", "cr_", "ag_", "tb_", "co_")
#: Functions that read, write or test an attribute by a name passed as a string -> the position
#: of that name among their arguments (``None``: every argument is one, ``attrgetter("a", "b")``).
#: The name must be a string literal (which :data:`READABLE_DUNDERS` then reads like any other),
#: and none of them may be handed on (``map(getattr, ...)``, ``functools.reduce(getattr, ...)``),
#: except where :data:`CORE_BY_NAME_ALLOWED` and :data:`BY_NAME_ALLOWED` say.
BY_NAME = {
    "getattr": 1,
    "setattr": 1,
    "delattr": 1,
    "hasattr": 1,
    "attrgetter": None,
    "methodcaller": 0,
    "get_field": 0,  # string.Formatter().get_field("0.attr", (obj,), {}) returns obj.attr
    "__setattr__": 1,  # object.__setattr__(self, name, value); bound, obj.__setattr__(name, ...)
}
#: Core module -> the functions (qualified names) that may read an attribute by a name known
#: only at run time: ``Checks.action`` reads the action of one of ``CHECK_NAMES`` off the
#: frozen dataclass that holds them.
CORE_BY_NAME_ALLOWED = {"webhook.core.config": {"Checks.action"}}
#: Module above the core -> the functions (qualified names) that may read an attribute by a
#: name known only at run time, each name from a table of its own: the kubernetes client's API
#: classes and their methods (kube, kubereads) and the socket wrapper's ``__getattr__``, which
#: hands the rest to its socket (server). What such a name may be is not read: in these five
#: functions a computed name could still reach ``__import__`` (``getattr(getattr(len, a), b)``);
#: anywhere else in those modules it is an offence, as in any other.
BY_NAME_ALLOWED = {
    "webhook.edge.kube": {"KubeSecretWriter.read_object"},
    "webhook.edge.kubereads": {"Kube._api", "Kube.owner", "Kube.pod_carriers"},
    "webhook.edge.server": {"_CoalescingSocket.__getattr__"},
}

#: What the composition floor may not import: modules that reach outside the process
#: (sockets, TLS, HTTP clients and servers, the kubernetes client, processes, files and their
#: tools, the environment) or set the process up (gevent's patch, its thread pool). Those are
#: edge functions (``edge/workers.patch_for_gevent``, ``process_identity``, ``off_the_loop``,
#: ``preload_libraries``); compose puts them together. Imports under ``if TYPE_CHECKING:``
#: (names for annotations, never loaded) are not counted.
COMPOSE_MAY_NOT_IMPORT = {
    "os",
    "posix",
    "io",
    "_io",
    "fcntl",
    "mmap",
    "pty",
    "signal",
    "socket",
    "_socket",
    "ssl",
    "_ssl",
    "select",
    "selectors",
    "asyncio",
    "subprocess",
    "multiprocessing",
    "shutil",
    "tempfile",
    "glob",
    "fileinput",
    "sqlite3",
    "http",
    "urllib.request",
    "urllib3",
    "httpx",
    "httpcore",
    "h2",
    "h11",
    "requests",
    "trio",
    "kubernetes",
    "gevent",
    "flask",
    "werkzeug",
    "gunicorn",
    "prometheus_client",
}
#: Methods of ``pathlib.Path`` that touch the file system: compose may hold paths and join
#: them, not read or write what they name.
COMPOSE_PATH_IO = {
    "read_text",
    "write_text",
    "read_bytes",
    "write_bytes",
    "open",
    "mkdir",
    "unlink",
    "rmdir",
    "touch",
    "iterdir",
    "glob",
    "rglob",
    "exists",
    "is_file",
    "is_dir",
    "stat",
    "chmod",
    "symlink_to",
    "resolve",
}

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
    sys_names = _sys_names(tree)

    def _is_sys_modules(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "modules"
            and isinstance(node.value, ast.Name)
            and node.value.id in sys_names
        )

    handled: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "sys":
            if any(_sys_machinery(a.name) or a.name == "modules" for a in node.names):
                yield node.lineno, None  # sys.modules under another name, sys._getframe
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
    attribute_values = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Name)
            and node.id in sys_names
            and isinstance(node.ctx, ast.Load)
            and id(node) not in attribute_values
        ):
            yield node.lineno, None  # sys handed on (getattr, vars): sys.modules unseen
        elif (
            isinstance(node, ast.Attribute)
            and _sys_machinery(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in sys_names
        ):
            yield node.lineno, None  # the import system's own hooks, a frame (sys._getframe)


def _sys_names(tree: ast.AST) -> set[str]:
    """The local names bound to ``sys``: ``sys`` and every ``import sys as ...``."""
    names = {"sys"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname for a in node.names if a.name == "sys" and a.asname}
    return names


def _sys_machinery(attr: str) -> bool:
    return attr in SYS_MACHINERY or attr.startswith("_")


def _forbidden_name(name: str) -> bool:
    """Is ``name`` a dunder off :data:`READABLE_DUNDERS`, or an attribute of a frame, a code
    object, a generator, a coroutine or a traceback (:data:`INTROSPECTION_PREFIXES`)?"""
    if len(name) > 4 and name.startswith("__") and name.endswith("__"):
        return name not in READABLE_DUNDERS
    return name.startswith(INTROSPECTION_PREFIXES)


def _introspection(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, what) for every name :func:`_forbidden_name` refuses, wherever ``tree`` writes
    it: an attribute (``len.__self__``, ``g.gi_frame.f_builtins``), a name read
    (``__builtins__``, ``__loader__``, ``__import__``), a name imported (``from m import
    __dict__``), a class pattern's keyword (``case object(__self__=b)``), and a word of a
    string constant (``getattr(len, "__self__")``, ``attrgetter("a.__self__")``,
    ``frame_dict["f_builtins"]``, ``"{0.__self__}"``). A string that is a statement of its own
    (a docstring) is prose and is not read."""
    prose = {
        id(n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in EVALUATORS:
            yield node.lineno, f"evaluates a string as code with {node.attr}"
        elif isinstance(node, ast.Name) and node.id in EVALUATORS:
            yield node.lineno, f"evaluates a string as code with {node.id}"
        elif isinstance(node, ast.ImportFrom) and any(a.name in EVALUATORS for a in node.names):
            yield node.lineno, "imports what evaluates a string as code"
        if isinstance(node, ast.Attribute) and _forbidden_name(node.attr):
            yield node.lineno, f"reaches .{node.attr}"
        elif (
            isinstance(node, ast.Name)
            and not isinstance(node.ctx, ast.Store)
            and _forbidden_name(node.id)
        ):
            yield node.lineno, f"reads {node.id}"
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            for alias in node.names:
                if _forbidden_name(alias.name):
                    yield node.lineno, f"imports {node.module}.{alias.name}"
        elif isinstance(node, ast.MatchClass):
            for attr in node.kwd_attrs:
                if _forbidden_name(attr):
                    yield node.lineno, f"matches .{attr}"
        elif (
            isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose
        ):
            for word in re.findall(r"\w+", node.value):
                if _forbidden_name(word):
                    yield node.lineno, f"names {word} in a string"


def _with_string_annotations(tree: ast.AST) -> ast.AST:
    """``tree`` with every annotation written as a string (``def f(x: "open('/x')")``, a
    string inside one, ``list["X"]``, and a string inside that string) added as the expression
    it is, on the string's line, so the checks read it as code: ``functools.singledispatch``
    and typing evaluate it. A string that is no expression is left as prose."""
    if not isinstance(tree, ast.Module):
        return tree
    pending: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg | ast.AnnAssign) and node.annotation is not None:
            pending.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            pending.append(node.returns)
    extra: list[ast.stmt] = []
    while pending:
        for constant in ast.walk(pending.pop()):
            text = _literal(constant)
            if text is None or not isinstance(constant, ast.expr):
                continue
            try:
                parsed = ast.parse(text.strip(), mode="eval").body
            except SyntaxError:
                continue
            for inner in ast.walk(parsed):
                if isinstance(inner, ast.expr):
                    inner.lineno = constant.lineno
            extra.append(ast.Expr(parsed, lineno=constant.lineno, col_offset=0))
            pending.append(parsed)
    if not extra:
        return tree
    return ast.Module(body=[*tree.body, *extra], type_ignores=tree.type_ignores)


def _scopes(tree: ast.AST) -> dict[int, str]:
    """id(node) -> the qualified name of the function or class it lies in ("" at the top)."""
    scopes: dict[int, str] = {}

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = scope
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                inner = f"{scope}.{child.name}" if scope else child.name
            scopes[id(child)] = inner
            visit(child, inner)

    visit(tree, "")
    return scopes


def _attributes_by_name(tree: ast.AST, allowed: set[str]) -> Iterator[tuple[int, str]]:
    """(line, what) for every attribute read, written or tested by a name that is no string
    literal (a :data:`BY_NAME` function called with one, or with ``*args``), and every such
    function handed on rather than called (``map(getattr, ...)``, ``f = operator.attrgetter``).
    ``allowed``: the functions (qualified names) where that is let through."""
    scopes = _scopes(tree)
    called: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = (
            func.id
            if isinstance(func, ast.Name)
            else func.attr
            if isinstance(func, ast.Attribute)
            else None
        )
        if name not in BY_NAME:
            continue
        called.add(id(func))
        position = BY_NAME[name]
        if name == "__setattr__" and not (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.value.id in ("object", "type")
        ):
            position = 0  # bound: obj.__setattr__(name, value)
        names = node.args if position is None else node.args[position : position + 1]
        computed = (
            not names
            or any(isinstance(a, ast.Starred) for a in node.args)
            or any(_literal(n) is None for n in names)
        )
        if computed and scopes.get(id(node), "") not in allowed:
            yield node.lineno, f"{name} with a name not written out"
    for node in ast.walk(tree):
        name = (
            node.id
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
            else node.attr
            if isinstance(node, ast.Attribute)
            else None
        )
        if name in BY_NAME and id(node) not in called:
            if scopes.get(id(node), "") not in allowed:
                yield node.lineno, f"hands on {name}"
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name in BY_NAME and alias.asname not in (None, alias.name):
                    yield node.lineno, f"imports {alias.name} as {alias.asname}"


def _core_may_import(name: str) -> bool:
    return name in CORE_MAY_IMPORT or any(
        name == u or name.startswith(u + ".") for u in CORE_MAY_IMPORT_UNDER
    )


def _dotted(node: ast.AST) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``, or ``None`` for anything but names and attributes."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def _load(name: str) -> ModuleType | None:
    """Module ``name``, imported to read its attributes, or ``None`` when there is none."""
    try:
        return importlib.import_module(name)
    except Exception:  # not a module (or not importable here): nothing to read
        return None


def _attribute_of(module: ModuleType, attr: str) -> object:
    """``module.attr``, a submodule not loaded yet included (``logging.config`` after
    ``import logging``); ``None`` when it has none."""
    value = getattr(module, attr, None)
    if value is None and not attr.startswith("__"):
        try:
            if importlib.util.find_spec(f"{module.__name__}.{attr}") is not None:
                value = _load(f"{module.__name__}.{attr}")
        except (ImportError, ValueError):
            value = None
    return value


def _imported_names(tree: ast.AST) -> dict[str, ModuleType]:
    """Local name -> the module it is bound to, for every import statement in ``tree`` that
    binds a module (``import a.b`` binds ``a``; ``from a import b`` binds ``b`` when it is a
    module, a submodule or a module held as an attribute)."""
    bound: dict[str, ModuleType] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name if alias.asname else alias.name.split(".")[0]
                module = _load(name)
                if module is not None:
                    bound[alias.asname or name] = module
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            parent = _load(node.module)
            for alias in node.names:
                value = None if parent is None else _attribute_of(parent, alias.name)
                if isinstance(value, ModuleType):
                    bound[alias.asname or alias.name] = value
    return bound


def _module_steps(tree: ast.AST) -> Iterator[tuple[int, ModuleType, str, object]]:
    """(line, module, attribute, its value) for every attribute read off a module along an
    attribute chain rooted at a name an import bound (``fnmatch.os.system``: fnmatch's
    ``os``, then os's ``system``), and every name ``from module import`` takes. The chain
    is followed while its values are modules."""
    bound = _imported_names(tree)
    if not bound:
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            parent = _load(node.module)
            if parent is not None:
                for alias in node.names:
                    yield node.lineno, parent, alias.name, _attribute_of(parent, alias.name)
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and node.args
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id in bound
        ):
            # getattr(fnmatch, "os"): read as fnmatch.os; a name not written out is unknown
            module = bound[node.args[0].id]
            attr = _literal(node.args[1]) if len(node.args) > 1 else None
            if attr is None:
                yield node.lineno, module, UNKNOWN_ATTRIBUTE, None
            else:
                yield node.lineno, module, attr, _attribute_of(module, attr)
            continue
        if not isinstance(node, ast.Attribute) or id(node) in inner:
            continue
        path = _dotted(node)
        if path is None or path[0] not in bound:
            continue
        value: object = bound[path[0]]
        for attr in path[1:]:
            if not isinstance(value, ModuleType):
                break
            module, value = value, _attribute_of(value, attr)
            yield node.lineno, module, attr, value


#: What :func:`_module_steps` gives for ``getattr(module, name)`` with a name not written out.
UNKNOWN_ATTRIBUTE = "<a name at run time>"


def _foreign_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, what) for every module the core reaches through an attribute of another
    (``fnmatch.os``, ``enum.bltns``, ``typing.sys``, ``from fnmatch import os``) and every
    module's ``__dict__``: a module reached so is no import the purity check reads. A
    submodule on the allowed list (``collections.abc``, ``urllib.parse``, the core's own) is
    let through; yaml and shlex are read by :func:`_restricted_uses`."""
    for line, module, attr, value in _module_steps(tree):
        if module.__name__.split(".")[0] in CORE_MAY_USE:
            continue
        if attr in ("__dict__", UNKNOWN_ATTRIBUTE):
            yield line, f"reads {module.__name__}.{attr}"
        elif isinstance(value, ModuleType):
            genuine = value.__name__ == f"{module.__name__}.{attr}"
            if not (genuine and _core_may_import(value.__name__)):
                yield line, f"reaches {value.__name__} as {module.__name__}.{attr}"


def _bound_modules(tree: ast.AST) -> dict[str, str]:
    """Local name -> module, for every module of :data:`CORE_MAY_USE` ``tree`` imports."""
    bound = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                if alias.asname is None and root in CORE_MAY_USE:
                    bound[root] = root
                elif alias.name in CORE_MAY_USE:
                    bound[alias.asname or alias.name] = alias.name
    return bound


def _safe_loaders(tree: ast.AST, yaml_names: set[str]) -> set[str]:
    """Local names of yaml loaders that build only plain data: ``class L(yaml.SafeLoader)``,
    ``L = getattr(yaml, "CSafeLoader", yaml.SafeLoader)``, and names bound to those (to a
    fixed point)."""
    names: set[str] = set()

    def safe(node: ast.AST | None) -> bool:
        if node is None:
            return False
        if isinstance(node, ast.Name):
            return node.id in names
        path = _dotted(node)
        if path is not None:
            return len(path) == 2 and path[0] in yaml_names and path[1] in YAML_SAFE_LOADERS
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            args = node.args
            return (
                node.func.id == "getattr"
                and len(args) == 3
                and isinstance(args[0], ast.Name)
                and args[0].id in yaml_names
                and _literal(args[1]) in YAML_SAFE_LOADERS
                and safe(args[2])
            )
        return False

    while True:
        more: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.bases and all(map(safe, node.bases)):
                more.add(node.name)
            elif isinstance(node, ast.Assign) and safe(node.value):
                more |= {t.id for t in node.targets if isinstance(t, ast.Name)}
            elif (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and safe(node.value)
            ):
                more.add(node.target.id)
        if more <= names:
            return names
        names |= more


def _restricted_uses(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, what) for every use of a module of :data:`CORE_MAY_USE` beyond its list: a name
    off the list, the module handed on, read by a name not written out, or a yaml load with
    a loader not known to be safe."""
    bound = _bound_modules(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in CORE_MAY_USE and not node.level:
            for alias in node.names:
                if alias.name not in CORE_MAY_USE[node.module] or alias.name in YAML_LOADS:
                    yield node.lineno, f"imports {node.module}.{alias.name}"
    yaml_names = {name for name, module in bound.items() if module == "yaml"}
    loaders = _safe_loaders(tree, yaml_names)
    seen: set[int] = set()
    for node in ast.walk(tree):
        if id(node) in seen:
            continue
        if isinstance(node, ast.Attribute):
            path = _dotted(node)
            if path is None or path[0] not in bound:
                continue
            inner: ast.AST = node
            while isinstance(inner, ast.Attribute):
                seen.add(id(inner))
                inner = inner.value
            seen.add(id(inner))
            module = bound[path[0]]
            used = ".".join(path[1:])
            if used not in CORE_MAY_USE[module]:
                yield node.lineno, f"uses {module}.{used}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            first = node.args[0] if node.args else None
            if node.func.id == "getattr" and isinstance(first, ast.Name) and first.id in bound:
                seen.add(id(first))
                name = _literal(node.args[1]) if len(node.args) > 1 else None
                if name is None or name not in CORE_MAY_USE[bound[first.id]]:
                    yield node.lineno, f"uses {bound[first.id]}.{name or '<a name at run time>'}"
        elif isinstance(node, ast.Name) and node.id in bound and isinstance(node.ctx, ast.Load):
            yield node.lineno, f"hands on the module {bound[node.id]}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        path = _dotted(node.func)
        if path is None or len(path) != 2 or path[0] not in yaml_names or path[1] not in YAML_LOADS:
            continue
        loader = node.args[1] if len(node.args) > 1 else None
        if loader is None:
            loader = next((k.value for k in node.keywords if k.arg == "Loader"), None)
        if not (
            (isinstance(loader, ast.Name) and loader.id in loaders)
            or (
                loader is not None
                and (lpath := _dotted(loader)) is not None
                and len(lpath) == 2
                and lpath[0] in yaml_names
                and lpath[1] in YAML_SAFE_LOADERS
            )
        ):
            yield node.lineno, f"calls yaml.{path[1]} without a safe loader"


def _io_imports(tree: ast.AST, name: str | None = None) -> Iterator[tuple[int, str]]:
    """(line, what) for every import in ``tree`` (the source of core module ``name``) that the
    core must not make (anything off :data:`CORE_MAY_IMPORT`), every use of a module of
    :data:`CORE_MAY_USE` beyond its list, every use of a builtin that does I/O or runs code
    built at run time (:data:`IO_BUILTINS`), every dunder off :data:`READABLE_DUNDERS` and
    attribute of a frame or a code object (:func:`_introspection`), and every attribute read
    by a name not written out (:func:`_attributes_by_name`) outside
    :data:`CORE_BY_NAME_ALLOWED`. An annotation written as a string is read as code."""
    tree = _with_string_annotations(tree)
    yield from _introspection(tree)
    yield from _attributes_by_name(tree, CORE_BY_NAME_ALLOWED.get(name or "", set()))
    for line, dynamic in _dynamic_imports(tree):
        if dynamic is None:
            yield line, "a module named at run time (not checkable)"
        elif not _core_may_import(dynamic):
            yield line, f"imports {dynamic}"
    yield from _restricted_uses(tree)
    yield from _foreign_modules(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _core_may_import(alias.name):
                    yield node.lineno, f"imports {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            within = [f"{node.module}.{alias.name}" for alias in node.names]
            if not _core_may_import(node.module) and not all(map(_core_may_import, within)):
                yield node.lineno, f"imports {node.module}"
        elif (
            isinstance(node, ast.Name) and node.id in IO_BUILTINS and node.id not in DYNAMIC_IMPORTS
        ):
            yield node.lineno, f"uses the builtin {node.id}"


def test_core_imports_nothing_that_does_io() -> None:
    core = Path(webhook.core.__file__).parent
    offences = []
    modules = {path: name for name, path in _modules().items()}
    for source in sorted(core.rglob("*.py")):
        tree = ast.parse(source.read_text(), filename=str(source))
        for line, what in _io_imports(tree, modules[source]):
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


@pytest.mark.parametrize(
    "text",
    [
        # yaml's loads that construct objects, however they are reached
        "import yaml\nyaml.load(text)",
        "import yaml\nyaml.load(text, Loader=yaml.Loader)",
        "import yaml\nyaml.load(text, yaml.UnsafeLoader)",
        "import yaml\nyaml.load_all(text, Loader=yaml.FullLoader)",
        "import yaml as y\ny.full_load(text)",
        "import yaml\nyaml.unsafe_load_all(text)",
        "from yaml import unsafe_load",
        "from yaml import load",
        "import yaml\nm = yaml\nm.unsafe_load(text)",
        "import yaml\ngetattr(yaml, 'unsafe_load')(text)",
        "import yaml\ngetattr(yaml, name)(text)",
        "import yaml\nL = getattr(yaml, 'CLoader', yaml.SafeLoader)\nyaml.load(text, Loader=L)",
        "import yaml\nclass L(yaml.SafeLoader, yaml.constructor.UnsafeConstructor): pass",
        "import yaml\nclass L(yaml.Loader): pass\nyaml.load(text, Loader=L)",
        "import yaml.constructor as c\nc.UnsafeConstructor",
        # a shlex without a stream reads standard input
        "import shlex\nshlex.shlex().get_token()",
        # the builtins, or any class, reached from an object
        "globals()['__builtins__']['open']('/etc/hosts')",
        "vars()['__builtins__']",
        "len.__self__.open",
        "f.__globals__['__builtins__']",
        "().__class__.__base__.__subclasses__()",
        # off the allowed list, through a package that is on it
        "from collections import abc, deque, ChainMap\nfrom email import utils",
        "import webhook",
        "from webhook import edge",
    ],
)
def test_the_purity_check_sees_what_an_allowed_module_lets_out(text: str) -> None:
    assert list(_io_imports(ast.parse(text))) != [], text


def test_the_purity_check_lets_the_cores_safe_loads_through() -> None:
    text = (
        "import yaml, shlex\n"
        "from collections import abc\n"
        "from webhook.core.config import Config\n"
        "_L: type[yaml.SafeLoader] = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)\n"
        "class S(yaml.SafeLoader): pass\n"
        "yaml.load(text, Loader=_L)\n"
        "yaml.load(text, S)\n"
        "yaml.load_all(text, Loader=yaml.CSafeLoader)\n"
        "yaml.parse(text, Loader=_L)\n"
        "yaml.safe_load(text)\n"
        "shlex.quote('x')\n"
    )
    assert list(_io_imports(ast.parse(text))) == []


@pytest.mark.parametrize(
    "text",
    [
        "import collections.abc\ncollections.abc.Mapping",
        "import urllib.parse\nurllib.parse.quote('x')",
        "from urllib import parse\nparse.urlsplit('x')",
        "import webhook.core.config\nwebhook.core.config.Config",
    ],
)
def test_the_purity_check_lets_allowed_submodules_through(text: str) -> None:
    assert list(_io_imports(ast.parse(text))) == [], text


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


def _is_machinery(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in MACHINERY)


def _machinery(name: str, tree: ast.AST) -> Iterator[int]:
    """The line of every use of the import machinery in module ``name`` that the floor check
    cannot read as an import: a machinery module (:data:`MACHINERY`) imported other than as
    ``importlib`` or ``from importlib import import_module``, ``importlib`` used other than
    for ``importlib.import_module``, code built at run time and the builtins reached without
    being named (:data:`MACHINERY_BUILTINS`), a dunder off :data:`READABLE_DUNDERS` or a
    frame's attribute (:func:`_introspection`: ``__import__``, ``f_builtins``), ``sys``'s
    private attributes (``sys._getframe``), and outside the functions of :data:`BY_NAME_ALLOWED`
    an attribute read by a name not written out (:func:`_attributes_by_name`). What
    :data:`MACHINERY_ALLOWED` grants ``name`` is let through."""
    allowed = MACHINERY_ALLOWED.get(name, set())
    importlib_names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if not _is_machinery(alias.name) or alias.name in allowed:
                    continue
                if alias.name == "importlib":
                    importlib_names.add(alias.asname or alias.name)
                else:
                    yield node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if not _is_machinery(node.module) or node.module in allowed:
                continue
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in allowed or (node.module, alias.name) == ("importlib", "import_module"):
                    continue
                yield node.lineno
    attribute_values = {id(n.value): n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            if node.id in importlib_names and attribute_values.get(id(node)) != "import_module":
                yield node.lineno  # importlib handed on, or importlib.util, .resources, ...
            elif node.id in MACHINERY_BUILTINS:
                yield node.lineno
    for line, _what in _introspection(tree):
        yield line  # __import__, __builtins__, a frame's f_builtins: however they are written
    exempt = BY_NAME_ALLOWED.get(name, set()) | CORE_BY_NAME_ALLOWED.get(name, set())
    for line, _what in _attributes_by_name(tree, exempt):
        yield line  # getattr(x, name): the name could be "__import__"
    for line, _module, attr, value in _module_steps(tree):
        if attr == "__dict__":
            yield line  # a module's namespace: webhook.__dict__["cli"], os.__dict__["sys"]
        elif (
            isinstance(value, ModuleType)
            and (value is sys or _is_machinery(value.__name__))
            and value.__name__ not in allowed
        ):
            yield line  # sys or the machinery through another module: os.sys, logging.config


def _from_base(name: str, node: ast.ImportFrom, is_package: bool) -> str:
    """The absolute module a ``from ... import`` statement in module ``name`` reads from."""
    base = node.module or ""
    if node.level:
        anchor = name.split(".")
        anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
        base = ".".join([*anchor, *([base] if base else [])])
    return base


def _deepest(dotted: str, known: set[str]) -> str:
    """The deepest module of the package that the dotted name lies in."""
    while dotted not in known and "." in dotted:
        dotted = dotted.rsplit(".", 1)[0]
    return dotted


def _attribute_imports(
    name: str, tree: ast.AST, known: set[str], is_package: bool
) -> Iterator[tuple[int, str]]:
    """(line, module) for every module of this package reached through an attribute of one
    bound by an import: after ``import webhook.core.config``, ``webhook.cli.audit`` reaches the
    cli (once something has loaded it). A package of this package handed on whole
    (``getattr(webhook, ...)``) yields :data:`UNCHECKABLE`."""
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "webhook" or alias.name.startswith("webhook."):
                    if alias.asname:
                        bound[alias.asname] = alias.name
                    else:
                        bound["webhook"] = "webhook"
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(name, node, is_package)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in known:
                    bound[alias.asname or alias.name] = full
    if not bound:
        return
    packages = {k.rsplit(".", 1)[0] for k in known if "." in k}
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and id(node) not in inner:
            path = _dotted(node)
            if path is None or path[0] not in bound:
                continue
            target = _deepest(".".join([bound[path[0]], *path[1:]]), known)
            if target != name:
                yield node.lineno, target
        elif (
            isinstance(node, ast.Name)
            and isinstance(node.ctx, ast.Load)
            and node.id in bound
            and bound[node.id] in packages
            and id(node) not in inner
        ):
            yield node.lineno, UNCHECKABLE


def _imports_in(
    name: str, tree: ast.AST, known: set[str], *, is_package: bool = False
) -> Iterator[tuple[int, str]]:
    tree = _with_string_annotations(tree)
    for line in _machinery(name, tree):
        yield line, UNCHECKABLE
    yield from _attribute_imports(name, tree, known, is_package)
    for line, dynamic in _dynamic_imports(tree):
        if dynamic is None:
            yield line, UNCHECKABLE
        elif dynamic == "webhook" or dynamic.startswith("webhook."):
            target = _deepest(dynamic, known)
            if target != name:
                yield line, target
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _from_base(name, node, is_package)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.append(full if full in known else base)
        for dotted in targets:
            if dotted == "webhook" or dotted.startswith("webhook."):
                target = _deepest(dotted, known)
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


def _type_checking_only(tree: ast.AST) -> set[int]:
    """id() of every node under ``if TYPE_CHECKING:``: names for annotations, never loaded."""
    return {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
        for statement in node.body
        for inner in ast.walk(statement)
    }


def _compose_refuses(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in COMPOSE_MAY_NOT_IMPORT)


def _compose_io(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, what) for every piece of raw I/O in a compose module: an import of a module on
    :data:`COMPOSE_MAY_NOT_IMPORT` (at any depth, by a statement, ``import_module`` or
    ``sys.modules``, or reached through another module: ``threading.os``), a builtin of
    :data:`IO_BUILTINS` (``open``, ``print``, ``input``, ...), and a file-system method of a
    path (:data:`COMPOSE_PATH_IO`). What ``if TYPE_CHECKING:`` holds is not counted."""
    tree = _with_string_annotations(tree)
    annotations_only = _type_checking_only(tree)
    for line, dynamic in _dynamic_imports(tree):
        if dynamic is not None and _compose_refuses(dynamic):
            yield line, f"imports {dynamic}"
    for line, _module, _attr, value in _module_steps(tree):
        if isinstance(value, ModuleType) and _compose_refuses(value.__name__):
            yield line, f"reaches {value.__name__}"
    for node in ast.walk(tree):
        if id(node) in annotations_only:
            continue
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        for module in names:
            if _compose_refuses(module):
                yield node.lineno, f"imports {module}"
                break
        if (
            isinstance(node, ast.Name)
            and isinstance(node.ctx, ast.Load)
            and node.id in IO_BUILTINS
            and node.id not in DYNAMIC_IMPORTS
        ):
            yield node.lineno, f"uses the builtin {node.id}"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in COMPOSE_PATH_IO
        ):
            yield node.lineno, f"calls .{node.func.attr}() (the file system)"


def test_no_compose_module_does_io_itself() -> None:
    """The composition floor puts the edge and the core together; every kubernetes-client
    call, file, socket and process set-up is an edge function it calls."""
    offences = [
        f"{name}:{line} {what}"
        for name, path in sorted(_modules().items())
        if name == "webhook.compose" or name.startswith("webhook.compose.")
        for line, what in _compose_io(ast.parse(path.read_text()))
    ]
    assert offences == []


@pytest.mark.parametrize(
    "text",
    [
        "import socket",
        "import os\ndef f():\n    return os.getpid()",
        "def f():\n    import kubernetes.client",
        "from kubernetes import client",
        "from gevent import monkey",
        "import gevent.threadpool",
        "from urllib import request",
        "import importlib\nimportlib.import_module('subprocess')",
        "import sys\nsys.modules.setdefault('trio', None)",
        "import logging\nlogging.os.getpid()",
        "def f():\n    return open('/etc/hosts').read()",
        "def f():\n    print('x')",
        "def f(path):\n    return path.read_text()",
        "from pathlib import Path\nPath('x').write_text('y')",
        "def f(x: \"open('/etc/hosts')\"): ...",
    ],
)
def test_the_compose_check_sees_raw_io(text: str) -> None:
    assert list(_compose_io(ast.parse(text))) != [], text


@pytest.mark.parametrize(
    "text",
    [
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from flask import Flask",
        "from pathlib import Path\np = Path('a') / 'b'",
        "import threading\nthreading.Thread(target=len)",
        "from urllib.parse import urlsplit",
        "from webhook.edge import workers\nworkers.process_identity()",
        "import logging\nlogging.getLogger('x').info('y')",
    ],
)
def test_the_compose_check_lets_composition_through(text: str) -> None:
    assert list(_compose_io(ast.parse(text))) == [], text


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


#: Imports every module it is given, bottom floor first, in one fresh interpreter; after each,
#: a module of a higher floor in ``sys.modules`` is an offence (what the ast cannot see, the
#: interpreter does). Before a module of floor f is imported nothing above f is loaded, so
#: the first offence names its module; the checks after it would be spoiled, so it stops.
_LOAD_EACH = """
import importlib, json, sys
order, floors, outside = json.loads(sys.argv[1])
def floor(name):
    if name in outside:
        return outside[name]
    for prefix, f in floors.items():
        if name == prefix or name.startswith(prefix + "."):
            return f
    return None
for name, own in order:
    importlib.import_module(name)
    above = sorted(m for m in sys.modules if (floor(m) or 0) > own)
    if above:
        print(json.dumps([name, above]))
        break
"""


def test_importing_a_module_loads_nothing_from_a_floor_above_it() -> None:
    """The floor check's runtime twin: each module imported in turn, lowest floor first, in
    one fresh interpreter, loads no module of a floor above its own."""
    order = sorted(
        ((name, floor) for name in _modules() if (floor := _floor(name)) is not None),
        key=lambda item: (item[1], item[0]),
    )
    order = [(name, floor) for name, floor in order if name != "webhook.__main__"]
    root = PACKAGE.parent
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _LOAD_EACH, json.dumps([order, FLOORS, OUTSIDE])],
        capture_output=True,
        text=True,
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", done.stdout
    assert time.perf_counter() - started < 30


@pytest.mark.parametrize(
    "text",
    [
        "import fnmatch\ngetattr(fnmatch, 'os').system('id')",
        "import fnmatch\ngetattr(fnmatch, name)",
        "from fnmatch import os",
        "import fnmatch\nfnmatch.__dict__['os']",
        "import json\njson.decoder.scanstring",
    ],
)
def test_the_purity_check_sees_a_module_behind_an_allowed_ones_getattr(text: str) -> None:
    assert list(_io_imports(ast.parse(text))) != [], text


@pytest.mark.parametrize(
    "text",
    [
        "import os\ngetattr(os, 'sys').modules['webhook.cli.audit']",
        "import logging\nlogging.config.dictConfig({})",
        "from os import sys\nsys.modules['webhook.cli']",
        "import os\nos.__dict__['sys']",
        "import unittest.mock\nunittest.mock.patch('webhook.cli.audit.cmd_audit')",
    ],
)
def test_the_floor_check_sees_sys_and_loaders_behind_another_module(text: str) -> None:
    known = set(_modules())
    name = "webhook.edge.kube"
    graph = {name: {t: line for line, t in _imports_in(name, ast.parse(text), known)}}
    assert _upward(graph) != [], text


def test_the_floor_check_lets_plain_module_attributes_through() -> None:
    """Above the core a getattr with a name from a table (edge/kube's
    ``getattr(client, api_class)`` in ``KubeSecretWriter.read_object``) is let through in the
    function :data:`BY_NAME_ALLOWED` names; a literal one is read as the attribute anywhere."""
    known = set(_modules())
    text = (
        "import os\nos.path.join('a', 'b')\ngetattr(os, 'sep')\n"
        "class KubeSecretWriter:\n    def read_object(self, name):\n"
        "        return getattr(os, name)\n"
        "import logging\nlogging.getLogger()"
    )
    assert list(_imports_in("webhook.edge.kube", ast.parse(text), known)) == []
    # the same read at the top of the module, or in another of its functions, is refused
    for elsewhere in ("import os\ngetattr(os, name)", text.replace("read_object", "other")):
        assert list(_imports_in("webhook.edge.kube", ast.parse(elsewhere), known)) != []


@pytest.mark.parametrize(
    "text",
    [
        # off the core's list: attributes by a name made at run time, frames, every object
        "import operator",
        "from operator import attrgetter",
        "import string",
        "import inspect",
        "import gc",
        "import ctypes",
        # a dunder or a frame's attribute, however it is written
        "def f(e):\n    return e.__traceback__.tb_frame.f_globals",
        "def f():\n    g = (x for x in ())\n    return g.gi_code.co_consts",
        "def f():\n    return type(len).__dict__",
        "def f():\n    return object.__getattribute__(len, 'x')",
        "def f():\n    return __loader__.load_module('os')",
        "from fnmatch import __builtins__",
        "def f():\n    match len:\n        case object(__self__=b):\n            return b",
        "def f(m):\n    return m['f_builtins']",
        "def f():\n    return '{0.__self__}'.format(len)",
        # an attribute by a name not written out, or the function that reads one handed on
        "def f(name):\n    return getattr(len, name)",
        "def f(*names):\n    return getattr(len, *names)",
        "def f(o, name):\n    setattr(o, name, 1)",
        "def f(o, name):\n    return hasattr(o, name)",
        "def f(o, name):\n    object.__setattr__(o, name, 1)",
        "import functools\ndef f(names):\n    return functools.reduce(getattr, names, len)",
        "def f(names):\n    return list(map(getattr, [len], names))",
        "def f():\n    g = getattr\n    return g",
        # site's interactive builtins: the terminal, and help imports what its string names
        "def f():\n    help('os')",
        "def f():\n    exit(1)",
        "def f():\n    return [license, copyright, credits, quit]",
        # strings evaluated as code
        "import typing\ndef f(x: 'int'):\n    return typing.get_type_hints(f)",
        "from typing import ForwardRef",
        "import functools\n@functools.singledispatch\ndef f(x): ...\n"
        "@f.register\ndef _(x: \"open('/etc/hosts')\"): ...",
        "def f(x: \"list['print(1)']\"): ...",
    ],
)
def test_the_purity_check_refuses_introspection_in_the_core(text: str) -> None:
    assert list(_io_imports(ast.parse(text))) != [], text


@pytest.mark.parametrize(
    "text",
    [
        "def f(error):\n    return type(error).__name__",
        "class E(Exception):\n    def __init__(self, m):\n        super().__init__(m)",
        "def f(error):\n    return error.__cause__ or error.__context__",
        "class G:\n    def __post_init__(self):\n        object.__setattr__(self, 'globs', ())",
        "def f(error):\n    return getattr(error, 'problem_mark', None)",
        '"""A docstring that names ``__self__``, ``f_builtins`` and ``__import__``."""',
        "def f(x: 'dict[str, int]') -> 'list[str]':\n    return []",
        "x: 'not an expression ('",
        "def f():\n    '''Prose: ``len.__self__`` is the builtins.'''\n    return 1",
        "__all__ = ['f']\n__slots__ = ()",
    ],
)
def test_the_purity_check_lets_the_cores_plain_dunders_through(text: str) -> None:
    assert list(_io_imports(ast.parse(text))) == [], text


def test_the_cores_one_read_by_a_run_time_name_is_let_through_only_where_it_is() -> None:
    """``Checks.action`` in the core's config reads one of its own fields by name; the same
    read anywhere else in that module, or in another core module, is refused."""
    text = "class Checks:\n    def action(self, check):\n        return getattr(self, check)\n"
    assert list(_io_imports(ast.parse(text), "webhook.core.config")) == []
    assert list(_io_imports(ast.parse(text), "webhook.core.validate")) != []
    elsewhere = text.replace("def action", "def other")
    assert list(_io_imports(ast.parse(elsewhere), "webhook.core.config")) != []


@pytest.mark.parametrize(
    "text",
    [
        "def f(a, b):\n    return getattr(getattr(len, a), b)('webhook.cli')",
        "from sys import _getframe",
        "import sys\ndef f():\n    return sys._current_frames()",
        "import gc\ndef f():\n    return gc.get_referrers(f)",
        "import inspect\ndef f():\n    return inspect.stack()",
        "import operator\ndef f(name):\n    return operator.attrgetter(name)(len)",
        "from operator import attrgetter as a\ndef f(name):\n    return a(name)(len)",
        "import string\ndef f(n):\n    return string.Formatter().get_field(n, (len,), {})",
        "def f():\n    return vars(len)",
        "def f(m):\n    return m['__import__']('webhook.cli')",
        "def f():\n    return __import__('webhook.core.config')",
        "def f():\n    help('webhook.cli.audit')",
        "def f():\n    breakpoint()",
    ],
)
def test_the_floor_check_refuses_introspection_on_every_floor(text: str) -> None:
    known = set(_modules())
    name = "webhook.edge.app"  # not on BY_NAME_ALLOWED
    graph = {name: {t: line for line, t in _imports_in(name, ast.parse(text), known)}}
    assert _upward(graph) != [], text


def test_every_exemption_from_the_by_name_rule_is_still_needed() -> None:
    """Each function of :data:`BY_NAME_ALLOWED` and :data:`CORE_BY_NAME_ALLOWED` reads an
    attribute by a run-time name today: one that no longer does loses its exemption."""
    modules = _modules()
    stale = []
    exemptions = sorted([*BY_NAME_ALLOWED.items(), *CORE_BY_NAME_ALLOWED.items()])
    for name, functions in exemptions:
        tree = ast.parse(modules[name].read_text())
        scopes = _scopes(tree)
        used = {
            scopes[id(node)]
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and list(_attributes_by_name(ast.Module(body=[ast.Expr(node)], type_ignores=[]), set()))
        }
        stale += [f"{name}:{f}" for f in sorted(functions - used)]
    assert stale == []
