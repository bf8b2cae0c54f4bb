"""Lab 04 udp-echo: udp_echo_server and udp_echo_client.

Each test states one claim of labs/04-udp-echo/README.md and proves it over loopback.
"""
from __future__ import annotations

import io
import os
import socket
import threading
import time
import tokenize
from contextlib import contextmanager
from typing import Callable, Iterator

import pytest

from harness import probes
from harness.clients import UdpClient, free_udp_port
from harness.contract import assert_cli_contract, assert_help_and_usage, occupy_udp
from harness.netns import Lan, unavailable_reason
from harness.steps import wait_for
from harness.output import HINT, contract

C = contract("04")
CALLBACK, ECHO, IDENTICAL = C["callback"], C["echo"], C["identical"]


@pytest.fixture
def server(lab):
    return lab.server("udp_echo_server", "--port", "0")


def client(lab, port: int, *args: str, input: str | None = None, host: str = "127.0.0.1"):
    return lab.run("udp_echo_client", "--host", host, "--port", str(port), *args, input=input)


def echoes(proc) -> list[str]:
    """What the client printed as echoes (C-escaped); every stdout line must be an echo line."""
    found = ECHO.only(proc.stdout)
    assert found is not None, (
        f"expected every stdout line like `{ECHO.template}` ({ECHO.where})\n{proc.report()}")
    return [m[1] for m in found]


def snmp(text: str, group: str, field: str) -> int:
    """One counter from the text of /proc/net/snmp, e.g. snmp(text, "Icmp", "OutDestUnreachs")."""
    rows = [line.split() for line in text.splitlines() if line.startswith(group + ":")]
    return int(rows[1][rows[0].index(field)])


def pattern(n: int) -> bytes:
    """The bytes udp_echo_client --size N sends: i*7 mod 251."""
    return bytes(i * 7 % 251 for i in range(n))


@contextmanager
def fake_server(reply: Callable[[socket.socket, bytes, tuple], None]) -> Iterator[int]:
    """A one-datagram UDP server of our own on 127.0.0.1 that answers with `reply`; yields its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(15)

    def serve() -> None:
        try:
            data, peer = sock.recvfrom(65536)
            reply(sock, data, peer)
        except OSError:
            pass
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()
        t.join(timeout=5)


# ---- the server: byte-exact echoes, a counter, every sender ---------------------------------

@pytest.mark.hint("send back exactly the bytes received (the length recvfrom returned), to the address "
                  "recvfrom reported")
@pytest.mark.parametrize("size", [1, 1472, 1500, 8192, 65507])
def test_echo_is_byte_exact(server, size):
    payload = os.urandom(size)
    with UdpClient(timeout=5) as c:
        c.send_to(payload, server.ready.address)
        echo, source = c.recv(size=65536)
    same = "identical" if echo == payload else "different"
    assert echo == payload, f"sent {size} bytes, got {len(echo)} back, {same}"
    assert source == server.ready.address, "the echo comes from the server's bound address"
    m = server.expect(CALLBACK)
    assert int(m[4]) == size


def test_largest_ipv6_payload_65527_is_echoed(lab):
    server = lab.server("udp_echo_server", "--host", "::1", "--port", "0")
    payload = os.urandom(65527)
    with UdpClient("::1", timeout=5) as c:
        c.send_to(payload, ("::1", server.ready.port))
        echo, _ = c.recv(size=65536)
    assert echo == payload


@pytest.mark.hint("every echo must go back to the address recvfrom() reported for that very datagram: "
                  "each sender gets its own echoes")
def test_counter_increments_and_logs_each_sender(server):
    with UdpClient(timeout=5) as a, UdpClient(timeout=5) as b:
        for sender, text in ((a, b"one"), (b, b"two"), (a, b"three")):
            sender.send_to(text, server.ready.address)
            assert sender.recv()[0] == text
        lines = [server.expect(CALLBACK) for _ in range(3)]
        assert [int(m[1]) for m in lines] == [1, 2, 3]
        assert [int(m[3]) for m in lines] == [a.local_port, b.local_port, a.local_port]
        assert [m[5] for m in lines] == ["one", "two", "three"]


def test_log_shows_binary_escaped_and_long_datagrams_cut(server):
    with UdpClient(timeout=5) as c:
        c.send_to(b'a\x00"\n', server.ready.address)
        c.recv()
        c.send_to(b"z" * 100, server.ready.address)
        c.recv()
    first, second = server.expect(CALLBACK), server.expect(CALLBACK)
    assert first[5] == r'a\x00\"\n' and first[6] is None
    assert (second[4], second[5], second[6]) == ("100", "z" * 64, "...")


def test_non_utf8_datagram_is_echoed_and_logged_not_decoded(server):
    gb2312 = "你好".encode("gb2312")
    with pytest.raises(UnicodeDecodeError):
        gb2312.decode()  # what the notes' server does with every datagram
    with UdpClient(timeout=5) as c:
        c.send_to(gb2312, server.ready.address)
        assert c.recv()[0] == gb2312
    assert server.expect(CALLBACK)[5] == r"\xc4\xe3\xba\xc3"
    assert server.popen.poll() is None


@pytest.mark.hint("every echo must go back to the address recvfrom() reported for that very datagram: "
                  "each client gets exactly its own echoes")
def test_many_clients_at_once_each_get_their_own_echoes(lab, server, steps):
    clients, lines = 8, 20
    with steps.step(f"start {clients} udp_echo_client processes, {lines} lines each, all at once"):
        procs = [lab.start("udp_echo_client", "--port", server.ready.port, "--timeout-ms", "5000")
                 for _ in range(clients)]
        for i, p in enumerate(procs):
            assert p.popen.stdin is not None
            p.popen.stdin.write("".join(f"client {i} line {j}\n" for j in range(lines)).encode())
            p.popen.stdin.flush()
            p.close_stdin()
    with steps.step("each client prints exactly its own lines back, in order, and exits 0"):
        for i, p in enumerate(procs):
            assert p.wait_exit(30) == C.status("eof"), p.report()
            assert echoes(p) == [f"client {i} line {j}" for j in range(lines)], p.report()
    with steps.step("the server counted every datagram"):
        counts = [int(server.expect(CALLBACK)[1]) for _ in range(clients * lines)]
        assert counts == list(range(1, clients * lines + 1))


def test_count_ends_server_with_status_zero(lab):
    server = lab.server("udp_echo_server", "--port", "0", "--count", "2")
    assert client(lab, server.ready.port, input="a\nb\n").popen.returncode == C.status("eof")
    assert server.wait_exit(5) == C.status("count"), server.report()


# ---- the client: echoes, and never waiting forever --------------------------------------------

def test_client_prints_each_echo_and_exits_zero_at_eof(lab, server):
    proc = client(lab, server.ready.port, input="hello\n你好\n\n")
    assert proc.popen.returncode == C.status("eof"), proc.report()
    assert echoes(proc) == ["hello", r"\xe4\xbd\xa0\xe5\xa5\xbd", ""], proc.report()


@pytest.mark.parametrize("mode", [[], ["--connect"]], ids=["unconnected", "connected"])
@pytest.mark.parametrize("size", [0, 1, 1472, 1500, 8192, 65507])
def test_client_size_round_trip_is_identical(lab, server, size, mode):
    proc = client(lab, server.ready.port, "--size", str(size), *mode)
    assert proc.popen.returncode == C.status("eof"), proc.report()
    m = IDENTICAL.find(proc.stdout)
    assert m, f"expected a line like `{IDENTICAL.template}` ({IDENTICAL.where})\n{proc.report()}"
    assert (int(m[1]), m[2], int(m[3])) == (size, "127.0.0.1", server.ready.port), proc.report()
    assert int(server.expect(CALLBACK)[4]) == size


def test_client_size_check_catches_a_changed_echo(lab):
    def corrupt(sock, data, peer):
        sock.sendto(bytes([data[0] ^ 1]) + data[1:], peer)
    with fake_server(corrupt) as port:
        proc = client(lab, port, "--size", "1500")
    assert proc.popen.returncode == C.status("differs"), proc.report()
    assert C["differs"].find(proc.stderr), proc.report()


@pytest.mark.hint("no timeout on the UDP client: a lost datagram blocks recvfrom forever; set SO_RCVTIMEO "
                  "and exit 1 on EAGAIN")
def test_no_server_unconnected_times_out_with_exit_1(lab):
    port = free_udp_port()
    started = time.monotonic()
    proc = client(lab, port, "--timeout-ms", "700", input="anyone?\n")
    waited = time.monotonic() - started
    assert proc.popen.returncode == C.status("timeout"), proc.report()
    m = C["timeout"].match(proc.stderr.splitlines()[0] if proc.stderr else "")
    assert m and (m[1], m[2], int(m[3])) == ("700", "127.0.0.1", port), proc.report()
    assert "never told" in m[4], "an unconnected socket must say it is never told\n" + proc.report()
    assert waited >= 0.7, (
        "it must wait out its timeout: nothing tells an unconnected socket the port is closed")


@pytest.mark.hint("only a connect()ed UDP socket hears ICMP port unreachable (ECONNREFUSED); and it needs "
                  "SO_RCVTIMEO as well")
def test_no_server_connected_reports_econnrefused(lab):
    port = free_udp_port()
    proc = client(lab, port, "--connect", "--timeout-ms", "10000", input="anyone?\n")
    assert proc.popen.returncode == C.status("refused"), proc.report()
    m = C["refused"].match(proc.stderr.splitlines()[0] if proc.stderr else "")
    assert m and (m[1], int(m[2])) == ("127.0.0.1", port), proc.report()
    assert any(h["prog"] == "udp_echo_client" for h in HINT.findall(proc.stderr)), proc.report()


@pytest.mark.parametrize("mode", [[], ["--connect"]], ids=["unconnected", "connected"])
def test_kernel_sends_icmp_port_unreachable_whether_or_not_the_client_hears(lab, steps, mode):
    """In a network namespace of our own, so that /proc/net/snmp counts only this client's traffic."""
    if (reason := unavailable_reason()):
        pytest.skip(reason)
    with Lan() as lan:
        host = lan.host("h1")  # only loopback, and nothing listens on 8088 (the notes' port)
        counters = lambda: host.run("cat", "/proc/net/snmp").stdout  # noqa: E731
        before = counters()
        with steps.step(f"udp_echo_client {' '.join(mode)} sends one line to 127.0.0.1:8088"):
            proc = lan.start(host, "udp_echo_client", "--timeout-ms", "700", *mode, lab=lab)
            proc.send_line("anyone?")
            proc.close_stdin()
            assert proc.wait_exit(10) == C.status("timeout"), proc.report()
        after = counters()
    sent = snmp(after, "Icmp", "OutDestUnreachs") - snmp(before, "Icmp", "OutDestUnreachs")
    heard = snmp(after, "Icmp", "InDestUnreachs") - snmp(before, "Icmp", "InDestUnreachs")
    assert (sent, heard) == (1, 1), f"one ICMP port unreachable sent and received, got {sent} and {heard}"
    if mode:
        assert C["refused"].find(proc.stderr), proc.report()
    else:
        assert C["timeout"].find(proc.stderr), "the ICMP came back, yet the unconnected socket is not told"


def test_timeout_zero_blocks_forever_like_the_notes(lab, steps):
    proc = lab.start("udp_echo_client", "--port", free_udp_port(), "--timeout-ms", "0")
    proc.send_line("anyone?")
    with steps.step("the client goes to sleep in the kernel's datagram receive"):
        wait_for("a thread of udp_echo_client asleep in wait_for_more_packets (wchan)",
                 lambda: probes.blocked_in(proc.pid, "wait_for_more_packets"), timeout=10, interval=0.02,
                 evidence=lambda: f"wchan {probes.wchans(proc.pid)}\n{proc.report()}")
    with steps.step("2 s later it still sleeps there, with nothing to wake it"):
        time.sleep(2)
        assert proc.popen.poll() is None, proc.report()
        blocked = probes.blocked_in(proc.pid, "wait_for_more_packets")
        assert probes.state(proc.pid) == "S" and blocked, proc.report()
    with steps.step("only a signal ends it (SIGTERM: exit 0)"):
        proc.popen.send_signal(15)
        assert proc.wait_exit(5) == 0, proc.report()


@pytest.mark.parametrize("mode,expected", [([], "stranger"), (["--connect"], "real echo")],
                         ids=["unconnected-takes-any-sender", "connected-takes-only-its-peer"])
def test_only_a_connected_socket_filters_other_senders(lab, mode, expected):
    def stranger_first(sock, data, peer):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.sendto(b"stranger", peer)
        time.sleep(0.2)
        sock.sendto(b"real echo", peer)
    with fake_server(stranger_first) as port:
        proc = client(lab, port, "--timeout-ms", "5000", *mode, input="hi\n")
    assert proc.popen.returncode == C.status("eof"), proc.report()
    assert echoes(proc) == [expected], proc.report()


# ---- the notes' source line, and the contract ---------------------------------------------------

def test_notes_coding_line_with_spaces_is_not_a_declaration():
    """PEP 263 wants `coding:` or `coding=` with no space before it; `coding = x` is an ordinary comment."""
    def declared(first_line: str) -> str:
        return tokenize.detect_encoding(io.BytesIO(first_line.encode() + b"\npass\n").readline)[0]
    assert declared("# coding=latin-1") == "iso-8859-1"
    assert declared("# coding = latin-1") == "utf-8", "ignored: Python 3's default applies"


def test_ipv6_loopback(lab):
    server = lab.server("udp_echo_server", "--host", "::1", "--port", "0")
    assert server.ready.host == "::1"
    proc = client(lab, server.ready.port, input="over v6\n", host="::1")
    assert proc.popen.returncode == C.status("eof") and echoes(proc) == ["over v6"], proc.report()
    assert server.expect(CALLBACK)[2] == "[::1]"


def test_sigterm_exits_zero(server):
    server.popen.send_signal(15)
    assert server.wait_exit(5) == 0, server.report()


def test_cli_contract(lab):
    with occupy_udp() as port:
        assert_cli_contract(lab, "udp_echo_server", port)
    assert_help_and_usage(lab, "udp_echo_client")
    for bad in (["--size", "65508"], ["--timeout-ms", "-1"]):
        proc = lab.run("udp_echo_client", *bad)
        assert proc.popen.returncode == C.status("usage") and bad[0] in proc.stderr, proc.report()
