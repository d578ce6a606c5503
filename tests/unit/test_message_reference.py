"""Every message pullguard can print is in docs/reference.md ("Every message"), with its
cause and its fix, and every entry there is a message the code prints (issue 22 item 7).

The messages are read from the code itself, so a new or reworded one fails this test until
the reference has it: each finding's ``problem`` (the sentence of a denial or warning; a
variable's every assignment in the function), each note :meth:`Finding.as_advisory` appends,
each warning line the core writes itself (``pullguard: ...``), each cause ``diagnose``
names (``CAUSE_WORDS``) and the evidence and fix sentences it writes itself
(:func:`diagnose_sentences`), and the notes ``check`` and ``audit`` print. A placeholder is the
name of what fills it: ``{name}``, ``{shown_image}``, ``{why}``; a computed part is ``{…}``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from tests.conftest import ROOT
from webhook.core.pullfailure import CAUSE_WORDS

SOURCES = ROOT / "webhook"
REFERENCE = ROOT / "docs" / "reference.md"
#: Module constants whose text is printed as it is.
PRINTED_CONSTANTS = {"NOT_ASKED_NOTE", "NO_STATE_NOTE", "_ANONYMOUS_NOTE"}
#: Functions whose every text (but the docstring) is part of a message.
PRINTED_FUNCTIONS = {
    "miss_reason",
    "_not_checked_text",
    "_exempt_text",
    "_mode_off_text",
    "_checks_not_run_text",
    "_not_asked_note",
}


#: A line the code writes itself, whole: a warning (``pullguard: ...``) or a command's own
#: line (``pullguard diagnose: pod NS/POD not found``, ``pullguard audit: ...``; rev22b F7).
PRINTED_LINE = re.compile(r"pullguard(?: [a-z-]+)?: ")


#: Module-level string constants, by name: a message that names one shows its words.
CONSTANTS: dict[str, str] = {}


def placeholder(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return CONSTANTS.get(node.id, "{" + node.id + "}")
    if isinstance(node, ast.Attribute):
        return "{" + node.attr + "}"
    if isinstance(node, ast.Call):
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "…")
        return "{" + name + "()}"
    return "{…}"


def render(node: ast.expr) -> str | None:
    """A string expression as a template; ``None`` when it is not built from literals."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue):
                parts.append(placeholder(value.value))
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = render(node.left), render(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, ast.IfExp):
        return "{…}"
    return None


def _functions(tree: ast.Module) -> Iterator[ast.AST]:
    yield tree
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            yield node


def _assigned(scope: ast.AST, name: str) -> list[ast.expr]:
    return [
        node.value
        for node in ast.walk(scope)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
    ]


def _read_constants(tree: ast.Module) -> None:
    CONSTANTS.clear()
    CONSTANTS.update(
        {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            for target in node.targets
            if isinstance(target, ast.Name) and target.id.isupper()
        }
    )


def _texts(scope: ast.AST, value: ast.expr) -> set[str]:
    """The templates an argument can be: a variable's every assignment in ``scope``."""
    values = _assigned(scope, value.id) if isinstance(value, ast.Name) else [value]
    rendered = (render(v) for v in values)
    return {t for t in rendered if t is not None and re.search(r"[a-z]", _unfilled(t))}


def _unfilled(text: str) -> str:
    return re.sub(r"\{[^}]*\}", "", text)


def templates_in_code() -> set[str]:
    found: set[str] = set(CAUSE_WORDS.values())
    for path in sorted(SOURCES.rglob("*.py")):
        tree = ast.parse(path.read_text("utf-8"))
        _read_constants(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id in PRINTED_CONSTANTS for t in node.targets
            ):
                text = render(node.value)
                assert text is not None
                found.add(text)
        inner = {
            id(part)
            for node in ast.walk(tree)
            if isinstance(node, ast.JoinedStr)
            for part in node.values
        } | {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Expr)  # docstrings
        }
        for node in ast.walk(tree):
            # A warning line the code writes itself, whole.
            if isinstance(node, ast.JoinedStr | ast.Constant) and id(node) not in inner:
                text = render(node)
                if text is not None and PRINTED_LINE.match(text):
                    found.add(text)
            if isinstance(node, ast.FunctionDef) and node.name in PRINTED_FUNCTIONS:
                for part in ast.walk(node):
                    if isinstance(part, ast.JoinedStr) and id(part) not in inner:
                        text = render(part)
                        if text is not None:
                            found.add(text)
        for scope in _functions(tree):
            for call in ast.walk(scope):
                if not isinstance(call, ast.Call):
                    continue
                keywords = {k.arg: k.value for k in call.keywords}
                values: list[ast.expr] = []
                if "problem" in keywords:
                    value = keywords["problem"]
                    values = _assigned(scope, value.id) if isinstance(value, ast.Name) else [value]
                elif getattr(call.func, "attr", "") == "as_advisory" and call.args:
                    values = [call.args[0]]
                for value in values:
                    text = render(value)
                    if text is not None and text.strip("{…}") and text != "{problem}":
                        found.add(text)
    found |= diagnose_sentences()
    # Only texts with words of their own (not "  {image}", a list's indentation).
    return {t for t in found if re.search(r"[a-z]", _unfilled(t))}


def short_forms_in_code() -> dict[str, set[str]]:
    """Each short form (``Finding(short=...)``, and the second note of ``as_advisory``):
    what a warning's first line and a ``pullguard audit`` line print instead of the
    problem, with the problems (or first notes) it shortens in the same call."""
    found: dict[str, set[str]] = {}
    for path in sorted(SOURCES.rglob("*.py")):
        tree = ast.parse(path.read_text("utf-8"))
        _read_constants(tree)
        for scope in _functions(tree):
            for call in ast.walk(scope):
                if not isinstance(call, ast.Call):
                    continue
                keywords = {k.arg: k.value for k in call.keywords}
                if "short" in keywords and "problem" in keywords:
                    shorts = _texts(scope, keywords["short"])
                    problems = _texts(scope, keywords["problem"])
                elif getattr(call.func, "attr", "") == "as_advisory" and len(call.args) > 1:
                    shorts, problems = _texts(scope, call.args[1]), _texts(scope, call.args[0])
                else:
                    continue
                for short in shorts:
                    found.setdefault(short, set()).update(problems)
    return found


def short_forms_in_reference() -> dict[str, str]:
    """The "Every short form" table: each short form with the message it shortens."""
    text = REFERENCE.read_text("utf-8")
    section = text.split("### Every short form", 1)[1].split("\n#", 1)[0]
    out: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) != 3 or not cells[1].startswith("`"):
            continue
        where, short, message = cells
        assert where and message.startswith("`"), f"an entry without its place or message: {line}"
        out[short.strip("`").replace("\\|", "|")] = message.strip("`").replace("\\|", "|")
    return out


def test_every_short_form_is_in_the_reference_with_the_message_it_shortens() -> None:
    """rev22 F12: every kubectl warning and ``pullguard audit`` line prints a finding's
    short form, and 31 of them were in no list."""
    code, reference = short_forms_in_code(), short_forms_in_reference()
    assert len(code) > 20  # the extraction finds them at all
    missing = sorted(set(code) - set(reference))
    stale = sorted(set(reference) - set(code))
    assert not missing, "short forms the reference lacks:\n" + "\n".join(missing)
    assert not stale, "short forms no code prints:\n" + "\n".join(stale)
    messages = templates_in_reference()
    wrong = sorted(
        f"{short}: {message}"
        for short, message in reference.items()
        if message not in code[short] or message not in messages
    )
    assert not wrong, "short forms beside a message they do not shorten:\n" + "\n".join(wrong)


def templates_in_reference() -> set[str]:
    text = REFERENCE.read_text("utf-8")
    section = text.split("### Every message", 1)[1].split("\n## ", 1)[0]
    out = set()
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) != 4 or not cells[1].startswith("`"):
            continue
        where, message, cause, fix = cells
        assert where and cause and fix, f"an entry without its place, cause or fix: {line}"
        # A message of several lines is written with \n for its line breaks.
        out.add(message.strip("`").replace("\\|", "|").replace("\\n", "\n"))
    return out


def test_every_message_in_the_code_is_in_the_reference_and_back() -> None:
    code, reference = templates_in_code(), templates_in_reference()
    assert len(code) > 40  # the extraction finds the messages at all
    missing = sorted(code - reference)
    stale = sorted(reference - code)
    assert not missing, "messages the reference lacks:\n" + "\n".join(missing)
    assert not stale, "reference entries no code prints:\n" + "\n".join(stale)


#: The module whose own sentences ``pullguard diagnose`` prints beside the findings'.
DIAGNOSIS = SOURCES / "core" / "diagnosis.py"


def diagnose_sentences() -> set[str]:
    """The evidence and fix sentences :mod:`webhook.core.diagnosis` writes itself (rev22
    F18): every string appended to (or extended into) a diagnosis's ``evidence`` or
    ``fixes`` (a variable's every assignment in its function: rev22b F7), each ``said=``
    that introduces a live finding's words, and every ``summary`` it sets (diagnose's
    corrected first line). A computed tail (``+ f.problem...``) is ``{…}``."""
    tree = ast.parse(DIAGNOSIS.read_text("utf-8"))
    _read_constants(tree)
    found: set[str] = set()
    for scope in _functions(tree):
        for node in ast.walk(scope):
            values: list[ast.expr] = []
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Attribute) and t.attr == "summary" for t in node.targets
            ):
                values.append(node.value)
            if not isinstance(node, ast.Call):
                _add_sentences(found, values)
                continue
            func = node.func
            values += [k.value for k in node.keywords if k.arg == "said"]
            if (
                isinstance(func, ast.Attribute)
                and func.attr in ("append", "extend")
                and isinstance(func.value, ast.Attribute)
                and func.value.attr in ("evidence", "fixes")
                and node.args
            ):
                arg = node.args[0]
                arg = arg.elt if isinstance(arg, ast.GeneratorExp) else arg
                values += _assigned(scope, arg.id) if isinstance(arg, ast.Name) else [arg]
            _add_sentences(found, values)
    return found


def _add_sentences(found: set[str], values: list[ast.expr]) -> None:
    for value in values:
        text = render(value)
        if text is None and isinstance(value, ast.BinOp):
            left = render(value.left)
            text = None if left is None else left + "{…}"
        if text is not None and re.search(r"[a-z]", _unfilled(text)):
            found.add(text)


def test_every_sentence_diagnose_writes_itself_is_in_the_reference() -> None:
    """rev22 F18: "pullguard now: the image exists ...", "pullguard could not re-check:
    ...", "the kubelet retries with a back-off of up to 5 minutes; ..." were printed and in
    no list."""
    sentences = diagnose_sentences()
    assert len(sentences) >= 5  # the extraction finds them at all
    missing = sorted(sentences - templates_in_reference())
    assert not missing, "diagnose sentences the reference lacks:\n" + "\n".join(missing)
