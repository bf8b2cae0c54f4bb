"""Lab 10 time-wait: time_wait_server, restarted at once on the same port.

Each test states one claim of labs/10-time-wait/README.md. A test serves one client with a first
run of the server, then starts a second run on the same port and looks at what bind() says, and
at the TIME_WAIT entries in /proc/net/tcp.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from harness.clients import TcpClient
from harness.contract import assert_cli_contract, occupy_tcp
from harness.probes import tcp_sockets
from harness.programs import program


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
    assert server.wait_exit(10) == 0, server.report()
    return server.ready.port, client_port


def time_wait_on(port: int) -> list:
    """TIME_WAIT entries whose local port is `port` (the side that waits is the one with that port)."""
    return [s for s in tcp_sockets(port) if s.state == "TIME_WAIT" and s.local[1] == port]


def restart(lab, port: int, *args: str, host: str = "127.0.0.1"):
    """Second run on the same port: it either prints READY (then we stop it) or exits."""
    proc = lab.start("time_wait_server", "--host", host, "--port", str(port), *args)
    line = proc.read_line(timeout=10)
    if line is not None and line.startswith("READY "):
        proc.stop()
        return True, proc
    proc.wait_exit(10)
    return False, proc


def assert_eaddrinuse(proc) -> None:
    assert proc.popen.returncode == 1, f"a failed bind must exit 1\n{proc.report()}"
    assert re.search(r"^time_wait_server: bind \S+: Address already in use \[EADDRINUSE\]$", proc.stderr, re.M), proc.report()
    assert re.search(r"^time_wait_server: hint: .*TIME_WAIT.*SO_REUSEADDR", proc.stderr, re.M), proc.report()


def test_server_that_closed_first_leaves_time_wait_on_its_port(lab):
    port, client_port = serve_one(lab)
    assert time_wait_on(port), f"expected a TIME_WAIT entry on the server's port {port}: {tcp_sockets(port)}"
    assert not time_wait_on(client_port), "the client was the passive closer: no TIME_WAIT on its port"


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
    assert not time_wait_on(port), f"the server closed second: no TIME_WAIT on its port {port}"
    assert time_wait_on(client_port), f"the client closed first: TIME_WAIT on its port {client_port}"
    ok, proc = restart(lab, port)
    assert ok, f"nothing of the old server waits on port {port}, so a plain restart must bind\n{proc.report()}"


def test_second_listener_fails_even_with_reuseaddr(lab):
    first = lab.server("time_wait_server", "--port", "0", "--reuseaddr")
    ok, second = restart(lab, first.ready.port, "--reuseaddr")
    assert not ok, "SO_REUSEADDR never lets two TCP listeners share a port on Linux (socket(7))\n" + second.report()
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
    assert server.wait_exit(5) == 0, server.report()


def test_cli_contract(lab):
    with occupy_tcp() as port:
        assert_cli_contract(lab, "time_wait_server", port)
    both = lab.run("time_wait_server", "--server-closes-first", "--client-closes-first")
    assert both.popen.returncode == 2, both.report()


# Runs inside `unshare -rn`: a private network namespace where tcp_fin_timeout can be changed.
# It serves one client (the server closes first) and times the TIME_WAIT entry on the server's port.
TIMER = r"""
import os, shutil, socket, subprocess, sys, time
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
start = time.monotonic()
def waiting():
    rows = open("/proc/net/tcp").read().splitlines()[1:]
    return any(int(r.split()[1].split(":")[1], 16) == port and r.split()[3] == "06" for r in rows)
print("TIME_WAIT", waiting(), flush=True)
while waiting() and time.monotonic() - start < 300:
    time.sleep(0.25)
print("LASTED", round(time.monotonic() - start, 1), flush=True)
"""


@pytest.mark.slow
@pytest.mark.limit(200)
def test_time_wait_lasts_about_60_seconds_not_tcp_fin_timeout(steps):
    unshare = shutil.which("unshare")
    assert unshare, "this test needs unshare(1) (Debian package util-linux)"
    fin_timeout = 10
    with steps.step(f"in a private namespace with tcp_fin_timeout={fin_timeout}: serve one client, time TIME_WAIT"):
        done = subprocess.run([unshare, "-rn", sys.executable, "-c", TIMER, str(program("time_wait_server")),
                               str(fin_timeout)], capture_output=True, text=True, timeout=400, env=os.environ)
    assert done.returncode == 0, f"the timing script failed\n{done.stdout}\n{done.stderr}"
    assert "TIME_WAIT True" in done.stdout, f"no TIME_WAIT entry after the server closed first\n{done.stdout}"
    lasted = float(re.search(r"LASTED ([\d.]+)", done.stdout)[1])
    assert 55 <= lasted <= 75, (
        f"TIME_WAIT lasted {lasted} s. Linux fixes it at 60 s (TCP_TIMEWAIT_LEN in include/net/tcp.h): "
        f"not 2 x MSL = 4 min as RFC 793 suggests, and not tcp_fin_timeout (set to {fin_timeout} s here)")
