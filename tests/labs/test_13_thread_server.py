"""Lab 13 thread-server: echo_thread, one thread per client.

Each test states one claim of labs/13-thread-server/README.md and proves it over loopback, from
outside the process (/proc: task list, fd table, VmSize). Log lines come from the lab's output
contract (labs/13-thread-server/output.toml).
"""
from __future__ import annotations

import os
import resource
import signal
import time

import pytest

from harness import battery, probes
from harness.clients import TcpClient
from harness.contract import assert_help_and_usage, occupy_tcp
from harness.output import ERROR, HINT, contract
from harness.steps import wait_for

pytestmark = pytest.mark.tsan

C = contract("13")
MODEL = battery.Model(lab="13", program="echo_thread", kind=battery.CONCURRENT)
SANITIZED = bool(os.environ.get("SOCKLAB_SANITIZE"))
TSAN = os.environ.get("SOCKLAB_SANITIZE") == "thread"
# glibc gives each new thread its own malloc arena (64 MiB of address space, up to 8 per core):
# one arena keeps VmSize about stacks alone. The server behaves the same either way.
ONE_ARENA = {**os.environ, "MALLOC_ARENA_MAX": "1"}
MIB = 1024  # VmSize is in KiB


def start(lab, *args: str | int, warm: bool = True, **kw):
    server = lab.server("echo_thread", "--port", 0, *args, **kw)
    if TSAN and warm:  # tsan starts a thread of its own with the program's first thread: let it, first
        TcpClient(server.ready.host, server.ready.port).close()
        server.expect(C.line("accepted"))  # that client's lines are not the test's
        wait_for("the first client's thread done, tsan's own thread beside main",
                 lambda: _ended(server) and probes.thread_count(server.pid) == 2, timeout=10)
    return server


def _ended(server) -> bool:
    """A closed or dropped line has been printed."""
    return any(C.line(n).match(row) for row in server.stdout.splitlines() for n in ("closed", "dropped"))


def echo_once(port: int, data: bytes = b"ping\n", host: str = "127.0.0.1") -> bytes:
    with TcpClient(host, port, timeout=5) as c:
        c.send(data)
        return c.recv_exactly(len(data))


def lines_named(server, name: str) -> list:
    line = C.line(name)
    return [m for m in map(line.match, server.stdout.splitlines()) if m]


def settled_threads(pid: int, want: int, what: str) -> int:
    return wait_for(f"{what}: {want} threads in /proc/{pid}/task",
                    lambda: probes.thread_count(pid) == want and want, timeout=5)


@pytest.mark.limit(90)
@pytest.mark.parametrize("check", [pytest.param(c, id=c.name, marks=pytest.mark.hint(c.hint))
                                   for c in battery.checks(MODEL)])
def test_battery(lab, steps, check):
    check.run(lab, MODEL, steps)


@pytest.mark.hint("echo every byte back exactly, in order: loop recv(), then send all of what it returned")
def test_echo_is_byte_exact(lab):
    server = start(lab, "--quiet")
    payload = os.urandom(256 * 1024)
    with TcpClient("127.0.0.1", server.ready.port, timeout=10) as c:
        c.send(b"x")
        assert c.recv_exactly(1) == b"x"
        c.send(payload)
        assert c.recv_exactly(len(payload)) == payload, "the echo differs from what was sent"
        c.shutdown_write()
        assert c.recv_until_eof() == b"", "expected EOF after the echo"
    server.expect(C.line("closed"))


@pytest.mark.hint("log one accepted line per accept(), one recv line per recv() and one closed line when "
                  "recv() returns 0, in the README's formats; --quiet drops the recv lines only")
def test_log_lines_follow_the_output_contract(lab):
    server = start(lab)
    with TcpClient("127.0.0.1", server.ready.port) as c:
        c.send(b"hello\n")
        assert c.recv_exactly(6) == b"hello\n"
        port = c.local_port
    acc = server.expect(C.line("accepted"))
    assert acc["peer"] == f"127.0.0.1:{port}", server.report()
    rcv = server.expect(C.line("recv"))
    assert (rcv["n"], rcv["peer"], rcv["data"]) == ("6", f"127.0.0.1:{port}", "hello\\n"), server.report()
    server.expect(C.line("closed"))
    quiet = start(lab, "--quiet")
    assert echo_once(quiet.ready.port) == b"ping\n"
    quiet.expect(C.line("closed"))
    assert not lines_named(quiet, "recv"), f"--quiet logs no recv lines\n{quiet.report()}"


@pytest.mark.hint("serve each client in its own thread, so an idle client never delays another one")
def test_clients_are_served_at_once(lab, steps):
    server = start(lab, "--quiet")
    port = server.ready.port
    base = probes.thread_count(server.pid)
    with TcpClient("127.0.0.1", port) as idle, TcpClient("127.0.0.1", port) as half:
        with steps.step("two clients connected, one idle, one with half a line: two more threads"):
            half.send(b"half a li")
            settled_threads(server.pid, base + 2, "one thread per connected client")
        with steps.step("a third client is echoed at once while the first two stay connected"):
            t0 = time.monotonic()
            assert echo_once(port, b"third\n") == b"third\n"
            assert time.monotonic() - t0 < 2, "the third client waited for the others"
        assert half.recv_exactly(9) == b"half a li"
        del idle


@pytest.mark.hint("the worker thread closes its client's fd when the client leaves, and the thread ends: "
                  "threads and fds must return to where they were")
def test_thread_and_fd_per_client_return_to_baseline(lab, steps):
    server = start(lab, "--quiet")
    pid, port = server.pid, server.ready.port
    threads, fds = probes.thread_count(pid), probes.fd_count(pid)
    clients = []
    with steps.step("5 clients connected: 5 more threads and 5 more fds"):
        for _ in range(5):
            clients.append(TcpClient("127.0.0.1", port))
            clients[-1].send(b"hi")
            assert clients[-1].recv_exactly(2) == b"hi"
        settled_threads(pid, threads + 5, "5 clients")
        assert probes.fd_count(pid) == fds + 5, probes.fd_targets(pid)
    with steps.step("they leave: back to the baseline"):
        for c in clients:
            c.close()
        settled_threads(pid, threads, "every client gone")
        wait_for("the fd count back to its baseline", lambda: probes.fd_count(pid) == fds, timeout=5)


def run_clients(port: int, n: int) -> None:
    for i in range(n):
        assert echo_once(port, b"%d\n" % i) == b"%d\n" % i


@pytest.mark.limit(90)
@pytest.mark.hint("joinable threads never joined keep their stacks: create them detached "
                  "(pthread_attr_setdetachstate / std::thread::detach) or join them")
def test_300_clients_leave_no_thread_and_no_stack_behind(lab, steps):
    server = start(lab, "--quiet", env=ONE_ARENA)
    pid = server.pid
    threads = probes.thread_count(pid)
    with steps.step("one client first, so glibc's first thread stack and arena exist"):
        run_clients(server.ready.port, 1)
        settled_threads(pid, threads, "the first client gone")
        before = probes.vm_size_kib(pid)
    with steps.step("300 clients, one after another"):
        run_clients(server.ready.port, 300)
    with steps.step("threads back to the baseline, VmSize not grown by a stack per client"):
        settled_threads(pid, threads, "300 clients gone")
        grown = probes.vm_size_kib(pid) - before
        print(f"VmSize grew {grown / MIB:.1f} MiB over 300 clients (a stack is 8 MiB: 2400 MiB if leaked)")
        assert grown < 200 * MIB, (f"expected VmSize to grow by less than 200 MiB over 300 clients, "
                                   f"measured {grown / MIB:.0f} MiB: a stack is kept per finished thread")


@pytest.mark.limit(60)
@pytest.mark.hint("--joinable-leak creates joinable threads and never joins them: each finished one must "
                  "keep its stack (VmSize grows by one stack per client) while /proc/PID/task shrinks back")
def test_notes_joinable_leak_keeps_a_stack_per_finished_client(lab, steps):
    stack_kib, n = 4096, 40
    server = start(lab, "--quiet", "--joinable-leak", "--stack-kib", stack_kib, env=ONE_ARENA)
    pid = server.pid
    threads = probes.thread_count(pid)
    run_clients(server.ready.port, 1)
    settled_threads(pid, threads, "the first client gone")
    before = probes.vm_size_kib(pid)
    with steps.step(f"{n} clients, one after another"):
        run_clients(server.ready.port, n)
    with steps.step("the threads are gone from /proc/PID/task, but their stacks stay"):
        settled_threads(pid, threads, f"{n} finished clients")
        grown = probes.vm_size_kib(pid) - before
        per = grown / n
        print(f"--joinable-leak: VmSize grew {grown / MIB:.0f} MiB over {n} clients, "
              f"{per:.0f} KiB per client (stack {stack_kib} KiB)")
        assert per >= 0.9 * stack_kib, (f"expected VmSize to grow by a {stack_kib} KiB stack per finished "
                                        f"client, measured {per:.0f} KiB per client")


def vm_per_thread(lab, stack_kib: int | None, n: int = 20) -> tuple[float, float]:
    """(VmSize, VmRSS) growth in KiB per connected client thread."""
    args = ["--quiet"] + (["--stack-kib", str(stack_kib)] if stack_kib else [])
    server = start(lab, *args, env=ONE_ARENA)
    pid, port = server.pid, server.ready.port
    threads = probes.thread_count(pid)
    clients: list[TcpClient] = []
    try:
        for i in range(n + 1):
            clients.append(c := TcpClient("127.0.0.1", port))
            c.send(b"x")
            assert c.recv_exactly(1) == b"x"
            if i == 0:  # the first thread also makes glibc's shared thread state: measure from here
                vsz, rss = probes.vm_size_kib(pid), probes.rss_kib(pid)
        settled_threads(pid, threads + n + 1, f"{n + 1} clients connected")
        return (probes.vm_size_kib(pid) - vsz) / n, (probes.rss_kib(pid) - rss) / n
    finally:
        for c in clients:
            c.close()
        server.stop()


@pytest.mark.skipif(SANITIZED, reason="sanitizers add their own per-thread memory; run the dev build")
@pytest.mark.hint("--stack-kib N sets each client thread's stack size (pthread_attr_setstacksize) to N KiB")
def test_stack_kib_sets_the_address_space_each_thread_takes(lab):
    default_stack = resource.getrlimit(resource.RLIMIT_STACK)[0] // 1024
    measured = {}
    for stack in (None, 256):
        vsz, rss = vm_per_thread(lab, stack)
        measured[stack] = vsz
        want = stack or default_stack
        print(f"--stack-kib {stack or '(default)'}: VmSize +{vsz:.0f} KiB, VmRSS +{rss:.0f} KiB per thread")
        assert want <= vsz <= want + 512, (
            f"expected each thread to add its {want} KiB stack (+ a guard page) to VmSize, "
            f"measured {vsz:.0f} KiB")
        assert rss < vsz / 4, f"expected only a few touched pages resident, measured {rss:.0f} KiB"


def rlimit_as(mib: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mib << 20, mib << 20))
    return apply


@pytest.mark.skipif(SANITIZED, reason="ASan and TSan reserve terabytes of address space, so RLIMIT_AS "
                    "cannot be used; run the dev build")
@pytest.mark.hint("when pthread_create fails (EAGAIN), close that client and keep accepting: an exception "
                  "escaping (or an unchecked error) must not end the server")
def test_failed_thread_creation_closes_that_client_only(lab, steps):
    # 64 MiB of address space holds the program and a few 8 MiB stacks, not 12 of them.
    server = start(lab, "--quiet", "--stack-kib", 8192, env=ONE_ARENA, preexec=rlimit_as(64))
    port = server.ready.port
    clients = []
    with steps.step("12 clients connect at once and each sends a byte"):
        for _ in range(12):
            c = TcpClient("127.0.0.1", port, timeout=3)
            c.send(b"x")
            clients.append(c)
    with steps.step("each is either echoed or closed (EOF or reset), none left hanging"):
        outcome = []
        for c in clients:
            try:
                outcome.append("served" if c.recv_some(3) == b"x" else "closed")
            except ConnectionResetError:
                outcome.append("closed")
        print("12 clients under RLIMIT_AS 64 MiB:", outcome.count("served"), "served,",
              outcome.count("closed"), "closed")
        assert "served" in outcome and "closed" in outcome, outcome
        refused = wait_for("one no_thread line per closed client",
                           lambda: len(lines_named(server, "no_thread")) == outcome.count("closed"), 5)
        names = {m["ename"] for m in lines_named(server, "no_thread")}
        assert refused and names == {"EAGAIN"}, server.report()
    with steps.step("the server carries on: once the clients leave, a new one is served"):
        for c in clients:
            c.close()
        assert server.popen.poll() is None, server.report()
        wait_for("a fresh client served", lambda: _served(port), timeout=5)


def _served(port: int) -> bool:
    try:
        return echo_once(port) == b"ping\n"
    except (OSError, AssertionError):
        return False


def _tsan_reports_fd_race(server, clients: int = 20) -> None:
    """Clients, one at a time, until ThreadSanitizer stops the server with its report.

    close() clears ThreadSanitizer's record of the fd, so only a worker that used the fd before
    main closed it is reported; one whose first recv() comes after the close just gets EBADF: on
    this machine 1 client in 20 when idle, 1 in 4 with both cores busy. Twenty clients all losing
    that race: below 1 in 10**12.
    """
    for n in range(1, clients + 1):
        with TcpClient("127.0.0.1", server.ready.port, timeout=3) as c:
            server.expect(C.line("accepted"), timeout=20)
            try:
                c.send(b"anyone there?\n")
            except OSError:
                pass  # the server may have stopped already, at main's close()
            wait_for(f"client {n}: ThreadSanitizer's exit, or the worker's dropped line",
                     lambda: server.popen.poll() is not None or len(lines_named(server, "dropped")) >= n,
                     timeout=20, evidence=server.report)
        if server.popen.poll() is not None:
            break
    assert server.popen.poll() is not None, (
        f"expected ThreadSanitizer to stop the server at a race on a client's fd, and after {clients} "
        f"clients, each dropped with EBADF, it still runs.\n{server.report()}")
    assert C.line("tsan_race").find(server.stderr), (
        "expected ThreadSanitizer to report a data race when main closes the worker's fd, "
        f"and it reported none.\n{server.report()}")
    assert C.line("tsan_fd").find(server.stderr), (
        "expected ThreadSanitizer's race report to name the client's fd, created by the "
        f"main thread, and it names another object.\n{server.report()}")


@pytest.mark.hint("threads share one fd table: the worker owns its client's fd; the main thread must not "
                  "close it (it is the same fd, not a copy as after fork())")
def test_notes_shared_fd_table_main_closing_the_fd_closes_it_for_the_worker(lab, steps):
    server = start(lab, "--main-closes-conn", warm=False)
    if TSAN:
        with steps.step("the tsan build stops at its report of a race on the client's fd"):
            _tsan_reports_fd_race(server)
        return
    fds = probes.fd_count(server.pid)
    with TcpClient("127.0.0.1", server.ready.port, timeout=3) as c:
        acc = server.expect(C.line("accepted"))
        wait_for("the main thread closed the client's fd: the fd count back to its baseline",
                 lambda: probes.fd_count(server.pid) <= fds, timeout=5)
        with steps.step("main closed the fd right after starting the thread: the worker's call fails"):
            try:
                c.send(b"anyone there?\n")
                reply = c.recv_some(3)
            except ConnectionResetError:
                reply = b""
            assert reply == b"", f"expected no echo (the worker's fd was closed), got {reply!r}"
        dropped = server.expect(C.line("dropped"))
        assert (dropped["peer"], dropped["ename"]) == (acc["peer"], "EBADF"), server.report()
    with steps.step("the correct server: the same client is echoed"):
        fixed = start(lab)
        assert echo_once(fixed.ready.port, b"anyone there?\n") == b"anyone there?\n"


@pytest.mark.hint("a worker closed an fd the main thread still uses: threads share one fd table, so a "
                  "worker closes only its own client's fd (never the listener, unlike lab 12's child)")
def test_workers_leave_the_listener_open(lab):
    server = start(lab, "--quiet")
    pid, port = server.pid, server.ready.port
    listener = probes.socket_inodes(pid)
    for i in range(5):
        assert _served(port), f"expected client {i + 1} of 5 to be echoed\n{server.report()}"
        time.sleep(0.05)
    wait_for("the worker threads gone", lambda: probes.thread_count(pid) == 1 + TSAN, timeout=5)
    assert server.popen.poll() is None, f"expected the server to run on after 5 clients\n{server.report()}"
    assert probes.socket_inodes(pid) == listener, (
        "expected the listening socket still open (the same socket inode) after the clients left")


@pytest.mark.hint("a client's reset (ECONNRESET) ends that client's thread only, never the server")
def test_reset_client_is_dropped_and_others_carry_on(lab):
    server = start(lab, "--quiet")
    port = server.ready.port
    for _ in range(10):
        c = TcpClient("127.0.0.1", port)
        c.send(os.urandom(100_000))
        c.reset()
    assert server.popen.poll() is None, server.report()
    wait_for("a fresh client served after 10 resets", lambda: _served(port), timeout=5)


def test_ipv6_loopback(lab):
    server = start(lab, "--host", "::1")
    assert server.ready.host == "::1"
    assert echo_once(server.ready.port, b"v6\n", host="::1") == b"v6\n"
    assert server.expect(C.line("accepted"))["peer"].startswith("[::1]:"), server.report()


@pytest.mark.hint("SIGTERM must end the server with status 0 even while client threads are running")
def test_sigterm_with_clients_connected_exits_zero(lab):
    server = start(lab)
    clients = [TcpClient("127.0.0.1", server.ready.port) for _ in range(3)]
    try:
        for c in clients:
            c.send(b"x")
            assert c.recv_exactly(1) == b"x"
        server.popen.send_signal(signal.SIGTERM)
        assert server.wait_exit(5) == C.status("stopped"), server.report()
        for c in clients:
            assert c.recv_until_eof(3) == b"", "expected EOF once the server ended"
    finally:
        for c in clients:
            c.close()


def test_reuseaddr_lets_a_restart_bind_while_time_wait_remains(lab):
    server = start(lab)
    port = server.ready.port
    with TcpClient("127.0.0.1", port) as c:
        c.send(b"x")
        assert c.recv_exactly(1) == b"x"
        server.popen.send_signal(signal.SIGTERM)  # the server closes first: TIME_WAIT on its port
        assert server.wait_exit(5) == C.status("stopped")
        assert c.recv_until_eof(3) == b""
    wait_for("TIME_WAIT on the server's port",
             lambda: any(s.state == "TIME_WAIT" and s.local[1] == port for s in probes.tcp_sockets(port)))
    again = lab.server("echo_thread", "--port", port)
    assert again.ready.port == port and _served(port)


def test_cli_contract(lab):
    assert_help_and_usage(lab, "echo_thread")
    with occupy_tcp() as port:
        taken = lab.run("echo_thread", "--port", port)
    assert taken.popen.returncode == C.status("failed"), taken.report()
    errors = taken.stderr.splitlines()
    assert any((m := ERROR.match(e)) and m["ename"] == "EADDRINUSE" for e in errors), taken.report()
    assert any(HINT.match(e) for e in errors), taken.report()
    bad = lab.run("echo_thread", "--stack-kib", "4")
    assert bad.popen.returncode == C.status("usage") and "--stack-kib" in bad.stderr, bad.report()
