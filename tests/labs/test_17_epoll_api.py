"""Lab 17 epoll-api: epoll_api_tour (the walkthrough's seven steps) and epoll_lt_echo (its LT server).

Each test states one claim of labs/17-epoll-api/README.md. The tour's printed lines are checked
against the output contract, and wherever the kernel lets us look, against an observation of the
test's own: /proc/PID/fdinfo of the epoll fd (one `tfd:` line per registered fd, with its mask),
the test's own select.epoll, strace.
"""
from __future__ import annotations

import errno
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import time

import pytest

from harness import battery, probes
from harness.clients import TcpClient
from harness.contract import assert_cli_contract, occupy_tcp
from harness.output import USAGE, contract
from harness.programs import program
from harness.steps import slowdown, wait_for

C = contract("17")
TOUR = "epoll_api_tour"
ECHO = "epoll_lt_echo"
MODEL = battery.Model(lab="17", program="epoll_lt_echo", kind=battery.CONCURRENT)
IDLE_MS = 50   # the tour's --timeout-ms in most tests: five idle waits, a quarter second in all

NAMES = [(select.EPOLLIN, "EPOLLIN"), (select.EPOLLPRI, "EPOLLPRI"), (select.EPOLLOUT, "EPOLLOUT"),
         (select.EPOLLERR, "EPOLLERR"), (select.EPOLLHUP, "EPOLLHUP"), (select.EPOLLRDHUP, "EPOLLRDHUP"),
         (select.EPOLLEXCLUSIVE, "EPOLLEXCLUSIVE"), (1 << 29, "EPOLLWAKEUP"),
         (select.EPOLLONESHOT, "EPOLLONESHOT"), (select.EPOLLET, "EPOLLET")]


def names(mask: int) -> str:
    return "|".join(n for bit, n in NAMES if mask & bit) or "none"


# ---- observations of our own -------------------------------------------------------------------

def epoll_fds(pid: int) -> list[int]:
    """The fds of pid that are epoll instances."""
    out = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}") == "anon_inode:[eventpoll]":
                out.append(int(name))
        except FileNotFoundError:
            pass
    return sorted(out)


def interest(pid: int, epfd: int) -> dict[int, int]:
    """The interest list of epoll fd `epfd` of pid, from /proc/PID/fdinfo: {fd number: events}."""
    with open(f"/proc/{pid}/fdinfo/{epfd}") as f:
        rows = [row.split() for row in f.read().splitlines()]
    # `tfd:        5 events:       19 data:       5  pos:0 ino:...` (proc(5), /proc/pid/fdinfo)
    return {int(row[1]): int(row[3], 16) for row in rows if len(row) >= 4 and row[0] == "tfd:"}


def listing(registered: dict[int, int]) -> str:
    """An interest list as a phrase: `fd 5 (events 0x19), fd 6 (events 0x2019)`, or `nothing`."""
    return ", ".join(f"fd {fd} (events {ev:#x})" for fd, ev in sorted(registered.items())) or "nothing"


def fd_flags(pid: int, fd: int) -> int:
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        rows = [row.split() for row in f.read().splitlines()]
    return next(int(row[1], 8) for row in rows if len(row) == 2 and row[0] == "flags:")


def idle_waits(strace_log: str, timeout_ms: int) -> list[str]:
    """The epoll_wait / epoll_pwait calls of an `strace -f` log that had timeout `timeout_ms`, returned
    no events and the value 0: `1234 epoll_wait(3, [], 8, 120)   = 0` (pwait adds `, NULL, 8`)."""
    found = []
    for row in strace_log.splitlines():
        call, _, result = row.rpartition("=")
        call = call.strip()
        if result.strip() != "0" or not call.endswith(")"):
            continue
        name, _, args = call[:-1].partition("(")
        fields = [a.strip() for a in args.split(",")]
        if name.split()[-1:] in (["epoll_wait"], ["epoll_pwait"]) and len(fields) >= 4 \
                and fields[1] == "[]" and fields[3] == str(timeout_ms):
            found.append(row)
    return found


def pair(listener: socket.socket) -> tuple[socket.socket, socket.socket]:
    peer = socket.create_connection(listener.getsockname()[:2], timeout=5)
    ours, _ = listener.accept()
    return ours, peer


def rst(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def python_mask(case: str, host: str = "127.0.0.1") -> int:
    """The mask the test's own select.epoll reports for one case of the tour's step 6."""
    registered = {"fin": select.EPOLLIN, "rst": select.EPOLLIN, "rst-unasked": 0,
                  "never-connected": select.EPOLLIN}.get(case, select.EPOLLIN | select.EPOLLRDHUP)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as listener, select.epoll() as ep:
        listener.bind((host, 0))
        listener.listen()
        if case == "never-connected":
            with socket.socket(fam, socket.SOCK_STREAM) as fresh:
                ep.register(fresh.fileno(), registered)
                return ep.poll(1)[0][1]
        ours, peer = pair(listener)
        with ours, peer:
            ep.register(ours.fileno(), registered)
            if case in ("fin", "fin-rdhup"):
                peer.close()
            elif case == "half-close":
                peer.shutdown(socket.SHUT_WR)
            elif case == "both-shut":
                peer.shutdown(socket.SHUT_WR)
                ep.poll(1)
                ours.shutdown(socket.SHUT_WR)
            else:
                rst(peer)
            return ep.poll(1)[0][1]


# ---- the tour's output ------------------------------------------------------------------------

def matches(proc, name: str) -> list[re.Match[str]]:
    """Every line of the contract's `name` the program printed so far, in order."""
    line = C[name]
    return line.findall(proc.stderr if line.stream == "stderr" else proc.stdout)


def run_tour(lab, *args: str | int):
    proc = lab.run(TOUR, "--timeout-ms", IDLE_MS, *args, timeout=20)
    assert proc.popen.returncode == C.status("tour_done"), \
        f"the tour should run to its end and exit {C.status('tour_done')}\n{proc.report()}"
    assert C["done"].find(proc.stdout), f"the tour should end with `{C['done'].template}`\n{proc.report()}"
    return proc


def ctl_results(proc) -> list[tuple[str, str, str]]:
    """(op, target, result) of every ctl line, in order."""
    return [(m[1], m[2], m[5]) for m in matches(proc, "ctl")]


def hold_at(proc, label: str) -> int:
    """Let a --hold tour run on to the hold `label`; the epoll fd it names."""
    for _ in range(10):
        m = proc.expect(C.line("hold"), timeout=10 * slowdown())
        if m[1] == label:
            return int(m[2])
        proc.send_line("")
    raise AssertionError(f"the tour never held at {label!r}\n{proc.report()}")


def start_held(lab, label: str):
    proc = lab.start(TOUR, "--timeout-ms", IDLE_MS, "--hold")
    return proc, hold_at(proc, label)


def finish(proc) -> None:
    proc.close_stdin()
    assert proc.wait_exit(10 * slowdown()) == C.status("tour_done"), proc.report()


# ---- epoll_api_tour ----------------------------------------------------------------------------

@pytest.mark.hint("print `step 1:` to `step 7:` in order, one per step of the walkthrough's diagram, "
                  "and exit 0 after the done line")
def test_tour_walks_the_seven_steps_in_order(lab):
    proc = run_tour(lab)
    assert [int(m[1]) for m in matches(proc, "step")] == list(range(1, 8)), proc.report()


@pytest.mark.hint("create the object with epoll_create1(EPOLL_CLOEXEC); epoll_create(size) ignores size "
                  "but still refuses 0 with EINVAL")
def test_create1_sets_cloexec_and_the_size_argument_is_ignored(lab, steps):
    with steps.step("the tour's create lines"):
        proc = run_tour(lab)
        sizes = {m[1]: m[2] for m in matches(proc, "create")}
        assert sizes.get("0") == "EINVAL", f"epoll_create(0) must fail with EINVAL, got {sizes}"
        assert sizes.get("1", "").startswith("fd ") and sizes.get("100000", "").startswith("fd "), sizes
        made = matches(proc, "create1")
        assert made and made[0][2] == "1", \
            f"expected `cloexec 1` from epoll_create1(EPOLL_CLOEXEC)\n{proc.report()}"
    with steps.step("our own look: the epoll fd is an eventpoll with O_CLOEXEC in /proc/PID/fdinfo"):
        held, epfd = start_held(lab, "registered")
        assert epoll_fds(held.pid) == [epfd], \
            f"expected exactly one epoll fd, {epfd}; found {epoll_fds(held.pid)}"
        assert fd_flags(held.pid, epfd) & os.O_CLOEXEC, "the epoll fd lacks O_CLOEXEC in its fdinfo flags"
        finish(held)


@pytest.mark.hint("a second EPOLL_CTL_ADD of the same fd is EEXIST, DEL of an fd never added is ENOENT, "
                  "ADD of a regular file is EPERM: print each errno name, do not stop")
def test_add_twice_eexist_del_unregistered_enoent_regular_file_eperm(lab, steps, tmp_path):
    with steps.step("the tour's step 2"):
        proc = run_tour(lab)
        seen = ctl_results(proc)
        for want in [("ADD", "listener", "ok"), ("ADD", "listener", "EEXIST"), ("ADD", "conn", "ok"),
                     ("DEL", "unregistered", "ENOENT"), ("ADD", "regular-file", "EPERM")]:
            assert want in seen, f"expected the ctl line {want}; ctl lines were {seen[:6]}"
    with steps.step("our own select.epoll gives the same three errors"):
        with socket.socket() as a, socket.socket() as b, select.epoll() as ep, \
                open(tmp_path / "file", "w") as regular:
            ep.register(a.fileno(), select.EPOLLIN)
            with pytest.raises(FileExistsError):
                ep.register(a.fileno(), select.EPOLLIN)
            with pytest.raises(FileNotFoundError):
                ep.unregister(b.fileno())
            with pytest.raises(PermissionError):
                ep.register(regular.fileno(), select.EPOLLIN)


@pytest.mark.hint("register the listener with EPOLLIN and the connection with EPOLLIN|EPOLLRDHUP, MOD it "
                  "to add EPOLLOUT, then DEL the listener, at the holds the README lists")
def test_fdinfo_shows_the_interest_list_through_add_mod_del(lab, steps):
    proc = lab.start(TOUR, "--timeout-ms", IDLE_MS, "--hold")
    with steps.step("hold registered: listener and conn listed, with EPOLLERR|EPOLLHUP added by the kernel"):
        epfd = hold_at(proc, "registered")
        adds = {m[2]: int(m[3]) for m in matches(proc, "ctl") if m[1] == "ADD" and m[5] == "ok"}
        listed = interest(proc.pid, epfd)
        want = {adds["listener"]: 0x19, adds["conn"]: 0x2019}
        assert listed == want, f"expected fdinfo's tfd lines {want} (fd: events), found {listed}"
    with steps.step("hold modified: conn's events now include EPOLLOUT"):
        proc.send_line("")
        hold_at(proc, "modified")
        assert interest(proc.pid, epfd).get(adds["conn"]) == 0x201d, interest(proc.pid, epfd)
    with steps.step("hold unregistered: the listener is gone from the list, but still open"):
        proc.send_line("")
        hold_at(proc, "unregistered")
        assert adds["listener"] not in interest(proc.pid, epfd), interest(proc.pid, epfd)
        assert os.path.exists(f"/proc/{proc.pid}/fd/{adds['listener']}"), "DEL must not close the fd"
    finish(proc)


@pytest.mark.hint("the epoll_wait timeout is in milliseconds: with nothing ready it returns 0 events "
                  "after that many ms (Python's poll() takes seconds)")
def test_wait_timeout_is_in_milliseconds_and_returns_zero_events(lab, steps, tmp_path):
    with steps.step("--timeout-ms 300: the idle wait returns 0 events after about 300 ms"):
        proc = run_tour(lab, "--timeout-ms", 300)
        idle = [m for m in matches(proc, "wait") if m[1] == "idle"]
        assert idle, f"expected a `wait idle ...` line\n{proc.report()}"
        timeout, count, elapsed = int(idle[0][2]), int(idle[0][3]), int(idle[0][4])
        assert (timeout, count) == (300, 0), f"expected `timeout 300 ms -> 0 events`, got {idle[0][0]}"
        assert 290 <= elapsed < 5000, f"expected about 300 ms, measured {elapsed} ms"
    with steps.step("our own look: strace shows epoll_wait(..., 120) = 0 for --timeout-ms 120"):
        if not shutil.which("strace"):
            pytest.skip("strace is not installed (apt-get install strace); the printed lines passed")
        log = tmp_path / "strace.log"
        env = dict(os.environ)  # LeakSanitizer's exit check uses ptrace, which strace already holds
        env["ASAN_OPTIONS"] = ":".join(filter(None, [env.get("ASAN_OPTIONS"), "detect_leaks=0"]))
        if subprocess.run(["strace", "-o", os.devnull, "true"], capture_output=True, timeout=30).returncode:
            pytest.skip("strace cannot trace here (ptrace refused); the printed lines passed")
        subprocess.run(["strace", "-f", "-e", "trace=epoll_wait,epoll_pwait", "-o", str(log),
                        str(program(TOUR)), "--timeout-ms", "120"], capture_output=True, timeout=60, env=env)
        calls = idle_waits(log.read_text(), 120)
        assert calls, f"strace shows no epoll_wait with timeout 120 returning 0:\n{log.read_text()[:1500]}"
    with steps.step("Python's poll() takes seconds: poll(0.2) waits 0.2 s"):
        with select.epoll() as ep:
            t0 = time.monotonic()
            assert ep.poll(0.2) == []
            assert time.monotonic() - t0 >= 0.19


@pytest.mark.hint("epoll_wait on an fd that is not an epoll fd fails with EINVAL (what fromfd of a socket "
                  "leads to)")
def test_epoll_wait_on_a_socket_is_einval_so_fromfd_needs_an_epoll_fd(lab, steps):
    with steps.step("the tour's call line"):
        proc = run_tour(lab)
        calls = {m[1] + "(" + m[2].split(" fd")[0] + ")": m[3] for m in matches(proc, "call")}
        assert calls.get("epoll_wait(socket)") == "EINVAL", \
            f"expected epoll_wait(socket ...) -> EINVAL, got {calls}"
    with steps.step("our own select.epoll.fromfd(socket) then poll(): EINVAL"):
        with socket.socket() as s:
            wrapped = select.epoll.fromfd(os.dup(s.fileno()))
            with pytest.raises(OSError) as err:
                wrapped.poll(0)
            wrapped.close()
            assert err.value.errno == errno.EINVAL


TRIGGERS = {("lt", "first"): 1, ("lt", "again-unread"): 1, ("et", "first"): 1, ("et", "again-unread"): 0,
            ("et", "new-data"): 1, ("oneshot", "first"): 1, ("oneshot", "new-data"): 0,
            ("oneshot", "after-mod"): 1}


@pytest.mark.hint("LT reports unread data on every wait; ET reports each new arrival once (again for new "
                  "data); EPOLLONESHOT reports once until EPOLL_CTL_MOD re-arms it")
def test_lt_repeats_et_notifies_per_arrival_oneshot_once_until_mod(lab, steps):
    with steps.step("the tour's trigger lines"):
        proc = run_tour(lab)
        seen = {(m[1], m[2]): int(m[3]) for m in matches(proc, "trigger")}
        assert seen == TRIGGERS, f"expected the trigger counts {TRIGGERS}, got {seen}"
    with steps.step("our own look: after one event the ONESHOT entry is disarmed (fdinfo events 40000000)"):
        held, epfd = start_held(lab, "oneshot-disarmed")
        conn = [int(m[3]) for m in matches(held, "ctl") if m[1] == "MOD"][-1]
        assert interest(held.pid, epfd).get(conn) == select.EPOLLONESHOT, (
            f"expected fd {conn} registered with only EPOLLONESHOT left, found {interest(held.pid, epfd)}")
        finish(held)


@pytest.mark.hint("level-triggered is what you get without EPOLLET; no EPOLLLT flag exists to set")
def test_there_is_no_epolllt_flag(lab):
    proc = run_tour(lab)
    assert C["note"].find(proc.stdout), f"expected a line like {C['note'].example!r}\n{proc.report()}"
    lt_mod = [m for m in matches(proc, "ctl") if m[1] == "MOD" and m[4].startswith("0x1 ")]
    assert lt_mod, "level-triggered mode should be registered as plain EPOLLIN (0x1)"
    assert not hasattr(select, "EPOLLLT"), "Python's select module has no EPOLLLT"
    header = "/usr/include/x86_64-linux-gnu/sys/epoll.h"
    if os.path.exists(header):
        assert "EPOLLLT" not in open(header).read(), f"{header} defines no EPOLLLT"


MASKS = {"fin": (0x1, 0x1, "0"), "fin-rdhup": (0x2001, 0x2001, "0"), "half-close": (0x2001, 0x2001, "0"),
         "both-shut": (0x2001, 0x2011, "0"), "rst": (0x1, 0x19, "ECONNRESET"),
         "rst-unasked": (0x0, 0x18, "ECONNRESET"), "never-connected": (0x1, 0x10, "ENOTCONN")}


def assert_masks(proc, host: str = "127.0.0.1") -> None:
    got = {m[1]: m for m in matches(proc, "mask")}
    assert set(got) == set(MASKS), \
        f"expected mask lines for {sorted(MASKS)}, got {sorted(got)}\n{proc.report()}"
    for case, (registered, reported, recv) in MASKS.items():
        m = got[case]
        assert (int(m[2], 16), int(m[4], 16), m[6]) == (registered, reported, recv), (
            f"{case}: expected registered {registered:#x}, reported {reported:#x} ({names(reported)}), "
            f"recv -> "
            f"{recv}; the tour printed: {m[0]}")
        assert (m[3], m[5]) == (names(registered), names(reported)), \
            f"{case}: names do not match the hex: {m[0]}"
        own = python_mask(case, host)
        assert own == reported, f"{case}: our own select.epoll saw {own:#x}"


@pytest.mark.hint("a peer's FIN is EPOLLIN (+EPOLLRDHUP if asked) and recv 0; EPOLLHUP needs both directions "
                  "shut; an RST is EPOLLIN|EPOLLERR|EPOLLHUP (0x19) and recv ECONNRESET")
def test_fin_half_close_and_rst_give_the_masks_the_kernel_reports(lab):
    assert_masks(run_tour(lab))


@pytest.mark.hint("EPOLLERR and EPOLLHUP are always reported: register with events 0 and an RST still "
                  "wakes epoll_wait with 0x18")
def test_err_and_hup_are_reported_without_being_asked(lab, steps):
    with steps.step("registered with no events at all, an RST reports EPOLLERR|EPOLLHUP"):
        proc = run_tour(lab)
        unasked = [m for m in matches(proc, "mask") if m[1] == "rst-unasked"]
        assert unasked and int(unasked[0][4], 16) == 0x18, f"expected reported 0x18\n{proc.report()}"
    with steps.step("our own look: fdinfo lists an EPOLLIN registration as events 19 (IN|ERR|HUP)"):
        held, epfd = start_held(lab, "registered")
        listener = [int(m[3]) for m in matches(held, "ctl") if m[2] == "listener"][0]
        assert interest(held.pid, epfd)[listener] == 0x19, interest(held.pid, epfd)
        finish(held)


@pytest.mark.hint("close() unregisters an fd only when it drops the last reference: with a dup() alive the "
                  "closed number stays registered and still reports events (epoll(7) Q6)")
def test_close_leaves_an_fd_registered_while_a_dup_keeps_it_open(lab, steps):
    proc = lab.start(TOUR, "--timeout-ms", IDLE_MS, "--hold")
    with steps.step("hold closed-original: the closed fd number is still on the interest list"):
        epfd = hold_at(proc, "closed-original")
        closed = [int(m[2].split()[-1]) for m in matches(proc, "call") if m[1] == "close"][-1]
        assert not os.path.exists(f"/proc/{proc.pid}/fd/{closed}"), f"fd {closed} should be closed"
        assert closed in interest(proc.pid, epfd), \
            f"fd {closed} should still be listed: {interest(proc.pid, epfd)}"
    with steps.step("it still reports events; DEL of the closed number is EBADF, of the dup ENOENT"):
        proc.send_line("")
        hold_at(proc, "closed-dup")
        after = [m for m in matches(proc, "wait") if m[1] == "after-close"]
        assert after and after[0][3] == "1", f"expected 1 event after the close\n{proc.report()}"
        assert any(int(m[1]) == closed for m in matches(proc, "event")), \
            "the event carries the closed fd's number"
        seen = ctl_results(proc)
        assert ("DEL", "closed", "EBADF") in seen and ("DEL", "dup", "ENOENT") in seen, seen[-4:]
    with steps.step("hold closed-dup: the last close removed it"):
        assert closed not in interest(proc.pid, epfd), interest(proc.pid, epfd)
        proc.send_line("")
        hold_at(proc, "deleted-then-closed")
        gone = [m for m in matches(proc, "wait") if m[1] == "after-last-close"]
        assert gone and gone[0][3] == "0", f"expected no event once the last fd is closed\n{proc.report()}"
    finish(proc)


@pytest.mark.hint("with a dup() of the fd alive, call EPOLL_CTL_DEL first and close() after; closing first "
                  "leaves the registration behind and DEL then fails with EBADF")
def test_unregister_then_close_leaves_nothing_registered_even_with_a_dup(lab, steps):
    proc, epfd = start_held(lab, "deleted-then-closed")
    left = interest(proc.pid, epfd)
    last_del = [r for r in ctl_results(proc) if r[0] == "DEL"][-1]
    finish(proc)
    assert not left and last_del == ("DEL", "conn", "ok"), (
        f"expected an empty interest list and `ctl DEL conn ... -> ok`; fdinfo still lists {listing(left)} "
        f"and the last DEL was `ctl DEL {last_del[1]} ... -> {last_del[2]}`")


@pytest.mark.hint("close the epoll fd at the end (step 7); epoll_wait on it afterwards is EBADF")
def test_closed_epoll_fd_is_ebadf(lab):
    proc = run_tour(lab)
    calls = [(m[1], m[2], m[3]) for m in matches(proc, "call")]
    closing = calls[-2]
    assert closing[0] == "close" and closing[1].startswith("epoll fd") and closing[2] == "ok", calls[-2:]
    assert calls[-1] == ("epoll_wait", "closed epoll fd", "EBADF"), calls[-1]


@pytest.mark.hint("at a hold, EOF on stdin ends the tour with status 0")
def test_hold_then_stdin_eof_exits_zero(lab):
    proc, _ = start_held(lab, "registered")
    proc.close_stdin()
    assert proc.wait_exit(10 * slowdown()) == C.status("tour_done"), proc.report()
    assert any(m[1] == "registered" for m in matches(proc, "hold-eof")), proc.report()


@pytest.mark.hint("with --host ::1 make the tour's sockets AF_INET6 (take the family from getaddrinfo)")
def test_tour_over_ipv6_gives_the_same_masks(lab):
    assert_masks(run_tour(lab, "--host", "::1"), host="::1")


@pytest.mark.hint("--help exits 0, an unknown option or a bad --timeout-ms exits 2 with usage on stderr")
def test_tour_cli_contract(lab):
    assert_cli_contract(lab, TOUR)
    bad = lab.run(TOUR, "--timeout-ms", "soon")
    assert bad.popen.returncode == C.status("tour_usage") and USAGE.find(bad.stderr), bad.report()


# ---- epoll_lt_echo -----------------------------------------------------------------------------

def echo_server(lab, *args: str | int, host: str = "127.0.0.1"):
    return lab.server(ECHO, "--host", host, "--port", 0, *args)


def wait_line(proc, name: str, pred=lambda m: True, timeout: float = 5.0) -> re.Match[str]:
    what = f"{proc.name} to print `{C.line(name).template}` ({C.line(name).where})"
    return wait_for(what, lambda: next((m for m in matches(proc, name) if pred(m)), None), timeout)


def registered_fds(proc) -> dict[int, int]:
    fds = epoll_fds(proc.pid)
    assert len(fds) == 1, f"expected one epoll fd in {proc.name}, found {fds}"
    return interest(proc.pid, fds[0])


@pytest.mark.hint("echo exactly the bytes each recv() returned, and log accepted / received / closed "
                  "lines as the README's Output section shows")
def test_echo_is_byte_exact_and_logged(lab):
    server = echo_server(lab)
    with TcpClient("127.0.0.1", server.ready.port) as c:
        c.send(b"hello\x00\xff\n")
        assert c.recv_exactly(8) == b"hello\x00\xff\n"
        peer = f"127.0.0.1:{c.local_port}"
    wait_line(server, "accepted", lambda m: m["peer"] == peer)
    got = wait_line(server, "recv", lambda m: m["peer"] == peer)
    assert (got["n"], got["data"]) == ("8", "hello\\x00\\xff\\n"), got[0]
    wait_line(server, "closed", lambda m: m["peer"] == peer)


@pytest.mark.hint("echo bytes, do not decode them: a UTF-8 character cut by the 1024-byte read must go back "
                  "whole (the walkthrough's decode('utf-8', 'ignore') drops it)")
def test_utf8_character_split_over_two_reads_is_echoed_whole(lab):
    server = echo_server(lab)
    payload = b"a" * 1023 + "你".encode()
    with TcpClient("127.0.0.1", server.ready.port) as c:
        c.send(payload)
        echoed = c.recv_exactly(len(payload), timeout=5)
        peer = f"127.0.0.1:{c.local_port}"
    wait_line(server, "closed", lambda m: m["peer"] == peer)
    sizes = [int(m["n"]) for m in matches(server, "recv") if m["peer"] == peer]
    assert echoed == payload, f"expected {len(payload)} bytes back unchanged, got {len(echoed)}"
    assert sizes and sizes[0] <= 1024 and sum(sizes) == 1026, (
        f"expected reads of at most 1024 bytes that add up to 1026, logged {sizes}")
    decoded = b"".join(payload[i:i + 1024].decode("utf-8", "ignore").encode() for i in range(0, 1026, 1024))
    assert len(decoded) == 1023, "the walkthrough's decode-with-ignore on each 1024-byte chunk keeps 1023"


@pytest.mark.hint("one thread, one epoll_wait loop: register every accepted client and serve whichever "
                  "is ready")
def test_many_clients_at_once_in_one_thread(lab):
    server = echo_server(lab)
    clients = [TcpClient("127.0.0.1", server.ready.port) for _ in range(5)]
    try:
        for round_ in range(3):
            for i, c in enumerate(reversed(clients)):
                c.send(f"{round_}:{i}\n")
            for i, c in enumerate(reversed(clients)):
                assert c.recv_until(b"\n") == f"{round_}:{i}\n".encode()
        assert probes.thread_count(server.pid) == 1, "the server should have one thread"
        wait_for("the listener and 5 clients on the interest list", lambda: len(registered_fds(server)) == 6)
        assert set(registered_fds(server).values()) == {0x19}, registered_fds(server)
    finally:
        for c in clients:
            c.close()
    wait_for("only the listener left registered", lambda: len(registered_fds(server)) == 1, 5)


def busy(pid: int) -> str:
    """A sentence if pid spins: the same 10% of a core the reset test allows an idle server (the machine
    may be shared, so a busy loop can show well below 100%)."""
    share = probes.cpu_share(pid, 1.0)
    return f" It uses {share:.0%} of a core while nothing happens." if share >= 0.10 else ""


@pytest.mark.limit(30)
@pytest.mark.hint("test event bits with &: an RST reports EPOLLIN|EPOLLERR|EPOLLHUP (0x19), which "
                  "`events == EPOLLIN` never matches, so the socket is never read, closed or unregistered")
def test_reset_client_is_unregistered_and_closed(lab, steps):
    server = echo_server(lab)
    port = server.ready.port
    baseline = probes.fd_count(server.pid)
    with steps.step("a client echoes once, then resets (RST)"):
        c = TcpClient("127.0.0.1", port)
        c.send("x")
        assert c.recv_exactly(1) == b"x"
        peer = f"127.0.0.1:{c.local_port}"
        c.reset()
    with steps.step("the server logs the reset as a dropped line and holds nothing of it"):
        try:
            m = wait_line(server, "dropped", lambda m: m["peer"] == peer, timeout=3)
        except AssertionError:
            raise AssertionError(
                f"expected a line `{C['dropped'].template}` for {peer} with [ECONNRESET] after its RST; "
                f"none came, and its epoll fd still watches {listing(registered_fds(server))}."
                f"{busy(server.pid)}") from None
        assert m["ename"] == "ECONNRESET", f"expected the reset named [ECONNRESET]: {m[0]}"
        assert probes.fd_count(server.pid) == baseline, "the reset client's fd is still open"
        assert len(registered_fds(server)) == 1, registered_fds(server)
    with steps.step("idle again: no busy loop, and a new client is served"):
        assert probes.cpu_share(server.pid, 0.5) < 0.10, "the server spins after the reset"
        with TcpClient("127.0.0.1", port) as again:
            again.send("y")
            assert again.recv_exactly(1) == b"y"


@pytest.mark.hint("on recv() == 0 unregister the fd, close it and forget it: no CLOSE_WAIT may remain")
def test_clean_close_leaves_no_close_wait_and_no_registration(lab):
    server = echo_server(lab)
    port = server.ready.port
    baseline = probes.fd_count(server.pid)
    for _ in range(3):
        with TcpClient("127.0.0.1", port) as c:
            c.send("bye")
            c.recv_exactly(3)
    wait_for("three closed lines", lambda: len(matches(server, "closed")) == 3, 5)
    states = probes.tcp_states(port, host="127.0.0.1")
    assert states.get("CLOSE_WAIT", 0) == 0, states
    assert probes.fd_count(server.pid) == baseline and len(registered_fds(server)) == 1


@pytest.mark.hint("--notes-order must close() first and then EPOLL_CTL_DEL, which fails with EBADF: report "
                  "it the usual way and exit 1")
def test_notes_order_dies_with_ebadf_at_the_first_disconnect(lab, steps):
    server = echo_server(lab, "--notes-order")
    with steps.step("one client echoes and leaves"):
        with TcpClient("127.0.0.1", server.ready.port) as c:
            c.send("x")
            assert c.recv_exactly(1) == b"x"
    with steps.step("the server dies of EBADF, exit 1"):
        assert server.wait_exit(5 * slowdown()) == C.status("echo_failed"), server.report()
        assert C["del-ebadf"].find(server.stderr), server.report()
    with steps.step("our own select.epoll: unregister after close raises EBADF, as the walkthrough's does"):
        with socket.socket() as s, select.epoll() as ep:
            fd = s.fileno()
            ep.register(fd, select.EPOLLIN)
            s.close()
            with pytest.raises(OSError) as err:
                ep.unregister(fd)
            assert err.value.errno == errno.EBADF


@pytest.mark.hint("--quiet leaves out the received lines only; accepted and closed lines stay")
def test_quiet_leaves_out_the_received_lines(lab):
    server = echo_server(lab, "--quiet")
    with TcpClient("127.0.0.1", server.ready.port) as c:
        c.send("quiet\n")
        assert c.recv_exactly(6) == b"quiet\n"
    wait_line(server, "closed")
    assert matches(server, "accepted") and not matches(server, "recv"), server.report()


@pytest.mark.hint("listen on 127.0.0.1 port 9292 by default (the walkthrough's port, but never 0.0.0.0)")
def test_default_is_the_walkthrough_port_9292_on_loopback(lab):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 9292))
        except OSError:
            pytest.skip("port 9292 is in use on this machine; run the test when it is free")
    server = lab.server(ECHO)
    assert (server.ready.host, server.ready.port) == ("127.0.0.1", 9292), server.ready
    rows = [s for s in probes.tcp_sockets(9292) if s.state == "LISTEN"]
    assert [s.local for s in rows] == [("127.0.0.1", 9292)], \
        f"expected one listener on 127.0.0.1:9292: {rows}"


@pytest.mark.hint("set SO_REUSEADDR before bind(): a restart must succeed while TIME_WAIT from the last "
                  "run remains on the port")
def test_restart_during_time_wait_works_with_so_reuseaddr(lab, steps):
    with steps.step("a client is connected when the server is stopped: the server closes first"):
        first = echo_server(lab)
        port = first.ready.port
        c = TcpClient("127.0.0.1", port)
        c.send("x")
        c.recv_exactly(1)
        first.popen.send_signal(signal.SIGTERM)
        assert first.wait_exit(5) == C.status("echo_stopped"), first.report()
        assert c.recv_until_eof(timeout=5) == b""
        c.close()
        wait_for("TIME_WAIT on the server's port", lambda: probes.tcp_states(port).get("TIME_WAIT", 0) >= 1)
    with steps.step("restart on the same port at once"):
        again = lab.server(ECHO, "--port", port)
        assert again.ready.port == port
        with TcpClient("127.0.0.1", port) as d:
            d.send("ok")
            assert d.recv_exactly(2) == b"ok"


@pytest.mark.hint("with --host ::1 create an AF_INET6 listener (take the family from getaddrinfo)")
def test_ipv6_loopback(lab):
    server = echo_server(lab, host="::1")
    assert server.ready.host == "::1"
    with TcpClient("::1", server.ready.port) as c:
        c.send("six")
        assert c.recv_exactly(3) == b"six"
        peer = f"[::1]:{c.local_port}"
    wait_line(server, "accepted", lambda m: m["peer"] == peer)


@pytest.mark.hint("SIGTERM/SIGINT end the server with status 0, clients connected or not")
def test_sigterm_exits_zero(lab):
    server = echo_server(lab)
    with TcpClient("127.0.0.1", server.ready.port) as c:
        c.send("x")
        c.recv_exactly(1)
        server.popen.send_signal(signal.SIGTERM)
        assert server.wait_exit(5) == C.status("echo_stopped"), server.report()


@pytest.mark.hint("--help exits 0, a bad option exits 2, a port in use exits 1 with [EADDRINUSE] and a hint")
def test_echo_cli_contract(lab):
    with occupy_tcp() as port:
        assert_cli_contract(lab, ECHO, port)
        proc = lab.run(ECHO, "--port", port)
        assert proc.popen.returncode == C.status("echo_failed"), proc.report()
        errors = C["error"].findall(proc.stderr)
        assert errors and errors[0]["ename"] == "EADDRINUSE", proc.report()


# ---- the bad-client battery of the server labs (harness/battery.py) -----------------------------

@pytest.mark.limit(90)
@pytest.mark.parametrize("check", [pytest.param(c, id=c.name, marks=pytest.mark.hint(c.hint))
                                   for c in battery.checks(MODEL)])
def test_battery(lab, steps, check):
    check.run(lab, MODEL, steps)
