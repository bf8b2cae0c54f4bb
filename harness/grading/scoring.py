"""From one lab's pytest runs (runner.py) to scored tests: points, visibility, pass / fail /
flaky over repeated runs, partial credit, and the hint of each failure (hints.py)."""
from __future__ import annotations

from pathlib import Path

from . import hints
from .. import manifest
from ..rlimits import Limits
from .points import Points, func_and_case
from .results import FAILED, FLAKY, PASSED, SKIPPED, LabResult, Run, TestResult
from .runner import PROBE_SPEC, recorded_runs, run_lab_once
from .selection import hidden_files, in_hidden


def _combine(test: TestResult, runs: list[tuple[dict | None, str]], flaky_credit: bool) -> dict | None:
    """Set status/score of a test from its K runs; the record of the first failing run (for hints)."""
    outcomes = []
    failing = None
    for rec, note in runs:
        if rec is None:  # started but never finished (the run was stopped), or never started
            outcome = FAILED
            rec = {"outcome": FAILED, "message": note or "the test did not run to the end",
                   "longrepr": note, "sections": {}}
        outcome = rec["outcome"]
        test.runs.append(Run(outcome, float(rec.get("duration", 0.0)), rec.get("credit")))
        outcomes.append(outcome)
        if outcome == FAILED and failing is None:
            failing = rec
        if outcome == SKIPPED and failing is None:
            failing = rec
    if all(o == SKIPPED for o in outcomes):
        test.status, test.score, test.max_score = SKIPPED, 0.0, 0.0
        test.message = (failing or {}).get("message", "")
        return None
    passed = sum(o == PASSED for o in outcomes)
    ran = sum(o != SKIPPED for o in outcomes)
    if passed == ran:
        test.status, test.score = PASSED, test.max_score
        return None
    if passed == 0:
        test.status = FAILED
        credits = [r.credit for r in test.runs if r.outcome == FAILED]
        test.score = round(test.max_score * min(c or 0.0 for c in credits), 4) if credits else 0.0
    else:
        test.status = FLAKY
        test.score = round(test.max_score * passed / ran, 4) if flaky_credit else 0.0
    return failing


def grade_lab(lab: manifest.Lab, bin_dir: Path, lim: Limits | None, pts: Points, *, hidden: Path | None,
              hidden_visibility: str, keyword: str | None, repeat: int, timeout: float,
              flaky_credit: bool, skip_slow: bool = False, first_failure: bool = False,
              progress=None, records: Path | None = None) -> LabResult:
    """Run and score one lab; with `records`, score the runs a CTest run recorded there instead."""
    result = LabResult(lab.id, lab.title)
    files = [lab.spec] if lab.spec.exists() else []
    hfiles = hidden_files(hidden, lab.id)
    if pts.probes_of(lab.id):
        files.append(PROBE_SPEC)
    files += hfiles
    if not files:
        result.error = f"lab {lab.id} has no spec ({lab.spec.name})"
        return result
    order: list[str] = []
    docs: dict[str, str] = {}
    paths: dict[str, str] = {}
    per_run: list[dict[str, tuple[dict | None, str]]] = []
    notes = []
    for r in range(repeat):
        if progress:
            progress(f"lab {lab.id}" + (f" run {r + 1}/{repeat}" if repeat > 1 else ""))
        if records is not None:
            runs = recorded_runs(records, lab, files)
        else:
            runs = [run_lab_once(lab, files, bin_dir, lim, keyword=keyword, timeout=timeout,
                                 skip_slow=skip_slow, first_failure=first_failure)]
        got: dict[str, tuple[dict | None, str]] = {}
        for recs, note in runs:
            if note:
                notes.append(note)
            started = None
            for rec in recs:
                if rec["event"] == "collected":
                    if rec["id"] not in docs:
                        order.append(rec["id"])
                        docs[rec["id"]] = rec.get("doc", "")
                        paths[rec["id"]] = rec.get("path", "")
                elif rec["event"] == "start":
                    started = rec["id"]
                elif rec["event"] == "result":
                    got[rec["id"]] = (rec, "")
                    started = None
            if started is not None:
                first = note.splitlines()[0] if note else ""
                got[started] = (None, f"this test hung and the lab's run was stopped: {first}")
        per_run.append(got)
    result.error = "\n".join(dict.fromkeys(notes))
    # Count the cases of every function (for splitting a parametrized test's points).
    siblings: dict[str, int] = {}
    for nid in order:
        siblings[nid.split("[")[0]] = siblings.get(nid.split("[")[0], 0) + 1
    hidden_pts = Points.load(hidden / "points.toml") if hidden else Points()
    n = 0
    for nid in order:
        if all(nid in run and run[nid][0] is not None and run[nid][0].get("outcome") == SKIPPED
               and "empty parameter set" in (run[nid][0].get("message") or "") for run in per_run):
            continue  # a behaviour probe this lab does not use
        is_hidden = in_hidden(paths.get(nid) or nid.split("::")[0], hidden)
        table = hidden_pts if is_hidden else pts
        entry = table.entry(lab.id, nid, siblings[nid.split("[")[0]])
        n += 1
        func, case = func_and_case(nid)
        test = TestResult(id=nid, lab=lab.id, name=nid.split("::")[-1], number=f"{int(lab.id)}.{n}",
                          hidden=is_hidden, doc=docs.get(nid, ""))
        if entry is None:
            test.max_score = 1.0 if is_hidden else 0.0
            if not is_hidden:
                test.tags.append("no-points")
        else:
            test.max_score = entry.points
            test.tags = list(entry.tags)
        test.visibility = (entry.visibility if entry and entry.visibility else
                           hidden_visibility if is_hidden else "visible")
        if is_hidden and "hidden" not in test.tags:
            test.tags.append("hidden")
        not_run = (None, "the test did not run (the lab's run ended before it)")
        runs = [run.get(nid, not_run) for run in per_run]
        failing = _combine(test, runs, flaky_credit)
        if failing is not None:
            hints.explain(test, failing)
        result.tests.append(test)
    return result
