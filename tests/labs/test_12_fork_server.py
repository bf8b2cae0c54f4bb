"""Lab 12 fork-server: echo_fork, a child process per client, the notes' three bugs as flags, and
the bad-client battery.

Each test states one claim of labs/12-fork-server/README.md and proves it over loopback, reading
/proc for what the processes hold: children, zombies, fds and the sockets they point to.
"""
from __future__ import annotations

import os
import resource
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from harness import battery, probes
from harness.clients import ClientTimeout, TcpClient
from harness.contract import assert_help_and_usage
from harness.output import ERROR, contract
from harness.process import LabProcess
from harness.programs import program
from harness.steps import wait_for

MODEL = battery.Model(lab="12", program="echo_fork", kind=battery.CONCURRENT)
C = contract("12")


@pytest.mark.limit(90)
@pytest.mark.parametrize("check", [pytest.param(c, id=c.name, marks=pytest.mark.hint(c.hint))
                                   for c in battery.checks(MODEL)])
def test_battery(lab, steps, check):
    check.run(lab, MODEL, steps)


def child_of(server, peer_port: int) -> int:
    """The pid of the child that serves the client on `peer_port`, from the parent's accepted line."""
    m = server.expect(C.line("accepted"))
    while not m["peer"].endswith(f":{peer_port}"):
        m = server.expect(C.line("accepted"))
    return int(m["pid"])


def socket_inodes(pid: int) -> set[int]:
    return probes.socket_inodes(pid)


def server_end(port: int, client_port: int) -> probes.TcpSocket:
    rows = [s for s in probes.tcp_sockets(client_port) if s.local[1] == port and s.remote[1] == client_port]
    assert len(rows) == 1, \
        f"expected one server end of the connection from port {client_port}, found {len(rows)}"
    return rows[0]


def listener_inode(port: int) -> int | None:
    rows = [s for s in probes.tcp_sockets(port) if s.state == "LISTEN" and s.local[1] == port]
    return rows[0].inode if rows else None


@pytest.mark.hint("fork() once per accepted client; the parent goes straight back to accept()")
def test_each_client_has_its_own_child_and_all_are_served_at_once(lab, steps):
    server = lab.server("echo_fork", "--port", "0")
    port = server.ready.port
    with TcpClient("127.0.0.1", port) as a, TcpClient("127.0.0.1", port) as b:
        with steps.step("two clients connected at once: each has a child of the server"):
            kids = {child_of(server, a.local_port), child_of(server, b.local_port)}
            assert len(kids) == 2 and kids <= set(probes.children(server.pid)), (
                f"expected two children of the server, one per client; the accepted lines name "
                f"{sorted(kids)}."
                f"\n{server.report()}")
        with steps.step("the second is echoed while the first is still connected, and then the first"):
            b.send("second\n")
            assert b.recv_exactly(7) == b"second\n"
            a.send("first\n")
            assert a.recv_exactly(6) == b"first\n"
        m = server.expect(C.line("recv"))
        assert m["n"] == "7" and m["data"] == "second\\n", server.report()
    with steps.step("each child logs its client's FIN and exits"):
        closed = {int(server.expect(C.line("closed"))["pid"]) for _ in range(2)}
        assert closed == kids, \
            f"expected each child to log its own client's FIN: children {kids}, closed {closed}"
        wait_for("both children gone", lambda: not [p for p in kids if probes.alive(p)], timeout=5)


@pytest.mark.hint("after fork() the child must close the listener and the parent the connection: "
                  "each process keeps only the descriptor it uses")
def test_fork_duplicates_the_descriptor_each_side_closes_the_copy_it_does_not_use(lab, steps):
    server = lab.server("echo_fork", "--port", "0")
    port = server.ready.port
    with TcpClient("127.0.0.1", port) as client:
        child = child_of(server, client.local_port)
        conn = server_end(port, client.local_port).inode
        listen = listener_inode(port)
        with steps.step("parent: the listener only; child: the connection only"):
            assert socket_inodes(server.pid) == {listen}, (
                f"expected the parent to hold only the listener (socket:[{listen}]), it holds "
                f"{socket_inodes(server.pid)}.\nHint: the parent keeps the connection: close the parent's "
                "copy right after fork(), or the client never sees EOF and the parent runs out of fds")
            assert socket_inodes(child) == {conn}, (
                f"expected the child to hold only its connection (socket:[{conn}]), it holds "
                f"{socket_inodes(child)}.\nHint: the child keeps the listener: close the child's copy of "
                "the listening socket right after fork()")
        client.send("x")
        assert client.recv_exactly(1) == b"x"


@pytest.mark.hint("fork() copies the descriptor, not the socket: both processes point to one socket")
def test_with_parent_keeps_conn_both_processes_hold_the_same_socket(lab, steps):
    server = lab.server("echo_fork", "--port", "0", "--parent-keeps-conn")
    port = server.ready.port
    with TcpClient("127.0.0.1", port) as client:
        child = child_of(server, client.local_port)
        conn = server_end(port, client.local_port).inode
        with steps.step("the parent's leaked fd and the child's fd are one socket: the same inode"):
            assert conn in socket_inodes(server.pid) and conn in socket_inodes(child), (
                f"expected parent and child both to hold socket:[{conn}] with --parent-keeps-conn; "
                f"the parent "
                f"holds {socket_inodes(server.pid)}, the child {socket_inodes(child)}")
        with steps.step("one socket, one connection: the echo works as before"):
            client.send("same\n")
            assert client.recv_exactly(5) == b"same\n"


@pytest.mark.hint("the FIN goes out on the last close of the socket: the parent must close its copy "
                  "right after fork(), or the client never sees EOF")
def test_fin_goes_out_only_when_the_last_copy_is_closed(lab, steps):
    server = lab.server("echo_fork", "--port", "0", "--parent-keeps-conn")
    port = server.ready.port
    with TcpClient("127.0.0.1", port) as client:
        child = child_of(server, client.local_port)
        with steps.step("the client sends, half-closes and gets its echo; the child closes and exits"):
            client.send("bye\n")
            client.shutdown_write()
            assert client.recv_exactly(4) == b"bye\n"
            closer = int(server.expect(C.line("closed"))["pid"])
            assert closer == child, f"expected child {child} to log its client's FIN, child {closer} did"
            wait_for("the child gone", lambda: not probes.alive(child), timeout=5)
        with steps.step("no EOF reaches the client: the parent still holds the socket, in CLOSE_WAIT"):
            try:
                early = client.recv_some(timeout=1.0)
            except ClientTimeout:
                early = None
            assert early is None, \
                f"the client should see no EOF while the parent holds the socket, got {early!r}"
            state = server_end(port, client.local_port).state
            assert state == "CLOSE_WAIT", \
                f"expected the parent's copy of the socket in CLOSE_WAIT, it is {state}"
        with steps.step("the parent exits: its copy was the last, the FIN goes out now"):
            os.kill(server.pid, signal.SIGTERM)
            assert server.wait_exit(5) == C.status("stopped"), server.report()
            assert client.recv_until_eof(timeout=5) == b""


def _nofile(n: int):
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))


@pytest.mark.limit(60)
@pytest.mark.hint("the parent must close every connection it handed to a child, or its fds run out (EMFILE)")
def test_parent_keeps_conn_grows_one_fd_per_client_until_emfile(lab, steps):
    server = lab.server("echo_fork", "--port", "0", "--parent-keeps-conn", preexec=_nofile(32))
    port = server.ready.port
    base = probes.fd_count(server.pid)
    served = 0
    with steps.step("clients one after another, each echoed and closed, until one is not served"):
        for _ in range(40):
            with TcpClient("127.0.0.1", port) as client:
                client.send("n")
                try:
                    client.recv_exactly(1, timeout=1.0)
                except ClientTimeout:
                    break
            served += 1
            wait_for(f"the parent's fd count at {base + served}",
                     lambda: probes.fd_count(server.pid) == base + served, timeout=5)
    assert base + served == 32, f"the parent should run out at its limit of 32 fds: {base} + {served} clients"
    m = server.expect(C.line("accept_paused"))
    assert m["ename"] == "EMFILE", server.report()
    assert server.popen.poll() is None, "out of fds the server pauses, it does not die\n" + server.report()
    # Each finished client's socket waits in CLOSE_WAIT, held by the parent; so does the last one,
    # still in the accept queue, which the client has closed too.
    states = probes.tcp_states(port, host="127.0.0.1")
    assert states.get("CLOSE_WAIT", 0) == served + 1, \
        f"every finished client should sit in CLOSE_WAIT: {dict(states)}"


@pytest.mark.hint("install a SIGCHLD handler that reaps with waitpid(-1, &status, WNOHANG) in a loop")
def test_no_reap_leaves_one_zombie_per_finished_client(lab, steps):
    server = lab.server("echo_fork", "--port", "0", "--no-reap")
    with steps.step("5 clients, one after another, each echoed and closed"):
        for i in range(5):
            with TcpClient("127.0.0.1", server.ready.port) as client:
                client.send(b"%d" % i)
                assert client.recv_exactly(1) == b"%d" % i
            server.expect(C.line("closed"))
    with steps.step("5 children have exited: 5 zombies (state Z), children of the server"):
        wait_for("5 zombies", lambda: len(probes.zombies(server.pid)) >= 5, timeout=5)
        zombies = probes.zombies(server.pid)
        assert len(zombies) == 5, \
            f"expected exactly 5 zombies after 5 clients with --no-reap, found {len(zombies)}"
        assert not [p for p in probes.children(server.pid) if probes.alive(p)], "no child should still run"


@pytest.mark.hint("signals do not queue: one SIGCHLD can stand for several ended children, so the "
                  "handler loops waitpid(-1, &status, WNOHANG) until it returns 0")
def test_twenty_children_ending_at_once_leave_no_zombie(lab, steps):
    server = lab.server("echo_fork", "--port", "0")
    caught = int(probes.status_field(server.pid, "SigCgt"), 16)
    assert caught & (1 << (signal.SIGCHLD - 1)), \
        "expected the server to catch SIGCHLD (SigCgt in /proc/PID/status).\nHint: zombies: install a " \
        "SIGCHLD handler that loops waitpid(-1, &status, WNOHANG)"
    clients: list[TcpClient] = []
    try:
        with steps.step("20 clients, each echoed once (one accept at a time: listen(5) drops no SYN)"):
            for _ in range(20):
                clients.append(TcpClient("127.0.0.1", server.ready.port))
                child_of(server, clients[-1].local_port)
            for c in clients:
                c.send("z")
            for c in clients:
                assert c.recv_exactly(1) == b"z"
            kids = probes.children(server.pid)
            assert len(kids) >= 20, f"expected 20 children, one per connected client, found {len(kids)}"
    finally:
        with steps.step("all 20 close at once"):
            for c in clients:
                c.close()
    with steps.step("every child is reaped"):
        try:
            wait_for("all 20 children gone and reaped", lambda: not probes.children(server.pid), timeout=5)
        except AssertionError:
            zombies = probes.zombies(server.pid)
            raise AssertionError(
                f"expected all 20 children reaped, {len(zombies)} are zombies.\nHint: zombies: a SIGCHLD "
                "handler must loop waitpid(-1, &status, WNOHANG) until it returns 0, since one SIGCHLD can "
                "stand for several children") from None
    assert server.popen.poll() is None, \
        "expected the server to run on after 20 children ended\n" + server.report()
    errors = [m["ename"] for m in ERROR.findall(server.stderr)]
    assert not errors, (f"expected no error while reaping, but the server reported {errors}: a SIGCHLD "
                        f"handler interrupts accept(), which must be retried on EINTR.\n{server.report()}")


@pytest.mark.hint("the child must close its copy of the listening socket right after fork()")
def test_child_keeps_listener_holds_the_port_after_the_parent_dies(lab, steps):
    server = lab.server("echo_fork", "--port", "0", "--child-keeps-listener")
    port = server.ready.port
    with TcpClient("127.0.0.1", port) as client:
        child = child_of(server, client.local_port)
        listen = listener_inode(port)
        with steps.step("kill -9 the parent while the child serves"):
            os.kill(server.pid, signal.SIGKILL)
            # not wait_exit(): that also waits for its stdout to close, and the child holds it open
            wait_for("the parent gone", lambda: server.popen.poll() is not None, timeout=5)
        with steps.step("the port still LISTENs: the child's copy of the listener"):
            assert listener_inode(port) == listen and listen in socket_inodes(child), (
                f"expected port {port} still to LISTEN through the child's copy socket:[{listen}]; "
                f"the port's "
                f"listener is {listener_inode(port)}, the child holds {socket_inodes(child)}")
        with steps.step("a restart fails with EADDRINUSE even though both runs set SO_REUSEADDR"):
            again = lab.run("echo_fork", "--port", port, timeout=5)
            assert again.popen.returncode == C.status("failed"), again.report()
            errors = [m["ename"] for m in ERROR.findall(again.stderr) if m["prog"] == "echo_fork"]
            assert errors[:1] == ["EADDRINUSE"], (
                f"expected the restart to fail with an [EADDRINUSE] error line, got {errors}.\n"
                f"{again.report()}")
        with steps.step("a new client connects (into the child's accept queue) but nobody serves it"):
            with TcpClient("127.0.0.1", port) as stranded:
                stranded.send("hello?\n")
                with pytest.raises(ClientTimeout):
                    stranded.recv_some(timeout=1.0)
        client.send("still served\n")
        assert client.recv_exactly(13) == b"still served\n"
    wait_for("the child gone once its client left", lambda: not probes.alive(child), timeout=5)
    assert listener_inode(port) is None, "with the last copy closed, the port is free"


@pytest.mark.hint("the child must close its copy of the listening socket right after fork()")
def test_killed_parent_frees_the_port_and_the_child_finishes_its_client(lab, steps):
    server = lab.server("echo_fork", "--port", "0")
    port = server.ready.port
    with TcpClient("127.0.0.1", port) as client:
        child = child_of(server, client.local_port)
        with steps.step("one echo first: the child has started serving (past closing its copies)"):
            client.send("first\n")
            assert client.recv_exactly(6) == b"first\n", "expected the child to echo its client"
        with steps.step("kill -9 the parent: no listener is left"):
            os.kill(server.pid, signal.SIGKILL)
            # not wait_exit(): that also waits for its stdout to close, and the child holds it open
            wait_for("the parent gone", lambda: server.popen.poll() is not None, timeout=5)
            assert listener_inode(port) is None, (
                f"expected no listener on port {port} once the parent was killed, the child "
                f"{child} holds {socket_inodes(child)}.\nHint: the child keeps the listener: close the "
                "child's copy of the listening socket right after fork()")
        with steps.step("a restart on the same port works (SO_REUSEADDR; the child's connection is on it)"):
            again = lab.server("echo_fork", "--port", port)
            assert again.ready.port == port, \
                f"expected the restart on port {port}, it listens on {again.ready.port}"
        with steps.step("the orphaned child still echoes its client"):
            client.send("orphan\n")
            assert client.recv_exactly(7) == b"orphan\n"
            assert probes.alive(child), \
                f"expected the orphaned child {child} to run on while its client is there"


@pytest.mark.hint("--help exits 0; an unknown option exits 2 with usage on stderr")
def test_cli_contract(lab):
    assert_help_and_usage(lab, "echo_fork")


def _nobody_processes() -> int:
    n = 0
    for entry in os.listdir("/proc"):
        try:
            n += entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == 65534
        except OSError:
            pass
    return n


@pytest.mark.hint("a failed fork() (EAGAIN at the process limit) must end that client only: close it, "
                  "log it, and keep accepting")
def test_failed_fork_refuses_that_client_only(lab, steps):
    if os.geteuid() != 0:
        pytest.skip("needs root: it runs the server as nobody under RLIMIT_NPROC (which does not bind "
                    "root); run it as root: sudo ctest --preset dev -L lab12")
    reachable = Path(tempfile.mkdtemp(prefix="socklab-nobody-"))  # a folder nobody can enter
    try:
        os.chmod(reachable, 0o755)
        copy = reachable / "echo_fork"
        shutil.copy2(program("echo_fork"), copy)
        limit = _nobody_processes() + 3  # the server and two children

        def as_nobody_with_few_processes() -> None:
            resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
        server = LabProcess([copy, "--port", "0"], preexec=as_nobody_with_few_processes)
        lab.started.append(server)
        server.wait_ready(timeout=10)
        port = server.ready.port
        with TcpClient("127.0.0.1", port) as a, TcpClient("127.0.0.1", port) as b:
            with steps.step("two clients, each served by its child: the process limit is reached"):
                for c in (a, b):
                    c.send("in\n")
                    assert c.recv_exactly(3) == b"in\n"
            with steps.step("a third client: fork() fails with EAGAIN, that client is closed at once"):
                with TcpClient("127.0.0.1", port) as third:
                    m = server.expect(C.line("refused"))
                    assert "[EAGAIN]" in m["why"], server.report()
                    try:
                        assert third.recv_until_eof(timeout=5) == b""
                    except ConnectionResetError:
                        pass
            with steps.step("the server goes on: the first two are still served"):
                assert server.popen.poll() is None, server.report()
                a.send("still\n")
                assert a.recv_exactly(6) == b"still\n"
        with steps.step("once they left (children reaped), a new client is served again"):
            wait_for("the two children reaped", lambda: not probes.children(server.pid), timeout=5)
            with TcpClient("127.0.0.1", port) as again:
                again.send("back\n")
                assert again.recv_exactly(5) == b"back\n"
    finally:
        shutil.rmtree(reachable, ignore_errors=True)
