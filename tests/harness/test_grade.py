"""The grader's options and bookkeeping: the Gradescope validator, points for every test,
hidden tests marked as such, flaky tests reported as flaky, one test run again by name.
(Full points on every lab and the reports of that run: test_grade_reference.py.)"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from grading_tools import PYTHON, every_test, grade
from harness.grading.points import Points
from harness.programs import REPO, bin_dir
from harness.grading.reports import validate_gradescope

import subprocess


def reference_bin() -> Path:
    return bin_dir()


def test_validator_rejects_wrong_fields():
    assert validate_gradescope({"tests": [{"status": "ok", "number": 1, "visibility": "later", "bogus": 1}]})
    assert validate_gradescope({"output": "x"}) == ["either score or tests is required"]


def test_every_collected_test_has_points():
    proc = subprocess.run([PYTHON, "-m", "harness", "points", "--check"], cwd=REPO, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert proc.returncode == 0, proc.stdout


def test_points_split_over_cases_and_explicit_cases():
    pts = Points({"lab": {"02": {"test_x": 3, "test_y": {"points": 4, "tags": ["a"]}, "test_y[b]": 1}}})
    assert pts.entry("02", "f.py::test_x[a]", siblings=3).points == 1
    assert pts.entry("02", "f.py::test_x", siblings=1).points == 3
    assert pts.entry("02", "f.py::test_y[b]", siblings=3).points == 1
    assert pts.entry("02", "f.py::test_y[c]", siblings=3).points == 1.5   # (4 - 1) over the 2 other cases
    assert pts.entry("02", "f.py::test_z") is None
    assert pts.check({"02": ["f.py::test_x[a]", "f.py::test_w"]}) != []


HIDDEN_SPEC = '''
import os
from pathlib import Path

def test_hidden_help_works(lab):
    proc = lab.run("udp_send", "--help")
    assert proc.popen.returncode == 0

def test_hidden_flaky_every_other_run():
    counter = Path(os.environ["HGR_COUNTER"])
    n = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(n + 1))
    assert n % 2 == 0, "fails on every second run"
'''


@pytest.mark.limit(300)
def test_hidden_tests_repeat_and_one_test_by_name(tmp_path):
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "test_02_instructor.py").write_text(HIDDEN_SPEC)
    (hidden / "points.toml").write_text("[lab.02]\n"
                                        "test_hidden_help_works = 2\n"
                                        "test_hidden_flaky_every_other_run = 1\n")
    os.environ["HGR_COUNTER"] = str(tmp_path / "counter")
    try:
        result, proc = grade(reference_bin(), tmp_path / "r.json", "--labs", "02", "--hidden", str(hidden),
                             "--repeat", "2", "-k", "hidden or test_sigterm_exits_zero",
                             "--gradescope", str(tmp_path / "gs.json"))
    finally:
        del os.environ["HGR_COUNTER"]
    tests = {t["name"]: t for t in every_test(result)}
    assert set(tests) == {"test_hidden_help_works",
                          "test_hidden_flaky_every_other_run",
                          "test_sigterm_exits_zero"}, proc.stdout
    h = tests["test_hidden_help_works"]
    assert (h["status"], h["hidden"], h["visibility"], h["max_score"], h["score"]) == \
        ("passed", True, "after_due_date", 2, 2)
    assert [r["outcome"] for r in h["runs"]] == ["passed", "passed"]
    f = tests["test_hidden_flaky_every_other_run"]
    assert (f["status"], f["score"], f["max_score"]) == ("flaky", 0, 1), proc.stdout
    assert sorted(r["outcome"] for r in f["runs"]) == ["failed", "passed"]
    assert tests["test_sigterm_exits_zero"]["visibility"] == "visible"
    assert "FLAKY" in proc.stdout
    gs = json.loads((tmp_path / "gs.json").read_text())
    assert validate_gradescope(gs) == []
    flaky = [t for t in gs["tests"] if "flaky" in t["tags"]]
    assert len(flaky) == 1 and flaky[0]["status"] == "failed" and "passed 1 of 2 runs" in flaky[0]["output"]


def test_records_are_scored_as_recorded_and_a_lab_without_records_fails(tmp_path):
    """`grade --records DIR` (how the suite's self-test scores the reference) takes each lab's tests
    from the records its CTest entries left: a passed test scores, one that started and never
    finished fails as hung, another file's tests do not count, and a lab with no record fails."""
    spec = "tests/labs/test_01_socket_basics.py::"
    passed, hung = (spec + "test_prints_domain_type_protocol_as_the_kernel_reports",
                    spec + "test_fds_are_small_ints_the_kernel_lists_as_sockets")
    lines = [{"event": "collected", "id": passed}, {"event": "collected", "id": hung},
             {"event": "collected", "id": "tests/labs/test_19_servers.py::test_other"},
             {"event": "start", "id": passed},
             {"event": "result", "id": passed, "outcome": "passed", "duration": 0.1},
             {"event": "start", "id": hung}]
    records = tmp_path / "records"
    records.mkdir()
    (records / "lab01-lab01_socket_basics.jsonl").write_text("".join(json.dumps(l) + "\n" for l in lines))
    result, proc = grade(bin_dir(), tmp_path / "r.json", "--labs", "01,02", "--records", str(records),
                         timeout=60)
    lab01, lab02 = result["labs"]
    assert {t["id"]: t["status"] for t in lab01["tests"]} == {passed: "passed", hung: "failed"}, proc.stdout
    assert lab01["score"] == 2 and lab01["max_score"] == 4, proc.stdout
    assert "no records of lab 02" in lab02["error"] and lab02["score"] == 0, proc.stdout
