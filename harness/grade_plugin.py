"""pytest plugin of the grader: streams one JSON line per test to $SOCKLAB_GRADE_OUT.

Loaded with `-p harness.grade_plugin` by grade.py in the pytest run of one lab. Lines:
  {"event": "collected", "id", "doc", "markers"}     (every collected test, before any runs)
  {"event": "start", "id"}                           (flushed at once: a hang is still attributed)
  {"event": "result", "id", "outcome", "duration", "message", "longrepr", "sections",
   "credit", "snapshot", "hint"}                    (hint: the test's @pytest.mark.hint text, if any)
A test may record partial credit (a fraction 0..1 of its points) with pytest's own
`record_property("credit", fraction)`. On failure the plugin snapshots, from /proc, every lab
program the test started that is still running (fds, threads, children, zombies, TCP states):
that is evidence taken before teardown stops them.
"""
from __future__ import annotations

import json
import os
from typing import Any, Iterator

import pytest

from . import probes

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
    if _file is None:
        _file = open(_OUT, "a", buffering=1)
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
    _emit({"event": "start", "id": _id(nodeid)})
    _partial[nodeid] = {"outcome": "passed", "duration": 0.0, "message": "", "longrepr": "",
                        "sections": {}, "credit": None, "snapshot": ""}


def snapshot(proc) -> str:
    """What /proc says about a running lab program: the evidence a failure report shows."""
    pid = proc.pid
    if not probes.alive(pid):
        return f"{proc.name} (pid {pid}): not running"
    try:
        fds = probes.fd_targets(pid)
        kinds: dict[str, int] = {}
        for t in fds:
            k = t.split(":")[0] if ":" in t else "file"
            kinds[k] = kinds.get(k, 0) + 1
        lines = [f"{proc.name} (pid {pid}) state {probes.state(pid)}: {len(fds)} fds "
                 f"({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))}), "
                 f"{probes.thread_count(pid)} threads, {len(probes.children(pid))} children, "
                 f"{len(probes.zombies(pid))} zombies, VmRSS {probes.rss_kib(pid)} KiB"]
        if proc.ready is not None and proc.ready.proto == "tcp":
            states = probes.tcp_states(proc.ready.port)
            lines.append(f"  TCP sockets on port {proc.ready.port}: " +
                         (", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none"))
        return "\n".join(lines)
    except (ProcessLookupError, KeyError) as e:
        return f"{proc.name} (pid {pid}): gone while looking ({e})"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("hint")
    if marker is not None and marker.args:  # the test's own hint, for hints.explain
        _partial.setdefault(item.nodeid, {})["hint"] = str(marker.args[0])
    if report.failed and report.when in ("setup", "call"):
        from .pytest_plugin import _LAB  # the programs this test started
        started = item.stash.get(_LAB, None)
        if started is not None and started.started:
            _partial.setdefault(item.nodeid, {})["snapshot"] = "\n".join(snapshot(p) for p in started.started)


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
        rec["message"] = crash.message if crash is not None else str(report.longrepr).strip().splitlines()[-1:][0] if str(report.longrepr).strip() else ""
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
