"""Lab 03 text-encoding: text_send and text_recv, bytes on the wire and the text they encode.

Each test states one claim of labs/03-text-encoding/README.md and proves it over loopback.
"""
from __future__ import annotations

import re

import pytest

from harness import probes
from harness.clients import ClientTimeout, UdpClient, free_udp_port
from harness.contract import assert_cli_contract, assert_help_and_usage, occupy_udp
from harness.output import contract

C = contract("03")
SENT, DATAGRAM, TEXT, ERROR = C["sent"], C["datagram"], C["text"], C["decode_error"]
NIHAO = "你好"


def hexes(data: bytes) -> str:
    return data.hex(" ")


def send(lab, port: int, *args: str, input: str | None = None):
    """Run text_send to completion; it must succeed. Returns the list of hex strings it sent."""
    sender = lab.run("text_send", "--port", str(port), *args, input=input)
    assert sender.popen.returncode == C.status("sent"), sender.report()
    return [m[4] for m in SENT.findall(sender.stdout)]


def receiver(lab, encoding: str, *extra: str):
    return lab.server("text_recv", "--port", "0", "--encoding", encoding, *extra)


def next_outcome(recv) -> tuple[re.Match[str], re.Match[str]]:
    """The next `datagram ...` line and the line after it that says what it decoded to."""
    head = recv.expect(DATAGRAM, timeout=5)
    while True:
        line = recv.read_line(timeout=5)
        assert line is not None, recv.report()
        m = TEXT.match(line) or ERROR.match(line)
        if m:
            return head, m


def send_raw(port: int, data: bytes, host: str = "127.0.0.1") -> None:
    with UdpClient(host) as c:
        c.send_to(data, (host, port))


# ---- the sender: the same text, different bytes ----------------------------------------------

@pytest.mark.parametrize("encoding,expected", [
    ("utf-8", "e4 bd a0 e5 a5 bd"),
    ("gb2312", "c4 e3 ba c3"),
    ("gbk", "c4 e3 ba c3"),
    ("gb18030", "c4 e3 ba c3"),
])
@pytest.mark.hint("a socket carries bytes: encode the text with the chosen encoding (iconv) before send, "
                  "exactly")
def test_nihao_bytes_on_the_wire(lab, encoding, expected):
    with UdpClient(bind_port=0) as wire:
        printed = send(lab, wire.local_port, "--encoding", encoding, "--message", NIHAO)
        data, _ = wire.recv(timeout=5)
    assert hexes(data) == expected, f"{NIHAO} in {encoding} should be {expected}"
    assert printed == [expected], "text_send should print the bytes it sent"


@pytest.mark.parametrize("text,encoding", [("€", "gb2312"), ("😀", "gb2312"), ("镕", "gb2312"),
                                           ("😀", "gbk")])
def test_character_without_a_form_is_a_clear_sender_error(lab, text, encoding):
    port = free_udp_port()
    sender = lab.run("text_send", "--port", str(port), "--encoding", encoding, "--message", "ab" + text)
    assert sender.popen.returncode == C.status("encode_error"), sender.report()
    m = C["no_form"].match(sender.stderr.splitlines()[0] if sender.stderr else "")
    assert m and m.group(1, 2, 3, 4) == (encoding, text, f"U+{ord(text):04X}", "2"), sender.report()
    assert not SENT.find(sender.stdout), "nothing may be sent when encoding fails\n" + sender.report()


@pytest.mark.parametrize("text,encoding,expected", [
    ("€", "gbk", "80"), ("镕", "gbk", "e9 46"), ("😀", "gb18030", "94 39 fc 36"), ("€", "utf-8", "e2 82 ac"),
])
def test_larger_encodings_cover_what_gb2312_lacks(lab, text, encoding, expected):
    with UdpClient(bind_port=0) as wire:
        send(lab, wire.local_port, "--encoding", encoding, "--message", text)
        data, _ = wire.recv(timeout=5)
    assert hexes(data) == expected


def test_unknown_encoding_is_a_usage_error(lab):
    for name, extra in (("text_send", ["--message", "x"]), ("text_recv", [])):
        proc = lab.run(name, "--encoding", "no-such-encoding", "--port", "0", *extra)
        usage = "usage" if name == "text_send" else "recv_usage"
        assert proc.popen.returncode == C.status(usage), proc.report()
        line = C["unknown_encoding" if name == "text_send" else "recv_unknown_encoding"]
        m = line.find(proc.stderr)
        assert m and m[1] == "no-such-encoding", proc.report()


def test_each_stdin_line_is_one_datagram(lab):
    with UdpClient(bind_port=0) as wire:
        send(lab, wire.local_port, "--encoding", "gb2312", input="你\n好\n")
        got = [wire.recv(timeout=5)[0] for _ in range(2)]
    assert got == ["你".encode("gb2312"), "好".encode("gb2312")]


def test_stdin_stops_at_the_first_line_it_cannot_encode(lab):
    with UdpClient(bind_port=0) as wire:
        sender = lab.run("text_send", "--port", str(wire.local_port), "--encoding", "gb2312",
                         input="你\n€\n好\n")
        assert sender.popen.returncode == C.status("encode_error"), sender.report()
        assert wire.recv(timeout=5)[0] == "你".encode("gb2312")
        with pytest.raises(ClientTimeout):
            wire.recv(timeout=0.5)  # 好 after the bad line is never sent
    m = C["no_form"].find(sender.stderr)
    assert m and m.group(2, 3, 4) == ("€", "U+20AC", "0"), sender.report()


@pytest.mark.parametrize("data,offset,first",
                         [(b"ok \xff", 3, "ff"), (b"a\xc3(", 1, "c3"), (b"\xe4\xbd", 0, None)],
                         ids=["ff-byte", "bad-continuation", "cut-character"])
def test_input_that_is_not_utf8_is_named_as_such(lab, data, offset, first):
    sender = lab.run("text_send", "--port", str(free_udp_port()), "--encoding", "gb2312", input=data + b"\n")
    assert sender.popen.returncode == C.status("encode_error"), sender.report()
    if first:
        m = C["not_utf8"].find(sender.stderr)
        assert m and m.group(2, 3) == (str(offset), first), sender.report()
    else:
        m = C["cut_input"].find(sender.stderr)
        assert m and m[2] == str(offset), sender.report()


# ---- the receiver: bytes first, then text or a clear error -----------------------------------

@pytest.mark.hint("decode the received bytes with the same encoding the sender used")
@pytest.mark.parametrize("encoding", ["utf-8", "gb2312", "gbk", "gb18030"])
def test_matching_encodings_round_trip(lab, encoding):
    text = "你好, socket! 网络编程" + ("😀€" if encoding in ("utf-8", "gb18030") else "")
    recv = receiver(lab, encoding)
    printed = send(lab, recv.ready.port, "--encoding", encoding, "--message", text)
    head, outcome = next_outcome(recv)
    assert head[5] == printed[0] == hexes(text.encode(encoding)), "the receiver shows the bytes exactly"
    assert outcome.re is TEXT.pattern and outcome[1] == text, recv.report()


def test_utf8_bytes_read_as_gb2312_is_a_decode_error_with_offset(lab):
    recv = receiver(lab, "gb2312")
    send(lab, recv.ready.port, "--encoding", "utf-8", "--message", NIHAO)
    head, outcome = next_outcome(recv)
    assert head[5] == "e4 bd a0 e5 a5 bd"
    assert outcome.re is ERROR.pattern, recv.report()
    assert (outcome[1], outcome[3]) == ("2", "EILSEQ"), "a0 at byte 2 cannot start a GB2312 character"
    assert outcome[4] == "浣", "e4 bd happen to be a GB2312 character: shown only as 'decoded before it'"


def test_utf8_bytes_can_read_as_other_gb2312_text_without_error(lab):
    """好人 in UTF-8 is three valid GB2312 characters: no decoder can notice; only the hex shows it."""
    recv = receiver(lab, "gb2312")
    send(lab, recv.ready.port, "--encoding", "utf-8", "--message", "好人")
    head, outcome = next_outcome(recv)
    assert head[5] == hexes("好人".encode("utf-8"))
    assert outcome.re is TEXT.pattern and outcome[1] == "濂戒汉" != "好人", recv.report()


def test_gb2312_bytes_read_as_utf8_is_a_decode_error_at_byte_0(lab):
    recv = receiver(lab, "utf-8")
    send(lab, recv.ready.port, "--encoding", "gb2312", "--message", NIHAO)
    head, outcome = next_outcome(recv)
    assert head[5] == "c4 e3 ba c3"
    assert outcome.re is ERROR.pattern and (outcome[1], outcome[3]) == ("0", "EILSEQ"), recv.report()
    assert "not valid utf-8" in outcome[2]


@pytest.mark.parametrize("data,offset", [(b"ok \xff rest", 3), (b"\x80", 0), (b"abc\xed\xa0\x80", 3)],
                         ids=["ff-byte", "lone-continuation", "utf16-surrogate"])
def test_invalid_utf8_names_the_offset_and_keeps_running(lab, data, offset):
    recv = receiver(lab, "utf-8")
    send_raw(recv.ready.port, data)
    _, outcome = next_outcome(recv)
    assert outcome.re is ERROR.pattern and int(outcome[1]) == offset, recv.report()
    send_raw(recv.ready.port, b"still here")
    _, after = next_outcome(recv)
    assert after.re is TEXT.pattern and after[1] == "still here", (
        "one bad datagram must not stop the receiver")
    assert recv.popen.poll() is None


def test_control_characters_are_escaped_in_the_text(lab):
    recv = receiver(lab, "utf-8")
    send_raw(recv.ready.port, b'a\tb\nc"\\')
    _, outcome = next_outcome(recv)
    assert outcome.re is TEXT.pattern and outcome[1] == r'a\x09b\x0ac\"\\', recv.report()


def test_datagram_longer_than_1024_bytes_is_decoded_whole(lab):
    """The notes' recvfrom(1024) would cut this datagram (lab 02); text_recv's buffer holds any datagram."""
    text = "你" * 1000  # 3000 bytes in UTF-8
    recv = receiver(lab, "utf-8")
    send(lab, recv.ready.port, "--message", text)
    head, outcome = next_outcome(recv)
    assert int(head[4]) == 3000, recv.report()
    assert outcome.re is TEXT.pattern and outcome[1] == text, "all 1000 characters, decoded from one datagram"


def test_receiver_binds_loopback_not_every_interface(lab):
    """The notes bind ("", 7789): every interface. text_recv binds 127.0.0.1 unless --host says otherwise."""
    recv = receiver(lab, "utf-8")
    inodes = {int(t[8:-1]) for t in probes.fd_targets(recv.pid) if t.startswith("socket:")}
    rows = [line.split() for line in open("/proc/net/udp").read().splitlines()[1:]]
    mine = [r[1] for r in rows if int(r[9]) in inodes]
    assert mine == [f"0100007F:{recv.ready.port:04X}"], f"/proc/net/udp shows {mine}: expected 127.0.0.1 only"


def test_notes_percent_s_shows_the_repr_of_bytes_not_text():
    """The notes' first print formats the received bytes with %s: Python shows their repr."""
    content = NIHAO.encode("gb2312")
    assert "content is %s" % content == r"content is b'\xc4\xe3\xba\xc3'"
    assert "content is %s" % content.decode("gb2312") == f"content is {NIHAO}"


# ---- the exercise: one character cut across two datagrams ------------------------------------

def test_split_character_fails_when_each_datagram_is_decoded_alone(lab, steps):
    recv = receiver(lab, "utf-8")
    with steps.step("text_send --split 1: 你 = e4 | bd a0 in two datagrams"):
        sent = send(lab, recv.ready.port, "--split", "1", "--message", "你")
    assert sent == ["e4", "bd a0"]
    with steps.step("the first datagram ends inside the character: EINVAL at byte 0"):
        _, first = next_outcome(recv)
        assert first.re is ERROR.pattern and (first[1], first[3]) == ("0", "EINVAL"), recv.report()
    with steps.step("the second starts with continuation bytes: EILSEQ at byte 0"):
        _, second = next_outcome(recv)
        assert second.re is ERROR.pattern and (second[1], second[3]) == ("0", "EILSEQ"), recv.report()


@pytest.mark.hint("a character split across datagrams: keep the incomplete tail bytes and decode them with "
                  "the next datagram")
def test_split_character_decodes_with_carry(lab, steps):
    recv = receiver(lab, "utf-8", "--carry")
    with steps.step("send 'a你b' split after byte 2: 61 e4 | bd a0 62"):
        send(lab, recv.ready.port, "--split", "2", "--message", "a你b")
    with steps.step("the first datagram shows 'a' and carries e4"):
        _, first = next_outcome(recv)
        assert first.re is TEXT.pattern and first[1] == "a", recv.report()
        assert recv.expect(C["carry"]).group(1, 2, 3) == ("1", "e4", "utf-8"), recv.report()
    with steps.step("the second datagram completes the character"):
        _, second = next_outcome(recv)
        assert second.re is TEXT.pattern and second[1] == "你b", recv.report()


def test_gb2312_split_shows_wrong_characters_not_only_errors(lab):
    """GB2312 cannot resynchronise: a trail byte can also be a lead byte, so cut text decodes wrongly."""
    recv = receiver(lab, "gb2312")
    send(lab, recv.ready.port, "--encoding", "gb2312", "--split", "1", "--message", NIHAO)
    _, first = next_outcome(recv)
    assert first.re is ERROR.pattern and first[3] == "EINVAL"
    _, second = next_outcome(recv)
    assert second.re is ERROR.pattern and second[3] == "EINVAL" and second[4] == "愫", recv.report()
    assert "愫" not in NIHAO


def test_gb2312_split_decodes_with_carry(lab):
    recv = receiver(lab, "gb2312", "--carry")
    send(lab, recv.ready.port, "--encoding", "gb2312", "--split", "3", "--message", NIHAO)
    _, first = next_outcome(recv)
    assert first.re is TEXT.pattern and first[1] == "你"
    _, second = next_outcome(recv)
    assert second.re is TEXT.pattern and second[1] == "好", recv.report()


# ---- the contract ------------------------------------------------------------------------------

def test_ipv6_loopback(lab):
    recv = lab.server("text_recv", "--host", "::1", "--port", "0", "--encoding", "gb18030")
    assert recv.ready.host == "::1"
    send(lab, recv.ready.port, "--host", "::1", "--encoding", "gb18030", "--message", NIHAO)
    head, outcome = next_outcome(recv)
    assert head[2] == "[::1]" and outcome[1] == NIHAO, recv.report()


def test_count_ends_receiver_with_status_zero(lab):
    recv = lab.server("text_recv", "--port", "0", "--count", "1")
    send_raw(recv.ready.port, b"\xff")
    assert recv.wait_exit(5) == C.status("count"), (
        "a decode error is reported, not a failure of the program\n" + recv.report())


def test_sigterm_exits_zero(lab):
    recv = receiver(lab, "utf-8")
    recv.popen.send_signal(15)
    assert recv.wait_exit(5) == 0, recv.report()


def test_cli_contract(lab):
    with occupy_udp() as port:
        assert_cli_contract(lab, "text_recv", port)
    assert_help_and_usage(lab, "text_send")
    bad = lab.run("text_send", "--split", "0", "--message", "x")
    assert bad.popen.returncode == C.status("usage") and "--split" in bad.stderr, bad.report()
