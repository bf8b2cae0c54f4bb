"""The grader on the reference programs: full points on every available lab, and the reports of
that run (Gradescope, JUnit, Markdown) valid and complete.

Under CTest it scores the records of this run's own lab and probe entries (SOCKLAB_RECORDS, set
with NEEDS_RECORDS in tests/CMakeLists.txt: the entry runs after them), with the grader's
`--records`: the same scoring, points, hints and reports as a grading run, without running every
spec a second time. Run by hand (`pytest tests/harness/test_grade_reference.py`), it grades the
reference build for real, every lab, under the grader's limits. The grader's own runs (limits,
sandbox, builds) are tested end to end by test_grade.py, test_handout.py, test_limits.py and
test_python_labs.py."""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from grading_tools import every_test, grade, skipped_for_root
from harness import manifest
from harness.programs import bin_dir
from harness.grading.reports import validate_gradescope

AVAILABLE = [l.id for l in manifest.load() if l.available]
RECORDS = os.environ.get("SOCKLAB_RECORDS")


def reference_bin() -> Path:
    return bin_dir()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The one grading of the reference build (slow tests left out): of this CTest run's records,
    or a real one."""
    out = tmp_path_factory.mktemp("reference")
    records = ["--records", RECORDS] if RECORDS else []
    result, proc = grade(reference_bin(), out / "result.json", "--labs", ",".join(AVAILABLE), *records,
                         "--gradescope", str(out / "results.json"), "--junit", str(out / "junit.xml"),
                         "--markdown", str(out / "summary.md"), "--skip-slow", timeout=1800)
    return out, result, proc


@pytest.mark.limit(1800)
def test_reference_scores_full_points_on_every_available_lab(reference):
    out, result, proc = reference
    assert [l["id"] for l in result["labs"]] == AVAILABLE
    bad = [f"{t['id']}: {t['status']} {t['hint'] or t['message']}" for t in every_test(result)
           if t["status"] != "passed" and not skipped_for_root(t)]
    assert not bad, "\n".join(bad) + "\n" + proc.stdout[-4000:]
    assert result["score"] == result["max_score"] > 0
    for lab in result["labs"]:
        assert lab["max_score"] > 0 and lab["score"] == lab["max_score"], lab["id"]
    assert f"TOTAL {result['score']:g}/{result['max_score']:g}" in proc.stdout


def test_results_json_has_the_documented_gradescope_fields(reference):
    out, result, _ = reference
    gs = json.loads((out / "results.json").read_text())
    assert validate_gradescope(gs) == []
    assert len(gs["tests"]) == len(every_test(result))
    numbers = [t["number"] for t in gs["tests"]]
    assert len(set(numbers)) == len(numbers)
    for t in gs["tests"]:
        assert {"number", "name", "score", "max_score", "status", "output", "visibility", "tags"} <= set(t)
        assert t["status"] == "passed" and t["visibility"] == "visible"   # a skipped test (max 0) too
    assert sum(t["score"] for t in gs["tests"]) == pytest.approx(result["score"])


def test_junit_is_well_formed_with_one_suite_per_lab(reference):
    out, result, _ = reference
    root = ET.parse(out / "junit.xml").getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert [s.get("name").split()[0] for s in suites] == [f"lab{l}" for l in AVAILABLE]
    assert int(root.get("tests")) == len(every_test(result)) and root.get("failures") == "0"
    assert (out / "summary.md").read_text().startswith("## socklab:")
