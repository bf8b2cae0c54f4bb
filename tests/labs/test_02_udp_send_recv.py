"""Lab 02 udp-send-recv: udp_send and udp_recv, datagram by datagram.

Each test states one claim of labs/02-udp-send-recv/README.md and proves it over loopback.
"""
from __future__ import annotations

import codecs
import re
import pytest

from harness import probes
from harness.clients import free_udp_port
from harness.contract import assert_cli_contract, assert_help_and_usage, occupy_udp
from harness.netns import Lan, unavailable_reason
from harness.output import contract

C = contract("02")
DATAGRAM = C["datagram"]


class Datagram:
    def __init__(self, m: re.Match[str]) -> None:
        self.index, self.host, self.port = int(m[1]), m[2].strip("[]"), int(m[3])
        self.length, self.real, self.truncated = int(m[4]), int(m[5]), m[6] == "1"
        self.data: bytes = codecs.escape_decode(m[7].encode("latin-1"))[0]


def next_datagram(receiver) -> Datagram:
    return Datagram(receiver.expect(DATAGRAM, timeout=5))


def send(lab, port: int, *args: str, host: str = "127.0.0.1", input: bytes | None = None):
    sender = lab.run("udp_send", "--host", host, "--port", str(port), *args, input=input)
    assert sender.popen.returncode == C.status("sent"), sender.report()
    return sender


@pytest.fixture
def receiver(lab):
    return lab.server("udp_recv", "--port", "0", "--bufsize", "65536")


@pytest.mark.parametrize("payload", [b"hello", b"\x00\x01\xff binary \n\r\t\"\\", bytes(range(256))],
                         ids=["text", "escapes", "all-256-byte-values"])
@pytest.mark.hint("send and print the bytes exactly: binary data may hold NUL bytes, so use lengths, never "
                  "C strings")
def test_payload_arrives_byte_exact(lab, receiver, payload):
    send(lab, receiver.ready.port, "--hex", payload.hex())
    got = next_datagram(receiver)
    assert got.data == payload
    assert (got.length, got.real, got.truncated) == (len(payload), len(payload), False)


@pytest.mark.hint("a 0-byte datagram is a real datagram: recvfrom returns 0 for it, which is not an error "
                  "or EOF")
def test_empty_datagram_is_a_datagram(lab, receiver):
    send(lab, receiver.ready.port, "--message", "")
    got = next_datagram(receiver)
    assert (got.data, got.length, got.real) == (b"", 0, 0)


@pytest.mark.hint("one sendto() per message: UDP keeps message boundaries, so each stdin line must be its "
                  "own datagram")
def test_two_sends_are_two_datagrams(lab, receiver, steps):
    with steps.step("send 'first' and 'second' from one socket (two stdin lines)"):
        send(lab, receiver.ready.port, input=b"first\nsecond\n")
    with steps.step("the receiver gets them as two datagrams, never merged"):
        a, b = next_datagram(receiver), next_datagram(receiver)
    assert (a.data, b.data) == (b"first", b"second")
    assert (a.index, b.index) == (1, 2)


@pytest.mark.hint("the receive buffer must hold 65507 bytes (--bufsize), and the sender must send the whole"
                  " payload at once")
def test_largest_ipv4_payload_65507_passes(lab, receiver):
    send(lab, receiver.ready.port, "--size", "65507")
    got = next_datagram(receiver)
    assert (got.length, got.real, got.truncated) == (65507, 65507, False)
    assert got.data == b"x" * 65507


@pytest.mark.hint("sendto fails with EMSGSIZE above 65507 bytes: report it on stderr and exit 1, never exit"
                  " 0 on an error")
def test_65508_bytes_fail_with_emsgsize(lab, receiver):
    sender = lab.run("udp_send", "--port", str(receiver.ready.port), "--size", "65508")
    assert sender.popen.returncode == C.status("too_big"), sender.report()
    m = C["too_big"].find(sender.stderr)
    assert m and m[1] == "127.0.0.1", sender.report()
    assert C["too_big_hint"].find(sender.stderr), "the hint should give the real limit\n" + sender.report()


@pytest.mark.hint("the receive buffer truncated the datagram silently: receive with MSG_TRUNC and check "
                  "msg_flags & MSG_TRUNC to report the real length")
def test_3000_bytes_into_1024_byte_buffer_is_reported_truncated(lab, steps):
    with steps.step("start udp_recv with the notes' 1024-byte buffer"):
        small = lab.server("udp_recv", "--port", "0")
    send(lab, small.ready.port, "--size", "3000")
    got = next_datagram(small)
    assert (got.length, got.real, got.truncated) == (1024, 3000, True)
    assert got.data == b"x" * 1024
    assert small.expect(C["truncated"])[1] == "1976", small.report()
    with steps.step("the tail is not waiting for a second receive: the next one gets the next datagram"):
        send(lab, small.ready.port, "--message", "next")
        after = next_datagram(small)
        assert (after.index, after.data, after.real) == (2, b"next", 4), small.report()


def snmp_counter(text: str, group: str, field: str) -> int:
    """One counter from the text of /proc/net/snmp, e.g. ("Ip", "FragCreates")."""
    rows = [line.split() for line in text.splitlines() if line.startswith(group + ":")]
    return int(rows[1][rows[0].index(field)])


@pytest.mark.limit(60)
def test_3000_bytes_over_ethernet_leave_as_three_ip_fragments(lab, steps):
    """On a 1500-byte MTU link one IP packet carries 1480 bytes of the 3008-byte UDP datagram (8 of
    them header): 1480 + 1480 + 48, three fragments. The receiver still gets one whole datagram."""
    if (reason := unavailable_reason()):
        pytest.skip(reason)
    with Lan() as lan:
        with steps.step("two hosts on one Ethernet link (veth, MTU 1500), in namespaces of their own"):
            lan.switch("link")
            h1 = lan.host("h1", ("link", "192.0.2.1/24"))
            h2 = lan.host("h2", ("link", "192.0.2.2/24"))
            assert int(h1.run("cat", "/sys/class/net/eth0/mtu").stdout) == 1500
            receiver = lan.start(h2, "udp_recv", "--host", "192.0.2.2", "--port", "0",
                                 "--bufsize", "65536", lab=lab)
            receiver.wait_ready(timeout=10)
        counters = lambda host: host.run("cat", "/proc/net/snmp").stdout  # noqa: E731
        sent_before, reassembled_before = counters(h1), counters(h2)
        with steps.step("h1 sends one 3000-byte datagram to h2"):
            sender = lan.start(h1, "udp_send", "--host", "192.0.2.2", "--port", receiver.ready.port,
                               "--size", "3000", lab=lab)
            assert sender.wait_exit(10) == C.status("sent"), sender.report()
            got = next_datagram(receiver)
            assert (got.real, got.truncated, got.data) == (3000, False, b"x" * 3000)
        sent_after, reassembled_after = counters(h1), counters(h2)
    fragments = snmp_counter(sent_after, "Ip", "FragCreates") - snmp_counter(sent_before, "Ip", "FragCreates")
    assert fragments == 3, f"h1 created {fragments} IP fragments for one 3000-byte datagram"
    assert snmp_counter(sent_after, "Ip", "FragOKs") - snmp_counter(sent_before, "Ip", "FragOKs") == 1
    reassembled = (snmp_counter(reassembled_after, "Ip", "ReasmOKs")
                   - snmp_counter(reassembled_before, "Ip", "ReasmOKs"))
    assert reassembled == 1


@pytest.mark.hint("do not bind() the sender: the kernel picks an ephemeral port at the first sendto()")
def test_sender_source_port_is_ephemeral_and_bound_implicitly(lab, receiver):
    sender = send(lab, receiver.ready.port, "--message", "who am i")
    unbound = C["unbound"].find(sender.stdout)
    assert unbound and unbound[1] == "0.0.0.0:0", "before sendto the socket has no port\n" + sender.report()
    m = C["sent"].find(sender.stdout)
    assert m and m[3] == "0.0.0.0", (
        "the implicit bind takes the wildcard address and a port\n" + sender.report())
    sent_from = int(m[4])
    low, high = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    assert low <= sent_from <= high
    got = next_datagram(receiver)
    assert (got.host, got.port) == ("127.0.0.1", sent_from)


@pytest.mark.hint("an unconnected UDP sendto succeeds even if nobody listens: do not treat that as an error")
def test_sendto_without_receiver_succeeds(lab):
    sender = send(lab, free_udp_port(), "--message", "anyone there?")
    assert [int(m[1]) for m in C["sent"].findall(sender.stdout)] == [13], sender.report()


@pytest.mark.hint("the receiver is one socket, bound to --host (127.0.0.1 by default, never the wildcard) "
                  "and the port it prints, with no peer: bind() it, never connect() it")
def test_receiver_is_one_unconnected_socket_on_its_port(lab, receiver):
    """What `ss -uanp` shows, read from /proc/net/udp: 127.0.0.1:PORT, no peer, state 07 (UNCONN)."""
    inodes = {int(t[8:-1]) for t in probes.fd_targets(receiver.pid) if t.startswith("socket:")}
    assert len(inodes) == 1, f"expected the receiver to hold one socket, it holds {len(inodes)}"
    rows = [line.split() for line in open("/proc/net/udp").read().splitlines()[1:]]
    mine = [(r[1], r[2], r[3]) for r in rows if int(r[9]) in inodes]
    want = (f"0100007F:{receiver.ready.port:04X}", "00000000:0000", "07")
    assert mine == [want], (
        f"expected /proc/net/udp to list its socket as local 127.0.0.1:{receiver.ready.port}, no peer, "
        f"state 07 (UNCONN), it lists (local, peer, state) {mine}")


@pytest.mark.hint("--count N: exit with status 0 after N datagrams")
def test_count_ends_receiver_with_status_zero(lab):
    receiver = lab.server("udp_recv", "--port", "0", "--count", "1")
    send(lab, receiver.ready.port, "--message", "bye")
    assert receiver.wait_exit(5) == C.status("count"), receiver.report()


@pytest.mark.hint("bind the address --host names (::1 needs an AF_INET6 socket) and print it in the ready "
                  "line")
def test_ipv6_loopback(lab):
    receiver = lab.server("udp_recv", "--host", "::1", "--port", "0")
    assert receiver.ready.host == "::1"
    send(lab, receiver.ready.port, "--message", "over v6", host="::1")
    got = next_datagram(receiver)
    assert (got.host, got.data) == ("::1", b"over v6")


def test_ipv6_limit_is_65527(lab):
    receiver = lab.server("udp_recv", "--host", "::1", "--port", "0", "--bufsize", "65536")
    send(lab, receiver.ready.port, "--size", "65527", host="::1")
    assert next_datagram(receiver).real == 65527
    too_big = lab.run("udp_send", "--host", "::1", "--port", str(receiver.ready.port), "--size", "65528")
    assert too_big.popen.returncode == C.status("too_big"), too_big.report()
    assert C["too_big"].find(too_big.stderr), too_big.report()


@pytest.mark.hint("SIGTERM/SIGINT must end the program with status 0 (the contract)")
def test_sigterm_exits_zero(lab):
    receiver = lab.server("udp_recv", "--port", "0")
    receiver.popen.send_signal(15)
    assert receiver.wait_exit(5) == 0, receiver.report()


@pytest.mark.hint("--help exits 0, a bad option exits 2 with usage on stderr, a port in use exits 1 with "
                  "[EADDRINUSE] and a hint")
def test_cli_contract(lab):
    with occupy_udp() as port:
        assert_cli_contract(lab, "udp_recv", port)
    assert_help_and_usage(lab, "udp_send")
    bad = lab.run("udp_send", "--hex", "0g")
    assert bad.popen.returncode == C.status("usage") and "--hex" in bad.stderr, bad.report()
