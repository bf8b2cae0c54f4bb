"""Lab 14 nonblocking-server: echo_nonblock, one thread polling non-blocking sockets.

Each test states one claim of labs/14-nonblocking-server/README.md and proves it over loopback,
from outside the process (/proc: fdinfo flags, CPU time, task list). Log lines come from the lab's
output contract (labs/14-nonblocking-server/output.toml).
"""
from __future__ import annotations

import os
import resource
import signal
import statistics
import time

import pytest

from harness import battery, probes
from harness.clients import ClientTimeout, TcpClient
from harness.contract import assert_help_and_usage, occupy_tcp
from harness.output import ERROR, HINT, contract
from harness.steps import wait_for

C = contract("14")
# The battery runs the polling loop with a 1 ms sleep per pass: the same code, serving clients the
# same way, but not competing with the battery's own clients for the CPU, so its checks hold the
# idle CPU under 10% as for every other model. The busy loop itself: test_idle_polling_loop_burns_a_core.
MODEL = battery.Model(lab="14", program="echo_nonblock", kind=battery.CONCURRENT, args=("--sleep-us", "1000"))
O_NONBLOCK = os.O_NONBLOCK
IDLE = 0.10         # share of one core: a loop that sleeps uses far less, even on a loaded machine
BUSY_WANTED = 0.60  # a loop that never sleeps is on a CPU or waiting for one all the time (~100%)


def start(lab, *args: str | int, **kw):
    return lab.server("echo_nonblock", "--port", 0, *args, **kw)


def echo_once(port: int, data: bytes = b"ping\n", host: str = "127.0.0.1") -> bytes:
    with TcpClient(host, port, timeout=5) as c:
        c.send(data)
        return c.recv_exactly(len(data))


def served(port: int) -> bool:
    try:
        return echo_once(port) == b"ping\n"
    except (OSError, AssertionError):
        return False


def lines_named(server, name: str) -> list:
    line = C.line(name)
    return [m for m in map(line.match, server.stdout.splitlines()) if m]


def fd_flags(pid: int, fd: int) -> int:
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        for row in f:
            if row.startswith("flags:"):
                return int(row.split()[1], 8)
    raise AssertionError(f"/proc/{pid}/fdinfo/{fd} has no flags line")


def socket_fds(pid: int) -> list[int]:
    out = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                out.append(int(name))
        except FileNotFoundError:
            pass
    return sorted(out)


@pytest.mark.limit(90)
@pytest.mark.parametrize("check", [pytest.param(c, id=c.name, marks=pytest.mark.hint(c.hint))
                                   for c in battery.checks(MODEL)])
def test_battery(lab, steps, check):
    check.run(lab, MODEL, steps)


@pytest.mark.hint("echo every byte back exactly; when send() takes only part (EAGAIN on a full socket), "
                  "keep the rest and send it on a later pass")
def test_echo_is_byte_exact_even_into_a_small_receive_buffer(lab):
    server = start(lab, "--quiet")
    payload = os.urandom(2 * 1024 * 1024)
    with TcpClient("127.0.0.1", server.ready.port, timeout=20, rcvbuf=4096) as c:
        c.send(b"x")
        assert c.recv_exactly(1) == b"x"
        sender = c.send_in_background(payload)
        echoed = c.recv_exactly(len(payload), timeout=20)
        sender.join(5)
        assert echoed == payload, "the echo differs from what was sent"
        c.shutdown_write()
        assert c.recv_until_eof() == b""
    server.expect(C.line("closed"))


@pytest.mark.hint("EAGAIN (EWOULDBLOCK) from a non-blocking recv/accept means 'nothing yet': try again "
                  "on the next pass; never drop the client or end the server on it")
def test_client_that_sends_in_pieces_is_kept(lab):
    server = start(lab)
    with TcpClient("127.0.0.1", server.ready.port) as c:
        server.expect(C.line("accepted"))
        c.send(b"hel")
        assert c.recv_exactly(3) == b"hel"
        time.sleep(0.1)  # the scenario: nothing arrives for a while, recv() says EAGAIN many times
        c.send(b"lo\n")
        assert c.recv_exactly(3) == b"lo\n"
    server.expect(C.line("closed"))
    assert not lines_named(server, "dropped"), server.report()


@pytest.mark.hint("log one accepted line per accepted client, a recv line per recv() with data and a closed "
                  "line when recv() returns 0, in the README's formats; --quiet drops the recv lines only")
def test_log_lines_follow_the_output_contract(lab):
    server = start(lab)
    with TcpClient("127.0.0.1", server.ready.port) as c:
        c.send(b"hello\n")
        assert c.recv_exactly(6) == b"hello\n"
        port = c.local_port
    assert server.expect(C.line("accepted"))["peer"] == f"127.0.0.1:{port}", server.report()
    rcv = server.expect(C.line("recv"))
    assert (rcv["n"], rcv["peer"], rcv["data"]) == ("6", f"127.0.0.1:{port}", "hello\\n"), server.report()
    server.expect(C.line("closed"))
    quiet = start(lab, "--quiet")
    assert echo_once(quiet.ready.port) == b"ping\n"
    quiet.expect(C.line("closed"))
    assert not lines_named(quiet, "recv"), f"--quiet logs no recv lines\n{quiet.report()}"


@pytest.mark.hint("one thread serves every client: no client may wait for another, so no call may block")
def test_one_thread_serves_several_clients_at_once(lab):
    server = start(lab, "--quiet")
    port = server.ready.port
    with TcpClient("127.0.0.1", port) as idle, TcpClient("127.0.0.1", port) as half:
        half.send(b"half a li")
        assert half.recv_exactly(9) == b"half a li"
        assert echo_once(port, b"third\n") == b"third\n"
        idle.send(b"late\n")
        assert idle.recv_exactly(5) == b"late\n"
    assert probes.thread_count(server.pid) == 1 + (os.environ.get("SOCKLAB_SANITIZE") == "thread")


@pytest.mark.hint("make the listener non-blocking (fcntl O_NONBLOCK) and accept with accept4(SOCK_NONBLOCK): "
                  "an accepted socket does not inherit O_NONBLOCK from the listener")
def test_listener_and_every_client_socket_are_nonblocking(lab):
    server = start(lab, "--show-flags")
    pid = server.pid
    listener = server.expect(C.line("flags"))
    assert (listener["what"], listener["state"]) == ("listener", "on"), server.report()
    with TcpClient("127.0.0.1", server.ready.port) as c:
        c.send(b"x")
        assert c.recv_exactly(1) == b"x"
        client = server.expect(C.line("flags"))
        assert client["peer"] == f"127.0.0.1:{c.local_port}" and client["state"] == "on", server.report()
        fds = socket_fds(pid)
        assert int(listener["fd"]) in fds and int(client["fd"]) in fds, fds
        for fd in fds:
            assert fd_flags(pid, fd) & O_NONBLOCK, f"/proc/{pid}/fdinfo/{fd}: O_NONBLOCK is not set"


@pytest.mark.hint("accept() (without SOCK_NONBLOCK) returns a blocking socket even from a non-blocking "
                  "listener: set O_NONBLOCK on each accepted socket")
def test_notes_accepted_socket_does_not_inherit_o_nonblock(lab, steps):
    server = start(lab, "--show-flags", "--plain-accept")
    pid, port = server.pid, server.ready.port
    with TcpClient("127.0.0.1", port) as first:
        with steps.step("the listener is non-blocking, the socket accept() returned is not"):
            first.send(b"1")
            assert first.recv_exactly(1) == b"1"
            client = server.expect(C.line("flags"))
            client = server.expect(C.line("flags")) if client["what"] == "listener" else client
            fd = int(client["fd"])
            assert client["state"] == "off", server.report()
            assert not fd_flags(pid, fd) & O_NONBLOCK, f"fdinfo of fd {fd} shows O_NONBLOCK"
            listener = next(f for f in socket_fds(pid) if f != fd)
            assert fd_flags(pid, listener) & O_NONBLOCK, f"fdinfo of the listener (fd {listener}) lacks it"
        with steps.step("so recv() on it blocks the one thread: a second client is not served"):
            wait_for("the server asleep in recv() on the first client", lambda: probes.state(pid) == "S")
            with TcpClient("127.0.0.1", port, timeout=1) as second:
                second.send(b"2")
                with pytest.raises(ClientTimeout):
                    second.recv_some(1.0)
                with steps.step("the first sends: the loop accepts the second, blocks on the first again"):
                    first.send(b"!")
                    assert first.recv_exactly(1) == b"!"
                    server.expect(C.line("accepted"))
                    with pytest.raises(ClientTimeout):
                        second.recv_some(1.0)
                with steps.step("only the first client's next byte lets the loop reach the second"):
                    first.send(b"?")
                    assert first.recv_exactly(1) == b"?"
                    assert second.recv_exactly(1, timeout=5) == b"2"


def cpu_demand(pid: int, window: float = 2.0) -> tuple[float, float]:
    """(CPU used, CPU wanted) as shares of one core over `window` seconds. CPU wanted is the time
    on a CPU plus the time waiting on a run queue for one (/proc/PID/schedstat, sched(7)): a loop
    that never sleeps wants the whole window however loaded the machine is; what it gets depends
    on the other programs running."""
    def read() -> tuple[float, int, int]:
        with open(f"/proc/{pid}/schedstat") as f:
            run_ns, wait_ns = map(int, f.read().split()[:2])
        return probes.cpu_seconds(pid), run_ns, wait_ns
    (cpu0, run0, wait0), t0 = read(), time.monotonic()
    time.sleep(window)
    (cpu1, run1, wait1), t1 = read(), time.monotonic()
    return (cpu1 - cpu0) / (t1 - t0), (run1 - run0 + wait1 - wait0) / 1e9 / (t1 - t0)


def median_rtt_ms(port: int, n: int = 20) -> float:
    """The median round trip of n one-byte echoes, in ms."""
    with TcpClient("127.0.0.1", port) as c:
        rtts = []
        for _ in range(n):
            t0 = time.perf_counter()
            c.send(b"t")
            c.recv_exactly(1)
            rtts.append((time.perf_counter() - t0) * 1000)
    return statistics.median(rtts)


@pytest.mark.limit(30)
@pytest.mark.hint("a polling loop without a sleep spins: with no client at all it should want a whole core "
                  "(that is this lab's lesson); check that the loop really runs all the time")
def test_idle_polling_loop_burns_a_core(lab):
    server = start(lab)
    used, wanted = cpu_demand(server.pid)
    rtt = median_rtt_ms(server.ready.port)
    print(f"echo_nonblock idle, no client, over 2 s: used {used:.0%} of a core, wanted {wanted:.0%} "
          f"(on a CPU or waiting for one); median echo round trip {rtt:.3f} ms")
    assert wanted > BUSY_WANTED, (f"expected the idle loop to want a whole core (never sleep), measured "
                                  f"{wanted:.0%} of the time on a CPU or waiting for one")


@pytest.mark.limit(40)
@pytest.mark.hint("--sleep-us N sleeps N microseconds after each pass over the clients: the idle CPU must "
                  "drop, and each echo may wait up to N microseconds")
def test_sleep_us_trades_latency_for_cpu(lab, steps):
    results = {}  # --sleep-us 0, the spinning loop: test_idle_polling_loop_burns_a_core
    for sleep_us in (1000, 20000):
        server = start(lab, "--quiet", "--sleep-us", sleep_us)
        used, wanted = cpu_demand(server.pid, 1.0)
        rtt = median_rtt_ms(server.ready.port)
        results[sleep_us] = (used, wanted, rtt)
        print(f"--sleep-us {sleep_us:>5}: idle CPU used {used:6.1%}, wanted {wanted:6.1%} of a core; "
              f"median echo round trip {rtt:7.3f} ms")
        server.stop()
    for sleep_us in (1000, 20000):
        assert results[sleep_us][0] < IDLE, (f"expected --sleep-us {sleep_us} to use less than {IDLE:.0%} "
                                             f"of a core idle, measured {results[sleep_us][0]:.0%}")
    assert results[20000][2] >= 5, (f"expected --sleep-us 20000 to delay each echo by several ms, measured "
                                    f"a median of {results[20000][2]:.2f} ms")


def open_clients(port: int, n: int) -> list[TcpClient]:
    out = []
    for _ in range(n):
        c = TcpClient("127.0.0.1", port, timeout=2)
        c.send(b"x")
        out.append(c)
    return out


def outcome(c: TcpClient, timeout: float) -> str:
    try:
        return "served" if c.recv_some(timeout) == b"x" else "closed"
    except ConnectionResetError:
        return "closed"
    except ClientTimeout:
        return "hanging"


def nofile(n: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return apply


@pytest.mark.limit(40)
@pytest.mark.hint("on EMFILE the queued client stays queued and accept fails again every pass: report it and "
                  "shed that client (free a spare fd, accept, close, take the spare back); never ignore it")
def test_notes_except_pass_hides_emfile(lab, steps):
    with steps.step("RLIMIT_NOFILE 12, 12 clients: the fixed server refuses the excess (EOF) and says so"):
        server = start(lab, "--quiet", preexec=nofile(12))
        clients = open_clients(server.ready.port, 12)
        seen = [outcome(c, 2.0) for c in clients]
        print("fixed server, RLIMIT_NOFILE 12, 12 clients:", {k: seen.count(k) for k in set(seen)})
        assert "served" in seen and "closed" in seen and "hanging" not in seen, seen
        wait_for("one refused line per closed client",
                 lambda: len(lines_named(server, "refused")) == seen.count("closed"), timeout=5)
        for c in clients:
            c.close()
        wait_for("service once the clients left", lambda: served(server.ready.port), timeout=5)
        server.stop()
    with steps.step("--notes-except-pass: the excess clients hang, and nothing names EMFILE"):
        notes = start(lab, "--quiet", "--notes-except-pass", preexec=nofile(12))
        clients = open_clients(notes.ready.port, 12)
        seen = [outcome(c, 0.5) for c in clients]
        print("--notes-except-pass, RLIMIT_NOFILE 12, 12 clients:", {k: seen.count(k) for k in set(seen)})
        assert "hanging" in seen and "closed" not in seen, seen
        named = [m for m in C.line("refused").findall(notes.stdout) + ERROR.findall(notes.stderr)
                 + C.line("dropped").findall(notes.stdout) if "EMFILE" in m[0]]
        assert not named, ("expected --notes-except-pass to hide EMFILE as the notes' `except: pass` "
                           f"does, and it printed {named[0][0]!r}.\n{notes.report()}")
        for c in clients:
            c.close()


@pytest.mark.hint("a reset (ECONNRESET) is an error of that client: log it and close that client only; "
                  "only EAGAIN means 'try again'")
def test_notes_except_pass_hides_econnreset(lab, steps):
    for flags, want in (((), "dropped"), (("--notes-except-pass",), "closed")):
        server = start(lab, *flags)
        with steps.step(f"{' '.join(flags) or 'the fixed server'}: a client resets"):
            c = TcpClient("127.0.0.1", server.ready.port)
            c.send(b"x")
            assert c.recv_exactly(1) == b"x"
            port = c.local_port
            c.reset()
            line = server.expect(C.line(want))
            assert line["peer"] == f"127.0.0.1:{port}", server.report()
            if want == "dropped":
                assert line["ename"] == "ECONNRESET", server.report()
            else:
                reset = [m for m in C.line("dropped").findall(server.stdout) if m["ename"] == "ECONNRESET"]
                assert not reset, ("expected --notes-except-pass to hide the reset as the notes' "
                                   f"`except: pass` does, and it printed {reset[0][0]!r}.\n{server.report()}")
            assert served(server.ready.port), "expected the server to serve the next client"
        server.stop()


@pytest.mark.hint("a client's reset (ECONNRESET, or EPIPE on send) ends that client only, never the server")
def test_reset_clients_are_dropped_and_others_carry_on(lab):
    server = start(lab, "--quiet")
    port = server.ready.port
    for _ in range(10):
        c = TcpClient("127.0.0.1", port)
        c.send(os.urandom(100_000))
        c.reset()
    assert server.popen.poll() is None, server.report()
    wait_for("a fresh client served after 10 resets", lambda: served(port), timeout=5)


def test_ipv6_loopback(lab):
    server = start(lab, "--host", "::1")
    assert server.ready.host == "::1"
    assert echo_once(server.ready.port, b"v6\n", host="::1") == b"v6\n"
    assert server.expect(C.line("accepted"))["peer"].startswith("[::1]:"), server.report()


@pytest.mark.hint("SIGTERM must end the server with status 0, with clients connected too")
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


@pytest.mark.hint("set SO_REUSEADDR on the listener before bind(): then a restart binds the port while the "
                  "old connection's TIME_WAIT remains, and serves as the first run did")
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
    again = lab.server("echo_nonblock", "--port", port)
    assert again.ready.port == port, (
        f"expected the restarted server on port {port}, its ready line says {again.ready.port}")
    assert served(port), f"expected the restarted server on port {port} to echo a client, it did not"


def test_cli_contract(lab):
    assert_help_and_usage(lab, "echo_nonblock")
    with occupy_tcp() as port:
        taken = lab.run("echo_nonblock", "--port", port)
    assert taken.popen.returncode == C.status("failed"), taken.report()
    errors = taken.stderr.splitlines()
    assert any((m := ERROR.match(e)) and m["ename"] == "EADDRINUSE" for e in errors), taken.report()
    assert any(HINT.match(e) for e in errors), taken.report()
    bad = lab.run("echo_nonblock", "--sleep-us", "soon")
    assert bad.popen.returncode == C.status("usage") and "--sleep-us" in bad.stderr, bad.report()
