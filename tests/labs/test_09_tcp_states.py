"""Lab 09 tcp-states: tcp_states, both ends' TCP states step by step, scenario by scenario.

Each test states one claim of labs/09-tcp-states/README.md. tcp_states runs every scenario in a
private network namespace of its own (only lo) and prints one line per step:
    client FIN_WAIT2    | server CLOSE_WAIT  <what just happened>
The tests parse those lines and compare the sequences with what TCP (RFC 793) says must happen.
"""
from __future__ import annotations

import functools
import os
import socket
import shutil
import signal
import subprocess

import pytest

from harness.clients import free_tcp_port
from harness.contract import assert_help_and_usage
from harness.netns import private_namespace_unavailable
from harness.output import contract
from harness.probes import TCP_STATES, tcp_sockets, tcp_states
from harness.steps import wait_for

C = contract("09")
ROW, SCENARIO = C["row"], C["scenario"]

# The eleven states of RFC 793 section 3.2, and the names Linux (and tcp_states) uses for them.
RFC_TO_LINUX = {
    "LISTEN": "LISTEN", "SYN-SENT": "SYN_SENT", "SYN-RECEIVED": "SYN_RECV", "ESTABLISHED": "ESTABLISHED",
    "FIN-WAIT-1": "FIN_WAIT1", "FIN-WAIT-2": "FIN_WAIT2", "CLOSE-WAIT": "CLOSE_WAIT", "CLOSING": "CLOSING",
    "LAST-ACK": "LAST_ACK", "TIME-WAIT": "TIME_WAIT", "CLOSED": "CLOSED",
}
OPENED = [("CLOSED", "LISTEN"), ("ESTABLISHED", "ESTABLISHED")]  # listen(), then connect() + accept()
EXPECTED = {
    "client-closes-first": OPENED + [("FIN_WAIT1", "ESTABLISHED"), ("FIN_WAIT2", "CLOSE_WAIT"),
                                     ("TIME_WAIT", "LAST_ACK"), ("TIME_WAIT", "CLOSED")],
    "server-closes-first": OPENED + [("ESTABLISHED", "FIN_WAIT1"), ("CLOSE_WAIT", "FIN_WAIT2"),
                                     ("LAST_ACK", "TIME_WAIT"), ("CLOSED", "TIME_WAIT")],
    "simultaneous-close": OPENED + [("ESTABLISHED", "FIN_WAIT1"), ("FIN_WAIT2", "CLOSING"),
                                    ("TIME_WAIT", "TIME_WAIT")],
    "unread-data-reset": OPENED + [("ESTABLISHED", "ESTABLISHED"), ("CLOSED", "CLOSED")],
    "half-close": OPENED + [("FIN_WAIT2", "CLOSE_WAIT"), ("TIME_WAIT", "CLOSED"), ("TIME_WAIT", "CLOSED")],
    "dup-close": OPENED + [("ESTABLISHED", "ESTABLISHED"), ("FIN_WAIT2", "CLOSE_WAIT")],
    "syn-sent": [("CLOSED", "LISTEN"), ("SYN_SENT", "LISTEN"), ("ESTABLISHED", "ESTABLISHED")],
    "syn-recv": [("CLOSED", "LISTEN"), ("ESTABLISHED", "SYN_RECV"), ("ESTABLISHED", "ESTABLISHED"),
                 ("ESTABLISHED", "ESTABLISHED")],
}
WHY = {
    "client-closes-first": "the client's FIN is held back (FIN_WAIT1), then ACKed (FIN_WAIT2 / CLOSE_WAIT); "
                           "the server's close() makes it LAST_ACK until the client's held ACK gets through",
    "server-closes-first": "the mirror image: the server is the active closer",
    "simultaneous-close": "the server's FIN is held back while the client closes: the server receives a FIN "
                          "before the ACK of its own FIN, which is CLOSING",
    "unread-data-reset": "close() with unread data sends RST: both ends are gone at once, no TIME_WAIT",
    "half-close": "shutdown(SHUT_WR) sends FIN but keeps the socket; the server's close() completes "
                  "the close",
    "dup-close": "close() of one of two fds that share a socket (dup) sends nothing; the last close() "
                 "sends the FIN",
    "syn-sent": "with the accept queue full the server drops the SYN; accept() makes room for the "
                "retransmission",
    "syn-recv": "TCP_DEFER_ACCEPT keeps the server's end half-open until data arrives",
}

_runs: dict[tuple[str, ...], str] = {}


@functools.cache
def unavailable_reason() -> str | None:
    """Why tcp_states cannot run here (no private network namespace, no nft), or None."""
    if shutil.which("nft") is None and not os.path.exists("/usr/sbin/nft"):
        return "tcp_states needs the nft tool (Debian package nftables)"
    return private_namespace_unavailable()


def run_states(lab, *args: str) -> str:
    """Run tcp_states to completion (once per argument list in this session); its stdout.
    Skipped, with the reason, where no private network namespace can be made: never passed."""
    if (reason := unavailable_reason()):
        pytest.skip(reason)
    if args not in _runs:
        proc = lab.run("tcp_states", *args, timeout=60)
        assert proc.popen.returncode == C.status("done"), (
            "tcp_states failed. It needs unshare(CLONE_NEWNET) (root, or unprivileged user namespaces) "
            "and the nft tool (Debian package nftables)\n" + proc.report())
        _runs[args] = proc.stdout
    return _runs[args]


def sequences(stdout: str) -> dict[str, list[tuple[str, str]]]:
    """scenario name -> [(client state, server state), ...] in the order printed."""
    out: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in stdout.splitlines():
        if m := SCENARIO.match(line):
            current = out.setdefault(m[1], [])
        elif (m := ROW.match(line)) and current is not None:
            current.append((m[1], m[2]))
    return out


def show(seq: list[tuple[str, str]]) -> str:
    return "\n".join(f"  client {c:<12} | server {s}" for c, s in seq)


@pytest.mark.limit(120)
@pytest.mark.parametrize("scenario", list(EXPECTED))
def test_scenario_goes_through_the_true_states(lab, scenario):
    got = sequences(run_states(lab, "--scenario", scenario)).get(scenario)
    assert got is not None, f"no 'scenario {scenario}' header in the output"
    assert got == EXPECTED[scenario], (
        f"scenario {scenario}: {WHY[scenario]}.\nexpected:\n{show(EXPECTED[scenario])}\ngot:\n{show(got)}")


@pytest.mark.limit(120)
@pytest.mark.parametrize("scenario, waiting", [
    ("client-closes-first", {"client"}), ("server-closes-first", {"server"}),
    ("simultaneous-close", {"client", "server"}), ("unread-data-reset", set()),
])
def test_only_the_active_closer_ends_in_time_wait(lab, scenario, waiting):
    last = sequences(run_states(lab, "--scenario", scenario))[scenario][-1]
    in_time_wait = {end for end, state in zip(("client", "server"), last) if state == "TIME_WAIT"}
    assert in_time_wait == waiting, (
        f"{scenario}: expected TIME_WAIT on {sorted(waiting) or 'neither end'}, the last step shows "
        f"client {last[0]}, server {last[1]}. Only the end that sent the first FIN waits (UNP 2.7); "
        "after a simultaneous close both did; an RST leaves no TIME_WAIT")


@pytest.mark.limit(120)
def test_close_with_unread_data_resets_the_peer(lab):
    out = run_states(lab, "--scenario", "unread-data-reset")
    m = C["recv_error"].find(out)
    assert m and m[1] == "ECONNRESET", (
        "after the server closed with unread data, the client's recv() should fail with ECONNRESET "
        "(an RST came, not a FIN)\n" + out)


@pytest.mark.limit(120)
def test_half_closed_side_still_receives(lab):
    out = run_states(lab, "--scenario", "half-close")
    eof = C["server_recv"].find(out)
    assert eof and eof[1] == "0", "after shutdown(SHUT_WR) the server reads EOF (0)\n" + out
    got = C["client_recv"].find(out)
    assert got and got.group(1, 2) == ("10", "still here"), (
        "the client shut down only its sending side, so it should still receive the server's reply\n" + out)


@pytest.mark.limit(120)
def test_open_socket_in_time_wait_reports_closed_in_tcp_info(lab):
    out = run_states(lab, "--scenario", "half-close")
    m = C["tcp_info"].find(out)
    assert m and m.group(1, 2) == ("CLOSED", "TIME_WAIT"), (
        "after the peer's FIN the half-closed client's connection moves to a TIME_WAIT object: the fd's "
        "TCP_INFO says TCP_CLOSE while /proc/net/tcp lists TIME_WAIT\n" + out)


@pytest.mark.limit(180)
@pytest.mark.parametrize("rfc_name", list(RFC_TO_LINUX))
def test_each_of_the_eleven_rfc793_states_is_observed(lab, rfc_name):
    seen = {state for seq in sequences(run_states(lab)).values() for row in seq for state in row}
    assert RFC_TO_LINUX[rfc_name] in seen, (
        f"RFC 793 state {rfc_name} (Linux: {RFC_TO_LINUX[rfc_name]}) never appeared across the scenarios "
        f"of `tcp_states` (all). Seen: {sorted(seen)}")


@pytest.mark.limit(120)
def test_ipv6_loopback_gives_the_same_simultaneous_close(lab):
    out = run_states(lab, "--host", "::1", "--scenario", "simultaneous-close")
    got = sequences(out)["simultaneous-close"]
    assert got == EXPECTED["simultaneous-close"], show(got)


@pytest.mark.limit(120)
def test_scenarios_stay_in_a_private_namespace(lab):
    port = free_tcp_port()
    run_states(lab, "--port", str(port), "--scenario", "server-closes-first")
    # Sockets bound to the port: the scenario's server end (in TIME_WAIT, had it run here). A client
    # of some earlier server on that port number, in another test, may still wait in TIME_WAIT
    # towards it: its local port is its own.
    left = [s for s in tcp_sockets(port, host="127.0.0.1") if s.local[1] == port]
    assert not left, (f"the scenario ran on port {port} inside its own network namespace, so this "
                      "namespace should have no socket bound to it (a TIME_WAIT here means it ran on "
                      f"the host): {left}")


def test_sigterm_exits_zero(lab):
    if (reason := unavailable_reason()):
        pytest.skip(reason)
    proc = lab.start("tcp_states", "--scenario", "syn-sent")
    while proc.expect(ROW, timeout=30)[1] != "SYN_SENT":
        pass
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.wait_exit(10) == C.status("done"), proc.report()


def test_cli_contract(lab):
    assert_help_and_usage(lab, "tcp_states")
    bad = lab.run("tcp_states", "--scenario", "no-such-scenario")
    m = C["no_scenario"].find(bad.stderr)
    assert bad.popen.returncode == C.status("usage") and m and m[1] == "no-such-scenario", bad.report()
    bad_port = lab.run("tcp_states", "--port", "70000")
    assert bad_port.popen.returncode == C.status("usage"), bad_port.report()


def _client_row_state(port: int, client_port: int) -> str | None:
    rows = [s for s in tcp_sockets(port) if s.local[1] == client_port and s.remote[1] == port]
    return rows[0].state if rows else None


def test_fin_waits_for_the_last_descriptor_seen_in_proc_net_tcp():
    """Observed by the test itself, in /proc/net/tcp: with two fds on one socket (dup), closing one
    leaves the connection ESTABLISHED (the peer reads no EOF); closing the other sends the FIN
    (FIN_WAIT2, and the peer's recv() returns 0). Plain sockets over loopback, no lab program."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        server, _ = listener.accept()
        with server:
            mine = client.getsockname()[1]
            copy = os.dup(client.fileno())
            client.close()
            server.settimeout(0.5)
            with pytest.raises(socket.timeout):
                server.recv(1)          # no FIN came: nothing to read, no EOF
            assert _client_row_state(port, mine) == "ESTABLISHED"
            os.close(copy)
            server.settimeout(5)
            assert server.recv(1) == b"", "the last close() should have sent the FIN (EOF)"
            assert wait_for("the client's end in FIN_WAIT2",
                            lambda: _client_row_state(port, mine) == "FIN_WAIT2", 5)


NOTES_PORT = 8088   # tcp_states' default --port (the README's); the tests below pass it explicitly


@pytest.mark.limit(60)
@pytest.mark.hint("syn-sent: a second client's SYN must wait, unanswered, while the accept queue (backlog 0) "
                  "is full, and the first connection sits ESTABLISHED in it; the test reads both from "
                  "/proc/PID/net/tcp of the scenario's own network namespace, not from your printout")
def test_handshake_and_established_states_seen_in_proc_net_tcp(lab):
    """Observed by the test itself, in tcp_states' network namespace (/proc/PID/net/tcp), while the
    syn-sent scenario holds the states: once the row shows SYN_SENT, the second client's SYN waits
    about 1 s for its retransmission (SYN_SENT) and the first connection is ESTABLISHED at both
    ends (the client and the server's end in the accept queue)."""
    if (reason := unavailable_reason()):
        pytest.skip(reason)
    proc = lab.start("tcp_states", "--port", str(NOTES_PORT), "--scenario", "syn-sent")
    while proc.expect(ROW, timeout=30)[1] != "SYN_SENT":
        pass
    pid = proc.popen.pid

    def seen() -> dict[str, int]:
        return dict(tcp_states(NOTES_PORT, pid))

    def held() -> bool:
        got = seen()
        return got.get("SYN_SENT", 0) >= 1 and got.get("ESTABLISHED", 0) >= 2

    states = wait_for("a SYN_SENT client and an ESTABLISHED pair in tcp_states' /proc/net/tcp", held, 0.5,
                      fail=False)
    assert states, (
        f"while tcp_states printed SYN_SENT, its namespace's /proc/net/tcp (port {NOTES_PORT}) should list "
        "one SYN_SENT socket (the second client) and two ESTABLISHED ones (the first connection's "
        f"ends); it lists {seen() or 'nothing'}\n" + proc.report())
    assert proc.wait_exit(30) == C.status("done"), proc.report()


def _proc_net_tcp_of(net_fd: int, user_fd: int | None) -> list[tuple[int, int, str]]:
    """(local port, remote port, state) of each row of /proc/net/tcp and tcp6 in the network
    namespace held open by net_fd (joining user_fd's user namespace first, where tcp_states made one)."""
    argv = ["nsenter", f"--net=/proc/self/fd/{net_fd}"]
    if user_fd is not None:
        argv[1:1] = [f"--user=/proc/self/fd/{user_fd}", "--preserve-credentials"]  # no setgroups
    fds = [fd for fd in (net_fd, user_fd) if fd is not None]
    out = subprocess.run([*argv, "cat", "/proc/net/tcp", "/proc/net/tcp6"], capture_output=True, text=True,
                         timeout=10, pass_fds=fds)
    assert out.returncode == 0, f"nsenter into tcp_states' namespace failed: {out.stderr.strip()}"
    rows = []
    for line in out.stdout.splitlines():
        f = line.split()
        if len(f) > 3 and ":" in f[1] and f[0].endswith(":"):
            rows.append((int(f[1].split(":")[1], 16), int(f[2].split(":")[1], 16),
                         TCP_STATES.get(int(f[3], 16), f[3])))
    return rows


@pytest.mark.limit(60)
@pytest.mark.hint("client-closes-first: the end that closes first must be left in TIME_WAIT (it waits 60 s "
                  "on Linux) and the server's end gone; the test reads the scenario's namespace itself")
def test_time_wait_seen_in_proc_net_tcp_after_the_active_close(lab):
    """Observed by the test itself: the test keeps tcp_states' network namespace open (an fd on
    /proc/PID/ns/net), and after client-closes-first reads its /proc/net/tcp: the client's end is
    in TIME_WAIT (60 s on Linux, so it outlives the program), the server's end has no row."""
    if (reason := unavailable_reason()):
        pytest.skip(reason)
    proc = lab.start("tcp_states", "--port", str(NOTES_PORT), "--scenario", "client-closes-first")
    proc.expect(ROW, timeout=30)   # the listen() row: the scenario's namespace exists
    pid = proc.popen.pid
    net_fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    user_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY)
    try:
        if os.fstat(user_fd).st_ino == os.stat("/proc/self/ns/user").st_ino:
            os.close(user_fd)
            user_fd = None
        assert proc.wait_exit(30) == C.status("done"), proc.report()
        rows = _proc_net_tcp_of(net_fd, user_fd)
    finally:
        os.close(net_fd)
        if user_fd is not None:
            os.close(user_fd)
    to_server = [state for local, remote, state in rows if remote == NOTES_PORT]
    from_server = [state for local, remote, state in rows if local == NOTES_PORT and state != "LISTEN"]
    assert to_server == ["TIME_WAIT"] and not from_server, (
        "after client-closes-first, the client (the active closer) should hold the only entry, in "
        f"TIME_WAIT; tcp_states' namespace lists client side {to_server or 'nothing'}, server side "
        f"{from_server or 'nothing'}\n" + proc.report())
