"""Lab 18 epoll-server: echo_epoll (--mode lt|et) and epoll_et_naive (the notes' ET server).

Each test states one claim of labs/18-epoll-server/README.md. Besides the echo itself, the tests
look at the server from outside: /proc/PID/fdinfo of its epoll fd (one `tfd:` line per registered
fd, with the events it watches), /proc/PID/fd and fdinfo flags, the accept queue (Recv-Q of the
listener in /proc/net/tcp), CPU time and VmRSS. Where the claim is about the notes' server, the
same scenario runs against epoll_et_naive and shows the bug, and against echo_epoll for the fix.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import struct
import time

import pytest

from harness import battery, idle, probes
from harness.clients import ClientTimeout, TcpClient
from harness.contract import assert_cli_contract, occupy_tcp
from harness.output import USAGE, contract
from harness.steps import scaled, wait_for

C = contract("18")
ECHO, NAIVE = "echo_epoll", "epoll_et_naive"
MODES = ["lt", "et"]
IN, OUT, ERR, HUP, RDHUP, ET = 0x1, 0x4, 0x8, 0x10, 0x2000, 1 << 31
IDLE_MAX = battery.IDLE_MAX
IDLE_CLIENTS = 10_000
DRAIN_HINT = ("Hint: edge-triggered epoll reports bytes when they arrive, not while they wait: read (and "
              "accept) in a loop until the call fails with EAGAIN")
WATER_HINT = ("Hint: no high-water mark: above a bound of bytes waiting for one client, stop reading it "
              "(take EPOLLIN off its registration) so that TCP flow control holds the client back")


# ---- looking at the server from outside ---------------------------------------------------------

def matches(proc, name: str) -> list[re.Match[str]]:
    return C[name].findall(proc.stdout)


def wait_line(proc, name: str, pred=lambda m: True, timeout: float = 5.0) -> re.Match[str]:
    what = f"{proc.name} to print `{C[name].template}` ({C[name].where})"
    return wait_for(what, lambda: next((m for m in matches(proc, name) if pred(m)), None), timeout)


def registered(pid: int) -> dict[int, int]:
    """The interest list of the process's one epoll fd, from /proc/PID/fdinfo: {fd: events}."""
    fds = [int(n) for n in os.listdir(f"/proc/{pid}/fd")
           if os.readlink(f"/proc/{pid}/fd/{n}") == "anon_inode:[eventpoll]"]
    assert len(fds) == 1, f"expected one epoll fd in the server, found {fds}"
    with open(f"/proc/{pid}/fdinfo/{fds[0]}") as f:
        rows = [row.split() for row in f.read().splitlines()]
    # `tfd:        5 events:       19 data:       5  pos:0 ino:...` (proc(5), /proc/pid/fdinfo)
    return {int(row[1]): int(row[3], 16) for row in rows if len(row) >= 4 and row[0] == "tfd:"}


def fd_flags(pid: int, fd: int) -> int:
    """The file status flags of one fd (octal `flags:` in /proc/PID/fdinfo/FD)."""
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        rows = [row.split() for row in f.read().splitlines()]
    return next(int(row[1], 8) for row in rows if len(row) == 2 and row[0] == "flags:")


def server_fd(server, client: TcpClient | socket.socket) -> int:
    """The server's fd number for the connection of this client (socket inode -> /proc/PID/fd),
    once the server has accepted it."""
    sock = client.sock if isinstance(client, TcpClient) else client
    cport = sock.getsockname()[1]

    def lookup() -> int | None:
        pair = (server.ready.port, cport)
        rows = [r for r in probes.tcp_sockets(cport) if (r.local[1], r.remote[1]) == pair]
        targets = {f"socket:[{r.inode}]" for r in rows}
        for name in os.listdir(f"/proc/{server.pid}/fd"):
            try:
                if os.readlink(f"/proc/{server.pid}/fd/{name}") in targets:
                    return int(name)
            except FileNotFoundError:
                pass
        return None
    return wait_for(f"the server to accept the client from port {cport} (an fd in /proc/PID/fd)", lookup, 3)


def mask_of(server, client) -> int:
    fd = server_fd(server, client)
    return wait_for(f"fd {fd} on the interest list", lambda: registered(server.pid).get(fd), 3)


def names(mask: int) -> str:
    bits = [(IN, "EPOLLIN"), (OUT, "EPOLLOUT"), (ERR, "EPOLLERR"), (HUP, "EPOLLHUP"), (RDHUP, "EPOLLRDHUP"),
            (ET, "EPOLLET")]
    return f"{mask:#x} " + ("|".join(n for b, n in bits if mask & b) or "none")


def listener_queue(port: int) -> int:
    """Connections waiting in the accept queue (Recv-Q of the listener)."""
    rows = [r for r in probes.tcp_sockets(port) if r.state == "LISTEN" and r.local[1] == port]
    return rows[0].recv_q if rows else -1


def cpu_over(pid: int, seconds: float) -> float:
    return probes.cpu_share(pid, seconds)


def push(sock: socket.socket, limit: int, seconds: float, stall: float = 0.3) -> int:
    """Send without reading until EAGAIN for `stall` s, `limit` bytes or `seconds`: bytes taken."""
    sock.setblocking(False)
    chunk = b"u" * (256 << 10)
    sent, end, blocked = 0, time.monotonic() + scaled(seconds), None
    while sent < limit and time.monotonic() < end:
        try:
            sent += sock.send(chunk[:limit - sent])
            blocked = None
        except BlockingIOError:
            blocked = blocked or time.monotonic()
            if time.monotonic() - blocked >= stall:
                break
            time.sleep(0.01)
    return sent


def rst(sock: socket.socket) -> None:
    """close() that sends RST: SO_LINGER {1, 0}."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def stopped(pid: int):
    """A context: the process stopped (SIGSTOP) inside, continued (SIGCONT) after, even on failure."""
    class Stopped:
        def __enter__(self):
            os.kill(pid, signal.SIGSTOP)
            wait_for("the server stopped (state T)", lambda: probes.state(pid) == "T", 3)

        def __exit__(self, *exc):
            os.kill(pid, signal.SIGCONT)
    return Stopped()


def echo_server(lab, mode: str, *args: str | int, host: str = "127.0.0.1", **kw):
    return lab.server(ECHO, "--mode", mode, "--host", host, "--port", 0, *args, **kw)


# ---- echo_epoll ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@pytest.mark.hint("echo exactly the bytes each recv() returned, and log accepted / recv / closed lines as "
                  "the README's Output section shows")
def test_echo_is_byte_exact_and_logged(lab, mode):
    server = echo_server(lab, mode)
    with TcpClient("127.0.0.1", server.ready.port) as c:
        c.send(b"hello\x00\xff\n")
        assert c.recv_exactly(8) == b"hello\x00\xff\n"
        peer = f"127.0.0.1:{c.local_port}"
    wait_line(server, "accepted", lambda m: m["peer"] == peer)
    got = wait_line(server, "recv", lambda m: m["peer"] == peer)
    assert (got["n"], got["data"]) == ("8", "hello\\x00\\xff\\n"), got[0]
    wait_line(server, "closed", lambda m: m["peer"] == peer)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.hint("in ET mode read until recv() fails with EAGAIN: 3000 bytes sent at once are one event "
                  "but three 1024-byte reads")
def test_3000_bytes_in_one_send_come_back_whole(lab, steps, mode):
    server = echo_server(lab, mode)
    payload = bytes(range(256)) * 11 + b"e" * 184
    with steps.step("3000 bytes in one send(), echoed"):
        with TcpClient("127.0.0.1", server.ready.port) as c:
            c.send(payload)
            try:
                echoed = c.recv_exactly(3000, timeout=3)
            except ClientTimeout as e:
                raise AssertionError(f"expected all 3000 bytes back within 3 s ({mode}): {e}\n"
                                     f"{DRAIN_HINT}") from None
            peer = f"127.0.0.1:{c.local_port}"
        assert echoed == payload, "the 3000 bytes came back changed"
    with steps.step("the log shows reads of at most 1024 bytes adding up to 3000"):
        wait_line(server, "closed", lambda m: m["peer"] == peer)
        sizes = [int(m["n"]) for m in matches(server, "recv") if m["peer"] == peer]
        assert sizes and max(sizes) <= 1024 and sum(sizes) == 3000, f"logged reads {sizes}"


@pytest.mark.parametrize("mode", MODES)
def test_read_size_sets_what_one_recv_asks_for(lab, steps, mode):
    """--read-size 65536: the 3000 bytes of one send() are no longer cut into 1024-byte reads
    (lab 19 measures what the larger reads save)."""
    server = echo_server(lab, mode, "--read-size", 65536)
    payload = bytes(range(256)) * 11 + b"e" * 184
    with steps.step("3000 bytes in one send(), echoed"):
        with TcpClient("127.0.0.1", server.ready.port) as c:
            c.send(payload)
            echoed = c.recv_exactly(3000, timeout=3)
            peer = f"127.0.0.1:{c.local_port}"
        assert echoed == payload, "the 3000 bytes came back changed"
    with steps.step("the log shows a read of more than 1024 bytes, the reads adding up to 3000"):
        wait_line(server, "closed", lambda m: m["peer"] == peer)
        sizes = [int(m["n"]) for m in matches(server, "recv") if m["peer"] == peer]
        assert sizes and max(sizes) > 1024 and sum(sizes) == 3000, f"logged reads {sizes}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.limit(30)
@pytest.mark.hint("in ET mode accept until accept4() fails with EAGAIN: clients that connect together are "
                  "one event on the listener")
def test_three_clients_that_connect_together_are_all_accepted(lab, steps, mode):
    server = echo_server(lab, mode)
    port = server.ready.port
    clients = []
    try:
        with steps.step("the server is stopped while three clients connect and send"):
            with stopped(server.pid):
                for i in range(3):
                    clients.append(TcpClient("127.0.0.1", port))
                    clients[-1].send(f"client {i}\n")
                assert wait_for("3 connections in the accept queue", lambda: listener_queue(port) == 3, 3)
        with steps.step("continued: all three are accepted and echoed"):
            try:
                wait_for("3 accepted lines", lambda: len(matches(server, "accepted")) == 3, 3)
            except AssertionError:
                raise AssertionError(
                    f"expected all 3 queued clients accepted ({mode}); accepted lines: "
                    f"{len(matches(server, 'accepted'))}, still queued: {listener_queue(port)}\n"
                    f"{DRAIN_HINT}") from None
            for i, c in enumerate(clients):
                assert c.recv_exactly(9, timeout=3) == f"client {i}\n".encode()
    finally:
        for c in clients:
            c.close()


@pytest.mark.hint("create the listener with SOCK_NONBLOCK and accept with accept4(SOCK_NONBLOCK): an event "
                  "loop must never sleep in one socket's call")
def test_every_socket_is_non_blocking(lab):
    server = echo_server(lab, "et")
    with TcpClient("127.0.0.1", server.ready.port) as c:
        c.send("x")
        c.recv_exactly(1)
        fds = sorted(registered(server.pid))
        assert len(fds) == 2, f"expected the listener and one client registered, found {fds}"
        for fd in fds:
            flags = fd_flags(server.pid, fd)
            assert flags & os.O_NONBLOCK, f"fd {fd} is blocking (fdinfo flags {flags:o} lack O_NONBLOCK)"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.limit(40)
@pytest.mark.hint("watch EPOLLOUT only while an echo waits to be sent, and drop it once everything went: "
                  "a socket is almost always writable, so a permanent EPOLLOUT spins a level-triggered loop")
def test_epollout_is_watched_only_while_an_echo_waits(lab, steps, mode):
    server = echo_server(lab, mode, "--quiet")
    idle_mask = IN | ERR | HUP | RDHUP | (ET if mode == "et" else 0)
    spin_hint = ("\nHint: EPOLLOUT with nothing to send: a socket is almost always writable, so a "
                 "level-triggered loop wakes at once, forever")

    def assert_idle(what: str) -> None:
        mask = mask_of(server, c)
        share = cpu_over(server.pid, 0.5)
        assert mask == idle_mask and share < IDLE_MAX, (
            f"expected {what} registered as {names(idle_mask)} and the server idle; fdinfo says "
            f"{names(mask)}, CPU {share:.0%} of a core" + (spin_hint if mask & OUT else ""))

    with TcpClient("127.0.0.1", server.ready.port) as c:
        with steps.step("an idle client: EPOLLIN|EPOLLRDHUP (+ERR|HUP), no EPOLLOUT, no CPU used"):
            c.send("x")
            c.recv_exactly(1)
            assert_idle("an idle client")
        with steps.step("the client stops reading 16 MiB of echo: EPOLLOUT is on, the server waits"):
            data = os.urandom(16 << 20)
            sender = c.send_in_background(data)
            try:
                wait_for("EPOLLOUT on the stuck client", lambda: mask_of(server, c) & OUT, 5)
            except AssertionError:
                raise AssertionError(
                    f"expected EPOLLOUT on the registration of a client whose echo cannot be sent, it is "
                    f"{names(mask_of(server, c))}.\nHint: when send() says EAGAIN keep the rest and add "
                    "EPOLLOUT, then send it when epoll says the socket is writable") from None
            share = cpu_over(server.pid, 0.5)
            assert share < IDLE_MAX, f"the server used {share:.0%} of a core while it could only wait"
        with steps.step("it reads everything: byte-exact"):
            got = bytearray()
            c.sock.settimeout(scaled(5))
            while len(got) < len(data) and (chunk := c.sock.recv(65536)):
                got += chunk
            sender.join(5)
            assert bytes(got) == data, "the 16 MiB echo differs"
        with steps.step("nothing waits any more: EPOLLOUT is off, the server idle again"):
            wait_for("the registration back to the idle mask", lambda: mask_of(server, c) == idle_mask, 3)
            assert_idle("the drained client")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.limit(40)
@pytest.mark.hint("keep a high-water mark per client: above it stop reading that client (no EPOLLIN), so "
                  "a client that never reads is held back by TCP instead of filling the server's memory")
def test_high_water_mark_bounds_memory_while_a_100mib_upload_meets_a_non_reader(lab, steps, mode):
    server = echo_server(lab, mode, "--quiet")
    rss0 = probes.rss_kib(server.pid)
    a = socket.create_connection(("127.0.0.1", server.ready.port), timeout=5)
    try:
        with steps.step("client A uploads up to 100 MiB and never reads"):
            taken = push(a, 100 << 20, seconds=5)
            growth = (probes.rss_kib(server.pid) - rss0) << 10
            mask = mask_of(server, a)
            assert taken < 100 << 20 and growth < 16 << 20 and not mask & IN, (
                f"expected A stalled by TCP with the server's memory bounded and A's reading paused; the "
                f"kernel took {taken >> 20} MiB of A's upload, the server's RSS grew {growth >> 20} MiB, its "
                f"registration is {names(mask)}\n{WATER_HINT}")
        with steps.step("client B is served meanwhile"):
            with TcpClient("127.0.0.1", server.ready.port) as b:
                b.send("ping\n")
                assert b.recv_exactly(5, timeout=3) == b"ping\n"
    finally:
        a.close()


@pytest.mark.limit(30)
@pytest.mark.hint("keep each connection's state (its output buffer) with its fd and erase it when you close "
                  "the fd: the next client given the same fd number must start empty")
def test_a_reset_clients_bytes_are_never_sent_to_the_next_client_on_its_fd(lab, steps):
    server = echo_server(lab, "et", "--quiet")
    port = server.ready.port
    with steps.step("client A pushes 0.5 s without reading, then resets"):
        a = socket.create_connection(("127.0.0.1", port), timeout=5)
        a_fd = server_fd(server, a)
        push(a, 64 << 20, seconds=0.5, stall=0.5)
        cport = a.getsockname()[1]
        rst(a)
        wait_line(server, "dropped", lambda m: m["peer"] == f"127.0.0.1:{cport}")
    with steps.step("client B connects, sends nothing, reads for 0.7 s: nothing may come"):
        with TcpClient("127.0.0.1", port) as b:
            b_fd = server_fd(server, b)
            try:
                leaked = b.recv_some(timeout=0.7)
            except ClientTimeout:
                leaked = b""
        assert leaked == b"", (
            f"client B (server fd {b_fd}; A had fd {a_fd}) received {len(leaked)} bytes it never sent: A's "
            "echo.\nHint: per-fd state outlived its connection: erase a connection's buffers when you close "
            "its fd, since the kernel gives the next client the same number")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.hint("test event bits with &: an RST reports EPOLLIN|EPOLLERR|EPOLLHUP, and then unregister "
                  "and close the socket")
def test_reset_client_is_dropped_unregistered_and_closed(lab, steps, mode):
    server = echo_server(lab, mode)
    baseline = probes.fd_count(server.pid)
    c = TcpClient("127.0.0.1", server.ready.port)
    c.send("x")
    assert c.recv_exactly(1) == b"x"
    peer = f"127.0.0.1:{c.local_port}"
    c.reset()
    m = wait_line(server, "dropped", lambda m: m["peer"] == peer, timeout=3)
    assert m["ename"] == "ECONNRESET", m[0]
    wait_for("the fd count back to its baseline", lambda: probes.fd_count(server.pid) == baseline, 3)
    assert len(registered(server.pid)) == 1, registered(server.pid)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.limit(30)
@pytest.mark.hint("recv() returning 0 (EPOLLRDHUP, the client's FIN) ends the reading only: send what is "
                  "still waiting, then close")
def test_half_closed_client_gets_every_byte_then_eof_even_while_paused(lab, steps, mode):
    server = echo_server(lab, mode, "--quiet")
    data = os.urandom(16 << 20)  # more than the kernel's buffers hold
    with TcpClient("127.0.0.1", server.ready.port) as c:
        with steps.step("16 MiB, then shutdown(SHUT_WR), not reading: the server pauses reading"):
            sender = c.send_in_background(data, then_shutdown=True)
            wait_for("the client paused at the high-water mark",
                     lambda: not registered(server.pid).get(server_fd(server, c), IN) & IN, 5)
            time.sleep(0.5)
        with steps.step("it reads: the whole 16 MiB, then EOF"):
            got = c.recv_until_eof(timeout=10)
            sender.join(5)
        assert got == data, f"expected the 16 MiB back, then EOF; got {len(got)} bytes"
        wait_line(server, "closed", lambda m: m["peer"] == f"127.0.0.1:{c.local_port}")


def _nofile_32() -> None:
    import resource
    resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.limit(40)
@pytest.mark.hint("at EMFILE close a reserved fd, accept the client, close it at once (log it) and reopen "
                  "the reserve: the queued connection otherwise keeps the listener readable forever")
def test_out_of_fds_clients_are_shed_through_a_reserved_fd_without_spinning(lab, steps, mode):
    server = echo_server(lab, mode, preexec=_nofile_32)
    port = server.ready.port
    socks = []
    try:
        with steps.step("40 clients at RLIMIT_NOFILE 32: one `out of fds` line, then `shed` lines"):
            for _ in range(40):
                s = socket.socket()
                s.settimeout(5)
                s.connect(("127.0.0.1", port))
                socks.append(s)
            full = wait_line(server, "full", timeout=5)
            assert full["ename"] == "EMFILE", full[0]
            wait_for("shed lines", lambda: matches(server, "shed"), 5)
        with steps.step("a shed client reads EOF at once; the server does not spin"):
            shed = {m["peer"] for m in matches(server, "shed")}
            eofs = [s for s in socks if f"127.0.0.1:{s.getsockname()[1]}" in shed]
            assert eofs and eofs[-1].recv(1) == b"", "a shed client should read EOF"
            share = cpu_over(server.pid, 1.0)
            assert share < IDLE_MAX, (
                f"expected the server idle at its fd limit, it used {share:.0%} of a core.\nHint: accept4() "
                "failing with EMFILE leaves the client queued and the listener readable: shed it with a "
                "reserved fd")
            assert len(matches(server, "full")) == 1, "one `out of fds` line, until a client leaves"
    finally:
        for s in socks:
            s.close()
    with steps.step("the clients leave: `fds free again`, and a new client is served"):
        wait_line(server, "free", timeout=5)
        with TcpClient("127.0.0.1", port) as c:
            c.send("again\n")
            assert c.recv_exactly(6, timeout=5) == b"again\n"


@pytest.mark.hint("--quiet leaves out the recv lines only; accepted and closed lines stay")
def test_quiet_leaves_out_the_received_lines(lab):
    server = echo_server(lab, "et", "--quiet")
    with TcpClient("127.0.0.1", server.ready.port) as c:
        c.send("quiet\n")
        assert c.recv_exactly(6) == b"quiet\n"
    wait_line(server, "closed")
    assert matches(server, "accepted") and not matches(server, "recv"), server.report()


@pytest.mark.hint("listen on 127.0.0.1 port 8088 by default (the notes' port, on loopback only)")
def test_default_is_the_notes_port_8088_on_loopback(lab):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 8088))
        except OSError:
            pytest.skip("port 8088 is in use on this machine; run the test when it is free")
    server = lab.server(ECHO)
    assert (server.ready.host, server.ready.port) == ("127.0.0.1", 8088), server.ready


@pytest.mark.hint("set SO_REUSEADDR before bind(): a restart must succeed while TIME_WAIT from the last "
                  "run remains on the port")
def test_restart_during_time_wait_works_with_so_reuseaddr(lab, steps):
    with steps.step("a client is connected when the server is stopped: the server closes first"):
        first = echo_server(lab, "et")
        port = first.ready.port
        c = TcpClient("127.0.0.1", port)
        c.send("x")
        c.recv_exactly(1)
        first.popen.send_signal(signal.SIGTERM)
        assert first.wait_exit(5) == C.status("echo_stopped"), first.report()
        assert c.recv_until_eof(timeout=5) == b""
        c.close()
        wait_for("TIME_WAIT on the server's port", lambda: probes.tcp_states(port).get("TIME_WAIT", 0) >= 1)
    with steps.step("restart on the same port at once"):
        again = lab.server(ECHO, "--mode", "et", "--port", port)
        with TcpClient("127.0.0.1", port) as d:
            d.send("ok")
            assert d.recv_exactly(2) == b"ok"
        assert again.ready.port == port


@pytest.mark.hint("--help exits 0; an unknown option, a --mode other than lt/et or a bad --high-water exit "
                  "2 with usage on stderr; a port in use exits 1 with [EADDRINUSE] and a hint")
def test_cli_contract(lab):
    with occupy_tcp() as port:
        assert_cli_contract(lab, ECHO, port)
    for bad in (["--mode", "edge"], ["--high-water", "0"], ["--high-water", "lots"], ["--read-size", "0"]):
        proc = lab.run(ECHO, *bad, "--port", 0)
        assert proc.popen.returncode == C.status("echo_usage") and USAGE.find(proc.stderr), proc.report()


MODELS = [battery.Model(lab="18", program=ECHO, kind=battery.CONCURRENT, args=("--mode", m)) for m in MODES]
BATTERY = [pytest.param(model, c, id=f"{model.args[1]}-{c.name}", marks=pytest.mark.hint(c.hint))
           for model in MODELS for c in battery.checks(model)]


@pytest.mark.limit(90)
@pytest.mark.parametrize("model, check", BATTERY)
def test_battery(lab, steps, model, check):
    check.run(lab, model, steps)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.limit(120)
@pytest.mark.hint("with 10,000 idle clients registered an epoll server still sleeps in epoll_wait and serves "
                  "an active client at once: keep per-connection state small and never scan every client")
def test_10000_idle_connections_while_an_active_client_still_echoes(lab, steps, mode):
    need = IDLE_CLIENTS + 64
    server = echo_server(lab, mode, "--quiet", preexec=lambda: idle.raise_nofile(need))
    if idle.nofile_limit(server.pid) < need:
        pytest.skip(f"the server's RLIMIT_NOFILE is {idle.nofile_limit(server.pid)} and cannot be raised to "
                    f"{need} here (an unprivileged run, or a grader's fd limit, under a lower hard "
                    "limit): run as root or raise `ulimit -Hn`")
    base_fds, base_rss = probes.fd_count(server.pid), probes.rss_kib(server.pid)
    with steps.step(f"a helper process opens {IDLE_CLIENTS} idle connections"):
        try:
            holder = idle.connections(lab, "127.0.0.1", server.ready.port, IDLE_CLIENTS)
            held = holder.__enter__()
        except AssertionError as e:
            if idle.NOFILE_SHORT in str(e):
                pytest.skip(f"the idle-connection helper could not raise its fd limit: {e}")
            raise
    try:
        with steps.step("the server holds them all"):
            wait_for(f"{IDLE_CLIENTS} more fds in the server",
                     lambda: probes.fd_count(server.pid) >= base_fds + IDLE_CLIENTS, 30)
            assert len(registered(server.pid)) == IDLE_CLIENTS + 1
            per_conn = ((probes.rss_kib(server.pid) - base_rss) << 10) / IDLE_CLIENTS
            assert per_conn < 64 << 10, f"{per_conn / 1024:.1f} KiB of RSS per idle connection"
        with steps.step("idle: the server sleeps"):
            share = cpu_over(server.pid, 2.0)
            assert share < IDLE_MAX, (
                f"expected under {IDLE_MAX:.0%} of a core with {IDLE_CLIENTS} idle clients, measured "
                f"{share:.0%}.\nHint: something wakes the loop or scans every client while nothing happens")
        with steps.step("an active client: 1 MiB echoed byte-exact, a small echo at once"):
            data = os.urandom(1 << 20)
            with TcpClient("127.0.0.1", server.ready.port) as c:
                sender = c.send_in_background(data)
                assert c.recv_exactly(len(data), timeout=10) == data, "the 1 MiB echo differs"
                sender.join(5)
                t0 = time.monotonic()
                c.send("ping\n")
                assert c.recv_exactly(5, timeout=5) == b"ping\n"
                latency = time.monotonic() - t0
            print(f"{mode}: {per_conn:.0f} B RSS per idle connection, {share:.1%} CPU idle, "
                  f"echo round trip {latency * 1000:.1f} ms")
    finally:
        holder.__exit__(None, None, None)
    with steps.step("the helper resets them all: the server is back at its baseline"):
        wait_for("the server's fd count back to its baseline",
                 lambda: probes.fd_count(server.pid) <= base_fds, 30)
        assert held.popen.returncode == 0, held.report()


# ---- epoll_et_naive: the notes' ET server, its bugs kept ---------------------------------------

def naive(lab):
    return lab.server(NAIVE, "--port", 0)


def naive_matches(proc, name: str) -> list[re.Match[str]]:
    return matches(proc, "naive-" + name)


@pytest.mark.limit(30)
@pytest.mark.hint("epoll_et_naive keeps the notes' bug: one recv(1024) per edge-triggered event, so of "
                  "3000 bytes sent at once 1024 come back, and the next 1024 only when new bytes arrive")
def test_naive_echoes_1024_of_3000_bytes_until_new_bytes_arrive(lab, steps):
    server = naive(lab)
    payload = os.urandom(3000)
    with TcpClient("127.0.0.1", server.ready.port) as c:
        with steps.step("3000 bytes in one send(): 1024 come back, the rest is stranded"):
            c.send(payload)
            assert c.recv_exactly(1024, timeout=3) == payload[:1024]
            try:
                more = c.recv_some(timeout=1.0)
            except ClientTimeout:
                more = b""
            assert more == b"", f"expected nothing more, got {len(more)} bytes"
        with steps.step("one new byte is a new edge: the next 1024 come back (ET notifies again)"):
            c.send(b"!")
            assert c.recv_exactly(1024, timeout=3) == payload[1024:2048]
        # Read the log while the client is still connected: its FIN would be one more edge.
        wait_for("two recv lines", lambda: len(naive_matches(server, "recv")) >= 2, 3)
        sizes = [int(m["n"]) for m in naive_matches(server, "recv")]
        assert sizes == [1024, 1024], f"expected two logged reads of 1024 bytes, logged {sizes}"


@pytest.mark.limit(30)
@pytest.mark.hint("epoll_et_naive keeps the notes' bug: one accept() per edge-triggered event, so of three "
                  "clients that connect together one is accepted and two wait in the accept queue")
def test_naive_accepts_1_of_3_clients_that_connect_together(lab, steps):
    server = naive(lab)
    port = server.ready.port
    clients = []
    try:
        with steps.step("the server is stopped while three clients connect"):
            with stopped(server.pid):
                clients = [TcpClient("127.0.0.1", port) for _ in range(3)]
                wait_for("3 connections in the accept queue", lambda: listener_queue(port) == 3, 3)
        with steps.step("continued: one accepted, two still queued"):
            wait_for("an accepted line", lambda: naive_matches(server, "accepted"), 3)
            time.sleep(0.5)
            assert len(naive_matches(server, "accepted")) == 1 and listener_queue(port) == 2, (
                f"accepted {len(naive_matches(server, 'accepted'))}, queued {listener_queue(port)}")
        with steps.step("a fourth client is a new edge: one more accepted (the oldest), still two queued"):
            clients.append(TcpClient("127.0.0.1", port))
            wait_for("a second accepted line", lambda: len(naive_matches(server, "accepted")) == 2, 3)
            first_two = [m["peer"] for m in naive_matches(server, "accepted")]
            assert first_two == [f"127.0.0.1:{c.local_port}" for c in clients[:2]], first_two
            assert wait_for("two still queued", lambda: listener_queue(port) == 2, 3)
    finally:
        for c in clients:
            c.close()


@pytest.mark.limit(30)
@pytest.mark.hint("epoll_et_naive keeps the notes' bug: `events == EPOLLIN` never matches an RST "
                  "(EPOLLIN|EPOLLERR|EPOLLHUP), so the reset socket is never closed")
def test_naive_leaves_a_reset_socket_open(lab, steps):
    server = naive(lab)
    baseline = probes.fd_count(server.pid)
    c = TcpClient("127.0.0.1", server.ready.port)
    c.send("x")
    assert c.recv_exactly(1) == b"x"
    fd = server_fd(server, c)
    with steps.step("the client resets: its fd stays open and registered"):
        c.reset()
        time.sleep(0.5)
        assert probes.fd_count(server.pid) == baseline + 1, "expected the reset socket still open"
        assert fd in registered(server.pid), registered(server.pid)
        assert os.readlink(f"/proc/{server.pid}/fd/{fd}").startswith("socket:")
        assert not naive_matches(server, "closed")
    with steps.step("edge-triggered, the leak is quiet: no busy loop"):
        assert cpu_over(server.pid, 0.5) < IDLE_MAX


@pytest.mark.hint("--help exits 0, an unknown option exits 2 with usage on stderr")
def test_naive_cli_contract(lab):
    assert_cli_contract(lab, NAIVE)

