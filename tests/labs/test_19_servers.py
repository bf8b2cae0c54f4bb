"""Lab 19 server-benchmark: the servers the benchmark starts (labs/19-server-benchmark/bench/servers.py).

Every server in the catalogue is started through servers.running() exactly as the benchmark starts
it, driven over loopback, and must be gone, its whole process group, once the block ends. Echo
servers must echo byte-exact: 1-byte round trips, then 256 KiB on each of up to 10 connections at
once (fewer where the model allows fewer); sockperf and iperf3 are driven by their own clients.
The two ceilings (rr_floor, echo_minimal) follow the suite's CLI contract, and the servers whose
header claims a bound on what they hold for a client that does not read keep to it.
The build folder is the parent of $SOCKLAB_BIN_DIR (CTest sets it: build/dev or build/asan).
"""
from __future__ import annotations

import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from harness.contract import occupy_tcp
from harness.output import HINT, USAGE, contract
from harness.programs import REPO, bin_dir
from harness.steps import scaled, wait_for

sys.path.insert(0, str(REPO / "labs" / "19-server-benchmark"))
from bench import servers as S  # noqa: E402

C = contract("19")
BUILD = bin_dir().parent
CATALOGUE = {s.name: s for s in S.catalogue(BUILD)}
MISSING = dict(S.missing(BUILD))
CEILINGS = ["rr_floor", "echo_minimal"]
BOUNDED = ["echo_minimal", "asio", "libuv", "libevent", "python_selectors"]   # "at most 64 KiB"
EXTERNAL = ["iperf3", "sockperf", "socat"]    # tools we start, not programs of ours
CONCURRENT = 10
BIG = 256 * 1024


def server(name: str) -> S.Server:
    if name not in CATALOGUE:
        pytest.skip(f"{name} is not available here: {MISSING.get(name, 'unknown server')}")
    return CATALOGUE[name]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(row.split()[1]) for row in f if row.startswith("VmRSS:"))


def cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def listening(port: int) -> bool:
    return bool(S.listening_inodes(port))


def echo_all(name: str, port: int, conns: int, size: int, timeout: float = 10.0) -> None:
    """`size` random bytes on each of `conns` connections at once, all sent and read back in one
    loop (so no side waits on the other), compared byte for byte."""
    payloads = [os.urandom(size) for _ in range(conns)]
    socks = [socket.create_connection(("127.0.0.1", port), timeout=scaled(5)) for _ in range(conns)]
    sent, got = [0] * conns, [bytearray() for _ in range(conns)]
    sel = selectors.DefaultSelector()
    try:
        for i, sock in enumerate(socks):
            sock.setblocking(False)
            sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, i)
        deadline = time.monotonic() + scaled(timeout)
        while any(len(g) < size for g in got):
            if time.monotonic() > deadline:
                counts = ", ".join(f"{len(g)}" for g in got)
                raise AssertionError(f"{name}: echo of {size} bytes on {conns} connections at once not "
                                     f"complete after {timeout:g} s: bytes back per connection {counts}")
            for key, events in sel.select(timeout=0.5):
                i, sock = key.data, key.fileobj
                assert isinstance(sock, socket.socket)
                if events & selectors.EVENT_WRITE and sent[i] < size:
                    with_room = sock.send(payloads[i][sent[i]:sent[i] + 65536])
                    sent[i] += with_room
                    if sent[i] == size:
                        sel.modify(sock, selectors.EVENT_READ, i)
                if events & selectors.EVENT_READ:
                    data = sock.recv(65536)
                    assert data, (f"{name} closed connection {i} after echoing {len(got[i])} of "
                                  f"{size} bytes")
                    got[i] += data
        for i in range(conns):
            if bytes(got[i]) != payloads[i]:
                at = next(k for k in range(size) if got[i][k] != payloads[i][k])
                raise AssertionError(f"{name}: connection {i} got its {size} bytes back, but they "
                                     f"differ from what was sent from offset {at} on")
    finally:
        sel.close()
        for sock in socks:
            sock.close()


def round_trips(name: str, port: int, count: int = 50) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=scaled(5)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(count):
            byte = bytes([i % 256])
            sock.sendall(byte)
            back = sock.recv(1)
            assert back == byte, f"{name}: round trip {i}: sent {byte!r}, got {back!r}"


def cpu_ticks(pid: int) -> int:
    """utime + stime of the whole process, in clock ticks (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def drive_with_tool(server_: S.Server, r: S.Running) -> None:
    """sockperf and iperf3 are driven by their own clients (sockperf pp exits 0 even when it
    reaches no server). The evidence that the server took the traffic: iperf3's server counts what
    it received and reports it to the client (-J: end.sum_received.bytes; the client ends its test
    once its last bytes are in the socket buffers, so a few MiB may go uncounted); sockperf's server
    spends CPU time on the tens of thousands of round trips of one second."""
    ticks = cpu_ticks(r.pid)
    if server_.protocol == "sockperf":
        argv = ["sockperf", "pp", "--tcp", "-i", "127.0.0.1", "-p", str(r.port), "-t", "1"]
    else:
        argv = ["iperf3", "-c", "127.0.0.1", "-p", str(r.port), "-n", "64M", "-J"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=scaled(20))
    if server_.protocol == "sockperf":
        spent = cpu_ticks(r.pid) - ticks
        what, worked = f"spent {spent} clock ticks of CPU", spent >= 2
    else:
        try:
            got = json.loads(done.stdout)["end"]["sum_received"]["bytes"]
        except (ValueError, KeyError, TypeError):
            got = -1
        what, worked = f"received {got} bytes of 64 MiB", got >= 32 << 20
    assert done.returncode == 0 and worked, (
        f"{server_.name}: `{' '.join(argv)}` exited {done.returncode} and the server {what}; "
        f"client output:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")


# ---- the catalogue --------------------------------------------------------------------------------

def test_catalogue_and_missing_cover_every_server_once():
    names = [s.name for s in CATALOGUE.values()] + list(MISSING)
    assert sorted(names) == sorted(S.NAMES), f"catalogue + missing: {names}, expected {S.NAMES}"
    for s in CATALOGUE.values():
        assert s.kind in ("lab", "peer", "ceiling") and "{port}" not in " ".join(s.command(0)), s
        assert s.version.startswith("lab ") if s.kind == "lab" else s.version, s
    assert CATALOGUE.get("iterative") is None or CATALOGUE["iterative"].max_connections == 1
    assert CATALOGUE.get("select") is None or CATALOGUE["select"].max_connections == 1008


def test_missing_names_the_debian_package_to_install(monkeypatch, tmp_path):
    """With nothing built and no Debian package installed, missing() says what to run for each."""
    monkeypatch.setattr(S, "debian_version", lambda package: f"{package} (not installed)")
    monkeypatch.setenv("PATH", str(tmp_path))      # no sockperf, socat, iperf3 on PATH
    fixes = dict(S.missing(tmp_path))
    assert fixes["libuv"] == "apt-get install libuv1-dev", fixes
    assert fixes["asio"] == "apt-get install libasio-dev", fixes
    assert fixes["libevent"] == "apt-get install libevent-dev", fixes
    assert fixes["sockperf"] == "apt-get install sockperf", fixes
    assert fixes["iperf3"] == "apt-get install iperf3", fixes
    assert fixes["epoll_lt"] == f"cmake --build {tmp_path} --target echo_epoll", fixes
    assert fixes["rr_floor"] == f"cmake --build {tmp_path} --target rr_floor", fixes
    assert [s.name for s in S.catalogue(tmp_path)] == ["python_selectors"]


# ---- every server, as the benchmark starts it -----------------------------------------------------

@pytest.mark.parametrize("name", S.NAMES)
def test_server_starts_serves_and_leaves_nothing(name):
    s = server(name)
    with S.running(s, timeout=10) as r:
        assert r.port > 0 and r.pid > 0
        if s.protocol == "echo":
            round_trips(name, r.port)
            echo_all(name, r.port, min(CONCURRENT, s.max_connections or CONCURRENT), BIG)
        else:
            drive_with_tool(s, r)
        pid, port = r.pid, r.port
    if name in EXTERNAL:
        assert r.exit_status != -signal.SIGKILL, f"{name} needed SIGKILL: SIGTERM did not end it in 2 s"
    else:
        assert r.exit_status == 0, (f"{name} exited {r.exit_status} on SIGTERM, expected 0 "
                                    "(the suite's contract)")
    left = S.group_members(pid)
    assert not left, f"{name}: processes of its group still exist after running() ended: {left}"
    assert not os.path.exists(f"/proc/{pid}"), f"{name}: pid {pid} still exists (a zombie not reaped?)"
    assert not listening(port), f"{name}: something still listens on port {port}"


NAGLE_STALL = 0.040   # Linux's shortest delayed ACK: what Nagle's algorithm makes a held segment wait
PINGS = 21


@pytest.mark.parametrize("name", [n for n in S.NAMES if n not in ("sockperf", "iperf3")])
def test_a_16k_message_comes_back_without_waiting_for_a_delayed_ack(name):
    """Echoed in pieces, a 16 KiB message must not wait for the client's delayed ACK (TCP_NODELAY,
    lab::set_nodelay): with that wait every round trip takes 40 ms or more; without it a few ms.
    The median of 21 round trips decides, so a busy machine's odd slow one does not."""
    s = server(name)
    message = bytes(range(256)) * 64
    times = []
    with S.running(s, timeout=10) as r:
        with socket.create_connection(("127.0.0.1", r.port), timeout=scaled(5)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(PINGS):
                t0 = time.monotonic()
                sock.sendall(message)
                back = bytearray()
                while len(back) < len(message):
                    chunk = sock.recv(len(message) - len(back))
                    assert chunk, f"{name}: closed during round trip {i}"
                    back += chunk
                times.append(time.monotonic() - t0)
                assert back == message, f"{name}: round trip {i} came back changed"
    median = sorted(times)[PINGS // 2]
    assert median < NAGLE_STALL / 2, (
        f"{name}: a 16 KiB round trip took {median * 1000:.0f} ms (median of {PINGS}), expected under "
        f"{NAGLE_STALL * 500:.0f} ms: each waits for the client's delayed ACK; set TCP_NODELAY on "
        "every accepted connection")


def test_running_names_a_server_that_exits_and_its_stderr():
    s = replace(server("rr_floor"), argv_template=(*server("rr_floor").argv_template, "--no-such"))
    with pytest.raises(RuntimeError) as failed:
        with S.running(s, timeout=5):
            pass
    assert "rr_floor" in str(failed.value) and USAGE.find(str(failed.value)), failed.value


def test_running_stops_a_server_that_never_gets_ready():
    s = S.Server("sleeper", "peer", "none", "test", None, ("sleep", "31.4159"), True)
    started = time.monotonic()
    with pytest.raises(RuntimeError) as failed:
        with S.running(s, timeout=0.5):
            pass
    assert "sleeper printed no READY line" in str(failed.value), failed.value
    assert time.monotonic() - started < scaled(5)
    sleepers = [p for p in os.listdir("/proc") if p.isdigit() and cmdline(p) == b"sleep\x0031.4159\x00"]
    assert not sleepers, f"the server that never got ready is still running: {sleepers}"


def test_running_pins_to_a_cpu():
    s = server("echo_minimal")
    with S.running(s, cpu=0) as r:
        allowed = next(row for row in open(f"/proc/{r.pid}/status") if row.startswith("Cpus_allowed_list"))
        assert allowed.split()[1] == "0", f"echo_minimal under taskset -c 0: {allowed.strip()}"
        round_trips("echo_minimal", r.port, 5)


@pytest.mark.parametrize("name", BOUNDED)
def test_a_client_that_never_reads_costs_a_bounded_amount(name):
    """The server holds at most about 64 KiB for a client that sends and never reads: once the
    kernel buffers are full the client's send() makes no progress, and the server's RSS barely grew."""
    s = server(name)
    with S.running(s) as r, socket.create_connection(("127.0.0.1", r.port)) as sock:
        round_trips(name, r.port, 3)
        base = rss_kib(r.pid)
        sock.setblocking(False)
        chunk, pushed, stalled_since = b"z" * 65536, 0, None
        end = time.monotonic() + scaled(5)
        while time.monotonic() < end and pushed < (64 << 20):
            try:
                pushed += sock.send(chunk)
                stalled_since = None
            except BlockingIOError:
                stalled_since = stalled_since or time.monotonic()
                if time.monotonic() - stalled_since > 0.3:
                    break
                time.sleep(0.01)
        grew = rss_kib(r.pid) - base
        assert pushed < (64 << 20) and grew < 8 * 1024, (
            f"{name}: a client that never reads pushed {pushed >> 10} KiB into it and its RSS grew by "
            f"{grew} KiB: expected the server to stop reading that client (a few MiB of kernel buffers)")


# ---- the ceilings' CLI contract ---------------------------------------------------------------

@pytest.mark.parametrize("name", CEILINGS)
def test_ceiling_cli_contract(lab, name):
    helped = lab.run(name, "--help")
    assert helped.popen.returncode == 0 and USAGE.find(helped.stdout), helped.report()
    bad = lab.run(name, "--no-such-option")
    assert bad.popen.returncode == C.status(f"{name}-usage") and USAGE.find(bad.stderr), bad.report()
    with occupy_tcp() as taken:
        proc = lab.run(name, "--port", taken)
    assert proc.popen.returncode == C.status(f"{name}-failed"), proc.report()
    line = C[f"{name}-error"].find(proc.stderr)
    assert line and line["ename"] == "EADDRINUSE" and HINT.find(proc.stderr), proc.report()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("name", CEILINGS)
def test_ceiling_stops_with_status_0_on_a_signal_and_serves_the_next_client(lab, name, sig):
    proc = lab.server(name, "--port", 0)
    for _ in range(2):    # one after the other: rr_floor serves the next once the first has left
        round_trips(name, proc.ready.port, 3)
    proc.popen.send_signal(sig)
    assert proc.wait_exit(5) == C.status(f"{name}-stopped"), proc.report()
    wait_for(f"port {proc.ready.port} to close", lambda: not listening(proc.ready.port), 2)



def test_echo_minimal_out_of_fds_stops_with_an_emfile_line(lab):
    """Its header's simplification: out of fds it stops (status 1, an [EMFILE] error line) instead
    of spinning on a listener that stays readable."""
    def few_fds() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
    proc = lab.server("echo_minimal", "--port", 0, preexec=few_fds)
    clients = []
    try:
        for _ in range(20):    # 11 fit beside fds 0-2, the listener and the epoll fd
            try:
                clients.append(socket.create_connection(proc.ready.address, timeout=scaled(5)))
            except (ConnectionRefusedError, ConnectionResetError):
                break          # it has stopped already (refused, or reset while queued)
        status = proc.wait_exit(5)
    finally:
        for c in clients:
            c.close()
    assert status == C.status("echo_minimal-failed"), proc.report()
    line = C["echo_minimal-error"].find(proc.stderr)
    assert line and line["ename"] == "EMFILE", proc.report()
