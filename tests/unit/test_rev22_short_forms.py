"""Outside review of issue 22 (rev22), item 7: the reference lists every message pullguard can
print. A warning's line at ``kubectl apply`` and each line of ``pullguard audit`` print a
finding's *short* form (``Finding.short``, plus the second note of ``as_advisory``), not its
``problem``: "127.0.0.1:5000 refused app:1 anonymously (the nodes' own credentials may
work)". The reference says only "{body} is a finding's short form", and
tests/unit/test_message_reference.py reads ``problem=`` alone, so these texts are in no list.
"""

from __future__ import annotations

import ast

from tests.unit import test_message_reference as ref


def short_templates_in_code() -> set[str]:
    found: set[str] = set()
    for path in sorted(ref.SOURCES.rglob("*.py")):
        tree = ast.parse(path.read_text("utf-8"))
        for scope in ref._functions(tree):
            for call in ast.walk(scope):
                if not isinstance(call, ast.Call):
                    continue
                keywords = {k.arg: k.value for k in call.keywords}
                values: list[ast.expr] = []
                if "short" in keywords:
                    value = keywords["short"]
                    values = (
                        ref._assigned(scope, value.id) if isinstance(value, ast.Name) else [value]
                    )
                elif getattr(call.func, "attr", "") == "as_advisory" and len(call.args) > 1:
                    values = [call.args[1]]
                for value in values:
                    text = ref.render(value)
                    if text is not None and text.strip("{…} ()"):
                        found.add(text)
    return found


def test_every_short_form_a_warning_prints_is_in_the_reference() -> None:
    code = short_templates_in_code()
    assert len(code) > 20  # the extraction finds them at all
    reference = ref.templates_in_reference()
    text = ref.REFERENCE.read_text("utf-8")
    missing = sorted(t for t in code if t not in reference and t not in text)
    assert not missing, f"{len(missing)} short forms the reference lacks:\n" + "\n".join(missing)
