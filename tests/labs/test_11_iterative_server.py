"""Lab 11 iterative-server: echo_iterative, one client at a time, and the bad-client battery.

Each test states one claim of labs/11-iterative-server/README.md and proves it over loopback.
"""
from __future__ import annotations

import signal
import socket

import pytest

from harness import battery, probes
from harness.clients import ClientTimeout, TcpClient
from harness.contract import assert_help_and_usage
from harness.output import contract
from harness.steps import slowdown, wait_for

MODEL = battery.Model(lab="11", program="echo_iterative", kind=battery.ITERATIVE)


@pytest.mark.limit(90)
@pytest.mark.parametrize("check", [pytest.param(c, id=c.name, marks=pytest.mark.hint(c.hint))
                                   for c in battery.checks(MODEL)])
def test_battery(lab, steps, check):
    check.run(lab, MODEL, steps)


C = contract("11")


def server_end(port: int, client_port: int) -> probes.TcpSocket | None:
    for s in probes.tcp_sockets(client_port):
        if s.local[1] == port and s.remote[1] == client_port:
            return s
    return None


def accept_queue(port: int) -> int:
    rows = [s for s in probes.tcp_sockets(port) if s.state == "LISTEN" and s.local[1] == port]
    return rows[0].recv_q if rows else -1


@pytest.mark.hint("serve one client to its EOF, then accept() the next: bytes of a waiting client stay in "
                  "the kernel and are read in one recv() when its turn comes")
def test_second_client_connects_at_once_its_bytes_wait_and_come_in_one_recv(lab, steps):
    server = lab.server("echo_iterative", "--port", "0")
    port = server.ready.port
    with TcpClient("127.0.0.1", port) as first:
        first.send("one\n")
        assert first.recv_exactly(4) == b"one\n"
        with steps.step("client 2's connect succeeds: the kernel completes it, into the accept queue"):
            second = TcpClient("127.0.0.1", port)
            wait_for("client 2 waiting in the accept queue", lambda: accept_queue(port) == 1, timeout=5)
        with second:
            with steps.step("client 2 sends twice; both pieces wait unread in the kernel"):
                second.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                second.send("hello")
                wait_for("5 bytes queued", lambda: (s := server_end(port, second.local_port)) and s.recv_q == 5)
                second.send("world")
                wait_for("10 bytes queued", lambda: (s := server_end(port, second.local_port)) and s.recv_q == 10)
                with pytest.raises(ClientTimeout):
                    second.recv_some(timeout=0.5 * slowdown())
                assert "recv 5 bytes" not in server.stdout, server.report()
            with steps.step("client 1 leaves: client 2 is accepted and one recv() returns both pieces"):
                first.close()
                m = server.expect(C.line("accepted"))
                while not m["peer"].endswith(f":{second.local_port}"):
                    m = server.expect(C.line("accepted"))
                m = server.expect(C.line("recv"))
                assert (m["n"], m["data"]) == ("10", "helloworld"), server.report()
                assert second.recv_exactly(10) == b"helloworld"


@pytest.mark.hint("log one line per accept, per receive and per close, in the formats of the README's "
                  "Output section")
def test_log_has_one_line_per_accept_receive_and_close(lab, steps):
    server = lab.server("echo_iterative", "--port", "0")
    with TcpClient("127.0.0.1", server.ready.port) as client:
        peer = f"127.0.0.1:{client.local_port}"
        client.send(b"bin\x00\xff\n")
        assert client.recv_exactly(6) == b"bin\x00\xff\n"
        client.send(b"y" * 100)
        assert client.recv_exactly(100) == b"y" * 100
    assert server.expect(C.line("accepted"))["peer"] == peer
    m = server.expect(C.line("recv"))
    assert (m["n"], m["peer"], m["data"]) == ("6", peer, "bin\\x00\\xff\\n"), server.report()
    m = server.expect(C.line("recv"))
    assert (m["n"], m["data"], m["cut"]) == ("100", "y" * 64, "..."), server.report()
    assert server.expect(C.line("closed"))["peer"] == peer
    with steps.step("a client that resets: one 'dropped' line, and the server goes on"):
        with TcpClient("127.0.0.1", server.ready.port) as rude:
            rude.send("half a li")
            assert rude.recv_exactly(9) == b"half a li"
            rude.reset()
        m = server.expect(C.line("dropped"))
        assert m["ename"] == "ECONNRESET", server.report()
    with TcpClient("127.0.0.1", server.ready.port) as client:
        client.send("next\n")
        assert client.recv_exactly(5) == b"next\n"


@pytest.mark.hint("--quiet turns off the line per receive only")
def test_quiet_logs_no_receives(lab):
    server = lab.server("echo_iterative", "--port", "0", "--quiet")
    with TcpClient("127.0.0.1", server.ready.port) as client:
        client.send("shh\n")
        assert client.recv_exactly(4) == b"shh\n"
    server.expect(C.line("closed"))
    assert not [line for line in server.stdout.splitlines() if C.line("recv").match(line)], server.report()


@pytest.mark.hint("an iterative server is one process with one thread: no fork(), no threads")
def test_one_process_one_thread_one_client_at_a_time(lab):
    server = lab.server("echo_iterative", "--port", "0")
    clients = [TcpClient("127.0.0.1", server.ready.port) for _ in range(3)]
    try:
        clients[0].send("a")
        assert clients[0].recv_exactly(1) == b"a"
        assert probes.thread_count(server.pid) == 1 and probes.children(server.pid) == []
        wait_for("2 clients in the accept queue", lambda: accept_queue(server.ready.port) == 2, timeout=5)
    finally:
        for c in clients:
            c.close()


@pytest.mark.hint("--help exits 0; an unknown option exits 2 with usage on stderr")
def test_cli_contract(lab):
    assert_help_and_usage(lab, "echo_iterative")


@pytest.mark.hint("set SO_REUSEADDR on the listening socket before bind(), so that a restart can bind "
                  "beside the last run's FIN_WAIT2 / TIME_WAIT connections")
def test_restart_on_the_same_port_at_once_works(lab, steps):
    server = lab.server("echo_iterative", "--port", "0")
    port = server.ready.port
    with TcpClient("127.0.0.1", port) as client:
        client.send("hi\n")
        assert client.recv_exactly(3) == b"hi\n"
        with steps.step("SIGTERM while the client is connected: the server closes first"):
            server.popen.send_signal(signal.SIGTERM)
            assert server.wait_exit(5) == 0, server.report()
            wait_for("the server's end of the connection in FIN_WAIT2 or TIME_WAIT",
                     lambda: any(s.local[1] == port and s.state in ("FIN_WAIT2", "TIME_WAIT")
                                 for s in probes.tcp_sockets(port)), timeout=5)
        with steps.step("a new run binds the same port at once"):
            again = lab.start("echo_iterative", "--port", port)
            try:
                again.wait_ready(timeout=5 * slowdown())
            except AssertionError:
                raise AssertionError(
                    f"expected the restart on port {port} to be ready at once.\n{again.report()}\nHint: set "
                    "SO_REUSEADDR on the listening socket before bind() (lab 10)") from None
