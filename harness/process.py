"""LabProcess: run one lab program the way a test needs it, and always stop all of it.

The program starts in a new session (its own process group), with pipes on stdin, stdout and
stderr. Reader threads collect its output line by line, so a test can wait for the ready line,
expect a line, or read everything it printed. stop() ends the whole group: SIGTERM, a grace
period, then SIGKILL to the group and to every descendant found in /proc, including ones that
left the group with setsid() (this process is a child subreaper, so orphans come back to it).
Every timeout is an idle machine's; the waits stretch it by steps.slowdown().
"""
from __future__ import annotations

import ctypes
import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Sequence

from . import probes, rlimits
from .output import Line, missed
from .programs import program
from .ready import Ready, parse_ready
from .steps import scaled

_PR_SET_CHILD_SUBREAPER = 36
_live: set["LabProcess"] = set()
_live_lock = threading.Lock()


class HarnessError(AssertionError):
    """A lab program did not do what the test waited for; the message says what and shows its output."""


def become_subreaper() -> None:
    """Orphaned descendants of our programs are re-parented to us, so none escapes stop()."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _tail(text: str, lines: int = 30) -> str:
    rows = text.rstrip("\n").splitlines()
    shown = rows[-lines:]
    if not rows:
        return "  (nothing)"
    return ("  ...\n" if len(rows) > lines else "") + "\n".join("  | " + r for r in shown)


class LabProcess:
    def __init__(self, argv: Sequence[str | os.PathLike[str]], *, env: dict[str, str] | None = None,
                 preexec: Callable[[], None] | None = None, cwd: str | Path | None = None) -> None:
        self.argv = [os.fspath(a) for a in argv]
        self.name = Path(self.argv[0]).name
        self._lines: "queue.Queue[str | None]" = queue.Queue()
        self._unread: list[str] = []   # lines wait_ready() passed over, still to be read
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        self.ready: Ready | None = None
        self.known_pids: set[int] = set()
        self.popen = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, preexec_fn=rlimits.wrap_preexec(preexec), env=env, cwd=cwd)
        self.pid = self.popen.pid
        self.known_pids.add(self.pid)
        with _live_lock:
            _live.add(self)
        self._readers = [
            threading.Thread(target=self._pump, args=(self.popen.stdout, self._stdout, True), daemon=True),
            threading.Thread(target=self._pump, args=(self.popen.stderr, self._stderr, False), daemon=True),
        ]
        for t in self._readers:
            t.start()

    @classmethod
    def start(cls, name: str, *args: str | int, **kw) -> "LabProcess":
        """Start the built lab program `name` with arguments."""
        return cls([program(name), *map(str, args)], **kw)

    def _pump(self, stream, sink: list[str], to_queue: bool) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            sink.append(line)
            if to_queue:
                self._lines.put(line)
        if to_queue:
            self._lines.put(None)  # EOF marker

    # ---- what it printed ----
    @property
    def stdout(self) -> str:
        return "\n".join(self._stdout)

    @property
    def stderr(self) -> str:
        return "\n".join(self._stderr)

    def report(self) -> str:
        """Command line, exit status, stdout and stderr: what a failing test shows."""
        rc = self.popen.poll()
        if rc is None:
            status = "still running"
        elif rc >= 0:
            status = f"exited with {rc}"
        else:
            status = f"killed by signal {-rc} ({signal.Signals(-rc).name})"
        return (f"$ {' '.join(self.argv)}\n  [{status}]\n  stdout:\n{_tail(self.stdout)}\n"
                f"  stderr:\n{_tail(self.stderr)}")

    def _drain(self, timeout: float = 2.0) -> None:
        """Once it has ended, let the reader threads take in what it wrote last: stdout and stderr
        are read by separate threads, so stderr's final lines can still be in the pipe at stdout's EOF."""
        for t in self._readers:
            t.join(timeout=timeout)

    def _ended_soon(self, timeout: float = 2.0) -> bool:
        """After EOF on its stdout: has it ended (reaped within timeout)? Never raises."""
        try:
            self.popen.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def _fail(self, what: str) -> HarnessError:
        if self.popen.poll() is not None:
            self._drain(timeout=1)
        return HarnessError(f"{what}\n{self.report()}")

    # ---- reading lines ----
    def _next(self, timeout: float) -> str | None:
        if self._unread:
            return self._unread.pop(0)
        return self._lines.get(timeout=timeout)

    def read_line(self, timeout: float = 5.0) -> str | None:
        """The next stdout line, or None at EOF; HarnessError if none comes within timeout."""
        timeout = scaled(timeout)
        try:
            line = self._next(timeout)
        except queue.Empty:
            raise self._fail(f"{self.name} printed no line within {timeout:.3g}s") from None
        if line is None:
            self._lines.put(None)  # stay at EOF
        return line

    def expect(self, pattern: "str | re.Pattern[str] | Line", timeout: float = 5.0) -> re.Match[str]:
        """Skip stdout lines until one matches `pattern` (re.search, or an output-contract Line);
        its match."""
        rx = pattern.pattern if isinstance(pattern, Line) else re.compile(pattern)
        timeout = scaled(timeout)
        wanted = (f"a line like `{pattern.template}` ({pattern.where})" if isinstance(pattern, Line)
                  else f"a line matching /{rx.pattern}/")
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if isinstance(pattern, Line):
                    missed(pattern, self.stdout)
                raise self._fail(f"{self.name} printed no {wanted.removeprefix('a ')} within {timeout:.3g}s")
            try:
                line = self._next(left)
            except queue.Empty:
                continue
            if line is None:
                self._lines.put(None)
                self._ended_soon()
                if isinstance(pattern, Line):
                    missed(pattern, self.stdout)
                raise self._fail(f"{self.name} closed stdout without printing {wanted}")
            m = rx.search(line)
            if m:
                return m

    def wait_ready(self, timeout: float = 10.0) -> Ready:
        """Wait for the ready line `READY <proto> <host> <port>` and return it. Lines printed before
        it stay unread, for read_line() and expect()."""
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        while self.ready is None:
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                if left <= 0:
                    raise self._fail(f"{self.name} printed no ready line (READY <tcp|udp> <host> <port>) "
                                     f"within {timeout:.3g}s. Likely cause: it blocks before printing, "
                                     "or does not flush stdout") from None
                continue
            if line is None:
                self._lines.put(None)
                if self._ended_soon():
                    raise self._fail(f"{self.name} ended before printing its ready line")
                raise self._fail(f"{self.name} closed its stdout before printing its ready line, "
                                 "and is still running")
            self.ready = parse_ready(line)
            if self.ready is None:
                self._unread.append(line)
        return self.ready

    # ---- stdin ----
    def send_line(self, text: str | bytes) -> None:
        data = text.encode() if isinstance(text, str) else text
        assert self.popen.stdin is not None
        self.popen.stdin.write(data + b"\n")
        self.popen.stdin.flush()

    def close_stdin(self) -> None:
        if self.popen.stdin and not self.popen.stdin.closed:
            try:
                self.popen.stdin.close()
            except BrokenPipeError:
                pass

    # ---- ending ----
    def wait_exit(self, timeout: float = 5.0) -> int:
        """Its exit status (negative: killed by that signal); HarnessError if still running after timeout."""
        timeout = scaled(timeout)
        try:
            rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise self._fail(f"{self.name} did not exit within {timeout:.3g}s") from None
        self._drain()
        return rc

    def _collect(self) -> set[int]:
        found = {p for p in probes.group_members(self.pid)}
        for pid in list(self.known_pids | found):
            try:
                found.update(probes.descendants(pid))
            except ProcessLookupError:
                pass
        self.known_pids |= found
        return found

    def stop(self, grace: float = 2.0) -> int | None:
        """End the program and everything it started. Safe to call twice; returns its exit status."""
        self.close_stdin()
        self._collect()
        if self.popen.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left (children ignoring SIGTERM, escapees that called setsid): SIGKILL.
        for _ in range(50):
            rest = {p for p in self._collect() | _orphans_of_us() if probes.alive(p)}
            rest.discard(os.getpid())
            if not rest:
                break
            for pid in rest:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            time.sleep(0.02)
            _reap_orphans()
        if self.popen.poll() is None:
            self.popen.kill()
        rc = self.popen.wait()
        _reap_orphans()
        self._drain()
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream:
                stream.close()
        with _live_lock:
            _live.discard(self)
        return rc

    def __enter__(self) -> "LabProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _orphans_of_us() -> set[int]:
    """Our children that we did not start: orphans of lab programs re-parented to us.

    A LabProcess root is ours; a helper we run ourselves (a compiler, `ss`) stays in our own
    process group. Anything else among our children came from a lab program's group."""
    with _live_lock:
        roots = {lp.pid for lp in _live}
    own_group = os.getpgrp()
    out = set()
    try:
        kids = probes.children(os.getpid())
    except ProcessLookupError:
        return out
    for pid in kids:
        try:
            if pid not in roots and int(probes.stat_fields(pid)[2]) != own_group:
                out.add(pid)
        except ProcessLookupError:
            pass
    return out


def _reap_orphans() -> None:
    """waitpid() the adopted orphans that died, so they do not linger as our zombies."""
    for pid in _orphans_of_us():
        try:
            if probes.state(pid) == "Z":
                os.waitpid(pid, os.WNOHANG)
        except (ProcessLookupError, ChildProcessError):
            pass


def stop_all() -> None:
    """Stop every LabProcess still running (end of a session, or an interrupted run)."""
    with _live_lock:
        running = list(_live)
    for lp in running:
        lp.stop(grace=0.5)
