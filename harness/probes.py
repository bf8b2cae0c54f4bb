"""/proc probes: what a process holds and does, read from outside it.

Every function takes a pid and returns a plain value; a process that is gone raises
ProcessLookupError (FileNotFoundError from /proc is turned into it).
"""
from __future__ import annotations

import os
import socket
import struct
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
    6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
    12: "NEW_SYN_RECV",
}


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError as e:
        raise ProcessLookupError(path) from e


def stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat after the command name: [0] state, [1] ppid, [2] pgrp,
    [3] session, [11] utime, [12] stime."""
    text = _read(f"/proc/{pid}/stat")
    return text[text.rindex(")") + 2:].split()


def state(pid: int) -> str:
    """One letter: R running, S sleeping, Z zombie, T stopped..."""
    return stat_fields(pid)[0]


def alive(pid: int) -> bool:
    """True if pid exists and is not a zombie."""
    try:
        return state(pid) != "Z"
    except ProcessLookupError:
        return False


def cpu_seconds(pid: int) -> float:
    f = stat_fields(pid)
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def cpu_share(pid: int, window: float = 2.0) -> float:
    """Fraction of one core pid used over `window` seconds (0.0 idle, ~1.0 busy loop)."""
    start = cpu_seconds(pid)
    time.sleep(window)
    return (cpu_seconds(pid) - start) / window


def fd_targets(pid: int) -> list[str]:
    """What each open fd points to: 'socket:[1234]', 'pipe:[..]', '/dev/null', ..."""
    base = f"/proc/{pid}/fd"
    try:
        names = os.listdir(base)
    except FileNotFoundError as e:
        raise ProcessLookupError(base) from e
    out = []
    for name in names:
        try:
            out.append(os.readlink(f"{base}/{name}"))
        except FileNotFoundError:
            pass  # closed while we looked
    return out


def fd_count(pid: int) -> int:
    return len(fd_targets(pid))


def socket_inodes(pid: int) -> set[int]:
    return {int(t[8:-1]) for t in fd_targets(pid) if t.startswith("socket:[")}


def thread_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError as e:
        raise ProcessLookupError(pid) from e


def status_field(pid: int, key: str) -> str:
    """A field of /proc/PID/status, e.g. 'VmRSS' -> '1234 kB'."""
    for line in _read(f"/proc/{pid}/status").splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(key)


def rss_kib(pid: int) -> int:
    return int(status_field(pid, "VmRSS").split()[0])


def vm_size_kib(pid: int) -> int:
    return int(status_field(pid, "VmSize").split()[0])


def _ppid_map() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(stat_fields(int(entry))[1])
            except (ProcessLookupError, IndexError, ValueError):
                continue
    return parents


def children(pid: int) -> list[int]:
    """Direct children of pid (any state)."""
    return [p for p, pp in _ppid_map().items() if pp == pid]


def descendants(pid: int) -> list[int]:
    """Children, grandchildren, ... of pid."""
    parents = _ppid_map()
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        frontier += kids
    return found


def zombies(pid: int) -> list[int]:
    """Children of pid that have exited but were never waited for."""
    out = []
    for child in children(pid):
        try:
            if state(child) == "Z":
                out.append(child)
        except ProcessLookupError:
            pass
    return out


def group_members(pgid: int) -> list[int]:
    """Processes whose process group or session is pgid."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                f = stat_fields(int(entry))
            except (ProcessLookupError, IndexError):
                continue
            if int(f[2]) == pgid or int(f[3]) == pgid:
                out.append(int(entry))
    return out


@dataclass(frozen=True)
class TcpSocket:
    local: tuple[str, int]
    remote: tuple[str, int]
    state: str
    inode: int
    send_q: int   # for a listener: the effective backlog (as `ss -ltn` shows); else unacknowledged bytes
    recv_q: int   # for a listener: connections waiting in the accept queue; else unread bytes


def _decode(hex_addr: str) -> tuple[str, int]:
    ip_hex, port_hex = hex_addr.split(":")
    raw = bytes.fromhex(ip_hex)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # four little-endian 32-bit words
        packed = b"".join(struct.pack(">I", w) for w in struct.unpack("<4I", raw))
        ip = socket.inet_ntop(socket.AF_INET6, packed)
    return ip, int(port_hex, 16)


def _listen_backlogs(pid: int | None) -> dict[tuple[str, int], int]:
    """Effective backlog of each listener, from `ss -ltn` (Send-Q); /proc/net/tcp does not show it."""
    argv = ["ss", "-Hltn"]
    if pid:
        argv = ["nsenter", f"--net=/proc/{pid}/ns/net", *argv]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    backlogs = {}
    for row in out.splitlines():
        f = row.split()
        if len(f) >= 4:
            host, _, port = f[3].rpartition(":")
            backlogs[(host.strip("[]").split("%")[0], int(port))] = int(f[2])
    return backlogs


def _plain(addr: tuple[str, int]) -> tuple[str, int]:
    """An IPv4-mapped IPv6 address (a dual-stack socket's view of 127.0.0.1) as plain IPv4."""
    return (addr[0].removeprefix("::ffff:") if addr[0].startswith("::ffff:") and "." in addr[0] else addr[0],
            addr[1])


def tcp_sockets(port: int | None = None, pid: int | None = None, host: str | None = None) -> list[TcpSocket]:
    """TCP sockets of the network namespace (of pid, if given) whose local or remote port is `port`.
    With `host`, only those whose local or remote end is exactly (host, port): the same port number
    may be in use on another address (::1, 127.0.0.2) by some other program at the same time. A
    wildcard host (0.0.0.0, ::) filters on the port alone."""
    base = f"/proc/{pid}/net" if pid else "/proc/net"
    out = []
    for name in ("tcp", "tcp6"):
        try:
            lines = _read(f"{base}/{name}").splitlines()[1:]
        except ProcessLookupError:
            continue
        for line in lines:
            f = line.split()
            local, remote = _decode(f[1]), _decode(f[2])
            if port is not None and port not in (local[1], remote[1]):
                continue
            if host not in (None, "0.0.0.0", "::") and (host, port) not in (_plain(local), _plain(remote)):
                continue
            tx, rx = (int(x, 16) for x in f[4].split(":"))
            out.append(TcpSocket(local, remote, TCP_STATES.get(int(f[3], 16), f[3]), int(f[9]), tx, rx))
    if any(s.state == "LISTEN" for s in out):
        backlogs = _listen_backlogs(pid)
        out = [replace(s, send_q=backlogs.get(s.local, backlogs.get(("*", s.local[1]), s.send_q)))
               if s.state == "LISTEN" else s for s in out]
    return out


def tcp_states(port: int, pid: int | None = None, host: str | None = None) -> Counter[str]:
    """How many sockets on `port` (at `host`, if given) are in each state, e.g.
    Counter({'TIME_WAIT': 1, 'LISTEN': 1})."""
    return Counter(s.state for s in tcp_sockets(port, pid, host))


def listen_overflows() -> int:
    """TcpExt ListenOverflows: SYNs or ACKs dropped because an accept queue was full."""
    lines = _read("/proc/net/netstat").splitlines()
    for head, values in zip(lines[::2], lines[1::2]):
        if head.startswith("TcpExt:"):
            return int(dict(zip(head.split()[1:], values.split()[1:]))["ListenOverflows"])
    return 0


def wchans(pid: int) -> list[str]:
    """For each thread of pid, the kernel function it sleeps in (/proc/PID/task/TID/wchan):
    e.g. 'wait_for_more_packets' for a blocking datagram receive, 'do_sys_poll' for poll()."""
    out = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError as e:
        raise ProcessLookupError(pid) from e
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                out.append(f.read())
        except OSError:
            continue
    return out


def blocked_in(pid: int, kernel_function: str) -> bool:
    """True if some thread of pid sleeps in a kernel function whose name contains `kernel_function`."""
    return any(kernel_function in name for name in wchans(pid))


def snapshot(proc: Any) -> str:
    """What /proc says about a running lab program (a LabProcess: name, pid, ready): the evidence
    a failure report shows."""
    pid = proc.pid
    if not alive(pid):
        return f"{proc.name} (pid {pid}): not running"
    try:
        fds = fd_targets(pid)
        kinds: dict[str, int] = {}
        for t in fds:
            k = t.split(":")[0] if ":" in t else "file"
            kinds[k] = kinds.get(k, 0) + 1
        lines = [f"{proc.name} (pid {pid}) state {state(pid)}: {len(fds)} fds "
                 f"({', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))}), "
                 f"{thread_count(pid)} threads, {len(children(pid))} children, "
                 f"{len(zombies(pid))} zombies, VmRSS {rss_kib(pid)} KiB"]
        if proc.ready is not None and proc.ready.proto == "tcp":
            states = tcp_states(proc.ready.port, host=proc.ready.host)
            lines.append(f"  TCP sockets on port {proc.ready.port}: " +
                         (", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none"))
        return "\n".join(lines)
    except (ProcessLookupError, KeyError) as e:
        return f"{proc.name} (pid {pid}): gone while looking ({e})"
