"""Lab 10 time-wait: time_wait_server, restarted at once on the same port.

Each test states one claim of labs/10-time-wait/README.md. A test serves one client with a first
run of the server, then starts a second run on the same port and looks at what bind() says, and
at the TIME_WAIT entries in /proc/net/tcp.
"""
from __future__ import annotations

import errno
import json
import signal
import socket

import pytest

from harness.clients import ClientTimeout, TcpClient
from harness.contract import assert_cli_contract, occupy_tcp
from harness.netns import private_namespace_unavailable, run_in_private_namespace
from harness.output import READY, contract
from harness.probes import tcp_sockets
from harness.programs import program
from harness.steps import wait_for

C = contract("10")


def serve_one(lab, *args: str, client_first: bool = False, host: str = "127.0.0.1") -> tuple[int, int]:
    """First run: one client, one message, the close order chosen; (server port, client port)."""
    order = "--client-closes-first" if client_first else "--server-closes-first"
    server = lab.server("time_wait_server", "--host", host, "--port", "0", order, *args)
    with TcpClient(host, server.ready.port) as client:
        client.send("hello\n")
        assert client.recv_exactly(len("served: hello\n")) == b"served: hello\n"
        client_port = client.local_port
        if not client_first:
            assert client.recv_until_eof() == b"", "the server should close first: the client reads EOF"
        else:
            # The server must wait for our FIN: for a while no EOF may come, or it closed first.
            try:
                early = client.recv_some(timeout=0.5)
            except ClientTimeout:
                early = None
            did = "closed first (EOF)" if early == b"" else f"sent {early!r}"
            assert early is None, ("with --client-closes-first the server must wait for the client's FIN, "
                                   f"but it {did}\n{server.report()}")
    assert server.wait_exit(10) == C.status("served"), server.report()
    # The server may exit before the last FIN or ACK has been processed (loopback packets are handled in
    # softirq context, which lags on a loaded machine): wait until the close handshake is over.
    wait_for(f"the close of the connection between ports {server.ready.port} and {client_port} to finish "
             f"(each end gone or in TIME_WAIT)", lambda: closed(server.ready.port, client_port), timeout=10)
    return server.ready.port, client_port


def closed(port: int, client_port: int) -> bool:
    """True once no end of the connection port <-> client_port is in a state that still waits for a
    segment (FIN_WAIT1/2, CLOSING, LAST_ACK...): each end is gone or in TIME_WAIT."""
    return all(s.state == "TIME_WAIT" for s in tcp_sockets(port)
               if {s.local[1], s.remote[1]} == {port, client_port})


def time_wait_on(port: int, peer: int) -> list:
    """TIME_WAIT entries of the connection between local port `port` and remote port `peer` (the
    side that waits is the one with that local port). Both ports: with the suite running in
    parallel, another connection may have the same ephemeral port towards another server."""
    return [s for s in tcp_sockets(port) if s.state == "TIME_WAIT" and s.local[1] == port
            and s.remote[1] == peer]


def restart(lab, port: int, *args: str, host: str = "127.0.0.1"):
    """Second run on the same port: it either prints READY (then we stop it) or exits."""
    proc = lab.start("time_wait_server", "--host", host, "--port", str(port), *args)
    line = proc.read_line(timeout=10)
    if line is not None and READY.match(line):
        proc.stop()
        return True, proc
    proc.wait_exit(10)
    return False, proc


def assert_eaddrinuse(proc) -> None:
    assert proc.popen.returncode == C.status("in_use"), f"a failed bind must exit 1\n{proc.report()}"
    assert C["in_use"].find(proc.stderr), proc.report()
    assert C["in_use_hint"].find(proc.stderr), proc.report()


def test_server_that_closed_first_leaves_time_wait_on_its_port(lab):
    port, client_port = serve_one(lab)
    assert time_wait_on(port, client_port), (
        f"expected a TIME_WAIT entry on the server's port {port}: {tcp_sockets(port)}")
    assert not time_wait_on(client_port, port), "the client was the passive closer: no TIME_WAIT on its port"


@pytest.mark.hint("without SO_REUSEADDR a restart while TIME_WAIT remains must fail with EADDRINUSE (exit 1"
                  " with the message)")
def test_restart_without_reuseaddr_fails_with_eaddrinuse(lab, steps):
    with steps.step("first run: the server closes first"):
        port, _ = serve_one(lab)
    with steps.step("second run on the same port at once, no SO_REUSEADDR"):
        ok, proc = restart(lab, port)
    assert not ok, f"bind should fail while TIME_WAIT holds port {port}\n{proc.report()}"
    assert_eaddrinuse(proc)


@pytest.mark.parametrize("old, new, works", [
    (False, False, False), (False, True, False), (True, False, False), (True, True, True),
], ids=["neither", "new-only", "old-only", "both"])
@pytest.mark.hint("set SO_REUSEADDR before bind() when --reuseaddr is given: Linux lets the bind pass "
                  "TIME_WAIT only then")
def test_reuseaddr_must_be_set_on_old_and_new_socket(lab, old, new, works):
    port, _ = serve_one(lab, *(["--reuseaddr"] if old else []))
    ok, proc = restart(lab, port, *(["--reuseaddr"] if new else []))
    assert ok == works, (
        f"SO_REUSEADDR on the old socket: {old}, on the new one: {new}. On Linux the restart binds only "
        f"when both set it (the TIME_WAIT entry keeps the old socket's flag)\n{proc.report()}")
    if not works:
        assert_eaddrinuse(proc)


def test_reuseaddr_does_not_remove_time_wait(lab):
    port, _ = serve_one(lab, "--reuseaddr")
    server = lab.server("time_wait_server", "--port", str(port), "--reuseaddr")
    states = [s.state for s in tcp_sockets(port) if s.local[1] == port]
    assert "LISTEN" in states and "TIME_WAIT" in states, (
        f"the new listener and the old TIME_WAIT entry should coexist on port {port}: {states}")
    server.stop()


def test_passive_closer_restarts_without_reuseaddr(lab):
    port, client_port = serve_one(lab, client_first=True)
    assert not time_wait_on(port, client_port), f"the server closed second: no TIME_WAIT on its port {port}"
    assert time_wait_on(client_port, port), f"the client closed first: TIME_WAIT on its port {client_port}"
    ok, proc = restart(lab, port)
    assert ok, (f"nothing of the old server waits on port {port}, so a plain restart must bind\n"
                f"{proc.report()}")


def test_second_listener_fails_even_with_reuseaddr(lab):
    first = lab.server("time_wait_server", "--port", "0", "--reuseaddr")
    ok, second = restart(lab, first.ready.port, "--reuseaddr")
    assert not ok, (
        "SO_REUSEADDR never lets two TCP listeners share a port on Linux (socket(7))\n" + second.report())
    assert_eaddrinuse(second)


def test_reuseport_lets_two_listeners_share_the_port(lab):
    first = lab.server("time_wait_server", "--port", "0", "--reuseport")
    second = lab.server("time_wait_server", "--port", str(first.ready.port), "--reuseport")
    listeners = [s for s in tcp_sockets(first.ready.port) if s.state == "LISTEN"]
    assert len(listeners) == 2, f"SO_REUSEPORT on both: two listeners on one port, got {listeners}"
    second.stop()


def test_ipv6_restart_needs_the_option_too(lab):
    port, _ = serve_one(lab, host="::1")
    ok, proc = restart(lab, port, host="::1")
    assert not ok, proc.report()
    assert_eaddrinuse(proc)


def test_sigterm_while_waiting_for_a_client_exits_zero(lab):
    server = lab.server("time_wait_server", "--port", "0")
    server.popen.send_signal(signal.SIGTERM)
    assert server.wait_exit(5) == C.status("served"), server.report()


def test_cli_contract(lab):
    with occupy_tcp() as port:
        assert_cli_contract(lab, "time_wait_server", port)
    both = lab.run("time_wait_server", "--server-closes-first", "--client-closes-first")
    assert both.popen.returncode == C.status("usage"), both.report()


# Runs inside `unshare -rn`: a private network namespace where tcp_fin_timeout can be changed.
# It serves one client (the server closes first) and times the TIME_WAIT entry on the server's port.
TIMER = r"""
import json, os, shutil, socket, subprocess, sys, time
binary, fin_timeout = sys.argv[1], sys.argv[2]
subprocess.run([shutil.which("ip") or "/usr/sbin/ip", "link", "set", "lo", "up"], check=True)
with open("/proc/sys/net/ipv4/tcp_fin_timeout", "w") as f:
    f.write(fin_timeout)
server = subprocess.Popen([binary, "--port", "0"], stdout=subprocess.PIPE, text=True)
port = int(server.stdout.readline().split()[3])
with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
    c.sendall(b"hi")
    while c.recv(1024):
        pass
server.wait(timeout=10)
def waiting():
    rows = open("/proc/net/tcp").read().splitlines()[1:]
    return any(int(r.split()[1].split(":")[1], 16) == port and r.split()[3] == "06" for r in rows)
deadline = time.monotonic() + 20   # the client's FIN may not be processed yet: the entry appears when it is
while not waiting() and time.monotonic() < deadline:
    time.sleep(0.02)
start = time.monotonic()
seen = waiting()
while waiting() and time.monotonic() - start < 300:
    time.sleep(0.25)
print(json.dumps({"time_wait": seen, "lasted": round(time.monotonic() - start, 1)}), flush=True)
"""


@pytest.mark.slow
@pytest.mark.limit(200)
def test_time_wait_lasts_about_60_seconds_not_tcp_fin_timeout(steps):
    reason = private_namespace_unavailable()
    assert reason is None, f"this test needs a private network namespace: {reason}"
    fin_timeout = 10
    with steps.step(f"in a private namespace with tcp_fin_timeout={fin_timeout}: "
                    "serve one client, time TIME_WAIT"):
        done = run_in_private_namespace(TIMER, str(program("time_wait_server")), str(fin_timeout),
                                        timeout=400)
    assert done.returncode == 0, f"the timing script failed\n{done.stdout}\n{done.stderr}"
    timed = json.loads(done.stdout.strip().splitlines()[-1])
    assert timed["time_wait"], f"no TIME_WAIT entry after the server closed first\n{done.stdout}"
    lasted = float(timed["lasted"])
    assert 55 <= lasted <= 75, (
        f"TIME_WAIT lasted {lasted} s. Linux fixes it at 60 s (TCP_TIMEWAIT_LEN in include/net/tcp.h): "
        f"not 2 x MSL = 4 min as RFC 793 suggests, and not tcp_fin_timeout (set to {fin_timeout} s here)")


# Runs inside `unshare -rn` (a private network namespace, where this script is root): segments for a
# TIME_WAIT entry. time_wait_server serves one client and closes first; a packet socket on lo reads
# the two FINs' sequence numbers; a raw socket then sends the entry a segment of our choosing, and
# /proc/net/tcp shows what became of the entry (its timer column counts down in 1/100 s).
SEGMENTS = r"""import json, os, select, shutil, socket, struct, subprocess, sys, time
binary, mode = sys.argv[1], sys.argv[2]
subprocess.run([shutil.which("ip") or "/usr/sbin/ip", "link", "set", "lo", "up"], check=True)
def out(**kw): print(json.dumps(kw), flush=True)
def sysctl(name, value):
    with open("/proc/sys/net/ipv4/" + name, "w") as f: f.write(str(value))
FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10
sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
sniff.bind(("lo", 0))
def segments(timeout=0.0):
    # TCP segments seen on lo since the last call: (sport, dport, seq, ack, flags), received side only.
    got = []
    while len(got) < 10000 and select.select([sniff], [], [], timeout)[0]:
        frame, addr = sniff.recvfrom(65535)
        timeout = 0.0
        if addr[2] == socket.PACKET_OUTGOING or frame[12:14] != b"\x08\x00" or frame[23] != 6: continue
        ip = frame[14:]
        tcp = ip[(ip[0] & 15) * 4:]
        sport, dport, seq, ack, _, flags = struct.unpack("!HHIIBB", tcp[:14])
        got.append((sport, dport, seq, ack, flags))
    return got
def checksum(data):
    if len(data) % 2: data += b"\0"
    s = sum(struct.unpack(f"!{len(data)//2}H", data))
    while s >> 16: s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
def inject(sport, dport, seq, ack, flags):
    # One bare TCP segment (no options, so no timestamp for PAWS to judge) 127.0.0.1:sport -> :dport.
    head = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
    pseudo = socket.inet_aton("127.0.0.1") * 2 + struct.pack("!BBH", 0, 6, len(head))
    head = head[:16] + struct.pack("!H", checksum(pseudo + head)) + head[18:]
    raw.sendto(head, ("127.0.0.1", 0))
def time_wait(port, client):
    # Seconds left on the TIME_WAIT entry local port:client remote, or None (/proc/net/tcp, USER_HZ=100).
    for row in open("/proc/net/tcp").read().splitlines()[1:]:
        f = row.split()
        if int(f[1].split(":")[1], 16) == port and int(f[2].split(":")[1], 16) == client and f[3] == "06":
            return int(f[5].split(":")[1], 16) / 100
    return None
def acked_by(port, client, ack, limit=10.0):
    # Read lo until port sends client an ACK of `ack` (True) or `limit` seconds pass (False).
    end = time.monotonic() + limit
    for _ in range(1000):
        left = end - time.monotonic()
        if left <= 0: break
        if any(s[:2] == (port, client) and s[4] & ACK and s[3] == ack for s in segments(left)): return True
    return False
def wait_for(cond, limit=10.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if (v := cond()): return v
        time.sleep(0.05)
    return cond()
def closed(port, client):
    # The close handshake is over: each /proc/net/tcp row of this connection is gone or in TIME_WAIT.
    rows = [r.split() for r in open("/proc/net/tcp").read().splitlines()[1:]]
    ends = [r[3] for r in rows
            if {int(r[1].split(":")[1], 16), int(r[2].split(":")[1], 16)} == {port, client}]
    return all(state == "06" for state in ends)
def serve_one(*extra):
    # time_wait_server (server closes first) serves one client: (server port, client port, seqs).
    server = subprocess.Popen([binary, "--port", "0", *extra], stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline().split()[3])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(b"hi\n")
        while c.recv(1024): pass
        client = c.getsockname()[1]
    server.wait(timeout=10)
    wait_for(lambda: closed(port, client), 20)   # every segment of the close was processed, so captured too
    segs = segments(0.5)
    client_fin = [s for s in segs if s[:2] == (client, port) and s[4] & FIN][-1]
    server_fin = [s for s in segs if s[:2] == (port, client) and s[4] & FIN][-1]
    return server, port, client, client_fin[2] + 1, server_fin[2] + 1   # TW's rcv_nxt and snd_nxt

if mode == "fin":
    sysctl("tcp_rfc1337", 1)   # our ACK to the FIN reaches a closed port, whose RST must not end TIME_WAIT
    server, port, client, rcv_nxt, snd_nxt = serve_one()
    start = wait_for(lambda: time_wait(port, client))
    before = wait_for(lambda: (t := time_wait(port, client)) is not None and t <= start - 3 and t, 30)
    inject(client, port, rcv_nxt - 1, snd_nxt, FIN | ACK)   # the peer's FIN again, as if our ACK was lost
    acked = acked_by(port, client, rcv_nxt)    # not only what came with the FIN: the ACK may lag behind it
    after = wait_for(lambda: (t := time_wait(port, client)) is not None and t > before + 1 and t, 5)
    out(start=start, before=before, after=after or time_wait(port, client), acked=acked)
elif mode == "rst":
    server, port, client, rcv_nxt, snd_nxt = serve_one()
    there = [time_wait(port, client) is not None]
    inject(client, port, rcv_nxt + 100000, 0, RST)          # not the sequence number TIME_WAIT expects
    segments(1.0); time.sleep(0.5)
    there.append(time_wait(port, client) is not None)
    sysctl("tcp_rfc1337", 1)                                 # RFC 1337's fix: ignore RST in TIME_WAIT
    inject(client, port, rcv_nxt, 0, RST)
    segments(1.0); time.sleep(0.5)
    there.append(time_wait(port, client) is not None)
    sysctl("tcp_rfc1337", 0)                                 # the default
    inject(client, port, rcv_nxt, 0, RST)
    gone = wait_for(lambda: time_wait(port, client) is None, 5)
    out(before=there[0], after_wrong_seq=there[1], after_rst_rfc1337_1=there[2],
        gone_after_rst_rfc1337_0=gone)
elif mode == "syn":
    server, port, client, rcv_nxt, snd_nxt = serve_one("--reuseaddr")
    there = time_wait(port, client) is not None
    again = subprocess.Popen([binary, "--port", str(port), "--reuseaddr"], stdout=subprocess.PIPE, text=True)
    ready = again.stdout.readline()
    with socket.socket() as c:
        c.bind(("127.0.0.1", client))                        # the same four addresses and ports
        c.settimeout(10)
        c.connect(("127.0.0.1", port))
        c.sendall(b"again\n")
        reply = c.recv(1024).decode()
    again.wait(timeout=10)
    answers = [s for s in segments(1.0) if s[:2] == (port, client)]
    out(time_wait_before=there, ready=ready.strip(), first_answer_flags=answers[0][4] if answers else None,
        syn_ack=bool(answers) and answers[0][4] & (SYN | ACK) == SYN | ACK, reply=reply)
"""


def in_private_namespace(mode: str) -> dict:
    """Run SEGMENTS in `unshare -rn`; skip (with the reason) where no namespace can be made here."""
    if (reason := private_namespace_unavailable()):
        pytest.skip(reason)
    done = run_in_private_namespace(SEGMENTS, str(program("time_wait_server")), mode, timeout=90)
    assert done.returncode == 0, f"the segment script ({mode}) failed\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.limit(120)
def test_retransmitted_fin_is_acked_and_restarts_the_timer():
    got = in_private_namespace("fin")
    assert got["acked"], (
        f"TIME_WAIT should answer the peer's retransmitted FIN with an ACK (RFC 793 3.5): {got}")
    assert got["before"] <= got["start"] - 3 and got["after"] >= 59, (
        "after about 3 s in TIME_WAIT the entry got the peer's FIN again: its timer should start over at "
        f"60 s (inet_twsk_reschedule in tcp_timewait_state_process, net/ipv4/tcp_minisocks.c): {got}")


@pytest.mark.limit(120)
def test_new_syn_on_the_same_four_tuple_reopens_the_connection():
    got = in_private_namespace("syn")
    assert got["time_wait_before"], f"the server's port should be in TIME_WAIT before the new SYN: {got}"
    assert got["ready"].startswith("READY "), (
        f"the restart with --reuseaddr on both runs should listen: {got}")
    assert got["syn_ack"], (
        "a SYN from the same client address and port, with a higher sequence number or newer timestamp, "
        "should be answered at once with SYN-ACK: TIME_WAIT hands it to the listener (RFC 1122 4.2.2.13; "
        f"TCP_TW_SYN). first answer flags: {got['first_answer_flags']} "
        "(16 = a bare ACK: the SYN was refused)")
    assert got["reply"] == "served: again\n", f"the reopened connection should be served: {got}"


@pytest.mark.limit(120)
def test_rst_ends_time_wait_unless_tcp_rfc1337():
    got = in_private_namespace("rst")
    assert got["before"], f"the server's port should be in TIME_WAIT first: {got}"
    assert got["after_wrong_seq"], f"an RST with the wrong sequence number must be ignored: {got}"
    assert got["after_rst_rfc1337_1"], (
        f"with net.ipv4.tcp_rfc1337=1 an RST must not end TIME_WAIT (RFC 1337): {got}")
    assert got["gone_after_rst_rfc1337_0"], (
        f"with tcp_rfc1337=0 (the default) an in-window RST ends TIME_WAIT at once (tcp(7)): {got}")


def _restart_after_time_wait(at_bind: int | None, after_bind: int | None, on_accepted: int | None) -> str:
    """An old listener and its accepted socket with SO_REUSEADDR set (1), cleared (0) or untouched
    (None) at three moments; the server closes first (TIME_WAIT on its port), then a new socket with
    SO_REUSEADDR binds that port: "ok" or the errno name."""
    opt = (socket.SOL_SOCKET, socket.SO_REUSEADDR)
    with socket.socket() as old:
        if at_bind is not None:
            old.setsockopt(*opt, at_bind)
        old.bind(("127.0.0.1", 0))
        port = old.getsockname()[1]
        if after_bind is not None:
            old.setsockopt(*opt, after_bind)
        old.listen(1)
        with socket.create_connection(("127.0.0.1", port)):
            conn, _ = old.accept()
            if on_accepted is not None:
                conn.setsockopt(*opt, on_accepted)
            conn.close()
            assert wait_for("the server's end in FIN_WAIT2", lambda: any(
                s.state == "FIN_WAIT2" and s.local[1] == port for s in tcp_sockets(port)), 5)
        assert wait_for("TIME_WAIT on the server's port", lambda: any(
            s.state == "TIME_WAIT" and s.local[1] == port for s in tcp_sockets(port)), 5)
    with socket.socket() as new:
        new.setsockopt(*opt, 1)
        try:
            new.bind(("127.0.0.1", port))
        except OSError as e:
            return errno.errorcode[e.errno]
    return "ok"


@pytest.mark.parametrize("at_bind, after_bind, on_accepted, expected", [
    (None, None, None, "EADDRINUSE"),
    (1, None, None, "ok"),
    (None, 1, None, "ok"),          # set on the listener after its bind(), before accept()
    (1, 0, None, "EADDRINUSE"),     # cleared on the listener after bind(): accept() copies the 0
    (None, None, 1, "ok"),          # set on the accepted socket only, before its close()
    (1, None, 0, "EADDRINUSE"),     # cleared on the accepted socket: TIME_WAIT copies the 0
], ids=["never", "before-bind", "listener-after-bind", "cleared-after-bind", "accepted-only",
        "cleared-on-accepted"])
def test_old_socket_reuseaddr_counts_at_accept_and_close(at_bind, after_bind, on_accepted, expected):
    """The old socket's SO_REUSEADDR is read when a connection is accepted (the accepted socket
    copies it) and when that connection enters TIME_WAIT, not only at the listener's bind().
    A kernel illustration: plain sockets, no lab program."""
    assert _restart_after_time_wait(at_bind, after_bind, on_accepted) == expected
