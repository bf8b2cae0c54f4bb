"""Idle connections for scaling tests, held by a helper process of their own.

Each process may open only so many fds (RLIMIT_NOFILE), so the test process never holds them
itself: it starts this module as a separate process, which connects COUNT times to HOST PORT,
sends nothing, prints `holding <n> connections` once all are established, and holds them until
its stdin reaches EOF (or SIGTERM). It then closes every one with an RST (SO_LINGER 0), so that
10,000 client ports are not left in TIME_WAIT for 60 s.

    with idle.connections(lab, host, port, 10_000) as holder:   # a LabProcess, stopped afterwards
        ...

The helper raises its own RLIMIT_NOFILE to COUNT + 64; if it cannot (an unprivileged process under
a lower hard limit, e.g. the grader's), it exits 1 with a message containing NOFILE_SHORT, which a
test can turn into a skip. A connect that finds the server's accept queue full waits for the kernel's SYN
retransmission, so the helper connects in batches of BATCH and waits for each batch.
"""
from __future__ import annotations

import errno
import resource
import selectors
import socket
import struct
import sys
import time
from contextlib import contextmanager
from typing import Iterator

from .process import LabProcess
from .programs import REPO
from .steps import slowdown

BATCH = 250
LINE = "holding {} connections"
NOFILE_SHORT = "RLIMIT_NOFILE too low and not raisable"


def raise_nofile(need: int) -> None:
    """Best effort, e.g. in a preexec: RLIMIT_NOFILE to at least `need` (the hard limit too, which
    only a privileged process may raise)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(need, hard)))
    except (ValueError, OSError):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
        except (ValueError, OSError):
            pass


def nofile_limit(pid: int) -> int:
    """The soft RLIMIT_NOFILE of a running process, from /proc/PID/limits."""
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise ProcessLookupError(pid)


def _check_nofile(count: int) -> None:
    need = count + 64
    raise_nofile(need)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        sys.exit(f"idle: {NOFILE_SHORT}: {soft} < {need}, so {count} connections cannot be held")


def _connect_batch(host: str, port: int, n: int, deadline: float) -> list[socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    pending: dict[socket.socket, None] = {}
    sel = selectors.DefaultSelector()
    for _ in range(n):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            sys.exit(f"idle: connect to {host}:{port} failed: {errno.errorcode.get(err, err)}")
        pending[s] = None
        sel.register(s, selectors.EVENT_WRITE)
    done = []
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            sys.exit(f"idle: {len(pending)} connects did not complete in time")
        for key, _ in sel.select(min(left, 1.0)):
            s = key.fileobj
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                sys.exit(f"idle: a connect to {host}:{port} failed: {errno.errorcode.get(err, err)}")
            sel.unregister(s)
            del pending[s]
            done.append(s)
    sel.close()
    return done


def hold(host: str, port: int, count: int, seconds: float = 120.0) -> None:
    _check_nofile(count)
    deadline = time.monotonic() + seconds
    socks: list[socket.socket] = []
    while len(socks) < count:
        socks += _connect_batch(host, port, min(BATCH, count - len(socks)), deadline)
    print(LINE.format(len(socks)), flush=True)
    try:
        sys.stdin.read()            # until EOF: the test is done with them
    except KeyboardInterrupt:
        pass
    linger = struct.pack("ii", 1, 0)
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        s.close()


@contextmanager
def connections(lab, host: str, port: int, count: int, timeout: float = 120.0) -> Iterator[LabProcess]:
    """Start the helper, wait until it holds `count` connections, and end it afterwards (its stdin
    closed, so it resets them all; stopped like any program the test started)."""
    argv = [sys.executable, "-m", "harness.idle", host, str(port), str(count)]
    proc = LabProcess(argv, cwd=REPO, preexec=lambda: raise_nofile(count + 64))
    lab.started.append(proc)
    proc.expect("^" + LINE.format(count) + "$", timeout=timeout * slowdown())
    try:
        yield proc
    finally:
        proc.close_stdin()
        proc.wait_exit(30 * slowdown())


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit("usage: python3 -m harness.idle HOST PORT COUNT")
    hold(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
