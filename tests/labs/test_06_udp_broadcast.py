"""Lab 06 udp-broadcast: broadcast_sender and broadcast_receiver, on loopback and on a LAN.

Each test states one claim of labs/06-udp-broadcast/README.md. The loopback tests send only to
127.255.255.255. The LAN tests build their own network namespaces (harness/netns/lan.py): hosts on
192.0.2.0/24 (h1, h2, h3) and, behind a router, 198.51.100.0/24 (h4); nothing they send leaves
those namespaces. Where namespaces cannot be created they are skipped, with the reason.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from harness.contract import assert_cli_contract, assert_help_and_usage, assert_port_taken_fails, occupy_udp
from harness.process import LabProcess
from harness.programs import program
from harness.netns import Lan, namespaces_of_this_process, unavailable_reason
from harness.steps import scaled, wait_for as until
from harness.output import contract

C = contract("06")
DATAGRAM = C["datagram"]
LOOPBACK_BROADCAST = "127.255.255.255"
NOTES_PORT = 21567


def datagrams(proc) -> list[tuple[str, str, str]]:
    """(source host, destination address, text) of every datagram the receiver printed so far."""
    return [(m[2], m[4], m[5]) for m in DATAGRAM.findall(proc.stdout)]


def wait_for(proc, count: int, timeout: float = 5.0) -> list[tuple[str, str, str]]:
    """Wait until the receiver printed `count` datagrams (or more); all it printed."""
    until(f"{proc.name} to print {count} datagram(s)", lambda: len(datagrams(proc)) >= count, timeout=timeout,
          interval=0.02, evidence=lambda: f"it printed {len(datagrams(proc))}\n{proc.report()}")
    return datagrams(proc)


def quiet_period() -> None:
    """Time for a datagram that was going to arrive to arrive (loopback and veth take microseconds)."""
    time.sleep(scaled(0.5))


def receiver(lab, port: int | str, host: str = "0.0.0.0", *extra: str):
    return lab.server("broadcast_receiver", "--host", host, "--port", port, *extra)


def broadcast_option(sender) -> str:
    """on or off: what the sender's so_broadcast line says."""
    m = C["so_broadcast"].find(sender.stdout)
    assert m, f"expected a line like `{C['so_broadcast'].template}`\n{sender.report()}"
    return m[1]


def send(lab, *args: str, input: str | None = None, rc: int = C.status("sent")):
    proc = lab.run("broadcast_sender", *args, input=input)
    assert proc.popen.returncode == rc, proc.report()
    return proc


# ---- loopback -----------------------------------------------------------------------------

@pytest.mark.hint("the sender needs SO_BROADCAST; receivers must bind 0.0.0.0 (with SO_REUSEADDR to share "
                  "the port)")
def test_two_wildcard_receivers_each_get_every_broadcast(lab, steps):
    with steps.step("two receivers bind 0.0.0.0 on one port (both set SO_REUSEADDR)"):
        first = receiver(lab, 0)
        second = receiver(lab, first.ready.port)
    with steps.step("three lines are broadcast to 127.255.255.255"):
        sender = send(lab, "--port", str(first.ready.port), input="one\ntwo\n广播 three\n")
        assert broadcast_option(sender) == "on", sender.report()
    expected = [("127.0.0.1", LOOPBACK_BROADCAST, text) for text in ("one", "two", "广播 three")]
    assert wait_for(first, 3) == expected
    assert wait_for(second, 3) == expected


def test_receiver_bound_to_127_0_0_1_gets_no_broadcast(lab, steps):
    wildcard = receiver(lab, 0)
    specific = receiver(lab, wildcard.ready.port, "127.0.0.1")
    assert C["exact_only"].find(specific.stdout), specific.report()
    with steps.step("broadcast: only the wildcard receiver gets it"):
        send(lab, "--port", str(wildcard.ready.port), "--message", "to everyone")
        wait_for(wildcard, 1)
        quiet_period()
        assert datagrams(specific) == [], specific.report()
    with steps.step("control: a unicast to 127.0.0.1 does reach it"):
        send(lab, "--host", "127.0.0.1", "--port", str(wildcard.ready.port), "--message", "to you")
        assert wait_for(specific, 1) == [("127.0.0.1", "127.0.0.1", "to you")]


@pytest.mark.hint("without SO_BROADCAST sendto to a broadcast address fails with EACCES: report it and exit"
                  " 1")
def test_without_so_broadcast_sendto_fails_with_eacces(lab):
    listening = receiver(lab, 0)
    sender = send(lab, "--port", str(listening.ready.port), "--message", "x", "--no-so-broadcast",
                  rc=C.status("eacces"))
    assert broadcast_option(sender) == "off", sender.report()
    m = C["eacces"].find(sender.stderr)
    assert m and m.group(1, 2) == (LOOPBACK_BROADCAST, str(listening.ready.port)), sender.report()
    assert C["eacces_hint"].find(sender.stderr), sender.report()
    quiet_period()
    assert datagrams(listening) == []


def test_receiver_bound_to_the_broadcast_address_gets_broadcasts(lab):
    listening = receiver(lab, 0, LOOPBACK_BROADCAST)
    send(lab, "--port", str(listening.ready.port), "--message", "to the group")
    assert wait_for(listening, 1) == [("127.0.0.1", LOOPBACK_BROADCAST, "to the group")]


def test_so_broadcast_needs_no_privilege(lab):
    """SO_BROADCAST is a safety catch, not a permission: an unprivileged user (nobody) may set it."""
    def become_nobody() -> None:
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
    # nobody must be able to reach the program: the build may sit below a folder only its owner can
    # enter (a `mktemp -d` checkout, pytest's tmp_path), so run a copy from a folder anyone can read.
    reachable = Path(tempfile.mkdtemp(prefix="socklab-nobody-"))
    try:
        os.chmod(reachable, 0o755)
        copy = reachable / "broadcast_sender"
        shutil.copy2(program("broadcast_sender"), copy)
        listening = receiver(lab, 0)
        sender = LabProcess([copy, "--port", str(listening.ready.port), "--message", "from nobody"],
                            preexec=become_nobody)
        lab.started.append(sender)
        sender.close_stdin()
        assert sender.wait_exit(10) == 0, sender.report()
        assert wait_for(listening, 1) == [("127.0.0.1", LOOPBACK_BROADCAST, "from nobody")]
    finally:
        shutil.rmtree(reachable, ignore_errors=True)


def test_unicast_reaches_only_one_of_the_receivers_sharing_a_port(lab):
    first = receiver(lab, 0)
    second = receiver(lab, first.ready.port)
    send(lab, "--host", "127.0.0.1", "--port", str(first.ready.port), "--message", "just one")
    until("a datagram at either receiver", lambda: datagrams(first) or datagrams(second),
          timeout=5, interval=0.02, fail=False)
    quiet_period()
    assert len(datagrams(first)) + len(datagrams(second)) == 1, first.report() + "\n" + second.report()


def test_second_receiver_without_reuseaddr_fails_with_eaddrinuse(lab):
    first = receiver(lab, 0)
    assert_port_taken_fails(lab, "broadcast_receiver", first.ready.port,
                            "--host", "0.0.0.0", "--no-reuseaddr")


@pytest.mark.hint("set SO_REUSEADDR before bind() on every receiver: the kernel lets a bind share the "
                  "port only if the socket already bound there has it too")
def test_reuseaddr_on_the_second_receiver_alone_is_not_enough(lab):
    """SO_REUSEADDR must be on *every* receiver: a first one bound without it keeps the port to
    itself, and a second one that sets it still fails with EADDRINUSE."""
    first = receiver(lab, 0, "0.0.0.0", "--no-reuseaddr")
    assert_port_taken_fails(lab, "broadcast_receiver", first.ready.port, "--host", "0.0.0.0")


def test_ipv6_has_no_broadcast_but_the_programs_work_over_ipv6(lab):
    listening = receiver(lab, 0, "::1")
    send(lab, "--host", "::1", "--port", str(listening.ready.port), "--message", "v6 unicast")
    assert wait_for(listening, 1) == [("[::1]", "::1", "v6 unicast")]


def test_empty_line_is_sent_as_an_empty_datagram(lab):
    """The notes' sender stops at an empty line; ours sends it (a valid datagram, lab 02) and goes on."""
    listening = receiver(lab, 0)
    sender = send(lab, "--port", str(listening.ready.port), input="before\n\nafter\n")
    assert [int(m[1]) for m in C["sent"].findall(sender.stdout)] == [6, 0, 5], sender.report()
    got = [text.strip() for _, _, text in wait_for(listening, 3)]
    assert got == ["before", "", "after"], (
        f"an empty input line should arrive as a datagram of 0 bytes between the other two: {got}\n"
        + listening.report())


def test_sigterm_exits_zero(lab):
    proc = receiver(lab, 0)
    proc.popen.terminate()
    assert proc.wait_exit(5) == 0, proc.report()


def test_cli_contract(lab):
    with occupy_udp() as port:
        assert_cli_contract(lab, "broadcast_receiver", port)
    assert_help_and_usage(lab, "broadcast_sender")
    assert lab.run("broadcast_sender", "--port", "70000").popen.returncode == C.status("usage")


# ---- a LAN of network namespaces ------------------------------------------------------------

@pytest.fixture
def lan():
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    with Lan() as built:
        built.switch("a")
        built.switch("b")
        for n in (1, 2, 3):
            built.host(f"h{n}", ("a", f"192.0.2.{n}/24"), gateway="192.0.2.254")
        built.host("router", ("a", "192.0.2.254/24"), ("b", "198.51.100.254/24"), forwarding=True)
        built.host("h4", ("b", "198.51.100.4/24"), gateway="198.51.100.254")
        yield built
    assert namespaces_of_this_process() == [], "the LAN's namespaces should all be deleted"


def lan_receivers(lan, lab, names=("h1", "h2", "h3", "h4")) -> dict:
    out = {}
    for name in names:
        proc = lan.start(lan.hosts[name], "broadcast_receiver", "--host", "0.0.0.0", lab=lab)
        proc.wait_ready(timeout=10)
        assert proc.ready.port == NOTES_PORT
        out[name] = proc
    return out


def lan_send(lan, lab, destination: str, text: str, *extra: str):
    proc = lan.start(lan.hosts["h1"], "broadcast_sender", "--host", destination, "--message", text,
                     *extra, lab=lab)
    assert proc.wait_exit(10) == C.status("sent"), proc.report()
    return proc


@pytest.mark.parametrize("destination", ["192.0.2.255", "255.255.255.255"],
                         ids=["subnet-broadcast", "limited-broadcast"])
def test_lan_broadcast_reaches_every_host_of_the_subnet_and_no_other(lan, lab, steps, destination):
    with steps.step("receivers on h1 (the sender's host), h2, h3 and, behind the router, h4"):
        receivers = lan_receivers(lan, lab)
    with steps.step(f"h1 broadcasts to {destination}"):
        lan_send(lan, lab, destination, "hello LAN")
    with steps.step("h1, h2 and h3 each get one copy, addressed to the broadcast address"):
        for name in ("h1", "h2", "h3"):
            assert wait_for(receivers[name], 1) == [("192.0.2.1", destination, "hello LAN")], name
    with steps.step("h4, on the other subnet, gets nothing: routers do not forward broadcasts"):
        quiet_period()
        assert datagrams(receivers["h4"]) == [], receivers["h4"].report()


def test_lan_unicast_crosses_the_router(lan, lab):
    receivers = lan_receivers(lan, lab, names=("h4",))
    lan_send(lan, lab, "198.51.100.4", "routed unicast")
    assert wait_for(receivers["h4"], 1) == [("192.0.2.1", "198.51.100.4", "routed unicast")]


def test_lan_directed_broadcast_to_another_subnet_is_not_forwarded(lan, lab, steps):
    receivers = lan_receivers(lan, lab, names=("h4",))
    with steps.step("to h1, 198.51.100.255 is just an address behind its gateway: no SO_BROADCAST needed"):
        lan_send(lan, lab, "198.51.100.255", "directed", "--no-so-broadcast")
    with steps.step("the router does not forward it onto 198.51.100.0/24"):
        quiet_period()
        assert datagrams(receivers["h4"]) == [], receivers["h4"].report()
    with steps.step("control: a unicast to h4 right after does arrive"):
        lan_send(lan, lab, "198.51.100.4", "unicast")
        assert wait_for(receivers["h4"], 1) == [("192.0.2.1", "198.51.100.4", "unicast")]


def test_lan_without_so_broadcast_is_eacces_too(lan, lab):
    proc = lan.start(lan.hosts["h1"], "broadcast_sender", "--host", "192.0.2.255", "--message", "x",
                     "--no-so-broadcast", lab=lab)
    assert proc.wait_exit(10) == C.status("eacces"), proc.report()
    assert C["eacces"].find(proc.stderr), proc.report()
