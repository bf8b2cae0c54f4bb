"""Lab 01 socket-basics: socket_info creates sockets and prints what the kernel says they are.

Every claim of labs/01-socket-basics/README.md is checked here against the kernel's own view
(/proc/PID/fd, /proc/net/udp), never against the program's word alone.
"""
from __future__ import annotations

import ctypes
import errno
import os
import re
import socket
import struct
import sys

import pytest

from harness.contract import assert_cli_contract, occupy_udp
from harness.output import Line, contract

C = contract("01")


def printed(proc, line: Line) -> re.Match[str]:
    """The line of proc's output in the contract format `line`, or a failure that shows it."""
    m = line.find(proc.stdout)
    assert m, f"socket_info printed no line like `{line.template}` ({line.where})\n{proc.report()}"
    return m


def bound_line(proc) -> re.Match[str]:
    return printed(proc, C["bound"])


def before_line(proc) -> re.Match[str]:
    return printed(proc, C["before_bind"])


def sockets_of(proc) -> list[tuple[int, str, str, int]]:
    return [(int(m[1]), m[2], m[3], int(m[4])) for m in C["socket"].findall(proc.stdout)]


@pytest.mark.hint("create the four sockets in order (TCP, UDP, TCP over IPv6, AF_UNIX) and print what "
                  "getsockopt SO_DOMAIN/SO_TYPE/SO_PROTOCOL returns")
def test_prints_domain_type_protocol_as_the_kernel_reports(lab, steps):
    with steps.step("run socket_info"):
        proc = lab.run("socket_info")
    assert proc.popen.returncode == C.status("done"), proc.report()
    found = sockets_of(proc)
    assert [(d, t, p) for _, d, t, p in found] == [
        ("AF_INET", "SOCK_STREAM", socket.IPPROTO_TCP),   # protocol 0 means the default: TCP
        ("AF_INET", "SOCK_DGRAM", socket.IPPROTO_UDP),    # ...and UDP for datagrams
        ("AF_INET6", "SOCK_STREAM", socket.IPPROTO_TCP),
        ("AF_UNIX", "SOCK_STREAM", 0),
    ], proc.report()


@pytest.mark.hint("print the fds socket() really returned, and keep them open until stdin ends (--hold)")
@pytest.mark.limit(20)
def test_fds_are_small_ints_the_kernel_lists_as_sockets(lab, steps):
    with steps.step("start socket_info --hold"):
        proc = lab.start("socket_info", "--hold")
        proc.expect(C["holding"])
    with steps.step("compare printed fds with /proc/PID/fd"):
        fds = [fd for fd, *_ in sockets_of(proc)]
        bound_fd = int(bound_line(proc)[1])
        # The lowest free numbers, in order: 0-2 are stdin/stdout/stderr, so 3, 4, 5, 6, then 7.
        assert fds + [bound_fd] == list(range(fds[0], fds[0] + 5)), proc.report()
        below = [n for n in range(fds[0]) if not os.path.exists(f"/proc/{proc.pid}/fd/{n}")]
        assert below == [], f"fds {below} were free, yet socket() returned {fds[0]}: not the lowest free one"
        for fd in fds + [bound_fd]:
            target = os.readlink(f"/proc/{proc.pid}/fd/{fd}")
            assert target.startswith("socket:["), f"fd {fd} is {target}, not a socket"
    with steps.step("stdin EOF ends it with status 0"):
        proc.close_stdin()
        assert proc.wait_exit(5) == C.status("done"), proc.report()


@pytest.mark.hint("the printed port must be the one bound: read it back with getsockname() and convert it "
                  "with ntohs() (network byte order)")
@pytest.mark.limit(20)
def test_port_zero_binds_an_ephemeral_port_that_is_really_bound(lab, steps):
    with steps.step("start socket_info --hold (port 0)"):
        proc = lab.start("socket_info", "--hold")
        proc.expect(C["holding"])
    m = bound_line(proc)
    fd, host, port = int(m[1]), m[2], int(m[3])
    low, high = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    assert host == "127.0.0.1"
    assert low <= port <= high, f"port {port} is outside ip_local_port_range {low}-{high}"
    with steps.step("find the printed port in /proc/net/udp, owned by that fd"):
        inode = int(os.readlink(f"/proc/{proc.pid}/fd/{fd}")[8:-1])
        rows = [line.split() for line in open("/proc/net/udp").read().splitlines()[1:]]
        owners = [int(r[9]) for r in rows if int(r[1].split(":")[1], 16) == port]
        assert inode in owners, f"no UDP socket on port {port} with the inode of fd {fd} ({inode})"
    with steps.step("a second bind to that port fails"):
        with pytest.raises(OSError):
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM).bind(("127.0.0.1", port))


@pytest.mark.limit(20)
def test_new_sockets_have_no_address_and_no_connection(lab, steps):
    """socket() only creates. /proc/net/udp* lists every UDP socket that has an address, and
    /proc/net/tcp* every TCP connection and listener: none of the four new sockets is there."""
    with steps.step("start socket_info --hold"):
        proc = lab.start("socket_info", "--hold")
        proc.expect(C["holding"])
    with steps.step("getsockname() before bind() says 0.0.0.0:0: no address, no port"):
        assert before_line(proc)[2] == "0.0.0.0:0", proc.report()
    with steps.step("/proc/net/{tcp,tcp6,udp,udp6} list only the bound socket, none of the four new ones"):
        def inode(fd: int) -> int:
            return int(os.readlink(f"/proc/{proc.pid}/fd/{fd}")[8:-1])
        listed = set()
        for table in ("tcp", "tcp6", "udp", "udp6"):
            listed |= {int(line.split()[9]) for line in open(f"/proc/net/{table}").read().splitlines()[1:]}
        new = {fd: inode(fd) for fd, domain, *_ in sockets_of(proc) if domain != "AF_UNIX"}
        made = [fd for fd, ino in new.items() if ino in listed]
        assert made == [], "a socket() made an address or a connection"
        assert inode(int(bound_line(proc)[1])) in listed, "control: the bound UDP socket is listed"


def test_notes_print_statement_is_python_2_only():
    """The notes' TCP example prints with `print 'Socket Created'`: a syntax error in Python 3."""
    with pytest.raises(SyntaxError):
        compile("print 'Socket Created'\n", "TCP链接", "exec")
    compile("print('Socket Created')\n", "TCP链接", "exec")


@pytest.mark.hint("with --host ::1 create an AF_INET6 socket: take the family from getaddrinfo's result")
def test_ipv6_host(lab):
    proc = lab.run("socket_info", "--host", "::1")
    assert proc.popen.returncode == C.status("done"), proc.report()
    assert before_line(proc)[2] == "[::]:0", "an AF_INET6 socket, not yet bound\n" + proc.report()
    assert bound_line(proc)[2] == "::1"


@pytest.mark.limit(20)
@pytest.mark.hint("sin_port holds the port in network byte order: print the field as getsockname() "
                  "filled it, and ntohs() of it as the port")
def test_sin_port_is_the_bound_port_in_network_byte_order(lab, steps):
    """The port /proc/net/udp shows for the bound socket is the printed port; the printed sin_port
    is the same 16 bits in network byte order (big-endian), read as a number by this CPU."""
    with steps.step("start socket_info --hold"):
        proc = lab.start("socket_info", "--hold")
        proc.expect(C["holding"])
    rule = C.line("byte_order")
    found = [m for m in map(rule.match, proc.stdout.splitlines()) if m]
    assert found, f"socket_info printed no line like '{rule.template}' ({rule.where})\n{proc.report()}"
    port, raw, hex_digits = int(found[0]["port"]), int(found[0]["raw"]), found[0]["hex"]
    with steps.step("read the bound socket's port from /proc/net/udp, by its inode"):
        fd = int(bound_line(proc)[1])
        inode = int(os.readlink(f"/proc/{proc.pid}/fd/{fd}")[8:-1])
        rows = [line.split() for line in open("/proc/net/udp").read().splitlines()[1:]]
        kernel = [int(r[1].split(":")[1], 16) for r in rows if int(r[9]) == inode]
        assert kernel, f"the bound socket (inode {inode}) is not in /proc/net/udp"
    assert port == kernel[0], f"printed port={port}, but the kernel bound port {kernel[0]} (a missing ntohs?)"
    as_stored = int.from_bytes(kernel[0].to_bytes(2, "big"), sys.byteorder)
    assert raw == as_stored, (
        f"sin_port={raw}, but port {kernel[0]} in network byte order reads as {as_stored} on this "
        f"{sys.byteorder}-endian CPU")
    assert int(hex_digits, 16) == raw, f"0x{hex_digits} is not {raw}"
    if sys.byteorder == "little" and kernel[0] >> 8 != kernel[0] & 0xFF:
        assert raw != port, "on a little-endian CPU the two byte orders differ"


def test_ipv6_bind_is_an_af_inet6_socket_in_proc_net_udp6(lab, steps):
    """--host ::1: the bound socket is in /proc/net/udp6 (an AF_INET6 socket), not in udp."""
    with steps.step("start socket_info --host ::1 --hold"):
        proc = lab.start("socket_info", "--host", "::1", "--hold")
        proc.expect(C["holding"])
    fd = int(bound_line(proc)[1])
    inode = int(os.readlink(f"/proc/{proc.pid}/fd/{fd}")[8:-1])

    def inodes(table: str) -> set[int]:
        return {int(line.split()[9]) for line in open(f"/proc/net/{table}").read().splitlines()[1:]}
    assert inode in inodes("udp6"), f"the bound socket (inode {inode}) is not in /proc/net/udp6"
    assert inode not in inodes("udp"), "an IPv6 socket listed in /proc/net/udp"
    proc.close_stdin()
    assert proc.wait_exit(5) == 0, proc.report()


def test_af_inet_is_ipv4_only():
    """An AF_INET socket takes only IPv4 addresses: bind() with an IPv6 sockaddr_in6 fails with
    EAFNOSUPPORT (ip(7), inet_bind). About the kernel: it runs no program."""
    libc = ctypes.CDLL(None, use_errno=True)
    sin6 = (struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", 0, 0)
            + socket.inet_pton(socket.AF_INET6, "::1") + struct.pack("=I", 0))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        assert libc.bind(s.fileno(), sin6, len(sin6)) == -1
        assert ctypes.get_errno() == errno.EAFNOSUPPORT, os.strerror(ctypes.get_errno())


@pytest.mark.hint("--help exits 0, a bad option exits 2 with usage on stderr, a failed bind exits 1 with "
                  "`prog: what: strerror [ENAME]`")
def test_cli_contract(lab):
    with occupy_udp() as port:
        assert_cli_contract(lab, "socket_info", taken_port=port)
