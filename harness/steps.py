"""Named test steps, a per-test wall-clock limit that says which step hung, and the one way a
test waits: wait_for(what, predicate, timeout), with timeouts that stretch on a loaded machine.

    with steps.step("second client connects"):
        ...
    wait_for("the server to reap its child", lambda: not probes.zombies(pid), timeout=5)

The limit uses SIGALRM, so it interrupts a blocked socket call in the main thread and raises
StepTimeout naming the current step; the test fails, its teardown still runs (stopping every
program it started), and the report lists the steps that ran.

Every timeout a test passes to the harness (wait_for, LabProcess's waits, the clients' receives)
is what an idle machine needs: the harness stretches it by slowdown() (sanitizer builds, a load
average above one task a core), so a spec never multiplies timeouts itself.
"""
from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")
MAX_LOAD_FACTOR = 3.0   # a wait never stretches more than this for load alone


class StepTimeout(Exception):
    """The test ran past its wall-clock limit."""


class Steps:
    def __init__(self) -> None:
        self.done: list[tuple[str, float]] = []
        self.current: str | None = None
        self.failed: str | None = None   # the innermost step an assertion or error left
        self.started = time.monotonic()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        outer, self.current = self.current, name
        t0 = time.monotonic()
        try:
            yield
        except BaseException:
            if self.current == name:
                self.failed = self.failed or name
                self.current = outer
            raise
        if self.current == name:
            self.done.append((name, time.monotonic() - t0))
            self.current = outer

    def describe(self) -> str:
        lines = [f"  ok   {name}  ({secs:.2f}s)" for name, secs in self.done]
        if self.current or self.failed:
            lines.append(f"  FAIL {self.current or self.failed}  <- the test stopped here")
        return "\n".join(lines) if lines else "  (no named steps)"


@contextmanager
def wall_clock_limit(seconds: float, steps: Steps, stretch: float = 1.0) -> Iterator[None]:
    """Raise StepTimeout in the main thread after `seconds` x `stretch` (slowdown())."""

    def expire(signum: int, frame: object) -> None:
        where = steps.current or "(outside any named step)"
        stretched = f" (stretched to {seconds * stretch:.3g}s here)" if stretch != 1.0 else ""
        raise StepTimeout(f"the test ran past its {seconds:g}s limit{stretched}; it hung in step: {where}")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds * stretch)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def slowdown() -> float:
    """How much longer than on an idle machine a wait may take here: x3 for a sanitizer build,
    times the load average per core when the machine is busier than one runnable task a core
    (capped at MAX_LOAD_FACTOR). Waits and limits stretch with it; they never tighten."""
    factor = 3.0 if os.environ.get("SOCKLAB_SANITIZE") else 1.0
    try:
        per_core = os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        per_core = 1.0
    return factor * min(max(per_core, 1.0), MAX_LOAD_FACTOR)


def scaled(seconds: float) -> float:
    """`seconds` of an idle machine, stretched for this one (slowdown())."""
    return seconds * slowdown()


def wait_for(what: str, predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05, *,
             evidence: Callable[[], str] | None = None, fail: bool = True) -> T:
    """Poll `predicate` until it returns something truthy and return that. `timeout` is what an
    idle machine needs; the wait stretches with slowdown(). When it expires, an AssertionError says
    what it waited for, how long, and `evidence()` (e.g. a program's report); with fail=False it
    returns the predicate's last value instead, for a test whose own assertion then says more.
    Tests wait on conditions, never sleep and hope."""
    limit = scaled(timeout)
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            break
        time.sleep(interval)
    if value or not fail:
        return value
    raise AssertionError(f"timed out after {limit:.3g}s waiting for: {what}" +
                         (f"\n{evidence()}" if evidence is not None else ""))
