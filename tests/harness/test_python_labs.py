"""The output contract is enough: Python programs of labs 04 and 07 written from those READMEs'
Output sections and README.md's contract alone (not from the C++ or the specs),
tests/harness/fixtures/python_labs, grade full points. Every later lab's contract must be as
complete."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from grading_tools import every_test, grade

PROGRAMS = Path(__file__).resolve().parent / "fixtures" / "python_labs"


@pytest.fixture(scope="module")
def graded(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("python_labs")

    def one(lab: str) -> tuple[str, dict]:
        result, proc = grade(PROGRAMS, out / f"{lab}.json", "--labs", lab, "--skip-slow")
        result["console"] = proc.stdout
        return lab, result

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, ["04", "07"]))


@pytest.mark.limit(600)
@pytest.mark.parametrize("lab", ["04", "07"])
def test_programs_written_from_the_readme_grade_full(graded, lab):
    result = graded[lab]
    failing = [f"{t['name']}: {t['hint'] or t['actual']}"
               for t in every_test(result) if t["status"] != "passed"]
    assert result["max_score"] > 0 and result["score"] == result["max_score"], (
        f"lab {lab}: {result['score']}/{result['max_score']}: the README's contract is not enough for\n"
        + "\n".join(failing) + "\n" + result["console"][-3000:])
