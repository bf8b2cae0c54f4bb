"""Lab 08 tcp-chat: the serial lock-step chat (tcp_chat_server, tcp_chat_client) and the full-duplex
chat with half-close (tcp_chat_duplex).

Each test states one claim of labs/08-tcp-chat/README.md and proves it over loopback.
"""
from __future__ import annotations

import os
import socket
import time

import pytest

from harness import probes
from harness.clients import TcpClient, free_tcp_port
from harness.steps import wait_for
from harness.contract import assert_cli_contract, assert_help_and_usage, occupy_tcp
from harness.output import contract

pytestmark = pytest.mark.tsan

C = contract("08")
RECV = {"tcp_chat_server": C["server_recv"],
        "tcp_chat_client": C["client_recv"],
        "tcp_chat_duplex": C["duplex_recv"]}

QUIET = 1.0  # seconds of silence that show a program is waiting (it would answer within ms)


def stays_silent(proc, seconds: float = QUIET) -> bool:
    """True if proc prints no line for `seconds`."""
    before = len(proc._stdout)
    time.sleep(seconds)
    return len(proc._stdout) == before


def conn_states(port: int) -> dict[tuple[int, int], probes.TcpSocket]:
    """Connection sockets touching `port`, keyed by (local port, remote port)."""
    rows = probes.tcp_sockets(port, host="127.0.0.1")
    return {(s.local[1], s.remote[1]): s for s in rows if s.state != "LISTEN"}


def listener(port: int) -> probes.TcpSocket:
    rows = probes.tcp_sockets(port, host="127.0.0.1")
    return next(s for s in rows if s.state == "LISTEN" and s.local[1] == port)


def client_port(client) -> int:
    return int(client.expect(C["connected"])[4])


def heard(proc, text: str, timeout: float = 5.0) -> None:
    """proc's next recv line shows `text` (the line it received, without its newline)."""
    m = proc.expect(RECV[proc.name], timeout=timeout)
    assert m[1] == text, f"{proc.name} printed {m[0]!r} where the line {text!r} was due\n{proc.report()}"


@pytest.fixture
def server(lab):
    return lab.server("tcp_chat_server", "--port", "0")


# ---- the serial, lock-step chat ----------------------------------------------------------------

@pytest.mark.hint("the serial chat takes turns: read one whole line from the peer, then send one line from "
                  "stdin")
def test_turns_alternate_line_by_line(lab, server, steps):
    client = lab.start("tcp_chat_client", "--port", server.ready.port)
    client_port(client)
    server.expect(C["accepted"])
    with steps.step("the client's line reaches the server"):
        client.send_line("hello")
        heard(server, "hello")
        server.expect(C["your_turn"])
    with steps.step("the client types again before the reply: its second line waits in the client"):
        client.send_line("second")
        assert stays_silent(server), "the server should print nothing before it replies\n" + server.report()
        assert all(s.recv_q == 0 for s in conn_states(server.ready.port).values()), \
            "the client must not send its second line before it got the reply"
    with steps.step("the server's reply gives the turn back; then the second line arrives"):
        server.send_line("hi there")
        heard(client, "hi there")
        heard(server, "second")


def test_serial_server_has_one_thread(lab, server):
    client = lab.start("tcp_chat_client", "--port", server.ready.port)
    client_port(client)
    client.send_line("how many of you are there?")
    server.expect(C["your_turn"])
    # (tsan starts its own background thread only once a program creates a thread: none here)
    assert probes.thread_count(server.pid) == 1, "the notes' 'multi-threaded' chat has no threads"


def test_second_client_connects_at_once_but_waits_for_the_first(lab, server, steps):
    port = server.ready.port
    first = lab.start("tcp_chat_client", "--port", port)
    client_port(first)
    first.send_line("I am first")
    heard(server, "I am first")
    server.expect(C["your_turn"])
    with steps.step("a second client connects while the server chats with the first"):
        second = TcpClient("127.0.0.1", port, timeout=5)  # raises if the connect does not complete
    try:
        with steps.step("it is ESTABLISHED, waiting in the accept queue (listener Recv-Q 1)"):
            assert conn_states(port)[(second.local_port, port)].state == "ESTABLISHED"
            assert listener(port).recv_q == 1
        with steps.step("its line arrives in the kernel but nobody reads it"):
            second.send("queued\n")
            wait_for("7 bytes queued at the server's end of the second connection",
                     lambda: (s := conn_states(port).get((port, second.local_port))) and s.recv_q == 7)
            assert stays_silent(server), server.report()
            assert "queued" not in [m[1] for m in C["server_recv"].findall(server.stdout)], server.report()
        with steps.step("the first client leaves; only now is the second accepted and heard"):
            server.send_line("bye")
            heard(first, "bye")
            first.close_stdin()
            assert first.wait_exit(5) == C.status("client_done"), first.report()
            server.expect(C["client_closed"])
            accepted = server.expect(C["accepted"])
            assert accepted.group(1, 2) == ("127.0.0.1", str(second.local_port)), server.report()
            heard(server, "queued")
            server.send_line("your turn now")
            assert second.recv_until(b"\n") == b"your turn now\n"
    finally:
        second.close()


def test_empty_line_goes_out_as_newline_no_deadlock(lab, server):
    client = lab.start("tcp_chat_client", "--port", server.ready.port)
    client_port(client)
    client.send_line("")
    heard(server, "")
    server.send_line("")
    heard(client, "")
    client.send_line("still talking")
    heard(server, "still talking")


def test_notes_unframed_empty_line_deadlocks(lab, steps):
    """The notes' client sends the bare text; an empty input is send() of 0 bytes: nothing is sent."""
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        ls.settimeout(10)
        client = lab.start("tcp_chat_client", "--port", ls.getsockname()[1], "--unframed")
        conn, _ = ls.accept()
        with conn:
            conn.settimeout(5)
            with steps.step("a non-empty line works: the server (this test, as the notes' server) gets it"):
                client.send_line("hi")
                assert conn.recv(1024) == b"hi"
                conn.sendall(b"ok")
                heard(client, "ok")
            with steps.step("an empty line: send() returns 0 and nothing reaches the server"):
                client.send_line("")
                client.expect(C["sent_nothing"])
                conn.settimeout(2 * QUIET)
                with pytest.raises(socket.timeout):
                    conn.recv(1024)
            with steps.step("deadlock: the client waits in recv() for a reply to a message never sent"):
                assert stays_silent(client), client.report()
                assert probes.state(client.pid) == "S" and client.popen.poll() is None


def test_line_split_across_sends_and_lines_merged_in_one_send(lab, server, steps):
    with TcpClient("127.0.0.1", server.ready.port, timeout=5) as client:
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with steps.step("one line in three pieces, 50 ms apart: still one line"):
            for piece in (b"hel", b"lo wor", b"ld\n"):
                client.send(piece)
                time.sleep(0.05)
            heard(server, "hello world")
            server.send_line("ok")
            assert client.recv_until(b"\n") == b"ok\n"
        with steps.step("two lines in one send: two turns, the second kept in the connection's buffer"):
            client.send(b"first\nsecond\n")
            heard(server, "first")
            server.send_line("1")
            heard(server, "second")
            server.send_line("2")
            assert client.recv_until(b"2\n") == b"1\n2\n"


@pytest.mark.hint("keep the line buffer per connection (a member of the reader, not a static): bytes a "
                  "client left unfinished must not reach the next client's first line")
def test_unfinished_line_of_one_client_never_reaches_the_next(lab, server, steps):
    """A buffer shared by connections (UNP's static readline) would hand the bytes the first
    client left after its last newline to the second client's first line."""
    with TcpClient("127.0.0.1", server.ready.port, timeout=5) as first:
        with steps.step("client 1 sends a line and the start of another, then closes"):
            first.send(b"first\nleft behind")
            heard(server, "first")
            server.send_line("ok")
            assert first.recv_until(b"\n") == b"ok\n"
    with steps.step("the server reports client 1's close in the middle of a line"):
        m = server.expect(C["client_closed"])
        assert m[3] == " in the middle of a line", f"got {m[0]!r}\n{server.report()}"
    with TcpClient("127.0.0.1", server.ready.port, timeout=5) as second:
        with steps.step("client 2's first line arrives alone, without client 1's leftover bytes"):
            second.send(b"second\n")
            heard(server, "second")


def test_fin_from_shutdown_is_recv_zero_too(lab, server):
    with TcpClient("127.0.0.1", server.ready.port, timeout=5) as client:
        client.shutdown_write()
        server.expect(C["client_closed"])
        assert client.recv_until_eof() == b"", "the server should close its side as well"
    assert server.popen.poll() is None, "the server goes back to accept()"


def test_client_reset_does_not_stop_server(lab, server):
    with TcpClient("127.0.0.1", server.ready.port) as gone:
        gone.send("x\n")
        heard(server, "x")
        gone.reset()
    server.send_line("anyone?")
    server.expect(C["client_gone"])
    client = lab.start("tcp_chat_client", "--port", server.ready.port)
    client_port(client)
    client.send_line("next")
    heard(server, "next")


def test_client_stdin_eof_exits_zero_and_server_carries_on(lab, server):
    client = lab.start("tcp_chat_client", "--port", server.ready.port)
    client_port(client)
    client.send_line("one")
    heard(server, "one")
    server.send_line("two")
    heard(client, "two")
    client.close_stdin()
    assert client.wait_exit(5) == C.status("client_done"), client.report()
    server.expect(C["client_closed"])
    assert server.popen.poll() is None


def test_server_stdin_eof_exits_zero_and_client_sees_close(lab, server):
    client = lab.start("tcp_chat_client", "--port", server.ready.port)
    client_port(client)
    client.send_line("your turn")
    heard(server, "your turn")
    server.close_stdin()
    assert server.wait_exit(5) == C.status("stdin_closed"), server.report()
    client.expect(C["server_closed"])
    assert client.wait_exit(5) == C.status("client_done"), client.report()


def test_ipv6_loopback(lab):
    server = lab.server("tcp_chat_server", "--host", "::1", "--port", "0")
    client = lab.start("tcp_chat_client", "--host", "::1", "--port", server.ready.port)
    m = client.expect(C["connected"])
    assert m.group(1, 3) == ("[::1]", "[::1]"), client.report()
    client.send_line("over v6")
    heard(server, "over v6")


# ---- the full-duplex chat ----------------------------------------------------------------------

@pytest.fixture
def pair(lab):
    """Two tcp_chat_duplex programs connected to each other: (listening side, connecting side)."""
    a = lab.server("tcp_chat_duplex", "--listen", "--port", "0")
    b = lab.start("tcp_chat_duplex", "--port", a.ready.port)
    b.expect(C["duplex_connected"])
    a.expect(C["duplex_accepted"])
    return a, b


def test_duplex_uses_two_threads_per_side(pair):
    extra = 1 if os.environ.get("SOCKLAB_SANITIZE") == "thread" else 0  # tsan's background thread
    for side in pair:
        wait_for(f"main + a sender and a receiver thread in {side.name} (pid {side.pid})",
                 lambda: probes.thread_count(side.pid) == 3 + extra)


def test_duplex_both_directions_without_turns(pair):
    a, b = pair
    a.send_line("a1")
    a.send_line("a2")
    heard(b, "a1")
    heard(b, "a2")
    b.send_line("b1")
    b.send_line("b2")
    heard(a, "b1")
    heard(a, "b2")


@pytest.mark.hint("a half-close is shutdown(SHUT_WR) only: SHUT_RDWR also ends this side's receiving, so "
                  "the peer's later lines are lost")
def test_duplex_half_close_keeps_other_direction(pair, steps):
    a, b = pair
    port = a.ready.port
    with steps.step("EOF on A's stdin: A sends FIN with shutdown(SHUT_WR)"):
        a.close_stdin()
        a.expect(C["sent_fin"])
        b.expect(C["peer_fin"])
    with steps.step("half-closed: A in FIN_WAIT2, B in CLOSE_WAIT"):
        peer = int(C["duplex_accepted"].find(a.stdout)[2])   # B's port, from A's accepted line

        def states() -> dict[str, str]:
            """The two ends of this connection only: an earlier connection to another program that
            had the same port may still be in TIME_WAIT beside it."""
            rows = conn_states(port)
            ends = {"A": (port, peer), "B": (peer, port)}
            return {who: rows[key].state for who, key in ends.items() if key in rows}
        wait_for("A FIN_WAIT2 and B CLOSE_WAIT", lambda: states() == {"A": "FIN_WAIT2", "B": "CLOSE_WAIT"},
                 timeout=5, evidence=lambda: f"now {states()}")
    with steps.step("B's lines still reach A"):
        b.send_line("still works")
        heard(a, "still works")
        assert a.popen.poll() is None
    with steps.step("EOF on B's stdin: both directions closed, both exit 0"):
        b.close_stdin()
        a.expect(C["peer_fin"])
        assert a.wait_exit(5) == C.status("duplex_done"), a.report()
        assert b.wait_exit(5) == C.status("duplex_done"), b.report()
        both = a.report() + "\n" + b.report()
        assert C["both_closed"].find(a.stdout) and C["both_closed"].find(b.stdout), both


def test_duplex_keeps_sending_to_a_half_closed_peer(lab):
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        ls.settimeout(10)
        duplex = lab.start("tcp_chat_duplex", "--port", ls.getsockname()[1])
        conn, _ = ls.accept()
        with conn:
            conn.sendall(b"last words\n")
            conn.shutdown(socket.SHUT_WR)
            heard(duplex, "last words")
            duplex.expect(C["peer_fin"])
            duplex.send_line("heard you")
            conn.settimeout(5)
            assert conn.recv(1024) == b"heard you\n"
            duplex.close_stdin()
            assert conn.recv(1024) == b"", "EOF on stdin should send FIN"
        assert duplex.wait_exit(5) == C.status("duplex_done"), duplex.report()


def test_duplex_peer_reset_is_reported_exit_one(lab):
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        ls.settimeout(10)
        duplex = lab.start("tcp_chat_duplex", "--port", ls.getsockname()[1])
        conn, _ = ls.accept()
        TcpClient.adopt(conn).reset()
    # stdin stays open: a reset connection can carry nothing more, so the chat must end by itself
    assert duplex.wait_exit(10) == C.status("reset"), (
        "after the peer's RST the chat should exit 1 at once, not wait for stdin\n" + duplex.report())
    assert C["reset"].find(duplex.stderr), duplex.report()


def test_sigterm_exits_zero(lab, pair):
    server = lab.server("tcp_chat_server", "--port", "0")
    for proc in (server, *pair):
        proc.popen.send_signal(15)
        assert proc.wait_exit(5) == 0, proc.report()


def test_cli_contract(lab):
    with occupy_tcp() as port:
        assert_cli_contract(lab, "tcp_chat_server", port)
        assert_cli_contract(lab, "tcp_chat_duplex", port, "--listen")
    assert_help_and_usage(lab, "tcp_chat_client")
    refused = lab.run("tcp_chat_client", "--port", free_tcp_port(), timeout=5)
    assert refused.popen.returncode == C.status("refused"), refused.report()
    assert C["refused"].find(refused.stderr), refused.report()
