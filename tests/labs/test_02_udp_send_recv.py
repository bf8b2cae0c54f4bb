"""Lab 02 udp-send-recv: udp_send and udp_recv, datagram by datagram.

Each test states one claim of labs/02-udp-send-recv/README.md and proves it over loopback.
"""
from __future__ import annotations

import codecs
import re
import pytest

from harness.clients import free_udp_port
from harness.contract import assert_cli_contract, assert_help_and_usage, occupy_udp

DATAGRAM = re.compile(r'^datagram (\d+) from (\S+):(\d+) len (\d+) real (\d+) trunc ([01]) data "(.*)"$')


class Datagram:
    def __init__(self, m: re.Match[str]) -> None:
        self.index, self.host, self.port = int(m[1]), m[2].strip("[]"), int(m[3])
        self.length, self.real, self.truncated = int(m[4]), int(m[5]), m[6] == "1"
        self.data: bytes = codecs.escape_decode(m[7].encode("latin-1"))[0]


def next_datagram(receiver) -> Datagram:
    return Datagram(receiver.expect(DATAGRAM, timeout=5))


def send(lab, port: int, *args: str, host: str = "127.0.0.1", input: bytes | None = None):
    sender = lab.run("udp_send", "--host", host, "--port", str(port), *args, input=input)
    assert sender.popen.returncode == 0, sender.report()
    return sender


@pytest.fixture
def receiver(lab):
    return lab.server("udp_recv", "--port", "0", "--bufsize", "65536")


@pytest.mark.parametrize("payload", [b"hello", b"\x00\x01\xff binary \n\r\t\"\\", bytes(range(256))],
                         ids=["text", "escapes", "all-256-byte-values"])
def test_payload_arrives_byte_exact(lab, receiver, payload):
    send(lab, receiver.ready.port, "--hex", payload.hex())
    got = next_datagram(receiver)
    assert got.data == payload
    assert (got.length, got.real, got.truncated) == (len(payload), len(payload), False)


def test_empty_datagram_is_a_datagram(lab, receiver):
    send(lab, receiver.ready.port, "--message", "")
    got = next_datagram(receiver)
    assert (got.data, got.length, got.real) == (b"", 0, 0)


def test_two_sends_are_two_datagrams(lab, receiver, steps):
    with steps.step("send 'first' and 'second' from one socket (two stdin lines)"):
        send(lab, receiver.ready.port, input=b"first\nsecond\n")
    with steps.step("the receiver gets them as two datagrams, never merged"):
        a, b = next_datagram(receiver), next_datagram(receiver)
    assert (a.data, b.data) == (b"first", b"second")
    assert (a.index, b.index) == (1, 2)


def test_largest_ipv4_payload_65507_passes(lab, receiver):
    send(lab, receiver.ready.port, "--size", "65507")
    got = next_datagram(receiver)
    assert (got.length, got.real, got.truncated) == (65507, 65507, False)
    assert got.data == b"x" * 65507


def test_65508_bytes_fail_with_emsgsize(lab, receiver):
    sender = lab.run("udp_send", "--port", str(receiver.ready.port), "--size", "65508")
    assert sender.popen.returncode == 1, sender.report()
    assert "udp_send: sendto 127.0.0.1:" in sender.stderr and "[EMSGSIZE]" in sender.stderr, sender.report()
    assert "65507" in sender.stderr, "the hint should give the real limit\n" + sender.report()


def test_3000_bytes_into_1024_byte_buffer_is_reported_truncated(lab, steps):
    with steps.step("start udp_recv with the notes' 1024-byte buffer"):
        small = lab.server("udp_recv", "--port", "0")
    send(lab, small.ready.port, "--size", "3000")
    got = next_datagram(small)
    assert (got.length, got.real, got.truncated) == (1024, 3000, True)
    assert got.data == b"x" * 1024
    small.expect(r"TRUNCATED: .*1976 bytes .* lost")


def test_sender_source_port_is_ephemeral_and_bound_implicitly(lab, receiver):
    sender = send(lab, receiver.ready.port, "--message", "who am i")
    assert re.search(r"bound to 0\.0\.0\.0:0 ", sender.stdout), "before sendto the socket has no port\n" + sender.report()
    sent_from = int(re.search(r"sent \d+ bytes to \S+ from \S+:(\d+)$", sender.stdout, re.M)[1])
    low, high = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    assert low <= sent_from <= high
    got = next_datagram(receiver)
    assert (got.host, got.port) == ("127.0.0.1", sent_from)


def test_sendto_without_receiver_succeeds(lab):
    sender = send(lab, free_udp_port(), "--message", "anyone there?")
    assert "sent 13 bytes" in sender.stdout


def test_count_ends_receiver_with_status_zero(lab):
    receiver = lab.server("udp_recv", "--port", "0", "--count", "1")
    send(lab, receiver.ready.port, "--message", "bye")
    assert receiver.wait_exit(5) == 0, receiver.report()


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
    assert too_big.popen.returncode == 1 and "[EMSGSIZE]" in too_big.stderr, too_big.report()


def test_sigterm_exits_zero(lab):
    receiver = lab.server("udp_recv", "--port", "0")
    receiver.popen.send_signal(15)
    assert receiver.wait_exit(5) == 0, receiver.report()


def test_cli_contract(lab):
    with occupy_udp() as port:
        assert_cli_contract(lab, "udp_recv", port)
    assert_help_and_usage(lab, "udp_send")
    bad = lab.run("udp_send", "--hex", "0g")
    assert bad.popen.returncode == 2 and "--hex" in bad.stderr, bad.report()
