"""Lab 19 server benchmark: loadgen (W1, W2, W4 and hold) and the driver (python3 -m harness bench).

Each test states one claim of labs/19-server-benchmark/README.md. They assert behaviour, never
speed: every RESULT line parses as the Output section gives it, a server that changes one byte
or closes early voids the run (exit 1, the line on stderr), the hold mode holds its connections
and leaves none behind, and a tiny driver run writes a CSV whose rows parse and SVG plots that are
valid XML. The measured numbers are shown by the benchmark itself, never checked here; the
--quick run has a CTest entry of its own (label bench) outside the dev preset.
"""
from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import probes
from harness.contract import assert_help_and_usage
from harness.output import USAGE, contract
from harness.programs import REPO, bin_dir
from harness.steps import wait_for

C = contract("19")
LOADGEN = "loadgen"
SHORT = ("--duration-ms", "200", "--warmup-ms", "50", "--timeout-ms", "5000")


def echo(lab):
    return lab.server("echo_epoll", "--quiet", "--port", 0)


def fields(proc, name: str) -> dict[str, str]:
    m = C[name].find(proc.stdout)
    assert m, (f"expected a line like `{C[name].template}` ({C[name].where}) on stdout\n"
               f"{proc.report()}")
    return m.groupdict()


class TinyEcho:
    """A one-thread echo server in the test: `mangle` may change what it sends back, `budget`
    closes each connection after that many bytes echoed."""

    def __init__(self, mangle=lambda data, offset: data, budget: int | None = None):
        self.mangle, self.budget = mangle, budget
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self.one, args=(conn,), daemon=True).start()

    def one(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        offset = 0
        with conn:
            while not self.stop.is_set():
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                out = self.mangle(data, offset)
                offset += len(data)
                if self.budget is not None and offset > self.budget:
                    return  # close: the rest of the echo never comes
                try:
                    conn.sendall(out)
                except OSError:
                    return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def tiny():
    servers: list[TinyEcho] = []

    def make(**kw) -> TinyEcho:
        servers.append(TinyEcho(**kw))
        return servers[-1]
    yield make
    for s in servers:
        s.close()


def flip_at(position: int):
    """A mangle that flips every bit of the stream's byte `position`."""
    def mangle(data: bytes, offset: int) -> bytes:
        if offset <= position < offset + len(data):
            i = position - offset
            return data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
        return data
    return mangle


# ---- loadgen ---------------------------------------------------------------------------------

@pytest.mark.hint("--help exits 0 with usage on stdout; a bad option, a --workload other than W1, W2, W4 "
                  "or hold, or a host off loopback exits 2 with usage on stderr")
def test_cli_contract(lab):
    assert_help_and_usage(lab, LOADGEN)
    for bad in (("--workload", "W3"), ("--host", "192.0.2.1"), ("--connections", "0"),
                ("--workload", "W1", "--rate", "10")):
        proc = lab.run(LOADGEN, *bad)
        assert proc.popen.returncode == C.status("loadgen_usage"), \
            f"loadgen {' '.join(bad)} should be a usage error (exit 2)\n{proc.report()}"
        assert USAGE.find(proc.stderr), proc.report()
    off = lab.run(LOADGEN, "--host", "192.0.2.1")
    assert C["not-loopback"].find(off.stderr), f"the usage error should say loopback only\n{off.report()}"


@pytest.mark.hint("W1: every session sends --size bytes, then echoes back what it reads; print `measuring` "
                  "when the window opens and one RESULT line when it closes")
def test_w1_result_line_counts_bytes_read_in_the_window(lab):
    server = echo(lab)
    proc = lab.run(LOADGEN, "--workload", "W1", "--port", server.ready.port, "--connections", 3,
                   "--size", 4096, *SHORT)
    assert proc.popen.returncode == 0, proc.report()
    assert C["measuring"].find(proc.stdout), proc.report()
    f = fields(proc, "result-w1")
    assert (f["connections"], f["size"], f["mismatches"]) == ("3", "4096", "0"), f
    assert int(f["bytes"]) > 0, f"no byte came back in the window\n{proc.report()}"
    mib = int(f["bytes"]) / float(f["seconds"]) / 2**20
    assert abs(float(f["mib_s"]) - mib) <= 0.1 + mib * 0.01, f"mib_s is not bytes / seconds / 2^20: {f}"
    assert abs(float(f["msgs_s"]) - int(f["bytes"]) / 4096 / float(f["seconds"])) < 1, f
    assert 0 <= float(f["client_cpu"]) <= 1.5, f


@pytest.mark.hint("W2: one request in flight per connection, every RTT timed; p50 <= p90 <= p99 <= p99.9 "
                  "<= max; with --rate the requests follow the schedule, never more")
def test_w2_percentiles_are_ordered_and_the_open_loop_keeps_its_rate(lab):
    server = echo(lab)
    closed = lab.run(LOADGEN, "--workload", "W2", "--port", server.ready.port, "--size", 64, *SHORT)
    assert closed.popen.returncode == 0, closed.report()
    f = fields(closed, "result-w2")
    assert int(f["transactions"]) > 0 and f["rate"] == "0", f
    ps = [float(f[k]) for k in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us")]
    assert ps == sorted(ps) and ps[0] > 0, f"percentiles out of order: {f}"
    opened = lab.run(LOADGEN, "--workload", "W2", "--port", server.ready.port, "--rate", 500,
                     "--connections", 2, *SHORT)
    assert opened.popen.returncode == 0, opened.report()
    g = fields(opened, "result-w2")
    # 500/s: 25 requests were due in the 50 ms warm-up and 100 in the 200 ms window (one more at
    # an edge); however late the server answers, no more than those can complete in the window
    assert g["rate"] == "500" and 0 < int(g["transactions"]) <= 126, g


@pytest.mark.hint("W4: connect, send 1 byte, read its echo, close with SO_LINGER {1, 0}; count accepts "
                  "and failures; a refused connect is a failure, not the end of the run")
def test_w4_counts_accepts_and_leaves_no_time_wait(lab):
    server = echo(lab)
    port = server.ready.port
    proc = lab.run(LOADGEN, "--workload", "W4", "--port", port, "--connections", 4, *SHORT)
    assert proc.popen.returncode == 0, proc.report()
    f = fields(proc, "result-w4")
    assert int(f["accepted"]) > 0 and f["mismatches"] == "0", f
    left = [s for s in probes.tcp_sockets(port) if s.state == "TIME_WAIT"]
    assert not left, f"{len(left)} connections to port {port} in TIME_WAIT: each should end with an RST"
    refused = lab.run(LOADGEN, "--workload", "W4", "--port", probes_free_port(), *SHORT)
    assert refused.popen.returncode == 0, refused.report()
    g = fields(refused, "result-w4")
    assert g["accepted"] == "0" and int(g["failures"]) > 0, g


def probes_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens on it once closed


@pytest.mark.parametrize("workload", ["W1", "W2", "hold"])
@pytest.mark.hint("check every echoed byte against the byte sent at that offset (the probe byte each "
                  "connection echoes first too): a mismatch prints `loadgen: echo mismatch on connection "
                  "...` on stderr, no RESULT line, and exits 1")
def test_a_server_that_changes_one_byte_voids_the_run(lab, tiny, workload):
    # The server's stream is the probe byte, then the workload's bytes: stream byte 5001 is the
    # workload's byte 5000 (offsets count from after the probe); hold sends only the probe.
    position, offset = (0, "0") if workload == "hold" else (5001, "5000")
    server = tiny(mangle=flip_at(position))
    proc = lab.run(LOADGEN, "--workload", workload, "--port", server.port, "--size",
                   4096 if workload == "W1" else 16, *SHORT)
    assert proc.popen.returncode == C.status("loadgen_failed"), \
        f"a server that flipped one byte should make loadgen exit 1\n{proc.report()}"
    m = C["mismatch"].find(proc.stderr)
    assert m, f"expected `{C['mismatch'].template}` on stderr\n{proc.report()}"
    assert (m["offset"], int(m["sent"], 16) ^ int(m["got"], 16)) == (offset, 0xFF), m[0]
    assert not proc.stdout.count("RESULT") and not C["holding"].find(proc.stdout), \
        f"a void run prints no RESULT (or HOLDING) line\n{proc.report()}"


@pytest.mark.hint("a connection the server closes while its echo is due voids the run: `loadgen: "
                  "connection <i>: the server closed it ...` on stderr, exit 1; a refused connect is an "
                  "[ECONNREFUSED] line")
def test_a_server_that_closes_early_or_is_not_there_fails_the_run(lab, tiny):
    server = tiny(budget=10_000)
    proc = lab.run(LOADGEN, "--workload", "W1", "--port", server.port, "--size", 4096, *SHORT)
    assert proc.popen.returncode == C.status("loadgen_failed"), proc.report()
    assert C["lost"].find(proc.stderr), f"expected `{C['lost'].template}`\n{proc.report()}"
    gone = lab.run(LOADGEN, "--workload", "W2", "--port", probes_free_port(), *SHORT)
    assert gone.popen.returncode == C.status("loadgen_failed"), gone.report()
    m = C["error"].find(gone.stderr)
    assert m and m["ename"] == "ECONNREFUSED", f"expected an [ECONNREFUSED] error line\n{gone.report()}"


@pytest.mark.hint("hold: open N connections, have each echo one byte, print `HOLDING N idle connections "
                  "to ...`, stay idle until SIGTERM, then reset every one and print the released line")
def test_hold_keeps_n_idle_connections_until_sigterm_and_leaves_none(lab):
    server = echo(lab)
    host, port, n = server.ready.host, server.ready.port, 300
    hold = lab.start(LOADGEN, "--workload", "hold", "--port", port, "--connections", n)
    m = hold.expect(C["holding"], timeout=15)
    assert int(m["n"]) == n, m[0]

    # Only the holder's own connections count: in a parallel run another test's client can reach
    # this port too (a CI run once saw 14 more for a moment).
    mine = probes.socket_inodes(hold.pid)
    clients = {s.local[1] for s in probes.tcp_sockets(port, host=host)
               if s.state == "ESTABLISHED" and s.remote[1] == port and s.inode in mine}
    assert len(clients) == n, f"expected {n} connections of the holder to port {port}, found {len(clients)}"
    before = probes.cpu_share(hold.pid, 0.5)
    assert before < 0.2, f"the holder should sleep while it holds, not spin ({before:.0%} of a CPU)"
    hold.popen.send_signal(signal.SIGTERM)
    assert hold.popen.wait(10) == C.status("loadgen_done"), hold.report()
    hold.expect(C["released"], timeout=5)   # its output may still be on its way through the pipe

    def left() -> list[probes.TcpSocket]:
        """Either end of a held connection, in any state (TIME_WAIT included)."""
        return [s for s in probes.tcp_sockets(port, host=host)
                if s.state != "LISTEN" and ({s.local[1], s.remote[1]} - {port}) & clients]
    wait_for(f"no end of the {n} held connections to port {port} left (ESTABLISHED or TIME_WAIT)",
             lambda: not left(), 5, evidence=lambda: f"{len(left())} left: {left()[:3]}")


# ---- the driver ------------------------------------------------------------------------------

@pytest.mark.limit(60)
@pytest.mark.hint("python3 -m harness bench --smoke writes results.csv (every row with every column), "
                  "summary.md and SVG plots, and stops every process it started")
def test_smoke_run_writes_a_csv_that_parses_and_valid_svgs(tmp_path):
    out = tmp_path / "bench"
    env = {**os.environ, "SOCKLAB_BIN_DIR": str(bin_dir())}
    done = subprocess.run([sys.executable, "-m", "harness", "bench", "--smoke", "--servers",
                           "epoll_lt,select", "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"the smoke run failed\n{done.stdout}\n{done.stderr}"
    assert not done.stderr.strip(), f"the run reported problems (gnuplot?) on stderr\n{done.stderr}"
    sys.path.insert(0, str(REPO / "labs" / "19-server-benchmark"))
    from bench.driver import COLUMNS, PROGRESS
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and list(rows[0]) == COLUMNS, f"the CSV header is not the driver's columns: {list(rows[0])}"
    assert {r["workload"] for r in rows} == {"W1", "W2", "W3", "W4"}
    assert {r["server"] for r in rows} == {"epoll_lt", "select"}
    progress = PROGRESS.findall(done.stdout)
    assert len(progress) == sum(r["status"] != "n/a" for r in rows), \
        f"expected one progress line with an ETA per point measured\n{done.stdout}"
    for r in rows:
        assert r["status"] == "ok", f"a smoke point failed: {r}"
        for key in ("round", "connections", "idle", "size", "rate", "server_cpu_us", "server_vcsw"):
            int(r[key])
        for key in ("load_start", "load_end", "client_cpu"):
            float(r[key])
        metric = {"W1": "mib_s", "W4": "accepts_s"}.get(r["workload"], "tps")
        assert float(r[metric]) >= 0 and r["kernel"] and r["git"], r
    assert "## Goals" in (out / "summary.md").read_text()
    svgs = sorted((out / "plots").glob("*.svg"))
    assert {p.name for p in svgs} >= {"w1_throughput.svg", "w2_latency.svg", "w3_idle.svg",
                                      "w4_accepts.svg"}, [p.name for p in svgs]
    for svg in svgs:
        root = ET.parse(svg).getroot()
        assert root.tag.endswith("svg"), f"{svg.name}: root element {root.tag}, not <svg>"
    leftover = subprocess.run(["pgrep", "-f", str(Path(bin_dir()) / LOADGEN)], capture_output=True, text=True)
    assert not leftover.stdout.strip(), f"loadgen processes left running: {leftover.stdout}"
