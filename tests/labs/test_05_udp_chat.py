"""Lab 05 udp-chat: udp_chat, one UDP socket shared by a receiving thread and the sending main thread.

Each test states one claim of labs/05-udp-chat/README.md and proves it over loopback, with two
chats talking to each other or a Python socket playing the peer.
"""
from __future__ import annotations

import os
import time

import pytest

from harness import probes
from harness.clients import ClientTimeout, UdpClient, free_udp_port
from harness.contract import assert_help_and_usage, assert_port_taken_fails
from harness.output import HINT, USAGE, contract
from harness.steps import scaled, wait_for

pytestmark = pytest.mark.tsan

C = contract("05")
FROM = C["from"]
TSAN = os.environ.get("SOCKLAB_SANITIZE", "") == "thread"


def received(proc, count: int, timeout: float = 5.0) -> list[tuple[int, str]]:
    """The next `count` 'from HOST:PORT: TEXT' lines as (port, text)."""
    out = []
    for _ in range(count):
        m = proc.expect(FROM, timeout=timeout)
        out.append((int(m[2]), m[3]))
    return out


def chat(lab, peer_port: int, *args: str):
    return lab.server("udp_chat", "--port", "0", "--peer", f"127.0.0.1:{peer_port}", *args)


def chat_pair(lab):
    """Two chats that talk to each other: a on a kernel-picked port, b on a port that was free."""
    for _ in range(5):
        b_port = free_udp_port()
        a = chat(lab, b_port)
        b = lab.start("udp_chat", "--port", b_port, "--peer", f"127.0.0.1:{a.ready.port}")
        try:
            b.wait_ready(timeout=10)
            return a, b
        except AssertionError:  # someone took b_port in between: try another
            a.stop(), b.stop()
    pytest.fail("could not start two chats on free ports")


def wait_blocked_in(proc, kernel_function: str, timeout: float = 10.0) -> None:
    """Wait (bounded) until a thread of proc sleeps in the kernel, in a function whose name contains
    `kernel_function` (/proc/PID/task/TID/wchan): "poll" for poll(), "wait_for_more_packets" for a
    datagram receive. A test that means to wake a blocked call must first see it blocked."""
    wait_for(f"a thread of {proc.name} blocked in *{kernel_function}* (wchan)",
             lambda: probes.blocked_in(proc.pid, kernel_function), timeout=timeout, interval=0.02,
             evidence=lambda: f"wchan: {probes.wchans(proc.pid)}\n{proc.report()}")


def assert_exits_zero_within(proc, seconds: float) -> None:
    t0 = time.monotonic()
    rc = proc.wait_exit(seconds)
    assert rc == C.status("eof"), f"expected exit 0 after {time.monotonic() - t0:.2f}s\n{proc.report()}"


def test_two_chats_exchange_lines_full_duplex(lab, steps):
    lines_a = [f"a{i} héllo 你好 😀" for i in range(20)]
    lines_b = [f"b{i} 再见 ünïcode" for i in range(20)]
    with steps.step("start two chats pointed at each other"):
        a, b = chat_pair(lab)
    with steps.step("both type 20 lines at the same time"):
        a.send_line("\n".join(lines_a))
        b.send_line("\n".join(lines_b))
    with steps.step("each prints every line the other typed, from the other's port"):
        got_b = received(b, 20)
        got_a = received(a, 20)
    assert got_b == [(a.ready.port, line) for line in lines_a]
    assert got_a == [(b.ready.port, line) for line in lines_b]


def test_lines_interleave_both_ways(lab, steps):
    a, b = chat_pair(lab)
    for i in range(5):
        with steps.step(f"round {i}: a speaks, b answers"):
            a.send_line(f"ping {i} 你好")
            assert received(b, 1) == [(a.ready.port, f"ping {i} 你好")]
            b.send_line(f"pong {i}")
            assert received(a, 1) == [(b.ready.port, f"pong {i}")]


def test_one_socket_two_threads(lab):
    with UdpClient(bind_port=0) as peer:
        proc = chat(lab, peer.local_port)
        wait_blocked_in(proc, "poll")  # the receiving thread, parked in poll(): everything is set up
        targets = probes.fd_targets(proc.pid)
        sockets = [t for t in targets if t.startswith("socket:")]
        assert len(sockets) == 1, f"expected one socket, /proc shows {sockets}\n{proc.report()}"
        assert targets.count("anon_inode:[eventfd]") == 1, f"and one eventfd: /proc shows {targets}"
        # ThreadSanitizer runs a background thread of its own.
        expected = 3 if TSAN else 2
        assert probes.thread_count(proc.pid) == expected, (
            "the main thread sends, one thread receives\n" + proc.report())
        proc.send_line("from the sending thread")
        data, source = peer.recv(timeout=5)
        assert data == "from the sending thread".encode() and source[1] == proc.ready.port


def test_sendto_goes_while_the_other_thread_sleeps_in_recvfrom(lab, steps):
    """--wake shutdown: the receiver sleeps in recvfrom() itself (no poll). Lines typed meanwhile
    still leave at once, each sent while that thread stays asleep: the sleeping receive holds
    nothing the sender needs."""
    with UdpClient(bind_port=0) as peer:
        proc = chat(lab, peer.local_port, "--wake", "shutdown")
        with steps.step("the receiving thread sleeps in recvfrom(), not in poll()"):
            wait_blocked_in(proc, "wait_for_more_packets")
        for i in range(3):
            with steps.step(f"type line {i}: the peer gets it while the receiver sleeps on"):
                proc.send_line(f"sent past a sleeping recvfrom {i}")
                data, source = peer.recv(timeout=5)
                assert data == f"sent past a sleeping recvfrom {i}".encode(), data
                assert source[1] == proc.ready.port
                assert probes.blocked_in(proc.pid, "wait_for_more_packets"), (
                    f"the receiver left recvfrom() though no datagram came: {probes.wchans(proc.pid)}")
        with steps.step("a datagram for the chat wakes the receiver, which prints it"):
            peer.send_to("back to you", ("127.0.0.1", proc.ready.port))
            assert received(proc, 1) == [(peer.local_port, "back to you")]


@pytest.mark.hint("at stdin EOF the sender must wake the receiving thread (eventfd + poll, or shutdown): "
                  "close() does not wake a blocked recvfrom, and the program cannot exit while a joinable "
                  "thread still runs")
def test_eof_exits_zero_within_2s(lab, steps):
    with UdpClient(bind_port=0) as peer:
        proc = chat(lab, peer.local_port)
        with steps.step("wait until the receiver is blocked in poll(), then close stdin"):
            wait_blocked_in(proc, "poll")
            proc.close_stdin()
        with steps.step("the sender wakes the receiver through the eventfd; both threads end"):
            assert_exits_zero_within(proc, 2)


@pytest.mark.hint("the quit line ends the chat like EOF: do not send it, wake the receiver, exit 0")
def test_quit_line_exits_zero_and_is_not_sent(lab, steps):
    with UdpClient(bind_port=0) as peer:
        proc = chat(lab, peer.local_port)
        proc.send_line("last words")
        proc.send_line("/quit")
        assert_exits_zero_within(proc, 2)
        assert peer.recv(timeout=5)[0] == b"last words"
        with pytest.raises(ClientTimeout):
            peer.recv(timeout=0.5)


def test_shutdown_wakes_receiver_despite_enotconn(lab):
    with UdpClient(bind_port=0) as peer:
        proc = chat(lab, peer.local_port, "--wake", "shutdown")
        wait_blocked_in(proc, "wait_for_more_packets")  # the receiver sleeps in recvfrom()
        proc.close_stdin()
        assert_exits_zero_within(proc, 2)
        m = C["shutdown_woke"].find(proc.stdout)
        assert m and m[1] == "Transport endpoint is not connected", proc.report()


def test_never_woken_receiver_hangs_after_eof(lab, steps):
    with UdpClient(bind_port=0) as peer:
        proc = chat(lab, peer.local_port, "--wake", "none")
        with steps.step("stdin ends, as in the notes nobody wakes the receiver"):
            wait_blocked_in(proc, "wait_for_more_packets")
            proc.close_stdin()
            proc.expect(C["not_waking"])
            time.sleep(scaled(2))   # long enough to see it does not exit
            assert probes.alive(proc.pid), "with --wake none the program should still hang\n" + proc.report()
            wait_blocked_in(proc, "wait_for_more_packets", timeout=1)
        with steps.step("the receiver thread is alive and blocked: a datagram still gets printed"):
            peer.send_to("anyone home?", ("127.0.0.1", proc.ready.port))
            assert received(proc, 1) == [(peer.local_port, "anyone home?")]
            assert probes.alive(proc.pid)
        proc.popen.terminate()
        assert proc.wait_exit(5) == C.status("eof"), proc.report()


def test_close_from_other_thread_does_not_wake_receiver(lab, steps):
    with UdpClient(bind_port=0) as peer:
        proc = chat(lab, peer.local_port, "--wake", "close")
        wait_blocked_in(proc, "wait_for_more_packets")  # close() must find recvfrom() already asleep
        proc.close_stdin()
        if TSAN:
            with steps.step("ThreadSanitizer reports the close() racing with the blocked recvfrom()"):
                wait_for("ThreadSanitizer's SUMMARY line on stderr",
                         lambda: C["tsan_summary"].find(proc.stderr), timeout=10, interval=0.1, fail=False)
                assert C["tsan_race"].find(proc.stderr) and C["tsan_close"].find(proc.stderr), proc.report()
            return
        with steps.step("after close() the program still hangs, its receiver still asleep in recvfrom()"):
            proc.expect(C["closed_socket"])
            time.sleep(scaled(2))   # long enough to see it does not exit
            assert probes.alive(proc.pid), "close() should not have woken recvfrom\n" + proc.report()
            wait_blocked_in(proc, "wait_for_more_packets", timeout=1)
        with steps.step("a datagram still reaches the 'closed' socket; the next recvfrom gets EBADF"):
            peer.send_to("still here", ("127.0.0.1", proc.ready.port))
            assert received(proc, 1) == [(peer.local_port, "still here")]
            assert proc.wait_exit(5) == C.status("ebadf"), proc.report()
            assert C["ebadf"].find(proc.stderr), proc.report()


def test_gb2312_datagram_is_shown_escaped_and_chat_goes_on(lab):
    with pytest.raises(UnicodeDecodeError):
        "你好".encode("gb2312").decode()  # what the notes' receiver does with its peer's gb2312 line
    with UdpClient(bind_port=0) as peer:
        proc = chat(lab, peer.local_port)
        peer.send_to("你好".encode("gb2312"), ("127.0.0.1", proc.ready.port))
        assert received(proc, 1) == [(peer.local_port, r"(not UTF-8, 4 bytes) \xc4\xe3\xba\xc3")]
        peer.send_to("你好".encode(), ("127.0.0.1", proc.ready.port))
        assert received(proc, 1) == [(peer.local_port, "你好")]


def test_address_the_machine_lacks_fails_with_eaddrnotavail(lab):
    """192.0.2.1 (TEST-NET-1, RFC 5737) stands for the notes' 172.20.10.4: an address no interface
    here has."""
    proc = lab.run("udp_chat", "--host", "192.0.2.1", "--port", "8088", "--peer", "127.0.0.1:9")
    assert proc.popen.returncode == C.status("not_here"), proc.report()
    m = C["not_here"].find(proc.stderr)
    assert m and m.group(1, 2) == ("192.0.2.1", "8088"), proc.report()
    assert any(h["prog"] == "udp_chat" for h in HINT.findall(proc.stderr)), proc.report()


def test_second_chat_on_same_port_fails_with_eaddrinuse(lab):
    with UdpClient(bind_port=0) as peer:
        first = chat(lab, peer.local_port)
        assert_port_taken_fails(lab, "udp_chat", first.ready.port, "--peer", f"127.0.0.1:{peer.local_port}")
        assert probes.alive(first.pid)


def test_ipv6_loopback(lab):
    with UdpClient("::1", bind_port=0) as peer:
        proc = lab.server("udp_chat", "--host", "::1", "--port", "0", "--peer", f"[::1]:{peer.local_port}")
        assert proc.ready.host == "::1"
        proc.send_line("over v6")
        assert peer.recv(timeout=5)[0] == b"over v6"
        peer.send_to("back over v6", ("::1", proc.ready.port))
        m = proc.expect(FROM, timeout=5)
        assert (m[1], int(m[2]), m[3]) == ("[::1]", peer.local_port, "back over v6")


def test_sigterm_exits_zero(lab):
    """SIGTERM while both threads sleep (main in read() on stdin, the receiver in poll()) ends the
    program with 0 and nothing else: no thread left half-finished, no report from a sanitizer."""
    proc = chat(lab, 9)
    wait_blocked_in(proc, "pipe_read")  # the main thread waits for a line on stdin
    wait_blocked_in(proc, "poll")       # the receiver waits for a datagram
    proc.popen.terminate()
    assert proc.wait_exit(5) == C.status("eof"), proc.report()
    assert not proc.stderr, f"SIGTERM should end it silently\n{proc.report()}"


def test_cli_contract(lab):
    assert_help_and_usage(lab, "udp_chat")
    for args in ([],
                 ["--peer", "nowhere"],
                 ["--peer", "127.0.0.1:65536"],
                 ["--peer", "127.0.0.1:9", "--wake", "later"]):
        proc = lab.run("udp_chat", *args)
        assert proc.popen.returncode == C.status("usage") and USAGE.find(proc.stderr), proc.report()
