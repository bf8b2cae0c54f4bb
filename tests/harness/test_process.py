"""Self-tests of the harness core: it stops what it starts, whatever the program does, and its
probes and clients report what the kernel says."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from harness import probes
from harness.clients import ClientTimeout, TcpClient
from harness.process import HarnessError, LabProcess
from harness.ready import parse_ready
from harness.steps import wait_for

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[2]


# Every process this test run starts inherits this variable (LabProcess passes the environment on), and
# so do their children, even one that escaped with setsid() and was reparented to init: survivors()
# counts only those, never another developer's run of the same fixture on this machine.
RUN_MARK = f"SOCKLAB_SELFTEST_RUN={os.getpid()}-{time.monotonic_ns()}"
os.environ[RUN_MARK.split("=", 1)[0]] = RUN_MARK.split("=", 1)[1]


def _started_by_this_run(pid: int) -> bool:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    return RUN_MARK.encode() in environ


def survivors(script: str) -> list[int]:
    """Live (non-zombie) processes of this checkout's fixtures/<script> that this test run started
    (directly or as descendants): matched by the fixture's full path and by RUN_MARK in their
    environment, so the same fixture run by another checkout or user at the same time is not counted."""
    script = str(FIXTURES / script)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if script.encode() in cmd and _started_by_this_run(int(entry)) and probes.alive(int(entry)):
            found.append(int(entry))
    return found


def fixture(name: str) -> LabProcess:
    return LabProcess([sys.executable, FIXTURES / name])


def test_ready_line_format():
    r = parse_ready("READY tcp 127.0.0.1 40117\n")
    assert (r.proto, r.host, r.port) == ("tcp", "127.0.0.1", 40117)
    assert parse_ready("READY udp ::1 9").address == ("::1", 9)
    for bad in ("READY tcp 127.0.0.1", "ready tcp 127.0.0.1 1", "READY sctp 1.2.3.4 5", "READY tcp h 0",
                "READY tcp h 70000", "listening on 8088"):
        assert parse_ready(bad) is None, bad


def test_a_program_that_ignores_sigterm_is_killed():
    proc = fixture("hang.py")
    ready = proc.wait_ready(timeout=10)
    assert ready.proto == "tcp" and ready.port > 0
    t0 = time.monotonic()
    rc = proc.stop(grace=0.5)
    assert rc == -9, "SIGTERM is ignored, so only SIGKILL ends it"
    assert time.monotonic() - t0 < 5
    assert survivors("hang.py") == []


@pytest.mark.parametrize("script, expected", [
    ("crash.py", ["ended before printing its ready line", "SIGSEGV", "about to crash", "starting up"]),
    ("closes_stdout.py", ["closed its stdout before printing its ready line, and is still running",
                          "going quiet"]),
])
def test_no_ready_line_is_reported_with_what_happened_and_its_output(script: str, expected: list[str]):
    """A program that crashes before its ready line, or closes stdout and runs on, gets a
    HarnessError with its exit status (or 'still running') and its last stdout and stderr lines."""
    proc = fixture(script)
    with pytest.raises(HarnessError) as err:
        proc.wait_ready(timeout=10)
    text = str(err.value)
    missing = [phrase for phrase in expected if phrase not in text]
    assert not missing, f"the report lacks {missing}:\n{text}"
    proc.stop(grace=0.5)
    assert survivors(script) == []


def test_a_missing_ready_line_times_out_with_a_likely_cause():
    proc = fixture("silent.py")
    with pytest.raises(HarnessError) as err:
        proc.wait_ready(timeout=1)
    assert "no ready line" in str(err.value) and "flush" in str(err.value)
    proc.stop(grace=0.5)
    assert survivors("silent.py") == []


def test_children_that_ignore_sigterm_and_setsid_escapees_are_all_killed():
    proc = fixture("forker.py")
    proc.wait_ready(timeout=10)
    kids = [int(p) for p in proc.expect(r"^children (.*)$").group(1).split()]
    wait_for("forker.py, its 3 children and the setsid() escapee all running",   # the escapee comes last
             lambda: len(survivors("forker.py")) >= 5, timeout=5,
             evidence=lambda: str(survivors("forker.py")))
    proc.stop(grace=0.5)
    assert survivors("forker.py") == [], "a child or the setsid() escapee is still running"
    assert all(not probes.alive(k) for k in kids)
    assert probes.zombies(os.getpid()) == [], "orphans re-parented to the harness must be reaped"


def test_stop_is_idempotent_and_reports_exit_status():
    proc = LabProcess([sys.executable, "-c", "import sys; print('bye'); sys.exit(3)"])
    assert proc.wait_exit(10) == 3
    assert proc.stop() == 3 and proc.stop() == 3
    assert "exited with 3" in proc.report() and "bye" in proc.report()


def test_wall_clock_limit_fails_the_test_and_names_the_hung_step(tmp_path):
    spec = tmp_path / "test_hangs.py"
    spec.write_text(textwrap.dedent(f"""
        import socket, sys, pytest
        from harness.process import LabProcess

        @pytest.mark.limit(2)
        def test_hangs(lab, steps):
            proc = LabProcess([sys.executable, {str(FIXTURES / 'hang.py')!r}])
            lab.started.append(proc)
            ready = proc.wait_ready()
            with steps.step("connect"):
                s = socket.create_connection(ready.address)
            with steps.step("waiting for an echo that never comes"):
                s.recv(10)
    """))
    (tmp_path / "conftest.py").write_text((REPO / "tests" / "conftest.py").read_text().replace(
        "Path(__file__).resolve().parent.parent", repr(str(REPO))))
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", str(spec)],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert time.monotonic() - t0 < 30
    assert run.returncode == 1, run.stdout + run.stderr
    assert "hung in step: waiting for an echo that never comes" in run.stdout
    assert "ok   connect" in run.stdout and "steps that ran" in run.stdout
    assert "programs started by the test" in run.stdout
    assert survivors("hang.py") == []


def test_probes_see_fds_threads_and_tcp_states():
    me = os.getpid()
    fds = probes.fd_count(me)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(7)
    port = listener.getsockname()[1]
    assert probes.fd_count(me) == fds + 1
    here = "127.0.0.1"
    rows = [s for s in probes.tcp_sockets(port, host=here) if s.state == "LISTEN"]
    assert len(rows) == 1 and rows[0].send_q == 7 and rows[0].recv_q == 0
    client = socket.create_connection(("127.0.0.1", port))
    deadline = time.monotonic() + 2
    while probes.tcp_sockets(port, host=here)[0].recv_q == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [s.recv_q for s in probes.tcp_sockets(port, host=here) if s.state == "LISTEN"] == [1]
    # the client's end and the queued server end
    assert probes.tcp_states(port, host=here) == {"LISTEN": 1, "ESTABLISHED": 2}
    with socket.socket() as other:  # the same port number on another address: some other program's
        other.bind(("127.0.0.2", port))
        other.listen(1)
        assert probes.tcp_states(port)["LISTEN"] == 2
        assert probes.tcp_states(port, host=here) == {"LISTEN": 1, "ESTABLISHED": 2}
        assert probes.tcp_states(port, host="127.0.0.2") == {"LISTEN": 1}
    threads = probes.thread_count(me)
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    assert probes.thread_count(me) == threads + 1
    stop.set()
    worker.join()
    client.close()
    listener.close()
    assert probes.rss_kib(me) > 0 and probes.cpu_seconds(me) > 0


def test_zombie_probe_counts_unreaped_children():
    parent = LabProcess([sys.executable, "-c",
                         "import os,time\nfor _ in range(2):\n  os.fork() or os._exit(0)\n"
                         "print('forked', flush=True)\ntime.sleep(60)"])
    parent.expect("forked", timeout=10)
    deadline = time.monotonic() + 3
    while len(probes.zombies(parent.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(probes.zombies(parent.pid)) == 2
    parent.stop(grace=0.5)


def test_client_timeouts_carry_what_was_received():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    with TcpClient("127.0.0.1", listener.getsockname()[1], timeout=0.5) as c:
        conn, _ = listener.accept()
        conn.sendall(b"partial")
        with pytest.raises(ClientTimeout) as err:
            c.recv_exactly(100)
        assert "b'partial'" in str(err.value)
        conn.close()
    listener.close()


def _sink() -> tuple[socket.socket, TcpClient, socket.socket]:
    """A listener, a TcpClient connected to it, and the accepted end (which reads only when told)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = TcpClient("127.0.0.1", listener.getsockname()[1], timeout=5)
    conn, _ = listener.accept()
    return listener, client, conn


def test_a_background_send_outlives_the_readers_short_timeouts():
    # The bug this guards against: a sendall() in a thread takes the socket's timeout at its start
    # as its deadline, and the reading thread's settimeout(0.05) would end an 8 MiB send early.
    data = os.urandom(8 << 20)
    listener, c, conn = _sink()
    with listener, conn, c:
        sender = c.send_in_background(data)
        for _ in range(20):                 # 1 s of short timeouts while the peer does not read
            c.sock.settimeout(0.05)
            with pytest.raises(socket.timeout):
                c.sock.recv(1)
        got = bytearray()
        conn.settimeout(10)
        while len(got) < len(data) and (chunk := conn.recv(1 << 20)):
            got += chunk
        sender.join(5)
        assert sender.error is None and sender.done, sender.describe()
        assert bytes(got) == data, f"the peer received {len(got)} of {len(data)} bytes"


def test_closing_a_client_stops_its_background_send_and_the_connection():
    listener, c, conn = _sink()
    with listener, conn:
        sender = c.send_in_background(os.urandom(32 << 20))
        time.sleep(0.2)                     # the buffers fill up: the sender waits for POLLOUT
        c.close()
        assert sender.done and isinstance(sender.error, InterruptedError), sender.describe()
        conn.settimeout(5)
        while conn.recv(1 << 20):           # the connection ends (EOF) instead of staying open
            pass
