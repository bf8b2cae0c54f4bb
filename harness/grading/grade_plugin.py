"""pytest plugin of the grader: streams one JSON line per test to $SOCKLAB_GRADE_OUT.

Loaded with `-p harness.grading.grade_plugin` by runner.py in the pytest run of one lab, and by the
suite's CTest entries of the lab specs, whose records the reference self-test scores
(`harness grade --records`, runner.recorded_runs). Lines:
  {"event": "collected", "id", "doc", "markers"}     (every collected test, before any runs)
  {"event": "start", "id"}                           (flushed at once: a hang is still attributed)
  {"event": "result", "id", "outcome", "duration", "message", "longrepr", "sections",
   "credit", "snapshot", "hint", "programs", "misses"}
A test may record partial credit (a fraction 0..1 of its points) with pytest's own
`record_property("credit", fraction)`. On failure the plugin snapshots, from /proc, every lab
program the test started that is still running (fds, threads, children, zombies, TCP states):
that is evidence taken before teardown stops them. It also records, for hints.py, the test's
own hint (its `@pytest.mark.hint`), each started program's name, exit status, whether it printed
its ready line and its stderr lines, and the output-contract lines the test looked for in vain
(harness.output.misses()).
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterator

import pytest

from .. import output, probes
from ..pytest_plugin import programs_started

_OUT = os.environ.get("SOCKLAB_GRADE_OUT")
_file = None
_partial: dict[str, dict[str, Any]] = {}
_ids: dict[str, str] = {}   # pytest node id -> reported id (files outside the rootdir keep their name)


def _id(nodeid: str) -> str:
    return _ids.get(nodeid, nodeid)


def _emit(obj: dict[str, Any]) -> None:
    global _file
    if not _OUT:
        return
    if _file is None:   # one pytest run per file: the runner's temporary one, or a CTest entry's record
        os.makedirs(os.path.dirname(_OUT) or ".", exist_ok=True)
        _file = open(_OUT, "w", buffering=1)
    _file.write(json.dumps(obj) + "\n")
    _file.flush()


def _doc(item: pytest.Item) -> str:
    fn = getattr(item, "function", None)
    text = (fn.__doc__ or "").strip() if fn else ""
    return text.splitlines()[0] if text else ""


def pytest_collection_finish(session: pytest.Session) -> None:
    for item in session.items:
        if item.nodeid.startswith("::"):  # a file outside the rootdir (e.g. instructors' hidden tests)
            _ids[item.nodeid] = f"{item.path.parent.name}/{item.path.name}{item.nodeid}"
        _emit({"event": "collected", "id": _id(item.nodeid), "path": str(item.path), "doc": _doc(item),
               "markers": sorted({m.name for m in item.iter_markers()})})


def pytest_runtest_logstart(nodeid: str, location: object) -> None:
    output.clear_misses()
    _emit({"event": "start", "id": _id(nodeid)})
    _partial[nodeid] = {"outcome": "passed", "duration": 0.0, "message": "", "longrepr": "",
                        "sections": {}, "credit": None, "snapshot": ""}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.when in ("setup", "call"):
        rec = _partial.setdefault(item.nodeid, {})
        started = programs_started(item)
        if started:
            rec["snapshot"] = "\n".join(probes.snapshot(p) for p in started)
        marker = item.get_closest_marker("hint")
        rec["hint"] = str(marker.args[0]) if marker and marker.args else ""
        rec["hint_step"] = str(marker.kwargs.get("step") or "") if marker else ""
        rec["programs"] = [_program(p) for p in started]
        rec["misses"] = [{"lab": line.lab, "program": line.program, "name": line.name, "stream": line.stream,
                          "template": line.template, "example": line.example, "where": line.where,
                          "pattern": line.pattern.pattern, "text": text}
                         for line, text in output.misses()]


def _program(proc) -> dict[str, Any]:
    """What hints.py needs of one started program: its name, status (None: running, < 0: killed by
    that signal), whether it printed its ready line, and its stderr (the [ENAME] error lines)."""
    proc.popen.poll()
    return {"name": proc.name, "status": proc.popen.returncode, "ready": proc.ready is not None,
            "stderr": proc.stderr[-4000:], "stdout": proc.stdout[-4000:]}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    rec = _partial.setdefault(report.nodeid, {"outcome": "passed", "duration": 0.0, "message": "",
                                              "longrepr": "", "sections": {}, "credit": None, "snapshot": ""})
    rec["duration"] += report.duration
    for name, value in report.user_properties:
        if name == "credit":
            rec["credit"] = float(value)
    if report.failed and rec["outcome"] != "failed":
        rec["outcome"] = "failed"
        rec["phase"] = report.when
        crash = getattr(report.longrepr, "reprcrash", None)
        longrepr = str(report.longrepr).strip()
        last_line = longrepr.splitlines()[-1:][0] if longrepr else ""
        rec["message"] = crash.message if crash is not None else last_line
        rec["longrepr"] = str(report.longrepr)[-12000:]
        rec["sections"] = {k: v[-8000:] for k, v in report.sections}
    elif report.skipped and rec["outcome"] == "passed":
        rec["outcome"] = "skipped"
        lr = report.longrepr
        rec["message"] = lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)


def pytest_runtest_logfinish(nodeid: str, location: object) -> None:
    rec = _partial.pop(nodeid, None)
    if rec is not None:
        _emit({"event": "result", "id": _id(nodeid), **rec})
