"""Outside review rev22b of issue 22, item 7: "the reference lists every message pullguard can
print, with its cause and its fix, and a test holds the list and the code together".

tests/unit/test_message_reference.py reads messages out of the code's syntax tree. These
tests add a message to a copy of the code, the ways the code already writes its messages,
and expect that test to fail; and look for texts printed today that no list has."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.unit import test_message_reference as reference

#: The reference tests that must fail when the code prints a message the reference lacks.
REFERENCE_TESTS: tuple[Callable[[], None], ...] = (
    reference.test_every_message_in_the_code_is_in_the_reference_and_back,
    reference.test_every_sentence_diagnose_writes_itself_is_in_the_reference,
    reference.test_every_short_form_is_in_the_reference_with_the_message_it_shortens,
)

NEW = "a brand new message rev22b added and no list has"


def reference_fails_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, code: str
) -> bool:
    """Does any reference test fail once ``code`` is appended to ``module`` (a path under
    webhook/) of a copy of the code?"""
    copy = tmp_path / "webhook"
    shutil.copytree(ROOT / "webhook", copy)
    with (copy / module).open("a", encoding="utf-8") as out:
        out.write("\n\n" + code.strip() + "\n")
    monkeypatch.setattr(reference, "SOURCES", copy)
    monkeypatch.setattr(reference, "DIAGNOSIS", copy / "core" / "diagnosis.py")
    failed = False
    for test in REFERENCE_TESTS:
        try:
            test()
        except AssertionError:
            failed = True
    return failed


CONTROL = f"""
def _rev22b_control(container):
    return Finding(check="registry", subject="x", problem="{NEW}")
"""

#: (module, code): a message added as the code already writes some of its messages.
ADDED = {
    # diagnose's first line: diagnosis.py sets "{problem} (the kubelet's text suggested:
    # ...)" this way today, and it is in no list.
    "summary": (
        "core/diagnosis.py",
        f"""
def _rev22b_summary(diagnosis, cause):
    diagnosis.summary = f"{NEW} ({{cause}})"
""",
    ),
    # A fix sentence through a variable: diagnose's `fix = f"{fix}; to keep the pods on
    # nodes with a build of it: "` then `diagnosis.fixes.append(fix)`.
    "fix-through-a-variable": (
        "core/diagnosis.py",
        f"""
def _rev22b_fix(diagnosis):
    fix = "{NEW}"
    diagnosis.fixes.append(fix)
""",
    ),
    # A CLI line about a pod: cli/diagnose.py prints "pullguard diagnose: pod NS/POD not
    # found" and "pullguard diagnose: the API server answered N" this way, in no list (only
    # "pullguard: ..." lines are read).
    "cli-line": (
        "cli/audit.py",
        f"""
def _rev22b_line(pod):
    print(f"pullguard audit: pod {{pod}}: {NEW}", file=sys.stderr)
""",
    ),
}


@pytest.mark.parametrize("form", sorted(ADDED))
def test_rev22b_a_message_added_the_way_the_code_writes_some_fails_the_reference_test(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    """Seen: the reference tests fail for a new ``Finding(problem="...")`` (the control
    below), but not for a new message written as the code already writes others: a
    diagnosis's ``summary`` (diagnose's corrected first line), a fix sentence appended
    through a variable, a ``pullguard audit: ...`` /
    ``pullguard diagnose: ...`` line. Each is printed and could say anything, in no list.
    Expected: adding any printed text the reference lacks fails a test."""
    assert reference_fails_with(tmp_path / "control", monkeypatch, "core/checks.py", CONTROL)
    monkeypatch.undo()
    module, code = ADDED[form]
    assert reference_fails_with(tmp_path / form, monkeypatch, module, code), (
        f"a message added as {form} in webhook/{module} fails no reference test"
    )


#: Texts pullguard prints today (the fixed words of each), as the code writes them.
PRINTED = {
    "webhook/core/diagnosis.py": "(the kubelet's text suggested: ",
    "webhook/cli/diagnose.py": "pullguard diagnose: the API server answered ",
}


@pytest.mark.parametrize("where", sorted(PRINTED))
def test_rev22b_texts_printed_today_are_in_the_reference(where: str) -> None:
    """Seen: ``pullguard diagnose`` prints "- container "app" (IMAGE): image ... does not
    exist: ... (the kubelet's text suggested: the registry refused the credentials ...)
    [not_found, corrected]" when the live check corrects the kubelet's cause, and
    "pullguard diagnose: the API server answered 403" (also "pod NS/POD not found", "no
    cluster: ..."); docs/reference.md's "Every message" has neither.
    Expected: each is in the reference, with its cause and its fix."""
    text = PRINTED[where]
    assert text in (ROOT / where).read_text("utf-8")  # printed today
    assert text in (ROOT / "docs" / "reference.md").read_text("utf-8"), (
        f"{text!r} ({where}) is in no list of docs/reference.md"
    )
