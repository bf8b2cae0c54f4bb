"""Lab 15 select-server: echo_select (select 版本) and echo_select_queue (含有writeList的示例).

Each test states one claim of labs/15-select-server/README.md and proves it over loopback, from
the server's log lines (labs/15-select-server/output.toml), /proc, strace and the test's own
select.select().
"""
from __future__ import annotations

import os
import re
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import time

import pytest

from harness import battery, probes
from harness.clients import TcpClient
from harness.contract import assert_cli_contract, occupy_tcp
from harness.idle_clients import IdleClients
from harness.output import ERROR, Line, contract
from harness.steps import scaled, wait_for

C = contract("15")
SELECT, QUEUE = "echo_select", "echo_select_queue"
BOTH = pytest.mark.parametrize("prog", [SELECT, QUEUE])
MODELS = [battery.Model(lab="15", program=p, kind=battery.CONCURRENT) for p in (SELECT, QUEUE)]
FD_SETSIZE = 1024
# strace's line for a select() call (the tracer's log, not the server's output): nfds, read set, write set
STRACE_SELECT_CALL = r"select6?\((\d+), (\[[\d ]*\]|NULL), (\[[\d ]*\]|NULL)"
STRACE_SELECT = re.compile(STRACE_SELECT_CALL)
NOFILE = 4096  # the server's RLIMIT_NOFILE in the FD_SETSIZE test: room for fds past 1024


def line_of(proc, name: str) -> Line:
    """The contract line `name` of the program proc runs (echo_select_queue's are named queue_...)."""
    return C.line(f"queue_{name}" if proc.name == QUEUE else name)


def matches(proc, name: str) -> list[re.Match[str]]:
    line = line_of(proc, name)
    return [m for m in map(line.match, proc.stdout.splitlines()) if m]


def wait_line(proc, name: str, pred=lambda m: True, timeout: float = 5.0) -> re.Match[str]:
    what = f"{proc.name} to print `{line_of(proc, name).template}` ({line_of(proc, name).where})"
    return wait_for(what, lambda: next((m for m in matches(proc, name) if pred(m)), None), timeout)


def start(lab, prog: str, *args: str | int, host: str = "127.0.0.1", **kw):
    return lab.server(prog, "--host", host, "--port", 0, *args, **kw)


def echo(c: TcpClient, data: bytes | str) -> None:
    """Send `data` and check that exactly those bytes come back."""
    want = data.encode() if isinstance(data, str) else data
    c.send(want)
    got = c.recv_exactly(len(want))
    assert got == want, f"expected the server to echo {want!r} byte for byte, it sent back {got!r}"


def peer_of(c: TcpClient) -> str:
    return f"127.0.0.1:{c.local_port}"


def traced_selects(pid: int, action) -> list[tuple[int, set[int], set[int]]]:
    """(nfds, read set, write set) of each select() the server makes while action() runs (strace -p)."""
    if not shutil.which("strace"):
        pytest.skip("strace is not installed (apt-get install strace)")
    tracer = subprocess.Popen(["strace", "-p", str(pid), "-e", "trace=select,pselect6"],
                              stderr=subprocess.PIPE, text=True)
    try:
        assert tracer.stderr is not None
        first = tracer.stderr.readline()
        if "attached" not in first:
            pytest.skip(f"strace cannot attach here: {first.strip()}")
        action()
        time.sleep(scaled(0.2))
    finally:
        tracer.send_signal(signal.SIGINT)
        _, rest = tracer.communicate(timeout=10)
    out = first + rest
    sets = []
    for m in STRACE_SELECT.finditer(out):
        rd, wr = ({int(x) for x in g.strip("[]").split()} if g != "NULL" else set() for g in m.groups()[1:])
        sets.append((int(m[1]), rd, wr))
    assert sets, f"strace showed no select() call:\n{out[:1500]}"
    return sets  # type: ignore[return-value]


def server_fd_of(pid: int, client: socket.socket) -> int:
    """The server's fd for the connection whose other end is `client` (matched by socket inode),
    once the server has accepted it."""
    local, peer = client.getsockname()[:2], client.getpeername()[:2]

    def find() -> int | None:
        inodes = {s.inode for s in probes.tcp_sockets(peer[1]) if s.local == peer and s.remote == local}
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{name}") in {f"socket:[{i}]" for i in inodes}:
                    return int(name)
            except FileNotFoundError:
                continue
        return None
    return wait_for(f"the server to accept the connection from {local}", find, timeout=5)


# ---- echo and logs -----------------------------------------------------------------------------

@BOTH
@pytest.mark.hint("echo exactly the bytes each recv() returned, and log accepted / recv / closed lines "
                  "as the README's Output section shows")
def test_echo_is_byte_exact_and_logged(lab, prog):
    server = start(lab, prog)
    with TcpClient("127.0.0.1", server.ready.port) as c:
        echo(c, b"hello\x00\xff\n")
        peer = peer_of(c)
    wait_line(server, "accepted", lambda m: m["peer"] == peer)
    got = wait_line(server, "recv", lambda m: m["peer"] == peer)
    assert (got["n"], got["data"]) == ("8", "hello\\x00\\xff\\n"), (
        f'expected the recv line to say 8 bytes "hello\\x00\\xff\\n" (C-escaped), it printed {got[0]!r}')
    wait_line(server, "closed", lambda m: m["peer"] == peer)


@BOTH
@pytest.mark.hint("keep each client's address with its socket: the notes log every message with the "
                  "address of the last client accepted")
def test_interleaved_clients_are_echoed_and_logged_by_their_own_address(lab, prog):
    server = start(lab, prog)
    clients = [TcpClient("127.0.0.1", server.ready.port) for _ in range(4)]
    try:
        for round_ in range(3):
            for i, c in enumerate(clients):
                c.send(f"r{round_}c{i}\n")
            for i, c in enumerate(reversed(clients)):
                j = len(clients) - 1 - i
                got = c.recv_until(b"\n")
                assert got == f"r{round_}c{j}\n".encode(), f"expected client {j}'s own line back, got {got!r}"
        for i, c in enumerate(clients):
            lines = wait_for(f"recv lines from client {i}",
                             lambda: [m for m in matches(server, "recv") if m["peer"] == peer_of(c)]
                             if len([m for m in matches(server, "recv") if m["peer"] == peer_of(c)]) >= 1
                             else None)
            text = "".join(m["data"] for m in lines)
            assert f"c{i}\\n" in text and all(f"c{k}" not in text for k in range(4) if k != i), (
                f"client {i} ({peer_of(c)}) is logged with another client's data: {text!r}")
        threads = probes.thread_count(server.pid)
        assert threads == 1, f"expected one thread to serve every client, the server has {threads}"
    finally:
        for c in clients:
            c.close()


@pytest.mark.hint("a line `quit` on stdin ends echo_select with exit 0 (the notes set `running` and never "
                  "read it): close every client, then exit")
def test_quit_on_stdin_ends_echo_select_cleanly(lab, steps):
    server = start(lab, SELECT)
    with TcpClient("127.0.0.1", server.ready.port) as a, TcpClient("127.0.0.1", server.ready.port) as b:
        echo(a, "x")
        echo(b, "y")
        with steps.step("another line is not a command; the server serves on"):
            server.send_line("stop")
            wait_line(server, "not_a_command", lambda m: m["line"] == "stop")
            echo(a, "z")
        with steps.step("quit: the quit line, exit 0, both clients see EOF"):
            server.send_line("quit")
            n = wait_line(server, "quit")["n"]
            assert n == "2", f"expected the quit line to count 2 clients, it counted {n}"
            status = server.wait_exit(scaled(5))
            assert status == C.status("stopped"), (
                f"expected exit 0 after quit, got {status}.\n" + server.report())
            rest = a.recv_until_eof(timeout=3) + b.recv_until_eof(timeout=3)
            assert rest == b"", f"expected EOF on both clients after quit, they got {rest!r} first"


@pytest.mark.hint("EOF on stdin only stops watching stdin: a server started with < /dev/null serves on")
def test_stdin_eof_stops_watching_stdin_and_serves_on(lab):
    server = start(lab, SELECT)
    server.close_stdin()
    wait_line(server, "stdin_closed")
    with TcpClient("127.0.0.1", server.ready.port) as c:
        echo(c, "still")
    share = probes.cpu_share(server.pid, 0.5)
    assert share < 0.10, (f"expected ~0 CPU after stdin's EOF, measured {share:.0%}: stdin at EOF is "
                          "readable forever, so stop watching it")
    assert server.popen.poll() is None, "expected the server to serve on after stdin's EOF, it exited"


@pytest.mark.hint("--quiet leaves out the recv lines only; accepted and closed lines stay")
def test_quiet_leaves_out_the_received_lines(lab):
    server = start(lab, QUEUE, "--quiet")
    with TcpClient("127.0.0.1", server.ready.port) as c:
        echo(c, "quiet\n")
    wait_line(server, "closed")
    assert matches(server, "accepted") and not matches(server, "recv"), (
        "expected accepted and closed lines and no recv line with --quiet.\n" + server.report())


# ---- clean close, reset, the notes' spin ---------------------------------------------------------

@BOTH
@pytest.mark.hint("on recv() == 0 close the socket and forget it: no CLOSE_WAIT may remain, and idle "
                  "CPU stays near 0")
def test_clean_close_leaves_no_close_wait_and_no_busy_loop(lab, prog):
    server = start(lab, prog)
    port = server.ready.port
    baseline = probes.fd_count(server.pid)
    for _ in range(3):
        with TcpClient("127.0.0.1", port) as c:
            c.send("bye")
            c.recv_exactly(3)
    wait_for("three closed lines", lambda: len(matches(server, "closed")) == 3, 5)
    states = probes.tcp_states(port, host="127.0.0.1")
    assert states.get("CLOSE_WAIT", 0) == 0, (
        f"expected no socket left in CLOSE_WAIT after the clients closed, the port's states are {states}")
    fds = probes.fd_count(server.pid)
    assert fds == baseline, f"expected the server's fd count back at {baseline} after the closes, it is {fds}"
    share = probes.cpu_share(server.pid, 1.0)
    assert share < 0.10, f"expected ~0 CPU once the clients left, measured {share:.0%}"


@BOTH
@pytest.mark.hint("a reset (ECONNRESET) ends that client only: log it as dropped, close it, serve on")
def test_reset_client_is_dropped_and_the_others_served(lab, prog):
    server = start(lab, prog)
    port = server.ready.port
    baseline = probes.fd_count(server.pid)
    with TcpClient("127.0.0.1", port) as other:
        c = TcpClient("127.0.0.1", port)
        echo(c, "x")
        peer = peer_of(c)
        c.reset()
        m = wait_line(server, "dropped", lambda m: m["peer"] == peer)
        assert m["ename"] == "ECONNRESET", f"expected the reset client dropped with [ECONNRESET]: {m[0]!r}"
        echo(other, "still here")
    wait_for("the fd count back to its baseline", lambda: probes.fd_count(server.pid) == baseline, 5)
    share = probes.cpu_share(server.pid, 0.5)
    assert share < 0.10, f"expected ~0 CPU after the reset, measured {share:.0%} of a core (a busy loop)"


def spin_evidence(pid: int, window: float = 1.0) -> tuple[float, float]:
    """(share of samples in state R, share of a core) over `window` s: a spinner never sleeps, so it
    is always running or runnable, however little CPU a loaded machine gives it."""
    start, samples, running = probes.cpu_seconds(pid), 0, 0
    end = time.monotonic() + window
    while time.monotonic() < end:
        samples += 1
        running += probes.state(pid) == "R"
        time.sleep(0.02)
    return running / samples, (probes.cpu_seconds(pid) - start) / window


@pytest.mark.limit(30)
@pytest.mark.hint("--notes-close-bug must keep the notes' missing branch: ignore recv() == 0, so the "
                  "closed client stays in the read set (a busy loop) and its socket in CLOSE_WAIT")
def test_notes_close_bug_spins_and_leaks_close_wait(lab, steps):
    with steps.step("the fixed server: a client leaves; it sleeps, no CLOSE_WAIT"):
        fixed = start(lab, QUEUE)
        with TcpClient("127.0.0.1", fixed.ready.port) as c:
            c.send("x")
            c.recv_exactly(1)
        wait_line(fixed, "closed")
        fixed_running, fixed_share = spin_evidence(fixed.pid)
        left = probes.tcp_states(fixed.ready.port, host="127.0.0.1").get("CLOSE_WAIT", 0)
        assert fixed_share < 0.10 and left == 0, (
            f"expected the fixed server idle with no CLOSE_WAIT, it used {fixed_share:.0%} with {left} left")
    with steps.step("--notes-close-bug: the same client; the server never sleeps again"):
        buggy = start(lab, QUEUE, "--notes-close-bug")
        with TcpClient("127.0.0.1", buggy.ready.port) as c:
            c.send("x")
            c.recv_exactly(1)
        wait_for("the client's socket in CLOSE_WAIT on the server",
                 lambda: probes.tcp_states(buggy.ready.port, host="127.0.0.1").get("CLOSE_WAIT", 0) == 1, 5)
        running, share = spin_evidence(buggy.pid)
        assert running > 0.8 and share > fixed_share + 0.02, (
            f"expected a busy loop: the server runnable in {running:.0%} of the samples, using "
            f"{share:.0%} of a core (the fixed one {fixed_share:.0%}); the notes' version measured 62%")
        assert not matches(buggy, "closed"), "expected no closed line with the bug: the FIN is never noticed"


# ---- the write set and the queue -----------------------------------------------------------------

@pytest.mark.limit(30)
@pytest.mark.hint("put a client in the write set only while its queue holds bytes: a socket is almost "
                  "always writable, so keeping it there makes select() return at once, forever")
def test_write_set_holds_a_client_only_while_its_queue_is_non_empty(lab, steps):
    server = start(lab, QUEUE)
    with TcpClient("127.0.0.1", server.ready.port) as idle, TcpClient("127.0.0.1", server.ready.port) as c:
        echo(idle, "i")
        idle_fd, fd = server_fd_of(server.pid, idle.sock), server_fd_of(server.pid, c.sock)

        def echo_once() -> None:
            echo(c, "queued")

        with steps.step("strace the selects around one echo"):
            sets = traced_selects(server.pid, echo_once)
        assert any(fd in wr for _, _, wr in sets), (
            f"expected fd {fd} in the write set while its echo was queued, it never entered it: {sets}")
        assert all(idle_fd not in wr for _, _, wr in sets), (
            f"expected the idle client's fd {idle_fd} never in the write set, it was.\nHint: a client "
            "with an empty queue in the write set is a busy loop: select() reports it writable at once")
        _, last_read, last_write = sets[-1]
        assert {idle_fd, fd} <= last_read and not last_write, (
            f"expected the last select() (idle, echo done) to watch fds {idle_fd} and {fd} for reading and "
            f"nothing for writing, it had read {sorted(last_read)} write {sorted(last_write)}")
        share = probes.cpu_share(server.pid, 1.0)
        assert share < 0.10, f"expected ~0 CPU with two idle clients, measured {share:.0%}"


@BOTH
@pytest.mark.hint("select() overwrites its sets (value-result): FD_ZERO and FD_SET every fd again before "
                  "each call, and pass nfds = the highest fd + 1")
def test_sets_are_rebuilt_before_each_call(lab, prog):
    server = start(lab, prog)
    with TcpClient("127.0.0.1", server.ready.port) as a, TcpClient("127.0.0.1", server.ready.port) as b:
        fa, fb = server_fd_of(server.pid, a.sock), server_fd_of(server.pid, b.sock)

        def talk() -> None:
            for i in range(3):
                echo(a, f"a{i}")
            echo(b, "b")

        sets = traced_selects(server.pid, talk)
        assert len(sets) >= 4 and all({fa, fb} <= rd | wr for _, rd, wr in sets), (
            f"expected fds {fa} and {fb} passed to every select() call, the calls were {sets}")
        assert all(nfds == max(rd | wr) + 1 for nfds, rd, wr in sets), (
            f"expected nfds = the highest fd passed + 1 (the kernel scans that far, not FD_SETSIZE), "
            f"the calls were {sets}")


# ---- FD_SETSIZE ------------------------------------------------------------------------------------

def raise_nofile() -> None:
    """In the server's child: RLIMIT_NOFILE {NOFILE} (root may raise the hard limit), else the hard limit."""
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    except (ValueError, OSError):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def need_fds(pid: int, n: int) -> None:
    """Skip, with the reason, when the server or this test's helper cannot hold n connections."""
    server = _soft_nofile(pid)
    helper = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if server < n + 64 or helper < n + 64:
        pytest.skip(f"needs {n + 64} open files in the server (its limit is {server}) and in the helper "
                    f"(hard limit {helper}): run as root, or raise `ulimit -Hn`")


def _soft_nofile(pid: int) -> int:
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith("Max open files"):
            return int(line.split()[3])
    return 0


@BOTH
@pytest.mark.limit(60)
@pytest.mark.hint("an fd >= FD_SETSIZE (1024) cannot go in an fd_set: FD_SET on it is undefined (with "
                  "_FORTIFY_SOURCE it aborts). Close that connection with a `refused` line, serve the rest")
def test_fd_at_or_above_fd_setsize_is_refused_and_the_others_served(lab, steps, prog):
    server = start(lab, prog, "--quiet", preexec=raise_nofile)
    port = server.ready.port
    with TcpClient("127.0.0.1", port) as canary:
        echo(canary, "c")
        need_fds(server.pid, 1100)
        with steps.step("a helper process opens 1100 idle connections"):
            with IdleClients("127.0.0.1", port, 1100) as idle:
                assert idle.connected == 1100, f"only {idle.connected} of 1100 connects completed"
                wait_for("an accepted or refused line for each of the 1100",
                         lambda: len(matches(server, "accepted")) + len(matches(server, "refused")) >= 1101,
                         timeout=20)
                refused = matches(server, "refused")
                with steps.step("the server lives; every fd >= 1024 was refused, none below"):
                    assert server.popen.poll() is None, (
                        "expected the server alive with fds past FD_SETSIZE, it exited.\n" + server.report())
                    assert refused, "expected `refused` lines once fds reached 1024, there were none"
                    fds = sorted(int(m["fd"]) for m in refused)
                    assert fds[0] >= FD_SETSIZE and {m["setsize"] for m in refused} == {"1024"}, (
                        f"expected only fds >= 1024 refused (FD_SETSIZE 1024), the first were {fds[:5]}")
                    held = [int(n) for n in os.listdir(f"/proc/{server.pid}/fd")]
                    assert max(held) < FD_SETSIZE, (
                        f"expected the server to hold no fd >= FD_SETSIZE, it keeps fd {max(held)}")
                    assert struct.calcsize("P") == 8, "a 64-bit build: FD_SETSIZE is still 1024, not 2048"
                    file_max = int(open("/proc/sys/fs/file-max").read())
                    assert file_max > NOFILE, f"fs.file-max {file_max}: the limit here is FD_SETSIZE, not it"
                with steps.step("the refused clients see their connection closed"):
                    wait_for(f"{len(refused)} helper connections closed by the server",
                             lambda: idle.ended() >= len(refused), timeout=10)
                with steps.step("the canary still echoes, idle CPU stays low"):
                    echo(canary, "still")
                    share = probes.cpu_share(server.pid, 0.5)
                    assert share < 0.10, f"expected ~0 CPU with 1000 idle clients, measured {share:.0%}"
        with steps.step("the 1100 leave; a new client is served"):
            wait_for("the server's fds back below 16", lambda: probes.fd_count(server.pid) < 16, timeout=20)
            with TcpClient("127.0.0.1", port) as again:
                echo(again, "new")


@pytest.mark.hint("Python's own select() refuses an fd >= FD_SETSIZE (ValueError); it is the fd's value "
                  "that counts, not how many fds are open")
def test_the_limit_is_on_the_fd_value_not_the_count(lab):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1501:
        pytest.skip(f"the hard fd limit {hard} is below 1501")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1501), hard))
    a, b = socket.socketpair()
    high = os.dup2(a.fileno(), 1500)
    try:
        with pytest.raises(ValueError, match="out of range"):
            select.select([high], [], [], 0)
        assert select.select([a], [], [], 0) == ([], [], [])  # a low fd, with fd 1500 open, is fine
    finally:
        os.close(high)
        a.close()
        b.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.hint("exceptfds reports urgent (OOB) data, not errors: a reset socket shows as readable")
def test_exceptfds_reports_urgent_data_not_a_reset(lab):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        for case in ("rst", "oob"):
            client = socket.create_connection(listener.getsockname())
            conn, _ = listener.accept()
            with conn:
                if case == "rst":
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    client.close()
                else:
                    client.send(b"!", socket.MSG_OOB)
                r, _, x = select.select([conn], [], [conn], 2)
                if case == "rst":
                    assert r == [conn] and x == [], f"a reset: readable {r}, exceptional {x}"
                    with pytest.raises(ConnectionResetError):
                        conn.recv(1)
                else:
                    assert x == [conn], f"urgent data should make the socket exceptional: {x}"
                    client.close()


# ---- contract ------------------------------------------------------------------------------------

@BOTH
@pytest.mark.hint("listen on 127.0.0.1 port 8088 by default (the notes' port, but never the wildcard)")
def test_default_is_port_8088_on_loopback(lab, prog):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 8088))
        except OSError:
            pytest.skip("port 8088 is in use on this machine; run the test when it is free")
    server = lab.server(prog)
    bound = (server.ready.host, server.ready.port)
    assert bound == ("127.0.0.1", 8088), f"expected the default 127.0.0.1 port 8088, the server bound {bound}"


@pytest.mark.hint("set SO_REUSEADDR before bind(): a restart must succeed while TIME_WAIT from the last "
                  "run remains on the port")
def test_restart_during_time_wait_works_with_so_reuseaddr(lab, steps):
    first = start(lab, QUEUE)
    port = first.ready.port
    c = TcpClient("127.0.0.1", port)
    c.send("x")
    c.recv_exactly(1)
    first.popen.send_signal(signal.SIGTERM)
    status = first.wait_exit(scaled(5))
    assert status == C.status("queue_stopped"), (
        f"expected exit 0 on SIGTERM, got {status}.\n" + first.report())
    rest = c.recv_until_eof(timeout=5)
    assert rest == b"", f"expected EOF once the server stopped, the client got {rest!r} first"
    c.close()
    wait_for("TIME_WAIT on the server's port", lambda: probes.tcp_states(port).get("TIME_WAIT", 0) >= 1)
    again = lab.server(QUEUE, "--port", port)
    with TcpClient("127.0.0.1", port) as d:
        echo(d, "ok")
    again.stop()


@BOTH
@pytest.mark.hint("--help exits 0, a bad option exits 2, a port in use exits 1 with [EADDRINUSE] and a hint")
def test_cli_contract(lab, prog):
    with occupy_tcp() as port:
        assert_cli_contract(lab, prog, port)
        proc = lab.run(prog, "--port", port)
        errors = [m for m in map(ERROR.match, proc.stderr.splitlines()) if m]
        status = proc.popen.returncode
        named = bool(errors) and errors[0]["prog"] == prog and errors[0]["ename"] == "EADDRINUSE"
        assert status == C.status("failed" if prog == SELECT else "queue_failed") and named, (
            f"a port already in use should give the error line `{ERROR.template}` naming {prog} and "
            f"[EADDRINUSE], then exit 1; it exited {status}.\n" + proc.report())


# ---- the bad-client battery of the server labs (harness/battery.py) -----------------------------

@pytest.mark.limit(90)
@pytest.mark.parametrize("check", [pytest.param((m, c), id=f"{m.program}-{c.name}",
                                                marks=pytest.mark.hint(c.hint))
                                   for m in MODELS for c in battery.checks(m)])
def test_battery(lab, steps, check):
    model, c = check
    c.run(lab, model, steps)
