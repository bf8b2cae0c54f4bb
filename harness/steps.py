"""Named test steps and a per-test wall-clock limit that says which step hung.

    with steps.step("second client connects"):
        ...

The limit uses SIGALRM, so it interrupts a blocked socket call in the main thread and raises
StepTimeout naming the current step; the test fails, its teardown still runs (stopping every
program it started), and the report lists the steps that ran.
"""
from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")


def slowdown() -> float:
    """Sanitized builds run several times slower: stretch limits (never tighten them)."""
    return 3.0 if os.environ.get("SOCKLAB_SANITIZE") else 1.0


class StepTimeout(Exception):
    """The test ran past its wall-clock limit."""


class Steps:
    def __init__(self) -> None:
        self.done: list[tuple[str, float]] = []
        self.current: str | None = None
        self.started = time.monotonic()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        outer, self.current = self.current, name
        t0 = time.monotonic()
        try:
            yield
        finally:
            if self.current == name:
                self.done.append((name, time.monotonic() - t0))
                self.current = outer

    def describe(self) -> str:
        lines = [f"  ok   {name}  ({secs:.2f}s)" for name, secs in self.done]
        if self.current:
            lines.append(f"  FAIL {self.current}  <- the test stopped here")
        return "\n".join(lines) if lines else "  (no named steps)"


@contextmanager
def wall_clock_limit(seconds: float, steps: Steps) -> Iterator[None]:
    """Raise StepTimeout in the main thread after `seconds`."""

    def expire(signum: int, frame: object) -> None:
        where = steps.current or "(outside any named step)"
        raise StepTimeout(f"the test ran past its {seconds:g}s limit; it hung in step: {where}")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def wait_for(what: str, predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Poll `predicate` until it returns something truthy and return that; after `timeout`
    seconds (stretched by slowdown() under sanitizers, so callers never scale it themselves) fail
    with an AssertionError that names `what`. Tests wait on conditions, never sleep."""
    timeout *= slowdown()
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for: {what}")
        time.sleep(interval)
