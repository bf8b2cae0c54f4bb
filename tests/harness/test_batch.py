"""Batch regrades: the previous total and the change are reported, and a grading that failed (here:
stopped by the batch's time limit) never replaces an earlier good result."""
from __future__ import annotations

import csv
import json
import subprocess

import pytest

from grading_tools import PYTHON
from harness.programs import REPO, bin_dir


def batch(subs, out, *args):
    cmd = [PYTHON, "-m", "harness", "batch", str(subs), "--out", str(out), "--labs", "01", *args]
    return subprocess.run(cmd,
                          cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)


@pytest.mark.limit(300)
def test_regrade_shows_change_and_keeps_a_good_result_when_grading_fails(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "ref").symlink_to(bin_dir())
    out = tmp_path / "out"
    first = batch(subs, out)
    assert first.returncode == 0, first.stdout
    row = next(csv.DictReader(open(out / "grades.csv")))
    assert (row["previous"], row["change"]) == ("", "") and float(row["total"]) == float(row["max"]) > 0
    good = json.loads((out / "ref.json").read_text())

    second = batch(subs, out, "--timeout", "0.2")   # the grading is stopped: the grader's failure
    assert second.returncode == 0, second.stdout
    row = next(csv.DictReader(open(out / "grades.csv")))
    assert row["total"] == f"{good['score']:g}" and row["previous"] == row["total"] and row["change"] == "+0"
    assert json.loads((out / "ref.json").read_text())["score"] == good["score"]
    failed = json.loads((out / "ref.failed.json").read_text())
    assert "did not finish" in failed["error"]
