"""pytest glue: fixtures that start lab programs, a per-test wall-clock limit, and failure
reports that show the steps that ran and what every started program printed.

Fixtures:
  steps     Steps: `with steps.step("..."):` names what the test is doing
  lab       start(name, *args) -> LabProcess; every program started is stopped after the test
Markers:
  limit(seconds)   the test's wall-clock limit (default 60 s; stretched by steps.slowdown())
  slow             long tests (e.g. waiting out TIME_WAIT); CTest runs them as their own entry
  tsan             this lab's tests also run under the tsan preset
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Iterator

import pytest

from .process import LabProcess, become_subreaper, stop_all
from .steps import Steps, slowdown, wall_clock_limit

DEFAULT_LIMIT = 60.0


_durations: list[tuple[str, float]] = []
_session_start = time.monotonic()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "limit(seconds): wall-clock limit of one test")
    config.addinivalue_line("markers", "slow: a long test; CTest runs slow tests as their own entry")
    config.addinivalue_line("markers", "tsan: the lab's tests also run under the tsan preset")
    config.addinivalue_line("markers", "hint(text, step=None): the grader's hint when this test's own "
                            "behaviour fails, in the student's terms; with step, only when the test "
                            "stopped in a step whose name contains it")
    become_subreaper()



def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """SOCKLAB_SHARD=i/n: CTest runs a lab spec as n entries side by side (SHARDS n in the lab's
    CMakeLists.txt); this one keeps every n-th test of tests/labs/ from the i-th on. Without it
    (pytest by hand, the grader, `harness check`) every test runs."""
    shard = os.environ.get("SOCKLAB_SHARD")
    if not shard:
        return
    i, n = map(int, shard.split("/"))
    lab_items = [item for item in items if item.path.parent.name == "labs"]
    dropped = set(lab_items) - set(lab_items[i - 1::n])
    if dropped:
        config.hook.pytest_deselected(items=[item for item in items if item in dropped])
        items[:] = [item for item in items if item not in dropped]

def pytest_sessionfinish(session: pytest.Session) -> None:
    stop_all()
    record_durations()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Collect each test's time (setup + call + teardown) for record_durations()."""
    if _durations and _durations[-1][0] == report.nodeid:
        _durations[-1] = (report.nodeid, _durations[-1][1] + report.duration)
    else:
        _durations.append((report.nodeid, report.duration))


def record_durations() -> None:
    """With $SOCKLAB_DURATIONS (a folder; CTest sets it), write this run's test times there as
    one JSON file named after $SOCKLAB_ENTRY: tests/slowest.py prints the slowest after the run."""
    folder, entry = os.environ.get("SOCKLAB_DURATIONS"), os.environ.get("SOCKLAB_ENTRY")
    if not folder or not entry:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    record = {"entry": entry, "seconds": round(time.monotonic() - _session_start, 2),
              "tests": [[nodeid, round(secs, 2)] for nodeid, secs in _durations]}
    (Path(folder) / f"{entry}.json").write_text(json.dumps(record))


class Lab:
    """Starts lab programs for one test and remembers them, so teardown stops every one."""

    def __init__(self) -> None:
        self.started: list[LabProcess] = []

    def start(self, name: str, *args: str | int, **kw) -> LabProcess:
        proc = LabProcess.start(name, *args, **kw)
        self.started.append(proc)
        return proc

    def server(self, name: str, *args: str | int, **kw) -> LabProcess:
        """Start a server and wait for its ready line (proc.ready has host and port)."""
        proc = self.start(name, *args, **kw)
        proc.wait_ready(timeout=10)
        return proc

    def run(self, name: str, *args: str | int, input: bytes | str | None = None,
            timeout: float = 10.0, **kw) -> LabProcess:
        """Run a program to completion (stdin gets `input`, then EOF); proc.popen.returncode is set."""
        proc = self.start(name, *args, **kw)
        if input is not None:
            data = input.encode() if isinstance(input, str) else input
            try:
                assert proc.popen.stdin is not None
                proc.popen.stdin.write(data)
                proc.popen.stdin.flush()
            except BrokenPipeError:
                pass
        proc.close_stdin()
        proc.wait_exit(timeout)
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            proc.stop()


@pytest.fixture
def steps() -> Steps:
    return Steps()


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    started = Lab()
    request.node.stash[_LAB] = started
    try:
        yield started
    finally:
        started.stop_all()


_LAB = pytest.StashKey[Lab]()
_STEPS = pytest.StashKey[Steps]()


def programs_started(item: pytest.Item) -> list[LabProcess]:
    """The lab programs a test started through its `lab` fixture (for evidence at a failure)."""
    started = item.stash.get(_LAB, None)
    return list(started.started) if started is not None else []


@pytest.fixture(autouse=True)
def per_test_limit(request: pytest.FixtureRequest, steps: Steps) -> Iterator[None]:
    marker = request.node.get_closest_marker("limit")
    seconds = marker.args[0] if marker else DEFAULT_LIMIT
    request.node.stash[_STEPS] = steps
    with wall_clock_limit(seconds, steps, slowdown()):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    steps = item.stash.get(_STEPS, None)
    if steps is not None:
        report.sections.append(("steps that ran", steps.describe()))
    started = item.stash.get(_LAB, None)
    if started is not None and started.started:
        reports = "\n".join(p.report() for p in started.started)
        report.sections.append(("programs started by the test", reports))
