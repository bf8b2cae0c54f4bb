"""The bad-client battery: the black-box checks every echo server of labs 11-18 must pass.

Each check starts the server itself (`--port 0` plus the model's arguments), runs one scenario
against it over loopback, and then asserts the invariants every scenario must leave behind
(Server.assert_settled): still running, 0 zombies, child processes and threads back to their
baseline, the fd count back to its baseline, no CLOSE_WAIT on the port, and idle CPU under 10% of
a core (or, for a busy-polling model, over BUSY_MIN: the test asserts the busy loop).

A server lab's spec runs every check as one named test case:

    from harness import battery
    MODEL = battery.Model(lab="12", program="echo_fork", kind=battery.CONCURRENT)

    @pytest.mark.parametrize("check", [pytest.param(c, id=c.name, marks=pytest.mark.hint(c.hint))
                                       for c in battery.checks(MODEL)])
    def test_battery(lab, steps, check):
        check.run(lab, MODEL, steps)

API
  Model(lab, program, kind, args=(), spins_when_idle=None)
        lab: the lab whose output.toml is read for its own stderr lines `error` (a group named
        `ename`) and `hint`; without them the suite-wide ERROR and HINT (harness/output.py);
        kind: ITERATIVE, CONCURRENT or BUSY_POLL; args: added to every start (e.g. ("--quiet",));
        spins_when_idle: None = True exactly for BUSY_POLL.
  checks(model) -> list[Check]   every check, in a stable order (CHECKS has them by name)
  Check(name, claim, hint, fn)   .run(lab, model, steps=None) runs the scenario and its invariants
  start(lab, model, *args, preexec=None) -> Server    ready, with its baseline taken
  Server: .proc (LabProcess), .host, .port, .client(), .echo(data), .accept_queue(), .group(),
          .idle_cpu(), .assert_settled(steps): for a lab's own tests too, with IDLE_MAX, SETTLE...

The checks (each a few seconds at most; about 13 s for all against lab 11):
  echo_1b, echo_64k          byte-exact echo
  echo_16m_slow_reader       16 MiB through a client with SO_RCVBUF 4 KiB reading 4 KiB per recv(),
                             pausing; the server must not spin while the buffers are full
  half_close_200k            200 kB, shutdown(SHUT_WR): the whole echo, then EOF
  rst_storm                  20 connect-send-RST clients; clients that reset mid-echo while the server
                             sleeps in send() on a CLOSE_WAIT socket, so its next send() meets EPIPE:
                             a server that lets SIGPIPE kill it dies at the first one
  never_reader               a client that never reads beside a normal one (iterative: the normal one
                             waits, then is served; others: served at once, memory bounded)
  emfile                     RLIMIT_NOFILE 32, 40 clients: no busy loop, alive, serves again afterwards
  sigstop_sigcont            three stops of the process group in a 4 MiB echo: nothing lost
  port_in_use                exit 1, `[EADDRINUSE]` error line and hint line (the lab's or the suite's)
  default_bind_loopback, ipv6   127.0.0.1 by default; --host ::1 listens on ::1 and echoes
  sigterm_with_clients       SIGTERM to the pid only: exit 0, no process of it left, no listener, each
                             client's connection ends

The mid-echo resets find a server thread asleep in send() through /proc/PID/task/TID/syscall
(x86-64 system call numbers; readable by the server's own user or root).

What the battery assumes of a server: the CLI contract (README.md: --host/--port, the ready line,
errors as `prog: what: strerror [ENAME]` plus `prog: hint: ...`, SIGTERM -> exit 0) and the echo
protocol: every byte received goes back, in order, until the client's EOF; then the server closes
its side. Failure messages say what was expected, what was measured, and end with a `Hint:` line
that names the likely bug (the grader shows that line).
"""
from __future__ import annotations

import errno
import fcntl
import os
import random
import resource
import select
import signal
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Callable

from . import probes
from .clients import ClientTimeout, Sender, TcpClient
from .contract import occupy_tcp
from .output import ERROR, HINT, Line, contract
from .process import LabProcess
from .steps import Steps, scaled, wait_for

ITERATIVE, CONCURRENT, BUSY_POLL = "iterative", "concurrent", "busy-poll"
IDLE_MAX = 0.10      # share of one core an idle server may use (correct servers measure 0 here)
BUSY_MIN = 0.25      # share a busy-polling server is expected to burn while idle (measured 0.5-1.0)
CPU_WINDOW = 0.5     # seconds of idle CPU sampled after each scenario
SETTLE = 5.0         # seconds a server gets to close, reap and release after a scenario
NOFILE = 32          # RLIMIT_NOFILE for the EMFILE scenario
RSS_GROWTH_MAX = 64 << 20
# ThreadSanitizer starts a background thread of its own at a program's first pthread_create(): a
# thread-per-client server under tsan settles one thread above the baseline taken before any client.
TSAN_THREADS = 1 if os.environ.get("SOCKLAB_SANITIZE") == "thread" else 0


@dataclass(frozen=True)
class Model:
    lab: str
    program: str
    kind: str = CONCURRENT
    args: tuple[str, ...] = ()
    spins_when_idle: bool | None = None

    def __post_init__(self) -> None:
        if self.kind not in (ITERATIVE, CONCURRENT, BUSY_POLL):
            raise ValueError(f"kind must be {ITERATIVE!r}, {CONCURRENT!r} or {BUSY_POLL!r}, "
                             f"not {self.kind!r}")

    @property
    def spins(self) -> bool:
        return self.kind == BUSY_POLL if self.spins_when_idle is None else self.spins_when_idle


def _pattern(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _first_difference(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def _group_cpu(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            out[pid] = probes.cpu_seconds(pid)
        except (ProcessLookupError, IndexError):
            pass
    return out


def _group_rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += probes.rss_kib(pid)
        except (ProcessLookupError, KeyError):
            pass
    return total


def _where(pids: list[int]) -> str:
    """State, system call and fds of each process: where it is stuck."""
    out = []
    for pid in pids[:4]:
        try:
            with open(f"/proc/{pid}/syscall") as f:
                call = f.read().split(maxsplit=1)[0]
            fds = sorted(probes.fd_targets(pid))
            out.append(f"pid {pid} state {probes.state(pid)} in syscall {call}, fds {fds}")
        except (OSError, ProcessLookupError, IndexError):
            out.append(f"pid {pid}: gone")
    return "; ".join(out)


def _death(proc: LabProcess) -> str:
    """Why the server is gone, as a failure message with its hint."""
    rc = proc.popen.poll()
    if rc == -signal.SIGPIPE:
        why = ("it was killed by SIGPIPE.\nHint: a send() to a connection the client had reset raised "
               "SIGPIPE: send with MSG_NOSIGNAL (or ignore SIGPIPE) and drop just that client on EPIPE")
    elif rc is not None and rc < 0:
        why = (f"it was killed by {signal.Signals(-rc).name}.\nHint: a client's misbehaviour must never "
               "crash the server: see its stderr (build with the asan preset to find a crash)")
    else:
        why = (f"it exited with status {rc}.\nHint: an error on one connection (ECONNRESET, EPIPE, "
               "EMFILE...) must end that client only, never the server: see its stderr")
    return f"expected the server to keep running through the scenario, but {why}\n{proc.report()}"


@dataclass
class Baseline:
    fds: int
    threads: int
    children: int


@dataclass
class Server:
    proc: LabProcess
    model: Model
    base: Baseline = field(init=False)

    @property
    def host(self) -> str:
        assert self.proc.ready is not None
        return self.proc.ready.host

    @property
    def port(self) -> int:
        assert self.proc.ready is not None
        return self.proc.ready.port

    def group(self) -> list[int]:
        """The server and its live descendants (a fork server's children)."""
        try:
            kids = probes.descendants(self.proc.pid)
        except ProcessLookupError:
            kids = []
        return [p for p in [self.proc.pid, *kids] if probes.alive(p)]

    def live_children(self) -> list[int]:
        return [p for p in probes.children(self.proc.pid) if probes.alive(p)]

    def assert_alive(self) -> None:
        assert self.proc.popen.poll() is None, _death(self.proc)

    def client(self, timeout: float = 5.0, **kw) -> TcpClient:
        try:
            return TcpClient(self.host, self.port, timeout=timeout, **kw)
        except OSError as e:
            self.assert_alive()
            raise AssertionError(
                f"expected to connect to {self.host}:{self.port}, got {e!r}.\nHint: the server stopped "
                "listening (or its accept queue is full and never drained)") from None

    def echo(self, data: bytes, timeout: float = 5.0, **kw) -> None:
        """One well-behaved client: send `data`, read exactly as much back, close first."""
        with self.client(timeout, **kw) as c:
            c.send(data)
            try:
                got = c.recv_exactly(len(data))
            except ClientTimeout as e:
                self.assert_alive()
                raise AssertionError(
                    f"expected the echo of {len(data)} bytes within {scaled(timeout):g}s: {e}.\n"
                    "Hint: every byte received must be sent back at once, in order") from None
            assert got == data, (f"expected the {len(data)} bytes back unchanged; they differ from byte "
                                 f"{_first_difference(got, data)}.\nHint: send back exactly the bytes each "
                                 "recv() returned, counted by its return value, never as a C string")

    def take_baseline(self) -> None:
        """What the server holds before any client: the level every scenario must return to."""
        pid = self.proc.pid
        self.base = Baseline(probes.fd_count(pid), probes.thread_count(pid), len(self.live_children()))

    def accept_queue(self) -> int:
        """Connections waiting for accept(): the listener's rx_queue in /proc/net/tcp{,6} (read
        directly: probes.tcp_sockets() runs `ss` for a listener's backlog, too slow to poll)."""
        for name in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(name) as f:
                for line in f.read().splitlines()[1:]:
                    field = line.split()
                    if field[3] == "0A" and int(field[1].rsplit(":", 1)[1], 16) == self.port:
                        return int(field[4].split(":")[1], 16)
        return 0

    def _close_wait(self) -> list[probes.TcpSocket]:
        rows = probes.tcp_sockets(self.port, host=self.host)
        return [s for s in rows if s.state == "CLOSE_WAIT" and s.local[1] == self.port]

    def idle_cpu(self, window: float = CPU_WINDOW) -> float:
        before = _group_cpu(self.group())
        time.sleep(window)
        after = _group_cpu(list(before))
        return sum(after[p] - before[p] for p in after) / window

    def assert_settled(self, steps: Steps | None = None) -> None:
        """The invariants after a scenario, each awaited up to SETTLE seconds."""
        steps = steps or Steps()
        pid = self.proc.pid
        with steps.step("afterwards: still running, 0 zombies, children/threads/fds back to baseline"):
            self.assert_alive()
            try:
                wait_for("0 zombie children", lambda: not probes.zombies(pid), timeout=SETTLE)
            except AssertionError:
                z = probes.zombies(pid)
                raise AssertionError(
                    f"expected 0 zombie children once the clients left, found {len(z)} (pids {z[:8]}).\n"
                    "Hint: zombies: reap every child, with a SIGCHLD handler that loops "
                    "waitpid(-1, &status, WNOHANG) until it returns 0 (or -1)") from None
            try:
                wait_for(f"{self.base.children} child processes",
                         lambda: len(self.live_children()) <= self.base.children, timeout=SETTLE)
            except AssertionError:
                raise AssertionError(
                    f"expected {self.base.children} child processes once the clients left, found "
                    f"{len(self.live_children())} still running ({_where(self.live_children())}).\n"
                    "Hint: a child per client must exit as soon "
                    "as its client is done (recv() returned 0 or an error), never return to the accept "
                    "loop") from None
            threads = self.base.threads + TSAN_THREADS
            try:
                wait_for(f"{threads} threads", lambda: probes.thread_count(pid) <= threads, timeout=SETTLE)
            except AssertionError:
                raise AssertionError(
                    f"expected {threads} threads once the clients left, found "
                    f"{probes.thread_count(pid)}.\nHint: a thread per client must end when its client is "
                    "done, and be detached or joined") from None
            try:
                wait_for(f"the fd count back to {self.base.fds}",
                         lambda: probes.fd_count(pid) <= self.base.fds, timeout=SETTLE)
            except AssertionError:
                targets = sorted(probes.fd_targets(pid))
                raise AssertionError(
                    f"expected the server's fd count back at its baseline {self.base.fds}, it is "
                    f"{len(targets)} ({', '.join(targets[:10])}...).\nHint: an fd leak: close every accepted "
                    "socket once its client is done (a fork server's parent closes its copy right after "
                    "fork())") from None
            try:
                wait_for(f"no CLOSE_WAIT on port {self.port}", lambda: not self._close_wait(), timeout=SETTLE)
            except AssertionError:
                n = len(self._close_wait())
                raise AssertionError(
                    f"expected no socket in CLOSE_WAIT on port {self.port}, found {n}.\nHint: a client's FIN "
                    "reached a socket nobody closes: when recv() returns 0, close the connection, in every "
                    "process that holds a copy of it (fork() duplicates the descriptor)") from None
        with steps.step(f"afterwards: idle CPU over {CPU_WINDOW:g} s"):
            share = self.idle_cpu()
            self.assert_alive()
            if self.model.spins:
                assert share >= BUSY_MIN, (
                    f"expected this busy-polling model to burn at least {BUSY_MIN:.0%} of a core while idle, "
                    f"measured {share:.0%}.\nHint: the model polls without blocking; if it now sleeps or "
                    "blocks, describe it as concurrent, not busy-poll")
            else:
                assert share < IDLE_MAX, (
                    f"expected under {IDLE_MAX:.0%} of a core while idle, measured {share:.0%} over "
                    f"{CPU_WINDOW:g} s.\nHint: a busy loop: something retries at once instead of blocking "
                    "(an accept() failing with EMFILE, EAGAIN retried without waiting, a 0 timeout)")


def start(lab, model: Model, *args: str, preexec: Callable[[], None] | None = None,
          baseline: bool = True) -> Server:
    """Start the model's program on a kernel-chosen port, wait for its ready line and take its
    baseline (fds, threads, children before any client) unless baseline=False."""
    proc = lab.server(model.program, "--port", "0", *model.args, *args, preexec=preexec)
    server = Server(proc, model)
    if baseline:
        server.take_baseline()
    return server


# ---------------------------------------------------------------- helpers for the scenarios

def _read_exactly(server: Server, c: TcpClient, n: int, timeout: float, chunk: int = 65536,
                  on_progress: Callable[[int], None] | None = None,
                  pause: Callable[[int], float] | None = None,
                  sender: Sender | None = None) -> bytes:
    """Read n bytes in recv()s of at most `chunk`; after each, on_progress(bytes so far) and a
    sleep of pause(bytes so far) seconds. A stall fails it: `timeout` seconds without a byte
    (a busy machine slows an echo down, it does not stop it), and at most 4 x `timeout` in all
    (the test's wall-clock limit bounds it too). `sender`, the client's background send of the
    same bytes, is named in the failure: a server that stopped reading stops the sender too."""
    buf = bytearray()
    stall = scaled(timeout)
    last = time.monotonic()
    end = last + 4 * stall
    while len(buf) < n:
        now = time.monotonic()
        left = min(last + stall, end) - now
        if left <= 0:
            server.assert_alive()
            quiet = f"no byte for {now - last:.1f}s" if now - last >= stall else f"{4 * stall:g}s in all"
            sending = f"; the client {sender.describe()}" if sender else ""
            raise AssertionError(
                f"expected {n} bytes of echo, received {len(buf)} ({quiet}{sending}).\n"
                "Hint: the echo "
                "stalled: a short send() not retried, EAGAIN taken as 'done', or bytes dropped when the "
                "client reads slowly")
        c.sock.settimeout(min(left, 1.0))
        try:
            got = c.sock.recv(min(chunk, n - len(buf)))
        except socket.timeout:
            continue
        except OSError as e:
            server.assert_alive()
            raise AssertionError(
                f"expected {n} bytes of echo, the connection failed after {len(buf)}: {e!r}.\n"
                "Hint: the server reset or closed the connection in the middle of the echo") from None
        if not got:
            raise AssertionError(
                f"expected {n} bytes of echo, the server closed after {len(buf)}.\nHint: the server "
                "closed before echoing everything (or before the client's EOF)")
        buf += got
        if on_progress:
            on_progress(len(buf))
        if pause and (s := pause(len(buf))):
            time.sleep(s)
        last = time.monotonic()
    return bytes(buf)


def _assert_same(got: bytes, sent: bytes, what: str) -> None:
    assert got == sent, (
        f"expected {what}: {len(sent)} bytes back unchanged; {len(got)} came back, first difference at "
        f"byte {_first_difference(got, sent)}.\nHint: lost, repeated or reordered bytes: send back "
        "exactly what each recv() returned, all of it, before the next recv()")


def _connect_nonblocking(host: str, port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    err = s.connect_ex((host, port))
    assert err in (0, errno.EINPROGRESS), \
        f"connect to {host}:{port} failed at once: {errno.errorcode.get(err, err)}"
    return s


def _reset(s: socket.socket) -> None:
    """close() that sends RST: SO_LINGER {1, 0}."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


_SIOCOUTQNSD = 0x894B  # bytes in the send queue not yet sent (linux/sockios.h)


def _unsent(s: socket.socket) -> int:
    return struct.unpack("i", fcntl.ioctl(s.fileno(), _SIOCOUTQNSD, b"\0" * 4))[0]


_SEND_CALLS = {1, 20, 44, 46, 307}  # x86-64: write, writev, sendto, sendmsg, sendmmsg


def _blocked_in_send(pids: list[int]) -> bool:
    """Some thread of these processes sleeps in a send/write system call (its send buffer is full):
    /proc/PID/task/TID/syscall starts with the number of the call a sleeping thread is in."""
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/syscall") as f:
                    call = f.read().split(maxsplit=1)
            except OSError:
                continue
            if call and call[0].isdigit() and int(call[0]) in _SEND_CALLS and probes.state(int(tid)) == "S":
                return True
    return False


def _server_end(server: "Server", cport: int) -> probes.TcpSocket | None:
    """The server's end of the connection from client port `cport` (read without `ss`)."""
    for row in probes.tcp_sockets(cport):
        if row.local[1] == server.port and row.remote[1] == cport:
            return row
    return None


def _echo_held_back(row: probes.TcpSocket, members: list[int]) -> bool:
    """The server cannot send this client's echo now: a thread of it sleeps in send(), or (an event
    loop on non-blocking sockets, which never sleeps in send) echo bytes wait unacknowledged in the
    server's send queue, behind the client's closed window."""
    return row.send_q > 0 or _blocked_in_send(members)


def _stuck_in_send(server: "Server", cport: int, members: list[int]) -> bool:
    """The server has left 32 KiB of this client's bytes unread, and its echo is held back."""
    row = _server_end(server, cport)
    return bool(row and row.recv_q >= 32 << 10 and _echo_held_back(row, members))


def _fill_server(server: "Server", s: socket.socket, seconds: float) -> bool:
    """Push bytes in 4 KiB pieces, never reading, each delivered before the next, until the server
    stops reading them because it sleeps in send() (its send buffer full, the client's window
    closed). A FIN sent then arrives while the server still has bytes to echo that cannot fit: its
    socket is in CLOSE_WAIT, and a reset makes its next send() fail with EPIPE (SIGPIPE unless it
    is handled). The client's socket must have a small MSS and receive buffer (_reset_mid_echo),
    so the server stays limited by the client's window and its send buffer stays small.
    False if that state was not reached within `seconds` (e.g. a server that never blocks in send)."""
    chunk = b"r" * 4096
    cport = s.getsockname()[1]
    end = time.monotonic() + scaled(seconds)
    members: list[int] = []
    sent = 0
    while time.monotonic() < end:
        if not _delivered(s, scaled(0.05)):
            return False   # its receive window closed first: a FIN could not arrive now
        if sent and (not members or sent % (64 << 10) == 0):
            members = server.group()  # again now and then: a fork server's child comes later
        if members and _stuck_in_send(server, cport, members):
            return True
        try:
            sent += s.send(chunk)
        except (BlockingIOError, InterruptedError):
            time.sleep(0.001)
    return False


def _delivered(s: socket.socket, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while _unsent(s):
        if time.monotonic() > end:
            return False
        time.sleep(0.002)
    return True


def _reset_mid_echo(server: "Server") -> bool:
    """One client that fills the server's buffers (_fill_server), sends FIN, and resets while the
    server is still echoing. True if the reset came while the server's end was in CLOSE_WAIT and it
    was blocked in send(): its next send() then fails with EPIPE, which raises SIGPIPE unless it is
    ignored or MSG_NOSIGNAL is used."""
    s = socket.socket(socket.AF_INET6 if ":" in server.host else socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)       # keep the server's send buffer small
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(scaled(5))
    s.connect((server.host, server.port))
    s.setblocking(False)
    cport = s.getsockname()[1]
    sure = False
    try:
        if _fill_server(server, s, seconds=2.0):
            s.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 0.3
            while not sure and time.monotonic() < deadline:
                row = _server_end(server, cport)
                sure = bool(row and row.state == "CLOSE_WAIT" and _echo_held_back(row, server.group()))
    finally:
        _reset(s)
    return sure


def _push_until_stalled(s: socket.socket, limit: int, seconds: float, stall: float = 0.1) -> int:
    """Send without reading until send() has said EAGAIN for `stall` seconds, `limit` bytes went, or
    `seconds` passed; how many bytes the kernel took."""
    chunk = b"x" * 65536
    sent = 0
    end = time.monotonic() + seconds
    blocked_since = None
    while sent < limit and time.monotonic() < end:
        try:
            sent += s.send(chunk)
            blocked_since = None
        except (BlockingIOError, InterruptedError):
            now = time.monotonic()
            blocked_since = blocked_since or now
            if now - blocked_since >= stall:
                break
            time.sleep(0.01)
    return sent


# ---------------------------------------------------------------- the checks

def check_echo_1b(lab, model: Model, steps: Steps) -> None:
    """One byte comes back."""
    server = start(lab, model)
    with steps.step("1 byte, echoed"):
        server.echo(b"\x00")
    server.assert_settled(steps)


def check_echo_64k(lab, model: Model, steps: Steps) -> None:
    """64 KiB of random bytes (sent in one sendall) come back byte-exact."""
    server = start(lab, model)
    with steps.step("64 KiB in one sendall, echoed byte-exact"):
        data = _pattern(64 << 10, 64)
        with server.client() as c:
            sender = c.send_in_background(data)
            got = _read_exactly(server, c, len(data), timeout=10, sender=sender)
            sender.join(5)
        _assert_same(got, data, "64 KiB")
    server.assert_settled(steps)


def check_echo_16m_slow_reader(lab, model: Model, steps: Steps) -> None:
    """16 MiB through a client with a 4 KiB receive buffer that reads 4 KiB at a time, pauses every
    MiB and stops for 0.6 s halfway: every byte comes back, and the server does not spin while
    blocked on the full buffers."""
    server = start(lab, model)
    data = _pattern(16 << 20, 16)
    stalled: list[float] = []

    def pause(done: int) -> float:
        if done >= len(data) // 2 and not stalled:
            time.sleep(0.1)                     # let every buffer fill up
            share = server.idle_cpu(0.5)        # the server can do nothing but wait now...
            for _ in range(2):                  # ...unless it is still draining (a loaded machine, a
                if share < IDLE_MAX:            # sanitizer build): a spinning one never drops
                    break
                share = server.idle_cpu(0.5)
            stalled.append(share)
            return 0.0
        return 0.02 if done % (1 << 20) < 4096 else 0.0

    with steps.step("16 MiB, client SO_RCVBUF 4 KiB, reading 4 KiB per recv() with pauses"):
        with server.client(rcvbuf=4096) as c:
            sender = c.send_in_background(data)
            got = _read_exactly(server, c, len(data), timeout=60, chunk=4096, pause=pause, sender=sender)
            sender.join(5)
        _assert_same(got, data, "16 MiB through a slow reader")
    if stalled and not model.spins:
        assert stalled[0] < IDLE_MAX, (
            f"expected the server to wait (under {IDLE_MAX:.0%} of a core) while the slow client's "
            f"buffers were full, it used {stalled[0]:.0%}.\nHint: a busy loop on a full socket: a "
            "non-blocking send() that says EAGAIN must wait for POLLOUT, not be retried at once")
    server.assert_settled(steps)


def check_half_close_200k(lab, model: Model, steps: Steps) -> None:
    """A client sends 200 kB, shuts down its writing side (FIN), and still receives the whole echo,
    then EOF."""
    server = start(lab, model)
    data = _pattern(200_000, 200)
    with steps.step("send 200 kB, shutdown(SHUT_WR), read the echo to EOF"):
        with server.client() as c:
            sender = c.send_in_background(data, then_shutdown=True)
            got = _read_exactly(server, c, len(data), timeout=10, sender=sender)
            sender.join(5)
            try:
                rest = c.recv_until_eof(timeout=3)
            except ClientTimeout:
                raise AssertionError(
                    "expected EOF after the echo of a half-closed client, none came within "
                    f"{scaled(3):g}s.\nHint: recv() returning 0 is the client's FIN, not an error: "
                    "the client "
                    "may still be reading; finish sending, then close the connection") from None
        _assert_same(got + rest, data, "200 kB then EOF")
    server.assert_settled(steps)


def check_rst_storm(lab, model: Model, steps: Steps) -> None:
    """20 clients connect, send and reset at once; 8 reset in the middle of their echo, after their
    FIN (so the server's next send() meets EPIPE): the server survives and serves a new client."""
    server = start(lab, model)
    with steps.step("20 clients: connect, send 100 bytes, reset (RST)"):
        for i in range(20):
            s = socket.create_connection((server.host, server.port), timeout=scaled(5))
            s.sendall(bytes([i]) * 100)
            _reset(s)
            # Paced by the accept queue: a full one drops SYNs, and each costs a 1 s retransmission.
            wait_for("the server to take the reset connections off its accept queue",
                     lambda: server.accept_queue() < 2 or server.proc.popen.poll() is not None, timeout=5)
        server.assert_alive()
    with steps.step("clients reset mid-echo after their FIN, until 3 did so while the server was sending"):
        confirmed = 0
        for _ in range(12):
            confirmed += _reset_mid_echo(server)
            server.assert_alive()
            if confirmed == 3:
                break
    with steps.step("a new client is served"):
        server.assert_alive()
        server.echo(b"still there?\n")
    server.assert_settled(steps)


def check_never_reader(lab, model: Model, steps: Steps) -> None:
    """A client that sends but never reads, beside a normal one. Concurrent models serve the normal
    client at once and buffer only a bounded amount; the iterative one makes it wait (head-of-line
    blocking) and serves it once the first client leaves."""
    server = start(lab, model)
    rss_before = _group_rss_kib(server.group())
    with steps.step("client A pushes data and never reads, until the kernel stops taking it"):
        a = server.client()
        a.sock.setblocking(False)
        pushed = _push_until_stalled(a.sock, 256 << 20, seconds=3.0)
        assert pushed < RSS_GROWTH_MAX, (
            f"expected a client that never reads to be stopped by TCP flow control, but {pushed >> 20} MiB "
            "were taken.\nHint: unbounded buffering: stop reading from a client whose echo cannot be sent "
            "(block in send(), or drop read interest above a high-water mark)")
    try:
        with steps.step("client B connects, sends a line"):
            b = server.client()
            b.send(b"ping\n")
        with b:
            if model.kind == ITERATIVE:
                with steps.step("iterative: B is connected, its bytes wait while A is served"):
                    try:
                        early = b.recv_some(timeout=1)
                    except ClientTimeout:
                        early = None
                    assert early is None, (
                        f"an iterative server serves one client at a time, but B got {early!r} while A was "
                        "still connected.\nHint: this model serves A to its EOF before the next accept()")
                with steps.step("A leaves: now B is served"):
                    _reset(a.sock)
                    got = b.recv_exactly(5, timeout=5)
                    assert got == b"ping\n", f"expected B's echo b'ping\\n' once A left, got {got!r}"
            else:
                with steps.step("concurrent: B is served while A is stuck"):
                    try:
                        got = b.recv_exactly(5, timeout=3)
                    except ClientTimeout:
                        server.assert_alive()
                        raise AssertionError(
                            "expected B's echo while A (a client that never reads) was stuck, none came.\n"
                            "Hint: one blocked client must not stop the others: serve each connection in its "
                            "own process/thread, or never block on one socket in an event loop") from None
                    assert got == b"ping\n", (f"expected B's echo b'ping\\n', got {got!r}.\nHint: send back "
                                             "exactly the bytes each recv() returned, in order")
                rss_growth = (_group_rss_kib(server.group()) - rss_before) << 10
                assert rss_growth < RSS_GROWTH_MAX, (
                    f"expected the server's memory to stay bounded while A never reads, it grew by "
                    f"{rss_growth >> 20} MiB.\nHint: unbounded buffering: stop reading from a client whose "
                    "echo cannot be sent (block in send(), or drop read interest above a high-water mark)")
    finally:
        a.sock.close()
    server.assert_settled(steps)


def _nofile_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def check_emfile(lab, model: Model, steps: Steps) -> None:
    """With RLIMIT_NOFILE 32, 40 clients connect at once: no busy loop, no crash, and once they
    leave a new client is served."""
    server = start(lab, model, preexec=_nofile_limit)
    socks = []
    try:
        with steps.step(f"40 non-blocking connects (the server may open only {NOFILE} fds)"):
            socks = [_connect_nonblocking(server.host, server.port) for _ in range(40)]
            _, connected, _ = select.select([], socks, [], scaled(0.5))  # the rest wait in SYN_SENT
            for s in connected:
                try:
                    s.send(b"e")
                except OSError:
                    pass  # refused or reset: fine here
        with steps.step("the server, at its fd limit, neither spins nor dies"):
            share = server.idle_cpu(1.0)
            server.assert_alive()
            if not model.spins:
                assert share < IDLE_MAX, (
                    f"expected under {IDLE_MAX:.0%} of a core with {NOFILE} fds used up, measured "
                    f"{share:.0%}.\nHint: accept() failing with EMFILE leaves the connection queued, so the "
                    "listener stays readable: pause accepting (or close a spare fd to shed the client) "
                    "instead of retrying at once")
    finally:
        for s in socks:
            s.close()
    with steps.step("all 40 leave; a new client is served"):
        # A client whose handshake ACK the full accept queue dropped is connected on its side only;
        # its data and FIN reach the server on TCP's backed-off retransmissions, seconds later.
        wait_for("every client's FIN acknowledged (no client socket left in FIN_WAIT1)",
                 lambda: not _unacked_fins(server.host, server.port), timeout=30, fail=False)
        pid = server.proc.pid
        wait_for("the server's fd count back to its baseline (or the server gone)",
                 lambda: server.proc.popen.poll() is not None or probes.fd_count(pid) <= server.base.fds,
                 timeout=SETTLE)
        server.assert_alive()
        server.echo(b"after EMFILE\n", timeout=10)
    server.assert_settled(steps)


def _unacked_fins(host: str, port: int) -> list[probes.TcpSocket]:
    """Client sockets of (host, port) whose FIN the server's kernel has not acknowledged yet."""
    rows = probes.tcp_sockets(port, host=host)
    return [s for s in rows if s.remote[1] == port and s.state == "FIN_WAIT1"]


def check_sigstop_sigcont(lab, model: Model, steps: Steps) -> None:
    """SIGSTOP and SIGCONT to the server's process group, three times, in the middle of a 4 MiB
    echo (stops at 1, 2 and 3 MiB): nothing lost, no error."""
    server = start(lab, model)
    data = _pattern(4 << 20, 8)
    stops: list[int] = []

    def stop_and_continue(done: int) -> None:
        if len(stops) < 3 and done >= (len(stops) + 1) << 20:
            os.killpg(server.proc.pid, signal.SIGSTOP)
            wait_for("the server stopped (state T)", lambda: probes.state(server.proc.pid) == "T", timeout=3)
            time.sleep(0.2)
            os.killpg(server.proc.pid, signal.SIGCONT)
            stops.append(done)

    with steps.step("4 MiB echo, SIGSTOP 0.2 s SIGCONT at 1, 2 and 3 MiB"):
        with server.client(rcvbuf=65536) as c:
            sender = c.send_in_background(data)
            got = _read_exactly(server, c, len(data), timeout=30, on_progress=stop_and_continue,
                                sender=sender)
            sender.join(5)
        assert len(stops) == 3, f"expected to stop the server three times in the echo, it was {len(stops)}"
        _assert_same(got, data, "4 MiB across three stops")
    server.assert_settled(steps)


def _error_lines(model: Model) -> tuple[Line, Line]:
    """The error line (with a group `ename`) and hint line the server prints: its lab's own `error`
    and `hint` lines where its output.toml declares them, else the suite-wide ERROR and HINT."""
    lines = contract(model.lab).lines
    return lines.get("error", ERROR), lines.get("hint", HINT)


def _by(m, model: Model) -> bool:
    """A suite-wide line names its program (group `prog`): it must be the server's."""
    return m.groupdict().get("prog", model.program) == model.program


def check_port_in_use(lab, model: Model, steps: Steps) -> None:
    """A port already taken: exit 1 with `prog: bind ...: strerror [EADDRINUSE]` and a hint line."""
    error, hint = _error_lines(model)
    with steps.step("start the server on a port another socket listens on"):
        with occupy_tcp() as port:
            proc = lab.run(model.program, "--port", str(port), *model.args, timeout=5)
    rc = proc.popen.returncode
    assert rc == 1, (f"expected exit status 1 for a port in use, got {rc}.\n{proc.report()}\nHint: a failed "
                     f"bind() is a runtime error: print it on stderr and exit 1 ({error.where})")
    lines = proc.stderr.splitlines()
    names = [m["ename"] for line in lines if (m := error.match(line)) and _by(m, model)]
    assert "EADDRINUSE" in names, (
        f"expected a stderr line like {error.example!r} with [EADDRINUSE]; stderr was:\n{proc.stderr}\n"
        f"Hint: report errors as {error.template!r} ({error.where})")
    assert any((m := hint.match(line)) and _by(m, model) for line in lines), (
        f"expected a hint line like {hint.example!r} after the EADDRINUSE error; stderr was:\n{proc.stderr}\n"
        f"Hint: add the hint line {hint.template!r} ({hint.where})")


def _own_listeners(server: "Server") -> list[probes.TcpSocket]:
    """The server's listening sockets on its port, whatever their address (its own fds: another
    program may listen on the same port number at another address)."""
    mine = probes.socket_inodes(server.proc.pid)
    return [s for s in probes.tcp_sockets(server.port)
            if s.state == "LISTEN" and s.local[1] == server.port and s.inode in mine]


def check_default_bind_loopback(lab, model: Model, steps: Steps) -> None:
    """Without --host the server listens on 127.0.0.1, never on the wildcard address."""
    server = start(lab, model)
    rows = _own_listeners(server)
    local = [s.local[0] for s in rows]
    assert server.host == "127.0.0.1" and local == ["127.0.0.1"], (
        f"expected one listener on 127.0.0.1 (ready line says {server.host}, /proc/net/tcp lists {local}).\n"
        "Hint: bind the --host address, 127.0.0.1 by default: the wildcard address (0.0.0.0, ::) is "
        "reachable from every network")
    server.assert_settled(steps)


def check_ipv6(lab, model: Model, steps: Steps) -> None:
    """--host ::1: the server listens on ::1 and echoes over IPv6."""
    server = start(lab, model, "--host", "::1")
    rows = _own_listeners(server)
    assert server.host == "::1" and [s.local[0] for s in rows] == ["::1"], (
        f"expected one listener on ::1 (ready line says {server.host}, /proc lists "
        f"{[s.local[0] for s in rows]}).\nHint: create the socket with the family getaddrinfo() returns "
        "(AF_INET6 for ::1), not a fixed AF_INET")
    with steps.step("64 KiB over IPv6"):
        data = _pattern(64 << 10, 6)
        with server.client() as c:
            sender = c.send_in_background(data)
            got = _read_exactly(server, c, len(data), timeout=10, sender=sender)
            sender.join(5)
        _assert_same(got, data, "64 KiB over IPv6")
    server.assert_settled(steps)


def check_sigterm_with_clients(lab, model: Model, steps: Steps) -> None:
    """SIGTERM (to the server's pid only, as `kill PID` sends it) while 3 clients are connected: exit 0
    within 2 s, no child or thread of it left running, no listener left, every client sees its
    connection end."""
    server = start(lab, model)
    clients = []
    try:
        with steps.step("3 clients connect and send; the first gets its echo"):
            for i in range(3):
                clients.append(server.client())
                clients[-1].send(b"client %d\n" % i)
            assert clients[0].recv_exactly(9, timeout=5) == b"client 0\n"
            if model.kind != ITERATIVE:
                for i, c in enumerate(clients[1:], 1):
                    assert c.recv_exactly(9, timeout=5) == b"client %d\n" % i
        group = server.group()[1:]
        with steps.step("SIGTERM to the server's pid"):
            os.kill(server.proc.pid, signal.SIGTERM)
            try:
                rc = server.proc.popen.wait(timeout=scaled(2))
            except Exception:
                rc = None
        assert rc == 0, (f"expected exit status 0 within 2 s of SIGTERM, "
                         f"{'it is still running' if rc is None else f'got {rc}'}.\n{server.proc.report()}\n"
                         "Hint: handle SIGTERM and SIGINT: close everything and exit 0 (the CLI contract)")
        with steps.step("no child left, no listener left, each client's connection ended"):
            try:
                wait_for("every child of the server to end",
                         lambda: not [p for p in group if probes.alive(p)], timeout=3)
            except AssertionError:
                left = [p for p in group if probes.alive(p)]
                raise AssertionError(
                    f"expected no process of the server left after it exited, {len(left)} still run "
                    f"(pids {left[:8]}).\nHint: on SIGTERM end the children too (forward the signal to each "
                    "child, or have them watch the parent); a child that outlives the server keeps its "
                    "clients and any listener copy") from None
            listening = [s for s in probes.tcp_sockets(server.port, host=server.host) if s.state == "LISTEN"]
            assert not listening, (
                f"expected no listener on port {server.port} after the server exited, found "
                f"{len(listening)}.\nHint: a child still holds a copy of the listening socket: close it in "
                "the child right after fork()")
            for i, c in enumerate(clients):
                try:
                    tail = c.recv_until_eof(timeout=3)
                except ClientTimeout:
                    raise AssertionError(
                        f"expected client {i}'s connection to end (EOF or RST) once the server exited, it "
                        "stayed open.\nHint: some process still holds that connection: children must exit "
                        "with the server") from None
                except ConnectionResetError:
                    tail = b""
                assert model.kind == ITERATIVE or tail == b"", (
                    f"expected client {i}'s connection to end without more data, got {tail[:40]!r}.\nHint: a "
                    "server that is exiting must not send anything more than the echo of what it received")
    finally:
        for c in clients:
            c.close()


@dataclass(frozen=True)
class Check:
    name: str
    claim: str
    hint: str
    fn: Callable[..., None]

    def run(self, lab, model: Model, steps: Steps | None = None) -> None:
        self.fn(lab, model, steps or Steps())


def _check(fn: Callable[..., None], hint: str) -> Check:
    return Check(fn.__name__[len("check_"):], " ".join((fn.__doc__ or "").split()), hint, fn)


CHECKS: dict[str, Check] = {c.name: c for c in (
    _check(check_echo_1b, "echo every byte back exactly as received, counted by recv()'s return value"),
    _check(check_echo_64k, "one recv() may return part of a send and send() may take part of a buffer: "
                           "loop until every byte is back"),
    _check(check_echo_16m_slow_reader, "a slow reader fills the socket buffers: wait until the socket is "
                                       "writable again, never drop bytes or spin"),
    _check(check_half_close_200k, "recv() returning 0 is the client's FIN; it may still read: finish the "
                                  "echo, then close"),
    _check(check_rst_storm, "ECONNRESET or EPIPE ends that client only: send with MSG_NOSIGNAL (or ignore "
                            "SIGPIPE) and close its fd"),
    _check(check_never_reader, "a client that never reads must be held back by TCP flow control, not "
                               "buffered without limit or allowed to block the others (concurrent models)"),
    _check(check_emfile, "out of fds (EMFILE), accept() keeps failing: back off instead of retrying at once, "
                         "and serve again once fds are free"),
    _check(check_sigstop_sigcont, "a stop and continue must lose nothing: retry calls that fail with EINTR"),
    _check(check_port_in_use, "a failed bind is `prog: bind ...: strerror [EADDRINUSE]` plus a hint line on "
                              "stderr, and exit status 1"),
    _check(check_default_bind_loopback, "bind the --host address, 127.0.0.1 by default, never the wildcard"),
    _check(check_ipv6, "create the socket with the family getaddrinfo() returns (AF_INET6 for ::1)"),
    _check(check_sigterm_with_clients, "SIGTERM: exit 0 and take every child or thread along; no copy of the "
                                       "listener may survive"),
)}


def checks(model: Model) -> list[Check]:
    """Every check, in order (the same list for every model: each check adapts to model.kind)."""
    return list(CHECKS.values())


def check(name: str) -> Check:
    return CHECKS[name]
