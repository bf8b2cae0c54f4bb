"""Behaviour probes, scored: how a server behaves, not only what it answers.

The grader runs this file with a lab when labs/points.toml lists [[probe]] entries for that lab
($SOCKLAB_PROBE_LAB says which lab). Each probe starts the server with `--port 0` (+ its args),
waits for the ready line and measures it from outside, through /proc:
  idle_cpu          CPU while nobody talks to it (a busy loop burns a core)
  fds_stable        fd count after many clients/datagrams returns to its baseline (fd leak)
  close_wait        no socket left in CLOSE_WAIT after clients leave (never closes its side)
  zombies           no zombie children after clients leave (SIGCHLD not reaped)
  threads_baseline  threads and child processes return to baseline after clients leave
  sigpipe           survives clients that reset while it writes to them (SIGPIPE)
  bad_clients       survives odd peers (UDP: empty, maximal, binary datagrams; TCP: RST, half-close)
  restart           a restart on the same port right after serving a client works (SO_REUSEADDR)
  clean_shutdown    SIGTERM: exit 0 promptly, the port is released, no children left
  loopback_only     by default it binds 127.0.0.1, not the wildcard address
A probe that measures several things records partial credit (record_property("credit", x)).
"""
from __future__ import annotations

import os
import socket
import struct
import time

import pytest

from harness import probes
from harness.grading.points import Points, Probe
from harness.steps import scaled, wait_for


def _selected() -> list[tuple[Probe, str]]:
    lab = os.environ.get("SOCKLAB_PROBE_LAB")
    pts = Points.load()
    out = []
    for p in pts.probes:
        if lab is None or p.lab.zfill(2) == lab.zfill(2):
            out += [(p, c) for c in p.checks]
    return out


def _params(check: str):
    return [pytest.param(p, id=p.program) for p, c in _selected() if c == check]


def start(lab, probe: Probe, *extra: str):
    server = lab.server(probe.program, "--port", "0", *probe.args, *extra)
    time.sleep(0.1)
    rc = server.popen.poll()
    assert rc is None, ("expected the server to keep running after its ready line; "
                        f"it ended with status {rc}.\n{server.report()}\n"
                        "Hint: the server must keep serving until SIGTERM: see its stderr")
    return server


def udp_socket_row(port: int) -> list[str] | None:
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            for line in open(name).read().splitlines()[1:]:
                f = line.split()
                if int(f[1].split(":")[1], 16) == port:
                    return f
        except OSError:
            pass
    return None


def udp_rx_queue(port: int) -> int:
    row = udp_socket_row(port)
    return int(row[4].split(":")[1], 16) if row else 0


def send_udp(host: str, port: int, data: bytes) -> None:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.sendto(data, (host, port))


def talk_tcp(host: str, port: int, data: bytes = b"hello\n", wait: float = 0.3) -> bytes:
    """Connect, send a line, read what comes within `wait`, close (the client closes first)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(scaled(5))
        s.connect((host, port))
        s.sendall(data)
        s.settimeout(wait)
        try:
            return s.recv(65536)
        except (socket.timeout, ConnectionError):
            return b""


def settle(condition, timeout: float) -> bool:
    """Whether `condition` came true within `timeout` (stretched on a loaded machine)."""
    return bool(wait_for("the server to settle", condition, timeout=timeout, fail=False))


def traffic(probe: Probe, server, n: int) -> None:
    host, port = server.ready.host, server.ready.port
    for i in range(n):
        if probe.proto == "udp":
            send_udp(host, port, b"probe %d\n" % i)
            if i % 20 == 19:
                settle(lambda: udp_rx_queue(port) == 0, 2)
        else:
            talk_tcp(host, port, b"probe %d\n" % i, wait=0.05)


@pytest.mark.limit(30)
@pytest.mark.parametrize("probe", _params("idle_cpu"))
def _probe_idle_cpu(lab, steps, probe):
    """Idle, the server uses under 10% of a core (no busy loop)."""
    server = start(lab, probe)
    with steps.step("one exchange, then 2 s with no client"):
        traffic(probe, server, 1)
        time.sleep(0.3)
        share = probes.cpu_share(server.pid, 2.0)
    assert share < 0.10, (
        f"expected under 10% of a core while idle, measured {share:.0%} over 2 s.\n"
        "Hint: a busy loop: it polls without blocking (zero timeout, O_NONBLOCK retried at once, or "
        "write interest kept while nothing is pending); block in recv/accept/poll instead")


@pytest.mark.limit(60)
@pytest.mark.parametrize("probe", _params("fds_stable"))
def _probe_fds_stable(lab, steps, probe):
    """After 200 datagrams or 100 connections the fd count is back at its baseline."""
    server = start(lab, probe)
    traffic(probe, server, 1)
    time.sleep(0.2)
    base = probes.fd_count(server.pid)
    n = 200 if probe.proto == "udp" else 100
    with steps.step(f"{n} {'datagrams' if probe.proto == 'udp' else 'connections'}"):
        traffic(probe, server, n)
    grew = lambda: probes.fd_count(server.pid) <= base + 2  # noqa: E731
    ok = settle(grew, 3)
    now = probes.fd_count(server.pid)
    assert ok, (f"expected the fd count to return to {base} (+2), it is {now} after {n} clients.\n"
                f"fds: {sorted(probes.fd_targets(server.pid))[:12]}...\n"
                "Hint: an fd leak: every accepted socket (and every temporary socket) must be closed "
                "when its client is done")


@pytest.mark.limit(40)
@pytest.mark.parametrize("probe", _params("close_wait"))
def _probe_close_wait(lab, steps, probe):
    """After clients close, the server closes its side too: no CLOSE_WAIT remains."""
    server = start(lab, probe)
    with steps.step("20 clients connect, talk and close first"):
        traffic(probe, server, 20)
    host, port = server.ready.host, server.ready.port
    settle(lambda: probes.tcp_states(port, host=host).get("CLOSE_WAIT", 0) == 0, 2)
    states = probes.tcp_states(port, host=host)
    assert states.get("CLOSE_WAIT", 0) == 0, (
        f"expected no CLOSE_WAIT on port {port}, found {dict(states)}.\n"
        "Hint: when recv() returns 0 the client has closed: close() that connection")


@pytest.mark.limit(40)
@pytest.mark.parametrize("probe", _params("zombies"))
def _probe_zombies(lab, steps, probe):
    """After clients leave, no zombie children remain."""
    server = start(lab, probe)
    with steps.step("20 clients, then 1 s"):
        traffic(probe, server, 20)
    settle(lambda: not probes.zombies(server.pid), 1.5)
    z = probes.zombies(server.pid)
    assert not z, (f"expected 0 zombie children, found {len(z)} (pids {z[:10]}).\n"
                   "Hint: children that exit must be reaped: a SIGCHLD handler calling "
                   "waitpid(-1, &st, WNOHANG) in a loop")


@pytest.mark.limit(40)
@pytest.mark.parametrize("probe", _params("threads_baseline"))
def _probe_threads_baseline(lab, steps, probe):
    """Threads and child processes return to their baseline after clients leave."""
    server = start(lab, probe)
    base_t = probes.thread_count(server.pid)
    base_c = len([c for c in probes.children(server.pid) if probes.alive(c)])
    with steps.step("20 clients"):
        traffic(probe, server, 20)
    back = lambda: (probes.thread_count(server.pid) <= base_t and  # noqa: E731
                    len([c for c in probes.children(server.pid) if probes.alive(c)]) <= base_c)
    ok = settle(back, 3)
    assert ok, (f"expected {base_t} threads and {base_c} children once clients left, found "
                f"{probes.thread_count(server.pid)} threads and "
                f"{len(probes.children(server.pid))} children.\n"
                "Hint: a thread or process per client must end when its client closes (and threads be "
                "joined or detached)")


def _reset_mid_send(host: str, port: int) -> None:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    try:
        s.settimeout(5)
        s.connect((host, port))
        s.setblocking(False)
        end = time.monotonic() + 0.3
        chunk = b"x" * 65536
        while time.monotonic() < end:
            try:
                s.send(chunk)
            except (BlockingIOError, InterruptedError):
                time.sleep(0.01)
            except OSError:
                break
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        s.close()


@pytest.mark.limit(40)
@pytest.mark.parametrize("probe", _params("sigpipe"))
def _probe_sigpipe(lab, steps, probe):
    """Clients that reset while the server writes do not kill it (SIGPIPE)."""
    server = start(lab, probe)
    with steps.step("10 clients push data without reading, then reset"):
        for _ in range(10):
            _reset_mid_send(server.ready.host, server.ready.port)
            if server.popen.poll() is not None:
                break
    time.sleep(0.2)
    rc = server.popen.poll()
    assert rc is None, (f"expected the server to survive clients that reset, it ended with status {rc}"
                        f"{' (killed by SIGPIPE)' if rc == -13 else ''}.\n"
                        "Hint: writing to a reset connection raises SIGPIPE, which kills the process: "
                        "send with MSG_NOSIGNAL (or ignore SIGPIPE) and close just that connection on EPIPE")
    with steps.step("a fresh client is still served"):
        talk_tcp(server.ready.host, server.ready.port)


@pytest.mark.limit(40)
@pytest.mark.parametrize("probe", _params("bad_clients"))
def _probe_bad_clients(lab, steps, record_property, probe):
    """Survives odd peers and keeps serving; partial credit per kind of peer survived."""
    server = start(lab, probe)
    host, port = server.ready.host, server.ready.port
    results: list[tuple[str, bool]] = []
    if probe.proto == "udp":
        cases = [("an empty datagram", b""), ("a 65507-byte datagram", b"y" * 65507),
                 ("binary bytes with NULs", bytes(range(256)) * 4)]
        for what, data in cases:
            with steps.step(f"send {what}"):
                send_udp(host, port, data)
                drained = settle(lambda: udp_rx_queue(port) == 0, 2)
                results.append((what, server.popen.poll() is None and drained))
    else:
        def rst() -> None:
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(fam, socket.SOCK_STREAM) as s:
                s.connect((host, port))
                s.sendall(b"half a li")
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

        def half_close() -> None:
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(fam, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect((host, port))
                s.sendall(b"bye\n")
                s.shutdown(socket.SHUT_WR)
                try:
                    while s.recv(65536):
                        pass
                except OSError:
                    pass

        for what, act in (("a client that resets mid-line", rst), ("a client that half-closes", half_close),
                          ("a client sending NUL bytes", lambda: talk_tcp(host, port, b"\x00\xff\x00\n"))):
            with steps.step(what):
                try:
                    act()
                except OSError:
                    pass
                time.sleep(0.1)
                results.append((what, server.popen.poll() is None))
    with steps.step("still alive and serving"):
        alive = server.popen.poll() is None
        if alive:
            traffic(probe, server, 1)
            alive = server.popen.poll() is None
    results.append(("serving afterwards", alive))
    good = sum(ok for _, ok in results)
    record_property("credit", good / len(results))
    bad = [what for what, ok in results if not ok]
    assert not bad, (f"expected the server to survive every odd peer; it failed after: {', '.join(bad)} "
                     f"(status {server.popen.poll()}).\n"
                     "Hint: treat every peer's input as untrusted: 0-byte reads, huge or binary data and "
                     "resets must end that exchange only, never the server")


@pytest.mark.limit(40)
@pytest.mark.parametrize("probe", _params("restart"))
def _probe_restart(lab, steps, probe):
    """Restarting on the same port right after serving a client works (no EADDRINUSE)."""
    server = start(lab, probe)
    port = server.ready.port
    with steps.step("serve one client; the server closes first (it stops while the client is connected)"):
        fam = socket.AF_INET6 if ":" in server.ready.host else socket.AF_INET
        c = socket.socket(fam, socket.SOCK_STREAM)
        c.settimeout(0.5)
        c.connect((server.ready.host, port))
        c.sendall(b"hello\n")
        try:
            c.recv(65536)       # read the answer: unread data would make our close() an RST
        except (socket.timeout, OSError):
            pass
        server.stop()
        try:                    # read to EOF, so our close() is a clean FIN after the server's
            while c.recv(65536):
                pass
        except (socket.timeout, OSError):
            pass
        c.close()
        time.sleep(0.1)
    with steps.step(f"restart on port {port}"):
        again = lab.start(probe.program, "--port", str(port), *probe.args)
        try:
            again.wait_ready(timeout=5)
        except AssertionError:
            states = dict(probes.tcp_states(port))
            raise AssertionError(
                f"expected the restarted server to be ready on port {port}; it was not (sockets there: "
                f"{states}).\n{again.report()}\nHint: the old connection holds the port in TIME_WAIT / "
                "FIN_WAIT2: set SO_REUSEADDR on the listening socket before bind()") from None


@pytest.mark.limit(30)
@pytest.mark.parametrize("probe", _params("clean_shutdown"))
def _probe_clean_shutdown(lab, steps, probe):
    """SIGTERM: exit status 0 within 2 s, the port released, no child left running."""
    server = start(lab, probe)
    traffic(probe, server, 3)
    kids = set(probes.descendants(server.pid))
    with steps.step("SIGTERM"):
        server.popen.terminate()
        try:
            rc = server.wait_exit(2)
        except AssertionError:
            rc = None
    got = rc if rc is not None else "still running"
    assert rc == 0, (f"expected exit status 0 within 2 s of SIGTERM, got {got}.\n"
                     "Hint: handle SIGTERM/SIGINT: close everything and exit 0 (the contract)")
    left = [p for p in kids if probes.alive(p)]
    port = server.ready.port
    held = udp_socket_row(port) if probe.proto == "udp" else \
        [s for s in probes.tcp_sockets(port, host=server.ready.host) if s.state == "LISTEN"]
    assert not left and not held, (f"after exit: {len(left)} children still running, port {port} "
                                   f"{'still bound' if held else 'released'}.\n"
                                   "Hint: children must end with the server (and no copy of the socket may "
                                   "survive in them)")


@pytest.mark.limit(20)
@pytest.mark.parametrize("probe", _params("loopback_only"))
def _probe_loopback_only(lab, probe):
    """By default the server binds 127.0.0.1, never the wildcard address."""
    server = start(lab, probe)
    port = server.ready.port
    if probe.proto == "udp":
        row = udp_socket_row(port)
        local = row[1].split(":")[0] if row else "?"
        ok = local == "0100007F"
    else:
        rows = [s for s in probes.tcp_sockets(port) if s.state == "LISTEN"]
        local = rows[0].local[0] if rows else "?"
        ok = local == "127.0.0.1"
    assert ok and server.ready.host == "127.0.0.1", (
        f"expected the socket bound to 127.0.0.1 (ready line says {server.ready.host}, /proc says {local}).\n"
        "Hint: the server is bound to the wildcard address (0.0.0.0 / INADDR_ANY), reachable from every "
        "network: bind the --host address, default 127.0.0.1")


# Only the checks some selected probe uses become tests (no empty parameter sets to report).
_used = {c for _, c in _selected()}
for _name, _fn in list(globals().items()):
    if _name.startswith("_probe_") and _name[len("_probe_"):] in _used:
        globals()["test_behaviour_" + _name[len("_probe_"):]] = _fn
