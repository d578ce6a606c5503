"""A user's clone has no ``../shared``: nothing the test command or the benchmarks run may
read from it. (CI's ``.ci/run`` alone may, to find the control plane binaries.)"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: ``../shared`` written as a path, or built as ``<something>.parent / "shared"``.
OUTSIDE = re.compile(r"\.\./shared|parent\s*/\s*[\"']shared[\"']")


def test_no_test_or_benchmark_reads_outside_the_repository() -> None:
    offences = []
    for folder in ("tests", "benchmarks", "webhook"):
        for source in sorted((ROOT / folder).rglob("*.py")):
            for number, line in enumerate(source.read_text().splitlines(), 1):
                if OUTSIDE.search(line) and source != Path(__file__).resolve():
                    offences.append(f"{source.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offences == []


def test_the_guard_catches_both_spellings() -> None:
    assert OUTSIDE.search('REVIEWS = ROOT.parent / "shared" / "admission-reviews"')
    assert OUTSIDE.search("see ../shared/kube/assets")
    assert not OUTSIDE.search('REVIEWS = ROOT / "tests" / "fixtures" / "admission-reviews"')


def test_captured_reviews_are_fixtures_of_the_repository() -> None:
    reviews = sorted((ROOT / "tests" / "fixtures" / "admission-reviews").glob("*.json"))
    assert len(reviews) >= 14
