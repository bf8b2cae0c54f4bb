"""Lab 16 poll-server: echo_poll, the server the notes' poll版本 describes in prose only.

Each test states one claim of labs/16-poll-server/README.md and proves it over loopback, from
the server's log lines (labs/16-poll-server/output.toml), /proc and strace.
"""
from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import time

import pytest

from harness import battery, probes
from harness.clients import TcpClient
from harness.contract import assert_cli_contract, occupy_tcp
from harness.idle_clients import IdleClients
from harness.output import ERROR, contract
from harness.steps import scaled, wait_for

C = contract("16")
POLL = "echo_poll"
MODEL = battery.Model(lab="16", program=POLL, kind=battery.CONCURRENT)
NOFILE = 4096   # the server's RLIMIT_NOFILE in the high-fd test
POLLIN, POLLOUT = 0x1, 0x4
# strace's line for a poll() call and its pollfd entries (the tracer's log, not the server's output)
STRACE_POLL_CALL = r"p?poll\(\[(.*?)\], (\d+),"
STRACE_POLL = re.compile(STRACE_POLL_CALL)
STRACE_POLLFD_ENTRY = r"\{fd=(-?\d+), events=([A-Z|0]+)\}"
STRACE_POLLFD = re.compile(STRACE_POLLFD_ENTRY)


def matches(proc, name: str) -> list[re.Match[str]]:
    line = C.line(name)
    return [m for m in map(line.match, proc.stdout.splitlines()) if m]


def wait_line(proc, name: str, pred=lambda m: True, timeout: float = 5.0) -> re.Match[str]:
    what = f"{proc.name} to print `{C.line(name).template}` ({C.line(name).where})"
    return wait_for(what, lambda: next((m for m in matches(proc, name) if pred(m)), None), timeout)


def start(lab, *args: str | int, host: str = "127.0.0.1", **kw):
    return lab.server(POLL, "--host", host, "--port", 0, *args, **kw)


def echo(c: TcpClient, data: bytes | str) -> None:
    """Send `data` and check that exactly those bytes come back."""
    want = data.encode() if isinstance(data, str) else data
    c.send(want)
    got = c.recv_exactly(len(want))
    assert got == want, f"expected the server to echo {want!r} byte for byte, it sent back {got!r}"


def peer_of(c: TcpClient) -> str:
    return f"127.0.0.1:{c.local_port}"


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


EVENT_NAMES = {"POLLIN": POLLIN, "POLLPRI": 0x2, "POLLOUT": POLLOUT, "POLLRDHUP": 0x2000}


def traced_polls(pid: int, action) -> list[tuple[int, dict[int, int]]]:
    """(nfds, {fd: events}) of each poll() the server makes while action() runs, via strace -p."""
    if not shutil.which("strace"):
        pytest.skip("strace is not installed (apt-get install strace)")
    tracer = subprocess.Popen(["strace", "-p", str(pid), "-e", "trace=poll,ppoll", "-e", "abbrev=none"],
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
    calls = []
    for m in STRACE_POLL.finditer(first + rest):
        entries = {}
        for fd, ev in STRACE_POLLFD.findall(m[1]):
            entries[int(fd)] = sum(EVENT_NAMES.get(n, 0) for n in ev.split("|"))
        calls.append((int(m[2]), entries))
    assert calls, f"strace showed no poll() call:\n{(first + rest)[:1500]}"
    return calls


# ---- echo and logs -----------------------------------------------------------------------------

@pytest.mark.hint("echo exactly the bytes each recv() returned, and log accepted / recv / closed lines "
                  "as the README's Output section shows")
def test_echo_is_byte_exact_and_logged(lab):
    server = start(lab)
    with TcpClient("127.0.0.1", server.ready.port) as c:
        echo(c, b"hello\x00\xff\n")
        peer = peer_of(c)
    wait_line(server, "accepted", lambda m: m["peer"] == peer)
    got = wait_line(server, "recv", lambda m: m["peer"] == peer)
    assert (got["n"], got["data"]) == ("8", "hello\\x00\\xff\\n"), (
        f'expected the recv line to say 8 bytes "hello\\x00\\xff\\n" (C-escaped), it printed {got[0]!r}')
    wait_line(server, "closed", lambda m: m["peer"] == peer)


def recv_data(server, peer: str) -> str:
    """The data of every recv line the server has printed for one peer, joined."""
    return "".join(m["data"] for m in matches(server, "recv") if m["peer"] == peer)


@pytest.mark.hint("one thread, one poll() loop: every client in the array, each logged by its own address")
def test_interleaved_clients_in_one_thread(lab):
    server = start(lab)
    clients = [TcpClient("127.0.0.1", server.ready.port) for _ in range(4)]
    try:
        for round_ in range(3):
            for i, c in enumerate(clients):
                c.send(f"r{round_}c{i}\n")
            for i in reversed(range(4)):
                got = clients[i].recv_until(b"\n")
                assert got == f"r{round_}c{i}\n".encode(), f"expected client {i}'s own line back, got {got!r}"
        for i, c in enumerate(clients):
            peer = peer_of(c)
            mine = [f"r{r}c{i}\\n" for r in range(3)]
            # an echo can come back before its recv line has come through the pipe: wait for them
            wait_for(f"client {i}'s three lines in the recv lines of {peer}",
                     lambda: all(line in recv_data(server, peer) for line in mine), 5, fail=False)
            text = recv_data(server, peer)
            assert f"c{i}\\n" in text and all(f"c{k}" not in text for k in range(4) if k != i), (
                f"expected client {i}'s recv lines to carry only its own data, they carry {text!r}")
        threads = probes.thread_count(server.pid)
        assert threads == 1, f"expected one thread to serve every client, the server has {threads}"
    finally:
        for c in clients:
            c.close()


@pytest.mark.hint("--quiet leaves out the recv lines only; accepted and closed lines stay")
def test_quiet_leaves_out_the_received_lines(lab):
    server = start(lab, "--quiet")
    with TcpClient("127.0.0.1", server.ready.port) as c:
        echo(c, "quiet\n")
    wait_line(server, "closed")
    assert matches(server, "accepted") and not matches(server, "recv"), (
        "expected accepted and closed lines and no recv line with --quiet.\n" + server.report())


@pytest.mark.hint("on recv() == 0 close the socket and drop it from the array: no CLOSE_WAIT, no busy loop")
def test_clean_close_leaves_no_close_wait_and_no_busy_loop(lab):
    server = start(lab)
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


@pytest.mark.hint("POLLERR/POLLHUP come unasked: on them call recv() (ECONNRESET), log dropped, close")
def test_reset_client_is_dropped_and_the_others_served(lab):
    server = start(lab)
    port = server.ready.port
    baseline = probes.fd_count(server.pid)
    with TcpClient("127.0.0.1", port) as other:
        c = TcpClient("127.0.0.1", port)
        echo(c, "x")
        peer = peer_of(c)
        c.reset()
        ename = wait_line(server, "dropped", lambda m: m["peer"] == peer)["ename"]
        assert ename == "ECONNRESET", f"expected the reset client dropped with [ECONNRESET], it was [{ename}]"
        echo(other, "still here")
    wait_for("the fd count back to its baseline", lambda: probes.fd_count(server.pid) == baseline, 5)
    share = probes.cpu_share(server.pid, 0.5)
    assert share < 0.10, f"expected ~0 CPU after the reset, measured {share:.0%} of a core (a busy loop)"


# ---- the array ---------------------------------------------------------------------------------

@pytest.mark.limit(30)
@pytest.mark.hint("ask for POLLOUT only while a client's queue holds bytes: a socket is almost always "
                  "writable, so asking for it always makes poll() return at once, forever")
def test_pollout_only_while_the_queue_is_non_empty_and_every_fd_in_each_call(lab, steps):
    server = start(lab)
    port = server.ready.port
    idle = [TcpClient("127.0.0.1", port) for _ in range(5)]
    try:
        c = TcpClient("127.0.0.1", port)
        fds = [server_fd_of(server.pid, x.sock) for x in idle]
        fd = server_fd_of(server.pid, c.sock)

        def echo_once() -> None:
            echo(c, "queued")

        with steps.step("strace the polls around one echo"):
            calls = traced_polls(server.pid, echo_once)
        with steps.step("every call passes all 7 fds (O(n) per call); POLLOUT only for the echo"):
            assert all(nfds == 7 and set(fds) | {fd} <= set(e) for nfds, e in calls), (
                f"expected every poll() to pass all 7 fds (listener, 5 idle clients, the echo client), "
                f"they passed {calls}")
            assert any(e[fd] & POLLOUT for _, e in calls), f"fd {fd} never asked for POLLOUT: {calls}"
            assert all(not e[f] & POLLOUT for _, e in calls for f in fds), (
                "expected no POLLOUT for the idle clients, an idle client asked for it.\nHint: POLLOUT with "
                "nothing to send is a busy loop: poll() reports the socket writable at once, every time")
            assert calls[-1][1][fd] == POLLIN, (
                f"expected fd {fd} to ask for POLLIN only once its echo was sent, the last poll() had "
                f"{calls[-1]}")
        share = probes.cpu_share(server.pid, 1.0)
        assert share < 0.10, f"expected ~0 CPU with six idle clients, measured {share:.0%}"
        c.close()
    finally:
        for x in idle:
            x.close()


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


@pytest.mark.limit(60)
@pytest.mark.hint("poll() takes an array of fds, with no FD_SETSIZE: a client whose fd is above 1500 is "
                  "served like any other")
def test_serves_a_client_whose_fd_is_above_1500(lab, steps):
    server = start(lab, "--quiet", preexec=raise_nofile)
    port = server.ready.port
    need_fds(server.pid, 1500)
    with steps.step("a helper process opens 1500 idle connections"):
        with IdleClients("127.0.0.1", port, 1500) as idle:
            assert idle.connected == 1500, f"only {idle.connected} of 1500 connects completed"
            wait_for("1500 accepted lines", lambda: len(matches(server, "accepted")) >= 1500, timeout=20)
            with steps.step("one more client: its fd is above 1500, and it is echoed"):
                with TcpClient("127.0.0.1", port) as c:
                    fd = server_fd_of(server.pid, c.sock)
                    assert fd > 1500, f"expected the new client's fd above 1500, it is {fd}"
                    echo(c, b"high fd\n")
            ended = idle.ended()
            assert ended == 0, f"expected the server to keep all 1500 idle clients, it closed {ended}"
            share = probes.cpu_share(server.pid, 0.5)
            assert share < 0.10, f"{share:.0%} of a core with 1500 idle clients"
    wait_for("the server's fds back below 16", lambda: probes.fd_count(server.pid) < 16, timeout=20)


IDLE_10K = 10_000      # issue 12: poll() serves on with ten thousand idle connections
NOFILE_10K = IDLE_10K + 256


def raise_nofile_10k() -> None:
    """In the server's child: room for the 10,000 idle connections (within the hard limit)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    want = NOFILE_10K if hard == resource.RLIM_INFINITY else min(NOFILE_10K, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


@pytest.mark.limit(90)
@pytest.mark.hint("with 10,000 idle clients in the pollfd array, poll() still sleeps until one is ready: an "
                  "active client is echoed byte for byte and the idle server uses ~0 CPU; keep each client's "
                  "queue with its own fd")
def test_ten_thousand_idle_clients_and_an_active_one_is_echoed(lab, steps):
    server = start(lab, "--quiet", preexec=raise_nofile_10k)
    port = server.ready.port
    need_fds(server.pid, IDLE_10K)
    with steps.step(f"a helper process opens {IDLE_10K} idle connections"):
        with IdleClients("127.0.0.1", port, IDLE_10K, timeout=60) as idle:
            assert idle.connected == IDLE_10K, (
                f"expected all {IDLE_10K} connects to complete, only {idle.connected} did")
            wait_for(f"{IDLE_10K} accepted lines",
                     lambda: len(matches(server, "accepted")) >= IDLE_10K, timeout=30)
            with steps.step("an active client: 64 rounds of 4096 random bytes, each echoed exactly"):
                with TcpClient("127.0.0.1", port) as c:
                    for _ in range(64):
                        echo(c, os.urandom(4096))
            with steps.step("idle again: poll() sleeps, under 10% of a core, every idle client kept"):
                share = probes.cpu_share(server.pid, 1.0)
                assert share < 0.10, (
                    f"expected under 10% of a core with {IDLE_10K} idle clients, measured {share:.0%}: "
                    "poll() should block until a client is ready, not return at once")
                ended = idle.ended()
                assert ended == 0, (
                    f"expected the server to keep all {IDLE_10K} idle clients, it closed {ended}")
                assert server.popen.poll() is None, (
                    f"expected the server alive with {IDLE_10K} clients, it exited.\n" + server.report())
    with steps.step("the idle clients leave; the server closes them all"):
        wait_for("the server's fds back below 16", lambda: probes.fd_count(server.pid) < 16, timeout=30)

def nofile_64() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


@pytest.mark.hint("--show-nfds-limit: poll() with nfds = RLIMIT_NOFILE succeeds (0 ready with fd -1 "
                  "entries), one more is EINVAL (poll(2)); print both lines and exit 0")
def test_nfds_above_rlimit_nofile_is_einval(lab):
    proc = lab.run(POLL, "--show-nfds-limit", preexec=nofile_64)
    status = proc.popen.returncode
    assert status == C.status("stopped"), (
        f"expected exit 0 after the two nfds lines, got {status}.\n" + proc.report())
    got = [(m["nfds"], m["limit"], m["ready"], m["ename"]) for m in matches(proc, "nfds")]
    assert got == [("64", "64", "0", None), ("65", "64", None, "EINVAL")], (
        f"expected nfds 64 -> 0 ready and nfds 65 -> EINVAL with RLIMIT_NOFILE 64, got {got}\n"
        f"{proc.report()}")


# ---- contract ----------------------------------------------------------------------------------

@pytest.mark.hint("listen on 127.0.0.1 port 8088 by default (as lab 15, never the wildcard address)")
def test_default_is_port_8088_on_loopback(lab):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 8088))
        except OSError:
            pytest.skip("port 8088 is in use on this machine; run the test when it is free")
    server = lab.server(POLL)
    bound = (server.ready.host, server.ready.port)
    assert bound == ("127.0.0.1", 8088), f"expected the default 127.0.0.1 port 8088, the server bound {bound}"


@pytest.mark.hint("set SO_REUSEADDR before bind(): a restart must succeed while TIME_WAIT from the last "
                  "run remains on the port")
def test_restart_during_time_wait_works_with_so_reuseaddr(lab):
    first = start(lab)
    port = first.ready.port
    c = TcpClient("127.0.0.1", port)
    c.send("x")
    c.recv_exactly(1)
    first.popen.send_signal(signal.SIGTERM)
    status = first.wait_exit(scaled(5))
    assert status == C.status("stopped"), f"expected exit 0 on SIGTERM, got {status}.\n" + first.report()
    rest = c.recv_until_eof(timeout=5)
    assert rest == b"", f"expected EOF once the server stopped, the client got {rest!r} first"
    c.close()
    wait_for("TIME_WAIT on the server's port", lambda: probes.tcp_states(port).get("TIME_WAIT", 0) >= 1)
    again = lab.server(POLL, "--port", port)
    with TcpClient("127.0.0.1", port) as d:
        echo(d, "ok")
    again.stop()


@pytest.mark.hint("--help exits 0, a bad option exits 2, a port in use exits 1 with [EADDRINUSE] and a hint")
def test_cli_contract(lab):
    with occupy_tcp() as port:
        assert_cli_contract(lab, POLL, port)
        proc = lab.run(POLL, "--port", port)
        errors = [m for m in map(ERROR.match, proc.stderr.splitlines()) if m]
        status = proc.popen.returncode
        named = bool(errors) and errors[0]["prog"] == POLL and errors[0]["ename"] == "EADDRINUSE"
        assert status == C.status("failed") and named, (
            f"a port already in use should give the error line `{ERROR.template}` naming {POLL} and "
            f"[EADDRINUSE], then exit 1; it exited {status}.\n" + proc.report())


# ---- the bad-client battery of the server labs (harness/battery.py) -----------------------------

@pytest.mark.limit(90)
@pytest.mark.parametrize("check", [pytest.param(c, id=c.name, marks=pytest.mark.hint(c.hint))
                                   for c in battery.checks(MODEL)])
def test_battery(lab, steps, check):
    check.run(lab, MODEL, steps)
