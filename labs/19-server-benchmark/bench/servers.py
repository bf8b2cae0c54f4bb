"""The servers lab 19's benchmark measures: what each one is, how to start it, and how to stop it.

    from .servers import catalogue, missing, running
    for server in catalogue(Path("build/dev")):          # every server built or installed here
        with running(server, cpu=0) as r:                  # started, ready, its port known
            ...  # drive 127.0.0.1:r.port; on leaving, the whole process group is gone
    for name, fix in missing(Path("build/dev")):           # ("libuv", "apt-get install libuv1-dev")
        ...

Three kinds: "lab" (the echo servers of labs 11-18, started with --quiet), "ceiling" (the in-run
references: rr_floor for latency, echo_minimal for throughput, iperf3 for bulk bytes) and "peer"
(echo servers on real libraries, from peers/, and the external tools sockperf and socat).
A server with a ready line is started on port 0 and its port read from `READY tcp <host> <port>`;
one without (the external tools) is started on a free port we pick and is ready once that port has
a listening socket of its own (seen in /proc/net/tcp: no probe connection, which a one-shot tool
would take for its client).
Every server here sets TCP_NODELAY on its connections (the lab servers through lab::set_nodelay,
common/echo.hpp). The lab servers echo in recv()s of 1024 bytes; without TCP_NODELAY a message
longer than that waited for the client's delayed ACK (Nagle's algorithm, RFC 896), measured on
one connection with 16 KiB messages: about 25 round trips/s (40 ms each) against thousands.
Not every server speaks the same protocol: `protocol` is "echo" (raw bytes back, any size),
"sockperf" (drive it with `sockperf pp` or `sockperf tp` only; sockperf's client cannot drive a
plain echo either: it waits for replies whose header sockperf's server has marked) or "iperf3"
(drive it with `iperf3 -c`). build_dir is a build folder (build/dev, build/asan): the programs
are in its bin/. After the block, Running.exit_status says how the server ended (0 for every
program of ours on SIGTERM; -9 if it needed SIGKILL). Stdlib only.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import IO, Callable, Iterator

LAB_DIR = Path(__file__).resolve().parent.parent      # labs/19-server-benchmark
PYTHON = "/usr/bin/python3"                             # Debian's, as the whole suite uses
FD_SETSIZE = 1024
SELECT_MAX = FD_SETSIZE - 16    # fds 0-2, the listener and a margin stay below FD_SETSIZE
READY_RE = re.compile(rb"^READY tcp (\S+) (\d{1,5})$", re.MULTILINE)
STOP_GRACE = 2.0                # seconds between SIGTERM and SIGKILL


@dataclass(frozen=True)
class Server:
    name: str            # unique id for CSV rows and --servers
    kind: str            # "lab" | "peer" | "ceiling"
    model: str           # "iterative", "fork", "thread", "busy-poll", "select", "poll", "epoll-lt", ...
    version: str         # "lab 18"; a peer's Debian package and version: "libasio-dev 1:1.22.1-1"
    max_connections: int | None   # None: no limit by design; iterative 1; select FD_SETSIZE-16
    argv_template: tuple[str, ...]   # "{port}" where the port goes
    ready_line: bool     # True: prints READY (started on port 0); False: ready once it listens
    protocol: str = "echo"   # "echo" | "sockperf" | "iperf3" (see the module docstring)
    note: str = ""           # why the limit, or what to know when reading its numbers
    stdin_template: str = ""  # what its stdin holds ("{port}" replaced); else empty

    def command(self, port: int) -> list[str]:
        """The command line that starts it on `port` (0 for a server with a ready line)."""
        return [arg.replace("{port}", str(port)) for arg in self.argv_template]

    def stdin_text(self, port: int) -> str:
        return self.stdin_template.replace("{port}", str(port))


@dataclass(frozen=True)
class _Spec:
    """A server as the catalogue knows it before looking at this machine."""
    name: str
    kind: str
    model: str
    max_connections: int | None
    program: str           # a built program's name, a tool on PATH, or a path to a script
    args: tuple[str, ...]
    ready_line: bool
    lab: str = ""          # "11": a lab program, built by that lab
    package: str = ""      # the Debian package that provides it (peers: its library)
    protocol: str = "echo"
    note: str = ""
    stdin: str = ""


def _lab(name: str, lab: str, model: str, program: str, *extra: str, limit: int | None = None,
         note: str = "") -> _Spec:
    return _Spec(name, "lab", model, limit, program, ("--port", "{port}", "--quiet", *extra), True,
                 lab=lab, note=note)


_SELECTORS = LAB_DIR / "peers" / "peer_selectors.py"
_SPECS: tuple[_Spec, ...] = (
    _lab("iterative", "11", "iterative", "echo_iterative", limit=1,
         note="serves one client at a time: the others wait, connected, in the accept queue"),
    _lab("fork", "12", "fork", "echo_fork", limit=1024,
         note="a process per client, at most 1024 children (its own cap; RLIMIT_NPROC bounds it too)"),
    _lab("thread", "13", "thread", "echo_thread", note="a thread per client, default 8 MiB stacks"),
    _lab("nonblock", "14", "busy-poll", "echo_nonblock",
         note="spins on non-blocking recv(): 100% of a core; give it a core of its own"),
    _lab("select", "15", "select", "echo_select", limit=SELECT_MAX,
         note="refuses fds >= FD_SETSIZE (1024); its stdin is empty: `quit` never comes"),
    _lab("poll", "16", "poll", "echo_poll"),
    _lab("epoll_api_lt", "17", "epoll-lt", "epoll_lt_echo",
         note="lab 17's LT echo: one 1024-byte chunk per client"),
    _lab("epoll_lt", "18", "epoll-lt", "echo_epoll", "--mode", "lt"),
    _lab("epoll_et", "18", "epoll-et", "echo_epoll", "--mode", "et"),
    _lab("epoll_lt_64k", "18", "epoll-lt", "echo_epoll", "--mode", "lt", "--read-size", "65536",
         note="lab 18 with 64 KiB reads instead of the notes' 1024 bytes: what the read size is worth"),
    _lab("epoll_et_64k", "18", "epoll-et", "echo_epoll", "--mode", "et", "--read-size", "65536",
         note="lab 18, edge-triggered, with 64 KiB reads"),
    _Spec("rr_floor", "ceiling", "blocking", 1, "rr_floor", ("--port", "{port}"), True, lab="19",
          note="blocking, one client at a time: one read() and one write per round trip"),
    _Spec("echo_minimal", "ceiling", "epoll-lt", None, "echo_minimal", ("--port", "{port}"), True,
          lab="19", note="one epoll LT loop, 64 KiB reads, nothing else"),
    _Spec("iperf3", "ceiling", "bulk", None, "iperf3", ("-s", "-B", "127.0.0.1", "-p", "{port}"),
          False, package="iperf3", protocol="iperf3",
          note="W5's bulk ceiling: not an echo; run `iperf3 -c 127.0.0.1 -p PORT` against it"),
    _Spec("asio", "peer", "epoll-et", None, "peer_asio", ("--port", "{port}"), True,
          package="libasio-dev", note="standalone Asio, one io_context; 64 KiB async_read_some"),
    _Spec("libuv", "peer", "epoll-lt", None, "peer_libuv", ("--port", "{port}"), True,
          package="libuv1-dev", note="one uv loop; a 64 KiB buffer per read"),
    _Spec("libevent", "peer", "epoll-lt", None, "peer_libevent", ("--port", "{port}"), True,
          package="libevent-dev", note="bufferevents; libevent 2.1 reads at most 4096 B per call"),
    # `-F epoll` needs a feed file (without one, sockperf sr blocks in recvfrom() on one socket):
    # one line `T:host:port` per TCP listener, read here from stdin.
    _Spec("sockperf", "peer", "epoll-lt", None, "sockperf", ("sr", "-f", "/dev/stdin", "-F", "epoll"),
          False, package="sockperf", protocol="sockperf", stdin="T:127.0.0.1:{port}\n",
          note="sockperf's own protocol: only sockperf's client drives it (and that client cannot "
          "drive a plain echo server: it waits for replies marked by sockperf's server); reports "
          "half the RTT; listen backlog 10"),
    _Spec("socat", "peer", "fork", None, "socat",
          ("TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,nodelay", "PIPE"), False,
          package="socat", note="a process per client, echoing through a pipe"),
    _Spec("python_selectors", "peer", "epoll-lt", None, str(_SELECTORS), ("--port", "{port}"), True,
          package="python3", note="Python selectors (epoll), 64 KiB recv"),
)
NAMES = tuple(spec.name for spec in _SPECS)


def bin_dir(build_dir: Path) -> Path:
    """Where a build puts every program (the top-level CMakeLists.txt: <build>/bin)."""
    return Path(build_dir) / "bin"


@cache
def debian_version(package: str) -> str:
    """`libasio-dev 1:1.22.1-1` from dpkg-query, or `<package> (not installed)`."""
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return f"{package} (unknown version)"
    return f"{package} {out.stdout.strip()}" if out.returncode == 0 and out.stdout.strip() \
        else f"{package} (not installed)"


def _executable(path: Path | str | None) -> bool:
    return path is not None and os.path.isfile(path) and os.access(path, os.X_OK)


def _argv0(spec: _Spec, build_dir: Path) -> list[str] | None:
    """The start of its command line on this machine, or None if it is not there."""
    if spec.name == "python_selectors":
        return [PYTHON, spec.program] if _executable(PYTHON) and Path(spec.program).is_file() else None
    if spec.lab or spec.program.startswith("peer_"):
        path = bin_dir(build_dir) / spec.program
        return [str(path)] if _executable(path) else None
    tool = shutil.which(spec.program)
    return [tool] if tool else None


def _server(spec: _Spec, argv0: list[str]) -> Server:
    version = f"lab {spec.lab}" if spec.lab else debian_version(spec.package)
    return Server(spec.name, spec.kind, spec.model, version, spec.max_connections,
                  (*argv0, *spec.args), spec.ready_line, spec.protocol, spec.note, spec.stdin)


def catalogue(build_dir: Path) -> list[Server]:
    """Every server whose program or tool exists here, labs first, then ceilings, then peers."""
    found = []
    for spec in _SPECS:
        argv0 = _argv0(spec, build_dir)
        if argv0 is not None:
            found.append(_server(spec, argv0))
    order = {"lab": 0, "ceiling": 1, "peer": 2}
    return sorted(found, key=lambda s: order[s.kind])


def missing(build_dir: Path) -> list[tuple[str, str]]:
    """(name, what to do) for every server that is not there: the apt-get command when its
    Debian package is not installed, else the build command that makes it."""
    out = []
    for spec in _SPECS:
        if _argv0(spec, build_dir) is not None:
            continue
        if spec.package and debian_version(spec.package).endswith("(not installed)"):
            fix = f"apt-get install {spec.package}"
        elif spec.lab or spec.program.startswith("peer_"):
            fix = f"cmake --build {build_dir} --target {spec.program}"
        else:
            fix = f"apt-get install {spec.package or spec.program}"
        out.append((spec.name, fix))
    return out


def by_name(servers: list[Server], names: str) -> list[Server]:
    """The servers named in a comma-separated list ("epoll_lt,asio"), in that order; a name that is
    not in `servers` raises ValueError naming the known ones."""
    index = {s.name: s for s in servers}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in index]
    if unknown:
        raise ValueError(f"unknown or unavailable server(s) {', '.join(unknown)}; "
                         f"available: {', '.join(index)}")
    return [index[n] for n in wanted]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (bound to port 0, read, closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# ---- processes -----------------------------------------------------------------------------------

@dataclass
class Running:
    server: Server
    pid: int      # also its process group id
    port: int
    exit_status: int | None = None   # set once running() has stopped it (-9: it needed SIGKILL)


def _tail(f: IO[bytes], limit: int = 2000) -> str:
    f.seek(0)
    text = f.read().decode(errors="replace").strip()
    return ("..." + text[-limit:]) if len(text) > limit else (text or "(nothing)")


def listening_inodes(port: int) -> set[str]:
    """Inodes of the TCP sockets listening on `port` (state 0A in /proc/net/tcp and tcp6)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    found.add(target[8:-1])
    return found


def group_members(pgid: int) -> list[int]:
    """Every process (zombies too) whose process group is `pgid`, from /proc/PID/stat."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()   # after "pid (comm) "
            if int(fields[2]) == pgid:
                members.append(int(entry))
    return members


def _wait_until(done: Callable[[], bool], seconds: float) -> bool:
    end = time.monotonic() + seconds
    while not done():
        if time.monotonic() >= end:
            return False
        time.sleep(0.02)
    return True


def _reap_ours(pgid: int) -> None:
    """waitpid() the group's zombies that are our children (a subreaper gets a fork server's)."""
    for pid in group_members(pgid):
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)


def _gone(pgid: int) -> bool:
    _reap_ours(pgid)
    return not group_members(pgid)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole group, SIGKILL after STOP_GRACE, reap; returns once none is left."""
    pgid = proc.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        pass
    if not _wait_until(lambda: _gone(pgid), 0.2):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    proc.wait()
    _wait_until(lambda: _gone(pgid), STOP_GRACE)


@contextlib.contextmanager
def running(server: Server, cpu: int | None = None, timeout: float = 10.0) -> Iterator[Running]:
    """Start `server` in its own process group (under `taskset -c cpu` when cpu is given), with
    its stdin_text on stdin and its output in temporary files (nothing can block on a full pipe);
    wait until it is ready; on leaving, stop the whole group (SIGTERM, SIGKILL after 2 s) and reap
    it. RuntimeError names the server and shows the tail of its stderr if it exits or is not ready
    within `timeout` seconds. A server started on a port we picked gets two more tries if it exits
    at once: another process may have taken that port meanwhile."""
    for attempt in range(3):
        port = 0 if server.ready_line else free_port()
        argv = server.command(port)
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu), *argv]    # taskset execs the server: same pid
        with tempfile.TemporaryFile() as inp, tempfile.TemporaryFile() as out, \
                tempfile.TemporaryFile() as err:
            inp.write(server.stdin_text(port).encode())
            inp.seek(0)
            proc = subprocess.Popen(argv, stdin=inp, stdout=out, stderr=err, start_new_session=True)
            try:
                port = _wait_ready(server, proc, port, out, err, timeout)
            except _ExitedEarly as e:
                _stop(proc)
                if server.ready_line or attempt == 2:
                    raise RuntimeError(str(e)) from None
                continue
            except BaseException:
                _stop(proc)
                raise
            r = Running(server, proc.pid, port)
            try:
                yield r
            finally:
                _stop(proc)
                r.exit_status = proc.returncode
            return


class _ExitedEarly(Exception):
    pass


def _wait_ready(server: Server, proc: subprocess.Popen[bytes], port: int, out: IO[bytes],
                err: IO[bytes], timeout: float) -> int:
    """The port it serves on, once it is ready."""
    end = time.monotonic() + timeout
    while True:
        if server.ready_line:
            out.seek(0)
            m = READY_RE.search(out.read())
            if m:
                return int(m.group(2))
        elif listening_inodes(port) & _socket_inodes(proc.pid):
            return port
        if proc.poll() is not None:
            raise _ExitedEarly(f"server {server.name} exited with status {proc.returncode} before "
                               f"it was ready ({' '.join(proc.args)}); its stderr:\n{_tail(err)}")
        if time.monotonic() >= end:
            what = "printed no READY line" if server.ready_line else f"did not listen on {port}"
            raise RuntimeError(f"server {server.name} {what} within {timeout:g} s "
                               f"({' '.join(proc.args)}); its stderr:\n{_tail(err)}")
        time.sleep(0.02)
